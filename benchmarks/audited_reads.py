"""Authenticated, audited FHIR reads per second over loopback, beside the same reads with auth and
audit switched off (CHARTKEEPER_AUTH_ENABLED=0), on SQLite and PostgreSQL.

Each run is a fresh database, 200 patients and one him_technician bearer token; every request is
GET /fhir/Patient/{id} through the whole server (HTTP, token check, policy, store, audit). "on":
every read's token is looked up, its policy checked and its audit entry committed (hash-chained)
before the response. "off": the same server and the same read path (reads share one transaction,
RecordService._read) without token, policy or audit, so the overhead column is what auth and audit
cost, measured in the same run.

The load comes from wrk (Debian package `wrk`) when it is installed, so that the load generator
costs little of the machine; otherwise from Python threads (which eat much of a 2-core machine and
understate the server). The server is uvicorn with --workers N (SQLite: 1 is right, one writer).

    .venv/bin/python benchmarks/audited_reads.py [--seconds 10] [--clients 16] [--workers 1] [--no-postgres]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def setup(url: str, n: int = 200) -> tuple[list[str], str]:
    from chartkeeper.db import Database
    from chartkeeper.fhir.service import RecordService
    from chartkeeper.security import sessions, users
    from chartkeeper.security.principal import Principal

    db = Database(url)
    db.upgrade()
    svc = RecordService(db)
    sysp = Principal.system("bench")
    ids = [svc.create(sysp, {"resourceType": "Patient", "gender": "female", "birthDate": "1970-01-01",
                             "name": [{"family": f"Bench{i}"}]})[0].id for i in range(n)]
    with db.begin() as c:
        u = users.create_user(c, "bench" + uuid.uuid4().hex[:6], "benchmark-password-1", ["him_technician"], actor=sysp)
        token = sessions.issue_token(c, u.principal(), label="bench")[0]
    db.dispose()
    return ids, token


def load(port: int, ids: list[str], token: str, seconds: float, clients: int) -> float:
    done = [0] * clients
    stop = time.perf_counter() + seconds

    def worker(k: int) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}) as c:
            i = k
            while time.perf_counter() < stop:
                r = c.get(f"/fhir/Patient/{ids[i % len(ids)]}")
                assert r.status_code == 200, r.text
                done[k] += 1
                i += clients

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(done) / (time.perf_counter() - t0)


def load_wrk(port: int, ids: list[str], token: str, seconds: float, clients: int) -> float:
    script = Path(tempfile.mkdtemp()) / "reads.lua"
    script.write_text("ids = {" + ",".join(f'"{i}"' for i in ids) + "}\nn = 0\n"
                      f'wrk.headers["Authorization"] = "Bearer {token}"\n'
                      "request = function()\n  n = n + 1\n"
                      '  return wrk.format("GET", "/fhir/Patient/" .. ids[(n % #ids) + 1])\nend\n')
    out = subprocess.run(["wrk", "-t1", f"-c{clients}", f"-d{seconds:.0f}s", "-s", str(script),
                          f"http://127.0.0.1:{port}"], check=True, capture_output=True, text=True).stdout
    if "Non-2xx" in out:
        raise SystemExit("some reads failed:\n" + out)
    return float(out.split("Requests/sec:")[1].split()[0])


def run(url: str, auth: bool, seconds: float, clients: int, workers: int) -> float:
    ids, token = setup(url)
    port = free_port()
    env = dict(os.environ, CHARTKEEPER_DATABASE_URL=url, CHARTKEEPER_AUTH_ENABLED="1" if auth else "0")
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "chartkeeper.web.app:create_app", "--factory",
                             "--port", str(port), "--workers", str(workers), "--log-level", "warning"], env=env)
    try:
        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{port}/fhir/metadata", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        time.sleep(1.0 * workers)
        fn = load_wrk if shutil.which("wrk") else load
        fn(port, ids, token, 1.0, clients)  # warm up
        return fn(port, ids, token, seconds, clients)
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args()
    rows = []
    backends = ["sqlite"] + ([] if args.no_postgres else ["postgresql"])
    for b in backends:
        for auth in (False, True):
            if b == "sqlite":
                url = f"sqlite:///{tempfile.mkdtemp()}/reads.db"
            else:
                from sqlalchemy import create_engine, text

                schema = "bench_" + uuid.uuid4().hex[:8]
                eng = create_engine(PG)
                with eng.begin() as c:
                    c.execute(text(f"create schema {schema}"))
                url = f"{PG}?options=-csearch_path%3D{schema}"
            rows.append((b, auth, run(url, auth, args.seconds, args.clients, args.workers)))
    gen = "wrk" if shutil.which("wrk") else "Python threads"
    print(f"\n{args.clients} connections from {gen}, {args.seconds:.0f} s each, {args.workers} uvicorn worker(s)\n")
    print("| backend | auth + audit | reads/s | overhead |")
    print("| --- | --- | ---: | ---: |")
    base = {b: r for b, a, r in rows if not a}
    for b, a, r in rows:
        over = f"{(1 - r / base[b]) * 100:.0f}%" if a else "baseline"
        print(f"| {b} | {'on' if a else 'off'} | {r:,.0f} | {over} |")


if __name__ == "__main__":
    main()
