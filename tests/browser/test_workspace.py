"""The workspace in a real browser: Debian's headless Chromium driven by Playwright for Python.

The real server runs in a subprocess (uvicorn) on a free port over a temporary SQLite database seeded
through the record service with a few patients and one demo user per role. Screenshots of the home and
chart pages are saved under var/screenshots/ as artefacts.

Never downloads a browser: the tests skip, with the reason, when /usr/bin/chromium is missing
(``.ci/run`` installs Debian's chromium).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from browserkit import log_in, seeded_server, shot

from chartkeeper.db import Database
from chartkeeper.fhir.service import RecordService
from chartkeeper.security import grants, users
from chartkeeper.security.principal import Principal

pytestmark = pytest.mark.browser

PASSWORD = "browser-test-password-1"
SYSTEM = Principal.system("browser-test")

USERS = {
    "him_technician": ("tess", "Tess Technician"),
    "physician": ("phil", "Dr Phil Carter"),
    "coder": ("cora", "Cora Coder"),
    "registrar": ("rena", "Rena Registrar"),
    "release_specialist": ("rosa", "Rosa Release"),
    "privacy_officer": ("pria", "Pria Privacy"),
    "admin": ("adam", "Adam Admin"),
}

LOINC = "http://loinc.org"
OBS_CAT = "http://terminology.hl7.org/CodeSystem/observation-category"


def _lab(pid: str, code: str, name: str, unit: str, value: float, when: str, low: float, high: float) -> dict[str, Any]:
    flag = "H" if value > high else ("L" if value < low else "N")
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": OBS_CAT, "code": "laboratory"}]}],
        "code": {"coding": [{"system": LOINC, "code": code, "display": name}], "text": name},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
        "referenceRange": [{"low": {"value": low, "unit": unit}, "high": {"value": high, "unit": unit}}],
        "interpretation": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": flag}]}],
    }


def _patient(family: str, given: list[str], birth: str, gender: str, mrn: str, city: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                             "code": "MR"}]},
                        "system": "https://chartkeeper.example.org/mrn", "value": mrn}],
        "name": [{"use": "official", "family": family, "given": given}],
        "gender": gender,
        "birthDate": birth,
        "address": [{"line": ["12 Elm Street"], "city": city, "state": "MA", "postalCode": "01602"}],
    }


def _document(pid: str, code: str, display: str, when: str, text: str, status: str, author: str,
              enc: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "status": "current",
        "docStatus": status,
        "type": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
        "subject": {"reference": f"Patient/{pid}"},
        "date": when,
        "author": [{"reference": author}],
        "description": display,
        "content": [{"attachment": {"contentType": "text/plain; charset=utf-8",
                                    "data": base64.b64encode(text.encode()).decode()}}],
    }
    if enc:
        doc["context"] = {"encounter": [{"reference": f"Encounter/{enc}"}]}
    return doc


def seed_typical_chart(svc: RecordService, pid: str, practitioner: str) -> None:
    """A chart like a technician sees every day: visits, problems, medications, labs over time, notes."""
    p = SYSTEM
    subject = {"reference": f"Patient/{pid}"}
    encounters = []
    for i, (cls, display, start, end, typ) in enumerate([
        ("AMB", "ambulatory", "2023-01-10T09:00:00Z", "2023-01-10T09:30:00Z", "Diabetes follow-up"),
        ("AMB", "ambulatory", "2023-05-12T10:00:00Z", "2023-05-12T10:20:00Z", "Diabetes follow-up"),
        ("EMER", "emergency", "2023-09-03T22:10:00Z", "2023-09-04T03:00:00Z", "Chest pain"),
        ("IMP", "inpatient encounter", "2023-09-04T03:00:00Z", "2023-09-07T11:00:00Z", "Admission for NSTEMI"),
        ("AMB", "ambulatory", "2024-01-15T09:00:00Z", "2024-01-15T09:30:00Z", "Cardiology follow-up"),
        ("AMB", "ambulatory", "2024-06-20T14:00:00Z", "2024-06-20T14:30:00Z", "Diabetes follow-up"),
    ]):
        res, _ = svc.create(p, {
            "resourceType": "Encounter", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": cls, "display": display},
            "type": [{"text": typ}], "subject": subject, "period": {"start": start, "end": end},
            "participant": [{"individual": {"reference": f"Practitioner/{practitioner}"}}],
            "identifier": [{"value": f"ENC-{pid[:4]}-{i}"}],
        })
        encounters.append(res.id)
    for code, text, onset, status in [
        ("E11.9", "Type 2 diabetes mellitus without complications", "2015-03-02", "active"),
        ("I10", "Essential (primary) hypertension", "2012-07-19", "active"),
        ("I21.4", "Non-ST elevation (NSTEMI) myocardial infarction", "2023-09-04", "resolved"),
        ("E78.5", "Hyperlipidemia, unspecified", "2016-01-11", "active"),
    ]:
        svc.create(p, {
            "resourceType": "Condition",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": status}]},
            "verificationStatus": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": code, "display": text}],
                     "text": text},
            "subject": subject, "onsetDateTime": onset,
        })
    for name, dose, status in [
        ("Metformin 1000 mg oral tablet", "One tablet twice a day with meals", "active"),
        ("Lisinopril 20 mg oral tablet", "One tablet daily", "active"),
        ("Atorvastatin 80 mg oral tablet", "One tablet at night", "active"),
        ("Clopidogrel 75 mg oral tablet", "One tablet daily for 12 months", "completed"),
    ]:
        svc.create(p, {"resourceType": "MedicationRequest", "status": status, "intent": "order",
                       "medicationCodeableConcept": {"text": name}, "subject": subject,
                       "authoredOn": "2023-09-07", "dosageInstruction": [{"text": dose}]})
    for vaccine, when in [("Influenza, seasonal, injectable", "2023-10-02"), ("Td (adult)", "2019-04-11"),
                          ("COVID-19, mRNA", "2023-10-02")]:
        svc.create(p, {"resourceType": "Immunization", "status": "completed", "vaccineCode": {"text": vaccine},
                       "patient": subject, "occurrenceDateTime": when})
    dates = ["2023-01-10", "2023-05-12", "2023-09-04", "2024-01-15", "2024-06-20"]
    series = {
        ("4548-4", "Hemoglobin A1c", "%", 4.0, 5.6): [8.4, 7.9, 7.6, 7.1, 6.8],
        ("2345-7", "Glucose", "mg/dL", 70, 99): [162, 148, 190, 131, 122],
        ("2160-0", "Creatinine", "mg/dL", 0.6, 1.3): [1.0, 1.1, 1.4, 1.2, 1.1],
        ("2093-3", "Cholesterol, total", "mg/dL", 100, 199): [231, 214, 220, 168, 151],
        ("2823-3", "Potassium", "mmol/L", 3.5, 5.1): [4.2, 4.4, 3.3, 4.1, 4.3],
        ("718-7", "Hemoglobin", "g/dL", 13.5, 17.5): [14.1, 14.3, 12.9, 13.8, 14.0],
    }
    for (code, name, unit, low, high), values in series.items():
        for d, v in zip(dates, values, strict=True):
            svc.create(p, _lab(pid, code, name, unit, v, f"{d}T08:00:00Z", low, high))
    for d in dates:
        svc.create(p, {"resourceType": "Observation", "status": "final",
                       "category": [{"coding": [{"system": OBS_CAT, "code": "vital-signs"}]}],
                       "code": {"coding": [{"system": LOINC, "code": "29463-7", "display": "Body weight"}]},
                       "subject": subject, "effectiveDateTime": f"{d}T08:00:00Z",
                       "valueQuantity": {"value": 92.5, "unit": "kg"}})
    author = f"Practitioner/{practitioner}"
    svc.create(p, _document(pid, "34117-2", "History and physical note", "2023-09-04T04:00:00Z",
                            "HISTORY OF PRESENT ILLNESS\n62-year-old man with type 2 diabetes and hypertension "
                            "presenting with substernal chest pain for 3 hours.\n\nASSESSMENT AND PLAN\n"
                            "NSTEMI. Admit to telemetry, heparin, aspirin, clopidogrel, high-intensity statin.",
                            "final", author, encounters[3]))
    svc.create(p, _document(pid, "18842-5", "Discharge summary", "2023-09-07T12:00:00Z",
                            "DISCHARGE DIAGNOSIS\nNon-ST elevation myocardial infarction.\n\nHOSPITAL COURSE\n"
                            "Cardiac catheterization with drug-eluting stent to the LAD. Uneventful recovery.",
                            "final", author, encounters[3]))
    svc.create(p, _document(pid, "11506-3", "Progress note", "2024-06-20T14:35:00Z",
                            "Seen for diabetes follow-up. A1c 6.8%, improving. Continue metformin. "
                            "Return in 6 months.", "preliminary", author, encounters[5]))


@dataclass
class Seeded:
    base_url: str
    patients: dict[str, str]  # label -> id


def _seed(db: Database) -> dict[str, str]:
    svc = RecordService(db)
    with db.begin() as conn:
        for role, (username, display) in USERS.items():
            users.create_user(conn, username, PASSWORD, [role], actor=SYSTEM, display_name=display)
    prac, _ = svc.create(SYSTEM, {"resourceType": "Practitioner", "name": [{"family": "Carter", "given": ["Phil"],
                                                                              "prefix": ["Dr"]}]})
    ids: dict[str, str] = {}
    for label, args in {
        "smith": ("Smith", ["John", "Robert"], "1962-03-14", "male", "10000001", "Worcester"),
        "smith2": ("Smith", ["Joan"], "1978-11-02", "female", "10000002", "Springfield"),
        "garcia": ("Garcia", ["Maria"], "1990-07-21", "female", "10000003", "Boston"),
        "vip": ("Holloway", ["Victoria"], "1971-05-30", "female", "10000004", "Boston"),
    }.items():
        res, _ = svc.create(SYSTEM, _patient(*args))
        ids[label] = res.id
    seed_typical_chart(svc, ids["smith"], prac.id)
    seed_typical_chart(svc, ids["vip"], prac.id)
    with db.begin() as conn:
        grants.restrict_patient(conn, SYSTEM, ids["vip"], "vip", note="public figure")
    return ids


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    with seeded_server(tmp_path_factory.mktemp("browser"), "workspace", _seed) as (base, _url, ids):
        yield Seeded(base, ids)


def login(page: Any, base: str, role: str) -> None:
    log_in(page, base, USERS[role][0], PASSWORD)


@pytest.mark.parametrize("role", list(USERS))
def test_each_role_logs_in_and_sees_its_home(page: Any, server: Seeded, role: str) -> None:
    from playwright.sync_api import expect

    login(page, server.base_url, role)
    _username, display = USERS[role]
    expect(page.locator("h1")).to_contain_text(f"Hello, {display}")
    expect(page.locator(".who .role")).not_to_be_empty()
    shot(page, f"home-{role}")
    if role == "him_technician":
        # The restricted patient's unsigned document is not counted for a technician outside the care team.
        expect(page.locator(".queue", has_text="Unsigned documents").locator(".queue-count")).to_have_text("1")
    if role == "admin":
        page.goto(server.base_url + "/patients")
        expect(page.locator("h1")).to_contain_text("403")
    else:
        page.keyboard.press("/")
        expect(page.locator("#q")).to_be_focused()
    page.click("text=Log out")
    page.wait_for_url(server.base_url + "/login")
    page.goto(server.base_url + "/")
    assert "/login" in page.url, "after logout the session is dead"


def test_technician_searches_opens_chart_adds_allergy(page: Any, server: Seeded) -> None:
    from playwright.sync_api import expect

    base = server.base_url
    login(page, base, "him_technician")
    page.keyboard.press("/")
    page.keyboard.type("smith")
    page.keyboard.press("Enter")
    page.wait_for_url(base + "/patients")
    rows = page.locator("table.results tbody tr")
    expect(rows).to_have_count(2)
    assert "smith" not in page.url.lower(), "no name in the URL"
    shot(page, "search")
    # keyboard: the first row (Smith, Joan) has the focus; arrows move; Enter opens Smith, John.
    expect(rows.nth(0)).to_be_focused()
    expect(rows.nth(0)).to_contain_text("Smith, Joan")
    page.keyboard.press("ArrowDown")
    expect(rows.nth(1)).to_be_focused()
    page.keyboard.press("ArrowUp")
    expect(rows.nth(0)).to_be_focused()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/patients/{server.patients['smith']}")
    banner = page.locator(".banner")
    expect(banner).to_contain_text("Smith, John Robert")
    expect(banner).to_contain_text("10000001")
    expect(banner).to_contain_text("none recorded")
    expect(page.locator("#problems")).to_contain_text("Type 2 diabetes mellitus")
    expect(page.locator(".trend")).to_have_count(6)
    expect(page.locator("#documents .doc-status.unsigned")).to_have_count(1)
    timing = page.evaluate(
        "() => performance.getEntriesByType('navigation')[0].serverTiming.map(t => [t.name, t.duration])")
    print("chart Server-Timing:", timing)
    shot(page, "chart")
    shot(page, "chart-full", full_page=True)

    # open a document's text
    page.locator("#documents summary", has_text="Discharge summary").click()
    discharge = page.locator("#documents li", has_text="Discharge summary")
    expect(discharge.locator(".doc-text")).to_be_visible()
    expect(discharge.locator(".doc-text")).to_contain_text("drug-eluting stent")

    # add an allergy: first with a missing substance (error next to the field, nothing saved) ...
    page.click(".sections .add a:has-text('allergy')")
    page.wait_for_url(f"{base}/patients/{server.patients['smith']}/new/allergy")
    page.select_option("#f-category", "medication")
    page.fill("#f-reaction", "Hives")
    page.select_option("#f-severity", "moderate")
    page.click("button:has-text('Save allergy')")
    err = page.locator(".field.has-error .error")
    expect(err).to_have_text("Enter the substance; it is required.")
    expect(page.locator("#f-substance")).to_be_focused()
    shot(page, "allergy-form-error")
    # ... then complete it
    page.fill("#f-substance", "Penicillin")
    page.click("button:has-text('Save allergy')")
    page.wait_for_url(f"{base}/patients/{server.patients['smith']}?saved=AllergyIntolerance#allergies")
    expect(page.locator(".saved")).to_have_text("Allergy saved.")
    expect(page.locator(".banner .allergy-list")).to_have_text("Penicillin")
    expect(page.locator("#allergies")).to_contain_text("Hives (moderate)")
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "chart-with-allergy")

    # the version history of the new allergy names its author
    page.locator("#allergies a.hist").first.click()
    expect(page.locator("h1")).to_contain_text("Version history: Penicillin")
    expect(page.locator(".version").first).to_contain_text("Tess Technician")
    shot(page, "history")

    # the unsigned-documents queue lists the patient's unsigned note; the restricted one is neither shown nor counted
    page.goto(base + "/queues/unsigned-documents")
    expect(page.locator("table.results tbody tr")).to_have_count(1)
    expect(page.locator("table.results")).to_contain_text("Smith, John Robert")
    expect(page.locator("table.results")).to_contain_text("Carter, Phil")
    expect(page.locator(".notice")).to_have_count(0)
    shot(page, "queue-unsigned")


def test_restricted_patient_needs_break_the_glass(page: Any, server: Seeded) -> None:
    from playwright.sync_api import expect

    base = server.base_url
    vip = server.patients["vip"]
    login(page, base, "him_technician")
    # Search hides the restricted record, and says so.
    page.keyboard.press("/")
    page.keyboard.type("holloway")
    page.keyboard.press("Enter")
    expect(page.locator(".notice")).to_contain_text("1 more matching record is restricted")
    page.goto(f"{base}/patients/{vip}")
    expect(page.locator("h1")).to_contain_text("403")
    expect(page.locator("body")).not_to_contain_text("Holloway")
    shot(page, "restricted")
    page.fill("#reason", "urgent")
    page.click("button:has-text('Break the glass')")
    expect(page.locator(".error")).to_contain_text("at least 3 words")
    page.fill("#reason", "Emergency department treatment, patient unconscious")
    page.click("button:has-text('Break the glass')")
    page.wait_for_url(f"{base}/patients/{vip}")
    expect(page.locator(".banner")).to_contain_text("Holloway, Victoria")
    expect(page.locator(".banner .flag-restricted")).to_contain_text("RESTRICTED")
    expect(page.locator(".grant-note")).to_contain_text("breaking the glass")
    shot(page, "chart-after-break-glass")

    # The privacy officer sees the event on the home page.
    page.click("text=Log out")
    login(page, base, "privacy_officer")
    expect(page.locator("table.grid")).to_contain_text("Emergency department treatment, patient unconscious")
    shot(page, "home-privacy-review")


def test_register_patient_with_field_errors(page: Any, server: Seeded) -> None:
    from playwright.sync_api import expect

    base = server.base_url
    login(page, base, "him_technician")
    page.click("text=Register patient")
    page.fill("#f-family", "O'Neil")
    page.fill("#f-given", "<b>Pat</b>")
    page.fill("#f-birth_date", "2999-01-01")
    page.select_option("#f-sex", "other")
    page.click("button:has-text('Register patient')")
    expect(page.locator("#f-birth_date-err")).to_contain_text("in the future")
    page.fill("#f-birth_date", "1985-02-11")
    page.click("button:has-text('Register patient')")
    page.wait_for_url(re.compile(r".*/patients/[^/?]+\?saved=Patient$"))
    expect(page.locator(".banner h1")).to_have_text("O'Neil, <b>Pat</b>")
    expect(page.locator(".banner .mono").first).to_have_text(re.compile(r"^\d{8}$"))
