"""Chart completion pages: the HIM technician's deficiency queue (filters, bulk waive and reassign),
the physician's inbox (open the document, sign it, or answer why it cannot be completed), the document
page with its Sign button, the delinquency report (HTML with the SVG trend, and CSV) and the list of
reminders and escalations sent.

Routes are thin, as in ``pages.py`` (whose session, CSRF, error-page and rendering helpers they use):
parse ids and codes, call ``CompletionService`` or ``RecordService`` with the logged-in Principal (the
policy check and the audit entry happen there), render. URLs carry ids and codes only: a service name
used as a filter travels as a short digest of the name, never as its text.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from markupsafe import Markup

from chartkeeper.completion import engine
from chartkeeper.completion.report import svg_trend
from chartkeeper.completion.service import HIM_ROLES, CompletionError, CompletionService, Deficiency, QueueFilter
from chartkeeper.fhir.errors import FhirError
from chartkeeper.fhir.store import is_signed_document
from chartkeeper.security import policy
from chartkeeper.security.policy import Action
from chartkeeper.security.principal import Principal
from chartkeeper.web import coding_pages, forms
from chartkeeper.web.pages import (
    RECENT_DAYS,
    SECURITY_HEADERS,
    _patient_banner,
    _valid_id,
    cc_text,
    checked_form,
    checked_form_lists,
    current_principal,
    decode_attachment,
    human_name,
    records,
    redirect,
    render,
    require,
    require_role,
    service_error,
)

router = APIRouter(include_in_schema=False)

PHYSICIAN_ROLES = frozenset({"physician"})
STATUSES = {"open": "Open", "completed": "Completed", "waived": "Waived", "all": "All"}
AGES = (7, 14, 30, 60)
QUEUE_PAGE = 50
CLASS_LABELS = {"IMP": "Inpatient", "AMB": "Outpatient", "EMER": "Emergency", "OBSENC": "Observation",
                "SS": "Short stay", "HH": "Home health", "VR": "Virtual", "ACUTE": "Inpatient acute",
                "NONAC": "Inpatient non-acute", "PRENC": "Pre-admission"}
_BACK_RE = re.compile(r"^[A-Za-z0-9=&_\-.%]{0,600}$")
_FIELD_RE = re.compile(r"^(reason|physician|answer|answer_text): ")


def completion(request: Request) -> CompletionService:
    return request.app.state.completion  # type: ignore[no-any-return]


def service_token(name: str) -> str:
    """The URL form of a service name (a digest, so no free text reaches a URL or a log)."""
    return hashlib.sha256(name.encode()).hexdigest()[:12]


def _split(message: str) -> tuple[str | None, str]:
    """'reason: say why ...' -> ('reason', 'Say why ...'): the field a service sentence names."""
    m = _FIELD_RE.match(message)
    if not m:
        return None, message
    rest = message[m.end():]
    return m.group(1), rest[:1].upper() + rest[1:]


# --------------------------------------------------------------------------------------------
# The technician's queue


@dataclass
class Filters:
    status: str = "open"
    physician: str = ""
    cls: str = ""
    rule: str = ""
    service: str = ""  # the digest of the service name
    answered: str = ""  # "", "yes", "no"
    older_than: str = ""
    page: int = 1

    def query(self, *, page: int | None = None) -> str:
        values = {"status": self.status if self.status != "open" else "", "physician": self.physician,
                  "cls": self.cls, "rule": self.rule, "service": self.service, "answered": self.answered,
                  "older_than": self.older_than}
        p = self.page if page is None else page
        if p > 1:
            values["page"] = str(p)
        return urlencode({k: v for k, v in values.items() if v})


def parse_filters(params: Mapping[str, str], svc: CompletionService, services: dict[str, str]
                  ) -> tuple[Filters, QueueFilter, dict[str, str]]:
    """The queue's filters from the query string; a bad one is dropped and named in ``errors``."""
    f = Filters()
    errors: dict[str, str] = {}
    q = QueueFilter(limit=QUEUE_PAGE)
    status = params.get("status", "") or "open"
    if status in STATUSES:
        f.status = q.status = status
    else:
        errors["status"] = "Status: choose open, completed, waived or all."
    phys = params.get("physician", "")
    if phys:
        if re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", phys):
            f.physician = q.physician_id = phys
        else:
            errors["physician"] = "Physician: choose a physician from the list."
    cls = params.get("cls", "")
    if cls:
        if cls in CLASS_LABELS:
            f.cls = q.encounter_class = cls
        else:
            errors["cls"] = "Encounter type: choose one from the list (inpatient, outpatient, ...)."
    rule = params.get("rule", "")
    if rule:
        if rule in svc.rules.by_id:
            f.rule = q.rule_id = rule
        else:
            errors["rule"] = "Rule: choose a rule from the list; this one is not in the facility's rule file."
    token = params.get("service", "")
    if token:
        if token in services:
            f.service = token
            q.service = services[token]
        else:
            errors["service"] = "Service: no open deficiency has this service now; choose one from the list."
    answered = params.get("answered", "")
    if answered in ("yes", "no"):
        f.answered = answered
        q.answered = answered == "yes"
    elif answered:
        errors["answered"] = "Answered: choose yes, no, or any."
    older = params.get("older_than", "")
    if older:
        if older.isdigit() and 0 < int(older) <= 3650:
            f.older_than = older
            q.older_than_days = int(older)
        else:
            errors["older_than"] = "Age: give a number of days between 1 and 3650."
    raw_page = params.get("page", "1")
    f.page = int(raw_page) if raw_page.isdigit() and 0 < int(raw_page) < 100_000 else 1
    q.offset = (f.page - 1) * QUEUE_PAGE
    return f, q, errors


