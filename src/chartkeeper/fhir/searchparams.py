"""Search parameters: which values of a resource are indexed, and how they are extracted.

Each parameter has a kind (token, string, date, reference) and one or more element paths. The
extraction functions turn a resource into index rows; the search module turns a query back into SQL
over the same rows. Names follow the FHIR R4 search parameter registry; a few general names the HIM
screens rely on (``date``, ``code``, ``status``, ``patient``) are also given to resources whose
registry name differs (documented in docs/architecture.md).
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

TOKEN, STRING, DATE, REFERENCE = "token", "string", "date", "reference"


@dataclass(frozen=True)
class Param:
    name: str
    kind: str
    paths: tuple[tuple[str, ...], ...]
    # Index rows are stored under this name. Two parameters over the same paths (``patient`` and
    # ``subject``, ``code`` and ``type``) share one set of rows.
    stored_as: str = ""


def P(name: str, kind: str, *paths: str) -> Param:  # noqa: N802 - a table-building shorthand
    return Param(name, kind, tuple(tuple(p.split(".")) for p in paths), name)


# Common to every resource type; served from the fhir_resource table itself.
COMMON = {"_id": TOKEN, "_lastUpdated": DATE}

# Result-shaping parameters, not filters.
CONTROL = {"_count", "_offset", "_sort", "_include", "_format", "_summary", "_elements", "_total"}


def _clinical(subject: str = "subject", code: str = "code", date: tuple[str, ...] = (),
              status: str = "status", encounter: str | None = "encounter",
              category: str | None = "category") -> list[Param]:
    ps = [P("subject", REFERENCE, subject), P("patient", REFERENCE, subject), P("code", TOKEN, code),
          P("status", TOKEN, status)]
    if date:
        ps.append(P("date", DATE, *date))
    if encounter:
        ps.append(P("encounter", REFERENCE, encounter))
    if category:
        ps.append(P("category", TOKEN, category))
    return ps


PARAMS: dict[str, list[Param]] = {
    "Patient": [
        P("identifier", TOKEN, "identifier"),
        P("name", STRING, "name.family", "name.given", "name.text", "name.prefix", "name.suffix"),
        P("family", STRING, "name.family"),
        P("given", STRING, "name.given"),
        P("birthdate", DATE, "birthDate"),
        P("gender", TOKEN, "gender"),
        P("address-postalcode", STRING, "address.postalCode"),
        P("address-city", STRING, "address.city"),
        P("address-state", STRING, "address.state"),
        P("phone", TOKEN, "telecom"),
        P("active", TOKEN, "active"),
        P("death-date", DATE, "deceasedDateTime"),
        P("general-practitioner", REFERENCE, "generalPractitioner"),
        P("organization", REFERENCE, "managingOrganization"),
    ],
    "Practitioner": [
        P("identifier", TOKEN, "identifier"),
        P("name", STRING, "name.family", "name.given", "name.text"),
        P("family", STRING, "name.family"),
        P("given", STRING, "name.given"),
        P("active", TOKEN, "active"),
    ],
    "PractitionerRole": [
        P("identifier", TOKEN, "identifier"),
        P("practitioner", REFERENCE, "practitioner"),
        P("organization", REFERENCE, "organization"),
        P("role", TOKEN, "code"),
        P("specialty", TOKEN, "specialty"),
        P("location", REFERENCE, "location"),
    ],
    "Organization": [
        P("identifier", TOKEN, "identifier"),
        P("name", STRING, "name", "alias"),
        P("type", TOKEN, "type"),
        P("active", TOKEN, "active"),
        P("address-postalcode", STRING, "address.postalCode"),
    ],
    "Location": [
        P("identifier", TOKEN, "identifier"),
        P("name", STRING, "name", "alias"),
        P("status", TOKEN, "status"),
        P("type", TOKEN, "type"),
        P("organization", REFERENCE, "managingOrganization"),
    ],
    "Encounter": [
        P("subject", REFERENCE, "subject"),
        P("patient", REFERENCE, "subject"),
        P("status", TOKEN, "status"),
        P("class", TOKEN, "class"),
        P("type", TOKEN, "type"),
        P("code", TOKEN, "type"),
        P("date", DATE, "period"),
        P("identifier", TOKEN, "identifier"),
        P("participant", REFERENCE, "participant.individual"),
        P("practitioner", REFERENCE, "participant.individual"),
        P("service-provider", REFERENCE, "serviceProvider"),
        P("location", REFERENCE, "location.location"),
        P("reason-code", TOKEN, "reasonCode"),
        P("diagnosis", REFERENCE, "diagnosis.condition"),
    ],
    "Condition": [
        *_clinical(date=("onsetDateTime", "onsetPeriod", "recordedDate"), status="clinicalStatus"),
        P("clinical-status", TOKEN, "clinicalStatus"),
        P("verification-status", TOKEN, "verificationStatus"),
        P("onset-date", DATE, "onsetDateTime", "onsetPeriod"),
        P("recorded-date", DATE, "recordedDate"),
        P("abatement-date", DATE, "abatementDateTime", "abatementPeriod"),
        P("asserter", REFERENCE, "asserter"),
    ],
    "Procedure": [
        *_clinical(date=("performedDateTime", "performedPeriod")),
        P("performer", REFERENCE, "performer.actor"),
        P("reason-reference", REFERENCE, "reasonReference"),
    ],
    "Observation": [
        *_clinical(date=("effectiveDateTime", "effectivePeriod", "effectiveInstant")),
        P("value-concept", TOKEN, "valueCodeableConcept"),
        P("performer", REFERENCE, "performer"),
        P("based-on", REFERENCE, "basedOn"),
        P("has-member", REFERENCE, "hasMember"),
        P("derived-from", REFERENCE, "derivedFrom"),
        P("specimen", REFERENCE, "specimen"),
    ],
    "DiagnosticReport": [
        *_clinical(date=("effectiveDateTime", "effectivePeriod")),
        P("issued", DATE, "issued"),
        P("result", REFERENCE, "result"),
        P("performer", REFERENCE, "performer"),
        P("results-interpreter", REFERENCE, "resultsInterpreter"),
    ],
    "MedicationRequest": [
        *_clinical(code="medicationCodeableConcept", date=("authoredOn",)),
        P("authoredon", DATE, "authoredOn"),
        P("intent", TOKEN, "intent"),
        P("medication", REFERENCE, "medicationReference"),
        P("requester", REFERENCE, "requester"),
    ],
    "MedicationStatement": [
        *_clinical(code="medicationCodeableConcept", date=("effectiveDateTime", "effectivePeriod"),
                   encounter="context"),
        P("effective", DATE, "effectiveDateTime", "effectivePeriod"),
        P("medication", REFERENCE, "medicationReference"),
        P("context", REFERENCE, "context"),
    ],
    "Medication": [
        P("code", TOKEN, "code"),
        P("status", TOKEN, "status"),
    ],
    "AllergyIntolerance": [
        *_clinical(subject="patient", date=("recordedDate",), status="clinicalStatus"),
        P("clinical-status", TOKEN, "clinicalStatus"),
        P("verification-status", TOKEN, "verificationStatus"),
        P("criticality", TOKEN, "criticality"),
        P("type", TOKEN, "type"),
        P("recorder", REFERENCE, "recorder"),
    ],
    "Immunization": [
        *_clinical(subject="patient", code="vaccineCode", date=("occurrenceDateTime",), category=None),
        P("vaccine-code", TOKEN, "vaccineCode"),
        P("performer", REFERENCE, "performer.actor"),
        P("location", REFERENCE, "location"),
    ],
    "CarePlan": [
        *_clinical(date=("period",)),
        P("intent", TOKEN, "intent"),
        P("care-team", REFERENCE, "careTeam"),
        P("goal", REFERENCE, "goal"),
        P("condition", REFERENCE, "addresses"),
        P("activity-code", TOKEN, "activity.detail.code"),
    ],
    "CareTeam": [
        *_clinical(code="category", date=("period",)),
        P("participant", REFERENCE, "participant.member"),
    ],
    "Goal": [
        *_clinical(code="description", status="lifecycleStatus", date=("startDate", "target.dueDate"),
                   encounter=None),
        P("lifecycle-status", TOKEN, "lifecycleStatus"),
        P("achievement-status", TOKEN, "achievementStatus"),
        P("target-date", DATE, "target.dueDate"),
    ],
    "DocumentReference": [
        *_clinical(code="type", date=("date",), encounter="context.encounter"),
        P("type", TOKEN, "type"),
        P("docstatus", TOKEN, "docStatus"),
        P("author", REFERENCE, "author"),
        P("authenticator", REFERENCE, "authenticator"),
        P("custodian", REFERENCE, "custodian"),
        P("period", DATE, "context.period"),
        P("identifier", TOKEN, "identifier", "masterIdentifier"),
        P("relatesto", REFERENCE, "relatesTo.target"),
        P("contenttype", TOKEN, "content.attachment.contentType"),
    ],
    "Composition": [
        *_clinical(code="type", date=("date",)),
        P("type", TOKEN, "type"),
        P("author", REFERENCE, "author"),
        P("attester", REFERENCE, "attester.party"),
        P("title", STRING, "title"),
    ],
    "Claim": [
        P("patient", REFERENCE, "patient"),
        P("subject", REFERENCE, "patient"),
        P("status", TOKEN, "status"),
        P("use", TOKEN, "use"),
        P("created", DATE, "created"),
        P("date", DATE, "created"),
        P("encounter", REFERENCE, "item.encounter"),
        P("provider", REFERENCE, "provider"),
        P("insurer", REFERENCE, "insurer"),
        P("identifier", TOKEN, "identifier"),
        P("code", TOKEN, "type"),
    ],
    "ExplanationOfBenefit": [
        P("patient", REFERENCE, "patient"),
        P("subject", REFERENCE, "patient"),
        P("status", TOKEN, "status"),
        P("created", DATE, "created"),
        P("date", DATE, "created"),
        P("claim", REFERENCE, "claim"),
        P("provider", REFERENCE, "provider"),
        P("encounter", REFERENCE, "item.encounter"),
        P("identifier", TOKEN, "identifier"),
        P("code", TOKEN, "type"),
    ],
    "Coverage": [
        P("patient", REFERENCE, "beneficiary"),
        P("beneficiary", REFERENCE, "beneficiary"),
        P("subject", REFERENCE, "beneficiary"),
        P("status", TOKEN, "status"),
        P("type", TOKEN, "type"),
        P("code", TOKEN, "type"),
        P("payor", REFERENCE, "payor"),
        P("identifier", TOKEN, "identifier"),
        P("date", DATE, "period"),
    ],
    "ImagingStudy": [
        P("subject", REFERENCE, "subject"),
        P("patient", REFERENCE, "subject"),
        P("status", TOKEN, "status"),
        P("started", DATE, "started"),
        P("date", DATE, "started"),
        P("encounter", REFERENCE, "encounter"),
        P("modality", TOKEN, "series.modality"),
        P("code", TOKEN, "procedureCode"),
        P("identifier", TOKEN, "identifier"),
    ],
    "Task": [
        P("patient", REFERENCE, "for"),
        P("subject", REFERENCE, "for"),
        P("status", TOKEN, "status"),
        P("business-status", TOKEN, "businessStatus"),
        P("code", TOKEN, "code"),
        P("intent", TOKEN, "intent"),
        P("priority", TOKEN, "priority"),
        P("owner", REFERENCE, "owner"),
        P("requester", REFERENCE, "requester"),
        P("focus", REFERENCE, "focus"),
        P("encounter", REFERENCE, "encounter"),
        P("authored-on", DATE, "authoredOn"),
        P("date", DATE, "authoredOn"),
        P("modified", DATE, "lastModified"),
        P("period", DATE, "executionPeriod"),
        P("identifier", TOKEN, "identifier"),
        P("category", TOKEN, "code"),
    ],
    "Provenance": [
        P("target", REFERENCE, "target"),
        P("patient", REFERENCE, "target"),
        P("recorded", DATE, "recorded"),
        P("date", DATE, "recorded"),
        P("agent", REFERENCE, "agent.who"),
        P("entity", REFERENCE, "entity.what"),
    ],
    "Consent": [
        P("patient", REFERENCE, "patient"),
        P("status", TOKEN, "status"),
        P("category", TOKEN, "category"),
        P("date", DATE, "dateTime"),
        P("period", DATE, "provision.period"),
    ],
    "Specimen": [
        P("patient", REFERENCE, "subject"),
        P("subject", REFERENCE, "subject"),
        P("status", TOKEN, "status"),
        P("type", TOKEN, "type"),
        P("code", TOKEN, "type"),
        P("collected", DATE, "collection.collectedDateTime", "collection.collectedPeriod"),
        P("date", DATE, "collection.collectedDateTime", "collection.collectedPeriod"),
        P("identifier", TOKEN, "identifier", "accessionIdentifier"),
    ],
    "ServiceRequest": [
        *_clinical(date=("authoredOn",)),
        P("authored", DATE, "authoredOn"),
        P("intent", TOKEN, "intent"),
        P("requester", REFERENCE, "requester"),
        P("performer", REFERENCE, "performer"),
        P("identifier", TOKEN, "identifier"),
    ],
    "Communication": [
        *_clinical(code="reasonCode", date=("sent",)),
        P("sent", DATE, "sent"),
        P("recipient", REFERENCE, "recipient"),
        P("sender", REFERENCE, "sender"),
        P("based-on", REFERENCE, "basedOn"),
    ],
    "QuestionnaireResponse": [
        P("patient", REFERENCE, "subject"),
        P("subject", REFERENCE, "subject"),
        P("status", TOKEN, "status"),
        P("authored", DATE, "authored"),
        P("date", DATE, "authored"),
        P("encounter", REFERENCE, "encounter"),
        P("author", REFERENCE, "author"),
    ],
    "RelatedPerson": [
        P("patient", REFERENCE, "patient"),
        P("identifier", TOKEN, "identifier"),
        P("name", STRING, "name.family", "name.given", "name.text"),
        P("relationship", TOKEN, "relationship"),
    ],
    "Device": [
        P("patient", REFERENCE, "patient"),
        P("type", TOKEN, "type"),
        P("status", TOKEN, "status"),
        P("identifier", TOKEN, "identifier"),
    ],
    "AuditEvent": [
        P("date", DATE, "recorded"),
        P("type", TOKEN, "type"),
        P("subtype", TOKEN, "subtype"),
        P("action", TOKEN, "action"),
        P("outcome", TOKEN, "outcome"),
        P("agent", REFERENCE, "agent.who"),
        P("entity", REFERENCE, "entity.what"),
    ],
    "Binary": [],
}

def _share_rows(params: list[Param]) -> list[Param]:
    """Parameters with the same kind and paths as an earlier one store no rows of their own."""
    first: dict[tuple[str, tuple[tuple[str, ...], ...]], str] = {}
    out = []
    for p in params:
        key = (p.kind, p.paths)
        owner = first.setdefault(key, p.name)
        out.append(Param(p.name, p.kind, p.paths, owner))
    return out


PARAMS = {t: _share_rows(ps) for t, ps in PARAMS.items()}
BY_NAME: dict[str, dict[str, Param]] = {t: {p.name: p for p in ps} for t, ps in PARAMS.items()}
# The parameters that own index rows (extraction walks only these).
STORED: dict[str, list[Param]] = {t: [p for p in ps if p.stored_as == p.name] for t, ps in PARAMS.items()}

# Where a resource names its patient: the patient compartment used by $everything and by the
# policy's patient-level rules.
PATIENT_FIELDS: dict[str, tuple[str, ...]] = {
    "Encounter": ("subject",), "Condition": ("subject",), "Procedure": ("subject",),
    "Observation": ("subject",), "DiagnosticReport": ("subject",), "MedicationRequest": ("subject",),
    "MedicationStatement": ("subject",), "AllergyIntolerance": ("patient",), "Immunization": ("patient",),
    "CarePlan": ("subject",), "CareTeam": ("subject",), "Goal": ("subject",),
    "DocumentReference": ("subject",), "Composition": ("subject",), "Claim": ("patient",),
    "ExplanationOfBenefit": ("patient",), "Coverage": ("beneficiary",), "ImagingStudy": ("subject",),
    "Task": ("for",), "Consent": ("patient",), "Specimen": ("subject",), "ServiceRequest": ("subject",),
    "Communication": ("subject",), "QuestionnaireResponse": ("subject",), "RelatedPerson": ("patient",),
    "Device": ("patient",),
}


def patient_of(resource: dict[str, Any]) -> str | None:
    """The id of the patient whose record this resource belongs to, if any."""
    rtype = resource.get("resourceType")
    if rtype == "Patient":
        return resource.get("id")
    if rtype == "Provenance":
        for t in resource.get("target") or ():
            ref = parse_reference(t.get("reference") if isinstance(t, dict) else None)
            if ref and ref[0] == "Patient":
                return ref[1]
        return None
    for f in PATIENT_FIELDS.get(rtype or "", ()):
        v = resource.get(f)
        if isinstance(v, dict):
            ref = parse_reference(v.get("reference"))
            if ref and ref[0] == "Patient":
                return ref[1]
    return None


# --- value helpers -------------------------------------------------------------------------------

_REF_RE = re.compile(r"^(?:.*/)?([A-Z][A-Za-z]+)/([A-Za-z0-9\-\.]{1,64})(?:/_history/[A-Za-z0-9\-\.]{1,64})?$")


def parse_reference(ref: object) -> tuple[str, str] | None:
    """("Patient", "123") from "Patient/123", "Patient/123/_history/2" or "https://x/fhir/Patient/123"."""
    if not isinstance(ref, str) or ref.startswith(("#", "urn:")):
        return None
    m = _REF_RE.match(ref)
    return (m.group(1), m.group(2)) if m else None


def normalize_string(s: str) -> str:
    """Case- and accent-insensitive form used by string search."""
    if s.isascii():
        return s.lower()[:255]
    decomposed = unicodedata.normalize("NFKD", s)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()[:255]


_DATE_RE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


def date_range(value: str) -> tuple[str, str] | None:
    """The instant range a FHIR date/dateTime/instant covers, as UTC 'YYYY-MM-DDTHH:MM:SS' strings."""
    if not isinstance(value, str) or len(value) < 4:
        return None
    if len(value) <= 10:
        m = _DATE_RE.match(value)
        if not m:
            return None
        y = int(m.group(1))
        if m.group(2) is None:
            return f"{y:04d}-01-01T00:00:00", f"{y:04d}-12-31T23:59:59"
        mo = int(m.group(2))
        if not 1 <= mo <= 12:
            return None
        if m.group(3) is None:
            last = calendar.monthrange(y, mo)[1]
            return f"{y:04d}-{mo:02d}-01T00:00:00", f"{y:04d}-{mo:02d}-{last:02d}T23:59:59"
        return f"{value}T00:00:00", f"{value}T23:59:59"
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC)
    s = dt.isoformat(timespec="seconds")[:19]  # fixed width (strftime leaves years below 1000 unpadded)
    return s, s


def _collect(resource: dict[str, Any], path: tuple[str, ...]) -> list[Any]:
    """The values at an element path, arrays flattened at every step (iterative: this runs for every
    parameter of every resource written)."""
    cur: list[Any] = [resource]
    for key in path:
        nxt: list[Any] = []
        for node in cur:
            if node.__class__ is dict:
                v = node.get(key)
                if v is None:
                    continue
                if v.__class__ is list:
                    nxt.extend(v)
                else:
                    nxt.append(v)
        if not nxt:
            return nxt
        cur = nxt
    return cur


def values(resource: dict[str, Any], param: Param) -> list[Any]:
    if len(param.paths) == 1:
        return _collect(resource, param.paths[0])
    out: list[Any] = []
    for path in param.paths:
        out.extend(_collect(resource, path))
    return out


def dates(v: Any) -> Iterator[tuple[str, str]]:
    if isinstance(v, str):
        r = date_range(v)
        if r:
            yield r
    elif isinstance(v, dict):
        start = v.get("start")
        end = v.get("end")
        lo = date_range(start) if start else None
        hi = date_range(end) if end else None
        if lo or hi:
            yield (lo[0] if lo else "0001-01-01T00:00:00"), (hi[1] if hi else "9999-12-31T23:59:59")


@dataclass
class IndexRows:
    tokens: list[tuple[str, str, str]]  # param, system, code
    strings: list[tuple[str, str]]  # param, value
    dates: list[tuple[str, str, str]]  # param, low, high
    references: list[tuple[str, str, str]]  # param, target type, target id

    def __reduce__(self) -> tuple[Any, ...]:  # see store.Prepared.__reduce__
        return IndexRows, (self.tokens, self.strings, self.dates, self.references)


def _token_pairs(v: Any, out: list[tuple[str, str]]) -> None:
    """(system, code) pairs of a code, Coding, CodeableConcept, Identifier, ContactPoint or boolean."""
    cls = v.__class__
    if cls is str:
        out.append(("", v))
    elif cls is dict:
        coding = v.get("coding")
        if coding is not None:
            for c in coding:
                if c.__class__ is dict:
                    code = c.get("code")
                    if code:
                        out.append((c.get("system") or "", str(code)))
        else:
            code = v.get("code")
            if code.__class__ is str:
                out.append((v.get("system") or "", code))
            else:
                value = v.get("value")
                if value.__class__ is str:
                    out.append((v.get("system") or "", value))
    elif cls is bool:
        out.append(("", "true" if v else "false"))


def extract(resource: dict[str, Any]) -> IndexRows:
    """The index rows of one resource (duplicates within a parameter dropped), each kind sorted,
    written flat: this runs for every write."""
    rows = IndexRows([], [], [], [])
    for p in STORED.get(resource.get("resourceType", ""), ()):
        vals = values(resource, p)
        if not vals:
            continue
        name = p.name
        kind = p.kind
        if kind == TOKEN:
            pairs: list[tuple[str, str]] = []
            for v in vals:
                _token_pairs(v, pairs)
            for sc in dict.fromkeys(pairs):
                rows.tokens.append((name, sc[0][:255], sc[1][:255]))
        elif kind == REFERENCE:
            refs: dict[tuple[str, str], None] = {}
            for v in vals:
                if v.__class__ is dict:
                    ref = parse_reference(v.get("reference"))
                    if ref:
                        refs[ref] = None
            rows.references.extend((name, r[0], r[1]) for r in refs)
        elif kind == DATE:
            ds: dict[tuple[str, str], None] = {}
            for v in vals:
                for d in dates(v):
                    ds[d] = None
            rows.dates.extend((name, d[0], d[1]) for d in ds)
        else:
            ss = dict.fromkeys(normalize_string(v) for v in vals if v.__class__ is str)
            rows.strings.extend((name, x) for x in ss)
    # Sorted: the store writes them in primary-key order (resource key, then these columns).
    rows.tokens.sort()
    rows.strings.sort()
    rows.dates.sort()
    rows.references.sort()
    return rows


def all_references(node: Any) -> list[dict[str, Any]]:
    """Every Reference-shaped object ({"reference": "..."}) anywhere in a resource, contained
    resources included."""
    found: list[dict[str, Any]] = []
    stack = [node]
    while stack:
        n = stack.pop()
        if n.__class__ is dict:
            if n.get("reference").__class__ is str:
                found.append(n)
            stack.extend(v for v in n.values() if v.__class__ is dict or v.__class__ is list)
        elif n.__class__ is list:
            stack.extend(v for v in n if v.__class__ is dict or v.__class__ is list)
    return found
