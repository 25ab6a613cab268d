"""MS-DRG speed: stays grouped per second by msdrg alone, beside our ``group`` + ``run_edits`` on the
same stays (target: at least half of msdrg's own speed).

  * baseline: ``msdrg.MsdrgGrouper.group`` on prebuilt claim dicts (what the library costs by itself);
  * msdrg grouper + code editor: the two library calls our pipeline makes per stay, prebuilt dicts;
  * ours: ``group(case)`` (version by date, claim built, CC/MCC after exclusion, weights, MCE edits
    attributed to codes) and ``run_edits(case)`` (MCE again + ICD-10-CM conventions + POA) per CodingCase.

Medians of --runs runs. Caches about stays and code pairs are emptied before each pass; what the
ICD-10-CM tabular and the editor say about single codes is warmed once (a running system has it).
``end_to_end``: the first --end-to-end stays through ``CodingService.finalize`` (read from the store,
edit, group, write the Encounter version and the Claim, audited), one run.

    .venv/bin/python benchmarks/drg.py [--stays 5000] [--runs 3] [--end-to-end 500] [--backend sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import date, timedelta

from chartkeeper.coding import edits
from chartkeeper.coding.case import CodedDiagnosis, CodedProcedure, CodingCase
from chartkeeper.coding.codes import ICD10CMCode, ICD10PCSCode
from chartkeeper.coding.drg import claim, code_editor, group, grouper, grouper_version_for
from chartkeeper.coding.edits import run_edits

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
    edits._excludes1.cache_clear()
    edits._satisfies.cache_clear()


def _rate(fn, items) -> float:  # type: ignore[no-untyped-def]
    _cold()
    t = time.perf_counter()
    for x in items:
        fn(x)
    return len(items) / (time.perf_counter() - t)


def end_to_end(cases: list[CodingCase], backend: str = "sqlite") -> float:
    """Stays per second through the coder's real path: ``CodingService.finalize`` reads the stay's
    codes and its Encounter from the store, runs the edits, groups, writes a new Encounter version and
    a Claim through the policy check and the audit log. The codes are saved beforehand (untimed), as a
    coder would have; stays with error edits are counted as refused (finalize checks them too)."""
    from _bench_db import drop, fresh_url

    from chartkeeper.coding.service import CodingError, CodingService, DiagnosisInput, ProcedureInput
    from chartkeeper.db import Database
    from chartkeeper.fhir.service import RecordService
    from chartkeeper.security import users
    from chartkeeper.security.principal import Principal

    system = Principal.system("bench")
    with tempfile.TemporaryDirectory() as tmp:
        url, schema = fresh_url(backend, tmp, "drg")
        db = Database(url)
        db.upgrade()
        try:
            records = RecordService(db)
            svc = CodingService(db, records=records)
            res: list[dict[str, object]] = []
            for c in cases:
                assert c.discharge_date and c.birth_date
                res.append({"resourceType": "Patient", "id": f"p{c.encounter_id}", "birthDate": c.birth_date.isoformat(),
                            "gender": {"M": "male", "F": "female"}.get(c.sex, "unknown")})
                res.append({"resourceType": "Encounter", "id": c.encounter_id, "status": "finished",
                            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
                            "subject": {"reference": f"Patient/p{c.encounter_id}"},
                            "period": {"start": f"{c.admit_date.isoformat()}T08:00:00Z",
                                       "end": f"{c.discharge_date.isoformat()}T12:00:00Z"}})
            for i in range(0, len(res), 1000):
                with db.begin() as conn:
                    records.ingest(conn, system, res[i:i + 1000], source="bench")
            with db.begin() as conn:
                coder = users.create_user(conn, "bench-coder", "bench-password-123456", ["coder"],
                                          actor=system).principal()
            for c in cases:
                svc.save_codes(coder, c.encounter_id, [DiagnosisInput(d.code, d.poa) for d in c.diagnoses],
                               [ProcedureInput(p.code, "icd10pcs") for p in c.procedures])
            _cold()
            refused = 0
            t = time.perf_counter()
            for c in cases:
                try:
                    svc.finalize(coder, c.encounter_id)
                except CodingError:
                    refused += 1
            rate = len(cases) / (time.perf_counter() - t)
            print(f"  end to end ({backend}): {len(cases) - refused} finalized, {refused} refused by error edits")
            return rate
        finally:
            db.dispose()
            drop(schema)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stays", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--end-to-end", type=int, default=500, help="stays through finalize (0: skip)")
    ap.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    a = ap.parse_args()
    cases = stays(a.stays)
    g, mce = grouper(), code_editor()
    claims = []
    for c in cases:
        v = grouper_version_for(c.discharge_date or date.today())
        assert v is not None
        claims.append(claim(c, version=v.number))
    for c in cases[:200]:  # warm the tabular caches as a running system has them
        run_edits(c)
    rows: dict[str, list[float]] = {"msdrg grouper alone": [], "msdrg grouper + code editor": [],
                                    "ours: group (with MCE edits)": [], "ours: group + run_edits": []}
    for _ in range(a.runs):
        rows["msdrg grouper alone"].append(_rate(g.group, claims))
        rows["msdrg grouper + code editor"].append(_rate(lambda x: (g.group(x), mce.edit(x)), claims))
        rows["ours: group (with MCE edits)"].append(_rate(group, cases))
        rows["ours: group + run_edits"].append(_rate(lambda c: (group(c), run_edits(c)), cases))
    if a.end_to_end:
        rows[f"end to end: finalize ({a.backend})"] = [end_to_end(cases[:a.end_to_end], a.backend)]
    base = statistics.median(rows["msdrg grouper alone"])
    print(f"{a.stays} stays, median of {a.runs} runs")
    print(f"{'pipeline':34} {'stays/s':>10} {'vs msdrg alone':>15}")
    for name, rates in rows.items():
        m = statistics.median(rates)
        print(f"{name:34} {m:10,.0f} {m / base:14.0%}")
    print("target: ours (group + run_edits) at least 50% of msdrg alone")


if __name__ == "__main__":
    main()
