"""Data-entry forms: field definitions, form-level checks and builders from form values to FHIR resources.

A form is checked in two passes, and nothing is saved until both pass:

1. **Form-level checks** here: required fields, date and time formats, choices from the lists offered,
   lengths. Each problem is a sentence shown next to its field.
2. **The API's rules**: the built resource goes through ``RecordService.create``, which validates it
   exactly as a ``POST /fhir/{type}`` would. Its OperationOutcome issues carry element paths
   (``Patient.birthDate``); :func:`map_issues` turns each path back into the form field it came from
   and rewrites the path in the message into the field's label.

Nothing in this module touches the database.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

# Code systems (FHIR R4 canonical URIs).
from chartkeeper.config import MRN_SYSTEM  # noqa: E402,F401 - one place for the facility MRN system
from chartkeeper.fhir.errors import Issue

V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
V3_ACTCODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
COND_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
COND_VER = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
COND_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VER = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2}))?)?$")
_ICD10CM_RE = re.compile(r"^[A-TV-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?$")
_RXNORM_RE = re.compile(r"^[0-9]{1,10}$")
_MRN_RE = re.compile(r"^[A-Za-z0-9-]{1,32}$")
_PHONE_RE = re.compile(r"^[0-9+()./ -]{3,32}$")


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    kind: str = "text"  # text | date | datetime | select | textarea
    required: bool = False
    choices: tuple[tuple[str, str], ...] = ()
    help: str = ""
    max_length: int = 200
    # FHIR element paths (prefixes) whose validation issues belong to this field.
    paths: tuple[str, ...] = ()


@dataclass
class FormSpec:
    key: str  # URL segment: /patients/{id}/new/{key}
    resource_type: str
    title: str
    fields: list[Field]
    submit: str
    intro: str = ""
    builder: Callable[[dict[str, str], str | None], dict[str, Any]] | None = None

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)


@dataclass
class Checked:
    """The outcome of checking a submitted form."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)  # field name -> sentence
    general: list[str] = field(default_factory=list)  # problems that belong to no one field
    resource: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not self.errors and not self.general


# --------------------------------------------------------------------------------------------
# Value helpers


def clean(value: object, limit: int = 10_000) -> str:
    """A submitted value as text: stripped, control characters other than newline and tab removed."""
    if not isinstance(value, str):
        return ""
    text = "".join(ch for ch in value if ch in "\n\t" or ch >= " ").strip()
    return text[:limit]


def tz_from_offset(raw: str | None) -> timezone:
    """The browser's UTC offset in minutes east (our JS fills ``tz_offset``); UTC when absent."""
    try:
        minutes = int(raw or "0")
    except ValueError:
        minutes = 0
    if not -14 * 60 <= minutes <= 14 * 60:
        minutes = 0
    return timezone(timedelta(minutes=minutes))


