"""registry.report: stored abstracts to survival and incidence inputs, the reports, their CSV, and the
service's report_records (restricted patients left out; audited as one aggregate read)."""

from __future__ import annotations

import csv
import io
import math
from datetime import date

import numpy as np
import pytest

from chartkeeper.registry import report, survival
from chartkeeper.registry.incidence import Sex, load_population, population_csv, synthetic_population
from chartkeeper.registry.service import TumorRecord
from chartkeeper.security import audit, grants
from chartkeeper.security.principal import Principal

SYSTEM = Principal.system("test")


def rec(tid: str, *, dx: str = "20200115", dlc: str = "20220115", vital: str = "1", site: str = "C509",
        hist: str = "8500", beh: str = "3", stage: str = "1", sex: str = "2", birth: str = "19600301",
        state: str = "OH", county: str = "049", acc: str = "") -> TumorRecord:
    items = {"dateOfDiagnosis": dx, "primarySite": site, "histologicTypeIcdO3": hist, "behaviorCodeIcdO3": beh,
             "summaryStage2018": stage, "addrAtDxState": state, "countyAtDx": county}
    if acc:
        items["accessionNumberHosp"] = acc
        items["sequenceNumberHospital"] = "00"
    pat = {"dateOfLastContact": dlc, "vitalStatus": vital, "sexAssignedAtBirth": sex, "dateOfBirth": birth}
    return TumorRecord(tid, {k: v for k, v in pat.items() if v}, {k: v for k, v in items.items() if v})


def test_survival_time_is_months_from_diagnosis_to_last_contact_and_death_is_the_event() -> None:
    got = report.survival_input([rec("a", dx="20200115", dlc="20220115", vital="1"),
                                 rec("b", dx="20210301", dlc="20210901", vital="0")])
    assert got.left_out == []
    (ta, ea, sa), (tb, eb, _) = got.cases
    assert math.isclose(ta, (date(2022, 1, 15) - date(2020, 1, 15)).days / 30.4375) and ea == 0 and sa == "All cases"
    assert math.isclose(tb, 184 / 30.4375) and eb == 1


def test_unusable_tumours_are_left_out_with_the_item_to_fix() -> None:
    got = report.survival_input([rec("no-dx", dx="", acc="202000001"), rec("no-dlc", dlc=""),
                                 rec("backwards", dx="20220101", dlc="20210101"), rec("no-vital", vital=""),
                                 rec("ok")])
    assert len(got.cases) == 1
    reasons = [str(x) for x in got.left_out]
    assert reasons[0].startswith("Tumour 202000001/00: no Date of Diagnosis (item 390)")
    assert "no Date of Last Contact (item 1750)" in reasons[1]
    assert "2021-01-01 is before the Date of Diagnosis 2022-01-01" in reasons[2]
    assert "no Vital Status (item 1760" in reasons[3]


def test_strata_site_group_stage_sex_and_year() -> None:
    r = rec("a", site="C341", hist="8140", stage="7", sex="1", dx="20190610")
    assert report.stratum(r, "site") == "Lung and Bronchus"
    assert report.stratum(rec("b"), "site") == "Breast"
    assert report.stratum(r, "stage") == "Distant" and report.stratum(r, "sex") == "Male"
    assert report.stratum(r, "year") == "2019" and report.stratum(r, "all") == "All cases"
    assert report.stratum(rec("c", stage=""), "stage") == "Unknown"
    assert report.stratum(rec("d", site="", hist=""), "site") == "Unknown"
    assert report.stratum(rec("e", site="BAD1"), "site") == "Unknown"
    assert report.stratum(TumorRecord("f", {"sex": "2"}, {}), "sex") == "Female"  # NAACCR 25 spelling
    assert report.stratum(rec("g", sex="3"), "sex") == "Other"


def test_survival_report_is_the_engine_on_the_same_inputs_and_draws_the_curves() -> None:
    records = [rec(str(i), dx="20180101", dlc=f"20{19 + i % 5}0{1 + i % 9}01", vital="0" if i % 3 == 0 else "1",
                   site="C341" if i % 2 else "C509", hist="8140" if i % 2 else "8500") for i in range(30)]
    rep = report.survival_report(records, "site")
    inp = report.survival_input(records, "site")
    direct = survival.kaplan_meier([c[0] for c in inp.cases], [c[1] for c in inp.cases], [c[2] for c in inp.cases])
    assert set(rep.curves) == {"Breast", "Lung and Bronchus"} == set(direct)
    for k in direct:
        assert np.allclose(rep.curves[k].survival, direct[k].survival)
    assert rep.n == 30 and [s.stratum for s in rep.summary] == sorted(direct)
    assert [p.time for p in rep.summary[0].points] == [12.0, 24.0, 60.0]
    assert rep.svg.startswith("<svg") and "Breast" in rep.svg and "Lung and Bronchus" in rep.svg
    assert set(rep.tables) == set(direct) and rep.tables["Breast"].end[0] == 12.0
    rows = list(csv.reader(io.StringIO(report.survival_csv(rep))))
    assert rows[0][:4] == ["stratum", "cases", "deaths", "median_months"] and len(rows) == 3
    assert rows[1][0] == "Breast" and int(rows[1][1]) == rep.curves["Breast"].n
    life = list(csv.reader(io.StringIO(report.life_table_csv(rep))))
    assert life[0][0] == "stratum" and sum(1 for r in life[1:] if r[0] == "Breast") == len(rep.tables["Breast"].end)
    empty = report.survival_report([rec("x", dlc="")], "stage")
    assert empty.n == 0 and empty.svg == "" and len(empty.left_out) == 1


