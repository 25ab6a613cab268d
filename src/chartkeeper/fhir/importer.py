"""Bulk import of FHIR bundles (transaction, batch, collection) and NDJSON files.

The import keeps the resources' own ids, so importing the same files twice adds no resource and no
version (an unchanged resource is recognised by its content digest). Good resources land; every
reject is written to the report with its file, entry index and reason. Worker processes read and
validate files while this process writes them, in transactions of up to ``COMMIT_EVERY`` resources.
"""

from __future__ import annotations

import contextlib
import gc
import gzip
import io
import multiprocessing
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Connection

from chartkeeper.fhir import bundles
from chartkeeper.fhir.store import Prepared, prepare

if TYPE_CHECKING:
    from chartkeeper.fhir.service import RecordService
    from chartkeeper.security.principal import Principal

SUFFIXES = (".json", ".json.gz", ".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz")
# Resources per write (one round of statements), and per transaction. A commit writes every page the
# transaction dirtied to the WAL; the lookup indexes by value and by (type, id) have random keys (UUID
# ids), so each commit rewrites pages all over those B-trees, and fewer, larger transactions write far
# less (measured before index rows were keyed by resource_pk: 4,000 resources a transaction wrote
# 0.9 GB of WAL for a 225 MB database). A crash loses at most the open transaction, and importing the
# same files again completes the import (it is idempotent).
CHUNK = 2000
COMMIT_EVERY = 25000
# PostgreSQL: ANALYZE the resource tables once this many are written, then at each doubling.
REFRESH_AFTER = 2000
IMPORT_CACHE_KIB = 262144  # SQLite page cache while importing (256 MiB)


@dataclass
class Reject:
    file: str
    entry: int | None
    reason: str
    resource_type: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "entry": self.entry, "resourceType": self.resource_type, "reason": self.reason}


@dataclass
class ImportReport:
    files: int = 0
    created: Counter[str] = field(default_factory=Counter)
    updated: Counter[str] = field(default_factory=Counter)
    unchanged: Counter[str] = field(default_factory=Counter)
    rejects: list[Reject] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return sum(self.created.values()) + sum(self.updated.values()) + sum(self.unchanged.values())

    def by_type(self) -> dict[str, dict[str, int]]:
        types = sorted(set(self.created) | set(self.updated) | set(self.unchanged)
                       | {r.resource_type for r in self.rejects if r.resource_type})
        rej = Counter(r.resource_type for r in self.rejects)
        return {t: {"created": self.created[t], "updated": self.updated[t], "unchanged": self.unchanged[t],
                    "rejected": rej[t]} for t in types}

    def as_dict(self) -> dict[str, Any]:
        return {"files": self.files, "accepted": self.accepted, "rejected": len(self.rejects),
                "by_type": self.by_type()}


