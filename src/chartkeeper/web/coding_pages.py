"""The coder's pages: the coding queue (DNFB), the workbench of one encounter (documents with the
evidence of computer-assisted coding highlighted, the code lists, the encoder, edits, MS-DRG and
what-if, physician queries, finalize) and the coding reports. The physician's side of a query (the
"Coding queries" section of the inbox and its answer form) is rendered by ``completion_pages`` with
the helpers at the end of this module.

Routes are thin, as in ``pages.py`` (whose session, CSRF, error-page and rendering helpers they use):
parse ids and codes, call ``CodingService`` with the logged-in Principal (the policy check and the
audit entry happen there), render. URLs carry ids and codes only; free text (encoder search terms,
query wording) travels in POST bodies. The encoder and the what-if answer HTMX requests with small
HTML fragments; without JavaScript the same forms post and get the whole workbench back.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from html import escape
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from markupsafe import Markup

from chartkeeper.coding.api import service as coding_service
from chartkeeper.coding.case import Edit
from chartkeeper.coding.codes import ICD10CMCode, ICD10PCSCode
from chartkeeper.coding.models import AbstractStatus, CodeSource, CodingSetting, Decision
from chartkeeper.coding.service import (
    Abstract,
    CodeLine,
    CodingError,
    CodingService,
    DecisionInput,
    DiagnosisInput,
    ProcedureInput,
    Query,
    QueryEvidence,
    QueueFilter,
)
from chartkeeper.fhir.errors import FhirError, Issue
from chartkeeper.security import policy
from chartkeeper.security.policy import Action
from chartkeeper.security.principal import Principal
from chartkeeper.web import forms
from chartkeeper.web.pages import (
    _patient_banner,
    _valid_id,
    cc_text,
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

ABSTRACT = "CodingAbstract"
CODER_ROLES = frozenset({"coder"})
QUEUE_PAGE = 50
SETTINGS = {"inpatient": "Inpatient", "outpatient": "Outpatient", "emergency": "Emergency"}
STATUSES = {"open": "Not final (DNFB)", "uncoded": "Uncoded", "in_progress": "In progress",
            "query_pending": "Query pending", "final": "Final", "all": "All"}
STATUS_LABELS = {"uncoded": "uncoded", "in_progress": "in progress", "query_pending": "query pending", "final": "final"}
AGE_CHOICES = (3, 7, 14, 30)
POA_LABELS = {"Y": "Y yes", "N": "N no", "U": "U undocumented", "W": "W undetermined", "1": "1 exempt"}
DOC_LIMIT = 50
_CODE_RE = re.compile(r"^[A-Za-z0-9.]{1,10}$")


def coding(request: Request) -> CodingService:
    return coding_service(request)


def _issues_by_field(exc: FhirError, fields: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """The service's sentences sorted by the form field their path names (all of a field's, joined);
    sentences that name no field of this form go to the general list."""
    by_field: dict[str, str] = {}
    general: list[str] = []
    for issue in exc.issues:
        key = re.split(r"[.\[]", issue.path or "", maxsplit=1)[0]
        if key in fields:
            by_field[key] = " ".join(x for x in (by_field.get(key, ""), _sentence(issue)) if x)
        else:
            general.append(_sentence(issue))
    return by_field, general


def _sentence(issue: Issue) -> str:
    """'question: write the question ...' -> 'Write the question ...' (the label is beside the field)."""
    msg = issue.message
    m = re.match(r"^[a-z_]+(\[\d+\])?(\.[a-z_]+)?: ", msg)
    if m and issue.path:
        rest = msg[m.end():]
        return rest[:1].upper() + rest[1:]
    return msg


# --------------------------------------------------------------------------------------------
# The queue (DNFB)


@dataclass
class Filters:
    setting: str = ""
    status: str = "open"
    assigned: str = ""  # "", "me", "none"
    older_than: str = ""
    page: int = 1

    def query(self, *, page: int | None = None) -> str:
        values = {"setting": self.setting, "status": self.status if self.status != "open" else "",
                  "assigned": self.assigned, "older_than": self.older_than}
        p = self.page if page is None else page
        if p > 1:
            values["page"] = str(p)
        return urlencode({k: v for k, v in values.items() if v})


def parse_filters(params: Mapping[str, str], p: Principal) -> tuple[Filters, QueueFilter, dict[str, str]]:
    """The queue's filters from the query string; a bad one is dropped and named in ``errors``."""
    f = Filters()
    q = QueueFilter(limit=QUEUE_PAGE)
    errors: dict[str, str] = {}
    setting = params.get("setting", "")
    if setting:
        if setting in SETTINGS:
            f.setting = setting
            q.setting = CodingSetting(setting)
        else:
            errors["setting"] = "Setting: choose inpatient, outpatient or emergency."
    status = params.get("status", "") or "open"
    if status in STATUSES:
        f.status = q.status = status
    else:
        errors["status"] = "Status: choose one from the list (not final, uncoded, in progress, query pending, final, all)."
    assigned = params.get("assigned", "")
    if assigned == "me":
        f.assigned, q.assigned_to = "me", p.user_id
    elif assigned == "none":
        f.assigned, q.assigned_to = "none", ""
    elif assigned:
        errors["assigned"] = "Assigned: choose yours, unassigned, or anyone."
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


