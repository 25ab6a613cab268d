"""/api/coding through the real app (bearer tokens, policy, audit), on SQLite and PostgreSQL.

A coder works an inpatient stay from the queue to final; a physician answers a query. Then every
route is called with a swapped id (the restricted patient's encounter, an unknown encounter, another
physician's query) and with roles that have no business there: each must answer 401, 403 or 404 and
never the other record's data.
"""

from __future__ import annotations

import pytest
from coding_helpers import SYSTEM, audit_actions
from fastapi.testclient import TestClient

from chartkeeper.config import Settings
from chartkeeper.security import sessions
from chartkeeper.security.principal import Principal
from chartkeeper.web.app import create_app

QUESTION = "Based on the clinical indicators below, can the type of anemia being treated be further specified?"
OPTIONS = ["Acute blood loss anemia", "Anemia of chronic disease"]
EVIDENCE = [{"reference": "Observation/hgb-ann", "excerpt": "Hemoglobin 7.9 g/dL"}]
CODES = {"diagnoses": [{"code": "J18.9", "poa": "Y"}, {"code": "I10", "poa": "Y"}], "procedures": []}
# Words of the restricted patient's record that must never appear in an answer to someone refused.
SECRETS = ("Vance", "MRN-3", "stay-vip\"", "sum-vip")


@pytest.fixture
def app(db):
    return create_app(Settings(database_url=db.url, secret_key="test-secret-key-for-tests-only-0123456789"), db=db)


@pytest.fixture
def api(app, db, people):
    """A client per person, by bearer token."""
    def token(p: Principal) -> str:
        with db.begin() as conn:
            return sessions.issue_token(conn, p, label="test")[0]

    clients = {}
    for name in ("coder", "coder2", "tech", "dr_a", "dr_b", "registrar", "release"):
        c = TestClient(app)
        c.headers["Authorization"] = f"Bearer {token(getattr(people, name))}"
        clients[name] = c
    clients["anonymous"] = TestClient(app)
    return clients


def _issues(r) -> list[str]:
    return [i["diagnostics"] for i in r.json()["issue"]]


def test_a_coder_works_a_stay_from_the_queue_to_final(api, db, people):
    coder = api["coder"]
    q = coder.get("/api/coding/queue").json()
    assert [r["encounter_id"] for r in q["rows"]] == ["er-bob", "stay-ann", "visit-bob"] and q["total"] == 3
    assert q["rows"][1]["patient"] == "Pat Ames (MRN-1)" and q["rows"][1]["setting"] == "inpatient"
    assert coder.get("/api/coding/queue?setting=emergency").json()["total"] == 1
    assert coder.get("/api/coding/counts").json()["dnfb"] == 3

    r = coder.post("/api/coding/abstracts/stay-ann/assign")
    assert r.status_code == 200 and r.json()["assigned_to"] == people.coder.user_id
    assert coder.get("/api/coding/queue?assigned=me").json()["total"] == 1
    r = coder.put("/api/coding/abstracts/stay-ann/codes",
                  json={"diagnoses": [{"code": "J18.9", "poa": "Y"}, {"code": "J18", "poa": "X"}]})
    assert r.status_code == 422
    assert [i["expression"] for i in r.json()["issue"]] == [["diagnoses[1].poa"]]
    r = coder.put("/api/coding/abstracts/stay-ann/codes", json=CODES)
    assert r.status_code == 200 and [d["code"] for d in r.json()["diagnoses"]] == ["J189", "I10"]
    r = coder.post("/api/coding/abstracts/stay-ann/finalize")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["abstract"]["status"] == "final" and body["encounter_version"] == 2
    claim = coder.get(f"/fhir/Claim/{body['claim_id']}").json()
    assert [d["diagnosisCodeableConcept"]["coding"][0]["code"] for d in claim["diagnosis"]] == ["J18.9", "I10"]
    r = coder.post("/api/coding/abstracts/stay-ann/finalize")
    assert r.status_code == 409 and "re-open" in _issues(r)[0]
    assert coder.post("/api/coding/abstracts/stay-ann/reopen", json={"reason": "late pathology"}).json()["status"] == \
        "in_progress"
    assert coder.get("/api/coding/abstracts/now-ann").status_code == 422  # still in hospital
    # Re-opened work counts again when it is final again.
    assert coder.get("/api/coding/reports/throughput").json()["rows"] == []
    assert {"coding.assign", "coding.codes", "coding.finalize", "coding.reopen"} <= audit_actions(db, people.coder.user_id)