def find_files(paths: list[Path]) -> list[Path]:
    """Files to import, in a stable order; folders are searched recursively."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.name.endswith(SUFFIXES)))
        elif p.exists():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p} does not exist; give a file or a folder of .json, .json.gz or .ndjson files.")
    return out


def _open(path: Path) -> io.BufferedIOBase:
    raw = path.open("rb")
    head = raw.read(2)
    raw.seek(0)
    if head == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    return raw  # type: ignore[return-value]


def read_file(path: Path) -> Iterator[tuple[int | None, Any, str | None]]:
    """(entry index, planned resource or None, reject reason or None) for each entry of one file."""
    name = path.name.removesuffix(".gz")
    try:
        with _open(path) as fh:
            if name.endswith((".ndjson", ".jsonl")):
                for n, line in enumerate(fh):
                    if not line.strip():
                        continue
                    try:
                        res = orjson.loads(line)
                    except orjson.JSONDecodeError as exc:
                        yield n, None, f"line {n + 1} is not valid JSON ({exc.msg})."
                        continue
                    yield from _plan_entries([{"resource": res}], index_base=n, default_method="PUT")
                return
            data = fh.read()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        yield None, None, f"the file cannot be read ({exc.__class__.__name__}: {exc})."
        return
    fast = _read_bundle_once(data)
    if fast is not None:
        yield from _plan_entries(fast, default_method="POST", references_done=True)
        return
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        yield None, None, f"the file is not valid JSON ({exc.msg} at position {exc.pos})."
        return
    if not isinstance(doc, dict):
        yield None, None, "the file must hold a Bundle or a single resource (a JSON object)."
        return
    if doc.get("resourceType") == "Bundle":
        if doc.get("type") not in ("transaction", "batch", "collection"):
            yield None, None, (f"Bundle.type '{str(doc.get('type'))[:32]}' cannot be imported; use a "
                               "transaction, batch or collection bundle.")
            return
        entries = doc.get("entry") or []
        if not isinstance(entries, list):
            yield None, None, "Bundle.entry must be a list."
            return
        rewritten = rewrite_urns(data, entries)
        if rewritten is not None:
            yield from _plan_entries(rewritten, default_method="POST", references_done=True)
        else:
            yield from _plan_entries(entries, default_method="POST")
    else:
        yield from _plan_entries([{"resource": doc}], default_method="PUT")


_URN_REF = re.compile(rb'"reference"\s*:\s*"(urn:[^"\\]{1,100})"')


def _urn_targets(entries: list[Any]) -> dict[bytes, bytes] | None:
    """``urn:`` fullUrl -> ``Type/id`` for a bundle's entries; None when an entry has no usable id."""
    urls: dict[bytes, bytes] = {}
    for e in entries:
        if not isinstance(e, dict):
            return None
        full, res = e.get("fullUrl"), e.get("resource")
        if not (isinstance(full, str) and full.startswith("urn:")):
            continue
        if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
            return None
        rid = res.get("id")
        if not (isinstance(rid, str) and bundles.ID_RE.match(rid)):
            rid = full[9:] if full.startswith("urn:uuid:") else None
            if not (rid and bundles.ID_RE.match(rid)):
                return None
        urls[full.encode()] = f"{res['resourceType']}/{rid}".encode()
    return urls


def _swap_urns(data: bytes, urls: dict[bytes, bytes]) -> bytes | None:
    """``data`` with every ``"reference": "urn:..."`` rewritten through ``urls``; None when one
    names no entry."""
    missing = False

    def swap(m: re.Match[bytes]) -> bytes:
        nonlocal missing
        target = urls.get(m.group(1))
        if target is None:
            missing = True
            return m.group(0)
        return b'"reference":"' + target + b'"'

    out = _URN_REF.sub(swap, data)
    return None if missing else out


def rewrite_urns(data: bytes, entries: list[Any]) -> list[Any] | None:
    """The bundle's entries with every ``urn:`` reference rewritten to ``Type/id``, done on the raw
    JSON text (one regular-expression pass instead of walking every element of every resource).
    None when it cannot be done that way (an entry without a usable id, or a urn: that names no
    entry): the caller then takes the general path, which also reports the bad references."""
    urls = _urn_targets(entries)
    if urls is None:
        return None
    out = _swap_urns(data, urls)
    if out is None:
        return None
    if out is data:
        return entries
    entries2 = orjson.loads(out).get("entry")
    return entries2 if isinstance(entries2, list) and len(entries2) == len(entries) else None


# An entry as bundle writers (Synthea among them) lay it out: fullUrl, then the resource starting
# with its resourceType and id.
_ENTRY_HEAD = re.compile(rb'"fullUrl"\s*:\s*"(urn:uuid:[^"\\]{1,100})"\s*,\s*"resource"\s*:\s*\{\s*'
                         rb'"resourceType"\s*:\s*"([A-Za-z]{1,64})"\s*,\s*"id"\s*:\s*"([^"\\]{1,64})"')


