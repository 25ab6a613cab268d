"""How fast does NAACCR XML stream in and out, and does memory stay flat as files grow?

Builds NAACCR XML files of 10,000 and 100,000 tumours in a temporary directory by repeating the
patients of a 1,000-tumour NAACCR XML reference sample (../shared/data/naaccr/samples), then times,
each in a fresh process so that its peak RSS is its own:

* ``floor``: plain ``lxml.etree.iterparse`` of the same file, clearing each Patient (what parsing costs
  at all, with no item handling);
* ``read``: ``chartkeeper.registry.naaccr.read`` (dictionary lookups, value checks, rejects);
* ``write floor``: ``lxml.etree.xmlfile`` writing the same patients' items as they come, no checks, no order;
* ``write``: ``chartkeeper.registry.naaccr.write`` (version and record-type filtering, value checks,
  dictionary order), fed the sample's patients over and over from a generator.

Prints a markdown table: median seconds, tumours per second and peak RSS per phase and file size.

Usage::

    .venv/bin/python benchmarks/naaccr.py [--data ../shared/data] [--sample v240-abstract] [--runs 3]
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NS = "{http://naaccr.org/naaccrxml}"


def build(sample: Path, tumours: int, out: Path) -> int:
    """Repeat the sample's patients until the file holds at least ``tumours`` tumours; returns the count."""
    text = gzip.decompress(sample.read_bytes())
    start, end = text.index(b"<Patient>"), text.rindex(b"</Patient>") + len(b"</Patient>")
    block, per = text[start:end], text.count(b"<Tumor>")
    copies = -(-tumours // per)
    with out.open("wb") as f:
        f.write(text[:start])
        for _ in range(copies):
            f.write(block)
            f.write(b"\n    ")
        f.write(text[end:])
    return copies * per


def phase(name: str, path: Path, sample: Path, tumours: int) -> dict[str, float]:
    """Run one phase in this process; returns seconds, tumours handled and peak RSS (MiB)."""
    from lxml import etree

    from chartkeeper.registry import naaccr

    t0 = time.perf_counter()
    done = 0
    if name == "floor":
        for _, el in etree.iterparse(str(path), events=("end",), tag=NS + "Patient"):
            done += sum(1 for c in el if c.tag == NS + "Tumor")
            el.clear(keep_tail=False)
            while el.getprevious() is not None:
                del el.getparent()[0]
    elif name == "read":
        reader = naaccr.read(path)
        for x in reader:
            if isinstance(x, naaccr.Reject):
                raise SystemExit(f"unexpected reject: {x}")
        done = reader.tumors
    else:
        header, patients, rejects = naaccr.read_all(sample)
        assert header is not None and not rejects
        per = sum(len(p.tumors) for p in patients)
        copies = -(-tumours // per)

        def stream() -> Iterator[naaccr.NaaccrPatient]:
            for _ in range(copies):
                yield from patients
        out = path.with_suffix(".out.xml")
        version = (header.dictionary.read_as if header.dictionary else None) or header.version
        t0 = time.perf_counter()
        if name == "write":
            report = naaccr.write(out, header, stream(), version, header.record_type)
            done = report.tumors
        else:  # write floor
            with open(out, "wb") as f, etree.xmlfile(f, encoding="UTF-8") as xf:
                xf.write_declaration()
                with xf.element(NS + "NaaccrData", nsmap={None: NS[1:-1]}):
                    for p in stream():
                        with xf.element(NS + "Patient"):
                            for k, v in p.items.items():
                                with xf.element(NS + "Item", naaccrId=k):
                                    xf.write(v)
                            for t in p.tumors:
                                with xf.element(NS + "Tumor"):
                                    for k, v in t.items():
                                        with xf.element(NS + "Item", naaccrId=k):
                                            xf.write(v)
                        done += len(p.tumors)
        out.unlink()
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "tumours": done, "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--sample", default="v240-abstract", help="which 1,000-tumour sample: v240-abstract, v230-incidence, ...")
    ap.add_argument("--runs", type=int, default=3, help="runs per phase at 10,000 tumours (100,000: one run)")
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--phase", nargs=4, metavar=("NAME", "PATH", "SAMPLE", "TUMOURS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        name, path, sample, tumours = args.phase
        print(json.dumps(phase(name, Path(path), Path(sample), int(tumours))))
        return 0

    sample = args.data / "naaccr" / "samples" / f"naaccr-xml-sample-{args.sample}-1000.xml.gz"
    if not sample.exists():
        raise SystemExit(f"no sample {sample} (need ../shared/data)")
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            path = Path(tmp) / f"big-{size}.xml"
            n = build(sample, size, path)
            mib = path.stat().st_size / 2**20
            runs = args.runs if size <= 10_000 else 1
            for name in ("floor", "read", "write floor", "write"):
                results = []
                for _ in range(runs):
                    cp = subprocess.run([sys.executable, __file__, "--phase", name, str(path), str(sample), str(n)],
                                        capture_output=True, text=True, check=True)
                    results.append(json.loads(cp.stdout))
                secs = statistics.median(r["seconds"] for r in results)
                done = results[0]["tumours"]
                rss = max(r["rss_mib"] for r in results)
                rows.append((name, done, f"{mib:.0f}", runs, secs, done / secs, rss))
            path.unlink()
    print(f"NAACCR XML streaming, sample {args.sample} repeated; Python {platform.python_version()}, "
          f"{platform.machine()}; medians of the runs shown\n")
    print("| phase | tumours | file MiB | runs | median s | tumours/s | peak RSS MiB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, done, mib, runs, secs, rate, rss in rows:
        print(f"| {name} | {done:,} | {mib} | {runs} | {secs:.2f} | {rate:,.0f} | {rss:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
