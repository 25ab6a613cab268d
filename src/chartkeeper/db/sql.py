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


__all__ = ["any_of"]