def _is_coder(p: Principal) -> bool:
    return bool(p.roles & CODER_ROLES) and policy.can(p, Action.UPDATE, ABSTRACT)


@router.get("/coding")
def queue_page(request: Request) -> Response:
    p = current_principal(request)
    require(request, p, Action.SEARCH, ABSTRACT)
    svc = coding(request)
    f, qf, filter_errors = parse_filters(request.query_params, p)
    try:
        counts = svc.counts(p)
        page = svc.queue(p, qf)
    except CodingError as exc:
        raise service_error(exc) from None
    now = datetime.now(UTC)
    rows = [{
        "id": r.encounter_id, "patient_id": r.patient_id, "patient": page.patients.get(r.patient_id or "", ""),
        "setting": SETTINGS.get(r.setting.value, r.setting.value), "age": r.age_days(now),
        "discharged": r.discharged_at, "admitted": r.admitted_at, "status": r.status.value,
        "status_label": STATUS_LABELS.get(r.status.value, r.status.value),
        "coder": page.coders.get(r.assigned_to or "", r.assigned_to or ""), "mine": r.assigned_to == p.user_id,
        "assigned": r.assigned_to is not None, "working": r.working,
    } for r in page.rows]
    done = ""
    if request.query_params.get("assigned_ok") == "1":
        done = "Assigned to you."
    return render(request, "coding_queue.html", {
        "f": f, "rows": rows, "total": page.total, "counts": counts, "settings": SETTINGS, "statuses": STATUSES,
        "ages": AGE_CHOICES, "filter_errors": filter_errors, "can_code": _is_coder(p), "done": done,
        "pages": max(1, -(-max(page.total, 0) // QUEUE_PAGE)), "page_query": f.query, "back": f.query(),
    }, status=400 if filter_errors else 200)


# --------------------------------------------------------------------------------------------
# Reports (declared before /coding/{eid} so that "reports" is not taken for an encounter id)


def svg_bars(rows: Sequence[Any], width: int = 760, bar: int = 22) -> str:
    """Horizontal stacked bars, one per coder and code system: the share of computer-assisted
    suggestions accepted unchanged, edited and rejected. Plain SVG, no script; text escaped."""
    if not rows:
        return ""
    pad_l, pad_r, pad_t = 210, 20, 24
    w = width - pad_l - pad_r
    height = pad_t + len(rows) * (bar + 8) + 30
    colours = (("accepted", "#2e7d32"), ("edited", "#e0a800"), ("rejected", "#b00020"))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="Share of suggestions accepted, edited and rejected, per coder and code system" class="bars">']
    for i, r in enumerate(rows):
        y = pad_t + i * (bar + 8)
        label = f"{r.coder_name or r.coder or 'not decided by a coder'} · {r.system}"
        parts.append(f'<text x="{pad_l - 8}" y="{y + bar * 0.7:.1f}" font-size="11" text-anchor="end">'
                     f'{escape(label[:40])}</text>')
        x = float(pad_l)
        for name, colour in colours:
            n = getattr(r, name)
            share = n / r.suggestions if r.suggestions else 0.0
            bw = w * share
            if bw > 0:
                parts.append(f'<rect x="{x:.1f}" y="{y}" width="{bw:.1f}" height="{bar}" fill="{colour}">'
                             f'<title>{escape(label)}: {n} {name} ({share:.0%})</title></rect>')
                if bw > 34:
                    parts.append(f'<text x="{x + bw / 2:.1f}" y="{y + bar * 0.7:.1f}" font-size="10" fill="#fff" '
                                 f'text-anchor="middle">{share:.0%}</text>')
            x += bw
    legend_y = height - 8
    parts.append(f'<text x="8" y="{legend_y}" font-size="11">Share of the suggestions decided: green accepted '
                 f'unchanged · amber edited to another code · red rejected</text></svg>')
    return "".join(parts)


@router.get("/coding/reports")
def reports_page(request: Request) -> Response:
    p = current_principal(request)
    require(request, p, Action.SEARCH, ABSTRACT)
    svc = coding(request)
    try:
        accuracy = svc.accuracy(p)
        throughput = svc.throughput(p)
    except CodingError as exc:
        raise service_error(exc) from None
    totals = {k: sum(getattr(r, k) for r in accuracy) for k in ("suggestions", "accepted", "edited", "rejected",
                                                                 "inferred")}
    return render(request, "coding_reports.html", {
        "accuracy": accuracy, "throughput": throughput, "totals": totals,
        "svg": Markup(svg_bars(accuracy)),  # noqa: S704 - built with html.escape
    })


# --------------------------------------------------------------------------------------------
# The workbench


@dataclass
class Segment:
    text: str
    mark: str | None = None  # the anchor id of the evidence span, when highlighted
    code: str = ""


@dataclass
class DocView:
    id: str
    type: str
    date: str
    status: str
    segments: list[Segment]
    text: str
    note: str = ""


@dataclass
class CodeRowView:
    code: str  # as entered (dotted for ICD-10-CM)
    title: str = ""
    poa: str = ""
    source: str = "manual"
    performed: str = ""
    severity: str = ""  # "MCC", "CC", "" for secondary diagnoses on an inpatient stay
    error: str = ""


@dataclass
class Bench:
    """What the workbench shows besides the abstract: values and sentences of a form that was refused."""

    errors: dict[str, dict[str, str]] = field(default_factory=dict)  # form -> field -> sentence
    general: dict[str, list[str]] = field(default_factory=dict)  # form -> sentences
    values: dict[str, Any] = field(default_factory=dict)
    dx_rows: list[CodeRowView] | None = None
    px_rows: list[CodeRowView] | None = None
    hits: list[Any] | None = None
    search: dict[str, str] = field(default_factory=dict)
    what_if: dict[str, Any] | None = None
    notice: str = ""


def _dotted(code: str) -> str:
    c = ICD10CMCode.parse(code)
    return c.dotted if c is not None and len(code) != 7 else code


def _title(line: CodeLine) -> str:
    from chartkeeper.coding.codesets import icd10cm, icd10pcs

    try:
        if line.system == "icd10cm":
            return icd10cm.title(str(line.code)) if icd10cm.exists(str(line.code)) else ""
        if line.system == "icd10pcs":
            return icd10pcs.title(str(line.code)) if icd10pcs.exists(str(line.code)) else ""
    except (KeyError, ValueError):
        return ""
    return ""


def _rows(lines: Sequence[CodeLine]) -> list[CodeRowView]:
    out = []
    for ln in lines:
        code = ln.code.dotted if isinstance(ln.code, ICD10CMCode) else str(ln.code)
        out.append(CodeRowView(code, _title(ln), ln.poa or "", ln.source.value,
                               ln.performed.isoformat() if ln.performed else ""))
    return out


def _doc_text(doc: Mapping[str, Any]) -> tuple[str, str]:
    """The document's text as computer-assisted coding read it (its text attachments joined by a line
    break), so that the evidence offsets point into it; and a note when there is none."""
    parts: list[str] = []
    note = "No text attached."
    for content in doc.get("content") or ():
        att = content.get("attachment") if isinstance(content, dict) else None
        if not isinstance(att, dict):
            continue
        text, why = decode_attachment(att)
        if text is not None:
            parts.append(text)
        else:
            note = why
    return "\n".join(parts), ("" if parts else note)


def highlight(text: str, spans: Sequence[tuple[int, int, str, str]]) -> list[Segment]:
    """``text`` cut into segments, the evidence spans (start, end, anchor id, code) marked. Spans that
    fall outside the text or overlap one already marked are left plain."""
    out: list[Segment] = []
    pos = 0
    for start, end, anchor, code in sorted(spans):
        if not (0 <= start < end <= len(text)) or start < pos:
            continue
        if start > pos:
            out.append(Segment(text[pos:start]))
        out.append(Segment(text[start:end], anchor, code))
        pos = end
    if pos < len(text):
        out.append(Segment(text[pos:]))
    return out


def _documents(request: Request, p: Principal, eid: str, a: Abstract) -> tuple[list[DocView], dict[str, list[str]]]:
    """The encounter's documents through the record service (policy and audit there), with every
    evidence span of a suggestion highlighted; and per suggestion (kind:code) the anchors of its spans."""
    if not policy.can(p, Action.SEARCH, "DocumentReference"):
        return [], {}
    try:
        res = records(request).search(p, "DocumentReference", [("encounter", eid), ("_count", str(DOC_LIMIT))])
    except FhirError:
        return [], {}
    spans: dict[str, list[tuple[int, int, str, str]]] = {}
    anchors: dict[str, list[str]] = {}
    for i, s in enumerate(a.suggestions):
        key = f"{s.kind.value}:{s.code}"
        for j, ev in enumerate(s.evidence):
            try:
                start, end, did = int(ev.get("start", -1)), int(ev.get("end", -1)), str(ev.get("document_id", ""))
            except (TypeError, ValueError):
                continue
            anchor = f"ev-{i}-{j}"
            spans.setdefault(did, []).append((start, end, anchor, str(s.code)))
            anchors.setdefault(key, []).append(anchor)
    docs = []
    for st in res.matches:
        if st.resource_type != "DocumentReference" or st.patient_id != a.item.patient_id:
            continue
        d = st.resource()
        text, note = _doc_text(d)
        segs = highlight(text, spans.get(st.id, []))
        docs.append(DocView(st.id, cc_text(d.get("type")) or d.get("description") or "Document",
                            str(d.get("date") or "")[:10], str(d.get("docStatus") or d.get("status") or ""),
                            segs, text, note))
    docs.sort(key=lambda d: (d.date, d.id))
    # Anchors whose span was not marked (outside the text) are dropped so links never dangle.
    marked = {seg.mark for d in docs for seg in d.segments if seg.mark}
    return docs, {k: [x for x in v if x in marked] for k, v in anchors.items()}


def _encounter(request: Request, p: Principal, eid: str) -> dict[str, Any]:
    try:
        enc = records(request).read(p, "Encounter", eid).resource()
    except FhirError as exc:
        raise service_error(exc) from None
    period = enc.get("period") or {}
    attending = ""
    for part in enc.get("participant") or ():
        ref = str(((part.get("individual") or {}).get("reference")) or "")
        codes = {c.get("code") for t in part.get("type") or () for c in t.get("coding") or ()}
        if ref.startswith("Practitioner/") and (not attending or "ATND" in codes):
            attending = ref.split("/", 1)[1]
    disposition = cc_text((enc.get("hospitalization") or {}).get("dischargeDisposition"))
    return {"type": ", ".join(cc_text(t) for t in enc.get("type") or () if cc_text(t)),
            "cls": (enc.get("class") or {}).get("code", ""), "start": period.get("start", ""),
            "end": period.get("end", ""), "attending": attending, "disposition": disposition}


def _physicians(request: Request, p: Principal) -> list[tuple[str, str]]:
    if not policy.can(p, Action.SEARCH, "Practitioner"):
        return []
    try:
        res = records(request).search(p, "Practitioner", [("_count", "500")])
    except FhirError:
        return []
    out = [(s.id, human_name(s.resource()) or s.id) for s in res.matches if s.resource_type == "Practitioner"]
    return sorted(out, key=lambda kv: kv[1].lower())


def _severity(drg_result: Any) -> dict[str, str]:
    if drg_result is None:
        return {}
    return {str(k): str(v) for k, v in (drg_result.severity or {}).items() if v}


def _edits_sorted(edits: Sequence[Edit]) -> list[Edit]:
    return sorted(edits, key=lambda e: (e.severity != "error", e.edit))


def workbench(request: Request, p: Principal, eid: str, bench: Bench | None = None, *, status: int = 200) -> Response:
    bench = bench or Bench()
    svc = coding(request)
    try:
        a = svc.abstract(p, eid)
    except CodingError as exc:
        raise service_error(exc) from None
    banner = _patient_banner(request, p, a.item.patient_id) if a.item.patient_id else None
    enc = _encounter(request, p, eid)
    inpatient = a.item.setting is CodingSetting.INPATIENT
    edits: list[Edit] = []
    drg_result: Any = None
    drg_error = ""
    try:
        edits = _edits_sorted(svc.edits(p, eid))
        if inpatient:
            drg_result = svc.drg(p, eid)
    except CodingError as exc:
        if exc.status in (403, 404):
            raise service_error(exc) from None
        drg_error = exc.message
    severity = _severity(drg_result)
    dx_rows = bench.dx_rows if bench.dx_rows is not None else _rows(a.diagnoses)
    px_rows = bench.px_rows if bench.px_rows is not None else _rows(a.procedures)
    for i, r in enumerate(dx_rows):
        if i > 0:
            r.severity = severity.get(ICD10CMCode.normalise(r.code), "")
    docs, anchors = _documents(request, p, eid, a)
    holder = a.item.assigned_to in (None, p.user_id)
    is_final = a.status is AbstractStatus.FINAL
    can_code = _is_coder(p) and holder and not is_final
    suggestions = []
    for s in a.suggestions:
        key = f"{s.kind.value}:{s.code}"
        suggestions.append({
            "code": _dotted(str(s.code)), "raw": str(s.code), "kind": s.kind.value, "title": s.title,
            "evidence": [{"sentence": str(ev.get("sentence", "")), "anchor": anc}
                         for ev, anc in zip(s.evidence, anchors.get(key, []), strict=False)],
            "decision": s.decision.value, "final_code": _dotted(s.final_code or "") if s.final_code else "",
            "inferred": s.inferred,
        })
    physicians = _physicians(request, p) if can_code else []
    names = dict(physicians)
    coder_name = ""
    if a.item.assigned_to:
        coder_name = "you" if a.item.assigned_to == p.user_id else "another coder"
    queries = [{
        "id": q.id, "question": q.question, "options": q.options, "evidence": q.evidence,
        "status": q.status.value, "answer": q.answer, "answer_text": q.answer_text, "created": q.created_at,
        "answered": q.answered_at, "physician": names.get(q.physician_id, q.physician_id),
    } for q in a.queries]
    return render(request, "coding_workbench.html", {
        "eid": eid, "a": a, "b": banner, "enc": enc, "setting": SETTINGS.get(a.item.setting.value, ""),
        "inpatient": inpatient, "status_label": STATUS_LABELS.get(a.status.value, a.status.value),
        "is_final": is_final, "holder": holder, "coder_name": coder_name, "can_code": can_code,
        "is_coder": _is_coder(p), "docs": docs, "suggestions": suggestions,
        "pending": sum(1 for s in suggestions if s["decision"] == "pending"),
        "dx_rows": dx_rows, "px_rows": px_rows, "edits": edits,
        "n_errors": sum(1 for e in edits if e.severity == "error"), "drg": drg_result, "drg_error": drg_error,
        "poa_labels": POA_LABELS, "physicians": physicians, "attending": enc["attending"], "queries": queries,
        "open_queries": sum(1 for q in queries if q["status"] == "open"), "bench": bench,
        "errors": bench.errors, "general": bench.general, "values": bench.values, "hits": bench.hits,
        "search": bench.search, "what_if": bench.what_if, "notice": bench.notice or _notice(request),
        "age": a.item.age_days(datetime.now(UTC)),
    }, status=status)


NOTICES = {"saved": "Codes saved; the edits and the MS-DRG below are regrouped.",
           "suggested": "Computer-assisted coding read the documents; judge each suggestion below.",
           "decided": "Decision recorded.", "added": "Code added to the list.",
           "queried": "Query sent to the physician; the encounter waits for the answer.",
           "withdrawn": "Query withdrawn.", "reopened": "Coding re-opened.", "assigned": "Assigned to you.",
           "finalized": "Finalized: the encounter and the claim are written."}


def _notice(request: Request) -> str:
    return next((v for k, v in NOTICES.items() if request.query_params.get(k) == "1"), "")


def _eid(eid: str) -> str:
    return _valid_id(eid)


@router.get("/coding/{eid}")
def workbench_page(request: Request, eid: str) -> Response:
    p = current_principal(request)
    _eid(eid)
    require(request, p, Action.READ, ABSTRACT)
    return workbench(request, p, eid)


async def _coder_form(request: Request, eid: str, what: str) -> tuple[Principal, dict[str, str], dict[str, list[str]]]:
    p = current_principal(request)
    data, lists = await checked_form_lists(request)
    _eid(eid)
    require_role(request, p, CODER_ROLES, Action.UPDATE, ABSTRACT, what)
    return p, data, lists


def _refused(exc: CodingError) -> None:
    """403/404 (and 409 conflicts that are not about the form) become error pages."""
    if exc.status in (403, 404):
        raise service_error(exc) from None


@router.post("/coding/{eid}/assign")
async def assign(request: Request, eid: str) -> Response:
    p, data, _ = await _coder_form(request, eid, "take an encounter to code")
    try:
        coding(request).assign(p, eid)
    except CodingError as exc:
        raise service_error(exc) from None
    if data.get("next") == "queue":
        back = data.get("back", "")
        back = back if re.fullmatch(r"[A-Za-z0-9=&_\-.%]{0,300}", back) else ""
        return redirect("/coding?" + "&".join(x for x in (back, "assigned_ok=1") if x))
    return redirect(f"/coding/{eid}?assigned=1")


@router.post("/coding/{eid}/suggest")
async def suggest(request: Request, eid: str) -> Response:
    p, _, _ = await _coder_form(request, eid, "run computer-assisted coding")
    try:
        coding(request).suggest(p, eid)
    except CodingError as exc:
        _refused(exc)
        return workbench(request, p, eid, Bench(general={"suggest": [exc.message]}), status=exc.status)
    return redirect(f"/coding/{eid}?suggested=1#suggestions")


@router.post("/coding/{eid}/decide")
async def decide(request: Request, eid: str) -> Response:
    p, data, _ = await _coder_form(request, eid, "decide on a suggestion")
    code = forms.clean(data.get("code"), 16)
    decision = data.get("decision", "")
    if decision not in (Decision.ACCEPTED.value, Decision.EDITED.value, Decision.REJECTED.value):
        decision = Decision.PENDING.value
    final = forms.clean(data.get("final_code"), 16) or None
    poa = forms.clean(data.get("poa"), 1) or None
    try:
        coding(request).decide(p, eid, [DecisionInput(code, Decision(decision), final, poa)])
    except CodingError as exc:
        _refused(exc)
        return workbench(request, p, eid, Bench(errors={f"decide:{code}": {"_": "; ".join(_sentence(i) for i in
                                                                                        exc.issues)}},
                                               values={f"final:{code}": final or ""}), status=exc.status)
    return redirect(f"/coding/{eid}?decided=1#suggestions")


def _code_rows(lists: Mapping[str, list[str]], prefix: str) -> list[CodeRowView]:
    """The code list as submitted: rows in order, removed rows dropped, a row moved up when its
    arrow was pressed, blank rows ignored."""
    codes = lists.get(f"{prefix}_code", [])
    poas = lists.get(f"{prefix}_poa", [])
    dates = lists.get(f"{prefix}_date", [])
    removed = {v for v in lists.get(f"{prefix}_remove", []) if v.isdigit()}
    rows: list[CodeRowView] = []
    for i, raw in enumerate(codes[:60]):
        if str(i) in removed:
            continue
        code = forms.clean(raw, 16).upper()
        if not code:
            continue
        rows.append(CodeRowView(code, poa=forms.clean(poas[i] if i < len(poas) else "", 1).upper(),
                                performed=forms.clean(dates[i] if i < len(dates) else "", 10)))
    return rows


def _move(rows: list[CodeRowView], lists: Mapping[str, list[str]], prefix: str) -> list[CodeRowView]:
    for mv in lists.get("move", []):
        kind, _, idx = mv.partition("-")
        if kind == prefix and idx.isdigit() and 0 < int(idx) < len(rows):
            i = int(idx)
            rows[i - 1], rows[i] = rows[i], rows[i - 1]
    return rows


def _inputs(dx_rows: Sequence[CodeRowView], px_rows: Sequence[CodeRowView], setting: CodingSetting,
            sources: Mapping[str, str]) -> tuple[list[DiagnosisInput], list[ProcedureInput], dict[str, str]]:
    bad: dict[str, str] = {}
    dx = [DiagnosisInput(r.code, r.poa or None, CodeSource(sources.get(ICD10CMCode.normalise(r.code), "manual")))
          for r in dx_rows]
    px = []
    for i, r in enumerate(px_rows):
        performed: date | None = None
        if r.performed:
            try:
                performed = date.fromisoformat(r.performed)
            except ValueError:
                bad[f"px{i}"] = "Write the date as YYYY-MM-DD."
        # The system is inferred from the code's shape, so a CPT code on an inpatient stay is named as such.
        px.append(ProcedureInput(r.code, None, performed,
                                 CodeSource(sources.get(ICD10PCSCode.normalise(r.code), "manual"))))
    return dx, px, bad


def _apply_row_errors(exc: CodingError, dx_rows: list[CodeRowView], px_rows: list[CodeRowView]) -> list[str]:
    general = []
    for issue in exc.issues:
        m = re.match(r"^(diagnoses|procedures)\[(\d+)\]", issue.path or "")
        rows = dx_rows if m and m.group(1) == "diagnoses" else px_rows
        if m and int(m.group(2)) < len(rows):
            row = rows[int(m.group(2))]
            row.error = " ".join(x for x in (row.error, _sentence(issue)) if x)
        else:
            general.append(_sentence(issue))
    return general


@router.post("/coding/{eid}/codes")
async def save_codes(request: Request, eid: str) -> Response:
    p, _data, lists = await _coder_form(request, eid, "change an encounter's codes")
    svc = coding(request)
    try:
        a = svc.abstract(p, eid)
    except CodingError as exc:
        raise service_error(exc) from None
    sources = {str(ln.code): ln.source.value for ln in [*a.diagnoses, *a.procedures]}
    dx_rows = _move(_code_rows(lists, "dx"), lists, "dx")
    px_rows = _move(_code_rows(lists, "px"), lists, "px")
    dx, px, bad = _inputs(dx_rows, px_rows, a.item.setting, sources)
    if bad:
        for k, msg in bad.items():
            px_rows[int(k[2:])].error = msg
        return workbench(request, p, eid, Bench(dx_rows=dx_rows, px_rows=px_rows,
                                                general={"codes": ["Nothing was saved: correct the marked rows."]}),
                         status=422)
    try:
        svc.save_codes(p, eid, dx, px)
    except CodingError as exc:
        _refused(exc)
        general = _apply_row_errors(exc, dx_rows, px_rows)
        return workbench(request, p, eid, Bench(dx_rows=dx_rows, px_rows=px_rows,
                                                general={"codes": ["Nothing was saved: correct the marked rows.",
                                                                   *general]}), status=exc.status)
    return redirect(f"/coding/{eid}?saved=1#codes")


@router.post("/coding/{eid}/add")
async def add_code(request: Request, eid: str) -> Response:
    """Add a code from the encoder to the end of its list (completing it with a chosen 7th character)."""
    p, data, _ = await _coder_form(request, eid, "change an encounter's codes")
    from chartkeeper.coding.codesets import icd10cm

    svc = coding(request)
    try:
        a = svc.abstract(p, eid)
    except CodingError as exc:
        raise service_error(exc) from None
    kind = data.get("kind", "dx")
    raw = forms.clean(data.get("code"), 16)
    seventh = forms.clean(data.get("seventh"), 1).upper()
    poa = forms.clean(data.get("poa"), 1).upper() or None
    dx_rows, px_rows = _rows(a.diagnoses), _rows(a.procedures)
    if kind == "dx":
        code = ICD10CMCode.parse(raw)
        if code is not None and seventh:
            try:
                code = icd10cm.with_seventh(code, seventh)
            except (KeyError, ValueError) as err:
                return workbench(request, p, eid, Bench(general={"encoder": [f"7th character: {err}"]}), status=422)
        elif code is not None and icd10cm.exists(code) and icd10cm.needs_seventh(code):
            return workbench(request, p, eid, Bench(general={"encoder": [
                f"{code.dotted} needs a 7th character: choose one from the list beside it (e.g. A for the "
                "initial encounter)."]}), status=422)
        dx_rows.append(CodeRowView(code.dotted if code is not None else raw, poa=poa or ""))
    else:
        px_rows.append(CodeRowView(raw))
    sources = {str(ln.code): ln.source.value for ln in [*a.diagnoses, *a.procedures]}
    dx, px, _bad = _inputs(dx_rows, px_rows, a.item.setting, sources)
    try:
        svc.save_codes(p, eid, dx, px)
    except CodingError as exc:
        _refused(exc)
        general = _apply_row_errors(exc, dx_rows, px_rows)
        return workbench(request, p, eid, Bench(dx_rows=dx_rows, px_rows=px_rows,
                                                general={"codes": ["The code was not added: correct the marked row.",
                                                                   *general]}), status=exc.status)
    return redirect(f"/coding/{eid}?added=1#codes")


def _search_hits(text: str, system: str) -> list[Any]:
    from chartkeeper.coding import encoder

    return encoder.search(text, system, limit=8) if text.strip() else []


@router.post("/coding/{eid}/encoder")
async def encoder_search(request: Request, eid: str) -> Response:
    """The encoder: an HTML fragment for HTMX (the whole workbench without JavaScript). The search
    words travel in the POST body, never in the URL."""
    p = current_principal(request)
    data, _ = await checked_form_lists(request)
    _eid(eid)
    require(request, p, Action.READ, ABSTRACT)
    try:
        a = coding(request).abstract(p, eid)  # the policy check on this encounter (and its audit entry)
    except CodingError as exc:
        raise service_error(exc) from None
    text = forms.clean(data.get("q"), 200)
    system = data.get("system", "icd10cm")
    if system not in ("icd10cm", "icd10pcs"):
        system = "icd10cm"
    inpatient = a.item.setting is CodingSetting.INPATIENT
    error = "" if text else ("Type a diagnosis or procedure in words (e.g. \"acute on chronic systolic heart "
                             "failure\"), or a code.")
    hits = _search_hits(text, system) if text else []
    search = {"q": text, "system": system}
    if not request.headers.get("hx-request"):
        return workbench(request, p, eid, Bench(hits=hits, search=search,
                                                general={"encoder": [error]} if error else {}))
    return render(request, "coding_encoder_results.html", {
        "eid": eid, "hits": hits, "search": search, "error": error, "inpatient": inpatient,
        "can_code": _is_coder(p) and a.item.assigned_to in (None, p.user_id) and a.status is not AbstractStatus.FINAL,
        "poa_labels": POA_LABELS,
    }, status=422 if error else 200)


@router.post("/coding/{eid}/what-if")
async def what_if(request: Request, eid: str) -> Response:
    """Regroup with a code added or removed (or made principal), nothing saved: a fragment for HTMX."""
    p = current_principal(request)
    data, _ = await checked_form_lists(request)
    _eid(eid)
    require(request, p, Action.READ, ABSTRACT)
    svc = coding(request)
    try:
        a = svc.abstract(p, eid)
    except CodingError as exc:
        raise service_error(exc) from None
    add = forms.clean(data.get("add"), 16).upper()
    kind = data.get("add_kind", "dx")
    remove = forms.clean(data.get("remove"), 16).upper().replace(".", "")
    principal = data.get("principal") == "1"
    poa = forms.clean(data.get("add_poa"), 1).upper() or "Y"
    dx = [DiagnosisInput(str(ln.code), ln.poa) for ln in a.diagnoses if str(ln.code) != remove]
    px = [ProcedureInput(str(ln.code), ln.system, ln.performed) for ln in a.procedures if str(ln.code) != remove]
    result: dict[str, Any] = {"add": add, "remove": _dotted(remove) if remove else "", "error": ""}
    if add and kind == "px":
        px.append(ProcedureInput(add, "icd10pcs"))
    elif add:
        new = DiagnosisInput(add, poa)
        dx = [new, *dx] if principal else [*dx, new]
    if not add and not remove:
        result["error"] = "Give a code to add, or choose one to remove, then regroup."
    else:
        try:
            out = svc.what_if(p, eid, dx, px)
            result.update(current=out["current"], proposed=out["proposed"])
        except CodingError as exc:
            _refused(exc)
            result["error"] = "; ".join(_sentence(i) for i in exc.issues)
    status = 422 if result["error"] else 200
    if not request.headers.get("hx-request"):
        return workbench(request, p, eid, Bench(what_if=result), status=status)
    return render(request, "coding_whatif.html", {"w": result}, status=status)


QUERY_FIELDS = ("physician_id", "question", "options", "evidence")


@router.post("/coding/{eid}/query")
async def send_query(request: Request, eid: str) -> Response:
    p, data, lists = await _coder_form(request, eid, "send a physician query")
    physician = forms.clean(data.get("physician_id"), 64)
    question = forms.clean(data.get("question"), 2000)
    options = [forms.clean(o, 200) for o in lists.get("option", [])[:10]]
    doc = forms.clean(data.get("evidence_doc"), 64)
    excerpt = forms.clean(data.get("evidence_excerpt"), 1000)
    evidence = [QueryEvidence(f"DocumentReference/{doc}", excerpt)] if doc or excerpt else []
    try:
        coding(request).send_query(p, eid, physician, question, options, evidence)
    except CodingError as exc:
        _refused(exc)
        by_field, general = _issues_by_field(exc, QUERY_FIELDS)
        values = {"physician_id": physician, "question": question, "options": options, "evidence_doc": doc,
                  "evidence_excerpt": excerpt}
        return workbench(request, p, eid, Bench(errors={"query": by_field}, general={"query": general},
                                                values={"query": values}), status=exc.status)
    return redirect(f"/coding/{eid}?queried=1#queries")


@router.post("/coding/{eid}/queries/{qid}/withdraw")
async def withdraw_query(request: Request, eid: str, qid: str) -> Response:
    p, data, _ = await _coder_form(request, eid, "withdraw a physician query")
    _valid_id(qid)
    svc = coding(request)
    try:
        q = svc.query(p, qid)
        if q.encounter_id != eid:
            raise HTTPException(404, "There is no such query on this encounter.")
        svc.withdraw_query(p, qid, forms.clean(data.get("reason"), 1000))
    except CodingError as exc:
        _refused(exc)
        return workbench(request, p, eid, Bench(errors={f"withdraw:{qid}": {"reason": _sentence(exc.issues[0])}}),
                         status=exc.status)
    return redirect(f"/coding/{eid}?withdrawn=1#queries")


@router.post("/coding/{eid}/finalize")
async def finalize(request: Request, eid: str) -> Response:
    p, _, _ = await _coder_form(request, eid, "finalize coding")
    try:
        coding(request).finalize(p, eid)
    except CodingError as exc:
        _refused(exc)
        return workbench(request, p, eid, Bench(general={"finalize": [exc.message]}), status=exc.status)
    return redirect(f"/coding/{eid}?finalized=1")


@router.post("/coding/{eid}/reopen")
async def reopen(request: Request, eid: str) -> Response:
    p, data, _ = await _coder_form(request, eid, "re-open coding")
    reason = forms.clean(data.get("reason"), 1000)
    try:
        coding(request).reopen(p, eid, reason)
    except CodingError as exc:
        _refused(exc)
        return workbench(request, p, eid, Bench(errors={"reopen": {"reason": _sentence(exc.issues[0])}},
                                                values={"reopen": reason}), status=exc.status)
    return redirect(f"/coding/{eid}?reopened=1")


# --------------------------------------------------------------------------------------------
# The physician's coding queries (rendered in the inbox by completion_pages)


def inbox_queries(request: Request, p: Principal) -> list[dict[str, Any]]:
    """The physician's open coding queries, each with its patient's name (an audited read) and the
    evidence quoted; empty for an account not linked to a practitioner."""
    if not p.practitioner_id or "physician" not in p.roles:
        return []
    try:
        found: list[Query] = coding(request).physician_queries(p)
    except CodingError as exc:
        raise service_error(exc) from None
    names: dict[str, str] = {}
    out = []
    for q in found:
        pid = q.patient_id or ""
        if pid and pid not in names:
            try:
                names[pid] = human_name(records(request).read(p, "Patient", pid).resource()) or "(no name)"
            except FhirError:
                names[pid] = "(restricted)"
        out.append({"id": q.id, "encounter_id": q.encounter_id, "patient": names.get(pid, ""), "question": q.question,
                    "options": q.options, "evidence": q.evidence, "created": q.created_at,
                    "other": next((o for o in q.options if o.lower().startswith("other")), "")})
    return out


def answer_query(request: Request, p: Principal, qid: str, answer: str, text: str) -> CodingError | None:
    """Send the physician's answer to the coding service; the refusal, when there is one."""
    try:
        coding(request).answer_query(p, qid, answer, text)
    except CodingError as exc:
        if exc.status != 422:
            raise service_error(exc) from None
        return exc
    return None


__all__ = ["CODER_ROLES", "answer_query", "highlight", "inbox_queries", "router", "svg_bars", "workbench"]

