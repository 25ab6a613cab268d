"""The cancer registrar's pages through the real app (sessions, CSRF, policy, audit, the real
casefinding engine, NAACCR dictionary and edits), on SQLite and PostgreSQL.

The record is written as the interface engine would (a system job), so the registry's write listener
screens each pathology report and coded diagnosis into the suspense queue before any page opens.
Ana Rivera has a left breast biopsy report (invasive ductal carcinoma) and the coded diagnosis of the
same visit; Ben Okafor has a coded lung cancer diagnosis only; Victoria Holloway's biopsy report
is from a restricted record. Every test that swaps an id (an unknown one, the restricted patient's,
another patient's tumour) must get 403, 404 or a sentence, and never the other record's data.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from chartkeeper.config import Settings
from chartkeeper.db import Database
from chartkeeper.fhir.service import RecordService
from chartkeeper.registry.service import RegistryService, Span
from chartkeeper.security import audit, grants, policy, users
from chartkeeper.security.policy import Action
from chartkeeper.security.principal import ROLES, Principal
from chartkeeper.web.app import create_app
from chartkeeper.web.registry_pages import highlight

PASSWORD = "registry-pages-password-1"
SYSTEM = Principal.system("test")
BASE = "https://testserver"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
LOINC = "http://loinc.org"
MRN = "https://chartkeeper.example.org/mrn"
BIOPSY = ("SURGICAL PATHOLOGY REPORT\nSPECIMEN: Left breast, core needle biopsy\nFINAL DIAGNOSIS:\n"
          "Left breast, core biopsy:\n- Invasive ductal carcinoma, grade 2.\n")
VIP_REPORT = ("SURGICAL PATHOLOGY REPORT\nSPECIMEN: Right lung, wedge biopsy\nFINAL DIAGNOSIS:\n"
              "- Adenocarcinoma of the lung. VIP secret words.\n")


def ref(rtype: str, rid: str) -> dict[str, str]:
    return {"reference": f"{rtype}/{rid}"}


def patient(pid: str, mrn: str, family: str, given: str, gender: str = "female") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "identifier": [{"system": MRN, "value": mrn}],
            "name": [{"use": "official", "family": family, "given": [given]}], "gender": gender,
            "birthDate": "1961-04-02", "generalPractitioner": [ref("Practitioner", "dr-pcp")],
            "address": [{"use": "home", "line": ["12 Elm Street"], "city": "Columbus", "district": "Franklin County",
                         "state": "OH", "postalCode": "43215"}]}


def encounter(eid: str, pid: str, day: str) -> dict[str, Any]:
    return {"resourceType": "Encounter", "id": eid, "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": ref("Patient", pid), "period": {"start": f"{day}T09:00:00Z", "end": f"{day}T09:30:00Z"},
            "participant": [{"individual": ref("Practitioner", "dr-onc")}]}


def pathology(did: str, pid: str, eid: str, day: str, text: str) -> dict[str, Any]:
    return {"resourceType": "DocumentReference", "id": did, "status": "current", "docStatus": "final",
            "type": {"coding": [{"system": LOINC, "code": "11526-1", "display": "Pathology study"}]},
            "subject": ref("Patient", pid), "date": f"{day}T11:00:00Z",
            "content": [{"attachment": {"contentType": "text/plain", "data": base64.b64encode(text.encode()).decode()}}],
            "context": {"encounter": [ref("Encounter", eid)], "period": {"start": f"{day}T09:00:00Z"}}}


def condition(cid: str, pid: str, code: str, day: str, display: str) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": cid, "subject": ref("Patient", pid),
            "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                               "code": "confirmed"}]},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": code, "display": display}],
                     "text": display},
            "onsetDateTime": day, "recordedDate": day}


def practitioner(pid: str, family: str, given: str) -> dict[str, Any]:
    return {"resourceType": "Practitioner", "id": pid, "name": [{"family": family, "given": [given], "prefix": ["Dr."]}],
            "address": [{"use": "work", "line": ["455 Park Street"], "city": "Columbus", "state": "OH",
                         "postalCode": "43215"}]}


@dataclass
class Env:
    db: Database
    svc: RegistryService
    client: Callable[[], TestClient]

    def login(self, c: TestClient, name: str) -> str:
        token = CSRF_RE.search(c.get("/login").text).group(1)  # type: ignore[union-attr]
        r = c.post("/login", data={"username": name, "password": PASSWORD, "csrf_token": token}, follow_redirects=False)
        assert r.status_code == 303, r.text
        return CSRF_RE.search(c.get("/").text).group(1)  # type: ignore[union-attr]

    def as_user(self, name: str) -> tuple[TestClient, str]:
        """A logged-in client; a role's user (username = role, dashes for underscores) made on first use."""
        role = name.replace("-", "_")
        with self.db.begin() as conn:
            if users.find_user(conn, name) is None:
                users.create_user(conn, name, PASSWORD, [role], actor=SYSTEM, display_name=f"User {name}")
        c = self.client()
        return c, self.login(c, name)

    def item(self, source_id: str) -> str:
        """The suspense row id of a source resource."""
        page = self.svc.suspense(SYSTEM, status="all", limit=500)
        return next(r.id for r in page.rows if r.source_id == source_id)


