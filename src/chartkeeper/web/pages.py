"""The technicians' web workspace: server-rendered HTML pages (Jinja2, autoescaped).

Routes are thin: parse the request, call the record service (which checks the policy and writes
the audit entry) with the logged-in Principal, render. Patient data reaches a page only through
``RecordService``; the few other reads here are of access-control and user tables (is this patient
restricted, who is user X) through the security module's own functions.

Every page needs a session (no session: redirect to /login, 401 for HTMX/JSON callers); every form
carries the session's CSRF token; no PHI goes into URLs (search is a POST; URLs carry resource ids
only). Pages send a strict Content-Security-Policy (our own script and stylesheet only).
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from chartkeeper.completion.service import HIM_ROLES
from chartkeeper.fhir import searchparams as sp
from chartkeeper.fhir.errors import FhirError
from chartkeeper.fhir.service import RecordService
from chartkeeper.fhir.store import Stored
from chartkeeper.security import grants, policy, users
from chartkeeper.security.deps import check_csrf, client_address, get_app_settings, optional_principal
from chartkeeper.security.policy import Action, Denied
from chartkeeper.security.principal import ROLE_LABELS, Principal
from chartkeeper.security.sessions import SESSION_COOKIE, cookie_settings, end_session, start_session
from chartkeeper.web import forms
from chartkeeper.web.forms import FormSpec

HERE = Path(__file__).resolve().parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"
LOGIN_CSRF_COOKIE = "chartkeeper_login_csrf"
_ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_NEXT_RE = re.compile(r"^/[A-Za-z0-9/_.\-]{0,200}$")
SEARCH_LIMIT = 50
QUEUE_PAGE = 50
RECENT_DAYS = 7

router = APIRouter(include_in_schema=False)

env = Environment(
    loader=FileSystemLoader(str(TEMPLATES_DIR)),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True, default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


# --------------------------------------------------------------------------------------------
# Formatting helpers (also Jinja filters)


def fmt_date(value: object) -> str:
    """A FHIR date/dateTime/instant as YYYY-MM-DD (partial dates stay partial)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d")
    return str(value)[:10] if value else ""


def fmt_datetime(value: object) -> str:
    """'2024-03-05T14:30:00+01:00' -> '2024-03-05 14:30' (the time as recorded)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    s = str(value or "")
    if len(s) >= 16 and s[10] == "T":
        return f"{s[:10]} {s[11:16]}"
    return s


def fmt_number(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.0f}"
    return str(value)


env.filters["date"] = fmt_date
env.filters["datetime"] = fmt_datetime
env.filters["num"] = fmt_number
env.globals["role_labels"] = ROLE_LABELS


def cc_text(cc: object) -> str:
    """Human text of a CodeableConcept: its text, else the first coding's display, else its code."""
    if not isinstance(cc, dict):
        return ""
    if cc.get("text"):
        return str(cc["text"])
    for c in cc.get("coding") or ():
        if isinstance(c, dict) and (c.get("display") or c.get("code")):
            return str(c.get("display") or c.get("code"))
    return ""


def cc_code(cc: object, system: str | None = None) -> str:
    if not isinstance(cc, dict):
        return ""
    for c in cc.get("coding") or ():
        if isinstance(c, dict) and c.get("code") and (system is None or c.get("system") == system):
            return str(c["code"])
    return ""


def human_name(resource: Mapping[str, Any]) -> str:
    names = [n for n in resource.get("name") or () if isinstance(n, dict)]
    if not names:
        return str(resource.get("name")) if isinstance(resource.get("name"), str) else ""
    n = next((x for x in names if x.get("use") == "official"), None) or next(
        (x for x in names if x.get("use") in ("usual", None)), names[0]
    )
    if n.get("text") and not n.get("family"):
        return str(n["text"])
    given = " ".join(str(g) for g in n.get("given") or ())
    family = str(n.get("family") or "")
    if family and given:
        return f"{family}, {given}"
    return family or given


def mrn_of(patient: Mapping[str, Any]) -> str:
    idents = [i for i in patient.get("identifier") or () if isinstance(i, dict) and i.get("value")]
    for i in idents:
        if i.get("system") == forms.MRN_SYSTEM:
            return str(i["value"])
    for i in idents:
        if cc_code(i.get("type"), forms.V2_0203) == "MR":
            return str(i["value"])
    return ""


def age_text(birth: str | None, on: date | None = None) -> str:
    if not birth:
        return ""
    on = on or datetime.now(UTC).date()
    parts = birth[:10].split("-")
    try:
        y = int(parts[0])
        m = int(parts[1]) if len(parts) > 1 else 7
        d = int(parts[2]) if len(parts) > 2 else 1
    except ValueError:
        return ""
    years = on.year - y - ((on.month, on.day) < (m, d))
    if years >= 2:
        return f"{years} y"
    months = (on.year - y) * 12 + on.month - m - (on.day < d)
    return f"{max(months, 0)} mo"


def decode_attachment(att: Mapping[str, Any]) -> tuple[str | None, str]:
    """(text, note): the attachment's text when it is inline text, else None and why."""
    data = att.get("data")
    ctype = str(att.get("contentType") or "")
    if not data:
        return None, "The text is stored elsewhere." if att.get("url") else "No text attached."
    if ctype and not ctype.startswith(("text/", "application/xhtml")):
        return None, f"Attachment of type {ctype}: not shown here."
    try:
        raw = base64.b64decode(str(data), validate=False)
    except (ValueError, TypeError):
        return None, "The attachment could not be decoded."
    m = re.search(r"charset=([A-Za-z0-9_\-]+)", ctype)
    enc = m.group(1) if m else "utf-8"
    try:
        return raw.decode(enc, errors="replace"), ""
    except LookupError:
        return raw.decode("utf-8", errors="replace"), ""


def safe_next(value: object) -> str:
    s = str(value or "")
    return s if _NEXT_RE.match(s) and not s.startswith("//") and not s.startswith("/login") else "/"


def _valid_id(rid: str) -> str:
    if not _ID_RE.match(rid):
        raise HTTPException(404, "There is no such record.")
    return rid


# --------------------------------------------------------------------------------------------
# Request plumbing


def records(request: Request) -> RecordService:
    return request.app.state.records  # type: ignore[no-any-return]


def current_principal(request: Request) -> Principal:
    """The logged-in user; 401 (which pages turn into a redirect to /login) when there is none."""
    p = optional_principal(request)
    if p is None:
        raise HTTPException(status_code=401, detail="Log in to continue.")
    return p


def require(request: Request, principal: Principal, action: Action, rtype: str) -> None:
    """Role check for a page; a refusal is audited by the policy module and shown as a 403 page."""
    if policy.can(principal, action, rtype):
        return
    try:
        with request.app.state.db.begin() as conn:
            policy.check(conn, principal, action, rtype, None)
    except Denied as exc:
        raise HTTPException(403, exc.message) from None


# Roles whose daily work is the HIM queues (waiving and reassigning deficiencies, chasing physicians).
# The policy matrix decides what a role may read and change; these pages' actions also need the role,
# so that a physician cannot waive or reassign deficiencies, their own included.


