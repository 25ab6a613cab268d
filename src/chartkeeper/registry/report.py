"""Registry reports from the stored abstracts: the glue between the tumour abstracts (NAACCR items
keyed by naaccrId, read through ``RegistryService.report_records``) and the statistics engines
(``survival``, ``incidence``, ``siterecode``, ``plots``).

Survival (observed, per tumour):

* time = months from Date of Diagnosis (item 390) to Date of Last Contact (item 1750), days / 30.4375;
* event = Vital Status (item 1760) 0, dead; 1, alive at last contact, is censored;
* strata: site group (SEER site recode from primary site, histology, behaviour and year), Summary
  Stage 2018 (item 764), sex, or year of diagnosis.

A tumour that cannot be used (no diagnosis date, no last contact, last contact before diagnosis, no
vital status) is left out and listed with its accession number and the reason.

Incidence (per tumour, malignant behaviour only):

* county = the state's two-digit FIPS code (from Addr at DX--State, item 80) + County at DX (item 90);
* age = whole years from Date of Birth (item 240) to Date of Diagnosis; year = year of diagnosis;
* sex from Sex Assigned at Birth (item 225, NAACCR 26) or Sex (item 220, earlier versions): 1 male,
  2 female; other codes cannot be matched to a population row and are left out with the reason.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from chartkeeper.coding.codes import CodeFormatError
from chartkeeper.registry import survival
from chartkeeper.registry.incidence import CountyFIPS, IncidenceCase, Population, RateReport, Sex, incidence
from chartkeeper.registry.plots import svg_ranked_bars, svg_survival
from chartkeeper.registry.service import TumorRecord, day_of_naaccr
from chartkeeper.registry.siterecode import site_group

Strata = Literal["all", "site", "stage", "sex", "year"]
STRATA: dict[str, str] = {"all": "All cases", "site": "Site group (SEER site recode)",
                          "stage": "Summary Stage 2018", "sex": "Sex", "year": "Year of diagnosis"}
SUMMARY_STAGE = {"0": "In situ", "1": "Localized", "2": "Regional, direct extension", "3": "Regional, lymph nodes",
                 "4": "Regional, extension and nodes", "7": "Distant", "8": "Benign or borderline", "9": "Unknown stage"}
SEX_LABELS = {"1": "Male", "2": "Female", "9": "Unknown"}
SURVIVAL_AT = (12.0, 24.0, 60.0)  # 1, 2 and 5 years, in months

# The states' two-digit FIPS codes (public, from the Census Bureau's state code list).
STATE_FIPS = {
    "AL": "01", "AK": "02", "AZ": "04", "AR": "05", "CA": "06", "CO": "08", "CT": "09", "DE": "10", "DC": "11",
    "FL": "12", "GA": "13", "HI": "15", "ID": "16", "IL": "17", "IN": "18", "IA": "19", "KS": "20", "KY": "21",
    "LA": "22", "ME": "23", "MD": "24", "MA": "25", "MI": "26", "MN": "27", "MS": "28", "MO": "29", "MT": "30",
    "NE": "31", "NV": "32", "NH": "33", "NJ": "34", "NM": "35", "NY": "36", "NC": "37", "ND": "38", "OH": "39",
    "OK": "40", "OR": "41", "PA": "42", "RI": "44", "SC": "45", "SD": "46", "TN": "47", "TX": "48", "UT": "49",
    "VT": "50", "VA": "51", "WA": "53", "WV": "54", "WI": "55", "WY": "56", "AS": "60", "GU": "66", "MP": "69",
    "PR": "72", "VI": "78",
}


@dataclass(frozen=True)
class Left:
    """A tumour left out of a report: its accession number (or record id) and why."""

    tumor: str
    reason: str

    def __str__(self) -> str:
        return f"Tumour {self.tumor}: {self.reason}"


def _label(r: TumorRecord) -> str:
    acc = r.items.get("accessionNumberHosp", "")
    seq = r.items.get("sequenceNumberHospital", "")
    return f"{acc}/{seq}" if acc and seq else acc or r.tumor_id


def _sex(r: TumorRecord) -> str:
    return r.patient_items.get("sexAssignedAtBirth") or r.patient_items.get("sex") or ""


def dx_date(r: TumorRecord) -> date | None:
    return day_of_naaccr(r.items.get("dateOfDiagnosis"))


def stratum(r: TumorRecord, by: Strata) -> str:
    """The tumour's group for ``by`` ("Unknown" when the items do not say)."""
    if by == "all":
        return survival.ALL
    if by == "site":
        site, hist, beh = (r.items.get(k, "") for k in ("primarySite", "histologicTypeIcdO3", "behaviorCodeIcdO3"))
        dx = dx_date(r)
        if not (site and hist and beh):
            return "Unknown"
        try:
            group = site_group(site, hist, beh, dx.year if dx else None)
        except CodeFormatError:
            return "Unknown"
        return group.name if group else "Unknown"
    if by == "stage":
        return SUMMARY_STAGE.get(r.items.get("summaryStage2018", ""), "Unknown")
    if by == "sex":
        code = _sex(r)
        return SEX_LABELS.get(code, "Other" if code else "Unknown")
    dx = dx_date(r)
    return str(dx.year) if dx else "Unknown"


