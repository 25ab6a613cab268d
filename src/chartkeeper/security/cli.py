"""CLI: ``chartkeeper user ...`` and ``chartkeeper audit ...`` (Typer sub-apps wired in chartkeeper.cli).

The CLI acts as the system principal ``system:cli``; everything it does is audited.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import typer
from rich.console import Console
from rich.table import Table

from chartkeeper.config import get_settings
from chartkeeper.db import Database
from chartkeeper.security import audit, users
from chartkeeper.security.passwords import PasswordPolicyError
from chartkeeper.security.principal import ROLES, Principal

user_app = typer.Typer(help="Manage users and their roles.", no_args_is_help=True)
audit_app = typer.Typer(help="Verify and report on the audit trail.", no_args_is_help=True)

CLI = Principal.system("cli")
_err = Console(stderr=True)


def _db() -> Database:
    db = Database(get_settings().database_url)
    db.upgrade()
    return db


def _fail(message: str, code: int = 2) -> typer.Exit:
    _err.print(f"[red]{message}[/red]")
    return typer.Exit(code)


def _user_or_fail(conn, username: str) -> users.User:  # type: ignore[no-untyped-def]
    u = users.find_user(conn, username)
    if u is None:
        raise _fail(f"There is no user named {username!r}.")
    return u


_ROLE_HELP = f"Role (repeat for several): {', '.join(ROLES)}."


@user_app.command("add")
def user_add(
    username: str = typer.Argument(..., help="Login name (letters, digits, . _ - @)."),
    role: list[str] = typer.Option(..., "--role", "-r", help=_ROLE_HELP),
    name: str = typer.Option("", "--name", help="Display name, e.g. 'Dana Whitfield, RHIT'."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin."),
) -> None:
    """Add a user. The password is prompted for (twice) unless --password-stdin is given."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    db = _db()
    try:
        with db.begin() as conn:
            u = users.create_user(conn, username, password, role, actor=CLI, display_name=name)
    except (users.UserError, PasswordPolicyError) as exc:
        raise _fail(str(exc)) from None
    finally:
        db.dispose()
    typer.echo(f"Added user {u.username} ({' '.join(sorted(u.roles))}), id {u.id}.")


@user_app.command("disable")
def user_disable(
    username: str,
    reason: str = typer.Option("", "--reason", help="Why (kept in the audit trail)."),
) -> None:
    """Disable a user: ends their sessions and revokes their API tokens."""
    db = _db()
    try:
        with db.begin() as conn:
            u = _user_or_fail(conn, username)
            users.disable_user(conn, u.id, actor=CLI, reason=reason)
    finally:
        db.dispose()
    typer.echo(f"Disabled user {u.username}.")


@user_app.command("enable")
def user_enable(username: str) -> None:
    """Enable a disabled (or locked) user again."""
    db = _db()
    try:
        with db.begin() as conn:
            u = _user_or_fail(conn, username)
            users.enable_user(conn, u.id, actor=CLI)
    finally:
        db.dispose()
    typer.echo(f"Enabled user {u.username}.")


@user_app.command("set-roles")
def user_set_roles(
    username: str,
    role: list[str] = typer.Option(..., "--role", "-r", help=_ROLE_HELP),
) -> None:
    """Replace a user's roles."""
    db = _db()
    try:
        with db.begin() as conn:
            u = _user_or_fail(conn, username)
            u = users.set_roles(conn, u.id, role, actor=CLI)
    except users.UserError as exc:
        raise _fail(str(exc)) from None
    finally:
        db.dispose()
    typer.echo(f"User {u.username} now has roles: {' '.join(sorted(u.roles))}.")


@user_app.command("link-practitioner")
def user_link_practitioner(
    username: str,
    practitioner_id: str = typer.Argument(..., help="The Practitioner resource id (or 'none' to unlink)."),
) -> None:
    """Say which Practitioner in the record this user is: their deficiencies, their signature."""
    from chartkeeper.fhir.errors import FhirError
    from chartkeeper.fhir.store import FhirStore

    pid = None if practitioner_id.lower() == "none" else practitioner_id.removeprefix("Practitioner/")
    db = _db()
    try:
        with db.begin() as conn:
            u = _user_or_fail(conn, username)
            if pid is not None:
                try:
                    FhirStore().read(conn, "Practitioner", pid)
                except FhirError:
                    raise _fail(f"There is no Practitioner {pid!r} in the record; give the id of an existing "
                                "Practitioner (search /fhir/Practitioner?name=...).") from None
            u = users.link_practitioner(conn, u.id, pid, actor=CLI)
    except users.UserError as exc:
        raise _fail(str(exc)) from None
    finally:
        db.dispose()
    typer.echo(f"User {u.username} is now {'Practitioner/' + pid if pid else 'not linked to a practitioner'}.")