def deficiency_row(d: Deficiency, now: datetime, patients: Mapping[str, str], physicians: Mapping[str, str],
                   svc: CompletionService) -> dict[str, Any]:
    rule = svc.rules.by_id.get(d.rule_id)
    return {
        "id": d.id, "patient_id": d.patient_id, "patient": patients.get(d.patient_id or "", ""),
        "encounter_id": d.encounter_id, "cls": CLASS_LABELS.get(d.encounter_class, d.encounter_class),
        "service": d.service, "rule_id": d.rule_id, "rule": d.rule_title, "title": d.title,
        "kind": rule.kind if rule else "", "document_id": d.document_id,
        "physician_id": d.physician_id, "physician": physicians.get(d.physician_id or "", d.physician_id or ""),
        "age": d.age_days(now), "due": d.due_at, "overdue": d.overdue(now), "status": d.status,
        "discharged": d.discharged_at, "response": d.response, "responded_at": d.responded_at,
        "waived_reason": d.waived_reason, "completed_at": d.completed_at, "completed_how": d.completed_how,
    }


def _queue(request: Request, p: Principal, params: Mapping[str, str], *, selected: Sequence[str] = (),
           errors: Mapping[str, str] | None = None, general: Sequence[str] = (), values: Mapping[str, str] | None = None,
           status: int = 200, done: str = "") -> Response:
    svc = completion(request)
    try:
        summary = svc.breakdown(p, ages=sorted({*AGES, svc.rules.delinquency_days}))
        services = {service_token(name): name for name, _n in summary["service"] if name}
        f, qf, filter_errors = parse_filters(params, svc, services)
        page = svc.queue(p, qf)
        can_act = bool(p.roles & HIM_ROLES) and policy.can(p, Action.UPDATE, "Task")
        physicians = svc.practitioners(p) if can_act else []
    except CompletionError as exc:
        raise service_error(exc) from None
    now = datetime.now(UTC)
    rows = [deficiency_row(d, now, page.patients, page.physicians, svc) for d in page.rows]
    names = summary["physician_names"]
    return render(request, "completion_queue.html", {
        "f": f, "rows": rows, "total": page.total, "charts": page.charts, "summary": summary,
        "names": names, "services": sorted(services.items(), key=lambda kv: kv[1].lower()),
        "service_counts": dict(summary["service"]), "class_labels": CLASS_LABELS, "statuses": STATUSES,
        "rules": svc.rules.rules, "filter_errors": filter_errors, "errors": errors or {}, "general": general,
        "values": values or {}, "selected": set(selected), "can_act": can_act, "physicians": physicians,
        "back": f.query(page=1), "done": done, "delinquency_days": svc.rules.delinquency_days,
        "pages": max(1, -(-max(page.total, 0) // QUEUE_PAGE)), "page_query": f.query,
    }, status=400 if filter_errors and status == 200 else status)


DONE = {"waived": "waived", "reassigned": "reassigned"}


@router.get("/completion")
def queue_page(request: Request) -> Response:
    p = current_principal(request)
    require(request, p, Action.SEARCH, "Task")
    params = dict(request.query_params)
    done = ""
    n = params.get("n", "")
    if params.get("done") in DONE and n.isdigit():
        done = f"{n} deficienc{'y' if n == '1' else 'ies'} {DONE[params['done']]}."
    return _queue(request, p, params, done=done)


def _back(data: Mapping[str, str]) -> dict[str, str]:
    back = data.get("back", "")
    if not _BACK_RE.match(back):
        return {}
    from urllib.parse import parse_qsl

    return dict(parse_qsl(back))


def _ids(lists: Mapping[str, list[str]]) -> list[str]:
    ids = list(dict.fromkeys(lists.get("ids", [])))
    for i in ids:
        _valid_id(i)  # 404: no such record
    return ids


async def _bulk(request: Request, action: str) -> Response:
    p = current_principal(request)
    data, lists = await checked_form_lists(request)
    what = "waive deficiencies" if action == "waived" else "reassign deficiencies"
    require_role(request, p, HIM_ROLES, Action.UPDATE, "Task", what)
    ids = _ids(lists)
    back = _back(data)
    svc = completion(request)
    reason = forms.clean(data.get("reason"), 1000)
    physician = forms.clean(data.get("physician"), 64)
    try:
        if action == "waived":
            done = svc.waive(p, ids, reason)
        else:
            done = svc.reassign(p, ids, physician)
    except CompletionError as exc:
        if exc.status in (403, 404):
            raise service_error(exc) from None
        field, sentence = _split(exc.message)
        errors = {field: sentence} if field else {}
        general = [] if field else [sentence]
        return _queue(request, p, back, selected=ids, errors=errors, general=general,
                      values={"reason": reason, "physician": physician}, status=exc.status)
    query = urlencode({**{k: v for k, v in back.items() if k not in ("done", "n")}, "done": action,
                       "n": str(len(done))})
    return redirect(f"/completion?{query}")


@router.post("/completion/waive")
async def waive(request: Request) -> Response:
    return await _bulk(request, "waived")


@router.post("/completion/reassign")
async def reassign(request: Request) -> Response:
    return await _bulk(request, "reassigned")


# --------------------------------------------------------------------------------------------
# The physician's inbox


def _inbox(request: Request, p: Principal, *, errors: Mapping[str, str] | None = None,
           answers: Mapping[str, str] | None = None, status: int = 200, notice: str = "",
           query_errors: Mapping[str, str] | None = None,
           query_values: Mapping[str, dict[str, str]] | None = None) -> Response:
    svc = completion(request)
    try:
        page = svc.inbox(p, include_closed_days=RECENT_DAYS)
        notes = svc.notifications(p, physician_only=True, limit=20)
    except CompletionError as exc:
        raise service_error(exc) from None
    now = datetime.now(UTC)
    rows = [deficiency_row(d, now, page.patients, page.physicians, svc) for d in page.rows]
    return render(request, "completion_inbox.html", {
        "open_rows": [r for r in rows if r["status"] == "open"],
        "closed_rows": [r for r in rows if r["status"] != "open"],
        "notes": notes, "errors": errors or {}, "answers": answers or {}, "notice": notice,
        "days": RECENT_DAYS, "can_sign": policy.can(p, Action.SIGN, "DocumentReference"),
        # Coding queries (the coding module's; see coding_pages)
        "coding_queries": coding_pages.inbox_queries(request, p), "query_errors": query_errors or {},
        "query_values": query_values or {},
    }, status=status)


INBOX_NOTICES = {"answered": "Your answer was sent to health information management.",
                 "signed": "Document signed.",
                 "query_answered": "Your answer to the coding query was filed as a signed addendum; coding resumes."}


@router.get("/inbox")
def inbox_page(request: Request) -> Response:
    p = current_principal(request)
    require_role(request, p, PHYSICIAN_ROLES, Action.SEARCH, "Task", "open a physician's inbox")
    notice = next((v for k, v in INBOX_NOTICES.items() if request.query_params.get(k) == "1"), "")
    return _inbox(request, p, notice=notice)


@router.post("/inbox/{did}/answer")
async def inbox_answer(request: Request, did: str) -> Response:
    p = current_principal(request)
    data = await checked_form(request)
    require_role(request, p, PHYSICIAN_ROLES, Action.UPDATE, "Task", "answer a deficiency")
    _valid_id(did)
    answer = forms.clean(data.get("answer"), 1000)
    try:
        completion(request).respond(p, did, answer)
    except CompletionError as exc:
        if exc.status != 422:
            raise service_error(exc) from None
        _field, sentence = _split(exc.message)
        return _inbox(request, p, errors={did: sentence}, answers={did: answer}, status=422)
    return redirect("/inbox?answered=1")


@router.post("/inbox/queries/{qid}/answer")
async def inbox_query_answer(request: Request, qid: str) -> Response:
    """The physician answers a coding query: one option (with their words for "Other"). The coding
    service files it as a signed addendum and re-opens coding."""
    p = current_principal(request)
    data = await checked_form(request)
    require_role(request, p, PHYSICIAN_ROLES, Action.UPDATE, "Task", "answer a coding query")
    _valid_id(qid)
    answer = forms.clean(data.get("answer"), 300)
    text = forms.clean(data.get("answer_text"), 1000)
    refused = coding_pages.answer_query(request, p, qid, answer, text)
    if refused is not None:
        return _inbox(request, p, query_errors={qid: "; ".join(_split(i.message)[1] for i in refused.issues)},
                      query_values={qid: {"answer": answer, "answer_text": text}}, status=422)
    return redirect("/inbox?query_answered=1")


# --------------------------------------------------------------------------------------------
# One document: read through the record service (policy + audit), signed by its author or the
# encounter's attending


def _name(request: Request, p: Principal, ref: Any, cache: dict[str, str]) -> str:
    pid = engine.ref_id(ref, "Practitioner")
    if not pid:
        return str(ref.get("display") or "") if isinstance(ref, dict) else ""
    if pid not in cache:
        try:
            cache[pid] = human_name(records(request).read(p, "Practitioner", pid).resource()) or pid
        except FhirError:
            cache[pid] = str(ref.get("display") or pid)
    return cache[pid]


@router.get("/documents/{did}")
def document_page(request: Request, did: str) -> Response:
    p = current_principal(request)
    _valid_id(did)
    try:
        stored = records(request).read(p, "DocumentReference", did)
    except FhirError as exc:
        raise service_error(exc) from None
    doc = stored.resource()
    banner = _patient_banner(request, p, stored.patient_id) if stored.patient_id else None
    names: dict[str, str] = {}
    authors = [engine.ref_id(a, "Practitioner") for a in doc.get("author") or ()]
    attendings: set[str] = set()
    encounters = []
    for ref in (doc.get("context") or {}).get("encounter") or ():
        eid = engine.ref_id(ref, "Encounter")
        if not eid:
            continue
        try:
            enc = records(request).read(p, "Encounter", eid).resource()
        except FhirError:
            continue
        att = engine.attending_of(enc)
        if att:
            attendings.add(att)
        period = enc.get("period") or {}
        code = (enc.get("class") or {}).get("code", "")
        encounters.append({"cls": CLASS_LABELS.get(code, code), "start": period.get("start", ""),
                           "end": period.get("end", "")})
    text, note = None, "No text attached."
    for content in doc.get("content") or ():
        if isinstance(content, dict) and isinstance(content.get("attachment"), dict):
            text, note = decode_attachment(content["attachment"])
            if text is not None:
                break
    signed = is_signed_document(doc)
    me = p.practitioner_id
    may_sign = (not signed and doc.get("status") == "current" and bool(me)
                and policy.can(p, Action.SIGN, "DocumentReference") and (me in authors or me in attendings))
    return render(request, "completion_document.html", {
        "did": did, "b": banner, "type": cc_text(doc.get("type")) or "Document", "title": doc.get("description") or "",
        "date": doc.get("date", ""), "status": doc.get("status", ""), "doc_status": doc.get("docStatus", ""),
        "signed": signed, "authenticator": _name(request, p, doc.get("authenticator"), names) if signed else "",
        "authors": [_name(request, p, a, names) for a in doc.get("author") or ()],
        "encounters": encounters, "text": text, "note": note, "may_sign": may_sign,
        "cosign": bool(me) and me not in authors, "version": stored.version_id,
        "just_signed": request.query_params.get("signed") == "1",
        "physician": "physician" in p.roles,
    })


@router.post("/documents/{did}/sign")
async def sign_document(request: Request, did: str) -> Response:
    p = current_principal(request)
    await checked_form(request)
    _valid_id(did)
    require(request, p, Action.SIGN, "DocumentReference")
    try:
        completion(request).sign(p, did)
    except CompletionError as exc:
        raise service_error(exc) from None
    return redirect(f"/documents/{did}?signed=1")


# --------------------------------------------------------------------------------------------
# Delinquency report and notifications


def _months(request: Request) -> int:
    raw = request.query_params.get("months", "12")
    if not raw.isdigit() or not 1 <= int(raw) <= 120:
        raise HTTPException(400, "Months: give a whole number of months between 1 and 120, e.g. 12.")
    return int(raw)


def _delinquency(request: Request) -> tuple[Any, int]:
    p = current_principal(request)
    require(request, p, Action.SEARCH, "Task")
    months = _months(request)
    try:
        return completion(request).delinquency(p, months=months), months
    except CompletionError as exc:
        raise service_error(exc) from None


@router.get("/completion/report")
def report_page(request: Request) -> Response:
    rep, months = _delinquency(request)
    return render(request, "completion_report.html", {
        "rep": rep, "months": months, "svg": Markup(svg_trend(rep)),  # noqa: S704 - built with html.escape
        "provisional": sum(1 for m in rep.months if m["provisional"]),
    })


@router.get("/completion/report.csv")
def report_csv(request: Request) -> Response:
    rep, months = _delinquency(request)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    headers = {**SECURITY_HEADERS,
               "Content-Disposition": f'attachment; filename="delinquency-{months}m-{stamp}.csv"'}
    return Response(rep.csv(), media_type="text/csv; charset=utf-8", headers=headers)


@router.get("/completion/notifications")
def notifications_page(request: Request) -> Response:
    p = current_principal(request)
    require(request, p, Action.READ, "Task")
    svc = completion(request)
    try:
        notes = svc.notifications(p, limit=100)
        names = svc.practitioners(p) if policy.can(p, Action.SEARCH, "Practitioner") else []
    except CompletionError as exc:
        raise service_error(exc) from None
    sent = request.query_params.get("sent", "")
    return render(request, "completion_notifications.html", {
        "notes": notes, "names": dict(names), "can_run": bool(p.roles & HIM_ROLES) and policy.can(p, Action.UPDATE, "Task"),
        "sent": int(sent) if sent.isdigit() and len(sent) < 7 else None,
        "every": svc.rules.reminder_every_days,
    })


@router.post("/completion/notifications/run")
async def run_reminders(request: Request) -> Response:
    p = current_principal(request)
    await checked_form(request)
    require_role(request, p, HIM_ROLES, Action.UPDATE, "Task", "send reminders")
    try:
        made = completion(request).send_reminders(p)
    except CompletionError as exc:
        raise service_error(exc) from None
    return redirect(f"/completion/notifications?sent={len(made)}")


__all__ = ["router", "service_token"]
