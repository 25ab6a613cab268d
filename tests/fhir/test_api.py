"""The FHIR REST API as a client sees it: CRUD, versions, search, bundles, errors, access."""

from __future__ import annotations

import orjson
import pytest

from chartkeeper.fhir.service import RecordService
from chartkeeper.security import grants
from chartkeeper.security.principal import Principal
from concurrently import run_threads
from fhirdata import as_role, obs, patient

FJ = "application/fhir+json"


def post(client, path, body, **kw):
    return client.post(path, content=orjson.dumps(body), headers={"Content-Type": FJ, **kw.pop("headers", {})}, **kw)


def put(client, path, body, **kw):
    return client.put(path, content=orjson.dumps(body), headers={"Content-Type": FJ, **kw.pop("headers", {})}, **kw)


def test_metadata_tells_the_truth(client):
    r = client.get("/fhir/metadata")
    assert r.status_code == 200 and r.headers["content-type"].startswith(FJ)
    cs = r.json()
    assert cs["fhirVersion"] == "4.0.1"
    types = {x["type"]: x for x in cs["rest"][0]["resource"]}
    assert {"Patient", "Encounter", "Observation", "DocumentReference", "Task", "Provenance"} <= set(types)
    assert {"name": "birthdate", "type": "date"} in types["Patient"]["searchParam"]
    # Every advertised search parameter is accepted by the server.
    for sp in types["Observation"]["searchParam"]:
        value = {"date": "2020", "token": "x", "string": "x", "reference": "Patient/x"}[sp["type"]]
        assert client.get(f"/fhir/Observation?{sp['name']}={value}").status_code == 200, sp


def test_crud_versions_and_history(client):
    r = post(client, "/fhir/Patient", patient())
    assert r.status_code == 201
    pid = r.json()["id"]
    assert r.headers["Location"] == f"/fhir/Patient/{pid}/_history/1" and r.headers["ETag"] == 'W/"1"'
    body = client.get(f"/fhir/Patient/{pid}").json()
    body["gender"] = "other"
    r = put(client, f"/fhir/Patient/{pid}", body, headers={"If-Match": 'W/"1"'})
    assert r.status_code == 200 and r.json()["meta"]["versionId"] == "2"
    assert put(client, f"/fhir/Patient/{pid}", body, headers={"If-Match": 'W/"1"'}).status_code == 412
    assert client.get(f"/fhir/Patient/{pid}/_history/1").json()["gender"] == "female"
    h = client.get(f"/fhir/Patient/{pid}/_history").json()
    assert h["type"] == "history" and h["total"] == 2
    assert [e["resource"]["meta"]["versionId"] for e in h["entry"]] == ["2", "1"]
    assert client.get("/fhir/Patient/_history").json()["total"] == 2
    # Nobody deletes a patient (duplicates are merged); a result entered in error is deleted logically.
    assert client.delete(f"/fhir/Patient/{pid}").status_code == 403
    oid = post(client, "/fhir/Observation", obs(pid)).json()["id"]
    assert client.delete(f"/fhir/Observation/{oid}").status_code == 204
    r = client.get(f"/fhir/Observation/{oid}")
    assert r.status_code == 410 and r.json()["resourceType"] == "OperationOutcome"
    assert client.get(f"/fhir/Observation/{oid}/_history/1").status_code == 200
    assert client.get("/fhir/Patient/nope").status_code == 404
    assert client.get("/fhir/Spaceship/1").status_code == 404


def test_invalid_resource_names_the_element_and_writes_nothing(client):
    bad = patient()
    bad["birthDate"] = "1961-13-45"
    r = post(client, "/fhir/Patient", bad)
    assert r.status_code == 422
    issue = r.json()["issue"][0]
    assert "birthDate" in (issue.get("expression") or [""])[0] + issue["diagnostics"]
    assert client.get("/fhir/Patient").json()["total"] == 0