@dataclass(frozen=True)
class SurvivalInput:
    """(time in months, event, stratum) per usable tumour, and the tumours left out."""

    cases: list[tuple[float, int, str]]
    left_out: list[Left]


def survival_input(records: Iterable[TumorRecord], by: Strata = "all") -> SurvivalInput:
    """Survival time and event of each tumour: diagnosis to last contact in months; dead = event."""
    cases: list[tuple[float, int, str]] = []
    left: list[Left] = []
    for r in records:
        dx = dx_date(r)
        dlc = day_of_naaccr(r.patient_items.get("dateOfLastContact"))
        vital = r.patient_items.get("vitalStatus", "")
        if dx is None:
            left.append(Left(_label(r), "no Date of Diagnosis (item 390); abstract it to count this tumour."))
        elif dlc is None:
            left.append(Left(_label(r), "no Date of Last Contact (item 1750); refresh follow-up or abstract it."))
        elif dlc < dx:
            left.append(Left(_label(r), f"the Date of Last Contact {dlc.isoformat()} is before the Date of Diagnosis "
                                        f"{dx.isoformat()}; correct one of them."))
        elif vital not in ("0", "1"):
            left.append(Left(_label(r), "no Vital Status (item 1760: 0 dead, 1 alive); refresh follow-up or abstract "
                                        "it."))
        else:
            cases.append((survival.months_between(dx, dlc), 1 if vital == "0" else 0, stratum(r, by)))
    return SurvivalInput(cases, left)


@dataclass
class SurvivalReport:
    by: Strata
    curves: dict[str, survival.KaplanMeier]
    tables: dict[str, survival.LifeTable]
    summary: list[survival.SummaryRow]
    left_out: list[Left]
    svg: str
    n: int = 0
    strata_shown: list[str] = field(default_factory=list)


def survival_report(records: Iterable[TumorRecord], by: Strata = "all", *, at: Sequence[float] = SURVIVAL_AT,
                    width: float = 12.0, max_strata: int = 8) -> SurvivalReport:
    """Kaplan-Meier curves and actuarial life tables by ``by``, the 1/2/5-year table and the SVG. The
    ``max_strata`` largest groups are drawn (every group is in the tables)."""
    inp = survival_input(records, by)
    if not inp.cases:
        return SurvivalReport(by, {}, {}, [], inp.left_out, "", 0)
    time = [c[0] for c in inp.cases]
    event = [c[1] for c in inp.cases]
    strata = [c[2] for c in inp.cases]
    curves = survival.kaplan_meier(time, event, strata)
    tables = survival.life_table(time, event, strata, width=width)
    shown = sorted(curves, key=lambda k: (-curves[k].n, k))[:max_strata]
    what = {"site": "site group", "stage": "Summary Stage 2018", "sex": "sex", "year": "year of diagnosis"}
    title = f"Observed survival by {what[by]}" if by != "all" else "Observed survival, all cases"
    svg = svg_survival({k: curves[k] for k in sorted(shown)}, title=title)
    return SurvivalReport(by, curves, tables, survival.summary(curves, at), inp.left_out, svg, len(inp.cases),
                          sorted(shown))


