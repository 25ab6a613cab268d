"""Identity: users, roles, passwords, login with lockout. Every change and every login is audited."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Connection, Table, delete, func, insert, select, update

from chartkeeper.db.base import utcnow
from chartkeeper.security import audit, passwords
from chartkeeper.security.models import ApiTokenRow, LoginFailureRow, SessionRow, UserRow
from chartkeeper.security.policy import Action, check
from chartkeeper.security.principal import Principal, normalize_roles

LOCKOUT_FAILURES = 10  # more than this many failures ...
LOCKOUT_WINDOW = timedelta(minutes=15)  # ... within this window ...
LOCKOUT_DURATION = timedelta(minutes=15)  # ... locks the account for this long.

USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._@-]{1,63}$")

_users = cast(Table, UserRow.__table__)
_fail = cast(Table, LoginFailureRow.__table__)
_sessions = cast(Table, SessionRow.__table__)
_tokens = cast(Table, ApiTokenRow.__table__)


class UserError(ValueError):
    """A user operation was refused; the message says why and what to do."""


class LoginError(Exception):
    """Login refused. ``message`` is a sentence fit to show the person logging in."""

    def __init__(self, message: str, *, locked_until: datetime | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.locked_until = locked_until


@dataclass(frozen=True)
class User:
    id: str
    username: str
    display_name: str
    roles: frozenset[str]
    active: bool
    created_at: datetime
    locked_until: datetime | None
    practitioner_id: str | None = None

    def principal(self, client_address: str | None = None) -> Principal:
        return Principal(self.id, self.username, self.roles, self.display_name, client_address,
                         practitioner_id=self.practitioner_id)


def _roles_text(roles: Iterable[str]) -> str:
    return " ".join(sorted(roles))


def _user(row: object) -> User:
    m = row._mapping  # type: ignore[attr-defined]
    return User(
        id=m["id"],
        username=m["username"],
        display_name=m["display_name"],
        roles=frozenset(m["roles"].split()),
        active=bool(m["active"]),
        created_at=m["created_at"],
        locked_until=m["locked_until"],
        practitioner_id=m["practitioner_id"],
    )


_USER_COLS = [
    _users.c.id,
    _users.c.username,
    _users.c.display_name,
    _users.c.roles,
    _users.c.active,
    _users.c.created_at,
    _users.c.locked_until,
    _users.c.practitioner_id,
]


def normalize_username(username: str) -> str:
    name = (username or "").strip().lower()
    if not USERNAME_RE.match(name):
        raise UserError(
            "The user name must be 2 to 64 characters: letters, digits, '.', '_', '-' or '@', starting with a letter or digit."
        )
    return name


def get_user(conn: Connection, user_id: str) -> User | None:
    row = conn.execute(select(*_USER_COLS).where(_users.c.id == user_id)).first()
    return _user(row) if row else None


def find_user(conn: Connection, username: str) -> User | None:
    row = conn.execute(select(*_USER_COLS).where(_users.c.username == username.strip().lower())).first()
    return _user(row) if row else None


def list_users(conn: Connection, *, include_inactive: bool = True) -> list[User]:
    stmt = select(*_USER_COLS).order_by(_users.c.username)
    if not include_inactive:
        stmt = stmt.where(_users.c.active.is_(True))
    return [_user(r) for r in conn.execute(stmt)]


def get_principal(conn: Connection, user_id: str, client_address: str | None = None) -> Principal | None:
    """The principal for an active user, or None (unknown or disabled)."""
    u = get_user(conn, user_id)
    if u is None or not u.active:
        return None
    return u.principal(client_address)


def _require(conn: Connection, actor: Principal, action: Action, target_id: str | None) -> None:
    check(conn, actor, action, "UserAccount", None, resource_id=target_id)


def create_user(
    conn: Connection,
    username: str,
    password: str,
    roles: Iterable[str],
    *,
    actor: Principal,
    display_name: str = "",
) -> User:
    """Create an active user. Raises UserError / PasswordPolicyError (nothing is written then)."""
    _require(conn, actor, Action.CREATE, None)
    name = normalize_username(username)
    try:
        role_set = normalize_roles(roles)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if not role_set:
        raise UserError("Give the user at least one role.")
    display_name = (display_name or "").strip()
    if len(display_name) > 200:
        raise UserError("The display name is too long: use at most 200 characters.")
    if conn.execute(select(_users.c.id).where(_users.c.username == name)).first():
        raise UserError(f"The user name {name!r} is taken: choose another.")
    pw_hash = passwords.hash_password(password)
    now = utcnow()
    uid = uuid.uuid4().hex
    conn.execute(
        insert(_users),
        {
            "id": uid,
            "username": name,
            "display_name": display_name,
            "password_hash": pw_hash,
            "roles": _roles_text(role_set),
            "active": True,
            "created_at": now,
            "password_changed_at": now,
            "locked_until": None,
        },
    )
    audit.record(
        conn,
        actor,
        "user.create",
        "success",
        resource_type="UserAccount",
        resource_id=uid,
        detail=f"username={name} roles={_roles_text(role_set)}",
    )
    u = get_user(conn, uid)
    assert u is not None
    return u


def _existing(conn: Connection, user_id: str) -> User:
    u = get_user(conn, user_id)
    if u is None:
        raise UserError(f"There is no user with id {user_id!r}.")
    return u


def set_roles(conn: Connection, user_id: str, roles: Iterable[str], *, actor: Principal) -> User:
    _require(conn, actor, Action.UPDATE, user_id)
    u = _existing(conn, user_id)
    try:
        role_set = normalize_roles(roles)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    conn.execute(update(_users).where(_users.c.id == user_id).values(roles=_roles_text(role_set)))
    audit.record(
        conn,
        actor,
        "user.set_roles",
        "success",
        resource_type="UserAccount",
        resource_id=user_id,
        detail=f"roles: {_roles_text(u.roles) or '-'} -> {_roles_text(role_set) or '-'}",
    )
    return _existing(conn, user_id)


def link_practitioner(conn: Connection, user_id: str, practitioner_id: str | None, *, actor: Principal) -> User:
    """Say which Practitioner in the record this user is (a physician's deficiencies and signature),
    or unlink with None. The caller checks that the Practitioner exists."""
    _require(conn, actor, Action.UPDATE, user_id)
    u = _existing(conn, user_id)
    if practitioner_id is not None and not re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", practitioner_id):
        raise UserError("The practitioner id must be a FHIR id: 1 to 64 letters, digits, '-' or '.'.")
    conn.execute(update(_users).where(_users.c.id == user_id).values(practitioner_id=practitioner_id))
    audit.record(conn, actor, "user.link_practitioner", "success", resource_type="UserAccount", resource_id=user_id,
                 detail=f"practitioner: {u.practitioner_id or '-'} -> {practitioner_id or '-'}")
    return _existing(conn, user_id)


def disable_user(conn: Connection, user_id: str, *, actor: Principal, reason: str = "") -> User:
    """Disable the account, end its web sessions and revoke its API tokens."""
    _require(conn, actor, Action.UPDATE, user_id)
    _existing(conn, user_id)
    now = utcnow()
    conn.execute(update(_users).where(_users.c.id == user_id).values(active=False))
    conn.execute(delete(_sessions).where(_sessions.c.user_id == user_id))
    tok = cast(Table, ApiTokenRow.__table__)
    conn.execute(update(tok).where(tok.c.user_id == user_id, tok.c.revoked_at.is_(None)).values(revoked_at=now))
    audit.record(
        conn,
        actor,
        "user.disable",
        "success",
        resource_type="UserAccount",
        resource_id=user_id,
        purpose=reason or None,
    )
    return _existing(conn, user_id)


def enable_user(conn: Connection, user_id: str, *, actor: Principal) -> User:
    _require(conn, actor, Action.UPDATE, user_id)
    u = _existing(conn, user_id)
    conn.execute(update(_users).where(_users.c.id == user_id).values(active=True, locked_until=None))
    conn.execute(delete(_fail).where(_fail.c.username == u.username))
    audit.record(conn, actor, "user.enable", "success", resource_type="UserAccount", resource_id=user_id)
    return _existing(conn, user_id)


def unlock_user(conn: Connection, user_id: str, *, actor: Principal) -> User:
    _require(conn, actor, Action.UPDATE, user_id)
    u = _existing(conn, user_id)
    conn.execute(update(_users).where(_users.c.id == user_id).values(locked_until=None))
    conn.execute(delete(_fail).where(_fail.c.username == u.username))
    audit.record(conn, actor, "user.unlock", "success", resource_type="UserAccount", resource_id=user_id)
    return _existing(conn, user_id)


def set_password(conn: Connection, user_id: str, new_password: str, *, actor: Principal) -> None:
    """Change a password: the user themselves, or whoever may update user accounts."""
    if actor.user_id != user_id:
        _require(conn, actor, Action.UPDATE, user_id)
    _existing(conn, user_id)
    pw_hash = passwords.hash_password(new_password)
    conn.execute(update(_users).where(_users.c.id == user_id).values(password_hash=pw_hash, password_changed_at=utcnow()))
    audit.record(conn, actor, "user.set_password", "success", resource_type="UserAccount", resource_id=user_id)


# --------------------------------------------------------------------------------------------
# Login

_WRONG = "The user name or password is wrong."


def authenticate(
    conn: Connection,
    username: str,
    password: str,
    client_address: str | None = None,
    *,
    now: datetime | None = None,
) -> Principal:
    """Check a password and return the user's Principal; raise LoginError with a clear sentence.

    Success is audited in the caller's transaction. A failure (and the lockout it may cause) is
    recorded in its own transaction once the caller's ends, so it survives the caller's rollback:
    use one transaction per login attempt.
    """
    now = now or utcnow()
    name = (username or "").strip().lower()[:64]
    row = conn.execute(
        select(
            _users.c.id,
            _users.c.username,
            _users.c.display_name,
            _users.c.roles,
            _users.c.active,
            _users.c.password_hash,
            _users.c.locked_until,
        ).where(_users.c.username == name)
    ).first()
    if row is None:
        passwords.burn_time(password or "")
        _record_failure(conn, None, name, client_address, "unknown user name", now, count=False)
        raise LoginError(_WRONG)
    user_id, uname, display, roles, active, pw_hash, locked_until = row
    who = Principal(user_id, uname, frozenset(roles.split()), display, client_address)
    if locked_until is not None and locked_until > now:
        _record_failure(conn, who, name, client_address, "account locked", now, count=False)
        raise LoginError(
            "This account is locked after too many failed logins; try again after "
            f"{locked_until:%H:%M} UTC or ask an administrator to unlock it.",
            locked_until=locked_until,
        )
    if not passwords.verify_password(pw_hash, password or ""):
        _record_failure(conn, who, name, client_address, "wrong password", now, count=True)
        raise LoginError(_WRONG)
    if not active:
        _record_failure(conn, who, name, client_address, "account disabled", now, count=False)
        raise LoginError("This account is disabled; ask an administrator.")
    values: dict[str, object] = {"locked_until": None}
    if passwords.needs_rehash(pw_hash):
        values["password_hash"] = passwords.hash_password(password)
    conn.execute(update(_users).where(_users.c.id == user_id).values(**values))
    conn.execute(delete(_fail).where(_fail.c.username == name))
    audit.record(conn, who, "login", "success", resource_type="UserAccount", resource_id=user_id, at=now)
    return who


def _record_failure(
    conn: Connection,
    who: Principal | None,
    name: str,
    client_address: str | None,
    why: str,
    now: datetime,
    *,
    count: bool,
) -> None:
    def _write(c: Connection) -> None:
        audit.record(
            c,
            who or Principal("", name, frozenset()),
            "login",
            "failure",
            resource_type="UserAccount",
            resource_id=who.user_id if who else None,
            detail=why,
            client_address=client_address,
            at=now,
        )
        if not count or who is None:
            return
        c.execute(delete(_fail).where(_fail.c.username == name, _fail.c.at <= now - LOCKOUT_WINDOW))
        c.execute(insert(_fail), {"username": name, "at": now})
        failures = c.execute(
            select(func.count()).select_from(_fail).where(_fail.c.username == name, _fail.c.at > now - LOCKOUT_WINDOW)
        ).scalar_one()
        if failures > LOCKOUT_FAILURES:
            until = now + LOCKOUT_DURATION
            c.execute(update(_users).where(_users.c.id == who.user_id).values(locked_until=until))
            audit.record(
                c,
                who,
                "lockout",
                "success",
                resource_type="UserAccount",
                resource_id=who.user_id,
                detail=f"{failures} failed logins in {int(LOCKOUT_WINDOW.total_seconds() // 60)} minutes; "
                f"locked until {audit.format_time(until)}",
                client_address=client_address,
                at=now,
            )

    audit.run_detached(conn, _write)
