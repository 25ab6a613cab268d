"""The FastAPI dependencies: bearer token or session cookie, 401 otherwise, CSRF on forms."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi import Depends, FastAPI, Form, Request
from fastapi.testclient import TestClient

from chartkeeper.config import Settings
from chartkeeper.db import Database
from chartkeeper.db.base import utcnow
from chartkeeper.security import deps, sessions
from chartkeeper.security.principal import Principal


@pytest.fixture
def client(db: Database) -> Iterator[TestClient]:
    app = FastAPI()
    app.state.db = db
    app.state.settings = Settings(database_url=db.url, base_url="http://testserver")

    @app.get("/me")
    def me(who: Principal = Depends(deps.principal_from_request)) -> dict[str, object]:
        return {"user": who.username, "roles": sorted(who.roles), "addr": who.client_address}

    @app.post("/form")
    def form(
        request: Request, csrf_token: str = Form(""), who: Principal = Depends(deps.principal_from_request)
    ) -> dict[str, str]:
        deps.check_csrf(request, csrf_token)
        return {"ok": who.username}

    with TestClient(app) as c:
        yield c


def test_no_credentials_is_401_with_www_authenticate(client: TestClient) -> None:
    r = client.get("/me")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Bearer nonsense", "Bearer ", "Basic dXNlcjpwYXNz", "ckt_x"])
def test_bad_authorization_headers_are_401(client: TestClient, header: str) -> None:
    r = client.get("/me", headers={"Authorization": header})
    assert r.status_code == 401 and "www-authenticate" in r.headers


def test_bearer_token(client: TestClient, db: Database, make_user) -> None:  # type: ignore[no-untyped-def]
    p = make_user("reg", "registrar")
    with db.begin() as conn:
        secret, tok = sessions.issue_token(conn, p)
        expired, _ = sessions.issue_token(conn, p, now=utcnow() - timedelta(hours=9))
    r = client.get("/me", headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 200 and r.json() == {"user": "reg", "roles": ["registrar"], "addr": "testclient"}
    r = client.get("/me", headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
    with db.begin() as conn:
        sessions.revoke_token(conn, tok.id, actor=p)
    assert client.get("/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 401


def test_session_cookie_and_csrf(client: TestClient, db: Database, make_user) -> None:  # type: ignore[no-untyped-def]
    p = make_user("tess", "him_technician")
    with db.begin() as conn:
        s = sessions.start_session(conn, p)
    client.cookies.set(sessions.SESSION_COOKIE, s.session_id or "")
    assert client.get("/me").json()["user"] == "tess"
    assert client.post("/form", data={"csrf_token": s.csrf_token}).json() == {"ok": "tess"}
    assert client.post("/form", data={"csrf_token": "wrong"}).status_code == 403
    assert client.post("/form").status_code == 403
    # a bad bearer header is not rescued by a good cookie
    assert client.get("/me", headers={"Authorization": "Bearer nope"}).status_code == 401
    with db.begin() as conn:
        sessions.end_session(conn, s.session_id)
    assert client.get("/me").status_code == 401
