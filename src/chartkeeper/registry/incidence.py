"""Incidence and prevalence rates per 100,000 by county and state, crude and age-adjusted to the 2000
U.S. standard population (19 age groups), from a population file the registry supplies.

Age adjustment is direct: the age-specific rates of an area are averaged with the standard
population's share of each age group as weights (``data/us_standard_population_2000.csv``, from
SEER's published standard). Intervals are gamma intervals: Fay and Feuer (1997) or, by default, the
Tiwari, Clegg and Zou (2006) modification that SEER*Stat uses, whose upper limit adds the mean weight
(and mean squared weight) instead of the largest. The crude rate's interval is the exact Poisson one
(the same gamma interval with one group).

The population file is a CSV with one row per county, year, sex and age group::

    county_fips,state,year,sex,age_group,population
    06037,CA,2020,F,85+,98123

``sex`` is M or F; ``age_group`` one of 00, 01-04, 05-09, ..., 80-84, 85+. ``load_population`` reads
it row by row, reports each bad row with its line number and the item, and refuses a file in which
a county and year lacks some age groups (naming the county, year, sex and the groups), so a rate is
never computed over part of a population. Nothing is written anywhere: the file is only read.
"""

from __future__ import annotations

import csv
import io
import math
import random
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import gamma

from chartkeeper.coding.codes import Code

GammaMethod = Literal["tiwari", "fay-feuer"]
AreaLevel = Literal["county", "state"]
PER = 100_000.0


