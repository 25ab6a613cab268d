"""Observed survival for registry reports: Kaplan-Meier and the actuarial (life-table) method, by stratum.

Input is one entry per case: the survival time (months or days, from diagnosis to death or last
contact), whether death was observed (1) or the case is censored (0), and an optional stratum label
(site group, stage, sex, diagnosis year or a combination: see ``stratum_label``). Everything is
computed with NumPy over all strata at once (one sort, one grouped count), so a registry of a few
hundred thousand cases takes well under a second.

Kaplan-Meier follows the conventions of ``lifelines`` (which the tests compare against to 1e-9):
the timeline is 0 and every distinct observed time; at a tied time deaths come before censorings;
the variance is Greenwood's, ``sum d / (n (n - d))`` on the log scale; the default confidence
interval is the log-log ("exponential Greenwood") one, ``exp(-exp(log(-log S) -/+ z sqrt(V) / log S))``;
the median is the first time the curve is at or below one half (``inf`` when it never gets there).

The actuarial life table groups times into intervals (yearly by default when times are months);
within an interval, withdrawals (censored cases) count as at risk for half of it, so the effective
number at risk is ``n - w / 2``. Interval survival is ``1 - d / n'``, cumulative survival the product,
and its standard error Greenwood's, with the same interval choices as Kaplan-Meier.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import norm

CIMethod = Literal["log-log", "plain"]
ALL = "All cases"
DAYS_PER_MONTH = 365.25 / 12

FloatArray = NDArray[np.float64]
Strata = Sequence[Hashable] | NDArray[np.generic]
IntArray = NDArray[np.int64]


class SurvivalInputError(ValueError):
    """Survival input that cannot be analysed as given; the message names the row and the item."""


@dataclass(frozen=True, slots=True)
class Reject:
    """One case left out of an analysis: its position in the input (from 1), the item and why."""

    row: int
    item: str
    reason: str

    def __str__(self) -> str:
        return f"Row {self.row}, {self.item}: {self.reason}"


@dataclass(frozen=True)
class SurvivalData:
    """Cases ready for analysis (times, 0/1 events and stratum labels, aligned) and the rows left out."""

    time: FloatArray
    event: IntArray
    strata: tuple[str, ...] | None
    rejects: tuple[Reject, ...] = ()

    def __len__(self) -> int:
        return int(self.time.shape[0])


@dataclass(frozen=True)
class SurvivalPoint:
    """Survival at one time: the estimate with its interval and the number still at risk then.
    ``survival`` is NaN when the time lies beyond the stratum's follow-up."""

    time: float
    survival: float
    lower: float
    upper: float
    at_risk: int


@dataclass(frozen=True)
class KaplanMeier:
    """A Kaplan-Meier curve for one stratum. Arrays are aligned on ``time`` (0 and each distinct
    observed time); ``survival[i]`` holds from ``time[i]`` until the next time."""

    stratum: str
    n: int
    time: FloatArray
    at_risk: IntArray
    events: IntArray
    censored: IntArray
    survival: FloatArray
    greenwood: FloatArray  # cumulative sum d / (n (n - d)): the variance of log S
    lower: FloatArray
    upper: FloatArray
    alpha: float
    ci: CIMethod

    @property
    def std_error(self) -> FloatArray:
        """Greenwood standard error of S (not of log S)."""
        return np.asarray(self.survival * np.sqrt(self.greenwood), dtype=np.float64)

    @property
    def deaths(self) -> int:
        return int(self.events.sum())

    @property
    def median(self) -> float:
        """First time at which survival is at or below 0.5; ``inf`` when the curve never falls that far."""
        return _first_at_or_below(self.time, self.survival, 0.5)

    @property
    def median_ci(self) -> tuple[float, float]:
        """Interval for the median from the pointwise bands (Brookmeyer-Crowley style, as lifelines)."""
        return (_first_at_or_below(self.time, self.lower, 0.5), _first_at_or_below(self.time, self.upper, 0.5))

    def at(self, t: float) -> SurvivalPoint:
        """Survival at time ``t`` (in the input's unit) with its interval and the number at risk at ``t``."""
        i = int(np.searchsorted(self.time, t, side="right")) - 1
        # at risk at t: everyone whose time is >= t
        j = int(np.searchsorted(self.time, t, side="left"))
        at_risk = int(self.at_risk[j]) if j < self.time.shape[0] else 0
        if t > self.time[-1] and self.survival[-1] > 0:
            return SurvivalPoint(float(t), math.nan, math.nan, math.nan, 0)
        return SurvivalPoint(float(t), float(self.survival[i]), float(self.lower[i]), float(self.upper[i]), at_risk)


