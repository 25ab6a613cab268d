"""The concept lexicon of computer-assisted coding: loading and checking ``cac_lexicon.toml``.

Every problem in a lexicon file is reported at once, each as a sentence naming the concept, the field
and the fix (:class:`LexiconError`). Codes are turned into typed values here, so a malformed code is
refused when the file loads, not when a note is coded.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from chartkeeper.coding.codes import Code, CodeFormatError, HCPCSCode, ICD10CMCode, ICD10PCSCode

KINDS = ("dx", "symptom", "proc")
HTN_ROLES = ("htn", "hhd", "hckd", "heart", "ckd")
_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_CONCEPT_FIELDS = {
    "id",
    "kind",
    "code",
    "terms",
    "abbr",
    "refine",
    "history",
    "chronic",
    "family",
    "explains",
    "diabetes",
    "dm",
    "link",
    "own",
    "htn",
    "groups",
    "also",
    "exclude",
    "social",
    "hcpcs",
    "ventilation",
    "implies",
    "multiple",
}
_REFINE_FIELDS = {"when", "code", "codes", "history", "hcpcs", "dm"}


class LexiconError(ValueError):
    """A lexicon file with problems; ``problems`` lists each as a sentence."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"The concept lexicon {source} has {len(problems)} problem(s):\n- " + "\n- ".join(problems))


def parse_code(value: str) -> Code:
    """A lexicon code as its typed value: written with a dot (or three characters) it is ICD-10-CM,
    seven characters without a dot ICD-10-PCS, five characters HCPCS."""
    v = value.strip()
    if "." in v or len(v) == 3:
        return ICD10CMCode(v)
    if len(v) == 7:
        return ICD10PCSCode(v)
    if len(v) == 5:
        return HCPCSCode(v)
    raise CodeFormatError(f"{v!r} is not written like an ICD-10-CM (E11.22), ICD-10-PCS (0SRD0J9) or HCPCS (G0121) code.")


@dataclass(frozen=True)
class Refinement:
    when: tuple[tuple[str, ...], ...]
    codes: tuple[Code, ...] = ()
    history: ICD10CMCode | None = None
    hcpcs: HCPCSCode | None = None
    dm: str | None = None
    patterns: tuple[tuple[re.Pattern[str], ...], ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class Concept:
    id: str
    kind: str
    codes: tuple[Code, ...]
    terms: tuple[str, ...]
    abbr: tuple[str, ...] = ()
    refine: tuple[Refinement, ...] = ()
    history: ICD10CMCode | None = None
    chronic: bool = False
    family: ICD10CMCode | None = None
    explains: frozenset[str] = frozenset()
    diabetes: str | None = None  # "E10", "E11", or "E11?" (type not stated)
    dm: str | None = None
    link: bool = False
    own: bool = True
    htn: str | None = None
    groups: frozenset[str] = frozenset()
    also: tuple[Code, ...] = ()
    exclude: frozenset[str] = frozenset()
    social: bool = False
    hcpcs: HCPCSCode | None = None
    ventilation: bool = False
    implies: str | None = None
    multiple: bool = False

    @property
    def is_procedure(self) -> bool:
        return self.kind == "proc"


@dataclass(frozen=True)
class CombineRule:
    when: tuple[str, ...]
    remove: frozenset[str]
    add: ICD10CMCode
    source: str = ""


@dataclass(frozen=True)
class Lexicon:
    concepts: dict[str, Concept]
    combine: tuple[CombineRule, ...]
    ventilation_codes: tuple[tuple[float, ICD10PCSCode], ...]
    hcpcs_titles: dict[str, str]
    source: str

    def all_codes(self) -> set[Code]:
        """Every code the lexicon can propose (the tests check each against the code sets)."""
        out: set[Code] = set()
        for c in self.concepts.values():
            out.update(c.codes)
            out.update(c.also)
            for x in (c.history, c.family, c.hcpcs):
                if x is not None:
                    out.add(x)
            for r in c.refine:
                out.update(r.codes)
                for x in (r.history, r.hcpcs):
                    if x is not None:
                        out.add(x)
        for rule in self.combine:
            out.add(rule.add)
        out.update(code for _, code in self.ventilation_codes)
        return out


def word_pattern(term: str) -> re.Pattern[str]:
    """A case-insensitive whole-word pattern for a refinement word ("left" does not match "cleft")."""
    return re.compile(r"(?<![A-Za-z0-9])" + re.escape(term.lower()) + r"(?![A-Za-z0-9])")


def _codes(raw: Any, where: str, problems: list[str]) -> tuple[Code, ...]:
    values = raw if isinstance(raw, list) else [raw]
    out: list[Code] = []
    for v in values:
        if not isinstance(v, str):
            problems.append(f"{where}: a code must be text in quotes, not {v!r}.")
            continue
        try:
            out.append(parse_code(v))
        except CodeFormatError as exc:
            problems.append(f"{where}: {exc}")
    return tuple(out)


def _one_cm(raw: Any, where: str, problems: list[str]) -> ICD10CMCode | None:
    if raw is None:
        return None
    got = _codes(raw, where, problems)
    if got and not isinstance(got[0], ICD10CMCode):
        problems.append(f"{where}: {got[0]} is not an ICD-10-CM code; write it with its dot, like Z85.038.")
        return None
    return got[0] if got else None  # type: ignore[return-value]


def _one_hcpcs(raw: Any, where: str, problems: list[str]) -> HCPCSCode | None:
    if raw is None:
        return None
    try:
        return HCPCSCode(str(raw))
    except CodeFormatError as exc:
        problems.append(f"{where}: {exc}")
        return None


def _strings(raw: Any, where: str, problems: list[str]) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(s, str) and s.strip() for s in raw):
        problems.append(f"{where}: give a list of non-empty phrases in quotes.")
        return ()
    return tuple(dict.fromkeys(s.strip() for s in raw))


