"""The web workspace's pages through FastAPI's TestClient, on SQLite and PostgreSQL (the ``db`` fixture).

Patient data is created through the record service as a system job; users through the security
module; every page request goes through the real app (sessions, CSRF, policy, audit).
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from chartkeeper.config import Settings
from chartkeeper.db import Database
from chartkeeper.fhir.errors import Issue
from chartkeeper.fhir.service import RecordService
from chartkeeper.security import audit, grants, policy, users
from chartkeeper.security.policy import Action
from chartkeeper.security.principal import ROLES, Principal
from chartkeeper.security.sessions import SESSION_COOKIE
from chartkeeper.web import forms, pages
from chartkeeper.web.app import create_app

PASSWORD = "web-pages-password-1"
SYSTEM = Principal.system("test")
BASE = "https://testserver"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
ERROR_RE = re.compile(r'<span class="error" id="f-([a-z0-9_]+)-err" role="alert">([^<]*)</span>')


def patient(family: str, given: str, birth: str, mrn: str, gender: str = "female") -> dict:
    return {"resourceType": "Patient", "name": [{"use": "official", "family": family, "given": [given]}],
            "gender": gender, "birthDate": birth,
            "identifier": [{"system": forms.MRN_SYSTEM, "value": mrn}]}


def lab(pid: str, value: float, when: str, code: str = "4548-4") -> dict:
    return {"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": "Hemoglobin A1c"}]},
            "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": when,
            "valueQuantity": {"value": value, "unit": "%"},
            "referenceRange": [{"low": {"value": 4.0}, "high": {"value": 5.6}}]}


def condition(pid: str, text: str, code: str = "E11.9") -> dict:
    return {"resourceType": "Condition",
            "clinicalStatus": {"coding": [{"system": forms.COND_CLINICAL, "code": "active"}]},
            "code": {"coding": [{"system": forms.ICD10CM, "code": code}], "text": text},
            "subject": {"reference": f"Patient/{pid}"}}


def document(pid: str, text: str, status: str = "preliminary") -> dict:
    return {"resourceType": "DocumentReference", "status": "current", "docStatus": status,
            "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3", "display": "Progress note"}]},
            "subject": {"reference": f"Patient/{pid}"}, "date": "2024-05-01T10:00:00Z",
            "content": [{"attachment": {"contentType": "text/plain; charset=utf-8",
                                        "data": base64.b64encode(text.encode()).decode()}}]}


@dataclass
class Env:
    db: Database
    svc: RecordService
    client: Callable[[], TestClient]
    ann: str  # an ordinary patient
    bob: str  # another patient
    vip: str  # a restricted patient
    ann_condition: str
    bob_condition: str
    bob_encounter: str

    def login(self, c: TestClient, role: str) -> str:
        """Log in as a user with this one role (created on first use); return the session's CSRF token."""
        self.ensure_user(role)
        return login(c, role)

    def ensure_user(self, role: str) -> None:
        name = role.replace("_", "-")
        with self.db.begin() as conn:
            if users.find_user(conn, name) is None:
                users.create_user(conn, name, PASSWORD, [role], actor=SYSTEM, display_name=f"User {role}")

    def count(self, rtype: str, pid: str) -> int:
        key = "patient" if rtype == "AllergyIntolerance" else "subject"
        return self.svc.search(SYSTEM, rtype, [(key, pid), ("_count", "0")]).total


@pytest.fixture
def env(db: Database) -> Env:
    app = create_app(Settings(database_url=db.url, secret_key="test-secret-key", base_url=BASE), db=db)
    svc: RecordService = app.state.records
    ann = svc.create(SYSTEM, patient("Rivera", "Ann", "1961-04-02", "MRN001"))[0].id
    bob = svc.create(SYSTEM, patient("Okafor", "Bob", "1950-01-20", "MRN002", "male"))[0].id
    vip = svc.create(SYSTEM, patient("Holloway", "Victoria", "1971-05-30", "MRN003"))[0].id
    ann_cond = svc.create(SYSTEM, condition(ann, "Type 2 diabetes mellitus"))[0].id
    bob_cond = svc.create(SYSTEM, condition(bob, "Secret condition of Bob", "I10"))[0].id
    bob_enc = svc.create(SYSTEM, {"resourceType": "Encounter", "status": "finished",
                                  "class": {"system": forms.V3_ACTCODE, "code": "AMB"},
                                  "subject": {"reference": f"Patient/{bob}"},
                                  "period": {"start": "2024-01-01T10:00:00Z"}})[0].id
    svc.create(SYSTEM, lab(ann, 7.9, "2024-01-05T08:00:00Z"))
    svc.create(SYSTEM, lab(ann, 7.1, "2024-04-05T08:00:00Z"))
    svc.create(SYSTEM, document(ann, "Seen today. Plan: continue metformin."))
    svc.create(SYSTEM, condition(vip, "VIP condition"))
    with db.begin() as conn:
        grants.restrict_patient(conn, SYSTEM, vip, "vip")

    def client() -> TestClient:
        return TestClient(app, base_url=BASE)

    return Env(db, svc, client, ann, bob, vip, ann_cond, bob_cond, bob_enc)


