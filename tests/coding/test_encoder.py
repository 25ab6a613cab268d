"""The encoder, from the coder's side: statements as physicians write them come back as ranked
billable codes with their notes; then how the statement is read (abbreviations, spelling, stems,
negation) and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chartkeeper.coding.cli import code_app
from chartkeeper.coding.encoder import SearchHit, explain, search


def top(text: str, **kw: object) -> SearchHit:
    hits = search(text, **kw)  # type: ignore[arg-type]
    assert hits, f"no hits for {text!r}"
    return hits[0]


# -- what a coder types -------------------------------------------------------------------------


@pytest.mark.parametrize(("statement", "code"), [
    ("CHF", "I50.9"),  # the default code when no detail is given
    ("DM2", "E11.9"),
    ("T2DM", "E11.9"),
    ("type II diabetes", "E11.9"),
    ("COPD exac", "J44.1"),
    ("COPD", "J44.9"),
    ("HTN", "I10"),
    ("acute on chronic systolic CHF", "I50.23"),
    ("failure heart congestive", "I50.9"),  # word order does not matter
    ("pnuemonia", "J18.9"),  # misspelt
    ("UTI", "N39.0"),
])
def test_common_statements_find_their_code_first(statement: str, code: str) -> None:
    hit = top(statement)
    assert hit.dotted == code, [(h.dotted, h.title) for h in search(statement, limit=5)]
    assert hit.billable and not hit.needs_seventh


def test_a_hit_carries_title_score_and_the_notes_that_apply() -> None:
    hit = top("DM2")
    assert hit.title == "Type 2 diabetes mellitus without complications"
    assert 0 < hit.score <= 1
    assert "type 1 diabetes mellitus (E10.-)" in hit.notes["excludes1"]  # from E11, inherited
    assert any("Z79.4" in line for line in hit.notes["use_additional_code"])
    assert hit.children == []


def test_results_are_best_first_and_limited() -> None:
    hits = search("heart failure", limit=4)
    assert len(hits) == 4
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert len({h.code for h in hits}) == 4


def test_a_fracture_without_encounter_asks_for_the_seventh_character() -> None:
    hit = top("fracture of neck of right femur")
    assert hit.dotted == "S72.001" and hit.needs_seventh and not hit.billable
    assert ("A", "initial encounter for closed fracture") in hit.seventh_characters


def test_the_encounter_completes_the_code() -> None:
    assert top("fracture of neck of right femur, initial encounter").dotted == "S72.001A"
    assert top("closed fracture of neck of right femur subsequent encounter").dotted == "S72.001D"
    assert top("heat exhaustion, initial encounter").dotted == "T67.5XXA"  # placeholder X


def test_a_header_match_leads_to_its_default_and_can_be_shown_itself() -> None:
    hit = top("diabetes NOS")  # an Includes note of category E11
    assert hit.dotted == "E11.9" and hit.header == "E11"
    with_headers = search("diabetes NOS", include_headers=True, limit=5)
    header = next(h for h in with_headers if h.dotted == "E11")
    assert not header.billable and "E11.9" in header.children


def test_a_statement_that_is_a_code_returns_that_code() -> None:
    assert [h.dotted for h in search("e11.9")] == ["E11.9"]
    header = search("I50")[0]
    assert header.dotted == "I50" and not header.billable and "I50.9" in header.children
    assert search("S72.001")[0].needs_seventh


def test_nothing_to_find_is_an_empty_list() -> None:
    assert search("") == [] and search("   ") == []
    assert search("zzqx qqvv") == []
    assert search("the of and") == []


def test_unknown_system_is_a_sentence() -> None:
    with pytest.raises(ValueError, match="Unknown code system 'icd9': use one of icd10cm, icd10pcs"):
        search("CHF", system="icd9")


def test_procedures_search_icd10pcs_titles() -> None:
    hit = top("laparoscopic appendectomy", system="icd10pcs")
    assert hit.dotted == "0DTJ4ZZ" and hit.title == "Resection of Appendix, Percutaneous Endoscopic Approach"
    assert top("0DTJ4ZZ", system="icd10pcs").dotted == "0DTJ4ZZ"


# -- how the statement is read ------------------------------------------------------------------


def test_negation_only_matches_without() -> None:
    assert top("acute cystitis without hematuria").dotted == "N30.00"
    assert top("acute cystitis with hematuria").dotted == "N30.01"
    assert top("acute cystitis").dotted == "N30.00"  # "without" is the default


def test_abbreviations_that_are_words_expand_only_in_capitals() -> None:
    assert "aortic" in explain("AS")["words"]
    assert "aortic" not in explain("as")["words"]
    assert explain("s/p CABG")["words"] == ["presence", "aortocoronary", "bypass", "graft"]
    assert explain("s/p right knee replacement")["words"][:2] == ["presence", "of"]


def test_plurals_and_adjectives_meet_their_nouns() -> None:
    assert explain("kidney stones")["terms"] == explain("kidney stone")["terms"]
    assert top("vaginal candidiasis").dotted == top("candidiasis of vagina").dotted


def test_words_not_understood_are_reported() -> None:
    assert explain("CHF blorptastic")["unknown"] == ["blorptastic"]


# -- CLI ----------------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_json_is_a_list_of_code_title_score_best_first() -> None:
    res = runner.invoke(code_app, ["search", "CHF", "--json", "--limit", "3"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert [set(o) for o in out] == [{"code", "title", "score"}] * 3
    assert out[0]["code"] == "I50.9"
    assert [o["score"] for o in out] == sorted((o["score"] for o in out), reverse=True)


def test_cli_table_shows_codes_and_notes() -> None:
    res = runner.invoke(code_app, ["search", "right femoral neck fracture", "--limit", "3"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "S72.001" in res.output and "needs 7th character" in res.output
    assert "initial encounter for closed fracture" in res.output


def test_cli_batch_prints_one_json_line_per_statement(tmp_path: Path) -> None:
    f = tmp_path / "statements.txt"
    f.write_text("CHF\n\nDM2\nzzqx\n", encoding="utf-8")
    res = runner.invoke(code_app, ["search", "--batch", str(f), "--limit", "2"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert [x["statement"] for x in lines] == ["CHF", "", "DM2", "zzqx"]
    assert lines[0]["hits"][0]["code"] == "I50.9" and lines[1]["hits"] == [] and lines[3]["hits"] == []
    assert lines[2]["hits"][0] == {"code": "E11.9", "title": "Type 2 diabetes mellitus without complications",
                                   "score": lines[2]["hits"][0]["score"]}


def test_cli_bad_input_is_a_sentence_and_a_nonzero_exit(tmp_path: Path) -> None:
    res = runner.invoke(code_app, ["search", "CHF", "--system", "icd9"])
    assert res.exit_code == 2 and "--system must be icd10cm or icd10pcs" in res.output
    res = runner.invoke(code_app, ["search", "--batch", str(tmp_path / "missing.txt")])
    assert res.exit_code == 2 and "Cannot read" in res.output
    res = runner.invoke(code_app, ["search", "zzqx"])
    assert res.exit_code == 1 and "No ICD10CM code matches" in res.output


def test_cli_check_reports_each_problem() -> None:
    res = runner.invoke(code_app, ["check", "I50", "--date", "2024-01-01"], env={"COLUMNS": "300"})
    assert res.exit_code == 1
    out = " ".join(res.output.split())  # Rich wraps to the terminal's width, which differs under xdist
    assert "outside the ICD-10-CM tables this system has, FY2026" in out
    assert "is a header, not a billable code" in out
    res = runner.invoke(code_app, ["check", "E11.9", "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["ok"] is True
    res = runner.invoke(code_app, ["check", "E11.9", "--date", "Jan 5"])
    assert res.exit_code == 2 and "--date must be a date like 2026-01-31" in res.output
