"""Import throughput over ../shared/data/synthea-r4 on SQLite and PostgreSQL, with baselines.

Prints a Markdown table (median of --runs runs, each in a fresh database and a fresh process so that
peak memory is per run):
  * chartkeeper import: read, plan, validate, index, store, audit (the real `run_import`)
  * raw insert of the same JSON documents into one table (the storage floor)
  * fhir.resources R4B model validation of a sample (the validation baseline)

    .venv/bin/python benchmarks/ingest.py [--runs 3] [--no-postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "synthea-r4"
from _bench_db import drop, fresh_url  # noqa: E402 - benchmarks/ is the script directory


def _load_resources() -> list[bytes]:
    import gzip

    import orjson

    out = []
    for f in sorted(DATA.glob("*.json.gz")):
        for e in orjson.loads(gzip.open(f).read())["entry"]:
            out.append(orjson.dumps(e["resource"]))
    return out


def child(kind: str, url: str) -> None:
    """One measured run in this process; prints JSON {seconds, resources, peak_mb}."""
    if kind == "import":
        from chartkeeper.db import Database
        from chartkeeper.fhir.importer import run_import
        from chartkeeper.fhir.service import RecordService
        from chartkeeper.security.principal import Principal

        db = Database(url)
        db.upgrade()
        t = time.perf_counter()
        rep = run_import(RecordService(db), Principal.system("bench"), [DATA])
        secs = time.perf_counter() - t
        n = rep.accepted
        assert not rep.rejects, rep.rejects[:3]
    elif kind == "raw":
        from sqlalchemy import create_engine, text

        from chartkeeper.db.engine import make_engine

        docs = _load_resources()
        eng = make_engine(url) if url.startswith("sqlite") else create_engine(url)
        with eng.begin() as c:
            c.execute(text("create table raw_doc (id integer primary key, content text not null)"))
        t = time.perf_counter()
        rows = [(i, d.decode()) for i, d in enumerate(docs)]
        with eng.begin() as c:
            if eng.dialect.name == "postgresql":
                raw = c.connection.dbapi_connection
                with raw.cursor() as cur, cur.copy("COPY raw_doc (id, content) FROM STDIN") as cp:
                    for r in rows:
                        cp.write_row(r)
            else:
                c.exec_driver_sql("insert into raw_doc (id, content) values (?, ?)", rows)
        secs = time.perf_counter() - t
        n = len(docs)
    else:  # fhir.resources R4B model validation of a sample
        import orjson
        from fhir.resources.R4B import get_fhir_model_class

        docs = _load_resources()[::20]
        parsed = [orjson.loads(d) for d in docs]
        t = time.perf_counter()
        ok = 0
        for r in parsed:
            try:
                get_fhir_model_class(r["resourceType"]).model_validate(r)
                ok += 1
            except Exception:  # noqa: BLE001 - R4B differs from R4 in places; count the attempt anyway
                pass
        secs = time.perf_counter() - t
        n = len(parsed)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"seconds": secs, "resources": n, "peak_mb": max(peak, kids)}))


def measure(kind: str, backend: str, runs: int) -> dict[str, float]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(runs):
            url, schema = fresh_url(backend, tmp)
            try:
                out = subprocess.run([sys.executable, __file__, "--child", kind, url], check=True,
                                     capture_output=True, text=True).stdout
            finally:
                drop(schema)
            results.append(json.loads(out.strip().splitlines()[-1]))
    secs = statistics.median(r["seconds"] for r in results)
    n = results[0]["resources"]
    return {"resources": n, "seconds": secs, "rate": n / secs, "peak_mb": max(r["peak_mb"] for r in results)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    if not DATA.is_dir():
        sys.exit(f"{DATA} not found: the benchmark needs ../shared/data/synthea-r4")
    backends = ["sqlite"] + ([] if args.no_postgres else ["postgresql"])
    rows = []
    for b in backends:
        rows.append((f"chartkeeper import ({b})", measure("import", b, args.runs)))
        rows.append((f"raw JSON insert, one table ({b}) [floor]", measure("raw", b, args.runs)))
    rows.append(("fhir.resources R4B validation, 1 in 20 [baseline]", measure("r4b", "sqlite", args.runs)))
    print(f"\nmedian of {args.runs} runs, {os.cpu_count()} CPUs\n")
    print("| what | resources | median s | resources/s | peak RSS MB |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, r in rows:
        print(f"| {name} | {r['resources']:,} | {r['seconds']:.2f} | {r['rate']:,.0f} | {r['peak_mb']:.0f} |")


if __name__ == "__main__":
    main()