def require_role(request: Request, principal: Principal, roles: frozenset[str], action: Action, rtype: str,
                 what: str) -> None:
    """``require`` plus one of ``roles`` (system jobs pass); a refusal is audited and a 403 page."""
    require(request, principal, action, rtype)
    if principal.is_system or principal.roles & roles:
        return
    from chartkeeper.security import audit

    with request.app.state.db.begin() as conn:
        audit.record_detached(conn, principal, str(action), "denied", resource_type=rtype,
                              detail=f"{what}: needs role {' or '.join(sorted(roles))}")
    labels = " or ".join(ROLE_LABELS.get(r, r) for r in sorted(roles))
    raise HTTPException(403, f"Only a user with the role {labels} may {what}.")


def service_error(exc: FhirError) -> HTTPException:
    status = exc.status if exc.status in (400, 403, 404, 409, 410, 412, 413, 422) else 500
    if status == 410:
        status = 404
    return HTTPException(status, exc.message)


def csrf_token(request: Request) -> str:
    s = getattr(request.state, "session", None)
    return str(getattr(s, "csrf_token", "") or "")


async def form_data(request: Request) -> dict[str, str]:
    return (await form_lists(request))[0]


async def form_lists(request: Request) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The submitted form: the first value of each field, and every value (checkbox lists)."""
    form = await request.form()
    out: dict[str, str] = {}
    lists: dict[str, list[str]] = defaultdict(list)
    for k, v in form.multi_items():
        if isinstance(v, str):
            lists[k].append(v)
            if k not in out:
                out[k] = v
    return out, dict(lists)


async def checked_form(request: Request) -> dict[str, str]:
    """The submitted form, after its CSRF token was checked against the session's (403 if wrong)."""
    return (await checked_form_lists(request))[0]


async def checked_form_lists(request: Request) -> tuple[dict[str, str], dict[str, list[str]]]:
    """``checked_form`` with every value of repeated fields (the rows ticked in a queue)."""
    data, lists = await form_lists(request)
    check_csrf(request, data.get("csrf_token") or "")
    return data, lists


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    principal = getattr(request.state, "principal", None)
    ctx: dict[str, Any] = {
        "request": request,
        "principal": principal if isinstance(principal, Principal) else None,
        "csrf_token": csrf_token(request),
        "nav": _nav(principal) if isinstance(principal, Principal) else {},
        "path": request.url.path,
    }
    ctx.update(context or {})
    html = env.get_template(template).render(ctx)
    resp = HTMLResponse(html, status_code=status)
    for k, v in {**SECURITY_HEADERS, **(headers or {})}.items():
        resp.headers[k] = v
    return resp


def _nav(p: Principal) -> dict[str, bool]:
    return {
        "patients": policy.can(p, Action.SEARCH, "Patient"),
        "register": policy.can(p, Action.CREATE, "Patient"),
        "completion": bool(p.roles & HIM_ROLES) and policy.can(p, Action.SEARCH, "Task"),
        "inbox": "physician" in p.roles and policy.can(p, Action.SEARCH, "Task"),
        "coding": "coder" in p.roles and policy.can(p, Action.SEARCH, "CodingAbstract"),
        "registry": "registrar" in p.roles and policy.can(p, Action.SEARCH, "RegistryAbstract"),
    }


def redirect(url: str) -> RedirectResponse:
    resp = RedirectResponse(url, status_code=303)
    for k, v in SECURITY_HEADERS.items():
        resp.headers[k] = v
    return resp


def wants_html(request: Request) -> bool:
    path = request.url.path
    if path.startswith(("/fhir", "/api", "/static", "/docs", "/redoc", "/openapi")):
        return False
    if request.headers.get("hx-request"):
        return False
    accept = request.headers.get("accept", "")
    return not ("application/json" in accept and "text/html" not in accept)


ERROR_TITLES = {
    400: "The request could not be understood",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed here",
    409: "Conflict",
    413: "Too large",
    422: "Not valid",
    500: "Something went wrong",
}


def error_page(request: Request, status: int, detail: object) -> Response | None:
    """The HTML answer for an error on a page path (None: let the JSON handler answer)."""
    if not wants_html(request):
        return None
    if status == 401:
        nxt = request.url.path if request.method == "GET" else "/"
        return redirect("/login" + (f"?next={nxt}" if safe_next(nxt) != "/" else ""))
    message = detail if isinstance(detail, str) and detail else ERROR_TITLES.get(status, "Error")
    if status == 404 and message in ("Not Found", "Not found"):
        message = "There is no page or record at this address."
    return render(
        request,
        "error.html",
        {"status": status, "title": ERROR_TITLES.get(status, "Error"), "message": message},
        status=status,
    )


# --------------------------------------------------------------------------------------------
# Login and logout


def _login_form(request: Request, *, error: str = "", username: str = "", status: int = 200) -> HTMLResponse:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or ""
    fresh = not re.fullmatch(r"[A-Za-z0-9_\-]{32,64}", token)
    if fresh:
        token = secrets.token_urlsafe(32)
    resp = render(
        request,
        "login.html",
        {
            "error": error,
            "username": username,
            "login_token": token,
            "next": safe_next(request.query_params.get("next") or request.query_params.get("n")),
        },
        status=status,
    )
    if fresh:
        opts = cookie_settings(get_app_settings(request))
        resp.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=3600, **opts)
    return resp


@router.get("/login")
def login_page(request: Request) -> Response:
    if optional_principal(request) is not None:
        return redirect("/")
    return _login_form(request)


@router.post("/login")
async def login_submit(request: Request) -> Response:
    data = await form_data(request)
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE) or ""
    submitted = data.get("csrf_token") or ""
    if not cookie or not submitted or not hmac.compare_digest(cookie.encode(), submitted.encode()):
        raise HTTPException(403, "The login form's security token is missing or wrong: reload the login page and try again.")
    username = forms.clean(data.get("username"), 64)
    password = data.get("password") or ""
    if not username or not password:
        return _login_form(request, error="Enter your user name and password.", username=username, status=400)
    addr = client_address(request)
    db = request.app.state.db
    error = ""
    session_id = ""
    with db.begin() as conn:
        try:
            principal = users.authenticate(conn, username, password, addr)
            session_id = start_session(conn, principal, client_address=addr).session_id or ""
        except users.LoginError as exc:
            error = exc.message
    if error:
        return _login_form(request, error=error, username=username, status=401)
    resp = redirect(safe_next(data.get("next")))
    opts = cookie_settings(get_app_settings(request))
    resp.set_cookie(SESSION_COOKIE, session_id, **opts)
    resp.delete_cookie(LOGIN_CSRF_COOKIE, path="/", secure=opts["secure"], httponly=True, samesite="strict")
    return resp


@router.post("/logout")
async def logout(request: Request) -> Response:
    current_principal(request)
    await checked_form(request)
    with request.app.state.db.begin() as conn:
        end_session(conn, request.cookies.get(SESSION_COOKIE), client_address=client_address(request))
    resp = redirect("/login")
    opts = cookie_settings(get_app_settings(request))
    resp.delete_cookie(SESSION_COOKIE, path="/", secure=opts["secure"], httponly=True, samesite="strict")
    return resp


