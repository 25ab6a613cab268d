from __future__ import annotations

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from chartkeeper.db import Database
from chartkeeper.security import audit, users
from chartkeeper.security.cli import audit_app, user_app

runner = CliRunner()


@pytest.fixture
def cli_db(db: Database, monkeypatch: pytest.MonkeyPatch) -> Database:
    monkeypatch.setenv("CHARTKEEPER_DATABASE_URL", db.url)
    monkeypatch.delenv("CHARTKEEPER_SECRET_KEY", raising=False)
    return db


def test_user_add_disable_set_roles(cli_db: Database) -> None:
    r = runner.invoke(
        user_app,
        [
            "add",
            "Dana",
            "--role",
            "him_technician",
            "--role",
            "coder",
            "--name",
            "Dana Whitfield",
            "--password-stdin",
        ],
        input="a long enough password\n",
    )
    assert r.exit_code == 0, r.output
    assert "Added user dana (coder him_technician)" in r.output
    with cli_db.begin() as conn:
        users.authenticate(conn, "dana", "a long enough password")
    r = runner.invoke(user_app, ["set-roles", "dana", "--role", "physician"])
    assert r.exit_code == 0 and "now has roles: physician" in r.output
    r = runner.invoke(user_app, ["disable", "dana", "--reason", "left"])
    assert r.exit_code == 0 and "Disabled user dana" in r.output
    r = runner.invoke(user_app, ["list"])
    assert r.exit_code == 0 and "dana" in r.output
    with cli_db.read() as conn:
        u = users.find_user(conn, "dana")
        assert u is not None and not u.active and u.roles == {"physician"}
        actions = [e.action for e in audit.query(conn, user_id="system:cli", newest_first=False)]
    assert actions == ["user.create", "user.set_roles", "user.disable"]


def test_user_add_refusals_are_clear(cli_db: Database) -> None:
    r = runner.invoke(user_app, ["add", "dana", "--role", "coder", "--password-stdin"], input="short\n")
    assert r.exit_code == 2 and "at least 12 characters" in r.output
    r = runner.invoke(user_app, ["add", "dana", "--role", "wizard", "--password-stdin"], input="x" * 20 + "\n")
    assert r.exit_code == 2 and "Unknown role 'wizard'" in r.output
    r = runner.invoke(user_app, ["disable", "ghost"])
    assert r.exit_code == 2 and "no user named 'ghost'" in r.output


def test_user_add_prompts_for_the_password_twice(cli_db: Database) -> None:
    r = runner.invoke(user_app, ["add", "dana", "--role", "coder"], input="twelve chars!!\ntwelve chars!!\n")
    assert r.exit_code == 0, r.output
    with cli_db.begin() as conn:
        users.authenticate(conn, "dana", "twelve chars!!")


def test_audit_verify_and_report(cli_db: Database) -> None:
    runner.invoke(user_app, ["add", "dana", "--role", "coder", "--password-stdin"], input="x" * 20 + "\n")
    with cli_db.begin() as conn:
        audit.record(
            conn,
            users.find_user(conn, "dana").principal(),
            "read",
            "success",  # type: ignore[union-attr]
            resource_type="Encounter",
            resource_id="e1",
            patient_id="p42",
        )
    r = runner.invoke(audit_app, ["verify"])
    assert r.exit_code == 0 and "intact: 2 entries verified" in r.output
    r = runner.invoke(audit_app, ["report", "--patient", "p42"])
    assert r.exit_code == 0 and "Encounter/e1" in r.output and "1 entries." in r.output
    r = runner.invoke(audit_app, ["report", "--user", "dana", "--json"])
    assert r.exit_code == 0 and '"resourceType": "Bundle"' in r.output and '"total": 1' in r.output
    r = runner.invoke(audit_app, ["report", "--since", "yesterday"])
    assert r.exit_code == 2 and "--since must be a date" in r.output
    with cli_db.begin() as conn:
        conn.execute(text("update audit_log set patient_id = 'p43' where seq = 2"))
    r = runner.invoke(audit_app, ["verify"])
    assert r.exit_code == 1 and "entry 2 was altered" in r.output


def test_checkpoint_needs_the_secret_key(cli_db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    r = runner.invoke(audit_app, ["checkpoint"])
    assert r.exit_code == 2 and "CHARTKEEPER_SECRET_KEY" in r.output
    audit.set_signing_key("s" * 32)
    try:
        with cli_db.begin() as conn:
            audit.record(conn, None, "start", "success")
        r = runner.invoke(audit_app, ["checkpoint"])
        assert r.exit_code == 0 and "Signed checkpoint at entry 1" in r.output
        r = runner.invoke(audit_app, ["verify"])
        assert r.exit_code == 0 and "Head signature verified" in r.output
    finally:
        audit.set_signing_key(None)
