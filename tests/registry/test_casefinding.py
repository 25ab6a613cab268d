"""Casefinding from the registrar's side: reports and codes go in, the suspense queue's decision,
reason and highlighted phrases come out. Then the terms file and the linking rule."""

from __future__ import annotations

from datetime import date

import pytest

from chartkeeper.coding.codes import CodeFormatError, ICD10CMCode
from chartkeeper.registry import icdo3
from chartkeeper.registry.casefinding import (
    Match,
    Screener,
    ScreenResult,
    TermFileError,
    TumorKey,
    _default_terms_text,
    default_terms,
    parse_terms,
    same_tumor,
    screen_code,
    screen_text,
)
from chartkeeper.registry.codes import ICDO3Histology, ICDO3Topography


def _finding(r: ScreenResult, phrase: str) -> Match:
    return next(m for m in r.findings if m.phrase.lower() == phrase.lower())


def _offsets_exact(text: str, r: ScreenResult) -> None:
    for m in r.matches:
        assert text[m.start:m.end] == m.phrase


# ------------------------------------------------------------------ reports a registrar screens


BREAST = """SURGICAL PATHOLOGY REPORT
FINAL DIAGNOSIS:
A. Breast, left, lumpectomy:
   Invasive ductal carcinoma, Nottingham grade 2, 1.8 cm.
   Margins negative for carcinoma.
B. Lymph nodes, left axillary, sentinel: negative for malignancy (0/3).
"""


def test_invasive_breast_cancer_is_reportable_with_site_histology_and_side() -> None:
    r = screen_text(BREAST)
    assert r.reportable
    assert r.suggested_site == ICDO3Topography("C509")
    assert r.suggested_histology == ICDO3Histology("8500")
    assert r.behavior == "3"
    assert r.laterality == "2"
    assert "invasive ductal carcinoma" in r.reason.lower()
    idc = _finding(r, "Invasive ductal carcinoma")
    assert idc.kind == "malignancy"
    # The negated mentions are highlighted as negated, with the words that negated them.
    negated = [m for m in r.matches if m.kind == "negated"]
    assert {m.phrase.lower() for m in negated} >= {"negative for", "carcinoma", "malignancy"}
    _offsets_exact(BREAST, r)


def test_negative_report_is_not_reportable_and_says_why() -> None:
    text = "Prostate, needle biopsies (12 cores): benign prostatic tissue. Negative for malignancy."
    r = screen_text(text)
    assert not r.reportable
    assert "negated" in r.reason and "malignancy" in r.reason
    assert [m.kind for m in r.findings] == ["negated"]
    _offsets_exact(text, r)


def test_no_evidence_of_reaches_past_adjectives() -> None:
    r = screen_text("Colon, segmental resection: no evidence of residual invasive high grade carcinoma.")
    assert not r.reportable
    assert _finding(r, "carcinoma").kind == "negated"


@pytest.mark.parametrize("text, phrase", [
    ("Lung, right upper lobe, FNA: consistent with adenocarcinoma.", "consistent with"),
    ("Pancreas, brushing: suspicious for adenocarcinoma.", "suspicious for"),
    ("Liver mass, biopsy: findings compatible with hepatocellular carcinoma.", "compatible with"),
    ("Kidney, left, core: probable renal cell carcinoma.", "probable"),
    ("Thyroid, FNA: most likely papillary carcinoma.", "most likely"),
    ("Bladder, TURBT: appears to be urothelial carcinoma.", "appears to"),
    ("Lymph node: malignant-appearing cells present.", None),
])
def test_ambiguous_terms_that_count_make_the_case_reportable(text: str, phrase: str | None) -> None:
    r = screen_text(text)
    assert r.reportable, r.reason
    assert any(m.kind == "ambiguous-reportable" and m.role == "finding" for m in r.matches)
    if phrase:
        cue = next(m for m in r.matches if m.role == "cue")
        assert cue.phrase.lower() == phrase and cue.kind == "ambiguous-reportable"
    _offsets_exact(text, r)


@pytest.mark.parametrize("text, phrase", [
    ("Lung nodule, biopsy: carcinoma cannot be ruled out.", "cannot be ruled out"),
    ("Breast, core: atypical ductal hyperplasia; cannot rule out ductal carcinoma in situ.", "cannot rule out"),
    ("Ovary: possible serous carcinoma.", "possible"),
    ("Cervical lymph node: equivocal for lymphoma.", "equivocal"),
    ("Stomach: worrisome for adenocarcinoma, recommend rebiopsy.", "worrisome for"),
    ("Clinical: rule out lymphoma.", "rule out"),
    ("Brain lesion: imaging suggests glioblastoma.", "suggests"),
    ("Prostate: questionable adenocarcinoma, see comment.", "questionable"),
    ("Colon polyp: potentially malignant, excise completely.", None),
])
def test_ambiguous_terms_that_do_not_count_keep_the_case_out(text: str, phrase: str | None) -> None:
    r = screen_text(text)
    assert not r.reportable, r.reason
    assert all(m.kind == "ambiguous-not-reportable" for m in r.findings)
    if phrase:
        assert any(m.role == "cue" and m.phrase.lower() == phrase for m in r.matches)
    assert "does not count" in r.reason
    _offsets_exact(text, r)


