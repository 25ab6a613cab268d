"""Chart completion through the record service, as users work (SQLite and PostgreSQL).

The HIM technician writes an encounter and its documents through ``RecordService``; the write listener
analyses the chart in the same transaction. Deficiencies show in the technician's queue, in the
physician's inbox and as FHIR Tasks; signing, waiving, reassigning and answering change them; the
delinquency report and the reminders read them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from completion_fhir import (
    DISCHARGE,
    FULL_SUMMARY,
    HP,
    OP_NOTE,
    PROGRESS,
    docref,
    encounter,
    procedure,
    when,
)
from sqlalchemy import func, select

from chartkeeper.completion.models import DeficiencyRow, NotificationRow, PendingRow
from chartkeeper.completion.notify import SmtpSender
from chartkeeper.completion.rules import RuleFileError, load_rules
from chartkeeper.completion.service import CompletionError, CompletionService, QueueFilter
from chartkeeper.fhir.errors import FhirError
from chartkeeper.security import audit, grants
from chartkeeper.security.principal import Principal

SYSTEM = Principal.system("test")
DEF = DeficiencyRow.__table__
NOTE = NotificationRow.__table__
PENDING = PendingRow.__table__
NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


def rows(db, **where):
    with db.read() as c:
        stmt = select(DEF).order_by(DEF.c.rule_id, DEF.c.subject)
        for k, v in where.items():
            stmt = stmt.where(DEF.c[k] == v)
        return [r._asdict() for r in c.execute(stmt)]


def by_rule(db, encounter_id):
    return {(r["rule_id"], r["subject"]): r for r in rows(db, encounter_id=encounter_id)}


def admit(put, people, eid="enc-1", pid="pat-1", **kw):
    """A discharged four-day stay of Dr Okafor's, written by the technician."""
    return put(people.tech, encounter(eid, pid, "dr-att", **kw))


def audit_entries(db, **kw):
    with db.read() as c:
        return audit.query(c, limit=1000, **kw)


# --- discharge opens deficiencies and Tasks -----------------------------------------------------


def test_writing_a_discharged_encounter_opens_deficiencies_and_tasks_for_the_attending(db, records, svc, people, put):
    admit(put, people)
    got = by_rule(db, "enc-1")
    assert set(got) == {("hp-24h", ""), ("discharge-summary", "")}
    assert all(r["status"] == "open" and r["physician_id"] == "dr-att" for r in got.values())
    assert got[("hp-24h", "")]["due_at"].replace(tzinfo=UTC) == when(24)

    # Each deficiency is a FHIR Task anyone with workflow access can GET.
    task = records.read(people.tech, "Task", got[("discharge-summary", "")]["id"]).resource()
    assert task["status"] == "requested" and task["businessStatus"]["text"] == "open"
    assert task["owner"] == {"reference": "Practitioner/dr-att"}
    assert task["focus"] == {"reference": "Encounter/enc-1"} and task["encounter"] == {"reference": "Encounter/enc-1"}
    assert task["for"] == {"reference": "Patient/pat-1"}
    assert task["code"]["coding"][0]["code"] == "discharge-summary"
    assert task["restriction"]["period"]["end"].startswith("2026-02-08T08:00")
    found = records.search(people.att, "Task", [("owner", "Practitioner/dr-att"), ("status", "requested")])
    assert found.total == 2

    # The queue and the physician's inbox show the same two.
    page = svc.queue(people.tech)
    assert page.total == 2 and page.charts == 1 and page.patients["pat-1"].endswith("(MRN-C1)")
    assert {d.rule_id for d in svc.inbox(people.att).rows} == {"hp-24h", "discharge-summary"}
    assert svc.inbox(people.surg).rows == []


def test_an_encounter_still_in_progress_has_no_deficiencies(db, svc, people, put):
    put(people.tech, encounter("enc-1", "pat-1", "dr-att", hours=None, status="in-progress"))
    assert rows(db) == []
    assert svc.queue(people.tech).total == 0


def test_a_missing_document_arriving_closes_its_deficiency_by_itself(db, records, people, put):
    admit(put, people)
    hp_id = by_rule(db, "enc-1")[("hp-24h", "")]["id"]
    put(people.tech, docref("hp-1", "pat-1", "enc-1", HP, 6))
    got = by_rule(db, "enc-1")
    assert got[("hp-24h", "")]["status"] == "completed" and got[("hp-24h", "")]["completed_how"] == "document arrived"
    # ...and the unsigned H&P now waits for its author's signature.
    assert got[("authentication", "DocumentReference/hp-1")]["status"] == "open"
    assert records.read(people.tech, "Task", hp_id).resource()["status"] == "completed"

    # A late document closes it as completed late.
    admit(put, people, eid="enc-2")
    # (Signed elsewhere and sent by the interface engine, a system job: users cannot set a signature.)
    put(SYSTEM, docref("hp-2", "pat-1", "enc-2", HP, 30, signed=True))
    late = by_rule(db, "enc-2")[("hp-24h", "")]
    assert late["status"] == "completed" and late["completed_how"] == "document arrived late"
    # It was open in the record until the document arrived: completed then, not at the note's own date.
    assert datetime.now(UTC) - late["completed_at"].replace(tzinfo=UTC) < timedelta(minutes=5)
    assert records.read(people.tech, "Task", late["id"]).resource()["businessStatus"]["text"] == "completed late"


