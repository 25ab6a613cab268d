"""Bundles: transaction (all or nothing), batch (each entry alone) and bulk import.

``plan`` turns a bundle's entries into planned writes with final ids and every ``urn:uuid:``
reference rewritten to ``Type/id``. Transactions and imports share it; they differ in how ids are
chosen: a transaction gives POSTed resources new server ids (FHIR create), an import keeps the
resources' own ids so that importing the same file twice changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy import Connection

from chartkeeper.fhir import search
from chartkeeper.fhir import searchparams as sp
from chartkeeper.fhir.errors import FhirError, Issue
from chartkeeper.fhir.store import FhirStore, Stored, WriteResult, fhir_instant, new_id

ID_RE = re.compile(r"^[A-Za-z0-9\-\.]{1,64}$")
_URN_RE = re.compile(r"^urn:(uuid|oid):[A-Za-z0-9\-\.]+$")

# (action, resource type, patient id, resource id) -> raises to deny
Authorize = Callable[[str, str, "str | None", "str | None"], None]


@dataclass
class Planned:
    index: int
    method: str  # POST | PUT | DELETE | GET
    resource_type: str
    id: str | None
    resource: dict[str, Any] | None
    if_match: int | None = None
    if_none_exist: str | None = None
    url: str = ""
    full_url: str | None = None
    # POST resolved by ifNoneExist to an existing resource: nothing to write.
    existing: Stored | None = None


def entry_error(index: int, message: str, code: str = "invalid", path: str | None = None) -> Issue:
    where = f"Bundle.entry[{index}]" + (f".resource ({path})" if path else "")
    return Issue(f"{where}: {message}", code=code, path=f"Bundle.entry[{index}]" + (f".resource.{path}" if path else ""))


def parse_if_match(value: str | None) -> int | None:
    if not value:
        return None
    m = re.fullmatch(r'(?:W/)?"?(\d+)"?', value.strip())
    if not m:
        raise FhirError(400, f"If-Match must look like W/\"3\" (a version number); got '{value[:32]}'.")
    return int(m.group(1))


def check_bundle(bundle: object, allowed: tuple[str, ...]) -> list[dict[str, Any]]:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise FhirError(400, "The body must be a FHIR Bundle (resourceType 'Bundle').", code="structure")
    if bundle.get("type") not in allowed:
        raise FhirError(400, f"Bundle.type must be one of {', '.join(allowed)}; got '{str(bundle.get('type'))[:32]}'.",
                        code="structure")
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise FhirError(400, "Bundle.entry must be a list.", code="structure")
    return entries


def plan(entries: list[Any], *, keep_ids: bool, default_method: str | None = None,
         references_done: bool = False) -> tuple[list[Planned], list[Issue]]:
    """Plan the writes of a bundle's entries. Returns (plans, issues); issues name the entry.
    ``references_done``: the caller has already rewritten every urn: reference (see
    ``importer.rewrite_urns``), so the walk over the resources is skipped."""
    plans: list[Planned] = []
    issues: list[Issue] = []
    urls: dict[str, str] = {}  # fullUrl -> "Type/id"
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            issues.append(entry_error(i, "each entry must be a JSON object."))
            continue
        req = e.get("request") or {}
        method = (req.get("method") if isinstance(req, dict) else None) or default_method
        url = (req.get("url") if isinstance(req, dict) else None) or ""
        res = e.get("resource")
        if method not in ("POST", "PUT", "DELETE", "GET"):
            issues.append(entry_error(i, "request.method must be POST, PUT, DELETE or GET."))
            continue
        if method in ("POST", "PUT"):
            if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
                issues.append(entry_error(i, f"a {method} entry needs a resource with a resourceType."))
                continue
            rtype = res["resourceType"]
            if rtype not in sp.PARAMS:
                issues.append(entry_error(i, f"resource type {rtype[:64]} is not supported.", "not-supported"))
                continue
            rid: str | None
            if method == "PUT" and not keep_ids:
                path = url.split("?", 1)[0].strip("/")
                parts = path.split("/")
                if len(parts) != 2 or parts[0] != rtype or not ID_RE.match(parts[1]):
                    issues.append(entry_error(i, f"request.url must be {rtype}/<id> for a PUT."))
                    continue
                rid = parts[1]
            elif keep_ids:
                given = res.get("id")
                full = e.get("fullUrl")
                if isinstance(given, str) and ID_RE.match(given):
                    rid = given
                elif isinstance(full, str) and full.startswith("urn:uuid:") and ID_RE.match(full[9:]):
                    rid = full[9:]
                else:
                    rid = new_id()
            else:
                rid = new_id()
            p = Planned(i, method, rtype, rid, res, parse_if_match(req.get("ifMatch")) if method == "PUT" else None,
                        req.get("ifNoneExist") if isinstance(req, dict) else None, url, e.get("fullUrl"))
            full = e.get("fullUrl")
            if isinstance(full, str) and full:
                if full in urls:
                    issues.append(entry_error(i, f"fullUrl {full[:80]} appears twice in the bundle."))
                    continue
                urls[full] = f"{rtype}/{rid}"
            plans.append(p)
        else:
            path = url.split("?", 1)[0].strip("/")
            parts = path.split("/")
            if method == "DELETE" and (len(parts) != 2 or parts[0] not in sp.PARAMS):
                issues.append(entry_error(i, "request.url must be Type/<id> for a DELETE."))
                continue
            if method == "GET" and (not parts or parts[0] not in sp.PARAMS):
                issues.append(entry_error(i, "request.url must start with a supported resource type."))
                continue
            plans.append(Planned(i, method, parts[0], parts[1] if len(parts) > 1 else None, None, url=url))
    # Rewrite references to entries of this bundle; a urn: that names no entry is an error.
    for p in plans:
        if p.resource is None or references_done:
            continue
        for ref in sp.all_references(p.resource):
            r = ref["reference"]
            target = urls.get(r)
            if target is not None:
                ref["reference"] = target
            elif r.startswith("urn:") and _URN_RE.match(r):
                issues.append(entry_error(p.index, f"reference {r[:80]} points at no entry of this bundle.",
                                          path="reference"))
    return plans, issues


def _if_none_exist(conn: Connection, store: FhirStore, p: Planned) -> None:
    if not p.if_none_exist:
        return
    query = p.if_none_exist.split("?", 1)[-1]
    q = search.parse(p.resource_type, parse_qsl(query, keep_blank_values=True))
    q.count, q.total = 2, True
    found = search.run(conn, store, q)
    if found.total > 1:
        raise FhirError(412, f"Bundle.entry[{p.index}]: ifNoneExist matched {found.total} {p.resource_type} "
                        "resources; make the condition more specific.", code="duplicate")
    if found.total == 1:
        p.existing = found.matches[0]
        p.id = p.existing.id


def response_entry(status: str, res: WriteResult | Stored | None, *, body: bool = True,
                   outcome: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"response": {"status": status}}
    if isinstance(res, WriteResult) and res.outcome != "deleted":
        out["response"].update(location=f"{res.resource_type}/{res.id}/_history/{res.version_id}",
                               etag=f'W/"{res.version_id}"')
        if res.last_updated:
            out["response"]["lastModified"] = fhir_instant(res.last_updated)
        if body and res.content:
            out["resource"] = res.resource()
    elif isinstance(res, Stored):
        out["response"].update(location=f"{res.resource_type}/{res.id}/_history/{res.version_id}",
                               etag=res.etag)
        if body and res.content:
            out["resource"] = res.resource()
    if outcome:
        out["response"]["outcome"] = outcome
    return out


_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "GET": 3}


def transaction(conn: Connection, store: FhirStore, bundle: object, *, author: str | None,
                authorize: Authorize) -> tuple[dict[str, Any], list[WriteResult]]:
    """All or nothing: any problem raises before anything is written (the caller rolls back)."""
    entries = check_bundle(bundle, ("transaction",))
    plans, issues = plan(entries, keep_ids=False)
    for p in plans:
        if p.resource is not None:
            issues.extend(entry_error(p.index, i.message, i.code, i.path) for i in store.check(p.resource))
    if issues:
        raise FhirError(400, issues=issues)
    # Conditional creates that find their resource: references to them point at the existing one.
    remap: dict[str, str] = {}
    for p in plans:
        if p.method == "POST" and p.if_none_exist:
            temp = f"{p.resource_type}/{p.id}"
            _if_none_exist(conn, store, p)
            if p.existing is not None:
                remap[temp] = f"{p.resource_type}/{p.existing.id}"
    if remap:
        for p in plans:
            for ref in sp.all_references(p.resource) if p.resource else ():
                if ref["reference"] in remap:
                    ref["reference"] = remap[ref["reference"]]
    responses: dict[int, dict[str, Any]] = {}
    written: list[WriteResult] = []
    for p in sorted(plans, key=lambda x: (_ORDER[x.method], x.index)):
        if p.method == "DELETE":
            try:
                current: Stored | None = store.read(conn, p.resource_type, p.id or "")
            except FhirError as err:  # absent or already deleted: deleting again changes nothing
                if err.status not in (404, 410):
                    raise
                current = None
            authorize("delete", p.resource_type, current.patient_id if current else None, p.id)
            res = store.delete(conn, p.resource_type, p.id or "", author=author)
            if res and res.outcome == "deleted":
                written.append(res)
            responses[p.index] = {"response": {"status": "204 No Content"}}
        elif p.method == "GET":
            raise FhirError(400, f"Bundle.entry[{p.index}]: GET entries belong in a batch, not a transaction.")
        else:
            assert p.resource is not None and p.id is not None
            patient_id = sp.patient_of({**p.resource, "id": p.id})
            if p.method == "POST":
                if p.existing is not None:
                    authorize("read", p.resource_type, p.existing.patient_id, p.existing.id)
                    responses[p.index] = response_entry("200 OK", p.existing, body=False)
                    continue
                authorize("create", p.resource_type, patient_id, p.id)
                res = store.write_many(conn, [(p.resource, p.id, None)], author=author, mode="create",
                                       validated=True)[0]
                responses[p.index] = response_entry("201 Created", res, body=False)
            else:
                authorize("update", p.resource_type, patient_id, p.id)
                res = store.write_many(conn, [(p.resource, p.id, p.if_match)], author=author, mode="update",
                                       validated=True)[0]
                responses[p.index] = response_entry("201 Created" if res.outcome == "created" else "200 OK",
                                                    res, body=False)
            written.append(res)
    out = {"resourceType": "Bundle", "type": "transaction-response",
           "entry": [responses[p.index] for p in plans]}
    return out, written


def batch(conn: Connection, store: FhirStore, bundle: object, *, author: str | None,
          authorize: Authorize, read: Callable[[str, str], Stored],
          run_search: Callable[[str, list[tuple[str, str]]], dict[str, Any]]) -> tuple[dict[str, Any], list[WriteResult]]:
    """Each entry on its own (in a savepoint): one failing entry does not stop the others."""
    entries = check_bundle(bundle, ("batch",))
    out_entries: list[dict[str, Any] | None] = [None] * len(entries)
    written: list[WriteResult] = []
    for i, e in enumerate(entries):
        plans, issues = plan([e], keep_ids=False)
        if not issues and plans and plans[0].resource is not None:
            issues = store.check(plans[0].resource)
        if issues:
            out_entries[i] = {"response": {"status": "400 Bad Request", "outcome": {
                "resourceType": "OperationOutcome", "issue": [x.as_fhir() for x in issues]}}}
            continue
        p = plans[0]
        p.index = i
        try:
            with conn.begin_nested():
                if p.method == "GET":
                    path, _, query = p.url.partition("?")
                    parts = path.strip("/").split("/")
                    if len(parts) == 2:
                        stored = read(parts[0], parts[1])
                        out_entries[i] = response_entry("200 OK", stored)
                    else:
                        result = run_search(parts[0], parse_qsl(query, keep_blank_values=True))
                        out_entries[i] = {"resource": result, "response": {"status": "200 OK"}}
                    continue
                sub_bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [e]}
                resp, w = transaction(conn, store, sub_bundle, author=author, authorize=authorize)
                out_entries[i] = resp["entry"][0]
                written.extend(w)
        except FhirError as err:
            out_entries[i] = {"response": {"status": f"{err.status} {_REASONS.get(err.status, 'Error')}",
                                           "outcome": err.outcome()}}
    return {"resourceType": "Bundle", "type": "batch-response", "entry": out_entries}, written


_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict",
            410: "Gone", 412: "Precondition Failed", 422: "Unprocessable Entity"}