def test_incidence_cases_county_fips_age_and_sex_from_the_items() -> None:
    cases, left = report.incidence_cases([
        rec("a", birth="19600301", dx="20200229", county="049", sex="1"),
        rec("b", beh="2"), rec("c", county=""), rec("d", state="ZZ"), rec("e", sex="9"), rec("f", birth=""),
        rec("g", birth="20210101", dx="20200101"), rec("h", county="999")])
    assert len(cases) == 1
    c = cases[0]
    assert str(c.county) == "39049" and c.year == 2020 and c.sex is Sex.MALE and c.age == 59
    reasons = " | ".join(str(x) for x in left)
    for bit in ("not malignant", "County at DX Reported, item 90", "Addr at DX--State, item 80",
                "sex is not 1 (male) or 2 (female)", "no Date of Birth", "Date of Birth is after"):
        assert bit in reasons
    assert len(left) == 7


def test_incidence_report_rates_and_csv_over_a_population_file() -> None:
    pop = load_population(population_csv(synthetic_population([("39049", "OH"), ("39041", "OH")], [2020, 2021],
                                                              seed=5)))
    records = [rec(str(i), dx=f"202{i % 2}0601", county="049" if i < 6 else "041") for i in range(8)]
    records.append(rec("outside", county="099"))  # a county the population file does not cover
    rep = report.incidence_report(records, pop)
    by_area = {r.area: r for r in rep.rates.rows}
    assert by_area["39049"].count == 6 and by_area["39041"].count == 2
    assert math.isclose(by_area["39049"].crude.value, 6 / by_area["39049"].population * 100_000)
    assert any("39099" in str(x) for x in rep.left_out)
    assert rep.svg.startswith("<svg") and "39049 (OH)" in rep.svg
    state = report.incidence_report(records, pop, level="state", years=[2020], sex=Sex.FEMALE)
    assert [r.area for r in state.rates.rows] == ["OH"] and state.rates.rows[0].count == 4
    rows = list(csv.reader(io.StringIO(report.incidence_csv(rep))))
    assert rows[0][:4] == ["rank", "county", "state", "cases"] and rows[1][0] == "1"
    with pytest.raises(ValueError, match="no rows for 2019"):
        report.incidence_report(records, pop, years=[2019])


def test_report_records_leave_out_restricted_patients_and_are_audited(db, svc, people, breast_case, write) -> None:
    import registry_fhir as fx

    write(fx.patient("pat-v", "MRN-V", "Holloway", "Vera"), fx.encounter("enc-v", "pat-v", "2025-04-02"),
          fx.pathology("path-v", "pat-v", "enc-v", "2025-04-02"))
    rows = svc.suspense(people.registrar, limit=500).rows
    for r in rows:
        if r.kind == "pathology":
            svc.accept(people.registrar, r.id)
    with db.begin() as conn:
        grants.restrict_patient(conn, SYSTEM, "pat-v", "vip")
    got = svc.report_records(people.registrar)
    assert [r.patient_items.get("nameLast") for r in got] == ["Rivera"]
    assert got[0].items["primarySite"].startswith("C50") and got[0].items["dateOfDiagnosis"] == "20250310"
    rep = report.survival_report(got, "sex")
    assert [s.stratum for s in rep.summary] == ["Female"]
    with db.read() as conn:
        entries = audit.query(conn, user_id=people.registrar.user_id)
    assert any("registry report: 1 tumour abstracts" in (e.detail or "") for e in entries)


def test_demo_registry_has_work_on_every_screen_and_its_population_file_loads(db, records) -> None:
    from chartkeeper.demo.load import load_population as load_people
    from chartkeeper.demo.registry import counties, county_population, load_registry
    from chartkeeper.registry.service import RegistryService

    pop_text = county_population(date(2026, 3, 1))
    assert pop_text == county_population(date(2026, 3, 1))  # deterministic
    pop = load_population(pop_text)
    assert pop.years == tuple(range(2015, 2027)) and set(pop.counties) == {c for c, _ in counties()}

    load_people(db, 200, 1, today=date(2026, 3, 1))
    rep = load_registry(db, today=date(2026, 3, 1))
    assert rep.problems == [] and rep.historical == 240
    assert rep.cases >= 3 and rep.linked >= 1 and rep.pending >= 1 and rep.with_edits == 1
    svc = RegistryService(db, records)
    counts = svc.suspense_counts(SYSTEM)
    assert counts["pending"] == rep.pending and counts["accepted"] == rep.cases and counts["linked"] == rep.linked
    recs = svc.report_records(SYSTEM)
    n = rep.historical + rep.cases
    assert len(recs) == n and all(r.items.get("countyAtDx") for r in recs)
    # Only the one abstract left for the registrar to fix has an error edit.
    assert sum(1 for r in recs if svc.abstract(SYSTEM, r.tumor_id).edit_errors) == 1
    surv = report.survival_report(recs, "stage")
    assert surv.n == n and {"Localized", "Distant"} <= set(surv.curves)
    assert surv.curves["Localized"].at(24).survival > surv.curves["Distant"].at(24).survival
    inc = report.incidence_report(recs, pop)
    assert sum(r.count for r in inc.rates.rows) == n and inc.left_out == []
    rate = svc.followup_rate(SYSTEM, report_date=date(2026, 3, 1))
    assert rate.all_cases.cases == n and 0.8 < rate.all_cases.rate < 1.0
    # Working the queue again decides nothing new, and the history is not imported twice.
    again = load_registry(db, today=date(2026, 3, 1))
    assert again.cases == 0 and svc.suspense_counts(SYSTEM) == counts and len(svc.report_records(SYSTEM)) == n
