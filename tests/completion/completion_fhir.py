"""FHIR resources for the chart completion tests: a hospital stay and what belongs to it.

Times are hours after ``T0`` (the admission of every stay here), so a test reads like the chart:
``docref(..., at=30)`` is a document written 30 hours after admission. Imported as a top-level module
(tests are not a package), so the name is unique.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)

LOINC = "http://loinc.org"
CK_DOC = "https://chartkeeper.org/fhir/CodeSystem/document-type"
SNOMED = "http://snomed.info/sct"
HP = (LOINC, "34117-2")
OP_NOTE = (LOINC, "11504-8")
DISCHARGE = (LOINC, "18842-5")
SHORT_STAY = (CK_DOC, "short-stay-note")
PATHOLOGY = (LOINC, "11526-1")
CONSULT = (LOINC, "11488-4")
VERBAL = (CK_DOC, "verbal-order")
PROGRESS = (LOINC, "11506-3")

FULL_SUMMARY = """DISCHARGE SUMMARY
DISCHARGE DIAGNOSES:
1. Community acquired pneumonia
PROCEDURES PERFORMED:
None
DISPOSITION:
Home
DISCHARGE MEDICATIONS:
Amoxicillin 500 mg three times a day
FOLLOW-UP:
Primary care in one week
"""


def at(hours: float) -> str:
    return (T0 + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")


def when(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def ref(rtype: str, rid: str) -> dict[str, str]:
    return {"reference": f"{rtype}/{rid}"}


def practitioner(pid: str, family: str = "Okafor", given: str = "Ada", email: str | None = None) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Practitioner", "id": pid,
                           "name": [{"family": family, "given": [given], "prefix": ["Dr."]}]}
    if email:
        res["telecom"] = [{"system": "email", "value": email}]
    return res


def patient(pid: str, mrn: str = "MRN-C1") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid,
            "identifier": [{"system": "https://chartkeeper.example.org/mrn", "value": mrn}],
            "name": [{"family": "Rivera", "given": ["Ana"]}], "gender": "female", "birthDate": "1961-04-02"}


def encounter(eid: str, pid: str, attending: str | None = "dr-att", *, cls: str = "IMP", hours: float | None = 96,
              status: str = "finished", disposition: str | None = None, service: str = "General medicine") -> dict[str, Any]:
    """A stay admitted at T0 and discharged ``hours`` later (None: still in hospital)."""
    period = {"start": at(0)}
    if hours is not None:
        period["end"] = at(hours)
    res: dict[str, Any] = {
        "resourceType": "Encounter", "id": eid, "status": status,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": cls},
        "serviceType": {"text": service},
        "subject": ref("Patient", pid), "period": period}
    if attending:
        res["participant"] = [{"type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                                     "code": "ATND"}]}],
                               "individual": ref("Practitioner", attending)}]
    if disposition:
        res["hospitalization"] = {"dischargeDisposition": {"coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/discharge-disposition", "code": disposition}]}}
    return res


def docref(did: str | None, pid: str, eid: str | None, kind: tuple[str, str], at_hours: float, author: str = "dr-att", *,
           text: str = "Note\n", signed: bool = False, status: str = "current",
           appends: str | None = None) -> dict[str, Any]:
    """A DocumentReference. ``signed``: imported already authenticated (docStatus final + authenticator)."""
    res: dict[str, Any] = {
        "resourceType": "DocumentReference", "status": status,
        "docStatus": "final" if signed else "preliminary",
        "type": {"coding": [{"system": kind[0], "code": kind[1]}]},
        "subject": ref("Patient", pid), "date": at(at_hours), "author": [ref("Practitioner", author)],
        "content": [{"attachment": {"contentType": "text/plain", "data": base64.b64encode(text.encode()).decode()}}],
    }
    if did:
        res["id"] = did
    if eid:
        res["context"] = {"encounter": [ref("Encounter", eid)]}
    if signed:
        res["authenticator"] = ref("Practitioner", author)
    if appends:
        res["relatesTo"] = [{"code": "appends", "target": ref("DocumentReference", appends)}]
    return res


def procedure(prid: str, pid: str, eid: str, at_hours: float, performer: str = "dr-surg", *,
              surgical: bool = True) -> dict[str, Any]:
    cat = ("387713003", "Surgical procedure") if surgical else ("103693007", "Diagnostic procedure")
    return {"resourceType": "Procedure", "id": prid, "status": "completed",
            "category": {"coding": [{"system": SNOMED, "code": cat[0], "display": cat[1]}]},
            "code": {"coding": [{"system": SNOMED, "code": "80146002", "display": "Appendectomy"}]},
            "subject": ref("Patient", pid), "encounter": ref("Encounter", eid), "performedDateTime": at(at_hours),
            "performer": [{"actor": ref("Practitioner", performer)}]}


def consult_order(oid: str, pid: str, eid: str, at_hours: float, performer: str = "dr-cons", *,
                  consult: bool = True) -> dict[str, Any]:
    cat = ("11429006", "Consultation") if consult else ("108252007", "Laboratory procedure")
    return {"resourceType": "ServiceRequest", "id": oid, "status": "completed", "intent": "order",
            "category": [{"coding": [{"system": SNOMED, "code": cat[0], "display": cat[1]}]}],
            "code": {"text": "Cardiology consult"},
            "subject": ref("Patient", pid), "encounter": ref("Encounter", eid), "authoredOn": at(at_hours),
            "performer": [ref("Practitioner", performer)]}


def specimen(sid: str, pid: str, at_hours: float) -> dict[str, Any]:
    return {"resourceType": "Specimen", "id": sid, "status": "available",
            "type": {"coding": [{"system": SNOMED, "code": "119376003", "display": "Tissue specimen"}]},
            "subject": ref("Patient", pid), "collection": {"collectedDateTime": at(at_hours)}}


def signature(prov_id: str, doc_id: str, at_hours: float, who: str = "dr-att") -> dict[str, Any]:
    """A Provenance carrying an author's signature on a document (what signing writes)."""
    return {"resourceType": "Provenance", "id": prov_id, "target": [ref("DocumentReference", doc_id)],
            "recorded": at(at_hours),
            "agent": [{"who": ref("Practitioner", who)}],
            "signature": [{"type": [{"system": "urn:iso-astm:E1762-95:2013", "code": "1.2.840.10065.1.12.1.1"}],
                           "when": at(at_hours), "who": ref("Practitioner", who), "sigFormat": "text/plain",
                           "data": base64.b64encode(b"signed").decode()}]}
