"""Bulk inserts: many rows in one go, COPY on PostgreSQL (a fraction of the cost of an INSERT per row or
of an INSERT from arrays), one executemany on SQLite. For batch jobs: the FHIR store's writes, the chart
completion analysis, the audit log's linked entries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

COPY_MIN_ROWS = 21  # fewer rows go in with an INSERT: a COPY's set-up costs more than it saves on them


def bulk_insert(conn: Connection, table: Any, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    """Insert many rows fast: COPY on PostgreSQL, one executemany on SQLite. Values must already be
    in their database form (``insert_rows`` converts them as SQLAlchemy binds them)."""
    if not rows:
        return
    name = table.name
    cols = ", ".join(columns)
    if conn.dialect.name == "postgresql" and len(rows) >= COPY_MIN_ROWS:
        raw = conn.connection.dbapi_connection
        schema = f'"{table.schema}".' if table.schema else ""
        from psycopg import errors as psycopg_errors

        statement = f"COPY {schema}{name} ({cols}) FROM STDIN"
        try:
            with raw.cursor() as cur, cur.copy(statement) as copy:  # type: ignore[union-attr]
                for row in rows:
                    copy.write_row(row)
        except psycopg_errors.IntegrityError as exc:
            # As an INSERT through SQLAlchemy raises it, so callers' conflict handling (409) applies.
            raise IntegrityError(statement, None, exc) from exc
        return
    style = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    marks = ", ".join([style] * len(columns))
    conn.exec_driver_sql(f"INSERT INTO {name} ({cols}) VALUES ({marks})", rows)


def insert_rows(conn: Connection, table: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Insert many rows given as dicts of Python values (every dict with the same keys) through
    ``bulk_insert``, each value converted as SQLAlchemy would bind it for its column."""
    if not rows:
        return
    cols = list(rows[0])
    procs = [table.c[c].type._cached_bind_processor(conn.dialect) for c in cols]
    if not any(procs):
        bulk_insert(conn, table, cols, [tuple(r[c] for c in cols) for r in rows])
        return
    pairs = [(c, _memo(p) if p else None) for c, p in zip(cols, procs, strict=True)]
    bulk_insert(conn, table, cols, [tuple(p(r[c]) if p else r[c] for c, p in pairs) for r in rows])


def _memo(proc: Any) -> Any:
    """A bind processor that converts each distinct value once (a batch's rows share most of their
    timestamps: the run's time, the same discharge)."""
    done: dict[Any, Any] = {}

    def convert(value: Any) -> Any:
        try:
            return done[value]
        except KeyError:
            out = done[value] = proc(value)
            return out
        except TypeError:  # unhashable
            return proc(value)

    return convert
