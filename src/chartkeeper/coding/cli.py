"""CLI: ``chartkeeper code ...`` (a Typer sub-app the top-level CLI registers as ``code``).

    chartkeeper code search "acute on chronic systolic CHF" [--system icd10cm|icd10pcs] [--json] [--limit 10]
    chartkeeper code search --batch statements.txt          # one JSON line per statement
    chartkeeper code check E11.9 [--date 2026-01-15]         # can this code be reported?
    chartkeeper code hcpcs-file HCPC2026_JAN_ANWEB.txt       # read a HCPCS/CPT file, list its rejects
    chartkeeper code hcpcs-import HCPC2026_JAN_ANWEB.txt     # load it into the code tables
    chartkeeper code suggest ENCOUNTER_ID|FILE [--setting inpatient|outpatient] [--json]
    chartkeeper code regroup [--open | --all] [ENCOUNTER_ID ...] [--json]   # working MS-DRGs

Searching reads no patient data, so it needs no login and writes no audit entry; ``suggest`` on an
encounter runs as a system job through the coding service (policy check and audit), and so does
``regroup``.
"""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

code_app = typer.Typer(help="ICD-10-CM/PCS code search and checks; HCPCS/CPT files.", no_args_is_help=True)
_out = Console()
_err = Console(stderr=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    _err.print(f"[red]{escape(message)}[/red]")
    return typer.Exit(code)


def _system(value: str) -> str:
    v = value.strip().lower().replace("-", "")
    if v not in ("icd10cm", "icd10pcs"):
        raise _fail(f"--system must be icd10cm or icd10pcs; it is {value!r}.")
    return v


@code_app.command("search")
def search_cmd(
    text: str = typer.Argument(None, help="The diagnostic statement (or procedure), as written."),
    system: str = typer.Option("icd10cm", "--system", help="icd10cm (diagnoses) or icd10pcs (procedures)."),
    limit: int = typer.Option(10, "--limit", min=1, max=100, help="How many codes to show."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list of {code, title, score}, best first."),
    batch: Path = typer.Option(None, "--batch", help="A file of statements, one a line: prints one JSON line each."),
) -> None:
    """Ranked codes for a statement: billable codes with their titles and the notes that apply; a code
    that still needs its 7th character lists the characters to choose from."""
    from chartkeeper.coding.encoder import search

    sys_ = _system(system)
    if batch is not None:
        if text:
            raise _fail("Give either a statement or --batch FILE, not both.")
        _batch(batch, sys_, limit)
        return
    if not text or not text.strip():
        raise _fail('Give the statement to search for, e.g. chartkeeper code search "COPD exacerbation".')
    hits = search(text, system=sys_, limit=limit)
    if as_json:
        typer.echo(json.dumps([{"code": h.dotted, "title": h.title, "score": round(h.score, 4)} for h in hits]))
        return
    if not hits:
        _err.print(f"No {sys_.upper()} code matches {text!r}: try other words, or fewer of them.")
        raise typer.Exit(1)
    table = Table(title=f"{sys_.upper()} codes for {escape(text)!r}")
    table.add_column("code", style="bold")
    table.add_column("title")
    table.add_column("score", justify="right")
    table.add_column("")
    for h in hits:
        flag = "needs 7th character" if h.needs_seventh else ("" if h.billable else "header")
        if h.header:
            flag = (flag + " " if flag else "") + f"(default of {h.header})"
        table.add_row(h.dotted, escape(h.title), f"{h.score:.2f}", flag)
    _out.print(table)
    top = hits[0]
    if top.needs_seventh:
        _out.print(f"{top.dotted} needs a 7th character:")
        for ch, meaning in top.seventh_characters:
            _out.print(f"  {ch}  {escape(meaning)}")
    for kind in ("excludes1", "excludes2", "code_first", "use_additional_code", "code_also"):
        if lines := top.notes.get(kind):
            label = {"excludes1": "Excludes1", "excludes2": "Excludes2", "code_first": "Code first",
                     "use_additional_code": "Use additional code", "code_also": "Code also"}[kind]
            _out.print(f"[bold]{label}[/bold] ({top.dotted}): " + escape("; ".join(lines[:6]))
                       + (" ..." if len(lines) > 6 else ""))


def _batch(path: Path, system: str, limit: int) -> None:
    from chartkeeper.coding.encoder import search, warm

    try:
        statements = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(f"Cannot read {path}: {getattr(exc, 'strerror', None) or exc}. Give a UTF-8 text file, "
                    "one statement a line.") from None
    warm(system)
    with Progress(TextColumn("[bold]search"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=_err, disable=len(statements) < 200) as bar:
        task = bar.add_task("", total=len(statements))
        for line in statements:
            hits = search(line, system=system, limit=limit) if line.strip() else []
            sys.stdout.write(json.dumps({"statement": line, "hits": [
                {"code": h.dotted, "title": h.title, "score": round(h.score, 4)} for h in hits]}) + "\n")
            bar.advance(task)
    sys.stdout.flush()


@code_app.command("check")
def check_cmd(
    code: str = typer.Argument(..., help="The code, with or without its dot."),
    system: str = typer.Option("icd10cm", "--system", help="icd10cm or icd10pcs."),
    on: str = typer.Option(None, "--date", help="Date of service (YYYY-MM-DD): is the code valid then?"),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Whether a code can be reported: exists, billable, complete (7th character) and valid on the date."""
    from chartkeeper.coding.codesets import icd10cm, icd10pcs

    day = None
    if on:
        try:
            day = date.fromisoformat(on)
        except ValueError:
            raise _fail(f"--date must be a date like 2026-01-31; it is {on!r}.") from None
    sys_ = _system(system)
    result = (icd10cm if sys_ == "icd10cm" else icd10pcs).check(code, day)
    if as_json:
        typer.echo(json.dumps({"code": result.code, "system": result.system, "ok": result.ok, "title": result.title,
                                    "billable": result.billable, "problems": list(result.problems),
                                    "children": list(result.children)}))
    elif result.ok:
        _out.print(f"{result.code}  {escape(result.title or '')}: billable.")
    else:
        if result.title:
            _out.print(f"{result.code}  {escape(result.title)}")
        for p in result.problems:
            _err.print(f"[red]{escape(p)}[/red]")
    if not result.ok:
        raise typer.Exit(1)


@code_app.command("hcpcs-file")
def hcpcs_file_cmd(
    path: Path = typer.Argument(..., help="CMS's HCPCS annual file (ANWEB .txt or CSV) or a code,description CSV."),
    as_json: bool = typer.Option(False, "--json", help="Print counts and rejects as JSON."),
) -> None:
    """Read a HCPCS/CPT file and report what it holds and each line rejected (nothing is stored)."""
    from chartkeeper.coding.hcpcs import HcpcsFileError, parse_hcpcs_file

    try:
        rows, rejects = parse_hcpcs_file(path)
    except HcpcsFileError as exc:
        raise _fail(str(exc)) from None
    procedures = sum(1 for r in rows if r.kind == "procedure")
    if as_json:
        typer.echo(json.dumps({"procedures": procedures, "modifiers": len(rows) - procedures,
                                    "rejects": [{"line": r.line, "reason": r.reason} for r in rejects]}))
        return
    _out.print(f"{path.name}: {procedures} codes and {len(rows) - procedures} modifiers read; {len(rejects)} lines rejected.")
    for r in rejects[:50]:
        _err.print(f"  line {r.line}: {escape(r.reason)}")
    if len(rejects) > 50:
        _err.print(f"  ... and {len(rejects) - 50} more (use --json for all).")


@code_app.command("hcpcs-import")
def hcpcs_import_cmd(
    path: Path = typer.Argument(..., help="CMS's HCPCS annual file (ANWEB .txt or CSV) or a code,description CSV."),
    as_json: bool = typer.Option(False, "--json", help="Print counts and rejects as JSON."),
) -> None:
    """Load a HCPCS Level II (or licensed CPT) file into the code tables: from then on those codes are
    "verified" rather than checked for format only. Good rows load; each reject is listed."""
    from chartkeeper.cli import cli_principal, open_db
    from chartkeeper.coding.service import CodingError, CodingService

    try:
        out = CodingService(open_db()).import_hcpcs(cli_principal("hcpcs-import"), path)
    except CodingError as exc:
        raise _fail(exc.message) from None
    if as_json:
        typer.echo(json.dumps({"source": out.source, "added": out.added, "updated": out.updated,
                               "unchanged": out.unchanged,
                               "rejects": [{"line": line, "reason": why} for line, why in out.rejects]}))
        return
    _out.print(f"{out.source}: {out.added} codes added, {out.updated} updated, {out.unchanged} unchanged; "
               f"{len(out.rejects)} lines rejected.")
    for line, why in out.rejects[:50]:
        _err.print(f"  line {line}: {escape(why)}")


@code_app.command("suggest")
def suggest_cmd(
    target: str = typer.Argument(..., help="An encounter id (its documents are read), or a text file of a note."),
    setting: str = typer.Option(None, "--setting", help="inpatient or outpatient (default: the encounter's; "
                                                       "inpatient for a file)."),
    as_json: bool = typer.Option(False, "--json", help="Print the suggestions as JSON."),
) -> None:
    """Computer-assisted coding: proposed codes with the sentence that supports each. For an encounter
    the suggestions are stored for the coder to accept, edit or reject."""
    from chartkeeper.coding import cac

    if setting is not None and setting not in ("inpatient", "outpatient"):
        raise _fail(f"--setting must be inpatient or outpatient; it is {setting!r}.")
    path = Path(target)
    rows: list[dict[str, object]]
    if path.is_file():
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _fail(f"{path.name} is not UTF-8 text (byte {exc.start} cannot be read): save the note as "
                        "UTF-8 (or plain ASCII) and try again; nothing was coded.") from None
        made = cac.suggest_text(text, setting or "inpatient", document_id=path.name)  # type: ignore[arg-type]
        rows = [{"kind": s.kind, "code": str(s.code), "title": s.title, "principal": s.principal,
                 "reason": s.reason, "evidence": [{"document": e.document_id, "sentence": e.sentence,
                                                    "start": e.start, "end": e.end} for e in s.evidence]}
                for s in made]
    else:
        from chartkeeper.cli import cli_principal, open_db
        from chartkeeper.coding.service import CodingError, CodingService

        if setting is not None:
            raise _fail("--setting applies to a file; an encounter is coded in its own setting.")
        try:
            states = CodingService(open_db()).suggest(cli_principal("coding-suggest"), target)
        except CodingError as exc:
            raise _fail(exc.message) from None
        rows = [{"kind": s.kind.value, "code": str(s.code), "title": s.title, "decision": s.decision.value,
                 "evidence": s.evidence} for s in states]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    table = Table("kind", "code", "title", "evidence")
    for r in rows:
        ev = r["evidence"][0] if r["evidence"] else {}  # type: ignore[index]
        table.add_row(str(r["kind"]), str(r["code"]) + (" *" if r.get("principal") else ""), escape(str(r["title"])),
                      escape(str(ev.get("sentence", ""))[:80]))
    _out.print(table)


@code_app.command("regroup")
def regroup_cmd(
    encounters: list[str] = typer.Argument(None, help="Encounter ids to regroup (default: every open inpatient stay)."),
    everything: bool = typer.Option(False, "--all/--open", help="--open (default): stays not yet final; --all: "
                                                                 "final stays too (after a grouper update)."),
    as_json: bool = typer.Option(False, "--json", help="Print the counts and each stay left out as JSON."),
    workers: int = typer.Option(-1, "--workers", help="Worker processes that edit and group while this one reads "
                                                       "and stores (default: one per processor but one; 0: none). "
                                                       "Runs of fewer than 400 stays use none."),
) -> None:
    """Working MS-DRGs: group inpatient stays with their codes as they are now and store the MS-DRG,
    weight and edit counts on each abstract (the coding queue shows them). Stays that cannot be grouped
    are listed with the reason; the others are kept. A stay whose codes a coder saves while the command
    runs keeps what the coder saved and is regrouped by the next run."""
    from chartkeeper.cli import cli_principal, open_db
    from chartkeeper.coding import workers as worker_pool
    from chartkeeper.coding.service import WORKING_POOL_MIN, CodingError, CodingService

    if encounters and everything:
        raise _fail("Give encounter ids or --all, not both: --all regroups every inpatient stay.")
    if workers < -1:
        raise _fail(f"--workers is {workers}: give 0 (none) or more worker processes.")
    if workers == -1:
        workers = worker_pool.default_workers()
    if workers and not (encounters and len(encounters) < WORKING_POOL_MIN):
        worker_pool.start(workers)  # forked now, before the database engine and the progress bar start threads
    svc = CodingService(open_db())
    with Progress(TextColumn("[bold]regroup"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=_err, disable=as_json) as bar:
        task = bar.add_task("", total=None)

        def step(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        try:
            counts = svc.working_drgs(cli_principal("coding-regroup"), encounters or None,
                                      include_final=everything, progress=step, workers=workers)
        except CodingError as exc:
            raise _fail(exc.message) from None
    if as_json:
        typer.echo(json.dumps(counts.as_dict()))
        return
    _out.print(f"{counts.stays} stay{'s' if counts.stays != 1 else ''} grouped: {counts.grouped} to an MS-DRG, "
               f"{counts.ungroupable} not groupable, {counts.with_errors} with error edits; {counts.changed} working "
               f"MS-DRG{'s' if counts.changed != 1 else ''} changed; {len(counts.rejects)} left out"
               + (f"; assessed in {counts.workers} worker process{'es' if counts.workers != 1 else ''}."
                  if counts.workers else "."))
    if counts.recoded:
        n = len(counts.recoded)
        _out.print(f"{n} stay{'s' if n != 1 else ''} had {'their' if n != 1 else 'its'} codes saved while the "
                   f"command ran and kept what the coder saved; run the command again to regroup "
                   f"{'them' if n != 1 else 'it'}: {', '.join(escape(e) for e in counts.recoded[:10])}"
                   f"{' ...' if n > 10 else ''}")
    for eid, why in counts.rejects[:50]:
        _err.print(f"  {escape(eid)}: {escape(why)}")
    if len(counts.rejects) > 50:
        _err.print(f"  ... and {len(counts.rejects) - 50} more (use --json for all).")