@dataclass(frozen=True)
class LifeTable:
    """An actuarial life table for one stratum: one entry per interval ``[start, end)``."""

    stratum: str
    start: FloatArray
    end: FloatArray
    entering: IntArray
    deaths: IntArray
    withdrawn: IntArray
    effective: FloatArray  # entering - withdrawn / 2
    interval_survival: FloatArray  # 1 - deaths / effective
    survival: FloatArray  # cumulative, at the end of the interval
    std_error: FloatArray  # Greenwood, of the cumulative survival
    lower: FloatArray
    upper: FloatArray
    alpha: float
    ci: CIMethod

    @property
    def n(self) -> int:
        return int(self.entering[0]) if self.entering.shape[0] else 0

    def at(self, t: float) -> SurvivalPoint:
        """Cumulative survival at an interval boundary ``t`` (e.g. 60 months with yearly intervals)."""
        k = int(np.searchsorted(self.end, t, side="left"))
        if k >= self.end.shape[0] or not math.isclose(self.end[k], t):
            if t <= 0:
                return SurvivalPoint(float(t), 1.0, 1.0, 1.0, self.n)
            if k >= self.end.shape[0] and self.survival.shape[0] and self.survival[-1] == 0:
                return SurvivalPoint(float(t), 0.0, 0.0, 0.0, 0)
            return SurvivalPoint(float(t), math.nan, math.nan, math.nan, 0)
        at_risk = int(self.entering[k + 1]) if k + 1 < self.entering.shape[0] else 0
        return SurvivalPoint(float(t), float(self.survival[k]), float(self.lower[k]), float(self.upper[k]), at_risk)


@dataclass(frozen=True)
class SummaryRow:
    """One stratum's line in a survival report: size, deaths, median, and survival at fixed times."""

    stratum: str
    n: int
    deaths: int
    median: float
    median_ci: tuple[float, float]
    points: tuple[SurvivalPoint, ...] = field(default_factory=tuple)


# ---------------------------------------------------------------------------------------------- input


def months_between(start: date, end: date) -> float:
    """Survival time in months (days / 30.4375) from ``start`` (diagnosis) to ``end`` (death or last contact)."""
    return (end - start).days / DAYS_PER_MONTH


def stratum_label(*parts: object, sep: str = " · ") -> str:
    """One stratum label from several characteristics: ``stratum_label("Breast", "Stage II", "F")``.
    Missing parts (``None`` or empty) show as "Unknown" so they stay a visible group of their own."""
    return sep.join("Unknown" if p is None or p == "" else str(p) for p in parts)