def age_at(birth: date, day: date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def incidence_cases(records: Iterable[TumorRecord]) -> tuple[list[IncidenceCase], list[Left]]:
    """One incidence case per malignant tumour (county at diagnosis, year, sex, age), and the tumours
    left out with the item to fix."""
    cases: list[IncidenceCase] = []
    left: list[Left] = []
    for r in records:
        if r.items.get("behaviorCodeIcdO3") != "3":
            left.append(Left(_label(r), "not malignant (Behavior Code ICD-O-3, item 523, is not 3); incidence "
                                        "counts invasive tumours."))
            continue
        dx = dx_date(r)
        birth = day_of_naaccr(r.patient_items.get("dateOfBirth"))
        state = r.items.get("addrAtDxState", "").upper()
        county = r.items.get("countyAtDx", "")
        sex = {"1": Sex.MALE, "2": Sex.FEMALE}.get(_sex(r))
        if dx is None:
            left.append(Left(_label(r), "no Date of Diagnosis (item 390)."))
        elif birth is None:
            left.append(Left(_label(r), "no Date of Birth (item 240)."))
        elif state not in STATE_FIPS:
            left.append(Left(_label(r), "no state at diagnosis (Addr at DX--State, item 80)."))
        elif not (len(county) == 3 and county.isdigit()) or county in ("000", "998", "999"):
            left.append(Left(_label(r), "no county at diagnosis (County at DX Reported, item 90, three digits)."))
        elif sex is None:
            left.append(Left(_label(r), "sex is not 1 (male) or 2 (female), so no population row matches it."))
        elif age_at(birth, dx) < 0:
            left.append(Left(_label(r), "the Date of Birth is after the Date of Diagnosis."))
        else:
            cases.append(IncidenceCase(CountyFIPS(STATE_FIPS[state] + county), dx.year, sex, age_at(birth, dx)))
    return cases, left


@dataclass
class IncidenceReport:
    rates: RateReport
    left_out: list[Left]
    svg: str


def incidence_report(records: Iterable[TumorRecord], population: Population, *,
                     level: Literal["county", "state"] = "county", years: Sequence[int] | None = None,
                     sex: Sex | None = None) -> IncidenceReport:
    """Crude and age-adjusted incidence per 100,000 by county or state over ``years`` (default: every
    year of the population file), with the ranked bar chart. Raises ``ValueError`` (a sentence) when
    the population file lacks a year asked for."""
    cases, left = incidence_cases(records)
    rates = incidence(cases, population, level=level, years=years, sex=sex)
    for rej in rates.rejects:
        left.append(Left(f"case {rej.case}" if rej.case else level, rej.reason))
    return IncidenceReport(rates, left, svg_ranked_bars(rates, limit=25))


# ------------------------------------------------------------------------------------------- CSV


def _pct(x: float) -> str:
    return "" if math.isnan(x) else f"{x * 100:.1f}"


def _months(x: float) -> str:
    return "not reached" if math.isinf(x) else f"{x:.1f}"


def _csv(rows: Iterable[Sequence[object]]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    for row in rows:
        w.writerow(row)
    return out.getvalue()


def survival_csv(rep: SurvivalReport) -> str:
    """The 1/2/5-year table: one row per stratum, survival in percent with its 95% interval and the number at risk."""
    times = [p.time for p in rep.summary[0].points] if rep.summary else list(SURVIVAL_AT)
    head: list[object] = ["stratum", "cases", "deaths", "median_months", "median_lower", "median_upper"]
    for t in times:
        head += [f"survival_{t:g}m_pct", f"lower_{t:g}m_pct", f"upper_{t:g}m_pct", f"at_risk_{t:g}m"]
    rows: list[list[object]] = [head]
    for s in rep.summary:
        row: list[object] = [s.stratum, s.n, s.deaths, _months(s.median), _months(s.median_ci[0]),
                             _months(s.median_ci[1])]
        for p in s.points:
            row += [_pct(p.survival), _pct(p.lower), _pct(p.upper), p.at_risk]
        rows.append(row)
    return _csv(rows)


def life_table_csv(rep: SurvivalReport) -> str:
    """The actuarial life tables, one row per stratum and interval."""
    rows: list[list[object]] = [["stratum", "interval_start_months", "interval_end_months", "entering", "deaths",
                                 "withdrawn", "effective_at_risk", "interval_survival_pct", "cumulative_survival_pct",
                                 "std_error_pct", "lower_pct", "upper_pct"]]
    for name in sorted(rep.tables):
        t = rep.tables[name]
        for i in range(t.start.shape[0]):
            rows.append([name, f"{t.start[i]:g}", f"{t.end[i]:g}", int(t.entering[i]), int(t.deaths[i]),
                         int(t.withdrawn[i]), f"{t.effective[i]:.1f}", _pct(float(t.interval_survival[i])),
                         _pct(float(t.survival[i])), _pct(float(t.std_error[i])), _pct(float(t.lower[i])),
                         _pct(float(t.upper[i]))])
    return _csv(rows)


def incidence_csv(rep: IncidenceReport) -> str:
    """The rates, highest age-adjusted first."""
    rows: list[list[object]] = [["rank", rep.rates.level, "state", "cases", "population", "crude_per_100k",
                                 "crude_lower", "crude_upper", "age_adjusted_per_100k", "age_adjusted_lower",
                                 "age_adjusted_upper"]]
    for i, r in enumerate(rep.rates.ranked(), start=1):
        rows.append([i, r.area, r.state, r.count, f"{r.population:.0f}", f"{r.crude.value:.2f}",
                     f"{r.crude.lower:.2f}", f"{r.crude.upper:.2f}", f"{r.age_adjusted.value:.2f}",
                     f"{r.age_adjusted.lower:.2f}", f"{r.age_adjusted.upper:.2f}"])
    return _csv(rows)


__all__ = ["STATE_FIPS", "STRATA", "SUMMARY_STAGE", "IncidenceReport", "Left", "SurvivalInput", "SurvivalReport",
           "age_at", "incidence_cases", "incidence_csv", "incidence_report", "life_table_csv", "stratum",
           "survival_csv", "survival_input", "survival_report"]
