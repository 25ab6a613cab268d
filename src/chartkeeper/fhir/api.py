"""The FHIR R4 REST API at /fhir. Thin: parse, call the record service, render.

Content type is ``application/fhir+json``. Errors are OperationOutcome resources with the status the
FHIR RESTful API specifies (400 bad request, 401/403 access, 404 unknown, 410 deleted, 412 version
conflict, 413 too large, 422 invalid resource).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from chartkeeper import __version__
from chartkeeper.fhir import bundles
from chartkeeper.fhir import searchparams as sp
from chartkeeper.fhir.errors import FhirError
from chartkeeper.fhir.search import SearchResult
from chartkeeper.fhir.service import RecordService
from chartkeeper.fhir.store import Stored, WriteResult, fhir_instant
from chartkeeper.security.principal import PendingPrincipal, Principal

FHIR_JSON = "application/fhir+json"
router = APIRouter(prefix="/fhir", tags=["FHIR R4"])


class FhirResponse(Response):
    media_type = FHIR_JSON


def fhir_error_response(err: FhirError) -> JSONResponse:
    return JSONResponse(err.outcome(), status_code=err.status, media_type=FHIR_JSON)


def service(request: Request) -> RecordService:
    return request.app.state.records  # type: ignore[no-any-return]


def principal(request: Request) -> Principal | None:
    """The caller, resolved in the endpoint's own thread (a separate dependency would cost a thread hop)."""
    if not request.app.state.settings.auth_enabled:
        return None
    from chartkeeper.security.deps import principal_from_request

    p = principal_from_request(request)
    return p  # type: ignore[no-any-return]


def pending(request: Request) -> Principal | PendingPrincipal | None:
    """The caller for RecordService.read and vread: a bearer token is checked in their transaction."""
    if not request.app.state.settings.auth_enabled:
        return None
    from chartkeeper.security.deps import pending_principal

    return pending_principal(request)


def _depth_ok(node: Any, limit: int) -> bool:
    stack = [(node, 1)]
    while stack:
        n, d = stack.pop()
        if d > limit:
            return False
        if isinstance(n, dict):
            stack.extend((v, d + 1) for v in n.values() if isinstance(v, dict | list))
        elif isinstance(n, list):
            stack.extend((v, d + 1) for v in n if isinstance(v, dict | list))
    return True


async def json_body(request: Request) -> Any:
    settings = request.app.state.settings
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and ctype not in (FHIR_JSON, "application/json", "application/json+fhir"):
        raise FhirError(415, f"Send the resource as {FHIR_JSON} (got '{ctype[:64]}').", code="not-supported")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.max_body_bytes:
        raise FhirError(413, f"The request body is larger than {settings.max_body_bytes} bytes; split it "
                        "into smaller bundles.", code="too-costly")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > settings.max_body_bytes:
            raise FhirError(413, f"The request body is larger than {settings.max_body_bytes} bytes; split it "
                            "into smaller bundles.", code="too-costly")
    if not body:
        raise FhirError(400, "The request has no body; send one FHIR resource as JSON.", code="structure")
    try:
        data = orjson.loads(bytes(body))
    except orjson.JSONDecodeError as exc:
        raise FhirError(400, f"The body is not valid JSON ({exc.msg} at position {exc.pos}).",
                        code="structure") from None
    if not _depth_ok(data, settings.max_json_depth):
        raise FhirError(400, f"The JSON is nested deeper than {settings.max_json_depth} levels; no FHIR "
                        "resource needs that.", code="structure")
    return data


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/fhir"


def _resource_response(stored: Stored | WriteResult, status: int = 200) -> Response:
    content = stored.content or ""
    vid = stored.version_id
    headers = {"ETag": f'W/"{vid}"'}
    if stored.last_updated:
        headers["Last-Modified"] = stored.last_updated.strftime("%a, %d %b %Y %H:%M:%S GMT")
    if status == 201:
        headers["Location"] = f"/fhir/{stored.resource_type}/{stored.id}/_history/{vid}"
    return FhirResponse(content, status_code=status, headers=headers)


def _json(data: Any, status: int = 200) -> Response:
    return FhirResponse(orjson.dumps(data), status_code=status)


