"""The record service: the only entry point the REST API, the web pages and the CLI use.

Every operation runs in one database transaction that (1) asks the one policy function whether this
principal may do this to this patient's data, (2) does the work in the store, and (3) appends the
audit entry. The audit entry commits with the data or not at all, so no data leaves without its
audit entry being durable. Reads (read, vread, search, history, $everything) run through
``audit.audited_read``: concurrent reads share one write transaction and one commit of their audit
entries (group commit), and each returns its data only after that commit.

A ``principal`` of ``None`` means auth and audit are switched off (benchmarks measuring their cost
only; ``Settings.auth_enabled``). Every interface passes a real principal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, func, select

from chartkeeper.db import Database
from chartkeeper.fhir import bundles, search
from chartkeeper.fhir import searchparams as sp
from chartkeeper.fhir.errors import FhirError
from chartkeeper.fhir.store import FhirStore, IngestStats, Prepared, Stored, WriteResult, new_id
from chartkeeper.security import audit, policy
from chartkeeper.security.policy import Action, Denied
from chartkeeper.security.principal import PendingPrincipal, Principal

T = TypeVar("T")
# What a read returns besides its data: the audit entries to commit before the data is returned.
Entries = list[dict[str, Any]]

@dataclass(frozen=True)
class Change:
    """One written resource, as write listeners see it: the content after the write, or for a
    delete the content before it."""
    resource_type: str
    id: str
    outcome: str  # created | updated | deleted
    content: str | None
    patient_id: str | None


# Called in the writer's transaction after every write: (connection, changes, bulk). ``bulk`` is True
# for imports, where a listener should queue work rather than do it inline. Domain modules register
# here (chart completion re-analyses an encounter when its documents change).
WriteListener = Callable[[Connection, list[Change], bool], None]
_LISTENERS: list[WriteListener] = []


def add_write_listener(fn: WriteListener) -> WriteListener:
    if fn not in _LISTENERS:
        _LISTENERS.append(fn)
    return fn


class ListenerDb:
    """The database handle of a domain service that works inside a write listener: a listener runs in
    the writer's transaction and must never open one of its own, so asking this handle for a
    transaction is a programming error."""

    def __init__(self, who: str) -> None:
        self.who = who

    def begin(self) -> Any:  # pragma: no cover - a programming error if reached
        raise RuntimeError(f"the {self.who} listener must use the caller's connection")

    read = begin


def _load_domains() -> None:
    """Import the domain modules that listen to record writes (once; imports are cached)."""
    import chartkeeper.coding.service  # noqa: F401
    import chartkeeper.completion.service  # noqa: F401
    import chartkeeper.registry.service  # noqa: F401


def _denied(err: Denied) -> FhirError:
    return FhirError(err.status, err.message, code="forbidden" if err.status == 403 else "not-found")


class RecordService:
    def __init__(self, db: Database, store: FhirStore | None = None) -> None:
        self.db = db
        self.store = store or FhirStore()
        _load_domains()

    @staticmethod
    def notify(conn: Connection, results: Iterable[WriteResult], *, bulk: bool = False,
               deleted: dict[tuple[str, str], Stored] | None = None) -> None:
        """Tell the write listeners what changed (in the same transaction)."""
        if not _LISTENERS:
            return
        changes = []
        for r in results:
            if r.outcome == "unchanged":
                continue
            content = r.content
            if r.outcome == "deleted" and deleted:
                old = deleted.get((r.resource_type, r.id))
                content = old.content if old else None
            changes.append(Change(r.resource_type, r.id, r.outcome, content, r.patient_id))
        if changes:
            for fn in list(_LISTENERS):
                fn(conn, changes, bulk)

    # --- the policy + audit pair ------------------------------------------------------------------

    @staticmethod
    def _resolve(conn: Connection, who: Principal | PendingPrincipal | None) -> Principal | None:
        return who.resolve(conn) if isinstance(who, PendingPrincipal) else who

    def authorize(self, conn: Connection, principal: Principal | None, action: Action, rtype: str,
                  patient_id: str | None, rid: str | None = None) -> None:
        if principal is None:
            return
        try:
            policy.check(conn, principal, action, rtype, patient_id, resource_id=rid)
        except Denied as err:
            raise _denied(err) from None

    @staticmethod
    def audit(conn: Connection, principal: Principal | None, action: Action | str, *,
              resource_type: str | None = None, resource_id: str | None = None,
              patient_id: str | None = None, detail: str | None = None, outcome: str = "success") -> None:
        if principal is None:
            return
        audit.record(conn, principal, str(action), outcome, resource_type=resource_type,
                     resource_id=resource_id, patient_id=patient_id, detail=detail,
                     client_address=principal.client_address)

    @staticmethod
    def _entries(principal: Principal | None, items: Iterable[tuple[Action | str, dict[str, Any]]]) -> Entries:
        """The audit entries of a read (none when auth and audit are off)."""
        if principal is None:
            return []
        return [audit.entry(principal, str(action), kw.pop("outcome", "success"), **kw) for action, kw in items]

    def _read(self, work: Callable[[Connection], tuple[T, Entries]]) -> T:
        """Run a read: ``work(conn)`` reads, checks the policy and returns (data, audit entries).

        It runs through ``audit.audited_read``: in a write transaction shared with concurrent reads,
        returning once the entries are committed. With auth and audit switched off (benchmarks) the
        same path runs with no entries, so that what they measure is the cost of auth and audit."""
        return audit.audited_read(self.db, work)

    @staticmethod
    def _hidden(conn: Connection, principal: Principal | None) -> set[str] | None:
        return policy.hidden_patients(conn, principal) if principal is not None else None

    def _visible(self, conn: Connection, principal: Principal | None, action: Action,
                 items: Iterable[Stored]) -> list[Stored]:
        """Drop what this principal may not see: types outside its role, restricted patients."""
        items = list(items)
        if principal is None or not items:
            return items
        items = [s for s in items if policy.can(principal, action, s.resource_type)]
        pids = {s.patient_id for s in items if s.patient_id}
        ok = policy.visible_patients(conn, principal, pids) if pids else set()
        return [s for s in items if s.patient_id is None or s.patient_id in ok]

    @staticmethod
    def _access(action: Action, items: Sequence[Stored],
                detail: str | None = None) -> list[tuple[Action | str, dict[str, Any]]]:
        """One audit entry per patient whose data was returned (and one if none was)."""
        by_patient: dict[str | None, list[Stored]] = {}
        for s in items:
            by_patient.setdefault(s.patient_id, []).append(s)
        if not by_patient:
            by_patient[None] = []
        out: list[tuple[Action | str, dict[str, Any]]] = []
        for pid, group in by_patient.items():
            if len(group) == 1:
                out.append((action, {"resource_type": group[0].resource_type, "resource_id": group[0].id,
                                     "patient_id": pid, "detail": detail}))
            else:
                types = sorted({g.resource_type for g in group})
                out.append((action, {"resource_type": types[0] if len(types) == 1 else None, "patient_id": pid,
                                     "detail": (detail + "; " if detail else "") + f"{len(group)} resources"}))
        return out

    def _audit_access(self, conn: Connection, principal: Principal | None, action: Action,
                      items: Sequence[Stored], detail: str | None = None) -> None:
        """The same entries, appended in the caller's write transaction (a batch's searches)."""
        if principal is None:
            return
        for act, kw in self._access(action, items, detail):
            self.audit(conn, principal, act, **kw)

    # --- single resources -------------------------------------------------------------------------

    # read and vread, the hottest audited paths, also take a PendingPrincipal (a bearer token checked
    # first thing in the read's transaction, so that a request costs no transaction of its own for it).

    def read(self, who: Principal | PendingPrincipal | None, rtype: str, rid: str) -> Stored:
        def work(conn: Connection) -> tuple[Stored, Entries]:
            principal = self._resolve(conn, who)
            self._known(rtype)
            stored = self.store.read(conn, rtype, rid)
            self.authorize(conn, principal, Action.READ, rtype, stored.patient_id, rid)
            return stored, self._entries(principal, [(Action.READ, {"resource_type": rtype, "resource_id": rid,
                                                                    "patient_id": stored.patient_id})])
        return self._read(work)

    def vread(self, who: Principal | PendingPrincipal | None, rtype: str, rid: str, vid: int) -> Stored:
        def work(conn: Connection) -> tuple[Stored, Entries]:
            principal = self._resolve(conn, who)
            self._known(rtype)
            stored = self.store.vread(conn, rtype, rid, vid)
            self.authorize(conn, principal, Action.READ, rtype, stored.patient_id, rid)
            return stored, self._entries(principal, [(Action.READ, {"resource_type": rtype, "resource_id": rid,
                                                                    "patient_id": stored.patient_id,
                                                                    "detail": f"version {vid}"})])
        return self._read(work)

    def create(self, principal: Principal | None, resource: Any, *, if_none_exist: str | None = None) -> tuple[WriteResult, bool]:
        """Create; with ``if_none_exist`` (conditional create) an existing match is returned instead.
        Returns (result, created)."""
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise FhirError(400, "The body must be one FHIR resource (a JSON object with resourceType).",
                            code="structure")
        rtype = resource["resourceType"]
        self._known(rtype)
        with self.db.begin() as conn:
            if if_none_exist:
                bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
                    {"resource": resource, "request": {"method": "POST", "url": rtype, "ifNoneExist": if_none_exist}}]}
                resp, written = self._transaction(conn, principal, bundle)
                if not written:
                    loc = resp["entry"][0]["response"]["location"].split("/")
                    stored = self.store.read(conn, loc[0], loc[1])
                    return WriteResult(stored.resource_type, stored.id, stored.version_id, "unchanged",
                                       stored.content, stored.last_updated, stored.patient_id), False
                return written[0], True
            res = self._write(conn, principal, Action.CREATE, [(resource, None)], mode="create")[0]
            return res, True

    def update(self, principal: Principal | None, rtype: str, rid: str, resource: Any,
               *, if_match: int | None = None) -> WriteResult:
        self._known(rtype)
        with self.db.begin() as conn:
            if not isinstance(resource, dict):
                raise FhirError(400, "The body must be one FHIR resource (a JSON object).", code="structure")
            if resource.get("resourceType") != rtype:
                raise FhirError(400, f"The body's resourceType must be {rtype} to update {rtype}/{rid}.")
            if resource.get("id") not in (None, rid):
                raise FhirError(400, f"The body's id must equal the id in the URL ({rid}).")
            # The patient the resource belongs to now and after the change must both be allowed.
            try:
                old = self.store.read(conn, rtype, rid)
                self.authorize(conn, principal, Action.UPDATE, rtype, old.patient_id, rid)
            except FhirError as err:
                if err.status not in (404, 410):
                    raise
            return self._write(conn, principal, Action.UPDATE, [(resource, rid)], mode="update",
                               if_match=if_match)[0]

    def _write(self, conn: Connection, principal: Principal | None, action: Action,
               items: list[tuple[dict[str, Any], str | None]], *, mode: str,
               if_match: int | None = None) -> list[WriteResult]:
        for resource, rid in items:
            issues = self.store.check(resource)
            if issues:
                raise FhirError(422, issues=issues)
            self._signature_guard(conn, principal, resource, rid)
            pid = sp.patient_of({**resource, "id": rid or "new"}) if resource["resourceType"] != "Patient" else rid
            self.authorize(conn, principal, action, resource["resourceType"], pid, rid)
        results = self.store.write_many(conn, [(r, rid or new_id(), if_match) for r, rid in items],
                                        author=principal.user_id if principal else None, mode=mode,
                                        validated=True)
        for res in results:
            self.audit(conn, principal, action, resource_type=res.resource_type, resource_id=res.id,
                       patient_id=res.patient_id, detail=f"version {res.version_id}")
        try:
            self.notify(conn, results)
        except FhirError as err:
            # A domain module refused the write (a document for an encounter that does not exist): it
            # rolls back, and the refusal is audited in its own transaction so that the entry is kept.
            if principal is not None:
                for res in results:
                    audit.record_detached(conn, principal, str(action), "failure", resource_type=res.resource_type,
                                          resource_id=res.id, patient_id=res.patient_id,
                                          detail=f"refused: {err.message}"[:200],
                                          client_address=principal.client_address)
            raise
        return results

    def _signature_guard(self, conn: Connection, principal: Principal | None, resource: dict[str, Any],
                         rid: str | None) -> None:
        """Signing is not a plain edit: a user may not set a document's authenticator (where the stored
        version had none) by writing the resource. Physicians sign through the chart completion
        service, which checks authorship, records who and when (Provenance) and locks the document.
        System jobs may record documents signed in the system they come from."""
        if principal is None or principal.is_system or resource.get("resourceType") != "DocumentReference":
            return
        auth = resource.get("authenticator")
        if auth is None:
            return
        if rid:
            try:
                if self.store.read(conn, "DocumentReference", rid).resource().get("authenticator") == auth:
                    return
            except FhirError:
                pass
        audit.record_detached(conn, principal, str(Action.SIGN), "denied", resource_type="DocumentReference",
                              resource_id=rid, patient_id=sp.patient_of({**resource, "id": rid or "new"}),
                              detail="authenticator set by a plain write")
        raise FhirError(403, "DocumentReference.authenticator cannot be set by editing the document: the author "
                        "signs it with Sign in the physician's inbox, which records who signed and when.",
                        code="forbidden")

    def delete(self, principal: Principal | None, rtype: str, rid: str) -> WriteResult | None:
        self._known(rtype)
        with self.db.begin() as conn:
            try:
                old = self.store.read(conn, rtype, rid)
            except FhirError as err:
                if err.status == 410:
                    return None
                raise
            self.authorize(conn, principal, Action.DELETE, rtype, old.patient_id, rid)
            res = self.store.delete(conn, rtype, rid, author=principal.user_id if principal else None)
            self.audit(conn, principal, Action.DELETE, resource_type=rtype, resource_id=rid,
                       patient_id=old.patient_id)
            if res is not None:
                self.notify(conn, [res], deleted={(rtype, rid): old})
            return res

    def history(self, principal: Principal | None, rtype: str | None, rid: str | None = None, *,
                count: int = 100, offset: int = 0) -> tuple[list[Stored], int]:
        if rtype:
            self._known(rtype)

        def work(conn: Connection) -> tuple[tuple[list[Stored], int], Entries]:
            if rid and rtype:
                current = self.store.history(conn, rtype, rid, count=1)
                if not current:
                    raise FhirError(404, f"{rtype}/{rid} does not exist.", code="not-found")
                self.authorize(conn, principal, Action.HISTORY, rtype, current[0].patient_id, rid)
            elif principal is not None and rtype and not policy.can(principal, Action.HISTORY, rtype):
                self.authorize(conn, principal, Action.HISTORY, rtype, None)
            items = self.store.history(conn, rtype, rid, count=count, offset=offset)
            total = self.store.history_count(conn, rtype, rid)
            visible = self._visible(conn, principal, Action.HISTORY, items)
            return (visible, total), self._entries(principal, self._access(Action.HISTORY, visible, detail="history"))
        return self._read(work)

    # --- search -----------------------------------------------------------------------------------

    def search(self, principal: Principal | None, rtype: str, params: list[tuple[str, str]]) -> search.SearchResult:
        self._known(rtype)
        q = search.parse(rtype, params)

        def work(conn: Connection) -> tuple[search.SearchResult, Entries]:
            if principal is not None and not policy.can(principal, Action.SEARCH, rtype):
                self.authorize(conn, principal, Action.SEARCH, rtype, None)
            hidden = self._hidden(conn, principal)
            result = search.run(conn, self.store, q, hidden=hidden)
            if hidden and rtype == "Patient":
                result.restricted = int(conn.execute(select(func.count()).select_from(
                    search.build(q, patient_ids=hidden).subquery())).scalar_one())
            result.matches = self._visible(conn, principal, Action.SEARCH, result.matches)
            result.included = self._visible(conn, principal, Action.READ, result.included)
            return result, self._entries(principal, self._access(Action.SEARCH, [*result.matches, *result.included],
                                                                 detail=f"{rtype} search"))
        return self._read(work)

    def identifier_taken(self, principal: Principal | None, rtype: str, system: str, value: str) -> bool:
        """Whether any current resource (restricted patients included) has this identifier: for
        keeping MRNs unique at registration. Answers yes or no, nothing else; audited."""
        self._known(rtype)
        q = search.parse(rtype, [("identifier", f"{system}|{value}"), ("_count", "0")])
        with self.db.begin() as conn:
            self.authorize(conn, principal, Action.CREATE, rtype, None)
            taken = search.run(conn, self.store, q).total > 0
            self.audit(conn, principal, "identifier-check", resource_type=rtype, detail="uniqueness check")
            return taken

    def everything(self, principal: Principal | None, patient_id: str) -> list[Stored]:
        def work(conn: Connection) -> tuple[list[Stored], Entries]:
            patient = self.store.read(conn, "Patient", patient_id)
            self.authorize(conn, principal, Action.READ, "Patient", patient.patient_id or patient_id, patient_id)
            items = search.everything(conn, self.store, patient_id)
            visible = self._visible(conn, principal, Action.READ, items)
            return visible, self._entries(principal, [(Action.READ, {
                "resource_type": "Patient", "resource_id": patient_id, "patient_id": patient_id,
                "detail": f"$everything: {len(visible)} resources"})])
        return self._read(work)

    # --- bundles ----------------------------------------------------------------------------------

    def _bundle_authorizer(self, conn: Connection, principal: Principal | None) -> bundles.Authorize:
        def check(action: str, rtype: str, patient_id: str | None, rid: str | None) -> None:
            self.authorize(conn, principal, Action(action), rtype, patient_id, rid)
        return check

    def _transaction(self, conn: Connection, principal: Principal | None,
                     bundle: Any) -> tuple[dict[str, Any], list[WriteResult]]:
        if isinstance(bundle, dict) and isinstance(bundle.get("entry"), list):
            for e in bundle["entry"]:
                res = e.get("resource") if isinstance(e, dict) else None
                if isinstance(res, dict) and res.get("resourceType") == "DocumentReference":
                    url = str((e.get("request") or {}).get("url", ""))
                    rid = url.split("/")[1] if url.startswith("DocumentReference/") and url.count("/") == 1 else None
                    self._signature_guard(conn, principal, res, rid)
        resp, written = bundles.transaction(conn, self.store, bundle,
                                            author=principal.user_id if principal else None,
                                            authorize=self._bundle_authorizer(conn, principal))
        for res in written:
            self.audit(conn, principal, Action.DELETE if res.outcome == "deleted" else
                       (Action.CREATE if res.version_id == 1 else Action.UPDATE),
                       resource_type=res.resource_type, resource_id=res.id, patient_id=res.patient_id,
                       detail=f"transaction; version {res.version_id}")
        self._notify_bundle(conn, written)
        return resp, written

    def _notify_bundle(self, conn: Connection, written: list[WriteResult]) -> None:
        gone = [(w.resource_type, w.id) for w in written if w.outcome == "deleted"]
        deleted = {}
        for rtype, rid in gone:
            prior = self.store.history(conn, rtype, rid, count=2)
            before = next((h for h in prior if not h.deleted), None)
            if before is not None:
                deleted[(rtype, rid)] = before
        self.notify(conn, written, deleted=deleted)

    def transaction(self, principal: Principal | None, bundle: Any) -> dict[str, Any]:
        with self.db.begin() as conn:
            return self._transaction(conn, principal, bundle)[0]

    def batch(self, principal: Principal | None, bundle: Any) -> dict[str, Any]:
        with self.db.begin() as conn:
            def read(rtype: str, rid: str) -> Stored:
                self._known(rtype)
                s = self.store.read(conn, rtype, rid)
                self.authorize(conn, principal, Action.READ, rtype, s.patient_id, rid)
                self.audit(conn, principal, Action.READ, resource_type=rtype, resource_id=rid,
                           patient_id=s.patient_id, detail="batch")
                return s

            def run_search(rtype: str, params: list[tuple[str, str]]) -> dict[str, Any]:
                self._known(rtype)
                q = search.parse(rtype, params)
                if principal is not None and not policy.can(principal, Action.SEARCH, rtype):
                    self.authorize(conn, principal, Action.SEARCH, rtype, None)
                result = search.run(conn, self.store, q, hidden=self._hidden(conn, principal))
                result.matches = self._visible(conn, principal, Action.SEARCH, result.matches)
                self._audit_access(conn, principal, Action.SEARCH, result.matches, detail="batch search")
                return {"resourceType": "Bundle", "type": "searchset", "total": result.total,
                        "entry": [{"resource": m.resource()} for m in result.matches]}

            resp, written = bundles.batch(conn, self.store, bundle,
                                          author=principal.user_id if principal else None,
                                          authorize=self._bundle_authorizer(conn, principal),
                                          read=read, run_search=run_search)
            for res in written:
                self.audit(conn, principal, Action.CREATE if res.version_id == 1 else Action.UPDATE,
                           resource_type=res.resource_type, resource_id=res.id, patient_id=res.patient_id,
                           detail="batch")
            self._notify_bundle(conn, written)
            return resp

    # --- bulk import ------------------------------------------------------------------------------

    def ingest(self, conn: Connection, principal: Principal, resources: Sequence[dict[str, Any] | Prepared], *,
               validated: bool = False, source: str | None = None, audit_action: str = "import",
               bulk: bool = True) -> IngestStats:
        """Import planned resources (ids kept) in the caller's transaction: policy per type and
        patient, one audit entry per patient touched. Listeners hear of it as a bulk change unless
        ``bulk`` is False."""
        pairs = {(r.rtype, r.patient_id) if isinstance(r, Prepared) else (r["resourceType"], sp.patient_of(r))
                 for r in resources}
        for rtype, pid in sorted(pairs, key=lambda x: (x[0], x[1] or "")):
            self.authorize(conn, principal, Action.CREATE, rtype, pid)
        results, stats = self.store.ingest(conn, resources, author=principal.user_id, validated=validated)
        changed: dict[str | None, int] = {}
        for res in results:
            if res.outcome != "unchanged":
                changed[res.patient_id] = changed.get(res.patient_id, 0) + 1
        # One entry per patient touched, written in one statement (a bulk job touches thousands).
        audit.record_many(conn, principal, audit_action, "success", [
            {"patient_id": pid, "detail": f"{n} resources written" + (f" from {source}" if source else "")}
            for pid, n in changed.items()])
        self.notify(conn, results, bulk=bulk)
        return stats

    @staticmethod
    def _known(rtype: str) -> None:
        if rtype not in sp.PARAMS:
            raise FhirError(404, f"Resource type {rtype[:64]} is not supported by this server.",
                            code="not-supported")
