"""Incidence and prevalence rates as a registrar produces them for the state report: load the
population file (and see exactly what is wrong with a bad one), count cases by county and state,
crude and age-adjusted per 100,000; then the age adjustment against a worked example and the gamma
intervals against their textbook forms."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import chi2

from chartkeeper.registry.incidence import (
    AGE_GROUPS,
    AgeGroup,
    CountyFIPS,
    IncidenceCase,
    PopulationFileError,
    PrevalenceCase,
    Sex,
    age_adjusted_rate,
    crude_rate,
    incidence,
    load_population,
    parse_population,
    population_csv,
    prevalence,
    standard_population,
    synthetic_population,
)

COUNTIES = [("06037", "CA"), ("06059", "CA"), ("32003", "NV")]


def _flat_file(county: str = "06037", state: str = "CA", year: int = 2020, per_group: int = 10_000,
               skip: tuple[str, ...] = ()) -> str:
    lines = ["county_fips,state,year,sex,age_group,population"]
    for sex in "MF":
        for g in AGE_GROUPS:
            if f"{sex}{g.value}" not in skip:
                lines.append(f"{county},{state},{year},{sex},{g.value},{per_group // 2}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------- the user's side


def test_registrar_loads_a_population_file_and_ranks_counties(tmp_path: Path) -> None:
    path = tmp_path / "population.csv"
    path.write_text(population_csv(synthetic_population(COUNTIES, [2020, 2021], seed=4)))
    pop = load_population(path)
    assert pop.years == (2020, 2021) and pop.counties == ("06037", "06059", "32003")
    cases = [IncidenceCase(CountyFIPS("06037"), 2020, Sex.FEMALE, 67)] * 30 + \
            [IncidenceCase(CountyFIPS("32003"), 2021, Sex.MALE, 72)] * 30 + \
            [IncidenceCase(CountyFIPS("99999"), 2021, Sex.MALE, 50)]
    report = incidence(cases, pop)
    assert [str(r) for r in report.rejects] == ["Case 61: county 99999 in 2021 is not in the population file."]
    by_area = {r.area: r for r in report.rows}
    assert by_area["06059"].count == 0 and by_area["06059"].crude.value == 0 and by_area["06059"].crude.upper > 0
    la = by_area["06037"]
    assert la.count == 30
    assert la.crude.value == pytest.approx(30 / pop.by_age("06037").sum() * 1e5)
    assert la.crude.lower < la.crude.value < la.crude.upper
    ranked = report.ranked()
    assert ranked[-1].area == "06059"
    assert ranked == sorted(report.rows, key=lambda r: -r.age_adjusted.value)
    text = report.table()
    assert text.splitlines()[0].startswith("Rank  County") and "06037 (CA)" in text
    states = incidence(cases, pop, level="state", years=[2020])
    assert [(r.area, r.count) for r in states.rows] == [("CA", 30), ("NV", 0)]
    women = incidence(cases, pop, sex=Sex.FEMALE)
    assert {r.area: r.count for r in women.rows}["32003"] == 0


def test_a_file_missing_age_groups_is_refused_naming_county_year_and_groups() -> None:
    text = _flat_file(skip=("F85+", "F80-84")) + _flat_file(county="06059", year=2020).split("\n", 1)[1]
    with pytest.raises(PopulationFileError) as err:
        load_population(text)
    msg = str(err.value)
    assert "county 06037, year 2020, sex F: the population is missing age group(s) 80-84, 85+" in msg
    assert "06059" not in msg
    # Nothing lost: every row that was read is on the error, for the user to fix and reload.
    assert len(err.value.rows) == 2 * 19 - 2 + 2 * 19
    only_men = "\n".join(line for line in _flat_file().splitlines() if ",F," not in line)
    with pytest.raises(PopulationFileError, match="sex F: the population is missing all 19 age groups"):
        load_population(only_men)


def test_each_bad_row_is_reported_with_its_line_and_item() -> None:
    good = _flat_file().splitlines()
    bad = good + ["6037,CA,2020,M,00,5", "06037,California,2020,M,00,5", "06037,CA,20x0,M,00,5",
                  "06037,CA,2020,X,00,5", "06037,CA,2020,M,90-94,5", "06037,CA,2020,M,00,-5", "06037,CA,2020,M,00,5",
                  "06037,CA,2020"]
    rows, problems = parse_population("\n".join(bad))
    assert len(rows) == 38
    got = [(p.line, p.item) for p in problems]
    assert got == [(40, "county_fips"), (41, "state"), (42, "year"), (43, "sex"), (44, "age_group"),
                   (45, "population"), (46, "row"), (47, "row")]
    assert "keeping leading zeros" in str(problems[0])
    assert "already given on line 2" in str(problems[6])
    with pytest.raises(PopulationFileError, match="Line 40, county_fips"):
        load_population("\n".join(bad))
    with pytest.raises(PopulationFileError, match="column.s. age_group, population are missing"):
        load_population("county_fips,state,year,sex\n06037,CA,2020,M\n")
    with pytest.raises(PopulationFileError, match="no population rows"):
        load_population("county_fips,state,year,sex,age_group,population\n")


def test_alternative_spellings_in_population_files_are_accepted() -> None:
    text = _flat_file().replace(",00,", ",0,").replace(",01-04,", ",1-4,").replace(",M,", ",Male,")
    pop = load_population(text)
    assert pop.by_age("06037").sum() == 19 * 10_000


def test_years_outside_the_population_file_are_refused_with_the_fix() -> None:
    pop = load_population(_flat_file())
    with pytest.raises(ValueError, match="no rows for 2019: load a file that covers those years or choose from 2020"):
        incidence([], pop, years=[2019])


def test_prevalence_counts_people_alive_with_the_diagnosis_on_the_index_date() -> None:
    pop = load_population(_flat_file(year=2024))
    la = CountyFIPS("06037")
    cases = [
        PrevalenceCase(la, Sex.FEMALE, date(1950, 6, 1), date(2015, 3, 1)),                     # counted (age 74)
        PrevalenceCase(la, Sex.MALE, date(1960, 1, 1), date(2022, 5, 1), date(2023, 2, 1)),    # died before
        PrevalenceCase(la, Sex.MALE, date(1960, 1, 1), date(2024, 6, 1)),                       # diagnosed after
        PrevalenceCase(la, Sex.MALE, date(1990, 1, 2), date(2023, 1, 1), date(2025, 1, 1)),    # counted (age 33)
        PrevalenceCase(CountyFIPS("06059"), Sex.MALE, date(1990, 1, 1), date(2020, 1, 1)),     # county not in file
    ]
    rep = prevalence(cases, pop, date(2024, 1, 1))
    row = rep.rows[0]
    assert row.count == 2
    assert row.counts_by_age[AgeGroup.A70_74.position] == 1 and row.counts_by_age[AgeGroup.A30_34.position] == 1
    assert len(rep.rejects) == 1 and "06059" in str(rep.rejects[0])
    five_year = prevalence(cases, pop, date(2024, 1, 1), duration_years=5)
    assert five_year.rows[0].count == 1  # the 2015 diagnosis is beyond five years


def test_synthetic_population_is_complete_and_deterministic() -> None:
    a = synthetic_population(COUNTIES, 2020, seed=9)
    assert a == synthetic_population(COUNTIES, 2020, seed=9)
    assert a != synthetic_population(COUNTIES, 2020, seed=10)
    assert len(a) == 3 * 2 * 19
    pop = load_population(population_csv(a))
    for fips, _ in COUNTIES:
        assert 15_000 < pop.by_age(fips).sum() < 1_100_000
    old = pop.by_age("06037", sex=Sex.FEMALE)[-1] / pop.by_age("06037")[-1]
    assert old > 0.55


# ------------------------------------------------------------------------------ the arithmetic itself


def test_standard_population_is_the_published_19_group_table() -> None:
    std = standard_population()
    assert len(std) == 19 and sum(std) == 274_633_642
    assert std[0] == 3_794_901 and std[-1] == 4_259_173
    # Its share per million rounds to the published "standard million" within 2 per group.
    million = [13818, 55317, 72533, 73032, 72169, 66478, 64529, 71044, 80762, 81851, 72118, 62716, 48454, 38793,
               34264, 31773, 26999, 17842, 15508]
    assert all(abs(s * 1e6 / sum(std) - m) <= 2 for s, m in zip(std, million, strict=True))


def test_age_adjustment_worked_example() -> None:
    """A worked example of direct age adjustment, done by hand.

    A county with 10,000 people in each of the 19 age groups (190,000 in all) and 35 cases:
    10 aged 65-69, 20 aged 70-74 and 5 aged 85+.

    Crude rate: 35 / 190,000 x 100,000 = 18.421 per 100,000.

    Age-specific rates per 100,000: 65-69: 10/10,000 = 100; 70-74: 20/10,000 = 200; 85+: 5/10,000 = 50.
    Weights are each group's share of the 2000 standard (total 274,633,642):
        65-69  9,409,940   100 x 9,409,940 =   940,994,000
        70-74  8,725,574   200 x 8,725,574 = 1,745,114,800
        85+    4,259,173    50 x 4,259,173 =   212,958,650
                                     sum   = 2,899,067,450
    Age-adjusted rate = 2,899,067,450 / 274,633,642 = 10.556 per 100,000: lower than the crude rate
    because this county has far more old people than the standard population does.
    """
    counts = [0] * 19
    counts[AgeGroup.A65_69.position], counts[AgeGroup.A70_74.position], counts[AgeGroup.A85_UP.position] = 10, 20, 5
    pops = [10_000] * 19
    assert crude_rate(35, 190_000).value == pytest.approx(18.421, abs=5e-4)
    aar = age_adjusted_rate(counts, pops)
    assert aar.value == pytest.approx(2_899_067_450 / 274_633_642, rel=1e-12)
    assert round(aar.value, 3) == 10.556
    assert aar.lower < aar.value < aar.upper
    # Through the population file and case counting, the same number.
    pop = load_population(_flat_file(per_group=10_000))
    cases = [IncidenceCase(CountyFIPS("06037"), 2020, Sex.MALE, age) for age in [66] * 10 + [71] * 20 + [90] * 5]
    row = incidence(cases, pop).rows[0]
    assert row.age_adjusted.value == pytest.approx(aar.value, rel=1e-12)
    assert row.crude.value == pytest.approx(18.421, abs=5e-4)


def test_crude_interval_is_the_exact_poisson_interval() -> None:
    # Textbook exact 95% limits for 10 events: 4.795 and 18.390.
    r = crude_rate(10, 100_000)
    assert (round(r.lower, 3), round(r.upper, 3)) == (4.795, 18.390)
    for x in (0, 1, 7, 250):
        r = crude_rate(x, 50_000, alpha=0.1)
        assert r.lower * 50_000 / 1e5 == pytest.approx(chi2.ppf(0.05, 2 * x) / 2 if x else 0.0, rel=1e-9)
        assert r.upper * 50_000 / 1e5 == pytest.approx(chi2.ppf(0.95, 2 * x + 2) / 2, rel=1e-9)


def test_gamma_intervals_match_the_chi_square_form_of_fay_and_feuer() -> None:
    """Fay and Feuer (1997) write the limits with chi-square quantiles: with y = sum w x, v = sum w^2 x,
    lower = v / (2y) chi2(alpha/2; 2y^2/v), upper = (v + wM^2) / (2(y + wM)) chi2(1 - alpha/2; 2(y + wM)^2/(v + wM^2)).
    Tiwari et al. (2006) replace wM by the mean weight and wM^2 by the mean squared weight."""
    rng = np.random.default_rng(11)
    std = np.asarray(standard_population(), dtype=float)
    for _ in range(20):
        pops = rng.integers(500, 200_000, 19).astype(float)
        counts = rng.poisson(pops * rng.uniform(1e-5, 3e-3, 19)).astype(float)
        w = std / (pops * std.sum())
        y, v = float((w * counts).sum()), float((w * w * counts).sum())
        lower = v / (2 * y) * chi2.ppf(0.025, 2 * y * y / v)
        for method, add, add2 in (("fay-feuer", w.max(), w.max() ** 2), ("tiwari", w.mean(), (w * w).mean())):
            upper = (v + add2) / (2 * (y + add)) * chi2.ppf(0.975, 2 * (y + add) ** 2 / (v + add2))
            r = age_adjusted_rate(counts, pops, method=method)  # type: ignore[arg-type]
            assert r.value == pytest.approx(y * 1e5, rel=1e-12)
            assert r.lower == pytest.approx(lower * 1e5, rel=1e-9)
            assert r.upper == pytest.approx(upper * 1e5, rel=1e-9)
        assert age_adjusted_rate(counts, pops, method="tiwari").upper <= age_adjusted_rate(counts, pops, method="fay-feuer").upper


def test_one_age_group_reduces_to_the_exact_poisson_interval() -> None:
    for method in ("tiwari", "fay-feuer"):
        r = age_adjusted_rate([12], [40_000], standard=[1], method=method)  # type: ignore[arg-type]
        c = crude_rate(12, 40_000)
        assert (r.value, r.lower, r.upper) == pytest.approx((c.value, c.lower, c.upper), rel=1e-12)


def test_age_adjustment_refuses_what_it_cannot_compute() -> None:
    with pytest.raises(ValueError, match="one count and one population per age group"):
        age_adjusted_rate([1, 2], [100, 100])
    counts, pops = [0] * 19, [1000] * 19
    counts[3], pops[3] = 2, 0
    with pytest.raises(ValueError, match="Age group 10-14 has 2 case.s. but no population"):
        age_adjusted_rate(counts, pops)
    with pytest.raises(ValueError, match="'tiwari' or 'fay-feuer'"):
        age_adjusted_rate([0] * 19, [1] * 19, method="wald")  # type: ignore[arg-type]


def test_age_groups_of_ages() -> None:
    assert [AgeGroup.of_age(a).value for a in (0, 1, 4, 5, 9, 10, 84, 85, 104)] == \
        ["00", "01-04", "01-04", "05-09", "05-09", "10-14", "80-84", "85+", "85+"]
    with pytest.raises(ValueError, match="negative"):
        AgeGroup.of_age(-1)


def test_ranked_chart_of_counties_is_accessible_and_deterministic() -> None:
    import xml.etree.ElementTree as ET

    from chartkeeper.registry.plots import svg_ranked_bars

    pop = load_population(population_csv(synthetic_population(COUNTIES, 2020, seed=1)))
    cases = [IncidenceCase(CountyFIPS(f), 2020, Sex.MALE, 70) for f, n in (("06037", 50), ("06059", 5), ("32003", 20))
             for _ in range(n)]
    report = incidence(cases, pop)
    svg = svg_ranked_bars(report)
    assert svg == svg_ranked_bars(report)
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert root.find(f"{ns}title").text == "Age-adjusted rate per 100,000 by county, 2020"  # type: ignore[union-attr]
    labels = [t.text for t in root.iter(f"{ns}text") if t.text and t.text[0].isdigit() and ". " in t.text]
    assert labels == [f"{i}. {r.area} ({r.state})" for i, r in enumerate(report.ranked(), start=1)]
    widths = [float(r.get("width", 0)) for r in root.iter(f"{ns}rect")]
    assert widths == sorted(widths, reverse=True)
    assert len(ET.fromstring(svg_ranked_bars(report, limit=2)).findall(f"{ns}rect")) == 2
