"""The cancer registrar's pages: the suspense queue (casefinding results, each report with its
matching terms highlighted; accept, link or reject), the tumour abstract (NAACCR items in sections,
the edits beside the items they name), follow-up (the due list, letters, the rate against the CoC
targets) and the reports (survival, incidence, NAACCR XML export).

Routes are thin, as in ``pages.py`` and ``coding_pages.py``: parse ids and choices, call
``RegistryService`` with the logged-in Principal (the policy check and the audit entry happen
there), render. URLs carry ids and choices only (never a name or a report's words); every form
carries the session's CSRF token. The statistics are computed in ``registry.report`` from what the
service returns.
"""

from __future__ import annotations

import io
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response, StreamingResponse
from markupsafe import Markup
from starlette.datastructures import UploadFile

from chartkeeper.fhir.errors import FhirError
from chartkeeper.registry import icdo3, report
from chartkeeper.registry.api import service as registry_service
from chartkeeper.registry.incidence import Population, PopulationFileError, Sex, load_population
from chartkeeper.registry.models import SUSPENSE_STATUSES
from chartkeeper.registry.service import (
    RECORD_TYPES,
    SOURCE_KINDS,
    VERSIONS,
    EditResult,
    ItemDef,
    RegistryError,
    RegistryService,
    Span,
    SuspenseItem,
    dictionary,
    sex_item,
)
from chartkeeper.security.policy import Action
from chartkeeper.security.principal import Principal
from chartkeeper.web import forms
from chartkeeper.web.pages import (
    _patient_banner,
    _valid_id,
    checked_form_lists,
    current_principal,
    redirect,
    render,
    require,
    require_role,
    service_error,
)

router = APIRouter(include_in_schema=False)

RTYPE = "RegistryAbstract"
REGISTRAR_ROLES = frozenset({"registrar"})
QUEUE_PAGE = 50
SOURCE_LABELS = {"pathology": "Pathology report", "diagnosis": "Coded diagnosis"}
SOURCE_PLURALS = {"pathology": "pathology reports", "diagnosis": "coded diagnoses"}
STATUS_LABELS = {"pending": "Pending", "accepted": "Accepted", "linked": "Linked", "rejected": "Rejected",
                 "all": "All"}
RECORD_TYPE_LABELS = {"A": "A: full abstract", "M": "M: modified", "C": "C: confidential", "I": "I: incidence"}
MAX_UPLOAD = 20 * 1024 * 1024


def registry(request: Request) -> RegistryService:
    return registry_service(request)


def _refused(exc: FhirError) -> None:
    """403 and 404 from the service become error pages (never the data)."""
    if exc.status in (403, 404):
        raise service_error(exc) from None


async def _registrar_form(request: Request, what: str, action: Action = Action.UPDATE
                          ) -> tuple[Principal, dict[str, str], dict[str, list[str]]]:
    p = current_principal(request)
    data, lists = await checked_form_lists(request)
    require_role(request, p, REGISTRAR_ROLES, action, RTYPE, what)
    return p, data, lists


def _can_register(p: Principal) -> bool:
    return bool(p.roles & REGISTRAR_ROLES)


# --------------------------------------------------------------------------------------------
# Highlighting the report text


@dataclass
class Segment:
    text: str
    cls: str = ""  # "" plain; "term term-<kind>" a tumour term; "cue cue-<kind>" the deciding cue
    title: str = ""


KIND_TITLES = {"malignancy": "reportable tumour term", "ambiguous-reportable": "ambiguous term that is reportable",
               "ambiguous-not-reportable": "ambiguous term that is not reportable", "negated": "negated",
               "family-history": "about a relative", "excluded": "excluded (not reportable)",
               "skin-excluded": "skin, not reportable"}