@pytest.mark.parametrize("body,status", [
    (b"{not json", 400),
    (b"[]", 400),
    (b'{"resourceType":"Patient","id":"x","name":' + b"[" * 200 + b"]" * 200 + b"}", 400),
])
def test_malformed_bodies(client, body, status):
    r = client.post("/fhir/Patient", content=body, headers={"Content-Type": FJ})
    assert r.status_code == status and r.json()["resourceType"] == "OperationOutcome"


def test_oversized_body_is_413(client, app):
    big = b'{"resourceType":"Patient","text":"' + b"x" * (app.state.settings.max_body_bytes + 10) + b'"}'
    assert client.post("/fhir/Patient", content=big, headers={"Content-Type": FJ}).status_code == 413


def test_search_paging_include_and_post_search(client):
    pid = post(client, "/fhir/Patient", patient()).json()["id"]
    for d in range(1, 8):
        post(client, "/fhir/Observation", obs(pid, when=f"2024-01-0{d}T00:00:00Z"))
    r = client.get(f"/fhir/Observation?patient={pid}&_count=3&_sort=date&_include=Observation:patient")
    b = r.json()
    assert b["total"] == 7 and len([e for e in b["entry"] if e["search"]["mode"] == "match"]) == 3
    assert [e["resource"]["resourceType"] for e in b["entry"] if e["search"]["mode"] == "include"] == ["Patient"]
    nxt = next(link["url"] for link in b["link"] if link["relation"] == "next")
    page2 = client.get(nxt.replace("http://testserver", "")).json()
    assert page2["entry"][0]["resource"]["effectiveDateTime"].startswith("2024-01-04")
    r = client.post("/fhir/Observation/_search", content=f"patient={pid}&date=ge2024-01-06",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.json()["total"] == 2


@pytest.mark.parametrize("query", ["colour=red", "_sort=name;drop%20table%20fhir_resource", "birthdate=soon",
                                   "_count=-1"])
def test_bad_searches_are_400_operation_outcomes(client, query):
    r = client.get(f"/fhir/Patient?{query}")
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"


def _tx(entries):
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def test_transaction_rewrites_urn_uuid_and_conditional_create(client):
    bundle = _tx([
        {"fullUrl": "urn:uuid:11111111-1111-1111-1111-111111111111", "resource": patient(),
         "request": {"method": "POST", "url": "Patient",
                     "ifNoneExist": "identifier=https://chartkeeper.example.org/mrn|MRN001"}},
        {"fullUrl": "urn:uuid:22222222-2222-2222-2222-222222222222",
         "resource": obs("x") | {"subject": {"reference": "urn:uuid:11111111-1111-1111-1111-111111111111"}},
         "request": {"method": "POST", "url": "Observation"}},
    ])
    r = post(client, "/fhir", bundle)
    assert r.status_code == 200, r.text
    resp = r.json()
    assert resp["type"] == "transaction-response"
    assert [e["response"]["status"] for e in resp["entry"]] == ["201 Created", "201 Created"]
    pid = resp["entry"][0]["response"]["location"].split("/")[1]
    oid = resp["entry"][1]["response"]["location"].split("/")[1]
    assert client.get(f"/fhir/Observation/{oid}").json()["subject"]["reference"] == f"Patient/{pid}"
    # Again: the patient exists, so the conditional create finds it and the new observation points at it.
    resp2 = post(client, "/fhir", bundle).json()
    assert resp2["entry"][0]["response"]["status"] == "200 OK"
    oid2 = resp2["entry"][1]["response"]["location"].split("/")[1]
    assert client.get(f"/fhir/Observation/{oid2}").json()["subject"]["reference"] == f"Patient/{pid}"
    assert client.get("/fhir/Patient").json()["total"] == 1


def test_transaction_with_one_bad_entry_writes_nothing(client):
    bad = obs("x")
    del bad["status"]
    r = post(client, "/fhir", _tx([
        {"resource": patient(), "request": {"method": "POST", "url": "Patient"}},
        {"resource": bad, "request": {"method": "POST", "url": "Observation"}},
    ]))
    assert r.status_code in (400, 422)
    assert any("entry[1]" in i["diagnostics"] for i in r.json()["issue"])
    assert client.get("/fhir/Patient").json()["total"] == 0


def test_batch_keeps_the_good_entries(client):
    bad = patient()
    bad["gender"] = "M"
    r = post(client, "/fhir", {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": patient(), "request": {"method": "POST", "url": "Patient"}},
        {"resource": bad, "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "GET", "url": "Patient?gender=female"}},
    ]})
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert statuses[0].startswith("201") and statuses[1].startswith("4") and statuses[2].startswith("200")
    assert client.get("/fhir/Patient").json()["total"] == 1


def test_everything(client):
    pid = post(client, "/fhir/Patient", patient()).json()["id"]
    post(client, "/fhir/Observation", obs(pid))
    other = post(client, "/fhir/Patient", patient(mrn="2")).json()["id"]
    post(client, "/fhir/Observation", obs(other))
    b = client.get(f"/fhir/Patient/{pid}/$everything").json()
    assert sorted(e["resource"]["resourceType"] for e in b["entry"]) == ["Observation", "Patient"]


# --- access ------------------------------------------------------------------------------------

def test_no_credentials_is_401(app):
    from fastapi.testclient import TestClient

    c = TestClient(app)
    for path in ("/fhir/Patient", "/fhir/Patient/x", "/fhir/Patient/x/$everything", "/fhir/_history"):
        r = c.get(path)
        assert r.status_code == 401 and r.json()["resourceType"] == "OperationOutcome"
    assert c.get("/fhir/Patient", headers={"Authorization": "Bearer not-a-token"}).status_code == 401


def test_read_checks_the_token_in_its_own_transaction_before_anything_else(client, app):
    """read and vread look the bearer token up inside their transaction (PendingPrincipal): a bad token
    is still 401 before any 404 or 400 that would say whether a resource or type exists."""
    from fastapi.testclient import TestClient

    pid = post(client, "/fhir/Patient", patient()).json()["id"]
    c = TestClient(app)
    bad = {"Authorization": "Bearer not-a-token"}
    for path in (f"/fhir/Patient/{pid}", "/fhir/Patient/missing", "/fhir/NoSuchType/x", f"/fhir/Patient/{pid}/_history/1",
                 f"/fhir/Patient/{pid}/_history/x"):
        r = c.get(path, headers=bad)
        assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"], path
        assert "Rivera" not in r.text
    assert client.get(f"/fhir/Patient/{pid}").status_code == 200
    assert client.get(f"/fhir/Patient/{pid}/_history/1").status_code == 200


def test_roles_without_access_get_403_never_data(client, tokens):
    pid = post(client, "/fhir/Patient", patient()).json()["id"]
    for role in ("none", "admin"):
        h = as_role(tokens, role)
        for path in (f"/fhir/Patient/{pid}", f"/fhir/Patient/{pid}/$everything", f"/fhir/Patient/{pid}/_history"):
            r = client.get(path, headers=h)
            assert r.status_code in (403, 404), (role, path)
            assert "Rivera" not in r.text
        r = client.get("/fhir/Patient", headers=h)
        assert r.status_code == 403 or "Rivera" not in r.text
        assert post(client, "/fhir/Patient", patient(), headers=h).status_code == 403


def test_restricted_patient_is_hidden_until_the_glass_is_broken(client, tokens, db, app):
    pid = post(client, "/fhir/Patient", patient()).json()["id"]
    oid = post(client, "/fhir/Observation", obs(pid)).json()["id"]
    visible = post(client, "/fhir/Patient", patient(family="Visible", mrn="9")).json()["id"]
    with db.begin() as c:
        grants.restrict_patient(c, Principal.system("test"), pid, "vip", note="test")
    coder = as_role(tokens, "coder")
    # Swapping in the restricted patient's ids never returns data.
    for path in (f"/fhir/Patient/{pid}", f"/fhir/Observation/{oid}", f"/fhir/Patient/{pid}/$everything"):
        r = client.get(path, headers=coder)
        assert r.status_code in (403, 404) and "Rivera" not in r.text, path
    found = client.get("/fhir/Patient?_count=50", headers=coder).json()
    assert [e["resource"]["id"] for e in found.get("entry", [])] == [visible]
    assert client.get(f"/fhir/Observation?patient={pid}", headers=coder).json().get("entry", []) == []
    # The same resources after breaking the glass.
    from chartkeeper.security import users

    with db.begin() as c:
        p = users.find_user(c, "coder1").principal()
        grants.break_the_glass(c, p, pid, "Coding query for the attending about this admission")
    assert client.get(f"/fhir/Observation/{oid}", headers=coder).status_code == 200


def test_every_read_is_audited(client, db):
    from chartkeeper.security import audit

    pid = post(client, "/fhir/Patient", patient()).json()["id"]
    client.get(f"/fhir/Patient/{pid}")
    with db.read() as c:
        entries = audit.query(c, patient_id=pid)
        assert {e.action for e in entries} >= {"create", "read"}
        assert audit.verify(c).ok


def test_service_without_principal_is_only_for_benchmarks(db):
    # A None principal skips policy and audit; interfaces never pass None when auth is on.
    svc = RecordService(db)
    res, _ = svc.create(None, patient())
    assert svc.read(None, "Patient", res.id).resource()["id"] == res.id


def test_search_totals_never_count_restricted_patients(client, tokens, db):
    hidden = post(client, "/fhir/Patient", patient(family="Hidden", mrn="H1")).json()["id"]
    for _ in range(3):
        post(client, "/fhir/Observation", obs(hidden))
    shown = post(client, "/fhir/Patient", patient(family="Shown", mrn="S1")).json()["id"]
    post(client, "/fhir/Observation", obs(shown))
    with db.begin() as c:
        grants.restrict_patient(c, Principal.system("test"), hidden, "staff")
    coder = as_role(tokens, "coder")
    b = client.get("/fhir/Observation?code=4548-4", headers=coder).json()
    assert b["total"] == 1 and len(b["entry"]) == 1
    assert client.get("/fhir/Patient?family=hidden", headers=coder).json()["total"] == 0
    # A system job still counts them.
    assert RecordService(db).search(Principal.system("test"), "Observation", [("code", "4548-4")]).total == 4


def test_concurrent_reads_each_commit_one_entry_and_the_chain_verifies(db, tokens):
    """Reads from many threads go through the shared transaction (group commit): every read that
    returned data has exactly one committed entry, a denied read its denial, a missing one none."""
    import threading

    from chartkeeper.fhir.errors import FhirError
    from chartkeeper.security import audit, users

    svc = RecordService(db)
    system = Principal.system("test")
    open_ids = [svc.create(system, patient(family=f"Open{i}", mrn=f"O{i}"))[0].id for i in range(5)]
    hidden = svc.create(system, patient(family="Hidden", mrn="H1"))[0].id
    with db.begin() as c:
        grants.restrict_patient(c, system, hidden, "vip")
        tech = users.find_user(c, "him_technician1").principal("10.0.0.9")
    threads, rounds = 6, 25
    got: list[str] = []
    statuses: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def worker(k: int) -> None:
        try:
            barrier.wait()
            for i in range(rounds):
                rid = open_ids[(k + i) % len(open_ids)]
                if i % 10 == 3:
                    rid = hidden
                elif i % 10 == 7:
                    rid = "no-such-patient"
                try:
                    s = svc.read(tech, "Patient", rid) if i % 2 else svc.vread(tech, "Patient", rid, 1)
                    got.append(s.id)
                except FhirError as err:
                    statuses.append(err.status)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    run_threads(worker, range(threads))
    assert not errors
    assert sorted(statuses) == sorted([403] * (threads * 3) + [404] * (threads * 2))
    with db.read() as c:
        mine = audit.query(c, user_id=tech.user_id, limit=10_000)
    reads = [e for e in mine if e.action == "read" and e.outcome == "success"]
    assert sorted(e.resource_id or "" for e in reads) == sorted(got)
    assert all(e.client_address == "10.0.0.9" for e in reads)
    assert len([e for e in mine if e.outcome == "denied" and e.resource_id == hidden]) == threads * 3
    audit.seal_all(db.engine)
    with db.read() as c:
        assert audit.verify(c).ok
