"""SVG pictures for registry reports: survival curves with a number-at-risk table, and a ranked bar
chart of county (or state) rates. Plain SVG text in the style of ``completion.report.svg_trend``: no
script, a title and description for screen readers, a ``<title>`` on each mark, text labels rather
than colour alone (each stratum also has its own dash pattern), and the same output byte for byte
for the same input, so pages and PDFs can embed it and tests can compare it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from html import escape
from typing import Literal

import numpy as np

from chartkeeper.registry.incidence import RateReport
from chartkeeper.registry.survival import KaplanMeier, LifeTable

# Okabe-Ito colours (distinguishable with the common colour-vision deficiencies), then greys.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442", "#666666", "#999999")
DASHES = ("", "6 3", "2 3", "8 3 2 3", "1 2", "10 4", "4 4", "12 3 3 3", "3 6", "6 2 1 2")

Curve = KaplanMeier | LifeTable


def _fmt(x: float) -> str:
    return f"{x:.1f}"


def _style(i: int) -> tuple[str, str]:
    return PALETTE[i % len(PALETTE)], DASHES[i % len(DASHES)]


def _short(label: str, n: int = 30) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def time_ticks(max_time: float) -> list[float]:
    """Round tick positions from 0 past ``max_time``: steps of 1, 2, 3, 6, 12, 24, 60, 120... (suits months)."""
    if max_time <= 0:
        return [0.0, 1.0]
    for step in (1, 2, 3, 6, 12, 24, 36, 60, 120, 240, 600, 1200, 3650, 7300):
        if max_time / step <= 10:
            break
    else:
        step = 10 ** math.ceil(math.log10(max_time / 10))
    n = int(math.ceil(max_time / step - 1e-9))
    return [float(k * step) for k in range(n + 1)]


def _at_risk(c: Curve, t: float) -> int:
    if t > _curve_end(c):
        return 0
    if isinstance(c, KaplanMeier):
        return c.at(t).at_risk
    k = int(np.searchsorted(c.start, t, side="right")) - 1  # the interval holding t: those entering it
    return int(c.entering[k]) if 0 <= k < c.entering.shape[0] else 0


def _curve_end(c: Curve) -> float:
    return float(c.time[-1]) if isinstance(c, KaplanMeier) else float(c.end[-1])


def _km_steps(c: KaplanMeier, x: Callable[[float], float], y: Callable[[float], float], until: float) -> str:
    pts = [f"M{_fmt(x(c.time[0]))},{_fmt(y(c.survival[0]))}"]
    for i in range(1, c.time.shape[0]):
        pts.append(f"H{_fmt(x(c.time[i]))}V{_fmt(y(c.survival[i]))}")
    pts.append(f"H{_fmt(x(until))}")
    return "".join(pts)


def _km_band(c: KaplanMeier, x: Callable[[float], float], y: Callable[[float], float], until: float) -> str:
    up = [f"M{_fmt(x(c.time[0]))},{_fmt(y(c.upper[0]))}"]
    for i in range(1, c.time.shape[0]):
        up.append(f"H{_fmt(x(c.time[i]))}V{_fmt(y(c.upper[i]))}")
    up.append(f"H{_fmt(x(until))}V{_fmt(y(c.lower[-1]))}")
    for i in range(c.time.shape[0] - 1, 0, -1):
        up.append(f"H{_fmt(x(c.time[i]))}V{_fmt(y(c.lower[i - 1]))}")
    up.append(f"H{_fmt(x(c.time[0]))}Z")
    return "".join(up)


def svg_survival(curves: Mapping[str, Curve], *, title: str = "Observed survival", time_label: str = "Months since diagnosis",
                 ci_band: bool = False, ticks: Sequence[float] | None = None, width: int = 760) -> str:
    """Survival curves, one per stratum: Kaplan-Meier as step functions, actuarial life tables as
    lines through the interval ends. Below the axis, the number at risk at each tick per stratum.
    ``ci_band`` shades each curve's confidence interval."""
    items = list(curves.items())
    if not items:
        return ""
    max_t = max(_curve_end(c) for _, c in items)
    tick_t = list(ticks) if ticks is not None else time_ticks(max_t)
    t_hi = max(tick_t[-1], max_t) or 1.0
    pad_l, pad_r, pad_t = 120, 190, 34
    plot_h = 240
    risk_row = 16
    risk_top = pad_t + plot_h + 44
    height = risk_top + 18 + risk_row * len(items) + 10
    w = width - pad_l - pad_r

    def x(t: float) -> float:
        return pad_l + w * float(t) / t_hi

    def y(s: float) -> float:
        return pad_t + plot_h * (1.0 - float(s))

    kinds = {"Kaplan-Meier" if isinstance(c, KaplanMeier) else "actuarial" for _, c in items}
    desc = (f"{' and '.join(sorted(kinds))} survival for {len(items)} group(s): "
            + "; ".join(f"{label}, {c.n} cases" for label, c in items)
            + f". Horizontal axis: {time_label.lower()}, 0 to {t_hi:g}. Vertical axis: percent surviving.")
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
             f'aria-labelledby="svt svd" class="survival">',
             f'<title id="svt">{escape(title)}</title><desc id="svd">{escape(desc)}</desc>',
             f'<text x="{pad_l}" y="20" font-size="13" font-weight="bold">{escape(title)}</text>',
             f'<rect x="{pad_l}" y="{pad_t}" width="{w}" height="{plot_h}" fill="#fff" stroke="#ccc"/>']
    for pct in (0, 25, 50, 75, 100):
        yy = y(pct / 100)
        parts.append(f'<line x1="{pad_l}" x2="{pad_l + w}" y1="{_fmt(yy)}" y2="{_fmt(yy)}" stroke="#eee"/>'
                     f'<text x="{pad_l - 6}" y="{_fmt(yy + 4)}" font-size="10" text-anchor="end">{pct}%</text>')
    for t in tick_t:
        xx = x(t)
        parts.append(f'<line x1="{_fmt(xx)}" x2="{_fmt(xx)}" y1="{pad_t + plot_h}" y2="{pad_t + plot_h + 4}" stroke="#888"/>'
                     f'<text x="{_fmt(xx)}" y="{pad_t + plot_h + 16}" font-size="10" text-anchor="middle">{t:g}</text>')
    parts.append(f'<text x="{_fmt(pad_l + w / 2)}" y="{pad_t + plot_h + 32}" font-size="11" text-anchor="middle">'
                 f'{escape(time_label)}</text>'
                 f'<text x="{pad_l - 40}" y="{_fmt(pad_t + plot_h / 2)}" font-size="11" text-anchor="middle" '
                 f'transform="rotate(-90 {pad_l - 40} {_fmt(pad_t + plot_h / 2)})">Surviving</text>')
    for i, (label, c) in enumerate(items):
        colour, dash = _style(i)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        if isinstance(c, KaplanMeier):
            end = float(c.time[-1])
            if ci_band:
                parts.append(f'<path d="{_km_band(c, x, y, end)}" fill="{colour}" fill-opacity="0.12" stroke="none"/>')
            med = "not reached" if math.isinf(c.median) else f"{c.median:g}"
            parts.append(f'<path d="{_km_steps(c, x, y, end)}" fill="none" stroke="{colour}" stroke-width="2"{dash_attr}>'
                         f'<title>{escape(label)}: {c.n} cases, {c.deaths} deaths, median {med}</title></path>')
            # censoring marks: small ticks where cases were censored
            for k in range(c.time.shape[0]):
                if c.censored[k]:
                    cx, cy = x(c.time[k]), y(c.survival[k])
                    parts.append(f'<line x1="{_fmt(cx)}" x2="{_fmt(cx)}" y1="{_fmt(cy - 3)}" y2="{_fmt(cy + 3)}" '
                                 f'stroke="{colour}"/>')
        else:
            xs = [0.0] + [float(e) for e in c.end]
            ss = [1.0] + [float(s) for s in c.survival]
            if ci_band:
                lo = [1.0] + [float(v) for v in c.lower]
                hi = [1.0] + [float(v) for v in c.upper]
                band = " ".join(f"{_fmt(x(a))},{_fmt(y(b))}" for a, b in zip(xs, hi, strict=True))
                band += " " + " ".join(f"{_fmt(x(a))},{_fmt(y(b))}" for a, b in zip(reversed(xs), reversed(lo), strict=True))
                parts.append(f'<polygon points="{band}" fill="{colour}" fill-opacity="0.12" stroke="none"/>')
            pts = " ".join(f"{_fmt(x(a))},{_fmt(y(b))}" for a, b in zip(xs, ss, strict=True))
            parts.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"{dash_attr}>'
                         f'<title>{escape(label)}: {c.n} cases, {int(c.deaths.sum())} deaths (life table)</title></polyline>')
            for a, b in zip(xs[1:], ss[1:], strict=True):
                parts.append(f'<circle cx="{_fmt(x(a))}" cy="{_fmt(y(b))}" r="2.5" fill="{colour}">'
                             f'<title>{escape(label)} at {a:g}: {b * 100:.1f}%</title></circle>')
        # legend entry, right of the plot
        ly = pad_t + 8 + i * 18
        lx = pad_l + w + 14
        parts.append(f'<line x1="{lx}" x2="{lx + 22}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-width="2"{dash_attr}/>'
                     f'<text x="{lx + 28}" y="{ly + 4}" font-size="10">{escape(_short(label, 18))} (n={c.n})'
                     f'<title>{escape(label)}</title></text>')
    # number at risk
    parts.append(f'<text x="{pad_l}" y="{risk_top}" font-size="10" font-weight="bold">Number at risk</text>')
    for i, (label, c) in enumerate(items):
        colour, _ = _style(i)
        ry = risk_top + 16 + i * risk_row
        parts.append(f'<text x="8" y="{ry}" font-size="10" fill="{colour}">'
                     f'{escape(_short(label, 14))}<title>{escape(label)}</title></text>')
        for t in tick_t:
            n = _at_risk(c, t)
            parts.append(f'<text x="{_fmt(x(t))}" y="{ry}" font-size="10" text-anchor="middle">{n}</text>')
    parts.append("</svg>")
    return "".join(parts)


