"""HCPCS/CPT files the hospital supplies: CMS's fixed-width annual file, its CSV, and a
code,description CSV. The records below are made up for the tests (the codes are in HCPCS format;
the descriptions are ours), laid out the way CMS's record layout describes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chartkeeper.coding.codes import CodeFormatError
from chartkeeper.coding.hcpcs import HcpcsFileError, parse_hcpcs_file, verify_hcpcs


def record(code: str, seq: int, rec: str, long: str, short: str = "") -> str:
    """One 320-character record: code 1-5, sequence 6-10, record type 11, long 12-91, short 92-119."""
    line = f"{code:<5}{seq:05d}{rec}{long:<80}{short:<28}"
    return line.ljust(320)


def modifier(mod: str, seq: int, rec: str, long: str, short: str = "") -> str:
    return record(f"   {mod}", seq, rec, long, short)


def write(tmp_path: Path, name: str, lines: list[str]) -> Path:
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


# -- what an HIM analyst does: load the year's file, see what was read and what was refused ------


def test_fixed_width_annual_file_is_read_with_continuations_and_modifiers(tmp_path: Path) -> None:
    f = write(tmp_path, "HCPC2026_JAN_ANWEB.txt", [
        record("A0001", 100, "3", "Test ambulance service, first part of a long description that", "Test ambulance"),
        record("A0001", 200, "4", "continues on the next record"),
        record("J9999", 100, "3", "Test injection, 1 mg", "Test inj 1mg"),
        modifier("ZZ", 100, "7", "Test modifier for a made-up purpose", "Test modifier"),
        record("99999", 100, "3", "Test CPT-shaped code", "Test cpt"),
    ])
    rows, rejects = parse_hcpcs_file(f)
    assert rejects == []
    assert [(r.code, r.kind, r.line) for r in rows] == [
        ("A0001", "procedure", 1), ("J9999", "procedure", 3), ("ZZ", "modifier", 4), ("99999", "procedure", 5)]
    assert rows[0].long_description == ("Test ambulance service, first part of a long description that "
                                        "continues on the next record")
    assert rows[0].short_description == "Test ambulance"


def test_bad_lines_are_rejected_with_their_line_and_reason_and_good_rows_kept(tmp_path: Path) -> None:
    f = write(tmp_path, "anweb.txt", [
        record("A0001", 100, "3", "Good one", "Good"),
        record("A00X1", 100, "3", "Not a code", "Bad"),
        record("B0001", 200, "4", "Continuation with no first line"),
        record("A0002", 100, "9", "Record type 9"),
        record("A0001", 100, "3", "Listed twice", "Dup"),
        record("A0003", 100, "3", "", "No long description"),
        record("A0004", 100, "3", "Good two", "Good two"),
        "A0005",
    ])
    rows, rejects = parse_hcpcs_file(f)
    assert [r.code for r in rows] == ["A0001", "A0004"]
    by_line = {r.line: r.reason for r in rejects}
    assert set(by_line) == {2, 3, 4, 5, 6, 8}
    assert "'A00X1' in columns 1-5 is not a HCPCS code" in by_line[2]
    assert "continues the description of B0001" in by_line[3]
    assert "record type '9' in column 11 is not 3, 4, 7 or 8" in by_line[4]
    assert "A0001 is listed twice (first on line 1); the first is kept" in by_line[5]
    assert "A0003 has no long description" in by_line[6]
    assert "Line 8 is 5 characters long" in by_line[8]


def test_cms_csv_with_continuation_rows(tmp_path: Path) -> None:
    f = write(tmp_path, "anweb.csv", [
        "HCPC,SEQNUM,RECID,LONG DESCRIPTION,SHORT DESCRIPTION",
        "A0001,00100,3,Test service described at a length longer than eighty characters so nothing may cut it short,Test service",
        "A0001,00200,4,over two rows,",
        "ZZ,00100,7,Test modifier,Test mod",
        "XYZ,00100,3,Bad code,Bad",
        "J9999,00100,3,Test injection,Test inj",
    ])
    rows, rejects = parse_hcpcs_file(f)
    assert [(r.code, r.kind, r.line) for r in rows] == [("A0001", "procedure", 2), ("ZZ", "modifier", 4),
                                                        ("J9999", "procedure", 6)]
    assert rows[0].long_description == ("Test service described at a length longer than eighty characters so nothing "
                                        "may cut it short over two rows")
    assert [(r.line, r.reason) for r in rejects] == [
        (5, "Row 5: 'XYZ' in the HCPC column is not a HCPCS code (a letter A-V and four digits, or five CPT characters).")]


def test_cpt_style_code_description_csv(tmp_path: Path) -> None:
    f = write(tmp_path, "cpt.csv", [
        "code,description",
        "99999,Test visit, with a comma inside quotes is fine when quoted",
        '"99998","Test visit two"',
        "9999,Too short",
        "99997,",
        "99999,Again",
    ])
    rows, rejects = parse_hcpcs_file(f)
    assert [r.code for r in rows] == ["99999", "99998"]
    assert [r.line for r in rejects] == [4, 5, 6]
    assert "not a HCPCS/CPT code" in rejects[0].reason
    assert "has no description" in rejects[1].reason
    assert "listed twice (first on row 2)" in rejects[2].reason
    headerless = write(tmp_path, "cpt2.csv", ["99999,Test", "A0001,Test two"])
    assert [r.code for r in parse_hcpcs_file(headerless)[0]] == ["99999", "A0001"]


@pytest.mark.parametrize(("content", "message"), [
    (b"", "is empty"),
    (b"PK\x03\x04 zip bytes", "is a spreadsheet (xlsx) or zip"),
    (b"Dear colleague,\nplease find attached\n", "is not a HCPCS file this system reads"),
])
def test_a_file_that_is_not_hcpcs_raises_a_clear_error(tmp_path: Path, content: bytes, message: str) -> None:
    p = tmp_path / "upload.txt"
    p.write_bytes(content)
    with pytest.raises(HcpcsFileError, match=re.escape(message)):
        parse_hcpcs_file(p)
    with pytest.raises(HcpcsFileError, match="Cannot read the HCPCS file"):
        parse_hcpcs_file(tmp_path / "missing.txt")


# -- verification status ------------------------------------------------------------------------


def test_codes_are_not_verified_until_a_file_is_imported() -> None:
    assert verify_hcpcs("j1100", None) == "not verified"
    assert verify_hcpcs("J1100", {"J1100"}) == "verified"
    assert verify_hcpcs("J1101", {"J1100"}) == "unknown"
    assert verify_hcpcs("99223", ["99223"]) == "verified"
    with pytest.raises(CodeFormatError, match="write it like J1100 or 99223"):
        verify_hcpcs("J11", None)
