"""The registrar's work through the registry service (SQLite and PostgreSQL): reports arrive in the
record, casefinding puts them in suspense, the registrar accepts, links or rejects, abstracts and
saves; deaths and visits update follow-up. Policy and audit on every step."""

from __future__ import annotations

import base64
from datetime import date

import pytest
import registry_fhir as fx
from sqlalchemy import func, select

from chartkeeper.fhir.errors import FhirError
from chartkeeper.registry.models import RegistryPendingRow, RegistryTumorRow, SuspenseRow
from chartkeeper.registry.service import RegistryError, RegistryService
from chartkeeper.security import audit, grants
from chartkeeper.security.principal import Principal

SYSTEM = Principal.system("test")
SUS = SuspenseRow.__table__


def suspense_rows(db):
    with db.read() as c:
        return [r._asdict() for r in c.execute(select(SUS).order_by(SUS.c.source_type, SUS.c.source_id))]


def accept_report(svc, people, source_id="path-1", **kw):
    [item] = [r for r in svc.suspense(people.registrar).rows if r.source_id == source_id]
    return svc.accept(people.registrar, item.id, **kw)


# --- casefinding --------------------------------------------------------------------------------


def test_a_pathology_report_and_a_coded_diagnosis_land_in_suspense_with_the_matching_text(db, svc, people, breast_case):
    page = svc.suspense(people.registrar)
    assert page.total == 2 and page.patients["pat-1"] == "Ana Rivera (MRN-R1)"
    report = next(r for r in page.rows if r.source_type == "DocumentReference")
    assert report.kind == "pathology" and report.source_date == date(2025, 3, 10)
    assert (report.suggested_site, report.suggested_histology, report.suggested_behavior,
            report.suggested_laterality) == ("C509", "8500", "3", "2")
    # The spans point into the report's text, which the item carries for highlighting.
    item = svc.suspense_item(people.registrar, report.id)
    assert item.matches and all(item.text[m.start:m.end].lower() == m.phrase.lower() for m in item.matches)
    assert item.matches[0].phrase == "Invasive ductal carcinoma"
    diag = next(r for r in page.rows if r.source_type == "Condition")
    assert diag.kind == "diagnosis" and diag.code == "C50912" and diag.suggested_laterality == "2"
    assert svc.suspense_counts(people.registrar) == {"pending": 2, "accepted": 0, "linked": 0, "rejected": 0}


def test_screening_is_idempotent_one_row_per_source(db, svc, people, breast_case, write):
    write(fx.pathology("path-1", "pat-1", "enc-bx", "2025-03-10", fx.BREAST_REPORT + "\nAddendum: ER positive.\n"))
    write(fx.condition("cond-1", "pat-1", "C50.912", "2025-03-10"))
    assert len(suspense_rows(db)) == 2
    counts = svc.casefind(people.registrar)
    assert counts.screened == 2 and counts.queued == 0
    assert len(suspense_rows(db)) == 2


def test_benign_reports_and_non_reportable_codes_stay_out(db, svc, people, write, directory):
    write(fx.patient("pat-2", "MRN-R2"), fx.encounter("enc-2", "pat-2", "2025-05-01"),
          fx.pathology("path-2", "pat-2", "enc-2", "2025-05-01", fx.BENIGN_REPORT),
          fx.condition("cond-2", "pat-2", "C44.91", "2025-05-01", "Basal cell carcinoma of skin"),
          fx.condition("cond-3", "pat-2", "I10", "2025-05-01", "Hypertension"))
    assert suspense_rows(db) == []


def test_bulk_imports_queue_sources_and_casefind_pending_screens_them(db, svc, records, people, directory):
    with db.begin() as c:
        records.ingest(c, SYSTEM, [fx.patient("pat-3", "MRN-R3"), fx.encounter("enc-3", "pat-3", "2024-11-02"),
                                   fx.pathology("path-3", "pat-3", "enc-3", "2024-11-02")], source="test import")
    assert suspense_rows(db) == []
    with db.read() as c:
        assert c.execute(select(func.count()).select_from(RegistryPendingRow.__table__)).scalar_one() == 1
    counts = svc.screen_pending(people.registrar)
    assert counts.queued == 1 and len(suspense_rows(db)) == 1
    assert svc.screen_pending(people.registrar).screened == 0  # the queue was emptied