def prepare(cases: Iterable[Sequence[object]]) -> SurvivalData:
    """Check ``(time, event)`` or ``(time, event, stratum)`` rows one by one, keep the good ones and
    list each one left out with the item and the reason (negative or missing time, event not 0/1)."""
    times: list[float] = []
    events: list[int] = []
    strata: list[str] = []
    rejects: list[Reject] = []
    has_strata = False
    for i, case in enumerate(cases, start=1):
        if len(case) not in (2, 3):
            rejects.append(Reject(i, "case", f"expected (time, event) or (time, event, stratum), got {len(case)} items"))
            continue
        t, e = case[0], case[1]
        try:
            tf = float(t)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            rejects.append(Reject(i, "survival time", f"{t!r} is not a number; give months or days since diagnosis"))
            continue
        if not math.isfinite(tf) or tf < 0:
            rejects.append(Reject(i, "survival time", f"{t!r} must be zero or more; check the diagnosis and last contact dates"))
            continue
        ei = _event_value(e)
        if ei is None:
            rejects.append(Reject(i, "event", f"{e!r} must be 1 (died) or 0 (alive or lost at last contact)"))
            continue
        times.append(tf)
        events.append(ei)
        if len(case) == 3:
            has_strata = True
            s = case[2]
            strata.append("Unknown" if s is None or s == "" else str(s))
        else:
            strata.append(ALL)
    return SurvivalData(np.asarray(times, dtype=np.float64), np.asarray(events, dtype=np.int64),
                        tuple(strata) if has_strata else None, tuple(rejects))


def _event_value(e: object) -> int | None:
    if isinstance(e, str):
        return int(e.strip()) if e.strip() in ("0", "1") else None
    if isinstance(e, bool | int | float | np.integer | np.floating) and e in (0, 1):
        return int(e)
    return None


def _arrays(time: ArrayLike, event: ArrayLike, strata: Strata | None
            ) -> tuple[FloatArray, IntArray, IntArray, list[str]]:
    t = np.asarray(time, dtype=np.float64)
    e_raw = np.asarray(event)
    if t.ndim != 1 or e_raw.shape != t.shape:
        raise SurvivalInputError(
            f"Survival times and events must be two lists of the same length (got {t.shape} and {e_raw.shape}).")
    bad = np.flatnonzero(~np.isfinite(t) | (t < 0))
    if bad.size:
        i = int(bad[0])
        raise SurvivalInputError(
            f"Row {i + 1}: survival time {float(t[i])} must be a number of zero or more; use prepare() to set such rows "
            f"aside ({bad.size} row(s) affected).")
    if e_raw.dtype == bool:
        e = e_raw.astype(np.int64)
    else:
        e = np.asarray(e_raw, dtype=np.float64)
        bad = np.flatnonzero((e != 0) & (e != 1))
        if bad.size:
            i = int(bad[0])
            raise SurvivalInputError(
                f"Row {i + 1}: event {e_raw[i].item()!r} must be 1 (died) or 0 (censored) ({bad.size} row(s) affected).")
        e = e.astype(np.int64)
    if t.shape[0] == 0:
        raise SurvivalInputError("There are no cases to analyse.")
    if strata is None:
        return t, e, np.zeros(t.shape[0], dtype=np.int64), [ALL]
    s = strata.astype(str) if isinstance(strata, np.ndarray) else np.asarray([str(x) for x in strata])
    if s.shape != t.shape:
        raise SurvivalInputError(f"There must be one stratum per case (got {s.shape[0]} strata for {t.shape[0]} cases).")
    labels, codes = np.unique(s, return_inverse=True)
    return t, e, codes.astype(np.int64), [str(x) for x in labels]


def _z(alpha: float) -> float:
    if not 0 < alpha < 1:
        raise SurvivalInputError(f"alpha must be between 0 and 1 (0.05 gives 95% intervals), not {alpha}.")
    return float(norm.ppf(1 - alpha / 2))


