"""Fixtures for the chart completion tests (``db`` comes from tests/conftest.py: SQLite and PostgreSQL).

``world`` holds the practitioners and one patient; ``people`` the users who act: an HIM technician,
physicians linked to their Practitioner (``link_practitioner``), and users of roles without workflow
access.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from completion_fhir import patient, practitioner

from chartkeeper.completion.service import CompletionService
from chartkeeper.db import Database
from chartkeeper.fhir.service import RecordService
from chartkeeper.security import users
from chartkeeper.security.principal import Principal

PASSWORD = "correct horse battery staple"
SYSTEM = Principal.system("test")
PRACTITIONERS = {
    "dr-att": ("Okafor", "Ada", "okafor@hospital.example.org"),
    "dr-surg": ("Lindqvist", "Per", "lindqvist@hospital.example.org"),
    "dr-cons": ("Haddad", "Rami", None),
    "dr-res": ("Nguyen", "Linh", "nguyen@hospital.example.org"),
    "dr-other": ("Moreau", "Claire", "moreau@hospital.example.org"),
}


@dataclass
class People:
    tech: Principal
    tech2: Principal
    att: Principal  # physician, Practitioner/dr-att
    surg: Principal  # physician, Practitioner/dr-surg
    other: Principal  # physician, Practitioner/dr-other
    release: Principal
    registrar: Principal


@pytest.fixture
def records(db: Database) -> RecordService:
    return RecordService(db)


@pytest.fixture
def svc(db: Database, records: RecordService) -> CompletionService:
    return CompletionService(db, records=records)


@pytest.fixture
def world(db: Database, records: RecordService) -> dict[str, Any]:
    """Five practitioners and two patients, as the directory and registration would hold them."""
    res = [practitioner(pid, fam, giv, email) for pid, (fam, giv, email) in PRACTITIONERS.items()]
    res += [patient("pat-1", "MRN-C1"), patient("pat-2", "MRN-C2")]
    with db.begin() as conn:
        records.ingest(conn, SYSTEM, res, source="test setup")
    return {"patients": ["pat-1", "pat-2"]}


def _user(db: Database, name: str, roles: list[str], practitioner_id: str | None = None) -> Principal:
    with db.begin() as conn:
        u = users.create_user(conn, name, PASSWORD, roles, actor=SYSTEM, display_name=name)
        if practitioner_id:
            u = users.link_practitioner(conn, u.id, practitioner_id, actor=SYSTEM)
    return u.principal("10.0.0.7")


@pytest.fixture
def people(db: Database, world: dict[str, Any]) -> People:
    return People(
        tech=_user(db, "dana", ["him_technician"]),
        tech2=_user(db, "lee", ["him_technician"]),
        att=_user(db, "okafor", ["physician"], "dr-att"),
        surg=_user(db, "lindqvist", ["physician"], "dr-surg"),
        other=_user(db, "moreau", ["physician"], "dr-other"),
        release=_user(db, "rosa", ["release_specialist"]),
        registrar=_user(db, "reg", ["registrar"]),
    )


@pytest.fixture
def put(records: RecordService):
    """Write a resource with its own id (FHIR update-as-create), as a user at the keyboard would."""

    def _put(principal: Principal, resource: dict[str, Any]):
        return records.update(principal, resource["resourceType"], resource["id"], resource)

    return _put
