"""FHIR resources and small helpers for the coding tests (a top-level module: tests are not a package,
so the name is unique)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from chartkeeper.db import Database
from chartkeeper.security.models import AuditRow
from chartkeeper.security.principal import Principal

PASSWORD = "coding-tests-password-1"
SYSTEM = Principal.system("test")
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
NOW = datetime.now(UTC).replace(microsecond=0)
SUMMARY = ("DISCHARGE SUMMARY\nDISCHARGE DIAGNOSES:\n1. Community acquired pneumonia\n2. Hypertension\n"
           "3. Anemia\nHOSPITAL COURSE: treated with ceftriaxone. Hemoglobin 7.9 g/dL on day 2.\n")


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def practitioner(pid: str, family: str, given: str) -> dict[str, Any]:
    return {"resourceType": "Practitioner", "id": pid, "name": [{"family": family, "given": [given], "prefix": ["Dr."]}]}


def patient(pid: str, family: str, mrn: str, gender: str = "female", birth: str = "1950-03-04") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "gender": gender, "birthDate": birth,
            "identifier": [{"system": "https://chartkeeper.example.org/mrn", "value": mrn}],
            "name": [{"family": family, "given": ["Pat"]}]}


def encounter(eid: str, pid: str, cls: str = "IMP", *, discharged_days_ago: float | None = 5, los_days: float = 3,
              status: str = "finished") -> dict[str, Any]:
    end = NOW - timedelta(days=discharged_days_ago) if discharged_days_ago is not None else None
    start = (end or NOW) - timedelta(days=los_days)
    period = {"start": iso(start)} | ({"end": iso(end)} if end else {})
    return {"resourceType": "Encounter", "id": eid, "status": status if end else "in-progress",
            "class": {"system": ACT, "code": cls}, "subject": {"reference": f"Patient/{pid}"}, "period": period,
            "participant": [{"individual": {"reference": "Practitioner/dr-a"}}]}


def document(did: str, pid: str, eid: str, text: str = SUMMARY, author: str = "dr-a") -> dict[str, Any]:
    return {"resourceType": "DocumentReference", "id": did, "status": "current", "docStatus": "preliminary",
            "type": {"coding": [{"system": "http://loinc.org", "code": "18842-5", "display": "Discharge summary"}]},
            "subject": {"reference": f"Patient/{pid}"}, "date": iso(NOW - timedelta(days=5)),
            "author": [{"reference": f"Practitioner/{author}"}],
            "context": {"encounter": [{"reference": f"Encounter/{eid}"}]},
            "content": [{"attachment": {"contentType": "text/plain; charset=utf-8",
                                        "data": base64.b64encode(text.encode()).decode()}}]}


def hemoglobin(oid: str, pid: str, eid: str, value: float = 7.9) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "718-7", "display": "Hemoglobin"}]},
            "subject": {"reference": f"Patient/{pid}"}, "encounter": {"reference": f"Encounter/{eid}"},
            "effectiveDateTime": iso(NOW - timedelta(days=6)),
            "valueQuantity": {"value": value, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL"}}




def audit_actions(db: Database, user_id: str, outcome: str = "success") -> set[str]:
    """The audit actions recorded for this user with this outcome."""
    t = AuditRow.__table__
    with db.begin() as conn:
        return {r[0] for r in conn.execute(select(t.c.action).where(t.c.user_id == user_id, t.c.outcome == outcome))}