class AgeGroup(StrEnum):
    """The 19 age groups of the 2000 U.S. standard population."""

    A00 = "00"
    A01_04 = "01-04"
    A05_09 = "05-09"
    A10_14 = "10-14"
    A15_19 = "15-19"
    A20_24 = "20-24"
    A25_29 = "25-29"
    A30_34 = "30-34"
    A35_39 = "35-39"
    A40_44 = "40-44"
    A45_49 = "45-49"
    A50_54 = "50-54"
    A55_59 = "55-59"
    A60_64 = "60-64"
    A65_69 = "65-69"
    A70_74 = "70-74"
    A75_79 = "75-79"
    A80_84 = "80-84"
    A85_UP = "85+"

    @classmethod
    def of_age(cls, age: int) -> AgeGroup:
        """The group of an age in whole years (0 -> 00, 1-4 -> 01-04, 5-9 -> 05-09, ..., 85 and over -> 85+)."""
        if age < 0:
            raise ValueError(f"Age {age} is negative: check the birth and diagnosis dates.")
        if age == 0:
            return cls.A00
        if age < 5:
            return cls.A01_04
        return AGE_GROUPS[min(age // 5 + 1, 18)]

    @property
    def position(self) -> int:
        return AGE_GROUPS.index(self)


AGE_GROUPS: tuple[AgeGroup, ...] = tuple(AgeGroup)


class Sex(StrEnum):
    MALE = "M"
    FEMALE = "F"


class CountyFIPS(Code):
    """A county's five-digit FIPS code: two for the state, three for the county (``06037``)."""

    system = "urn:oid:2.16.840.1.113883.6.93"
    label = "county FIPS"
    pattern = re.compile(r"[0-9]{5}")
    example = "06037"


class StateCode(Code):
    """A state's two-letter USPS abbreviation (``CA``)."""

    system = "https://www.usps.com/state"
    label = "state abbreviation"
    pattern = re.compile(r"[A-Z]{2}")
    example = "CA"


@cache
def standard_population() -> tuple[int, ...]:
    """The 2000 U.S. standard population in the 19 groups, in ``AGE_GROUPS`` order."""
    text = resources.files("chartkeeper.registry").joinpath("data/us_standard_population_2000.csv").read_text("utf-8")
    rows = list(csv.DictReader(line for line in io.StringIO(text) if not line.startswith("#")))
    by_group = {AgeGroup(r["age_group"]): int(r["population"]) for r in rows}
    return tuple(by_group[g] for g in AGE_GROUPS)


# ------------------------------------------------------------------------------------------- rates


@dataclass(frozen=True, slots=True)
class Rate:
    """A rate per ``per`` persons (100,000 by default) with its confidence interval."""

    value: float
    lower: float
    upper: float


def _gamma_interval(y: float, v: float, ystar: float, vstar: float, alpha: float) -> tuple[float, float]:
    lower = 0.0 if y <= 0 else float(gamma.ppf(alpha / 2, y * y / v, scale=v / y))
    upper = float(gamma.ppf(1 - alpha / 2, ystar * ystar / vstar, scale=vstar / ystar))
    return lower, upper


def crude_rate(count: int, population: float, *, per: float = PER, alpha: float = 0.05) -> Rate:
    """Count per ``per`` population with the exact Poisson interval."""
    if population <= 0:
        raise ValueError(f"A rate needs a population above zero, not {population}.")
    w = 1.0 / population
    lo, hi = _gamma_interval(count * w, count * w * w, (count + 1) * w, (count + 1) * w * w, alpha)
    return Rate(count * w * per, lo * per, hi * per)


def age_adjusted_rate(counts: ArrayLike, populations: ArrayLike, *, standard: ArrayLike | None = None,
                      per: float = PER, alpha: float = 0.05, method: GammaMethod = "tiwari") -> Rate:
    """Directly age-adjusted rate: ``sum_i (count_i / pop_i) * std_i / sum(std)`` times ``per``, with a
    gamma interval. ``counts`` and ``populations`` are per age group in ``AGE_GROUPS`` order (or in the
    order of ``standard`` when another standard is given). Age groups with no population contribute
    nothing (and must have no cases)."""
    std = np.asarray(standard if standard is not None else standard_population(), dtype=np.float64)
    x = np.asarray(counts, dtype=np.float64)
    n = np.asarray(populations, dtype=np.float64)
    if not (x.shape == n.shape == std.shape):
        raise ValueError(f"Give one count and one population per age group ({std.shape[0]} groups): "
                         f"got {x.shape[0]} counts and {n.shape[0]} populations.")
    if np.any(n < 0) or np.any(x < 0):
        raise ValueError("Counts and populations cannot be negative.")
    empty = n == 0
    if np.any(empty & (x > 0)):
        i = int(np.flatnonzero(empty & (x > 0))[0])
        label = AGE_GROUPS[i].value if std.shape[0] == len(AGE_GROUPS) else str(i)
        raise ValueError(f"Age group {label} has {int(x[i])} case(s) but no population: check the population file.")
    keep = ~empty
    if not keep.any():
        raise ValueError("A rate needs a population above zero in at least one age group.")
    w = std[keep] / (n[keep] * std.sum())
    xk = x[keep]
    y = float(np.sum(w * xk))
    v = float(np.sum(w * w * xk))
    if method == "fay-feuer":
        wm = float(w.max())
        ystar, vstar = y + wm, v + wm * wm
    elif method == "tiwari":
        ystar, vstar = y + float(w.mean()), v + float(np.mean(w * w))
    else:
        raise ValueError(f"Interval method {method!r} is not known: use 'tiwari' or 'fay-feuer'.")
    lo, hi = _gamma_interval(y, v, ystar, vstar, alpha)
    return Rate(y * per, lo * per, hi * per)


# ------------------------------------------------------------------------------------ population file


@dataclass(frozen=True, slots=True)
class PopulationRow:
    county: CountyFIPS
    state: StateCode
    year: int
    sex: Sex
    age_group: AgeGroup
    population: int


@dataclass(frozen=True, slots=True)
class FileProblem:
    """One thing wrong with a population file: the line (1 is the header; 0 for the file as a whole), the item and what to do."""

    line: int
    item: str
    message: str

    def __str__(self) -> str:
        where = f"Line {self.line}" if self.line else "The file"
        return f"{where}, {self.item}: {self.message}"


class PopulationFileError(ValueError):
    """A population file that cannot be used as it is. ``problems`` lists every one; ``rows`` keeps the
    rows that were read correctly, so nothing the user gave is lost."""

    def __init__(self, problems: Sequence[FileProblem], rows: Sequence[PopulationRow]) -> None:
        self.problems = tuple(problems)
        self.rows = tuple(rows)
        shown = "\n".join(str(p) for p in self.problems[:20])
        more = f"\n... and {len(self.problems) - 20} more." if len(self.problems) > 20 else ""
        super().__init__(f"The population file was not loaded ({len(self.problems)} problem(s)):\n{shown}{more}")


COLUMNS = ("county_fips", "state", "year", "sex", "age_group", "population")
_SEX = {"M": Sex.MALE, "MALE": Sex.MALE, "1": Sex.MALE, "F": Sex.FEMALE, "FEMALE": Sex.FEMALE, "2": Sex.FEMALE}
_AGE_ALIASES = {"0": "00", "1-4": "01-04", "5-9": "05-09", "85+": "85+", "85-+": "85+", "85 +": "85+"}


def _age_group(text: str) -> AgeGroup | None:
    t = text.strip().replace(" ", "")
    t = _AGE_ALIASES.get(t, t)
    try:
        return AgeGroup(t)
    except ValueError:
        return None


@dataclass
class Population:
    """Population counts by county, year, sex and age group, with each county's state."""

    rows: tuple[PopulationRow, ...]
    _cells: dict[tuple[str, int, Sex], np.ndarray] = field(default_factory=dict, repr=False)
    states: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for r in self.rows:
            key = (str(r.county), r.year, r.sex)
            cell = self._cells.get(key)
            if cell is None:
                cell = self._cells[key] = np.zeros(len(AGE_GROUPS), dtype=np.float64)
            cell[r.age_group.position] += r.population
            self.states[str(r.county)] = str(r.state)

    @property
    def years(self) -> tuple[int, ...]:
        return tuple(sorted({k[1] for k in self._cells}))

    @property
    def counties(self) -> tuple[str, ...]:
        return tuple(sorted(self.states))

    def has(self, county: str, year: int) -> bool:
        return (county, year, Sex.MALE) in self._cells or (county, year, Sex.FEMALE) in self._cells

    def by_age(self, area: str, *, level: AreaLevel = "county", years: Iterable[int] | None = None,
               sex: Sex | None = None) -> np.ndarray:
        """Person-years by age group for a county (FIPS) or state (abbreviation), summed over ``years``
        (all years in the file by default) and over both sexes unless ``sex`` is given."""
        ys = set(years) if years is not None else set(self.years)
        total = np.zeros(len(AGE_GROUPS), dtype=np.float64)
        for (county, year, s), cell in self._cells.items():
            if year not in ys or (sex is not None and s != sex):
                continue
            if (county if level == "county" else self.states[county]) == area:
                total += cell
        return total

    def areas(self, level: AreaLevel) -> tuple[str, ...]:
        return self.counties if level == "county" else tuple(sorted(set(self.states.values())))


def parse_population(source: str | Path | io.TextIOBase) -> tuple[list[PopulationRow], list[FileProblem]]:
    """Read a population CSV row by row: the good rows, and a problem for each bad row (line number,
    item, what is wrong). Does not check completeness; ``load_population`` does."""
    if isinstance(source, Path):
        text = source.read_text(encoding="utf-8-sig")
    elif isinstance(source, str):
        text = source
    else:
        text = source.read()
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        return [], [FileProblem(0, "header", "the file is empty; the first line must name the columns "
                                               + ", ".join(COLUMNS) + ".")]
    names = [h.strip().lower().lstrip("\ufeff") for h in header]
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        return [], [FileProblem(1, "header", f"column(s) {', '.join(missing)} are missing; the first line must name "
                                              f"the columns {', '.join(COLUMNS)}.")]
    col = {c: names.index(c) for c in COLUMNS}
    rows: list[PopulationRow] = []
    problems: list[FileProblem] = []
    seen: dict[tuple[str, int, Sex, AgeGroup], int] = {}
    for line_no, raw in enumerate(reader, start=2):
        if not raw or all(not c.strip() for c in raw):
            continue
        if len(raw) < len(names):
            problems.append(FileProblem(line_no, "row", f"has {len(raw)} values where the header names {len(names)}."))
            continue
        val = {c: raw[i].strip() for c, i in col.items()}
        county = CountyFIPS.parse(val["county_fips"])
        if county is None:
            problems.append(FileProblem(line_no, "county_fips", f"{val['county_fips']!r} is not a five-digit county "
                                                                f"FIPS code (write it like 06037, keeping leading zeros)."))
            continue
        state = StateCode.parse(val["state"])
        if state is None:
            problems.append(FileProblem(line_no, "state", f"{val['state']!r} is not a two-letter state abbreviation (like CA)."))
            continue
        try:
            year = int(val["year"])
            if not 1900 <= year <= 2100:
                raise ValueError
        except ValueError:
            problems.append(FileProblem(line_no, "year", f"{val['year']!r} is not a four-digit year."))
            continue
        sex = _SEX.get(val["sex"].upper())
        if sex is None:
            problems.append(FileProblem(line_no, "sex",
                                        f"{val['sex']!r} is not M or F; give males and females on separate rows."))
            continue
        group = _age_group(val["age_group"])
        if group is None:
            problems.append(FileProblem(line_no, "age_group", f"{val['age_group']!r} is not one of the 19 age groups "
                                                              f"({AGE_GROUPS[0]}, {AGE_GROUPS[1]}, ..., {AGE_GROUPS[-1]})."))
            continue
        try:
            pop_f = float(val["population"].replace(",", ""))
            if not math.isfinite(pop_f) or pop_f < 0 or pop_f != int(pop_f):
                raise ValueError
        except ValueError:
            problems.append(FileProblem(line_no, "population", f"{val['population']!r} is not a whole number of zero or more."))
            continue
        key = (str(county), year, sex, group)
        if key in seen:
            problems.append(FileProblem(line_no, "row", f"county {county}, year {year}, sex {sex}, age group {group} "
                                                        f"is already given on line {seen[key]}; keep one of them."))
            continue
        seen[key] = line_no
        rows.append(PopulationRow(county, state, year, sex, group, int(pop_f)))
    return rows, problems


def completeness_problems(rows: Iterable[PopulationRow]) -> list[FileProblem]:
    """One problem per county, year and sex that lacks some of the 19 age groups (or a sex entirely),
    and per county given under two states."""
    have: dict[tuple[str, int], dict[Sex, set[AgeGroup]]] = defaultdict(lambda: {Sex.MALE: set(), Sex.FEMALE: set()})
    states: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        have[(str(r.county), r.year)][r.sex].add(r.age_group)
        states[str(r.county)].add(str(r.state))
    problems = []
    for (county, year), by_sex in sorted(have.items()):
        for sex in (Sex.MALE, Sex.FEMALE):
            missing = [g.value for g in AGE_GROUPS if g not in by_sex[sex]]
            if not missing:
                continue
            which = "all 19 age groups" if len(missing) == len(AGE_GROUPS) else "age group(s) " + ", ".join(missing)
            problems.append(FileProblem(0, f"county {county}, year {year}, sex {sex.value}",
                                        f"the population is missing {which}; add those rows (a population of 0 is "
                                        f"allowed) so rates for county {county} in {year} cover every age."))
    for county, st in sorted(states.items()):
        if len(st) > 1:
            problems.append(FileProblem(0, f"county {county}", f"is given under more than one state ({', '.join(sorted(st))})."))
    return problems


def load_population(source: str | Path | io.TextIOBase) -> Population:
    """Read and check a population file. Raises ``PopulationFileError`` listing every bad row and every
    incomplete county-year; the error keeps the rows that were read, and nothing is stored."""
    rows, problems = parse_population(source)
    problems += completeness_problems(rows)
    if problems or not rows:
        if not problems:
            problems = [FileProblem(0, "rows", "the file has a header but no population rows.")]
        raise PopulationFileError(problems, rows)
    return Population(tuple(rows))


def population_csv(rows: Iterable[PopulationRow]) -> str:
    """The rows as a population file (the format ``load_population`` reads)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([r.county, r.state, r.year, r.sex.value, r.age_group.value, r.population])
    return out.getvalue()


def synthetic_population(counties: Sequence[tuple[str, str]], year: int | Sequence[int], seed: int = 0) -> list[PopulationRow]:
    """A made-up but plausible population file for the demo: for each ``(county FIPS, state)`` a size
    between about 20,000 and 1,000,000, spread over the age groups like the standard population
    (with some noise), a little more than half female and more so in the oldest groups. Deterministic
    for a given seed."""
    rng = random.Random(seed)
    std = standard_population()
    share = [s / sum(std) for s in std]
    years = [year] if isinstance(year, int) else list(year)
    rows: list[PopulationRow] = []
    for fips, state in counties:
        c, s = CountyFIPS(fips), StateCode(state)
        size = math.exp(rng.uniform(math.log(20_000), math.log(1_000_000)))
        tilt = rng.uniform(-0.3, 0.3)  # older or younger than the standard
        weights = [sh * math.exp(tilt * (i - 9) / 9) * rng.uniform(0.9, 1.1) for i, sh in enumerate(share)]
        total_w = sum(weights)
        for k, y in enumerate(years):
            growth = (1 + rng.uniform(-0.01, 0.02)) ** k
            for i, g in enumerate(AGE_GROUPS):
                n = size * growth * weights[i] / total_w
                female = 0.49 + 0.12 * max(0, i - 12) / 6
                rows.append(PopulationRow(c, s, y, Sex.MALE, g, round(n * (1 - female))))
                rows.append(PopulationRow(c, s, y, Sex.FEMALE, g, round(n * female)))
    return rows


# ------------------------------------------------------------------------------ incidence and prevalence


@dataclass(frozen=True, slots=True)
class IncidenceCase:
    """One incident tumour as the rate calculation needs it: residence county at diagnosis, year of
    diagnosis, sex and age at diagnosis in whole years."""

    county: CountyFIPS
    year: int
    sex: Sex
    age: int


@dataclass(frozen=True, slots=True)
class PrevalenceCase:
    """One person with a diagnosis, for counting who is alive with it on an index date."""

    county: CountyFIPS
    sex: Sex
    birth_date: date
    diagnosis_date: date
    death_date: date | None = None


@dataclass(frozen=True, slots=True)
class CaseReject:
    """A case not counted: its position in the input (from 1) and why."""

    case: int
    reason: str

    def __str__(self) -> str:
        return f"Case {self.case}: {self.reason}"


@dataclass(frozen=True)
class AreaRate:
    """One county's or state's line: cases, person-years, crude and age-adjusted rates per 100,000."""

    area: str
    state: str
    count: int
    population: float
    crude: Rate
    age_adjusted: Rate
    counts_by_age: tuple[int, ...]


@dataclass(frozen=True)
class RateReport:
    level: AreaLevel
    years: tuple[int, ...]
    sex: Sex | None
    rows: tuple[AreaRate, ...]
    rejects: tuple[CaseReject, ...] = ()

    def ranked(self, by: Literal["age_adjusted", "crude", "count"] = "age_adjusted") -> list[AreaRate]:
        """Highest first; ties broken by area code so the order is stable."""
        def key(r: AreaRate) -> tuple[float, str]:
            v = r.count if by == "count" else getattr(r, by).value
            return (-v, r.area)
        return sorted(self.rows, key=key)

    def table(self, by: Literal["age_adjusted", "crude", "count"] = "age_adjusted") -> str:
        head = ["Rank", self.level.capitalize(), "Cases", "Population", "Crude /100k [95% CI]", "Age-adjusted /100k [95% CI]"]
        lines = [head]
        for i, r in enumerate(self.ranked(by), start=1):
            area = r.area if self.level == "state" else f"{r.area} ({r.state})"
            lines.append([str(i), area, str(r.count), f"{r.population:,.0f}",
                          f"{r.crude.value:.1f} [{r.crude.lower:.1f}, {r.crude.upper:.1f}]",
                          f"{r.age_adjusted.value:.1f} [{r.age_adjusted.lower:.1f}, {r.age_adjusted.upper:.1f}]"])
        widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in lines)


def _rates(counted: dict[str, np.ndarray], population: Population, level: AreaLevel, years: tuple[int, ...],
           sex: Sex | None, rejects: list[CaseReject], *, per: float, alpha: float, method: GammaMethod) -> RateReport:
    rows = []
    for area in population.areas(level):
        pops = population.by_age(area, level=level, years=years, sex=sex)
        counts = counted.get(area, np.zeros(len(AGE_GROUPS)))
        total_pop = float(pops.sum())
        if total_pop <= 0:
            continue
        bad = (pops == 0) & (counts > 0)
        for i in np.flatnonzero(bad):
            rejects.append(CaseReject(0, f"{int(counts[i])} case(s) in {level} {area}, age group {AGE_GROUPS[i].value}, "
                                         f"where the population file gives a population of 0; they are not counted."))
        counts = np.where(bad, 0, counts)
        state = area if level == "state" else population.states[area]
        rows.append(AreaRate(area, state, int(counts.sum()), total_pop,
                             crude_rate(int(counts.sum()), total_pop, per=per, alpha=alpha),
                             age_adjusted_rate(counts, pops, per=per, alpha=alpha, method=method),
                             tuple(int(c) for c in counts)))
    return RateReport(level, years, sex, tuple(rows), tuple(rejects))


def incidence(cases: Iterable[IncidenceCase], population: Population, *, level: AreaLevel = "county",
              years: Sequence[int] | None = None, sex: Sex | None = None, per: float = PER, alpha: float = 0.05,
              method: GammaMethod = "tiwari") -> RateReport:
    """Incidence rates per ``per`` by county or state over ``years`` (default: every year in the
    population file), both sexes or one. A case whose county and year the population file does not
    cover is not counted and is listed in ``rejects`` with the reason; the rest are."""
    ys = tuple(sorted(set(years))) if years is not None else population.years
    missing_years = [y for y in ys if y not in population.years]
    if missing_years:
        raise ValueError(f"The population file has no rows for {', '.join(map(str, missing_years))}: "
                         f"load a file that covers those years or choose from {', '.join(map(str, population.years))}.")
    counted: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(len(AGE_GROUPS)))
    rejects: list[CaseReject] = []
    for i, c in enumerate(cases, start=1):
        if c.year not in ys or (sex is not None and c.sex != sex):
            continue
        county = str(c.county)
        if not population.has(county, c.year):
            rejects.append(CaseReject(i, f"county {county} in {c.year} is not in the population file."))
            continue
        if c.age < 0 or c.age > 130:
            rejects.append(CaseReject(i, f"age at diagnosis {c.age} is not possible; check the birth and diagnosis dates."))
            continue
        area = county if level == "county" else population.states[county]
        counted[area][AgeGroup.of_age(c.age).position] += 1
    return _rates(counted, population, level, ys, sex, rejects, per=per, alpha=alpha, method=method)


def _age_on(birth: date, day: date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def prevalence(cases: Iterable[PrevalenceCase], population: Population, index_date: date, *,
               duration_years: int | None = None, level: AreaLevel = "county", sex: Sex | None = None,
               per: float = PER, alpha: float = 0.05, method: GammaMethod = "tiwari") -> RateReport:
    """Persons alive on ``index_date`` with a diagnosis on or before it (within ``duration_years`` of it
    for limited-duration prevalence), per ``per`` of the index year's population, by age on the index
    date. Uses the population of ``index_date.year``."""
    year = index_date.year
    if year not in population.years:
        raise ValueError(f"The population file has no rows for {year}, the year of the index date {index_date.isoformat()}.")
    since = None
    if duration_years is not None:
        try:
            since = index_date.replace(year=year - duration_years)
        except ValueError:  # 29 February
            since = index_date.replace(year=year - duration_years, day=28)
    counted: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(len(AGE_GROUPS)))
    rejects: list[CaseReject] = []
    for i, c in enumerate(cases, start=1):
        if c.diagnosis_date > index_date or (since is not None and c.diagnosis_date <= since):
            continue
        if c.death_date is not None and c.death_date <= index_date:
            continue
        if sex is not None and c.sex != sex:
            continue
        county = str(c.county)
        if not population.has(county, year):
            rejects.append(CaseReject(i, f"county {county} in {year} is not in the population file."))
            continue
        age = _age_on(c.birth_date, index_date)
        if age < 0:
            rejects.append(CaseReject(i, "the birth date is after the index date."))
            continue
        area = county if level == "county" else population.states[county]
        counted[area][AgeGroup.of_age(age).position] += 1
    return _rates(counted, population, level, (year,), sex, rejects, per=per, alpha=alpha, method=method)
