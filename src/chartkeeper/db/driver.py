"""Statements for the hottest paths, run on the driver's cursor of a SQLAlchemy connection.

SQLAlchemy's ``Connection.execute`` costs about 13 µs a statement here even with its compiled cache
(events, execution context, result metadata); the driver itself (sqlite3, psycopg) needs about 1 µs
for a primary-key lookup. An audited read runs half a dozen such statements (token, policy, resource,
chain head, entry, head update), so they go straight to the driver. Each statement is still written
once with SQLAlchemy Core: :class:`DriverStatement` compiles it once per dialect (placeholders in the
driver's style, literal values, bind and result type conversions as SQLAlchemy would apply them) and
runs it on the cursor of the caller's connection, inside the caller's transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from chartkeeper.db.sql import ValueList

_Proc = Callable[[Any], Any]


class _Compiled:
    __slots__ = ("sql", "positional", "names", "defaults", "binds", "results")

    def __init__(self, stmt: ClauseElement, dialect: Dialect, keys: Sequence[str] | None,
                 binary: frozenset[str]) -> None:
        c = cast(SQLCompiler, stmt.compile(dialect=dialect, column_keys=list(keys) if keys is not None else None))
        sql = c.string
        self.positional = bool(dialect.positional)
        self.names: tuple[str, ...] = tuple(c.positiontup or ()) if self.positional else ()
        self.defaults: dict[str, Any] = {}
        self.binds: list[tuple[str, _Proc]] = []
        for bp, name in c.bind_names.items():
            if not bp.required:
                self.defaults[name] = bp.effective_value
            proc = bp.type.dialect_impl(dialect).bind_processor(dialect)
            if proc is not None:
                self.binds.append((name, proc))
            if dialect.driver == "psycopg" and (name in binary or isinstance(bp.type, ValueList)):
                # psycopg writes a list in the text format element by element in Python (quoting each):
                # about 2.6 µs an element for text and timestamps, against 0.4 µs in the binary format.
                sql = sql.replace(f"%({name})s", f"%({name})b")
        self.sql = sql
        self.results: list[tuple[int, _Proc]] = []
        for i, col in enumerate(getattr(stmt, "selected_columns", ())):
            rproc = col.type.dialect_impl(dialect).result_processor(dialect, None)
            if rproc is not None:
                self.results.append((i, rproc))


class DriverStatement:
    """A Core statement compiled once per dialect and run on the DBAPI cursor.

    ``keys`` names the columns an INSERT or UPDATE is given (as ``column_keys`` when compiling).
    ``binary`` names parameters that are lists (arrays under a CAST, as an ``unnest`` of a batch's
    columns takes them): psycopg sends them in PostgreSQL's binary format, six times cheaper to write
    than its text format; ``in_list`` values always go that way.
    Exceptions are the driver's own (``sqlite3.Error``, ``psycopg.Error``), not SQLAlchemy's.
    """

    def __init__(self, stmt: ClauseElement, keys: Sequence[str] | None = None, *, binary: Iterable[str] = ()) -> None:
        self.stmt = stmt
        self.keys = tuple(keys) if keys is not None else None
        self.binary = frozenset(binary)
        self._by_dialect: dict[tuple[type, str], _Compiled] = {}
        self._lock = threading.Lock()

    def _compiled(self, dialect: Dialect) -> _Compiled:
        key = (type(dialect), dialect.paramstyle)
        c = self._by_dialect.get(key)
        if c is None:
            with self._lock:
                c = self._by_dialect.get(key)
                if c is None:
                    c = self._by_dialect[key] = _Compiled(self.stmt, dialect, self.keys, self.binary)
        return c

    @staticmethod
    def _args(c: _Compiled, params: Mapping[str, Any] | None) -> Any:
        values = {**c.defaults, **params} if params else dict(c.defaults)
        for name, proc in c.binds:
            if name in values:
                values[name] = proc(values[name])
        return tuple(values[n] for n in c.names) if c.positional else values

    def _run(self, conn: Connection, params: Mapping[str, Any] | None) -> tuple[Any, _Compiled]:
        c = self._compiled(conn.dialect)
        args = self._args(c, params)
        cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cur.execute(c.sql, args)
        except BaseException:
            cur.close()
            raise
        return cur, c

    def execute_many(self, conn: Connection, params: Sequence[Mapping[str, Any]]) -> None:
        """Run the statement once per parameter set in one driver call (``executemany``, one prepared
        statement): a batch job's bulk UPDATE or the audit log's multi-entry append, without
        SQLAlchemy's per-row execution context."""
        if not params:
            return
        c = self._compiled(conn.dialect)
        rows = self._many_args(c, params)
        cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cur.executemany(c.sql, rows)
        finally:
            cur.close()

    @staticmethod
    def _many_args(c: _Compiled, params: Sequence[Mapping[str, Any]]) -> list[Any]:
        """``_args`` for every parameter set, with each bind conversion done once per value object: a
        batch's rows share objects (its timestamp, its user), converted once instead of once a row."""
        procs = dict(c.binds)
        done: dict[tuple[str, int], tuple[Any, Any]] = {}  # (name, id(value)) -> (value, converted)

        def convert(name: str, value: Any) -> Any:
            proc = procs.get(name)
            if proc is None:
                return value
            key = (name, id(value))
            hit = done.get(key)
            if hit is None or hit[0] is not value:
                hit = done[key] = (value, proc(value))  # the value is kept, so its id is not reused meanwhile
            return hit[1]

        out: list[Any] = []
        for p in params:
            values = {**c.defaults, **p} if c.defaults else p
            if c.positional:
                out.append(tuple(convert(n, values[n]) for n in c.names))
            else:
                out.append({n: convert(n, v) for n, v in values.items()})
        return out

    def execute(self, conn: Connection, params: Mapping[str, Any] | None = None) -> None:
        """Run a statement whose result is not wanted."""
        cur, _ = self._run(conn, params)
        cur.close()

    def first(self, conn: Connection, params: Mapping[str, Any] | None = None) -> tuple[Any, ...] | None:
        """The first row (types converted as SQLAlchemy would), or None."""
        cur, c = self._run(conn, params)
        try:
            row = cur.fetchone()
        finally:
            cur.close()
        if row is None or not c.results:
            return tuple(row) if row is not None else None
        out = list(row)
        for i, proc in c.results:
            out[i] = proc(out[i])
        return tuple(out)

    def all(self, conn: Connection, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        cur, c = self._run(conn, params)
        try:
            rows = cur.fetchall()
        finally:
            cur.close()
        if not c.results:
            return [tuple(r) for r in rows]
        out = []
        for r in rows:
            vals = list(r)
            for i, proc in c.results:
                vals[i] = proc(vals[i])
            out.append(tuple(vals))
        return out
