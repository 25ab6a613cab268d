"""Chart completion pages through the real app (sessions, CSRF, policy, audit), on SQLite and PostgreSQL.

Records are written through the record service as a system job; the write listener analyses each
chart as it is written, so the deficiencies exist before any page is opened. Two physicians are
linked to two practitioners: Dr A attends Ann's stay and wrote its unsigned discharge summary, Dr B
attends Bob's. Every test that swaps an id (another physician's deficiency or document, an unknown
one) must get 403 or 404 and never the other record's data.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from chartkeeper.completion.rules import RuleFileError
from chartkeeper.completion.service import CompletionService, QueueFilter
from chartkeeper.config import Settings
from chartkeeper.db import Database
from chartkeeper.fhir.service import RecordService
from chartkeeper.security import audit, grants, policy, users
from chartkeeper.security.policy import Action
from chartkeeper.security.principal import ROLES, Principal
from chartkeeper.web import forms
from chartkeeper.web.app import create_app
from chartkeeper.web.completion_pages import service_token

PASSWORD = "completion-pages-password-1"
SYSTEM = Principal.system("test")
BASE = "https://testserver"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PART = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
SUMMARY_TEXT = ("DISCHARGE DIAGNOSES\nCommunity-acquired pneumonia.\nPROCEDURES\nNone.\nDISPOSITION\nHome.\n"
                "DISCHARGE MEDICATIONS\nAmoxicillin 1 g three times a day.\nFOLLOW-UP\nPrimary care in 1 week.\n")


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def patient(family: str, given: str, mrn: str) -> dict:
    return {"resourceType": "Patient", "name": [{"use": "official", "family": family, "given": [given]}],
            "gender": "female", "birthDate": "1960-01-01",
            "identifier": [{"system": forms.MRN_SYSTEM, "value": mrn}]}


def practitioner(family: str, given: str) -> dict:
    return {"resourceType": "Practitioner", "name": [{"family": family, "given": [given], "prefix": ["Dr"]}]}


def stay(pid: str, attending: str, service: str, days_ago: int = 2) -> dict:
    end = datetime.now(UTC) - timedelta(days=days_ago)
    return {"resourceType": "Encounter", "status": "finished", "class": {"system": ACT, "code": "IMP"},
            "type": [{"text": service}], "subject": {"reference": f"Patient/{pid}"},
            "period": {"start": _iso(end - timedelta(days=3)), "end": _iso(end)},
            "participant": [{"type": [{"coding": [{"system": PART, "code": "ATND"}]}],
                             "individual": {"reference": f"Practitioner/{attending}"}}]}


def summary(pid: str, eid: str, author: str, text: str = SUMMARY_TEXT) -> dict:
    return {"resourceType": "DocumentReference", "status": "current", "docStatus": "preliminary",
            "type": {"coding": [{"system": "http://loinc.org", "code": "18842-5", "display": "Discharge summary"}]},
            "subject": {"reference": f"Patient/{pid}"}, "date": _iso(datetime.now(UTC) - timedelta(days=1)),
            "author": [{"reference": f"Practitioner/{author}"}],
            "context": {"encounter": [{"reference": f"Encounter/{eid}"}]},
            "content": [{"attachment": {"contentType": "text/plain; charset=utf-8",
                                        "data": base64.b64encode(text.encode()).decode()}}]}


@dataclass
class Env:
    db: Database
    svc: RecordService
    completion: CompletionService
    client: Callable[[], TestClient]
    ann: str
    bob: str
    vip: str
    dr_a: str
    dr_b: str
    ann_doc: str
    bob_doc: str
    vip_doc: str

    def login(self, c: TestClient, name: str) -> str:
        page = c.get("/login")
        token = CSRF_RE.search(page.text).group(1)  # type: ignore[union-attr]
        r = c.post("/login", data={"username": name, "password": PASSWORD, "csrf_token": token},
                   follow_redirects=False)
        assert r.status_code == 303, r.text
        home = c.get("/")
        assert home.status_code == 200
        return CSRF_RE.search(home.text).group(1)  # type: ignore[union-attr]

    def as_user(self, name: str) -> tuple[TestClient, str]:
        """A logged-in client for this user (a role's user is created on first use)."""
        role = name.replace("-", "_")
        if role in ROLES:
            with self.db.begin() as conn:
                if users.find_user(conn, name) is None:
                    users.create_user(conn, name, PASSWORD, [role], actor=SYSTEM, display_name=f"User {role}")
        c = self.client()
        return c, self.login(c, name)

    def deficiency(self, document_id: str | None = None, rule: str | None = None, physician: str | None = None,
                   status: str = "open") -> str:
        rows = self.completion.queue(SYSTEM, QueueFilter(status=status, rule_id=rule, physician_id=physician,
                                                         limit=500)).rows
        rows = [d for d in rows if document_id is None or d.document_id == document_id]
        if document_id is None:  # the restricted patient's deficiencies only when asked for by document
            rows = [d for d in rows if d.patient_id != self.vip]
        assert rows, (document_id, rule, physician)
        return rows[0].id

    def status_of(self, did: str) -> str:
        return self.completion.deficiency(SYSTEM, did).status


@pytest.fixture
def env(db: Database) -> Env:
    app = create_app(Settings(database_url=db.url, secret_key="test-secret-key", base_url=BASE), db=db)
    svc: RecordService = app.state.records
    dr_a = svc.create(SYSTEM, practitioner("Adams", "Alice"))[0].id
    dr_b = svc.create(SYSTEM, practitioner("Baker", "Brian"))[0].id
    ann = svc.create(SYSTEM, patient("Rivera", "Ann", "MRN001"))[0].id
    bob = svc.create(SYSTEM, patient("Okafor", "Bob", "MRN002"))[0].id
    vip = svc.create(SYSTEM, patient("Holloway", "Victoria", "MRN003"))[0].id
    ann_enc = svc.create(SYSTEM, stay(ann, dr_a, "Pulmonology"))[0].id
    bob_enc = svc.create(SYSTEM, stay(bob, dr_b, "Cardiology", days_ago=40))[0].id
    vip_enc = svc.create(SYSTEM, stay(vip, dr_a, "Pulmonology"))[0].id
    ann_doc = svc.create(SYSTEM, summary(ann, ann_enc, dr_a))[0].id
    bob_doc = svc.create(SYSTEM, summary(bob, bob_enc, dr_b, "Secret text of Bob's stay.\n" + SUMMARY_TEXT))[0].id
    vip_doc = svc.create(SYSTEM, summary(vip, vip_enc, dr_a, "VIP summary text.\n" + SUMMARY_TEXT))[0].id
    with db.begin() as conn:
        grants.restrict_patient(conn, SYSTEM, vip, "vip")
        a = users.create_user(conn, "dr-a", PASSWORD, ["physician"], actor=SYSTEM, display_name="Dr Alice Adams")
        b = users.create_user(conn, "dr-b", PASSWORD, ["physician"], actor=SYSTEM, display_name="Dr Brian Baker")
        users.link_practitioner(conn, a.id, dr_a, actor=SYSTEM)
        users.link_practitioner(conn, b.id, dr_b, actor=SYSTEM)

    def client() -> TestClient:
        return TestClient(app, base_url=BASE)

    return Env(db, svc, app.state.completion, client, ann, bob, vip, dr_a, dr_b, ann_doc, bob_doc, vip_doc)


def text_of(page: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def hrefs(page: str) -> list[str]:
    return re.findall(r'(?:href|action)="([^"]+)"', page)


# --------------------------------------------------------------------------------------------
# App start


def test_a_bad_rule_file_stops_start_up_with_its_sentences(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "rules.toml"
    bad.write_text('version = "x"\n[delinquency]\ndays_after_discharge = -1\n[[rule]]\nid = "Bad Id"\nkind = "nonsense"\n')
    monkeypatch.setenv("CHARTKEEPER_COMPLETION_RULES", str(bad))
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with pytest.raises(RuleFileError) as err:
            create_app(Settings(database_url=db.url, secret_key="k", base_url=BASE), db=db)
    finally:
        db.dispose()
    assert str(bad) in str(err.value) and len(err.value.problems) == 2
    assert "days_after_discharge must be a whole number of days" in str(err.value)
    assert "Rule 1: id must be lower-case letters" in str(err.value)
    monkeypatch.delenv("CHARTKEEPER_COMPLETION_RULES")


# --------------------------------------------------------------------------------------------
# The technician's queue


def test_technician_queue_counts_and_filters(env: Env) -> None:
    c, _csrf = env.as_user("him-technician")
    home = text_of(c.get("/").text)
    open_now = env.completion.counts(SYSTEM)
    assert open_now["open"] >= 4
    # The restricted patient's deficiencies are neither listed nor counted for a technician outside the care team.
    mine = env.completion.queue(SYSTEM, QueueFilter(limit=500)).rows
    visible = [d for d in mine if d.patient_id != env.vip]
    assert f"{len(visible)} Open chart deficiencies" in home
    assert "2 Incomplete charts" in home and "1 Delinquent charts" in home and "0 Answered by physicians" in home
    assert 'href="/completion"' in c.get("/").text

    r = c.get("/completion")
    assert r.status_code == 200
    page = text_of(r.text)
    assert "Ann Rivera (MRN001)" in page and "Bob Okafor (MRN002)" in page and "Holloway" not in page
    assert "Sign document" in page and "Dr Alice Adams" in page and "Inpatient" in page
    assert 'accesskey="f" autofocus' in r.text  # the first filter has the focus
    # Links carry ids only: chart, document, filters.
    for href in hrefs(r.text):
        assert "Rivera" not in href and "Pulmonology" not in href
    assert f'href="/documents/{env.ann_doc}"' in r.text and f'href="/patients/{env.ann}#encounters"' in r.text

    by_a = c.get(f"/completion?physician={env.dr_a}")
    assert "Ann Rivera" in by_a.text and "Okafor" not in by_a.text
    by_rule = text_of(c.get("/completion?rule=authentication").text)
    assert "Sign document" in by_rule and "History and physical" not in by_rule.split("Deficiency")[-1]
    old = c.get("/completion?older_than=30")
    assert "Okafor" in old.text and "Ann Rivera (MRN001)" not in old.text
    svc_filter = c.get(f"/completion?service={service_token('Cardiology')}")
    assert "Okafor" in svc_filter.text and "Ann Rivera (MRN001)" not in svc_filter.text
    assert "Okafor" in c.get("/completion?cls=IMP").text
    # A bad filter is named in a sentence, and dropped.
    bad = c.get("/completion?rule=nope&older_than=abc&physician=<script>")
    assert bad.status_code == 400
    assert "Rule: choose a rule from the list" in bad.text and "Age: give a number of days" in bad.text
    assert "Physician: choose a physician" in bad.text and "<script>" not in bad.text
    # Filtering by a service's text instead of its digest is refused, not searched.
    assert c.get("/completion?service=Cardiology").status_code == 400


def test_waive_and_reassign_in_bulk(env: Env) -> None:
    c, csrf = env.as_user("him-technician")
    sign_a = env.deficiency(env.ann_doc, "authentication")
    hp_a = env.deficiency(rule="hp-24h", physician=env.dr_a)
    # No CSRF token: refused, nothing changed.
    assert c.post("/completion/waive", data={"ids": [sign_a], "reason": "filed on paper"}).status_code == 403
    # No reason: the sentence names the field; nothing changed; the ticked rows stay ticked.
    r = c.post("/completion/waive", data={"ids": [sign_a, hp_a], "reason": "", "csrf_token": csrf})
    assert r.status_code == 422
    assert 'id="f-reason-err"' in r.text and "Say why the deficiency is waived" in r.text
    assert "Nothing was changed." in r.text and f'value="{sign_a}" id="sel-{sign_a}" checked' in r.text
    assert env.status_of(sign_a) == "open" and env.status_of(hp_a) == "open"
    # Nothing ticked.
    r = c.post("/completion/waive", data={"reason": "document filed on paper", "csrf_token": csrf})
    assert r.status_code == 422 and "Choose at least one deficiency" in r.text
    # Unknown and malformed ids: 404, nothing changed (all or nothing).
    r = c.post("/completion/waive", data={"ids": [hp_a, "no-such-id"], "reason": "filed on paper",
                                          "csrf_token": csrf})
    assert r.status_code == 404 and env.status_of(hp_a) == "open"
    assert c.post("/completion/waive", data={"ids": ["../etc"], "reason": "filed on paper",
                                             "csrf_token": csrf}).status_code == 404
    # Waive one.
    r = c.post("/completion/waive", data={"ids": [hp_a], "reason": "history and physical filed on paper",
                                          "csrf_token": csrf, "back": f"physician={env.dr_a}"},
               follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/completion?physician={env.dr_a}&done=waived&n=1"
    assert "1 deficiency waived." in c.get(r.headers["location"]).text
    assert env.status_of(hp_a) == "waived"
    # Waiving it again is a conflict, said in a sentence.
    r = c.post("/completion/waive", data={"ids": [hp_a], "reason": "again and again", "csrf_token": csrf})
    assert r.status_code == 409 and "already waived" in r.text
    # Reassign: no physician chosen, then an unknown one, then Dr B.
    r = c.post("/completion/reassign", data={"ids": [sign_a], "physician": "", "csrf_token": csrf})
    assert r.status_code == 422 and 'id="f-physician-err"' in r.text
    r = c.post("/completion/reassign", data={"ids": [sign_a], "physician": "nobody", "csrf_token": csrf})
    assert r.status_code == 422 and "pick one from the list" in r.text
    assert env.completion.deficiency(SYSTEM, sign_a).physician_id == env.dr_a
    r = c.post("/completion/reassign", data={"ids": [sign_a], "physician": env.dr_b, "csrf_token": csrf},
               follow_redirects=False)
    assert r.status_code == 303 and "done=reassigned" in r.headers["location"]
    assert env.completion.deficiency(SYSTEM, sign_a).physician_id == env.dr_b
    with env.db.read() as conn:
        actions = {e.action for e in audit.query(conn, resource_type="Task")}
    assert {"completion.waive", "completion.reassign"} <= actions


def test_restricted_patients_deficiencies_cannot_be_waived_by_a_technician_outside_the_care_team(env: Env) -> None:
    c, csrf = env.as_user("him-technician")
    vip_def = env.deficiency(env.vip_doc, "authentication")
    r = c.post("/completion/waive", data={"ids": [vip_def], "reason": "filed on paper", "csrf_token": csrf})
    assert r.status_code == 403 and "Holloway" not in r.text and "VIP summary" not in r.text
    assert env.status_of(vip_def) == "open"


# --------------------------------------------------------------------------------------------
# Roles


def _may(role: str, action: Action, rtype: str) -> bool:
    return policy.can(Principal("u", "u", frozenset({role})), action, rtype)


@pytest.mark.parametrize("role", ROLES)
def test_each_completion_page_for_each_role(env: Env, role: str) -> None:
    c, csrf = env.as_user(role.replace("_", "-"))
    sign_a = env.deficiency(env.ann_doc, "authentication")
    may_search = _may(role, Action.SEARCH, "Task")
    for url in ("/completion", "/completion/report", "/completion/report.csv", "/completion/notifications"):
        r = c.get(url)
        assert r.status_code == (200 if may_search else 403), (url, r.status_code)
        if not may_search:
            assert "Rivera" not in r.text
    him = role == "him_technician"
    r = c.post("/completion/waive", data={"ids": [sign_a], "reason": "filed on paper", "csrf_token": csrf},
               follow_redirects=False)
    assert r.status_code == (303 if him else 403)
    assert env.status_of(sign_a) == ("waived" if him else "open")
    r = c.post("/completion/notifications/run", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == (303 if him else 403)
    # The inbox is the physician's: this physician account is not linked to a practitioner, so it is
    # told so; every other role is refused.
    inbox = c.get("/inbox")
    assert inbox.status_code == 403
    if role == "physician":
        assert "not linked to a practitioner" in inbox.text
    r = c.post(f"/documents/{env.ann_doc}/sign", data={"csrf_token": csrf})
    assert r.status_code == 403 and "DISCHARGE DIAGNOSES" not in r.text
    # Reading the document follows the matrix (and audits the read).
    r = c.get(f"/documents/{env.ann_doc}")
    assert r.status_code == (200 if _may(role, Action.READ, "DocumentReference") else 403)
    assert ("Community-acquired pneumonia" in r.text) == (r.status_code == 200)
    assert "Sign document" not in r.text
    nav = c.get("/").text
    assert ('href="/completion"' in nav) == him


# --------------------------------------------------------------------------------------------
# The physician's inbox: open, sign, answer


def test_physician_signs_from_the_inbox_and_the_deficiency_closes(env: Env) -> None:
    c, csrf = env.as_user("dr-a")
    home = text_of(c.get("/").text)
    assert re.search(r"(\d+) Your open chart deficiencies", home)
    mine = env.completion.queue(SYSTEM, QueueFilter(physician_id=env.dr_a, limit=500)).rows
    visible = [d for d in mine if d.patient_id != env.vip]
    assert f"{len(visible)} Your open chart deficiencies" in home
    inbox = c.get("/inbox")
    assert inbox.status_code == 200
    assert "Ann Rivera" in inbox.text and "Okafor" not in inbox.text and "Holloway" not in inbox.text
    assert f'action="/documents/{env.ann_doc}/sign"' in inbox.text
    assert f'href="/documents/{env.ann_doc}"' in inbox.text
    # Open the document: its text, through the record's audited read path.
    doc = c.get(f"/documents/{env.ann_doc}")
    assert doc.status_code == 200 and "Community-acquired pneumonia" in doc.text and "Unsigned" in doc.text
    assert "Sign document" in doc.text and "Rivera, Ann" in doc.text
    with env.db.read() as conn:
        reads = audit.query(conn, action="read", patient_id=env.ann)
    assert any(e.resource_id == env.ann_doc and e.username == "dr-a" for e in reads)
    # Sign without the CSRF token: refused.
    assert c.post(f"/documents/{env.ann_doc}/sign", data={}).status_code == 403
    sign_def = env.deficiency(env.ann_doc, "authentication")
    r = c.post(f"/documents/{env.ann_doc}/sign", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/documents/{env.ann_doc}?signed=1"
    signed = c.get(r.headers["location"])
    assert "Signed." in signed.text and "Sign document" not in signed.text
    assert "Signed</span> by Adams, Alice" in signed.text
    assert env.status_of(sign_def) == "completed"
    stored = env.svc.read(SYSTEM, "DocumentReference", env.ann_doc).resource()
    assert stored["docStatus"] == "final" and stored["authenticator"]["reference"] == f"Practitioner/{env.dr_a}"
    # Signing twice is a conflict (the document is locked).
    again = c.post(f"/documents/{env.ann_doc}/sign", data={"csrf_token": csrf})
    assert again.status_code == 409 and "addendum" in again.text
    # The inbox lists it among the recently closed; the queue no longer has it open.
    inbox = c.get("/inbox").text
    closed = inbox.split("Closed in the last")[1]
    assert f'id="def-{sign_def}"' in closed and "completed" in closed
    tech, _ = env.as_user("him-technician")
    assert f'id="def-{sign_def}"' not in tech.get("/completion").text
    assert f'id="def-{sign_def}"' in tech.get("/completion?status=completed").text


def test_a_physician_cannot_sign_or_answer_for_another(env: Env) -> None:
    c, csrf = env.as_user("dr-b")
    sign_a = env.deficiency(env.ann_doc, "authentication")
    # Dr B may read Ann's document (the matrix lets physicians read documents) but is offered no Sign button.
    doc = c.get(f"/documents/{env.ann_doc}")
    assert doc.status_code == 200 and "Sign document" not in doc.text
    r = c.post(f"/documents/{env.ann_doc}/sign", data={"csrf_token": csrf})
    assert r.status_code == 403 and "only its author or the attending" in r.text
    assert "Community-acquired" not in r.text
    assert env.svc.read(SYSTEM, "DocumentReference", env.ann_doc).resource()["docStatus"] == "preliminary"
    r = c.post(f"/inbox/{sign_a}/answer", data={"answer": "not my patient at all", "csrf_token": csrf})
    assert r.status_code == 403 and "Rivera" not in r.text
    assert env.completion.deficiency(SYSTEM, sign_a).response == ""
    # Unknown and malformed ids.
    assert c.post("/documents/no-such-doc/sign", data={"csrf_token": csrf}).status_code == 404
    assert c.post("/inbox/no-such-deficiency/answer", data={"answer": "not mine, sorry",
                                                             "csrf_token": csrf}).status_code == 404
    assert c.get("/documents/bad$id").status_code == 404
    # A restricted patient's document: 403 and nothing of it.
    r = c.get(f"/documents/{env.vip_doc}")
    assert r.status_code == 403 and "VIP summary" not in r.text and "Holloway" not in r.text
    # Dr B's own inbox holds only Bob's chart.
    inbox = c.get("/inbox").text
    assert "Bob Okafor" in inbox and "Rivera" not in inbox
    with env.db.read() as conn:
        denied = audit.query(conn, outcome="denied", user_id=None)
    assert any(e.username == "dr-b" and e.resource_id == env.ann_doc for e in denied)


def test_physician_answers_why_it_cannot_be_completed(env: Env) -> None:
    c, csrf = env.as_user("dr-b")
    mine = env.deficiency(env.bob_doc, "authentication")
    r = c.post(f"/inbox/{mine}/answer", data={"answer": "no", "csrf_token": csrf})
    assert r.status_code == 422 and f'id="answer-{mine}-err"' in r.text and "at least 5 characters" in r.text
    assert env.completion.deficiency(SYSTEM, mine).response == ""
    assert c.post(f"/inbox/{mine}/answer", data={"answer": "was not the attending"}).status_code == 403
    r = c.post(f"/inbox/{mine}/answer", data={"answer": "I was not the attending for this stay",
                                              "csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/inbox?answered=1"
    page = c.get("/inbox?answered=1").text
    assert "Your answer was sent" in page and "I was not the attending for this stay" in page
    tech, _ = env.as_user("him-technician")
    assert "1 Answered by physicians" in text_of(tech.get("/").text)
    answered = tech.get("/completion?answered=yes").text
    assert "I was not the attending for this stay" in answered and f'id="def-{mine}"' in answered


# --------------------------------------------------------------------------------------------
# Report and notifications


def test_delinquency_report_and_csv(env: Env) -> None:
    c, _ = env.as_user("him-technician")
    r = c.get("/completion/report")
    assert r.status_code == 200
    assert "<svg" in r.text and "Discharges and delinquency rate per month" in r.text
    assert "By physician" in r.text and "By service" in r.text and "Cardiology" in r.text
    assert "provisional" in r.text and "Baker" in r.text
    month = datetime.now(UTC).strftime("%Y-%m")
    assert month in r.text
    csv = c.get("/completion/report.csv?months=6")
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert csv.headers["content-disposition"].startswith('attachment; filename="delinquency-6m-')
    assert csv.text.splitlines()[0].startswith("section,month_or_name,discharges")
    assert "Rivera" not in csv.text
    bad = c.get("/completion/report?months=abc")
    assert bad.status_code == 400 and "between 1 and 120" in bad.text
    assert c.get("/completion/report?months=500").status_code == 400


def test_reminders_are_sent_listed_and_shown_in_the_inbox(env: Env) -> None:
    c, csrf = env.as_user("him-technician")
    assert "No reminder or escalation has been sent yet." in c.get("/completion/notifications").text
    r = c.post("/completion/notifications/run", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/completion/notifications?sent=")
    page = c.get(r.headers["location"]).text
    assert "notifications sent" in page or "notification sent" in page
    assert "reminder" in page and "escalation" in page and "Baker" in page
    assert "Rivera" not in page  # counts and names of physicians only
    dr, _ = env.as_user("dr-b")
    inbox = dr.get("/inbox").text
    assert "waiting for your signature or documentation" in inbox
