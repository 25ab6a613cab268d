"""A real FHIR client that nobody here wrote (SMART on FHIR's fhirclient) against the running server."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import uvicorn
from fhirclient import client as fc
from fhirclient.models.condition import Condition
from fhirclient.models.observation import Observation
from fhirclient.models.patient import Patient

from chartkeeper.fhir.service import RecordService
from chartkeeper.security.principal import Principal
from fhirdata import obs, patient


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(app):
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    deadline = time.time() + 10
    while not srv.started:
        assert time.time() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/fhir"
    srv.should_exit = True
    t.join(5)


def test_fhirclient_reads_searches_and_pages(db, server, tokens):
    svc = RecordService(db)
    system = Principal.system("test")
    pid = svc.create(system, patient())[0].id
    cond = {"resourceType": "Condition", "subject": {"reference": f"Patient/{pid}"},
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active"}]},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9"}],
                     "text": "Type 2 diabetes mellitus without complications"}}
    svc.create(system, cond)
    for day in range(1, 24):
        svc.create(system, obs(pid, when=f"2024-05-{day:02d}T08:00:00Z", value=6 + day / 10))

    smart = fc.FHIRClient(settings={"app_id": "chartkeeper-tests", "api_base": server})
    smart.server.session.headers["Authorization"] = f"Bearer {tokens['him_technician']}"

    p = Patient.read(pid, smart.server)
    assert p.name[0].family == "Rivera" and p.birthDate.isostring == "1961-04-02"

    conditions = Condition.where(struct={"patient": pid}).perform_resources(smart.server)
    assert [c.code.coding[0].code for c in conditions] == ["E11.9"]

    pages = list(Observation.where(struct={"patient": pid, "_count": "5", "_sort": "date"}).perform_iter(smart.server))
    assert len(pages) == 5 and pages[0].total == 23
    values = [e.resource.valueQuantity.value for b in pages for e in b.entry]
    assert len(values) == 23 and values == sorted(values)
