"""Chart completion in a real browser: one deficiency from discharge to the physician's signature.

Debian's headless Chromium driven by Playwright for Python, against the real server (uvicorn in a
subprocess) over a temporary SQLite database. The test records a discharged inpatient stay and its
unsigned discharge summary through the record service as a system job (the write listener analyses
the chart at once); the HIM technician finds the deficiency in the queue; the physician logs in, finds
it in the inbox, opens the document and signs it; the deficiency is then closed (completed) and gone
from the open queue, and the chart shows the document as signed. Screenshots go to var/screenshots/.

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
from browserkit import log_in, seeded_server, shot

from chartkeeper.db import Database
from chartkeeper.fhir.service import RecordService
from chartkeeper.security import users
from chartkeeper.security.principal import Principal

pytestmark = pytest.mark.browser

PASSWORD = "completion-browser-password-1"
SYSTEM = Principal.system("browser-test")
USERS = {"tech": ("tess", "Tess Technician", "him_technician"), "doctor": ("carter", "Dr Phil Carter", "physician")}
SUMMARY = ("DISCHARGE DIAGNOSES\nCommunity-acquired pneumonia, right lower lobe.\n\nPROCEDURES\nNone.\n\n"
           "DISPOSITION\nHome with family.\n\nDISCHARGE MEDICATIONS\nAmoxicillin-clavulanate 875 mg twice a day "
           "for 5 days.\n\nFOLLOW-UP\nPrimary care in one week; chest X-ray in six weeks.\n")


@dataclass
class Seeded:
    base_url: str
    db_url: str
    patient: str
    practitioner: str


def _seed(db: Database) -> tuple[str, str]:
    svc = RecordService(db)
    prac, _ = svc.create(SYSTEM, {"resourceType": "Practitioner",
                                  "name": [{"family": "Carter", "given": ["Phil"], "prefix": ["Dr"]}]})
    pat, _ = svc.create(SYSTEM, {
        "resourceType": "Patient", "name": [{"use": "official", "family": "Lindqvist", "given": ["Greta"]}],
        "gender": "female", "birthDate": "1948-09-17",
        "identifier": [{"system": "https://chartkeeper.example.org/mrn", "value": "20000001"}]})
    with db.begin() as conn:
        for username, display, role in USERS.values():
            u = users.create_user(conn, username, PASSWORD, [role], actor=SYSTEM, display_name=display)
            if role == "physician":
                users.link_practitioner(conn, u.id, prac.id, actor=SYSTEM)
    return pat.id, prac.id


def record_discharge(db_url: str, pid: str, practitioner: str) -> tuple[str, str]:
    """What the admitting system sends at discharge: a finished inpatient stay of three days and the
    attending's discharge summary, not yet signed."""
    db = Database(db_url)
    try:
        svc = RecordService(db)
        end = datetime.now(UTC) - timedelta(days=1)
        fmt = "%Y-%m-%dT%H:%M:%SZ"
        enc, _ = svc.create(SYSTEM, {
            "resourceType": "Encounter", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "type": [{"text": "Internal medicine"}], "subject": {"reference": f"Patient/{pid}"},
            "period": {"start": (end - timedelta(days=3)).strftime(fmt), "end": end.strftime(fmt)},
            "participant": [{"type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                                   "code": "ATND"}]}],
                             "individual": {"reference": f"Practitioner/{practitioner}"}}]})
        doc, _ = svc.create(SYSTEM, {
            "resourceType": "DocumentReference", "status": "current", "docStatus": "preliminary",
            "type": {"coding": [{"system": "http://loinc.org", "code": "18842-5", "display": "Discharge summary"}],
                     "text": "Discharge summary"},
            "description": "Discharge summary", "subject": {"reference": f"Patient/{pid}"},
            "date": end.strftime(fmt), "author": [{"reference": f"Practitioner/{practitioner}"}],
            "context": {"encounter": [{"reference": f"Encounter/{enc.id}"}]},
            "content": [{"attachment": {"contentType": "text/plain; charset=utf-8",
                                        "data": base64.b64encode(SUMMARY.encode()).decode()}}]})
        return enc.id, doc.id
    finally:
        db.dispose()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    with seeded_server(tmp_path_factory.mktemp("completion"), "completion", _seed) as (base, url, (pid, prac)):
        yield Seeded(base, url, pid, prac)


def login(page: Any, base: str, who: str) -> None:
    log_in(page, base, USERS[who][0], PASSWORD)


