"""The cancer registry: the operations the web pages, the REST API and the CLI use.

* Casefinding: ``screen`` (in the caller's transaction: the write listener screens new pathology
  reports and ICD-10-CM Conditions as they are written, or queues them for bulk imports),
  ``casefind`` (a date range, in batches, for the CLI), ``screen_pending`` (what imports queued).
  One suspense row per source resource.
* The suspense queue: ``suspense``, ``suspense_item``, ``suspense_counts``, ``accept`` (a case: registry
  patient + tumour abstract prefilled from the record), ``link`` (to an existing tumour), ``reject``.
* Abstracts: ``abstract``, ``save_abstract`` (every value checked against the NAACCR dictionary, then
  the edits run and stored), ``edits``.
* Follow-up: ``followup_due``, ``followup_letters`` (PDF), ``followup_rate``, ``refresh_follow_up``.
* Exchange: ``import_file``, ``export`` (NAACCR XML through ``registry.naaccr``).

Every operation on a patient's data passes the one policy check (resource type ``RegistryAbstract``,
category ``registry``) and writes its audit entry in the same transaction; restricted patients the
user may not see are left out of lists and counts.

The engines (casefinding, the NAACCR dictionary and XML, the edits) are separate modules, called
only from the adapter section below.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Protocol, cast

import orjson
from sqlalchemy import Connection, Table, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from chartkeeper.coding.codes import CodeFormatError, ICD10CMCode
from chartkeeper.db import Database
from chartkeeper.fhir.errors import FhirError, Issue
from chartkeeper.fhir.models import ResourceRow
from chartkeeper.fhir.service import Change, ListenerDb, RecordService, add_write_listener
from chartkeeper.fhir.store import FhirStore, Stored
from chartkeeper.registry import followup
from chartkeeper.registry.codes import ICDO3Behavior, ICDO3Histology, ICDO3Topography
from chartkeeper.registry.models import (
    ACCEPTED,
    COMPLETE,
    INCOMPLETE,
    LINKED,
    PENDING,
    REJECTED,
    SUSPENSE_STATUSES,
    RegistryPatientRow,
    RegistryPendingRow,
    RegistryTumorRow,
    SuspenseRow,
)
from chartkeeper.security import audit, policy
from chartkeeper.security.policy import Action
from chartkeeper.security.principal import Principal

SUS = cast(Table, SuspenseRow.__table__)
RPAT = cast(Table, RegistryPatientRow.__table__)
TUM = cast(Table, RegistryTumorRow.__table__)
RPEND = cast(Table, RegistryPendingRow.__table__)
RES = cast(Table, ResourceRow.__table__)

RTYPE = "RegistryAbstract"
SYSTEM = Principal.system("registry")
LOINC = "http://loinc.org"
PATHOLOGY_LOINC = "11526-1"
ICD10CM_SYSTEM = ICD10CMCode.system
VERSIONS = ("250", "260")
SOURCE_KINDS = ("pathology", "diagnosis")  # suspense rows: a pathology report, a coded diagnosis
RECORD_TYPES = ("A", "M", "C", "I")
DEFAULT_VERSION = "260"
BATCH = 400
# Casefinding Source (NAACCR item 501): 20 pathology department review, 22 disease index review.
CASEFINDING_PATHOLOGY, CASEFINDING_DISEASE_INDEX = "20", "22"
ANALYTIC_CLASSES = frozenset(f"{n:02d}" for n in (0, 10, 11, 12, 13, 14, 20, 21, 22))
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


class RegistryError(FhirError):
    """A request the registry refuses: a sentence naming the field or item and the fix."""


# ================================================================================================
# Values the interfaces show


@dataclass(frozen=True)
class Span:
    """A phrase of the report: a tumour term (``role`` "finding", with the kind it ended up as) or the
    negation or ambiguous cue that decided it (``role`` "cue")."""
    start: int
    end: int
    phrase: str
    kind: str
    role: str = "finding"


@dataclass(frozen=True)
class Screen:
    """What casefinding said about one source (the adapter's normal form of the engine's result)."""
    reportable: bool
    reason: str = ""
    matches: tuple[Span, ...] = ()
    site: str = ""
    histology: str = ""
    behavior: str = ""
    laterality: str = ""


@dataclass(frozen=True)
class SuspenseItem:
    id: str
    source_type: str
    source_id: str
    patient_id: str | None
    kind: str
    source_date: date | None
    found_at: datetime
    reason: str
    matches: list[Span]
    code: str
    suggested_site: str
    suggested_histology: str
    suggested_behavior: str
    suggested_laterality: str
    link_tumor_id: str | None
    status: str
    decided_by: str | None
    decided_at: datetime | None
    reject_reason: str
    tumor_id: str | None
    text: str | None = None  # the report's text (suspense_item only), for highlighting the spans


@dataclass
class SuspensePage:
    rows: list[SuspenseItem]
    total: int
    patients: dict[str, str] = field(default_factory=dict)  # patient id -> display (name, MRN)


@dataclass(frozen=True)
class EditResult:
    edit_id: str
    severity: str
    items: tuple[str, ...]
    message: str
    tumor_index: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"edit_id": self.edit_id, "severity": self.severity, "items": list(self.items),
                "message": self.message, "tumor_index": self.tumor_index}


@dataclass(frozen=True)
class Abstract:
    id: str
    registry_patient_id: str
    patient_id: str | None
    items: dict[str, str]
    patient_items: dict[str, str]
    primary_site: ICDO3Topography | None
    histology: ICDO3Histology | None
    behavior: ICDO3Behavior | None
    laterality: str
    date_of_diagnosis: date | None
    sequence_number: str
    class_of_case: str
    status: str
    edit_errors: int
    edits: list[EditResult]
    updated_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "registry_patient_id": self.registry_patient_id, "patient_id": self.patient_id,
                "items": self.items, "patient_items": self.patient_items, "primary_site": self.primary_site or "",
                "histology": self.histology or "", "behavior": self.behavior or "", "laterality": self.laterality,
                "date_of_diagnosis": self.date_of_diagnosis.isoformat() if self.date_of_diagnosis else None,
                "sequence_number": self.sequence_number, "class_of_case": self.class_of_case, "status": self.status,
                "edit_errors": self.edit_errors, "edits": [e.as_dict() for e in self.edits],
                "updated_at": self.updated_at.isoformat()}


@dataclass(frozen=True)
class TumorRecord:
    """One stored tumour abstract with its patient's items (keyed by naaccrId), as reports read them."""
    tumor_id: str
    patient_items: dict[str, str]
    items: dict[str, str]


@dataclass
class ScreenCounts:
    screened: int = 0
    queued: int = 0  # new suspense rows
    updated: int = 0
    follow_up: int = 0  # registry patients whose vital status or last contact changed

    def add(self, other: ScreenCounts) -> None:
        self.screened += other.screened
        self.queued += other.queued
        self.updated += other.updated
        self.follow_up += other.follow_up


@dataclass(frozen=True)
class ImportReject:
    line: int | None
    patient_index: int | None
    item_id: str | None
    reason: str


@dataclass
class ImportReport:
    patients: int = 0
    tumors_created: int = 0
    tumors_updated: int = 0
    rejects: list[ImportReject] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"patients": self.patients, "tumors_created": self.tumors_created, "tumors_updated": self.tumors_updated,
                "rejects": [r.__dict__ for r in self.rejects]}


# ================================================================================================
# Adapter: the engines other modules provide. Every call into casefinding, naaccr and edits is here.


@dataclass(frozen=True)
class ItemDef:
    naaccr_id: str
    number: int
    name: str
    length: int
    data_type: str  # text | digits | alpha | mixed | numeric | date
    parent: str  # NaaccrData | Patient | Tumor


class Screener(Protocol):
    def screen_text(self, text: str) -> Screen | None: ...

    def screen_code(self, code: ICD10CMCode) -> Screen | None: ...


class EngineScreener:
    """The casefinding engine (``chartkeeper.registry.casefinding``; its NLP pipeline loads on first
    use). A code the casefinding list marks for review is queued too (the registrar decides)."""

    def screen_text(self, text: str) -> Screen | None:
        from chartkeeper.registry import casefinding

        r = casefinding.screen_text(text)
        return Screen(r.reportable, r.reason,
                      tuple(Span(m.start, m.end, m.phrase, m.kind, m.role) for m in r.matches),
                      str(r.suggested_site or ""), str(r.suggested_histology or ""), str(r.behavior or ""),
                      r.laterality or "")

    def screen_code(self, code: ICD10CMCode) -> Screen | None:
        from chartkeeper.registry import casefinding

        r = casefinding.screen_code(code)
        return Screen(r.to_queue, r.reason, (), str(r.suggested_site or ""), "", str(r.behavior or ""), "")


def same_tumor(existing: dict[str, Any], screen: Screen, new_date: date | None = None) -> bool:
    """Whether a new report describes a tumour the patient already has. With a site and histology on
    both sides, the casefinding engine's rule (site heading, laterality, histology group, timing);
    otherwise (a coded diagnosis has no histology) the same site heading and no contradicting side."""
    site, hist = str(existing.get("primarySite") or ""), str(existing.get("histologicTypeIcdO3") or "")
    from chartkeeper.registry import casefinding as eng

    if site and hist and screen.site and screen.histology:
        try:
            old = eng.TumorKey(ICDO3Topography(site), ICDO3Histology(hist), existing.get("laterality") or None,
                               existing.get("dateOfDiagnosis") if isinstance(existing.get("dateOfDiagnosis"), date)
                               else day_of_naaccr(existing.get("dateOfDiagnosis")))
            new = eng.TumorKey(ICDO3Topography(screen.site), ICDO3Histology(screen.histology), screen.laterality or None,
                               new_date)
        except CodeFormatError:
            pass
        else:
            return bool(eng.same_tumor([old], new).matched)
    if not site or not screen.site or site[:3] != screen.site[:3]:
        return False
    lat, new_lat = str(existing.get("laterality") or ""), screen.laterality
    return not (lat in ("1", "2") and new_lat in ("1", "2") and lat != new_lat)


