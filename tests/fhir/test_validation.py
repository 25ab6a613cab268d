"""FHIR R4 structural validation: real Synthea data passes, each kind of mistake is named and explained."""

from __future__ import annotations

import copy
import gzip
import importlib.util
import math
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chartkeeper.fhir import validation
from chartkeeper.fhir.validation import SUPPORTED_TYPES, ValidationIssue, validate

ROOT = Path(__file__).resolve().parents[2]
REF = {"reference": "Patient/p1"}
CC = {"coding": [{"system": "http://snomed.info/sct", "code": "1234"}], "text": "something"}

# One small valid resource of every supported type (R4 cardinalities: every required element set).
MINIMAL: dict[str, dict[str, Any]] = {
    "Patient": {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1980-02-29"},
    "Practitioner": {"resourceType": "Practitioner", "name": [{"family": "Osler", "given": ["William"]}]},
    "PractitionerRole": {"resourceType": "PractitionerRole", "practitioner": {"reference": "Practitioner/1"}},
    "Organization": {"resourceType": "Organization", "name": "General Hospital"},
    "Location": {
        "resourceType": "Location",
        "name": "Ward 1",
        "position": {"longitude": -71.1, "latitude": 42.3},
    },
    "Encounter": {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": REF,
    },
    "Condition": {
        "resourceType": "Condition",
        "clinicalStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
            ]
        },
        "verificationStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}
            ]
        },
        "code": CC,
        "subject": REF,
    },
    "Procedure": {"resourceType": "Procedure", "status": "completed", "code": CC, "subject": REF},
    "Observation": {
        "resourceType": "Observation",
        "status": "final",
        "code": CC,
        "subject": REF,
        "effectiveDateTime": "2020-01-31T10:00:00+01:00",
        "valueQuantity": {"value": 4.5, "unit": "mmol/L"},
    },
    "DiagnosticReport": {"resourceType": "DiagnosticReport", "status": "final", "code": CC},
    "MedicationRequest": {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": CC,
        "subject": REF,
    },
    "MedicationStatement": {
        "resourceType": "MedicationStatement",
        "status": "active",
        "medicationCodeableConcept": CC,
        "subject": REF,
    },
    "Medication": {"resourceType": "Medication", "code": CC},
    "AllergyIntolerance": {"resourceType": "AllergyIntolerance", "patient": REF},
    "Immunization": {
        "resourceType": "Immunization",
        "status": "completed",
        "vaccineCode": CC,
        "patient": REF,
        "occurrenceDateTime": "2020-10-01",
    },
    "CarePlan": {"resourceType": "CarePlan", "status": "active", "intent": "plan", "subject": REF},
    "CareTeam": {"resourceType": "CareTeam", "status": "active"},
    "Goal": {
        "resourceType": "Goal",
        "lifecycleStatus": "active",
        "description": {"text": "walk"},
        "subject": REF,
    },
    "DocumentReference": {
        "resourceType": "DocumentReference",
        "status": "current",
        "docStatus": "final",
        "content": [{"attachment": {"contentType": "text/plain", "data": "aGVsbG8="}}],
    },
    "Composition": {
        "resourceType": "Composition",
        "status": "final",
        "type": CC,
        "date": "2020-01-01",
        "author": [{"reference": "Practitioner/1"}],
        "title": "Discharge summary",
    },
    "Claim": {
        "resourceType": "Claim",
        "status": "active",
        "type": CC,
        "use": "claim",
        "patient": REF,
        "created": "2020-01-01",
        "provider": {"reference": "Organization/1"},
        "priority": CC,
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": "Coverage/1"}}],
    },
    "ExplanationOfBenefit": {
        "resourceType": "ExplanationOfBenefit",
        "status": "active",
        "type": CC,
        "use": "claim",
        "patient": REF,
        "created": "2020-01-01",
        "insurer": {"reference": "Organization/1"},
        "provider": {"reference": "Organization/1"},
        "outcome": "complete",
        "insurance": [{"focal": True, "coverage": {"reference": "Coverage/1"}}],
    },
    "Coverage": {
        "resourceType": "Coverage",
        "status": "active",
        "beneficiary": REF,
        "payor": [{"reference": "Organization/1"}],
    },
    "ImagingStudy": {"resourceType": "ImagingStudy", "status": "available", "subject": REF},
    "Task": {"resourceType": "Task", "status": "requested", "intent": "order"},
    "Provenance": {
        "resourceType": "Provenance",
        "target": [REF],
        "recorded": "2020-01-01T00:00:00Z",
        "agent": [{"who": {"reference": "Practitioner/1"}}],
    },
    "Consent": {"resourceType": "Consent", "status": "active", "scope": CC, "category": [CC]},
    "AuditEvent": {
        "resourceType": "AuditEvent",
        "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110110"},
        "recorded": "2020-01-01T00:00:00.123Z",
        "agent": [{"requestor": True}],
        "source": {"observer": {"reference": "Device/1"}},
    },
    "Device": {"resourceType": "Device", "status": "active"},
    "Specimen": {"resourceType": "Specimen", "subject": REF},
    "ServiceRequest": {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "subject": REF,
    },
    "Communication": {"resourceType": "Communication", "status": "completed"},
    "QuestionnaireResponse": {
        "resourceType": "QuestionnaireResponse",
        "status": "completed",
        "item": [{"linkId": "1", "answer": [{"valueString": "yes"}]}],
    },
    "RelatedPerson": {"resourceType": "RelatedPerson", "patient": REF},
    "Binary": {"resourceType": "Binary", "contentType": "text/plain", "data": "aGVsbG8="},
}