def test_an_operative_report_is_needed_per_procedure(db, people, put):
    admit(put, people)
    put(people.tech, procedure("pr-1", "pat-1", "enc-1", 10))
    put(people.tech, procedure("pr-2", "pat-1", "enc-1", 50))
    put(SYSTEM, docref("op-1", "pat-1", "enc-1", OP_NOTE, 12, author="dr-surg", signed=True))
    ops = {k: r for k, r in by_rule(db, "enc-1").items() if k[0] == "operative-report"}
    assert {k[1]: r["status"] for k, r in ops.items()} == {"Procedure/pr-1": "completed", "Procedure/pr-2": "open"}
    assert ops[("operative-report", "Procedure/pr-2")]["physician_id"] == "dr-surg"


# --- signing --------------------------------------------------------------------------------------


def test_signing_closes_the_deficiency_records_who_and_when_and_locks_the_document(db, records, svc, people, put):
    admit(put, people)
    put(people.tech, docref("hp-1", "pat-1", "enc-1", HP, 6))
    out = svc.sign(people.att, "hp-1", now=when(9))

    sig = by_rule(db, "enc-1")[("authentication", "DocumentReference/hp-1")]
    assert sig["status"] == "completed" and sig["completed_how"] == "signed"
    doc = records.read(people.tech, "DocumentReference", "hp-1").resource()
    assert doc["docStatus"] == "final" and doc["authenticator"] == {"reference": "Practitioner/dr-att"}
    assert doc["meta"]["versionId"] == "2"
    prov = records.read(people.tech, "Provenance", out["provenance"]["id"]).resource()
    assert prov["target"][0]["reference"] == "DocumentReference/hp-1/_history/2"
    [s] = prov["signature"]
    assert s["who"] == {"reference": "Practitioner/dr-att"} and s["when"].startswith("2026-01-05T17:00:00")
    assert s["type"][0]["code"] == "1.2.840.10065.1.12.1.1"  # author's signature
    [entry] = audit_entries(db, action="sign", resource_id="hp-1")
    assert entry.user_id == people.att.user_id and entry.outcome == "success" and entry.patient_id == "pat-1"

    # Locked: a later change of content is refused; the version stays.
    doc["description"] = "changed after signing"
    with pytest.raises(FhirError) as err:
        records.update(people.tech, "DocumentReference", "hp-1", doc)
    assert err.value.status == 409 and "addendum" in err.value.message
    assert records.read(people.tech, "DocumentReference", "hp-1").version_id == 2
    with pytest.raises(CompletionError) as again:
        svc.sign(people.att, "hp-1")
    assert again.value.status == 409

    # An addendum is accepted, and waits for its own signature.
    add = docref("add-1", "pat-1", "enc-1", PROGRESS, 20, text="ADDENDUM\nAllergy to penicillin noted.\n",
                 appends="hp-1")
    res = put(people.tech, add)
    assert res.outcome == "created"
    assert by_rule(db, "enc-1")[("authentication", "DocumentReference/add-1")]["status"] == "open"


def test_the_attending_may_cosign_a_residents_note(db, records, svc, people, put):
    admit(put, people)
    put(people.tech, docref("pn-1", "pat-1", "enc-1", PROGRESS, 20, author="dr-res"))
    assert by_rule(db, "enc-1")[("authentication", "DocumentReference/pn-1")]["physician_id"] == "dr-res"
    out = svc.sign(people.att, "pn-1", now=when(30))
    assert out["provenance"]["signature"][0]["type"][0]["code"] == "1.2.840.10065.1.12.1.6"  # co-author
    assert by_rule(db, "enc-1")[("authentication", "DocumentReference/pn-1")]["status"] == "completed"
    [entry] = audit_entries(db, action="sign", resource_id="pn-1")
    assert "co-signer" in entry.detail


# --- re-analysis is idempotent and keeps the technician's decisions --------------------------------


def _snapshot(db, records):
    with db.read() as c:
        defs = [tuple(r) for r in c.execute(select(DEF).order_by(DEF.c.id))]
        tasks = records.store.history_count(c, "Task")
    return defs, tasks


def test_analyzing_again_changes_nothing_and_duplicates_nothing(db, records, svc, people, put):
    admit(put, people)
    put(people.tech, docref("hp-1", "pat-1", "enc-1", HP, 6))
    put(people.tech, procedure("pr-1", "pat-1", "enc-1", 10))
    before = _snapshot(db, records)
    first = svc.analyze(people.tech)
    second = svc.analyze(people.tech)
    assert _snapshot(db, records) == before
    assert first["encounters_analysed"] == second["encounters_analysed"] == 1
    assert second["opened"] == 0 and second["completed_now"] == 0
    assert second["deficiencies"] == first["deficiencies"] == {"open": 3, "completed": 1, "waived": 0}
    assert second["by_rule"]["operative-report"] == {"open": 1, "completed": 0, "waived": 0}
    [entry, _] = audit_entries(db, action="completion.analyze")
    assert entry.user_id == people.tech.user_id and "1 encounters analysed" in entry.detail


