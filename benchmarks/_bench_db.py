"""Databases for benchmarks: a fresh SQLite file, or a fresh PostgreSQL schema dropped afterwards."""

from __future__ import annotations

import os
import uuid

PG = os.environ.get("CHARTKEEPER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def fresh_url(backend: str, tmp: str, name: str = "bench") -> tuple[str, str | None]:
    """(database URL, PostgreSQL schema or None)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp}/{name}-{uuid.uuid4().hex[:6]}.db", None
    from sqlalchemy import create_engine, text

    schema = "bench_" + uuid.uuid4().hex[:8]
    eng = create_engine(PG)
    with eng.begin() as c:
        c.execute(text(f"create schema {schema}"))
    eng.dispose()
    return f"{PG}?options=-csearch_path%3D{schema}", schema


def drop(schema: str | None) -> None:
    if schema:
        from sqlalchemy import create_engine, text

        eng = create_engine(PG)
        with eng.begin() as c:
            c.execute(text(f"drop schema {schema} cascade"))
        eng.dispose()
