"""SQL that is written differently per backend.

``any_of(conn, column, values)``: ``column IN (values...)`` with the whole list as ONE bound parameter,
so the statement text is the same whatever the list's length: PostgreSQL ``column = ANY(:array)``,
SQLite ``column IN (SELECT value FROM json_each(:json))``. Both use the column's index as a plain
``IN`` list does. An expanding ``IN`` list instead renders one placeholder per value at every
execution (SQLAlchemy re-renders the statement, psycopg re-parses the new text, PostgreSQL plans it
anew); for the hundreds of ids of a batch job that cost more than running the query.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from sqlalchemy import Connection, String, any_, bindparam, func, literal_column, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.elements import ColumnElement


def any_of(conn: Connection, column: Any, values: Iterable[Any]) -> ColumnElement[bool]:
    """``column IN (values)`` as one bound parameter (strings or integers; see the module doc)."""
    vals = list(values)
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam(None, vals, type_=ARRAY(column.type), unique=True))
    each = func.json_each(bindparam(None, orjson.dumps(vals).decode(), type_=String, unique=True))
    return column.in_(select(literal_column("value")).select_from(each))  # type: ignore[no-any-return]


def eq_planned_for_any(conn: Connection, column: Any, value: Any) -> ColumnElement[bool]:
    """``column = value``, planned by PostgreSQL as for any value of the column rather than this one.

    PostgreSQL estimates ``resource_type = 'Task'`` from the statistics of the last ANALYZE. A value
    that was absent then (a resource type a bulk job has since added) is estimated at one row, and a
    statement that also names ids may then walk a secondary index that leads with the column, every
    row of that type, instead of the primary key. ``column = (SELECT :value)`` is estimated as an
    average value, so a lookup by type and ids takes the primary key whatever the statistics say.
    SQLite gets a plain ``column = ?`` (its planner uses no statistics; see Database.refresh_statistics)."""
    if conn.dialect.name == "postgresql":
        return column == select(bindparam(None, value, type_=column.type, unique=True)).scalar_subquery()  # type: ignore[no-any-return]
    return column == bindparam(None, value, type_=column.type, unique=True)  # type: ignore[no-any-return]


__all__ = ["any_of", "eq_planned_for_any"]