@pytest.fixture
def env(db: Database) -> Env:
    app = create_app(Settings(database_url=db.url, secret_key="test-secret-key", base_url=BASE), db=db)
    records: RecordService = app.state.records
    for res in (practitioner("dr-onc", "Haddad", "Rami"), practitioner("dr-pcp", "Moreau", "Claire"),
                patient("ana", "MRN-R1", "Rivera", "Ana"), encounter("enc-ana", "ana", "2025-03-10"),
                pathology("path-ana", "ana", "enc-ana", "2025-03-10", BIOPSY),
                condition("cond-ana", "ana", "C50.912", "2025-03-10", "Malignant neoplasm of left female breast"),
                patient("ben", "MRN-O2", "Okafor", "Ben", "male"), encounter("enc-ben", "ben", "2025-05-02"),
                condition("cond-ben", "ben", "C34.90", "2025-05-02", "Malignant neoplasm of lung"),
                patient("vic", "MRN-H3", "Holloway", "Victoria"), encounter("enc-vic", "vic", "2025-04-01"),
                pathology("path-vic", "vic", "enc-vic", "2025-04-01", VIP_REPORT)):
        records.update(SYSTEM, res["resourceType"], res["id"], res)
    with db.begin() as conn:
        grants.restrict_patient(conn, SYSTEM, "vic", "vip")
    return Env(db, RegistryService(db, records), lambda: TestClient(app, base_url=BASE))