def run_edits(patient_items: dict[str, str], tumors: list[dict[str, str]]) -> list[EditResult]:
    """The registry edits (``chartkeeper.registry.edits``) as stored on the abstract."""
    from chartkeeper.registry import edits

    return [EditResult(e.edit_id, e.severity, tuple(e.items), e.message, e.tumor_index)
            for e in edits.run_edits(patient_items, tumors)]


def sex_item(version: str) -> str:
    """Sex is item 220 ``sex`` up to NAACCR 25, item 225 ``sexAssignedAtBirth`` from 26."""
    return "sexAssignedAtBirth" if version >= "260" else "sex"


def dictionary(version: str) -> dict[str, ItemDef]:
    """The NAACCR base dictionary of ``version`` (``registry.naaccr``), by naaccrId. The registry keeps
    and exports versions 25 and 26; files of versions 18 to 24 are read for import (with the v23
    table and the items NAACCR retired in v23, as ``registry.naaccr`` reads them)."""
    from chartkeeper.registry import naaccr

    try:
        naaccr.dictionary(version)
    except ValueError:
        raise RegistryError(422, f"naaccr version: {version!r} is not supported; the registry keeps "
                            f"{', '.join(VERSIONS)} and imports 180 to 260.", code="not-supported") from None
    return {str(key): ItemDef(str(key), it.number, it.name, it.length, str(it.data_type), str(it.parent))
            for key, it in naaccr.dictionary(version).items.items()}


def _date_ok(value: str) -> bool:
    if not re.fullmatch(r"\d{4}(\d{2}(\d{2})?)?", value):
        return False
    try:
        date(int(value[:4]), int(value[4:6] or 1), int(value[6:8] or 1))
    except ValueError:
        return False
    return True


def check_value(item: ItemDef, value: str, version: str = DEFAULT_VERSION) -> str | None:
    """A problem sentence for ``value`` in ``item`` of NAACCR ``version`` (the dictionary's length and
    type check, ``registry.naaccr``), or None."""
    from chartkeeper.registry import naaccr

    engine_item = naaccr.dictionary(version).items.get(naaccr.NaaccrId(item.naaccr_id))
    if engine_item is None:
        return "is not an item of this NAACCR version"
    problem = naaccr.check_value(engine_item, value)
    if problem:
        return str(problem)
    if item.data_type == "date" and not _date_ok(value):
        return "must be a date written YYYYMMDD (or YYYY, YYYYMM), and a day that exists"
    return None


def naaccr_read(path: Path) -> tuple[dict[str, str], Iterator[Any]]:
    """(the file's header: naaccrVersion, baseDictionaryUri, recordType; its patients and rejects streamed)."""
    from chartkeeper.registry import naaccr

    reader = naaccr.read(path)
    h = reader.header
    if h is None:  # not NAACCR XML at all (or broken before its first element): the reader says why
        why = next((str(r) for r in reader if isinstance(r, naaccr.Reject)), "it is not a NAACCR XML file")
        raise RegistryError(422, f"{path.name}: {why.rstrip('.')}. Nothing was imported.", code="invalid")
    header = {"naaccrVersion": str(h.version or ""), "baseDictionaryUri": h.base_dictionary_uri,
              "recordType": str(h.record_type.value if h.record_type else "")}
    return header, iter(reader)


def naaccr_write(out: IO[bytes], header: dict[str, str], patients: Iterable[Any], version: str, record_type: str) -> None:
    from chartkeeper.registry import naaccr

    naaccr.write(out, header, patients, version, record_type)


def naaccr_patient(items: dict[str, str], tumors: list[dict[str, str]]) -> Any:
    from chartkeeper.registry import naaccr

    return naaccr.NaaccrPatient(items=items, tumors=tumors, line=0)


# ================================================================================================
# Small helpers


def _fhir_id_ok(value: str) -> bool:
    return bool(_FHIR_ID.fullmatch(value or ""))


def parse_day(value: Any) -> date | None:
    """A FHIR date or dateTime's calendar day (partial dates: the first day)."""
    if not isinstance(value, str) or len(value) < 4:
        return None
    try:
        return date(int(value[:4]), int(value[5:7] or 1) if len(value) >= 7 else 1,
                    int(value[8:10]) if len(value) >= 10 else 1)
    except ValueError:
        return None


def naaccr_day(d: date | None) -> str:
    return d.strftime("%Y%m%d") if d else ""


def day_of_naaccr(value: str | None) -> date | None:
    if not value or not _date_ok(value):
        return None
    return date(int(value[:4]), int(value[4:6] or 1), int(value[6:8] or 1))


def report_text(doc: dict[str, Any]) -> str:
    """The text of a DocumentReference's plain-text attachments."""
    parts = []
    for c in doc.get("content") or ():
        att = c.get("attachment") or {}
        data = att.get("data")
        if data and str(att.get("contentType", "text/plain")).startswith("text/"):
            try:
                parts.append(base64.b64decode(data).decode("utf-8", errors="replace"))
            except ValueError:
                continue
    return "\n".join(parts)


def is_pathology_report(doc: dict[str, Any]) -> bool:
    if doc.get("status") not in (None, "current"):
        return False
    return any(c.get("system") == LOINC and c.get("code") == PATHOLOGY_LOINC
               for c in (doc.get("type") or {}).get("coding") or ())


def icd10cm_codes(cond: dict[str, Any]) -> list[ICD10CMCode]:
    ver = {c.get("code") for c in (cond.get("verificationStatus") or {}).get("coding") or ()}
    if ver & {"entered-in-error", "refuted"}:
        return []
    out = []
    for c in (cond.get("code") or {}).get("coding") or ():
        if c.get("system") == ICD10CM_SYSTEM and c.get("code"):
            code = ICD10CMCode.parse(str(c["code"]))
            if code:
                out.append(code)
    return out


def _source_day(rtype: str, res: dict[str, Any]) -> date | None:
    if rtype == "DocumentReference":
        period = (res.get("context") or {}).get("period") or {}
        return parse_day(period.get("start")) or parse_day(res.get("date"))
    return parse_day(res.get("onsetDateTime")) or parse_day(res.get("recordedDate"))


def _ref_id(ref: Any, rtype: str) -> str | None:
    r = (ref or {}).get("reference", "") if isinstance(ref, dict) else ""
    parts = r.split("/")
    return parts[1] if len(parts) >= 2 and parts[0] == rtype else None


def _codes(text: str, cls: type[Any]) -> Any:
    try:
        return cls(text) if text else None
    except CodeFormatError:
        return None


# ================================================================================================
# First course of treatment, from the record

# Drug names by NAACCR treatment field: public facts (antineoplastic, hormonal and immune therapies).
CHEMO_DRUGS = frozenset({
    "carboplatin", "cisplatin", "oxaliplatin", "cyclophosphamide", "doxorubicin", "epirubicin", "paclitaxel",
    "docetaxel", "fluorouracil", "capecitabine", "gemcitabine", "pemetrexed", "etoposide", "vinorelbine",
    "irinotecan", "methotrexate", "trastuzumab", "pertuzumab", "bevacizumab", "temozolomide", "vincristine",
})
HORMONE_DRUGS = frozenset({
    "tamoxifen", "anastrozole", "letrozole", "exemestane", "fulvestrant", "leuprolide", "goserelin", "bicalutamide",
    "enzalutamide", "abiraterone", "degarelix", "megestrol",
})
BRM_DRUGS = frozenset({"pembrolizumab", "nivolumab", "ipilimumab", "atezolizumab", "durvalumab", "interferon",
                       "aldesleukin", "bcg"})
# Definitive surgery words by site group (the first three characters of the topography).
SURGERY_WORDS: dict[str, tuple[str, ...]] = {
    "C50": ("mastectomy", "lumpectomy"),
    "C34": ("lobectomy", "pneumonectomy", "segmentectomy", "wedge resection"),
    "C18": ("colectomy", "hemicolectomy", "sigmoidectomy", "colon resection"),
    "C19": ("colectomy", "anterior resection"),
    "C20": ("anterior resection", "proctectomy", "abdominoperineal"),
    "C61": ("prostatectomy",),
    "C44": ("excision", "mohs"),
    "C67": ("cystectomy", "transurethral resection"),
    "C73": ("thyroidectomy",),
    "C64": ("nephrectomy",),
}


@dataclass
class FirstCourse:
    surgery: date | None = None
    radiation: date | None = None
    chemo: date | None = None
    chemo_agents: set[str] = field(default_factory=set)
    hormone: date | None = None
    brm: date | None = None

    def any(self) -> bool:
        return any((self.surgery, self.radiation, self.chemo, self.hormone, self.brm))


def _earliest(a: date | None, b: date | None) -> date | None:
    return min(x for x in (a, b) if x) if (a or b) else None