def with_(rt: str, **changes: Any) -> dict[str, Any]:
    r = copy.deepcopy(MINIMAL[rt])
    for k, v in changes.items():
        if v is None:
            r.pop(k, None)
        else:
            r[k] = v
    return r


def issue_at(issues: list[ValidationIssue], path: str) -> ValidationIssue:
    for i in issues:
        if i.path == path:
            return i
    raise AssertionError(f"no issue at {path}; got {[(i.path, i.message) for i in issues]}")


# --- the artefact ------------------------------------------------------------------------------


def test_minimal_resources_cover_supported_types() -> None:
    assert set(MINIMAL) == SUPPORTED_TYPES
    assert "Bundle" not in SUPPORTED_TYPES


def test_schema_artefact_says_where_it_comes_from() -> None:
    path = ROOT / "src" / "chartkeeper" / "fhir" / "schema" / "r4-subset.schema.json.gz"
    schema = orjson.loads(gzip.decompress(path.read_bytes()))
    assert next(iter(schema)) == "$comment"
    assert "CC0" in schema["$comment"] and "scripts/gen_fhir_schema.py" in schema["$comment"]
    assert SUPPORTED_TYPES <= set(schema["definitions"])
    assert "Bundle" not in schema["definitions"] and "Questionnaire" not in schema["definitions"]


def test_schema_artefact_is_what_the_script_generates(shared_data: Path) -> None:
    spec = importlib.util.spec_from_file_location("gen_fhir_schema", ROOT / "scripts" / "gen_fhir_schema.py")
    assert spec and spec.loader
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    source = orjson.loads(gzip.decompress((shared_data / "fhir" / "fhir.schema.json.gz").read_bytes()))
    committed = orjson.loads(gzip.decompress(Path(gen.TARGET).read_bytes()))
    assert gen.build(source) == committed, "run scripts/gen_fhir_schema.py and commit its output"
    assert set(gen.SUPPORTED_TYPES) == SUPPORTED_TYPES


# --- valid data ----------------------------------------------------------------------------------


def test_every_synthea_resource_is_valid(shared_data: Path) -> None:
    files = sorted((shared_data / "synthea-r4").glob("*.json.gz"))
    assert files
    count = 0
    failures: list[str] = []
    for f in files:
        bundle = orjson.loads(gzip.decompress(f.read_bytes()))
        for entry in bundle["entry"]:
            resource = entry["resource"]
            count += 1
            issues = validate(resource)
            if issues:
                failures.append(f"{f.name} {resource['resourceType']}/{resource.get('id')}: {issues[:3]}")
    assert count > 60_000
    assert not failures, f"{len(failures)} Synthea resources rejected, e.g. {failures[:5]}"


@pytest.mark.parametrize("rt", sorted(MINIMAL))
def test_minimal_resource_of_each_type_is_valid(rt: str) -> None:
    assert validate(MINIMAL[rt]) == []