def highlight(text: str, spans: Sequence[Span]) -> list[Segment]:
    """``text`` cut into segments with the casefinding spans marked: tumour terms and the cue words
    that decided them (negation, ambiguity, family history) get different classes. Spans outside
    the text, or overlapping one already marked, stay plain; a span whose words differ from the
    text (the report changed since) is skipped."""
    out: list[Segment] = []
    pos = 0
    for s in sorted(spans, key=lambda s: (s.start, -s.end)):
        if not (0 <= s.start < s.end <= len(text)) or s.start < pos:
            continue
        if s.phrase and text[s.start:s.end].lower() != s.phrase.lower():
            continue
        if s.start > pos:
            out.append(Segment(text[pos:s.start]))
        kind = re.sub(r"[^a-z-]", "", s.kind.lower()) or "term"
        role = "cue" if s.role == "cue" else "term"
        what = KIND_TITLES.get(kind, kind)
        title = f"cue word: {what}" if role == "cue" else f"tumour term: {what}"
        out.append(Segment(text[s.start:s.end], f"{role} {role}-{kind}", title))
        pos = s.end
    if pos < len(text):
        out.append(Segment(text[pos:]))
    return out


def site_text(site: str) -> str:
    if not site:
        return ""
    try:
        name = icdo3.site_name(site)
    except (ValueError, KeyError):
        name = None
    return f"{site[:3]}.{site[3:]} {name}" if name else site


def histology_text(hist: str, behavior: str = "") -> str:
    if not hist:
        return ""
    try:
        name = icdo3.histology_name(hist)
    except (ValueError, KeyError):
        name = None
    code = f"{hist}/{behavior}" if behavior else hist
    return f"{code} {name}" if name else code


# --------------------------------------------------------------------------------------------
# The suspense queue


@dataclass
class QueueFilter:
    status: str = "pending"
    source: str = ""
    page: int = 1

    def query(self, *, page: int | None = None) -> str:
        parts = []
        if self.status != "pending":
            parts.append(f"status={self.status}")
        if self.source:
            parts.append(f"source={self.source}")
        p = self.page if page is None else page
        if p > 1:
            parts.append(f"page={p}")
        return "&".join(parts)


def parse_queue_filter(params: Mapping[str, str]) -> tuple[QueueFilter, dict[str, str]]:
    f = QueueFilter()
    errors: dict[str, str] = {}
    status = params.get("status", "") or "pending"
    if status in (*SUSPENSE_STATUSES, "all"):
        f.status = status
    else:
        errors["status"] = "Status: choose pending, accepted, linked, rejected or all."
    source = params.get("source", "")
    if source in SOURCE_KINDS:
        f.source = source
    elif source:
        errors["source"] = "Source: choose pathology report or coded diagnosis."
    raw = params.get("page", "1")
    f.page = int(raw) if raw.isdigit() and 0 < int(raw) < 100_000 else 1
    return f, errors


QUEUE_NOTICES = {"linked": "Linked to the existing tumour; no new case was made.",
                 "rejected": "Rejected: not a reportable case (the reason is kept)."}


def _row(r: SuspenseItem, patients: Mapping[str, str]) -> dict[str, Any]:
    return {"id": r.id, "patient": patients.get(r.patient_id or "", ""), "source": SOURCE_LABELS.get(r.kind, r.kind),
            "kind": r.kind, "date": r.source_date, "site": site_text(r.suggested_site),
            "histology": histology_text(r.suggested_histology, r.suggested_behavior), "code": r.code,
            "link": r.link_tumor_id, "status": r.status, "reason": r.reason, "tumor_id": r.tumor_id}


