"""The cancer registry's demo: a synthetic county population file and the registrar's work done on
the demo population through the registry service (so every registry screen has content).

``county_population(today)`` is the population file the reports page uses when none is uploaded:
the demo's counties (``vocab.PLACES``) from the first historical diagnosis year to ``today``'s
year, made by ``incidence.synthetic_population`` with a fixed seed and scaled down to the demo
hospital's catchment (``CATCHMENT``) so that the demo's cases give rates of the usual order
(hundreds per 100,000). Made-up numbers, plausible in shape only.

``historical_cases(n)`` are the registry's older cases, abstracted before the record went
electronic (no FHIR record behind them): synthetic patients diagnosed from ``HISTORY_FROM`` with
their site, stage, treatment class and follow-up (survival drawn by site and stage, some lost to
follow-up). ``load_registry`` imports them as a NAACCR XML file through the registry service, the
way a registry loads another system's abstracts, so the survival and incidence reports have
numbers to show.

``load_registry(db)`` then screens what the demo import queued and works the queue as a registrar
would: for each cancer patient the first pathology report becomes a case (its abstract completed
with laterality, grade, Summary Stage 2018 and the county at diagnosis), the patient's later
reports and coded diagnoses are linked to that tumour, and the newest cases are left pending so
the suspense queue has work. One abstract is left with an edit to fix. The choices depend only on
the records (patient and source ids), never on the clock or on row ids, so the same population
gives the same registry.
"""

from __future__ import annotations

import math
import random
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from chartkeeper.db import Database
from chartkeeper.demo.generator import HISTORY_YEARS, TODAY
from chartkeeper.demo.vocab import FAMILY_NAMES, FEMALE_NAMES, MALE_NAMES, PLACES
from chartkeeper.fhir.errors import FhirError
from chartkeeper.fhir.service import RecordService
from chartkeeper.registry import icdo3
from chartkeeper.registry.incidence import PopulationRow, population_csv, synthetic_population
from chartkeeper.registry.service import RegistryService, SuspenseItem, naaccr_patient, naaccr_write
from chartkeeper.security.principal import Principal

POPULATION_SEED = 2000
CATCHMENT = 0.01  # the share of each county's synthetic population the demo hospital serves
HISTORY_FROM = 2015  # historical cases are diagnosed from this year
HISTORICAL_CASES = 240
LEAVE_PENDING = 3  # the newest cancer patients' reports stay in the suspense queue


def counties() -> list[tuple[str, str]]:
    """(county FIPS, state) of every demo county, once each."""
    return sorted({(p.county_fips, p.state) for p in PLACES})


def county_fips(county_name: str, state: str) -> str | None:
    """The FIPS code of a demo county from its name and state (as the demo writes Address.district)."""
    return next((p.county_fips for p in PLACES if p.county == county_name and p.state == state), None)


def county_population(today: date | None = None) -> str:
    """The demo's population file (CSV, the columns ``incidence.load_population`` reads) for the
    years from ``HISTORY_FROM`` to ``today``'s year (and the demo record's own history)."""
    last = (today or TODAY).year
    years = list(range(min(HISTORY_FROM, last - HISTORY_YEARS), last + 1))
    rows = [PopulationRow(r.county, r.state, r.year, r.sex, r.age_group, max(1, round(r.population * CATCHMENT)))
            for r in synthetic_population(counties(), years, seed=POPULATION_SEED)]
    return population_csv(rows)


# (site group, topographies, histology, sex ("" either), share, median survival in months when localized)
_HISTORICAL_SITES = (
    ("breast", ("C504", "C502", "C508", "C509"), "8500", "F", 30, 240.0),
    ("lung", ("C341", "C343", "C349"), "8140", "", 22, 40.0),
    ("colon", ("C180", "C182", "C187", "C189"), "8140", "", 18, 150.0),
    ("prostate", ("C619",), "8140", "M", 20, 400.0),
    ("melanoma", ("C445", "C446", "C447"), "8720", "", 10, 300.0),
)
_STAGE_FACTOR = {"1": 1.0, "2": 0.45, "3": 0.3, "7": 0.08, "9": 0.4}


def _day(d: date) -> str:
    return d.strftime("%Y%m%d")


Case = tuple[dict[str, str], list[dict[str, str]]]


