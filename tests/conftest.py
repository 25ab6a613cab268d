"""Shared fixtures. Every store-touching test takes ``db`` and so runs on SQLite and PostgreSQL.

PostgreSQL is at 127.0.0.1:5432, database ``test`` (override with CHARTKEEPER_TEST_POSTGRES_URL).
Where it cannot be reached the PostgreSQL half skips with the reason, except on CI (CI=true) where
it fails: CI must test the production database.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from chartkeeper.db import Database

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_DATA = SHARED / "data"
PG_URL = os.environ.get("CHARTKEEPER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_available() -> str | None:
    try:
        eng = create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with eng.connect() as c:
            c.execute(text("select 1"))
        eng.dispose()
        return None
    except Exception as exc:  # noqa: BLE001
        return f"PostgreSQL not reachable at {PG_URL}: {exc.__class__.__name__}"


_PG_PROBLEM = _pg_available()


def _fresh_pg_schema() -> tuple[str, str]:
    """A private schema per test, so tests never see each other's rows and can run in parallel."""
    schema = "t_" + uuid.uuid4().hex[:12]
    eng = create_engine(PG_URL)
    with eng.begin() as c:
        c.execute(text(f'create schema "{schema}"'))
    eng.dispose()
    sep = "&" if "?" in PG_URL else "?"
    return schema, f"{PG_URL}{sep}options=-csearch_path%3D{schema}"


def _drop_pg_schema(schema: str) -> None:
    eng = create_engine(PG_URL)
    try:
        for attempt in range(5):
            try:
                with eng.begin() as c:
                    c.execute(text(f'drop schema if exists "{schema}" cascade'))
                return
            except OperationalError:
                # A background job of the test (audit sealing) may still hold a lock; try again.
                if attempt == 4:
                    raise
                time.sleep(0.2)
    finally:
        eng.dispose()


def make_database(backend: str, tmp_path: Path) -> tuple[Database, str | None]:
    if backend == "sqlite":
        return Database(f"sqlite:///{tmp_path / 'test.db'}"), None
    if _PG_PROBLEM:
        if os.environ.get("CI"):
            pytest.fail(_PG_PROBLEM)
        pytest.skip(_PG_PROBLEM)
    schema, url = _fresh_pg_schema()
    return Database(url), schema


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db(backend: str, tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty database on each backend."""
    database, schema = make_database(backend, tmp_path)
    database.upgrade()
    try:
        yield database
    finally:
        database.dispose()
        if schema:
            _drop_pg_schema(schema)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data not found at {SHARED_DATA} (../shared/data beside the checkout)")
    return SHARED_DATA
