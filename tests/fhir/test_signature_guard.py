"""Signing is not an edit: nobody sets a document's authenticator by writing the resource (REST
update, create or transaction); physicians sign through chart completion, which records who and when."""

from __future__ import annotations

import base64

from sqlalchemy import select

from chartkeeper.security.models import AuditRow
from fhirdata import as_role, patient


def _doc(pid: str, pract: str, **extra):
    return {"resourceType": "DocumentReference", "status": "current", "docStatus": "preliminary",
            "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3"}]},
            "subject": {"reference": f"Patient/{pid}"}, "author": [{"reference": f"Practitioner/{pract}"}],
            "content": [{"attachment": {"contentType": "text/plain",
                                        "data": base64.b64encode(b"Progress note").decode()}}]} | extra


def test_nobody_signs_by_editing(client, tokens, db):
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    pract = client.post("/fhir/Practitioner", json={"resourceType": "Practitioner",
                                                     "name": [{"family": "Osei"}]}).json()["id"]
    doc = client.post("/fhir/DocumentReference", json=_doc(pid, pract)).json()
    signed = {**doc, "docStatus": "final", "authenticator": {"reference": f"Practitioner/{pract}"}}
    signed.pop("meta")
    for role in ("him_technician", "physician"):
        r = client.put(f"/fhir/DocumentReference/{doc['id']}", json=signed, headers=as_role(tokens, role))
        assert r.status_code == 403, (role, r.text)
        assert "authenticator" in r.json()["issue"][0]["diagnostics"]
    r = client.post("/fhir/DocumentReference", json=_doc(pid, pract, authenticator={"reference": f"Practitioner/{pract}"}),
                    headers=as_role(tokens, "physician"))
    assert r.status_code == 403
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": signed, "request": {"method": "PUT", "url": f"DocumentReference/{doc['id']}"}}]}
    assert client.post("/fhir", json=bundle).status_code == 403
    # Nothing changed, and each refusal is in the audit log.
    assert client.get(f"/fhir/DocumentReference/{doc['id']}").json()["docStatus"] == "preliminary"
    with db.read() as c:
        denied = c.execute(select(AuditRow.action).where(AuditRow.outcome == "denied",
                                                          AuditRow.action == "sign")).all()
    assert len(denied) == 4
    # An ordinary edit of an unsigned document still works.
    doc.pop("meta")
    r = client.put(f"/fhir/DocumentReference/{doc['id']}", json={**doc, "description": "Day 2 note"})
    assert r.status_code == 200, r.text