def logout(page: Any, base: str) -> None:
    page.click("text=Log out")
    page.wait_for_url(base + "/login")


def test_deficiency_from_discharge_to_signature(page: Any, server: Seeded) -> None:
    from playwright.sync_api import expect

    base = server.base_url
    _enc, doc = record_discharge(server.db_url, server.patient, server.practitioner)

    # The technician sees the chart's deficiencies: the summary to sign, and the missing H&P.
    login(page, base, "tech")
    expect(page.locator(".queue", has_text="Open chart deficiencies").locator(".queue-count")).to_have_text("2")
    expect(page.locator(".queue", has_text="Incomplete charts").locator(".queue-count")).to_have_text("1")
    page.click(".mainnav >> text=Chart completion")
    page.wait_for_url(base + "/completion")
    expect(page.locator("#flt-physician")).to_be_focused()  # keyboard: the first filter has the focus
    rows = page.locator("table.queue-table tbody tr")
    expect(rows).to_have_count(2)
    sign_row = rows.filter(has_text="Sign document")
    expect(sign_row).to_contain_text("Greta Lindqvist (20000001)")
    expect(sign_row).to_contain_text("Dr Phil Carter")
    expect(sign_row).to_contain_text("open")
    row_id = sign_row.get_attribute("id")
    # Filter by the physician with the keyboard: the URL carries the practitioner id, not a name.
    page.select_option("#flt-physician", server.practitioner)
    page.click("button:has-text('Filter')")
    page.wait_for_url(re.compile(rf"/completion\?physician={server.practitioner}&"))
    expect(rows).to_have_count(2)
    assert "lindqvist" not in page.url.lower() and "internal" not in page.url.lower(), "ids and codes only in URLs"
    shot(page, "completion-queue")
    logout(page, base)

    # The physician finds it in the inbox, opens the document and signs it.
    login(page, base, "doctor")
    expect(page.locator(".queue", has_text="Your open chart deficiencies").locator(".queue-count")).to_have_text("2")
    page.click(".queue >> text=Your open chart deficiencies")
    page.wait_for_url(base + "/inbox")
    item = page.locator(".inbox-item", has_text="Sign document")
    expect(item).to_contain_text("Greta Lindqvist")
    shot(page, "completion-inbox")
    item.locator("text=Open document").click()
    page.wait_for_url(f"{base}/documents/{doc}")
    expect(page.locator(".banner")).to_contain_text("Lindqvist, Greta")
    expect(page.locator(".doc-text")).to_contain_text("Community-acquired pneumonia")
    expect(page.locator(".doc-status")).to_have_text("Unsigned")
    shot(page, "completion-document")
    page.click("button:has-text('Sign document')")
    page.wait_for_url(f"{base}/documents/{doc}?signed=1")
    expect(page.locator(".saved")).to_contain_text("Signed.")
    expect(page.locator(".doc-status.signed")).to_have_text("Signed")
    expect(page.locator(".doc-meta")).to_contain_text("Carter, Phil")
    expect(page.locator("button:has-text('Sign document')")).to_have_count(0)
    shot(page, "completion-signed")
    page.click("text=Back to your inbox")
    page.wait_for_url(base + "/inbox")
    expect(page.locator(".inbox-item")).to_have_count(1)  # the H&P is still missing
    expect(page.locator(".inbox-item", has_text="Sign document")).to_have_count(0)
    expect(page.locator("table.closed")).to_contain_text("Sign document")
    expect(page.locator("table.closed")).to_contain_text("completed")
    logout(page, base)

    # The technician's queue no longer holds it; it is closed as completed; the chart shows it signed.
    login(page, base, "tech")
    expect(page.locator(".queue", has_text="Open chart deficiencies").locator(".queue-count")).to_have_text("1")
    page.goto(base + "/completion")
    expect(page.locator("table.queue-table tbody tr")).to_have_count(1)
    expect(page.locator(f"#{row_id}")).to_have_count(0)
    page.select_option("#flt-status", "completed")
    page.click("button:has-text('Filter')")
    page.wait_for_url(re.compile(r"/completion\?.*status=completed"))
    closed = page.locator(f"#{row_id}")
    expect(closed).to_contain_text("Sign document")
    expect(closed).to_contain_text("completed")
    shot(page, "completion-queue-completed")
    page.goto(f"{base}/patients/{server.patient}")
    summary = page.locator("#documents li", has_text="Discharge summary")
    expect(summary.locator(".doc-status")).to_have_text("Signed")
