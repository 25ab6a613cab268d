from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from chartkeeper.config import Settings
from chartkeeper.db import Database
from chartkeeper.db.base import utcnow
from chartkeeper.security import audit, sessions, users
from chartkeeper.security.policy import Denied
from chartkeeper.security.principal import Principal

SETTINGS = Settings(session_idle_minutes=15, token_hours=8, base_url="https://records.example.org")


def test_session_lives_while_used_and_dies_when_idle(db: Database, make_user) -> None:  # type: ignore[no-untyped-def]
    p = make_user("tess", "him_technician")
    t0 = utcnow()
    with db.begin() as conn:
        s = sessions.start_session(conn, p, now=t0)
    assert s.session_id and len(s.session_id) >= 40 and s.csrf_token
    # used every 10 minutes: stays alive past the 15-minute idle limit
    for minutes in (10, 20, 30):
        with db.begin() as conn:
            live = sessions.resolve_session(conn, s.session_id, settings=SETTINGS, now=t0 + timedelta(minutes=minutes))
        assert live is not None and live.principal.user_id == p.user_id
        assert live.csrf_token == s.csrf_token
    # then idle for 16 minutes: gone, and its end is audited
    with db.begin() as conn:
        assert sessions.resolve_session(conn, s.session_id, settings=SETTINGS, now=t0 + timedelta(minutes=46)) is None
    with db.begin() as conn:
        assert sessions.resolve_session(conn, s.session_id, settings=SETTINGS, now=t0 + timedelta(minutes=46)) is None
        ends = audit.query(conn, action="logout")
    assert len(ends) == 1 and "idle" in (ends[0].detail or "")


def test_logout_kills_the_cookie(db: Database, make_user) -> None:  # type: ignore[no-untyped-def]
    p = make_user("tess", "him_technician")
    with db.begin() as conn:
        s = sessions.start_session(conn, p)
    with db.begin() as conn:
        assert sessions.end_session(conn, s.session_id, client_address="10.1.1.1")
    with db.begin() as conn:
        assert sessions.resolve_session(conn, s.session_id) is None
        assert not sessions.end_session(conn, s.session_id)
        logouts = audit.query(conn, action="logout")
    assert [(e.user_id, e.client_address) for e in logouts] == [(p.user_id, "10.1.1.1")]


def test_session_id_is_stored_only_hashed(db: Database, make_user) -> None:  # type: ignore[no-untyped-def]
    p = make_user("tess", "him_technician")
    with db.begin() as conn:
        s = sessions.start_session(conn, p)
    with db.read() as conn:
        stored = conn.exec_driver_sql("select id_hash from sec_session").scalar_one()
    assert s.session_id not in stored and len(stored) == 64


def test_csrf_token_must_match_the_session(db: Database, make_user) -> None:  # type: ignore[no-untyped-def]
    p = make_user("tess", "him_technician")
    with db.begin() as conn:
        s1 = sessions.start_session(conn, p)
        s2 = sessions.start_session(conn, p)
    assert s1.csrf_token != s2.csrf_token
    assert sessions.verify_csrf(s1, s1.csrf_token)
    assert not sessions.verify_csrf(s1, s2.csrf_token)
    assert not sessions.verify_csrf(s1, "")
    assert not sessions.verify_csrf(s1, None)
    assert not sessions.verify_csrf(None, s1.csrf_token)


def test_unknown_or_garbage_session_ids(db: Database) -> None:
    with db.begin() as conn:
        for sid in (None, "", "nope", "x" * 5000, "' or 1=1 --"):
            assert sessions.resolve_session(conn, sid) is None


def test_cookie_settings() -> None:
    c = sessions.cookie_settings(SETTINGS)
    assert c == {"httponly": True, "secure": True, "samesite": "strict", "path": "/"}
    assert sessions.cookie_settings(replace(SETTINGS, base_url="http://127.0.0.1:8000"))["secure"]
    assert not sessions.cookie_settings(replace(SETTINGS, base_url="http://testserver"))["secure"]


def test_token_expires(db: Database, make_user) -> None:  # type: ignore[no-untyped-def]
    p = make_user("api", "registrar")
    t0 = utcnow()
    with db.begin() as conn:
        secret, tok = sessions.issue_token(conn, p, label="registry export", settings=SETTINGS, now=t0)
    assert secret.startswith(sessions.TOKEN_PREFIX)
    assert tok.expires_at == t0 + timedelta(hours=8)
    with db.read() as conn:
        got = sessions.resolve_token(conn, secret, now=t0 + timedelta(hours=7, minutes=59))
        assert got is not None and got.user_id == p.user_id and got.roles == {"registrar"}
        assert sessions.resolve_token(conn, secret, now=t0 + timedelta(hours=8)) is None
        assert sessions.resolve_token(conn, secret[:-1]) is None
        assert sessions.resolve_token(conn, "") is None
        stored = conn.exec_driver_sql("select token_hash from sec_api_token").scalar_one()
    assert secret not in stored


def test_token_revocation_by_owner_and_admin(db: Database, make_user) -> None:  # type: ignore[no-untyped-def]
    p = make_user("api", "registrar")
    other = make_user("nosy", "coder")
    admin = make_user("ada", "admin")
    with db.begin() as conn:
        s1, t1 = sessions.issue_token(conn, p)
        s2, t2 = sessions.issue_token(conn, p)
    with pytest.raises(Denied):
        with db.begin() as conn:
            sessions.revoke_token(conn, t1.id, actor=other)
    with db.begin() as conn:
        assert sessions.revoke_token(conn, s1, actor=p)  # by the secret
        assert sessions.revoke_token(conn, t2.id, actor=admin)  # by id, by an admin
        assert not sessions.revoke_token(conn, t2.id, actor=admin)
        assert not sessions.revoke_token(conn, "no-such-token", actor=admin)
    with db.read() as conn:
        assert sessions.resolve_token(conn, s1) is None
        assert sessions.resolve_token(conn, s2) is None
        assert all(not t.live() for t in sessions.list_tokens(conn, p.user_id))
        assert len(audit.query(conn, action="token.revoke")) == 2
        assert len(audit.query(conn, action="token.issue")) == 2


def test_only_admin_issues_tokens_for_others(db: Database, make_user) -> None:  # type: ignore[no-untyped-def]
    p = make_user("api", "registrar")
    coder = make_user("cody", "coder")
    admin = make_user("ada", "admin")
    with pytest.raises(Denied):
        with db.begin() as conn:
            sessions.issue_token(conn, coder, user_id=p.user_id)
    with db.begin() as conn:
        secret, tok = sessions.issue_token(conn, admin, user_id=p.user_id, hours=1)
        assert tok.user_id == p.user_id
        principal = sessions.resolve_token(conn, secret)
    assert principal is not None and principal.user_id == p.user_id


def test_session_and_token_carry_the_practitioner_link(db: Database, make_user) -> None:  # type: ignore[no-untyped-def]
    """A physician's web session and API token act as their Practitioner (inbox, signature)."""
    p = make_user("carter", "physician")
    with db.begin() as conn:
        users.link_practitioner(conn, p.user_id, "prac-1", actor=Principal.system("test"))
        s = sessions.start_session(conn, p)
        secret, _tok = sessions.issue_token(conn, p, label="dictation", settings=SETTINGS)
    with db.begin() as conn:
        live = sessions.resolve_session(conn, s.session_id, settings=SETTINGS)
        assert live is not None and live.principal.practitioner_id == "prac-1"
        tp = sessions.resolve_token(conn, secret)
        assert tp is not None and tp.practitioner_id == "prac-1"
