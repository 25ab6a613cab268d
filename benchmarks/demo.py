"""How fast does the demo population generate? Generation alone (no validation, no database).

Streams ``chartkeeper.demo.generate(n, seed)`` to the end for each size, median of ``--runs`` runs,
and prints a markdown table of patients and resources per second.

Usage::

    .venv/bin/python benchmarks/demo.py [--sizes 200 2000] [--runs 3] [--seed 1]
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import time

from chartkeeper.demo import generate


def run_once(patients: int, seed: int) -> tuple[float, int]:
    gc.collect()
    t = time.perf_counter()
    resources = 0
    for batch in generate(patients, seed):
        resources += len(batch)
    return time.perf_counter() - t, resources


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[200, 2000])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    print(f"Demo population generation, median of {args.runs} runs; Python {platform.python_version()} on {platform.machine()}")
    print()
    print("| patients | resources | seconds (median) | patients/s | resources/s |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for n in args.sizes:
        times, resources = [], 0
        for _ in range(args.runs):
            secs, resources = run_once(n, args.seed)
            times.append(secs)
        med = statistics.median(times)
        print(f"| {n:,} | {resources:,} | {med:.2f} | {n / med:,.0f} | {resources / med:,.0f} |")


if __name__ == "__main__":
    main()
