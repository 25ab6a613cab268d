"""Coding in a real browser: one inpatient stay from the coding queue to a final claim.

Debian's headless Chromium driven by Playwright for Python, against the real server (uvicorn in a
subprocess) over a temporary SQLite database. The admitting system records a discharged pneumonia
stay and its discharge summary, which also documents acute respiratory failure with hypoxia (an MCC
for a pneumonia stay). The coder opens it from the queue, runs computer-assisted coding and sees the
evidence highlighted in the summary, accepts both suggestions (the second without its
present-on-admission indicator, so an error edit appears and the MS-DRG moves from 195 to 193), fixes
the edit in the code list, tries a what-if, sends a query, which the attending answers from the inbox
in a second browser context, and finalizes: the page shows the MS-DRG and the claim id. Screenshots
go to var/screenshots/ (the user guide's images are copied from there).

Never downloads a browser: skips, with the reason, when /usr/bin/chromium is missing.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from browserkit import VIEWPORT, log_in, seeded_server, shot

import chartkeeper.coding.service  # noqa: F401 - loads the coding write listener, as the server does
from chartkeeper.db import Database
from chartkeeper.fhir.service import RecordService
from chartkeeper.security import users
from chartkeeper.security.principal import Principal

pytestmark = pytest.mark.browser

PASSWORD = "coding-browser-password-1"
SYSTEM = Principal.system("browser-test")
USERS = {"coder": ("cora", "Cora Coder", "coder"), "doctor": ("carter", "Dr Phil Carter", "physician")}
SUMMARY = ("DISCHARGE SUMMARY\n\nDISCHARGE DIAGNOSES:\n1. Community acquired pneumonia, right lower lobe\n"
           "2. Acute respiratory failure with hypoxia\n\nHOSPITAL COURSE:\nAdmitted with three days of cough and "
           "fever. Chest x-ray showed right lower lobe pneumonia. Oxygen saturation 84% on room air on arrival; "
           "she required BiPAP for acute respiratory failure with hypoxia for 36 hours. Treated with ceftriaxone "
           "and azithromycin, then oral amoxicillin-clavulanate.\n\nDISPOSITION:\nHome with family.\n")
QUESTION = ("Based on the clinical indicators below, can the respiratory condition treated with BiPAP be "
            "further specified?")


@dataclass
class Seeded:
    base_url: str
    patient: str
    practitioner: str
    encounter: str
    document: str


def _seed(db: Database) -> Seeded:
    svc = RecordService(db)
    prac, _ = svc.create(SYSTEM, {"resourceType": "Practitioner",
                                  "name": [{"family": "Carter", "given": ["Phil"], "prefix": ["Dr"]}]})
    pat, _ = svc.create(SYSTEM, {
        "resourceType": "Patient", "name": [{"use": "official", "family": "Lindqvist", "given": ["Greta"]}],
        "gender": "female", "birthDate": "1948-09-17",
        "identifier": [{"system": "https://chartkeeper.example.org/mrn", "value": "20000001"}]})
    end = datetime.now(UTC) - timedelta(days=2)
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    enc, _ = svc.create(SYSTEM, {
        "resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "type": [{"text": "Internal medicine"}], "subject": {"reference": f"Patient/{pat.id}"},
        "period": {"start": (end - timedelta(days=4)).strftime(fmt), "end": end.strftime(fmt)},
        "participant": [{"type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                               "code": "ATND"}]}],
                         "individual": {"reference": f"Practitioner/{prac.id}"}}]})
    doc, _ = svc.create(SYSTEM, {
        "resourceType": "DocumentReference", "status": "current", "docStatus": "final",
        "type": {"coding": [{"system": "http://loinc.org", "code": "18842-5", "display": "Discharge summary"}],
                 "text": "Discharge summary"},
        "subject": {"reference": f"Patient/{pat.id}"}, "date": end.strftime(fmt),
        "author": [{"reference": f"Practitioner/{prac.id}"}],
        "context": {"encounter": [{"reference": f"Encounter/{enc.id}"}]},
        "content": [{"attachment": {"contentType": "text/plain; charset=utf-8",
                                    "data": base64.b64encode(SUMMARY.encode()).decode()}}]})
    with db.begin() as conn:
        for username, display, role in USERS.values():
            u = users.create_user(conn, username, PASSWORD, [role], actor=SYSTEM, display_name=display)
            if role == "physician":
                users.link_practitioner(conn, u.id, prac.id, actor=SYSTEM)
    return Seeded("", pat.id, prac.id, enc.id, doc.id)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    with seeded_server(tmp_path_factory.mktemp("coding"), "coding", _seed) as (base, _url, seeded):
        seeded.base_url = base
        yield seeded


def login(page: Any, base: str, who: str) -> None:
    log_in(page, base, USERS[who][0], PASSWORD)


def test_coder_codes_a_stay_from_the_queue_to_a_final_claim(page: Any, browser: Any, server: Seeded) -> None:
    from playwright.sync_api import expect

    base, eid = server.base_url, server.encounter
    work = f"{base}/coding/{eid}"
    page.set_default_timeout(20_000)
    problems: list[str] = []  # script errors and Content-Security-Policy refusals (htmx runs under the strict CSP)
    # ("Failed to load resource" is the browser noting an HTTP error status: the refused Finalize answers 422.)
    page.on("console", lambda m: problems.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    page.on("pageerror", lambda e: problems.append(str(e)))

    # The queue: the DNFB count on the home page, the stay in the list; Enter on the row opens it.
    login(page, base, "coder")
    expect(page.locator(".queue", has_text="Discharged, not final billed").locator(".queue-count")).to_have_text("1")
    page.click(".queue >> text=Discharged, not final billed")
    page.wait_for_url(base + "/coding")
    row = page.locator(f"#enc-{eid}")
    expect(row).to_contain_text("Greta Lindqvist (20000001)")
    expect(row).to_contain_text("uncoded")
    expect(page.locator(".coding-counts")).to_contain_text("1 discharged, not final billed (DNFB)")
    shot(page, "coding-queue")
    row.focus()
    page.keyboard.press("Enter")
    page.wait_for_url(work)
    assert "lindqvist" not in page.url.lower(), "ids only in URLs"
    expect(page.locator(".banner")).to_contain_text("Lindqvist, Greta")

    # Computer-assisted coding: suggestions, each evidence span highlighted in the summary.
    page.click("#suggest-button")
    page.wait_for_url(re.compile(r"suggested=1"))
    pneumonia = page.locator("#sugg-J189")
    failure = page.locator("#sugg-J9601")
    expect(pneumonia).to_contain_text("Pneumonia, unspecified organism")
    expect(failure).to_contain_text("Acute respiratory failure with hypoxia")
    expect(page.locator("mark.evidence[data-code='J9601']").first).to_have_text(
        re.compile(r"acute respiratory failure", re.IGNORECASE))
    expect(page.locator("mark.evidence[data-code='J189']").first).to_be_visible()
    failure.locator("a.evidence-link").first.click()  # jumps to the marked words in the document
    expect(page.locator("mark.evidence:target")).to_have_count(1)
    shot(page, "coding-suggestions")

    # Accept pneumonia with POA Y: MS-DRG 195. Accept respiratory failure without a POA: 193, and an error edit.
    pneumonia.locator("select[name=poa]").select_option("Y")
    pneumonia.locator("button:has-text('Accept')").click()
    page.wait_for_url(re.compile(r"decided=1"))
    expect(page.locator("#drg .drg-number")).to_have_text("MS-DRG 195")
    page.locator("#sugg-J9601 button:has-text('Accept')").click()
    page.wait_for_url(re.compile(r"decided=1"))
    expect(page.locator("#drg .drg-number")).to_have_text("MS-DRG 193")
    expect(page.locator("#drg")).to_contain_text("with MCC")
    error = page.locator("#edits .edit-error[data-edit='poa.missing']")
    expect(error).to_contain_text("Present-on-admission is missing for J96.01")
    expect(page.locator("#dx-poa-1")).to_have_class(re.compile("missing"))
    shot(page, "coding-edit-and-drg", full_page=True)

    # Finalizing now is refused with the error edit named.
    page.click("#finalize-button")
    expect(page.locator("#finalize .error-box")).to_contain_text("Present-on-admission is missing")

    # Fix the edit from the keyboard: POA Y on the second diagnosis, Enter in a code field saves.
    page.goto(work)
    page.select_option("#dx-poa-1", "Y")
    page.focus("#dx-code-1")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"saved=1"))
    expect(page.locator("#edits-clean")).to_be_visible()
    expect(page.locator("#drg .drg-number")).to_have_text("MS-DRG 193")

    # What if the respiratory failure were not coded? Regrouped in place (HTMX), nothing saved.
    page.click("#drg summary:has-text('What if')")
    page.select_option("#wi-remove", "J9601")
    page.click("#drg button:has-text('Regroup')")
    expect(page.locator("#whatif-result")).to_contain_text("would change from 193 to 195")
    assert page.url.endswith("saved=1#codes"), "the what-if is a fragment: the page did not change"
    shot(page, "coding-what-if")

    # The encoder: words in, codes with notes and 7th characters out, in place.
    page.fill("#encoder-q", "essential hypertension")
    page.press("#encoder-q", "Enter")
    expect(page.locator("#encoder-results .hit").first).to_contain_text("I10")
    shot(page, "coding-encoder")

    # A compliant query to the attending (proposed by default); the stay waits.
    page.click("#queries summary:has-text('Send a query')")
    expect(page.locator("#q-physician")).to_have_value(server.practitioner)
    page.fill("#q-question", QUESTION)
    page.fill("#q-option-0", "Acute respiratory failure with hypoxia")
    page.fill("#q-option-1", "Hypoxemia without respiratory failure")
    page.fill("#q-excerpt", "Oxygen saturation 84% on room air on arrival")
    page.click("#send-query")
    page.wait_for_url(re.compile(r"queried=1"))
    expect(page.locator("#coding-status")).to_have_text("query pending")
    expect(page.locator("#queries .query-open")).to_contain_text("Clinically undetermined")

    # The attending answers from the inbox, in a second browser.
    ctx = browser.new_context(viewport=VIEWPORT)
    try:
        doctor = ctx.new_page()
        doctor.set_default_timeout(20_000)
        login(doctor, base, "doctor")
        doctor.goto(base + "/inbox")
        item = doctor.locator(".coding-query")
        expect(item).to_contain_text(QUESTION)
        expect(item).to_contain_text("Oxygen saturation 84% on room air")
        expect(item.locator("input[type=radio]")).to_have_count(4)
        item.locator("label.radio", has_text="Acute respiratory failure with hypoxia").click()
        shot(doctor, "coding-query-inbox")
        item.locator("button:has-text('Answer and sign')").click()
        doctor.wait_for_url(base + "/inbox?query_answered=1")
        expect(doctor.locator(".saved")).to_contain_text("signed addendum")
        expect(doctor.locator(".coding-query")).to_have_count(0)
    finally:
        ctx.close()

    # Back to the coder: the answer is there, coding is in progress again; finalize.
    page.goto(work)
    expect(page.locator("#coding-status")).to_have_text("in progress")
    expect(page.locator("#queries .answer")).to_contain_text("Acute respiratory failure with hypoxia")
    page.click("#finalize-button")
    page.wait_for_url(work + "?finalized=1")
    expect(page.locator("#final-drg")).to_have_text("193")
    expect(page.locator("#final-claim")).to_have_text(re.compile(r"^[A-Za-z0-9\-.]{8,64}$"))
    expect(page.locator("#coding-status")).to_have_text("final")
    shot(page, "coding-final")

    # The reports: the coder's decisions and the stay finalized.
    page.goto(base + "/coding/reports")
    expect(page.locator("figure.report-bars svg")).to_be_visible()
    expect(page.locator("table.report-throughput")).to_contain_text("Cora Coder")
    shot(page, "coding-reports")
    assert not problems, problems
    assert all(u.endswith("/favicon.ico") for u in missing), missing