def _read_bundle_once(data: bytes) -> list[Any] | None:
    """The common case in one JSON parse instead of two: read the urn: targets off the raw text,
    rewrite the references, parse, then check that the targets read off the text are exactly those
    of the parsed entries (so the result is the one :func:`rewrite_urns` gives). None whenever
    anything differs or is unusual: the caller takes the general path."""
    guess = {m.group(1): m.group(2) + b"/" + m.group(3) for m in _ENTRY_HEAD.finditer(data)}
    if not guess:
        return None
    out = _swap_urns(data, guess)
    if out is None:
        return None
    try:
        doc = orjson.loads(out)
    except orjson.JSONDecodeError:
        return None
    if not (isinstance(doc, dict) and doc.get("resourceType") == "Bundle"
            and doc.get("type") in ("transaction", "batch", "collection")):
        return None
    entries = doc.get("entry")
    if not isinstance(entries, list) or _urn_targets(entries) != guess:
        return None
    return entries


def _plan_entries(entries: list[Any], *, index_base: int = 0, default_method: str,
                  references_done: bool = False) -> Iterator[tuple[int | None, Any, str | None]]:
    plans, issues = bundles.plan(entries, keep_ids=True, default_method=default_method,
                                 references_done=references_done)
    bad: dict[int, str] = {}
    for issue in issues:
        idx = int(issue.path.split("[", 1)[1].split("]", 1)[0]) if issue.path and "[" in issue.path else -1
        bad.setdefault(idx, issue.message.split(": ", 1)[-1])
    planned = {p.index for p in plans}
    for i in range(len(entries)):
        if i in bad:
            yield index_base + i, _rtype(entries[i]), bad[i]
        elif i not in planned:
            yield index_base + i, _rtype(entries[i]), "the entry could not be read."
    for p in plans:
        if p.index in bad:
            continue
        if p.method not in ("POST", "PUT") or p.resource is None:
            yield index_base + p.index, p.resource_type, f"{p.method} entries cannot be imported; only resources."
            continue
        p.resource["id"] = p.id
        yield index_base + p.index, p.resource, None


def _rtype(entry: Any) -> str | None:
    if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
        rt = entry["resource"].get("resourceType")
        return rt if isinstance(rt, str) else None
    return None


def prepare_file(path: Path) -> tuple[list[Prepared], list[Reject]]:
    """Read, plan, validate and prepare one file: the CPU-heavy half of an import, run in workers."""
    from chartkeeper.fhir.validation import validate

    ready: list[Prepared] = []
    rejects: list[Reject] = []
    for idx, res, reason in read_file(path):
        if reason is not None:
            rejects.append(Reject(str(path), idx, reason, res if isinstance(res, str) else None))
            continue
        issues = validate(res)
        if issues:
            msg = "; ".join(i.message if i.path and i.path in i.message else f"{i.path}: {i.message}"
                            for i in issues[:5])
            rejects.append(Reject(str(path), idx, msg, res.get("resourceType")))
            continue
        ready.append(prepare(res, res["id"]))
    return ready, rejects


def default_workers() -> int:
    """One core for the writing process, the others for workers (measured best on 2 cores: 1)."""
    return max(1, min(4, (os.cpu_count() or 1) - 1))


def run_import(records: RecordService, principal: Principal, paths: list[Path], *,
               progress: Callable[[int, int, str], None] | None = None,
               workers: int | None = None) -> ImportReport:
    """Import files; ``progress(done_files, total_files, name)`` is called after each file.

    Worker processes read, validate and prepare files while this process writes to the database
    in chunks (one transaction each). ``workers=0`` does everything in this process.
    """
    files = find_files(paths)
    # The import makes millions of short-lived, acyclic objects (parsed JSON, index row tuples) while
    # thousands stay alive in the pending chunk; the cyclic collector would keep re-walking those
    # (measured: it costs more than parsing them). Reference counting still frees everything; the
    # collector is back on, and run once, when the import ends.
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        return _run_import(records, principal, files, progress, workers)
    finally:
        if gc_was_on:
            gc.enable()
            gc.collect()


def _worker_init() -> None:
    gc.disable()  # see run_import; a worker process ends with the import