def test_skin_basal_and_squamous_cell_carcinomas_are_excluded() -> None:
    text = ("A. Skin, left cheek, shave biopsy: basal cell carcinoma, nodular type.\n"
            "B. Skin, right forearm, excision: squamous cell carcinoma, well differentiated.\n")
    r = screen_text(text)
    assert not r.reportable
    assert [m.kind for m in r.findings] == ["skin-excluded", "skin-excluded"]
    assert "skin" in r.reason.lower() and "not reportable" in r.reason
    _offsets_exact(text, r)


def test_basal_cell_carcinoma_without_a_site_is_taken_as_skin() -> None:
    assert not screen_text("Shave biopsy: basal cell carcinoma, superficial type.").reportable


def test_squamous_cell_carcinoma_of_genital_skin_or_an_organ_is_reportable() -> None:
    scrotum = screen_text("Skin of scrotum, excision: squamous cell carcinoma.")
    assert scrotum.reportable and scrotum.suggested_site == ICDO3Topography("C632")
    lung = screen_text("Lung, left lower lobe, wedge: squamous cell carcinoma, moderately differentiated.")
    assert lung.reportable and lung.suggested_site == ICDO3Topography("C343") and lung.laterality == "2"


def test_melanoma_of_skin_is_reportable() -> None:
    r = screen_text("Skin, back, excision: malignant melanoma, Breslow thickness 1.2 mm.")
    assert r.reportable and r.suggested_histology == ICDO3Histology("8720")


def test_cervical_cin3_is_not_reportable_but_vin3_is() -> None:
    cin = screen_text("Cervix, LEEP: CIN III, margins clear.")
    assert not cin.reportable and cin.findings[0].kind == "excluded"
    vin = screen_text("Vulva, biopsy: VIN III.")
    assert vin.reportable and vin.behavior == "2" and vin.suggested_site == ICDO3Topography("C519")


def test_benign_brain_tumour_is_reportable_but_benign_elsewhere_is_not() -> None:
    brain = screen_text("Brain, left parietal lobe, resection: meningioma, WHO grade 1.")
    assert brain.reportable and brain.behavior == "0"
    assert brain.suggested_site is not None and icdo3.site_heading(brain.suggested_site) == "C71"
    nerve = screen_text("Soft tissue, thigh: schwannoma.")
    assert not nerve.reportable and nerve.findings[0].kind == "excluded"


def test_family_history_is_not_the_patients_tumour() -> None:
    r = screen_text("Clinical history: family history of breast cancer. Colon, polypectomy: tubular adenoma.")
    assert not r.reportable
    assert r.findings[0].kind == "family-history"


def test_in_situ_breast_gives_behaviour_2() -> None:
    r = screen_text("Right breast, stereotactic core biopsy: ductal carcinoma in situ, solid type, high nuclear grade.")
    assert r.reportable and r.behavior == "2" and r.laterality == "1"
    assert r.suggested_histology == ICDO3Histology("8500")


def test_one_reportable_part_among_negative_ones_makes_the_report_reportable() -> None:
    text = ("A. Sigmoid colon, polyp: hyperplastic polyp, negative for dysplasia and malignancy.\n"
            "B. Rectum, mass, biopsy: adenocarcinoma, moderately differentiated.\n")
    r = screen_text(text)
    assert r.reportable
    assert r.suggested_site == ICDO3Topography("C209")
    assert "Not counted" in r.reason  # the negated part is still explained


def test_hematopoietic_finding_gets_bone_marrow() -> None:
    r = screen_text("Peripheral blood and marrow: chronic lymphocytic leukemia.")
    assert r.reportable and r.suggested_site == ICDO3Topography("C421") and r.laterality == "0"


def test_report_without_tumour_words_and_empty_report() -> None:
    assert not screen_text("Gallbladder, cholecystectomy: chronic cholecystitis with cholelithiasis.").reportable
    empty = screen_text("   ")
    assert not empty.reportable and "empty" in empty.reason


def test_offsets_are_exact_with_unicode_and_crlf() -> None:
    text = "Patiënt: Zoë\r\nA. Breast, right — core:\r\n   Invasive lobular carcinoma.\r\n"
    r = screen_text(text)
    assert r.reportable
    _offsets_exact(text, r)
    assert _finding(r, "Invasive lobular carcinoma").start == text.index("Invasive")