def test_a_query_goes_to_the_physician_and_comes_back(api, people):
    r = api["coder"].post("/api/coding/abstracts/stay-ann/queries",
                          json={"physician_id": "Practitioner/dr-a", "question": QUESTION, "options": OPTIONS,
                                "evidence": EVIDENCE})
    assert r.status_code == 201, r.text
    qid = r.json()["id"]
    assert r.json()["options"][-2:] == ["Other (please specify)", "Clinically undetermined"]
    bad = api["coder"].post("/api/coding/abstracts/stay-ann/queries",
                            json={"physician_id": "dr-a", "question": QUESTION + " It affects the DRG.",
                                  "options": OPTIONS[:1], "evidence": EVIDENCE})
    assert bad.status_code == 422 and any("mentions DRG" in m for m in _issues(bad))

    assert [q["id"] for q in api["dr_a"].get("/api/coding/queries").json()["queries"]] == [qid]
    assert api["dr_b"].get("/api/coding/queries").json()["queries"] == []
    assert api["dr_b"].post(f"/api/coding/queries/{qid}/answer", json={"answer": OPTIONS[0]}).status_code == 403
    r = api["dr_a"].post(f"/api/coding/queries/{qid}/answer", json={"answer": OPTIONS[0]})
    assert r.status_code == 200 and r.json()["status"] == "answered"
    doc = api["coder"].get(f"/fhir/DocumentReference/{r.json()['addendum_id']}").json()
    assert doc["authenticator"] == {"reference": "Practitioner/dr-a"}
    assert api["coder"].get("/api/coding/abstracts/stay-ann").json()["status"] == "in_progress"


# Every route, with what it needs. {e} is an encounter id, {q} a query id.
ENCOUNTER_ROUTES = [
    ("GET", "/api/coding/abstracts/{e}", None),
    ("PUT", "/api/coding/abstracts/{e}/codes", CODES),
    ("POST", "/api/coding/abstracts/{e}/assign", None),
    ("POST", "/api/coding/abstracts/{e}/suggest", None),
    ("POST", "/api/coding/abstracts/{e}/decisions", {"decisions": [{"code": "J18.9", "decision": "accepted"}]}),
    ("GET", "/api/coding/abstracts/{e}/edits", None),
    ("GET", "/api/coding/abstracts/{e}/drg", None),
    ("POST", "/api/coding/abstracts/{e}/what-if", CODES),
    ("POST", "/api/coding/abstracts/{e}/finalize", None),
    ("POST", "/api/coding/abstracts/{e}/reopen", {"reason": "late pathology report"}),
    ("POST", "/api/coding/abstracts/{e}/queries", {"physician_id": "dr-a", "question": QUESTION, "options": OPTIONS,
                                                   "evidence": [{"reference": "DocumentReference/sum-vip",
                                                                 "excerpt": "Anemia"}]}),
]
QUERY_ROUTES = [
    ("GET", "/api/coding/queries/{q}", None),
    ("POST", "/api/coding/queries/{q}/answer", {"answer": OPTIONS[0]}),
    ("POST", "/api/coding/queries/{q}/withdraw", {"reason": "asked the wrong physician"}),
]
LIST_ROUTES = [
    ("GET", "/api/coding/queue", None),
    ("GET", "/api/coding/counts", None),
    ("GET", "/api/coding/reports/accuracy", None),
    ("GET", "/api/coding/reports/throughput", None),
]


def _call(client, method, path, body):
    return client.request(method, path, json=body)


def _clean(r) -> None:
    assert not any(s in r.text for s in SECRETS), r.text


