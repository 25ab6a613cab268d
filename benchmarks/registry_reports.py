"""The registrar's reports page: what it costs to compute survival and incidence from the stored
abstracts on every page load, and how much of that is the statistics.

Per backend, in a fresh database, N synthetic registry cases (``demo.registry.historical_cases``,
one tumour each, with follow-up) are imported as NAACCR XML through the registry service, then,
medians of --runs:

  * baseline: reading the same rows with one plain SELECT and decoding their JSON (the read floor);
  * ``RegistryService.report_records`` (policy check, visible-patient filter, one audit entry);
  * ``report.survival_report`` by site group (Kaplan-Meier, life tables, the SVG) on those records;
  * ``report.incidence_report`` by county over the demo population file;
  * the whole ``GET /registry/reports`` page through the app (login session, render).

    .venv/bin/python benchmarks/registry_reports.py [--cases 5000] [--runs 5] [--no-postgres]
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
import orjson  # noqa: E402
from _bench_db import drop, fresh_url  # noqa: E402 - benchmarks/ is the script directory
from sqlalchemy import text  # noqa: E402

from chartkeeper.db import Database  # noqa: E402
from chartkeeper.demo.registry import county_population, historical_cases  # noqa: E402
from chartkeeper.registry import report  # noqa: E402
from chartkeeper.registry.incidence import load_population  # noqa: E402
from chartkeeper.registry.service import RegistryService, naaccr_patient, naaccr_write  # noqa: E402
from chartkeeper.security import users  # noqa: E402
from chartkeeper.security.principal import Principal  # noqa: E402

SYSTEM = Principal.system("bench")
TODAY = date(2026, 3, 1)
PASSWORD = "bench-registry-password-1"


def median_ms(fn: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def run(backend: str, cases: int, runs: int, tmp: str) -> list[tuple[str, str, float]]:
    url, schema = fresh_url(backend, tmp, "registry-reports")
    db = Database(url)
    try:
        db.upgrade()
        svc = RegistryService(db)
        path = Path(tmp) / f"cases-{backend}.xml"
        with path.open("wb") as out:
            naaccr_write(out, {}, (naaccr_patient(p, t) for p, t in historical_cases(cases, today=TODAY)), "260", "A")
        t = time.perf_counter()
        rep = svc.import_file(SYSTEM, path)
        load_s = time.perf_counter() - t
        assert not rep.rejects, rep.rejects[:3]
        with db.begin() as conn:
            u = users.create_user(conn, "rita", PASSWORD, ["registrar"], actor=SYSTEM, display_name="Rita")
        rita = u.principal("127.0.0.1")
        population = load_population(county_population(TODAY))
        records = svc.report_records(rita)

        def floor() -> None:
            with db.read() as conn:
                rows = conn.execute(text("select t.items, p.items from registry_tumor t join registry_patient p "
                                         "on p.id = t.registry_patient_id")).all()
            [(orjson.loads(a), orjson.loads(b)) for a, b in rows]

        from fastapi.testclient import TestClient

        from chartkeeper.config import Settings
        from chartkeeper.web.app import create_app

        app = create_app(Settings(database_url=url, secret_key="bench-secret-key", base_url="https://testserver"), db=db)
        client = TestClient(app, base_url="https://testserver")
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)  # type: ignore[union-attr]
        client.post("/login", data={"username": "rita", "password": PASSWORD, "csrf_token": token})

        def page() -> None:
            r = client.get("/registry/reports?by=site")
            assert r.status_code == 200 and "<svg" in r.text

        out = [("import (NAACCR XML, once)", f"{cases} cases", load_s * 1000),
               ("baseline: plain SELECT + JSON decode", f"{len(records)} rows", median_ms(floor, runs)),
               ("report_records (policy, audit)", f"{len(records)} rows", median_ms(lambda: svc.report_records(rita), runs)),
               ("survival_report by site group", "KM + life tables + SVG",
                median_ms(lambda: report.survival_report(records, "site"), runs)),
               ("incidence_report by county", f"{len(population.counties)} counties",
                median_ms(lambda: report.incidence_report(records, population), runs)),
               ("GET /registry/reports (whole page)", "by site", median_ms(page, runs))]
        return [(backend, *row) for row in out]
    finally:
        db.dispose()
        drop(schema)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args()
    rows: list[tuple[str, str, str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in ("sqlite",) if args.no_postgres else ("sqlite", "postgresql"):
            try:
                rows.extend(run(backend, args.cases, args.runs, tmp))
            except Exception as exc:  # noqa: BLE001 - a missing PostgreSQL is reported, not fatal
                if backend == "sqlite":
                    raise
                print(f"postgresql skipped: {exc.__class__.__name__}: {str(exc)[:120]}")
    print(f"\nRegistry reports over {args.cases} synthetic cases, median of {args.runs} runs (ms)\n")
    print(f"{'backend':<11} {'step':<38} {'size':<24} {'ms':>9}")
    for backend, step, size, ms in rows:
        print(f"{backend:<11} {step:<38} {size:<24} {ms:>9.1f}")


if __name__ == "__main__":
    main()
