from __future__ import annotations

from datetime import timedelta

import pytest
from sec_helpers import PASSWORD, SYSTEM

from chartkeeper.db import Database
from chartkeeper.db.base import utcnow
from chartkeeper.security import audit, sessions, users
from chartkeeper.security.passwords import PasswordPolicyError
from chartkeeper.security.policy import Denied
from chartkeeper.security.users import LoginError, UserError


def _create(db: Database, username: str = "Dana.W", roles: tuple[str, ...] = ("him_technician",)) -> users.User:
    with db.begin() as conn:
        return users.create_user(conn, username, PASSWORD, list(roles), actor=SYSTEM, display_name="Dana W")


def test_create_user_normalizes_and_audits(db: Database) -> None:
    u = _create(db)
    assert u.username == "dana.w" and u.roles == {"him_technician"} and u.active
    with db.read() as conn:
        assert users.find_user(conn, "DANA.W") == u
        entries = audit.query(conn, action="user.create")
    assert len(entries) == 1 and entries[0].resource_id == u.id and entries[0].user_id == "system:test"
    assert PASSWORD not in (entries[0].detail or "")


def test_create_user_refusals_write_nothing(db: Database) -> None:
    _create(db)
    with pytest.raises(UserError, match="taken"):
        _create(db, "DANA.w")
    with pytest.raises(PasswordPolicyError, match="at least 12"):
        with db.begin() as conn:
            users.create_user(conn, "eve", "short", ["coder"], actor=SYSTEM)
    with pytest.raises(UserError, match="Unknown role 'surgeon'"):
        _create(db, "frank", ("surgeon",))
    with pytest.raises(UserError, match="at least one role"):
        _create(db, "gina", ())
    with pytest.raises(UserError, match="user name"):
        _create(db, "x")
    with db.read() as conn:
        assert [u.username for u in users.list_users(conn)] == ["dana.w"]


def test_only_admin_or_system_manage_users(db: Database, make_user) -> None:  # type: ignore[no-untyped-def]
    coder = make_user("cody", "coder")
    admin = make_user("ada", "admin")
    with pytest.raises(Denied):
        with db.begin() as conn:
            users.create_user(conn, "mallory", PASSWORD, ["admin"], actor=coder)
    with db.begin() as conn:
        users.create_user(conn, "newbie", PASSWORD, ["registrar"], actor=admin)
    with db.read() as conn:
        denied = audit.query(conn, outcome="denied")
        assert users.find_user(conn, "mallory") is None
    assert [(e.user_id, e.action, e.resource_type) for e in denied] == [(coder.user_id, "create", "UserAccount")]


def test_login_success_and_failures_are_audited(db: Database) -> None:
    u = _create(db)
    with db.begin() as conn:
        p = users.authenticate(conn, "Dana.W", PASSWORD, "192.0.2.7")
    assert p.user_id == u.id and p.roles == {"him_technician"} and p.client_address == "192.0.2.7"
    with pytest.raises(LoginError, match="user name or password is wrong"):
        with db.begin() as conn:
            users.authenticate(conn, "dana.w", "wrong password here", "192.0.2.8")
    with pytest.raises(LoginError, match="user name or password is wrong"):
        with db.begin() as conn:
            users.authenticate(conn, "nobody", "wrong password here", "192.0.2.9")
    with db.read() as conn:
        logins = audit.query(conn, action="login", newest_first=False)
        assert audit.verify(conn).ok
    assert [(e.outcome, e.detail, e.client_address) for e in logins] == [
        ("success", None, "192.0.2.7"),
        ("failure", "wrong password", "192.0.2.8"),
        ("failure", "unknown user name", "192.0.2.9"),
    ]
    assert logins[1].user_id == u.id and logins[2].user_id is None and logins[2].username == "nobody"