@pytest.mark.parametrize("rt", sorted(MINIMAL))
def test_required_elements_agree_with_fhir_resources(rt: str) -> None:
    """Dropping an element is an error here exactly when fhir.resources (R4B) calls it required."""
    fhir_resources = pytest.importorskip("fhir.resources.R4B")
    model = fhir_resources.get_fhir_model_class(rt)
    model.model_validate(MINIMAL[rt])  # the oracle accepts the minimal resource too
    choices = validation._CHOICES.get(rt, {})
    for key in MINIMAL[rt]:
        if key in ("resourceType", "id"):
            continue
        resource = with_(rt, **{key: None})
        try:
            model.model_validate(resource)
            oracle_ok = True
        except Exception:  # noqa: BLE001 - pydantic.ValidationError or fhir_core's own
            oracle_ok = False
        issues = validate(resource)
        if oracle_ok:
            assert issues == [], f"{rt} without {key}: {issues}"
        else:
            group = next((g for g, members in choices.items() if key in members), key)
            issue = issue_at(issues, f"{rt}.{group}")
            assert issue.code == "required" and "add" in issue.message


def test_primitive_extension_siblings_are_allowed() -> None:
    resource = with_(
        "Patient",
        birthDate=None,
        _birthDate={
            "extension": [
                {"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}
            ]
        },
        name=[
            {
                "given": ["Ann", None],
                "_given": [None, {"extension": [{"url": "http://x.org/e", "valueString": "Bee"}]}],
            }
        ],
    )
    assert validate(resource) == []


def test_required_primitive_may_sit_in_its_extension_sibling() -> None:
    dar = {
        "extension": [
            {"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}
        ]
    }
    assert validate(with_("Observation", status=None, _status=dar)) == []


@pytest.mark.parametrize(
    "reference",
    [
        "Patient/p1",
        "Patient/p1/_history/3",
        "urn:uuid:0b2c8a1e-4c1a-4b3e-9f1d-2a9e8c7b6d5f",
        "#c1",
        "https://fhir.example.org/r4/Patient/123",
        "urn:oid:2.16.840.1.113883.3.1",
    ],
)
def test_reference_forms_accepted(reference: str) -> None:
    assert validate(with_("Observation", subject={"reference": reference})) == []


@pytest.mark.parametrize(
    "reference",
    ["Patient 12", "Patient/", "patient/12", "Foo/12", "urn:uuid:12", "Patient/12/_history/", "12"],
)
def test_bad_references_rejected(reference: str) -> None:
    issue = issue_at(
        validate(with_("Observation", subject={"reference": reference})), "Observation.subject.reference"
    )
    assert issue.code == "value" and "Type/id" in issue.message and "urn:uuid" in issue.message


@pytest.mark.parametrize("day", ["2020-02-29", "2000-02-29", "2021-12-31", "1999", "1999-04"])
def test_real_dates_accepted(day: str) -> None:
    assert validate(with_("Patient", birthDate=day)) == []


@pytest.mark.parametrize(
    "day",
    ["2020-13-45", "2021-02-29", "1900-02-29", "2020-04-31", "20-01-01", "2020-1-1", "2020-01-01T10:00:00Z"],
)
def test_impossible_dates_rejected(day: str) -> None:
    issue = issue_at(validate(with_("Patient", birthDate=day)), "Patient.birthDate")
    assert issue.code == "value" and "YYYY-MM-DD" in issue.message


def test_date_time_needs_a_time_zone_with_a_time() -> None:
    issues = validate(with_("Observation", effectiveDateTime="2020-01-31T10:00:00"))
    assert "time zone" in issue_at(issues, "Observation.effectiveDateTime").message
    issues = validate(with_("Provenance", recorded="2020-01-31"))
    assert issue_at(issues, "Provenance.recorded").code == "value"


# --- each kind of mistake -----------------------------------------------------------------------

BAD_CASES: list[tuple[str, dict[str, Any], str, str, list[str]]] = [
    # (name, resource, path, code, words the message must contain)
    (
        "unknown element",
        with_("Patient", birthdate="1980-01-01"),
        "Patient.birthdate",
        "structure",
        ["not an element of Patient", "birthDate"],
    ),
    (
        "unknown nested element",
        with_("Patient", name=[{"famly": "X"}]),
        "Patient.name[0].famly",
        "structure",
        ["HumanName", "family"],
    ),
    (
        "string where boolean",
        with_("Patient", active="true"),
        "Patient.active",
        "structure",
        ["boolean", "without quotes"],
    ),
    (
        "string where integer",
        with_("Patient", multipleBirthInteger="2"),
        "Patient.multipleBirthInteger",
        "structure",
        ["whole", "without quotes"],
    ),
    (
        "fraction where integer",
        with_("Patient", multipleBirthInteger=1.5),
        "Patient.multipleBirthInteger",
        "structure",
        ["whole number"],
    ),
    (
        "zero positiveInt",
        with_("Claim", insurance=[{"sequence": 0, "focal": True, "coverage": REF}]),
        "Claim.insurance[0].sequence",
        "value",
        ["1 to 2147483647"],
    ),
    (
        "array where object",
        with_("Patient", maritalStatus=[CC]),
        "Patient.maritalStatus",
        "structure",
        ["only once", "remove the [ ]"],
    ),
    (
        "array where primitive",
        with_("Patient", gender=["female"]),
        "Patient.gender",
        "structure",
        ["only once"],
    ),
    (
        "object where array",
        with_("Patient", name={"family": "X"}),
        "Patient.name",
        "structure",
        ["can repeat", "[ ]"],
    ),
    (
        "string where array",
        with_("Patient", name=[{"given": "Ann"}]),
        "Patient.name[0].given",
        "structure",
        ["can repeat", "[ ]"],
    ),
    (
        "string where object",
        with_("Observation", code="glucose"),
        "Observation.code",
        "structure",
        ["JSON object", "CodeableConcept"],
    ),
    (
        "missing required complex element",
        with_("Observation", code=None),
        "Observation.code",
        "required",
        ["required", "add it"],
    ),
    (
        "missing required nested element",
        with_("Claim", insurance=[{"sequence": 1, "focal": True}]),
        "Claim.insurance[0].coverage",
        "required",
        ["required"],
    ),
    (
        "Observation.status missing",
        with_("Observation", status=None),
        "Observation.status",
        "required",
        ["required", "add it"],
    ),
    (
        "Encounter.status missing",
        with_("Encounter", status=None),
        "Encounter.status",
        "required",
        ["required"],
    ),
    (
        "choice missing",
        with_("Immunization", occurrenceDateTime=None),
        "Immunization.occurrence[x]",
        "required",
        ["occurrenceDateTime", "occurrenceString"],
    ),
    ("bad date", with_("Patient", birthDate="2020-13-45"), "Patient.birthDate", "value", ["YYYY-MM-DD"]),
    ("id with spaces", with_("Patient", id="bad id"), "Patient.id", "value", ["no spaces", "64"]),
    (
        "gender M",
        with_("Patient", gender="M"),
        "Patient.gender",
        "code-invalid",
        ["'M'", "male, female, other, unknown"],
    ),
    (
        "gender Male",
        with_("Patient", gender="Male"),
        "Patient.gender",
        "code-invalid",
        ["case-sensitive", "'male'"],
    ),
    (
        "Encounter.status done",
        with_("Encounter", status="done"),
        "Encounter.status",
        "code-invalid",
        ["'done'", "finished"],
    ),
    (
        "Observation.status bad",
        with_("Observation", status="done"),
        "Observation.status",
        "code-invalid",
        ["final"],
    ),
    (
        "DocumentReference.status bad",
        with_("DocumentReference", status="draft"),
        "DocumentReference.status",
        "code-invalid",
        ["current, superseded, entered-in-error"],
    ),
    (
        "DocumentReference.docStatus signed",
        with_("DocumentReference", docStatus="signed"),
        "DocumentReference.docStatus",
        "code-invalid",
        ["preliminary, final, amended, entered-in-error"],
    ),
    (
        "MedicationRequest.intent bad",
        with_("MedicationRequest", intent="prescription"),
        "MedicationRequest.intent",
        "code-invalid",
        ["order"],
    ),
    (
        "Condition.clinicalStatus wrong code",
        with_(
            "Condition",
            clinicalStatus={
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "open"}
                ]
            },
        ),
        "Condition.clinicalStatus.coding[0].code",
        "code-invalid",
        ["'open'", "active", "resolved"],
    ),
    (
        "Condition.clinicalStatus wrong system",
        with_(
            "Condition", clinicalStatus={"coding": [{"system": "http://snomed.info/sct", "code": "55561003"}]}
        ),
        "Condition.clinicalStatus",
        "code-invalid",
        ["condition-clinical"],
    ),
    (
        "Condition.verificationStatus wrong code",
        with_(
            "Condition",
            verificationStatus={
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "maybe"}
                ]
            },
        ),
        "Condition.verificationStatus.coding[0].code",
        "code-invalid",
        ["confirmed"],
    ),
    (
        "AllergyIntolerance.clinicalStatus wrong code",
        with_(
            "AllergyIntolerance",
            clinicalStatus={
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                        "code": "gone",
                    }
                ]
            },
        ),
        "AllergyIntolerance.clinicalStatus.coding[0].code",
        "code-invalid",
        ["resolved"],
    ),
    (
        "bad reference",
        with_("Observation", subject={"reference": "Patient 12"}),
        "Observation.subject.reference",
        "value",
        ["'Patient 12'", "Type/id"],
    ),
    (
        "two value[x]",
        with_("Observation", valueString="high"),
        "Observation.value[x]",
        "structure",
        ["valueQuantity", "valueString", "one"],
    ),
    (
        "two value[x] in an extension",
        with_("Patient", extension=[{"url": "http://x.org/e", "valueString": "a", "valueCode": "b"}]),
        "Patient.extension[0].value[x]",
        "structure",
        ["valueCode", "valueString"],
    ),
    (
        "extension without url",
        with_("Patient", extension=[{"valueString": "a"}]),
        "Patient.extension[0].url",
        "required",
        ["required"],
    ),
    (
        "empty string",
        with_("Patient", name=[{"family": ""}]),
        "Patient.name[0].family",
        "value",
        ["empty string", "remove"],
    ),
    ("empty uri", with_("Patient", implicitRules=""), "Patient.implicitRules", "value", ["empty string"]),
    ("empty array", with_("Patient", name=[]), "Patient.name", "structure", ["empty array", "remove"]),
    (
        "empty object",
        with_("Patient", maritalStatus={}),
        "Patient.maritalStatus",
        "structure",
        ["empty object"],
    ),
    ("empty object in array", with_("Patient", name=[{}]), "Patient.name[0]", "structure", ["empty object"]),
    (
        "null in a primitive array without extensions",
        with_("Patient", name=[{"given": ["Ann", None]}]),
        "Patient.name[0].given",
        "structure",
        ["null", "_given"],
    ),
    (
        "null element",
        with_("Patient", gender=None) | {"active": None},
        "Patient.active",
        "structure",
        ["null"],
    ),
    (
        "bad narrative",
        with_("Patient", text={"status": "generated", "div": "plain text"}),
        "Patient.text.div",
        "value",
        ["<div"],
    ),
    (
        "bad currency",
        with_("Claim", total={"value": 10, "currency": "dollars"}),
        "Claim.total.currency",
        "code-invalid",
        ["ISO 4217"],
    ),
    ("missing resourceType", {"id": "x"}, "Resource.resourceType", "required", ["resourceType"]),
    (
        "unsupported resourceType",
        {"resourceType": "Bundle", "type": "transaction"},
        "Resource.resourceType",
        "not-supported",
        ["not stored", "Patient"],
    ),
    (
        "misspelt resourceType",
        {"resourceType": "Patiant"},
        "Resource.resourceType",
        "not-supported",
        ["not a FHIR R4 resource type", "did you mean 'Patient'"],
    ),
    ("resourceType not a string", {"resourceType": 7}, "Resource.resourceType", "structure", ["string"]),
    (
        "bad contained resource",
        with_(
            "ExplanationOfBenefit",
            contained=[{"resourceType": "Coverage", "id": "cov", "status": "active", "beneficiary": REF}],
        ),
        "ExplanationOfBenefit.contained[0].payor",
        "required",
        ["required"],
    ),
    (
        "contained unsupported type",
        with_("Patient", contained=[{"resourceType": "Questionnaire", "id": "q"}]),
        "Patient.contained[0].resourceType",
        "not-supported",
        ["Questionnaire"],
    ),
    (
        "contained non-object",
        with_("Patient", contained=["Patient/1"]),
        "Patient.contained[0]",
        "structure",
        ["resource"],
    ),
    (
        "contained with versionId",
        with_(
            "Patient",
            contained=[{"resourceType": "Organization", "id": "o", "name": "X", "meta": {"versionId": "1"}}],
        ),
        "Patient.contained[0].meta",
        "invalid",
        ["versionId"],
    ),
    (
        "contained inside contained",
        with_(
            "Patient",
            contained=[
                {
                    "resourceType": "Organization",
                    "id": "o",
                    "name": "X",
                    "contained": [{"resourceType": "Organization", "id": "o2", "name": "Y"}],
                }
            ],
        ),
        "Patient.contained[0].contained",
        "invalid",
        ["may not contain"],
    ),
]


