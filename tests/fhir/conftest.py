from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from chartkeeper.config import Settings
from chartkeeper.security import sessions, users
from chartkeeper.security.principal import Principal
from chartkeeper.web.app import create_app

PASSWORD = "correct horse battery staple"


@pytest.fixture
def app(db):
    settings = Settings(database_url=db.url, secret_key="test-secret-key-for-tests-only-0123456789")
    return create_app(settings, db=db)


@pytest.fixture
def tokens(db):
    """One bearer token per role (and one for a user with no role)."""
    admin = Principal.system("test")
    out = {}
    with db.begin() as c:
        for role in ("him_technician", "coder", "registrar", "release_specialist", "physician",
                     "privacy_officer", "admin"):
            u = users.create_user(c, f"{role}1", PASSWORD, [role], actor=admin, display_name=role)
            out[role] = sessions.issue_token(c, u.principal(), label="test")[0]
        # A user whose roles were emptied directly in the table: denied everything.
        u = users.create_user(c, "norole1", PASSWORD, ["coder"], actor=admin, display_name="no role")
        c.execute(text("UPDATE sec_user SET roles = '' WHERE id = :i"), {"i": u.id})
        out["none"] = sessions.issue_token(c, u.principal(), label="test")[0]
    return out


@pytest.fixture
def client(app, tokens):
    c = TestClient(app)
    c.headers["Authorization"] = f"Bearer {tokens['him_technician']}"
    return c