def test_casefind_over_a_date_range(db, svc, records, people, directory):
    with db.begin() as c:
        records.ingest(c, SYSTEM, [
            fx.patient("pat-4", "MRN-R4"), fx.encounter("enc-4", "pat-4", "2024-01-15"),
            fx.pathology("path-old", "pat-4", "enc-4", "2024-01-15"), fx.encounter("enc-5", "pat-4", "2025-06-01"),
            fx.pathology("path-new", "pat-4", "enc-5", "2025-06-01")], source="test import", bulk=False)
    with db.begin() as c:  # forget what the inline listener found, to see casefind do it
        c.execute(SUS.delete())
    got = svc.casefind(people.registrar, since=date(2025, 1, 1), until=date(2026, 1, 1))
    assert got.queued == 1 and [r["source_id"] for r in suspense_rows(db)] == ["path-new"]
    with pytest.raises(RegistryError) as err:
        svc.casefind(people.registrar, since=date(2025, 1, 1), until=date(2024, 1, 1))
    assert err.value.status == 422


# --- accept, link, reject -------------------------------------------------------------------------


@pytest.fixture
def treated(write, breast_case):
    """Surgery, chemotherapy, hormone therapy and a follow-up visit after the biopsy."""
    write(fx.encounter("enc-surg", "pat-1", "2025-04-02", "dr-onc"),
          fx.procedure("pr-bx", "pat-1", "Left breast core needle biopsy", "2025-03-10"),
          fx.procedure("pr-surg", "pat-1", "Left breast partial mastectomy with sentinel lymph node biopsy", "2025-04-02"),
          fx.medication("mr-1", "pat-1", "Docetaxel 75 mg/m2 IV", "2025-05-10"),
          fx.medication("mr-2", "pat-1", "Cyclophosphamide 600 mg/m2 IV", "2025-05-10"),
          fx.medication("mr-3", "pat-1", "Anastrozole 1 mg tablet", "2025-09-01"),
          fx.encounter("enc-fu", "pat-1", "2025-11-20", "dr-onc"))


def test_accepting_makes_a_case_prefilled_from_the_record(db, svc, people, treated):
    a = accept_report(svc, people)
    p, t = a.patient_items, a.items
    assert p["patientIdNumber"] == "00000001"
    assert (p["nameLast"], p["nameFirst"], p["dateOfBirth"], p["sexAssignedAtBirth"]) == ("Rivera", "Ana", "19610402", "2")
    assert (p["vitalStatus"], p["dateOfLastContact"]) == ("1", "20251120")
    assert (t["medicalRecordNumber"], t["addrAtDxState"], t["addrAtDxPostalCode"]) == ("MRN-R1", "OH", "43215")
    assert (t["dateOfDiagnosis"], t["primarySite"], t["histologicTypeIcdO3"], t["behaviorCodeIcdO3"], t["laterality"]) == \
        ("20250310", "C509", "8500", "3", "2")
    assert (t["diagnosticConfirmation"], t["casefindingSource"], t["sequenceNumberHospital"]) == ("1", "20", "00")
    # First course: the mastectomy (not the biopsy), multi-agent chemotherapy, hormone therapy.
    assert (t["rxDateSurgery"], t["rxDateChemo"], t["rxSummChemo"], t["rxDateHormone"], t["rxSummHormone"]) == \
        ("20250402", "20250510", "03", "20250901", "01")
    assert t["classOfCase"] == "14" and t["accessionNumberHosp"] == "202500001"
    # Typed columns for lists and reports.
    assert (a.primary_site, a.histology, a.behavior, a.date_of_diagnosis) == ("C509", "8500", "3", date(2025, 3, 10))
    assert type(a.primary_site).__name__ == "ICDO3Topography"
    assert a.status == "complete" and a.edit_errors == 0
    with db.read() as c:
        [entry] = audit.query(c, limit=50, action="registry.accept")
    assert entry.patient_id == "pat-1" and entry.user_id == people.registrar.user_id