def historical_cases(n: int = HISTORICAL_CASES, *, today: date | None = None, seed: int = 1) -> list[Case]:
    """``n`` synthetic registry patients (patient items, tumour items), NAACCR 26 item ids; one
    tumour each, diagnosed from ``HISTORY_FROM`` to two years before ``today``. Deterministic."""
    end = today or TODAY
    weights = [w for *_, w, _m in _HISTORICAL_SITES]
    places = list(PLACES)
    out = []
    for i in range(n):
        rng = random.Random(f"registry-history:{seed}:{i}")
        group, sites, hist, sex, _w, median = rng.choices(_HISTORICAL_SITES, weights=weights)[0]
        sex = sex or rng.choice("MF")
        site = rng.choice(sites)
        span = (end - timedelta(days=730) - date(HISTORY_FROM, 1, 1)).days
        dx = date(HISTORY_FROM, 1, 1) + timedelta(days=rng.randrange(max(span, 1)))
        age = rng.randint(45, 86) if group != "breast" else rng.randint(38, 84)
        birth = date(dx.year - age, rng.randint(1, 12), rng.randint(1, 28))
        stage = rng.choices("12379", weights=(45, 20, 15, 15, 5))[0]
        months = rng.expovariate(math.log(2) / (median * _STAGE_FACTOR[stage]))
        death = dx + timedelta(days=int(months * 30.4375))
        lost = rng.random() < 0.08  # lost to follow-up some time after diagnosis
        seen = dx + timedelta(days=rng.randint(60, max(61, (end - dx).days - 400))) if lost else \
            end - timedelta(days=rng.randint(5, 330))
        dead = death <= seen
        dlc = death if dead else seen
        place = rng.choices(places, weights=[p.weight for p in places])[0]
        given = rng.choice(FEMALE_NAMES if sex == "F" else MALE_NAMES)
        patient = {"patientIdNumber": f"{i + 1:08d}", "nameLast": rng.choice(FAMILY_NAMES), "nameFirst": given,
                   "dateOfBirth": _day(birth), "sexAssignedAtBirth": "2" if sex == "F" else "1",
                   "race1": rng.choices(("01", "02", "96", "98"), weights=(78, 15, 4, 3))[0],
                   "vitalStatus": "0" if dead else "1", "dateOfLastContact": _day(dlc),
                   "causeOfDeath": f"{site[:3]}9" if dead else "0000"}
        treated_here = rng.random() < 0.85
        tumor = {"tumorRecordNumber": "01", "accessionNumberHosp": f"{dx.year}{i + 1:05d}", "sequenceNumberHospital": "00",
                 "primarySite": site, "histologicTypeIcdO3": hist, "behaviorCodeIcdO3": "3",
                 "laterality": rng.choice("12") if icdo3.is_paired_site(site) else "0",
                 "gradeClinical": rng.choice("123"), "dateOfDiagnosis": _day(dx), "dateOf1stContact": _day(dx),
                 "diagnosticConfirmation": "1", "classOfCase": "14" if treated_here else "10",
                 "casefindingSource": "20", "summaryStage2018": stage, "addrAtDxState": place.state,
                 "countyAtDx": place.county_fips[2:], "addrAtDxCity": place.city,
                 "addrAtDxPostalCode": place.postal_codes[0], "cancerStatus": "2" if dead else rng.choice("119")}
        if treated_here and stage in "123" and group != "prostate":
            tumor["rxDateSurgery"] = tumor["rxDateMostDefinSurg"] = _day(dx + timedelta(days=rng.randint(10, 40)))
            if dead and death < dx + timedelta(days=40):
                tumor.pop("rxDateSurgery")
                tumor.pop("rxDateMostDefinSurg")
        out.append((patient, [tumor]))
    return out


def import_historical(svc: RegistryService, who: Principal, *, today: date | None = None) -> int:
    """Write the historical cases as a NAACCR XML file and import it through the registry service
    (matched again on Patient ID Number and accession, so a second import changes nothing). Returns
    the number of rejects (zero for the demo)."""
    cases = historical_cases(today=today)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "historical-cases.xml"
        with path.open("wb") as out:
            naaccr_write(out, {}, (naaccr_patient(p, t) for p, t in cases), "260", "A")
        rep = svc.import_file(who, path)
    return len(rep.rejects)


@dataclass
class RegistryDemoReport:
    screened: int = 0
    historical: int = 0
    cases: int = 0
    linked: int = 0
    pending: int = 0
    with_edits: int = 0
    problems: list[str] = field(default_factory=list)


