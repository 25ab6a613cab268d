"""Casefinding: screen pathology reports and coded diagnoses for tumours the registry must report.

The pure engine behind the registrar's suspense queue:

* :func:`screen_text` reads a free-text report with medspaCy (its target matcher finds the tumour
  words, its ConText component finds negation, the registry's ambiguous terms and family history) and
  says whether it holds a reportable finding, with every matched phrase at exact offsets for
  highlighting, and a suggested site, histology, behaviour and laterality.
* :func:`screen_code` places an ICD-10-CM code on the SEER casefinding list.
* :func:`same_tumor` says whether a new report belongs to a tumour the registry already has, so the
  queue links it instead of making a duplicate case.

Every term, code range and exclusion lives in ``casefinding_terms.toml`` (readable by a registrar,
sources named there). A facility may point ``CHARTKEEPER_CASEFINDING_TERMS`` at its own copy.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

from chartkeeper import rulefiles
from chartkeeper.coding.codes import ICD10CMCode
from chartkeeper.registry import icdo3
from chartkeeper.registry.codes import ICDO3Behavior, ICDO3Histology, ICDO3Topography

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Doc, Span

MatchKind = Literal["malignancy", "ambiguous-reportable", "ambiguous-not-reportable", "negated",
                    "skin-excluded", "excluded", "family-history"]
Role = Literal["finding", "cue"]
CodeStatus = Literal["reportable", "review", "not-reportable", "not-listed"]
Direction = Literal["forward", "backward", "bidirectional"]

_DIRECTIONS = ("forward", "backward", "bidirectional")
_STATUSES = ("reportable", "review", "not-reportable")
# ConText categories used in the pipeline.
_NEG, _AMB_YES, _AMB_NO, _FAMILY = "NEGATED_EXISTENCE", "AMBIGUOUS_REPORTABLE", "AMBIGUOUS_NOT_REPORTABLE", "FAMILY"
_CUE_KIND: dict[str, MatchKind] = {_NEG: "negated", _AMB_YES: "ambiguous-reportable",
                                   _AMB_NO: "ambiguous-not-reportable", _FAMILY: "family-history"}
_LATERALITY_WORDS = {"right": "1", "left": "2", "bilateral": "4"}
_PART = re.compile(r"(?m)^[ \t]*(?:[A-Z]|\d{1,2})[.)][ \t]+|\n[ \t]*\n")


@dataclass(frozen=True)
class Match:
    """One highlighted phrase: ``text[start:end] == phrase``. A ``finding`` is a tumour word with the
    kind it ended up as; a ``cue`` is the negation or ambiguous term that decided it."""

    start: int
    end: int
    phrase: str
    kind: MatchKind
    role: Role = "finding"


@dataclass(frozen=True)
class ScreenResult:
    reportable: bool
    reason: str
    matches: list[Match]
    suggested_site: ICDO3Topography | None = None
    suggested_histology: ICDO3Histology | None = None
    behavior: ICDO3Behavior | None = None
    laterality: str | None = None  # NAACCR item 410 code: 0 not paired, 1 right, 2 left, 4 bilateral, 9 unknown

    @property
    def findings(self) -> list[Match]:
        return [m for m in self.matches if m.role == "finding"]


@dataclass(frozen=True)
class CodeScreenResult:
    code: ICD10CMCode
    status: CodeStatus
    reason: str
    entry_id: str | None = None
    kind: MatchKind | None = None
    suggested_site: ICDO3Topography | None = None
    behavior: ICDO3Behavior | None = None

    @property
    def reportable(self) -> bool:
        return self.status == "reportable"

    @property
    def to_queue(self) -> bool:
        """Whether the code puts the record in the suspense queue (reportable or needs review)."""
        return self.status in ("reportable", "review")


@dataclass(frozen=True)
class TumorKey:
    """What identifies a tumour for linking: site, laterality, histology and date of diagnosis."""

    site: ICDO3Topography
    histology: ICDO3Histology
    laterality: str | None = None
    diagnosis_date: date | None = None
    tumor_id: str | None = None


@dataclass(frozen=True)
class TumorMatch:
    """``index`` is the position in ``existing`` of the tumour the new report belongs to, or None for
    a new tumour; ``reason`` says why, in a sentence for the registrar."""

    index: int | None
    reason: str

    @property
    def matched(self) -> bool:
        return self.index is not None


class TermFileError(rulefiles.RuleFileError):
    """A casefinding terms file that cannot be used; ``problems`` lists each one as a sentence."""

    what = "casefinding terms file"


# ---------------------------------------------------------------------------------------------- terms


@dataclass(frozen=True)
class Cue:
    phrase: str
    category: str
    direction: str
    max_scope: int | None = None


@dataclass(frozen=True)
class FindingTerm:
    phrases: tuple[str, ...]
    histology: ICDO3Histology
    behavior: ICDO3Behavior
    kind: MatchKind | None = None
    site: ICDO3Topography | None = None
    assumed_site: ICDO3Topography | None = None
    cns_only: bool = False


@dataclass(frozen=True)
class Exclusion:
    id: str
    kind: MatchKind
    sites: tuple[tuple[str, str], ...]
    histologies: tuple[tuple[str, str], ...]
    behaviors: frozenset[str]
    reason: str

    def applies(self, site: str | None, histology: str, behavior: str) -> bool:
        if site is None or not _in_ranges(site, self.sites):
            return False
        if self.histologies and not _in_ranges(histology, self.histologies):
            return False
        return not self.behaviors or behavior in self.behaviors


@dataclass(frozen=True)
class CodeEntry:
    id: str
    status: CodeStatus
    note: str
    ranges: tuple[tuple[str, str], ...] = ()
    pattern: re.Pattern[str] | None = None
    kind: MatchKind | None = None
    site: ICDO3Topography | None = None
    behavior: ICDO3Behavior | None = None

    def matches(self, code: str) -> bool:
        if self.pattern is not None and self.pattern.fullmatch(code):
            return True
        return any(code[:len(lo)] >= lo and code[:len(hi)] <= hi for lo, hi in self.ranges)


@dataclass(frozen=True)
class Terms:
    version: str
    list_name: str
    list_version: str
    cues: tuple[Cue, ...]
    pseudo: tuple[str, ...]
    terminate: tuple[str, ...]
    findings: tuple[FindingTerm, ...]
    exclusions: tuple[Exclusion, ...]
    cns_sites: tuple[tuple[str, str], ...]
    sites: dict[str, ICDO3Topography]
    codes: tuple[CodeEntry, ...]
    default_days: int
    days_by_site: tuple[tuple[tuple[str, str], int], ...]
    source: str = "default"
    by_phrase: dict[str, FindingTerm] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for f in self.findings:
            for p in f.phrases:
                self.by_phrase[p.lower()] = f


def _in_ranges(value: str, ranges: tuple[tuple[str, str], ...]) -> bool:
    return any(value[:len(lo)] >= lo and value[:len(hi)] <= hi for lo, hi in ranges)


def _ranges(raw: Any, where: str, problems: list[str], example: str) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(r, str) and r.strip() for r in raw):
        problems.append(f"{where} must be a list of codes or ranges, e.g. {example}.")
        return ()
    out = []
    for r in raw:
        lo, _, hi = r.replace(".", "").upper().partition("-")
        hi = hi or lo
        if lo > hi:
            problems.append(f"{where}: the range {r!r} runs backwards; write the lower code first.")
            continue
        out.append((lo.strip(), hi.strip()))
    return tuple(out)


def _default_terms_text() -> str:
    return rulefiles.shipped_text("chartkeeper.registry", "casefinding_terms.toml")


def load_terms(path: str | os.PathLike[str] | None = None) -> Terms:
    """The terms to use: ``path``, else ``CHARTKEEPER_CASEFINDING_TERMS``, else the shipped file."""
    chosen = rulefiles.chosen_file(path, "CHARTKEEPER_CASEFINDING_TERMS", TermFileError)
    return parse_terms(*chosen) if chosen else parse_terms(_default_terms_text(), "default")


def parse_terms(text: str, source: str = "<text>") -> Terms:
    data = rulefiles.parse_toml(text, source, TermFileError)
    problems: list[str] = []
    version = data.get("version")
    if not isinstance(version, str) or not version.strip():
        problems.append('version is missing: give the terms a version, e.g. version = "2026.1", so each '
                        "screening records which terms it used.")
        version = ""
    cl = data.get("casefinding_list", {})
    list_name, list_version = str(cl.get("name", "")), str(cl.get("version", ""))
    if not list_version:
        problems.append('casefinding_list.version is missing: say which SEER casefinding list the codes '
                        'follow, e.g. version = "FY2026".')

    cues: list[Cue] = []

    def cue_list(raw: Any, where: str, category: str, default_dir: str | None) -> None:
        if not isinstance(raw, list):
            problems.append(f"{where} must be a list of {{ phrase = \"...\", direction = \"forward\" }} entries.")
            return
        for n, item in enumerate(raw, 1):
            if isinstance(item, str):
                item = {"phrase": item}
            if not isinstance(item, dict) or not isinstance(item.get("phrase"), str) or not item["phrase"].strip():
                problems.append(f"{where}, entry {n}: give the phrase, e.g. {{ phrase = \"consistent with\" }}.")
                continue
            direction = item.get("direction", default_dir)
            if direction not in _DIRECTIONS:
                problems.append(f"{where}, {item['phrase']!r}: direction must be one of {', '.join(_DIRECTIONS)}; "
                                f"it is {direction!r}.")
                continue
            scope = item.get("max_scope")
            if scope is not None and (isinstance(scope, bool) or not isinstance(scope, int) or scope < 1):
                problems.append(f"{where}, {item['phrase']!r}: max_scope must be a whole number of words, e.g. 5.")
                continue
            cues.append(Cue(item["phrase"].strip(), category, direction, scope))

    amb = data.get("ambiguous", {})
    cue_list(amb.get("reportable", []), "ambiguous.reportable", _AMB_YES, None)
    cue_list(amb.get("not_reportable", []), "ambiguous.not_reportable", _AMB_NO, None)
    neg = data.get("negation", {})
    cue_list(neg.get("forward", []), "negation.forward", _NEG, "forward")
    cue_list(neg.get("backward", []), "negation.backward", _NEG, "backward")
    cue_list(data.get("family", {}).get("forward", []), "family.forward", _FAMILY, "forward")
    pseudo = tuple(str(p) for p in neg.get("pseudo", []))
    terminate = tuple(str(p) for p in neg.get("terminate", []))

    findings: list[FindingTerm] = []
    for n, raw in enumerate(data.get("finding", []), 1):
        where = f"finding {n}"
        phrases = raw.get("phrases") if isinstance(raw, dict) else None
        if not isinstance(phrases, list) or not phrases or not all(isinstance(p, str) and p.strip() for p in phrases):
            problems.append(f"{where}: phrases must be a non-empty list of words, e.g. phrases = [\"adenocarcinoma\"].")
            continue
        where = f"finding {phrases[0]!r}"
        hist = ICDO3Histology.parse(str(raw.get("histology", "")))
        beh = ICDO3Behavior.parse(str(raw.get("behavior", "")))
        if hist is None:
            problems.append(f"{where}: histology must be a four-digit ICD-O-3 code, e.g. histology = \"8140\".")
        if beh is None:
            problems.append(f"{where}: behavior must be 0, 1, 2 or 3, e.g. behavior = \"3\".")
        kind = raw.get("kind")
        if kind is not None and kind not in ("ambiguous-reportable", "ambiguous-not-reportable"):
            problems.append(f"{where}: kind may only be \"ambiguous-reportable\" or \"ambiguous-not-reportable\".")
            kind = None
        site = _site(raw.get("site"), f"{where}: site", problems)
        assumed = _site(raw.get("assumed_site"), f"{where}: assumed_site", problems)
        cns_only = raw.get("cns_only", False)
        if not isinstance(cns_only, bool):
            problems.append(f"{where}: cns_only must be true or false.")
            cns_only = False
        if hist is not None and beh is not None:
            findings.append(FindingTerm(tuple(p.strip() for p in phrases), hist, beh, kind, site, assumed, cns_only))

    exclusions: list[Exclusion] = []
    for n, raw in enumerate(data.get("exclusion", []), 1):
        eid = raw.get("id", f"exclusion {n}")
        where = f"exclusion {eid!r}"
        kind = raw.get("kind", "excluded")
        if kind not in ("skin-excluded", "excluded"):
            problems.append(f"{where}: kind must be \"skin-excluded\" or \"excluded\"; it is {kind!r}.")
            continue
        ex_sites = _ranges(raw.get("sites"), f"{where}: sites", problems, '["C440-C449"]')
        if not ex_sites:
            problems.append(f"{where}: sites is missing; list the ICD-O-3 sites it applies to, e.g. [\"C440-C449\"].")
            continue
        hists = _ranges(raw.get("histologies"), f"{where}: histologies", problems, '["8000-8110"]')
        behs = raw.get("behaviors", [])
        if not isinstance(behs, list) or not all(b in ("0", "1", "2", "3") for b in behs):
            problems.append(f"{where}: behaviors must be a list of \"0\" to \"3\", e.g. [\"2\"].")
            behs = []
        reason = raw.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            problems.append(f"{where}: reason is missing; say in a sentence why the finding is not reportable.")
            reason = ""
        exclusions.append(Exclusion(str(eid), kind, ex_sites, hists, frozenset(behs), reason))

    cns = _ranges(data.get("cns", {}).get("sites"), "cns.sites", problems, '["C700-C729"]')
    sites: dict[str, ICDO3Topography] = {}
    for phrase, code in data.get("sites", {}).items():
        s = _site(code, f"sites.{phrase}", problems)
        if s is not None:
            sites[phrase.lower()] = s

    codes: list[CodeEntry] = []
    seen: set[str] = set()
    for n, raw in enumerate(data.get("code", []), 1):
        cid = raw.get("id")
        if not isinstance(cid, str) or not cid:
            problems.append(f"code entry {n}: id is missing; give each list entry a short id, e.g. id = \"in-situ\".")
            continue
        where = f"code entry {cid!r}"
        if cid in seen:
            problems.append(f"{where} is defined twice; give each entry its own id.")
            continue
        seen.add(cid)
        status = raw.get("status")
        if status not in _STATUSES:
            problems.append(f"{where}: status must be one of {', '.join(_STATUSES)}; it is {status!r}.")
            continue
        ranges = _ranges(raw.get("codes"), f"{where}: codes", problems, '["D00-D09"]')
        pattern = None
        if raw.get("pattern") is not None:
            try:
                pattern = re.compile(str(raw["pattern"]))
            except re.error as exc:
                problems.append(f"{where}: pattern is not a valid regular expression ({exc}).")
        if not ranges and pattern is None:
            problems.append(f"{where}: give codes (e.g. codes = [\"D32\"]) or a pattern.")
            continue
        kind = raw.get("kind")
        if kind not in (None, "skin-excluded", "excluded"):
            problems.append(f"{where}: kind may only be \"skin-excluded\" or \"excluded\".")
            kind = None
        beh = raw.get("behavior")
        behavior = ICDO3Behavior.parse(str(beh)) if beh is not None else None
        if beh is not None and behavior is None:
            problems.append(f"{where}: behavior must be 0, 1, 2 or 3.")
        note = raw.get("note")
        if not isinstance(note, str) or not note.strip():
            problems.append(f"{where}: note is missing; say in a sentence what the code means for reporting.")
            note = ""
        codes.append(CodeEntry(cid, status, note, ranges, pattern, kind,
                               _site(raw.get("site"), f"{where}: site", problems), behavior))

    st = data.get("same_tumor", {})
    default_days = st.get("default_days", 365)
    if isinstance(default_days, bool) or not isinstance(default_days, int) or default_days < 0:
        problems.append("same_tumor.default_days must be a whole number of days, e.g. 365.")
        default_days = 365
    by_site: list[tuple[tuple[str, str], int]] = []
    for rng, days in st.get("days_by_site", {}).items():
        r = _ranges([rng], f"same_tumor.days_by_site.{rng}", problems, '"C50"')
        if isinstance(days, bool) or not isinstance(days, int) or days < 0:
            problems.append(f"same_tumor.days_by_site.{rng} must be a whole number of days, e.g. 1826.")
            continue
        if r:
            by_site.append((r[0], days))
    if not findings and not problems:
        problems.append("No finding terms are defined: add [[finding]] entries, or nothing is ever found.")
    if problems:
        raise TermFileError(source, problems)
    return Terms(version=version, list_name=list_name, list_version=list_version, cues=tuple(cues), pseudo=pseudo,
                 terminate=terminate, findings=tuple(findings), exclusions=tuple(exclusions), cns_sites=cns,
                 sites=sites, codes=tuple(codes), default_days=default_days, days_by_site=tuple(by_site),
                 source=source)


def _site(raw: Any, where: str, problems: list[str]) -> ICDO3Topography | None:
    if raw is None:
        return None
    s = ICDO3Topography.parse(str(raw))
    if s is None or not icdo3.is_valid_site(s):
        problems.append(f"{where}: {raw!r} is not an ICD-O-3 site code; write it like \"C50.9\" or \"C509\".")
        return None
    return s


@lru_cache(maxsize=1)
def default_terms() -> Terms:
    return load_terms()


# ------------------------------------------------------------------------------------------- pipeline


class Screener:
    """A medspaCy pipeline built from a :class:`Terms`: build once, screen many reports."""

    def __init__(self, terms: Terms) -> None:
        self.terms = terms
        self.nlp = _build_pipeline(terms)

    def screen_text(self, text: str) -> ScreenResult:
        if not isinstance(text, str):
            raise TypeError("screen_text needs the report as text.")
        if not text.strip():
            return ScreenResult(False, "The report is empty: there is nothing to screen.", [])
        doc = self.nlp(text)
        return _judge(self.terms, text, doc)


def _build_pipeline(terms: Terms) -> Language:
    from loguru import logger  # PyRuSH (medspaCy's sentence splitter) logs every token at DEBUG level

    logger.disable("PyRuSH")
    # medspaCy's target matcher keeps an empty rule-based matcher beside its phrase matcher.
    warnings.filterwarnings("ignore", message=r"\[W036\]")
    import medspacy
    from medspacy.context import ConTextRule
    from medspacy.ner import TargetRule

    nlp = medspacy.load(medspacy_enable=["medspacy_pyrush", "medspacy_target_matcher"])
    matcher = nlp.get_pipe("medspacy_target_matcher")
    rules = [TargetRule(p, "FINDING") for f in terms.findings for p in f.phrases]
    # A hyphenated phrase also matches written with a space or without the hyphen's spacing.
    rules += [TargetRule(p, "FINDING", pattern=_hyphen_pattern(p)) for f in terms.findings for p in f.phrases
              if "-" in p]
    rules += [TargetRule(p, "SITE") for p in terms.sites]
    rules += [TargetRule(w, "SIDE") for w in _LATERALITY_WORDS]
    matcher.add(rules)
    context = nlp.add_pipe("medspacy_context", config={"rules": None, "span_attrs": None})
    crules = [ConTextRule(c.phrase, c.category, direction=c.direction.upper(), max_scope=c.max_scope,
                          allowed_types={"FINDING"}) for c in terms.cues]
    crules += [ConTextRule(p, "PSEUDO", direction="PSEUDO") for p in terms.pseudo]
    # Terminators as token patterns (exact words), which also keeps ConText's token matcher non-empty.
    crules += [ConTextRule(p, "TERMINATE", direction="TERMINATE", pattern=[{"LOWER": w} for w in p.lower().split()])
               for p in terms.terminate]
    context.add(crules)
    return nlp


def _hyphen_pattern(phrase: str) -> list[dict[str, Any]]:
    pattern: list[dict[str, Any]] = []
    for i, part in enumerate(phrase.lower().split("-")):
        if i:
            pattern.append({"TEXT": "-", "OP": "?"})
        pattern.extend({"LOWER": w} for w in part.split())
    return pattern


@dataclass
class _Finding:
    span: Span
    term: FindingTerm
    kind: MatchKind = "malignancy"
    cues: list[Match] = field(default_factory=list)
    site: ICDO3Topography | None = None
    laterality: str | None = None
    reason: str = ""


def _judge(terms: Terms, text: str, doc: Doc) -> ScreenResult:
    parts = _parts(text)
    sites = [e for e in doc.ents if e.label_ == "SITE"]
    sides = [e for e in doc.ents if e.label_ == "SIDE"]
    findings: list[_Finding] = []
    for ent in doc.ents:
        if ent.label_ != "FINDING":
            continue
        term = terms.by_phrase[ent.text.lower()] if ent.text.lower() in terms.by_phrase else _lookup(terms, ent)
        f = _Finding(ent, term)
        cats: set[str] = set()
        for mod in ent._.modifiers:
            span = doc[mod.modifier_span[0]:mod.modifier_span[1]]
            cats.add(mod.category)
            f.cues.append(Match(span.start_char, span.end_char, span.text, _CUE_KIND[mod.category], "cue"))
        f.site, f.laterality = _site_for(terms, ent, term, parts, sites, sides)
        hist, beh = str(term.histology), str(term.behavior)
        if _NEG in cats:
            f.kind, f.reason = "negated", f"{ent.text!r} is negated ({_cue_text(f, 'negated')})."
        elif _FAMILY in cats:
            f.kind, f.reason = "family-history", f"{ent.text!r} is about a relative, not the patient."
        elif _AMB_YES in cats or term.kind == "ambiguous-reportable":
            f.kind = "ambiguous-reportable"
            cue = _cue_text(f, "ambiguous-reportable")
            f.reason = (f"{ent.text!r} with {cue!r}, an ambiguous term that counts as a diagnosis." if cue else
                        f"{ent.text!r} is an ambiguous term that counts as a diagnosis.")
        elif _AMB_NO in cats or term.kind == "ambiguous-not-reportable":
            f.kind = "ambiguous-not-reportable"
            cue = _cue_text(f, "ambiguous-not-reportable")
            f.reason = (f"{ent.text!r} with {cue!r}, an ambiguous term that does not count as a diagnosis." if cue
                        else f"{ent.text!r} is an ambiguous term that does not count as a diagnosis.")
        else:
            f.reason = f"{ent.text!r} is stated as a diagnosis."
        if f.kind in ("malignancy", "ambiguous-reportable"):
            excl = next((x for x in terms.exclusions if x.applies(f.site, hist, beh)), None)
            if excl is not None:
                f.kind, f.reason = excl.kind, f"{ent.text!r} at {_site_words(f.site)}: {excl.reason}"
            elif term.cns_only and f.site is not None and not _in_ranges(str(f.site), terms.cns_sites):
                f.kind = "excluded"
                f.reason = (f"{ent.text!r} at {_site_words(f.site)}: benign and borderline tumours are reportable "
                            "only in the brain and central nervous system.")
        findings.append(f)

    matches: list[Match] = []
    for f in findings:
        matches.append(Match(f.span.start_char, f.span.end_char, f.span.text, f.kind, "finding"))
        matches.extend(f.cues)
    matches = sorted(set(matches), key=lambda m: (m.start, m.end, m.role))
    counting = [f for f in findings if f.kind in ("malignancy", "ambiguous-reportable")]
    if not counting:
        if not findings:
            return ScreenResult(False, "No tumour terms were found in the report.", matches)
        return ScreenResult(False, "Not reportable: " + " ".join(f.reason for f in findings), matches)
    # The most specific counting finding (the longest phrase, then the first) gives the suggestion.
    best = max(counting, key=lambda f: (len(f.term.phrases[0]) if f.term.histology not in ("8000", "8001", "8010")
                                        else 0, -f.span.start_char))
    lat = best.laterality if best.site is not None and icdo3.is_paired_site(best.site) else (
        "0" if best.site is not None else None)
    others = [f.reason for f in findings if f is not best and f.kind not in ("malignancy", "ambiguous-reportable")]
    reason = "Reportable: " + best.reason + (" Not counted: " + " ".join(others) if others else "")
    return ScreenResult(True, reason, matches, best.site, best.term.histology,
                        best.term.behavior, lat)


def _lookup(terms: Terms, ent: Span) -> FindingTerm:
    # Target matching is case-insensitive; a hyphen may tokenise differently from the listed phrase.
    key = " ".join(re.split(r"[\s-]+", ent.text.lower()))
    for phrase, term in terms.by_phrase.items():
        if " ".join(re.split(r"[\s-]+", phrase)) == key:
            return term
    return terms.findings[0]


def _cue_text(f: _Finding, kind: str) -> str:
    return ", ".join(c.phrase for c in f.cues if c.kind == kind)


def _site_words(site: ICDO3Topography | None) -> str:
    if site is None:
        return "an unnamed site"
    return f"{site.dotted} ({icdo3.site_name(site) or 'site'})"


def _parts(text: str) -> list[tuple[int, int]]:
    """Parts of a report: lettered or numbered specimens ("A. Skin, ...") and paragraphs."""
    cuts = sorted({0, len(text), *(m.start() for m in _PART.finditer(text))})
    return [(a, b) for a, b in zip(cuts, cuts[1:], strict=False) if b > a]


def _part_of(parts: list[tuple[int, int]], pos: int) -> tuple[int, int]:
    return next((p for p in parts if p[0] <= pos < p[1]), (0, 0))


def _site_for(terms: Terms, ent: Span, term: FindingTerm, parts: list[tuple[int, int]], sites: list[Span],
              sides: list[Span]) -> tuple[ICDO3Topography | None, str | None]:
    if term.site is not None:
        return term.site, None
    part = _part_of(parts, ent.start_char)
    before = [s for s in sites if part[0] <= s.start_char < ent.start_char]
    chosen = before[-1] if before else None
    if chosen is None:
        after = [s for s in sites if s.start_char >= ent.end_char and s.sent == ent.sent]
        chosen = after[0] if after else None
    if chosen is None and sites and term.assumed_site is None:
        chosen = sites[0]
    if chosen is None:
        return term.assumed_site, None
    site = terms.sites[chosen.text.lower()] if chosen.text.lower() in terms.sites else None
    if site is None:
        return term.assumed_site, None
    # Laterality: the side word nearest the site name within its part.
    spart = _part_of(parts, chosen.start_char)
    near = [s for s in sides if spart[0] <= s.start_char < spart[1]]
    side = min(near, key=lambda s: abs(s.start_char - chosen.start_char), default=None)
    return site, (_LATERALITY_WORDS[side.text.lower()] if side is not None else "9")


@lru_cache(maxsize=1)
def default_screener() -> Screener:
    return Screener(default_terms())


def screen_text(text: str, screener: Screener | None = None) -> ScreenResult:
    """Screen a pathology (or other) report. ``reportable`` is True when at least one tumour finding
    is stated as a diagnosis or with an ambiguous term that counts, and no exclusion applies."""
    return (screener or default_screener()).screen_text(text)


# ------------------------------------------------------------------------------------------ code list


def screen_code(code: ICD10CMCode | str, terms: Terms | None = None) -> CodeScreenResult:
    """Place an ICD-10-CM diagnosis code on the casefinding list."""
    terms = terms or default_terms()
    c = ICD10CMCode(code)
    for entry in terms.codes:
        if entry.matches(str(c)):
            site = entry.site or _site_from_icd10cm(str(c))
            behavior = entry.behavior
            return CodeScreenResult(c, entry.status, f"{c.dotted}: {entry.note}", entry.id, entry.kind, site, behavior)
    return CodeScreenResult(c, "not-listed", f"{c.dotted} is not on the casefinding list ({terms.list_name}).")


def _site_from_icd10cm(code: str) -> ICDO3Topography | None:
    """The ICD-O-3 site an ICD-10-CM malignant code points at, where the two agree: C00-C80 share
    their three-character headings with ICD-O-3 topography (not C44 subdivisions, C4A, C7A/C7B or the
    secondary C77-C79); leukemias and myeloma are bone marrow."""
    head = code[:3]
    if head in ("C90", "C91", "C92", "C93", "C94", "C95"):
        return ICDO3Topography("C421")
    if not ("C00" <= head <= "C76" or head == "C80") or head == "C44" or not head[1:].isdigit():
        return None
    if head == "C80":
        return ICDO3Topography("C809")
    if len(code) >= 4 and icdo3.is_valid_site(code[:4]):
        return ICDO3Topography(code[:4])
    if icdo3.is_valid_site(head + "9"):
        return ICDO3Topography(head + "9")
    return None


# ---------------------------------------------------------------------------------------- same tumour


def same_tumor(existing: list[TumorKey], new: TumorKey, terms: Terms | None = None) -> TumorMatch:
    """Whether ``new`` is a further report of one of the ``existing`` tumours (link it) or a new one.

    The simple form of the multiple primary rules used here: the same primary site to three characters
    (C50.4 and C50.9 are the same breast), the same laterality where the site is paired (an unknown
    side on either report does not rule a match out), the same histology group (the first three
    digits; among hematopoietic neoplasms 9590-9993 the whole code), and diagnosed within the site's
    timing window from ``casefinding_terms.toml``. The registrar confirms the link on the abstract.
    """
    terms = terms or default_terms()
    reasons: list[str] = []
    for i, old in enumerate(existing):
        why = _differs(old, new, terms)
        if why is None:
            tid = f" ({old.tumor_id})" if old.tumor_id else ""
            return TumorMatch(i, f"Same tumour as existing tumour {i + 1}{tid}: same site {icdo3.site_heading(new.site)}, "
                                 "laterality, histology group and within the timing window; link the report.")
        reasons.append(f"tumour {i + 1}: {why}")
    if not existing:
        return TumorMatch(None, "The patient has no tumour in the registry yet: this is a new case.")
    return TumorMatch(None, "A new tumour, not a report of an existing one (" + "; ".join(reasons) + ").")


def _differs(old: TumorKey, new: TumorKey, terms: Terms) -> str | None:
    if icdo3.site_heading(old.site) != icdo3.site_heading(new.site):
        return f"different site ({old.site.dotted} vs {new.site.dotted})"
    if icdo3.is_paired_site(new.site) or icdo3.is_paired_site(old.site):
        a, b = old.laterality or "9", new.laterality or "9"
        if a != b and "9" not in (a, b):
            return f"different laterality ({a} vs {b})"
    if icdo3.is_hematopoietic(old.histology) and icdo3.is_hematopoietic(new.histology):
        if old.histology != new.histology:
            return f"different hematopoietic histology ({old.histology} vs {new.histology})"
    elif icdo3.histology_group(old.histology) != icdo3.histology_group(new.histology):
        return f"different histology ({old.histology} vs {new.histology})"
    if old.diagnosis_date is not None and new.diagnosis_date is not None:
        window = next((d for rng, d in terms.days_by_site if _in_ranges(str(new.site), (rng,))), terms.default_days)
        gap = abs((new.diagnosis_date - old.diagnosis_date).days)
        if gap > window:
            return f"diagnosed {gap} days apart, beyond the {window}-day window for this site"
    return None
