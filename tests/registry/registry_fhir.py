"""FHIR resources for the registry tests: a patient, a biopsy visit with its pathology report and
coded diagnosis, treatment after it, later visits. Imported as a top-level module (tests are not a
package), so the name is unique."""

from __future__ import annotations

import base64
from typing import Any

LOINC = "http://loinc.org"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
MRN = "https://chartkeeper.example.org/mrn"

BREAST_REPORT = """SURGICAL PATHOLOGY REPORT
SPECIMEN: Left breast, core needle biopsy
FINAL DIAGNOSIS:
Left breast, core biopsy:
- Invasive ductal carcinoma, grade 2.
"""
RESECTION_REPORT = """SURGICAL PATHOLOGY REPORT
SPECIMEN: Left breast, partial mastectomy
FINAL DIAGNOSIS:
- Invasive ductal carcinoma, grade 2, 1.8 cm. Margins negative.
"""
BENIGN_REPORT = """SURGICAL PATHOLOGY REPORT
SPECIMEN: Right breast, core biopsy
FINAL DIAGNOSIS:
- Fibroadenoma. Negative for malignancy.
"""


def ref(rtype: str, rid: str) -> dict[str, str]:
    return {"reference": f"{rtype}/{rid}"}


def patient(pid: str, mrn: str, family: str = "Rivera", given: str = "Ana", *, gender: str = "female",
            birth: str = "1961-04-02", deceased: str | None = None, gp: str | None = None) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Patient", "id": pid, "identifier": [{"system": MRN, "value": mrn}],
        "name": [{"use": "official", "family": family, "given": [given]}], "gender": gender, "birthDate": birth,
        "address": [{"use": "home", "line": ["12 Elm Street"], "city": "Columbus", "state": "OH", "postalCode": "43215"}],
    }
    if deceased:
        res["deceasedDateTime"] = deceased
    if gp:
        res["generalPractitioner"] = [ref("Practitioner", gp)]
    return res


def practitioner(pid: str, family: str, given: str) -> dict[str, Any]:
    return {"resourceType": "Practitioner", "id": pid, "name": [{"family": family, "given": [given], "prefix": ["Dr."]}],
            "address": [{"use": "work", "line": ["455 Park Street"], "city": "Columbus", "state": "OH",
                         "postalCode": "43215"}]}


def encounter(eid: str, pid: str, day: str, attending: str = "dr-onc") -> dict[str, Any]:
    return {"resourceType": "Encounter", "id": eid, "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": ref("Patient", pid), "period": {"start": f"{day}T09:00:00Z", "end": f"{day}T09:30:00Z"},
            "participant": [{"individual": ref("Practitioner", attending)}]}


def pathology(did: str, pid: str, eid: str, day: str, text: str = BREAST_REPORT) -> dict[str, Any]:
    return {"resourceType": "DocumentReference", "id": did, "status": "current", "docStatus": "final",
            "type": {"coding": [{"system": LOINC, "code": "11526-1", "display": "Pathology study"}]},
            "subject": ref("Patient", pid), "date": f"{day}T11:00:00Z",
            "content": [{"attachment": {"contentType": "text/plain", "data": base64.b64encode(text.encode()).decode()}}],
            "context": {"encounter": [ref("Encounter", eid)], "period": {"start": f"{day}T09:00:00Z"}}}


def condition(cid: str, pid: str, code: str, day: str, display: str = "Malignant neoplasm") -> dict[str, Any]:
    return {"resourceType": "Condition", "id": cid, "subject": ref("Patient", pid),
            "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                               "code": "confirmed"}]},
            "code": {"coding": [{"system": ICD10CM, "code": code, "display": display}], "text": display},
            "onsetDateTime": day, "recordedDate": day}


def procedure(prid: str, pid: str, text: str, day: str) -> dict[str, Any]:
    return {"resourceType": "Procedure", "id": prid, "status": "completed", "code": {"text": text},
            "subject": ref("Patient", pid), "performedDateTime": f"{day}T08:00:00Z"}


def medication(mid: str, pid: str, name: str, day: str) -> dict[str, Any]:
    return {"resourceType": "MedicationRequest", "id": mid, "status": "completed", "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "1", "display": name}], "text": name},
            "subject": ref("Patient", pid), "authoredOn": f"{day}T10:00:00Z"}