@pytest.mark.parametrize(
    ("name", "resource", "path", "code", "words"), BAD_CASES, ids=[c[0] for c in BAD_CASES]
)
def test_mistake_is_reported_with_path_and_fix(
    name: str, resource: dict[str, Any], path: str, code: str, words: list[str]
) -> None:
    issue = issue_at(validate(resource), path)
    assert issue.code == code, issue
    for word in words:
        assert word in issue.message, (word, issue.message)
    assert issue.message.endswith(".") or issue.message.endswith(")"), issue.message
    assert "{" not in issue.message, "no raw schema or instance dumps"


@pytest.mark.parametrize("value", [[], None, "Patient", 42, 1.5, True, b"{}", ("resourceType", "Patient")])
def test_non_object_input(value: object) -> None:
    [issue] = validate(value)
    assert issue.path == "Resource" and issue.code == "structure" and "JSON object" in issue.message


@pytest.mark.parametrize(
    ("junk", "words"),
    [
        ({"x": {1, 2}}, "type set"),
        ({"x": b"bytes"}, "type bytes"),
        ({"x": object()}, "type object"),
        ({1: "x"}, "key that is not a string"),
        ({"x": 10**30}, "64 bits"),
        ({"x": "\ud800"}, "Unicode"),
    ],
)
def test_non_json_values(junk: dict[Any, Any], words: str) -> None:
    [issue] = validate({"resourceType": "Patient", **junk})
    assert issue.code == "structure" and words in issue.message