@router.get("/registry")
def queue_page(request: Request) -> Response:
    p = current_principal(request)
    require(request, p, Action.SEARCH, RTYPE)
    svc = registry(request)
    f, errors = parse_queue_filter(request.query_params)
    try:
        counts = svc.suspense_counts(p)
        by_source = svc.pending_by_source(p)
        page = svc.suspense(p, status=f.status, kind=f.source or None, limit=QUEUE_PAGE,
                            offset=(f.page - 1) * QUEUE_PAGE)
    except RegistryError as exc:
        raise service_error(exc) from None
    notice = next((v for k, v in QUEUE_NOTICES.items() if request.query_params.get(k) == "1"), "")
    return render(request, "registry_queue.html", {
        "f": f, "rows": [_row(r, page.patients) for r in page.rows], "total": page.total, "counts": counts,
        "by_source": by_source, "sources": SOURCE_LABELS, "plurals": SOURCE_PLURALS, "statuses": STATUS_LABELS,
        "filter_errors": errors,
        "notice": notice, "pages": max(1, -(-page.total // QUEUE_PAGE)), "page_query": f.query,
        "can_register": _can_register(p),
    }, status=400 if errors else 200)


def item_page(request: Request, p: Principal, sid: str, *, errors: dict[str, str] | None = None,
              values: dict[str, str] | None = None, general: Sequence[str] = (), status: int = 200) -> Response:
    svc = registry(request)
    try:
        item = svc.suspense_item(p, sid)
        tumors = svc.abstracts(p, item.patient_id) if item.patient_id else []
    except RegistryError as exc:
        raise service_error(exc) from None
    banner = _patient_banner(request, p, item.patient_id) if item.patient_id else None
    segments = highlight(item.text or "", item.matches) if item.text else []
    terms = [m for m in item.matches if m.role != "cue"]
    cues = [m for m in item.matches if m.role == "cue"]
    errors = dict(errors or {})
    general = list(general)
    if "tumor_id" in errors and not tumors:  # no link form to show it beside
        general.append("This patient has no tumour abstract to link to: " + errors.pop("tumor_id"))
    tumor_rows = [{"id": a.id, "site": site_text(str(a.primary_site or "")),
                   "histology": histology_text(str(a.histology or ""), str(a.behavior or "")),
                   "date": a.date_of_diagnosis, "sequence": a.sequence_number} for a in tumors]
    return render(request, "registry_item.html", {
        "item": item, "b": banner, "segments": segments, "terms": terms, "cues": cues,
        "source": SOURCE_LABELS.get(item.kind, item.kind), "site": site_text(item.suggested_site),
        "histology": histology_text(item.suggested_histology, item.suggested_behavior), "tumors": tumor_rows,
        "can_register": _can_register(p) and item.status == "pending", "errors": errors,
        "values": values or {}, "general": general,
    }, status=status)


@router.get("/registry/suspense/{sid}")
def suspense_page(request: Request, sid: str) -> Response:
    p = current_principal(request)
    _valid_id(sid)
    require(request, p, Action.READ, RTYPE)
    return item_page(request, p, sid)


@router.post("/registry/suspense/{sid}/accept")
async def accept(request: Request, sid: str) -> Response:
    p, data, _ = await _registrar_form(request, "make a registry case", Action.CREATE)
    _valid_id(sid)
    try:
        a = registry(request).accept(p, sid, new_primary=data.get("new_primary") == "1")
    except RegistryError as exc:
        _refused(exc)
        return item_page(request, p, sid, general=[exc.message], status=exc.status)
    return redirect(f"/registry/abstracts/{a.id}?accepted=1")


@router.post("/registry/suspense/{sid}/link")
async def link(request: Request, sid: str) -> Response:
    p, data, _ = await _registrar_form(request, "link a report to a tumour")
    _valid_id(sid)
    tumor = forms.clean(data.get("tumor_id"), 64)
    try:
        registry(request).link(p, sid, tumor)
    except RegistryError as exc:
        _refused(exc)
        if exc.status != 422:
            return item_page(request, p, sid, general=[exc.message], status=exc.status)
        return item_page(request, p, sid, errors={"tumor_id": exc.message.removeprefix("tumor: ")},
                         status=exc.status)
    return redirect("/registry?linked=1")


@router.post("/registry/suspense/{sid}/reject")
async def reject(request: Request, sid: str) -> Response:
    p, data, _ = await _registrar_form(request, "reject a suspense item")
    _valid_id(sid)
    reason = forms.clean(data.get("reason"), 1000)
    try:
        registry(request).reject(p, sid, reason)
    except RegistryError as exc:
        _refused(exc)
        if exc.status != 422:
            return item_page(request, p, sid, general=[exc.message], status=exc.status)
        msg = exc.message.removeprefix("reason: ")
        return item_page(request, p, sid, errors={"reason": msg[:1].upper() + msg[1:]}, values={"reason": reason},
                         status=exc.status)
    return redirect("/registry?rejected=1")


# --------------------------------------------------------------------------------------------
# The abstract


# (level, naaccrId): "p" patient-level, "t" tumour-level; "sex" stands for the version's sex item.
SECTIONS: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    ("identity", "Identity and demographics", (
        ("p", "patientIdNumber"), ("p", "nameLast"), ("p", "nameFirst"), ("p", "nameMiddle"), ("p", "dateOfBirth"),
        ("p", "sex"), ("p", "race1"), ("p", "spanishHispanicOrigin"), ("t", "medicalRecordNumber"),
        ("t", "accessionNumberHosp"), ("t", "addrAtDxCity"), ("t", "addrAtDxState"), ("t", "countyAtDx"),
        ("t", "addrAtDxPostalCode"))),
    ("diagnosis", "Diagnosis", (
        ("t", "primarySite"), ("t", "histologicTypeIcdO3"), ("t", "behaviorCodeIcdO3"), ("t", "laterality"),
        ("t", "gradeClinical"), ("t", "gradePathological"), ("t", "dateOfDiagnosis"),
        ("t", "diagnosticConfirmation"), ("t", "sequenceNumberHospital"), ("t", "classOfCase"),
        ("t", "casefindingSource"), ("t", "dateOf1stContact"))),
    ("stage", "Stage", (
        ("t", "summaryStage2018"), ("t", "tnmEditionNumber"), ("t", "tnmClinT"), ("t", "tnmClinN"), ("t", "tnmClinM"),
        ("t", "tnmClinStageGroup"), ("t", "tnmPathT"), ("t", "tnmPathN"), ("t", "tnmPathM"),
        ("t", "tnmPathStageGroup"))),
    ("treatment", "First course of treatment", (
        ("t", "rxDateSurgery"), ("t", "rxDateMostDefinSurg"), ("t", "rxSummSurgPrimSite2023"), ("t", "rxDateRadiation"),
        ("t", "phase1RadiationTreatmentModality"), ("t", "rxDateChemo"), ("t", "rxSummChemo"), ("t", "rxDateHormone"),
        ("t", "rxSummHormone"), ("t", "rxDateBrm"), ("t", "rxSummBrm"))),
    ("followup", "Follow-up", (
        ("p", "dateOfLastContact"), ("p", "vitalStatus"), ("t", "cancerStatus"), ("p", "causeOfDeath"))),
)
READ_ONLY = frozenset({"patientIdNumber"})
HINTS = {
    "primarySite": "ICD-O-3 topography, e.g. C504", "histologicTypeIcdO3": "ICD-O-3 histology, e.g. 8500",
    "behaviorCodeIcdO3": "2 in situ, 3 malignant", "laterality": "0 not paired, 1 right, 2 left, 4 bilateral, 9 unknown",
    "diagnosticConfirmation": "1 positive histology, 2 cytology, 8 clinical only, 9 unknown",
    "classOfCase": "10-14 diagnosed here, 20-22 treated here, 00 diagnosed here, treated elsewhere",
    "casefindingSource": "20 pathology review, 22 disease index", "summaryStage2018": "0 in situ, 1 localized, "
    "2-4 regional, 7 distant, 9 unknown", "vitalStatus": "0 dead, 1 alive", "cancerStatus": "1 no evidence, "
    "2 evidence of this tumour, 9 unknown", "sex": "1 male, 2 female, 9 unknown",
    "sequenceNumberHospital": "00 one primary only, 01 first of two or more", "race1": "01 white, 02 black, ...",
    "causeOfDeath": "ICD-10 code of the underlying cause, 0000 alive",
    "gradeClinical": "1-3, or 9 unknown", "gradePathological": "1-3, or 9 unknown",
}


@dataclass
class FieldView:
    key: str  # the form field name: "t:primarySite" / "p:nameLast"
    naaccr_id: str
    number: int
    name: str
    length: int
    data_type: str
    value: str
    hint: str
    read_only: bool = False
    error: str = ""
    edits: list[EditResult] = field(default_factory=list)

    @property
    def fid(self) -> str:
        return "i-" + self.naaccr_id


@dataclass
class SectionView:
    sid: str
    title: str
    fields: list[FieldView]

    @property
    def problems(self) -> int:
        return sum(1 for f in self.fields if f.error or any(e.severity == "error" for e in f.edits))


def _fields(svc: RegistryService) -> list[tuple[str, str, str, ItemDef]]:
    """(section, level, naaccrId, dictionary item) of every field shown, skipping items that the
    registry's NAACCR version does not have."""
    d = dictionary(svc.version)
    out = []
    for sid, _title, entries in SECTIONS:
        for level, key in entries:
            nid = sex_item(svc.version) if key == "sex" else key
            item = d.get(nid)
            if item is not None:
                out.append((sid, level, nid, item))
    return out


def _edits_sorted(edits: Sequence[EditResult]) -> list[EditResult]:
    return sorted(edits, key=lambda e: (e.severity != "error", e.edit_id))


def abstract_page(request: Request, p: Principal, tid: str, *, submitted: dict[str, str] | None = None,
                  item_errors: dict[str, str] | None = None, general: Sequence[str] = (), status: int = 200,
                  notice: str = "") -> Response:
    svc = registry(request)
    try:
        a = svc.abstract(p, tid)
    except RegistryError as exc:
        raise service_error(exc) from None
    banner = _patient_banner(request, p, a.patient_id) if a.patient_id else None
    edits = _edits_sorted(a.edits)
    sections = []
    placed: set[int] = set()
    item_errors = item_errors or {}
    for sid, title, _ in SECTIONS:
        views = []
        for s, level, nid, item in _fields(svc):
            if s != sid:
                continue
            stored = (a.patient_items if level == "p" else a.items).get(nid, "")
            key = f"{level}:{nid}"
            value = submitted.get(key, stored) if submitted is not None else stored
            mine = [e for e in edits if nid in e.items]
            placed |= {i for i, e in enumerate(edits) if nid in e.items}
            hint_key = "sex" if nid == sex_item(svc.version) else nid
            views.append(FieldView(key, nid, item.number, item.name, item.length, item.data_type, value,
                                   HINTS.get(hint_key, "YYYYMMDD" if item.data_type == "date" else ""),
                                   nid in READ_ONLY, item_errors.get(nid, ""), mine))
        sections.append(SectionView(sid, title, views))
    unplaced = [e for i, e in enumerate(edits) if i not in placed]
    n_errors = sum(1 for e in edits if e.severity == "error")
    return render(request, "registry_abstract.html", {
        "a": a, "b": banner, "sections": sections, "edits": edits, "unplaced": unplaced, "n_errors": n_errors,
        "n_warnings": len(edits) - n_errors, "general": list(general), "notice": notice or _abstract_notice(request),
        "site": site_text(str(a.primary_site or "")),
        "histology": histology_text(str(a.histology or ""), str(a.behavior or "")),
        "can_register": _can_register(p), "version": svc.version, "failed": submitted is not None,
    }, status=status)


def _abstract_notice(request: Request) -> str:
    if request.query_params.get("accepted") == "1":
        return "Case made: the abstract is prefilled from the record. Complete it and save; the edits run on every save."
    if request.query_params.get("saved") == "1":
        return "Saved. The edits below ran on what was saved."
    return ""


@router.get("/registry/abstracts/{tid}")
def abstract_get(request: Request, tid: str) -> Response:
    p = current_principal(request)
    _valid_id(tid)
    require(request, p, Action.READ, RTYPE)
    return abstract_page(request, p, tid)


@router.post("/registry/abstracts/{tid}")
async def abstract_save(request: Request, tid: str) -> Response:
    p, data, _ = await _registrar_form(request, "change a tumour abstract")
    _valid_id(tid)
    svc = registry(request)
    try:
        current = svc.abstract(p, tid)
    except RegistryError as exc:
        raise service_error(exc) from None
    submitted: dict[str, str] = {}
    items: dict[str, str] = {}
    patient_items: dict[str, str] = {}
    for _sid, level, nid, item in _fields(svc):
        key = f"{level}:{nid}"
        if nid in READ_ONLY or key not in data:
            continue
        value = forms.clean(data.get(key), max(item.length, 1) * 4)
        submitted[key] = value
        stored = (current.patient_items if level == "p" else current.items).get(nid, "")
        if value != stored:
            (patient_items if level == "p" else items)[nid] = value
    if not items and not patient_items:
        return redirect(f"/registry/abstracts/{tid}?saved=1")
    try:
        svc.save_abstract(p, tid, items, patient_items)
    except RegistryError as exc:
        _refused(exc)
        errors: dict[str, str] = {}
        general: list[str] = ["Nothing was saved: correct the items marked below (what you typed is kept)."]
        for issue in exc.issues:
            if issue.path and any(issue.path == nid for _s, _l, nid, _i in _fields(svc)):
                errors[issue.path] = " ".join(x for x in (errors.get(issue.path, ""), issue.message) if x)
            else:
                general.append(issue.message)
        return abstract_page(request, p, tid, submitted=submitted, item_errors=errors, general=general,
                             status=exc.status)
    return redirect(f"/registry/abstracts/{tid}?saved=1")


# --------------------------------------------------------------------------------------------
# Follow-up


def _months(raw: str | None) -> tuple[int, str]:
    if not raw:
        return 12, ""
    if raw.isdigit() and 1 <= int(raw) <= 120:
        return int(raw), ""
    return 12, "Months: give a number between 1 and 120."


def followup_page(request: Request, p: Principal, *, months: int = 12, error: str = "", status: int = 200,
                  notice: str = "") -> Response:
    svc = registry(request)
    try:
        due = svc.followup_due(p, months=months)
        rate = svc.followup_rate(p)
    except RegistryError as exc:
        raise service_error(exc) from None
    rows = [{"id": d.registry_patient_id, "patient": d.label if d.patient_id else _imported_label(d.patient_items, d.label),
             "accession": d.accession,
             "last_contact": d.date_of_last_contact,
             "tumors": ", ".join(f"{site_text(s) or 'site not coded'}{f' ({y})' if y else ''}" for s, y in d.tumors)}
            for d in due]
    return render(request, "registry_followup.html", {
        "rows": rows, "rate": rate, "months": months, "error": error, "notice": notice or _followup_notice(request),
        "can_register": _can_register(p),
    }, status=status)


def _imported_label(items: Mapping[str, str], number: str) -> str:
    """A patient imported from another registry's file has no record: the name from the abstract."""
    name = " ".join(x for x in (items.get("nameFirst", ""), items.get("nameLast", "")) if x)
    return f"{name} (registry {number})" if name else f"registry patient {number}"


def _followup_notice(request: Request) -> str:
    n = request.query_params.get("refreshed", "")
    if n.isdigit():
        return f"Follow-up refreshed from the record: {n} patient{'' if n == '1' else 's'} changed."
    return ""


@router.get("/registry/followup")
def followup_get(request: Request) -> Response:
    p = current_principal(request)
    require(request, p, Action.SEARCH, RTYPE)
    months, err = _months(request.query_params.get("months"))
    return followup_page(request, p, months=months, error=err, status=400 if err else 200)


@router.post("/registry/followup/letters")
async def followup_letters(request: Request) -> Response:
    p, data, lists = await _registrar_form(request, "write follow-up letters", Action.EXPORT)
    months, err = _months(data.get("months"))
    ids = [i for i in lists.get("ids", []) if re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", i)][:5000]
    if err:
        return followup_page(request, p, months=months, error=err, status=422)
    if data.get("scope") != "all" and not ids:
        return followup_page(request, p, months=months, status=422,
                             error="Tick the patients to write to, or choose letters for everyone due.")
    try:
        pdf = registry(request).followup_letters(p, None if data.get("scope") == "all" else ids, months=months)
    except RegistryError as exc:
        _refused(exc)
        return followup_page(request, p, months=months, error=exc.message, status=exc.status)
    stamp = datetime.now(UTC).strftime("%Y%m%d")
    return Response(pdf, media_type="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="follow-up-letters-{stamp}.pdf"',
                             "Cache-Control": "no-store"})


@router.post("/registry/followup/refresh")
async def followup_refresh(request: Request) -> Response:
    p, _data, _ = await _registrar_form(request, "refresh follow-up from the record")
    try:
        n = registry(request).refresh_follow_up(p)
    except RegistryError as exc:
        _refused(exc)
        return followup_page(request, p, error=exc.message, status=exc.status)
    return redirect(f"/registry/followup?refreshed={n}")


# --------------------------------------------------------------------------------------------
# Reports


def _by(raw: str | None) -> tuple[report.Strata, str]:
    if not raw:
        return "site", ""
    if raw in report.STRATA:
        return raw, ""  # type: ignore[return-value]
    return "site", "Group by: choose site group, stage, sex, year of diagnosis or all cases."


def _demo_population() -> Population:
    return _demo_population_on(datetime.now(UTC).date())


@lru_cache(maxsize=2)
def _demo_population_on(day: date) -> Population:
    """The demo's county population file, read once a day (it is made from fixed numbers)."""
    from chartkeeper.demo.registry import county_population

    return load_population(county_population(day))


@dataclass
class IncidenceChoice:
    level: str = "county"
    sex: str = ""
    year: str = ""


def _incidence_choice(params: Mapping[str, str], errors: list[str]) -> IncidenceChoice:
    c = IncidenceChoice()
    level = params.get("level", "") or "county"
    if level in ("county", "state"):
        c.level = level
    else:
        errors.append("Area: choose county or state.")
    sex = params.get("sex", "")
    if sex in ("", "M", "F"):
        c.sex = sex
    else:
        errors.append("Sex: choose both, male or female.")
    year = params.get("year", "")
    if year == "" or (year.isdigit() and len(year) == 4):
        c.year = year
    else:
        errors.append("Year: choose a year from the list, or all years.")
    return c


def _incidence(records: list[Any], population: Population, c: IncidenceChoice, errors: list[str]
               ) -> report.IncidenceReport | None:
    try:
        return report.incidence_report(records, population, level="state" if c.level == "state" else "county",
                                       years=[int(c.year)] if c.year else None,
                                       sex=Sex(c.sex) if c.sex else None)
    except ValueError as exc:
        errors.append(str(exc))
        return None


def reports_page(request: Request, p: Principal, *, population: Population | None = None, source: str = "demo",
                 choice: IncidenceChoice | None = None, errors: Sequence[str] = (),
                 population_problems: Sequence[str] = (), status: int = 200) -> Response:
    by, by_error = _by(request.query_params.get("by"))
    try:
        records = registry(request).report_records(p)
    except RegistryError as exc:
        raise service_error(exc) from None
    surv = report.survival_report(records, by)
    errs = list(errors) + ([by_error] if by_error else [])
    choice = choice or _incidence_choice(request.query_params, errs)
    inc = None
    if population is None and not population_problems:
        population = _demo_population()
    if population is not None:
        inc = _incidence(records, population, choice, errs)
    years = list(population.years) if population is not None else []
    return render(request, "registry_reports.html", {
        "by": by, "strata": report.STRATA, "surv": surv, "svg": Markup(surv.svg),  # noqa: S704 - plots escape text
        "inc": inc, "inc_svg": Markup(inc.svg) if inc else "",  # noqa: S704 - plots escape text
        "choice": choice, "years": years, "source": source, "errors": errs,
        "population_problems": list(population_problems), "versions": VERSIONS, "record_types": RECORD_TYPE_LABELS,
        "n_records": len(records), "fmt_pct": _pct, "fmt_months": _fmt_months,
    }, status=status if not by_error else 400)


def _pct(x: float) -> str:
    return "—" if x != x else f"{x * 100:.1f}%"  # NaN: beyond the follow-up


def _fmt_months(x: float) -> str:
    return "not reached" if x == float("inf") else f"{x:.1f}"


@router.get("/registry/reports")
def reports_get(request: Request) -> Response:
    p = current_principal(request)
    require(request, p, Action.SEARCH, RTYPE)
    return reports_page(request, p)


def _csv_response(text: str, name: str) -> Response:
    return Response(text, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})


