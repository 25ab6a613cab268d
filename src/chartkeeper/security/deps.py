"""FastAPI dependencies: who is calling. Thin: the logic is in sessions.py and users.py.

The Database comes from ``request.app.state.db``; Settings from ``request.app.state.settings`` when the
app sets it, else from the environment.
"""

from __future__ import annotations

from fastapi import HTTPException, Request
from sqlalchemy import Connection

from chartkeeper.config import Settings, get_settings
from chartkeeper.db import Database
from chartkeeper.security.policy import Denied
from chartkeeper.security.principal import PendingPrincipal, Principal
from chartkeeper.security.sessions import (
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    WebSession,
    resolve_session,
    resolve_token,
    verify_csrf,
)

REALM = 'Bearer realm="chartkeeper"'


def get_db(request: Request) -> Database:
    return request.app.state.db  # type: ignore[no-any-return]


def get_app_settings(request: Request) -> Settings:
    s = getattr(request.app.state, "settings", None)
    return s if isinstance(s, Settings) else get_settings()


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


def _unauthorized(detail: str, error: str | None = None) -> HTTPException:
    header = REALM + (f', error="{error}"' if error else "")
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": header})


def optional_principal(request: Request) -> Principal | None:
    """The caller from ``Authorization: Bearer <token>`` or the session cookie, or None.

    An Authorization header that is present but not a live bearer token raises 401 (it is never
    silently ignored in favour of the cookie).
    """
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    settings = get_app_settings(request)
    addr = client_address(request)
    if not settings.auth_enabled:
        p = Principal.system("auth-disabled").with_address(addr)
        request.state.principal = p
        return p
    db = get_db(request)
    auth = request.headers.get("authorization")
    if auth is not None:
        scheme, _, credential = auth.strip().partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise _unauthorized("Use 'Authorization: Bearer <token>'.", "invalid_request")
        with db.read() as conn:
            tp = resolve_token(conn, credential.strip(), client_address=addr)
        if tp is None:
            raise _unauthorized("The bearer token is unknown, expired or revoked.", "invalid_token")
        request.state.principal = tp
        return tp
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        with db.begin() as conn:
            s = resolve_session(conn, cookie, settings=settings, client_address=addr)
        if s is not None:
            request.state.session = s
            request.state.principal = s.principal
            return s.principal
    return None


class _BearerPrincipal(PendingPrincipal):
    """The bearer token of this request, looked up in the service's transaction (see PendingPrincipal)."""

    __slots__ = ("request", "credential", "address")

    def __init__(self, request: Request, credential: str, address: str | None) -> None:
        self.request = request
        self.credential = credential
        self.address = address

    def resolve(self, conn: Connection) -> Principal:
        cached = getattr(self.request.state, "principal", None)
        if isinstance(cached, Principal):
            return cached
        tp = resolve_token(conn, self.credential, client_address=self.address)
        if tp is None:
            raise _unauthorized("The bearer token is unknown, expired or revoked.", "invalid_token")
        self.request.state.principal = tp
        return tp


def pending_principal(request: Request) -> Principal | PendingPrincipal:
    """Like :func:`principal_from_request`, but a bearer token is checked later, in the transaction of
    the service call it is passed to (which must take a PendingPrincipal): one transaction per request.
    A malformed Authorization header, a missing credential and a session cookie are handled at once."""
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    auth = request.headers.get("authorization")
    if auth is None or not get_app_settings(request).auth_enabled:
        return principal_from_request(request)
    scheme, _, credential = auth.strip().partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise _unauthorized("Use 'Authorization: Bearer <token>'.", "invalid_request")
    return _BearerPrincipal(request, credential.strip(), client_address(request))


def principal_from_request(request: Request) -> Principal:
    """The caller, or 401 with WWW-Authenticate when there is no valid token or session."""
    p = optional_principal(request)
    if p is None:
        raise _unauthorized("Log in, or send 'Authorization: Bearer <token>'.")
    return p


def session_from_request(request: Request) -> WebSession | None:
    """The web session of this request (after principal_from_request ran), if it came by cookie."""
    optional_principal(request)
    s = getattr(request.state, "session", None)
    return s if isinstance(s, WebSession) else None


def check_csrf(request: Request, token: str | None = None) -> None:
    """403 unless the form's csrf_token (or the X-CSRF-Token header) matches the session's.

    Pass the submitted form value as ``token``; without it the header is used. Bearer-token calls
    carry no cookie and need no CSRF token.
    """
    if request.headers.get("authorization") is not None and getattr(request.state, "session", None) is None:
        return
    session = session_from_request(request)
    submitted = token if token is not None else request.headers.get(CSRF_HEADER)
    if not verify_csrf(session, submitted):
        raise HTTPException(status_code=403, detail="The form's security token is missing or wrong; reload the page.")


def denied_to_http(exc: Denied) -> HTTPException:
    return HTTPException(status_code=exc.status, detail=exc.message)


__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "check_csrf",
    "client_address",
    "denied_to_http",
    "get_app_settings",
    "get_db",
    "optional_principal",
    "pending_principal",
    "principal_from_request",
    "session_from_request",
]