# --------------------------------------------------------------------------------------------
# Home: the role's work queues (only queues that work)


@dataclass
class Queue:
    label: str
    count: int
    href: str | None = None
    note: str = ""


def _count(request: Request, p: Principal, rtype: str, params: list[tuple[str, str]]) -> int:
    res = records(request).search(p, rtype, [*params, ("_count", "0")])
    return max(res.total, 0)


def _since(days: int) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%d")


def home_queues(request: Request, p: Principal) -> tuple[list[Queue], list[dict[str, Any]]]:
    queues: list[Queue] = []
    review: list[dict[str, Any]] = []
    roles = p.roles
    if "him_technician" in roles and policy.can(p, Action.SEARCH, "DocumentReference"):
        queues.append(
            Queue(
                "Unsigned documents",
                _count(request, p, "DocumentReference", [("docstatus", "preliminary")]),
                "/queues/unsigned-documents",
                "Documents waiting for the author's signature.",
            )
        )
    if "him_technician" in roles and policy.can(p, Action.SEARCH, "Patient"):
        queues.append(
            Queue(
                f"Patients registered or updated in the last {RECENT_DAYS} days",
                _count(request, p, "Patient", [("_lastUpdated", "ge" + _since(RECENT_DAYS))]),
                "/queues/recent-patients",
                "Check new registrations for duplicates and typos.",
            )
        )
    completion = request.app.state.completion
    if roles & HIM_ROLES and policy.can(p, Action.SEARCH, "Task"):
        c = completion.counts(p)
        queues.extend([
            Queue("Open chart deficiencies", c["open"], "/completion",
                  "Deficiencies waiting for physicians, oldest due first."),
            Queue("Incomplete charts", c["charts"], "/completion", "Discharged charts with an open deficiency."),
            Queue("Delinquent charts", c["delinquent_charts"],
                  f"/completion?older_than={completion.rules.delinquency_days}",
                  "Incomplete past the facility's limit after discharge."),
            Queue("Answered by physicians", c["answered"], "/completion?answered=yes",
                  "Physicians say these cannot be completed: waive or reassign."),
        ])
    if "physician" in roles and policy.can(p, Action.SEARCH, "Task"):
        c = completion.counts(p)
        queues.append(Queue("Your open chart deficiencies", c["mine"], "/inbox",
                            "Documents to sign or complete, and questions from HIM."
                            if p.practitioner_id else
                            "Your account is not linked to a practitioner yet: ask an administrator."))
    # --- Coding (the coder's DNFB queue; counts from the coding service) ---
    if "coder" in roles and policy.can(p, Action.SEARCH, "CodingAbstract"):
        from chartkeeper.coding.api import service as coding_service

        cc = coding_service(request).counts(p)
        queues.extend([
            Queue("Discharged, not final billed (DNFB)", cc["dnfb"], "/coding",
                  "Discharged encounters waiting to be coded, the longest waiting first."),
            Queue("Assigned to you", cc["mine"], "/coding?assigned=me", "Encounters you are coding."),
            Queue("Waiting on a physician query", cc["by_status"].get("query_pending", 0),
                  "/coding?status=query_pending", "Coding resumes when the physician answers."),
        ])
    # --- end coding ---
    # --- Cancer registry (the registrar's suspense queue and follow-up; counts from the registry service) ---
    if "registrar" in roles and policy.can(p, Action.SEARCH, "RegistryAbstract"):
        from chartkeeper.web.registry_pages import home_counts

        rc = home_counts(request, p)
        queues.extend([
            Queue("Suspense queue: reportable cases to decide", rc["pending"], "/registry",
                  f"{rc['pathology']} from pathology reports, {rc['diagnosis']} from coded diagnoses."),
            Queue("Due for follow-up", rc["due"], "/registry/followup",
                  "Living analytic patients not contacted in the last 12 months."),
        ])
    # --- end registry ---
    db = request.app.state.db
    if "privacy_officer" in roles:
        with db.begin() as conn:
            policy.check(conn, p, Action.READ, "AccessGrant", None)
            since = datetime.now(UTC) - timedelta(days=RECENT_DAYS)
            events = grants.list_break_glass(conn, since=since, limit=200)
            restricted = grants.list_restricted(conn)
            names: dict[str, str] = {}
            for g in events[:20]:
                if g.user_id not in names:
                    u = users.get_user(conn, g.user_id)
                    names[g.user_id] = (u.display_name or u.username) if u else g.user_id
                review.append(
                    {
                        "at": g.created_at,
                        "user": names[g.user_id],
                        "patient_id": g.patient_id,
                        "reason": g.reason,
                        "live": g.live(),
                    }
                )
            from chartkeeper.security import audit

            audit.record(
                conn,
                p,
                "read",
                "success",
                resource_type="AccessGrant",
                detail=f"break-the-glass review list: {len(events)} events",
                client_address=p.client_address,
            )
        queues.append(
            Queue(
                f"Break-the-glass events in the last {RECENT_DAYS} days",
                len(events),
                None,
                "Listed below for review.",
            )
        )
        queues.append(Queue("Restricted patients", len(restricted), None, "Staff, VIP and sensitive-care records."))
    if "admin" in roles:
        with db.begin() as conn:
            policy.check(conn, p, Action.READ, "UserAccount", None)
            now = datetime.now(UTC)
            all_users = users.list_users(conn)
        locked = [u for u in all_users if u.locked_until is not None and _aware(u.locked_until) > now]
        queues.append(Queue("Locked accounts", len(locked), None, "Unlock with: chartkeeper user enable USERNAME"))
    return queues, review


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


@router.get("/")
def home(request: Request) -> Response:
    p = current_principal(request)
    try:
        queues, review = home_queues(request, p)
    except FhirError as exc:
        raise service_error(exc) from None
    except Denied as exc:
        raise HTTPException(403, exc.message) from None
    return render(request, "home.html", {"queues": queues, "review": review, "roles": sorted(p.roles)})


# --------------------------------------------------------------------------------------------
# Queues


def _page_number(request: Request) -> int:
    raw = request.query_params.get("page", "1")
    return int(raw) if raw.isdigit() and 0 < int(raw) < 100_000 else 1


