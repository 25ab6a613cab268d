"""HCPCS Level II and CPT code files the hospital supplies. Neither code set may be shipped inside
Chartkeeper (CPT is the AMA's; the HCPCS descriptors come with CMS's annual file), so they are
imported from files the user has: until then a HCPCS/CPT code is checked for its format only and
reported as "not verified".

Formats read (``parse_hcpcs_file`` tells them apart by their content):

* CMS's HCPCS annual file, fixed-width text (``HCPC<year>_<MON>_ANWEB_v<n>.txt``; one 320-character
  record per line). Positions used, as CMS's record layout gives them: 1-5 the HCPCS code (a
  modifier record has its two-character modifier in 4-5), 6-10 the description's sequence number,
  11 the record identification code (3 first line of a procedure, 4 a continuation line of its long
  description, 7 first line of a modifier, 8 a continuation of a modifier), 12-91 the long
  description (80 characters a line, continued on the 4/8 lines), 92-119 the short description.
* The same file as CSV (CMS's spreadsheet saved as CSV): a header row with ``HCPC`` and
  ``LONG DESCRIPTION`` (and ``SHORT DESCRIPTION``, ``SEQNUM``, ``RECID`` where present; continuation
  rows are joined like the text file's).
* A CPT-style CSV from a licence file: ``code,description`` per row, with or without a header row.

A bad line is a reject (its line number and why); the good rows are kept. A file that is none of
these raises ``HcpcsFileError`` saying what was expected.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from chartkeeper.coding.codes import HCPCSCode

Status = Literal["verified", "not verified", "unknown"]

_MODIFIER = re.compile(r"[A-Z0-9]{2}")


class HcpcsFileError(ValueError):
    """A file that is not a HCPCS annual file or a code/description CSV at all."""


@dataclass(frozen=True)
class HcpcsRow:
    code: str  # an HCPCSCode for a procedure; the two-character modifier for a modifier
    long_description: str
    short_description: str
    kind: Literal["procedure", "modifier"]
    line: int  # the line (or CSV row) the record starts on, counted from 1


@dataclass(frozen=True)
class Reject:
    line: int
    reason: str


def parse_hcpcs_file(path: str | Path) -> tuple[list[HcpcsRow], list[Reject]]:
    """The rows of a HCPCS annual file (fixed-width TXT or CSV) or a CPT-style ``code,description`` CSV,
    and the lines rejected with their reasons."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise HcpcsFileError(f"Cannot read the HCPCS file {p.name}: {exc.strerror}.") from None
    if raw[:2] == b"PK":
        raise HcpcsFileError(f"{p.name} is a spreadsheet (xlsx) or zip: unzip CMS's download and give the "
                             "ANWEB .txt file, or save the spreadsheet as CSV.")
    if not raw.strip():
        raise HcpcsFileError(f"{p.name} is empty: give CMS's HCPCS annual file (ANWEB .txt or CSV) or a "
                             "code,description CSV.")
    text = _decode(raw)
    lines = text.splitlines()
    kind = _sniff(lines)
    if kind == "fixed":
        return _parse_fixed(lines)
    if kind == "cms_csv":
        return _parse_cms_csv(text)
    if kind == "simple_csv":
        return _parse_simple_csv(text)
    raise HcpcsFileError(
        f"{p.name} is not a HCPCS file this system reads: expected CMS's HCPCS annual file (fixed-width "
        "ANWEB .txt, code in columns 1-5 and record type 3/4/7/8 in column 11), the same as CSV with "
        "HCPC and LONG DESCRIPTION columns, or a CSV of code,description rows.")