def _completion(rng: random.Random, site: str, laterality: str, county: str, city: str) -> dict[str, str]:
    """What the registrar adds to a prefilled abstract: laterality, grade, stage, county at diagnosis."""
    items: dict[str, str] = {}
    if not laterality:
        laterality = rng.choice("12") if site and icdo3.is_paired_site(site) else "0"
    items["laterality"] = laterality
    items["gradeClinical"] = rng.choice("123")
    items["summaryStage2018"] = rng.choices("1237", weights=(45, 25, 15, 15))[0]
    items["diagnosticConfirmation"] = "1"
    if county:
        items["countyAtDx"] = county[2:]
    if city:
        items["addrAtDxCity"] = city[:50]
    return items


def load_registry(db: Database, *, today: date | None = None, history: bool = True) -> RegistryDemoReport:
    """Import the historical cases (``history``), screen the demo records into the suspense queue
    and work it as described above (idempotent: a second run finds nothing new to decide)."""
    who = Principal.system("demo-registrar")
    records = RecordService(db)
    svc = RegistryService(db, records)
    rep = RegistryDemoReport()
    if history:
        rejects = import_historical(svc, who, today=today)
        if rejects:
            rep.problems.append(f"historical cases: {rejects} rejected on import")
        rep.historical = HISTORICAL_CASES - rejects
    rep.screened = svc.screen_pending(who).screened
    rows: list[SuspenseItem] = []
    offset = 0
    while True:
        page = svc.suspense(who, status="all", limit=500, offset=offset)
        rows.extend(page.rows)
        offset += 500
        if offset >= page.total:
            break
    by_patient: dict[str, list[SuspenseItem]] = defaultdict(list)
    for r in rows:
        if r.patient_id:
            by_patient[r.patient_id].append(r)
    # The newest patients stay pending, chosen over every row ever screened, so a second run keeps them too.
    first_day = {pid: min((r.source_date or date.max) for r in rs) for pid, rs in by_patient.items()}
    ordered = sorted(by_patient, key=lambda pid: (first_day[pid], pid))
    keep = set(ordered[-LEAVE_PENDING:]) if len(ordered) > LEAVE_PENDING else set()
    for pid in keep:
        rep.pending += sum(1 for r in by_patient[pid] if r.status == "pending")
    by_patient = {pid: [r for r in rs if r.status == "pending"] for pid, rs in by_patient.items() if pid not in keep}
    ordered = [pid for pid in ordered if by_patient.get(pid)]
    edit_left = False
    for pid in ordered:
        items = sorted(by_patient[pid], key=lambda r: (r.source_date or date.max, r.kind != "pathology", r.source_id))
        # The case is made from the first pathology report (it has the histology); the rest are linked.
        first = next((r for r in items if r.kind == "pathology" and r.suggested_histology), None)
        if first is None:
            rep.pending += len(items)
            continue
        try:
            abstract = svc.accept(who, first.id, new_primary=True)
        except FhirError as exc:
            rep.problems.append(f"suspense {first.source_type}/{first.source_id}: {exc.message}")
            continue
        rep.cases += 1
        patient = records.read(who, "Patient", pid).resource()
        addr: dict[str, Any] = next(iter(patient.get("address") or []), {})
        county = county_fips(str(addr.get("district") or ""), str(addr.get("state") or "")) or ""
        rng = random.Random(f"registry-demo:{pid}")
        done = _completion(rng, str(abstract.primary_site or ""), abstract.laterality, county, str(addr.get("city") or ""))
        if not edit_left and str(abstract.primary_site or "")[:3] in ("C34", "C50"):
            # Left for the registrar to fix: the side of a paired organ not yet coded.
            done.pop("laterality")
            abstract = svc.save_abstract(who, abstract.id, {**done, "laterality": ""})
            edit_left = True
        else:
            abstract = svc.save_abstract(who, abstract.id, done)
        rep.with_edits += 1 if abstract.edit_errors else 0
        for other in items:
            if other.id == first.id:
                continue
            try:
                svc.link(who, other.id, abstract.id)
                rep.linked += 1
            except FhirError as exc:
                rep.problems.append(f"suspense {other.source_type}/{other.source_id}: {exc.message}")
    return rep


__all__ = ["RegistryDemoReport", "counties", "county_fips", "county_population", "historical_cases",
           "import_historical", "load_registry"]
