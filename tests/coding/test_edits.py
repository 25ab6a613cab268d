"""Edits a coder sees before finalizing: each names the code(s) and says how to fix it."""

from __future__ import annotations

from datetime import date

import pytest

from chartkeeper.coding.case import CodedDiagnosis, CodedProcedure, CodingCase, Edit
from chartkeeper.coding.codes import ICD10CMCode, ICD10PCSCode
from chartkeeper.coding.edits import Ref, code_facts, convention_edits, parse_refs, run_edits


def stay(*dx: str | CodedDiagnosis, sex: str = "M", born: date = date(1950, 3, 1), discharged: date | None = date(2026, 5, 4),
         setting: str = "inpatient", procs: tuple[str, ...] = (), status: str = "01") -> CodingCase:
    diagnoses = tuple(d if isinstance(d, CodedDiagnosis) else CodedDiagnosis(ICD10CMCode(d), "Y") for d in dx)
    return CodingCase("enc-1", setting, date(2026, 5, 1), discharged, born, sex, status,  # type: ignore[arg-type]
                      diagnoses, tuple(CodedProcedure(ICD10PCSCode(p)) for p in procs))


def by_id(edits: list[Edit], edit_id: str) -> list[Edit]:
    return [e for e in edits if e.edit == edit_id]


def the(edits: list[Edit], edit_id: str) -> Edit:
    found = by_id(edits, edit_id)
    assert len(found) == 1, f"expected one {edit_id}, got {edits}"
    return found[0]


# --- what a coder does -----------------------------------------------------------------------------


def test_manifestation_code_as_principal_gets_the_mce_edit_with_a_fix():
    edits = run_edits(stay("F02.80", "G30.9"))
    e = the(edits, "mce.manifestation_as_pdx")
    assert e.severity == "error" and e.codes == ("F0280",)
    assert "F02.80 is a manifestation code" in e.message and "sequence the underlying condition first" in e.message
    # the tabular's own "code first" note agrees and names the code to move up
    order = the(edits, "cm.code_first_order")
    assert order.codes == ("F0280", "G309") and "sequence G30.9 before F02.80" in order.message


def test_female_patient_with_prostate_cancer_gets_the_sex_conflict():
    # FY 2024 discharge: the code editor itself has the sex lists -> an error
    old = the(run_edits(stay("C61", sex="F", discharged=date(2024, 5, 2))), "mce.sex_conflict")
    assert old.severity == "error" and old.codes == ("C61",) and "female" in old.message
    # From October 1, 2024 CMS's editor has no sex lists: still shown, from the last list, as a warning
    new = the(run_edits(stay("C61", sex="F")), "mce.sex_conflict")
    assert new.severity == "warning" and new.codes == ("C61",) and "FY 2024" in new.message
    assert not by_id(run_edits(stay("C61", sex="M")), "mce.sex_conflict")


def test_diabetes_without_complications_beside_a_complication_code_is_flagged():
    e = the(run_edits(stay("E11.65", "E11.9")), "cm.without_complications")
    assert e.codes == ("E119", "E1165") and e.severity == "error"
    assert "remove E11.9" in e.message


def test_a_real_excludes1_pair_is_flagged_once_naming_both_codes_and_the_note():
    edits = run_edits(stay("E11.9", "E10.9"))
    e = the(edits, "cm.excludes1")
    assert set(e.codes) == {"E119", "E109"}
    assert "E11.9 and E10.9 cannot be coded together" in e.message and "(E10.-)" in e.message


def test_a_code_missing_its_7th_character_is_flagged_with_the_choices():
    edits = run_edits(stay("S72.001"))
    e = the(edits, "cm.seventh_character")
    assert e.codes == ("S72001",) and "S72.001A initial encounter for closed fracture" in e.message
    # the editor's plain "invalid code" for the same code is replaced by the precise one
    assert not by_id(edits, "mce.invalid_code")
    assert not by_id(run_edits(stay("S72.001A")), "cm.seventh_character")


def test_placeholder_x_is_suggested_for_a_short_code_needing_a_7th_character():
    # T81.40 has five characters: the 7th goes after a placeholder X
    e = the(run_edits(stay("J18.9", "T81.40")), "cm.seventh_character")
    assert "T81.40XA" in e.message


