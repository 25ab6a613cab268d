"""The ``chartkeeper`` command line. Commands call the same service functions as the web and API."""

from __future__ import annotations

import getpass
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from chartkeeper.config import get_settings
from chartkeeper.db import Database

app = typer.Typer(help="Chartkeeper: health information management.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
console = Console(stderr=True)


def open_db() -> Database:
    db = Database(get_settings().database_url)
    db.upgrade()
    return db


def cli_principal(name: str = "cli"):  # type: ignore[no-untyped-def]
    from chartkeeper.security.principal import Principal

    return Principal.system(f"{name}:{getpass.getuser()}")


def _register_subcommands() -> None:
    try:
        from chartkeeper.security.cli import audit_app, user_app
    except ImportError:  # pragma: no cover - during partial installs only
        return
    app.add_typer(user_app, name="user", help="Manage users and roles.")
    app.add_typer(audit_app, name="audit", help="Verify and report the audit trail.")
    from chartkeeper.completion.cli import completion_app

    app.add_typer(completion_app, name="completion", help="Chart completion: deficiencies, reminders, rules.")
    from chartkeeper.coding.cli import code_app

    app.add_typer(code_app, name="code", help="Coding: code search, checks, HCPCS files, computer-assisted coding.")
    from chartkeeper.registry.cli import registry_app

    app.add_typer(registry_app, name="registry", help="Cancer registry: casefinding, NAACCR import/export, follow-up.")


@app.command("import")
def import_cmd(
    paths: list[Path] = typer.Argument(..., help="Bundles (.json, .json.gz), NDJSON files, or folders of them."),
    report: Path = typer.Option(None, help="Where to write the rejects (JSON lines). Default: var/import-rejects-<time>.jsonl"),
    as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
) -> None:
    """Import FHIR data. Idempotent: importing the same files again adds nothing."""
    from chartkeeper.fhir.importer import find_files, run_import, write_report
    from chartkeeper.fhir.service import RecordService

    try:
        files = find_files(paths)
    except FileNotFoundError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    from chartkeeper.completion.cli import open_service, run_pending

    db = open_db()
    records = RecordService(db)
    completion = open_service(None, db, records)  # the rule file is checked before anything is imported
    started = time.perf_counter()
    with Progress(TextColumn("[bold]importing"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                  TimeElapsedColumn(), console=console, disable=not sys.stderr.isatty() and as_json) as bar:
        task = bar.add_task("", total=len(files))
        rep = run_import(records, cli_principal("import"), files,
                         progress=lambda done, total, name: bar.update(task, completed=done, description=name))
    pending = run_pending(completion, cli_principal("completion"), quiet=as_json)
    db.refresh_statistics()  # PostgreSQL: the planner learns what the import added (see docs/architecture.md)
    elapsed = time.perf_counter() - started
    report_path = report or Path("var") / f"import-rejects-{datetime.now(UTC):%Y%m%dT%H%M%S}.jsonl"
    write_report(rep, report_path)
    out = rep.as_dict() | {"seconds": round(elapsed, 2), "report": str(report_path),
                           "charts_analysed": pending.encounters}
    if as_json:
        print(json.dumps(out, indent=2))
    else:
        t = Table(title=f"Imported {rep.files} files in {elapsed:.1f} s")
        for col in ("resource type", "created", "updated", "unchanged", "rejected"):
            t.add_column(col, justify="right" if col != "resource type" else "left")
        for rtype, c in rep.by_type().items():
            t.add_row(rtype, *(str(c[k]) for k in ("created", "updated", "unchanged", "rejected")))
        Console().print(t)
        print(f"{rep.accepted} resources accepted, {len(rep.rejects)} rejected; rejects listed in {report_path}")
    if rep.rejects and not rep.accepted:
        raise typer.Exit(1)


@app.command()
def stats(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Current resources and stored versions per resource type."""
    from sqlalchemy import func, select

    from chartkeeper.fhir.models import ResourceRow, VersionRow

    db = open_db()
    with db.read() as conn:
        cur = dict(conn.execute(select(ResourceRow.resource_type, func.count())
                                .where(ResourceRow.deleted.is_(False)).group_by(ResourceRow.resource_type)).all())
        ver = dict(conn.execute(select(VersionRow.resource_type, func.count())
                                .group_by(VersionRow.resource_type)).all())
    data = {"resources": {k: int(v) for k, v in sorted(cur.items())},
            "versions": {k: int(v) for k, v in sorted(ver.items())},
            "total_resources": int(sum(cur.values())), "total_versions": int(sum(ver.values()))}
    if as_json:
        print(json.dumps(data, indent=2))
        return
    t = Table(title="Stored resources")
    t.add_column("resource type")
    t.add_column("current", justify="right")
    t.add_column("versions", justify="right")
    for k in sorted(set(cur) | set(ver)):
        t.add_row(k, str(cur.get(k, 0)), str(ver.get(k, 0)))
    Console().print(t)


@app.command()
def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Serve the web UI, the FHIR API and the JSON API."""
    import uvicorn

    open_db().dispose()
    uvicorn.run("chartkeeper.web.app:create_app", factory=True, host=host, port=port, workers=workers,
                log_level="warning")


@app.command()
def demo(patients: int = typer.Option(200, help="How many people to generate."),
         seed: int = typer.Option(1, help="Random seed: the same seed gives the same population.")) -> None:
    """Generate a deterministic synthetic population into the database (validated and audited), whose
    records end today, and analyse its charts for deficiencies."""
    from datetime import date

    from chartkeeper.completion.cli import open_service, run_pending
    from chartkeeper.demo.load import load_population

    db = open_db()
    completion = open_service(None, db)  # the rule file is checked before anything is generated
    started = time.perf_counter()
    with Progress(TextColumn("[bold]demo population"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as bar:
        task = bar.add_task("", total=patients)
        rep = load_population(db, patients, seed, today=date.today(),
                              progress=lambda n: bar.update(task, completed=n))
        bar.update(task, completed=patients)
    counts = run_pending(completion, cli_principal("completion"))
    secs = time.perf_counter() - started
    print(f"{rep.patients} people, {rep.resources} resources in {secs:.1f} s "
          f"({rep.patients / secs:.0f} patients/s); {len(rep.rejects)} rejected; "
          f"{counts.encounters} charts analysed, {counts.opened} deficiencies open")
    for r in rep.rejects[:10]:
        print("  rejected:", r)
    from chartkeeper.coding.service import CodingService
    from chartkeeper.demo.registry import load_registry

    reg = load_registry(db, today=date.today())
    print(f"registry: {reg.historical} historical cases imported, {reg.cases} cases abstracted, {reg.linked} reports "
          f"linked, {reg.pending} waiting in suspense")
    dnfb = CodingService(db).counts(cli_principal("coding"))["dnfb"]
    print(f"coding: {dnfb} discharged encounters waiting to be coded (DNFB)")
    db.refresh_statistics()  # PostgreSQL: the planner learns what the demo load added


@app.command("demo-setup")
def demo_setup(patients: int = 200, seed: int = 1) -> None:
    """What `make demo` runs: schema, demo population (once), one demo user per role, the logins."""
    from sqlalchemy import func, select

    from chartkeeper.demo.load import demo_users, link_demo_physician
    from chartkeeper.fhir.models import ResourceRow

    db = open_db()
    with db.read() as conn:
        have = conn.execute(select(func.count()).select_from(ResourceRow)
                            .where(ResourceRow.resource_type == "Patient")).scalar_one()
    if not have:
        demo(patients=patients, seed=seed)
    else:
        print(f"The database already holds {have} patients; not generating again.")
    logins = demo_users(db)
    doc = link_demo_physician(db)
    if doc:
        print(f"The demo physician is Practitioner/{doc[0]} ({doc[1]}), who has the most open deficiencies.")
    t = Table(title="Demo logins (http://127.0.0.1:8000)")
    t.add_column("username")
    t.add_column("password")
    t.add_column("role")
    for u, pw, role in logins:
        t.add_row(u, pw, role)
    Console().print(t)


_register_subcommands()


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