def _bounds(surv: FloatArray, var_log: FloatArray, z: float, ci: CIMethod) -> tuple[FloatArray, FloatArray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        if ci == "log-log":
            v = np.log(surv)
            half = z * np.sqrt(var_log) / v
            lower = np.exp(-np.exp(np.log(-v) - half))
            upper = np.exp(-np.exp(np.log(-v) + half))
        elif ci == "plain":
            se = surv * np.sqrt(var_log)
            lower = np.clip(surv - z * se, 0.0, 1.0)
            upper = np.clip(surv + z * se, 0.0, 1.0)
        else:
            raise SurvivalInputError(f"Confidence interval method {ci!r} is not known: use 'log-log' or 'plain'.")
    return np.nan_to_num(lower, nan=1.0), np.nan_to_num(upper, nan=1.0)


def _first_at_or_below(time: FloatArray, values: FloatArray, q: float) -> float:
    hit = np.flatnonzero(values <= q)
    return float(time[hit[0]]) if hit.size else math.inf


def _grouped(t: FloatArray, e: IntArray, codes: IntArray) -> tuple[IntArray, FloatArray, IntArray, IntArray, IntArray]:
    """Sort once by (stratum, time); return per distinct (stratum, time): stratum code, time, removed,
    deaths, and the index where each stratum's rows start."""
    order = np.lexsort((t, codes))
    ts, es, cs = t[order], e[order], codes[order]
    n = ts.shape[0]
    new = np.empty(n, dtype=bool)
    new[0] = True
    np.not_equal(ts[1:], ts[:-1], out=new[1:])
    new[1:] |= cs[1:] != cs[:-1]
    starts = np.flatnonzero(new)
    removed = np.diff(np.append(starts, n))
    deaths = np.add.reduceat(es, starts)
    ucodes = cs[starts]
    bounds = np.searchsorted(ucodes, np.arange(ucodes[-1] + 2))
    return ucodes, ts[starts], removed.astype(np.int64), deaths.astype(np.int64), bounds.astype(np.int64)


# ---------------------------------------------------------------------------------------- Kaplan-Meier


def kaplan_meier(time: ArrayLike, event: ArrayLike, strata: Strata | None = None, *,
                 alpha: float = 0.05, ci: CIMethod = "log-log") -> dict[str, KaplanMeier]:
    """Kaplan-Meier curves, one per stratum (key: the stratum label, in sorted order; ``"All cases"``
    without strata). ``alpha=0.05`` gives 95% intervals."""
    z = _z(alpha)
    t, e, codes, labels = _arrays(time, event, strata)
    ucodes, ut, removed, deaths, bounds = _grouped(t, e, codes)
    out: dict[str, KaplanMeier] = {}
    for k, label in enumerate(labels):
        a, b = int(bounds[k]), int(bounds[k + 1])
        if a == b:
            continue
        tt, rem, d = ut[a:b], removed[a:b], deaths[a:b]
        n_total = int(rem.sum())
        at_risk = n_total - np.concatenate(([0], np.cumsum(rem)[:-1]))
        with np.errstate(divide="ignore", invalid="ignore"):
            log_s = np.cumsum(np.log(at_risk - d) - np.log(at_risk))
            term = d / (at_risk * (at_risk - d)).astype(np.float64)
        term[~np.isfinite(term)] = 0.0
        gw = np.cumsum(term)
        surv = np.exp(log_s)
        cens = rem - d
        if tt[0] > 0:  # the curve starts at 1 at time 0
            tt = np.concatenate(([0.0], tt))
            at_risk = np.concatenate(([n_total], at_risk))
            d = np.concatenate(([0], d))
            cens = np.concatenate(([0], cens))
            surv = np.concatenate(([1.0], surv))
            gw = np.concatenate(([0.0], gw))
        lower, upper = _bounds(surv, gw, z, ci)
        out[label] = KaplanMeier(label, n_total, tt, at_risk.astype(np.int64), d.astype(np.int64), cens.astype(np.int64),
                                 surv, gw, lower, upper, alpha, ci)
    return out


# -------------------------------------------------------------------------------- actuarial life table


def interval_edges(max_time: float, width: float) -> FloatArray:
    """Interval boundaries 0, width, 2 width, ... up to the first boundary beyond ``max_time``."""
    if not width > 0:
        raise SurvivalInputError(f"The life-table interval width must be more than zero, not {width}.")
    k = int(math.floor(max_time / width)) + 1
    return np.arange(k + 1, dtype=np.float64) * width


def life_table(time: ArrayLike, event: ArrayLike, strata: Strata | None = None, *,
               width: float = 12.0, edges: Sequence[float] | None = None, alpha: float = 0.05,
               ci: CIMethod = "log-log") -> dict[str, LifeTable]:
    """Actuarial life tables, one per stratum. Intervals are ``[edge_k, edge_k+1)``: by default
    ``width`` wide (12 for yearly intervals when times are in months) from 0 past the longest time;
    or give ``edges`` (increasing, starting at 0; cases beyond the last edge are left out of the table
    after it). Trailing intervals nobody enters are dropped."""
    z = _z(alpha)
    t, e, codes, labels = _arrays(time, event, strata)
    if edges is None:
        ed = interval_edges(float(t.max()), width)
    else:
        ed = np.asarray(edges, dtype=np.float64)
        if ed.ndim != 1 or ed.shape[0] < 2 or ed[0] != 0 or np.any(np.diff(ed) <= 0):
            raise SurvivalInputError("Life-table edges must start at 0 and increase, with at least two of them.")
    m = ed.shape[0] - 1
    inside = t < ed[-1]
    k = np.searchsorted(ed, t, side="right") - 1  # interval index of each case
    cell = codes * m + k
    n_cells = len(labels) * m
    deaths = np.bincount(cell[inside], weights=e[inside], minlength=n_cells).astype(np.int64).reshape(len(labels), m)
    leaving = np.bincount(cell[inside], minlength=n_cells).astype(np.int64).reshape(len(labels), m)
    beyond = np.bincount(codes[~inside], minlength=len(labels)).astype(np.int64)
    withdrawn = leaving - deaths
    # entering interval j = everyone in the stratum minus those who left in earlier intervals
    totals = leaving.sum(axis=1) + beyond
    left_before = np.concatenate((np.zeros((len(labels), 1), np.int64), np.cumsum(leaving, axis=1)[:, :-1]), axis=1)
    entering = totals[:, None] - left_before
    effective = entering - withdrawn / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(effective > 0, deaths / effective, 0.0)
        p = 1.0 - q
        surv = np.cumprod(p, axis=1)
        term = np.where((effective > 0) & (effective > deaths), deaths / (effective * (effective - deaths)), 0.0)
    gw = np.cumsum(term, axis=1)
    out: dict[str, LifeTable] = {}
    for s, label in enumerate(labels):
        used = np.flatnonzero(entering[s] > 0)
        if used.size == 0:
            continue
        last = int(used[-1]) + 1
        sv, g = surv[s, :last].astype(np.float64), gw[s, :last].astype(np.float64)
        lower, upper = _bounds(sv, g, z, ci)
        out[label] = LifeTable(label, ed[:last].copy(), ed[1:last + 1].copy(), entering[s, :last], deaths[s, :last],
                               withdrawn[s, :last], effective[s, :last], p[s, :last], sv, sv * np.sqrt(g),
                               lower, upper, alpha, ci)
    return out


# ------------------------------------------------------------------------------------------- summary


def summary(curves: dict[str, KaplanMeier], at: Sequence[float] = (12, 24, 60)) -> list[SummaryRow]:
    """One row per stratum: cases, deaths, median (with interval) and survival at each time in ``at``
    (1, 2 and 5 years when times are months) with the number still at risk then."""
    return [SummaryRow(c.stratum, c.n, c.deaths, c.median, c.median_ci, tuple(c.at(float(x)) for x in at))
            for c in curves.values()]


def summary_table(rows: Sequence[SummaryRow], unit: str = "months") -> str:
    """Plain-text table of ``summary`` rows, for the CLI and logs."""
    if not rows:
        return "No cases."
    times = [p.time for p in rows[0].points]
    head = ["Stratum", "N", "Deaths", f"Median ({unit})"] + [f"S({t:g}) [95% CI] at risk" for t in times]
    lines = [head]
    for r in rows:
        med = "not reached" if math.isinf(r.median) else f"{r.median:.1f}"
        cells = [r.stratum, str(r.n), str(r.deaths), med]
        for p in r.points:
            cells.append("n/a" if math.isnan(p.survival) else
                         f"{p.survival * 100:.1f}% [{p.lower * 100:.1f}, {p.upper * 100:.1f}] {p.at_risk}")
        lines.append(cells)
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in lines)