def test_a_waived_deficiency_stays_waived(db, records, svc, people, put):
    admit(put, people)
    hp = by_rule(db, "enc-1")[("hp-24h", "")]
    [d] = svc.waive(people.tech, [hp["id"]], "H&P filed on paper in the ED record")
    assert d.status == "waived" and d.waived_reason.startswith("H&P filed")
    svc.analyze(people.tech)
    put(people.tech, docref("hp-1", "pat-1", "enc-1", HP, 40))  # a late H&P arrives after all
    again = by_rule(db, "enc-1")[("hp-24h", "")]
    assert again["status"] == "waived" and again["id"] == hp["id"]
    task = records.read(people.tech, "Task", hp["id"]).resource()
    assert task["status"] == "cancelled" and task["statusReason"]["text"].startswith("H&P filed")
    assert len(rows(db, rule_id="hp-24h")) == 1
    [entry] = audit_entries(db, action="completion.waive")
    assert entry.resource_id == hp["id"] and entry.user_id == people.tech.user_id


def test_a_reassignment_survives_re_analysis(db, records, svc, people, put):
    admit(put, people)
    ds = by_rule(db, "enc-1")[("discharge-summary", "")]
    [d] = svc.reassign(people.tech, [ds["id"]], "Practitioner/dr-other")
    assert d.physician_id == "dr-other"
    svc.analyze(people.tech)
    put(people.tech, encounter("enc-1", "pat-1", "dr-att", hours=100))  # the discharge time is corrected
    got = by_rule(db, "enc-1")[("discharge-summary", "")]
    assert got["physician_id"] == "dr-other" and got["due_at"].replace(tzinfo=UTC) == when(100 + 720)
    assert records.read(people.tech, "Task", ds["id"]).resource()["owner"] == {"reference": "Practitioner/dr-other"}
    assert [x.rule_id for x in svc.inbox(people.other).rows] == ["discharge-summary"]
    assert [x.rule_id for x in svc.inbox(people.att).rows] == ["hp-24h"]


def test_a_physician_answers_and_it_goes_back_to_him(db, records, svc, people, put):
    admit(put, people)
    ds = by_rule(db, "enc-1")[("discharge-summary", "")]
    d = svc.respond(people.att, ds["id"], "Not my patient: I was covering for one night only.")
    assert d.status == "open" and d.response.startswith("Not my patient") and d.responded_at is not None
    task = records.read(people.tech, "Task", ds["id"]).resource()
    assert task["status"] == "rejected" and task["statusReason"]["text"].startswith("Not my patient")
    assert [x.id for x in svc.queue(people.tech, QueueFilter(answered=True)).rows] == [ds["id"]]
    assert svc.counts(people.tech)["answered"] == 1
    # Another physician cannot answer it; refused, audited, unchanged.
    with pytest.raises(CompletionError) as err:
        svc.respond(people.other, ds["id"], "Not mine either, sorry.")
    assert err.value.status == 403
    [denied] = audit_entries(db, action="completion.respond", outcome="denied")
    assert denied.user_id == people.other.user_id
    assert rows(db, id=ds["id"])[0]["response"].startswith("Not my patient")


def test_bulk_waive_is_all_or_nothing(db, svc, people, put):
    admit(put, people)
    got = by_rule(db, "enc-1")
    hp, ds = got[("hp-24h", "")]["id"], got[("discharge-summary", "")]["id"]
    svc.waive(people.tech, [hp], "filed on paper record")
    with pytest.raises(CompletionError) as err:
        svc.waive(people.tech, [ds, hp], "patient left against advice")
    assert err.value.status == 409
    assert rows(db, id=ds)[0]["status"] == "open"
    with pytest.raises(CompletionError) as err:
        svc.waive(people.tech, [ds, "no-such-deficiency"], "patient left against advice")
    assert err.value.status == 404 and rows(db, id=ds)[0]["status"] == "open"
    with pytest.raises(CompletionError) as err:
        svc.waive(people.tech, [ds], "no")
    assert err.value.status == 422 and "reason" in err.value.message
    assert len(audit_entries(db, action="completion.waive")) == 1


