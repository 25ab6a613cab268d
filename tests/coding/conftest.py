"""Fixtures for the coding workflow tests (``db`` from tests/conftest.py: SQLite and PostgreSQL).

``hospital`` writes, as the registration and ADT systems would (a system job, through the record
service, so the coding write listener sees every encounter), two practitioners and three patients
(one restricted) with: Ann's inpatient stay discharged 5 days ago with a discharge summary and a low
hemoglobin, Ann's stay still in hospital, Bob's clinic visit discharged yesterday, Bob's emergency
visit discharged 20 days ago and the restricted patient's stay. ``people`` are the users who act.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from coding_helpers import PASSWORD, SYSTEM, document, encounter, hemoglobin, patient, practitioner

from chartkeeper.coding.service import CodingService
from chartkeeper.db import Database
from chartkeeper.fhir.service import RecordService
from chartkeeper.security import grants, users
from chartkeeper.security.principal import Principal


@dataclass
class People:
    coder: Principal
    coder2: Principal
    tech: Principal
    dr_a: Principal  # physician, Practitioner/dr-a
    dr_b: Principal  # physician, Practitioner/dr-b
    registrar: Principal
    release: Principal


@pytest.fixture
def records(db: Database) -> RecordService:
    return RecordService(db)


@pytest.fixture
def svc(db: Database, records: RecordService) -> CodingService:
    return CodingService(db, records=records)


@pytest.fixture
def put(records: RecordService):
    """Write a resource with its own id as a system job (ADT feed, registration)."""

    def _put(resource: dict[str, Any]) -> None:
        records.update(SYSTEM, resource["resourceType"], resource["id"], resource)

    return _put


@pytest.fixture
def hospital(db: Database, records: RecordService, put) -> dict[str, str]:
    for r in (practitioner("dr-a", "Okafor", "Ada"), practitioner("dr-b", "Lindqvist", "Per"),
              patient("ann", "Ames", "MRN-1"), patient("bob", "Boyd", "MRN-2", "male", "1980-07-01"),
              patient("vip", "Vance", "MRN-3"),
              encounter("stay-ann", "ann", "IMP", discharged_days_ago=5),
              encounter("now-ann", "ann", "IMP", discharged_days_ago=None),
              encounter("visit-bob", "bob", "AMB", discharged_days_ago=1, los_days=0.05),
              encounter("er-bob", "bob", "EMER", discharged_days_ago=20, los_days=0.2),
              encounter("stay-vip", "vip", "IMP", discharged_days_ago=9),
              document("sum-ann", "ann", "stay-ann"), hemoglobin("hgb-ann", "ann", "stay-ann"),
              document("sum-vip", "vip", "stay-vip")):
        put(r)
    with db.begin() as conn:
        grants.restrict_patient(conn, SYSTEM, "vip", "vip")
    return {"stay": "stay-ann", "inhouse": "now-ann", "visit": "visit-bob", "er": "er-bob", "vip": "stay-vip"}


def make_user(db: Database, name: str, roles: list[str], practitioner_id: str | None = None) -> Principal:
    with db.begin() as conn:
        u = users.create_user(conn, name, PASSWORD, roles, actor=SYSTEM, display_name=name.title())
        if practitioner_id:
            u = users.link_practitioner(conn, u.id, practitioner_id, actor=SYSTEM)
    return u.principal("10.0.0.9")


@pytest.fixture
def people(db: Database, hospital: dict[str, str]) -> People:
    return People(coder=make_user(db, "carla", ["coder"]), coder2=make_user(db, "cody", ["coder"]),
                  tech=make_user(db, "tess", ["him_technician"]), dr_a=make_user(db, "okafor", ["physician"], "dr-a"),
                  dr_b=make_user(db, "lindqvist", ["physician"], "dr-b"),
                  registrar=make_user(db, "reggie", ["registrar"]), release=make_user(db, "rosa", ["release_specialist"]))
