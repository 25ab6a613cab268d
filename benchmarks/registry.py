"""Cancer registry speed: screening as reports are written, casefinding over the record, making a case,
and the follow-up letters.

Per backend, in a fresh database, the demo population (``chartkeeper.demo``) is loaded, then:

  * one pathology report written interactively through ``RecordService`` (policy + audit), screened
    into the suspense queue in the same transaction, against the same write of a progress note (no
    screening): p50/p95 of --writes each, interleaved. The difference is what the listener costs;
  * casefinding over every DocumentReference and Condition (``RegistryService.casefind``), against
    the floor: reading the same resources through the same batched read path and decoding the report
    text, without screening; medians of --runs;
  * accepting a case (prefill from the record: patient, encounters, procedures, medications): p50;
  * the follow-up due list and its letters as one PDF.

The screener is the casefinding engine when installed, else a plain keyword screener (named in the
table): the numbers then measure the storage and workflow around screening, not the engine.

    .venv/bin/python benchmarks/registry.py [--patients 300] [--runs 3] [--writes 60] [--no-postgres]
"""

from __future__ import annotations

import argparse
import base64
import re
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
from _bench_db import drop, fresh_url  # noqa: E402 - benchmarks/ is the script directory

from chartkeeper.coding.codes import ICD10CMCode  # noqa: E402
from chartkeeper.db import Database  # noqa: E402
from chartkeeper.registry.service import EngineScreener, RegistryService, Screen, Span  # noqa: E402
from chartkeeper.registry.service import use_screener as set_listener_screener  # noqa: E402
from chartkeeper.security.principal import Principal  # noqa: E402

SYSTEM = Principal.system("bench")
REPORT = ("SURGICAL PATHOLOGY REPORT\nFINAL DIAGNOSIS:\nLeft breast, core biopsy:\n- Invasive ductal carcinoma, "
          "grade 2.\n")


class KeywordScreener:
    """Reportable when the text says carcinoma/melanoma/lymphoma and not basal cell or 'negative for'."""

    words = re.compile(r"(adeno)?carcinoma|melanoma|lymphoma", re.I)

    def screen_text(self, text: str) -> Screen | None:
        low = text.lower()
        if "basal cell" in low or "negative for malignancy" in low:
            return Screen(False, "not reportable")
        spans = tuple(Span(m.start(), m.end(), m.group(0), "histology") for m in self.words.finditer(text))
        return Screen(bool(spans), "keyword", spans, "", "", "3" if spans else "", "")

    def screen_code(self, code: ICD10CMCode) -> Screen | None:
        ok = code[0] == "C" and code[:3] != "C44"
        return Screen(ok, "code", (), f"{code[:3]}9" if ok else "", "", "3" if ok else "", "")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]


def docref(i: int, pid: str, eid: str, pathology: bool) -> dict[str, Any]:
    code = ("11526-1", "Pathology study") if pathology else ("11506-3", "Progress note")
    text = REPORT if pathology else "PROGRESS NOTE\nDoing well. Continue current plan.\n"
    return {"resourceType": "DocumentReference", "id": f"bench-{'p' if pathology else 'n'}-{i}", "status": "current",
            "type": {"coding": [{"system": "http://loinc.org", "code": code[0], "display": code[1]}]},
            "subject": {"reference": f"Patient/{pid}"}, "date": "2025-06-01T10:00:00Z",
            "content": [{"attachment": {"contentType": "text/plain", "data": base64.b64encode(text.encode()).decode()}}],
            "context": {"encounter": [{"reference": f"Encounter/{eid}"}]}}


