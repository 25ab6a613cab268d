"""Coding workflow speed: what the queue costs imports, and how fast the coder's screens answer.

Per backend, in fresh databases:

  * import: N discharged encounters (with their patients) through ``RecordService.ingest`` in
    batches of 1,000, with the coding write listener (which makes the abstract rows) against the
    same import without it (baseline), median of --runs runs;
  * queue page: ``CodingService.queue`` (100 rows, oldest first, audited) over the N abstracts,
    against the FHIR search a queue would need without its table (``Encounter?status=finished``,
    100 rows, audited) as baseline; and ``counts`` (the DNFB numbers);
  * finalize: one encounter coded and finalized (policy, built-in checks, new Encounter version, the
    Claim, audit), against one plain Encounter update through the record service (baseline).

    .venv/bin/python benchmarks/coding.py [--encounters 5000] [--runs 3] [--calls 30] [--no-postgres]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from _bench_db import drop, fresh_url  # benchmarks/ is the script directory

from chartkeeper.coding import service as coding
from chartkeeper.coding.service import CodingService, DiagnosisInput, QueueFilter
from chartkeeper.db import Database
from chartkeeper.fhir import service as fhir_service
from chartkeeper.fhir.service import RecordService
from chartkeeper.security import users
from chartkeeper.security.principal import Principal

SYSTEM = Principal.system("bench")
NOW = datetime.now(UTC)
CLASSES = ("IMP", "AMB", "EMER")


def resources(n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(n):
        end = NOW - timedelta(hours=7 * i % 900)
        out.append({"resourceType": "Patient", "id": f"p{i}", "gender": "female", "birthDate": "1950-01-01",
                    "name": [{"family": f"F{i}", "given": ["G"]}]})
        out.append({"resourceType": "Encounter", "id": f"e{i}", "status": "finished",
                    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": CLASSES[i % 3]},
                    "subject": {"reference": f"Patient/p{i}"},
                    "period": {"start": (end - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                               "end": end.strftime("%Y-%m-%dT%H:%M:%SZ")}})
    return out


def fresh(backend: str, tmp: str) -> tuple[Database, str | None]:
    url, schema = fresh_url(backend, tmp, "coding")
    db = Database(url)
    db.upgrade()
    return db, schema


def ingest(db: Database, res: list[dict[str, Any]], listener: bool) -> float:
    records = RecordService(db)
    saved = list(fhir_service._LISTENERS)
    if not listener:
        fhir_service._LISTENERS[:] = [f for f in saved if f is not coding._listener]
    try:
        t = time.perf_counter()
        for i in range(0, len(res), 1000):
            with db.begin() as conn:
                records.ingest(conn, SYSTEM, res[i:i + 1000], source="bench")
        return time.perf_counter() - t
    finally:
        fhir_service._LISTENERS[:] = saved


def ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:8.1f} ms"


def bench(backend: str, n: int, runs: int, calls: int) -> list[tuple[str, str, str]]:
    res = resources(n)
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(runs):
            for listener in (False, True):
                db, schema = fresh(backend, tmp)
                try:
                    times[listener].append(ingest(db, res, listener))
                finally:
                    db.dispose()
                    drop(schema)
        base, with_l = statistics.median(times[False]), statistics.median(times[True])
        rows.append((f"import {n} encounters", f"{n / with_l:8.0f} enc/s", f"{n / base:8.0f} enc/s (no listener)"))

        db, schema = fresh(backend, tmp)
        try:
            ingest(db, res, True)
            records = RecordService(db)
            svc = CodingService(db, records=records)
            with db.begin() as conn:
                coder = users.create_user(conn, "bench-coder", "bench-password-123456", ["coder"], actor=SYSTEM).principal()
            q, s, c = [], [], []
            for _ in range(calls):
                t = time.perf_counter()
                page = svc.queue(coder, QueueFilter(limit=100))
                q.append(time.perf_counter() - t)
                t = time.perf_counter()
                records.search(coder, "Encounter", [("status", "finished"), ("_count", "100")])
                s.append(time.perf_counter() - t)
                t = time.perf_counter()
                svc.counts(coder)
                c.append(time.perf_counter() - t)
            assert page.total == n
            rows.append(("queue page (100 of N)", ms(q), ms(s) + " (FHIR Encounter search)"))
            rows.append(("DNFB counts", ms(c), ""))
            fin, upd = [], []
            for i in range(min(calls, n // 3)):
                eid = f"e{3 * i}"  # inpatient
                svc.save_codes(coder, eid, [DiagnosisInput("J18.9", "Y"), DiagnosisInput("I10", "Y")], [])
                t = time.perf_counter()
                svc.finalize(coder, eid)
                fin.append(time.perf_counter() - t)
                other = records.read(SYSTEM, "Encounter", f"e{3 * i + 1}").resource()
                other.pop("meta", None)
                other["serviceType"] = {"text": f"touch {i}"}
                t = time.perf_counter()
                records.update(SYSTEM, "Encounter", other["id"], other)
                upd.append(time.perf_counter() - t)
            rows.append(("finalize one stay", ms(fin), ms(upd) + " (one Encounter update)"))
        finally:
            db.dispose()
            drop(schema)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--encounters", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--calls", type=int, default=30)
    ap.add_argument("--no-postgres", action="store_true")
    a = ap.parse_args()
    for backend in ("sqlite",) if a.no_postgres else ("sqlite", "postgresql"):
        try:
            rows = bench(backend, a.encounters, a.runs, a.calls)
        except Exception as exc:  # noqa: BLE001 - a missing PostgreSQL is reported, not fatal
            print(f"{backend}: skipped ({exc.__class__.__name__}: {exc})")
            continue
        print(f"\n{backend}: {a.encounters} discharged encounters, medians")
        print(f"{'measure':28} {'coding':>14}   baseline")
        for name, mine, base in rows:
            print(f"{name:28} {mine:>14}   {base}")


if __name__ == "__main__":
    main()