def test_a_heading_used_as_a_code_is_flagged_with_codes_under_it():
    e = the(run_edits(stay("J18.9", "E11")), "cm.header_code")
    assert e.codes == ("E11",) and "is a heading, not a complete code" in e.message
    assert "E11.0" in e.message


def test_poa_missing_or_invalid_on_inpatient_diagnoses_only():
    edits = run_edits(stay("J18.9", CodedDiagnosis(ICD10CMCode("I10"), None), CodedDiagnosis(ICD10CMCode("E78.5"), "Q"),
                           CodedDiagnosis(ICD10CMCode("Z79.4"), "1")))
    assert the(edits, "poa.missing").codes == ("I10",)
    bad = the(edits, "poa.invalid")
    assert bad.codes == ("E785",) and "'Q' is not a present-on-admission indicator" in bad.message
    out = stay("J18.9", CodedDiagnosis(ICD10CMCode("I10"), None), setting="outpatient")
    assert not [e for e in run_edits(out) if e.edit.startswith("poa.")]


def test_age_conflict_names_only_the_code_that_conflicts():
    edits = run_edits(stay("J18.9", "I10", "Z38.00"))
    e = the(edits, "mce.age_conflict")
    assert e.codes == ("Z3800",) and "Z38.00 does not fit the patient's age" in e.message


@pytest.mark.parametrize(("pdx", "edit_id"), [
    ("V00.01XA", "mce.e_code_as_pdx"),
    ("Z00.00", "mce.unacceptable_pdx"),
    ("Z51.89", "mce.requires_sdx"),
    ("I10", "mce.questionable_admission"),
])
def test_principal_diagnosis_edits(pdx: str, edit_id: str):
    e = the(run_edits(stay(pdx)), edit_id)
    assert e.codes == (ICD10CMCode(pdx),) and ICD10CMCode(pdx).dotted in e.message


def test_duplicate_of_principal_and_claim_level_edits():
    edits = run_edits(stay("J18.9", "J18.9", status="99"))
    assert the(edits, "mce.duplicate_of_pdx").codes == ("J189",)
    assert "Discharge status '99'" in the(edits, "mce.invalid_discharge_status").message


def test_code_first_missing_and_use_additional_missing_are_warnings():
    edits = run_edits(stay("J18.9", "F02.80"))
    cf = the(edits, "cm.code_first")
    assert cf.severity == "warning" and "G30" in cf.message
    ua = the(run_edits(stay("J18.9", "N18.6")), "cm.use_additional")
    assert ua.codes == ("N186",) and "Z99.2" in ua.message
    assert not by_id(run_edits(stay("J18.9", "N18.6", "Z99.2")), "cm.use_additional")


def test_outpatient_code_not_in_the_classification():
    e = the(run_edits(stay("A00.5", setting="outpatient")), "cm.invalid_code")
    assert e.codes == ("A005",) and "A00.5 is not in the ICD-10-CM classification" in e.message


def test_a_clean_stay_has_no_errors_and_edits_are_stable_and_unique():
    case = stay("J18.9", "J96.01", "Z87.891")
    edits = run_edits(case)
    assert [e for e in edits if e.severity == "error"] == []
    again = run_edits(case)
    assert edits == again
    keys = [(e.edit, e.codes) for e in run_edits(stay("F02.80", "E11", "S72.001", "E11.9", "E10.9"))]
    assert len(keys) == len(set(keys))


def test_missing_birth_date_and_no_diagnosis_are_case_edits():
    case = CodingCase("e", "inpatient", date(2026, 5, 1), date(2026, 5, 3), None, "F")
    ids = [e.edit for e in run_edits(case)]
    assert ids == ["case.no_diagnosis", "case.birth_date_missing"]


# --- units -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "refs"), [
    ("type 1 diabetes mellitus (E10.-)", [Ref("E10", "E10")]),
    ("gestational diabetes (O24.4-)", [Ref("O244", "O244")]),
    ("drug-induced interstitial lung disorder (J70.2-J70.4)", [Ref("J702", "J704")]),
    ("hypothyroidism, acquired (E00-E03.-)", [Ref("E00", "E03")]),
    ("trypanosomiasis (B56.-, B57.-)", [Ref("B56", "B56"), Ref("B57", "B57")]),
    ("multiple sclerosis (G35-)", [Ref("G35", "G35")]),
    ("meningitis (in):", []),
])
def test_parse_refs(text: str, refs: list[Ref]):
    assert list(parse_refs(text)) == refs


