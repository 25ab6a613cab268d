"""Server-side web sessions (with CSRF tokens) and API bearer tokens.

A web session is a row keyed by the SHA-256 of a random id; the id itself lives only in the
browser's cookie (HttpOnly, Secure, SameSite=Strict). A session idle longer than
``Settings.session_idle_minutes`` is deleted when next seen; logout deletes the row, so the cookie
is dead at once. Each session has a CSRF token that every form posts back.

API bearer tokens are random, stored as SHA-256 only, expire after ``Settings.token_hours`` and can
be revoked. Disabling a user ends their sessions and revokes their tokens (users.disable_user).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast
from urllib.parse import urlsplit

from sqlalchemy import Connection, Table, bindparam, delete, insert, select, update

from chartkeeper.config import Settings, get_settings
from chartkeeper.db.base import utcnow
from chartkeeper.db.driver import DriverStatement
from chartkeeper.security import audit
from chartkeeper.security.models import ApiTokenRow, SessionRow, UserRow
from chartkeeper.security.policy import Action, check
from chartkeeper.security.principal import Principal

SESSION_COOKIE = "chartkeeper_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
TOKEN_PREFIX = "ckt_"
# last_seen is written at most this often (not on every request), well inside any idle timeout.
TOUCH_EVERY = timedelta(seconds=30)

_sess = cast(Table, SessionRow.__table__)
_tok = cast(Table, ApiTokenRow.__table__)
_users = cast(Table, UserRow.__table__)


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------
# Web sessions


@dataclass(frozen=True)
class WebSession:
    principal: Principal
    csrf_token: str
    created_at: datetime
    last_seen: datetime
    # The cookie value: only set on the object start_session returns (the table keeps its hash).
    session_id: str | None = None


def cookie_settings(settings: Settings | None = None) -> dict[str, Any]:
    """Keyword arguments for ``Response.set_cookie(SESSION_COOKIE, session_id, **cookie_settings())``.

    Secure unless the configured base URL is plain http on a non-loopback host (browsers accept
    Secure cookies on http://127.0.0.1 and http://localhost; a test client on http://testserver
    would drop them).
    """
    settings = settings or get_settings()
    parts = urlsplit(settings.base_url)
    secure = parts.scheme == "https" or parts.hostname in ("127.0.0.1", "localhost", "::1")
    return {
        "httponly": True,
        "secure": secure,
        "samesite": "strict",
        "path": "/",
    }


def start_session(
    conn: Connection,
    principal: Principal,
    *,
    client_address: str | None = None,
    now: datetime | None = None,
) -> WebSession:
    """Start a web session after a successful login; ``.session_id`` goes into the cookie."""
    now = now or utcnow()
    sid = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    address = client_address or principal.client_address
    conn.execute(
        insert(_sess),
        {
            "id_hash": _sha256(sid),
            "user_id": principal.user_id,
            "csrf_token": csrf,
            "created_at": now,
            "last_seen": now,
            "client_address": (address or "")[:64] or None,
        },
    )
    return WebSession(principal.with_address(address), csrf, now, now, sid)


def resolve_session(
    conn: Connection,
    session_id: str | None,
    *,
    settings: Settings | None = None,
    client_address: str | None = None,
    now: datetime | None = None,
) -> WebSession | None:
    """The live session for a cookie value, touching last-seen; None if unknown, idle-expired or the
    user is disabled (an expired session's row is deleted and its end audited)."""
    if not session_id or len(session_id) > 200:
        return None
    settings = settings or get_settings()
    now = now or utcnow()
    key = _sha256(session_id)
    row = conn.execute(
        select(
            _sess.c.csrf_token,
            _sess.c.created_at,
            _sess.c.last_seen,
            _sess.c.client_address,
            _users.c.id,
            _users.c.username,
            _users.c.display_name,
            _users.c.roles,
            _users.c.active,
            _users.c.practitioner_id,
        )
        .join(_users, _users.c.id == _sess.c.user_id)
        .where(_sess.c.id_hash == key)
    ).first()
    if row is None:
        return None
    csrf, created, last_seen, stored_addr, uid, uname, display, roles, active, practitioner = row
    principal = Principal(uid, uname, frozenset(roles.split()), display, client_address or stored_addr,
                          practitioner_id=practitioner)
    if not active:
        conn.execute(delete(_sess).where(_sess.c.id_hash == key))
        return None
    if now - last_seen > timedelta(minutes=settings.session_idle_minutes):
        conn.execute(delete(_sess).where(_sess.c.id_hash == key))
        audit.record(
            conn,
            principal,
            "logout",
            "success",
            resource_type="UserAccount",
            resource_id=uid,
            detail=f"session idle for more than {settings.session_idle_minutes} minutes",
        )
        return None
    if now - last_seen >= TOUCH_EVERY:
        conn.execute(update(_sess).where(_sess.c.id_hash == key).values(last_seen=now))
        last_seen = now
    return WebSession(principal, csrf, created, last_seen)


def end_session(conn: Connection, session_id: str | None, *, client_address: str | None = None) -> bool:
    """Log out: delete the session row (the cookie is dead from now on) and audit it."""
    if not session_id or len(session_id) > 200:
        return False
    key = _sha256(session_id)
    row = conn.execute(
        select(_users.c.id, _users.c.username, _users.c.display_name, _users.c.roles)
        .join(_users, _users.c.id == _sess.c.user_id)
        .where(_sess.c.id_hash == key)
    ).first()
    deleted = conn.execute(delete(_sess).where(_sess.c.id_hash == key)).rowcount
    if row is not None:
        uid, uname, display, roles = row
        audit.record(
            conn,
            Principal(uid, uname, frozenset(roles.split()), display, client_address),
            "logout",
            "success",
            resource_type="UserAccount",
            resource_id=uid,
        )
    return bool(deleted)


def verify_csrf(session: WebSession | None, token: str | None) -> bool:
    """True when ``token`` (from the form field or X-CSRF-Token header) is this session's token."""
    if session is None or not token:
        return False
    return hmac.compare_digest(session.csrf_token.encode(), token.encode())


def purge_expired_sessions(conn: Connection, *, settings: Settings | None = None, now: datetime | None = None) -> int:
    settings = settings or get_settings()
    now = now or utcnow()
    cutoff = now - timedelta(minutes=settings.session_idle_minutes)
    return int(conn.execute(delete(_sess).where(_sess.c.last_seen < cutoff)).rowcount or 0)


# --------------------------------------------------------------------------------------------
# API bearer tokens


@dataclass(frozen=True)
class ApiToken:
    id: str
    user_id: str
    label: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None

    def live(self, now: datetime | None = None) -> bool:
        return self.revoked_at is None and self.expires_at > (now or utcnow())


def _token(row: Any) -> ApiToken:
    m = row._mapping
    return ApiToken(m["id"], m["user_id"], m["label"], m["created_at"], m["expires_at"], m["revoked_at"])


_TOKEN_COLS = [
    _tok.c.id,
    _tok.c.user_id,
    _tok.c.label,
    _tok.c.created_at,
    _tok.c.expires_at,
    _tok.c.revoked_at,
]


def issue_token(
    conn: Connection,
    principal: Principal,
    *,
    label: str = "",
    hours: float | None = None,
    user_id: str | None = None,
    settings: Settings | None = None,
    now: datetime | None = None,
) -> tuple[str, ApiToken]:
    """Issue a bearer token for the principal (or, for an admin, for ``user_id``).

    Returns (secret, token): the secret is shown once and never stored.
    """
    target = user_id or principal.user_id
    if target != principal.user_id:
        check(conn, principal, Action.CREATE, "ApiToken", None)
    exists = conn.execute(select(_users.c.active).where(_users.c.id == target)).first()
    if exists is None or not exists[0]:
        raise ValueError("Tokens can only be issued to an active user.")
    settings = settings or get_settings()
    now = now or utcnow()
    life = timedelta(hours=hours if hours is not None else settings.token_hours)
    if life <= timedelta(0):
        raise ValueError("A token's lifetime must be positive.")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    tid = secrets.token_hex(8)
    conn.execute(
        insert(_tok),
        {
            "id": tid,
            "token_hash": _sha256(secret),
            "user_id": target,
            "label": (label or "")[:200],
            "created_at": now,
            "expires_at": now + life,
            "revoked_at": None,
        },
    )
    audit.record(
        conn,
        principal,
        "token.issue",
        "success",
        resource_type="ApiToken",
        resource_id=tid,
        detail=f"for user {target}, expires {audit.format_time(now + life)}",
    )
    return secret, ApiToken(tid, target, (label or "")[:200], now, now + life, None)


_TOKEN_LOOKUP = (
    select(
        _tok.c.expires_at,
        _tok.c.revoked_at,
        _users.c.id,
        _users.c.username,
        _users.c.display_name,
        _users.c.roles,
        _users.c.active,
        _users.c.practitioner_id,
    )
    .join(_users, _users.c.id == _tok.c.user_id)
    .where(_tok.c.token_hash == bindparam("h"))
)
_D_TOKEN_LOOKUP = DriverStatement(_TOKEN_LOOKUP)  # every API request: straight to the driver


def resolve_token(
    conn: Connection, token: str | None, *, client_address: str | None = None, now: datetime | None = None
) -> Principal | None:
    """The principal for a live bearer token; None if unknown, expired, revoked or the user disabled.

    One indexed read; writes nothing (safe in a read-only transaction).
    """
    if not token or len(token) > 200:
        return None
    now = now or utcnow()
    row = _D_TOKEN_LOOKUP.first(conn, {"h": _sha256(token)})
    if row is None:
        return None
    expires_at, revoked_at, uid, uname, display, roles, active, practitioner = row
    if revoked_at is not None or expires_at <= now or not active:
        return None
    return Principal(uid, uname, frozenset(roles.split()), display, client_address, practitioner_id=practitioner)


def revoke_token(conn: Connection, token: str, *, actor: Principal, now: datetime | None = None) -> bool:
    """Revoke by token id or by the secret itself. Users revoke their own; admins anyone's."""
    now = now or utcnow()
    row = conn.execute(
        select(_tok.c.id, _tok.c.user_id, _tok.c.revoked_at).where((_tok.c.id == token) | (_tok.c.token_hash == _sha256(token)))
    ).first()
    if row is None:
        return False
    tid, owner, revoked_at = row
    if owner != actor.user_id:
        check(conn, actor, Action.UPDATE, "ApiToken", None, resource_id=tid)
    if revoked_at is not None:
        return False
    conn.execute(update(_tok).where(_tok.c.id == tid).values(revoked_at=now))
    audit.record(conn, actor, "token.revoke", "success", resource_type="ApiToken", resource_id=tid)
    return True


def list_tokens(conn: Connection, user_id: str) -> list[ApiToken]:
    stmt = select(*_TOKEN_COLS).where(_tok.c.user_id == user_id).order_by(_tok.c.created_at.desc())
    return [_token(r) for r in conn.execute(stmt)]
