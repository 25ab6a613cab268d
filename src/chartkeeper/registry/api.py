"""The registry's JSON API at /api/registry. Thin: parse, call the registry service, render.

Errors come back as OperationOutcome JSON with the service's status (403 not allowed, 404 unknown,
409 already decided, 422 a bad value naming the item). Writes from a browser session need the
X-CSRF-Token header; bearer-token calls do not.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import date
from typing import Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import Response, StreamingResponse

from chartkeeper.registry.service import Abstract, EditResult, RegistryService, SuspenseItem, current_screener
from chartkeeper.security.deps import check_csrf, principal_from_request
from chartkeeper.security.principal import Principal

router = APIRouter(prefix="/api/registry", tags=["Cancer registry"])


def _svc(request: Request) -> RegistryService:
    svc = getattr(request.app.state, "registry", None)
    if not isinstance(svc, RegistryService):
        svc = RegistryService(request.app.state.db, request.app.state.records, screener=current_screener())
        request.app.state.registry = svc
    return svc


service = _svc  # the registry service of this app, for the web pages


def _who(request: Request, *, write: bool = False) -> Principal:
    p = principal_from_request(request)
    if write:
        check_csrf(request)
    return p


def _item(r: SuspenseItem) -> dict[str, Any]:
    return {"id": r.id, "source": {"type": r.source_type, "id": r.source_id}, "patient_id": r.patient_id,
            "kind": r.kind, "source_date": r.source_date.isoformat() if r.source_date else None,
            "found_at": r.found_at.isoformat(), "reason": r.reason,
            "matches": [m.__dict__ for m in r.matches], "code": r.code,
            "suggested": {"primary_site": r.suggested_site, "histology": r.suggested_histology,
                          "behavior": r.suggested_behavior, "laterality": r.suggested_laterality},
            "link_tumor_id": r.link_tumor_id, "status": r.status, "decided_at": r.decided_at.isoformat()
            if r.decided_at else None, "reject_reason": r.reject_reason, "tumor_id": r.tumor_id,
            **({"text": r.text} if r.text is not None else {})}


def _abstract(a: Abstract) -> dict[str, Any]:
    return a.as_dict()


def _edits(edits: list[EditResult]) -> dict[str, Any]:
    return {"errors": sum(1 for e in edits if e.severity == "error"), "edits": [e.as_dict() for e in edits]}


@router.get("/suspense")
def suspense(request: Request, status: str = "pending", limit: int = Query(100, ge=1, le=500),
             offset: int = Query(0, ge=0)) -> dict[str, Any]:
    """The suspense queue, oldest source first."""
    page = _svc(request).suspense(_who(request), status=status, limit=limit, offset=offset)
    return {"total": page.total, "rows": [_item(r) for r in page.rows], "patients": page.patients}


@router.get("/suspense/counts")
def suspense_counts(request: Request) -> dict[str, int]:
    return _svc(request).suspense_counts(_who(request))


@router.get("/suspense/{suspense_id}")
def suspense_item(request: Request, suspense_id: str) -> dict[str, Any]:
    """One suspense item with its report's text (``matches`` are spans into ``text``)."""
    return _item(_svc(request).suspense_item(_who(request), suspense_id))


@router.post("/suspense/{suspense_id}/accept", status_code=201)
def accept(request: Request, suspense_id: str, new_primary: bool = Body(False, embed=True)) -> dict[str, Any]:
    """Make a case: the registry patient and a tumour abstract prefilled from the record."""
    return _abstract(_svc(request).accept(_who(request, write=True), suspense_id, new_primary=new_primary))


@router.post("/suspense/{suspense_id}/reject")
def reject(request: Request, suspense_id: str, reason: str = Body("", embed=True)) -> dict[str, Any]:
    return _item(_svc(request).reject(_who(request, write=True), suspense_id, reason))


@router.post("/suspense/{suspense_id}/link")
def link(request: Request, suspense_id: str, tumor_id: str = Body(..., embed=True)) -> dict[str, Any]:
    return _item(_svc(request).link(_who(request, write=True), suspense_id, tumor_id))


@router.get("/abstracts/{tumor_id}")
def get_abstract(request: Request, tumor_id: str) -> dict[str, Any]:
    return _abstract(_svc(request).abstract(_who(request), tumor_id))


@router.put("/abstracts/{tumor_id}")
def put_abstract(request: Request, tumor_id: str, items: dict[str, Any] = Body(default_factory=dict),
                 patient_items: dict[str, Any] = Body(default_factory=dict)) -> dict[str, Any]:
    """Save items (an empty value removes one); 422 names every bad item and saves nothing."""
    return _abstract(_svc(request).save_abstract(_who(request, write=True), tumor_id, items, patient_items))


@router.get("/abstracts/{tumor_id}/edits")
def get_edits(request: Request, tumor_id: str) -> dict[str, Any]:
    return _edits(_svc(request).edits(_who(request), tumor_id))


@router.get("/followup/due")
def followup_due(request: Request, months: int = Query(12, ge=1, le=120)) -> list[dict[str, Any]]:
    return [d.as_dict() for d in _svc(request).followup_due(_who(request), months=months)]


@router.get("/followup/letters.pdf")
def followup_letters(request: Request, months: int = Query(12, ge=1, le=120),
                     ids: list[str] | None = Query(None, description="Registry patient ids; default: all due.")) -> Response:
    pdf = _svc(request).followup_letters(_who(request), ids, months=months)
    return Response(pdf, media_type="application/pdf",
                    headers={"Content-Disposition": 'attachment; filename="follow-up-letters.pdf"'})


@router.get("/followup/rate")
def followup_rate(request: Request, report_date: date | None = None) -> dict[str, Any]:
    return _svc(request).followup_rate(_who(request), report_date=report_date).as_dict()


@router.get("/export")
def export(request: Request, naaccr_version: str = "260", record_type: str = "A") -> Response:
    """The registry as a NAACCR XML file (written to a spooled temporary file, then streamed)."""
    buf = tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024)  # noqa: SIM115 - closed by the stream
    try:
        _svc(request).export(_who(request), buf, version=naaccr_version, record_type=record_type)
    except BaseException:
        buf.close()
        raise
    buf.seek(0)

    def chunks() -> Iterator[bytes]:
        with buf:
            while block := buf.read(256 * 1024):
                yield block

    return StreamingResponse(chunks(), media_type="application/xml",
                             headers={"Content-Disposition": f'attachment; filename="registry-naaccr-{naaccr_version}.xml"'})
