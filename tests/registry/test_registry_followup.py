"""Annual follow-up as the registrar runs it (SQLite and PostgreSQL): the due list, the follow-up
rate against the CoC targets, and the letters; then the rules themselves (unit tests)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import pytest
import registry_fhir as fx

from chartkeeper.fhir.errors import FhirError
from chartkeeper.registry import followup
from chartkeeper.registry.followup import Letter, letter_text, months_before, status_from_record

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def make_case(svc, people, write, pid, mrn, day, *, family="Rivera", gp=None, deceased=None):
    write(fx.patient(pid, mrn, family, gp=gp, deceased=deceased), fx.encounter(f"enc-{pid}", pid, day),
          fx.pathology(f"path-{pid}", pid, f"enc-{pid}", day))
    [item] = [r for r in svc.suspense(people.registrar, limit=500).rows if r.source_id == f"path-{pid}"]
    return svc.accept(people.registrar, item.id)


@pytest.fixture
def cohort(svc, people, write, directory):
    """Four breast cases: due (2024), recent (2025-11), dead, and a non-analytic one (class 30)."""
    out = {
        "old": make_case(svc, people, write, "p-old", "MRN-O", "2024-01-10", family="Olsen", gp="dr-pcp"),
        "recent": make_case(svc, people, write, "p-new", "MRN-N", "2025-11-01", family="Novak"),
        "dead": make_case(svc, people, write, "p-dead", "MRN-D", "2024-02-01", family="Dunn",
                          deceased="2025-01-05T10:00:00Z"),
        "other": make_case(svc, people, write, "p-oth", "MRN-X", "2023-06-01", family="Ortiz"),
    }
    svc.save_abstract(people.registrar, out["other"].id, {"classOfCase": "30"})
    return out


def test_the_due_list_holds_living_analytic_patients_not_seen_for_a_year_oldest_first(svc, people, cohort):
    due = svc.followup_due(people.registrar, now=NOW)
    assert [d.patient_id for d in due] == ["p-old"]
    assert due[0].label == "Ana Olsen (MRN-O)" and due[0].date_of_last_contact == date(2024, 1, 10)
    assert due[0].tumors == [("C509", 2024)]
    # A shorter interval brings in the recent patient too, after the older one.
    assert [d.patient_id for d in svc.followup_due(people.registrar, months=3, now=NOW)] == ["p-old", "p-new"]
    with pytest.raises(FhirError) as err:
        svc.followup_due(people.registrar, months=0)
    assert err.value.status == 422 and "months" in err.value.message


def test_the_follow_up_rate_against_the_coc_targets(svc, people, cohort):
    r = svc.followup_rate(people.registrar, report_date=date(2026, 3, 1))
    # Analytic cases: old (not followed: 26 months), recent (followed), dead (followed); class 30 left out.
    assert (r.all_cases.cases, r.all_cases.followed) == (3, 2)
    assert r.all_cases.rate == pytest.approx(2 / 3) and r.all_cases.target == 0.90 and r.all_cases.meets_target is False
    assert (r.living.cases, r.living.followed, r.living.target) == (2, 1, 0.80)
    assert "15 months" in r.definition
    later = svc.followup_rate(people.registrar, report_date=date(2024, 6, 1))
    assert later.all_cases.cases == 2  # cases diagnosed after the report date do not count yet


def test_letters_one_page_per_patient_to_the_physician_or_the_patient(svc, people, cohort):
    pdf = svc.followup_letters(people.registrar, months=3, now=NOW)
    assert pdf.startswith(b"%PDF") and len(re.findall(rb"/Type /Page\b", pdf)) == 2
    one = svc.followup_letters(people.registrar, [cohort["old"].registry_patient_id], now=NOW)
    assert len(re.findall(rb"/Type /Page\b", one)) == 1
    with pytest.raises(FhirError) as err:
        svc.followup_letters(people.registrar, [cohort["dead"].registry_patient_id], now=NOW)
    assert err.value.status == 404


def test_letters_name_the_patient_but_never_the_diagnosis():
    base = dict(facility="Demo Hospital Cancer Registry", dated=date(2026, 3, 1), to_address=["1 Main St"],
                patient_name="Ana Olsen", birth_date=date(1961, 4, 2), accession="202400001",
                last_contact=date(2024, 1, 10))
    to_doc = " ".join(letter_text(Letter(to_name="Dr. Claire Moreau", to_physician=True, **base)))
    to_patient = " ".join(letter_text(Letter(to_name="Ana Olsen", to_physician=False, **base)))
    assert "Ana Olsen, date of birth 04/02/1961" in to_doc and "01/10/2024" in to_doc
    assert "Dear Ana Olsen" in to_patient and Letter(to_name="x", to_physician=False, **base).sender == \
        "Patient Follow-up Office"
    for text in (to_doc, to_patient):
        assert not re.search(r"breast|carcinoma|C50|tumou?r", text, re.I)
    assert "cancer" not in to_patient.lower() and "04/02/1961" not in to_patient


def test_who_may_list_and_print(svc, people, cohort):
    for who in (people.coder, people.tech, people.physician):
        for call in (lambda w=who: svc.followup_due(w), lambda w=who: svc.followup_letters(w),
                     lambda w=who: svc.followup_rate(w)):
            with pytest.raises(FhirError) as err:
                call()
            assert err.value.status == 403


# --- the rules ----------------------------------------------------------------------------------


def test_months_before_keeps_the_day_or_the_month_end():
    assert months_before(date(2026, 3, 1), 12) == date(2025, 3, 1)
    assert months_before(date(2024, 3, 31), 1) == date(2024, 2, 29)
    assert months_before(date(2026, 1, 15), 15) == date(2024, 10, 15)


def test_vital_status_and_last_contact_from_the_record():
    encs = [{"status": "finished", "period": {"start": "2025-01-02T09:00:00Z", "end": "2025-01-03T10:00:00Z"}},
            {"status": "cancelled", "period": {"start": "2025-09-09T09:00:00Z"}},
            {"status": "finished", "period": {"start": "2025-05-06T09:00:00Z"}}]
    assert status_from_record({}, encs) == ("1", date(2025, 5, 6))
    assert status_from_record({"deceasedDateTime": "2025-07-01"}, encs) == ("0", date(2025, 7, 1))
    assert status_from_record({"deceasedBoolean": True}, encs) == ("0", date(2025, 5, 6))
    assert status_from_record({}, []) == ("1", None)


def test_followed_means_dead_or_seen_within_15_months():
    at = date(2026, 3, 1)
    assert followup.followed("0", None, at)
    assert followup.followed("1", date(2024, 12, 1), at) and not followup.followed("1", date(2024, 11, 30), at)
    assert not followup.followed("1", None, at)