def test_lockout_after_more_than_ten_failures_in_fifteen_minutes(db: Database) -> None:
    u = _create(db)
    t0 = utcnow()
    for i in range(10):
        with pytest.raises(LoginError, match="wrong"):
            with db.begin() as conn:
                users.authenticate(conn, "dana.w", "not the password", now=t0 + timedelta(seconds=i))
    with db.begin() as conn:  # ten failures: not yet locked
        users.authenticate(conn, "dana.w", PASSWORD, now=t0 + timedelta(seconds=10))
    for i in range(11):
        with pytest.raises(LoginError, match="wrong"):
            with db.begin() as conn:
                users.authenticate(conn, "dana.w", "not the password", now=t0 + timedelta(seconds=20 + i))
    # the 11th failure locked the account: even the right password is refused now
    with pytest.raises(LoginError, match="locked") as info:
        with db.begin() as conn:
            users.authenticate(conn, "dana.w", PASSWORD, now=t0 + timedelta(minutes=5))
    assert info.value.locked_until is not None
    with db.read() as conn:
        failures = audit.query(conn, action="login", outcome="failure", limit=1000)
        lockouts = audit.query(conn, action="lockout")
        assert audit.verify(conn).ok
    assert sum(e.detail == "wrong password" for e in failures) == 21
    assert sum(e.detail == "account locked" for e in failures) == 1
    assert len(lockouts) == 1 and lockouts[0].resource_id == u.id
    # fifteen minutes after the lock it opens again
    with db.begin() as conn:
        users.authenticate(conn, "dana.w", PASSWORD, now=t0 + timedelta(minutes=16))


def test_failures_spread_beyond_the_window_do_not_lock(db: Database) -> None:
    _create(db)
    t0 = utcnow()
    for i in range(12):
        with pytest.raises(LoginError, match="wrong"):
            with db.begin() as conn:
                users.authenticate(conn, "dana.w", "not the password", now=t0 + timedelta(minutes=2 * i))
    with db.begin() as conn:
        users.authenticate(conn, "dana.w", PASSWORD, now=t0 + timedelta(minutes=25))


def test_set_roles_disable_enable(db: Database) -> None:
    u = _create(db)
    with db.begin() as conn:
        users.set_roles(conn, u.id, ["coder", "registrar"], actor=SYSTEM)
        p = users.get_principal(conn, u.id)
        assert p is not None and p.roles == {"coder", "registrar"}
        s = sessions.start_session(conn, p)
        secret, _ = sessions.issue_token(conn, p)
    with db.begin() as conn:
        users.disable_user(conn, u.id, actor=SYSTEM, reason="left the hospital")
    with db.begin() as conn:
        assert users.get_principal(conn, u.id) is None
        assert sessions.resolve_session(conn, s.session_id) is None
        assert sessions.resolve_token(conn, secret) is None
    with pytest.raises(LoginError, match="disabled"):
        with db.begin() as conn:
            users.authenticate(conn, "dana.w", PASSWORD)
    with db.begin() as conn:
        users.enable_user(conn, u.id, actor=SYSTEM)
        users.authenticate(conn, "dana.w", PASSWORD)
    with db.read() as conn:
        changes = audit.query(conn, action="user.set_roles")
        assert changes[0].detail == "roles: him_technician -> coder registrar"
        assert [e.purpose for e in audit.query(conn, action="user.disable")] == ["left the hospital"]


def test_set_password_checks_rules_and_old_password_stops_working(db: Database) -> None:
    u = _create(db)
    p = u.principal()
    with pytest.raises(PasswordPolicyError):
        with db.begin() as conn:
            users.set_password(conn, u.id, "tiny", actor=p)
    with db.begin() as conn:
        users.set_password(conn, u.id, "a brand new passphrase", actor=p)
    with pytest.raises(LoginError):
        with db.begin() as conn:
            users.authenticate(conn, "dana.w", PASSWORD)
    with db.begin() as conn:
        users.authenticate(conn, "dana.w", "a brand new passphrase")
