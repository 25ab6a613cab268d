"""Observed survival as a registrar reports it (5-year survival by site, life tables, rejects), then
Kaplan-Meier checked against lifelines on generated data, and the actuarial method against a table
worked by hand."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lifelines import KaplanMeierFitter
from lifelines.utils import median_survival_times

from chartkeeper.registry.survival import (
    ALL,
    SurvivalInputError,
    kaplan_meier,
    life_table,
    months_between,
    prepare,
    stratum_label,
    summary,
    summary_table,
)

# Ten breast and six lung cases, months from diagnosis to death (1) or last contact (0).
BREAST = [(3, 1), (5, 0), (8, 1), (12, 1), (14, 0), (20, 1), (25, 1), (30, 0), (40, 1), (50, 0)]
LUNG = [(1, 1), (2, 1), (2, 1), (4, 0), (6, 1), (9, 1)]


def _cases() -> list[tuple[float, int, str]]:
    return [(t, e, "Breast") for t, e in BREAST] + [(t, e, "Lung and Bronchus") for t, e in LUNG]


def test_registrar_reports_one_two_five_year_survival_by_site() -> None:
    data = prepare(_cases())
    assert not data.rejects
    curves = kaplan_meier(data.time, data.event, data.strata)
    assert list(curves) == ["Breast", "Lung and Bronchus"]
    rows = summary(curves, at=(12, 24, 60))
    breast, lung = rows
    assert (breast.n, breast.deaths, lung.n, lung.deaths) == (10, 6, 6, 5)
    # Breast at 12 months: deaths at 3 (10 at risk), 8 (8 at risk), 12 (7 at risk): 9/10 * 7/8 * 6/7
    assert breast.points[0].survival == pytest.approx(0.9 * 7 / 8 * 6 / 7)
    assert breast.points[0].at_risk == 7  # alive and followed at 12 months, including the death at 12
    assert breast.points[0].lower < breast.points[0].survival < breast.points[0].upper
    # Lung: everyone died or was lost by 9 months; the curve reaches 0 so later survival is 0, not unknown.
    assert lung.points[0].survival == 0.0 and lung.points[0].at_risk == 0
    # Breast has nobody followed past 50 months and S > 0: 5-year survival is not available.
    assert math.isnan(breast.points[2].survival)
    assert breast.median == 25.0
    text = summary_table(rows)
    assert "Breast" in text and "n/a" in text and "Median (months)" in text


def test_median_not_reached_reads_as_such() -> None:
    curves = kaplan_meier([10, 20, 30, 40], [1, 0, 0, 0])
    assert math.isinf(curves[ALL].median)
    assert "not reached" in summary_table(summary(curves))


def test_bad_rows_are_set_aside_with_reasons_and_the_rest_analysed() -> None:
    data = prepare([(12, 1, "Breast"), (-2, 1, "Breast"), ("soon", 0, "Lung"), (5, 2, "Lung"), (7, "1", "Lung"),
                    (float("nan"), 0, "Lung"), (3,)])
    assert len(data) == 2
    assert [(r.row, r.item) for r in data.rejects] == [
        (2, "survival time"), (3, "survival time"), (4, "event"), (6, "survival time"), (7, "case")]
    assert "must be 1 (died) or 0" in str(data.rejects[2])
    curves = kaplan_meier(data.time, data.event, data.strata)
    assert set(curves) == {"Breast", "Lung"}


def test_arrays_with_bad_values_are_refused_naming_the_row() -> None:
    with pytest.raises(SurvivalInputError, match=r"Row 2: survival time -1\.0"):
        kaplan_meier([1, -1, 3], [1, 1, 0])
    with pytest.raises(SurvivalInputError, match="Row 3: event 2"):
        kaplan_meier([1, 2, 3], [1, 0, 2])
    with pytest.raises(SurvivalInputError, match="same length"):
        kaplan_meier([1, 2, 3], [1, 0])
    with pytest.raises(SurvivalInputError, match="one stratum per case"):
        kaplan_meier([1, 2, 3], [1, 0, 1], ["a"])
    with pytest.raises(SurvivalInputError, match="no cases"):
        kaplan_meier([], [])
    with pytest.raises(SurvivalInputError, match="'log-log' or 'plain'"):
        kaplan_meier([1, 2], [1, 1], ci="arcsine")  # type: ignore[arg-type]


def test_strata_from_several_characteristics_and_months_from_dates() -> None:
    assert stratum_label("Breast", "Stage II", None) == "Breast · Stage II · Unknown"
    # a leap year: 366 days / (365.25 / 12)
    assert months_between(date(2020, 1, 15), date(2021, 1, 15)) == pytest.approx(366 / 30.4375)


def test_plain_interval_is_greenwood_normal() -> None:
    c = kaplan_meier([1, 2, 3, 4, 5], [1, 0, 1, 0, 1], ci="plain")[ALL]
    # at t=3: S = 4/5 * 2/3 = 8/15; Greenwood V(log S) = 1/(5*4) + 1/(3*2)
    i = int(np.flatnonzero(c.time == 3)[0])
    s = 8 / 15
    se = s * math.sqrt(1 / 20 + 1 / 6)
    assert c.survival[i] == pytest.approx(s)
    assert c.std_error[i] == pytest.approx(se)
    assert c.lower[i] == pytest.approx(s - 1.959963984540054 * se)
    assert s + 1.959963984540054 * se > 1 and c.upper[i] == 1.0  # clipped to [0, 1]


# ------------------------------------------------------------------------------ agreement with lifelines

cases_strategy = st.lists(
    st.tuples(st.integers(0, 25), st.booleans(), st.sampled_from(["a", "b", "c"])), min_size=1, max_size=120)


def _check_against_lifelines(cases: list[tuple[float, bool, str]], alpha: float = 0.05) -> None:
    t = np.array([c[0] for c in cases], dtype=float)
    e = np.array([c[1] for c in cases], dtype=int)
    s = np.array([c[2] for c in cases])
    ours = kaplan_meier(t, e, s, alpha=alpha)
    assert sorted(ours) == sorted(set(s.tolist()))
    for label, curve in ours.items():
        m = s == label
        kmf = KaplanMeierFitter(alpha=alpha).fit(t[m], e[m])
        np.testing.assert_array_equal(kmf.survival_function_.index.values, curve.time)
        np.testing.assert_allclose(curve.survival, kmf.survival_function_.iloc[:, 0].values, rtol=0, atol=1e-9)
        ci = kmf.confidence_interval_.values
        np.testing.assert_allclose(curve.lower, ci[:, 0], rtol=0, atol=1e-9)
        np.testing.assert_allclose(curve.upper, ci[:, 1], rtol=0, atol=1e-9)
        np.testing.assert_array_equal(curve.at_risk, kmf.event_table["at_risk"].values)
        np.testing.assert_array_equal(curve.events, kmf.event_table["observed"].values)
        np.testing.assert_array_equal(curve.censored, kmf.event_table["censored"].values)
        assert curve.median == kmf.median_survival_time_
        lo, hi = median_survival_times(kmf.confidence_interval_).values[0]
        # The log-log bands can rise a little after an early death. lifelines then binary-searches a
        # non-monotone column (its answer depends on the search), while we take the first time the band
        # reaches 0.5; the two agree whenever the bands fall monotonically, which is what is compared.
        if np.all(np.diff(curve.lower) <= 0) and np.all(np.diff(curve.upper) <= 0):
            assert curve.median_ci == (lo, hi)


@settings(max_examples=150, deadline=None)
@given(cases_strategy)
def test_kaplan_meier_matches_lifelines_with_ties_and_censoring(cases: list[tuple[int, bool, str]]) -> None:
    _check_against_lifelines([(float(t), ev, s) for t, ev, s in cases])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 500, allow_nan=False), st.booleans(), st.just("x")), min_size=1, max_size=80),
       st.sampled_from([0.01, 0.05, 0.1]))
def test_kaplan_meier_matches_lifelines_on_continuous_times(cases: list[tuple[float, bool, str]], alpha: float) -> None:
    _check_against_lifelines(cases, alpha)


def test_censoring_at_an_event_time_and_deaths_at_zero_match_lifelines() -> None:
    # Deaths and censorings tied at 5 and 10 (deaths counted first), two deaths at time 0, all dead at the end.
    cases = [(0, True, "a"), (0, True, "a"), (5, True, "a"), (5, False, "a"), (5, True, "a"), (10, False, "a"),
             (10, True, "a"), (12, True, "a"), (12, True, "a")]
    _check_against_lifelines([(float(t), ev, s) for t, ev, s in cases])
    c = kaplan_meier([0, 0, 5], [1, 1, 1])[ALL]
    assert c.time[0] == 0 and c.survival[0] == pytest.approx(1 / 3) and c.survival[-1] == 0.0


def test_larger_registry_matches_lifelines_in_every_stratum() -> None:
    rng = np.random.default_rng(7)
    n = 20_000
    t = np.round(rng.exponential(40, n), 1)
    e = (rng.random(n) < 0.6).astype(int)
    s = rng.choice([f"group {i:02d}" for i in range(8)], n)
    _check_against_lifelines(list(zip(t.tolist(), e.astype(bool).tolist(), s.tolist(), strict=True)))


# --------------------------------------------------------------------------------- actuarial life table


def test_life_table_matches_the_hand_worked_table() -> None:
    """Yearly intervals for the ten breast cases, worked by hand:

    interval  entering  deaths  withdrawn  effective n' = n - w/2   interval p      cumulative S
    [0,12)    10        2 (3,8) 1 (5)      9.5                      1 - 2/9.5       15/19
    [12,24)   7         2 (12,20) 1 (14)   6.5                      1 - 2/6.5       15/19 * 9/13 = 135/247
    [24,36)   4         1 (25)  1 (30)     3.5                      1 - 1/3.5       135/247 * 5/7 = 675/1729
    [36,48)   2         1 (40)  0          2                        1/2             675/3458
    [48,60)   1         0       1 (50)     0.5                      1               675/3458
    Greenwood: SE(S_k) = S_k * sqrt(sum_j d_j / (n'_j (n'_j - d_j))).
    """
    t, e = zip(*BREAST, strict=True)
    lt = life_table(t, e, width=12)[ALL]
    np.testing.assert_array_equal(lt.start, [0, 12, 24, 36, 48])
    np.testing.assert_array_equal(lt.entering, [10, 7, 4, 2, 1])
    np.testing.assert_array_equal(lt.deaths, [2, 2, 1, 1, 0])
    np.testing.assert_array_equal(lt.withdrawn, [1, 1, 1, 0, 1])
    np.testing.assert_allclose(lt.effective, [9.5, 6.5, 3.5, 2, 0.5])
    expected = [15 / 19, 135 / 247, 675 / 1729, 675 / 3458, 675 / 3458]
    np.testing.assert_allclose(lt.survival, expected, rtol=1e-12)
    gw2 = 2 / (9.5 * 7.5) + 2 / (6.5 * 4.5)
    assert lt.std_error[1] == pytest.approx(135 / 247 * math.sqrt(gw2), rel=1e-12)
    # log-log interval, same formula as Kaplan-Meier
    z = 1.959963984540054
    s = 135 / 247
    lo = math.exp(-math.exp(math.log(-math.log(s)) - z * math.sqrt(gw2) / math.log(s)))
    assert lt.lower[1] == pytest.approx(lo, rel=1e-12)
    p2 = lt.at(24)
    assert (p2.survival, p2.at_risk) == (pytest.approx(s), 4)
    assert math.isnan(lt.at(72).survival)
    assert lt.at(0).survival == 1.0


def test_life_table_by_stratum_and_explicit_edges() -> None:
    data = prepare(_cases())
    tables = life_table(data.time, data.event, data.strata, edges=[0, 6, 12])
    lung = tables["Lung and Bronchus"]
    # [0,6): 6 enter, deaths at 1,2,2 and a withdrawal at 4: n' = 5.5; [6,12): 2 enter, 2 die, S = 0
    np.testing.assert_array_equal(lung.entering, [6, 2])
    assert lung.survival[-1] == 0.0 and lung.at(12).survival == 0.0
    assert lung.lower[-1] == 0.0 and lung.upper[-1] == 0.0
    breast = tables["Breast"]
    np.testing.assert_array_equal(breast.entering, [10, 8])  # cases beyond 12 months still entered [6,12)
    with pytest.raises(SurvivalInputError, match="start at 0 and increase"):
        life_table([1, 2], [1, 0], edges=[1, 2])
    with pytest.raises(SurvivalInputError, match="width must be more than zero"):
        life_table([1, 2], [1, 0], width=0)


def test_life_table_with_narrow_intervals_tracks_kaplan_meier() -> None:
    """With one-unit intervals and integer times, no withdrawals fall mid-interval except ties, so the
    actuarial curve stays close to Kaplan-Meier (a sanity check between the two methods)."""
    rng = np.random.default_rng(3)
    t = rng.integers(0, 60, 3000).astype(float)
    e = (rng.random(3000) < 0.9).astype(int)
    km = kaplan_meier(t, e)[ALL]
    lt = life_table(t, e, width=1)[ALL]
    for x in (12.0, 24.0, 48.0):
        assert abs(km.at(x - 1e-9).survival - lt.at(x).survival) < 0.01


# ----------------------------------------------------------------------------------------- the picture


def test_survival_curves_draw_one_labelled_curve_per_site_with_numbers_at_risk() -> None:
    import xml.etree.ElementTree as ET

    from chartkeeper.registry.plots import svg_survival

    data = prepare(_cases())
    curves = kaplan_meier(data.time, data.event, data.strata)
    svg = svg_survival(curves, title="Observed survival by site", ticks=[0, 12, 24, 36, 48], ci_band=True)
    assert svg == svg_survival(curves, title="Observed survival by site", ticks=[0, 12, 24, 36, 48], ci_band=True)
    ns = {"s": "http://www.w3.org/2000/svg"}
    root = ET.fromstring(svg)
    assert root.get("role") == "img"
    assert root.find("s:title", ns).text == "Observed survival by site"  # type: ignore[union-attr]
    desc = root.find("s:desc", ns).text  # type: ignore[union-attr]
    assert "Breast, 10 cases" in desc and "Lung and Bronchus, 6 cases" in desc
    step_paths = [p for p in root.iter("{http://www.w3.org/2000/svg}path") if p.get("fill") == "none"]
    assert len(step_paths) == 2 and step_paths[0].get("stroke") != step_paths[1].get("stroke")
    assert step_paths[1].get("stroke-dasharray")  # told apart without colour too
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "Number at risk" in texts and "Months since diagnosis" in texts
    # Breast row of the at-risk table: 10 at 0, 7 at 12, 4 at 24, 2 at 36, 1 at 48
    i = texts.index("Breast")
    assert texts[i + 1:i + 6] == ["10", "7", "4", "2", "1"]
    tables = life_table(data.time, data.event, data.strata)
    lt_svg = svg_survival(tables, title="Life table")
    assert "actuarial survival for 2 group(s)" in lt_svg and ET.fromstring(lt_svg) is not None
    assert svg_survival({}) == ""
