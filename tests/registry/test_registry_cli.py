"""``chartkeeper registry ...`` as a registrar runs it from a terminal or cron (SQLite and PostgreSQL)."""

from __future__ import annotations

import gzip
import json

import pytest
import registry_fhir as fx
from sqlalchemy import func, select
from typer.testing import CliRunner

from chartkeeper.registry.cli import registry_app
from chartkeeper.registry.models import RegistryTumorRow, SuspenseRow
from chartkeeper.security import audit
from chartkeeper.security.principal import Principal

runner = CliRunner()
SYSTEM = Principal.system("test")


@pytest.fixture
def cli_db(db, monkeypatch, screener):
    monkeypatch.setenv("CHARTKEEPER_DATABASE_URL", db.url)
    return db


@pytest.fixture
def imported(cli_db, records, directory):
    """A bulk import of two patients with pathology reports in 2024 and 2025 (queued, not screened)."""
    with cli_db.begin() as c:
        records.ingest(c, SYSTEM, [
            fx.patient("pat-a", "MRN-A"), fx.encounter("enc-a", "pat-a", "2024-02-01"),
            fx.pathology("path-a", "pat-a", "enc-a", "2024-02-01"),
            fx.patient("pat-b", "MRN-B", "Baker"), fx.encounter("enc-b", "pat-b", "2025-02-01"),
            fx.pathology("path-b", "pat-b", "enc-b", "2025-02-01")], source="test import")
    return cli_db


def run(*args: str):
    return runner.invoke(registry_app, list(args))


def test_casefind_over_a_date_range_then_the_queue(imported):
    r = run("casefind", "--since", "2025-01-01", "--until", "2026-01-01", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["queued"] == 1
    again = json.loads(run("casefind", "--since", "2025-01-01", "--json").stdout)
    assert again["queued"] == 0  # idempotent
    rest = json.loads(run("casefind", "--pending", "--json").stdout)
    assert rest["queued"] == 1 and rest["screened"] == 2
    listed = json.loads(run("suspense", "--json").stdout)
    assert listed["total"] == 2 and {r["source"] for r in listed["rows"]} == {"DocumentReference/path-a",
                                                                             "DocumentReference/path-b"}
    with imported.read() as c:
        assert c.execute(select(func.count()).select_from(SuspenseRow.__table__)).scalar_one() == 2
        assert audit.query(c, limit=10, action="registry.casefind")


def test_bad_options_are_sentences(imported, tmp_path):
    r = run("casefind", "--since", "2025-13-01")
    assert r.exit_code == 2 and "--since must be a date like 2026-01-31" in r.output
    r = run("casefind", "--since", "2025-02-01", "--until", "2025-01-01")
    assert r.exit_code == 2 and "--since must be before --until" in r.output
    r = run("suspense", "--status", "maybe")
    assert r.exit_code == 2 and "status" in r.output
    target = tmp_path / "x.xml"
    r = run("export", "--naaccr-version", "230", "--out", str(target))
    assert r.exit_code == 2 and "250, 260" in r.output
    assert not target.exists() and not target.with_name("x.xml.part").exists()  # not even a partial file


def test_follow_up_commands(imported, records, tmp_path):
    from chartkeeper.registry.service import RegistryService, current_screener

    run("casefind", "--pending")
    svc = RegistryService(imported, records, screener=current_screener())  # the registrar accepts both cases
    for row in svc.suspense(SYSTEM).rows:
        svc.accept(SYSTEM, row.id)
    due = json.loads(run("due", "--json").stdout)
    assert [d["patient_id"] for d in due] == ["pat-a", "pat-b"]  # oldest last contact first
    out = tmp_path / "letters.pdf"
    r = run("letters", "--out", str(out))
    assert r.exit_code == 0 and out.read_bytes()[:4] == b"%PDF"
    rate = json.loads(run("rate", "--date", "2025-06-01", "--json").stdout)
    assert rate["all"]["cases"] == 2 and rate["all"]["followed"] == 1
    assert "meets" in run("rate", "--date", "2025-03-01").stdout
    assert run("refresh").exit_code == 0


def test_import_keeps_good_records_and_reports_rejects_then_export(imported, tmp_path, shared_data):
    pytest.importorskip("chartkeeper.registry.naaccr")
    sample = shared_data / "naaccr" / "samples" / "naaccr-xml-sample-v250-abstract-10.xml.gz"
    src = tmp_path / "sample.xml"
    text = gzip.decompress(sample.read_bytes()).decode()
    # Spoil one value of one patient: an impossible date of diagnosis.
    i = text.index('naaccrId="dateOfDiagnosis">')
    j = text.index("<", i)
    src.write_text(text[:i] + 'naaccrId="dateOfDiagnosis">20210231' + text[j:])
    r = run("import", str(src), "--json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    patients = text.count("<Patient>")
    assert rep["patients"] == patients - 1 and len(rep["rejects"]) >= 1
    # The reject names the line, the patient, the item and its number.
    assert any(x["item_id"] == "dateOfDiagnosis" and x["line"] and x["patient_index"] == 1 and "390" in x["reason"]
               for x in rep["rejects"])
    with imported.read() as c:
        n = c.execute(select(func.count()).select_from(RegistryTumorRow.__table__)).scalar_one()
    assert n == text.count("<Tumor>") - 1  # all but the spoiled (first) patient's one tumour
    again = json.loads(run("import", str(src), "--json").stdout)
    assert again["tumors_created"] == 0  # the same file again updates, adds nothing
    out = tmp_path / "export.xml"
    r = run("export", "--naaccr-version", "260", "--record-type", "A", "--out", str(out))
    assert r.exit_code == 0, r.output
    assert b"sexAssignedAtBirth" in out.read_bytes() and b'naaccrId="sex"' not in out.read_bytes()