def test_a_second_report_of_the_same_tumour_suggests_linking_not_a_duplicate(db, svc, people, treated, write):
    a = accept_report(svc, people)
    # The coded diagnosis already waiting, and a resection report arriving later, both point at the tumour.
    write(fx.pathology("path-res", "pat-1", "enc-surg", "2025-04-02", fx.RESECTION_REPORT.replace("Left", "Left breast")))
    pending = {r.source_id: r for r in svc.suspense(people.registrar).rows}
    assert pending["cond-1"].link_tumor_id == a.id and pending["path-res"].link_tumor_id == a.id
    with pytest.raises(RegistryError) as err:
        svc.accept(people.registrar, pending["path-res"].id)
    assert err.value.status == 409 and "link this report" in err.value.message
    linked = svc.link(people.registrar, pending["path-res"].id, a.id)
    assert linked.status == "linked" and linked.tumor_id == a.id
    with db.read() as c:
        assert c.execute(select(func.count()).select_from(RegistryTumorRow.__table__)).scalar_one() == 1
    # A true second primary is the registrar's call: then sequence numbers become 01 and 02.
    b = svc.accept(people.registrar, pending["cond-1"].id, new_primary=True)
    assert b.items["sequenceNumberHospital"] == "02" and b.items["casefindingSource"] == "22"
    assert svc.abstract(people.registrar, a.id).items["sequenceNumberHospital"] == "01"


def test_rejecting_needs_a_reason_and_a_decided_item_cannot_be_decided_again(db, svc, people, breast_case):
    item = next(r for r in svc.suspense(people.registrar).rows if r.source_type == "Condition")
    with pytest.raises(RegistryError) as err:
        svc.reject(people.registrar, item.id, " no ")
    assert err.value.status == 422 and "reason" in err.value.message and "5 characters" in err.value.message
    done = svc.reject(people.registrar, item.id, "history of cancer only, no active disease")
    assert done.status == "rejected" and done.reject_reason.startswith("history")
    with pytest.raises(RegistryError) as err:
        svc.accept(people.registrar, item.id)
    assert err.value.status == 409
    assert svc.suspense(people.registrar, status="rejected").total == 1


# --- saving abstracts -------------------------------------------------------------------------------


def test_saving_checks_every_value_and_saves_nothing_when_one_is_bad(db, svc, people, treated):
    a = accept_report(svc, people)
    with pytest.raises(RegistryError) as err:
        svc.save_abstract(people.registrar, a.id, {"primarySite": "C5O9", "laterality": "12", "grade": "2",
                                                   "dateOfDiagnosis": "20250231", "rxDateChemo": "20990101"})
    msg = err.value.message
    assert err.value.status == 422
    assert "primarySite (400)" in msg and "laterality (410)" in msg and "dateOfDiagnosis (390)" in msg
    assert "rxDateChemo (1220)" in msg and "future" in msg
    assert "grade" not in msg  # the good value is not reported...
    assert svc.abstract(people.registrar, a.id).items.get("grade") is None  # ...and not saved either
    saved = svc.save_abstract(people.registrar, a.id, {"grade": "2", "laterality": "1", "rxDateHormone": ""},
                              {"race1": "01"})
    assert saved.items["grade"] == "2" and saved.laterality == "1" and "rxDateHormone" not in saved.items
    assert saved.patient_items["race1"] == "01"


def test_wrong_dictionary_version_items_are_named_with_the_fix(db, svc, people, treated):
    a = accept_report(svc, people)
    with pytest.raises(RegistryError) as err:
        svc.save_abstract(people.registrar, a.id, {}, {"sex": "2", "noSuchItem": "1"})
    assert "sex: there is no such item in NAACCR version 260 (NAACCR 260 uses sexAssignedAtBirth" in err.value.message
    assert "noSuchItem" in err.value.message
    with pytest.raises(RegistryError) as err:
        svc.save_abstract(people.registrar, a.id, {"nameLast": "Rivera"})
    assert "nameLast (2230): this is a Patient-level item" in err.value.message
    v25 = RegistryService(db, svc.records, screener=svc.screener, naaccr_version="250")
    assert v25.save_abstract(people.registrar, a.id, {}, {"sex": "2"}).patient_items["sex"] == "2"
    with pytest.raises(RegistryError):
        RegistryService(db, naaccr_version="230")