@pytest.mark.parametrize("method,path,body", ENCOUNTER_ROUTES, ids=[f"{m} {p}" for m, p, _ in ENCOUNTER_ROUTES])
def test_encounter_routes_refuse_swapped_ids_and_roles(api, method, path, body):
    # The restricted patient's stay (as a coder, who may code everyone else): 403, nothing of it.
    r = _call(api["coder"], method, path.format(e="stay-vip"), body)
    assert r.status_code == 403, r.text
    _clean(r)
    # An encounter that does not exist: 404.
    assert _call(api["coder"], method, path.format(e="no-such-stay"), body).status_code == 404
    # Roles without coding access, no credentials: refused before anything is looked up.
    r = _call(api["release"], method, path.format(e="stay-ann"), body)
    assert r.status_code == 403 and "Ames" not in r.text
    assert _call(api["anonymous"], method, path.format(e="stay-ann"), body).status_code == 401
    if method != "GET" and not path.endswith("what-if"):
        # Looking is not coding: technicians and registrars may read, not change.
        for who in ("tech", "registrar"):
            assert _call(api[who], method, path.format(e="stay-ann"), body).status_code == 403


@pytest.mark.parametrize("method,path,body", QUERY_ROUTES, ids=[f"{m} {p}" for m, p, _ in QUERY_ROUTES])
def test_query_routes_refuse_swapped_ids_and_roles(api, svc, people, method, path, body):
    from chartkeeper.coding.service import QueryEvidence

    q = svc.send_query(people.coder, "stay-ann", "dr-a", QUESTION, OPTIONS,
                       [QueryEvidence("Observation/hgb-ann", "Hemoglobin 7.9 g/dL")])
    vq = svc.send_query(SYSTEM, "stay-vip", "dr-a", QUESTION, OPTIONS,
                        [QueryEvidence("DocumentReference/sum-vip", "Anemia")])
    # Another physician's query, the restricted patient's query, an unknown one.
    r = _call(api["dr_b"], method, path.format(q=q.id), body)
    assert r.status_code == 403 and QUESTION not in r.text
    r = _call(api["dr_a"], method, path.format(q=vq.id), body)
    assert r.status_code == 403
    _clean(r)
    assert _call(api["dr_a"], method, path.format(q="no-such-query"), body).status_code == 404
    assert _call(api["release"], method, path.format(q=q.id), body).status_code == 403
    assert _call(api["anonymous"], method, path.format(q=q.id), body).status_code == 401


@pytest.mark.parametrize("method,path,body", LIST_ROUTES, ids=[f"{m} {p}" for m, p, _ in LIST_ROUTES])
def test_list_routes_hide_the_restricted_patient_and_refuse_other_roles(api, method, path, body):
    r = _call(api["coder"], method, path, body)
    assert r.status_code == 200
    _clean(r)
    assert _call(api["release"], method, path, body).status_code == 403
    assert _call(api["anonymous"], method, path, body).status_code == 401


def test_physician_queries_need_a_linked_practitioner(api):
    r = api["coder"].get("/api/coding/queries")
    assert r.status_code == 403 and "not linked to a practitioner" in _issues(r)[0]
    assert api["release"].get("/api/coding/queries").status_code == 403


def test_the_encoder_answers_logged_in_users_only(api):
    r = api["coder"].get("/api/coding/search", params={"q": "CHF exac", "limit": 3})
    assert r.status_code == 200 and r.json()[0]["code"] == "I50.9" and len(r.json()) == 3
    pcs = api["coder"].get("/api/coding/search", params={"q": "laparoscopic cholecystectomy", "system": "icd10pcs"})
    assert pcs.status_code == 200 and any(h["code"] == "0FT44ZZ" for h in pcs.json())
    assert api["anonymous"].get("/api/coding/search", params={"q": "CHF"}).status_code == 401
    assert api["coder"].get("/api/coding/search", params={"q": "CHF", "system": "snomed"}).status_code == 400
    assert api["coder"].get("/api/coding/search", params={"q": ""}).status_code == 400
