"""Coder accuracy and throughput, computed from the stored decisions and abstracts.

* Accuracy: of the suggestions computer-assisted coding made, the share each coder accepted
  unchanged, edited to another code, or rejected, per code system (decided suggestions only; those
  inferred at finalize count, and are shown apart).
* Throughput: encounters finalized per coder per day, and the median minutes from assignment to
  final (the last assignment before finalizing).

Aggregates only: no patient appears in either report. The service checks policy and audits.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from statistics import median
from typing import Any, cast

from sqlalchemy import Connection, Table, func, select

from chartkeeper.coding.models import AbstractRow, AbstractStatus, Decision, DecisionRow

ABS = cast(Table, AbstractRow.__table__)
DEC = cast(Table, DecisionRow.__table__)


@dataclass(frozen=True)
class AccuracyRow:
    coder: str | None
    system: str  # icd10cm | icd10pcs | hcpcs
    suggestions: int
    accepted: int
    edited: int
    rejected: int
    inferred: int  # of the above, decided at finalize from the final codes rather than by the coder
    coder_name: str = ""

    def share(self, decision: Decision) -> float:
        n = {Decision.ACCEPTED: self.accepted, Decision.EDITED: self.edited, Decision.REJECTED: self.rejected}.get(
            decision, 0)
        return n / self.suggestions if self.suggestions else 0.0


@dataclass(frozen=True)
class ThroughputRow:
    coder: str
    finalized: int
    days: int  # days on which the coder finalized at least one encounter
    per_day: float  # finalized / days
    median_minutes: float | None  # assignment to final
    by_day: tuple[tuple[date, int], ...]
    coder_name: str = ""


def accuracy(conn: Connection, *, since: datetime | None = None, until: datetime | None = None) -> list[AccuracyRow]:
    where: list[Any] = [DEC.c.decision != Decision.PENDING.value]
    if since is not None:
        where.append(DEC.c.decided_at >= since)
    if until is not None:
        where.append(DEC.c.decided_at < until)
    counts: dict[tuple[str | None, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    stmt = (select(DEC.c.coder, DEC.c.system, DEC.c.decision, DEC.c.inferred, func.count())
            .where(*where).group_by(DEC.c.coder, DEC.c.system, DEC.c.decision, DEC.c.inferred))
    for coder, system, decision, inferred, n in conn.execute(stmt):
        c = counts[(coder, system)]
        c[decision] += int(n)
        if inferred:
            c["inferred"] += int(n)
    out = []
    for (coder, system), c in counts.items():
        total = c[Decision.ACCEPTED.value] + c[Decision.EDITED.value] + c[Decision.REJECTED.value]
        out.append(AccuracyRow(coder, system, total, c[Decision.ACCEPTED.value], c[Decision.EDITED.value],
                               c[Decision.REJECTED.value], c["inferred"]))
    return sorted(out, key=lambda r: (r.coder or "", r.system))


def throughput(conn: Connection, *, since: datetime | None = None, until: datetime | None = None) -> list[ThroughputRow]:
    where: list[Any] = [ABS.c.status == AbstractStatus.FINAL.value, ABS.c.finalized_by.is_not(None)]
    if since is not None:
        where.append(ABS.c.finalized_at >= since)
    if until is not None:
        where.append(ABS.c.finalized_at < until)
    per_coder: dict[str, list[tuple[datetime, datetime | None]]] = defaultdict(list)
    for coder, fin, assigned in conn.execute(select(ABS.c.finalized_by, ABS.c.finalized_at, ABS.c.assigned_at)
                                             .where(*where)):
        per_coder[coder].append((fin, assigned))
    out = []
    for coder, items in per_coder.items():
        days: dict[date, int] = defaultdict(int)
        minutes = []
        for fin, assigned in items:
            days[fin.date()] += 1
            if assigned is not None and assigned <= fin:
                minutes.append((fin - assigned).total_seconds() / 60)
        out.append(ThroughputRow(coder, len(items), len(days), len(items) / len(days),
                                 round(median(minutes), 1) if minutes else None, tuple(sorted(days.items()))))
    return sorted(out, key=lambda r: r.coder)