def test_edits_run_on_save_and_are_stored(db, svc, people, treated):
    pytest.importorskip("chartkeeper.registry.edits")
    a = accept_report(svc, people)
    saved = svc.save_abstract(people.registrar, a.id, {"dateOfDiagnosis": "19500101"})  # before birth
    assert saved.edit_errors >= 1 and saved.status == "incomplete"
    assert svc.edits(people.registrar, a.id) == saved.edits


# --- follow-up from the record ----------------------------------------------------------------------


def test_a_new_visit_and_a_recorded_death_update_follow_up(db, svc, people, treated, write):
    a = accept_report(svc, people)
    write(fx.encounter("enc-late", "pat-1", "2026-02-03"))
    assert svc.abstract(people.registrar, a.id).patient_items["dateOfLastContact"] == "20260203"
    write(fx.patient("pat-1", "MRN-R1", gp="dr-pcp", deceased="2026-03-01T04:00:00Z"))
    p = svc.abstract(people.registrar, a.id).patient_items
    assert (p["vitalStatus"], p["dateOfLastContact"]) == ("0", "20260301")
    assert svc.refresh_follow_up(people.registrar) == 0  # already up to date


# --- who may see what ----------------------------------------------------------------------------


def test_restricted_patients_are_left_out_and_other_roles_are_refused(db, svc, people, treated):
    a = accept_report(svc, people)
    with db.begin() as c:
        grants.restrict_patient(c, SYSTEM, "pat-1", "vip")
        grants.add_to_care_team(c, SYSTEM, "pat-1", people.registrar.user_id)
    assert svc.suspense(people.registrar).total == 1  # on the care team
    assert svc.suspense(people.registrar2).total == 0 and svc.suspense(people.registrar2).rows == []
    assert svc.suspense_counts(people.registrar2)["pending"] == 0
    for call in (lambda: svc.abstract(people.registrar2, a.id),
                 lambda: svc.save_abstract(people.registrar2, a.id, {"grade": "1"})):
        with pytest.raises(FhirError) as err:
            call()
        assert err.value.status == 403
    for who in (people.coder, people.tech, people.physician):
        with pytest.raises(FhirError) as err:
            svc.suspense(who)
        assert err.value.status == 403
    with pytest.raises(FhirError) as err:
        svc.abstract(people.registrar, "no-such-tumour")
    assert err.value.status == 404
    with db.read() as c:
        denied = audit.query(c, limit=100, outcome="denied")
    assert any(e.patient_id == "pat-1" and e.user_id == people.registrar2.user_id for e in denied)


# --- with the real engines (run once they are merged) ----------------------------------------------


def test_demo_cancer_patients_are_found_and_skin_bcc_is_not(db, records, people):
    pytest.importorskip("chartkeeper.registry.casefinding")
    from chartkeeper.demo import generate_truth
    from chartkeeper.demo.load import load_population

    load_population(db, 120, 11)
    truth = generate_truth(120, 11)
    svc = RegistryService(db, records)
    svc.screen_pending(people.registrar)
    found = {r.patient_id for r in svc.suspense(people.registrar, limit=500).rows}
    assert set(truth["cancer_patients"]) <= found
    assert not found & set(truth["skin_bcc_patients"])


def test_report_text_decodes_attachments():
    from chartkeeper.registry.service import report_text

    doc = {"content": [{"attachment": {"contentType": "text/plain", "data": base64.b64encode(b"abc").decode()}},
                       {"attachment": {"contentType": "application/pdf", "data": "JVBERi0="}}]}
    assert report_text(doc) == "abc"