# ------------------------------------------------------------------ codes on the casefinding list


@pytest.mark.parametrize("code, status", [
    ("C50.911", "reportable"), ("C61", "reportable"), ("C34.12", "reportable"), ("C4A.39", "reportable"),
    ("C91.10", "reportable"), ("C77.3", "reportable"), ("C49.A2", "reportable"),
    ("C44.311", "not-reportable"), ("C44.42", "not-reportable"), ("C44.1321", "reportable"),
    ("C44.90", "review"), ("C44.399", "review"),
    ("D05.11", "reportable"), ("D03.4", "reportable"), ("D06.9", "not-reportable"), ("D04.5", "not-reportable"),
    ("D07.5", "review"), ("D18.02", "reportable"), ("D18.1", "review"), ("D32.0", "reportable"),
    ("D33.3", "reportable"), ("D35.2", "reportable"), ("D35.4", "reportable"), ("D35.1", "not-listed"),
    ("D42.9", "reportable"), ("D43.0", "reportable"), ("D44.4", "reportable"), ("D44.0", "review"),
    ("D45", "reportable"), ("D46.9", "reportable"), ("D47.1", "reportable"), ("D47.3", "reportable"),
    ("D47.4", "reportable"), ("D47.9", "reportable"), ("D47.Z1", "reportable"), ("D47.2", "not-reportable"),
    ("D47.Z9", "review"), ("D49.6", "reportable"), ("D49.2", "review"), ("D75.81", "review"),
    ("R85.614", "review"), ("R87.614", "review"), ("R87.624", "review"), ("R87.610", "not-listed"),
    ("I10", "not-listed"), ("K80.20", "not-listed"), ("D12.6", "not-listed"), ("Z51.11", "review"),
])
def test_codes_on_the_seer_casefinding_list(code: str, status: str) -> None:
    r = screen_code(ICD10CMCode(code))
    assert r.status == status, r.reason
    assert r.reason.startswith(ICD10CMCode(code).dotted)
    assert r.to_queue == (status in ("reportable", "review"))


def test_code_result_suggests_the_icdo3_site() -> None:
    assert screen_code("C50.911").suggested_site == ICDO3Topography("C509")
    assert screen_code("C34.11").suggested_site == ICDO3Topography("C341")
    assert screen_code("C18.7").suggested_site == ICDO3Topography("C187")
    assert screen_code("C92.00").suggested_site == ICDO3Topography("C421")
    assert screen_code("C78.00").suggested_site is None  # secondary: the primary is elsewhere
    assert screen_code("D32.0").suggested_site == ICDO3Topography("C709")
    assert screen_code("D45").behavior == "3"


def test_skin_code_exclusion_is_marked_skin_excluded() -> None:
    r = screen_code("C44.01")
    assert r.kind == "skin-excluded" and not r.to_queue


def test_bad_code_is_refused_with_a_sentence() -> None:
    with pytest.raises(CodeFormatError, match="not a valid ICD-10-CM code"):
        screen_code("50.9X!")


# ------------------------------------------------------------------ a new report for an existing tumour


def test_new_report_for_an_existing_tumour_links_instead_of_duplicating() -> None:
    existing = [TumorKey(ICDO3Topography("C504"), ICDO3Histology("8500"), "2", date(2025, 3, 1), "T-17")]
    new = TumorKey(ICDO3Topography("C509"), ICDO3Histology("8500"), "2", date(2025, 4, 10))
    m = same_tumor(existing, new)
    assert m.matched and m.index == 0
    assert "T-17" in m.reason and "link" in m.reason


def test_other_breast_is_a_new_tumour() -> None:
    existing = [TumorKey(ICDO3Topography("C504"), ICDO3Histology("8500"), "2", date(2025, 3, 1))]
    m = same_tumor(existing, TumorKey(ICDO3Topography("C509"), ICDO3Histology("8500"), "1", date(2025, 4, 10)))
    assert not m.matched and "laterality" in m.reason


def test_unknown_side_does_not_rule_out_the_link() -> None:
    existing = [TumorKey(ICDO3Topography("C341"), ICDO3Histology("8140"), "1", date(2025, 3, 1))]
    assert same_tumor(existing, TumorKey(ICDO3Topography("C349"), ICDO3Histology("8140"), "9", date(2025, 3, 9))).matched


def test_different_histology_group_or_site_is_a_new_tumour() -> None:
    existing = [TumorKey(ICDO3Topography("C341"), ICDO3Histology("8140"), "1", date(2025, 3, 1))]
    assert not same_tumor(existing, TumorKey(ICDO3Topography("C341"), ICDO3Histology("8041"), "1")).matched
    assert not same_tumor(existing, TumorKey(ICDO3Topography("C619"), ICDO3Histology("8140"), "0")).matched
    # Same first three digits (8140 adenocarcinoma NOS, 8144 intestinal type) is the same group.
    assert same_tumor(existing, TumorKey(ICDO3Topography("C349"), ICDO3Histology("8144"), "1")).matched


