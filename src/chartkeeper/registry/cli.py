"""CLI: ``chartkeeper registry ...`` (a Typer sub-app the top-level CLI registers). Acts as a system
job; everything it does is audited."""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from chartkeeper.fhir.errors import FhirError

registry_app = typer.Typer(help="Cancer registry: casefinding, abstracts, follow-up, NAACCR exchange.",
                           no_args_is_help=True)
_err = Console(stderr=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    _err.print(f"[red]{message}[/red]")
    return typer.Exit(code)


def _day(value: str | None, name: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _fail(f"{name} must be a date like 2026-01-31; it is {value!r}.") from None


def open_service(db: Any = None) -> Any:
    """The registry service over ``db`` (default: the configured database)."""
    from chartkeeper.cli import open_db
    from chartkeeper.registry.service import RegistryService, current_screener

    return RegistryService(db or open_db(), screener=current_screener())


def _who() -> Any:
    from chartkeeper.cli import cli_principal

    return cli_principal("registry")


def _bar(label: str, quiet: bool) -> Progress:
    return Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=_err, disable=quiet and not sys.stderr.isatty())


@registry_app.command("casefind")
def casefind(
    since: str = typer.Option(None, help="Only sources dated on or after this day (YYYY-MM-DD)."),
    until: str = typer.Option(None, help="Only sources dated before this day (YYYY-MM-DD)."),
    pending: bool = typer.Option(False, "--pending", help="Only what bulk imports queued."),
    as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
) -> None:
    """Screen pathology reports and ICD-10-CM diagnoses into the suspense queue. Running it again adds
    nothing new (one suspense row per source)."""
    s, u = _day(since, "--since"), _day(until, "--until")
    if s and u and s >= u:
        raise _fail("--since must be before --until.")
    svc = open_service()
    try:
        with _bar("casefinding", as_json) as bar:
            task = bar.add_task("", total=None)

            def step(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            counts = svc.screen_pending(_who(), progress=step) if pending else svc.casefind(
                _who(), since=s, until=u, progress=step)
    except FhirError as exc:
        raise _fail(exc.message) from None
    out = counts.__dict__
    if as_json:
        print(json.dumps(out))
        return
    print(f"{counts.screened} sources screened; {counts.queued} new in the suspense queue, {counts.updated} updated; "
          f"{counts.follow_up} follow-up changes.")


@registry_app.command("suspense")
def suspense(status: str = typer.Option("pending", help="pending, accepted, linked, rejected or all."),
             limit: int = typer.Option(100, help="At most this many rows."),
             as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """List the suspense queue (oldest source first)."""
    svc = open_service()
    try:
        page = svc.suspense(_who(), status=status, limit=limit)
    except FhirError as exc:
        raise _fail(exc.message) from None
    if as_json:
        print(json.dumps({"total": page.total, "rows": [
            {"id": r.id, "source": f"{r.source_type}/{r.source_id}", "patient_id": r.patient_id, "kind": r.kind,
             "date": r.source_date.isoformat() if r.source_date else None, "reason": r.reason, "site": r.suggested_site,
             "status": r.status, "link_tumor_id": r.link_tumor_id} for r in page.rows]}))
        return
    t = Table(title=f"{page.total} suspense items ({status})")
    for col in ("id", "date", "patient", "kind", "site", "reason", "link"):
        t.add_column(col)
    for r in page.rows:
        t.add_row(r.id[:8], r.source_date.isoformat() if r.source_date else "", page.patients.get(r.patient_id or "", ""),
                  r.kind, r.suggested_site, r.reason, (r.link_tumor_id or "")[:8])
    Console().print(t)


@registry_app.command("import")
def import_cmd(path: Path = typer.Argument(..., help="A NAACCR XML file (.xml or .xml.gz)."),
               as_json: bool = typer.Option(False, "--json", help="Print the counts and rejects as JSON.")) -> None:
    """Import a NAACCR XML file: good records are kept, each reject is listed with its line and item."""
    if not path.is_file():
        raise _fail(f"{path} is not a file; give the path of a NAACCR XML file.")
    svc = open_service()
    try:
        with _bar("importing", as_json) as bar:
            task = bar.add_task("", total=None)
            rep = svc.import_file(_who(), path, progress=lambda n: bar.update(task, completed=n))
    except FhirError as exc:
        raise _fail(exc.message) from None
    if as_json:
        print(json.dumps(rep.as_dict()))
    else:
        print(f"{rep.patients} patients imported ({rep.tumors_created} tumours created, {rep.tumors_updated} updated); "
              f"{len(rep.rejects)} rejects.")
        for r in rep.rejects:
            print(f"  line {r.line or '?'}: {r.reason}")
    if rep.rejects and not rep.patients:
        raise typer.Exit(1)


@registry_app.command("export")
def export(naaccr_version: str = typer.Option("260", "--naaccr-version", help="250 or 260."),
           record_type: str = typer.Option("A", "--record-type", help="A, M, C or I."),
           out: Path = typer.Option(..., "--out", help="The file to write (NAACCR XML).")) -> None:
    """Export the registry as NAACCR XML, streamed from the tables."""
    svc = open_service()
    tmp = out.with_name(out.name + ".part")
    try:
        with tmp.open("wb") as fh, _bar("exporting", False) as bar:
            task = bar.add_task("", total=None)
            n = svc.export(_who(), fh, version=naaccr_version, record_type=record_type.upper(),
                           progress=lambda k: bar.update(task, completed=k))
    except FhirError as exc:
        tmp.unlink(missing_ok=True)
        raise _fail(exc.message) from None
    tmp.replace(out)
    print(f"{n} patients written to {out}.")


@registry_app.command("due")
def due(months: int = typer.Option(12, help="Due when last contact is more than this many months ago."),
        as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """The annual follow-up due list: living analytic patients, oldest last contact first."""
    svc = open_service()
    try:
        rows = svc.followup_due(_who(), months=months)
    except FhirError as exc:
        raise _fail(exc.message) from None
    if as_json:
        print(json.dumps([r.as_dict() for r in rows]))
        return
    t = Table(title=f"{len(rows)} patients due for follow-up (last contact over {months} months ago)")
    for col in ("patient", "last contact", "accession", "tumours"):
        t.add_column(col)
    for r in rows:
        t.add_row(r.label, r.date_of_last_contact.isoformat() if r.date_of_last_contact else "never", r.accession,
                  ", ".join(f"{s} ({y})" for s, y in r.tumors))
    Console().print(t)


@registry_app.command("letters")
def letters(out: Path = typer.Option(..., "--out", help="The PDF to write."),
            months: int = typer.Option(12, help="Letters for patients last contacted more than this many months ago."),
            facility: str = typer.Option("Cancer Registry", help="The sender's name on the letters.")) -> None:
    """Follow-up letters for everyone due, one page per patient, as a PDF."""
    svc = open_service()
    try:
        pdf = svc.followup_letters(_who(), months=months, facility=facility)
    except FhirError as exc:
        raise _fail(exc.message) from None
    out.write_bytes(pdf)
    print(f"Letters written to {out}.")


@registry_app.command("rate")
def rate(at: str = typer.Option(None, "--date", help="Report date (YYYY-MM-DD); default today."),
         as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """The follow-up rate against the CoC targets (90% of all analytic cases, 80% of living ones)."""
    svc = open_service()
    r = svc.followup_rate(_who(), report_date=_day(at, "--date") or datetime.now(UTC).date())
    if as_json:
        print(json.dumps(r.as_dict()))
        return
    for name, line in (("all analytic cases", r.all_cases), ("living patients", r.living)):
        pct = f"{line.rate:.1%}" if line.rate is not None else "-"
        verdict = {True: "meets", False: "BELOW", None: "no cases"}[line.meets_target]
        print(f"{name}: {line.followed}/{line.cases} followed = {pct} (target {line.target:.0%}: {verdict})")
    print(f"Definition: {r.definition}.")


@registry_app.command("refresh")
def refresh() -> None:
    """Update every registry patient's vital status and last contact from the record (deaths, visits)."""
    svc = open_service()
    n = svc.refresh_follow_up(_who())
    print(f"{n} registry patients updated from the record.")