def test_non_finite_number() -> None:
    issues = validate(with_("Observation", valueQuantity={"value": math.nan}))
    assert issue_at(issues, "Observation.valueQuantity.value").code == "structure"


def test_deeply_nested_junk_does_not_recurse() -> None:
    deep: Any = {"url": "http://x.org/e"}
    for _ in range(100_000):
        deep = {"url": "http://x.org/e", "extension": [deep]}
    [issue] = validate({"resourceType": "Patient", "extension": [deep]})
    assert "deeper than 254" in issue.message
    deep_list: Any = []
    for _ in range(100_000):
        deep_list = [deep_list]
    [issue] = validate({"resourceType": "Patient", "name": deep_list})
    assert issue.code == "structure"


def test_nesting_just_inside_the_limit_is_validated() -> None:
    deep: Any = {"url": "http://x.org/e", "valueBoolean": "yes"}
    for _ in range(120):  # 2 JSON levels each: 241 deep
        deep = {"url": "http://x.org/e", "extension": [deep]}
    issues = validate({"resourceType": "Patient", "extension": [deep]})
    assert (
        len(issues) == 1 and issues[0].path.endswith(".valueBoolean") and issues[0].path.count("[0]") == 121
    )


def test_many_errors_are_capped() -> None:
    resource = with_("Patient", name=[{"family": 1}] * 500)
    issues = validate(resource)
    assert len(issues) == validation.MAX_ISSUES + 1
    assert "not listed" in issues[-1].message
    resource = {"resourceType": "Patient", **{f"junk{i}": i for i in range(5000)}}
    assert len(validate(resource)) == validation.MAX_ISSUES + 1