def _refinement(raw: Any, where: str, problems: list[str]) -> Refinement | None:
    if not isinstance(raw, dict):
        problems.append(f'{where}: each refinement is a table like {{ when = [["left"]], code = "S72.002A" }}.')
        return None
    unknown = set(raw) - _REFINE_FIELDS
    if unknown:
        problems.append(
            f"{where}: unknown field(s) {', '.join(sorted(unknown))}; allowed are {', '.join(sorted(_REFINE_FIELDS))}."
        )
    when = raw.get("when")
    if (
        not isinstance(when, list)
        or not when
        or not all(isinstance(g, list) and g and all(isinstance(w, str) for w in g) for g in when)
    ):
        problems.append(f'{where}: \'when\' must be a list of word lists, like [["left"], ["uncemented", "press-fit"]].')
        return None
    codes: tuple[Code, ...] = ()
    if "code" in raw:
        codes = _codes(raw["code"], f"{where} code", problems)
    elif "codes" in raw:
        codes = _codes(raw["codes"], f"{where} codes", problems)
    dm = raw.get("dm")
    if dm is not None and not (isinstance(dm, str) and re.fullmatch(r"[0-9]{1,4}", dm)):
        problems.append(f"{where}: 'dm' is the diabetes subcategory suffix in quotes, like \"22\" for E11.22.")
        dm = None
    history = _one_cm(raw.get("history"), f"{where} history", problems)
    hcpcs = _one_hcpcs(raw.get("hcpcs"), f"{where} hcpcs", problems)
    if not (codes or history or hcpcs or dm):
        problems.append(f"{where}: say what the refinement gives: code, codes, history, hcpcs or dm.")
    groups = tuple(tuple(w.strip() for w in g) for g in when)
    return Refinement(
        when=groups,
        codes=codes,
        history=history,
        hcpcs=hcpcs,
        dm=dm,
        patterns=tuple(tuple(word_pattern(w) for w in g) for g in groups),
    )


def _concept(raw: dict[str, Any], explain_sets: dict[str, list[str]], problems: list[str]) -> Concept | None:
    cid = raw.get("id")
    if not isinstance(cid, str) or not _ID.match(cid):
        problems.append(f"A concept has id {cid!r}: give each concept an id of lower-case letters, digits and hyphens.")
        return None
    where = f"concept {cid!r}"
    unknown = set(raw) - _CONCEPT_FIELDS
    if unknown:
        problems.append(f"{where}: unknown field(s) {', '.join(sorted(unknown))}; see the field list at the top of the lexicon.")
    kind = raw.get("kind")
    if kind not in KINDS:
        problems.append(f"{where}: kind is {kind!r}; use one of {', '.join(KINDS)}.")
        return None
    terms = _strings(raw.get("terms"), f"{where} terms", problems)
    abbr = _strings(raw.get("abbr"), f"{where} abbr", problems)
    if not terms and not abbr:
        problems.append(f"{where}: give at least one phrase in terms or abbr.")
    codes = _codes(raw["code"], f"{where} code", problems) if "code" in raw else ()
    if kind != "proc" and any(not isinstance(c, ICD10CMCode) for c in codes):
        problems.append(f"{where}: a diagnosis or symptom concept takes an ICD-10-CM code (with its dot).")
    refine: list[Refinement] = []
    raw_refine = raw.get("refine", [])
    if not isinstance(raw_refine, list):
        problems.append(f"{where}: refine must be a list of tables.")
        raw_refine = []
    for i, r in enumerate(raw_refine, 1):
        got = _refinement(r, f"{where} refinement {i}", problems)
        if got:
            refine.append(got)
    explains: set[str] = set()
    for e in raw.get("explains", []):
        if isinstance(e, str) and e.startswith("@"):
            if e[1:] not in explain_sets:
                problems.append(f"{where}: explains names the set {e!r}, which [explain] does not define.")
                continue
            explains.update(str(parse_code(c)) for c in explain_sets[e[1:]])
        else:
            explains.update(str(c) for c in _codes(e, f"{where} explains", problems))
    diabetes = raw.get("diabetes")
    if diabetes not in (None, "E10", "E11", "E11?"):
        problems.append(f'{where}: diabetes is {diabetes!r}; use "E10", "E11" or "E11?" (type not stated).')
    htn = raw.get("htn")
    if htn is not None and htn not in HTN_ROLES:
        problems.append(f"{where}: htn is {htn!r}; use one of {', '.join(HTN_ROLES)}.")
    dm = raw.get("dm")
    if dm is not None and not (isinstance(dm, str) and re.fullmatch(r"[0-9]{1,4}", dm)):
        problems.append(f"{where}: 'dm' is the diabetes subcategory suffix in quotes, like \"22\".")
        dm = None
    return Concept(
        id=cid,
        kind=kind,
        codes=codes,
        terms=terms,
        abbr=abbr,
        refine=tuple(refine),
        history=_one_cm(raw.get("history"), f"{where} history", problems),
        chronic=bool(raw.get("chronic", False)),
        family=_one_cm(raw.get("family"), f"{where} family", problems),
        explains=frozenset(explains),
        diabetes=diabetes,
        dm=dm,
        link=bool(raw.get("link", False)),
        own=bool(raw.get("own", True)),
        htn=htn,
        groups=frozenset(_strings(raw.get("groups"), f"{where} groups", problems)),
        also=_codes(raw.get("also", []), f"{where} also", problems) if raw.get("also") else (),
        exclude=frozenset(w.lower() for w in _strings(raw.get("exclude"), f"{where} exclude", problems)),
        social=bool(raw.get("social", False)),
        hcpcs=_one_hcpcs(raw.get("hcpcs"), f"{where} hcpcs", problems),
        ventilation=bool(raw.get("ventilation", False)),
        implies=raw.get("implies"),
        multiple=bool(raw.get("multiple", False)),
    )


