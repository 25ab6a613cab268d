"""Delinquency: which charts were not complete within the facility's limit after discharge.

A chart is *delinquent* when a deficiency that was not waived was still open ``days_after_discharge``
days after discharge (it is open now and the limit has passed, or it was completed after the limit).
The delinquency rate of a month is the number of delinquent charts of that month's discharges over the
average number of monthly discharges in the period shown, the form in which the Joint Commission asks
for it (a rate above 50% of the average monthly discharges is a finding). Months whose limit has not
passed for every discharge are marked provisional.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any, cast

from sqlalchemy import Connection, Table, select

from chartkeeper.completion.models import OPEN, WAIVED, ChartRow, DeficiencyRow

CHART = cast(Table, ChartRow.__table__)
DEF = cast(Table, DeficiencyRow.__table__)


@dataclass
class DelinquencyReport:
    days: int
    months: list[dict[str, Any]] = field(default_factory=list)
    avg_monthly_discharges: float = 0.0
    by_physician: list[dict[str, Any]] = field(default_factory=list)
    by_service: list[dict[str, Any]] = field(default_factory=list)
    delinquent_now: int = 0

    def csv(self) -> str:
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(["section", "month_or_name", "discharges", "delinquent_charts", "delinquency_rate_percent",
                     "open_deficiencies", "provisional"])
        for m in self.months:
            w.writerow(["month", m["month"], m["discharges"], m["delinquent"], f"{m['rate']:.1f}", "",
                        "yes" if m["provisional"] else "no"])
        for p in self.by_physician:
            w.writerow(["physician", p.get("physician", p["physician_id"]), "", p["delinquent"], "", p["open"], ""])
        for s in self.by_service:
            w.writerow(["service", s["service"], s["discharges"], s["delinquent"], f"{s['rate']:.1f}", "", ""])
        return out.getvalue()


def _month(dt: datetime) -> str:
    return f"{dt.year:04d}-{dt.month:02d}"


def _months_back(now: datetime, n: int) -> list[str]:
    y, m = now.year, now.month
    out = []
    for _ in range(n):
        out.append(f"{y:04d}-{m:02d}")
        m -= 1
        if m == 0:
            y, m = y - 1, 12
    return out[::-1]


def delinquency(conn: Connection, service: Any, *, months: int, now: datetime) -> DelinquencyReport:
    days = service.rules.delinquency_days
    limit = timedelta(days=days)
    labels = _months_back(now, months)
    y, m = (int(x) for x in labels[0].split("-"))
    start = datetime(y, m, 1, tzinfo=UTC)
    charts = {r.encounter_id: r for r in conn.execute(
        select(CHART.c.encounter_id, CHART.c.discharged_at, CHART.c.service).where(CHART.c.discharged_at >= start))}
    late_by_chart: dict[str, set[str | None]] = defaultdict(set)
    open_by_phys: dict[str | None, int] = defaultdict(int)
    ids = list(charts)
    for i in range(0, len(ids), 500):
        for d in conn.execute(select(DEF.c.encounter_id, DEF.c.physician_id, DEF.c.status, DEF.c.completed_at)
                              .where(DEF.c.encounter_id.in_(ids[i:i + 500]), DEF.c.status != WAIVED)):
            ch = charts[d.encounter_id]
            deadline = ch.discharged_at + limit
            done = d.completed_at
            if (d.status == OPEN and now > deadline) or (done is not None and done > deadline):
                late_by_chart[d.encounter_id].add(d.physician_id)
            if d.status == OPEN:
                open_by_phys[d.physician_id] += 1
    per_month = {lab: {"discharges": 0, "delinquent": 0} for lab in labels}
    per_service: dict[str, dict[str, int]] = defaultdict(lambda: {"discharges": 0, "delinquent": 0})
    per_phys: dict[str | None, int] = defaultdict(int)
    for eid, ch in charts.items():
        lab = _month(ch.discharged_at)
        if lab not in per_month:
            continue
        per_month[lab]["discharges"] += 1
        per_service[ch.service or "unspecified"]["discharges"] += 1
        if eid in late_by_chart:
            per_month[lab]["delinquent"] += 1
            per_service[ch.service or "unspecified"]["delinquent"] += 1
            for p in late_by_chart[eid]:
                per_phys[p] += 1
    total = sum(v["discharges"] for v in per_month.values())
    avg = total / len(labels) if labels else 0.0
    rep = DelinquencyReport(days=days, avg_monthly_discharges=avg)
    for lab in labels:
        y, m = (int(x) for x in lab.split("-"))
        month_end = datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=UTC)
        v = per_month[lab]
        rep.months.append({"month": lab, "discharges": v["discharges"], "delinquent": v["delinquent"],
                           "rate": 100.0 * v["delinquent"] / avg if avg else 0.0,
                           "provisional": month_end + limit > now})
    rep.by_physician = sorted(({"physician_id": p, "delinquent": n, "open": open_by_phys.get(p, 0)}
                               for p, n in per_phys.items()), key=lambda r: (-r["delinquent"], str(r["physician_id"])))
    for p, n in open_by_phys.items():
        if p not in per_phys:
            rep.by_physician.append({"physician_id": p, "delinquent": 0, "open": n})
    rep.by_service = sorted(({"service": s, "discharges": v["discharges"], "delinquent": v["delinquent"],
                              "rate": 100.0 * v["delinquent"] / v["discharges"] if v["discharges"] else 0.0}
                             for s, v in per_service.items()), key=lambda r: (-r["delinquent"], r["service"]))
    rep.delinquent_now = sum(1 for eid, ch in charts.items() if eid in late_by_chart)
    return rep


def svg_trend(rep: DelinquencyReport, width: int = 760, height: int = 260) -> str:
    """Bars: discharges per month; line: delinquency rate (% of average monthly discharges), with the
    Joint Commission's 50% line. Plain SVG, no script."""
    months = rep.months
    if not months:
        return ""
    pad_l, pad_r, pad_t, pad_b = 48, 48, 20, 46
    w, h = width - pad_l - pad_r, height - pad_t - pad_b
    max_d = max([m["discharges"] for m in months] + [1])
    max_r = max([m["rate"] for m in months] + [60.0])
    step = w / len(months)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="Discharges and delinquency rate per month" class="trend">',
             f'<rect x="{pad_l}" y="{pad_t}" width="{w}" height="{h}" fill="#fff" stroke="#ccc"/>']
    for i, m in enumerate(months):
        bh = h * m["discharges"] / max_d
        x = pad_l + i * step + step * 0.15
        fill = "#c9d7ea" if not m["provisional"] else "#e4e9f0"
        parts.append(f'<rect x="{x:.1f}" y="{pad_t + h - bh:.1f}" width="{step * 0.7:.1f}" height="{bh:.1f}" '
                     f'fill="{fill}"><title>{escape(m["month"])}: {m["discharges"]} discharges, '
                     f'{m["delinquent"]} delinquent</title></rect>')
        if i % max(1, len(months) // 12) == 0:
            parts.append(f'<text x="{pad_l + i * step + step / 2:.1f}" y="{height - pad_b + 16}" font-size="10" '
                         f'text-anchor="middle">{escape(m["month"])}</text>')
    y50 = pad_t + h - h * 50 / max_r
    parts.append(f'<line x1="{pad_l}" x2="{pad_l + w}" y1="{y50:.1f}" y2="{y50:.1f}" stroke="#b00" '
                 f'stroke-dasharray="4 3"/><text x="{pad_l + w + 4}" y="{y50 + 4:.1f}" font-size="10" fill="#b00">50%</text>')
    pts = " ".join(f"{pad_l + i * step + step / 2:.1f},{pad_t + h - h * m['rate'] / max_r:.1f}" for i, m in enumerate(months))
    parts.append(f'<polyline points="{pts}" fill="none" stroke="#1f4e8c" stroke-width="2"/>')
    for i, m in enumerate(months):
        parts.append(f'<circle cx="{pad_l + i * step + step / 2:.1f}" cy="{pad_t + h - h * m["rate"] / max_r:.1f}" r="3" '
                     f'fill="#1f4e8c"><title>{escape(m["month"])}: {m["rate"]:.1f}%</title></circle>')
    parts.append(f'<text x="{pad_l - 6}" y="{pad_t + 10}" font-size="10" text-anchor="end">{max_d}</text>'
                 f'<text x="{pad_l - 6}" y="{pad_t + h}" font-size="10" text-anchor="end">0</text>'
                 f'<text x="{pad_l + w + 4}" y="{pad_t + 10}" font-size="10">{max_r:.0f}%</text>'
                 f'<text x="{pad_l}" y="{height - 8}" font-size="11">Bars: discharges per month · line: delinquent '
                 f'charts as % of average monthly discharges · dashed: 50% limit</text></svg>')
    return "".join(parts)
