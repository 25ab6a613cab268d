"""The coder's pages through the real app (sessions, CSRF, policy, audit), on SQLite and PostgreSQL.

Records are written as the admitting system would (a system job through the record service), so the
coding write listener puts each discharged encounter in the queue before any page is opened. Ann's
inpatient stay has a discharge summary naming pneumonia and acute respiratory failure with hypoxia
(an MCC for a pneumonia stay); Bob's clinic visit is outpatient; Victoria's stay is restricted. Dr A
attends Ann's stay and is linked to the physician account "dr-a". Every test that swaps an id (an
unknown encounter, the restricted patient's, another physician's query) must get 403 or 404 and
never the other record's data.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from chartkeeper.coding.models import AbstractStatus
from chartkeeper.coding.service import CodingService, QueryEvidence
from chartkeeper.config import Settings
from chartkeeper.db import Database
from chartkeeper.fhir.service import RecordService
from chartkeeper.security import audit, grants, policy, users
from chartkeeper.security.policy import Action
from chartkeeper.security.principal import ROLES, Principal
from chartkeeper.web import forms
from chartkeeper.web.app import create_app
from chartkeeper.web.coding_pages import highlight, svg_bars

PASSWORD = "coding-pages-password-1"
SYSTEM = Principal.system("test")
BASE = "https://testserver"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PART = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
SUMMARY = ("DISCHARGE SUMMARY\nDISCHARGE DIAGNOSES:\n1. Community acquired pneumonia\n"
           "2. Acute respiratory failure with hypoxia\nHOSPITAL COURSE: admitted with cough and fever. Chest x-ray "
           "showed right lower lobe pneumonia. She required BiPAP for acute respiratory failure with hypoxia. "
           "Oxygen saturation 84% on room air at admission. Treated with ceftriaxone.\n")


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def patient(family: str, given: str, mrn: str) -> dict:
    return {"resourceType": "Patient", "name": [{"use": "official", "family": family, "given": [given]}],
            "gender": "female", "birthDate": "1950-03-04",
            "identifier": [{"system": forms.MRN_SYSTEM, "value": mrn}]}


def encounter(pid: str, attending: str, cls: str = "IMP", days_ago: int = 3) -> dict:
    end = datetime.now(UTC) - timedelta(days=days_ago)
    return {"resourceType": "Encounter", "status": "finished", "class": {"system": ACT, "code": cls},
            "type": [{"text": "Internal medicine"}], "subject": {"reference": f"Patient/{pid}"},
            "period": {"start": _iso(end - timedelta(days=3)), "end": _iso(end)},
            "participant": [{"type": [{"coding": [{"system": PART, "code": "ATND"}]}],
                             "individual": {"reference": f"Practitioner/{attending}"}}]}


def summary(pid: str, eid: str, author: str, text: str = SUMMARY) -> dict:
    return {"resourceType": "DocumentReference", "status": "current", "docStatus": "final",
            "type": {"coding": [{"system": "http://loinc.org", "code": "18842-5", "display": "Discharge summary"}]},
            "subject": {"reference": f"Patient/{pid}"}, "date": _iso(datetime.now(UTC) - timedelta(days=2)),
            "author": [{"reference": f"Practitioner/{author}"}],
            "context": {"encounter": [{"reference": f"Encounter/{eid}"}]},
            "content": [{"attachment": {"contentType": "text/plain; charset=utf-8",
                                        "data": base64.b64encode(text.encode()).decode()}}]}


@dataclass
class Env:
    db: Database
    svc: RecordService
    coding: CodingService
    client: Callable[[], TestClient]
    ann: str
    ann_enc: str
    ann_doc: str
    bob_enc: str
    vip_enc: str
    dr_a: str
    dr_b: str

    def login(self, c: TestClient, name: str) -> str:
        page = c.get("/login")
        token = CSRF_RE.search(page.text).group(1)  # type: ignore[union-attr]
        r = c.post("/login", data={"username": name, "password": PASSWORD, "csrf_token": token},
                   follow_redirects=False)
        assert r.status_code == 303, r.text
        return CSRF_RE.search(c.get("/").text).group(1)  # type: ignore[union-attr]

    def as_user(self, name: str) -> tuple[TestClient, str]:
        """A logged-in client (a role's user, or a second coder "coder-2", is created on first use)."""
        role = "coder" if name == "coder-2" else name.replace("-", "_")
        if role in ROLES:
            with self.db.begin() as conn:
                if users.find_user(conn, name) is None:
                    users.create_user(conn, name, PASSWORD, [role], actor=SYSTEM, display_name=f"User {name}")
        c = self.client()
        return c, self.login(c, name)

    def status(self, eid: str) -> AbstractStatus:
        return self.coding.abstract(SYSTEM, eid).status


@pytest.fixture
def env(db: Database) -> Env:
    app = create_app(Settings(database_url=db.url, secret_key="test-secret-key", base_url=BASE), db=db)
    svc: RecordService = app.state.records
    dr_a = svc.create(SYSTEM, {"resourceType": "Practitioner", "name": [{"family": "Adams", "given": ["Alice"]}]})[0].id
    dr_b = svc.create(SYSTEM, {"resourceType": "Practitioner", "name": [{"family": "Baker", "given": ["Brian"]}]})[0].id
    ann = svc.create(SYSTEM, patient("Rivera", "Ann", "MRN001"))[0].id
    bob = svc.create(SYSTEM, patient("Okafor", "Bob", "MRN002"))[0].id
    vip = svc.create(SYSTEM, patient("Holloway", "Victoria", "MRN003"))[0].id
    ann_enc = svc.create(SYSTEM, encounter(ann, dr_a))[0].id
    bob_enc = svc.create(SYSTEM, encounter(bob, dr_b, "AMB", days_ago=20))[0].id
    vip_enc = svc.create(SYSTEM, encounter(vip, dr_a))[0].id
    ann_doc = svc.create(SYSTEM, summary(ann, ann_enc, dr_a))[0].id
    svc.create(SYSTEM, summary(vip, vip_enc, dr_a, "VIP secret text.\n" + SUMMARY))
    with db.begin() as conn:
        grants.restrict_patient(conn, SYSTEM, vip, "vip")
        a = users.create_user(conn, "dr-a", PASSWORD, ["physician"], actor=SYSTEM, display_name="Dr Alice Adams")
        b = users.create_user(conn, "dr-b", PASSWORD, ["physician"], actor=SYSTEM, display_name="Dr Brian Baker")
        users.link_practitioner(conn, a.id, dr_a, actor=SYSTEM)
        users.link_practitioner(conn, b.id, dr_b, actor=SYSTEM)

    def client() -> TestClient:
        return TestClient(app, base_url=BASE)

    return Env(db, svc, CodingService(db, records=svc), client, ann, ann_enc, ann_doc, bob_enc, vip_enc, dr_a, dr_b)


def text_of(page: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def hrefs(page: str) -> list[str]:
    return re.findall(r'(?:href|action|hx-post)="([^"]+)"', page)


def section(page: str, sid: str) -> str:
    """The HTML of the page's <section id=sid>."""
    start = page.index(f'<section id="{sid}"')
    return page[start:page.index("</section>", start)]


# --------------------------------------------------------------------------------------------
# The queue


def test_coder_sees_the_dnfb_queue_filters_it_and_takes_an_encounter(env: Env) -> None:
    c, csrf = env.as_user("coder")
    home = c.get("/")
    # The restricted patient's stay is neither listed nor counted for a coder outside the care team.
    assert "2 Discharged, not final billed (DNFB)" in text_of(home.text)
    assert 'href="/coding"' in home.text and "0 Assigned to you" in text_of(home.text)
    r = c.get("/coding")
    assert r.status_code == 200
    page = text_of(r.text)
    assert "Ann Rivera (MRN001)" in page and "Bob Okafor (MRN002)" in page and "Holloway" not in page
    assert "2 discharged, not final billed (DNFB)" in page and "1 inpatient" in page and "1 outpatient" in page
    assert "oldest 20 days" in page
    assert 'accesskey="f" autofocus' in r.text
    # Oldest discharge first; each row links to its workbench by encounter id only.
    assert r.text.index(f'id="enc-{env.bob_enc}"') < r.text.index(f'id="enc-{env.ann_enc}"')
    for href in hrefs(r.text):
        assert "Rivera" not in href and "Okafor" not in href
    assert f'data-href="/coding/{env.ann_enc}"' in r.text
    # Filters.
    inpatient = c.get("/coding?setting=inpatient").text
    assert "Ann Rivera" in inpatient and "Okafor" not in inpatient
    assert "Ann Rivera" not in c.get("/coding?older_than=14").text
    bad = c.get("/coding?setting=ward&older_than=abc&assigned=<script>")
    assert bad.status_code == 400 and "<script>" not in bad.text
    assert "Setting: choose inpatient, outpatient or emergency." in bad.text and "Age: give a number of days" in bad.text
    # Assign to me: without the CSRF token refused; with it, back to the same filtered queue.
    assert c.post(f"/coding/{env.ann_enc}/assign", data={"next": "queue"}).status_code == 403
    r = c.post(f"/coding/{env.ann_enc}/assign", data={"csrf_token": csrf, "next": "queue", "back": "setting=inpatient"},
               follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/coding?setting=inpatient&assigned_ok=1"
    mine = c.get("/coding?assigned=me")
    assert "Ann Rivera" in mine.text and "Okafor" not in mine.text and "Assigned to you" not in mine.text
    assert "1 Assigned to you" in text_of(c.get("/").text)
    assert env.coding.abstract(SYSTEM, env.ann_enc).item.status is AbstractStatus.IN_PROGRESS


# --------------------------------------------------------------------------------------------
# The workbench: suggestions with evidence, codes, edits, MS-DRG, what-if, encoder


def test_suggestions_show_highlighted_evidence_and_accepting_changes_the_drg(env: Env) -> None:
    c, csrf = env.as_user("coder")
    eid = env.ann_enc
    r = c.get(f"/coding/{eid}")
    assert r.status_code == 200
    assert "Rivera, Ann" in r.text and "DISCHARGE DIAGNOSES" in r.text and "No suggestions yet" in r.text
    r = c.post(f"/coding/{eid}/suggest", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/coding/{eid}?suggested=1#suggestions"
    page = c.get(f"/coding/{eid}?suggested=1").text
    # Each evidence span is marked in the document text at its offsets, and the suggestion links to it.
    marks = dict(re.findall(r'<mark id="(ev-[\d-]+)" class="evidence" data-code="(\w+)"', page))
    assert "J189" in marks.values() and "J9601" in marks.values()
    m = re.search(r'<mark id="(ev-[\d-]+)" class="evidence" data-code="J9601"[^>]*>([^<]+)</mark>', page)
    assert m is not None and m.group(2).lower().startswith("acute respiratory failure")
    assert f'href="#{m.group(1)}"' in section(page, "suggestions")
    # Accept pneumonia (POA Y): the principal diagnosis; the stay groups to simple pneumonia without CC/MCC.
    r = c.post(f"/coding/{eid}/decide", data={"csrf_token": csrf, "code": "J189", "decision": "accepted", "poa": "Y"},
               follow_redirects=False)
    assert r.status_code == 303
    page = c.get(f"/coding/{eid}").text
    assert "MS-DRG 195" in section(page, "drg") and "without CC/MCC" in section(page, "drg")
    # Accept respiratory failure without a POA: the DRG moves to "with MCC" and the missing POA is an error edit.
    c.post(f"/coding/{eid}/decide", data={"csrf_token": csrf, "code": "J9601", "decision": "accepted"})
    page = c.get(f"/coding/{eid}").text
    drg = section(page, "drg")
    assert "MS-DRG 193" in drg and "with MCC" in drg and 'sev sev-mcc">MCC' in drg
    edits = section(page, "edits")
    assert 'data-edit="poa.missing"' in edits and "Present-on-admission is missing for J96.01" in edits
    assert edits.index("edit-error") < (edits.index("edit-warning") if "edit-warning" in edits else len(edits))
    # Finalizing now is refused with the error edit in a sentence; nothing final.
    r = c.post(f"/coding/{eid}/finalize", data={"csrf_token": csrf})
    assert r.status_code == 422 and "Not finalized:" in r.text and "Present-on-admission is missing" in r.text
    assert env.status(eid) is AbstractStatus.IN_PROGRESS
    # Fix the edit in the code list (POA Y on the secondary diagnosis): the edit is gone, the DRG stays 193.
    r = c.post(f"/coding/{eid}/codes", data={"csrf_token": csrf, "dx_code": ["J18.9", "J96.01", ""],
                                             "dx_poa": ["Y", "Y", ""]}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/coding/{eid}?saved=1#codes"
    page = c.get(f"/coding/{eid}?saved=1").text
    assert "poa.missing" not in section(page, "edits") and "MS-DRG 193" in section(page, "drg")
    assert "Codes saved" in page
    # What-if without the MCC: an HTML fragment, nothing saved.
    r = c.post(f"/coding/{eid}/what-if", data={"csrf_token": csrf, "remove": "J9601"}, headers={"HX-Request": "true"})
    assert r.status_code == 200 and "<html" not in r.text
    assert "MS-DRG 193" in r.text and "MS-DRG 195" in r.text and "would change from 193 to 195" in r.text
    assert [str(d.code) for d in env.coding.abstract(SYSTEM, eid).diagnoses] == ["J189", "J9601"]
    # Without JavaScript the same form answers with the whole workbench.
    r = c.post(f"/coding/{eid}/what-if", data={"csrf_token": csrf, "remove": "J9601"})
    assert r.status_code == 200 and "would change from 193 to 195" in r.text and "Rivera, Ann" in r.text
    r = c.post(f"/coding/{eid}/what-if", data={"csrf_token": csrf, "add": "NOTACODE"}, headers={"HX-Request": "true"})
    assert r.status_code == 422 and "is not a valid ICD-10-CM code" in r.text


def test_code_list_add_remove_reorder_and_refuse_bad_rows(env: Env) -> None:
    c, csrf = env.as_user("coder")
    eid = env.ann_enc
    c.post(f"/coding/{eid}/codes", data={"csrf_token": csrf, "dx_code": ["J18.9", "I10", "E11.9"],
                                         "dx_poa": ["Y", "Y", "Y"]})
    # Move the third up, remove the second.
    c.post(f"/coding/{eid}/codes", data={"csrf_token": csrf, "dx_code": ["J18.9", "I10", "E11.9"],
                                         "dx_poa": ["Y", "Y", "Y"], "move": "dx-2"})
    assert [str(d.code) for d in env.coding.abstract(SYSTEM, eid).diagnoses] == ["J189", "E119", "I10"]
    c.post(f"/coding/{eid}/codes", data={"csrf_token": csrf, "dx_code": ["J18.9", "E11.9", "I10"],
                                         "dx_poa": ["Y", "Y", "Y"], "dx_remove": ["2"]})
    assert [str(d.code) for d in env.coding.abstract(SYSTEM, eid).diagnoses] == ["J189", "E119"]
    # A bad row: refused with the row marked and the sentence; what was typed is kept; nothing saved.
    r = c.post(f"/coding/{eid}/codes", data={"csrf_token": csrf, "dx_code": ["J18.9", "Q99.99X", "J18.9"],
                                             "dx_poa": ["Y", "Y", "Z"]})
    assert r.status_code == 422
    codes = section(r.text, "codes")
    assert "Nothing was saved" in codes and 'value="Q99.99X"' in codes
    assert "is not an ICD-10-CM code" in codes or "is not a valid ICD-10-CM code" in codes
    assert "is not a POA indicator" in codes and "is listed twice" in codes
    assert [str(d.code) for d in env.coding.abstract(SYSTEM, eid).diagnoses] == ["J189", "E119"]
    # Procedures of an inpatient stay are ICD-10-PCS; a CPT code is refused in a sentence.
    r = c.post(f"/coding/{eid}/codes", data={"csrf_token": csrf, "dx_code": ["J18.9"], "dx_poa": ["Y"],
                                             "px_code": ["99223"], "px_date": [""]})
    assert r.status_code == 422 and "inpatient procedures are coded in ICD-10-PCS" in r.text


def test_encoder_fragment_lists_codes_with_notes_and_seventh_characters(env: Env) -> None:
    c, csrf = env.as_user("coder")
    eid = env.ann_enc
    r = c.post(f"/coding/{eid}/encoder", data={"csrf_token": csrf, "q": "fracture of neck of left femur",
                                               "system": "icd10cm"}, headers={"HX-Request": "true"})
    assert r.status_code == 200 and "<html" not in r.text
    assert 'name="seventh"' in r.text and "initial encounter" in r.text.lower()
    code = re.search(r'<input type="hidden" name="code" value="(S72[0-9A-Z]+)">', r.text)
    assert code is not None
    # The search words never reach a URL.
    assert all("femur" not in h for h in hrefs(r.text))
    # Adding a code that needs its 7th character without one is refused with the fix; with it, added.
    r = c.post(f"/coding/{eid}/add", data={"csrf_token": csrf, "code": code.group(1), "kind": "dx"})
    assert r.status_code == 422 and "needs a 7th character" in r.text
    r = c.post(f"/coding/{eid}/add", data={"csrf_token": csrf, "code": code.group(1), "kind": "dx", "seventh": "A",
                                           "poa": "Y"}, follow_redirects=False)
    assert r.status_code == 303
    dx = env.coding.abstract(SYSTEM, eid).diagnoses
    assert len(dx) == 1 and str(dx[0].code).startswith("S72") and str(dx[0].code).endswith("A") and dx[0].poa == "Y"
    # Empty search: a sentence, and a search by code finds the code.
    r = c.post(f"/coding/{eid}/encoder", data={"csrf_token": csrf, "q": ""}, headers={"HX-Request": "true"})
    assert r.status_code == 422 and "Type a diagnosis or procedure in words" in r.text
    r = c.post(f"/coding/{eid}/encoder", data={"csrf_token": csrf, "q": "J96.01"}, headers={"HX-Request": "true"})
    assert "Acute respiratory failure with hypoxia" in r.text
    # Without JavaScript: the whole workbench with the results in it.
    r = c.post(f"/coding/{eid}/encoder", data={"csrf_token": csrf, "q": "J96.01"})
    assert "Rivera, Ann" in r.text and "Acute respiratory failure with hypoxia" in section(r.text, "encoder")


def test_suggestion_edited_and_rejected(env: Env) -> None:
    c, csrf = env.as_user("coder")
    eid = env.ann_enc
    c.post(f"/coding/{eid}/suggest", data={"csrf_token": csrf})
    # Edit: the coder takes J96.02 instead; a malformed replacement is refused with a sentence.
    r = c.post(f"/coding/{eid}/decide", data={"csrf_token": csrf, "code": "J9601", "decision": "edited",
                                              "final_code": "nonsense"})
    assert r.status_code == 422 and "must be ICD-10-CM" in r.text
    c.post(f"/coding/{eid}/decide", data={"csrf_token": csrf, "code": "J9601", "decision": "edited",
                                          "final_code": "J96.02", "poa": "Y"})
    c.post(f"/coding/{eid}/decide", data={"csrf_token": csrf, "code": "J189", "decision": "rejected"})
    a = env.coding.abstract(SYSTEM, eid)
    decided = {str(s.code): (s.decision.value, s.final_code) for s in a.suggestions}
    assert decided["J9601"] == ("edited", "J9602") and decided["J189"] == ("rejected", None)
    assert [str(d.code) for d in a.diagnoses] == ["J9602"]
    page = c.get(f"/coding/{eid}").text
    assert "edited as J96.02" in text_of(section(page, "suggestions"))


# --------------------------------------------------------------------------------------------
# Queries: compliance, the physician's answer in the inbox, then finalize


def test_query_compliance_answer_in_the_inbox_and_finalize(env: Env) -> None:
    c, csrf = env.as_user("coder")
    eid = env.ann_enc
    c.post(f"/coding/{eid}/codes", data={"csrf_token": csrf, "dx_code": ["J18.9", "J96.01"], "dx_poa": ["Y", "Y"]})
    page = c.get(f"/coding/{eid}").text
    assert f'<option value="{env.dr_a}" selected>' in page  # the attending is proposed
    # A leading question that mentions the DRG: refused, each sentence beside its field, what was typed kept.
    bad = {"csrf_token": csrf, "physician_id": env.dr_a,
           "question": "Please document acute respiratory failure so the DRG is correct.",
           "option": ["Acute respiratory failure", "", "", ""], "evidence_doc": env.ann_doc, "evidence_excerpt": ""}
    r = c.post(f"/coding/{eid}/query", data=bad)
    assert r.status_code == 422
    q = section(r.text, "queries")
    assert 'id="q-question-err"' in q and "leads the physician" in q and "may not refer to payment" in q
    assert 'id="q-options-err"' in q and "at least two clinically reasonable options" in q
    assert 'id="q-evidence-err"' in q and "Quote the indicator" in q
    assert "Please document acute respiratory failure" in q
    assert env.status(eid) is AbstractStatus.IN_PROGRESS
    good = {"csrf_token": csrf, "physician_id": env.dr_a,
            "question": "Based on the clinical indicators below, can the respiratory condition treated with BiPAP "
                        "be further specified?",
            "option": ["Acute respiratory failure with hypoxia", "Hypoxemia without respiratory failure", "", ""],
            "evidence_doc": env.ann_doc, "evidence_excerpt": "Oxygen saturation 84% on room air at admission."}
    r = c.post(f"/coding/{eid}/query", data=good, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/coding/{eid}?queried=1#queries"
    assert env.status(eid) is AbstractStatus.QUERY_PENDING
    page = c.get(f"/coding/{eid}?queried=1").text
    assert "Clinically undetermined" in section(page, "queries") and "query pending" in page
    r = c.post(f"/coding/{eid}/finalize", data={"csrf_token": csrf})
    assert r.status_code == 409 and "A physician query on this encounter is still open" in r.text

    # The physician's inbox: the query with its options as radio buttons; another physician cannot answer it.
    qid = env.coding.abstract(SYSTEM, eid).queries[0].id
    drb, csrf_b = env.as_user("dr-b")
    assert f'id="cq-{qid}"' not in drb.get("/inbox").text
    r = drb.post(f"/inbox/queries/{qid}/answer", data={"csrf_token": csrf_b, "answer": "Other (please specify)",
                                                       "answer_text": "x" * 10})
    assert r.status_code == 403 and "Rivera" not in r.text and "BiPAP" not in r.text
    dra, csrf_a = env.as_user("dr-a")
    inbox = dra.get("/inbox").text
    item = inbox[inbox.index(f'id="cq-{qid}"'):]
    assert "Rivera, Ann" in item and "Oxygen saturation 84% on room air" in item
    assert item.count('type="radio" name="answer"') == 4 and 'value="Clinically undetermined"' in item
    r = dra.post(f"/inbox/queries/{qid}/answer", data={"csrf_token": csrf_a, "answer": "Other (please specify)"})
    assert r.status_code == 422 and f'id="cq-err-{qid}"' in r.text and "write the diagnosis or clarification" in r.text
    assert dra.post(f"/inbox/queries/{qid}/answer", data={"answer": "Clinically undetermined"}).status_code == 403
    r = dra.post(f"/inbox/queries/{qid}/answer", data={"csrf_token": csrf_a,
                                                       "answer": "Acute respiratory failure with hypoxia"},
                 follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/inbox?query_answered=1"
    assert "filed as a signed addendum" in dra.get(r.headers["location"]).text
    assert env.status(eid) is AbstractStatus.IN_PROGRESS

    # The coder sees the answer and finalizes: the DRG and the claim id are shown.
    page = c.get(f"/coding/{eid}").text
    assert "Answer: Acute respiratory failure with hypoxia" in text_of(section(page, "queries"))
    r = c.post(f"/coding/{eid}/finalize", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/coding/{eid}?finalized=1"
    page = c.get(r.headers["location"]).text
    a = env.coding.abstract(SYSTEM, eid)
    assert a.status is AbstractStatus.FINAL and a.drg == "193" and a.claim_id
    assert 'id="final-drg">193</strong>' in page and f'id="final-claim">{a.claim_id}</span>' in page
    assert 'id="finalize-button"' not in page and "Re-open coding" in page
    enc = env.svc.read(SYSTEM, "Encounter", eid).resource()
    assert [d["rank"] for d in enc["diagnosis"]] == [1, 2]
    # Re-open needs a reason.
    r = c.post(f"/coding/{eid}/reopen", data={"csrf_token": csrf, "reason": "no"})
    assert r.status_code == 422 and 'id="reopen-reason-err"' in r.text
    r = c.post(f"/coding/{eid}/reopen", data={"csrf_token": csrf, "reason": "late pathology report"},
               follow_redirects=False)
    assert r.status_code == 303 and env.status(eid) is AbstractStatus.IN_PROGRESS


def test_withdrawing_a_query_reopens_coding(env: Env) -> None:
    c, csrf = env.as_user("coder")
    eid = env.ann_enc
    q = env.coding.send_query(SYSTEM, eid, env.dr_a, "Based on the indicators below, can the type of respiratory "
                              "condition be further specified?", ["Acute respiratory failure", "Hypoxemia"],
                              [QueryEvidence(f"DocumentReference/{env.ann_doc}", "Oxygen saturation 84% on room air")])
    c.post(f"/coding/{eid}/assign", data={"csrf_token": csrf})
    r = c.post(f"/coding/{eid}/queries/{q.id}/withdraw", data={"csrf_token": csrf, "reason": "x"})
    assert r.status_code == 422 and f'id="wd-{q.id}-err"' in r.text
    assert c.post(f"/coding/{env.bob_enc}/queries/{q.id}/withdraw",
                  data={"csrf_token": csrf, "reason": "asked the wrong physician"}).status_code == 404
    r = c.post(f"/coding/{eid}/queries/{q.id}/withdraw", data={"csrf_token": csrf,
                                                               "reason": "asked the wrong physician"},
               follow_redirects=False)
    assert r.status_code == 303 and env.status(eid) is AbstractStatus.IN_PROGRESS


# --------------------------------------------------------------------------------------------
# Reports


def test_reports_show_accuracy_with_a_chart_and_throughput(env: Env) -> None:
    c, csrf = env.as_user("coder")
    eid = env.ann_enc
    c.post(f"/coding/{eid}/suggest", data={"csrf_token": csrf})
    c.post(f"/coding/{eid}/decide", data={"csrf_token": csrf, "code": "J189", "decision": "accepted", "poa": "Y"})
    c.post(f"/coding/{eid}/decide", data={"csrf_token": csrf, "code": "J9601", "decision": "accepted", "poa": "Y"})
    assert c.post(f"/coding/{eid}/finalize", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
    r = c.get("/coding/reports")
    assert r.status_code == 200
    assert "<svg" in r.text and "accepted, edited and rejected" in r.text and "User coder" in r.text
    acc = text_of(r.text[r.text.index("report-accuracy"):])
    assert "icd10cm" in acc and "Rivera" not in r.text
    assert "User coder" in text_of(r.text[r.text.index("report-throughput"):])


# --------------------------------------------------------------------------------------------
# Roles and swapped ids: 403 or 404, never the data


def _may(role: str, action: Action, rtype: str) -> bool:
    return policy.can(Principal("u", "u", frozenset({role})), action, rtype)


@pytest.mark.parametrize("role", ROLES)
def test_each_coding_page_for_each_role(env: Env, role: str) -> None:
    c, csrf = env.as_user(role.replace("_", "-"))
    may_search = _may(role, Action.SEARCH, "CodingAbstract")
    for url in ("/coding", "/coding/reports", f"/coding/{env.ann_enc}"):
        r = c.get(url)
        assert r.status_code == (200 if may_search else 403), (url, r.status_code)
        if not may_search:
            assert "Rivera" not in r.text
    coder = role == "coder"
    posts = [("assign", {}), ("suggest", {}), ("codes", {"dx_code": ["J18.9"], "dx_poa": ["Y"]}),
             ("decide", {"code": "J189", "decision": "accepted"}), ("finalize", {}), ("reopen", {"reason": "a reason"}),
             ("add", {"code": "J189", "kind": "dx"}),
             ("query", {"physician_id": env.dr_a, "question": "Which condition was treated?", "option": ["a", "b"]})]
    for action, data in posts:
        r = c.post(f"/coding/{env.ann_enc}/{action}", data={"csrf_token": csrf, **data}, follow_redirects=False)
        if not coder:
            assert r.status_code == 403, (action, r.status_code)
            assert "Rivera" not in r.text and "DISCHARGE" not in r.text
    if not may_search:
        for action in ("encoder", "what-if"):
            r = c.post(f"/coding/{env.ann_enc}/{action}", data={"csrf_token": csrf, "q": "pneumonia"})
            assert r.status_code == 403 and "Rivera" not in r.text
    nav = c.get("/").text
    assert ('href="/coding"' in nav) == coder
    if role != "physician":
        assert c.post("/inbox/queries/anything/answer", data={"csrf_token": csrf, "answer": "x"}).status_code == 403


def test_swapped_and_unknown_ids_get_403_or_404_and_no_data(env: Env) -> None:
    c, csrf = env.as_user("coder")
    # The restricted patient's stay: refused, nothing of it shown, the refusal audited.
    for method, url in (("get", f"/coding/{env.vip_enc}"), ("post", f"/coding/{env.vip_enc}/suggest"),
                        ("post", f"/coding/{env.vip_enc}/finalize"), ("post", f"/coding/{env.vip_enc}/assign"),
                        ("post", f"/coding/{env.vip_enc}/encoder"), ("post", f"/coding/{env.vip_enc}/what-if")):
        r = getattr(c, method)(url, **({} if method == "get" else {"data": {"csrf_token": csrf, "q": "pneumonia",
                                                                            "remove": "J189"}}))
        assert r.status_code == 403, (url, r.status_code)
        assert "Holloway" not in r.text and "VIP secret" not in r.text
    with env.db.read() as conn:
        denied = audit.query(conn, outcome="denied", user_id=None)
    assert any(e.username == "coder" and e.patient_id is not None for e in denied)
    # Unknown and malformed encounter ids.
    assert c.get("/coding/no-such-encounter").status_code == 404
    assert c.get("/coding/bad$id").status_code == 404
    assert c.post("/coding/no-such-encounter/suggest", data={"csrf_token": csrf}).status_code == 404
    assert c.post("/coding/no-such-encounter/encoder", data={"csrf_token": csrf, "q": "x"}).status_code == 404
    # An encounter another coder holds: a sentence, nothing changed.
    other, csrf2 = env.as_user("coder-2")
    other.post(f"/coding/{env.ann_enc}/assign", data={"csrf_token": csrf2})
    r = c.post(f"/coding/{env.ann_enc}/codes", data={"csrf_token": csrf, "dx_code": ["J18.9"], "dx_poa": ["Y"]})
    assert r.status_code == 409 and "assigned to another coder" in r.text
    assert env.coding.abstract(SYSTEM, env.ann_enc).diagnoses == []
    # A physician's query answered by an unknown id: 404.
    dra, csrf_a = env.as_user("dr-a")
    assert dra.post("/inbox/queries/no-such-query/answer", data={"csrf_token": csrf_a, "answer": "x"}).status_code == 404


# --------------------------------------------------------------------------------------------
# Units


def test_highlight_marks_spans_in_order_and_skips_bad_or_overlapping_ones() -> None:
    text = "Pneumonia and acute respiratory failure."
    segs = highlight(text, [(14, 39, "ev-1-0", "J9601"), (0, 9, "ev-0-0", "J189"), (5, 20, "ev-2-0", "X"),
                            (30, 99, "ev-3-0", "Y")])
    assert "".join(s.text for s in segs) == text
    assert [(s.text, s.mark) for s in segs if s.mark] == [("Pneumonia", "ev-0-0"),
                                                           ("acute respiratory failure", "ev-1-0")]
    assert highlight("", []) == []


def test_svg_bars_escape_names() -> None:
    @dataclass
    class Row:
        coder: str
        coder_name: str
        system: str
        suggestions: int
        accepted: int
        edited: int
        rejected: int

    svg = svg_bars([Row("u1", "<b>Eve</b>", "icd10cm", 4, 2, 1, 1)])
    assert "<b>" not in svg and "&lt;b&gt;Eve" in svg and svg.count("<rect") == 3
    assert svg_bars([]) == ""