def load_lexicon(path: str | Path | None = None) -> Lexicon:
    """Load and check a lexicon file (the packaged ``cac_lexicon.toml`` when ``path`` is None)."""
    if path is None:
        text = resources.files("chartkeeper.coding").joinpath("cac_lexicon.toml").read_text(encoding="utf-8")
        source = "cac_lexicon.toml (packaged)"
    else:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise LexiconError(str(p), [f"The file cannot be read ({exc.strerror}); check the path."]) from None
        source = str(p)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LexiconError(source, [f"The file is not valid TOML: {exc}."]) from None
    problems: list[str] = []
    explain_sets = data.get("explain", {})
    concepts: dict[str, Concept] = {}
    for raw in data.get("concept", []):
        c = _concept(raw, explain_sets, problems)
        if c is None:
            continue
        if c.id in concepts:
            problems.append(f"Concept id {c.id!r} is used twice; give each concept its own id.")
        concepts[c.id] = c
    written_code = {raw.get("id") for raw in data.get("concept", []) if "code" in raw}
    for c in concepts.values():
        if c.implies and c.implies not in concepts:
            problems.append(f"concept {c.id!r}: implies {c.implies!r}, which is not a concept id.")
        if c.id not in written_code and not (
            c.codes or c.refine or c.history or c.family or c.hcpcs or c.also or c.ventilation or c.dm
        ):
            problems.append(f"concept {c.id!r}: it gives no code; add code, refine, history or family.")
    known_groups = {g for c in concepts.values() for g in c.groups}
    combine: list[CombineRule] = []
    for i, r in enumerate(data.get("combine", {}).get("rules", []), 1):
        where = f"combine rule {i}"
        when = tuple(r.get("when", []))
        for w in when:
            if (w.startswith("@") and w[1:] not in known_groups) or (not w.startswith("@") and w not in concepts):
                problems.append(f"{where}: {w!r} is neither a concept id nor a group (@name) used by a concept.")
        add = _one_cm(r.get("add"), f"{where} add", problems)
        if add is None:
            problems.append(f"{where}: give the combination code in 'add'.")
            continue
        remove = (
            frozenset(str(c) for c in _codes(r.get("remove", []), f"{where} remove", problems))
            if r.get("remove")
            else frozenset()
        )
        combine.append(CombineRule(when=when, remove=remove, add=add, source=str(r.get("source", ""))))
    vent: list[tuple[float, ICD10PCSCode]] = []
    for row in data.get("ventilation", {}).get("codes", []):
        try:
            vent.append((float(row[0]), ICD10PCSCode(row[1])))
        except (CodeFormatError, TypeError, ValueError, IndexError):
            problems.append(f'ventilation codes: {row!r} should be [hours_below, "PCS code"], like [24, "5A1935Z"].')
    titles = {str(HCPCSCode(k)): str(v) for k, v in data.get("hcpcs_titles", {}).items()}
    if problems:
        raise LexiconError(source, problems)
    return Lexicon(
        concepts=concepts, combine=tuple(combine), ventilation_codes=tuple(sorted(vent)), hcpcs_titles=titles, source=source
    )