def _entry(base: str, s: Stored, mode: str | None = None) -> bytes:
    parts = [b'{"fullUrl":', orjson.dumps(f"{base}/{s.resource_type}/{s.id}"), b',"resource":',
             (s.content or "null").encode()]
    if mode:
        parts += [b',"search":{"mode":"', mode.encode(), b'"}']
    parts.append(b"}")
    return b"".join(parts)


def _bundle(kind: str, entries: list[bytes], *, total: int | None = None,
            links: list[dict[str, str]] | None = None) -> Response:
    head: dict[str, Any] = {"resourceType": "Bundle", "type": kind}
    if total is not None and total >= 0:
        head["total"] = total
    if links:
        head["link"] = links
    raw = orjson.dumps(head)[:-1] + b',"entry":[' + b",".join(entries) + b"]}"
    return FhirResponse(raw)


def _searchset(request: Request, rtype: str, params: list[tuple[str, str]], result: SearchResult) -> Response:
    base = _base(request)
    kept = [(k, v) for k, v in params if k not in ("_offset",)]

    def link(rel: str, offset: int) -> dict[str, str]:
        return {"relation": rel, "url": f"{base}/{rtype}?" + urlencode([*kept, ("_offset", str(offset))])}

    links = [link("self", result.offset)]
    if result.count and (result.total < 0 or result.offset + result.count < result.total) and \
            len(result.matches) >= result.count:
        links.append(link("next", result.offset + result.count))
    if result.offset > 0:
        links.append(link("previous", max(0, result.offset - result.count)))
    entries = [_entry(base, s, "match") for s in result.matches]
    entries += [_entry(base, s, "include") for s in result.included]
    return _bundle("searchset", entries, total=result.total, links=links)


# --- capability statement --------------------------------------------------------------------------

