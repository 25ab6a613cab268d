"""Computer-assisted coding: precision and recall of suggested codes on labelled encounters, and speed.

Reads benchmarks/data/cac/eval.jsonl (or --set dev), codes every encounter with
``chartkeeper.coding.cac.suggest`` and compares the suggested codes with the gold codes (micro-averaged
over all encounters; a code counts once per encounter). Also reports how often the principal /
first-listed diagnosis is right.

Baseline, measured in the same run: the same lexicon and the same medspaCy phrase matcher, with every
match coded as written (refinements for laterality and type kept) but without ConText (negation,
uncertainty, history, family), sections, the setting rules, combination codes or symptom suppression.
The difference is what those rules are worth.

Speed: documents per second for the whole ``suggest`` call (median of --runs runs, after a warm-up),
for the baseline, and for the full pipeline with medspaCy's PyRuSH sentence splitter instead of the
line-based splitter.

Targets: recall >= 85% at precision >= 80%; >= 20 documents per second on the 2-core machine.

    .venv/bin/python benchmarks/cac.py [--set eval|dev] [--runs 3] [--errors]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from chartkeeper.coding.cac import DocumentText, _best_refinement, _pipeline, _window, suggest
from chartkeeper.coding.codes import Code, ICD10CMCode

DATA = Path(__file__).resolve().parent / "data" / "cac"


def shown(code: Code) -> str:
    return code.dotted if isinstance(code, ICD10CMCode) else str(code)


def load(name: str) -> list[dict[str, Any]]:
    with (DATA / f"{name}.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def docs_of(row: dict[str, Any]) -> list[DocumentText]:
    return [DocumentText(d["id"], d["kind"], d["text"]) for d in row["documents"]]


def full(row: dict[str, Any], splitter: str = "lines") -> tuple[set[str], str | None]:
    out = suggest(docs_of(row), row["setting"], sentence_splitter=splitter)
    principal = next((shown(s.code) for s in out if s.principal and s.kind == "diagnosis"), None)
    return {shown(s.code) for s in out}, principal


def baseline(row: dict[str, Any]) -> tuple[set[str], str | None]:
    pipe = _pipeline(None, "lines")
    lx = pipe.lexicon
    codes: list[str] = []
    for d in row["documents"]:
        doc = pipe.nlp(d["text"])
        for ent in doc.ents:
            c = lx.concepts[ent.label_]
            window, offset = _window(d["text"], ent.sent.start_char, ent.sent.end_char, ent.start_char, ent.end_char)
            r = _best_refinement(c, window, offset, ent.start_char, ent.end_char) if c.refine else None
            if c.is_procedure:
                if row["setting"] == "inpatient":
                    got = r.codes if r and r.codes else c.codes
                else:
                    h = (r.hcpcs if r and r.hcpcs else None) or c.hcpcs
                    got = (h,) if h else ()
                got = tuple(got) + c.also
            else:
                got = (r.codes if r and r.codes else c.codes) + c.also
            codes.extend(shown(x) for x in got)
    return set(codes), (codes[0] if codes else None)


def score(rows: list[dict[str, Any]], results: list[tuple[set[str], str | None]]) -> dict[str, float]:
    tp = fp = fn = 0
    principal_ok = 0
    for row, (got, principal) in zip(rows, results, strict=True):
        gold = set(row["gold"])
        tp += len(got & gold)
        fp += len(got - gold)
        fn += len(gold - got)
        principal_ok += principal == row["principal"]
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {
        "precision": p,
        "recall": r,
        "f1": 2 * p * r / (p + r) if p + r else 0.0,
        "principal": principal_ok / len(rows),
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def timed(fn: Any, rows: list[dict[str, Any]], runs: int) -> tuple[list[tuple[set[str], str | None]], float]:
    ndocs = sum(len(r["documents"]) for r in rows)
    rates = []
    results: list[tuple[set[str], str | None]] = []
    for _ in range(runs):
        t = time.perf_counter()
        results = [fn(r) for r in rows]
        rates.append(ndocs / (time.perf_counter() - t))
    return results, statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", default="eval", choices=["eval", "dev"])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--errors", action="store_true", help="print each encounter's missed and extra codes")
    args = ap.parse_args()
    rows = load(args.set)
    ndocs = sum(len(r["documents"]) for r in rows)
    t = time.perf_counter()
    full(rows[0])
    baseline(rows[0])
    full(rows[0], "pyrush")
    warm = time.perf_counter() - t

    res_full, rate_full = timed(full, rows, args.runs)
    res_base, rate_base = timed(baseline, rows, args.runs)
    res_rush, rate_rush = timed(lambda r: full(r, "pyrush"), rows, args.runs)
    s_full, s_base, s_rush = score(rows, res_full), score(rows, res_base), score(rows, res_rush)

    print(
        f"CAC on {args.set}: {len(rows)} encounters, {ndocs} documents "
        f"({sum(r['setting'] == 'inpatient' for r in rows)} inpatient), {sum(len(r['gold']) for r in rows)} gold codes; "
        f"pipeline load {warm:.1f}s; speed = median of {args.runs} runs"
    )
    print(f"{'method':58} {'precision':>9} {'recall':>7} {'F1':>6} {'principal':>9} {'docs/s':>7}")
    for name, s, rate in (
        ("baseline: lexicon match only (no ConText/sections/rules)", s_base, rate_base),
        ("CAC: + ConText, sections, setting and combination rules", s_full, rate_full),
        ("CAC with medspaCy PyRuSH sentence splitter", s_rush, rate_rush),
    ):
        print(f"{name:58} {s['precision']:9.1%} {s['recall']:7.1%} {s['f1']:6.1%} {s['principal']:9.1%} {rate:7.1f}")
    print(
        f"targets: recall >= 85% at precision >= 80%; >= 20 documents/s  "
        f"(CAC tp={s_full['tp']} fp={s_full['fp']} fn={s_full['fn']})"
    )
    if args.errors:
        for row, (got, principal) in zip(rows, res_full, strict=True):
            gold = set(row["gold"])
            if got != gold or principal != row["principal"]:
                print(
                    f"{row['id']} {row['setting']}: missed {sorted(gold - got)} extra {sorted(got - gold)} "
                    f"principal {principal} (gold {row['principal']})"
                )


if __name__ == "__main__":
    main()
