"""How fast is FHIR validation on real data? One process, median of N runs.

Validates every resource of the Synthea R4 sample (../shared/data/synthea-r4, ~60,900 resources) with
``chartkeeper.fhir.validation.validate`` and prints a markdown table beside

* the floor: plain ``orjson.loads`` of the same resources (what reading them costs at all), and
* the baseline: ``fhir.resources`` R4B model validation (``get_fhir_model_class(type).model_validate``)
  of a fixed random sample (3,000 by default; it is ~100x slower), with ``validate`` timed on the
  same sample for a like-for-like ratio.

Usage::

    .venv/bin/python benchmarks/validation.py [--data ../shared/data] [--runs 3] [--sample 3000]
"""

from __future__ import annotations

import argparse
import gc
import gzip
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]


def load(data: Path) -> list[bytes]:
    """Each Synthea bundle entry's resource, as its own JSON document."""
    files = sorted((data / "synthea-r4").glob("*.json.gz"))
    if not files:
        raise SystemExit(f"no Synthea bundles under {data / 'synthea-r4'} (need ../shared/data)")
    out: list[bytes] = []
    for f in files:
        bundle = orjson.loads(gzip.decompress(f.read_bytes()))
        out.extend(orjson.dumps(entry["resource"]) for entry in bundle["entry"])
    return out


def median_time(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sample", type=int, default=3000)
    args = ap.parse_args(argv)

    raw = load(args.data)
    docs = [orjson.loads(b) for b in raw]
    sample = random.Random(20240601).sample(docs, min(args.sample, len(docs)))

    t0 = time.perf_counter()
    from chartkeeper.fhir.validation import validate

    for rt in sorted({d["resourceType"] for d in docs}):  # compile each type's validator up front
        validate({"resourceType": rt})
    startup = time.perf_counter() - t0

    invalid = sum(1 for d in docs if validate(d))

    # The loaded data stays alive for the whole run: keep the cyclic GC from rescanning it, so that the
    # timings are of the work and not of this script's own heap.
    gc.collect()
    gc.freeze()

    def parse_all() -> None:
        for b in raw:
            orjson.loads(b)

    def validate_all(items: list[dict[str, Any]]) -> Callable[[], None]:
        def run() -> None:
            for d in items:
                validate(d)

        return run

    def parse_and_validate_all() -> None:
        for b in raw:
            validate(orjson.loads(b))

    rows: list[tuple[str, int, float]] = [
        ("orjson.loads (floor)", len(raw), median_time(parse_all, args.runs)),
        ("chartkeeper validate", len(docs), median_time(validate_all(docs), args.runs)),
        ("orjson.loads + validate", len(raw), median_time(parse_and_validate_all, args.runs)),
        (
            f"chartkeeper validate, {len(sample):,} sample",
            len(sample),
            median_time(validate_all(sample), args.runs),
        ),
    ]

    baseline_note = ""
    try:
        from fhir.resources.R4B import get_fhir_model_class
    except ImportError:
        baseline_note = "fhir.resources is not installed: no baseline (pip install fhir.resources)."
    else:
        models: dict[str, Any] = {rt: get_fhir_model_class(rt) for rt in {d["resourceType"] for d in sample}}
        rejected = 0

        def run_baseline() -> None:
            nonlocal rejected
            rejected = 0
            for d in sample:
                try:
                    models[d["resourceType"]].model_validate(d)
                except Exception:  # noqa: BLE001 - R4B models reject some R4 content
                    rejected += 1

        rows.append((f"fhir.resources R4B, {len(sample):,} sample (baseline)", len(sample),
                     median_time(run_baseline, args.runs)))  # fmt: skip
        if rejected:
            baseline_note = f"fhir.resources R4B rejected {rejected} of the {len(sample):,} sample resources."

    ours = rows[1][1] / rows[1][2]
    print(f"FHIR validation, {len(docs):,} Synthea R4 resources, median of {args.runs} runs, one process")
    n_types = len({d["resourceType"] for d in docs})
    print(
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
        f"schema load + compile of {n_types} types: {startup:.2f} s"
    )
    print()
    print("| what | resources | median s | resources/s | vs validate |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, n, secs in rows:
        rate = n / secs
        print(f"| {name} | {n:,} | {secs:.3f} | {rate:,.0f} | {rate / ours:.2f}x |")
    print()
    print(f"Resources with issues: {invalid} of {len(docs):,} (expected 0).")
    if baseline_note:
        print(baseline_note)
    return 0 if invalid == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