@router.get("/metadata", summary="CapabilityStatement")
def metadata(request: Request) -> Response:
    resources = []
    for rtype, params in sorted(sp.PARAMS.items()):
        resources.append({
            "type": rtype,
            "interaction": [{"code": c} for c in ("read", "vread", "update", "delete", "history-instance",
                                                  "history-type", "create", "search-type")],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalUpdate": False,
            "conditionalDelete": "not-supported",
            "searchInclude": [f"{rtype}:{p.name}" for p in params if p.kind == sp.REFERENCE],
            "searchParam": [{"name": "_id", "type": "token"}, {"name": "_lastUpdated", "type": "date"}]
            + [{"name": p.name, "type": p.kind} for p in params],
            **({"operation": [{"name": "everything",
                               "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}]}
               if rtype == "Patient" else {}),
        })
    cs = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-22",
        "kind": "instance",
        "software": {"name": "Chartkeeper", "version": __version__},
        "implementation": {"description": "Chartkeeper FHIR R4 server", "url": _base(request)},
        "fhirVersion": "4.0.1",
        "format": [FHIR_JSON, "application/json"],
        "rest": [{
            "mode": "server",
            "security": {"cors": False, "description": "Bearer tokens (chartkeeper token) or a web session; "
                         "every access is checked by role and patient and audited.",
                         "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                                  "code": "Basic"}], "text": "Bearer token"}]},
            "resource": resources,
            "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}],
        }],
    }
    return _json(cs)


# --- system level ----------------------------------------------------------------------------------

@router.post("", summary="transaction or batch Bundle")
@router.post("/", include_in_schema=False)
async def system_bundle(request: Request) -> Response:
    who = await run_in_threadpool(principal, request)
    body = await json_body(request)
    svc = service(request)
    if isinstance(body, dict) and body.get("type") == "batch":
        return _json(await run_in_threadpool(svc.batch, who, body))
    bundles.check_bundle(body, ("transaction", "batch"))
    return _json(await run_in_threadpool(svc.transaction, who, body))


@router.get("/_history", summary="system history")
def system_history(request: Request, _count: int = 100, _offset: int = 0) -> Response:
    who = principal(request)
    items, total = service(request).history(who, None, count=min(_count, 1000), offset=_offset)
    return _history_bundle(request, items, total)


def _history_bundle(request: Request, items: list[Stored], total: int) -> Response:
    base = _base(request)
    entries = []
    for s in items:
        method = {"create": "POST", "update": "PUT", "delete": "DELETE"}.get(s.method or "", "PUT")
        e: dict[str, Any] = {"fullUrl": f"{base}/{s.resource_type}/{s.id}",
                             "request": {"method": method, "url": s.resource_type if method == "POST"
                                         else f"{s.resource_type}/{s.id}"},
                             "response": {"status": "204" if s.deleted else ("201" if method == "POST" else "200"),
                                          "etag": s.etag, "lastModified": fhir_instant(s.last_updated)}}
        raw = orjson.dumps(e)
        if s.content:
            raw = raw[:-1] + b',"resource":' + s.content.encode() + b"}"
        entries.append(raw)
    return _bundle("history", entries, total=total)


# --- type level ------------------------------------------------------------------------------------

@router.get("/{rtype}", summary="search")
def search_get(rtype: str, request: Request) -> Response:
    who = principal(request)
    params = list(request.query_params.multi_items())
    return _searchset(request, rtype, params, service(request).search(who, rtype, params))


@router.post("/{rtype}/_search", summary="search (POST form)")
async def search_post(rtype: str, request: Request) -> Response:
    who = await run_in_threadpool(principal, request)
    raw = (await request.body()).decode("utf-8", "replace")
    params = list(request.query_params.multi_items()) + parse_qsl(raw, keep_blank_values=True)
    result = await run_in_threadpool(service(request).search, who, rtype, params)
    return _searchset(request, rtype, params, result)


@router.post("/{rtype}", summary="create")
async def create(rtype: str, request: Request) -> Response:
    who = await run_in_threadpool(principal, request)
    body = await json_body(request)
    if isinstance(body, dict) and body.get("resourceType") != rtype:
        raise FhirError(400, f"The body's resourceType must be {rtype} when posting to /fhir/{rtype}.")
    res, created = await run_in_threadpool(
        lambda: service(request).create(who, body, if_none_exist=request.headers.get("if-none-exist")))
    return _resource_response(res, 201 if created else 200)


@router.get("/{rtype}/_history", summary="type history")
def type_history(rtype: str, request: Request, _count: int = 100, _offset: int = 0) -> Response:
    who = principal(request)
    items, total = service(request).history(who, rtype, count=min(_count, 1000), offset=_offset)
    return _history_bundle(request, items, total)


# --- instance level --------------------------------------------------------------------------------

@router.get("/Patient/{rid}/$everything", summary="Patient $everything")
def everything(rid: str, request: Request) -> Response:
    who = principal(request)
    items = service(request).everything(who, rid)
    base = _base(request)
    return _bundle("searchset", [_entry(base, s, "match") for s in items], total=len(items))


@router.get("/{rtype}/{rid}", summary="read")
def read(rtype: str, rid: str, request: Request) -> Response:
    who = pending(request)
    return _resource_response(service(request).read(who, rtype, rid))


@router.put("/{rtype}/{rid}", summary="update")
async def update(rtype: str, rid: str, request: Request) -> Response:
    who = await run_in_threadpool(principal, request)
    body = await json_body(request)
    if_match = bundles.parse_if_match(request.headers.get("if-match"))
    res = await run_in_threadpool(lambda: service(request).update(who, rtype, rid, body, if_match=if_match))
    return _resource_response(res, 201 if res.version_id == 1 else 200)


@router.delete("/{rtype}/{rid}", summary="delete (logical)")
def delete(rtype: str, rid: str, request: Request) -> Response:
    who = principal(request)
    service(request).delete(who, rtype, rid)
    return Response(status_code=204)


@router.get("/{rtype}/{rid}/_history", summary="instance history")
def instance_history(rtype: str, rid: str, request: Request, _count: int = 100, _offset: int = 0) -> Response:
    who = principal(request)
    items, total = service(request).history(who, rtype, rid, count=min(_count, 1000), offset=_offset)
    return _history_bundle(request, items, total)


@router.get("/{rtype}/{rid}/_history/{vid}", summary="vread")
def vread(rtype: str, rid: str, vid: str, request: Request) -> Response:
    if not vid.isdigit():
        principal(request)  # 401 before 400, as everywhere
        raise FhirError(400, f"The version id must be a number; got '{vid[:16]}'.")
    return _resource_response(service(request).vread(pending(request), rtype, rid, int(vid)))