def test_a_demo_population_through_import_casefinding_and_accept(db, svc, people):
    """The demo's cancer patients (bulk-imported, so queued) are all found, its skin BCC patients are
    not, and the cases made from them carry the record's deaths and treatment."""
    from chartkeeper.demo import generate_truth
    from chartkeeper.demo.load import load_population

    load_population(db, 120, 10, today=date(2026, 3, 1))
    truth = generate_truth(120, 10, today=date(2026, 3, 1))
    assert truth["cancer_patients"] and truth["skin_bcc_patients"]
    assert suspense_rows(db) == []  # a bulk import queues; nothing screened yet
    svc.screen_pending(people.registrar)
    rows = svc.suspense(people.registrar, limit=500).rows
    found = {r.patient_id for r in rows}
    assert set(truth["cancer_patients"]) <= found
    assert not found & set(truth["skin_bcc_patients"])
    first = {}
    for r in rows:
        first.setdefault(r.patient_id, r)
    cases = {pid: svc.accept(people.registrar, r.id) for pid, r in first.items()}
    for pid in set(truth["cancer_patients"]) & set(truth["deceased"]):
        assert cases[pid].patient_items["vitalStatus"] == "0"
    treated = [a for a in cases.values() if a.items.get("rxDateSurgery") or a.items.get("rxDateChemo")]
    assert treated and all(a.items["classOfCase"] == "14" for a in treated)
    # Reports of a tumour already abstracted now suggest linking, never a second case by default.
    later = [r for r in svc.suspense(people.registrar, limit=500).rows if r.status == "pending"]
    # (Where the case has a site: the stand-in screener reads none from a melanoma report's text.)
    unlinked = [r.id for r in later if r.suggested_site and cases[r.patient_id].primary_site and not r.link_tumor_id]
    assert later and unlinked == []


def test_every_naaccr_sample_round_trips_through_the_registry(db, svc, people, shared_data, tmp_path):
    """Each sample file (NAACCR 18 to 25) imports into the registry's tables and exports again as
    NAACCR 25 XML that validates against the XSD, with the same patients, tumours and item values.
    The only values that may not come back are items a later NAACCR version retired (counted by the
    writer), and ``sex``, which the registry keeps under its own version's name."""
    from lxml import etree

    from chartkeeper.registry import naaccr

    schema = etree.XMLSchema(etree.parse(str(shared_data / "naaccr" / "xsd" / "naaccr_data_1.8.xsd")))
    v250 = naaccr.dictionary("250").items
    samples = sorted((shared_data / "naaccr" / "samples").glob("naaccr-xml-sample-v*-10.xml.gz"))
    assert len(samples) >= 12
    for sample in samples:
        header, before, rejects = naaccr.read_all(sample)
        assert not rejects, (sample.name, rejects[:2])
        # A fresh registry per file: the samples reuse patient id numbers.
        with db.begin() as conn:
            for table in ("registry_tumor", "registry_patient"):
                conn.exec_driver_sql(f"DELETE FROM {table}")
        rep = svc.import_file(people.registrar, sample)
        assert not rep.rejects and rep.patients == len(before), (sample.name, rep.rejects[:2])
        out = tmp_path / f"{sample.stem}.xml"
        with out.open("wb") as f:
            svc.export(people.registrar, f, version="250", record_type="A")
        schema.assertValid(etree.parse(str(out)))
        _, after, rejects = naaccr.read_all(out)
        assert not rejects

        def kept(items: dict[str, str]) -> dict[str, str]:
            return {k: v for k, v in items.items() if k in v250}

        def by_id(patients):  # type: ignore[no-untyped-def]
            return {p.items["patientIdNumber"]: p for p in patients}

        a, b = by_id(before), by_id(after)
        assert set(a) == set(b), sample.name
        for pid, p in a.items():
            assert kept(p.items) == kept(b[pid].items), (sample.name, pid)
            assert len(p.tumors) == len(b[pid].tumors), (sample.name, pid)
            for t_before, t_after in zip(sorted(p.tumors, key=_tumor_order), sorted(b[pid].tumors, key=_tumor_order),
                                         strict=True):
                diff = {k: (v, t_after.get(k)) for k, v in kept(t_before).items() if t_after.get(k) != v}
                added = {k: v for k, v in t_after.items() if k not in t_before}
                assert not diff and not added, (sample.name, pid, diff, added)


def _tumor_order(t: dict[str, str]) -> tuple[str, str, str]:
    return (t.get("dateOfDiagnosis", ""), t.get("primarySite", ""), t.get("sequenceNumberCentral", ""))


def test_a_file_that_is_not_naaccr_xml_is_refused_with_the_reason(svc, people, tmp_path):
    from chartkeeper.registry.service import RegistryError

    for name, body, says in (("page.xml", "<html><body>hello</body></html>", "root element must be NaaccrData"),
                             ("junk.xml", "junk <<<", "not well-formed XML at line 1")):
        path = tmp_path / name
        path.write_text(body)
        with pytest.raises(RegistryError) as err:
            svc.import_file(people.registrar, path)
        assert err.value.status == 422 and says in err.value.message and "Nothing was imported" in err.value.message