def svg_ranked_bars(report: RateReport, *, by: Literal["age_adjusted", "crude"] = "age_adjusted",
                    title: str | None = None, limit: int | None = None, width: int = 760) -> str:
    """Horizontal bars, highest rate first, with the confidence interval as a whisker and the value
    written at the end of each bar. ``limit`` keeps the top N areas."""
    rows = report.ranked(by)[: limit if limit is not None else None]
    if not rows:
        return ""
    what = "Age-adjusted" if by == "age_adjusted" else "Crude"
    years = f"{report.years[0]}" if len(report.years) == 1 else f"{report.years[0]}-{report.years[-1]}"
    title = title or f"{what} rate per 100,000 by {report.level}, {years}"
    pad_l, pad_r, pad_t, row_h = 130, 80, 34, 18
    height = pad_t + row_h * len(rows) + 34
    w = width - pad_l - pad_r
    top = max(getattr(r, by).upper for r in rows) or 1.0

    def x(v: float) -> float:
        return pad_l + w * v / top

    desc = f"{len(rows)} {report.level}s ranked by {what.lower()} rate, highest first: " + "; ".join(
        f"{r.area}: {getattr(r, by).value:.1f}" for r in rows[:10]) + ("; ..." if len(rows) > 10 else ".")
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
             f'aria-labelledby="rbt rbd" class="ranked">',
             f'<title id="rbt">{escape(title)}</title><desc id="rbd">{escape(desc)}</desc>',
             f'<text x="{pad_l}" y="20" font-size="13" font-weight="bold">{escape(title)}</text>']
    for i, r in enumerate(rows):
        rate = getattr(r, by)
        yy = pad_t + i * row_h
        name = r.area if report.level == "state" else f"{r.area} ({r.state})"
        parts.append(f'<text x="{pad_l - 6}" y="{yy + 12}" font-size="10" text-anchor="end">{i + 1}. {escape(name)}</text>'
                     f'<rect x="{pad_l}" y="{yy + 3}" width="{_fmt(x(rate.value) - pad_l)}" height="{row_h - 6}" fill="#c9d7ea">'
                     f'<title>{escape(name)}: {rate.value:.1f} per 100,000 (95% CI {rate.lower:.1f} to {rate.upper:.1f}), '
                     f'{r.count} cases</title></rect>'
                     f'<line x1="{_fmt(x(rate.lower))}" x2="{_fmt(x(rate.upper))}" y1="{yy + row_h / 2}" y2="{yy + row_h / 2}" '
                     f'stroke="#1f4e8c"/>'
                     f'<text x="{_fmt(x(rate.upper) + 4)}" y="{yy + 12}" font-size="10">{rate.value:.1f}</text>')
    base = pad_t + row_h * len(rows)
    parts.append(f'<line x1="{pad_l}" x2="{pad_l}" y1="{pad_t}" y2="{base}" stroke="#888"/>'
                 f'<text x="{pad_l}" y="{base + 16}" font-size="10">0</text>'
                 f'<text x="{pad_l + w}" y="{base + 16}" font-size="10" text-anchor="end">{top:.1f}</text>'
                 f'<text x="{_fmt(pad_l + w / 2)}" y="{base + 28}" font-size="10" text-anchor="middle">'
                 f'{what} rate per 100,000 (bar) with 95% confidence interval (line)</text></svg>')
    return "".join(parts)