def test_only_him_staff_waive_reassign_or_send_reminders(db, svc, people, put):
    """The matrix lets physicians update workflow data (their own tasks), but waiving or reassigning a
    deficiency is HIM's decision: the attending cannot waive their own; refused and audited."""
    admit(put, people)
    hp = by_rule(db, "enc-1")[("hp-24h", "")]["id"]
    for call in (lambda: svc.waive(people.att, [hp], "I was not the admitting physician"),
                 lambda: svc.reassign(people.att, [hp], "dr-other"),
                 lambda: svc.send_reminders(people.att)):
        with pytest.raises(CompletionError) as err:
            call()
        assert err.value.status == 403 and "him_technician" in err.value.message
    assert rows(db, id=hp)[0]["status"] == "open" and rows(db, id=hp)[0]["physician_id"] == "dr-att"
    denied = [e for e in audit_entries(db) if e.outcome == "denied" and e.user_id == people.att.user_id]
    assert {e.action for e in denied} >= {"completion.waive", "completion.reassign", "completion.remind"}


# --- batch analysis -------------------------------------------------------------------------------


def _bulk_stays(db, records, ids_and_offsets):
    """Stays imported in bulk (no inline analysis): discharged ``days`` after T0+4d."""
    res = []
    for eid, days in ids_and_offsets:
        enc = encounter(eid, "pat-1", "dr-att")
        start = when(24 * days)
        enc["period"] = {"start": start.isoformat().replace("+00:00", "Z"),
                         "end": (start + timedelta(hours=96)).isoformat().replace("+00:00", "Z")}
        res.append(enc)
    with db.begin() as conn:
        records.ingest(conn, SYSTEM, res, source="test import")


def test_analyze_since_until_covers_discharges_in_the_range(db, records, svc, people):
    _bulk_stays(db, records, [("enc-jan", 0), ("enc-feb", 31), ("enc-mar", 60)])
    assert rows(db) == []
    feb = datetime(2026, 2, 1, tzinfo=UTC)
    out = svc.analyze(people.tech, since=feb, until=datetime(2026, 3, 1, tzinfo=UTC))
    assert out["encounters_analysed"] == 1 and out["opened"] == 2
    assert {r["encounter_id"] for r in rows(db)} == {"enc-feb"}
    out = svc.analyze(people.tech, since=feb)
    assert out["encounters_analysed"] == 2 and {r["encounter_id"] for r in rows(db)} == {"enc-feb", "enc-mar"}
    out = svc.analyze(people.tech)
    assert out["encounters_analysed"] == 3 and out["opened"] == 2 and out["charts"] == 3
    assert out["by_rule"]["hp-24h"]["open"] == 3


def test_analyze_pending_after_a_bulk_import(db, records, svc, people):
    _bulk_stays(db, records, [("enc-a", 0), ("enc-b", 3)])
    with db.read() as c:
        assert sorted(r[0] for r in c.execute(select(PENDING.c.encounter_id))) == ["enc-a", "enc-b"]
    assert rows(db) == []
    counts = svc.analyze_pending(people.tech)
    assert counts.encounters == 2 and counts.opened == 4
    with db.read() as c:
        assert c.execute(select(func.count()).select_from(PENDING)).scalar_one() == 0
    assert svc.analyze_pending(people.tech).encounters == 0


def test_counts_for_the_home_pages(db, svc, people, put):
    admit(put, people)
    admit(put, people, eid="enc-2")
    ds = by_rule(db, "enc-2")[("discharge-summary", "")]["id"]
    svc.respond(people.att, ds, "Dictated, waiting for transcription.")
    c = svc.counts(people.tech, now=NOW)
    assert c == {"open": 4, "charts": 2, "delinquent_charts": 2, "answered": 1, "mine": 0}
    assert svc.counts(people.att, now=when(0))["mine"] == 4
    assert svc.counts(people.att, now=when(0))["delinquent_charts"] == 0


# --- delinquency ----------------------------------------------------------------------------------


def test_delinquency_report_on_a_hand_made_set(db, records, svc, people):
    # Four January stays of Dr Okafor's, discharged 2026-01-09 (T0 + 96h).
    res = [encounter(e, "pat-1", "dr-att") for e in ("enc-late", "enc-ok", "enc-waived", "enc-open")]
    res += [docref(f"hp-{e}", "pat-1", e, HP, 6, signed=True) for e in ("enc-late", "enc-ok", "enc-waived", "enc-open")]
    # Completed after 30 days: delinquent. Completed within: not.
    res.append(docref("dc-late", "pat-1", "enc-late", DISCHARGE, 96 + 24 * 40, signed=True, text=FULL_SUMMARY))
    res.append(docref("dc-ok", "pat-1", "enc-ok", DISCHARGE, 96 + 24 * 10, signed=True, text=FULL_SUMMARY))
    with db.begin() as conn:
        records.ingest(conn, SYSTEM, res)
    svc.analyze(people.tech, now=NOW)
    waived = by_rule(db, "enc-waived")[("discharge-summary", "")]["id"]
    svc.waive(people.tech, [waived], "patient transferred; summary from receiving hospital")
    late = by_rule(db, "enc-late")[("discharge-summary", "")]
    assert late["status"] == "completed" and late["completed_at"].replace(tzinfo=UTC) == when(96 + 24 * 40)

    rep = svc.delinquency(people.tech, months=3, now=NOW)
    jan = {m["month"]: m for m in rep.months}["2026-01"]
    assert jan["discharges"] == 4 and jan["delinquent"] == 2 and not jan["provisional"]
    # Rate: delinquent charts over the average monthly discharges of the period (4 / 3 months).
    assert rep.avg_monthly_discharges == pytest.approx(4 / 3)
    assert jan["rate"] == pytest.approx(150.0)
    assert rep.delinquent_now == 2
    assert [(p["physician_id"], p["delinquent"], p["open"]) for p in rep.by_physician] == [("dr-att", 2, 1)]
    assert rep.by_physician[0]["physician"] == "Dr. Ada Okafor"
    assert rep.by_service == [{"service": "General medicine", "discharges": 4, "delinquent": 2, "rate": 50.0}]
    lines = rep.csv().splitlines()
    assert lines[0].startswith("section,month_or_name,discharges,delinquent_charts")
    assert "month,2026-01,4,2,150.0,,no" in lines
    assert "physician,Dr. Ada Okafor,,2,,1," in lines
    assert "service,General medicine,4,2,50.0,," in lines
    # A month whose limit has not yet passed is provisional.
    assert {m["month"]: m for m in rep.months}["2026-03"]["provisional"]