def _survival_download(request: Request, table: Callable[[report.SurvivalReport], str], name: str) -> Response:
    p = current_principal(request)
    require(request, p, Action.SEARCH, RTYPE)
    by, err = _by(request.query_params.get("by"))
    if err:
        raise HTTPException(400, err)
    rep = report.survival_report(registry(request).report_records(p), by)
    return _csv_response(table(rep), f"{name}-by-{by}.csv")


@router.get("/registry/reports/survival.csv")
def survival_csv(request: Request) -> Response:
    return _survival_download(request, report.survival_csv, "survival")


@router.get("/registry/reports/life-table.csv")
def life_table_csv(request: Request) -> Response:
    return _survival_download(request, report.life_table_csv, "life-table")


@router.get("/registry/reports/incidence.csv")
def incidence_csv(request: Request) -> Response:
    """Incidence over the demo population file (an uploaded file answers with CSV from the POST)."""
    p = current_principal(request)
    require(request, p, Action.SEARCH, RTYPE)
    errors: list[str] = []
    choice = _incidence_choice(request.query_params, errors)
    inc = None if errors else _incidence(registry(request).report_records(p), _demo_population(), choice, errors)
    if inc is None:
        raise HTTPException(400, " ".join(errors))
    return _csv_response(report.incidence_csv(inc), f"incidence-by-{choice.level}.csv")