def test_ref_matching_covers_codes_below_and_ranges():
    assert Ref("E10", "E10").matches("E1065") and not Ref("E10", "E10").matches("E1165")
    r = Ref("J702", "J704")
    assert r.matches("J703") and r.matches("J702") and r.matches("J704") and not r.matches("J705")
    assert Ref("E00", "E03").matches("E039") and not Ref("E00", "E03").matches("E040")


def test_code_facts_inherit_notes_from_headings():
    f = code_facts("E1165")
    assert f.known and f.leaf and any("E10" in str(r) for _, _, refs in f.excludes1 for r in refs)
    assert any(n.at == "E11" for n in f.use_additional)
    assert not code_facts("A005").known


def test_convention_edits_do_not_need_the_code_editor():
    # pure tabular checks: usable on outpatient encounters too
    edits = convention_edits(stay("E11.9", "E10.9", setting="outpatient"))
    assert [e.edit for e in edits if e.severity == "error"] == ["cm.excludes1"]


def test_category_ranges_matched_as_prefix_sets_agree_with_the_references():
    """The convention edits test a code against a range of categories with one set lookup: for every
    code in the classification the answer is the reference's own."""
    from chartkeeper.coding.codesets import icd10cm
    from chartkeeper.coding.edits import _Matcher

    refs = [Ref("E00", "E03"), Ref("A00", "B99"), Ref("J702", "J704"), Ref("C00", "C96"), Ref("O00", "O9A"),
            Ref("S00", "T88"), Ref("E08", "E13"), Ref("Z00", "Z13")]
    codes = [str(c) for c in icd10cm.codes()]
    for r in refs:
        m = _Matcher([r])
        assert [c for c in codes if m(c)] == [c for c in codes if r.matches(c)], r
    both = _Matcher(refs)
    assert [c for c in codes if both(c)] == [c for c in codes if any(r.matches(c) for r in refs)]


def test_mce_edits_name_each_code_when_several_fire_and_stays_alike_share_the_answers():
    first = run_edits(stay("J18.9", "Z38.00", "O80", "C61", sex="F", discharged=date(2024, 5, 2)))
    age = the(first, "mce.age_conflict")  # a newborn code and a maternity code on a 74-year-old
    assert age.codes == ("Z3800", "O80") and age.message.startswith("Z38.00 and O80 ")
    assert the(first, "mce.sex_conflict").codes == ("C61",)
    # another stay with the same date, age, sex and status: the same codes named, from what was learnt
    again = run_edits(stay("I10", "O80", sex="F", discharged=date(2024, 5, 2)))
    assert the(again, "mce.age_conflict").codes == ("O80",)


# --- which code an invalid-code edit is about: asked once per code and code set ------------------------


def _invalid_by_itself(kind: str, code: str, on: date, age: int | None, sex: int, status: int) -> bool:
    """The code editor asked directly, with this stay's own date, age, sex and status (the full key)."""
    from chartkeeper.coding import drg

    claim: dict[str, object] = {"sex": sex, "discharge_status": status, "hospital_status": "NOT_EXEMPT",
                                "discharge_date": on.year * 10000 + on.month * 100 + on.day, "sdx": []}
    if age is not None:
        claim["age"] = age
    if kind == "dx":
        claim |= {"pdx": {"code": code}, "procedures": []}
    else:
        claim |= {"pdx": {"code": "J189"}, "procedures": [{"code": code}]}
    return "INVALID_CODE" in {e["name"] for e in drg.edit_claim(claim)["edits"]}


def _boundary_dates() -> list[date]:
    """Every grouper version's first and last day and the day before it, N18.3's end (October 1, 2020,
    before the grouper versions), the editor's last day and the day after, and days inside versions."""
    from datetime import timedelta

    from chartkeeper.coding import drg, edits

    out = {date(2020, 9, 30), date(2020, 10, 1), date(2021, 6, 15), date(2025, 11, 20), date(2026, 6, 1)}
    for v in drg.VERSIONS:
        out |= {v.start, v.end, v.start - timedelta(days=1), v.start + (v.end - v.start) / 2}
    last = edits._editor_last_day()
    out |= {last, last + timedelta(days=1)}
    return sorted(out)


