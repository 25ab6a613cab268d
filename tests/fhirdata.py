"""Small FHIR resources for tests (importable from any test module: tests/ is on sys.path)."""

from __future__ import annotations


def patient(family="Rivera", given="Ana", birth="1961-04-02", gender="female", mrn="MRN001"):
    return {"resourceType": "Patient",
            "identifier": [{"system": "https://chartkeeper.example.org/mrn", "value": mrn}],
            "name": [{"family": family, "given": [given]}], "gender": gender, "birthDate": birth,
            "address": [{"postalCode": "01655", "city": "Worcester"}]}


def obs(pid, code="4548-4", value=7.1, when="2024-03-01T10:00:00Z", status="final"):
    return {"resourceType": "Observation", "status": status,
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": when,
            "valueQuantity": {"value": value, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}}


def as_role(tokens, role):
    return {"Authorization": f"Bearer {tokens[role]}"}