def test_timing_window_comes_from_the_terms_file() -> None:
    old = [TumorKey(ICDO3Topography("C187"), ICDO3Histology("8140"), "0", date(2020, 1, 1))]
    # Colon: more than a year apart is a new primary.
    late = same_tumor(old, TumorKey(ICDO3Topography("C187"), ICDO3Histology("8140"), "0", date(2021, 6, 1)))
    assert not late.matched and "window" in late.reason
    # Breast: five years.
    breast = [TumorKey(ICDO3Topography("C509"), ICDO3Histology("8500"), "2", date(2020, 1, 1))]
    assert same_tumor(breast, TumorKey(ICDO3Topography("C509"), ICDO3Histology("8500"), "2", date(2023, 1, 1))).matched


def test_hematopoietic_histologies_must_be_identical() -> None:
    old = [TumorKey(ICDO3Topography("C421"), ICDO3Histology("9861"), "0", date(2025, 1, 1))]
    assert not same_tumor(old, TumorKey(ICDO3Topography("C421"), ICDO3Histology("9863"), "0", date(2025, 2, 1))).matched


def test_first_tumour_of_a_patient() -> None:
    m = same_tumor([], TumorKey(ICDO3Topography("C619"), ICDO3Histology("8140")))
    assert not m.matched and "new case" in m.reason


# ------------------------------------------------------------------ the terms file


def test_shipped_terms_name_their_sources_and_list_version() -> None:
    t = default_terms()
    assert t.version and "SEER" in t.list_name and t.list_version
    text = _default_terms_text()
    assert "SEER Program Coding and Staging Manual" in text
    phrases = {c.phrase for c in t.cues}
    for p in ("apparent", "appears to", "comparable with", "compatible with", "consistent with", "favor",
              "most likely", "presumed", "probable", "suspect", "suspicious", "typical of",
              "cannot be ruled out", "equivocal", "possible", "questionable", "rule out", "suggests", "worrisome"):
        assert p in phrases, p


def test_every_site_in_the_terms_is_a_real_icdo3_site() -> None:
    for phrase, site in default_terms().sites.items():
        assert icdo3.is_valid_site(site), phrase


def test_a_bad_terms_file_lists_every_problem() -> None:
    bad = """
[ambiguous]
reportable = [{ phrase = "consistent with", direction = "sideways" }]
[[finding]]
phrases = ["carcinoma"]
histology = "80100"
behavior = "7"
[[exclusion]]
id = "x"
kind = "gone"
sites = ["C44"]
[sites]
"breast" = "C99.9"
[[code]]
id = "c"
status = "maybe"
codes = ["C00"]
"""
    with pytest.raises(TermFileError) as err:
        parse_terms(bad, "custom.toml")
    problems = err.value.problems
    assert any("version is missing" in p for p in problems)
    assert any("direction must be one of" in p and "consistent with" in p for p in problems)
    assert any("histology must be a four-digit" in p for p in problems)
    assert any("behavior must be 0, 1, 2 or 3" in p for p in problems)
    assert any("exclusion 'x'" in p and "kind" in p for p in problems)
    assert any("sites.breast" in p and "not an ICD-O-3 site" in p for p in problems)
    assert any("code entry 'c'" in p and "status" in p for p in problems)
    assert "custom.toml" in str(err.value)


def test_a_facility_can_add_a_term_and_screen_with_it() -> None:
    text = _default_terms_text().replace('{ phrase = "worrisome", direction = "forward" },',
                                         '{ phrase = "worrisome", direction = "forward" },\n'
                                         '  { phrase = "concerning for", direction = "forward" },')
    s = Screener(parse_terms(text, "facility.toml"))
    r = s.screen_text("Liver lesion: concerning for hepatocellular carcinoma.")
    assert not r.reportable and r.findings[0].kind == "ambiguous-not-reportable"
    assert screen_text("Liver lesion: concerning for hepatocellular carcinoma.").reportable  # defaults unchanged


def test_paired_sites_agree_with_the_edit_file() -> None:
    from chartkeeper.registry.edits import _sites_in, default_edits

    paired = default_edits().by_id["laterality-paired"].params["paired_sites"]
    for site in icdo3.VALID_SITES:
        assert icdo3.is_paired_site(site) == _sites_in(site, paired), site


def test_but_ends_the_reach_of_a_negation() -> None:
    text = "Right breast: negative for invasive carcinoma but ductal carcinoma in situ is present."
    r = screen_text(text)
    assert r.reportable and r.behavior == "2"
    assert _finding(r, "carcinoma").kind == "negated"
    assert _finding(r, "ductal carcinoma in situ").kind == "malignancy"
