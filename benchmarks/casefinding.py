"""Casefinding and registry edits: speed, and what the context rules buy over a keyword screen.

Screening: a generated set of pathology report sentences (sites x tumour words x the traps: stated,
negated, ambiguous terms that count, ambiguous terms that do not, skin basal/squamous, family history),
each labelled by the rule it exercises, is screened by

  * baseline: a keyword screen (a case-insensitive regular expression over the same tumour words,
    the way a plain text search of pathology reports works), and
  * ``screen_text`` (medspaCy target matcher + ConText, exclusions, site attribution).

Both are timed over the same reports (median of --runs runs) and scored against the labels.

Edits: ``run_edits`` over the NAACCR sample abstracts (../shared/data, skipped with a note when
absent), against the baseline of reading the same files into item dicts.

    .venv/bin/python benchmarks/casefinding.py [--runs 5]
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from chartkeeper.registry.casefinding import default_screener, screen_text
from chartkeeper.registry.edits import run_edits

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
NS = "{http://naaccr.org/naaccrxml}"

SITES = ["Left breast, core biopsy", "Right upper lobe of lung, wedge", "Sigmoid colon, biopsy", "Prostate, needle cores",
         "Bladder, TURBT", "Right kidney, nephrectomy", "Stomach, endoscopic biopsy", "Thyroid, FNA"]
WORDS = ["adenocarcinoma", "carcinoma", "malignant neoplasm", "lymphoma", "sarcoma"]
TRAPS: list[tuple[str, bool]] = [
    ("{site}: {word}.", True),
    ("{site}: negative for {word}.", False),
    ("{site}: no evidence of {word}.", False),
    ("{site}: consistent with {word}.", True),
    ("{site}: suspicious for {word}.", True),
    ("{site}: {word} cannot be ruled out.", False),
    ("{site}: possible {word}.", False),
    ("{site}: equivocal for {word}, see comment.", False),
    ("Clinical history: family history of {word}. {site}: benign tissue.", False),
]
SKIN = [("Skin, left cheek, shave: basal cell carcinoma.", False),
        ("Skin, right forearm, excision: squamous cell carcinoma.", False),
        ("Skin of back, excision: malignant melanoma.", True)]


def reports() -> list[tuple[str, bool]]:
    out = [(t.format(site=s, word=w), label) for (t, label), s, w in itertools.product(TRAPS, SITES, WORDS)]
    return out + SKIN * 8


KEYWORDS = re.compile(r"carcinoma|malignan|lymphoma|sarcoma|melanoma|leukemia|cancer", re.I)


def keyword_screen(text: str) -> bool:
    return KEYWORDS.search(text) is not None


def timed(fn: Callable[[str], bool], docs: list[str], runs: int) -> tuple[float, list[bool]]:
    times = []
    result: list[bool] = []
    for _ in range(runs):
        t = time.perf_counter()
        result = [fn(d) for d in docs]
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def read_samples(paths: list[Path]) -> list[tuple[dict[str, str], list[dict[str, str]]]]:
    from lxml import etree

    out = []
    for path in paths:
        root = etree.parse(gzip.open(path)).getroot()
        for p in root.iter(f"{NS}Patient"):
            items = {i.get("naaccrId"): i.text or "" for i in p.findall(f"{NS}Item")}
            tumors = [{i.get("naaccrId"): i.text or "" for i in t.findall(f"{NS}Item")} for t in p.findall(f"{NS}Tumor")]
            out.append((items, tumors))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    t = time.perf_counter()
    default_screener()
    load_s = time.perf_counter() - t
    data = reports()
    docs, labels = [d for d, _ in data], [label for _, label in data]
    print(f"Screening {len(docs)} labelled report sentences ({sum(labels)} reportable), median of {args.runs} runs;"
          f" pipeline built once in {load_s:.2f} s.\n")
    print(f"{'method':<28} {'reports/s':>10} {'ms/report':>10} {'correct':>9} {'false +':>8} {'false -':>8}")
    for name, fn in (("keyword regex (baseline)", keyword_screen), ("screen_text", lambda d: screen_text(d).reportable)):
        secs, got = timed(fn, docs, args.runs)
        fp = sum(1 for g, e in zip(got, labels, strict=True) if g and not e)
        fn_ = sum(1 for g, e in zip(got, labels, strict=True) if e and not g)
        print(f"{name:<28} {len(docs) / secs:>10,.0f} {1000 * secs / len(docs):>10.2f} "
              f"{len(docs) - fp - fn_:>5}/{len(docs):<3} {fp:>8} {fn_:>8}")

    samples = sorted((SHARED / "naaccr" / "samples").glob("*-abstract-1000.xml.gz")) if SHARED.is_dir() else []
    if not samples:
        print("\nEdits: skipped, NAACCR samples not found at ../shared/data/naaccr/samples.")
        return
    read_times, edit_times = [], []
    n_edits = 0
    patients: list[tuple[dict[str, str], list[dict[str, str]]]] = []
    for _ in range(args.runs):
        t = time.perf_counter()
        patients = read_samples(samples)
        read_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        n_edits = sum(len(run_edits(p, ts)) for p, ts in patients)
        edit_times.append(time.perf_counter() - t)
    n_tumors = sum(len(ts) for _, ts in patients)
    print(f"\nEdits over {len(samples)} NAACCR sample files ({len(patients)} patients, {n_tumors} tumours), "
          f"median of {args.runs} runs:\n")
    print(f"{'step':<36} {'seconds':>8} {'tumours/s':>10}")
    r, e = statistics.median(read_times), statistics.median(edit_times)
    print(f"{'read XML into item dicts (baseline)':<36} {r:>8.3f} {n_tumors / r:>10,.0f}")
    print(f"{'run_edits (all default edits)':<36} {e:>8.3f} {n_tumors / e:>10,.0f}")
    print(f"\n{n_edits} edits reported.")


if __name__ == "__main__":
    main()