@user_app.command("list")
def user_list() -> None:
    """List users and their roles."""
    db = _db()
    try:
        with db.read() as conn:
            rows = users.list_users(conn)
    finally:
        db.dispose()
    t = Table("username", "name", "roles", "active", "id")
    for u in rows:
        t.add_row(u.username, u.display_name, " ".join(sorted(u.roles)), "yes" if u.active else "no", u.id)
    Console().print(t)


@audit_app.command("verify")
def audit_verify() -> None:
    """Recompute the hash chain; exit 1 naming the first bad entry if the log was tampered with."""
    db = _db()
    try:
        audit.seal_all(db.engine)  # PostgreSQL: link the newest entries into the chain first
        with db.read() as conn:
            result = audit.verify(conn)
        if result.ok:
            with db.begin() as conn:
                audit.record(conn, CLI, "audit.verify", "success", detail=f"{result.checked} entries")
        else:
            with db.begin() as conn:
                audit.record(conn, CLI, "audit.verify", "failure", detail=result.problem)
    finally:
        db.dispose()
    if not result.ok:
        _err.print(f"[red]Audit trail damaged: {result.problem}.[/red] ({result.checked} entries verified before it.)")
        raise typer.Exit(1)
    signed = " Head signature verified." if result.signed else ""
    typer.echo(f"Audit trail intact: {result.checked} entries verified.{signed}")


@audit_app.command("checkpoint")
def audit_checkpoint(note: str = typer.Option("", "--note")) -> None:
    """Write a checkpoint of the chain head signed with CHARTKEEPER_SECRET_KEY."""
    db = _db()
    try:
        with db.begin() as conn:
            seq = audit.checkpoint(conn, note=note)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    finally:
        db.dispose()
    typer.echo("The audit log is empty: nothing to sign." if seq is None else f"Signed checkpoint at entry {seq}.")


def _when(value: str | None, field: str) -> datetime | None:
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise _fail(f"--{field} must be a date or date-time like 2026-01-31 or 2026-01-31T14:00.") from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


@audit_app.command("report")
def audit_report(
    patient: str | None = typer.Option(None, "--patient", help="Patient id."),
    user: str | None = typer.Option(None, "--user", help="User name or user id."),
    since: str | None = typer.Option(None, "--since", help="From (UTC date or date-time, inclusive)."),
    until: str | None = typer.Option(None, "--until", help="Until (UTC date or date-time, exclusive)."),
    action: str | None = typer.Option(None, "--action", help="Action, e.g. read, login, break_glass."),
    limit: int = typer.Option(200, "--limit"),
    as_json: bool = typer.Option(False, "--json", help="Print FHIR AuditEvent resources (a searchset Bundle)."),
) -> None:
    """Who accessed what: entries by patient, user, time range and action, newest first."""
    start, end = _when(since, "since"), _when(until, "until")
    db = _db()
    try:
        with db.begin() as conn:
            user_id = None
            if user:
                u = users.find_user(conn, user)
                user_id = u.id if u else user
            entries = audit.query(conn, patient_id=patient, user_id=user_id, since=start, until=end, action=action, limit=limit)
            audit.record(
                conn,
                CLI,
                "audit.report",
                "success",
                patient_id=patient,
                detail=f"user={user or '-'} since={since or '-'} until={until or '-'} action={action or '-'} rows={len(entries)}",
            )
    finally:
        db.dispose()
    if as_json:
        bundle = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(entries),
            "entry": [{"resource": audit.as_audit_event(e)} for e in entries],
        }
        typer.echo(json.dumps(bundle, indent=2))
        return
    t = Table("seq", "time (UTC)", "user", "roles", "action", "outcome", "patient", "resource", "purpose / detail")
    for e in entries:
        res = f"{e.resource_type or ''}/{e.resource_id or ''}".strip("/")
        t.add_row(
            str(e.seq),
            e.at.strftime("%Y-%m-%d %H:%M:%S"),
            e.username or e.user_id or "",
            e.roles,
            e.action,
            e.outcome,
            e.patient_id or "",
            res,
            " / ".join(x for x in (e.purpose, e.detail) if x),
        )
    Console(width=200).print(t)
    typer.echo(f"{len(entries)} entries.")
