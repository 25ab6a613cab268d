"""Survival speed: Kaplan-Meier and actuarial life tables for a registry of N cases in S strata,
beside lifelines on the same data in the same run.

Synthetic cases: survival months from an exponential with a stratum-specific median (rounded to
0.1 month, so there are many ties), about 40% censored, 20 strata. Timed, median of --runs runs:

  * chartkeeper kaplan_meier: every stratum's curve with log-log intervals (one call);
  * lifelines KaplanMeierFitter: one fit per stratum (the same curves and intervals; checked equal to 1e-9);
  * chartkeeper life_table: yearly actuarial tables for every stratum (one call);
  * lifelines survival_table_from_events with yearly intervals, per stratum: only the grouped
    counts (lifelines has no actuarial estimator), so a floor for what a life table costs there.

Target: kaplan_meier no slower than lifelines.

    .venv/bin/python benchmarks/survival.py [--cases 100000] [--strata 20] [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
from lifelines import KaplanMeierFitter
from lifelines.utils import survival_table_from_events

from chartkeeper.registry.survival import kaplan_meier, life_table


def make_cases(n: int, strata: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    s = rng.integers(0, strata, n)
    medians = rng.uniform(12, 120, strata)
    death = rng.exponential(medians[s] / np.log(2))
    follow = rng.uniform(0, 150, n)
    t = np.round(np.minimum(death, follow), 1)
    e = (death <= follow).astype(int)
    labels = np.array([f"stratum {i:02d}" for i in range(strata)])[s]
    return t, e, labels


def timed(fn: Callable[[], object], runs: int) -> float:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--strata", type=int, default=20)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    t, e, s = make_cases(args.cases, args.strata)
    masks = {label: s == label for label in np.unique(s)}

    def lifelines_km() -> dict[str, KaplanMeierFitter]:
        return {label: KaplanMeierFitter().fit(t[m], e[m]) for label, m in masks.items()}

    def lifelines_table() -> None:
        edges = np.arange(0, float(t.max()) + 12, 12.0)
        for m in masks.values():
            survival_table_from_events(t[m], e[m], intervals=edges)

    # same answers before timing anything
    ours, theirs = kaplan_meier(t, e, s), lifelines_km()
    worst = max(max(np.abs(ours[k].survival - theirs[k].survival_function_.iloc[:, 0].values).max(),
                    np.abs(ours[k].lower - theirs[k].confidence_interval_.values[:, 0]).max(),
                    np.abs(ours[k].upper - theirs[k].confidence_interval_.values[:, 1]).max()) for k in ours)
    assert worst < 1e-9, worst

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = [
            ("Kaplan-Meier", "chartkeeper kaplan_meier (all strata, one call)", timed(lambda: kaplan_meier(t, e, s), args.runs)),
            ("Kaplan-Meier", "lifelines KaplanMeierFitter (one fit per stratum)", timed(lifelines_km, args.runs)),
            ("life table", "chartkeeper life_table (yearly, all strata)", timed(lambda: life_table(t, e, s), args.runs)),
            ("life table", "lifelines survival_table_from_events (counts only)", timed(lifelines_table, args.runs)),
        ]
    print(f"{args.cases:,} cases, {args.strata} strata, {len(np.unique(t)):,} distinct times, "
          f"median of {args.runs} runs; KM max |difference| from lifelines {worst:.1e}")
    print(f"{'method':<13} {'implementation':<52} {'median ms':>10} {'cases/s':>12}")
    for what, impl, sec in rows:
        print(f"{what:<13} {impl:<52} {sec * 1000:>10.1f} {args.cases / sec:>12,.0f}")
    km_ratio = rows[1][2] / rows[0][2]
    lt_ratio = rows[3][2] / rows[2][2]
    print(f"lifelines / chartkeeper: Kaplan-Meier {km_ratio:.1f}x, life table {lt_ratio:.1f}x "
          f"(target: Kaplan-Meier no slower than lifelines, i.e. >= 1.0x)")


if __name__ == "__main__":
    main()