def run_backend(backend: str, args: argparse.Namespace, screener: Any) -> list[tuple[str, str, str]]:
    from sqlalchemy import delete, select

    from chartkeeper.demo.load import load_population
    from chartkeeper.fhir.models import ResourceRow
    from chartkeeper.fhir.service import RecordService
    from chartkeeper.registry.models import RegistryPendingRow, SuspenseRow
    from chartkeeper.registry.service import report_text

    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        url, schema = fresh_url(backend, tmp, "registry")
        db = Database(url)
        try:
            db.upgrade()
            t = time.perf_counter()
            load_population(db, args.patients, 5, today=date(2026, 3, 1))
            rows.append(("load demo population", f"{args.patients} persons", f"{time.perf_counter() - t:.1f} s"))
            records = RecordService(db)
            svc = RegistryService(db, records, screener=screener)
            with db.begin() as c:
                c.execute(delete(RegistryPendingRow.__table__))
                res = ResourceRow.__table__
                enc = c.execute(select(res.c.id, res.c.patient_id).where(res.c.resource_type == "Encounter")
                                .limit(1)).one()
                keys = [(r[0], r[1]) for r in c.execute(select(res.c.resource_type, res.c.id).where(
                    res.c.resource_type.in_(("DocumentReference", "Condition")), res.c.deleted.is_(False)))]

            # 1. one report written interactively: screened inline vs a note that is not screened
            with_screen, without = [], []
            for i in range(args.writes):
                for pathology, bucket in ((True, with_screen), (False, without)):
                    d = docref(i, enc.patient_id, enc.id, pathology)
                    t = time.perf_counter()
                    records.update(SYSTEM, "DocumentReference", d["id"], d)
                    bucket.append((time.perf_counter() - t) * 1000)
            rows.append(("write a progress note (baseline)", "p50 / p95",
                         f"{statistics.median(without):.1f} / {pct(without, 0.95):.1f} ms"))
            rows.append(("write a pathology report, screened inline", "p50 / p95",
                         f"{statistics.median(with_screen):.1f} / {pct(with_screen, 0.95):.1f} ms"))

            # 2. casefinding over the whole record vs reading it
            floor, full = [], []
            for _ in range(args.runs):
                t = time.perf_counter()
                for i in range(0, len(keys), 400):
                    with db.read() as c:
                        for s in records.store.read_many(c, keys[i:i + 400]):
                            r = s.resource()
                            if s.resource_type == "DocumentReference":
                                report_text(r)
                floor.append(time.perf_counter() - t)
                with db.begin() as c:
                    c.execute(delete(SuspenseRow.__table__))
                t = time.perf_counter()
                counts = svc.casefind(SYSTEM)
                full.append(time.perf_counter() - t)
            n = len(keys)
            rows.append(("read reports + diagnoses (floor)", f"{n} resources",
                         f"{statistics.median(floor):.2f} s ({n / statistics.median(floor):,.0f}/s)"))
            rows.append(("casefind (screen + suspense rows)", f"{counts.queued} queued",
                         f"{statistics.median(full):.2f} s ({n / statistics.median(full):,.0f}/s)"))

            # 3. accept cases
            page = svc.suspense(SYSTEM, limit=500)
            times = []
            seen: set[str | None] = set()
            for item in page.rows:
                if item.patient_id in seen:
                    continue
                seen.add(item.patient_id)
                t = time.perf_counter()
                svc.accept(SYSTEM, item.id, new_primary=True)
                times.append((time.perf_counter() - t) * 1000)
                if len(times) >= 40:
                    break
            if times:
                rows.append(("accept a case (prefill from the record)", f"{len(times)} cases",
                             f"p50 {statistics.median(times):.1f} ms"))

            # 4. follow-up
            t = time.perf_counter()
            due = svc.followup_due(SYSTEM, months=3)
            pdf = svc.followup_letters(SYSTEM, months=3)
            rows.append(("due list + letters PDF", f"{len(due)} letters",
                         f"{(time.perf_counter() - t) * 1000:.0f} ms, {len(pdf) // 1024} KiB"))
        finally:
            db.dispose()
            drop(schema)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=300)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--writes", type=int, default=60)
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args()
    engine = EngineScreener()
    screener: Any = engine if engine.available() else KeywordScreener()
    set_listener_screener(None if screener is engine else screener)
    name = "casefinding engine" if screener is engine else "keyword screener (engine not installed)"
    backends = ["sqlite"] + ([] if args.no_postgres else ["postgresql"])
    print(f"Registry benchmark: demo population of {args.patients}, screener: {name}")
    print(f"{'backend':<11} {'measure':<44} {'size':<16} result")
    for b in backends:
        try:
            out = run_backend(b, args, screener)
        except Exception as exc:  # noqa: BLE001 - a backend that is not there is reported, not fatal
            print(f"{b:<11} skipped: {exc.__class__.__name__}: {str(exc)[:80]}")
            continue
        for measure, size, result in out:
            print(f"{b:<11} {measure:<44} {size:<16} {result}")


if __name__ == "__main__":
    main()