def test_invalid_code_verdict_by_code_set_matches_the_editor_asked_with_each_stays_own_fields():
    import random

    import simple_icd_10_cm as icd

    from chartkeeper.coding import edits

    rng = random.Random(6)
    cm = rng.sample([c for c in icd.get_all_codes(with_dots=False) if "-" not in c], 60)
    # deleted on October 1, 2020 (split into N18.30-N18.32), an incomplete category, expanded codes, nonsense
    cm += ["N183", "N1830", "D691", "I420", "E11", "J189", "S72001", "S72001A", "O80", "P0710", "J1899"]
    pcs = ["0SR9019", "02703DZ", "0DTJ4ZZ", "5A1955Z", "0SR901", "XR2G021", "XXXXXXX"]
    fields = [(None, 2, 1), (0, 1, 1), (17, 0, 20), (70, 1, 3), (124, 0, 6), (130, 2, 0), (45, 3, 99)]
    seen_change = set()
    for on in _boundary_dates():
        day = edits._code_set_day(on)
        for kind, codes in (("dx", cm), ("proc", pcs)):
            for code in codes:
                narrow = edits._invalid_alone(kind, code, day)  # type: ignore[arg-type]
                for age, sex, status in rng.sample(fields, 2):
                    assert narrow == _invalid_by_itself(kind, code, on, age, sex, status), (kind, code, on, age)
                seen_change.add((code, narrow))
    # the sample does cover codes the editor calls valid on some dates and invalid on others (D69.1: deleted
    # for FY 2027, and valid again past the last day of the editor's tables)
    assert ("N183", True) in seen_change and ("N183", False) in seen_change
    assert ("D691", True) in seen_change and ("D691", False) in seen_change
    assert ("J1899", True) in seen_change


def test_n183_is_invalid_for_every_fy2025_and_fy2026_date_and_attributed_to_itself_alone():
    from datetime import timedelta

    from chartkeeper.coding import edits

    day = date(2024, 10, 1)
    while day <= date(2026, 9, 30):
        e = the(edits.mce_edits(stay("I50.23", "N18.3", "E11.22", discharged=day)), "mce.invalid_code")
        assert e.codes == ("N183",), day
        assert "N18.3 is not a valid ICD-10-CM code" in e.message
        day += timedelta(days=17)
    # on September 30, 2020 N18.3 was still a valid code
    assert not by_id(edits.mce_edits(stay("I50.23", "N18.3", discharged=date(2020, 9, 30))), "mce.invalid_code")


def test_invalid_code_attribution_is_what_the_full_key_gives_on_sample_stays():
    """What mce_edits names for an invalid code equals the codes the editor, asked with the stay's own
    fields, calls invalid by themselves."""
    import random

    from chartkeeper.coding import edits

    rng = random.Random(7)
    dxs = ["N183", "I5023", "E1122", "J189", "E11", "S72001", "N179", "I10", "O80", "J1899"]
    pcs = ["0SR9019", "02703DZ", "XXXXXXX"]
    days = _boundary_dates()
    checked = 0
    for _ in range(150):
        on = rng.choice(days)
        codes = rng.sample(dxs, rng.randrange(1, 5))
        procs = tuple(rng.sample(pcs, rng.randrange(0, 2)))
        born = date(on.year - rng.randrange(1, 90), 1, 1)
        sex = rng.choice("MFU")
        case = stay(*codes, sex=sex, born=born, discharged=on, procs=procs, status=rng.choice(("01", "03", "20")))
        found = by_id(edits.mce_edits(case), "mce.invalid_code")
        if not found:
            continue
        sexn = {"M": 0, "F": 1, "U": 2}[sex]
        want = tuple(c for c in dict.fromkeys(codes) if _invalid_by_itself("dx", c.replace(".", ""), on, case.age, sexn,
                                                                              int(case.discharge_status)))
        want += tuple(p for p in procs if _invalid_by_itself("proc", p, on, case.age, sexn, int(case.discharge_status)))
        assert found[0].codes == (want or tuple(dict.fromkeys(codes))), (on, codes, procs)
        checked += 1
    assert checked > 50
