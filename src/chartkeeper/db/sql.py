"""SQL that is written differently per backend.

``in_list(column, values)``: ``column IN (values...)`` with the whole list as ONE bound parameter, so
the statement text is the same whatever the list's length: PostgreSQL ``column = ANY(:array)``,
SQLite ``column IN (SELECT value FROM json_each(:json))``. Both use the column's index as a plain
``IN`` list does. An expanding ``IN`` list instead renders one placeholder per value at every
execution (SQLAlchemy re-renders the statement, psycopg re-parses the new text, PostgreSQL plans it
anew); for the hundreds of ids of a batch job that cost more than running the query. Give the values
themselves (SQLAlchemy statements), or the name they will be bound under (a statement compiled once,
such as a ``db.driver.DriverStatement``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import orjson
from sqlalchemy import BigInteger, Integer, String, TypeDecorator, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import NullType, TypeEngine


class ValueList(TypeDecorator[list[Any]]):
    """A list of strings (or integers) as one bind value: a PostgreSQL array, a JSON array text on SQLite."""

    impl = String
    cache_ok = True

    def __init__(self, integers: bool = False) -> None:
        super().__init__()
        self.integers = integers

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(ARRAY(BigInteger if self.integers else String))
        return dialect.type_descriptor(String())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        items = [int(v) for v in value] if self.integers else [str(v) for v in value]
        return items if dialect.name == "postgresql" else orjson.dumps(items).decode()


class in_list(ColumnElement[bool]):  # noqa: N801 - used like SQLAlchemy's lower-case constructs
    """``column IN (values)`` with the values as one bound parameter (see the module doc): ``values``
    is the list itself, or the name it will be bound under."""

    # Untyped, as a WHERE term: typed Boolean, SQLite (no native booleans) would render "... = 1" after it.
    type = cast("TypeEngine[bool]", NullType())
    inherit_cache = True
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement),
                           ("values", InternalTraversal.dp_clauseelement)]

    def __init__(self, column: ColumnElement[Any], values: str | Iterable[Any]) -> None:
        self.column = column
        kind = ValueList(integers=isinstance(column.type, Integer))
        self.values = bindparam(values, type_=kind) if isinstance(values, str) else \
            bindparam(None, list(values), type_=kind, unique=True)


@compiles(in_list, "postgresql")
def _in_list_pg(element: in_list, compiler: SQLCompiler, **kw: Any) -> str:
    return f"{compiler.process(element.column, **kw)} = ANY({compiler.process(element.values, **kw)})"


@compiles(in_list)
def _in_list_default(element: in_list, compiler: SQLCompiler, **kw: Any) -> str:
    return (f"{compiler.process(element.column, **kw)} IN (SELECT value FROM json_each("
            f"{compiler.process(element.values, **kw)}))")


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


__all__ = ["eq_planned_for_any", "in_list"]
