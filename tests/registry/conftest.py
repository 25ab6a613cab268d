"""Fixtures for the registry tests (``db`` from tests/conftest.py: SQLite and PostgreSQL).

``TermScreener`` is a small, explicit screener with the casefinding engine's contract (a result with
reportable, reason, matches, site, histology, behavior, laterality). The service takes any screener;
these tests exercise the storage and workflow around screening with a rule the tests can read in
full. Tests of the real engine through the service are in ``test_service.py`` behind
``pytest.importorskip("chartkeeper.registry.casefinding")``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import registry_fhir as fx

from chartkeeper.coding.codes import ICD10CMCode
from chartkeeper.db import Database
from chartkeeper.fhir.service import RecordService
from chartkeeper.registry import service as registry_service
from chartkeeper.registry.service import RegistryService, Screen, Span
from chartkeeper.security import users
from chartkeeper.security.principal import Principal

PASSWORD = "correct horse battery staple"
SYSTEM = Principal.system("test")

_HISTOLOGY = {"invasive ductal carcinoma": "8500", "adenocarcinoma": "8140", "melanoma": "8720"}
_SITES = {"breast": "C509", "lung": "C349", "colon": "C189", "prostate": "C619"}


class TermScreener:
    """Reportable when the text names a malignant histology from its table and does not say
    'negative for malignancy'; ICD-10-CM C00-D09 except C44 (skin, non-melanoma) is reportable."""

    def screen_text(self, text: str) -> Screen | None:
        low = text.lower()
        if "negative for malignancy" in low:
            return Screen(False, "negative for malignancy")
        spans = []
        hist = ""
        for phrase, code in _HISTOLOGY.items():
            for m in re.finditer(re.escape(phrase), low):
                spans.append(Span(m.start(), m.end(), text[m.start():m.end()], "histology"))
                hist = hist or code
        if not spans:
            return Screen(False, "no reportable term")
        site = next((c for w, c in _SITES.items() if w in low), "")
        lat = "2" if "left" in low else "1" if "right" in low else ""
        return Screen(True, f"reportable term: {spans[0].phrase}", tuple(spans), site, hist, "3", lat)

    def screen_code(self, code: ICD10CMCode) -> Screen | None:
        reportable = (code[0] == "C" and code[:3] != "C44") or (code[0] == "D" and code[1:3] <= "09")
        if not reportable:
            return Screen(False, "not a reportable code")
        site = "C509" if code.startswith("C50") else f"{code[:3]}9" if code[0] == "C" else ""
        lat = {"1": "1", "2": "2"}.get(code[5:6], "") if code.startswith("C50") else ""
        return Screen(True, f"reportable code {code.dotted}", (), site, "", "3", lat)


@pytest.fixture
def screener() -> Iterator[TermScreener]:
    s = TermScreener()
    registry_service.use_screener(s)
    yield s
    registry_service.use_screener(None)


@pytest.fixture
def records(db: Database) -> RecordService:
    return RecordService(db)


@pytest.fixture
def svc(db: Database, records: RecordService, screener: TermScreener) -> RegistryService:
    return RegistryService(db, records, screener=screener)


@dataclass
class People:
    registrar: Principal
    registrar2: Principal
    coder: Principal
    tech: Principal
    physician: Principal


def make_user(db: Database, name: str, roles: list[str]) -> Principal:
    with db.begin() as conn:
        u = users.create_user(conn, name, PASSWORD, roles, actor=SYSTEM, display_name=name)
    return u.principal("10.0.0.9")


@pytest.fixture
def people(db: Database) -> People:
    return People(registrar=make_user(db, "rita", ["registrar"]), registrar2=make_user(db, "ravi", ["registrar"]),
                  coder=make_user(db, "cody", ["coder"]), tech=make_user(db, "tess", ["him_technician"]),
                  physician=make_user(db, "phil", ["physician"]))


@pytest.fixture
def write(records: RecordService):
    """Write resources one by one as the interface engine does (a system job, interactive writes)."""

    def _write(*resources: dict[str, Any]) -> None:
        for r in resources:
            records.update(SYSTEM, r["resourceType"], r["id"], r)

    return _write


@pytest.fixture
def directory(write) -> None:
    write(fx.practitioner("dr-onc", "Haddad", "Rami"), fx.practitioner("dr-pcp", "Moreau", "Claire"))


@pytest.fixture
def breast_case(write, directory) -> dict[str, str]:
    """Ana Rivera: a left breast biopsy on 2025-03-10 with its pathology report and diagnosis."""
    write(fx.patient("pat-1", "MRN-R1", gp="dr-pcp"), fx.encounter("enc-bx", "pat-1", "2025-03-10"),
          fx.pathology("path-1", "pat-1", "enc-bx", "2025-03-10"),
          fx.condition("cond-1", "pat-1", "C50.912", "2025-03-10", "Malignant neoplasm of left female breast"))
    return {"patient": "pat-1", "report": "path-1", "condition": "cond-1"}
