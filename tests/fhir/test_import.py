"""Bulk import as a technician runs it: `chartkeeper import PATH...` then `chartkeeper stats --json`."""

from __future__ import annotations

import gzip
import json
from collections import Counter

import orjson
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from chartkeeper.cli import app as cli
from chartkeeper.completion.models import DeficiencyRow
from chartkeeper.fhir import searchparams as sp
from chartkeeper.fhir.importer import run_import
from chartkeeper.fhir.models import ResourceRow, VersionRow
from chartkeeper.fhir.service import RecordService
from chartkeeper.security.principal import Principal
from fhirdata import obs, patient

# Distinct resources in the 200 Synthea bundles (60,253; the README counts Organization and
# Practitioner entries, 436 each, which carry only 102 distinct ids each).
SYNTHEA_COUNTS = {"Observation": 29228, "Claim": 6982, "Encounter": 5664, "ExplanationOfBenefit": 5664,
                  "Procedure": 3890, "Immunization": 2339, "DiagnosticReport": 2107, "Condition": 1497,
                  "MedicationRequest": 1318, "CarePlan": 569, "Organization": 102, "Practitioner": 102,
                  "Goal": 366, "Patient": 198, "AllergyIntolerance": 132, "ImagingStudy": 95}


def run_cli(db, *args):
    result = CliRunner().invoke(cli, list(args), env={"CHARTKEEPER_DATABASE_URL": db.url}, catch_exceptions=False)
    return result


def test_synthea_imports_whole_with_zero_rejects_and_twice_changes_nothing(db, shared_data, tmp_path):
    folder = shared_data / "synthea-r4"
    report = tmp_path / "rejects.jsonl"
    r = run_cli(db, "import", str(folder), "--json", "--report", str(report))
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["files"] == 200 and out["rejected"] == 0, report.read_text()[:2000]
    stats = json.loads(run_cli(db, "stats", "--json").output)
    # Chart completion analysed the imported encounters: Synthea's inpatient stays carry no discharge
    # summary or H&P, so each has deficiencies, shown as FHIR Tasks (one per deficiency).
    tasks = stats["resources"].pop("Task", 0)
    assert stats["resources"] == SYNTHEA_COUNTS
    assert out["charts_analysed"] > 0
    with db.read() as c:
        assert tasks == c.execute(select(func.count()).select_from(DeficiencyRow)).scalar_one() > 0
    versions_before = stats["total_versions"]

    # Every reference in the stored data resolves to a stored resource.
    with db.read() as c:
        keys = {(t, i) for t, i in c.execute(select(ResourceRow.resource_type, ResourceRow.id))}
        dangling = Counter()
        for (content,) in c.execute(select(VersionRow.content).where(VersionRow.content.is_not(None))):
            res = orjson.loads(content)
            contained = {"#" + x["id"] for x in res.get("contained", ())}
            for ref in sp.all_references(res):
                if ref["reference"] in contained:
                    continue
                target = sp.parse_reference(ref["reference"])
                if target is None or target not in keys:
                    dangling[ref["reference"].split("/")[0]] += 1
    assert not dangling, dangling

    # Importing the same files again adds no resource and no version.
    again = json.loads(run_cli(db, "import", str(folder), "--json", "--report", str(report)).output)
    assert again["rejected"] == 0
    assert sum(v["created"] + v["updated"] for v in again["by_type"].values()) == 0
    stats2 = json.loads(run_cli(db, "stats", "--json").output)
    assert stats2["total_versions"] == versions_before and stats2["resources"] == SYNTHEA_COUNTS | {"Task": tasks}


def test_rejects_are_reported_and_good_resources_land(db, tmp_path):
    good = patient() | {"id": "p1"}
    bad = patient(mrn="2") | {"id": "p2", "birthDate": "1961-02-30x"}
    o = obs("p1") | {"id": "o1"}
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": good}, {"resource": bad}, {"resource": o}, {"resource": {"resourceType": "Spaceship"}}]}
    (tmp_path / "b.json").write_bytes(orjson.dumps(bundle))
    with gzip.open(tmp_path / "more.ndjson.gz", "wb") as fh:
        fh.write(orjson.dumps(obs("p1") | {"id": "o2"}) + b"\n{broken\n")
    (tmp_path / "junk.json").write_text("not json at all")
    report = tmp_path / "rejects.jsonl"
    r = run_cli(db, "import", str(tmp_path), "--json", "--report", str(report))
    out = json.loads(r.output)
    assert out["accepted"] == 3 and out["rejected"] == 4
    rejects = [json.loads(line) for line in report.read_text().splitlines()]
    by_file = {(x["file"].rsplit("/", 1)[-1], x["entry"]) for x in rejects}
    assert by_file == {("b.json", 1), ("b.json", 3), ("more.ndjson.gz", 1), ("junk.json", None)}
    birth = next(x for x in rejects if x["entry"] == 1 and x["file"].endswith("b.json"))
    assert "birthDate" in birth["reason"]
    assert json.loads(run_cli(db, "stats", "--json").output)["resources"] == {"Observation": 2, "Patient": 1}