def first_course(resources: dict[str, list[dict[str, Any]]], dx: date | None, site: str,
                 window_days: int = 365) -> FirstCourse:
    """Treatment dates from the record: surgery by a procedure on the primary site, radiation by an
    ICD-10-PCS radiation code (section D) or its text, systemic therapy by the drug's name in
    MedicationRequests (active or completed), all within ``window_days`` of diagnosis."""
    fc = FirstCourse()
    if dx is None:
        return fc
    lo, hi = dx - timedelta(days=30), dx + timedelta(days=window_days)
    words = SURGERY_WORDS.get(site[:3], ())
    for pr in resources.get("Procedure", ()):
        if pr.get("status") not in ("completed", "in-progress"):
            continue
        when = parse_day(pr.get("performedDateTime")) or parse_day((pr.get("performedPeriod") or {}).get("start"))
        if when is None or not lo <= when <= hi:
            continue
        code = pr.get("code") or {}
        text = " ".join([code.get("text", ""), *(c.get("display", "") for c in code.get("coding") or ())]).lower()
        pcs = [c.get("code", "") for c in code.get("coding") or () if "ICD10" in str(c.get("system", ""))]
        if any(p[:1] == "D" and len(p) == 7 for p in pcs) or "radiation" in text or "radiotherapy" in text:
            fc.radiation = _earliest(fc.radiation, when)
        elif words and any(w in text for w in words) and when >= dx - timedelta(days=1):
            fc.surgery = _earliest(fc.surgery, when)
    for mr in resources.get("MedicationRequest", ()):
        if mr.get("status") not in ("active", "completed", "on-hold"):
            continue
        when = parse_day(mr.get("authoredOn"))
        if when is None or not dx <= when <= hi:
            continue
        med = mr.get("medicationCodeableConcept") or {}
        text = " ".join([med.get("text", ""), *(c.get("display", "") for c in med.get("coding") or ())]).lower()
        names = set(re.findall(r"[a-z]+", text))
        if names & CHEMO_DRUGS:
            fc.chemo = _earliest(fc.chemo, when)
            fc.chemo_agents |= names & CHEMO_DRUGS
        if names & HORMONE_DRUGS:
            fc.hormone = _earliest(fc.hormone, when)
        if names & BRM_DRUGS:
            fc.brm = _earliest(fc.brm, when)
    return fc


# OMB race categories (US Core race extension) to NAACCR Race 1 (item 160).
OMB_RACE = {"2106-3": "01", "2054-5": "02", "1002-5": "03", "2028-9": "96", "2076-8": "97", "2131-1": "98"}
US_CORE_RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
US_CORE_BIRTHSEX = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex"


def patient_items_from(patient: dict[str, Any], version: str) -> dict[str, str]:
    """Patient-level identity and demographics (name, birth date, sex, race) from a FHIR Patient."""
    items: dict[str, str] = {}
    names = patient.get("name") or []
    name = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
    if name.get("family"):
        items["nameLast"] = str(name["family"])[:40]
    if name.get("given"):
        items["nameFirst"] = str(name["given"][0])[:40]
    birth = patient.get("birthDate")
    if isinstance(birth, str) and len(birth) >= 4:
        items["dateOfBirth"] = birth.replace("-", "")[:8]
    sex = ""
    for ext in patient.get("extension") or ():
        if ext.get("url") == US_CORE_BIRTHSEX:
            sex = {"M": "1", "F": "2", "UNK": "9"}.get(str(ext.get("valueCode")), "")
        if ext.get("url") == US_CORE_RACE:
            for sub in ext.get("extension") or ():
                code = (sub.get("valueCoding") or {}).get("code")
                if sub.get("url") == "ombCategory" and code in OMB_RACE and "race1" not in items:
                    items["race1"] = OMB_RACE[code]
    if not sex:
        sex = {"male": "1", "female": "2", "unknown": "9"}.get(str(patient.get("gender")), "")
    if sex:
        items[sex_item(version)] = sex
    return items


def tumor_address_items(patient: dict[str, Any]) -> dict[str, str]:
    items: dict[str, str] = {}
    mrn = next((i.get("value") for i in patient.get("identifier") or ()
                if any(c.get("code") == "MR" for c in (i.get("type") or {}).get("coding") or ())), None)
    mrn = mrn or next((i.get("value") for i in patient.get("identifier") or () if i.get("value")), None)
    if mrn:
        items["medicalRecordNumber"] = str(mrn)[:15]
    addrs = patient.get("address") or []
    addr = next((a for a in addrs if a.get("use") == "home"), addrs[0] if addrs else {})
    state = str(addr.get("state") or "")
    if len(state) == 2 and state.isalpha():
        items["addrAtDxState"] = state.upper()
    postal = re.sub(r"\D", "", str(addr.get("postalCode") or ""))
    if len(postal) in (5, 9):
        items["addrAtDxPostalCode"] = postal
    return items


# ================================================================================================
# The service