def _run_import(records: RecordService, principal: Principal, files: list[Path],
                progress: Callable[[int, int, str], None] | None, workers: int | None) -> ImportReport:
    report = ImportReport()
    pending: list[Prepared] = []
    n_workers = default_workers() if workers is None else workers
    tx = contextlib.ExitStack()
    conn: Connection | None = None
    in_tx = 0

    def write() -> None:
        """Write what is pending in the open transaction; commit every COMMIT_EVERY resources."""
        nonlocal conn, in_tx
        if not pending:
            return
        if conn is None:
            if records.db.is_sqlite:
                # Room for the pages one transaction dirties, so that they are written once, at
                # commit, instead of spilled to the WAL and written again; back to the normal size
                # once the transaction has ended (callbacks run last-in first-out).
                restore: list[tuple[Any, int]] = []
                tx.callback(lambda: [raw.execute(f"PRAGMA cache_size={size}") for raw, size in restore])
            conn = tx.enter_context(records.db.begin())
            if records.db.is_sqlite:
                restore.append((conn.connection.dbapi_connection,
                                int(conn.exec_driver_sql("PRAGMA cache_size").scalar_one())))
                conn.exec_driver_sql(f"PRAGMA cache_size=-{IMPORT_CACHE_KIB}")
        stats = records.ingest(conn, principal, pending, validated=True)
        report.created.update(stats.created)
        report.updated.update(stats.updated)
        report.unchanged.update(stats.unchanged)
        in_tx += len(pending)
        _plan_for_growth(conn, report.accepted)
        pending.clear()
        if in_tx >= COMMIT_EVERY:
            commit()

    analysed_at = 0  # resources written when the planner statistics were last refreshed

    def _plan_for_growth(c: Connection, written: int) -> None:
        """PostgreSQL plans each chunk's lookups by type and id from the statistics of the last
        ANALYZE. Without fresh ones (a new database, or autovacuum not yet round) it takes every type
        to be rare and walks all rows of the type through ix_fhir_resource_type_updated instead of
        probing the (type, id) index: measured 14 ms a chunk at 60,000 resources, growing with the
        table. So ANALYZE the resource tables in the import's own transaction (which counts its own
        uncommitted rows) once REFRESH_AFTER resources are written and at each doubling after that:
        a handful in all, whatever the import's size. SQLite needs nothing (no statistics)."""
        nonlocal analysed_at
        if records.db.is_sqlite or written < max(REFRESH_AFTER, 2 * analysed_at):
            return
        for table in ("fhir_resource", "fhir_resource_version"):
            c.exec_driver_sql(f"ANALYZE {table}")
        analysed_at = written

    def commit() -> None:
        nonlocal conn, in_tx
        tx.close()
        conn, in_tx = None, 0

    def take(n: int, ready: list[Prepared], rejects: list[Reject]) -> None:
        report.files += 1
        report.rejects.extend(rejects)
        pending.extend(ready)
        if len(pending) >= CHUNK:
            write()
        if progress:
            progress(n, len(files), files[n - 1].name)

    with tx:
        if n_workers and len(files) > 1:
            ctx = multiprocessing.get_context("fork")
            with ctx.Pool(n_workers, initializer=_worker_init) as pool:
                results = pool.imap(prepare_file, files, chunksize=1)
                n = 0
                while True:
                    # Write as soon as the workers have nothing new: the writer never waits while
                    # resources are pending, and the last file is not left to write alone at the end.
                    try:
                        ready, rejects = results.next(timeout=0 if pending else None)
                    except multiprocessing.TimeoutError:
                        write()
                        continue
                    except StopIteration:
                        break
                    n += 1
                    take(n, ready, rejects)
        else:
            for n, f in enumerate(files, 1):
                take(n, *prepare_file(f))
        write()
    return report


def write_report(report: ImportReport, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        for r in report.rejects:
            fh.write(orjson.dumps(r.as_dict()) + b"\n")