def test_missing_path_is_a_clear_error(db, tmp_path):
    r = run_cli(db, "import", str(tmp_path / "nope.json"))
    assert r.exit_code == 2 and "does not exist" in r.output


def test_import_is_audited_per_patient(db, tmp_path):
    from chartkeeper.security import audit

    (tmp_path / "p.json").write_bytes(orjson.dumps(patient() | {"id": "p1"}))
    rep = run_import(RecordService(db), Principal.system("import:test"), [tmp_path])
    assert rep.accepted == 1
    with db.read() as c:
        assert [e.action for e in audit.query(c, patient_id="p1")] == ["import"]


def test_import_gives_postgresql_statistics_while_it_grows_the_tables(db, tmp_path, monkeypatch):
    """PostgreSQL: an import ANALYZEs the resource tables as they grow (in its own transaction), so
    the planner probes the (type, id) index for each chunk's lookups instead of taking every type for
    rare; SQLite has no statistics to refresh."""
    from sqlalchemy import text

    import chartkeeper.fhir.importer as importer

    monkeypatch.setattr(importer, "REFRESH_AFTER", 3)
    monkeypatch.setattr(importer, "CHUNK", 2)
    for i in range(8):
        (tmp_path / f"p{i}.json").write_bytes(orjson.dumps(patient() | {"id": f"p{i}"}))
    rep = run_import(RecordService(db), Principal.system("import:test"), [tmp_path], workers=0)
    assert rep.accepted == 8
    if db.is_sqlite:
        return
    with db.read() as c:
        tuples = c.execute(text("SELECT reltuples FROM pg_class WHERE oid = 'fhir_resource'::regclass")).scalar_one()
    assert tuples >= 4  # analysed after 4 or more of the 8 were written (never analysed: -1)


def test_files_land_in_order_with_workers(db, tmp_path):
    """Workers prepare files side by side, but files are written in order: the last file's version of
    a resource found in several is the current one, every version is kept, and the counts are what a
    one-process import reports."""
    from chartkeeper.fhir.store import FhirStore

    for i in range(12):
        bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": patient(family=f"Family{i:02d}") | {"id": "shared"}},
            *({"resource": patient(mrn=f"M{i}-{k}") | {"id": f"p{i}-{k}"}} for k in range(40))]}
        (tmp_path / f"f{i:02d}.json").write_bytes(orjson.dumps(bundle))
    rep = run_import(RecordService(db), Principal.system("import:test"), [tmp_path], workers=1)
    assert rep.accepted == 12 * 41 and not rep.rejects
    assert rep.created["Patient"] == 12 * 40 + 1 and rep.updated["Patient"] == 11
    with db.read() as c:
        current = FhirStore().read(c, "Patient", "shared").resource()
    assert current["name"][0]["family"] == "Family11" and current["meta"]["versionId"] == "12"


@pytest.mark.parametrize("name", ["organizations.json.gz"])
def test_shared_organizations_file_imports(db, shared_data, name):
    rep = run_import(RecordService(db), Principal.system("import:test"), [shared_data / "synthea-r4" / name])
    assert not rep.rejects and rep.created["Organization"] == 102


def test_one_parse_fast_path_gives_what_the_general_path_gives(tmp_path):
    from chartkeeper.fhir import importer

    def entry(full, res):
        return {"fullUrl": full, "resource": res, "request": {"method": "POST", "url": res["resourceType"]}}

    def with_id(res, rid, subject=None):
        out = {"resourceType": res["resourceType"], "id": rid, **res}
        if subject:
            out["subject"] = {"reference": subject}
        return out

    pat = with_id(patient(), "fp1")
    o1 = with_id(obs("x"), "fo1", "urn:uuid:fp1")
    layouts = {
        # fullUrl, resourceType, id in the usual order: read in one parse.
        "usual": [entry("urn:uuid:fp1", pat), entry("urn:uuid:fo1", o1)],
        # resource before fullUrl: not read off the text, so the general path.
        "other order": [{"resource": pat, "fullUrl": "urn:uuid:fp1"}, entry("urn:uuid:fo1", o1)],
        # a reference to no entry: the general path reports it.
        "dangling": [entry("urn:uuid:fo1", with_id(obs("x"), "fo1", "urn:uuid:nobody"))],
        # the id differs from the fullUrl's uuid: references follow the id.
        "own id": [entry("urn:uuid:x-1", pat), entry("urn:uuid:fo1", with_id(obs("x"), "fo1", "urn:uuid:x-1"))],
    }
    for name, entries in layouts.items():
        data = orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries},
                            option=orjson.OPT_INDENT_2)
        path = tmp_path / f"{name}.json"
        path.write_bytes(data)
        fast = list(importer.read_file(path))
        original = importer._read_bundle_once
        importer._read_bundle_once = lambda _data: None
        try:
            general = list(importer.read_file(path))
        finally:
            importer._read_bundle_once = original
        assert fast == general, name
        assert (importer._read_bundle_once(data) is not None) == (name in ("usual", "own id")), name
    own = [r for _, r, _ in importer.read_file(tmp_path / "own id.json")]
    assert own[1]["subject"]["reference"] == "Patient/fp1"