def test_a_chart_completed_within_30_days_is_not_delinquent_even_if_late_for_its_rule(db, records, svc, people):
    # H&P 3 days after admission: late for hp-24h, but the chart was complete well within 30 days.
    res = [encounter("enc-1", "pat-1", "dr-att"), docref("hp", "pat-1", "enc-1", HP, 72, signed=True),
           docref("dc", "pat-1", "enc-1", DISCHARGE, 95, signed=True, text=FULL_SUMMARY)]
    with db.begin() as conn:
        records.ingest(conn, SYSTEM, res)
    svc.analyze(people.tech, now=NOW)
    assert [(r["rule_id"], r["status"]) for r in rows(db)] == [("hp-24h", "completed")]
    rep = svc.delinquency(people.tech, months=3, now=NOW)
    assert rep.delinquent_now == 0 and rep.months[0]["discharges"] == 1 and rep.months[0]["delinquent"] == 0


# --- reminders and escalation ----------------------------------------------------------------------


class FakeSender:
    """The SMTP boundary, replaced: records what would have been sent (or fails like a down server)."""

    def __init__(self, error: str | None = None) -> None:
        self.sent: list[tuple[str, str, str]] = []
        self.error = error

    def send(self, to: str, subject: str, body: str) -> str | None:
        self.sent.append((to, subject, body))
        return self.error


def _notes(db):
    with db.read() as c:
        return [r._asdict() for r in c.execute(select(NOTE).order_by(NOTE.c.id))]


def test_reminders_one_per_physician_per_interval_and_escalation_once(db, svc, people, put):
    admit(put, people)  # dr-att: hp-24h, discharge-summary
    put(people.tech, procedure("pr-1", "pat-1", "enc-1", 10))  # dr-surg: operative-report
    sender = FakeSender()
    made = svc.send_reminders(people.tech, now=NOW, sender=sender)
    reminders = [m for m in made if m["kind"] == "reminder"]
    assert sorted((m["physician_id"], m["deficiencies"]) for m in reminders) == [("dr-att", 2), ("dr-surg", 1)]
    [esc] = [m for m in made if m["kind"] == "escalation"]
    assert esc["recipient"] == "him-director@hospital.example.org" and esc["deficiencies"] == 3
    assert {s[0] for s in sender.sent} == {"okafor@hospital.example.org", "lindqvist@hospital.example.org",
                                          "him-director@hospital.example.org"}
    body = next(b for to, _, b in sender.sent if to.startswith("okafor"))
    assert "Dear Dr. Ada Okafor" in body and "Rivera" not in body and "MRN" not in body  # no PHI in e-mail
    assert all(n["channel"] == "email" and n["sent_at"] is not None and n["error"] == "" for n in _notes(db))

    # Within the interval: nothing new. Escalation never repeats for the same deficiencies.
    assert svc.send_reminders(people.tech, now=NOW + timedelta(days=1), sender=sender) == []
    later = svc.send_reminders(people.tech, now=NOW + timedelta(days=3, minutes=1), sender=sender)
    assert sorted(m["physician_id"] for m in later) == ["dr-att", "dr-surg"]
    assert all(m["kind"] == "reminder" for m in later)
    # A newly delinquent deficiency escalates once, by itself.
    admit(put, people, eid="enc-2")
    again = svc.send_reminders(people.tech, now=NOW + timedelta(days=3, minutes=2), sender=sender)
    [esc2] = [m for m in again if m["kind"] == "escalation"]
    assert esc2["deficiencies"] == 2 and "1 charts became delinquent" in esc2["subject"]
    assert len([n for n in _notes(db) if n["kind"] == "escalation"]) == 2
    assert audit_entries(db, action="completion.remind")[0].user_id == people.tech.user_id


