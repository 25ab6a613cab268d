"""p50/p95 latency of read, search by patient+code, and $everything, at 200 and 2,000 patients.

The 198 Synthea patients are imported, then (for the larger size) imported again under new ids until
the store holds the wanted number of patients. Each call goes through the record service with a
real principal, so the policy check and the audit write are part of what is measured.

    .venv/bin/python benchmarks/read.py [--sizes 200 2000] [--backend sqlite|postgresql] [--calls 300]
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


def main() -> None:
    import faulthandler

    faulthandler.dump_traceback_later(float(__import__("os").environ.get("BENCH_TRACE_AFTER", "1e9")), exit=True)
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[200, 2000])
    ap.add_argument("--backend", default="sqlite")
    ap.add_argument("--calls", type=int, default=300)
    args = ap.parse_args()
    from chartkeeper.db import Database
    from chartkeeper.fhir.importer import run_import
    from chartkeeper.fhir.service import RecordService
    from chartkeeper.security.principal import Principal

    tmp = tempfile.mkdtemp()
    url = f"sqlite:///{tmp}/read.db" if args.backend == "sqlite" else \
        "postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3Dbench_read"
    if args.backend != "sqlite":
        from sqlalchemy import create_engine, text

        eng = create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/test")
        with eng.begin() as c:
            c.execute(text("drop schema if exists bench_read cascade; create schema bench_read"))
    db = Database(url)
    db.upgrade()
    svc = RecordService(db)
    who = Principal.system("bench")
    run_import(svc, who, [DATA])
    rows = []
    copies = 0
    for size in sorted(args.sizes):
        while (copies + 1) * 198 < size - 99:  # 198 patients per copy: the nearest multiple
            copies += 1
            run_import(svc, who, bundles_with_new_ids(copies))
        patients = [s.id for s in svc.search(who, "Patient", [("_count", "1000")]).matches]
        n_patients = svc.search(who, "Patient", [("_count", "0")]).total
        rng = random.Random(1)
        lat: dict[str, list[float]] = {"read Patient": [], "search patient+code": [], "$everything": []}
        for _ in range(args.calls):
            pid = rng.choice(patients)
            t = time.perf_counter()
            svc.read(who, "Patient", pid)
            lat["read Patient"].append(time.perf_counter() - t)
            t = time.perf_counter()
            svc.search(who, "Observation", [("patient", pid), ("code", "http://loinc.org|8302-2")])
            lat["search patient+code"].append(time.perf_counter() - t)
            t = time.perf_counter()
            svc.everything(who, pid)
            lat["$everything"].append(time.perf_counter() - t)
        for name, xs in lat.items():
            rows.append((n_patients, name, statistics.median(xs) * 1000, pct(xs, 0.95) * 1000))
    print(f"\n{args.backend}, {args.calls} calls each, audited (policy + audit entry per call)\n")
    print("| patients | call | p50 ms | p95 ms |")
    print("| ---: | --- | ---: | ---: |")
    for n, name, p50, p95 in rows:
        print(f"| {n} | {name} | {p50:.2f} | {p95:.2f} |")


if __name__ == "__main__":
    main()
