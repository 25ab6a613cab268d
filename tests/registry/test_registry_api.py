"""The registry's JSON API at /api/registry, as a registrar's client uses it, and every route with the
wrong role, the wrong patient or an unknown id: 401/403/404, never data (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from chartkeeper.config import Settings
from chartkeeper.security import grants, sessions, users
from chartkeeper.security.principal import Principal
from chartkeeper.web.app import create_app

SYSTEM = Principal.system("test")
PASSWORD = "correct horse battery staple"
PHI = ("Rivera", "MRN-R1", "19610402", "Invasive ductal")


@pytest.fixture
def api(db, screener, breast_case):
    """A client per role (bearer tokens); ``vip`` is a restricted patient with a case of its own."""
    settings = Settings(database_url=db.url, secret_key="test-secret-key-for-tests-only-0123456789")
    app = create_app(settings, db=db)
    tokens = {}
    with db.begin() as c:
        for name, role in (("registrar", "registrar"), ("registrar2", "registrar"), ("coder", "coder"),
                           ("tech", "him_technician"), ("physician", "physician"), ("privacy", "privacy_officer")):
            u = users.create_user(c, f"{name}1", PASSWORD, [role], actor=SYSTEM, display_name=name)
            tokens[name] = sessions.issue_token(c, u.principal(), label="test")[0]

    def client(who: str | None) -> TestClient:
        cl = TestClient(app)
        if who:
            cl.headers["Authorization"] = f"Bearer {tokens[who]}"
        return cl

    return client


def _no_phi(r) -> None:
    assert not any(p in r.text for p in PHI), r.text[:300]


def test_a_registrar_works_the_queue_and_the_abstract_over_the_api(api):
    reg = api("registrar")
    q = reg.get("/api/registry/suspense").json()
    assert q["total"] == 2 and q["patients"]["pat-1"].startswith("Ana Rivera")
    rid = next(r["id"] for r in q["rows"] if r["source"]["type"] == "DocumentReference")
    item = reg.get(f"/api/registry/suspense/{rid}").json()
    m = item["matches"][0]
    assert item["text"][m["start"]:m["end"]] == m["phrase"] and item["suggested"]["primary_site"] == "C509"
    assert reg.get("/api/registry/suspense/counts").json()["pending"] == 2

    r = reg.post(f"/api/registry/suspense/{rid}/accept", json={})
    assert r.status_code == 201, r.text
    a = r.json()
    assert a["items"]["primarySite"] == "C509" and a["patient_items"]["nameLast"] == "Rivera"
    tid = a["id"]
    assert reg.post(f"/api/registry/suspense/{rid}/accept", json={}).status_code == 409

    bad = reg.put(f"/api/registry/abstracts/{tid}", json={"items": {"primarySite": "C5O9", "grade": "2"}})
    assert bad.status_code == 422
    diag = " ".join(i["diagnostics"] for i in bad.json()["issue"])
    assert "primarySite (400)" in diag
    assert "grade" not in reg.get(f"/api/registry/abstracts/{tid}").json()["items"]
    ok = reg.put(f"/api/registry/abstracts/{tid}", json={"items": {"grade": "2"}, "patient_items": {"race1": "01"}})
    assert ok.status_code == 200 and ok.json()["items"]["grade"] == "2"
    assert reg.get(f"/api/registry/abstracts/{tid}/edits").json()["errors"] == 0

    cid = next(r["id"] for r in reg.get("/api/registry/suspense").json()["rows"])
    short = reg.post(f"/api/registry/suspense/{cid}/reject", json={"reason": "no"})
    assert short.status_code == 422 and "5 characters" in short.text
    linked = reg.post(f"/api/registry/suspense/{cid}/link", json={"tumor_id": tid})
    assert linked.status_code == 200 and linked.json()["status"] == "linked"

    due = reg.get("/api/registry/followup/due", params={"months": 1})
    assert due.status_code == 200 and [d["patient_id"] for d in due.json()] == ["pat-1"]
    pdf = reg.get("/api/registry/followup/letters.pdf", params={"months": 1})
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf" and pdf.content[:4] == b"%PDF"
    rate = reg.get("/api/registry/followup/rate", params={"report_date": "2026-01-01"}).json()
    assert rate["all"]["cases"] == 1 and rate["all"]["target"] == 0.9 and rate["living"]["target"] == 0.8


def _routes(sid: str, tid: str) -> list[tuple[str, str, dict | None]]:
    return [
        ("GET", f"/api/registry/suspense/{sid}", None),
        ("POST", f"/api/registry/suspense/{sid}/accept", {}),
        ("POST", f"/api/registry/suspense/{sid}/reject", {"reason": "not reportable here"}),
        ("POST", f"/api/registry/suspense/{sid}/link", {"tumor_id": tid}),
        ("GET", f"/api/registry/abstracts/{tid}", None),
        ("PUT", f"/api/registry/abstracts/{tid}", {"items": {"grade": "1"}}),
        ("GET", f"/api/registry/abstracts/{tid}/edits", None),
    ]


LISTS = ["/api/registry/suspense", "/api/registry/suspense/counts", "/api/registry/followup/due",
         "/api/registry/followup/letters.pdf", "/api/registry/followup/rate", "/api/registry/export"]


def test_every_route_refuses_the_wrong_role_the_wrong_patient_and_unknown_ids(db, api):
    reg = api("registrar")
    rows = reg.get("/api/registry/suspense").json()["rows"]
    sid = next(r["id"] for r in rows if r["source"]["type"] == "Condition")
    pid_report = next(r["id"] for r in rows if r["source"]["type"] == "DocumentReference")
    tid = reg.post(f"/api/registry/suspense/{pid_report}/accept", json={}).json()["id"]

    # Roles without registry access: 403 on every route, lists included, and never data.
    for who in ("coder", "tech", "physician", "privacy"):
        cl = api(who)
        for method, url, body in _routes(sid, tid):
            r = cl.request(method, url, json=body)
            assert r.status_code == 403, (who, method, url, r.status_code)
            _no_phi(r)
        for url in LISTS:
            r = cl.get(url)
            assert r.status_code == 403, (who, url, r.status_code)
            _no_phi(r)
    # No credentials: 401.
    for method, url, body in _routes(sid, tid):
        assert api(None).request(method, url, json=body).status_code == 401

    # Unknown ids (another patient's id guessed, or made up): 404 with no data.
    for method, url, body in _routes("not-a-real-id", "not-a-real-tumour"):
        r = reg.request(method, url, json=body)
        assert r.status_code in (404, 422), (method, url, r.status_code)
        _no_phi(r)
    # Linking to a tumour of another patient: refused, nothing linked.
    r = reg.post(f"/api/registry/suspense/{sid}/link", json={"tumor_id": "pat-1"})
    assert r.status_code == 422

    # The patient becomes restricted: a registrar not on the care team gets 403 on its items, and the
    # lists leave it out.
    with db.begin() as c:
        grants.restrict_patient(c, SYSTEM, "pat-1", "staff")
    other = api("registrar2")
    for method, url, body in _routes(sid, tid):
        r = other.request(method, url, json=body)
        assert r.status_code == 403, (method, url, r.status_code)
        _no_phi(r)
    q = other.get("/api/registry/suspense", params={"status": "all"}).json()
    assert q["total"] == 0 and q["rows"] == [] and q["patients"] == {}
    assert other.get("/api/registry/followup/due", params={"months": 1}).json() == []
    # Nothing the refused requests asked for happened: the item is still pending, the abstract unchanged.
    with db.begin() as c:
        grants.add_to_care_team(c, SYSTEM, "pat-1", other_id(db))
    assert other.get(f"/api/registry/suspense/{sid}").json()["status"] == "pending"
    assert "grade" not in other.get(f"/api/registry/abstracts/{tid}").json()["items"]


def other_id(db) -> str:
    with db.read() as c:
        return users.find_user(c, "registrar21").id  # type: ignore[union-attr]


def test_export_download(api):
    pytest.importorskip("chartkeeper.registry.naaccr")
    reg = api("registrar")
    rid = next(r["id"] for r in reg.get("/api/registry/suspense").json()["rows"]
               if r["source"]["type"] == "DocumentReference")
    reg.post(f"/api/registry/suspense/{rid}/accept", json={})
    r = reg.get("/api/registry/export", params={"naaccr_version": "250", "record_type": "A"})
    assert r.status_code == 200 and b"NaaccrData" in r.content and b"C509" in r.content
    assert reg.get("/api/registry/export", params={"naaccr_version": "230"}).status_code == 422
