"""Encoder accuracy and speed on a labelled set of diagnostic statements written as physicians write
them (``benchmarks/data/encoder_eval.tsv``: 332 statements, each labelled with the most specific
billable ICD-10-CM code; see ``benchmarks/data/README.md`` for where the labels came from and why the
set was never used for tuning).

Measured in the same run:

  * baseline: a plain token-overlap search over the titles of billable codes (lower-case words,
    Jaccard overlap, no abbreviations, stemming, spelling or notes), through an inverted index so its
    latency is comparable;
  * the encoder (``chartkeeper.coding.encoder.search``).

For each: top-1 and top-5 accuracy, and per-query latency p50/p95 (median over --runs passes).
Load times: the code sets and index read from the cache directory (a fresh process's first query),
and with --cold also built from the packages into an empty cache (a first install).

Targets: top-1 >= 75%, top-5 >= 95%, p95 < 20 ms.

    .venv/bin/python benchmarks/encoder.py [--data benchmarks/data/encoder_eval.tsv] [--runs 3] [--cold] [--misses]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_set(path: Path) -> list[tuple[str, str]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            statement, code = line.split("\t")
            rows.append((statement, code.strip()))
    return rows


class TokenOverlap:
    """The baseline: Jaccard overlap of lower-case words between the statement and each billable title."""

    def __init__(self) -> None:
        from chartkeeper.coding.codesets import icd10cm

        self.codes: list[str] = []
        self.sizes: list[int] = []
        self.post: dict[str, list[int]] = defaultdict(list)
        for code in icd10cm.codes(billable_only=True):
            words = set(re.findall(r"[a-z0-9]+", icd10cm.title(code).lower()))
            i = len(self.codes)
            self.codes.append(code.dotted)
            self.sizes.append(len(words))
            for w in words:
                self.post[w].append(i)

    def search(self, text: str, limit: int = 5) -> list[str]:
        q = set(re.findall(r"[a-z0-9]+", text.lower()))
        hits: dict[int, int] = defaultdict(int)
        for w in q:
            for i in self.post.get(w, ()):
                hits[i] += 1
        scored = sorted(hits.items(), key=lambda kv: (-kv[1] / (len(q) + self.sizes[kv[0]] - kv[1]), self.codes[kv[0]]))
        return [self.codes[i] for i, _ in scored[:limit]]


def evaluate(name: str, fn, rows: list[tuple[str, str]], runs: int, misses: bool) -> dict[str, float | str]:  # type: ignore[no-untyped-def]
    top1 = top5 = 0
    for statement, code in rows:
        got = fn(statement)
        top1 += bool(got) and got[0] == code
        top5 += code in got
        if misses and code not in got[:1]:
            print(f"  {name} miss: {statement!r} want {code} got {got}")
    p50s, p95s = [], []
    for _ in range(runs):
        lat = []
        for statement, _code in rows:
            t = time.perf_counter()
            fn(statement)
            lat.append((time.perf_counter() - t) * 1000)
        lat.sort()
        p50s.append(statistics.median(lat))
        p95s.append(lat[min(len(lat) - 1, int(round(0.95 * len(lat))) - 1)])
    return {"name": name, "top1": top1 / len(rows), "top5": top5 / len(rows),
            "p50": statistics.median(p50s), "p95": statistics.median(p95s)}


_FIRST_QUERY = ("import time; t=time.perf_counter(); from chartkeeper.coding.encoder import search; "
                "search('CHF'); print(round(time.perf_counter()-t, 2))")


def load_seconds(cache: str | None) -> float:
    env = dict(os.environ)
    if cache is not None:
        env["CHARTKEEPER_CACHE_DIR"] = cache
    out = subprocess.run([sys.executable, "-c", _FIRST_QUERY], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT / "benchmarks" / "data" / "encoder_eval.tsv")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cold", action="store_true", help="also time building the index into an empty cache")
    ap.add_argument("--misses", action="store_true", help="print each top-1 miss (never on the evaluation set while tuning)")
    args = ap.parse_args()

    from chartkeeper.coding.encoder import search, warm

    rows = load_set(args.data)
    cold = None
    if args.cold:
        with tempfile.TemporaryDirectory() as tmp:
            cold = load_seconds(tmp)
    load_seconds(None)  # make sure the default cache exists
    warm_load = statistics.median(load_seconds(None) for _ in range(3))
    warm("icd10cm")
    t = time.perf_counter()
    baseline = TokenOverlap()
    baseline_build = time.perf_counter() - t

    results = [
        evaluate("baseline: token overlap on titles", lambda s: baseline.search(s, 5), rows, args.runs, args.misses),
        evaluate("encoder", lambda s: [h.dotted for h in search(s, limit=5)], rows, args.runs, args.misses),
    ]
    print(f"\n{len(rows)} statements from {args.data.relative_to(ROOT) if args.data.is_relative_to(ROOT) else args.data}; "
          f"latency medians of {args.runs} passes\n")
    print(f"| {'search':<36} | {'top-1':>6} | {'top-5':>6} | {'p50 ms':>7} | {'p95 ms':>7} |")
    print(f"|{'-' * 38}|{'-' * 8}|{'-' * 8}|{'-' * 9}|{'-' * 9}|")
    for r in results:
        print(f"| {r['name']:<36} | {r['top1']:>6.1%} | {r['top5']:>6.1%} | {r['p50']:>7.2f} | {r['p95']:>7.2f} |")
    print("\ntargets: top-1 >= 75%, top-5 >= 95%, p95 < 20 ms")
    print(f"first query in a fresh process (code sets + index from the cache): {warm_load:.2f} s (median of 3)")
    if cold is not None:
        print(f"first query with an empty cache (built from the packages): {cold:.2f} s")
    print(f"baseline index build: {baseline_build:.2f} s")


if __name__ == "__main__":
    main()