def test_reminders_are_stored_even_when_the_mail_server_fails(db, svc, people, put):
    admit(put, people)
    made = svc.send_reminders(people.tech, now=NOW, sender=FakeSender(error="The mail server is down."))
    assert made and all(m["error"] == "The mail server is down." for m in made if m["recipient"])
    notes = _notes(db)
    assert notes and all(n["sent_at"] is None and n["error"] == "The mail server is down." for n in notes)
    # Shown in the UI all the same.
    assert {n["kind"] for n in svc.notifications(people.tech)} == {"reminder", "escalation"}
    assert [n["kind"] for n in svc.notifications(people.att, physician_only=True)] == ["reminder"]


def test_a_real_smtp_sender_that_cannot_connect_stores_the_reason(db, svc, people, put):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    admit(put, people)
    svc.send_reminders(people.tech, now=NOW, sender=SmtpSender("127.0.0.1", port, timeout=2))
    notes = [n for n in _notes(db) if n["recipient"]]
    assert notes and all(n["sent_at"] is None and f"127.0.0.1:{port}" in n["error"] for n in notes)


def test_reminders_delivered_through_a_real_smtp_server(db, svc, people, put):
    pytest.importorskip("aiosmtpd", reason="aiosmtpd (a local SMTP server for this test) is not installed")
    from aiosmtpd.controller import Controller

    class Inbox:
        def __init__(self) -> None:
            self.messages: list[tuple[str, list[str], bytes]] = []

        async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
            return "250 OK"

    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inbox = Inbox()
    ctl = Controller(inbox, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        admit(put, people)
        made = svc.send_reminders(people.tech, now=NOW,
                                  sender=SmtpSender("127.0.0.1", port, sender="him@hospital.example.org"))
    finally:
        ctl.stop()
    assert {tuple(m[1]) for m in inbox.messages} == {("okafor@hospital.example.org",),
                                                      ("him-director@hospital.example.org",)}
    assert all(m[0] == "him@hospital.example.org" for m in inbox.messages)
    text = next(m[2] for m in inbox.messages if m[1] == ["okafor@hospital.example.org"]).decode()
    assert "Subject: 2 incomplete chart items" in text and "Rivera" not in text
    assert all(m["error"] == "" for m in made)
    assert all(n["sent_at"] is not None for n in _notes(db))


# --- bad input: clear error, audited, nothing changed ------------------------------------------------


def test_a_malformed_rule_file_stops_the_service_before_it_touches_anything(db, tmp_path, people, put):
    bad = tmp_path / "rules.toml"
    bad.write_text('extends = "default"\n[overrides.hp-24h]\nwithin_hours = -24\n')
    with pytest.raises(RuleFileError) as err:
        CompletionService(db, rules=load_rules(bad))
    assert "'hp-24h'" in str(err.value) and "within_hours" in str(err.value)
    assert rows(db) == []


def test_reassigning_to_an_unknown_physician_is_refused_and_audited(db, records, svc, people, put):
    admit(put, people)
    ds = by_rule(db, "enc-1")[("discharge-summary", "")]
    with pytest.raises(CompletionError) as err:
        svc.reassign(people.tech, [ds["id"]], "Practitioner/dr-nobody")
    assert err.value.status == 422 and "physician" in err.value.message and "dr-nobody" in err.value.message
    [entry] = audit_entries(db, action="completion.reassign")
    assert entry.outcome == "failure" and entry.user_id == people.tech.user_id and entry.detail == "unknown physician"
    after = rows(db, id=ds["id"])[0]
    assert after["physician_id"] == "dr-att" and after["reassigned_by"] is None
    assert records.read(people.tech, "Task", ds["id"]).version_id == 1


def test_a_document_for_an_encounter_that_does_not_exist_is_refused(db, records, svc, people, put):
    admit(put, people)
    with pytest.raises(FhirError) as err:
        records.create(people.tech, docref(None, "pat-1", "enc-missing", HP, 6))
    assert err.value.status == 422
    [issue] = err.value.issues
    assert issue.path == "DocumentReference.context.encounter" and "Encounter/enc-missing does not exist" in issue.message
    assert records.search(people.tech, "DocumentReference", [("patient", "pat-1")]).total == 0
    [entry] = audit_entries(db, action="create", outcome="failure")
    assert entry.user_id == people.tech.user_id and entry.resource_type == "DocumentReference"
    assert "context.encounter" in entry.detail
    assert {r["rule_id"] for r in rows(db)} == {"hp-24h", "discharge-summary"}
    # The same document, for the right encounter, is accepted.
    records.create(people.tech, docref(None, "pat-1", "enc-1", HP, 6))
    assert by_rule(db, "enc-1")[("hp-24h", "")]["status"] == "completed"


def test_a_signature_by_someone_not_the_author_or_attending_is_refused(db, records, svc, people, put):
    admit(put, people)
    put(people.tech, docref("pn-1", "pat-1", "enc-1", PROGRESS, 20, author="dr-res"))
    with pytest.raises(CompletionError) as err:
        svc.sign(people.other, "pn-1")
    assert err.value.status == 403 and "author" in err.value.message
    [entry] = audit_entries(db, action="sign", outcome="denied")
    assert entry.user_id == people.other.user_id and entry.resource_id == "pn-1" and entry.patient_id == "pat-1"
    doc = records.read(people.tech, "DocumentReference", "pn-1")
    assert doc.version_id == 1 and doc.resource()["docStatus"] == "preliminary"
    assert records.search(people.tech, "Provenance", [("target", "DocumentReference/pn-1")]).total == 0
    assert by_rule(db, "enc-1")[("authentication", "DocumentReference/pn-1")]["status"] == "open"
    # A user who is not a linked physician cannot sign at all.
    with pytest.raises(CompletionError) as err:
        svc.sign(people.tech, "pn-1")
    assert err.value.status == 403 and "link-practitioner" in err.value.message


# --- policy ---------------------------------------------------------------------------------------


def test_roles_without_workflow_access_are_denied_and_audited(db, svc, people, put):
    admit(put, people)
    ds = by_rule(db, "enc-1")[("discharge-summary", "")]["id"]
    with pytest.raises(FhirError) as err:
        svc.queue(people.release)
    assert err.value.status == 403
    with pytest.raises(FhirError) as err:
        svc.counts(people.release)
    assert err.value.status == 403
    # The registrar may look at the queue but not change it.
    assert svc.queue(people.registrar).total == 2
    with pytest.raises(FhirError) as err:
        svc.waive(people.registrar, [ds], "registrar trying to waive")
    assert err.value.status == 403
    with pytest.raises(FhirError) as err:
        svc.analyze(people.registrar)
    assert err.value.status == 403
    with pytest.raises(FhirError) as err:
        svc.analyze_pending(people.release)
    assert err.value.status == 403
    denied = audit_entries(db, outcome="denied")
    assert {(e.user_id, e.action) for e in denied} >= {(people.release.user_id, "search"),
                                                        (people.registrar.user_id, "update")}
    assert rows(db, id=ds)[0]["status"] == "open"


def test_restricted_patients_deficiencies_are_not_in_another_users_queue_or_counts(db, svc, people, put):
    admit(put, people)
    admit(put, people, eid="enc-2", pid="pat-2")
    with db.begin() as c:
        grants.restrict_patient(c, SYSTEM, "pat-2", "vip")
    page = svc.queue(people.tech)
    assert {d.patient_id for d in page.rows} == {"pat-1"} and page.total == 2 and page.charts == 1
    assert svc.counts(people.tech)["open"] == 2
    assert {d.patient_id for d in svc.inbox(people.att).rows} == {"pat-1"}
    # On the care team, the technician sees them again.
    with db.begin() as c:
        grants.add_to_care_team(c, SYSTEM, "pat-2", people.tech2.user_id)
    assert svc.queue(people.tech2).total == 4 and svc.counts(people.tech2)["open"] == 4
    assert svc.queue(people.tech).total == 2
    # Acting on one directly is denied (and audited) as a restricted patient.
    hidden = by_rule(db, "enc-2")[("hp-24h", "")]["id"]
    with pytest.raises(FhirError) as err:
        svc.waive(people.tech, [hidden], "waiving a hidden deficiency")
    assert err.value.status == 403
    assert any(e.patient_id == "pat-2" and "restricted" in (e.detail or "")
               for e in audit_entries(db, user_id=people.tech.user_id, outcome="denied"))


def test_the_tasks_the_server_builds_are_valid_fhir(db, records, svc, people, put):
    """Task resources are written without validating each one again (they are built by
    ``task_resource``), so every shape it builds is validated here: open, answered, completed (late),
    waived, reassigned."""
    from chartkeeper.fhir.validation import validate

    admit(put, people)
    put(people.tech, procedure("pr-1", "pat-1", "enc-1", 10))
    got = by_rule(db, "enc-1")
    hp, ds = got[("hp-24h", "")]["id"], got[("discharge-summary", "")]["id"]
    svc.waive(people.tech, [hp], "filed on the paper record")
    svc.respond(people.att, ds, "The patient left before the summary was dictated.")
    svc.reassign(people.tech, [got[("operative-report", "Procedure/pr-1")]["id"]], "dr-other")
    put(SYSTEM, docref("hp-late", "pat-1", "enc-1", HP, 30, signed=True))
    seen = set()
    for r in rows(db):
        task = records.read(people.tech, "Task", r["id"]).resource()
        assert validate(task) == [], (task, validate(task))
        seen.add((task["status"], task["businessStatus"]["text"]))
    assert {"cancelled", "rejected", "requested"} <= {s for s, _ in seen}


def test_a_document_entered_in_error_closes_its_signature_deficiency_as_no_longer_required(db, records, people, put):
    admit(put, people)
    put(people.tech, docref("pn-1", "pat-1", "enc-1", HP, 6))
    assert by_rule(db, "enc-1")[("authentication", "DocumentReference/pn-1")]["status"] == "open"
    records.delete(people.tech, "DocumentReference", "pn-1")
    gone = by_rule(db, "enc-1")[("authentication", "DocumentReference/pn-1")]
    assert gone["status"] == "completed" and gone["completed_how"] == "no longer required"


# --- batches --------------------------------------------------------------------------------------

KEEP = ("encounter_id", "rule_id", "subject", "status", "physician_id", "due_at", "completed_at", "completed_how",
        "document_id", "title", "patient_id")


def _bulk_charts(db, records):
    """Eight stays of two patients, imported in bulk (nothing analysed yet), with documents on time,
    late, unsigned, signed later through a Provenance, a procedure with and without its note, and
    a specimen: what one batch must keep apart from its neighbours."""
    from completion_fhir import PATHOLOGY, signature, specimen

    res = []
    for n in range(8):
        pid, eid = ("pat-1", "pat-2")[n % 2], f"enc-b{n}"
        enc = encounter(eid, pid, ("dr-att", "dr-other")[n % 2])
        start = when(24 * 10 * n)
        enc["period"] = {"start": start.isoformat().replace("+00:00", "Z"),
                         "end": (start + timedelta(hours=96)).isoformat().replace("+00:00", "Z")}
        res.append(enc)
        base = 24 * 10 * n
        if n % 3 != 0:
            res.append(docref(f"hp-b{n}", pid, eid, HP, base + (6 if n % 2 else 40), signed=n % 4 != 1))
        if n % 2 == 0:
            res.append(docref(f"ds-b{n}", pid, eid, DISCHARGE, base + 100, text=FULL_SUMMARY))
            res.append(signature(f"sig-b{n}", f"ds-b{n}", base + 120))
        if n in (2, 5):
            res.append(procedure(f"pr-b{n}", pid, eid, base + 10))
            res.append(specimen(f"sp-b{n}", pid, base + 10))
            if n == 2:
                res.append(docref(f"op-b{n}", pid, eid, OP_NOTE, base + 12, "dr-surg", signed=True))
                res.append(docref(f"pa-b{n}", pid, eid, PATHOLOGY, base + 60, signed=True))
    with db.begin() as conn:
        records.ingest(conn, SYSTEM, res, source="test import")
    return [f"enc-b{n}" for n in range(8)]


def test_analysis_in_batches_finds_what_each_chart_alone_finds(db, records, svc, people, monkeypatch):
    """The batch run reads many charts with one query per kind of resource and groups what it read by
    encounter and patient; each chart analysed on its own (in a transaction rolled back) must give
    the very same deficiencies, and the Tasks written must be the ones built from the stored rows."""
    import chartkeeper.completion.service as service

    class RollBack(Exception):
        pass

    encounters = _bulk_charts(db, records)
    alone = set()
    for eid in encounters:
        with pytest.raises(RollBack), db.begin() as conn:
            svc.analyze_encounters(conn, [eid], now=NOW)
            alone |= {tuple(r._mapping[k] for k in KEEP) for r in conn.execute(select(DEF))}
            raise RollBack
    assert rows(db) == [] and len({a[0] for a in alone}) == 8
    monkeypatch.setattr(service, "BATCH", 3)
    out = svc.analyze(people.tech, now=NOW)
    assert out["encounters_analysed"] == 8
    assert {tuple(r[k] for k in KEEP) for r in rows(db)} == alone
    for r in rows(db):
        task = records.read(people.tech, "Task", r["id"]).resource()
        del task["meta"]
        assert task == svc.task_resource(DeficiencyRow(**r))


def test_tasks_follow_the_rows_when_a_chart_changes(db, records, svc, people, put):
    """A deficiency closed or changed by re-analysis is written to its Task from the values just
    stored (not read back): the Task must equal the one built from the row as read."""
    admit(put, people)
    put(people.tech, procedure("pr-1", "pat-1", "enc-1", 10))
    put(SYSTEM, docref("hp-late", "pat-1", "enc-1", HP, 30, signed=True))
    put(people.tech, docref("op-1", "pat-1", "enc-1", OP_NOTE, 12, "dr-surg"))
    changed = [r for r in rows(db, encounter_id="enc-1") if r["status"] == "completed"]
    assert changed
    for r in rows(db, encounter_id="enc-1"):
        task = records.read(people.tech, "Task", r["id"]).resource()
        del task["meta"]
        assert task == svc.task_resource(DeficiencyRow(**r))


def test_deficiency_ids_are_time_ordered_uuids(db, svc, people, put):
    """Deficiency (and Task) ids are version 7 UUIDs: the ones made later sort after, so the rows of a
    batch land next to each other in every index keyed by id."""
    import time
    import uuid

    admit(put, people)
    first = {r["id"] for r in rows(db)}
    time.sleep(0.002)
    admit(put, people, eid="enc-2")
    later = {r["id"] for r in rows(db)} - first
    assert first and later
    assert all(uuid.UUID(i).version == 7 for i in first | later)
    assert max(first) < min(later)
