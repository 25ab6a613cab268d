"""CLI: ``chartkeeper completion ...`` (a Typer sub-app wired in chartkeeper.cli). Acts as a system
job; everything it does is audited."""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from chartkeeper.completion.rules import RuleFileError, load_rules

completion_app = typer.Typer(help="Chart completion: deficiency analysis, reminders, rules.", no_args_is_help=True)
_err = Console(stderr=True)


def _date(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
    except ValueError:
        raise _fail(f"{name} must be a date like 2026-01-31; it is {value!r}.") from None


def _fail(message: str, code: int = 2) -> typer.Exit:
    _err.print(f"[red]{message}[/red]")
    return typer.Exit(code)


def open_service(rules_path: Path | None, db=None, records=None):  # type: ignore[no-untyped-def]
    """The completion service over ``db`` (default: the configured database), with the rule file
    loaded and checked; the write listener uses the same rules."""
    from chartkeeper.cli import open_db
    from chartkeeper.completion.service import CompletionService, reset_listener_rules

    try:
        rules = load_rules(rules_path)
    except RuleFileError as exc:
        raise _fail(str(exc)) from None
    reset_listener_rules(rules)
    return CompletionService(db or open_db(), rules, records=records)


def run_pending(svc, principal, *, quiet: bool = False):  # type: ignore[no-untyped-def]
    """Analyse the charts bulk imports queued, with a progress bar."""
    with Progress(TextColumn("[bold]chart analysis"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=_err, disable=quiet) as bar:
        task = bar.add_task("", total=None)
        return svc.analyze_pending(principal, progress=lambda done, total: bar.update(task, completed=done, total=total))


@completion_app.command("analyze")
def analyze(
    since: str = typer.Option(None, help="Only encounters discharged on or after this date (YYYY-MM-DD)."),
    until: str = typer.Option(None, help="Only encounters discharged before this date (YYYY-MM-DD)."),
    pending: bool = typer.Option(False, "--pending", help="Only the charts bulk imports queued."),
    rules: Path = typer.Option(None, help="Rule file (default: CHARTKEEPER_COMPLETION_RULES or the defaults)."),
    as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
) -> None:
    """Analyse discharged encounters' charts for deficiencies (all, a date range, or the queued ones).
    Re-running changes nothing that has not changed in the charts."""
    from chartkeeper.cli import cli_principal

    s, u = _date(since, "--since"), _date(until, "--until")
    if s and u and s >= u:
        raise _fail("--since must be before --until.")
    svc = open_service(rules)
    who = cli_principal("completion")
    if pending:
        counts = run_pending(svc, who, quiet=as_json)
        with svc.db.read() as conn:
            out = svc.summary(conn, counts)
    else:
        with Progress(TextColumn("[bold]chart analysis"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=_err, disable=as_json and not sys.stderr.isatty()) as bar:
            task = bar.add_task("", total=None)
            out = svc.analyze(who, since=s, until=u,
                              progress=lambda done, total: bar.update(task, completed=done, total=total))
    svc.db.refresh_statistics()  # PostgreSQL: a first analysis adds a Task per deficiency
    if as_json:
        print(json.dumps(out, indent=2, default=str))
        return
    t = Table(title=f"{out['encounters_analysed']} encounters analysed (rules {out['rules_version']})")
    for col in ("rule", "open", "completed", "waived"):
        t.add_column(col, justify="left" if col == "rule" else "right")
    for rule_id, c in out["by_rule"].items():
        t.add_row(svc.rules.title(rule_id), str(c["open"]), str(c["completed"]), str(c["waived"]))
    d = out["deficiencies"]
    t.add_row("[bold]all rules", str(d["open"]), str(d["completed"]), str(d["waived"]))
    Console().print(t)


@completion_app.command("remind")
def remind(as_json: bool = typer.Option(False, "--json", help="Print what was sent as JSON."),
           rules: Path = typer.Option(None, help="Rule file.")) -> None:
    """Send due reminders to physicians and escalate newly delinquent charts (run daily, e.g. from cron;
    the web server also runs it every hour)."""
    from chartkeeper.cli import cli_principal

    svc = open_service(rules)
    made = svc.send_reminders(cli_principal("completion"))
    if as_json:
        print(json.dumps([{k: v for k, v in m.items() if k != "body"} for m in made], indent=2, default=str))
        return
    for m in made:
        where = m["recipient"] or "inbox only"
        status = f"failed: {m['error']}" if m.get("error") else "recorded"
        print(f"{m['kind']:<10} {where:<40} {m['subject']}  [{status}]")
    print(f"{len(made)} notifications.")


@completion_app.command("rules")
def rules_cmd(path: Path = typer.Argument(None, help="A rule file to check (default: the one in use).")) -> None:
    """Check a rule file and list its rules; a bad file is reported with every problem."""
    try:
        rs = load_rules(path)
    except RuleFileError as exc:
        raise _fail(str(exc)) from None
    t = Table(title=f"{rs.facility} — rules version {rs.version} ({rs.source}); delinquent after "
                    f"{rs.delinquency_days} days")
    for col in ("id", "on", "what", "classes", "limit"):
        t.add_column(col)
    for r in rs.rules:
        t.add_row(r.id, "yes" if r.enabled else "no", r.title, " ".join(sorted(r.classes)),
                  f"{r.within_hours:g} h from {r.anchor}")
    Console().print(t)