def text_of(page: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def hrefs(page: str) -> list[str]:
    return re.findall(r'(?:href|action)="([^"]+)"', page)


def section(page: str, sid: str) -> str:
    start = page.index(f'id="{sid}"')
    end = page.find("</section>", start)
    return page[start:end if end > 0 else None]


def field_of(page: str, naaccr_id: str) -> str:
    """The HTML of one abstract field (label, input, help, errors, edits)."""
    start = page.index(f'data-item="{naaccr_id}"')
    return page[start:page.index('<div class="field', start + 10) if '<div class="field' in page[start + 10:] else None]


def accept_ana(env: Env, c: TestClient, csrf: str) -> str:
    r = c.post(f"/registry/suspense/{env.item('path-ana')}/accept", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303, r.text
    m = re.fullmatch(r"/registry/abstracts/([A-Za-z0-9\-]+)\?accepted=1", r.headers["location"])
    assert m is not None, r.headers["location"]
    return m.group(1)


# --------------------------------------------------------------------------------------------
# The suspense queue and a report with its terms highlighted


def test_registrar_reads_the_queue_and_a_report_with_its_terms_highlighted(env: Env) -> None:
    c, _csrf = env.as_user("registrar")
    home = text_of(c.get("/").text)
    # The restricted patient's report is neither listed nor counted for a registrar outside the care team.
    assert "3 Suspense queue: reportable cases to decide" in home
    assert "1 from pathology reports, 2 from coded diagnoses" in home
    r = c.get("/registry")
    assert r.status_code == 200
    page = text_of(r.text)
    assert "Ana Rivera (MRN-R1)" in page and "Ben Okafor (MRN-O2)" in page and "Holloway" not in page
    assert "3 pending" in page and "1 from pathology reports" in page and "2 from coded diagnoses" in page
    assert "C50.9 Breast" in page and "8500/3" in page
    for href in hrefs(r.text):
        assert "Rivera" not in href and "Okafor" not in href and "carcinoma" not in href.lower()
    only_path = c.get("/registry?source=pathology").text
    assert "Ana Rivera" in only_path and "Okafor" not in only_path
    bad = c.get("/registry?status=<script>&source=fax")
    assert bad.status_code == 400 and "<script>" not in bad.text
    assert "Status: choose pending" in bad.text and "Source: choose pathology report or coded diagnosis." in bad.text

    item = c.get(f"/registry/suspense/{env.item('path-ana')}")
    assert item.status_code == 200
    report = section(item.text, "report")
    marks = re.findall(r'<mark class="(term|cue) [a-z-]+"[^>]*>([^<]+)</mark>', report)
    assert ("term", "Invasive ductal carcinoma") in marks
    assert "Rivera, Ana" in item.text and "What casefinding found" in item.text
    assert 'id="accept-button"' in item.text and 'id="reject-button"' in item.text


def test_accept_makes_a_case_then_the_abstract_is_completed_past_its_edits(env: Env) -> None:
    c, csrf = env.as_user("registrar")
    # Without the CSRF token: refused, nothing decided.
    assert c.post(f"/registry/suspense/{env.item('path-ana')}/accept").status_code == 403
    tid = accept_ana(env, c, csrf)
    page = c.get(f"/registry/abstracts/{tid}?accepted=1").text
    assert "Case made: the abstract is prefilled from the record" in page
    # Items grouped in sections, each labelled with its name and number, the length from the dictionary.
    for title in ("Identity and demographics", "Diagnosis", "Stage", "First course of treatment", "Follow-up"):
        assert f"<legend>{title}</legend>" in page
    site = field_of(page, "primarySite")
    assert "Primary Site <span class=\"item-no\">(400)</span>" in site and 'maxlength="4"' in site
    assert 'value="C509"' in site and 'value="8500"' in field_of(page, "histologicTypeIcdO3")
    assert 'maxlength="8"' in field_of(page, "dateOfDiagnosis") and 'value="20250310"' in field_of(page, "dateOfDiagnosis")
    assert "(2230)" in field_of(page, "nameLast") and 'value="Rivera"' in field_of(page, "nameLast")
    # Prefilled, the abstract waits only for its stage (a warning beside the item).
    stage = field_of(page, "summaryStage2018")
    assert 'class="edit-note edit-warning"' in stage and "Summary Stage 2018" in stage

    # A bad value: refused with the sentence next to the item (id and number named), typed values kept.
    r = c.post(f"/registry/abstracts/{tid}", data={"csrf_token": csrf, "t:primarySite": "C509",
                                                   "t:dateOfDiagnosis": "20251340", "t:summaryStage2018": "1",
                                                   "t:gradeClinical": "2", "p:nameFirst": "Anna"})
    assert r.status_code == 422
    dx = field_of(r.text, "dateOfDiagnosis")
    assert 'class="error item-error"' in dx and "dateOfDiagnosis (390)" in dx and 'value="20251340"' in dx
    assert 'value="1"' in field_of(r.text, "summaryStage2018") and 'value="Anna"' in field_of(r.text, "nameFirst")
    assert "Nothing was saved" in r.text
    a = env.svc.abstract(SYSTEM, tid)
    assert a.items["dateOfDiagnosis"] == "20250310" and "summaryStage2018" not in a.items
    assert a.patient_items["nameFirst"] == "Ana"

    # Saved with the stage miscoded as in situ: the edit appears after the save, errors first, and
    # its sentence is also beside the item it names.
    r = c.post(f"/registry/abstracts/{tid}", data={"csrf_token": csrf, "t:summaryStage2018": "0",
                                                   "t:gradeClinical": "2", "t:countyAtDx": "049"},
               follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/registry/abstracts/{tid}?saved=1"
    page = c.get(r.headers["location"]).text
    edits = section(page, "edits")
    assert 'data-edit="stage-malignant"' in edits and "edit-error" in edits
    assert edits.index("edit-error") < (edits.index("edit-warning") if "edit-warning" in edits else len(edits))
    assert 'data-edit="stage-malignant"' in field_of(page, "summaryStage2018")
    assert 'id="abstract-status">incomplete' in page
    # Fixed: the abstract passes every edit and is complete.
    r = c.post(f"/registry/abstracts/{tid}", data={"csrf_token": csrf, "t:summaryStage2018": "1"},
               follow_redirects=False)
    page = c.get(r.headers["location"]).text
    a = env.svc.abstract(SYSTEM, tid)
    assert [e.message for e in a.edits if e.severity == "error"] == []
    assert 'id="edits-clean"' in page and "Saved." in page
    assert a.items["summaryStage2018"] == "1" and a.status == "complete" and a.items["countyAtDx"] == "049"
    # Clearing an item removes it (and the edit comes back).
    c.post(f"/registry/abstracts/{tid}", data={"csrf_token": csrf, "t:summaryStage2018": ""})
    assert "summaryStage2018" not in env.svc.abstract(SYSTEM, tid).items


def test_link_the_coded_diagnosis_to_the_tumour_and_reject_with_a_reason(env: Env) -> None:
    c, csrf = env.as_user("registrar")
    tid = accept_ana(env, c, csrf)
    cond = env.item("cond-ana")
    page = c.get(f"/registry/suspense/{cond}").text
    # The same tumour: linking is proposed (selected) and accepting says "new primary".
    assert "The patient already has a tumour of this site" in page
    assert f'<option value="{tid}" selected>' in page and "Accept as a new primary" in page
    assert c.get("/registry").text.count("same tumour as an abstract") == 1
    # Another patient's tumour id: a sentence, nothing linked.
    r = c.post(f"/registry/suspense/{env.item('cond-ben')}/link", data={"csrf_token": csrf, "tumor_id": tid})
    assert r.status_code == 422 and "there is no tumour abstract with that id for this patient" in r.text
    r = c.post(f"/registry/suspense/{cond}/link", data={"csrf_token": csrf, "tumor_id": tid}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/registry?linked=1"
    assert "Linked to the existing tumour" in c.get("/registry?linked=1").text
    linked = c.get(f"/registry/suspense/{cond}").text
    assert 'id="suspense-status">linked' in linked and f'href="/registry/abstracts/{tid}"' in linked
    # A decided item cannot be decided again.
    r = c.post(f"/registry/suspense/{cond}/reject", data={"csrf_token": csrf, "reason": "duplicate report"})
    assert r.status_code == 409 and "already linked" in r.text

    ben = env.item("cond-ben")
    r = c.post(f"/registry/suspense/{ben}/reject", data={"csrf_token": csrf, "reason": "no"})
    assert r.status_code == 422
    assert 'id="reject-reason-err"' in r.text and "at least 5 characters" in r.text and 'value="no"' in r.text
    assert env.svc.suspense_item(SYSTEM, ben).status == "pending"
    r = c.post(f"/registry/suspense/{ben}/reject",
               data={"csrf_token": csrf, "reason": "history only: diagnosed and treated elsewhere, no active disease"},
               follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/registry?rejected=1"
    it = env.svc.suspense_item(SYSTEM, ben)
    assert it.status == "rejected" and it.reject_reason.startswith("history only")
    assert "0 pending" in text_of(c.get("/registry").text)


# --------------------------------------------------------------------------------------------
# Follow-up


def test_follow_up_due_list_letters_rate_and_refresh(env: Env) -> None:
    c, csrf = env.as_user("registrar")
    tid = accept_ana(env, c, csrf)
    r = c.get("/registry/followup")
    assert r.status_code == 200
    page = text_of(r.text)
    # Ana was last seen on 2025-03-10: more than 12 months ago, so she is due; the rate is below the targets.
    assert "Ana Rivera (MRN-R1)" in page and "2025-03-10" in page
    assert "All analytic cases 1 0 0.0% 90%" in page and "Living patients 1 0 0.0% 80%" in page
    assert "below target" in page
    rid = re.search(r'name="ids" value="([^"]+)"', r.text).group(1)  # type: ignore[union-attr]
    assert "1 Due for follow-up" in text_of(c.get("/").text)
    assert c.get("/registry/followup?months=abc").status_code == 400
    r = c.post("/registry/followup/letters", data={"csrf_token": csrf, "scope": "selected"})
    assert r.status_code == 422 and "Tick the patients to write to" in r.text
    for data in ({"scope": "selected", "ids": [rid]}, {"scope": "all"}):
        r = c.post("/registry/followup/letters", data={"csrf_token": csrf, **data})
        assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
        assert r.content.startswith(b"%PDF") and "attachment" in r.headers["content-disposition"]
    r = c.post("/registry/followup/letters", data={"csrf_token": csrf, "scope": "selected", "ids": ["no-such-patient"]})
    assert r.status_code == 404
    # A visit recorded today: refresh reads it from the record, and Ana is no longer due.
    today = env.svc.followup_rate(SYSTEM).report_date.isoformat()
    RecordService(env.db).update(SYSTEM, "Encounter", "enc-ana-2", encounter("enc-ana-2", "ana", today))
    r = c.post("/registry/followup/refresh", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/registry/followup?refreshed=")
    page = text_of(c.get("/registry/followup").text)
    assert "Nobody is due" in page and "Living patients 1 1 100.0% 80%" in page
    assert env.svc.abstract(SYSTEM, tid).patient_items["dateOfLastContact"] == today.replace("-", "")


# --------------------------------------------------------------------------------------------
# Reports and export


def test_reports_survival_incidence_csv_and_naaccr_export(env: Env, tmp_path: Path) -> None:
    c, csrf = env.as_user("registrar")
    assert "No abstract has both a date of diagnosis and follow-up" in c.get("/registry/reports").text
    tid = accept_ana(env, c, csrf)
    c.post(f"/registry/abstracts/{tid}", data={"csrf_token": csrf, "t:countyAtDx": "049", "t:summaryStage2018": "1"})
    r = c.get("/registry/reports?by=site")
    assert r.status_code == 200
    fig = section(r.text, "survival")
    assert "<svg" in fig and "Observed survival by site group" in fig and "<path" in fig
    table = text_of(r.text[r.text.index('id="survival-table"'):r.text.index("</table>", r.text.index('id="survival-table"'))])
    assert "Breast 1 0" in table
    for by, label in (("stage", "Localized"), ("sex", "Female"), ("year", "2025"), ("all", "All cases")):
        assert label in text_of(section(c.get(f"/registry/reports?by={by}").text, "survival"))
    assert c.get("/registry/reports?by=zodiac").status_code == 400
    csv_text = c.get("/registry/reports/survival.csv?by=site").text
    assert csv_text.splitlines()[0].startswith("stratum,cases,deaths,median_months") and "Breast,1,0" in csv_text
    assert c.get("/registry/reports/life-table.csv?by=stage").text.startswith("stratum,interval_start_months")
    # Incidence over the demo population: Franklin County (39049) has Ana's case.
    inc = r.text[r.text.index('id="incidence-table"'):]
    assert "39049 (OH)" in inc and "<svg" in section(r.text, "incidence")
    row = re.search(r"39049 \(OH\)</td><td class=\"num\">(\d+)</td>", inc)
    assert row is not None and row.group(1) == "1"
    assert "39049,OH,1," in c.get("/registry/reports/incidence.csv").text
    # An uploaded population file with a bad row: each problem as a sentence with its line; none used.
    bad = "county_fips,state,year,sex,age_group,population\n39049,OH,2025,F,85+,-4\n"
    r = c.post("/registry/reports/incidence", data={"csrf_token": csrf, "level": "county"},
               files={"population": ("pop.csv", bad.encode(), "text/csv")})
    assert r.status_code == 422 and "Line 2" in r.text and "population" in text_of(section(r.text, "incidence"))
    assert c.post("/registry/reports/incidence", data={"level": "county"},
                  files={"population": ("pop.csv", bad.encode(), "text/csv")}).status_code == 403
    from chartkeeper.registry.incidence import population_csv, synthetic_population

    good = population_csv(synthetic_population([("39049", "OH")], [2025], seed=3))
    r = c.post("/registry/reports/incidence", data={"csrf_token": csrf, "level": "state", "year": "2025"},
               files={"population": ("pop.csv", good.encode(), "text/csv")})
    assert r.status_code == 200 and "your uploaded file" in r.text and ">OH</td>" in r.text
    r = c.post("/registry/reports/incidence", data={"csrf_token": csrf, "level": "county", "format": "csv"},
               files={"population": ("pop.csv", good.encode(), "text/csv")})
    assert r.headers["content-type"].startswith("text/csv") and "39049,OH,1," in r.text
    # NAACCR XML export: a download, the record type and version chosen.
    r = c.get("/registry/export?version=250&record_type=I")
    assert r.status_code == 200 and r.headers["content-type"] == "application/xml"
    assert 'recordType="I"' in r.text and "naaccr-dictionary-250.xml" in r.text and "C509" in r.text
    assert c.get("/registry/export?version=199&record_type=A").status_code == 400
    with env.db.read() as conn:
        exports = audit.query(conn, action="export", user_id=None)
    assert any(e.username == "registrar" and e.patient_id == "ana" for e in exports)


def test_export_validates_against_the_naaccr_schema(env: Env, shared_data: Path) -> None:
    from lxml import etree

    c, csrf = env.as_user("registrar")
    accept_ana(env, c, csrf)
    schema = etree.XMLSchema(etree.parse(str(shared_data / "naaccr" / "xsd" / "naaccr_data_1.8.xsd")))
    for version, record_type in (("260", "A"), ("250", "I")):
        doc = etree.fromstring(c.get(f"/registry/export?version={version}&record_type={record_type}").content)
        assert schema.validate(doc), schema.error_log


# --------------------------------------------------------------------------------------------
# Roles and swapped ids: 403 or 404, never the data


def _may(role: str, action: Action, rtype: str) -> bool:
    return policy.can(Principal("u", "u", frozenset({role})), action, rtype)


@pytest.mark.parametrize("role", ROLES)
def test_each_registry_page_for_each_role(env: Env, role: str) -> None:
    c, csrf = env.as_user(role.replace("_", "-"))
    registrar = role == "registrar"
    may = _may(role, Action.SEARCH, "RegistryAbstract")
    sid = env.item("path-ana")
    tid = env.svc.accept(SYSTEM, env.item("cond-ben")).id
    before = env.svc.abstract(SYSTEM, tid).items
    for url in ("/registry", f"/registry/suspense/{sid}", f"/registry/abstracts/{tid}", "/registry/followup",
                "/registry/reports", "/registry/reports/survival.csv", "/registry/reports/life-table.csv",
                "/registry/reports/incidence.csv",
                "/registry/reports/demo-population.csv", "/registry/export"):
        r = c.get(url)
        assert r.status_code == (200 if may else 403), (url, r.status_code)
        if not may:
            assert "Rivera" not in r.text and "Okafor" not in r.text and "carcinoma" not in r.text
    posts = [(f"/registry/suspense/{sid}/accept", {}), (f"/registry/suspense/{sid}/reject", {"reason": "a reason"}),
             (f"/registry/suspense/{sid}/link", {"tumor_id": tid}), (f"/registry/abstracts/{tid}", {"t:laterality": "1"}),
             ("/registry/followup/letters", {"scope": "all"}), ("/registry/followup/refresh", {})]
    for url, data in posts:
        r = c.post(url, data={"csrf_token": csrf, **data}, follow_redirects=False)
        if not registrar:
            assert r.status_code == 403, (url, r.status_code)
            assert "Rivera" not in r.text and "Okafor" not in r.text
    r = c.post("/registry/reports/incidence", data={"csrf_token": csrf, "level": "county"},
               files={"population": ("pop.csv", b"county_fips,state,year,sex,age_group,population\n", "text/csv")})
    assert r.status_code == (422 if may else 403) and "Rivera" not in r.text
    if not registrar:
        assert env.svc.suspense_item(SYSTEM, sid).status == "pending"
        assert env.svc.abstract(SYSTEM, tid).items == before
    assert ('href="/registry"' in c.get("/").text) == registrar


def test_swapped_and_unknown_ids_get_403_or_404_and_no_data(env: Env) -> None:
    c, csrf = env.as_user("registrar")
    vip = env.item("path-vic")
    vip_tumor = env.svc.accept(SYSTEM, vip).id
    for method, url in (("get", f"/registry/suspense/{vip}"), ("post", f"/registry/suspense/{vip}/reject"),
                        ("post", f"/registry/suspense/{vip}/link"), ("get", f"/registry/abstracts/{vip_tumor}"),
                        ("post", f"/registry/abstracts/{vip_tumor}")):
        r = getattr(c, method)(url, **({} if method == "get" else {"data": {
            "csrf_token": csrf, "reason": "not reportable at all", "tumor_id": vip_tumor, "t:laterality": "1"}}))
        assert r.status_code == 403, (url, r.status_code)
        assert "Holloway" not in r.text and "VIP secret" not in r.text
    with env.db.read() as conn:
        denied = audit.query(conn, outcome="denied", user_id=None)
    assert any(e.username == "registrar" and e.patient_id == "vic" for e in denied)
    # The restricted patient is left out of the reports and the export too.
    assert "Holloway" not in c.get("/registry/export").text
    assert "Lung and Bronchus" not in text_of(section(c.get("/registry/reports?by=site").text, "survival"))
    # Unknown and malformed ids.
    for url in ("/registry/suspense/no-such-item", "/registry/suspense/bad$id", "/registry/abstracts/no-such-tumour",
                "/registry/abstracts/bad$id"):
        assert c.get(url).status_code == 404, url
    assert c.post("/registry/suspense/no-such-item/accept", data={"csrf_token": csrf}).status_code == 404
    assert c.post("/registry/abstracts/no-such-tumour", data={"csrf_token": csrf}).status_code == 404


# --------------------------------------------------------------------------------------------
# Units


def test_highlight_marks_terms_and_cues_and_skips_bad_spans() -> None:
    text = "Negative for carcinoma. Adenocarcinoma present."
    spans = [Span(24, 38, "Adenocarcinoma", "malignancy"), Span(0, 12, "Negative for", "negated", "cue"),
             Span(13, 22, "carcinoma", "negated"), Span(30, 99, "x", "malignancy"), Span(5, 15, "x", "negated"),
             Span(39, 46, "changed", "malignancy")]
    segs = highlight(text, spans)
    assert "".join(s.text for s in segs) == text
    assert [(s.text, s.cls) for s in segs if s.cls] == [("Negative for", "cue cue-negated"),
                                                        ("carcinoma", "term term-negated"),
                                                        ("Adenocarcinoma", "term term-malignancy")]
    assert highlight("", []) == []
