"""The tamper-evident audit trail.

Every entry has a chain position ``seq`` (1, 2, 3, ... with no gaps) and ``hash = SHA-256(prev_hash +
"\\n" + canonical JSON of the entry's fields, its id and seq included)``, where ``prev_hash`` is the
hash of the entry before it (64 zeros for entry 1). The one-row table ``audit_head`` holds the last
seq and hash; whoever extends the chain locks that row, so the chain stays one linear chain.

How an entry joins the chain depends on the database:

* **SQLite**: write transactions are ``BEGIN IMMEDIATE`` and so already serialized; :func:`record`
  links the entry into the chain at once (one primary-key read, one insert, one update).
* **PostgreSQL**: :func:`record` is one plain insert (``seq`` NULL): holding the chain-head lock until
  the caller commits would serialize every audited request behind one WAL flush (about 300 requests/s
  with a 3 ms fsync) instead of letting PostgreSQL group the commits. Committed entries are then
  *sealed* into the chain by :func:`seal`, in commit order, by whichever request finishes next (at
  most every ``SEAL_INTERVAL`` seconds per process, and once more after a burst), and by
  ``chartkeeper audit verify`` before it checks. Until sealed (normally well under a second) an
  entry is durable but not yet tamper-evident.

Either way the entry commits with the caller's data or not at all.

Reads have no data to commit, only their entries: :func:`audited_read` runs the reads of concurrent
callers one after another in one shared write transaction and links all their entries into the chain
at once (one head lock, one insert, one head update, one commit: a group commit, on both databases,
with nothing left to seal); each caller gets its data only after that commit.

When a secret key is configured the head also carries an HMAC of ``seq:hash``, and
:func:`checkpoint` writes signed checkpoints, so that even a rewrite of the whole chain from some
entry on (recomputing every later hash) is caught by someone holding the key.

:func:`verify` recomputes the chain and names the first bad entry: altered, missing (deleted),
inserted or out of order. The log stores ids and codes, never copies of PHI.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar, cast

import orjson
from sqlalchemy import (
    Connection,
    Engine,
    Table,
    and_,
    bindparam,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from chartkeeper.db.base import UTCDateTime, utcnow
from chartkeeper.db.bulk import COPY_MIN_ROWS, bulk_insert
from chartkeeper.db.driver import DriverStatement
from chartkeeper.security.models import (
    BULK_ACTIONS,
    BULK_ACTIONS_EXCLUDED,
    AuditCheckpointRow,
    AuditHeadRow,
    AuditRow,
)
from chartkeeper.security.principal import Principal

log = logging.getLogger(__name__)

GENESIS = "0" * 64
HEAD_ID = 1
# Advisory lock (this key, hash of the schema) held by the one PostgreSQL sealer at a time.
SEAL_LOCK_KEY = 0x636B6175  # "ckau"
# A process seals at most this often from the request path (plus once after the last request).
SEAL_INTERVAL = 0.05
SEAL_BATCH = 5000
# At most this many audited reads share one transaction (audited_read).
SHARED_BATCH = 64

# The fields that go into an entry's hash, in this order.
HASHED_FIELDS = (
    "id",
    "seq",
    "at",
    "user_id",
    "username",
    "roles",
    "action",
    "outcome",
    "resource_type",
    "resource_id",
    "patient_id",
    "purpose",
    "detail",
    "client_address",
    "prev_hash",
)
_CONTENT = HASHED_FIELDS[2:-1]  # what record() writes, besides id/seq and the chain columns
_LIMITS = {
    "user_id": 128,
    "username": 128,
    "roles": 255,
    "action": 32,
    "outcome": 16,
    "resource_type": 64,
    "resource_id": 64,
    "patient_id": 64,
    "purpose": 1000,
    "detail": 1000,
    "client_address": 64,
}
OUTCOMES = ("success", "denied", "failure")

_log_t = cast(Table, AuditRow.__table__)
_head_t = cast(Table, AuditHeadRow.__table__)
_cp_t = cast(Table, AuditCheckpointRow.__table__)


class AuditWriteError(RuntimeError):
    """The audit entry could not be written; the request it belongs to must fail."""


@dataclass(frozen=True)
class AuditEntry:
    id: int
    seq: int | None  # None while waiting to be sealed (PostgreSQL)
    at: datetime
    user_id: str | None
    username: str | None
    roles: str
    action: str
    outcome: str
    resource_type: str | None
    resource_id: str | None
    patient_id: str | None
    purpose: str | None
    detail: str | None
    client_address: str | None
    prev_hash: str | None
    hash: str | None

    @property
    def role_list(self) -> list[str]:
        return self.roles.split() if self.roles else []


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str = ""
    head_seq: int = 0
    # True when a key was given and the head's HMAC is right.
    signed: bool = False
    checkpoints: int = 0
    # Entries written but not yet sealed into the chain (PostgreSQL; run seal() first to include them).
    unsealed: int = 0


# --------------------------------------------------------------------------------------------
# Hashing


_last_time: tuple[object, str] = (object(), "")  # the last timestamp written, and how


def format_time(at: datetime) -> str:
    global _last_time
    last = _last_time
    if last[0] is at:  # a bulk job's entries share one timestamp: written once
        return last[1]
    text = (at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    _last_time = (at, text)  # one assignment: another thread sees the old pair or the new one
    return text


def canonical(values: Mapping[str, Any], seq: int | None = None) -> bytes:
    parts: list[Any] = []
    for name in HASHED_FIELDS:
        v = values[name]
        if name == "seq" and seq is not None:
            v = seq
        elif name == "at":
            v = format_time(v)
        parts.append(v)
    # orjson writes exactly the bytes of json.dumps(parts, separators=(",", ":"), ensure_ascii=False) in
    # UTF-8 for text, 64-bit integers and None (tests/security/test_audit.py checks it over arbitrary
    # text), twenty times faster; anything else, and text orjson refuses (a lone surrogate, which the
    # standard encoder then refuses in its own words), goes the standard way.
    if all(v is None or type(v) is str or (type(v) is int and -(2**63) <= v < 2**64) for v in parts):
        try:
            return orjson.dumps(parts)
        except orjson.JSONEncodeError:
            pass
    return canonical_json(parts)


def canonical_json(parts: list[Any]) -> bytes:
    """The canonical encoding of an entry's hashed fields, as the standard library writes it."""
    return json.dumps(parts, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def entry_hash(values: Mapping[str, Any], seq: int | None = None) -> str:
    """SHA-256 of prev_hash + canonical fields (``seq`` overrides the stored sequence number)."""
    h = hashlib.sha256(str(values["prev_hash"]).encode("ascii", "replace"))
    h.update(b"\n")
    h.update(canonical(values, seq))
    return h.hexdigest()


def _mac(key: str, seq: int, digest: str) -> str:
    return hmac.new(key.encode("utf-8"), f"{seq}:{digest}".encode(), hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------------------------
# Signing key (the Settings secret key unless set explicitly)

_key_lock = threading.Lock()
_signing_key: str | None = None


def set_signing_key(key: str | None) -> None:
    """Use this key for head signatures and checkpoints ("" switches signing off; None: from Settings)."""
    global _signing_key
    with _key_lock:
        _signing_key = key


def signing_key() -> str:
    global _signing_key
    if _signing_key is None:
        from chartkeeper.config import get_settings

        with _key_lock:
            if _signing_key is None:
                _signing_key = get_settings().secret_key or ""
    return _signing_key


# --------------------------------------------------------------------------------------------
# Appending


def _clean(value: object, limit: int) -> str | None:
    if value is None:
        return None
    s = str(value).replace("\x00", "")
    return s[:limit]


# Built once: constructing statements costs more than running these small ones.
_HEAD_FOR_UPDATE = select(_head_t.c.seq, _head_t.c.hash).where(_head_t.c.id == HEAD_ID).with_for_update()
_HEAD_SET = (
    update(_head_t)
    .where(_head_t.c.id == HEAD_ID)
    .values(seq=bindparam("h_seq"), hash=bindparam("h_hash"), mac=bindparam("h_mac"))
)
_LOG_INSERT = insert(_log_t)
_LOG_INSERT_RETURNING_ID = insert(_log_t).returning(_log_t.c.id)
# The same statements for record(), the path every audited request takes: run on the driver's cursor
# (see chartkeeper.db.driver), which costs a tenth of Connection.execute.
_D_HEAD_FOR_UPDATE = DriverStatement(_HEAD_FOR_UPDATE)
_D_HEAD_SET = DriverStatement(_HEAD_SET)
_D_LOG_INSERT = DriverStatement(_LOG_INSERT, keys=("id", "seq", *_CONTENT, "prev_hash", "hash"))
_D_LOG_INSERT_RETURNING_ID = DriverStatement(_LOG_INSERT_RETURNING_ID, keys=_CONTENT)


def _lock_head(conn: Connection) -> tuple[int, str]:
    row = conn.execute(_HEAD_FOR_UPDATE).first()
    if row is None:
        ins: Any
        if conn.dialect.name == "postgresql":
            ins = postgresql.insert(_head_t).on_conflict_do_nothing()
        else:
            ins = sqlite.insert(_head_t).on_conflict_do_nothing()
        conn.execute(ins, {"id": HEAD_ID, "seq": 0, "hash": GENESIS, "mac": ""})
        row = conn.execute(_HEAD_FOR_UPDATE).first()
        assert row is not None
    return int(row[0]), str(row[1])


def _set_head(conn: Connection, seq: int, digest: str) -> None:
    key = signing_key()
    conn.execute(_HEAD_SET, {"h_seq": seq, "h_hash": digest, "h_mac": _mac(key, seq, digest) if key else ""})


def _check_writable(conn: Connection) -> None:
    if conn.get_execution_options().get("sqlite_read_only"):
        raise AuditWriteError("An audit entry must be written in a write transaction: use Database.begin(), not .read().")


def _deferred(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def entry(
    principal: Principal | None,
    action: str,
    outcome: str,
    *,
    resource_type: str | None = None,
    resource_id: str | None = None,
    patient_id: str | None = None,
    purpose: str | None = None,
    detail: str | None = None,
    client_address: str | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """The fields of one entry, cleaned and truncated (``at`` now unless given), not yet chained:
    what :func:`record` appends, and what the work of :func:`audited_read` returns."""
    if outcome not in OUTCOMES:
        raise ValueError(f"Unknown audit outcome {outcome!r}: use one of {', '.join(OUTCOMES)}.")
    if client_address is None and principal is not None:
        client_address = principal.client_address
    return {
        "at": at or utcnow(),
        "user_id": _clean(principal.user_id or None if principal else None, _LIMITS["user_id"]),
        "username": _clean(principal.username or None if principal else None, _LIMITS["username"]),
        "roles": _clean(principal.roles_text if principal else "", _LIMITS["roles"]) or "",
        "action": _clean(action, _LIMITS["action"]),
        "outcome": outcome,
        "resource_type": _clean(resource_type, _LIMITS["resource_type"]),
        "resource_id": _clean(resource_id, _LIMITS["resource_id"]),
        "patient_id": _clean(patient_id, _LIMITS["patient_id"]),
        "purpose": _clean(purpose, _LIMITS["purpose"]),
        "detail": _clean(detail, _LIMITS["detail"]),
        "client_address": _clean(client_address, _LIMITS["client_address"]),
    }


def record(
    conn: Connection,
    principal: Principal | None,
    action: str,
    outcome: str,
    *,
    resource_type: str | None = None,
    resource_id: str | None = None,
    patient_id: str | None = None,
    purpose: str | None = None,
    detail: str | None = None,
    client_address: str | None = None,
    at: datetime | None = None,
) -> int:
    """Append one entry in the caller's transaction and return its id.

    The entry commits with the caller's data or not at all. Any failure raises (AuditWriteError or
    the database error), so the caller's request fails too.
    """
    _check_writable(conn)
    values = entry(principal, action, outcome, resource_type=resource_type, resource_id=resource_id,
                   patient_id=patient_id, purpose=purpose, detail=detail, client_address=client_address, at=at)
    try:
        if _deferred(conn):
            row = _D_LOG_INSERT_RETURNING_ID.first(conn, values)
            assert row is not None
            _ensure_listener(conn.engine)
            conn.info[_UNSEALED] = True
            return int(row[0])
        head_row = _D_HEAD_FOR_UPDATE.first(conn)
        if head_row is None:
            seq, prev = _lock_head(conn)
        else:
            seq, prev = int(head_row[0]), str(head_row[1])
        seq += 1
        values.update(id=seq, seq=seq, prev_hash=prev)
        digest = entry_hash(values)
        values["hash"] = digest
        _D_LOG_INSERT.execute(conn, values)
        key = signing_key()
        _D_HEAD_SET.execute(conn, {"h_seq": seq, "h_hash": digest, "h_mac": _mac(key, seq, digest) if key else ""})
    except AuditWriteError:
        raise
    except Exception as exc:
        raise AuditWriteError(f"The audit entry could not be written ({exc.__class__.__name__}).") from exc
    return seq


_PER_ENTRY = ("resource_type", "resource_id", "patient_id", "purpose", "detail")
# PostgreSQL: record_many's entries (unsealed) in one statement, one array per field that differs between
# them, in order (the sequence gives ids in that order, and sealing chains by id); an executemany costs
# a server-side execution per entry.
_D_LOG_INSERT_MANY_PG = DriverStatement(text(
    f"INSERT INTO {_log_t.name} ({', '.join(_CONTENT)}) "
    f"SELECT {', '.join(f'v.{k}' if k in _PER_ENTRY else f'CAST(:{k} AS text)' if k != 'at' else ':at' for k in _CONTENT)} "
    f"FROM unnest({', '.join(f'CAST(:v_{k} AS text[])' for k in _PER_ENTRY)}) WITH ORDINALITY "
    f"AS v({', '.join(_PER_ENTRY)}, n) ORDER BY v.n"
).bindparams(bindparam("at", type_=UTCDateTime())), binary=[f"v_{k}" for k in _PER_ENTRY])


def record_many(conn: Connection, principal: Principal | None, action: str, outcome: str,
                entries: Sequence[dict[str, Any]], *, at: datetime | None = None, link: bool = False) -> int:
    """Append several entries of one principal and action (``entries``: dicts of resource_type,
    resource_id, patient_id, purpose, detail) in the caller's transaction, in one statement: a bulk
    job's one entry per patient touched. Chained exactly as :func:`record` would chain them one by
    one. Returns how many.

    ``link``: on PostgreSQL, link the entries into the chain now, under the chain head's lock, instead
    of leaving them for the sealer (which reads them back and rewrites every row: about half the cost
    of a bulk job's audit). The lock is held until the caller's transaction ends and every sealer and
    shared audited read waits for it meanwhile, so only for a short transaction that writes these
    entries last and commits. SQLite links at once either way."""
    if not entries:
        return 0
    _check_writable(conn)
    # The fields every entry shares, cleaned once as entry() cleans them; then each entry's own.
    common = {k: v for k, v in entry(principal, action, outcome, at=at).items() if k not in _PER_ENTRY}
    rows = [{**common, **{k: _clean(e.get(k), _LIMITS[k]) for k in _PER_ENTRY}} for e in entries]
    try:
        if _deferred(conn) and not link:
            _D_LOG_INSERT_MANY_PG.execute(conn, {**common, **{f"v_{k}": [r[k] for r in rows] for k in _PER_ENTRY}})
            _ensure_listener(conn.engine)
            conn.info[_UNSEALED] = True
            return len(rows)
        _append_chained(conn, rows)
    except AuditWriteError:
        raise
    except Exception as exc:
        raise AuditWriteError(f"The audit entries could not be written ({exc.__class__.__name__}).") from exc
    return len(rows)


# PostgreSQL: ids for entries linked into the chain as they are inserted (the hash covers the id), taken
# from the table's own sequence as an insert without an id would.
_D_NEXT_IDS = DriverStatement(
    select(func.nextval(func.pg_get_serial_sequence(_log_t.name, _log_t.c.id.name))).select_from(
        func.generate_series(1, bindparam("n"))
    )
)


# The columns of a linked entry, in the order bulk_insert is given them.
_CHAINED = ("id", "seq", "at", *_CONTENT[1:], "prev_hash", "hash")
_as_utc = UTCDateTime().process_bind_param  # as the column's own type binds it: aware, in UTC


def _append_chained(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Link ``rows`` (from :func:`entry`) into the chain under the head lock, in order, in one
    statement. On SQLite each entry's id is its position."""
    head_row = _D_HEAD_FOR_UPDATE.first(conn)
    if head_row is None:
        seq, prev = _lock_head(conn)
    else:
        seq, prev = int(head_row[0]), str(head_row[1])
    ids = [int(r[0]) for r in _D_NEXT_IDS.all(conn, {"n": len(rows)})] if _deferred(conn) else None
    for i, values in enumerate(rows):
        seq += 1
        values.update(id=ids[i] if ids else seq, seq=seq, prev_hash=prev)
        prev = values["hash"] = entry_hash(values)
    if ids and len(rows) >= COPY_MIN_ROWS:  # PostgreSQL, a bulk job's entries: COPY, a fraction of the cost
        bulk_insert(conn, _log_t, _CHAINED, [(r["id"], r["seq"], _as_utc(r["at"], None), *(r[k] for k in _CHAINED[3:]))
                                             for r in rows])
    else:  # the few entries of a group commit of audited reads: one executemany on the driver
        _D_LOG_INSERT.execute_many(conn, rows)
    key = signing_key()
    _D_HEAD_SET.execute(conn, {"h_seq": seq, "h_hash": prev, "h_mac": _mac(key, seq, prev) if key else ""})


_SEAL_COLS = [_log_t.c[name] for name in ("id", *_CONTENT)]


# The links of a seal written in one statement, one array per column: an executemany of an UPDATE keyed
# by id costs a server-side execution per entry (about 40 ms per 500 entries here, against 5 ms).
_D_SEAL_PG = DriverStatement(text(
    f"UPDATE {_log_t.name} SET seq = v.seq, prev_hash = v.prev, hash = v.hash "
    "FROM unnest(CAST(:b_id AS bigint[]), CAST(:b_seq AS bigint[]), CAST(:b_prev AS text[]), "
    f"CAST(:b_hash AS text[])) AS v(id, seq, prev, hash) WHERE {_log_t.name}.id = v.id AND {_log_t.name}.seq IS NULL"),
    binary=("b_id", "b_seq", "b_prev", "b_hash"))


def seal(conn: Connection, *, limit: int = SEAL_BATCH) -> int:
    """Link committed, unsealed entries into the chain, oldest first; return how many.

    PostgreSQL only (a no-op on SQLite, where record() links at once). One sealer at a time: if
    another holds the advisory lock this returns 0 at once. Call it in its own transaction.
    """
    if not _deferred(conn):
        return 0
    _check_writable(conn)
    lock = func.pg_try_advisory_xact_lock(SEAL_LOCK_KEY, func.hashtext(func.current_schema()))
    if not conn.execute(select(lock)).scalar():
        return 0
    rows = conn.execute(select(*_SEAL_COLS).where(_log_t.c.seq.is_(None)).order_by(_log_t.c.id).limit(limit)).all()
    if not rows:
        return 0
    seq, prev = _lock_head(conn)
    ids: list[int] = []
    seqs: list[int] = []
    prevs: list[str] = []
    hashes: list[str] = []
    for row in rows:
        seq += 1
        values = dict(row._mapping)
        values["seq"] = seq
        values["prev_hash"] = prev
        digest = entry_hash(values)
        ids.append(values["id"])
        seqs.append(seq)
        prevs.append(prev)
        hashes.append(digest)
        prev = digest
    _D_SEAL_PG.execute(conn, {"b_id": ids, "b_seq": seqs, "b_prev": prevs, "b_hash": hashes})
    _set_head(conn, seq, prev)
    return len(rows)


def seal_all(engine: Engine) -> int:
    """Seal everything committed so far, in as many batches as needed (each its own transaction)."""
    total = 0
    for _ in range(100_000):
        with engine.begin() as conn:
            if not _deferred(conn):
                return total
            n = seal(conn)
            waiting = n == 0 and conn.execute(select(_log_t.c.id).where(_log_t.c.seq.is_(None)).limit(1)).first() is not None
        total += n
        if n == 0 and not waiting:
            return total
        if n == 0:  # another sealer holds the lock: let it finish
            time.sleep(0.01)
    return total


def checkpoint(conn: Connection, *, key: str | None = None, note: str = "") -> int | None:
    """Write a signed checkpoint of the current head (returns its seq; None when the log is empty)."""
    _check_writable(conn)
    key = signing_key() if key is None else key
    if not key:
        raise ValueError("A checkpoint needs a secret key: set CHARTKEEPER_SECRET_KEY.")
    seq, digest = _lock_head(conn)
    if seq == 0:
        return None
    exists = conn.execute(select(_cp_t.c.seq).where(_cp_t.c.seq == seq)).first()
    if exists is None:
        conn.execute(
            insert(_cp_t),
            {"seq": seq, "hash": digest, "at": utcnow(), "mac": _mac(key, seq, digest), "note": note[:500]},
        )
    return seq


# --------------------------------------------------------------------------------------------
# After the caller's transaction: entries that must survive its rollback (policy denials, failed
# logins) and sealing (PostgreSQL)

_PENDING = "chartkeeper.security.detached"
_UNSEALED = "chartkeeper.security.unsealed"
_listening: weakref.WeakSet[Engine] = weakref.WeakSet()
_listen_lock = threading.Lock()
_in_hook = threading.local()


def run_detached(conn: Connection, fn: Callable[[Connection], None]) -> None:
    """Run ``fn`` in its own transaction that does not share the caller's fate.

    If ``conn`` is in a transaction, ``fn`` runs as soon as that transaction has ended and the
    connection is returned to the pool (commit or rollback alike); a separate write while the caller
    still holds SQLite's write lock or the audit chain lock would wait for itself. Otherwise it runs
    at once. Used for denial and failed-login entries, which must be kept even though the caller's
    request fails and rolls back.
    """
    if not conn.in_transaction():
        with conn.begin():
            fn(conn)
        return
    _ensure_listener(conn.engine)
    conn.info.setdefault(_PENDING, []).append(fn)


def record_detached(conn: Connection, principal: Principal | None, action: str, outcome: str, **kw: Any) -> None:
    """:func:`record`, but kept even when the caller's transaction rolls back (see run_detached)."""
    at = kw.pop("at", None) or utcnow()

    def _write(c: Connection) -> None:
        record(c, principal, action, outcome, at=at, **kw)

    run_detached(conn, _write)


class _Sealer:
    """Per-engine sealing from the request path: at most every SEAL_INTERVAL, plus a trailing run."""

    def __init__(self, engine: Engine) -> None:
        self.ref = weakref.ref(engine)
        self.last = 0.0
        self.lock = threading.Lock()
        self.timer: threading.Timer | None = None
        # Held while a seal runs: disposing the engine waits for it, then no seal starts again.
        self.running = threading.Lock()
        self.closed = False

    def poke(self) -> None:
        now = time.monotonic()
        with self.lock:
            due = now - self.last >= SEAL_INTERVAL
            if due:
                self.last = now
            elif self.timer is None:
                self.timer = threading.Timer(SEAL_INTERVAL, self._trailing)
                self.timer.daemon = True
                self.timer.start()
        if due:
            self._seal()

    def _trailing(self) -> None:
        with self.lock:
            self.timer = None
            self.last = time.monotonic()
        self._seal()

    def _seal(self) -> None:
        eng = self.ref()
        if eng is None:
            return
        with self.running:
            if self.closed:
                return
            _in_hook.active = True
            try:
                with eng.begin() as c:
                    seal(c)
            except Exception:  # noqa: BLE001 - sealing is retried by the next request
                log.exception("audit: sealing failed; it will be retried")
            finally:
                _in_hook.active = False

    def cancel(self) -> None:
        """Drop a scheduled trailing run and wait for a running one (the engine is being disposed):
        no connection is opened behind the disposer's back."""
        with self.lock:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
        if not getattr(_in_hook, "active", False):
            with self.running:
                self.closed = True
        else:
            self.closed = True


def _ensure_listener(engine: Engine) -> None:
    if engine in _listening:
        return
    with _listen_lock:
        if engine in _listening:
            return
        ref = weakref.ref(engine)
        sealer = _Sealer(engine) if engine.dialect.name == "postgresql" else None

        def _on_checkin(dbapi_connection: Any, record_: Any) -> None:
            if record_ is None:
                return
            pending = record_.info.pop(_PENDING, None)
            unsealed = record_.info.pop(_UNSEALED, False)
            if not pending and not unsealed:
                return
            eng = ref()
            if eng is None:  # pragma: no cover
                if pending:
                    log.error("audit: %d detached entries lost: engine gone", len(pending))
                return
            for fn in pending or ():
                try:
                    with eng.begin() as c:
                        fn(c)
                        c.info.pop(_UNSEALED, None)
                except Exception:  # noqa: BLE001 - a checkin hook must not raise
                    log.exception("audit: could not write a detached entry")
            if sealer is not None and not getattr(_in_hook, "active", False):
                sealer.poke()

        def _on_dispose(conn: Any) -> None:
            if sealer is not None:
                sealer.cancel()

        event.listen(engine, "checkin", _on_checkin)
        event.listen(engine, "engine_disposed", _on_dispose)
        _listening.add(engine)


# --------------------------------------------------------------------------------------------
# Audited reads: run together, one commit for their entries


class Writer(Protocol):
    """What :func:`audited_read` needs of a database: ``chartkeeper.db.Database``."""

    def begin(self) -> AbstractContextManager[Connection]: ...


T = TypeVar("T")
ReadWork = Callable[[Connection], tuple[T, Sequence[dict[str, Any]]]]


class _Ticket:
    """One caller's read in the queue. ``signal`` is held until the read is done (or the caller is
    made the next leader)."""

    __slots__ = ("work", "signal", "lead", "value", "rows", "error")

    def __init__(self, work: ReadWork[Any]) -> None:
        self.work = work
        self.signal = threading.Lock()
        self.signal.acquire()
        self.lead = False
        self.value: Any = None
        self.rows: Sequence[dict[str, Any]] = ()
        self.error: BaseException | None = None


class _SharedReads:
    """Runs the audited reads of concurrent callers in one write transaction and commits all their
    audit entries with one chain-head update and one commit (group commit).

    The first caller to find nobody running becomes the leader: it takes every read queued so far,
    runs them one after the other in one write transaction, links the entries they return into the
    chain in queue order (one head lock, one insert, one head update), commits, then wakes their
    callers and hands the lead to the first caller that queued meanwhile. A caller gets its data
    only after that commit; if the entries cannot be written every caller of the batch gets
    AuditWriteError. A read that raises (not found, denied, bad token) fails alone: it wrote
    nothing, and its entries are not written. The chain is what appending the entries one by one
    would give.

    The reads of a batch run one at a time in the leader's thread, as they would one by one under
    SQLite's write lock; what they share is one write-lock turn, one BEGIN/COMMIT, one chain-head
    update and, on SQLite, the WAL pages of the log's table and time index instead of seven pages
    per entry; on PostgreSQL entries are linked into the chain at once (no sealing) and a batch
    costs one WAL flush.
    """

    def __init__(self, db: Writer) -> None:
        self.db = weakref.ref(db)  # held weakly: _shared is keyed by the database
        self.mutex = threading.Lock()
        self.queue: list[_Ticket] = []
        self.busy = False

    def run(self, work: ReadWork[T]) -> T:
        ticket = _Ticket(work)
        with self.mutex:
            self.queue.append(ticket)
            lead = not self.busy
            self.busy = True
        if not lead:
            ticket.signal.acquire()  # woken when done, or to lead the next batch
        if lead or ticket.lead:
            self._lead(ticket)
        if ticket.error is not None:
            raise ticket.error
        return cast(T, ticket.value)

    def _lead(self, own: _Ticket) -> None:
        batch: list[_Ticket] = []
        handed_on = False

        def hand_on() -> None:
            """Make the first caller queued meanwhile the next leader (once)."""
            nonlocal handed_on
            if handed_on:
                return
            handed_on = True
            with self.mutex:
                nxt = self.queue[0] if self.queue else None
                if nxt is None:
                    self.busy = False
                else:
                    nxt.lead = True
            if nxt is not None:
                nxt.signal.release()

        try:
            self._run(batch, hand_on)
        except BaseException as exc:
            reason = str(exc) if isinstance(exc, AuditWriteError) else \
                f"The audit entry could not be written ({exc.__class__.__name__})."
            for t in batch:
                if t.error is None:  # each caller its own error (they are raised in their threads)
                    t.value, t.error = None, AuditWriteError(reason)
                    t.error.__cause__ = exc
        finally:
            hand_on()
            for t in batch:
                if t is not own:
                    t.signal.release()

    def _run(self, batch: list[_Ticket], hand_on: Callable[[], None]) -> None:
        db = self.db()
        if db is None:  # pragma: no cover - callers hold the database
            raise AuditWriteError("The audit entry could not be written (the database is gone).")
        rows: list[dict[str, Any]] = []
        ran = 0  # the reads of ``batch`` run so far
        while True:
            try:
                with db.begin() as conn:
                    raw = conn.connection.dbapi_connection
                    changes = getattr(raw, "total_changes", None)  # sqlite3: rows written so far
                    while (t := self._next(batch, ran)) is not None:
                        ran += 1
                        try:
                            t.value, t.rows = t.work(conn)
                        except Exception as exc:  # noqa: BLE001 - this read fails alone
                            t.error = exc
                        if changes is not None and getattr(raw, "total_changes", None) != changes:
                            raise RuntimeError("an audited read wrote to the database; it must only read")
                        if t.error is None:
                            rows.extend(t.rows)
                        if _aborted(raw):  # the read failed a statement (even one it then caught)
                            raise _Aborted
                    if rows:
                        _check_writable(conn)
                        _append_chained(conn, rows)
                    if conn.dialect.name != "sqlite":
                        # PostgreSQL: the next batch may read while this one waits for its commit (WAL
                        # flush); its entries wait for this chain-head lock, so the chain order holds.
                        # (On SQLite the next batch would only wait for the write lock.)
                        hand_on()
                return
            except _Aborted:
                # PostgreSQL: a read's failed statement aborted the transaction, which can run nothing
                # more; it wrote nothing (the reads only read), so it is rolled back and the batch goes
                # on in a new one: the reads before keep their values, their entries are written with
                # the rest, and the failed read fails alone as on SQLite.
                continue

    def _next(self, batch: list[_Ticket], ran: int) -> _Ticket | None:
        """The batch's next read: the first of ``batch`` not run yet, taking the reads queued meanwhile
        into it (up to SHARED_BATCH in all); None when there is none."""
        if ran == len(batch):
            room = SHARED_BATCH - len(batch)
            if room <= 0:
                return None
            with self.mutex:
                more, self.queue = self.queue[:room], self.queue[room:]
            if not more:
                return None
            batch.extend(more)
        return batch[ran]


class _Aborted(Exception):
    """The shared transaction can run nothing more (see _SharedReads._run)."""


def _aborted(raw: Any) -> bool:
    """Whether this DB-API connection's transaction refuses every further statement (PostgreSQL after a
    failed statement; an SQLite transaction goes on)."""
    status = getattr(getattr(raw, "info", None), "transaction_status", None)
    return getattr(status, "name", "") == "INERROR"


_shared: weakref.WeakKeyDictionary[Any, _SharedReads] = weakref.WeakKeyDictionary()
_shared_lock = threading.Lock()


def audited_read(db: Writer, work: ReadWork[T]) -> T:
    """Run ``work(conn)``, which only reads and returns ``(value, entries)`` (each entry from
    :func:`entry`), and return ``value`` once its audit entries are committed.

    The work runs in a write transaction of ``db`` shared with other threads' audited reads, and
    their entries are committed together (see _SharedReads). The work must not write (a write
    would commit or roll back with the others'; on SQLite it is refused); a policy denial it
    records with :func:`record_detached` is written after the shared transaction, before its caller
    sees the error. Raises what ``work`` raised, or AuditWriteError if the entries could not be
    committed. Never call it inside a write transaction of ``db`` (it would wait for itself).
    """
    group = _shared.get(db)
    if group is None:
        with _shared_lock:
            group = _shared.get(db)
            if group is None:
                group = _shared[db] = _SharedReads(db)
    return group.run(work)


# --------------------------------------------------------------------------------------------
# Reading

_COLS = [_log_t.c[name] for name in (*HASHED_FIELDS, "hash")]


def _entry(row: Any) -> AuditEntry:
    m = row._mapping
    return AuditEntry(**{name: m[name] for name in (*HASHED_FIELDS, "hash")})


def query(
    conn: Connection,
    *,
    patient_id: str | None = None,
    user_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    action: str | None = None,
    outcome: str | None = None,
    resource_type: str | None = None,
    resource_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
    newest_first: bool = True,
) -> list[AuditEntry]:
    """Entries matching every given filter (``since`` inclusive, ``until`` exclusive), by id."""
    conds: list[Any] = []
    if patient_id is not None:
        conds.append(_log_t.c.patient_id == patient_id)
    if user_id is not None:
        conds.append(_log_t.c.user_id == user_id)
    if since is not None:
        conds.append(_log_t.c.at >= since)
    if until is not None:
        conds.append(_log_t.c.at < until)
    if action is not None:
        conds.append(_log_t.c.action == action)
        if action not in BULK_ACTIONS:
            conds.append(BULK_ACTIONS_EXCLUDED)  # lets the partial index ix_audit_log_action_at serve it
    if outcome is not None:
        conds.append(_log_t.c.outcome == outcome)
    if resource_type is not None:
        conds.append(_log_t.c.resource_type == resource_type)
    if resource_id is not None:
        conds.append(_log_t.c.resource_id == resource_id)
    stmt = select(*_COLS)
    if conds:
        stmt = stmt.where(and_(*conds))
    stmt = stmt.order_by(_log_t.c.id.desc() if newest_first else _log_t.c.id.asc())
    stmt = stmt.limit(max(0, min(int(limit), 10_000))).offset(max(0, int(offset)))
    return [_entry(r) for r in conn.execute(stmt)]


def get(conn: Connection, entry_id: int) -> AuditEntry | None:
    """The entry with this id (on SQLite the id is also its chain position)."""
    row = conn.execute(select(*_COLS).where(_log_t.c.id == entry_id)).first()
    return _entry(row) if row else None


def get_by_seq(conn: Connection, seq: int) -> AuditEntry | None:
    row = conn.execute(select(*_COLS).where(_log_t.c.seq == seq)).first()
    return _entry(row) if row else None


def head(conn: Connection) -> tuple[int, str]:
    row = conn.execute(select(_head_t.c.seq, _head_t.c.hash).where(_head_t.c.id == HEAD_ID)).first()
    return (int(row[0]), str(row[1])) if row else (0, GENESIS)


def unsealed_count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(_log_t).where(_log_t.c.seq.is_(None))).scalar_one())


# --------------------------------------------------------------------------------------------
# Verifying

_WINDOW = 64


def _iter_rows(conn: Connection, batch: int, after: int | None = None) -> Iterator[AuditEntry]:
    last = after
    while True:
        stmt = select(*_COLS).where(_log_t.c.seq.is_not(None)).order_by(_log_t.c.seq).limit(batch)
        if last is not None:
            stmt = stmt.where(_log_t.c.seq > last)
        rows = [_entry(r) for r in conn.execute(stmt)]
        if not rows:
            return
        yield from rows
        last = rows[-1].seq
        if len(rows) < batch:
            return


def _as_values(e: AuditEntry) -> dict[str, Any]:
    return {name: getattr(e, name) for name in HASHED_FIELDS}


def _self_ok(e: AuditEntry, seq: int | None = None) -> bool:
    return entry_hash(_as_values(e), seq) == e.hash


def _original_seq(e: AuditEntry, around: int) -> int | None:
    """The chain position this entry's hash was made with, if within a window of ``around``."""
    vals = _as_values(e)
    for delta in range(1, _WINDOW + 1):
        for cand in (around + delta, around - delta):
            if cand >= 1 and entry_hash(vals, cand) == e.hash:
                return cand
    return None


def _diagnose(conn: Connection, e: AuditEntry, expected: int, prev_hash: str) -> tuple[int, str]:
    """Name the first bad entry, given the first row ``e`` that does not continue the chain."""
    seq = cast(int, e.seq)
    if seq < expected:
        return seq, f"entry {seq} was inserted (sequence numbers start at 1)"
    if seq > expected:
        return expected, f"entry {expected} is missing (deleted)"
    if _self_ok(e):
        # Intact itself but linked to a different predecessor: the entry before it was rewritten
        # with a recomputed hash.
        if expected == 1:
            return 1, "entry 1 was altered (it does not start the chain)"
        return expected - 1, f"entry {expected - 1} was altered (its hash was recomputed)"
    following = list(_iter_rows(conn, _WINDOW, after=seq))
    original = _original_seq(e, expected)
    if original is None:
        nxt = following[0] if following else None
        if nxt is not None and nxt.prev_hash == prev_hash and _self_ok(nxt, expected):
            return expected, f"entry {expected} was inserted (the entries after it were renumbered)"
        return expected, f"entry {expected} was altered"
    if original > expected:
        if any(_self_ok(f, expected) for f in following):
            return expected, f"entry {expected} is out of order (it holds entry {original}: reordered)"
        return expected, f"entry {expected} is missing (deleted; the entries after it were renumbered)"
    # original < expected: entries were inserted before this one and the rest renumbered.
    return original, f"entry {original} was inserted (the entries after it were renumbered)"


def verify(conn: Connection, *, key: str | None = None, batch: int = 5000) -> VerifyResult:
    """Recompute the chain; report the first bad entry (altered, deleted, inserted, reordered).

    Checks the sealed chain; on PostgreSQL call :func:`seal_all` first to include the newest entries
    (``unsealed`` says how many were left out). A writer may seal new entries while this reads (each
    statement sees the latest commit on PostgreSQL): an entry past the head that the head has since
    come to cover was sealed meanwhile, not inserted, and the check starts again from the new head.
    """
    for _ in range(5):
        result = _verify_once(conn, key=key, batch=batch)
        if result.ok or result.first_bad_seq is None or "inserted" not in result.problem:
            return result
        now_head = conn.execute(select(_head_t.c.seq).where(_head_t.c.id == HEAD_ID)).scalar()
        if now_head is None or int(now_head) < result.first_bad_seq:
            return result
    return result


def _verify_once(conn: Connection, *, key: str | None, batch: int) -> VerifyResult:
    key = signing_key() if key is None else key
    head_row = conn.execute(select(_head_t.c.seq, _head_t.c.hash, _head_t.c.mac).where(_head_t.c.id == HEAD_ID)).first()
    head_seq = int(head_row[0]) if head_row else 0
    head_hash = str(head_row[1]) if head_row else GENESIS
    head_mac = str(head_row[2]) if head_row else ""
    checkpoints = {int(r[0]): (str(r[1]), str(r[2])) for r in conn.execute(select(_cp_t.c.seq, _cp_t.c.hash, _cp_t.c.mac))}
    unsealed = unsealed_count(conn)

    def bad(checked: int, seq: int | None, problem: str) -> VerifyResult:
        return VerifyResult(False, checked, seq, problem, head_seq, False, len(checkpoints), unsealed)

    expected = 1
    prev = GENESIS
    checked = 0
    for e in _iter_rows(conn, batch):
        if e.seq is not None and e.seq > head_seq and e.seq == expected:
            return bad(checked, e.seq, f"entry {e.seq} was inserted (after the recorded end of the log)")
        if e.seq != expected or e.prev_hash != prev or not _self_ok(e):
            seq, problem = _diagnose(conn, e, expected, prev)
            return bad(checked, seq, problem)
        if e.seq in checkpoints and checkpoints[e.seq][0] != e.hash:
            return bad(checked, e.seq, f"entry {e.seq} does not match its signed checkpoint (rewritten)")
        prev = cast(str, e.hash)
        expected += 1
        checked += 1
    last = expected - 1
    if head_row is None and last > 0:
        return bad(checked, None, "the chain head is missing")
    if head_seq > last:
        return bad(checked, last + 1, f"entry {last + 1} is missing (deleted)")
    if head_hash != prev:
        return bad(checked, last, f"entry {last} was altered (its hash was recomputed)")
    signed = False
    if key:
        for cp_seq, (cp_hash, cp_mac) in sorted(checkpoints.items()):
            if cp_seq > last:
                return bad(checked, cp_seq, f"entry {cp_seq} is missing (a signed checkpoint names it)")
            if not hmac.compare_digest(cp_mac, _mac(key, cp_seq, cp_hash)):
                return bad(checked, cp_seq, f"the checkpoint at entry {cp_seq} has a wrong signature")
        if head_mac:
            if not hmac.compare_digest(head_mac, _mac(key, head_seq, head_hash)):
                return bad(checked, head_seq, "the chain head has a wrong signature (the log was rewritten)")
            signed = True
        elif checkpoints:
            return bad(checked, head_seq, "the chain head lost its signature (the log was rewritten)")
    return VerifyResult(True, checked, None, "", head_seq, signed, len(checkpoints), unsealed)


# --------------------------------------------------------------------------------------------
# FHIR R4 AuditEvent

_DCM = "http://dicom.nema.org/resources/ontology/DCM"
_REST = {
    "read": "read",
    "vread": "vread",
    "search": "search-type",
    "create": "create",
    "update": "update",
    "delete": "delete",
    "history": "history-instance",
    "transaction": "transaction",
}
_CRUDE = {
    "create": "C",
    "read": "R",
    "vread": "R",
    "search": "E",
    "history": "R",
    "update": "U",
    "delete": "D",
    "export": "R",
    "sign": "U",
}
_DCM_EVENTS = {
    "login": ("110114", "User Authentication", ("110122", "Login")),
    "logout": ("110114", "User Authentication", ("110123", "Logout")),
    "lockout": ("110113", "Security Alert", None),
    "break_glass": ("110113", "Security Alert", None),
    "export": ("110106", "Export", None),
    "audit.verify": ("110101", "Audit Log Used", None),
    "audit.report": ("110101", "Audit Log Used", None),
}
_OUTCOME = {"success": "0", "denied": "4", "failure": "4"}


def as_audit_event(entry: AuditEntry) -> dict[str, Any]:
    """The entry as a FHIR R4 AuditEvent (id = the entry id)."""
    ev: dict[str, Any] = {"resourceType": "AuditEvent", "id": str(entry.id)}
    if entry.action in _REST:
        ev["type"] = {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "RESTful Operation",
        }
        ev["subtype"] = [{"system": "http://hl7.org/fhir/restful-interaction", "code": _REST[entry.action]}]
    elif entry.action in _DCM_EVENTS:
        code, display, sub = _DCM_EVENTS[entry.action]
        ev["type"] = {"system": _DCM, "code": code, "display": display}
        if sub:
            ev["subtype"] = [{"system": _DCM, "code": sub[0], "display": sub[1]}]
    elif entry.action.startswith(("user.", "token.")):
        ev["type"] = {"system": _DCM, "code": "110136", "display": "Security Roles Changed"}
    else:
        ev["type"] = {"system": _DCM, "code": "110100", "display": "Application Activity"}
    # Chartkeeper's own action name, always, so that nothing is lost in the mapping.
    ev.setdefault("subtype", []).append({"system": "urn:chartkeeper:audit-action", "code": entry.action, "display": entry.action})
    ev["action"] = _CRUDE.get(entry.action, "E")
    ev["recorded"] = format_time(entry.at).replace(".000000Z", "Z")
    ev["outcome"] = _OUTCOME.get(entry.outcome, "8")
    if entry.detail or entry.outcome != "success":
        ev["outcomeDesc"] = entry.detail or entry.outcome
    if entry.purpose:
        purpose: dict[str, Any] = {"text": entry.purpose}
        if entry.action == "break_glass":
            purpose["coding"] = [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                    "code": "BTG",
                    "display": "break the glass",
                }
            ]
        ev["purposeOfEvent"] = [purpose]
    agent: dict[str, Any] = {"requestor": True}
    if entry.user_id or entry.username:
        who: dict[str, Any] = {}
        if entry.user_id:
            who["identifier"] = {"system": "urn:chartkeeper:user", "value": entry.user_id}
        if entry.username:
            who["display"] = entry.username
        agent["who"] = who
    if entry.role_list:
        agent["role"] = [{"coding": [{"system": "urn:chartkeeper:role", "code": r}], "text": r} for r in entry.role_list]
    if entry.client_address:
        agent["network"] = {"address": entry.client_address, "type": "2"}
    ev["agent"] = [agent]
    ev["source"] = {
        "site": "chartkeeper",
        "observer": {"display": "chartkeeper"},
        "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4"}],
    }
    entities: list[dict[str, Any]] = []
    if entry.patient_id:
        entities.append(
            {
                "what": {"reference": f"Patient/{entry.patient_id}"},
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "1",
                    "display": "Person",
                },
                "role": {
                    "system": "http://terminology.hl7.org/CodeSystem/object-role",
                    "code": "1",
                    "display": "Patient",
                },
            }
        )
    same_patient = entry.resource_type == "Patient" and entry.resource_id in (None, entry.patient_id)
    if entry.resource_type and not (entry.patient_id and same_patient):
        what: dict[str, Any] = (
            {"reference": f"{entry.resource_type}/{entry.resource_id}"} if entry.resource_id else {"display": entry.resource_type}
        )
        entities.append(
            {
                "what": what,
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "2",
                    "display": "System Object",
                },
            }
        )
    if entities:
        ev["entity"] = entities
    return ev