@router.get("/queues/unsigned-documents")
def queue_unsigned(request: Request) -> Response:
    p = current_principal(request)
    require(request, p, Action.SEARCH, "DocumentReference")
    page = _page_number(request)
    try:
        res = records(request).search(
            p,
            "DocumentReference",
            [
                ("docstatus", "preliminary"),
                ("_sort", "date"),
                ("_count", str(QUEUE_PAGE)),
                ("_offset", str((page - 1) * QUEUE_PAGE)),
                ("_include", "DocumentReference:subject"),
                ("_include", "DocumentReference:author"),
            ],
        )
    except FhirError as exc:
        raise service_error(exc) from None
    patients = {s.id: s.resource() for s in res.included if s.resource_type == "Patient"}
    authors = {
        (s.resource_type, s.id): human_name(s.resource()) or str(s.resource().get("name") or "")
        for s in res.included
        if s.resource_type in ("Practitioner", "Organization", "PractitionerRole")
    }
    rows = []
    for s in res.matches:
        d = s.resource()
        pat = patients.get(s.patient_id or "")
        rows.append(
            {
                "id": s.id,
                "patient_id": s.patient_id,
                "patient": human_name(pat) if pat else "",
                "mrn": mrn_of(pat) if pat else "",
                "type": cc_text(d.get("type")) or "Document",
                "date": d.get("date"),
                "title": d.get("description") or "",
                "author": ", ".join(
                    str(a.get("display") or authors.get(_ref_id(a) or ("", ""), ""))
                    for a in d.get("author") or ()
                    if isinstance(a, dict)
                ),
            }
        )
    return render(
        request,
        "queue_documents.html",
        {
            "rows": rows,
            "hidden": max(0, min(QUEUE_PAGE, res.total - (page - 1) * QUEUE_PAGE) - len(rows)),
            "total": res.total,
            "page": page,
            "pages": max(1, -(-max(res.total, 0) // QUEUE_PAGE)),
        },
    )


@router.get("/queues/recent-patients")
def queue_recent(request: Request) -> Response:
    p = current_principal(request)
    require(request, p, Action.SEARCH, "Patient")
    page = _page_number(request)
    try:
        res = records(request).search(
            p,
            "Patient",
            [
                ("_lastUpdated", "ge" + _since(RECENT_DAYS)),
                ("_sort", "-_lastUpdated"),
                ("_count", str(QUEUE_PAGE)),
                ("_offset", str((page - 1) * QUEUE_PAGE)),
            ],
        )
    except FhirError as exc:
        raise service_error(exc) from None
    rows = [_patient_row(s) for s in res.matches]
    return render(
        request,
        "queue_patients.html",
        {
            "rows": rows,
            "total": res.total,
            "page": page,
            "days": RECENT_DAYS,
            "pages": max(1, -(-max(res.total, 0) // QUEUE_PAGE)),
        },
    )


# --------------------------------------------------------------------------------------------
# Patient search


def _patient_row(s: Stored) -> dict[str, Any]:
    r = s.resource()
    return {
        "id": s.id,
        "name": human_name(r) or "(no name)",
        "mrn": mrn_of(r),
        "birth_date": r.get("birthDate", ""),
        "age": age_text(r.get("birthDate")),
        "sex": r.get("gender", ""),
        "city": next((a.get("city", "") for a in r.get("address") or () if isinstance(a, dict)), ""),
        "updated": s.last_updated,
        "deceased": bool(r.get("deceasedDateTime") or r.get("deceasedBoolean")),
    }


_WORD_RE = re.compile(r"^[^\W\d_][\w'.\-]*$", re.UNICODE)
_MRN_TOKEN = re.compile(r"^[A-Za-z0-9\-]{1,32}$")


def parse_patient_query(q: str) -> tuple[list[tuple[str, str]], str]:
    """Search parameters for what a technician types: names, a birth date (YYYY-MM-DD), an MRN.

    Returns (params, error sentence or '')."""
    params: list[tuple[str, str]] = []
    for token in re.split(r"[\s,;|]+", q.strip()):
        if not token:
            continue
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", token):
            if forms.parse_date(token) is None:
                return [], f"'{token}' is not a real date: write the birth date as YYYY-MM-DD."
            params.append(("birthdate", token))
        elif re.fullmatch(r"\d{1,2}/\d{1,2}/\d{4}", token):
            return [], "Write the birth date as YYYY-MM-DD, for example 1980-04-23."
        elif any(ch.isdigit() for ch in token):
            if not _MRN_TOKEN.match(token):
                return [], "An MRN holds only letters, digits and '-'."
            params.append(("identifier", token))
        elif _WORD_RE.match(token):
            params.append(("name", token))
        else:
            return [], "Search by name, birth date (YYYY-MM-DD) or MRN."
    if len(params) > 6:
        return [], "Use at most six words to search."
    return params, ""


@router.get("/patients")
def patients_page(request: Request) -> Response:
    p = current_principal(request)
    require(request, p, Action.SEARCH, "Patient")
    return render(request, "patients.html", {"q": "", "rows": None})


@router.post("/patients")
async def patients_search(request: Request) -> Response:
    p = current_principal(request)
    data = await checked_form(request)
    require(request, p, Action.SEARCH, "Patient")
    q = forms.clean(data.get("q"), 200)
    params, error = parse_patient_query(q)
    if not params and not error:
        error = "Type a name, a birth date (YYYY-MM-DD) or an MRN."
    rows: list[dict[str, Any]] | None = None
    total = 0
    hidden = 0
    if not error:
        try:
            res = records(request).search(p, "Patient", [*params, ("_sort", "family,given"), ("_count", str(SEARCH_LIMIT))])
        except FhirError as exc:
            if exc.status == 400:
                error = exc.message
            else:
                raise service_error(exc) from None
        else:
            rows = [_patient_row(s) for s in res.matches]
            total = res.total
            hidden = res.restricted
    return render(
        request,
        "patients.html",
        {"q": q, "rows": rows, "error": error, "total": total, "hidden": hidden, "limit": SEARCH_LIMIT},
        status=400 if error else 200,
    )


# --------------------------------------------------------------------------------------------
# The chart


@dataclass
class Trend:
    code: str
    name: str
    unit: str
    points: list[tuple[float, float, str, str]]  # x, y, value text, date
    polyline: str
    y_labels: list[tuple[float, str]]
    x_labels: list[tuple[float, str]]
    band: tuple[float, float] | None  # y of high, y of low (reference range)
    latest: str
    width: int = 300
    height: int = 120
    box: tuple[float, float, float, float] = (0, 0, 0, 0)  # plot area: left, top, width, height


@dataclass
class ChartModel:
    patient: dict[str, Any]
    banner: dict[str, Any]
    problems: list[dict[str, Any]] = field(default_factory=list)
    medications: list[dict[str, Any]] = field(default_factory=list)
    allergies: list[dict[str, Any]] = field(default_factory=list)
    immunizations: list[dict[str, Any]] = field(default_factory=list)
    procedures: list[dict[str, Any]] = field(default_factory=list)
    labs: list[dict[str, Any]] = field(default_factory=list)
    vitals: list[dict[str, Any]] = field(default_factory=list)
    trends: list[Trend] = field(default_factory=list)
    encounters: list[dict[str, Any]] = field(default_factory=list)
    documents: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def _ref_id(ref: object) -> tuple[str, str] | None:
    if isinstance(ref, dict):
        return sp.parse_reference(ref.get("reference"))
    return None


def _status(cc: object) -> str:
    return cc_code(cc) or ""


def _obs_value(o: Mapping[str, Any]) -> tuple[str, float | None, str]:
    """(text, number or None, unit)."""
    q = o.get("valueQuantity")
    if isinstance(q, dict) and isinstance(q.get("value"), int | float):
        unit = str(q.get("unit") or q.get("code") or "")
        v = float(q["value"])
        return fmt_number(q["value"]), v, unit
    if "valueString" in o:
        return str(o["valueString"]), None, ""
    if "valueCodeableConcept" in o:
        return cc_text(o["valueCodeableConcept"]), None, ""
    if "valueBoolean" in o:
        return "yes" if o["valueBoolean"] else "no", None, ""
    if "valueInteger" in o:
        return str(o["valueInteger"]), float(o["valueInteger"]), ""
    comps = []
    unit = ""
    for c in o.get("component") or ():
        if isinstance(c, dict):
            t, _, u = _obs_value(c)
            if t:
                comps.append(t)
                unit = unit or u
    if comps:
        return "/".join(comps), None, unit
    if o.get("dataAbsentReason"):
        return "(" + cc_text(o["dataAbsentReason"]) + ")", None, ""
    return "", None, ""


def _ref_range(o: Mapping[str, Any]) -> tuple[str, float | None, float | None]:
    for rr in o.get("referenceRange") or ():
        if not isinstance(rr, dict):
            continue
        low = rr.get("low", {}).get("value") if isinstance(rr.get("low"), dict) else None
        high = rr.get("high", {}).get("value") if isinstance(rr.get("high"), dict) else None
        if rr.get("text"):
            return str(rr["text"]), low, high
        if low is not None or high is not None:
            lo = fmt_number(low) if low is not None else ""
            hi = fmt_number(high) if high is not None else ""
            return f"{lo}–{hi}" if lo and hi else (f"≥ {lo}" if lo else f"≤ {hi}"), low, high
    return "", None, None


def _when(o: Mapping[str, Any], *keys: str) -> str:
    for k in keys:
        v = o.get(k)
        if isinstance(v, str):
            return v
        if isinstance(v, dict) and isinstance(v.get("start"), str):
            return str(v["start"])
    return ""


def _categories(o: Mapping[str, Any]) -> set[str]:
    out = set()
    for cat in o.get("category") or ():
        if isinstance(cat, dict):
            for c in cat.get("coding") or ():
                if isinstance(c, dict) and c.get("code"):
                    out.add(str(c["code"]))
    return out


def build_trend(
    code: str,
    name: str,
    unit: str,
    series: list[tuple[str, float, str]],
    low: float | None,
    high: float | None,
) -> Trend:
    """An SVG line chart (coordinates only; the template draws it) of one lab's values over time."""
    width, height = 300, 120
    left, right, top, bottom = 44, 10, 10, 22
    series = sorted(series)
    times = []
    for when, _v, _t in series:
        dt = forms.to_utc(when[:10] if len(when) < 20 and "T" not in when else when) or forms.to_utc(when[:10])
        times.append(dt.timestamp() if dt else 0.0)
    values = [v for _w, v, _t in series]
    lo_v = min([*values, *([low] if low is not None else [])])
    hi_v = max([*values, *([high] if high is not None else [])])
    if hi_v == lo_v:
        hi_v, lo_v = hi_v + 1, lo_v - 1
    pad = (hi_v - lo_v) * 0.08
    lo_v, hi_v = lo_v - pad, hi_v + pad
    t0, t1 = min(times), max(times)
    span = (t1 - t0) or 1.0
    pw, ph = width - left - right, height - top - bottom

    def x(t: float) -> float:
        return round(left + (t - t0) / span * pw, 1) if t1 > t0 else round(left + pw / 2, 1)

    def y(v: float) -> float:
        return round(top + (hi_v - v) / (hi_v - lo_v) * ph, 1)

    pts = [(x(t), y(v), text, when[:10]) for t, (when, v, text) in zip(times, series, strict=True)]
    band = None
    if low is not None or high is not None:
        band = (y(high) if high is not None else float(top), y(low) if low is not None else float(top + ph))
    y_labels = [(y(v), fmt_number(round(v, 2))) for v in (hi_v - pad, lo_v + pad)]
    x_labels = [(float(left), series[0][0][:10])]
    if len(series) > 1 and series[-1][0][:10] != series[0][0][:10]:
        x_labels.append((float(left + pw), series[-1][0][:10]))
    return Trend(
        code,
        name,
        unit,
        pts,
        " ".join(f"{px},{py}" for px, py, _t, _d in pts),
        y_labels,
        x_labels,
        band,
        f"{series[-1][2]} {unit}".strip(),
        width,
        height,
        (left, top, pw, ph),
    )


def chart_model(items: Sequence[Stored], patient_id: str) -> ChartModel:
    by_type: dict[str, list[Stored]] = defaultdict(list)
    for s in items:
        by_type[s.resource_type].append(s)
    patient_stored = next(s for s in by_type["Patient"] if s.id == patient_id)
    pat = patient_stored.resource()
    directory: dict[tuple[str, str], str] = {}
    for rt in ("Practitioner", "Organization", "Location", "PractitionerRole", "Medication"):
        for s in by_type.get(rt, ()):
            r = s.resource()
            name = (
                human_name(r)
                if rt == "Practitioner"
                else (cc_text(r.get("code")) if rt == "Medication" else str(r.get("name") or ""))
            )
            directory[(rt, s.id)] = name

    def who(ref: object) -> str:
        if not isinstance(ref, dict):
            return ""
        if ref.get("display"):
            return str(ref["display"])
        key = _ref_id(ref)
        return directory.get(key, "") if key else ""

    m = ChartModel(patient=pat, banner={})
    enc_labels: dict[str, str] = {}
    for s in by_type.get("Encounter", ()):
        e = s.resource()
        start = _when(e, "period")
        end = e.get("period", {}).get("end", "") if isinstance(e.get("period"), dict) else ""
        cls = e.get("class", {}) if isinstance(e.get("class"), dict) else {}
        cls_text = {
            "AMB": "Outpatient",
            "IMP": "Inpatient",
            "EMER": "Emergency",
            "OBSENC": "Observation",
            "ACUTE": "Inpatient acute",
            "HH": "Home health",
            "VR": "Virtual",
        }.get(str(cls.get("code")), str(cls.get("display") or cls.get("code") or ""))
        attending = ""
        for part in e.get("participant") or ():
            if isinstance(part, dict):
                attending = who(part.get("individual"))
                if attending:
                    break
        item = {
            "id": s.id,
            "v": s.version_id,
            "start": start,
            "end": end,
            "cls": cls_text,
            "cls_code": str(cls.get("code") or ""),
            "status": e.get("status", ""),
            "type": ", ".join(t for t in (cc_text(x) for x in e.get("type") or ()) if t),
            "reason": ", ".join(t for t in (cc_text(x) for x in e.get("reasonCode") or ()) if t),
            "attending": attending,
            "provider": who(e.get("serviceProvider")),
            "location": ", ".join(
                t for t in (who(loc.get("location")) for loc in e.get("location") or () if isinstance(loc, dict)) if t
            ),
        }
        m.encounters.append(item)
        enc_labels[s.id] = f"{fmt_date(start)} {cls_text}".strip()
    m.encounters.sort(key=lambda e: e["start"], reverse=True)

    for s in by_type.get("Condition", ()):
        c = s.resource()
        clinical = _status(c.get("clinicalStatus"))
        verification = _status(c.get("verificationStatus"))
        if verification == "entered-in-error":
            continue
        m.problems.append(
            {
                "id": s.id,
                "v": s.version_id,
                "text": cc_text(c.get("code")) or "(no description)",
                "code": cc_code(c.get("code"), forms.ICD10CM) or cc_code(c.get("code")),
                "status": clinical,
                "verification": verification,
                "onset": _when(c, "onsetDateTime", "onsetPeriod", "recordedDate"),
                "active": clinical in ("active", "recurrence", "relapse", ""),
            }
        )
    m.problems.sort(key=lambda c: (not c["active"], _neg(c["onset"])))

    for rt in ("MedicationRequest", "MedicationStatement"):
        for s in by_type.get(rt, ()):
            r = s.resource()
            name = cc_text(r.get("medicationCodeableConcept")) or who(r.get("medicationReference"))
            dose = ", ".join(
                str(d.get("text"))
                for d in r.get("dosageInstruction") or r.get("dosage") or ()
                if isinstance(d, dict) and d.get("text")
            )
            m.medications.append(
                {
                    "id": s.id,
                    "v": s.version_id,
                    "type": rt,
                    "name": name or "(unnamed)",
                    "status": r.get("status", ""),
                    "dose": dose,
                    "date": _when(r, "authoredOn", "effectiveDateTime", "effectivePeriod", "dateAsserted"),
                    "active": r.get("status") in ("active", "on-hold", "draft", "intended"),
                }
            )
    m.medications.sort(key=lambda x: (not x["active"], _neg(x["date"])))

    for s in by_type.get("AllergyIntolerance", ()):
        a = s.resource()
        verification = _status(a.get("verificationStatus"))
        if verification in ("entered-in-error", "refuted"):
            continue
        clinical = _status(a.get("clinicalStatus"))
        reactions = []
        for r in a.get("reaction") or ():
            if isinstance(r, dict):
                text = ", ".join(t for t in (cc_text(x) for x in r.get("manifestation") or ()) if t)
                if text:
                    reactions.append(text + (f" ({r['severity']})" if r.get("severity") else ""))
        m.allergies.append(
            {
                "id": s.id,
                "v": s.version_id,
                "substance": cc_text(a.get("code")) or "(unnamed)",
                "status": clinical,
                "verification": verification,
                "criticality": a.get("criticality", ""),
                "category": ", ".join(a.get("category") or ()),
                "reactions": "; ".join(reactions),
                "date": _when(a, "recordedDate", "onsetDateTime"),
                "active": clinical in ("active", ""),
            }
        )
    m.allergies.sort(key=lambda x: (not x["active"], x["substance"].lower()))

    for s in by_type.get("Immunization", ()):
        r = s.resource()
        m.immunizations.append(
            {
                "id": s.id,
                "v": s.version_id,
                "vaccine": cc_text(r.get("vaccineCode")),
                "date": _when(r, "occurrenceDateTime", "recorded"),
                "status": r.get("status", ""),
            }
        )
    m.immunizations.sort(key=lambda x: _neg(x["date"]))

    for s in by_type.get("Procedure", ()):
        r = s.resource()
        m.procedures.append(
            {
                "id": s.id,
                "v": s.version_id,
                "text": cc_text(r.get("code")),
                "code": cc_code(r.get("code")),
                "status": r.get("status", ""),
                "date": _when(r, "performedDateTime", "performedPeriod"),
            }
        )
    m.procedures.sort(key=lambda x: _neg(x["date"]))

    series: dict[str, list[tuple[str, float, str]]] = defaultdict(list)
    lab_meta: dict[str, tuple[str, str, float | None, float | None]] = {}
    latest: dict[str, str] = {}
    for s in by_type.get("Observation", ()):
        o = s.resource()
        if o.get("status") == "entered-in-error":
            continue
        cats = _categories(o)
        text, num, unit = _obs_value(o)
        when = _when(o, "effectiveDateTime", "effectivePeriod", "effectiveInstant", "issued")
        code = cc_code(o.get("code"), forms.LOINC) or cc_code(o.get("code"))
        name = cc_text(o.get("code"))
        rr_text, low, high = _ref_range(o)
        flag = ", ".join(c for c in (cc_code(i) for i in o.get("interpretation") or ()) if c)
        row = {
            "id": s.id,
            "v": s.version_id,
            "date": when,
            "code": code,
            "name": name,
            "value": text,
            "unit": unit,
            "range": rr_text,
            "flag": flag,
        }
        if "laboratory" in cats:
            m.labs.append(row)
            if num is not None and code:
                series[code].append((when, num, text))
                if code not in lab_meta or when >= latest[code]:
                    lab_meta[code] = (name, unit, low, high)
                    latest[code] = when
        elif "vital-signs" in cats:
            m.vitals.append(row)
    m.labs.sort(key=lambda r: (_neg(r["date"]), r["name"]))
    m.vitals.sort(key=lambda r: (_neg(r["date"]), r["name"]))
    for code, pts in sorted(series.items(), key=lambda kv: lab_meta[kv[0]][0].lower()):
        if len(pts) >= 2:
            name, unit, low, high = lab_meta[code]
            m.trends.append(build_trend(code, name, unit, pts, low, high))

    for s in by_type.get("DocumentReference", ()):
        d = s.resource()
        doc_text: str | None = None
        note = ""
        for content in d.get("content") or ():
            if isinstance(content, dict) and isinstance(content.get("attachment"), dict):
                doc_text, note = decode_attachment(content["attachment"])
                if doc_text is not None:
                    break
        doc_status = d.get("docStatus", "")
        enc = ""
        ctx: dict[str, Any] = d["context"] if isinstance(d.get("context"), dict) else {}
        for e in ctx.get("encounter") or ():
            key = _ref_id(e)
            if key and key[1] in enc_labels:
                enc = enc_labels[key[1]]
        m.documents.append(
            {
                "id": s.id,
                "v": s.version_id,
                "type": cc_text(d.get("type")) or "Document",
                "title": d.get("description") or "",
                "date": d.get("date") or _when(ctx, "period"),
                "doc_status": doc_status,
                "status": d.get("status", ""),
                "signed": {
                    "final": "Signed",
                    "amended": "Amended",
                    "preliminary": "Unsigned",
                    "entered-in-error": "Entered in error",
                }.get(doc_status, "Status not given"),
                "author": ", ".join(a for a in (who(x) for x in d.get("author") or ()) if a),
                "text": doc_text,
                "note": note,
                "encounter": enc,
                "preview": " ".join((doc_text or "").split())[:140],
            }
        )
    m.documents.sort(key=lambda x: _neg(str(x["date"])))

    active_allergies = [a["substance"] for a in m.allergies if a["active"]]
    deceased = pat.get("deceasedDateTime") or pat.get("deceasedBoolean")
    m.banner = {
        "id": patient_id,
        "v": patient_stored.version_id,
        "name": human_name(pat) or "(no name)",
        "mrn": mrn_of(pat),
        "birth_date": pat.get("birthDate", ""),
        "age": age_text(pat.get("birthDate"), forms.parse_date(str(deceased)[:10]) if isinstance(deceased, str) else None),
        "sex": pat.get("gender", ""),
        "allergies": active_allergies,
        "deceased": bool(deceased),
        "nkda": not m.allergies,
    }
    m.counts = {
        "problems": len(m.problems),
        "medications": len(m.medications),
        "allergies": len(m.allergies),
        "immunizations": len(m.immunizations),
        "labs": len(m.labs),
        "encounters": len(m.encounters),
        "documents": len(m.documents),
        "procedures": len(m.procedures),
        "vitals": len(m.vitals),
    }
    return m


class _Neg(str):
    """Sort key that reverses string order (newest first) while sorting other keys ascending."""

    def __lt__(self, other: str) -> bool:
        return str.__gt__(self, other)

    def __gt__(self, other: str) -> bool:
        return str.__lt__(self, other)


def _neg(value: str) -> _Neg:
    return _Neg(value or "")


def _access_note(request: Request, p: Principal, pid: str) -> dict[str, Any]:
    """Restriction flag and this user's live break-the-glass grant, if any (access tables only)."""
    with request.app.state.db.read() as conn:
        reason = policy.restriction_reason(conn, pid)
        grant = None
        if reason is not None:
            for g in grants.list_grants(conn, user_id=p.user_id, patient_id=pid):
                if g.live():
                    grant = g
                    break
    return {"restricted": reason, "grant": grant}


def _create_links(p: Principal) -> list[tuple[str, str]]:
    return [
        (spec.key, spec.title.replace("Add an ", "").replace("Add a ", "").split(" (")[0])
        for spec in forms.FORMS.values()
        if policy.can(p, Action.CREATE, spec.resource_type)
    ]


def _open_chart(request: Request, p: Principal, pid: str) -> list[Stored] | Response:
    """$everything through the service, or the restricted page (403 with break the glass)."""
    try:
        return records(request).everything(p, pid)
    except FhirError as exc:
        if exc.status == 403:
            with request.app.state.db.read() as conn:
                restricted = policy.restriction_reason(conn, pid) is not None
            if restricted and policy.can_read_patient_data(p) and policy.can(p, Action.READ, "Patient"):
                return render(request, "restricted.html", {"patient_id": pid, "error": "", "reason": ""}, status=403)
        raise service_error(exc) from None


@router.get("/patients/new")
def register_page(request: Request) -> Response:
    p = current_principal(request)
    require(request, p, Action.CREATE, "Patient")
    return _form_page(request, forms.PATIENT, None, {"sex": ""}, {}, [])


@router.post("/patients/new")
async def register_submit(request: Request) -> Response:
    p = current_principal(request)
    data = await checked_form(request)
    require(request, p, Action.CREATE, "Patient")
    spec = forms.PATIENT
    checked = forms.check_form(spec, data, patient_id=None)
    svc = records(request)
    if checked.ok and checked.resource is not None:
        try:
            mrn = checked.values.get("mrn") or ""
            if mrn:
                if _mrn_taken(svc, p, mrn):
                    checked.errors["mrn"] = (
                        "This MRN is already assigned to another patient: check the number, "
                        "or leave it empty to assign a new one."
                    )
            else:
                mrn = _new_mrn(svc, p)
                checked.resource["identifier"] = [forms.mrn_identifier(mrn)]
            if checked.ok:
                res, _created = svc.create(p, checked.resource)
                return redirect(f"/patients/{res.id}?saved=Patient")
        except FhirError as exc:
            if exc.status != 422:
                raise service_error(exc) from None
            mapped = forms.map_issues(spec, exc.issues, checked.values)
            checked.errors.update(mapped.errors)
            checked.general.extend(mapped.general)
    return _form_page(request, spec, None, checked.values, checked.errors, checked.general, status=422)


def _mrn_taken(svc: RecordService, p: Principal, mrn: str) -> bool:
    return svc.identifier_taken(p, "Patient", forms.MRN_SYSTEM, mrn)


def _new_mrn(svc: RecordService, p: Principal) -> str:
    for _ in range(20):
        mrn = f"{secrets.randbelow(90_000_000) + 10_000_000}"
        if not _mrn_taken(svc, p, mrn):
            return mrn
    raise HTTPException(500, "Could not assign a free MRN; try again.")


@router.get("/patients/{pid}")
def chart(request: Request, pid: str) -> Response:
    t0 = time.perf_counter()
    p = current_principal(request)
    _valid_id(pid)
    opened = _open_chart(request, p, pid)
    if isinstance(opened, Response):
        return opened
    t_data = time.perf_counter()
    model = chart_model(opened, pid)
    access = _access_note(request, p, pid)
    saved = forms.SAVED_LABEL.get(request.query_params.get("saved", ""), "")
    t_model = time.perf_counter()
    resp = render(
        request,
        "chart.html",
        {
            "m": model,
            "b": model.banner,
            "access": access,
            "saved": saved,
            "create_links": _create_links(p),
            "pid": pid,
        },
    )
    t_end = time.perf_counter()
    resp.headers["Server-Timing"] = (
        f"data;dur={(t_data - t0) * 1000:.1f}, model;dur={(t_model - t_data) * 1000:.1f}, "
        f"render;dur={(t_end - t_model) * 1000:.1f}, total;dur={(t_end - t0) * 1000:.1f}"
    )
    return resp


@router.post("/patients/{pid}/break-glass")
async def break_glass(request: Request, pid: str) -> Response:
    p = current_principal(request)
    _valid_id(pid)
    data = await checked_form(request)
    reason = forms.clean(data.get("reason"), 1000)
    db = request.app.state.db
    with db.read() as conn:
        restricted = policy.restriction_reason(conn, pid) is not None
    if not restricted:
        return redirect(f"/patients/{pid}")
    try:
        with db.begin() as conn:
            grants.break_the_glass(conn, p, pid, reason)
    except grants.GrantError as exc:
        return render(request, "restricted.html", {"patient_id": pid, "error": str(exc), "reason": reason}, status=422)
    except Denied as exc:
        raise HTTPException(403, exc.message) from None
    return redirect(f"/patients/{pid}")


# --------------------------------------------------------------------------------------------
# Data entry for a patient


def _patient_banner(request: Request, p: Principal, pid: str) -> dict[str, Any]:
    """The patient's name line for form pages (an audited read; 403/404 when not allowed)."""
    try:
        s = records(request).read(p, "Patient", pid)
    except FhirError as exc:
        if exc.status == 403:
            with request.app.state.db.read() as conn:
                if policy.restriction_reason(conn, pid) is not None:
                    raise HTTPException(
                        403,
                        "This patient's record is restricted: open the chart and break the glass first if you must add to it.",
                    ) from None
        raise service_error(exc) from None
    r = s.resource()
    return {
        "id": pid,
        "name": human_name(r) or "(no name)",
        "mrn": mrn_of(r),
        "birth_date": r.get("birthDate", ""),
        "age": age_text(r.get("birthDate")),
        "sex": r.get("gender", ""),
    }


def _encounter_choices(request: Request, p: Principal, pid: str) -> list[tuple[str, str]]:
    if not policy.can(p, Action.SEARCH, "Encounter"):
        return []
    try:
        res = records(request).search(p, "Encounter", [("patient", pid), ("_sort", "-date"), ("_count", "200")])
    except FhirError as exc:
        raise service_error(exc) from None
    out = []
    for s in res.matches:
        if s.patient_id != pid:
            continue
        e = s.resource()
        cls = e.get("class", {}) if isinstance(e.get("class"), dict) else {}
        label = " · ".join(
            x
            for x in (
                fmt_datetime(_when(e, "period")),
                str(cls.get("display") or cls.get("code") or ""),
                ", ".join(cc_text(t) for t in e.get("type") or ()),
            )
            if x
        )
        out.append((s.id, label or s.id))
    return out


def _form_page(
    request: Request,
    spec: FormSpec,
    banner: dict[str, Any] | None,
    values: Mapping[str, str],
    errors: Mapping[str, str],
    general: Sequence[str],
    *,
    status: int = 200,
    encounters: Sequence[tuple[str, str]] = (),
) -> HTMLResponse:
    first_error = next((f.name for f in spec.fields if f.name in errors), None)
    return render(
        request,
        "form.html",
        {
            "spec": spec,
            "b": banner,
            "values": values,
            "errors": errors,
            "general": general,
            "encounters": encounters,
            "first_error": first_error,
            "action": f"/patients/{banner['id']}/new/{spec.key}" if banner else "/patients/new",
        },
        status=status,
    )


FORM_DEFAULTS: dict[str, dict[str, str]] = {
    "encounter": {"status": "finished", "enc_class": "AMB"},
    "condition": {"clinical_status": "active", "verification_status": "confirmed"},
    "allergy": {"allergy_type": "allergy", "category": "medication", "verification_status": "confirmed"},
    "medication": {"status": "active"},
    "document": {"doc_type": "11506-3"},
}
SECTION = {
    "Encounter": "encounters",
    "Condition": "problems",
    "AllergyIntolerance": "allergies",
    "MedicationRequest": "medications",
    "DocumentReference": "documents",
}


def _spec(kind: str) -> FormSpec:
    spec = forms.FORMS.get(kind)
    if spec is None:
        raise HTTPException(404, "There is no such form.")
    return spec


@router.get("/patients/{pid}/new/{kind}")
def entry_page(request: Request, pid: str, kind: str) -> Response:
    p = current_principal(request)
    _valid_id(pid)
    spec = _spec(kind)
    require(request, p, Action.CREATE, spec.resource_type)
    banner = _patient_banner(request, p, pid)
    values = dict(FORM_DEFAULTS.get(kind, {}))
    if kind == "medication":
        values["authored"] = datetime.now(UTC).strftime("%Y-%m-%d")
    encounters = _encounter_choices(request, p, pid) if any(f.name == "encounter" for f in spec.fields) else []
    return _form_page(request, spec, banner, values, {}, [], encounters=encounters)


@router.post("/patients/{pid}/new/{kind}")
async def entry_submit(request: Request, pid: str, kind: str) -> Response:
    p = current_principal(request)
    _valid_id(pid)
    spec = _spec(kind)
    data = await checked_form(request)
    require(request, p, Action.CREATE, spec.resource_type)
    banner = _patient_banner(request, p, pid)
    encounters = _encounter_choices(request, p, pid) if any(f.name == "encounter" for f in spec.fields) else []
    checked = forms.check_form(spec, data, patient_id=pid, encounter_ids=[e for e, _ in encounters])
    if checked.ok and checked.resource is not None:
        try:
            records(request).create(p, checked.resource)
        except FhirError as exc:
            if exc.status != 422:
                raise service_error(exc) from None
            mapped = forms.map_issues(spec, exc.issues, checked.values)
            checked.errors.update(mapped.errors)
            checked.general.extend(mapped.general)
        else:
            return redirect(f"/patients/{pid}?saved={spec.resource_type}#{SECTION[spec.resource_type]}")
    return _form_page(
        request,
        spec,
        banner,
        checked.values,
        checked.errors,
        checked.general,
        status=422,
        encounters=encounters,
    )


# --------------------------------------------------------------------------------------------
# Version history of one resource


def _flatten(value: Any, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(value, dict):
        for k, v in value.items():
            if not prefix and k in ("meta", "id"):
                continue
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.update(_flatten(v, f"{prefix}[{i}]"))
    else:
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        if prefix.endswith("attachment.data") and isinstance(value, str):
            decoded, _note = decode_attachment({"data": value, "contentType": "text/plain"})
            text = decoded if decoded is not None else text
        out[prefix] = text if len(text) <= 400 else text[:400] + " …"
    return out


def version_diffs(versions: Sequence[Stored]) -> list[dict[str, Any]]:
    """Newest first; each version with what changed since the one before it."""
    ordered = sorted(versions, key=lambda s: s.version_id)
    out: list[dict[str, Any]] = []
    prev: dict[str, str] = {}
    for s in ordered:
        cur = {} if s.deleted or s.content is None else _flatten(orjson.loads(s.content))
        changes = []
        for k in sorted(set(prev) | set(cur)):
            before, after = prev.get(k), cur.get(k)
            if before != after:
                changes.append({"field": k, "before": before, "after": after})
        out.append(
            {
                "version": s.version_id,
                "at": s.last_updated,
                "author": s.author or "",
                "method": s.method or "",
                "deleted": s.deleted,
                "changes": changes,
                "json": "" if s.content is None else orjson.dumps(orjson.loads(s.content), option=orjson.OPT_INDENT_2).decode(),
            }
        )
        prev = cur
    return list(reversed(out))


@router.get("/patients/{pid}/history/{rtype}/{rid}")
def history(request: Request, pid: str, rtype: str, rid: str) -> Response:
    p = current_principal(request)
    _valid_id(pid)
    _valid_id(rid)
    if rtype not in sp.PARAMS:
        raise HTTPException(404, "There is no such record type.")
    try:
        versions, _total = records(request).history(p, rtype, rid, count=200)
    except FhirError as exc:
        if exc.status == 403:
            with request.app.state.db.read() as conn:
                if policy.restriction_reason(conn, pid) is not None and policy.can_read_patient_data(p):
                    return render(request, "restricted.html", {"patient_id": pid, "error": "", "reason": ""}, status=403)
        raise service_error(exc) from None
    # The URL names a patient: the resource must belong to that patient, or nothing is shown.
    owner = rid if rtype == "Patient" else None
    if not versions or any((v.patient_id or owner) != pid for v in versions):
        raise HTTPException(404, "This patient has no such record.")
    rows = version_diffs(versions)
    names: dict[str, str] = {}
    with request.app.state.db.read() as conn:
        for row in rows:
            a = row["author"]
            if a and a not in names:
                u = users.get_user(conn, a) if not a.startswith("system:") else None
                names[a] = f"{u.display_name or u.username} ({u.username})" if u else a.replace("system:", "system job ")
            row["author_name"] = names.get(a, "unknown")
    current = next((r for r in rows if not r["deleted"]), None)
    title = rtype
    if current and current["json"]:
        res = orjson.loads(current["json"])
        title = _resource_title(rtype, res)
    return render(request, "history.html", {"pid": pid, "rtype": rtype, "rid": rid, "rows": rows, "title": title})


def _resource_title(rtype: str, r: Mapping[str, Any]) -> str:
    if rtype == "Patient":
        return human_name(r) or "Patient"
    for key in ("code", "medicationCodeableConcept", "vaccineCode", "type"):
        v = r.get(key)
        if isinstance(v, list):
            v = v[0] if v else None
        text = cc_text(v)
        if text:
            return text
    return rtype
