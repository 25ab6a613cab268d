"""ICD-10-CM and ICD-10-PCS lookups, from a coder's side first: is this code real, billable,
complete, valid on the date of service, and which notes apply to it."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from importlib import metadata
from pathlib import Path

import pytest

from chartkeeper.coding.codes import CodeFormatError, ICD10CMCode
from chartkeeper.coding.codesets import CM_YEAR, FY, PCS_YEAR, UnknownCodeError, icd10cm, icd10pcs

# -- what a coder asks --------------------------------------------------------------------------


def test_a_billable_code_checks_ok_inside_the_fiscal_year() -> None:
    result = icd10cm.check("e11.9", on=date(2026, 1, 15))
    assert result.ok and result.billable
    assert result.code == "E11.9"
    assert result.title == "Type 2 diabetes mellitus without complications"
    assert result.problems == ()


def test_a_header_is_refused_and_names_its_codes() -> None:
    result = icd10cm.check("I50")
    assert not result.ok and not result.billable
    assert "I50.9" in result.children
    assert "header" in result.problems[0] and "I50.9" in result.problems[0]


def test_a_code_missing_its_seventh_character_says_which_characters() -> None:
    result = icd10cm.check("S72.001")
    assert not result.ok
    assert "7th character" in result.problems[0]
    assert "A (initial encounter for closed fracture)" in result.problems[0]


def test_an_unknown_code_is_reported_not_raised() -> None:
    result = icd10cm.check("Z99.99")
    assert not result.ok and result.title is None
    assert result.problems == (f"Z99.99 is not an ICD-10-CM code in {FY}; check it, or search for it by its words.",)


def test_a_malformed_code_is_a_sentence_saying_how_to_write_it() -> None:
    result = icd10cm.check("hello")
    assert not result.ok
    assert "write it like E11.22" in result.problems[0]


def test_a_date_outside_the_tables_fiscal_year_is_reported_with_the_year() -> None:
    result = icd10cm.check("I50.9", on=date(2024, 3, 1))
    assert not result.ok and result.billable  # the code is fine; the date is not covered
    assert "FY2026 (dates of service 2025-10-01 to 2026-09-30)" in result.problems[0]
    assert icd10cm.check("I50.9", on=CM_YEAR.first_day).ok
    assert icd10cm.check("I50.9", on=CM_YEAR.last_day).ok
    assert not icd10cm.check("I50.9", on=date(2026, 10, 1)).ok


def test_the_fiscal_year_claimed_is_the_one_the_package_ships() -> None:
    files = {p.name for p in metadata.files("simple_icd_10_cm") or ()}
    assert any("2026" in f and f.endswith(".xml") for f in files), files
    assert FY == "FY2026"


# -- hierarchy and notes ------------------------------------------------------------------------


def test_hierarchy_from_code_to_chapter() -> None:
    assert icd10cm.title("I10") == "Essential (primary) hypertension"
    assert icd10cm.parent("E11.9") == ICD10CMCode("E11")
    assert icd10cm.parent("E11") is None  # a category's parent is its block
    assert icd10cm.ancestors("E11.9") == ["E11", "E08-E13", "4"]
    assert icd10cm.block("E11.9").id == "E08-E13"
    assert icd10cm.chapter("E11.9").title.startswith("Endocrine, nutritional and metabolic diseases")
    assert ICD10CMCode("E119") in icd10cm.children("E11")
    assert icd10cm.kind("E11") == "category" and icd10cm.kind("S72.001A") == "extended"


def test_excludes_notes_are_inherited_from_category_and_chapter() -> None:
    notes = icd10cm.notes("E11.9")
    excl1 = {(n.text, n.source) for n in notes["excludes1"]}
    assert ("type 1 diabetes mellitus (E10.-)", "E11") in excl1
    assert any(src == "4" for _, src in excl1)  # the chapter's Excludes1 applies too
    assert [n.text for n in notes["use_additional_code"]][1:2] == ["injectable non-insulin antidiabetic drugs (Z79.85)"]
    own = icd10cm.notes("E11.9", inherited=False)
    assert all(n.source == "E11.9" for lst in own.values() for n in lst)


def test_inclusion_terms_belong_to_their_own_code_only() -> None:
    assert "Congestive heart failure NOS" in [n.text for n in icd10cm.notes("I50.9")["inclusion_terms"]]
    assert "Congestive heart failure NOS" not in [n.text for n in icd10cm.notes("I50.1").get("inclusion_terms", [])]
    assert "inclusion_terms" not in icd10cm.notes("E11.9")  # E11's Includes are notes, not its terms


def test_seventh_characters_and_placeholder_x() -> None:
    assert icd10cm.needs_seventh("T67.5")
    assert icd10cm.with_seventh("T67.5", "a") == ICD10CMCode("T675XXA")
    assert icd10cm.billable("T67.5XXA")
    chars = dict(icd10cm.seventh_characters("S72.001"))
    assert chars["D"] == "subsequent encounter for closed fracture with routine healing"
    assert not icd10cm.needs_seventh("S72.001A") and not icd10cm.needs_seventh("I50.9")
    assert not icd10cm.needs_seventh("S72.0")  # needs more characters before the 7th
    with pytest.raises(ValueError, match="not a 7th character for S72.001; use one of A, B"):
        icd10cm.with_seventh("S72.001", "Z")
    with pytest.raises(ValueError, match="does not take a 7th character"):
        icd10cm.with_seventh("I50.9", "A")


def test_default_code_of_a_header_follows_the_unspecified_child() -> None:
    assert icd10cm.default_code("I50").dotted == "I50.9"
    assert icd10cm.default_code("E11").dotted == "E11.9"  # "without complications", not "unspecified complications"
    assert icd10cm.default_code("M54.5").dotted == "M54.50"  # .50 unspecified, not .59 other
    assert icd10cm.default_code("I10").dotted == "I10"
    assert icd10cm.needs_seventh(icd10cm.default_code("S72"))


def test_unknown_and_malformed_codes_raise_clear_errors_on_lookup() -> None:
    with pytest.raises(UnknownCodeError, match="Z99.99 is not an ICD-10-CM code in the FY2026 tables"):
        icd10cm.title("Z99.99")
    with pytest.raises(CodeFormatError, match="not a valid ICD-10-CM code"):
        icd10cm.title("12345")
    assert not icd10cm.exists("Z99.99") and not icd10cm.exists("nonsense") and icd10cm.exists("z99.89")


def test_the_april_2026_qa0_category_is_a_code() -> None:
    assert icd10cm.exists("QA0.0101") and icd10cm.billable("QA0.0101")


def test_code_counts_are_the_whole_classification() -> None:
    billable = sum(1 for _ in icd10cm.codes(billable_only=True))
    assert 70_000 < billable < 80_000


# -- ICD-10-PCS ---------------------------------------------------------------------------------


def test_pcs_codes_and_titles() -> None:
    assert icd10pcs.title("0dtj4zz") == "Resection of Appendix, Percutaneous Endoscopic Approach"
    assert icd10pcs.exists("0DTJ4ZZ") and not icd10pcs.exists("0DTJ4ZY")
    ok = icd10pcs.check("0DTJ4ZZ", on=date(2024, 2, 1))
    assert ok.ok and ok.billable
    late = icd10pcs.check("0DTJ4ZZ", on=date(2026, 2, 1))
    assert not late.ok and "FY2024" in late.problems[0] and PCS_YEAR.label == "FY2024"
    assert "like 0DTJ4ZZ" in icd10pcs.check("ABC").problems[0]
    with pytest.raises(UnknownCodeError, match="not an ICD-10-PCS code in the FY2024 list"):
        icd10pcs.title("0DTJ4ZY")


# -- loading ------------------------------------------------------------------------------------

_LOAD = "from chartkeeper.coding.codesets import icd10cm; print(icd10cm.title('I10'))"


def _run(cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CHARTKEEPER_CACHE_DIR": str(cache)}
    return subprocess.run([sys.executable, "-c", _LOAD], env=env, capture_output=True, text=True, timeout=120)


def test_first_load_writes_a_cache_that_the_next_process_reads(tmp_path: Path) -> None:
    first = _run(tmp_path / "cache")
    assert first.returncode == 0, first.stderr
    cached = list((tmp_path / "cache").glob("icd10cm-*.pickle"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    second = _run(tmp_path / "cache")
    assert second.stdout == first.stdout == "Essential (primary) hypertension\n"
    assert cached[0].stat().st_mtime_ns == stamp  # read, not rebuilt


def test_an_unwritable_or_corrupt_cache_still_loads(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    assert _run(blocker).stdout == "Essential (primary) hypertension\n"
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "icd10cm-0.9-1.pickle").write_bytes(b"an earlier version's table")
    from chartkeeper.coding.codesets import _SCHEMA, _version

    current = cache / f"icd10cm-{_version('simple_icd_10_cm')}-{_SCHEMA}-np{_version('numpy')}.pickle"
    current.write_bytes(b"garbage")
    assert _run(cache).stdout == "Essential (primary) hypertension\n"
    assert [p.name for p in cache.iterdir()] == [current.name]  # rebuilt; the earlier version's file is gone