def _decode(raw: bytes) -> str:
    for enc in ("utf-8-sig", "cp1252"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


def _sniff(lines: list[str]) -> str | None:
    sample = [ln for ln in lines[:50] if ln.strip()]
    if not sample:
        return None
    fixed = sum(1 for ln in sample if len(ln) >= 12 and ln[5:10].strip().isdigit() and ln[10] in "3478")
    if fixed >= max(1, len(sample) * 0.5):
        return "fixed"
    head = [c.strip().upper() for c in next(csv.reader([sample[0]]))]
    if ("HCPC" in head or "HCPCS" in head) and any("LONG" in h for h in head):
        return "cms_csv"
    rows = list(csv.reader(sample))
    two = [r for r in rows if len(r) >= 2]
    if len(two) >= len(rows) * 0.8 and sum(1 for r in two if HCPCSCode.parse(r[0]) is not None) >= max(1, len(two) // 2):
        return "simple_csv"
    return None


@dataclass
class _Open:
    code: str
    kind: Literal["procedure", "modifier"]
    line: int
    long: list[str]
    short: str


def _parse_fixed(lines: list[str]) -> tuple[list[HcpcsRow], list[Reject]]:
    records: list[tuple[int, str, str, str, str]] = []
    rejects: list[Reject] = []
    for n, ln in enumerate(lines, 1):
        if not ln.strip():
            continue
        if len(ln) < 12:
            rejects.append(Reject(n, f"Line {n} is {len(ln)} characters long; a HCPCS record has its code, "
                                     "sequence number, record type and description (at least 12)."))
            continue
        records.append((n, ln[0:5], ln[10], ln[11:91].strip(), ln[91:119].strip()))
    rows, more = _assemble(records, _FIXED_WORDS)
    return rows, sorted(rejects + more, key=lambda r: r.line)


_FIXED_WORDS = {"line": "Line", "code": "in columns 1-5", "modifier": "in columns 4-5", "long": "in columns 12-91",
                "rec": "in column 11"}
_CSV_WORDS = {"line": "Row", "code": "in the HCPC column", "modifier": "in the HCPC column",
              "long": "in the LONG DESCRIPTION column", "rec": "in the RECID column"}


def _assemble(records: list[tuple[int, str, str, str, str]], words: dict[str, str]) -> tuple[list[HcpcsRow], list[Reject]]:
    """HCPCS records (line, 5-character code field, record type, long text, short text) to rows: first
    lines (3 procedure, 7 modifier) open a row, continuation lines (4, 8) extend its long description."""
    rows: list[HcpcsRow] = []
    rejects: list[Reject] = []
    current: _Open | None = None
    seen: dict[str, int] = {}
    line = words["line"]

    def flush() -> None:
        nonlocal current
        if current is not None:
            key = f"{current.kind}:{current.code}"
            if key in seen:
                rejects.append(Reject(current.line, f"{line} {current.line}: {current.code} is listed twice (first on "
                                                    f"{line.lower()} {seen[key]}); the first is kept."))
            else:
                seen[key] = current.line
                rows.append(HcpcsRow(current.code, " ".join(current.long).strip(), current.short, current.kind,
                                     current.line))
        current = None

    for n, field5, rec, long_part, short in records:
        if rec in ("3", "7"):
            flush()
            if rec == "3":
                code = HCPCSCode.parse(field5)
                if code is None:
                    rejects.append(Reject(n, f"{line} {n}: {field5.strip()!r} {words['code']} is not a HCPCS code "
                                             "(a letter A-V and four digits, or five CPT characters)."))
                    continue
                opened = _Open(str(code), "procedure", n, [long_part], short)
            else:
                mod = field5.strip().upper()
                if not _MODIFIER.fullmatch(mod):
                    rejects.append(Reject(n, f"{line} {n}: {field5.strip()!r} {words['modifier']} is not a "
                                             "two-character HCPCS modifier."))
                    continue
                opened = _Open(mod, "modifier", n, [long_part], short)
            if not long_part:
                rejects.append(Reject(n, f"{line} {n}: {opened.code} has no long description {words['long']}."))
                continue
            current = opened
        elif rec in ("4", "8"):
            head = field5.strip().upper()
            if current is None or current.code != head:
                rejects.append(Reject(n, f"{line} {n} continues the description of {head or 'a code'}, but the "
                                         f"{line.lower()} before is not that code's first {line.lower()} "
                                         "(record type 3 or 7)."))
                continue
            current.long.append(long_part)
        else:
            rejects.append(Reject(n, f"{line} {n}: record type {rec!r} {words['rec']} is not 3, 4, 7 or 8."))
    flush()
    return rows, rejects


def _norm_header(h: str) -> str:
    return re.sub(r"[^A-Z]", "", h.upper())


def _parse_cms_csv(text: str) -> tuple[list[HcpcsRow], list[Reject]]:
    reader = csv.reader(io.StringIO(text))
    header = [_norm_header(h) for h in next(reader)]

    def col(*names: str) -> int | None:
        for name in names:
            if name in header:
                return header.index(name)
        return None

    c_code, c_long, c_short = col("HCPC", "HCPCS"), col("LONGDESCRIPTION", "LONGDESC"), col("SHORTDESCRIPTION", "SHORTDESC")
    c_rec = col("RECID", "RECORDID")
    if c_code is None or c_long is None:  # _sniff found both; kept for the type checker
        raise HcpcsFileError("The CSV needs HCPC and LONG DESCRIPTION columns.")
    records: list[tuple[int, str, str, str, str]] = []
    rejects: list[Reject] = []
    for n, r in enumerate(reader, 2):
        if not any(x.strip() for x in r):
            continue
        if len(r) <= max(c_code, c_long):
            rejects.append(Reject(n, f"Row {n} has too few columns: it needs HCPC and LONG DESCRIPTION."))
            continue
        rec = (r[c_rec].strip() if c_rec is not None and c_rec < len(r) else "") or "3"
        short = r[c_short].strip() if c_short is not None and c_short < len(r) else ""
        records.append((n, r[c_code].strip(), rec, r[c_long].strip(), short))
    rows, more = _assemble(records, _CSV_WORDS)
    return rows, sorted(rejects + more, key=lambda r: r.line)


def _parse_simple_csv(text: str) -> tuple[list[HcpcsRow], list[Reject]]:
    rows: list[HcpcsRow] = []
    rejects: list[Reject] = []
    seen: dict[str, int] = {}
    for n, r in enumerate(csv.reader(io.StringIO(text)), 1):
        if not any(x.strip() for x in r):
            continue
        code_text = r[0].strip()
        if n == 1 and HCPCSCode.parse(code_text) is None and code_text.lower() in ("code", "cpt", "hcpcs", "cpt code", "hcpc"):
            continue  # header row
        if len(r) < 2 or not r[1].strip():
            rejects.append(Reject(n, f"Row {n} has no description: write code,description."))
            continue
        code = HCPCSCode.parse(code_text)
        if code is None:
            rejects.append(Reject(n, f"Row {n}: {code_text!r} is not a HCPCS/CPT code (a letter A-V and four "
                                     "digits, or five CPT characters like 99223)."))
            continue
        if code in seen:
            rejects.append(Reject(n, f"Row {n}: {code} is listed twice (first on row {seen[code]}); the first is kept."))
            continue
        seen[code] = n
        desc = r[1].strip()
        rows.append(HcpcsRow(str(code), desc, r[2].strip() if len(r) > 2 else desc[:28], "procedure", n))
    return rows, rejects


def verify_hcpcs(code: str, known: set[str] | Iterable[str] | None) -> Status:
    """``verified`` when ``code`` is in the imported code list ``known``; ``not verified`` when no list
    has been imported (format checked only); ``unknown`` when a list is imported and lacks it.
    A code in the wrong format raises ``CodeFormatError`` with a sentence saying how to write it."""
    c = HCPCSCode(code)
    if known is None:
        return "not verified"
    ks = known if isinstance(known, set) else set(known)
    return "verified" if c in ks or str(c) in ks else "unknown"