@router.get("/registry/reports/demo-population.csv")
def demo_population_csv(request: Request) -> Response:
    """The demo's synthetic county population file: the format to upload."""
    p = current_principal(request)
    require(request, p, Action.SEARCH, RTYPE)
    from chartkeeper.demo.registry import county_population

    return _csv_response(county_population(datetime.now(UTC).date()), "demo-county-population.csv")


@router.post("/registry/reports/incidence")
async def incidence_upload(request: Request) -> Response:
    """Incidence over an uploaded population file: the report page, or the rates as CSV."""
    p = current_principal(request)
    from chartkeeper.security.deps import check_csrf

    form = await request.form()
    check_csrf(request, str(form.get("csrf_token") or ""))
    require(request, p, Action.SEARCH, RTYPE)
    params = {k: v for k, v in form.items() if isinstance(v, str)}
    errors: list[str] = []
    choice = _incidence_choice(params, errors)
    upload = form.get("population")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return reports_page(request, p, choice=choice, status=422, errors=[
            *errors, "Population file: choose a CSV file to upload (columns county_fips, state, year, sex, age_group, "
            "population), or use the demo file."])
    raw = await upload.read(MAX_UPLOAD + 1)
    if len(raw) > MAX_UPLOAD:
        return reports_page(request, p, choice=choice, status=413, errors=[
            f"Population file: {upload.filename[:80]} is larger than {MAX_UPLOAD // (1024 * 1024)} MB; split it by year."])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return reports_page(request, p, choice=choice, status=422, source="upload", population_problems=[
            f"{upload.filename[:80]} is not UTF-8 text: save it as CSV (UTF-8) and upload it again."])
    try:
        population = load_population(io.StringIO(text))
    except PopulationFileError as exc:
        shown = [str(x) for x in exc.problems[:50]]
        if len(exc.problems) > 50:
            shown.append(f"... and {len(exc.problems) - 50} more problems.")
        return reports_page(request, p, choice=choice, status=422, source="upload", population_problems=shown)
    if params.get("format") == "csv" and not errors:
        inc = _incidence(registry(request).report_records(p), population, choice, errors)
        if inc is not None:
            return _csv_response(report.incidence_csv(inc), f"incidence-by-{choice.level}.csv")
    return reports_page(request, p, population=population, source="upload", choice=choice, errors=errors,
                        status=422 if errors else 200)


