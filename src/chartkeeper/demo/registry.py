"""The cancer registry's demo: a synthetic county population file and the registrar's work done on
the demo population through the registry service (so every registry screen has content).

``county_population(today)`` is the population file the reports page uses when none is uploaded:
the demo's counties (``vocab.PLACES``) over the demo's history years, made by
``incidence.synthetic_population`` with a fixed seed (made-up numbers, plausible in shape).

``load_registry(db)`` screens what the demo import queued, then works the queue as a registrar
would: for each cancer patient the first pathology report becomes a case (its abstract completed
with laterality, grade, Summary Stage 2018 and the county at diagnosis), the patient's later
reports and coded diagnoses are linked to that tumour, and the newest cases are left pending so
the suspense queue has work. One abstract is left with an edit to fix. The choices depend only on
the records (patient and source ids), never on the clock or on row ids, so the same population
gives the same registry.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date

from chartkeeper.db import Database
from chartkeeper.demo.generator import HISTORY_YEARS, TODAY
from chartkeeper.demo.vocab import PLACES
from chartkeeper.fhir.errors import FhirError
from chartkeeper.fhir.service import RecordService
from chartkeeper.registry.incidence import population_csv, synthetic_population
from chartkeeper.registry.service import RegistryService, SuspenseItem
from chartkeeper.security.principal import Principal

POPULATION_SEED = 2000
LEAVE_PENDING = 3  # the newest cancer patients' reports stay in the suspense queue
PAIRED_SITES = ("C34", "C50")  # the demo's paired sites (lung, breast)


def counties() -> list[tuple[str, str]]:
    """(county FIPS, state) of every demo county, once each."""
    return sorted({(p.county_fips, p.state) for p in PLACES})


def county_fips(county_name: str, state: str) -> str | None:
    """The FIPS code of a demo county from its name and state (as the demo writes Address.district)."""
    return next((p.county_fips for p in PLACES if p.county == county_name and p.state == state), None)


def county_population(today: date | None = None) -> str:
    """The demo's population file (CSV, the columns ``incidence.load_population`` reads) for the
    years of the demo's history up to ``today``'s year."""
    last = (today or TODAY).year
    years = list(range(last - HISTORY_YEARS, last + 1))
    return population_csv(synthetic_population(counties(), years, seed=POPULATION_SEED))


@dataclass
class RegistryDemoReport:
    screened: int = 0
    cases: int = 0
    linked: int = 0
    pending: int = 0
    with_edits: int = 0
    problems: list[str] = field(default_factory=list)


def _completion(rng: random.Random, site: str, laterality: str, county: str, city: str) -> dict[str, str]:
    """What the registrar adds to a prefilled abstract: laterality, grade, stage, county at diagnosis."""
    items: dict[str, str] = {}
    if not laterality:
        laterality = (rng.choice("12") if site[:3] in PAIRED_SITES else "0")
    items["laterality"] = laterality
    items["gradeClinical"] = rng.choice("123")
    items["summaryStage2018"] = rng.choices("1237", weights=(45, 25, 15, 15))[0]
    items["diagnosticConfirmation"] = "1"
    if county:
        items["countyAtDx"] = county[2:]
    if city:
        items["addrAtDxCity"] = city[:50]
    return items


def load_registry(db: Database) -> RegistryDemoReport:
    """Screen the demo records into the suspense queue and work it as described above (idempotent:
    a second run finds nothing new to decide)."""
    who = Principal.system("demo-registrar")
    records = RecordService(db)
    svc = RegistryService(db, records)
    rep = RegistryDemoReport()
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
        addr = next(iter(patient.get("address") or []), {})
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


__all__ = ["RegistryDemoReport", "counties", "county_fips", "county_population", "load_registry"]
