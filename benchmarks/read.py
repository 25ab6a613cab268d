"""p50/p95 latency of read, search by patient+code, and $everything, at 200 and 2,000 patients.

The 198 Synthea patients are imported, then (for the larger size) imported again under new ids until
the store holds the wanted number of patients. Each call goes through the record service with a
real principal, so the policy check and the audit write are part of what is measured.

    .venv/bin/python benchmarks/read.py [--sizes 200 2000] [--backend sqlite|postgresql] [--calls 300]
                                        [--warmup 50] [--keep DIR]

Each size has its own database, read once into the page cache (SQLite: the files; PostgreSQL:
pg_prewarm), and the sizes are measured in turn, call by call, after a warm-up: on this noisy 2-core
machine a busy moment then slows every size alike instead of one size's run.
"""

from __future__ import annotations

import argparse
import gzip
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "synthea-r4"
sys.path.insert(0, str(ROOT / "benchmarks"))


def bundles_with_new_ids(copy: int) -> list[Path]:
    """Copies of the patient bundles whose every id (and urn:uuid) is replaced by a new one."""
    out = []
    tmp = Path(tempfile.mkdtemp(prefix=f"copy{copy}-"))
    rng = random.Random(copy)
    for f in sorted(DATA.glob("patient-*.json.gz")):
        raw = gzip.open(f).read()
        b = orjson.loads(raw)
        for e in b["entry"]:
            r = e["resource"]
            if r["resourceType"] in ("Organization", "Practitioner"):
                continue
            new = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            raw = raw.replace(r["id"].encode(), new.encode())
        p = tmp / f.name.replace(".gz", "")
        p.write_bytes(raw)
        out.append(p)
    return out


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


CALLS = ("read Patient", "search patient+code", "$everything")


def _call(svc, who, name: str, pid: str) -> None:  # type: ignore[no-untyped-def]
    if name == "read Patient":
        svc.read(who, "Patient", pid)
    elif name == "search patient+code":
        svc.search(who, "Observation", [("patient", pid), ("code", "http://loinc.org|8302-2")])
    else:
        svc.everything(who, pid)


def _database(backend: str, size: int, keep: str | None):  # type: ignore[no-untyped-def]
    """The database for one size: a SQLite file (in ``keep`` when given, reused if it is there) or a
    PostgreSQL schema ``bench_read_SIZE`` (kept with ``keep``). Returns (Database, needs_import)."""
    from chartkeeper.db import Database

    if backend == "sqlite":
        folder = Path(keep) if keep else Path(tempfile.mkdtemp())
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"read-{size}.db"
        fresh = not path.exists()
        db = Database(f"sqlite:///{path}")
    else:
        from sqlalchemy import create_engine, text

        schema = f"bench_read_{size}"
        eng = create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/test")
        with eng.begin() as c:
            fresh = not keep or c.execute(text("select 1 from information_schema.schemata where schema_name = :s"),
                                          {"s": schema}).first() is None
            if fresh:
                c.execute(text(f"drop schema if exists {schema} cascade; create schema {schema}"))
        eng.dispose()
        db = Database(f"postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}")
    db.upgrade()
    return db, fresh