class RegistryService:
    def __init__(self, db: Database, records: RecordService | None = None, *, screener: Screener | None = None,
                 naaccr_version: str = DEFAULT_VERSION) -> None:
        if naaccr_version not in VERSIONS:
            raise RegistryError(422, f"naaccr version: {naaccr_version!r} is not supported; use one of "
                                f"{', '.join(VERSIONS)}.")
        self.db = db
        self.records = records or RecordService(db)
        self.store: FhirStore = self.records.store
        self.screener: Screener = screener or EngineScreener()
        self.version = naaccr_version

    # ============================================================================================
    # Casefinding

    def screen(self, conn: Connection, sources: Iterable[Stored], *, principal: Principal = SYSTEM,
               now: datetime | None = None) -> ScreenCounts:
        """Screen pathology reports and ICD-10-CM Conditions into the suspense queue, in the caller's
        transaction. One row per source: a source screened again updates its row while it is pending
        and never touches a decided one."""
        now = now or datetime.now(UTC)
        counts = ScreenCounts()
        found: list[tuple[Stored, dict[str, Any], Screen, str, str]] = []
        for s in sources:
            if s.content is None or s.resource_type not in ("DocumentReference", "Condition"):
                continue
            res = s.resource()
            if s.resource_type == "DocumentReference":
                if not is_pathology_report(res):
                    continue
                counts.screened += 1
                text = report_text(res)
                result = self.screener.screen_text(text) if text.strip() else None
                if result is not None and result.reportable:
                    found.append((s, res, result, "pathology", ""))
            else:
                codes = icd10cm_codes(res)
                if not codes:
                    continue
                counts.screened += 1
                for cm in codes:
                    result = self.screener.screen_code(cm)
                    if result is not None and result.reportable:
                        found.append((s, res, result, "diagnosis", str(cm)))
                        break
        if not found:
            return counts
        keys = [(s.resource_type, s.id) for s, *_ in found]
        existing = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            for r in conn.execute(select(SUS).where(or_(*[(SUS.c.source_type == t) & (SUS.c.source_id == d)
                                                         for t, d in chunk]))):
                existing[(r.source_type, r.source_id)] = r
        tumors = self._tumors_by_patient(conn, {s.patient_id for s, *_ in found if s.patient_id})
        by_patient: Counter[str | None] = Counter()
        for s, res, result, kind, code in found:
            link = None
            for t in tumors.get(s.patient_id or "", ()):
                if same_tumor({"primarySite": t.primary_site, "laterality": t.laterality, "histologicTypeIcdO3": t.histology,
                               "dateOfDiagnosis": t.date_of_diagnosis}, result, _source_day(s.resource_type, res)):
                    link = t.id
                    break
            values = {
                "source_version": s.version_id, "patient_id": s.patient_id, "kind": kind,
                "source_date": _source_day(s.resource_type, res), "reason": result.reason[:500],
                "matches": orjson.dumps([m.__dict__ for m in result.matches]).decode(), "code": code,
                "suggested_site": _clean_code(result.site, ICDO3Topography),
                "suggested_histology": _clean_code(result.histology, ICDO3Histology),
                "suggested_behavior": _clean_code(result.behavior, ICDO3Behavior),
                "suggested_laterality": result.laterality[:1] if result.laterality[:1].isdigit() else "",
                "link_tumor_id": link,
            }
            old = existing.get((s.resource_type, s.id))
            if old is None:
                conn.execute(insert(SUS).values(id=str(uuid.uuid4()), source_type=s.resource_type, source_id=s.id,
                                                found_at=now, status=PENDING, **values))
                counts.queued += 1
                by_patient[s.patient_id] += 1
            elif old.status == PENDING and old.source_version != s.version_id:
                conn.execute(update(SUS).where(SUS.c.id == old.id).values(**values))
                counts.updated += 1
                by_patient[s.patient_id] += 1
        if by_patient:
            audit.record_many(conn, principal, "registry.casefind", "success", [
                {"patient_id": pid, "resource_type": RTYPE, "detail": f"{n} reportable sources in the suspense queue"}
                for pid, n in by_patient.items()])
        return counts

    def _tumors_by_patient(self, conn: Connection, pids: set[str]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = defaultdict(list)
        ids = sorted(p for p in pids if p)
        for i in range(0, len(ids), 500):
            for r in conn.execute(select(TUM.c.id, TUM.c.patient_id, TUM.c.primary_site, TUM.c.laterality,
                                         TUM.c.histology, TUM.c.date_of_diagnosis).where(TUM.c.patient_id.in_(ids[i:i + 500]))
                                  .order_by(TUM.c.created_at)):
                out[r.patient_id].append(r)
        return out

    def screen_changes(self, conn: Connection, changes: Sequence[Change]) -> ScreenCounts:
        """What the write listener does for an interactive write: screen new or changed reports and
        diagnoses, and update follow-up for registry patients who died or were seen."""
        keys = [(c.resource_type, c.id) for c in changes
                if c.outcome != "deleted" and c.resource_type in ("DocumentReference", "Condition")]
        counts = self.screen(conn, self.store.read_many(conn, keys)) if keys else ScreenCounts()
        pids = {c.patient_id for c in changes if c.patient_id and c.outcome != "deleted"
                and c.resource_type in FOLLOW_UP_TYPES}
        if pids:
            counts.follow_up += self._refresh(conn, pids)
        return counts

    def _source_ids(self, conn: Connection) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in conn.execute(
            select(RES.c.resource_type, RES.c.id).where(RES.c.resource_type.in_(("DocumentReference", "Condition")),
                                                        RES.c.deleted.is_(False))
            .order_by(RES.c.resource_type, RES.c.id))]

    def casefind(self, principal: Principal, *, since: date | None = None, until: date | None = None,
                 progress: Callable[[int, int], None] | None = None) -> ScreenCounts:
        """Screen every pathology report and coded diagnosis (dated in [since, until) when given), in
        batches of their own transactions. Running it again adds nothing new."""
        if since and until and since >= until:
            raise RegistryError(422, "since must be before until.")
        with self.db.begin() as conn:
            self.records.authorize(conn, principal, Action.CREATE, RTYPE, None)
            keys = self._source_ids(conn)
        total = ScreenCounts()
        for i in range(0, len(keys), BATCH):
            with self.db.begin() as conn:
                batch = [s for s in self.store.read_many(conn, keys[i:i + BATCH]) if _in_range(s, since, until)]
                total.add(self.screen(conn, batch, principal=principal))
            if progress:
                progress(min(i + BATCH, len(keys)), len(keys))
        with self.db.begin() as conn:
            audit.record(conn, principal, "registry.casefind", "success", resource_type=RTYPE,
                         detail=f"casefinding {since or 'start'} to {until or 'now'}: {total.screened} screened, "
                                f"{total.queued} new in suspense")
        return total

    def screen_pending(self, principal: Principal, *, progress: Callable[[int, int], None] | None = None) -> ScreenCounts:
        """Screen what bulk imports queued (reports, diagnoses) and refresh follow-up of the patients
        they touched."""
        with self.db.begin() as conn:
            self.records.authorize(conn, principal, Action.CREATE, RTYPE, None)
            keys = [(r[0], r[1]) for r in conn.execute(select(RPEND.c.resource_type, RPEND.c.resource_id)
                                                       .order_by(RPEND.c.resource_type, RPEND.c.resource_id))]
        total = ScreenCounts()
        for i in range(0, len(keys), BATCH):
            chunk = keys[i:i + BATCH]
            with self.db.begin() as conn:
                sources = [k for k in chunk if k[0] != "Patient"]
                total.add(self.screen(conn, self.store.read_many(conn, sources), principal=principal))
                pids = {k[1] for k in chunk if k[0] == "Patient"}
                if pids:
                    total.follow_up += self._refresh(conn, pids, principal=principal)
                for rtype in {k[0] for k in chunk}:
                    conn.execute(delete(RPEND).where(RPEND.c.resource_type == rtype,
                                                     RPEND.c.resource_id.in_([k[1] for k in chunk if k[0] == rtype])))
            if progress:
                progress(min(i + BATCH, len(keys)), len(keys))
        return total

    # ============================================================================================
    # The suspense queue

    def _item(self, r: Any, text: str | None = None) -> SuspenseItem:
        return SuspenseItem(
            id=r.id, source_type=r.source_type, source_id=r.source_id, patient_id=r.patient_id, kind=r.kind,
            source_date=r.source_date, found_at=r.found_at, reason=r.reason,
            matches=[Span(**m) for m in orjson.loads(r.matches or "[]")], code=r.code,
            suggested_site=r.suggested_site, suggested_histology=r.suggested_histology,
            suggested_behavior=r.suggested_behavior, suggested_laterality=r.suggested_laterality,
            link_tumor_id=r.link_tumor_id, status=r.status, decided_by=r.decided_by, decided_at=r.decided_at,
            reject_reason=r.reject_reason, tumor_id=r.tumor_id, text=text)

    @staticmethod
    def _visible_where(hidden: set[str], col: Any) -> list[Any]:
        return [or_(col.is_(None), col.not_in(sorted(hidden)))] if hidden else []

    def suspense(self, principal: Principal, *, status: str = PENDING, limit: int = 100,
                 offset: int = 0, kind: str | None = None) -> SuspensePage:
        """The registrar's suspense queue, oldest source first (``kind``: only pathology reports or
        only coded diagnoses). Restricted patients the user may not see are left out of rows and
        total; each patient shown is audited."""
        if status not in (*SUSPENSE_STATUSES, "all"):
            raise RegistryError(422, f"status: {status[:20]!r} is not a suspense status; use one of "
                                f"{', '.join(SUSPENSE_STATUSES)} or all.")
        if kind is not None and kind not in SOURCE_KINDS:
            raise RegistryError(422, f"source: {kind[:20]!r} is not a casefinding source; use one of "
                                f"{', '.join(SOURCE_KINDS)}.")
        if not 1 <= limit <= 500:
            raise RegistryError(422, "limit must be between 1 and 500.")
        with self.db.begin() as conn:
            self.records.authorize(conn, principal, Action.SEARCH, RTYPE, None)
            where = self._visible_where(policy.hidden_patients(conn, principal), SUS.c.patient_id)
            if status != "all":
                where.append(SUS.c.status == status)
            if kind is not None:
                where.append(SUS.c.kind == kind)
            total = int(conn.execute(select(func.count()).select_from(SUS).where(*where)).scalar_one())
            rows = [self._item(r) for r in conn.execute(select(SUS).where(*where).order_by(
                SUS.c.source_date, SUS.c.found_at, SUS.c.id).limit(limit).offset(offset))]
            page = SuspensePage(rows, total, self._patient_labels(conn, {r.patient_id for r in rows if r.patient_id}))
            self._audit_patients(conn, principal, Action.SEARCH, [r.patient_id for r in rows], "suspense queue")
            return page

    def suspense_counts(self, principal: Principal) -> dict[str, int]:
        """Suspense rows by status (restricted patients the user may not see left out)."""
        with self.db.begin() as conn:
            self.records.authorize(conn, principal, Action.SEARCH, RTYPE, None)
            where = self._visible_where(policy.hidden_patients(conn, principal), SUS.c.patient_id)
            got: dict[str, int] = {str(k): int(v) for k, v in conn.execute(
                select(SUS.c.status, func.count()).where(*where).group_by(SUS.c.status))}
            self.records.audit(conn, principal, Action.SEARCH, resource_type=RTYPE, detail="suspense counts")
            return {s: int(got.get(s, 0)) for s in SUSPENSE_STATUSES}

    def pending_by_source(self, principal: Principal) -> dict[str, int]:
        """Pending suspense rows by casefinding source (pathology report, coded diagnosis), restricted
        patients the user may not see left out."""
        with self.db.begin() as conn:
            self.records.authorize(conn, principal, Action.SEARCH, RTYPE, None)
            where = self._visible_where(policy.hidden_patients(conn, principal), SUS.c.patient_id)
            got = {str(k): int(v) for k, v in conn.execute(
                select(SUS.c.kind, func.count()).where(SUS.c.status == PENDING, *where).group_by(SUS.c.kind))}
            self.records.audit(conn, principal, Action.SEARCH, resource_type=RTYPE, detail="pending suspense by source")
            return {k: got.get(k, 0) for k in SOURCE_KINDS}

    def _one_suspense(self, conn: Connection, principal: Principal, sid: str, action: Action) -> Any:
        row = conn.execute(select(SUS).where(SUS.c.id == sid)).first() if _fhir_id_ok(sid) else None
        if row is None:
            self.records.authorize(conn, principal, action, RTYPE, None)
            raise RegistryError(404, f"There is no suspense item {sid[:64]!r}; it may have been decided. Reload the "
                                "queue.", code="not-found")
        self.records.authorize(conn, principal, action, RTYPE, row.patient_id, row.id)
        return row

    def suspense_item(self, principal: Principal, suspense_id: str) -> SuspenseItem:
        """One suspense item with its report's text, so the matching spans can be highlighted."""
        with self.db.begin() as conn:
            row = self._one_suspense(conn, principal, suspense_id, Action.READ)
            text = None
            try:
                src = self.store.read(conn, row.source_type, row.source_id).resource()
                self.records.authorize(conn, principal, Action.READ, row.source_type, row.patient_id, row.source_id)
                text = report_text(src) if row.source_type == "DocumentReference" else (src.get("code") or {}).get("text")
            except FhirError as err:
                if err.status == 403:
                    raise
            self.records.audit(conn, principal, Action.READ, resource_type=RTYPE, resource_id=row.id,
                               patient_id=row.patient_id, detail=f"suspense item; source {row.source_type}/{row.source_id}")
            return self._item(row, text)

    def reject(self, principal: Principal, suspense_id: str, reason: str) -> SuspenseItem:
        """Not a case: the registrar says why (kept with the row)."""
        reason = (reason or "").strip()
        if len(reason) < 5:
            raise RegistryError(422, "reason: say why this is not a reportable case (at least 5 characters), e.g. "
                                "\"benign: no malignancy on final pathology\".", code="required")
        with self.db.begin() as conn:
            row = self._pending(conn, principal, suspense_id)
            now = datetime.now(UTC)
            conn.execute(update(SUS).where(SUS.c.id == row.id).values(
                status=REJECTED, reject_reason=reason[:1000], decided_by=principal.user_id, decided_at=now))
            self.records.audit(conn, principal, "registry.reject", resource_type=RTYPE, resource_id=row.id,
                               patient_id=row.patient_id, detail="suspense item rejected")
            return self._item(conn.execute(select(SUS).where(SUS.c.id == row.id)).one())

    def _pending(self, conn: Connection, principal: Principal, suspense_id: str) -> Any:
        row = self._one_suspense(conn, principal, suspense_id, Action.UPDATE)
        if row.status != PENDING:
            raise RegistryError(409, f"This suspense item is already {row.status}; reload the queue.", code="conflict")
        return row

    def link(self, principal: Principal, suspense_id: str, tumor_id: str) -> SuspenseItem:
        """This report is about a tumour already abstracted: link it, making no new case."""
        with self.db.begin() as conn:
            row = self._pending(conn, principal, suspense_id)
            tum = conn.execute(select(TUM.c.id, TUM.c.patient_id).where(TUM.c.id == tumor_id)).first() \
                if _fhir_id_ok(tumor_id) else None
            if tum is None or tum.patient_id != row.patient_id:
                raise RegistryError(422, "tumor: there is no tumour abstract with that id for this patient; choose one "
                                    "of the patient's tumours.", code="invalid")
            conn.execute(update(SUS).where(SUS.c.id == row.id).values(
                status=LINKED, tumor_id=tum.id, decided_by=principal.user_id, decided_at=datetime.now(UTC)))
            self.records.audit(conn, principal, "registry.link", resource_type=RTYPE, resource_id=tum.id,
                               patient_id=row.patient_id, detail=f"suspense item {row.id} linked to the tumour")
            return self._item(conn.execute(select(SUS).where(SUS.c.id == row.id)).one())

    def accept(self, principal: Principal, suspense_id: str, *, new_primary: bool = False,
               now: datetime | None = None) -> Abstract:
        """A case: the registry patient (made on the patient's first tumour) and a tumour abstract,
        prefilled from the record. Where the patient already has a tumour of the same site, the
        registrar links instead, or says it is a new primary (``new_primary``)."""
        now = now or datetime.now(UTC)
        try:
            return self._accept(principal, suspense_id, new_primary, now)
        except IntegrityError:
            # Two registrars made this patient's first case at the same moment (PostgreSQL): one wins.
            raise RegistryError(409, "Another case for this patient was being made at the same moment; reload the "
                                "queue and try again.", code="conflict") from None

    def _accept(self, principal: Principal, suspense_id: str, new_primary: bool, now: datetime) -> Abstract:
        with self.db.begin() as conn:
            row = self._pending(conn, principal, suspense_id)
            self.records.authorize(conn, principal, Action.CREATE, RTYPE, row.patient_id)
            if row.patient_id is None:
                raise RegistryError(422, "This source names no patient, so no case can be made from it; reject it "
                                    "with the reason.", code="invalid")
            if row.link_tumor_id and not new_primary:
                exists = conn.execute(select(TUM.c.id).where(TUM.c.id == row.link_tumor_id)).first()
                if exists:
                    raise RegistryError(409, "The patient already has a tumour of this site: link this report to "
                                        f"tumour {row.link_tumor_id} instead, or accept it as a new primary "
                                        "(new_primary) if it is one.", code="conflict")
            self.records.authorize(conn, principal, Action.READ, "Patient", row.patient_id, row.patient_id)
            tumor_id = self._make_case(conn, principal, row, now)
            conn.execute(update(SUS).where(SUS.c.id == row.id).values(
                status=ACCEPTED, tumor_id=tumor_id, decided_by=principal.user_id, decided_at=now))
            # Other reports of this tumour waiting in the queue: suggest linking them to it.
            site = conn.execute(select(TUM.c.primary_site, TUM.c.laterality, TUM.c.histology, TUM.c.date_of_diagnosis)
                                .where(TUM.c.id == tumor_id)).one()
            for other in conn.execute(select(SUS).where(SUS.c.patient_id == row.patient_id, SUS.c.status == PENDING,
                                                        SUS.c.link_tumor_id.is_(None))).all():
                if same_tumor({"primarySite": site.primary_site, "laterality": site.laterality,
                               "histologicTypeIcdO3": site.histology, "dateOfDiagnosis": site.date_of_diagnosis},
                              Screen(True, site=other.suggested_site, histology=other.suggested_histology,
                                     laterality=other.suggested_laterality), other.source_date):
                    conn.execute(update(SUS).where(SUS.c.id == other.id).values(link_tumor_id=tumor_id))
            self.records.audit(conn, principal, "registry.accept", resource_type=RTYPE, resource_id=tumor_id,
                               patient_id=row.patient_id,
                               detail=f"case made from {row.source_type}/{row.source_id}; record read for prefill")
            return self._abstract(conn, tumor_id)

    def _make_case(self, conn: Connection, principal: Principal, row: Any, now: datetime) -> str:
        pid = row.patient_id
        patient = self.store.read(conn, "Patient", pid).resource()
        resources = self._patient_resources(conn, pid, ("Encounter", "Procedure", "MedicationRequest"))
        rp = conn.execute(select(RPAT).where(RPAT.c.patient_id == pid)).first()
        dx = row.source_date
        if rp is None:
            number = self._next_patient_number(conn)
            items = {"patientIdNumber": number, **patient_items_from(patient, self.version)}
            vital, dlc = followup.status_from_record(patient, resources.get("Encounter", ()))
            rp_id = str(uuid.uuid4())
            conn.execute(insert(RPAT).values(id=rp_id, patient_id=pid, patient_id_number=number, items="{}",
                                             vital_status="", date_of_last_contact=None, created_at=now, updated_at=now))
            items.update(followup.items_for(vital, dlc))
            conn.execute(update(RPAT).where(RPAT.c.id == rp_id).values(
                items=orjson.dumps(items).decode(), vital_status=vital, date_of_last_contact=dlc))
            rp = conn.execute(select(RPAT).where(RPAT.c.id == rp_id)).one()
        siblings = conn.execute(select(TUM.c.id, TUM.c["items"]).where(TUM.c.registry_patient_id == rp.id)
                                .order_by(TUM.c.created_at)).all()
        site = row.suggested_site
        t: dict[str, str] = {
            **tumor_address_items(patient),
            "tumorRecordNumber": f"{len(siblings) + 1:02d}",
            "accessionNumberHosp": f"{(dx or now.date()).year:04d}{int(rp.patient_id_number) % 100000:05d}",
            "sequenceNumberHospital": "00" if not siblings else f"{len(siblings) + 1:02d}",
            "casefindingSource": CASEFINDING_PATHOLOGY if row.kind == "pathology" else CASEFINDING_DISEASE_INDEX,
        }
        if dx:
            t["dateOfDiagnosis"] = naaccr_day(dx)
            t["dateOf1stContact"] = naaccr_day(dx)
        for key, value in (("primarySite", site), ("histologicTypeIcdO3", row.suggested_histology),
                           ("behaviorCodeIcdO3", row.suggested_behavior), ("laterality", row.suggested_laterality)):
            if value:
                t[key] = value
        if row.kind == "pathology":
            t["diagnosticConfirmation"] = "1"  # positive histology
        fc = first_course(resources, dx, site)
        for key, when in (("rxDateSurgery", fc.surgery), ("rxDateMostDefinSurg", fc.surgery),
                          ("rxDateRadiation", fc.radiation), ("rxDateChemo", fc.chemo),
                          ("rxDateHormone", fc.hormone), ("rxDateBrm", fc.brm)):
            if when:
                t[key] = naaccr_day(when)
        if fc.chemo:
            t["rxSummChemo"] = "03" if len(fc.chemo_agents) > 1 else "02"
        if fc.hormone:
            t["rxSummHormone"] = "01"
        if fc.brm:
            t["rxSummBrm"] = "01"
        # Diagnosed here (the report is ours); 14 when the record shows first-course treatment here,
        # else 10 (diagnosed here, treatment here NOS): the registrar confirms.
        t["classOfCase"] = "14" if fc.any() else "10"
        if len(siblings) == 1:
            first = orjson.loads(siblings[0].items or "{}")
            if first.get("sequenceNumberHospital") == "00":
                first["sequenceNumberHospital"] = "01"
                conn.execute(update(TUM).where(TUM.c.id == siblings[0].id).values(
                    items=orjson.dumps(first).decode(), sequence_number="01", updated_at=now))
        tumor_id = str(uuid.uuid4())
        conn.execute(insert(TUM).values(id=tumor_id, registry_patient_id=rp.id, patient_id=pid, items="{}",
                                        source_suspense_id=row.id, created_at=now, updated_at=now,
                                        updated_by=principal.user_id))
        self._store_tumor(conn, tumor_id, rp, t, orjson.loads(rp.items or "{}"), principal, now)
        return tumor_id

    def _next_patient_number(self, conn: Connection) -> str:
        top = conn.execute(select(func.max(RPAT.c.patient_id_number))).scalar_one()
        return f"{int(top or 0) + 1:08d}"

    def _patient_resources(self, conn: Connection, pid: str, types: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        keys = [(r[0], r[1]) for r in conn.execute(select(RES.c.resource_type, RES.c.id).where(
            RES.c.patient_id == pid, RES.c.resource_type.in_(types), RES.c.deleted.is_(False)))]
        out: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for s in self.store.read_many(conn, keys):
            out[s.resource_type].append(s.resource())
        return out

    # ============================================================================================
    # Abstracts

    def _abstract(self, conn: Connection, tumor_id: str) -> Abstract:
        r = conn.execute(select(TUM).where(TUM.c.id == tumor_id)).one()
        rp = conn.execute(select(RPAT.c["items"]).where(RPAT.c.id == r.registry_patient_id)).one()
        edits = [EditResult(e["edit_id"], e["severity"], tuple(e.get("items") or ()), e["message"], e.get("tumor_index"))
                 for e in orjson.loads(r.edits or "[]")]
        return Abstract(
            id=r.id, registry_patient_id=r.registry_patient_id, patient_id=r.patient_id, items=orjson.loads(r.items),
            patient_items=orjson.loads(rp.items), primary_site=_codes(r.primary_site, ICDO3Topography),
            histology=_codes(r.histology, ICDO3Histology), behavior=_codes(r.behavior, ICDO3Behavior),
            laterality=r.laterality, date_of_diagnosis=r.date_of_diagnosis, sequence_number=r.sequence_number,
            class_of_case=r.class_of_case, status=r.status, edit_errors=r.edit_errors, edits=edits,
            updated_at=r.updated_at)

    def _one_tumor(self, conn: Connection, principal: Principal, tumor_id: str, action: Action) -> Any:
        row = conn.execute(select(TUM.c.id, TUM.c.patient_id, TUM.c.registry_patient_id).where(TUM.c.id == tumor_id)
                           ).first() if _fhir_id_ok(tumor_id) else None
        if row is None:
            self.records.authorize(conn, principal, action, RTYPE, None)
            raise RegistryError(404, f"There is no tumour abstract {tumor_id[:64]!r}.", code="not-found")
        self.records.authorize(conn, principal, action, RTYPE, row.patient_id, row.id)
        return row

    def abstract(self, principal: Principal, tumor_id: str) -> Abstract:
        with self.db.begin() as conn:
            row = self._one_tumor(conn, principal, tumor_id, Action.READ)
            self.records.audit(conn, principal, Action.READ, resource_type=RTYPE, resource_id=row.id,
                               patient_id=row.patient_id)
            return self._abstract(conn, row.id)

    def abstracts(self, principal: Principal, patient_id: str) -> list[Abstract]:
        """A patient's tumour abstracts, first tumour first."""
        with self.db.begin() as conn:
            self.records.authorize(conn, principal, Action.READ, RTYPE, patient_id)
            ids = [r[0] for r in conn.execute(select(TUM.c.id).where(TUM.c.patient_id == patient_id)
                                              .order_by(TUM.c.created_at))]
            self.records.audit(conn, principal, Action.READ, resource_type=RTYPE, patient_id=patient_id,
                               detail=f"{len(ids)} tumour abstracts")
            return [self._abstract(conn, i) for i in ids]

    def edits(self, principal: Principal, tumor_id: str) -> list[EditResult]:
        """The edits of the last save (run again on every save)."""
        return self.abstract(principal, tumor_id).edits

    def check_items(self, items: dict[str, Any], parent: str, *, today: date | None = None,
                    version: str | None = None) -> list[Issue]:
        """Every value checked against the dictionary (of ``version``, default the registry's): known
        item, right level, length, type, valid codes and possible dates. One issue per bad value,
        naming the item id and number and the fix."""
        today = today or datetime.now(UTC).date()
        version = version or self.version
        d = dictionary(version)
        issues = []
        for key, raw in items.items():
            if raw is None or raw == "":
                continue
            item = d.get(key)
            if item is None:
                other = "sex" if key == "sexAssignedAtBirth" else "sexAssignedAtBirth" if key == "sex" else None
                hint = (f" (NAACCR {version} uses {sex_item(version)} for this)" if other else
                        "; check the spelling against the NAACCR data dictionary")
                issues.append(Issue(f"{str(key)[:64]}: there is no such item in NAACCR version {version}{hint}.",
                                    path=str(key)[:64]))
                continue
            label = f"{key} ({item.number})"
            if item.parent != parent:
                issues.append(Issue(f"{label}: this is a {item.parent}-level item; send it with the "
                                    f"{item.parent.lower()} items, not the {parent.lower()} items.", path=key))
                continue
            if not isinstance(raw, str | int):
                issues.append(Issue(f"{label}: the value must be text, like \"{'C509' if key == 'primarySite' else '1'}\".",
                                    path=key))
                continue
            value = str(raw)
            problem = check_value(item, value, version)
            if problem:
                issues.append(Issue(f"{label}: {value[:40]!r} {problem}; correct the value.", path=key))
                continue
            typed = {"primarySite": ICDO3Topography, "histologicTypeIcdO3": ICDO3Histology,
                     "behaviorCodeIcdO3": ICDO3Behavior}.get(key)
            if typed is not None:
                try:
                    typed(value)
                except CodeFormatError as exc:
                    issues.append(Issue(f"{label}: {exc}", path=key))
                    continue
            if item.data_type == "date" and day_of_naaccr(value) and day_of_naaccr(value) > today:  # type: ignore[operator]
                issues.append(Issue(f"{label}: {value} is in the future; a date must be today or earlier.", path=key))
        return issues

    def save_abstract(self, principal: Principal, tumor_id: str, items: dict[str, Any],
                      patient_items: dict[str, Any] | None = None) -> Abstract:
        """Save changed items (an empty value removes an item). Nothing is saved when any value is bad
        (422 naming each bad item's id and number); then the edits run and are stored with the row."""
        if not isinstance(items, dict) or not isinstance(patient_items or {}, dict):
            raise RegistryError(422, "items: send the NAACCR items as an object keyed by naaccrId, e.g. "
                                "{\"primarySite\": \"C509\"}.")
        issues = self.check_items(items, "Tumor") + self.check_items(patient_items or {}, "Patient")
        if issues:
            raise RegistryError(422, issues=issues)
        now = datetime.now(UTC)
        with self.db.begin() as conn:
            row = self._one_tumor(conn, principal, tumor_id, Action.UPDATE)
            rp = conn.execute(select(RPAT).where(RPAT.c.id == row.registry_patient_id)).one()
            cur = orjson.loads(conn.execute(select(TUM.c["items"]).where(TUM.c.id == row.id)).scalar_one())
            pat = orjson.loads(rp.items or "{}")
            _merge(cur, items)
            _merge(pat, patient_items or {})
            if pat.get("patientIdNumber") != rp.patient_id_number:
                pat["patientIdNumber"] = rp.patient_id_number  # the registry's own number is not edited here
            self._store_tumor(conn, row.id, rp, cur, pat, principal, now)
            changed = sorted({*items, *(patient_items or {})})
            self.records.audit(conn, principal, Action.UPDATE, resource_type=RTYPE, resource_id=row.id,
                               patient_id=row.patient_id, detail=f"items saved: {', '.join(changed)[:150]}")
            return self._abstract(conn, row.id)

    def _store_tumor(self, conn: Connection, tumor_id: str, rp: Any, items: dict[str, str], pat: dict[str, str],
                     principal: Principal, now: datetime) -> None:
        siblings = conn.execute(select(TUM.c.id, TUM.c["items"]).where(TUM.c.registry_patient_id == rp.id)
                                .order_by(TUM.c.created_at)).all()
        tumors = [items if s.id == tumor_id else orjson.loads(s.items or "{}") for s in siblings]
        index = next((i for i, s in enumerate(siblings) if s.id == tumor_id), 0)
        found = [e for e in run_edits(pat, tumors) if e.tumor_index in (None, index)]
        errors = sum(1 for e in found if e.severity == "error")
        required = all(items.get(k) for k in ("primarySite", "histologicTypeIcdO3", "behaviorCodeIcdO3", "dateOfDiagnosis"))
        conn.execute(update(TUM).where(TUM.c.id == tumor_id).values(
            items=orjson.dumps(items).decode(), primary_site=items.get("primarySite", "")[:4],
            histology=items.get("histologicTypeIcdO3", "")[:4], behavior=items.get("behaviorCodeIcdO3", "")[:1],
            laterality=items.get("laterality", "")[:1], date_of_diagnosis=day_of_naaccr(items.get("dateOfDiagnosis")),
            sequence_number=items.get("sequenceNumberHospital", "")[:2], class_of_case=items.get("classOfCase", "")[:2],
            status=COMPLETE if required and errors == 0 else INCOMPLETE, edit_errors=errors,
            edits=orjson.dumps([e.as_dict() for e in found]).decode(), updated_at=now, updated_by=principal.user_id))
        vital = pat.get("vitalStatus", "")
        conn.execute(update(RPAT).where(RPAT.c.id == rp.id).values(
            items=orjson.dumps(pat).decode(), vital_status=vital[:1],
            date_of_last_contact=day_of_naaccr(pat.get("dateOfLastContact")), updated_at=now))

    # ============================================================================================
    # Follow-up

    def _refresh(self, conn: Connection, pids: set[str], *, principal: Principal = SYSTEM) -> int:
        """Vital status and date of last contact of these registry patients, from the record (a
        recorded death, a newer encounter). Returns how many changed."""
        ids = sorted(pids)
        rows: list[Any] = []
        for i in range(0, len(ids), 500):
            rows.extend(conn.execute(select(RPAT).where(RPAT.c.patient_id.in_(ids[i:i + 500]))).all())
        changed = 0
        now = datetime.now(UTC)
        for rp in rows:
            try:
                patient = self.store.read(conn, "Patient", rp.patient_id).resource()
            except FhirError:
                continue
            encs = self._patient_resources(conn, rp.patient_id, ("Encounter",)).get("Encounter", [])
            vital, dlc = followup.status_from_record(patient, encs)
            # A contact recorded by the registry itself (a follow-up letter answered) may be newer.
            if vital == "1" and rp.vital_status == "1" and rp.date_of_last_contact and dlc and rp.date_of_last_contact > dlc:
                dlc = rp.date_of_last_contact
            if (vital, dlc) == (rp.vital_status, rp.date_of_last_contact):
                continue
            items = orjson.loads(rp.items or "{}")
            items.update(followup.items_for(vital, dlc))
            conn.execute(update(RPAT).where(RPAT.c.id == rp.id).values(
                items=orjson.dumps(items).decode(), vital_status=vital, date_of_last_contact=dlc, updated_at=now))
            audit.record(conn, principal, "registry.followup", "success", resource_type=RTYPE, patient_id=rp.patient_id,
                         detail=f"vital status {vital}, last contact {dlc.isoformat() if dlc else '-'} from the record")
            changed += 1
        return changed

    def refresh_follow_up(self, principal: Principal, patient_ids: Iterable[str] | None = None) -> int:
        """Update every registry patient's (or these patients') vital status and date of last contact
        from the record. Returns how many changed."""
        with self.db.begin() as conn:
            self.records.authorize(conn, principal, Action.UPDATE, RTYPE, None)
            pids = set(patient_ids) if patient_ids is not None else {
                r[0] for r in conn.execute(select(RPAT.c.patient_id).where(RPAT.c.patient_id.is_not(None)))}
            for p in sorted(pids):
                self.records.authorize(conn, principal, Action.UPDATE, RTYPE, p)
            n = self._refresh(conn, pids, principal=principal)
            audit.record(conn, principal, "registry.followup", "success", resource_type=RTYPE,
                         detail=f"follow-up refreshed from the record: {n} of {len(pids)} patients changed")
            return n

    def followup_due(self, principal: Principal, *, months: int = 12, now: datetime | None = None,
                     limit: int = 1000) -> list[followup.Due]:
        """Living analytic patients last contacted more than ``months`` months ago, oldest first."""
        if not 1 <= months <= 120:
            raise RegistryError(422, "months must be between 1 and 120.")
        today = (now or datetime.now(UTC)).date()
        with self.db.begin() as conn:
            self.records.authorize(conn, principal, Action.SEARCH, RTYPE, None)
            hidden = policy.hidden_patients(conn, principal)
            due = followup.due(conn, followup.months_before(today, months), hidden, limit=limit)
            labels = self._patient_labels(conn, {d.patient_id for d in due if d.patient_id})
            for d in due:
                d.label = labels.get(d.patient_id or "", d.label)
            self._audit_patients(conn, principal, Action.SEARCH, [d.patient_id for d in due], "follow-up due list")
            return due

    def followup_due_count(self, principal: Principal, *, months: int = 12, now: datetime | None = None) -> int:
        """How many patients are due for follow-up (as ``followup_due``), for counts on a home page:
        audited as one aggregate read, not per patient."""
        if not 1 <= months <= 120:
            raise RegistryError(422, "months must be between 1 and 120.")
        today = (now or datetime.now(UTC)).date()
        with self.db.begin() as conn:
            self.records.authorize(conn, principal, Action.SEARCH, RTYPE, None)
            hidden = policy.hidden_patients(conn, principal)
            n = followup.due_count(conn, followup.months_before(today, months), hidden)
            self.records.audit(conn, principal, Action.SEARCH, resource_type=RTYPE,
                               detail=f"follow-up due count: {n} (aggregate)")
            return n

    def followup_letters(self, principal: Principal, registry_patient_ids: Sequence[str] | None = None, *,
                         months: int = 12, now: datetime | None = None, facility: str = "Cancer Registry",
                         patient_sender: str = "Patient Follow-up Office") -> bytes:
        """Follow-up letters as one PDF, a page per patient: to the patient's physician when the record
        names one, else to the patient (signed by ``patient_sender``, never naming the cancer
        registry or the diagnosis). Without ids: every patient on the due list."""
        today = (now or datetime.now(UTC)).date()
        with self.db.begin() as conn:
            self.records.authorize(conn, principal, Action.EXPORT, RTYPE, None)
            hidden = policy.hidden_patients(conn, principal)
            if registry_patient_ids is None:
                due = followup.due(conn, followup.months_before(today, months), hidden, limit=5000)
            else:
                due = followup.due(conn, None, set(), ids=list(registry_patient_ids), limit=5000)
                found = {d.registry_patient_id for d in due}
                missing = [i for i in registry_patient_ids if i not in found]
                if missing:
                    self.records.authorize(conn, principal, Action.EXPORT, RTYPE, None)
                    raise RegistryError(404, f"There is no living registry patient {missing[0][:64]!r} to write to.",
                                        code="not-found")
                for d in due:
                    self.records.authorize(conn, principal, Action.EXPORT, RTYPE, d.patient_id)
            letters = [self._letter(conn, d, facility, patient_sender, today) for d in due]
            pdf = followup.letters_pdf(letters)
            self._audit_patients(conn, principal, Action.EXPORT, [d.patient_id for d in due], "follow-up letter")
            return pdf

    def _letter(self, conn: Connection, d: followup.Due, facility: str, patient_sender: str,
                today: date) -> followup.Letter:
        patient: dict[str, Any] = {}
        if d.patient_id:
            try:
                patient = self.store.read(conn, "Patient", d.patient_id).resource()
            except FhirError:
                patient = {}
        items = d.patient_items
        name = " ".join(x for x in (items.get("nameFirst", ""), items.get("nameLast", "")) if x) or "the patient"
        gp = next((_ref_id(g, "Practitioner") for g in patient.get("generalPractitioner") or ()
                   if _ref_id(g, "Practitioner")), None)
        if gp is None and d.patient_id:
            encs = self._patient_resources(conn, d.patient_id, ("Encounter",)).get("Encounter", [])
            encs.sort(key=lambda e: (e.get("period") or {}).get("start", ""), reverse=True)
            for e in encs:
                gp = next((_ref_id(p.get("individual"), "Practitioner") for p in e.get("participant") or ()
                           if _ref_id(p.get("individual"), "Practitioner")), None)
                if gp:
                    break
        to_name, to_address = name, followup.address_lines(patient.get("address") or [])
        to_physician = False
        if gp:
            try:
                doc = self.store.read(conn, "Practitioner", gp).resource()
                n = (doc.get("name") or [{}])[0]
                to_name = n.get("text") or " ".join([*n.get("prefix", []), *n.get("given", []), n.get("family", "")]).strip()
                to_name = to_name or "Attending physician"
                to_address = followup.address_lines(doc.get("address") or [])
                to_physician = True
            except FhirError:
                pass
        return followup.Letter(facility=facility, dated=today, to_name=to_name, to_address=to_address,
                               to_physician=to_physician, patient_name=name,
                               birth_date=day_of_naaccr(items.get("dateOfBirth")),
                               accession=d.accession, last_contact=d.date_of_last_contact,
                               patient_sender=patient_sender)

    def followup_rate(self, principal: Principal, *, report_date: date | None = None) -> followup.Rate:
        """The follow-up rate against the CoC targets (90% of all analytic cases, 80% of living ones):
        a case is followed when the patient is dead or was last contacted within 15 months of the
        report date. Aggregate counts only."""
        report_date = report_date or datetime.now(UTC).date()
        with self.db.begin() as conn:
            self.records.authorize(conn, principal, Action.SEARCH, RTYPE, None)
            rate = followup.rate(conn, report_date)
            self.records.audit(conn, principal, Action.SEARCH, resource_type=RTYPE,
                               detail=f"follow-up rate at {report_date.isoformat()} (aggregate counts)")
            return rate

    def report_records(self, principal: Principal) -> list[TumorRecord]:
        """Every tumour abstract the user may see, with its patient's items, for survival and incidence
        statistics (``registry.report``). Aggregate reports: audited once, with the count."""
        with self.db.begin() as conn:
            self.records.authorize(conn, principal, Action.SEARCH, RTYPE, None)
            hidden = policy.hidden_patients(conn, principal)
            rows = conn.execute(select(TUM.c.id, TUM.c["items"], RPAT.c["items"].label("patient_items"))
                                .select_from(TUM.join(RPAT, RPAT.c.id == TUM.c.registry_patient_id))
                                .where(*self._visible_where(hidden, TUM.c.patient_id))
                                .order_by(TUM.c.created_at, TUM.c.id)).all()
            out = [TumorRecord(r.id, orjson.loads(r.patient_items or "{}"), orjson.loads(r.items or "{}")) for r in rows]
            self.records.audit(conn, principal, Action.SEARCH, resource_type=RTYPE,
                               detail=f"registry report: {len(out)} tumour abstracts (aggregate statistics)")
            return out

    # ============================================================================================
    # NAACCR exchange

    def import_file(self, principal: Principal, path: Path, *, progress: Callable[[int], None] | None = None,
                    batch: int = 200) -> ImportReport:
        """Import a NAACCR XML file: each patient whose values pass the dictionary checks is stored
        (matched on Patient ID Number; a tumour matched on its accession and sequence number is
        updated); each reject is reported with its line and the item. Good records are kept."""
        rep = ImportReport()
        with self.db.begin() as conn:
            self.records.authorize(conn, principal, Action.CREATE, RTYPE, None)
        pending: list[Any] = []

        def flush() -> None:
            if not pending:
                return
            with self.db.begin() as conn:
                for p in pending:
                    self._import_patient(conn, principal, p, rep)
            pending.clear()
            if progress:
                progress(rep.patients)

        header, stream = naaccr_read(path)
        file_version = header.get("naaccrVersion", "")[:3]
        if not file_version:  # NAACCR XML names its version through the base dictionary
            m = re.search(r"naaccr-dictionary-(\d{3})\.xml", header.get("baseDictionaryUri", ""))
            file_version = m.group(1) if m else ""
        try:
            dictionary(file_version)
        except RegistryError:
            raise RegistryError(422, f"{path.name}: this file is NAACCR version {file_version or 'unknown'} "
                                "(naaccrVersion in its header); import reads versions 180 to 260. Convert the file "
                                "to one of them first; nothing was imported.", code="not-supported") from None
        from chartkeeper.registry.naaccr import Reject

        for i, got in enumerate(stream):
            if isinstance(got, Reject):
                rep.rejects.append(ImportReject(got.line, got.patient_index or i, got.item_id, got.reason))
                continue
            line = got.line
            problems = self.check_items(_text_items(got.items), "Patient", version=file_version)
            for t in got.tumors:
                problems += self.check_items(_text_items(t), "Tumor", version=file_version)
            if problems:
                for p in problems:
                    rep.rejects.append(ImportReject(line, i, p.path, f"patient {i + 1} (line {line or '?'}): {p.message}"))
                continue
            got = _Imported(_for_version(_text_items(got.items), file_version, self.version),
                            [_text_items(t) for t in got.tumors], line)
            pending.append(got)
            if len(pending) >= batch:
                flush()
        flush()
        with self.db.begin() as conn:
            audit.record(conn, principal, "registry.import", "success", resource_type=RTYPE,
                         detail=f"NAACCR import: {rep.patients} patients, {rep.tumors_created} tumours created, "
                                f"{rep.tumors_updated} updated, {len(rep.rejects)} rejects")
        return rep

    def _import_patient(self, conn: Connection, principal: Principal, p: Any, rep: ImportReport) -> None:
        now = datetime.now(UTC)
        items = _text_items(p.items)
        number = items.get("patientIdNumber") or self._next_patient_number(conn)
        items["patientIdNumber"] = number
        rp = conn.execute(select(RPAT).where(RPAT.c.patient_id_number == number)).first()
        if rp is None:
            rp_id = str(uuid.uuid4())
            conn.execute(insert(RPAT).values(id=rp_id, patient_id=None, patient_id_number=number, items="{}",
                                             vital_status="", created_at=now, updated_at=now))
            rp = conn.execute(select(RPAT).where(RPAT.c.id == rp_id)).one()
        else:
            self.records.authorize(conn, principal, Action.UPDATE, RTYPE, rp.patient_id)
            merged = orjson.loads(rp.items or "{}")
            merged.update(items)
            items = merged
        existing = {_tumor_key(orjson.loads(r.items or "{}")): r.id for r in conn.execute(
            select(TUM.c.id, TUM.c["items"]).where(TUM.c.registry_patient_id == rp.id))}
        last_id = None
        for t in p.tumors:
            t = _text_items(t)
            tid = existing.get(_tumor_key(t))
            if tid is None:
                tid = str(uuid.uuid4())
                conn.execute(insert(TUM).values(id=tid, registry_patient_id=rp.id, patient_id=rp.patient_id, items="{}",
                                                created_at=now, updated_at=now, updated_by=principal.user_id))
                rep.tumors_created += 1
            else:
                rep.tumors_updated += 1
            self._store_tumor(conn, tid, rp, t, items, principal, now)
            last_id = tid
        if last_id is None:
            conn.execute(update(RPAT).where(RPAT.c.id == rp.id).values(
                items=orjson.dumps(items).decode(), vital_status=items.get("vitalStatus", "")[:1],
                date_of_last_contact=day_of_naaccr(items.get("dateOfLastContact")), updated_at=now))
        rep.patients += 1
        self.records.audit(conn, principal, "registry.import", resource_type=RTYPE, patient_id=rp.patient_id,
                           detail=f"NAACCR import: patient {number}, {len(p.tumors)} tumours")

    def export(self, principal: Principal, out: IO[bytes], *, version: str = DEFAULT_VERSION, record_type: str = "A",
               progress: Callable[[int], None] | None = None) -> int:
        """Write every registry patient the user may see as NAACCR XML, streamed from the tables in
        batches. Returns the number of patients written."""
        if version not in VERSIONS:
            raise RegistryError(422, f"naaccr version: {version!r} is not supported; use one of {', '.join(VERSIONS)}.")
        if record_type not in RECORD_TYPES:
            raise RegistryError(422, f"record type: {record_type!r} is not a NAACCR record type; use A (abstract), "
                                "M (modified), C (confidential) or I (incidence).")
        with self.db.begin() as conn:
            self.records.authorize(conn, principal, Action.EXPORT, RTYPE, None)
            hidden = policy.hidden_patients(conn, principal)
        written: Counter[str | None] = Counter()

        def patients() -> Iterator[Any]:
            last = ""
            while True:
                with self.db.read() as conn:
                    rows = conn.execute(select(RPAT).where(RPAT.c.id > last, *self._visible_where(hidden, RPAT.c.patient_id))
                                        .order_by(RPAT.c.id).limit(BATCH)).all()
                    tumors: dict[str, list[dict[str, str]]] = defaultdict(list)
                    ids = [r.id for r in rows]
                    if ids:
                        for t in conn.execute(select(TUM.c.registry_patient_id, TUM.c["items"])
                                              .where(TUM.c.registry_patient_id.in_(ids)).order_by(TUM.c.created_at)):
                            tumors[t.registry_patient_id].append(orjson.loads(t.items or "{}"))
                if not rows:
                    return
                for r in rows:
                    items = _for_version(orjson.loads(r.items or "{}"), self.version, version)
                    written[r.patient_id] += 1
                    yield naaccr_patient(items, tumors.get(r.id, []))
                    if progress:
                        progress(sum(written.values()))
                last = rows[-1].id

        naaccr_write(out, {}, patients(), version, record_type)
        with self.db.begin() as conn:
            audit.record_many(conn, principal, "export", "success", [
                {"patient_id": pid, "resource_type": RTYPE, "detail": f"NAACCR {version} export, record type {record_type}"}
                for pid in written] or [{"detail": "NAACCR export: no patients"}])
        return sum(written.values())

    # ============================================================================================
    # Shared

    def _patient_labels(self, conn: Connection, pids: set[str]) -> dict[str, str]:
        out = {}
        for s in self.store.read_many(conn, [("Patient", p) for p in pids if p]):
            p = s.resource()
            name = (p.get("name") or [{}])[0]
            label = " ".join([*name.get("given", [])[:1], name.get("family", "")]).strip() or s.id
            mrn = next((i.get("value") for i in p.get("identifier") or () if i.get("value")), "")
            out[s.id] = f"{label} ({mrn})" if mrn else label
        return out

    def _audit_patients(self, conn: Connection, principal: Principal, action: Action | str,
                        pids: Sequence[str | None], detail: str) -> None:
        by_patient = Counter(pids)
        if not by_patient:
            self.records.audit(conn, principal, action, resource_type=RTYPE, detail=detail + ": nothing shown")
        for pid, n in by_patient.items():
            self.records.audit(conn, principal, action, resource_type=RTYPE, patient_id=pid, detail=f"{detail}: {n} rows")


@dataclass(frozen=True)
class _Imported:
    items: dict[str, str]
    tumors: list[dict[str, str]]
    line: int | None


def _tumor_key(t: dict[str, str]) -> tuple[str, ...]:
    """How an imported tumour is recognised again: its accession and sequence number, or without
    them its site, histology and date of diagnosis."""
    if t.get("accessionNumberHosp"):
        return ("acc", t["accessionNumberHosp"], t.get("sequenceNumberHospital", ""))
    return ("dx", t.get("primarySite", ""), t.get("histologicTypeIcdO3", ""), t.get("dateOfDiagnosis", ""))


def _clean_code(value: str, cls: type[Any]) -> str:
    code = _codes(value or "", cls)
    return str(code) if code else ""


def _merge(cur: dict[str, Any], changes: dict[str, Any]) -> None:
    for k, v in changes.items():
        if v is None or v == "":
            cur.pop(k, None)
        else:
            cur[k] = str(v)


def _text_items(items: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in dict(items or {}).items() if v is not None and v != ""}


def _for_version(items: dict[str, str], have: str, want: str) -> dict[str, str]:
    """Patient items stored under ``have`` renamed for ``want`` (v25 ``sex`` / v26 ``sexAssignedAtBirth``)."""
    if have == want:
        return items
    out = dict(items)
    old, new = sex_item(have), sex_item(want)
    if old in out:
        out[new] = out.pop(old)
    return out


def _in_range(s: Stored, since: date | None, until: date | None) -> bool:
    if not since and not until:
        return True
    if s.content is None:
        return False
    day = _source_day(s.resource_type, s.resource())
    return day is not None and (not since or day >= since) and (not until or day < until)


# ================================================================================================
# The write listener

FOLLOW_UP_TYPES = frozenset({"Patient", "Encounter"})
WATCHED = frozenset({"DocumentReference", "Condition"}) | FOLLOW_UP_TYPES
_LISTENER: RegistryService | None = None
_LISTENER_SCREENER: Screener | None = None


def _maybe_source(ch: Change) -> bool:
    """A cheap look at the text before parsing: could this be a pathology report or an ICD-10-CM diagnosis?"""
    if ch.content is None:
        return False
    if ch.resource_type == "DocumentReference":
        return PATHOLOGY_LOINC in ch.content
    return ch.resource_type == "Condition" and "icd-10-cm" in ch.content


def _listener(conn: Connection, changes: list[Change], bulk: bool) -> None:
    relevant = [c for c in changes if c.resource_type in WATCHED and c.outcome != "deleted"]
    if not relevant:
        return
    sources = [c for c in relevant if c.resource_type in ("DocumentReference", "Condition") and _maybe_source(c)]
    pids = {c.patient_id for c in relevant if c.resource_type in FOLLOW_UP_TYPES and c.patient_id}
    if pids:
        ordered = sorted(pids)
        ours: set[str] = set()
        for i in range(0, len(ordered), 500):
            ours |= {r[0] for r in conn.execute(select(RPAT.c.patient_id).where(
                RPAT.c.patient_id.in_(ordered[i:i + 500])))}
        pids = ours
    if not sources and not pids:
        return
    if bulk:
        keys = [(c.resource_type, c.id) for c in sources] + [("Patient", p) for p in sorted(pids)]
        have: set[tuple[str, str]] = set()
        for rtype in {k[0] for k in keys}:
            ids = [k[1] for k in keys if k[0] == rtype]
            for i in range(0, len(ids), 500):
                have |= {(rtype, r[0]) for r in conn.execute(select(RPEND.c.resource_id).where(
                    RPEND.c.resource_type == rtype, RPEND.c.resource_id.in_(ids[i:i + 500])))}
        now = datetime.now(UTC)
        new = [{"resource_type": t, "resource_id": i, "queued_at": now} for t, i in dict.fromkeys(keys) if (t, i) not in have]
        if new:
            conn.execute(insert(RPEND), new)
        return
    svc = _listener_service()
    if sources:
        svc.screen(conn, svc.store.read_many(conn, [(c.resource_type, c.id) for c in sources]))
    if pids:
        svc._refresh(conn, pids)


def _listener_service() -> RegistryService:
    global _LISTENER
    if _LISTENER is None:
        nodb = cast(Database, ListenerDb("registry"))
        _LISTENER = RegistryService(nodb, RecordService(nodb), screener=_LISTENER_SCREENER)
    return _LISTENER


def current_screener() -> Screener | None:
    """The screener set with :func:`use_screener` (None: the casefinding engine)."""
    return _LISTENER_SCREENER


def use_screener(screener: Screener | None) -> None:
    """The screener the write listener uses (None: the casefinding engine)."""
    global _LISTENER, _LISTENER_SCREENER
    _LISTENER_SCREENER = screener
    _LISTENER = None


add_write_listener(_listener)


__all__ = ["Abstract", "EditResult", "EngineScreener", "ImportReport", "RegistryError", "RegistryService", "Screen",
           "ScreenCounts", "Screener", "Span", "SuspenseItem", "SuspensePage", "TumorRecord", "current_screener",
           "use_screener"]