@router.get("/registry/export")
def export(request: Request) -> Response:
    """The registry as a NAACCR XML file (version and record type from the form; audited as an export)."""
    p = current_principal(request)
    require(request, p, Action.EXPORT, RTYPE)
    version = request.query_params.get("version", "260")
    record_type = request.query_params.get("record_type", "A")
    if version not in VERSIONS or record_type not in RECORD_TYPES:
        raise HTTPException(400, f"NAACCR version: choose {' or '.join(VERSIONS)}; record type: choose one of "
                                 f"{', '.join(RECORD_TYPES)}.")
    buf = tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024)  # noqa: SIM115 - closed by the stream
    try:
        registry(request).export(p, buf, version=version, record_type=record_type)
    except BaseException:
        buf.close()
        raise
    buf.seek(0)

    def chunks() -> Iterator[bytes]:
        with buf:
            while block := buf.read(256 * 1024):
                yield block

    name = f"registry-naaccr-{version}-{record_type}.xml"
    return StreamingResponse(chunks(), media_type="application/xml",
                             headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})


# --------------------------------------------------------------------------------------------
# Home page counts (called from pages.home_queues)


def home_counts(request: Request, p: Principal) -> dict[str, int]:
    """The registrar's numbers for the home page: pending suspense items (all, and by source) and
    patients due for follow-up."""
    svc = registry(request)
    counts = svc.suspense_counts(p)
    by_source = svc.pending_by_source(p)
    due = svc.followup_due_count(p)
    return {"pending": counts.get("pending", 0), "pathology": by_source.get("pathology", 0),
            "diagnosis": by_source.get("diagnosis", 0), "due": due}


__all__ = ["REGISTRAR_ROLES", "highlight", "home_counts", "router"]