def _warm(db) -> str:  # type: ignore[no-untyped-def]
    """Read the database's files once, so that both sizes start from the operating system's page cache,
    as a database server's working set is once it has run a while (this machine's cache gives memory
    back to the host and drops parts of a 2 GB file between runs, and reads from the virtual disk then
    measured the disk, not the store). Returns how it was done, for the printed header."""
    from sqlalchemy import text

    if db.is_sqlite:
        path = Path(db.engine.url.database)
        for f in (path, Path(f"{path}-wal")):
            if f.exists():
                with f.open("rb") as fh:
                    while fh.read(1 << 24):
                        pass
        return "files read once"
    with db.engine.begin() as c:
        if c.execute(text("select 1 from pg_available_extensions where name = 'pg_prewarm'")).first() is None:
            return "not warmed (pg_prewarm not available)"
        c.execute(text("create extension if not exists pg_prewarm schema public"))
        where = c.execute(text("select n.nspname from pg_extension e join pg_namespace n on n.oid = e.extnamespace "
                               "where e.extname = 'pg_prewarm'")).scalar_one()
        c.execute(text(
            f'select "{where}".pg_prewarm(r.oid, \'read\') from pg_class r join pg_namespace n on n.oid = r.relnamespace '
            "where n.nspname = current_schema() and r.relkind in ('r', 'i') "
            f'union all select "{where}".pg_prewarm(r.reltoastrelid, \'read\') from pg_class r '
            "join pg_namespace n on n.oid = r.relnamespace where n.nspname = current_schema() "
            "and r.relkind = 'r' and r.reltoastrelid <> 0")).all()
    return "relations read once with pg_prewarm"


def main() -> None:
    import faulthandler

    faulthandler.dump_traceback_later(float(__import__("os").environ.get("BENCH_TRACE_AFTER", "1e9")), exit=True)
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[200, 2000])
    ap.add_argument("--backend", default="sqlite")
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=50, help="calls per size before the measured ones")
    ap.add_argument("--keep", help="folder (SQLite) or flag (PostgreSQL: keep the schemas) to build the "
                                   "databases once and reuse them in later runs")
    args = ap.parse_args()
    from chartkeeper.fhir.importer import run_import
    from chartkeeper.fhir.service import RecordService
    from chartkeeper.security.principal import Principal

    who = Principal.system("bench")
    # One database per size, each built the same way (the shared bundles, then copies under new ids up
    # to the nearest multiple of 198 patients), statistics refreshed as after a CLI import.
    sizes: list[tuple[int, RecordService, list[str], int]] = []
    for size in sorted(args.sizes):
        db, fresh = _database(args.backend, size, args.keep)
        svc = RecordService(db)
        if fresh:
            run_import(svc, who, [DATA])
            copies = 0
            while (copies + 1) * 198 < size - 99:  # 198 patients per copy: the nearest multiple
                copies += 1
                run_import(svc, who, bundles_with_new_ids(copies))
            db.refresh_statistics()
        warmed = _warm(db)
        patients = [s.id for s in svc.search(who, "Patient", [("_count", "1000")]).matches]
        sizes.append((size, svc, patients, svc.search(who, "Patient", [("_count", "0")]).total))
    # The sizes are measured call by call in turn (read, search, $everything on one database, then the
    # same on the next), so a noisy moment of this shared machine falls on every size alike.
    rng = random.Random(1)
    lat: dict[tuple[int, str], list[float]] = {}
    for n in range(args.warmup + args.calls):
        for size, svc, patients, _ in sizes:
            pid = rng.choice(patients)
            for name in CALLS:
                t = time.perf_counter()
                _call(svc, who, name, pid)
                if n >= args.warmup:
                    lat.setdefault((size, name), []).append(time.perf_counter() - t)
    print(f"\n{args.backend}, {args.calls} calls each after {args.warmup} warm-up calls, the sizes in turn, audited "
          f"(policy + audit entry per call); databases {warmed}\n")
    print("| patients | call | p50 ms | p95 ms | p95 vs smallest |")
    print("| ---: | --- | ---: | ---: | ---: |")
    for name in CALLS:
        base = pct(lat[(sizes[0][0], name)], 0.95)
        for size, _, _, n_patients in sizes:
            xs = lat[(size, name)]
            print(f"| {n_patients} | {name} | {statistics.median(xs) * 1000:.2f} | {pct(xs, 0.95) * 1000:.2f} | "
                  f"{pct(xs, 0.95) / base:.2f}x |")
    print("\ntargets: $everything p95 under 50 ms, read p95 under 5 ms, p95 growing less than 2x from 200 to 2,000 "
          "patients")


if __name__ == "__main__":
    main()
