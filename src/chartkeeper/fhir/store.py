"""The versioned FHIR resource store.

Every write goes through :meth:`FhirStore.write_many`: validate, stamp ``meta``, add a version row,
move the current pointer and replace the search index rows, in the caller's transaction. Reads never
parse more than they return. No policy here: the service layer (``fhir.service``) checks who may do
what and writes the audit entry; this module is the storage underneath it.

Concurrency: the current pointer moves with ``UPDATE ... WHERE version_id = :expected``. Of two
writers that read the same version, exactly one moves it; the other gets a 412 (or 409 without
``If-Match``). The version table's primary key (type, id, version) is the last line of defence.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import orjson
from sqlalchemy import Connection, Table, and_, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from chartkeeper.db.bulk import bulk_insert
from chartkeeper.db.driver import DriverStatement
from chartkeeper.db.sql import eq_planned_for_any, in_list
from chartkeeper.fhir import searchparams
from chartkeeper.fhir.errors import FhirError, Issue, gone, not_found
from chartkeeper.fhir.models import (
    DateIndex,
    ReferenceIndex,
    ResourceRow,
    StringIndex,
    TokenIndex,
    VersionRow,
)

R = cast(Table, ResourceRow.__table__)
V = cast(Table, VersionRow.__table__)
IDX_TOKEN = cast(Table, TokenIndex.__table__)
IDX_STRING = cast(Table, StringIndex.__table__)
IDX_DATE = cast(Table, DateIndex.__table__)
IDX_REF = cast(Table, ReferenceIndex.__table__)
INDEX_TABLES = (IDX_TOKEN, IDX_STRING, IDX_DATE, IDX_REF)

_SORT = orjson.OPT_SORT_KEYS


def content_hash(resource: dict[str, Any]) -> str:
    """Digest of a resource ignoring the server-set meta.versionId and meta.lastUpdated."""
    meta = resource.get("meta")
    if meta:
        body = dict(resource)
        m = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}
        if m:
            body["meta"] = m
        else:
            del body["meta"]
    else:
        body = resource
    return hashlib.blake2b(orjson.dumps(body, option=_SORT), digest_size=16).hexdigest()


def fhir_instant(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Stored:
    """A stored version: its JSON text (with meta) and bookkeeping."""

    resource_type: str
    id: str
    version_id: int
    last_updated: datetime
    deleted: bool
    content: str | None
    patient_id: str | None = None
    method: str | None = None
    author: str | None = None

    def resource(self) -> dict[str, Any]:
        if self.content is None:
            raise gone(self.resource_type, self.id)
        return orjson.loads(self.content)  # type: ignore[no-any-return]

    @property
    def etag(self) -> str:
        return f'W/"{self.version_id}"'


@dataclass
class WriteResult:
    resource_type: str
    id: str
    version_id: int
    # created | updated | unchanged | deleted
    outcome: str
    content: str | None = None
    last_updated: datetime | None = None
    patient_id: str | None = None

    def resource(self) -> dict[str, Any] | None:
        return orjson.loads(self.content) if self.content else None


_VID = "\x00vid"
_STAMP = "\x00stamp"
_VID_JSON = orjson.dumps(_VID)
_STAMP_JSON = orjson.dumps(_STAMP)


@dataclass(slots=True)
class Prepared:
    """A resource ready to store: its JSON with placeholders for the version id and timestamp, its
    digest, its patient and its index rows. Built by :func:`prepare` (in import worker processes too)."""

    rtype: str
    rid: str
    body: bytes
    digest: str
    patient_id: str | None
    index: searchparams.IndexRows
    expected_version: int | None = None  # for If-Match

    def __reduce__(self) -> tuple[Any, ...]:
        # Import workers send these to the writing process: positional arguments unpickle about a
        # quarter faster than the default (a state dict set slot by slot), in the writer's process.
        return Prepared, (self.rtype, self.rid, self.body, self.digest, self.patient_id, self.index,
                          self.expected_version)

    def content(self, vid: int, stamp: str) -> str:
        return self.body.replace(_VID_JSON, orjson.dumps(str(vid)), 1).replace(
            _STAMP_JSON, orjson.dumps(stamp), 1).decode()


def prepare(resource: dict[str, Any], rid: str, expected: int | None = None) -> Prepared:
    """Everything a write needs that does not depend on the database (pure; no validation)."""
    rtype = resource["resourceType"]
    resource["id"] = rid
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = _VID
    meta["lastUpdated"] = _STAMP
    body = {"resourceType": rtype, "id": rid, "meta": meta}
    body.update((k, v) for k, v in resource.items() if k not in body)
    return Prepared(rtype, rid, orjson.dumps(body), content_hash(resource), searchparams.patient_of(resource),
                    searchparams.extract(resource), expected)


@dataclass
class IngestStats:
    created: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    updated: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    unchanged: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, other: IngestStats) -> None:
        for mine, theirs in ((self.created, other.created), (self.updated, other.updated),
                             (self.unchanged, other.unchanged)):
            for k, v in theirs.items():
                mine[k] += v


# Built once: the hottest statement of all (statement construction costs more than running it).
_READ = (
    select(R.c.version_id, R.c.last_updated, R.c.deleted, R.c.patient_id, V.c.content)
    .select_from(R.outerjoin(V, and_(V.c.resource_type == R.c.resource_type, V.c.id == R.c.id,
                                     V.c.version_id == R.c.version_id)))
    .where(R.c.resource_type == bindparam("t"), R.c.id == bindparam("i"))
)
_D_READ = DriverStatement(_READ)  # run on the driver's cursor (chartkeeper.db.driver)
# The current JSON of many resources of one type (read_contents): one statement for any number of ids.
_D_CONTENTS = DriverStatement(
    select(R.c.id, V.c.content)
    .select_from(R.join(V, and_(V.c.resource_type == R.c.resource_type, V.c.id == R.c.id,
                                V.c.version_id == R.c.version_id)))
    .where(R.c.resource_type == bindparam("t"), in_list(R.c.id, "ids"), R.c.deleted.is_(False))
)
# Ids per statement in the batched reads (one bound array each; see chartkeeper.db.sql.in_list).
_IDS_PER_QUERY = 2000


def _current() -> Any:
    """Current (not deleted) resources with their content; callers add the WHERE."""
    return (select(R.c.resource_type, R.c.id, R.c.version_id, R.c.last_updated, R.c.patient_id, V.c.content)
            .select_from(R.join(V, and_(V.c.resource_type == R.c.resource_type, V.c.id == R.c.id,
                                        V.c.version_id == R.c.version_id)))
            .where(R.c.deleted.is_(False)))


LOCKABLE = frozenset({"DocumentReference"})


def is_signed_document(res: dict[str, Any]) -> bool:
    """A DocumentReference authenticated by its author (docStatus final or amended, authenticator set)."""
    return (res.get("resourceType") == "DocumentReference" and res.get("docStatus") in ("final", "amended")
            and isinstance(res.get("authenticator"), dict))


def _without(res: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in res.items() if k not in keys and k != "id"}


def by_type(keys: Iterable[tuple[str, str]], size: int = 900) -> Iterator[tuple[str, list[str]]]:
    """Group (type, id) keys by type in chunks, for ``type = ? AND id IN (...)`` queries that use
    the primary key on every backend."""
    groups: dict[str, list[str]] = defaultdict(list)
    for t, i in keys:
        groups[t].append(i)
    for t, ids in groups.items():
        for n in range(0, len(ids), size):
            yield t, ids[n:n + size]


def _db_value(conn: Connection, column: Any, value: Any) -> Any:
    """A Python value as the database driver receives it for this column (type decorators applied)."""
    proc = column.type._cached_bind_processor(conn.dialect)
    return proc(value) if proc else value


def _new_keys(conn: Connection, n: int) -> Sequence[int]:
    """``n`` unused ``fhir_resource.pk`` values, ascending. PostgreSQL: from the column's sequence
    (concurrent writers each get their own); SQLite: after the largest in use, which is safe because
    the caller's write transaction holds the database's one write lock (BEGIN IMMEDIATE), and a
    writer that somehow got the same keys fails on the primary key instead of sharing them."""
    if n <= 0:
        return ()
    if conn.dialect.name == "postgresql":
        rows = conn.exec_driver_sql(
            "SELECT nextval(pg_get_serial_sequence('fhir_resource', 'pk')) FROM generate_series(1, %(n)s)",
            {"n": n})
        return sorted(int(r[0]) for r in rows)
    top = conn.exec_driver_sql("SELECT max(pk) FROM fhir_resource").scalar()
    return range((top or 0) + 1, (top or 0) + 1 + n)


class FhirStore:
    """Versioned storage of FHIR resources with search indexes. Stateless: safe to share."""

    def __init__(self, *, validate: bool = True) -> None:
        self._validate = validate

    # --- validation -----------------------------------------------------------------------------

    @staticmethod
    def check(resource: object) -> list[Issue]:
        from chartkeeper.fhir.validation import validate

        return [Issue(i.message, code=i.code, path=i.path) for i in validate(resource)]

    def _prepare(self, resource: dict[str, Any], rid: str, expected: int | None,
                 validated: bool) -> Prepared:
        if self._validate and not validated:
            issues = self.check(resource)
            if issues:
                raise FhirError(422, issues=issues)
        return prepare(resource, rid, expected)

    # --- reads ----------------------------------------------------------------------------------

    def read(self, conn: Connection, rtype: str, rid: str) -> Stored:
        row = _D_READ.first(conn, {"t": rtype, "i": rid})
        if row is None:
            raise not_found(rtype, rid)
        version_id, last_updated, deleted, patient_id, content = row
        if deleted:
            raise gone(rtype, rid)
        return Stored(rtype, rid, version_id, last_updated, False, content, patient_id)

    def vread(self, conn: Connection, rtype: str, rid: str, vid: int) -> Stored:
        row = conn.execute(
            select(V, R.c.patient_id)
            .select_from(V.join(R, and_(R.c.resource_type == V.c.resource_type, R.c.id == V.c.id)))
            .where(V.c.resource_type == rtype, V.c.id == rid, V.c.version_id == vid)
        ).first()
        if row is None:
            raise FhirError(404, f"{rtype}/{rid} has no version {vid}.", code="not-found")
        if row.deleted:
            raise FhirError(410, f"Version {vid} of {rtype}/{rid} is a deletion.", code="deleted")
        return Stored(rtype, rid, row.version_id, row.last_updated, False, row.content, row.patient_id,
                      row.method, row.author)

    def read_many(self, conn: Connection, keys: Iterable[tuple[str, str]]) -> list[Stored]:
        """Current versions of many resources in one query per type (missing or deleted ones are left out)."""
        keys = list(dict.fromkeys(keys))
        found: dict[tuple[str, str], Stored] = {}
        for rtype, ids in by_type(keys, _IDS_PER_QUERY):
            for r in conn.execute(_current().where(eq_planned_for_any(conn, R.c.resource_type, rtype),
                                                   in_list(R.c.id, ids))):
                found[(r[0], r[1])] = Stored(r[0], r[1], r[2], r[3], False, r[5], r[4])
        return [found[k] for k in keys if k in found]

    def read_contents(self, conn: Connection, rtype: str, ids: Iterable[str]) -> dict[str, str]:
        """The current version's JSON text of many resources of one type, by id, in one statement run
        on the driver (see ``chartkeeper.db.driver``): what a batch job that reads thousands of
        resources needs, without a ``Stored`` per row. Missing or deleted resources are left out."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}
        return {i: content for i, content in _D_CONTENTS.all(conn, {"t": rtype, "ids": wanted})}

    def referencing(self, conn: Connection, rtype: str | Sequence[str], param: str,
                    targets: Iterable[tuple[str, str]]) -> list[Stored]:
        """Current resources of ``rtype`` (one type or several) whose reference parameter ``param``
        points at any of ``targets`` ((type, id) pairs), ordered by type and id: e.g. every document,
        procedure and order of a batch of encounters, in one query (index, resource and version
        joined) per target type. Unpaged: for domain jobs, not for the API."""
        rtypes = [rtype] if isinstance(rtype, str) else list(dict.fromkeys(rtype))
        params = sorted({searchparams.BY_NAME[t][param].stored_as for t in rtypes})
        found: dict[tuple[str, str], Stored] = {}
        for ttype, ids in by_type(targets, _IDS_PER_QUERY):
            hits = select(IDX_REF.c.resource_pk).where(
                in_list(IDX_REF.c.resource_type, rtypes), in_list(IDX_REF.c.param, params),
                in_list(IDX_REF.c.target_id, ids), IDX_REF.c.target_type == ttype)
            for r in conn.execute(_current().where(R.c.pk.in_(hits))):
                found[(r[0], r[1])] = Stored(r[0], r[1], r[2], r[3], False, r[5], r[4])
        return [found[k] for k in sorted(found)]

    def history(self, conn: Connection, rtype: str | None = None, rid: str | None = None, *,
                since: datetime | None = None, count: int = 100, offset: int = 0) -> list[Stored]:
        q = select(V, R.c.patient_id).select_from(
            V.join(R, and_(R.c.resource_type == V.c.resource_type, R.c.id == V.c.id)))
        if rtype:
            q = q.where(V.c.resource_type == rtype)
        if rid:
            q = q.where(V.c.id == rid)
        if since:
            q = q.where(V.c.last_updated >= since)
        q = q.order_by(V.c.last_updated.desc(), V.c.version_id.desc()).limit(count).offset(offset)
        return [Stored(r.resource_type, r.id, r.version_id, r.last_updated, r.deleted, r.content,
                       r.patient_id, r.method, r.author) for r in conn.execute(q)]

    def history_count(self, conn: Connection, rtype: str | None = None, rid: str | None = None) -> int:
        from sqlalchemy import func

        q = select(func.count()).select_from(V)
        if rtype:
            q = q.where(V.c.resource_type == rtype)
        if rid:
            q = q.where(V.c.id == rid)
        return int(conn.execute(q).scalar_one())

    # --- writes ---------------------------------------------------------------------------------

    def create(self, conn: Connection, resource: dict[str, Any], *, author: str | None,
               rid: str | None = None) -> WriteResult:
        """Create with a server-assigned id (or ``rid`` when the caller has chosen one)."""
        if not isinstance(resource, dict):
            raise FhirError(400, "The request body must be a JSON object holding one FHIR resource.",
                            code="structure")
        return self.write_many(conn, [(resource, rid or new_id(), None)], author=author, mode="create")[0]

    def update(self, conn: Connection, rtype: str, rid: str, resource: dict[str, Any], *,
               author: str | None, if_match: int | None = None) -> WriteResult:
        if not isinstance(resource, dict):
            raise FhirError(400, "The request body must be a JSON object holding one FHIR resource.",
                            code="structure")
        if resource.get("resourceType") != rtype:
            raise FhirError(400, f"The body's resourceType must be {rtype} to update {rtype}/{rid}.")
        if resource.get("id") not in (None, rid):
            raise FhirError(400, f"The body's id must equal the id in the URL ({rid}).", code="invalid")
        return self.write_many(conn, [(resource, rid, if_match)], author=author, mode="update")[0]

    def ingest(self, conn: Connection, resources: Sequence[dict[str, Any] | Prepared], *,
               author: str | None, validated: bool = False) -> tuple[list[WriteResult], IngestStats]:
        """Bulk upsert keeping the resources' own ids; an unchanged resource adds no version.
        Items may come already prepared (and validated) by import workers."""
        prepared = [r if isinstance(r, Prepared) else self._prepare(r, r["id"], None, validated)
                    for r in resources]
        results = self.write_prepared(conn, prepared, author=author, mode="upsert")
        stats = IngestStats()
        for res in results:
            getattr(stats, res.outcome)[res.resource_type] += 1
        return results, stats

    def delete(self, conn: Connection, rtype: str, rid: str, *, author: str | None) -> WriteResult | None:
        """Logical delete: a new version marked deleted; reads then answer 410. None if absent."""
        row = conn.execute(select(R.c.pk, R.c.version_id, R.c.deleted, R.c.patient_id)
                           .where(R.c.resource_type == rtype, R.c.id == rid)).first()
        if row is None:
            return None
        if row.deleted:
            return WriteResult(rtype, rid, row.version_id, "unchanged")
        now = datetime.now(UTC)
        vid = row.version_id + 1
        moved = conn.execute(update(R).where(R.c.resource_type == rtype, R.c.id == rid,
                                             R.c.version_id == row.version_id)
                             .values(version_id=vid, deleted=True, last_updated=now, content_hash=None))
        if moved.rowcount != 1:
            raise FhirError(409, f"{rtype}/{rid} was changed by someone else at the same time; try again.",
                            code="conflict")
        conn.execute(insert(V).values(resource_type=rtype, id=rid, version_id=vid, last_updated=now,
                                      deleted=True, method="delete", author=author, content=None))
        for t in INDEX_TABLES:
            conn.execute(delete(t).where(t.c.resource_pk == row.pk))
        return WriteResult(rtype, rid, vid, "deleted", None, now, row.patient_id)

    def write_many(self, conn: Connection, items: Sequence[tuple[dict[str, Any], str, int | None]], *,
                   author: str | None, mode: str, validated: bool = False) -> list[WriteResult]:
        """The one write path. ``mode``: create (id must be new), update (PUT), upsert (import)."""
        return self.write_prepared(conn, [self._prepare(res, rid, exp, validated) for res, rid, exp in items],
                                   author=author, mode=mode)

    def write_prepared(self, conn: Connection, prepared: Sequence[Prepared], *, author: str | None,
                       mode: str) -> list[WriteResult]:
        now = datetime.now(UTC)
        stamp = fhir_instant(now)

        # Current state of every resource touched, in one query per 500 keys.
        keys = list(dict.fromkeys((p.rtype, p.rid) for p in prepared))
        current: dict[tuple[str, str], Any] = {}
        for rtype, ids in by_type(keys, _IDS_PER_QUERY):
            for row in conn.execute(select(R.c.resource_type, R.c.id, R.c.version_id, R.c.deleted,
                                           R.c.content_hash, R.c.pk)
                                    .where(eq_planned_for_any(conn, R.c.resource_type, rtype),
                                           in_list(R.c.id, ids))):
                current[(row.resource_type, row.id)] = row

        # In an import, a state the resource already had (any version) is not added again: the same
        # Organization posted by many bundles in slightly different forms must not flip-flop.
        seen_states: set[tuple[str, str, str]] = set()
        if mode == "upsert" and current:
            for rtype, ids in by_type(list(current), _IDS_PER_QUERY):
                for vrow in conn.execute(select(V.c.resource_type, V.c.id, V.c.content_hash)
                                         .where(eq_planned_for_any(conn, V.c.resource_type, rtype),
                                                in_list(V.c.id, ids))):
                    if vrow.content_hash:
                        seen_states.add((vrow.resource_type, vrow.id, vrow.content_hash))

        if mode != "upsert":
            self._check_locked(conn, [p for p in prepared if p.rtype in LOCKABLE and (p.rtype, p.rid) in current
                                      and not current[(p.rtype, p.rid)].deleted])

        results: list[WriteResult] = []
        db_now = _db_value(conn, R.c.last_updated, now)
        new_rows: list[tuple[Any, ...]] = []
        moved: list[tuple[Prepared, int, int]] = []  # (item, old version, new version)
        versions: list[tuple[Any, ...]] = []
        reindex: list[tuple[int, Prepared]] = []  # (resource key, item)
        state: dict[tuple[str, str], tuple[int, str | None, bool]] = {
            k: (r.version_id, r.content_hash, r.deleted) for k, r in current.items()}
        pks: dict[tuple[str, str], int] = {k: r.pk for k, r in current.items()}
        pending_new: set[tuple[str, str]] = set()
        fresh: Iterator[int] | None = None

        for p in prepared:
            key = (p.rtype, p.rid)
            have = state.get(key)
            if mode == "create" and have is not None:
                raise FhirError(409, f"{p.rtype}/{p.rid} already exists.", code="duplicate")
            if p.expected_version is not None:
                if have is None or have[0] != p.expected_version:
                    raise FhirError(412, f"{p.rtype}/{p.rid} is no longer at version {p.expected_version} "
                                    "(someone changed it); read it again and reapply your change.",
                                    code="conflict")
            if mode == "upsert" and have is not None and not have[2] and (
                    have[1] == p.digest or (p.rtype, p.rid, p.digest) in seen_states):
                results.append(WriteResult(p.rtype, p.rid, have[0], "unchanged"))
                continue
            vid = 1 if have is None else have[0] + 1
            content = p.content(vid, stamp)
            if have is None:
                if fresh is None:
                    fresh = iter(_new_keys(conn, sum(1 for k in keys if k not in current)))
                pk = pks[key] = next(fresh)
                pending_new.add(key)
                new_rows.append((pk, p.rtype, p.rid, vid, db_now, False, p.patient_id, p.digest))
                outcome = "created"
            elif key in pending_new:
                # The same new resource twice in one batch: the later one wins, still version 1 row
                # gets superseded in place by a second version.
                moved.append((p, have[0], vid))
                outcome = "updated"
            else:
                moved.append((p, have[0], vid))
                outcome = "created" if have[2] else "updated"
            state[key] = (vid, p.digest, False)
            seen_states.add((p.rtype, p.rid, p.digest))
            versions.append((p.rtype, p.rid, vid, db_now, False, "create" if vid == 1 else "update",
                             author, content, p.digest))
            reindex.append((pks[key], p))
            results.append(WriteResult(p.rtype, p.rid, vid, outcome, content, now, p.patient_id))

        if new_rows:
            try:
                bulk_insert(conn, R, ("pk", "resource_type", "id", "version_id", "last_updated", "deleted",
                                      "patient_id", "content_hash"), new_rows)
            except IntegrityError as exc:
                raise FhirError(409, "A resource with the same id was created at the same time; try again.",
                                code="conflict") from exc
        for p, old, vid in moved:
            res = conn.execute(update(R).where(R.c.resource_type == p.rtype, R.c.id == p.rid,
                                               R.c.version_id == old)
                               .values(version_id=vid, last_updated=now, deleted=False,
                                       patient_id=p.patient_id, content_hash=p.digest))
            if res.rowcount != 1:
                code = 412 if p.expected_version is not None else 409
                raise FhirError(code, f"{p.rtype}/{p.rid} was changed by someone else at the same time; "
                                "read it again and reapply your change.", code="conflict")
        if versions:
            try:
                bulk_insert(conn, V, ("resource_type", "id", "version_id", "last_updated", "deleted",
                                      "method", "author", "content", "content_hash"), versions)
            except IntegrityError as exc:
                raise FhirError(409, "The resource was changed by someone else at the same time; try again.",
                                code="conflict") from exc
        self._reindex(conn, reindex, [pks[(m[0].rtype, m[0].rid)] for m in moved])
        return results

    def _check_locked(self, conn: Connection, items: list[Prepared]) -> None:
        """A signed (authenticated) document is locked: its content never changes again. It may only
        be retracted (status entered-in-error) or superseded; corrections are addenda, new documents
        that point at it with relatesTo "appends". Bulk import (the source system) is exempt."""
        if not items:
            return
        olds = {s.id: s.resource() for s in self.read_many(conn, [(p.rtype, p.rid) for p in items])}
        for p in items:
            old = olds.get(p.rid)
            if old is None or not is_signed_document(old):
                continue
            new = orjson.loads(p.body)
            if _without(new, "meta", "status", "text") != _without(old, "meta", "status", "text") \
                    or new.get("status") not in ("current", "superseded", "entered-in-error"):
                raise FhirError(409, f"{p.rtype}/{p.rid} is signed and locked: its content cannot change. "
                                "Write an addendum instead: a new DocumentReference whose relatesTo has code "
                                f"'appends' and target {p.rtype}/{p.rid}.", code="business-rule")

    def _reindex(self, conn: Connection, items: list[tuple[int, Prepared]], replaced: list[int]) -> None:
        """Replace the index rows of the resources ``replaced`` (keys) and add those of ``items``
        ((key, item) pairs; of several items of one key the last wins)."""
        if not items:
            return
        if replaced:
            keys = sorted(set(replaced))
            for i in range(0, len(keys), 500):
                for t in INDEX_TABLES:
                    conn.execute(delete(t).where(t.c.resource_pk.in_(keys[i:i + 500])))
        latest = dict(items)
        tok: list[tuple[Any, ...]] = []
        strs: list[tuple[Any, ...]] = []
        dts: list[tuple[Any, ...]] = []
        refs: list[tuple[Any, ...]] = []
        # In primary-key order (each item's rows come sorted from searchparams.extract): the rows of
        # new resources then go to the end of each B-tree, page after page.
        for pk in sorted(latest):
            p = latest[pk]
            rtype = p.rtype
            ix = p.index
            tok += [(pk, rtype, *row) for row in ix.tokens]
            strs += [(pk, rtype, *row) for row in ix.strings]
            dts += [(pk, rtype, *row) for row in ix.dates]
            refs += [(pk, rtype, *row) for row in ix.references]
        head = ("resource_pk", "resource_type", "param")
        bulk_insert(conn, IDX_TOKEN, (*head, "system", "code"), tok)
        bulk_insert(conn, IDX_STRING, (*head, "value"), strs)
        bulk_insert(conn, IDX_DATE, (*head, "low", "high"), dts)
        bulk_insert(conn, IDX_REF, (*head, "target_type", "target_id"), refs)