def login(c: TestClient, role: str, password: str = PASSWORD) -> str:
    """Log in through the form; return the session's CSRF token (from the home page)."""
    page = c.get("/login")
    token = CSRF_RE.search(page.text).group(1)  # type: ignore[union-attr]
    r = c.post("/login", data={"username": role.replace("_", "-"), "password": password, "csrf_token": token},
               follow_redirects=False)
    assert r.status_code == 303, r.text
    home = c.get("/")
    assert home.status_code == 200
    return CSRF_RE.search(home.text).group(1)  # type: ignore[union-attr]


def text_of(page: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def errors_of(page: str) -> dict[str, str]:
    """Field name -> the error sentence shown next to that field."""
    return {k: html.unescape(v) for k, v in ERROR_RE.findall(page)}


# --------------------------------------------------------------------------------------------
# Login, logout, sessions


def test_anonymous_requests_go_to_login(env: Env) -> None:
    c = env.client()
    r = c.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    r = c.get(f"/patients/{env.ann}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/login?next=/patients/{env.ann}"
    r = c.post("/patients", data={"q": "rivera"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    # HTMX and JSON callers get a plain 401
    assert c.get("/", headers={"HX-Request": "true"}).status_code == 401
    assert c.get("/patients", headers={"Accept": "application/json"}).status_code == 401
    # the FHIR API keeps its own answer
    r = c.get(f"/fhir/Patient/{env.ann}")
    assert r.status_code == 401 and r.json()["resourceType"] == "OperationOutcome"


def test_login_logout(env: Env) -> None:
    env.ensure_user("him_technician")
    c = env.client()
    page = c.get("/login")
    assert page.status_code == 200
    token = CSRF_RE.search(page.text).group(1)  # type: ignore[union-attr]
    bad = c.post("/login", data={"username": "him-technician", "password": "wrong password 123",
                                 "csrf_token": token})
    assert bad.status_code == 401 and "The user name or password is wrong." in bad.text
    assert SESSION_COOKIE not in c.cookies
    r = c.post("/login", data={"username": "him-technician", "password": PASSWORD, "csrf_token": token,
                               "next": f"/patients/{env.ann}"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/patients/{env.ann}"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    home = c.get("/")
    assert "Hello, User him_technician" in home.text and "HIM technician" in home.text
    sid = c.cookies[SESSION_COOKIE]
    csrf = CSRF_RE.search(home.text).group(1)  # type: ignore[union-attr]
    # logout needs the CSRF token
    assert c.post("/logout", data={}, follow_redirects=False).status_code == 403
    r = c.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    # the old cookie is dead, even if replayed
    c2 = env.client()
    c2.cookies.set(SESSION_COOKIE, sid)
    assert c2.get("/", follow_redirects=False).headers["location"] == "/login"
    with env.db.read() as conn:
        actions = [e.action for e in audit.query(conn, action="logout")] + [
            e.outcome for e in audit.query(conn, action="login")]
    assert "logout" in actions and "failure" in actions and "success" in actions


def test_login_without_its_csrf_token_is_refused(env: Env) -> None:
    env.ensure_user("him_technician")
    c = env.client()
    r = c.post("/login", data={"username": "him-technician", "password": PASSWORD})
    assert r.status_code == 403 and "security token" in r.text
    c.get("/login")
    r = c.post("/login", data={"username": "him-technician", "password": PASSWORD, "csrf_token": "forged"})
    assert r.status_code == 403
    assert SESSION_COOKIE not in c.cookies


def test_next_parameter_cannot_leave_the_site(env: Env) -> None:
    assert pages.safe_next("//evil.example/x") == "/"
    assert pages.safe_next("https://evil.example/") == "/"
    assert pages.safe_next("/patients/abc") == "/patients/abc"
    assert pages.safe_next("/patients?q=smith") == "/"


# --------------------------------------------------------------------------------------------
# Pages per role


def _may(role: str, action: Action, rtype: str) -> bool:
    return policy.can(Principal("u", "u", frozenset({role})), action, rtype)


@pytest.mark.parametrize("role", ROLES)
def test_each_page_for_each_role(env: Env, role: str) -> None:
    c = env.client()
    csrf = env.login(c, role)
    home = c.get("/")
    assert home.status_code == 200 and "Hello, User " + role in home.text
    assert "Content-Security-Policy" in home.headers and home.headers["cache-control"] == "no-store"

    search = c.get("/patients")
    assert search.status_code == (200 if _may(role, Action.SEARCH, "Patient") else 403)
    posted = c.post("/patients", data={"q": "rivera", "csrf_token": csrf})
    if _may(role, Action.SEARCH, "Patient"):
        assert posted.status_code == 200 and "Rivera, Ann" in posted.text
    else:
        assert posted.status_code == 403 and "Rivera" not in posted.text

    chart = c.get(f"/patients/{env.ann}")
    if _may(role, Action.READ, "Patient"):
        assert chart.status_code == 200 and "Rivera, Ann" in chart.text
        assert ("Type 2 diabetes mellitus" in chart.text) == _may(role, Action.READ, "Condition")
        assert ("continue metformin" in chart.text) == _may(role, Action.READ, "DocumentReference")
    else:
        assert chart.status_code == 403 and "Rivera" not in chart.text

    for kind, spec in forms.FORMS.items():
        r = c.get(f"/patients/{env.ann}/new/{kind}")
        expected = 200 if _may(role, Action.CREATE, spec.resource_type) else 403
        assert r.status_code == expected, (kind, r.status_code)
    assert c.get("/patients/new").status_code == (200 if _may(role, Action.CREATE, "Patient") else 403)

    hist = c.get(f"/patients/{env.ann}/history/Condition/{env.ann_condition}")
    if _may(role, Action.HISTORY, "Condition"):
        assert hist.status_code == 200 and "Version 1" in hist.text
    else:
        assert hist.status_code == 403 and "diabetes" not in hist.text

    q = c.get("/queues/unsigned-documents")
    if _may(role, Action.SEARCH, "DocumentReference"):
        assert q.status_code == 200 and "Rivera, Ann" in q.text
    else:
        assert q.status_code == 403


def test_wrong_role_is_a_403_page_and_audited(env: Env) -> None:
    c = env.client()
    env.login(c, "admin")
    r = c.get(f"/patients/{env.ann}")
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("text/html")
    assert "Not allowed" in r.text and "Rivera" not in r.text
    with env.db.read() as conn:
        denied = audit.query(conn, outcome="denied", patient_id=env.ann)
    assert denied and denied[0].username == "admin"


def test_home_counts_only_real_queues(env: Env) -> None:
    c = env.client()
    env.login(c, "him_technician")
    home = text_of(c.get("/").text)
    assert "1 Unsigned documents" in home
    # The restricted patient is not counted for a technician outside the care team.
    assert "2 Patients registered or updated in the last 7 days" in home
    c = env.client()
    env.login(c, "coder")
    coder_home = c.get("/").text  # the coding module's queues (tests/web/test_coding_pages.py checks the counts)
    assert "No work queue for your role is ready yet" not in coder_home
    assert re.search(r"\d+ Discharged, not final billed \(DNFB\)", text_of(coder_home)) and 'href="/coding"' in coder_home
    c = env.client()
    env.login(c, "admin")
    assert "0 Locked accounts" in text_of(c.get("/").text)


# --------------------------------------------------------------------------------------------
# Search


def test_search_by_name_birth_date_and_mrn(env: Env) -> None:
    c = env.client()
    csrf = env.login(c, "him_technician")
    for q in ("rivera", "ann rivera", "1961-04-02", "MRN001", "Rivera 1961-04-02"):
        r = c.post("/patients", data={"q": q, "csrf_token": csrf})
        assert r.status_code == 200 and "Rivera, Ann" in r.text and "Okafor" not in r.text, q
        assert 'data-keynav' in r.text and f'data-href="/patients/{env.ann}"' in r.text
    r = c.post("/patients", data={"q": "04/02/1961", "csrf_token": csrf})
    assert r.status_code == 400 and "YYYY-MM-DD" in r.text
    r = c.post("/patients", data={"q": "1961-02-30", "csrf_token": csrf})
    assert r.status_code == 400 and "not a real date" in r.text
    # SQL in the search box is only a name that matches nothing
    r = c.post("/patients", data={"q": "x' OR '1'='1", "csrf_token": csrf})
    assert r.status_code in (200, 400) and "Rivera" not in r.text
    # a GET with q searches nothing: names stay out of URLs and logs
    assert "Rivera, Ann" not in c.get("/patients?q=rivera").text


def test_search_hides_restricted_patients_and_says_so(env: Env) -> None:
    c = env.client()
    csrf = env.login(c, "him_technician")
    r = c.post("/patients", data={"q": "holloway", "csrf_token": csrf})
    assert r.status_code == 200 and "Holloway" not in text_of(r.text).replace("holloway", "")
    assert "1 more matching record is restricted" in r.text


def test_search_needs_csrf(env: Env) -> None:
    c = env.client()
    env.login(c, "him_technician")
    r = c.post("/patients", data={"q": "rivera"})
    assert r.status_code == 403 and "Rivera, Ann" not in r.text


# --------------------------------------------------------------------------------------------
# The chart


def test_chart_shows_the_record(env: Env) -> None:
    c = env.client()
    env.login(c, "him_technician")
    r = c.get(f"/patients/{env.ann}")
    assert r.status_code == 200
    html = r.text
    assert "MRN001" in html and "1961-04-02" in html and "female" in html
    assert "Type 2 diabetes mellitus" in html and "E11.9" in html
    assert "Seen today. Plan: continue metformin." in html  # base64 text decoded
    assert "Unsigned" in html
    assert html.count("<svg") == 1 and "<polyline" in html  # one trend for the one lab code with 2 values
    assert f"/patients/{env.ann}/history/Condition/{env.ann_condition}" in html
    assert "Server-Timing" in r.headers and "total;dur=" in r.headers["server-timing"]
    assert "RESTRICTED" not in html
    with env.db.read() as conn:
        reads = audit.query(conn, patient_id=env.ann, action="read", user_id=None)
    assert any("$everything" in (e.detail or "") and e.username == "him-technician" for e in reads)


def test_unknown_patient_is_404(env: Env) -> None:
    c = env.client()
    env.login(c, "him_technician")
    r = c.get("/patients/does-not-exist")
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert c.get("/patients/bad%20id!").status_code == 404


def test_restricted_patient_break_the_glass(env: Env) -> None:
    c = env.client()
    csrf = env.login(c, "him_technician")
    r = c.get(f"/patients/{env.vip}")
    assert r.status_code == 403
    assert "Break the glass" in r.text and "Holloway" not in r.text and "VIP condition" not in r.text
    # a reason of one word is refused, with the reason next to the field; nothing granted
    r = c.post(f"/patients/{env.vip}/break-glass", data={"reason": "urgent", "csrf_token": csrf})
    assert r.status_code == 422 and 'id="reason-err"' in r.text and "at least 3 words" in r.text
    assert c.get(f"/patients/{env.vip}").status_code == 403
    # without the CSRF token: refused
    r = c.post(f"/patients/{env.vip}/break-glass", data={"reason": "emergency department treatment now"})
    assert r.status_code == 403
    r = c.post(f"/patients/{env.vip}/break-glass",
               data={"reason": "Emergency department treatment, patient unconscious", "csrf_token": csrf},
               follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/patients/{env.vip}"
    chart = c.get(f"/patients/{env.vip}")
    assert chart.status_code == 200 and "Holloway, Victoria" in chart.text and "VIP condition" in chart.text
    assert "RESTRICTED (vip)" in chart.text and "breaking the glass" in chart.text
    with env.db.read() as conn:
        bg = audit.query(conn, action="break_glass", patient_id=env.vip)
    assert len(bg) == 1 and bg[0].purpose == "Emergency department treatment, patient unconscious"
    # the privacy officer sees the event on the home page
    po = env.client()
    env.login(po, "privacy_officer")
    assert "Emergency department treatment, patient unconscious" in po.get("/").text


def test_role_without_patient_data_gets_no_break_glass_form(env: Env) -> None:
    c = env.client()
    env.login(c, "admin")
    r = c.get(f"/patients/{env.vip}")
    assert r.status_code == 403 and "Break the glass" not in r.text


# --------------------------------------------------------------------------------------------
# Data entry


def test_allergy_form_errors_then_saved(env: Env) -> None:
    c = env.client()
    csrf = env.login(c, "him_technician")
    before = env.count("AllergyIntolerance", env.ann)
    r = c.post(f"/patients/{env.ann}/new/allergy",
               data={"csrf_token": csrf, "substance": "", "allergy_type": "allergy", "category": "plants",
                     "verification_status": "confirmed", "severity": "severe", "onset": "2020-13-45"})
    assert r.status_code == 422
    errors = errors_of(r.text)
    assert errors["substance"] == "Enter the substance; it is required."
    assert errors["category"].startswith("Choose the category from the list")
    assert errors["reaction"].startswith("Enter the reaction")
    # the error sits inside the field's own block, after its input
    block = re.search(r'<div class="field has-error">\s*<label for="f-substance">.*?</div>', r.text, re.S)
    assert block and 'aria-invalid="true"' in block.group(0) and "it is required" in block.group(0)
    assert "Nothing was saved" in r.text
    assert env.count("AllergyIntolerance", env.ann) == before
    r = c.post(f"/patients/{env.ann}/new/allergy",
               data={"csrf_token": csrf, "substance": "Penicillin", "allergy_type": "allergy",
                     "category": "medication", "verification_status": "confirmed", "reaction": "Hives",
                     "severity": "moderate", "criticality": "high"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith(f"/patients/{env.ann}?saved=AllergyIntolerance")
    assert env.count("AllergyIntolerance", env.ann) == before + 1
    chart = c.get(r.headers["location"])
    assert "Allergy saved." in chart.text
    banner = re.search(r'<section class="banner.*?</section>', chart.text, re.S).group(0)  # type: ignore[union-attr]
    assert "Penicillin" in banner
    # the new version's author is the logged-in user
    hist_link = re.search(rf"/patients/{env.ann}/history/AllergyIntolerance/[\w-]+", chart.text).group(0)  # type: ignore[union-attr]
    hist = c.get(hist_link)
    assert "User him_technician (him-technician)" in hist.text


def test_register_patient_validation_comes_from_the_api_rules(env: Env) -> None:
    c = env.client()
    csrf = env.login(c, "him_technician")
    n_before = env.svc.search(SYSTEM, "Patient", [("_count", "0")]).total
    # 2023-02-30 has the right shape (form check passes) but is no calendar date: the FHIR validator's
    # issue at Patient.birthDate comes back next to the birth date field, in words about that field.
    r = c.post("/patients/new", data={"csrf_token": csrf, "family": "Doe", "given": "Jane",
                                      "birth_date": "2023-02-30", "sex": "female"})
    assert r.status_code == 422
    errors = errors_of(r.text)
    assert errors["birth_date"].startswith("The birth date is not a valid date")
    assert env.svc.search(SYSTEM, "Patient", [("_count", "0")]).total == n_before
    r = c.post("/patients/new", data={"csrf_token": csrf, "family": "", "given": "Jane", "birth_date": "1990-1-2",
                                      "sex": "x", "mrn": "MRN001"})
    errors = errors_of(r.text)
    assert set(errors) >= {"family", "birth_date", "sex"}
    # an MRN already in use is refused
    r = c.post("/patients/new", data={"csrf_token": csrf, "family": "Doe", "given": "Jane",
                                      "birth_date": "1990-01-02", "sex": "female", "mrn": "MRN001"})
    assert "already assigned" in errors_of(r.text)["mrn"]
    r = c.post("/patients/new", data={"csrf_token": csrf, "family": "Doe", "given": "Jane Q",
                                      "birth_date": "1990-01-02", "sex": "female"}, follow_redirects=False)
    assert r.status_code == 303
    new_id = r.headers["location"].split("/")[2].split("?")[0]
    created = env.svc.read(SYSTEM, "Patient", new_id).resource()
    assert created["name"][0] == {"use": "official", "family": "Doe", "given": ["Jane", "Q"]}
    assert re.fullmatch(r"\d{8}", pages.mrn_of(created))


@pytest.mark.parametrize("kind,data,field", [
    ("encounter", {"enc_class": "AMB", "status": "finished", "start": "2024-05-01T10:00",
                   "end": "2024-05-01T09:00"}, "end"),
    ("condition", {"description": "Diabetes", "icd10": "250.00", "clinical_status": "active",
                   "verification_status": "confirmed"}, "icd10"),
    ("medication", {"medication": "Metformin", "status": "active", "authored": "3024-01-01"}, "authored"),
    ("document", {"doc_type": "11506-3", "title": "Note", "date": "2024-05-01T10:00", "text": ""}, "text"),
])
def test_other_forms_refuse_bad_input(env: Env, kind: str, data: dict, field: str) -> None:
    c = env.client()
    csrf = env.login(c, "him_technician")
    spec = forms.FORMS[kind]
    before = env.count(spec.resource_type, env.ann)
    r = c.post(f"/patients/{env.ann}/new/{kind}", data={"csrf_token": csrf, **data})
    assert r.status_code == 422
    assert field in errors_of(r.text), text_of(r.text)[-1500:]
    assert env.count(spec.resource_type, env.ann) == before


@pytest.mark.parametrize("kind,data", [
    ("encounter", {"enc_class": "IMP", "status": "finished", "start": "2024-05-01T10:00", "end": "2024-05-03T09:00",
                   "type_text": "Admission", "reason": "Pneumonia", "tz_offset": "60"}),
    ("condition", {"description": "Essential hypertension", "icd10": "i10", "clinical_status": "active",
                   "verification_status": "confirmed", "onset": "2019-03-01"}),
    ("medication", {"medication": "Lisinopril 10 mg oral tablet", "rxnorm": "314076", "status": "active",
                    "authored": "2024-05-01", "dosage": "One tablet daily"}),
    ("document", {"doc_type": "18842-5", "title": "Discharge summary", "date": "2024-05-03T12:00",
                  "text": "Discharged home.\nFollow up in 1 week."}),
])
def test_other_forms_save(env: Env, kind: str, data: dict) -> None:
    c = env.client()
    csrf = env.login(c, "him_technician")
    spec = forms.FORMS[kind]
    before = env.count(spec.resource_type, env.ann)
    r = c.post(f"/patients/{env.ann}/new/{kind}", data={"csrf_token": csrf, **data}, follow_redirects=False)
    assert r.status_code == 303, errors_of(r.text)
    assert env.count(spec.resource_type, env.ann) == before + 1
    chart = c.get(r.headers["location"]).text
    if kind == "encounter":
        assert "Inpatient: Admission" in chart
        found = env.svc.search(SYSTEM, "Encounter", [("subject", env.ann)]).matches[0].resource()
        assert found["period"]["start"] == "2024-05-01T10:00:00+01:00"
    elif kind == "condition":
        assert "Essential hypertension" in chart and "I10" in chart
    elif kind == "medication":
        assert "Lisinopril 10 mg oral tablet" in chart
    else:
        assert "Follow up in 1 week." in chart and "Unsigned" in chart


def test_forms_need_csrf_and_save_nothing_without(env: Env) -> None:
    c = env.client()
    env.login(c, "him_technician")
    before = env.count("AllergyIntolerance", env.ann)
    good = {"substance": "Latex", "allergy_type": "allergy", "category": "environment",
            "verification_status": "confirmed"}
    assert c.post(f"/patients/{env.ann}/new/allergy", data=good).status_code == 403
    assert c.post(f"/patients/{env.ann}/new/allergy", data={**good, "csrf_token": "wrong"}).status_code == 403
    other = env.client()
    other_csrf = env.login(other, "physician")  # another session's token is no good here either
    assert c.post(f"/patients/{env.ann}/new/allergy", data={**good, "csrf_token": other_csrf}).status_code == 403
    assert env.count("AllergyIntolerance", env.ann) == before


def test_script_in_a_name_is_escaped(env: Env) -> None:
    c = env.client()
    csrf = env.login(c, "him_technician")
    r = c.post("/patients/new", data={"csrf_token": csrf, "family": "<script>alert(1)</script>",
                                      "given": "<img src=x onerror=alert(2)>", "birth_date": "1990-01-02",
                                      "sex": "other"}, follow_redirects=False)
    assert r.status_code == 303
    pid = r.headers["location"].split("/")[2].split("?")[0]
    for page in (c.get(f"/patients/{pid}").text,
                 c.post("/patients", data={"q": "1990-01-02", "csrf_token": csrf}).text,
                 c.get(f"/patients/{pid}/history/Patient/{pid}").text):
        assert "<script>alert(1)</script>" not in page and "<img src=x" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # a form echoing bad input escapes it too
    r = c.post(f"/patients/{env.ann}/new/allergy", data={"csrf_token": csrf, "substance": '"><script>x()</script>',
                                                         "allergy_type": "bogus"})
    assert r.status_code == 422 and "<script>x()" not in r.text and "&lt;script&gt;x()" in r.text


# --------------------------------------------------------------------------------------------
# Another patient's ids


def test_swapped_patient_ids_never_show_data(env: Env) -> None:
    c = env.client()
    csrf = env.login(c, "him_technician")
    # Bob's condition under Ann's chart URL: 404, nothing of Bob's
    r = c.get(f"/patients/{env.ann}/history/Condition/{env.bob_condition}")
    assert r.status_code == 404 and "Secret condition of Bob" not in r.text
    # the restricted patient's resource through an ordinary patient's URL: never the data
    vip_cond = env.svc.search(SYSTEM, "Condition", [("subject", env.vip)]).matches[0].id
    r = c.get(f"/patients/{env.ann}/history/Condition/{vip_cond}")
    assert r.status_code in (403, 404) and "VIP condition" not in r.text
    # an encounter of Bob's given on Ann's form: refused next to the field, nothing saved
    before = env.count("Condition", env.ann)
    r = c.post(f"/patients/{env.ann}/new/condition",
               data={"csrf_token": csrf, "description": "Asthma", "clinical_status": "active",
                     "verification_status": "confirmed", "encounter": env.bob_encounter})
    assert r.status_code == 422
    assert errors_of(r.text)["encounter"].startswith("Choose one of this patient's encounters")
    assert env.count("Condition", env.ann) == before
    # Bob's encounter is not even offered on Ann's form
    assert env.bob_encounter not in c.get(f"/patients/{env.ann}/new/condition").text
    # unknown types and malformed ids
    assert c.get(f"/patients/{env.ann}/history/NoSuchType/{env.ann_condition}").status_code == 404
    assert c.get(f"/patients/{env.ann}/new/nosuchform").status_code == 404


def test_history_shows_who_changed_what(env: Env) -> None:
    c = env.client()
    env.login(c, "him_technician")
    res = env.svc.read(SYSTEM, "Condition", env.ann_condition).resource()
    res["clinicalStatus"] = {"coding": [{"system": forms.COND_CLINICAL, "code": "resolved"}]}
    env.svc.update(SYSTEM, "Condition", env.ann_condition, res)
    r = c.get(f"/patients/{env.ann}/history/Condition/{env.ann_condition}")
    assert r.status_code == 200
    text = text_of(r.text)
    assert "Version 2" in text and "Version 1" in text and "system job test" in text
    assert "clinicalStatus.coding[0].code active resolved" in text


# --------------------------------------------------------------------------------------------
# Units


def test_map_issues_puts_validator_paths_on_fields() -> None:
    spec = forms.ALLERGY
    out = forms.map_issues(spec, [
        Issue("AllergyIntolerance.code.text is an empty string, and FHIR forbids empty values: remove it.",
              path="AllergyIntolerance.code.text"),
        Issue("AllergyIntolerance.reaction[0].severity 'x' is not a permitted code.",
              path="AllergyIntolerance.reaction[0].severity"),
        Issue("Something about the whole resource.", path="AllergyIntolerance"),
    ])
    assert out.errors["substance"].startswith("The substance is an empty string")
    assert out.errors["severity"].startswith("The reaction severity 'x' is not a permitted code")
    assert out.general == ["Something about the whole resource."]


def test_trend_geometry() -> None:
    t = pages.build_trend("4548-4", "A1c", "%", [("2024-01-01", 8.0, "8"), ("2024-07-01", 6.0, "6")], 4.0, 5.6)
    (x1, y1, _, _), (x2, y2, _, _) = t.points
    assert x1 < x2 and y1 < y2  # later, lower value: further right and further down
    assert t.band is not None and t.band[0] < t.band[1]
    assert t.latest == "6 %"