def test_issue_is_hashable_value() -> None:
    issue = ValidationIssue("Patient.x", "Patient.x is wrong.")
    assert issue.code == "invalid" and {issue: 1}[ValidationIssue("Patient.x", "Patient.x is wrong.")] == 1


def test_validation_does_not_change_the_resource() -> None:
    resource = with_("Condition", clinicalStatus={"text": "x"}, contained=[{"resourceType": "Patient"}])
    before = copy.deepcopy(resource)
    validate(resource)
    assert resource == before


# --- never raises ------------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=30,
)
_element_names = sorted({e for els in validation._ELEMENTS.values() for e in els} | {"_birthDate", "_given"})
_fhirish = st.recursive(
    _json,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(_element_names) | st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=_json
    | st.builds(
        lambda rt, body: {**body, "resourceType": rt} if isinstance(body, dict) else body,
        st.sampled_from(sorted(SUPPORTED_TYPES)) | st.text(max_size=8),
        _fhirish,
    )
    | st.builds(
        lambda base, key, val: {**base, key: val},
        st.sampled_from(list(MINIMAL.values())),
        st.sampled_from(_element_names),
        _fhirish,
    )
)
def test_validate_never_raises(value: object) -> None:
    issues = validate(value)
    assert isinstance(issues, list)
    assert all(isinstance(i, ValidationIssue) and i.path and i.message for i in issues)
