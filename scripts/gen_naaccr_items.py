#!/usr/bin/env python3
"""Generate the NAACCR item tables ``src/chartkeeper/registry/naaccr_items/naaccr-items-<version>.json``.

Usage::

    .venv/bin/python scripts/gen_naaccr_items.py [DICTIONARY_DIR] [--check]

DICTIONARY_DIR defaults to ``../shared/data/naaccr/dictionaries`` beside the checkout and holds NAACCR's
base dictionaries ``naaccr-dictionary-NNN.xml`` (published by NAACCR with the NAACCR XML reference
library). Each becomes one table: the dictionary's URI, versions and description, and one row per item
``[naaccrId, naaccrNum, naaccrName, length, dataType, parentXmlElement, recordTypes, padding,
allowUnlimitedText, trim]`` in the dictionary's own order, one row a line so that a new version diffs
readably. ``--check`` writes nothing and exits 1 if a table differs from what it would write.

The oldest table also carries ``RETIRED_ITEMS`` below (and lists them under ``"retired"``): items of the
NAACCR 18-22 base dictionaries that NAACCR retired in version 23 but that files of those versions (the
NAACCR XML reference samples among them) still carry. ``chartkeeper.registry.naaccr.dictionary`` uses
them only to read files older than the oldest table; the table's own version leaves them out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from chartkeeper.registry.naaccr import Dictionary, Item, load_dictionary  # noqa: E402

OUT = ROOT / "src" / "chartkeeper" / "registry" / "naaccr_items"
DEFAULT_DIR = ROOT.parent / "shared" / "data" / "naaccr" / "dictionaries"

# Facts from the NAACCR 22 base dictionary (naaccr-dictionary-220.xml): items retired in version 23.
# Row layout as in the tables.
RETIRED_ITEMS: list[list[Any]] = [
    ["seerCodingSysCurrent", 2120, "SEER Coding Sys--Current", 1, "mixed", "Tumor", "AMCI", "none", False, True],
    ["seerTypeOfFollowUp", 2180, "SEER Type of Follow-Up", 1, "digits", "Tumor", "AMCI", "none", False, True],
    ["seerRecordNumber", 2190, "SEER Record Number", 2, "digits", "Tumor", "AMCI", "leftZero", False, True],
]


def tables(src: Path) -> dict[str, str]:
    """File name -> text of every table the dictionaries in ``src`` make."""
    dicts = sorted((load_dictionary(p) for p in src.glob("naaccr-dictionary-*.xml")), key=lambda d: int(d.version or 0))
    if not dicts:
        raise SystemExit(f"no naaccr-dictionary-*.xml under {src}")
    out: dict[str, str] = {}
    for k, d in enumerate(dicts):
        table = d.to_table()
        if k == 0:
            retired = [Item.from_row(r) for r in RETIRED_ITEMS if r[0] not in d.items]
            table["items"] += [i.to_row() for i in retired]
            table["retired"] = sorted(i.naaccr_id for i in retired)
        Dictionary.from_table(table)  # the table must load
        out[f"naaccr-items-{d.version}.json"] = render(table)
    return out


def render(table: dict[str, Any]) -> str:
    head = {k: v for k, v in table.items() if k != "items"}
    lines = ["{", *(f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()), '  "items": [']
    rows = [f"    {json.dumps(r, ensure_ascii=False)}" for r in table["items"]]
    lines.append(",\n".join(rows))
    lines += ["  ]", "}", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", nargs="?", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--check", action="store_true", help="compare with the shipped tables instead of writing")
    args = ap.parse_args()
    made = tables(args.src)
    if args.check:
        stale = [n for n, text in made.items() if not (OUT / n).exists() or (OUT / n).read_text("utf-8") != text]
        for n in stale:
            print(f"{n} differs from what {args.src} makes: run scripts/gen_naaccr_items.py", file=sys.stderr)
        return 1 if stale else 0
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "__init__.py").write_text('"""Generated NAACCR item tables (scripts/gen_naaccr_items.py)."""\n')
    for n, text in made.items():
        (OUT / n).write_text(text, "utf-8")
        rows = text.count("\n    [")
        print(f"wrote {OUT / n} ({rows} items)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