def parse_date(text: str) -> date | None:
    if not _DATE_RE.match(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def fhir_datetime(text: str, tz: timezone) -> str | None:
    """'2024-03-05' stays a date; '2024-03-05T14:30' becomes '2024-03-05T14:30:00+01:00'.

    Only the shape is checked here (calendar validity is the validator's job, so the API's message
    reaches the form). None when the shape is wrong.
    """
    m = _DATETIME_RE.match(text)
    if not m:
        return None
    day, hh, mm, ss = m.groups()
    if hh is None:
        return day
    offset = tz.utcoffset(None)
    total = int(offset.total_seconds() // 60)
    sign = "+" if total >= 0 else "-"
    total = abs(total)
    suffix = "Z" if total == 0 else f"{sign}{total // 60:02d}:{total % 60:02d}"
    return f"{day}T{hh}:{mm}:{ss or '00'}{suffix}"


def to_utc(value: str) -> datetime | None:
    """A FHIR date or dateTime as an aware UTC datetime (dates at midnight UTC), for comparisons."""
    try:
        if len(value) == 10:
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def now_instant() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def concept(
    text: str, system: str | None = None, code: str | None = None, display: str | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if system and code:
        coding: dict[str, Any] = {"system": system, "code": code}
        if display or text:
            coding["display"] = display or text
        out["coding"] = [coding]
    if text:
        out["text"] = text
    return out


def _coded(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


# --------------------------------------------------------------------------------------------
# Choices

SEX = (("female", "Female"), ("male", "Male"), ("other", "Other"), ("unknown", "Unknown"))
ENCOUNTER_CLASS = (
    ("AMB", "Outpatient (ambulatory)"),
    ("IMP", "Inpatient"),
    ("EMER", "Emergency"),
    ("OBSENC", "Observation"),
)
ENCOUNTER_CLASS_DISPLAY = {
    "AMB": "ambulatory",
    "IMP": "inpatient encounter",
    "EMER": "emergency",
    "OBSENC": "observation encounter",
}
ENCOUNTER_STATUS = (
    ("finished", "Finished"),
    ("in-progress", "In progress"),
    ("arrived", "Arrived"),
    ("planned", "Planned"),
    ("cancelled", "Cancelled"),
)
CONDITION_CLINICAL = (
    ("active", "Active"),
    ("recurrence", "Recurrence"),
    ("relapse", "Relapse"),
    ("inactive", "Inactive"),
    ("remission", "Remission"),
    ("resolved", "Resolved"),
)
CONDITION_VERIFICATION = (
    ("confirmed", "Confirmed"),
    ("provisional", "Provisional"),
    ("differential", "Differential"),
    ("unconfirmed", "Unconfirmed"),
    ("refuted", "Refuted"),
)
ALLERGY_TYPE = (("allergy", "Allergy"), ("intolerance", "Intolerance"))
ALLERGY_CATEGORY = (
    ("medication", "Medication"),
    ("food", "Food"),
    ("environment", "Environment"),
    ("biologic", "Biologic"),
)
ALLERGY_CRITICALITY = (("low", "Low"), ("high", "High"), ("unable-to-assess", "Unable to assess"))
ALLERGY_VERIFICATION = (("confirmed", "Confirmed"), ("unconfirmed", "Unconfirmed"))
REACTION_SEVERITY = (("mild", "Mild"), ("moderate", "Moderate"), ("severe", "Severe"))
MEDICATION_STATUS = (
    ("active", "Active"),
    ("on-hold", "On hold"),
    ("completed", "Completed"),
    ("stopped", "Stopped"),
    ("draft", "Draft"),
)
DOCUMENT_TYPES = (
    ("34117-2", "History and physical note"),
    ("11506-3", "Progress note"),
    ("18842-5", "Discharge summary"),
    ("11504-8", "Surgical operation note"),
    ("11526-1", "Pathology study"),
    ("18748-4", "Diagnostic imaging study"),
)


# --------------------------------------------------------------------------------------------
# The forms

_ENCOUNTER_FIELD = Field(
    "encounter",
    "Encounter",
    "select",
    help="The visit this belongs to (optional).",
    paths=("{rt}.encounter", "{rt}.context"),
)

PATIENT = FormSpec(
    key="patient",
    resource_type="Patient",
    title="Register a patient",
    submit="Register patient",
    intro="A medical record number is assigned when the MRN field is left empty.",
    fields=[
        Field(
            "family",
            "Family name",
            required=True,
            max_length=100,
            paths=("Patient.name[0].family", "Patient.name"),
        ),
        Field(
            "given",
            "Given names",
            required=True,
            max_length=100,
            help="Separate several given names with spaces.",
            paths=("Patient.name[0].given",),
        ),
        Field(
            "birth_date", "Birth date", "date", required=True, help="YYYY-MM-DD", paths=("Patient.birthDate",)
        ),
        Field("sex", "Sex", "select", required=True, choices=SEX, paths=("Patient.gender",)),
        Field(
            "mrn",
            "MRN",
            max_length=32,
            help="Leave empty to assign a new number.",
            paths=("Patient.identifier",),
        ),
        Field("phone", "Phone", max_length=32, paths=("Patient.telecom",)),
        Field("address_line", "Street address", max_length=200, paths=("Patient.address[0].line",)),
        Field("city", "City", max_length=100, paths=("Patient.address[0].city",)),
        Field("state", "State", max_length=50, paths=("Patient.address[0].state",)),
        Field("postal_code", "Postal code", max_length=20, paths=("Patient.address[0].postalCode",)),
    ],
)

ENCOUNTER = FormSpec(
    key="encounter",
    resource_type="Encounter",
    title="Add an encounter",
    submit="Save encounter",
    fields=[
        Field(
            "enc_class", "Class", "select", required=True, choices=ENCOUNTER_CLASS, paths=("Encounter.class",)
        ),
        Field(
            "status", "Status", "select", required=True, choices=ENCOUNTER_STATUS, paths=("Encounter.status",)
        ),
        Field(
            "start",
            "Start",
            "datetime",
            required=True,
            help="Date and time the visit began.",
            paths=("Encounter.period.start",),
        ),
        Field(
            "end",
            "End",
            "datetime",
            help="Leave empty while the visit goes on.",
            paths=("Encounter.period.end",),
        ),
        Field(
            "type_text",
            "Type of visit",
            max_length=200,
            help="For example 'Annual check-up'.",
            paths=("Encounter.type",),
        ),
        Field("reason", "Reason for visit", max_length=500, paths=("Encounter.reasonCode",)),
    ],
)

CONDITION = FormSpec(
    key="condition",
    resource_type="Condition",
    title="Add a problem (condition)",
    submit="Save problem",
    fields=[
        Field(
            "description",
            "Problem",
            required=True,
            max_length=300,
            help="As the physician wrote it.",
            paths=("Condition.code.text", "Condition.code"),
        ),
        Field(
            "icd10",
            "ICD-10-CM code",
            max_length=8,
            help="Optional, for example E11.9.",
            paths=("Condition.code.coding",),
        ),
        Field(
            "clinical_status",
            "Clinical status",
            "select",
            required=True,
            choices=CONDITION_CLINICAL,
            paths=("Condition.clinicalStatus",),
        ),
        Field(
            "verification_status",
            "Verification",
            "select",
            required=True,
            choices=CONDITION_VERIFICATION,
            paths=("Condition.verificationStatus",),
        ),
        Field(
            "onset", "Onset date", "date", help="YYYY-MM-DD, optional.", paths=("Condition.onsetDateTime",)
        ),
        _ENCOUNTER_FIELD,
    ],
)

ALLERGY = FormSpec(
    key="allergy",
    resource_type="AllergyIntolerance",
    title="Add an allergy",
    submit="Save allergy",
    fields=[
        Field(
            "substance",
            "Substance",
            required=True,
            max_length=200,
            help="For example 'Penicillin'.",
            paths=("AllergyIntolerance.code",),
        ),
        Field(
            "allergy_type",
            "Type",
            "select",
            required=True,
            choices=ALLERGY_TYPE,
            paths=("AllergyIntolerance.type",),
        ),
        Field(
            "category",
            "Category",
            "select",
            required=True,
            choices=ALLERGY_CATEGORY,
            paths=("AllergyIntolerance.category",),
        ),
        Field(
            "criticality",
            "Criticality",
            "select",
            choices=ALLERGY_CRITICALITY,
            paths=("AllergyIntolerance.criticality",),
        ),
        Field(
            "verification_status",
            "Verification",
            "select",
            required=True,
            choices=ALLERGY_VERIFICATION,
            paths=("AllergyIntolerance.verificationStatus",),
        ),
        Field(
            "reaction",
            "Reaction",
            max_length=200,
            help="For example 'Hives', optional.",
            paths=("AllergyIntolerance.reaction[0].manifestation",),
        ),
        Field(
            "severity",
            "Reaction severity",
            "select",
            choices=REACTION_SEVERITY,
            paths=("AllergyIntolerance.reaction[0].severity",),
        ),
        Field(
            "onset",
            "Onset date",
            "date",
            help="YYYY-MM-DD, optional.",
            paths=("AllergyIntolerance.onsetDateTime",),
        ),
    ],
)

MEDICATION = FormSpec(
    key="medication",
    resource_type="MedicationRequest",
    title="Add a medication",
    submit="Save medication",
    fields=[
        Field(
            "medication",
            "Medication",
            required=True,
            max_length=300,
            help="Name, strength and form, for example 'Metformin 500 mg oral tablet'.",
            paths=(
                "MedicationRequest.medicationCodeableConcept.text",
                "MedicationRequest.medicationCodeableConcept",
            ),
        ),
        Field(
            "rxnorm",
            "RxNorm code",
            max_length=10,
            help="Optional.",
            paths=("MedicationRequest.medicationCodeableConcept.coding",),
        ),
        Field(
            "status",
            "Status",
            "select",
            required=True,
            choices=MEDICATION_STATUS,
            paths=("MedicationRequest.status",),
        ),
        Field(
            "dosage",
            "Directions",
            max_length=500,
            help="For example 'One tablet twice a day with meals'.",
            paths=("MedicationRequest.dosageInstruction",),
        ),
        Field(
            "authored",
            "Ordered on",
            "date",
            required=True,
            help="YYYY-MM-DD",
            paths=("MedicationRequest.authoredOn",),
        ),
        _ENCOUNTER_FIELD,
    ],
)

DOCUMENT = FormSpec(
    key="document",
    resource_type="DocumentReference",
    title="Add a document",
    submit="Save document",
    intro="Documents are saved unsigned (preliminary) until the author signs them.",
    fields=[
        Field(
            "doc_type",
            "Document type",
            "select",
            required=True,
            choices=DOCUMENT_TYPES,
            paths=("DocumentReference.type",),
        ),
        Field(
            "title",
            "Title",
            required=True,
            max_length=200,
            paths=("DocumentReference.description", "DocumentReference.content[0].attachment.title"),
        ),
        Field(
            "date",
            "Date of service",
            "datetime",
            required=True,
            help="When the note was written.",
            paths=("DocumentReference.date",),
        ),
        Field(
            "text",
            "Text",
            "textarea",
            required=True,
            max_length=200_000,
            paths=("DocumentReference.content",),
        ),
        _ENCOUNTER_FIELD,
    ],
)

FORMS: dict[str, FormSpec] = {f.key: f for f in (ENCOUNTER, CONDITION, ALLERGY, MEDICATION, DOCUMENT)}
SAVED_LABEL = {
    "Patient": "Patient registered.",
    "Encounter": "Encounter saved.",
    "Condition": "Problem saved.",
    "AllergyIntolerance": "Allergy saved.",
    "MedicationRequest": "Medication saved.",
    "DocumentReference": "Document saved (unsigned).",
}


# --------------------------------------------------------------------------------------------
# Checking


def check_form(
    spec: FormSpec,
    raw: Mapping[str, Any],
    *,
    patient_id: str | None,
    encounter_ids: Sequence[str] = (),
    today: date | None = None,
) -> Checked:
    """Form-level checks, then build the resource. ``encounter_ids``: this patient's encounters
    (the only ones a form may point at)."""
    today = today or datetime.now(UTC).date()
    tz = tz_from_offset(raw.get("tz_offset"))
    values = {
        f.name: clean(raw.get(f.name), f.max_length * 2 if f.kind != "textarea" else f.max_length + 1)
        for f in spec.fields
    }
    out = Checked(values)
    for f in spec.fields:
        v = values[f.name]
        if not v:
            if f.required:
                verb = "Choose" if f.kind == "select" else "Enter"
                out.errors[f.name] = f"{verb} the {f.label.lower()}; it is required."
            continue
        if len(v) > f.max_length:
            out.errors[f.name] = f"The {f.label.lower()} is too long: use at most {f.max_length} characters."
        elif f.kind == "select" and f.name != "encounter" and v not in {c for c, _ in f.choices}:
            out.errors[f.name] = (
                f"Choose the {f.label.lower()} from the list: " + ", ".join(lbl for _, lbl in f.choices) + "."
            )
        elif f.kind == "date" and not _DATE_RE.match(v):
            out.errors[f.name] = (
                f"The {f.label.lower()} must be a date written YYYY-MM-DD, for example 1980-04-23."
            )
        elif f.kind == "datetime" and fhir_datetime(v, tz) is None:
            out.errors[f.name] = (
                f"The {f.label.lower()} must be a date, or a date and time, written "
                "YYYY-MM-DD or YYYY-MM-DD HH:MM."
            )
    _specific(spec, values, out, today, tz, encounter_ids)
    if out.ok:
        assert spec.builder is not None
        out.resource = spec.builder(
            {**values, "_tz": str(int(tz.utcoffset(None).total_seconds() // 60))}, patient_id
        )
    return out


def _specific(
    spec: FormSpec, v: dict[str, str], out: Checked, today: date, tz: timezone, encounter_ids: Sequence[str]
) -> None:
    err = out.errors
    if "encounter" in v and v["encounter"] and v["encounter"] not in encounter_ids:
        err["encounter"] = "Choose one of this patient's encounters from the list, or none."
    for name in ("birth_date", "onset", "authored"):
        if name in v and name not in err and v[name]:
            d = parse_date(v[name])
            if d is not None and d > today:
                label = spec.field(name).label.lower()
                err[name] = f"The {label} is in the future: check the year."
            if name == "birth_date" and d is not None and d.year < 1880:
                err[name] = "The birth date is before 1880: check the year."
    if spec is PATIENT:
        if v["mrn"] and "mrn" not in err and not _MRN_RE.match(v["mrn"]):
            err["mrn"] = "The MRN may hold only letters, digits and '-' (at most 32)."
        if v["phone"] and "phone" not in err and not _PHONE_RE.match(v["phone"]):
            err["phone"] = "The phone number may hold only digits, spaces and + ( ) - . /"
    if spec is CONDITION and v["icd10"] and "icd10" not in err:
        v["icd10"] = v["icd10"].upper()
        if not _ICD10CM_RE.match(v["icd10"]):
            err["icd10"] = (
                "The ICD-10-CM code must look like E11.9 or S72.001A: a letter, two characters, "
                "then optionally a dot and up to four more."
            )
    if spec is MEDICATION and v["rxnorm"] and "rxnorm" not in err and not _RXNORM_RE.match(v["rxnorm"]):
        err["rxnorm"] = "The RxNorm code is a number, for example 860975."
    if spec is ENCOUNTER and v["start"] and v["end"] and "start" not in err and "end" not in err:
        s = to_utc(fhir_datetime(v["start"], tz) or "")
        e = to_utc(fhir_datetime(v["end"], tz) or "")
        if s and e and e < s:
            err["end"] = "The end is before the start: check both dates."
    if spec is ALLERGY and v["severity"] and not v["reaction"] and "reaction" not in err:
        err["reaction"] = "Enter the reaction whose severity you chose, or clear the severity."


def map_issues(spec: FormSpec, issues: Sequence[Issue], values: Mapping[str, str] | None = None) -> Checked:
    """Put the validator's issues next to the fields they are about (longest matching path wins)."""
    out = Checked(dict(values or {}))
    rt = spec.resource_type
    table: list[tuple[str, Field]] = []
    for f in spec.fields:
        for p in f.paths:
            table.append((p.replace("{rt}", rt), f))
    table.sort(key=lambda x: -len(x[0]))
    for issue in issues:
        path = issue.path or ""
        target = None
        for prefix, f in table:
            if path == prefix or path.startswith(prefix + ".") or path.startswith(prefix + "["):
                target = f
                break
        message = issue.message
        if target is not None:
            if path and message.startswith(path):
                message = f"The {target.label.lower()}" + message[len(path) :]
            if target.name in out.errors:
                out.errors[target.name] += " " + message
            else:
                out.errors[target.name] = message
        else:
            out.general.append(message)
    return out


# --------------------------------------------------------------------------------------------
# Builders: form values -> FHIR resources


def _ref(rtype: str, rid: str) -> dict[str, str]:
    return {"reference": f"{rtype}/{rid}"}


def _tz(v: Mapping[str, str]) -> timezone:
    return tz_from_offset(v.get("_tz"))


def build_patient(v: dict[str, str], _pid: str | None = None) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Patient",
        "active": True,
        "name": [{"use": "official", "family": v["family"], "given": v["given"].split()}],
        "gender": v["sex"],
        "birthDate": v["birth_date"],
    }
    if v.get("mrn"):
        res["identifier"] = [mrn_identifier(v["mrn"])]
    if v.get("phone"):
        res["telecom"] = [{"system": "phone", "value": v["phone"], "use": "home"}]
    addr = {
        k: v[f] for k, f in (("city", "city"), ("state", "state"), ("postalCode", "postal_code")) if v.get(f)
    }
    if v.get("address_line"):
        addr["line"] = [v["address_line"]]  # type: ignore[assignment]
    if addr:
        res["address"] = [{"use": "home", **addr}]
    return res


def mrn_identifier(value: str) -> dict[str, Any]:
    return {
        "use": "usual",
        "type": {
            "coding": [{"system": V2_0203, "code": "MR", "display": "Medical record number"}],
            "text": "Medical record number",
        },
        "system": MRN_SYSTEM,
        "value": value,
    }


def build_encounter(v: dict[str, str], pid: str | None) -> dict[str, Any]:
    tz = _tz(v)
    period: dict[str, str] = {"start": fhir_datetime(v["start"], tz) or v["start"]}
    if v.get("end"):
        period["end"] = fhir_datetime(v["end"], tz) or v["end"]
    res: dict[str, Any] = {
        "resourceType": "Encounter",
        "status": v["status"],
        "class": {
            "system": V3_ACTCODE,
            "code": v["enc_class"],
            "display": ENCOUNTER_CLASS_DISPLAY.get(v["enc_class"], v["enc_class"]),
        },
        "subject": _ref("Patient", pid or ""),
        "period": period,
    }
    if v.get("type_text"):
        res["type"] = [{"text": v["type_text"]}]
    if v.get("reason"):
        res["reasonCode"] = [{"text": v["reason"]}]
    return res


def build_condition(v: dict[str, str], pid: str | None) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Condition",
        "clinicalStatus": _coded(COND_CLINICAL, v["clinical_status"]),
        "verificationStatus": _coded(COND_VER, v["verification_status"]),
        "category": [
            {
                "coding": [
                    {"system": COND_CATEGORY, "code": "problem-list-item", "display": "Problem List Item"}
                ]
            }
        ],
        "code": concept(v["description"], ICD10CM if v.get("icd10") else None, v.get("icd10") or None),
        "subject": _ref("Patient", pid or ""),
        "recordedDate": now_instant(),
    }
    if v.get("onset"):
        res["onsetDateTime"] = v["onset"]
    if v.get("encounter"):
        res["encounter"] = _ref("Encounter", v["encounter"])
    return res


def build_allergy(v: dict[str, str], pid: str | None) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "AllergyIntolerance",
        "clinicalStatus": _coded(ALLERGY_CLINICAL, "active"),
        "verificationStatus": _coded(ALLERGY_VER, v["verification_status"]),
        "type": v["allergy_type"],
        "category": [v["category"]],
        "code": {"text": v["substance"]},
        "patient": _ref("Patient", pid or ""),
        "recordedDate": now_instant(),
    }
    if v.get("criticality"):
        res["criticality"] = v["criticality"]
    if v.get("onset"):
        res["onsetDateTime"] = v["onset"]
    if v.get("reaction"):
        reaction: dict[str, Any] = {"manifestation": [{"text": v["reaction"]}]}
        if v.get("severity"):
            reaction["severity"] = v["severity"]
        res["reaction"] = [reaction]
    return res


def build_medication(v: dict[str, str], pid: str | None) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "status": v["status"],
        "intent": "order",
        "medicationCodeableConcept": concept(
            v["medication"], RXNORM if v.get("rxnorm") else None, v.get("rxnorm") or None
        ),
        "subject": _ref("Patient", pid or ""),
        "authoredOn": v["authored"],
    }
    if v.get("dosage"):
        res["dosageInstruction"] = [{"text": v["dosage"]}]
    if v.get("encounter"):
        res["encounter"] = _ref("Encounter", v["encounter"])
    return res


def build_document(v: dict[str, str], pid: str | None) -> dict[str, Any]:
    tz = _tz(v)
    when = fhir_datetime(v["date"], tz) or v["date"]
    if len(when) == 10:  # DocumentReference.date is an instant: a bare date means its start
        when += "T00:00:00" + ("Z" if tz.utcoffset(None) == timedelta(0) else _offset_text(tz))
    display = dict(DOCUMENT_TYPES).get(v["doc_type"], v["doc_type"])
    text = v["text"].replace("\r\n", "\n")
    res: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "status": "current",
        "docStatus": "preliminary",
        "type": concept(display, LOINC, v["doc_type"], display),
        "subject": _ref("Patient", pid or ""),
        "date": when,
        "description": v["title"],
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain; charset=utf-8",
                    "data": base64.b64encode(text.encode("utf-8")).decode("ascii"),
                    "title": v["title"],
                }
            }
        ],
    }
    if v.get("encounter"):
        res["context"] = {"encounter": [_ref("Encounter", v["encounter"])]}
    return res


def _offset_text(tz: timezone) -> str:
    total = int(tz.utcoffset(None).total_seconds() // 60)
    sign = "+" if total >= 0 else "-"
    total = abs(total)
    return f"{sign}{total // 60:02d}:{total % 60:02d}"


PATIENT.builder = build_patient
ENCOUNTER.builder = build_encounter
CONDITION.builder = build_condition
ALLERGY.builder = build_allergy
MEDICATION.builder = build_medication
DOCUMENT.builder = build_document
