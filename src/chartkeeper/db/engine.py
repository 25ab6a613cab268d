"""Engines for SQLite (WAL, the embedded default) and PostgreSQL (psycopg 3), and schema upgrade."""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, text

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger(__name__)

# WAL checkpoints (copy the WAL into the database file, two fsyncs of a few ms each) run in a
# background thread of each Database every CHECKPOINT_INTERVAL seconds after writes, instead of inside
# whichever request's commit crosses SQLite's threshold while holding the write lock that every other
# request waits on. SQLite's own automatic checkpoint stays as a backstop at WAL_BACKSTOP_PAGES.
CHECKPOINT_INTERVAL = 0.25
WAL_BACKSTOP_PAGES = 10000

# PostgreSQL: the tables of this schema whose planner statistics are out of date: changed by more than
# autovacuum's analyze threshold since their last ANALYZE (what the statistics system has counted so
# far: a backend reports its counts up to a second late), or grown on disk by more than that fraction
# since (exact at once; a bulk job mostly inserts). Never analysed counts as empty.
_STALE_TABLES = text("""
    SELECT quote_ident(s.schemaname) || '.' || quote_ident(s.relname)
    FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
    WHERE s.schemaname = current_schema()
      AND (s.n_mod_since_analyze > current_setting('autovacuum_analyze_threshold')::float8
               + current_setting('autovacuum_analyze_scale_factor')::float8 * greatest(c.reltuples, 0)
           OR pg_relation_size(c.oid) / current_setting('block_size')::float8
               > 8 + (1 + current_setting('autovacuum_analyze_scale_factor')::float8) * c.relpages)
    ORDER BY 1""")


def normalize_url(url: str) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str) -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            # Let SQLAlchemy issue BEGIN itself so transactions really are transactions.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA cache_size=-65536")  # 64 MiB of page cache per connection
            cur.execute("PRAGMA temp_store=MEMORY")
            cur.execute(f"PRAGMA wal_autocheckpoint={WAL_BACKSTOP_PAGES}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # type: ignore[no-untyped-def]
            # IMMEDIATE takes the write lock at the start, so two writers serialize instead of
            # failing late with "database is locked" on upgrade from a read lock.
            if conn.get_execution_options().get("sqlite_read_only"):
                conn.exec_driver_sql("BEGIN")
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


# The background checkpoint thread is inside SQLite's C code while it holds this; a fork waits for it
# (os.register_at_fork below). A fork copies only the forking thread, so one taken while that thread held
# one of SQLite's process-wide mutexes (its Unix VFS lock, taken to open and lock files) would leave the
# child with that mutex locked forever: the coding engines' worker processes open their own connections
# and hung on their first task (seen twice in the test suite).
_BACKGROUND_SQLITE = threading.Lock()


def _fork_waits_for_background_sqlite() -> None:
    _BACKGROUND_SQLITE.acquire()


def _after_fork() -> None:
    _BACKGROUND_SQLITE.release()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_fork_waits_for_background_sqlite, after_in_parent=_after_fork,
                        after_in_child=_after_fork)


class _Checkpointer:
    """Runs PRAGMA wal_checkpoint(PASSIVE) off the request path (see CHECKPOINT_INTERVAL).

    PASSIVE never blocks writers or readers; the next writer rewinds the WAL once it is all copied.
    The thread holds the engine weakly and ends with Database.dispose() or when the engine is gone.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = weakref.ref(engine)
        self.dirty = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(CHECKPOINT_INTERVAL):
            if not self.dirty:
                continue
            self.dirty = False
            engine = self._engine()
            if engine is None:
                return
            try:
                with _BACKGROUND_SQLITE:
                    raw = engine.raw_connection()
                    try:
                        raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[union-attr]
                    finally:
                        raw.close()
            except Exception:  # noqa: BLE001 - the backstop checkpoint still runs; try again later
                log.warning("sqlite: background checkpoint failed", exc_info=True)
            del engine

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(5)


class Database:
    """One engine plus helpers; the service layer takes connections from here."""

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        self.engine = make_engine(self.url)
        # SQLite has one writer at a time. Threads of this process queue on a lock and wake the
        # moment it is free, instead of polling the database lock with SQLite's sleeping busy handler.
        self._write_lock = threading.Lock() if self.is_sqlite else None
        path = self.url.split("///", 1)[1] if "///" in self.url else ""
        file_db = self.is_sqlite and path not in ("", ":memory:") and "mode=memory" not in self.url
        self._checkpointer = _Checkpointer(self.engine) if file_db else None

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def upgrade(self) -> None:
        upgrade(self.engine)

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A write transaction (on SQLite: BEGIN IMMEDIATE, one writer at a time)."""
        if self._write_lock is None:
            with self.engine.begin() as conn:
                yield conn
            return
        with self._write_lock, self.engine.begin() as conn:
            yield conn
        if self._checkpointer is not None:
            self._checkpointer.dirty = True
            self._checkpointer.start()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only unit of work: on SQLite it takes no write lock."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(sqlite_read_only=True)
            with conn.begin():
                yield conn

    def refresh_statistics(self) -> list[str]:
        """Run after a bulk job (an import, the demo load, a full chart analysis): on PostgreSQL,
        ANALYZE every table that the job (or anything since the last ANALYZE) changed by more than
        autovacuum's analyze threshold (50 rows + 10% by default), as autovacuum would do a minute
        later if it is on. Statistics gathered before a bulk load describe the tables as they were:
        a resource type the load added is a value the planner has never seen, estimated at one row,
        and a lookup by type and id then walks every row of that type through a secondary index.
        Returns the tables analysed. SQLite needs nothing: its planner uses no statistics unless
        ANALYZE was run once, which Chartkeeper never does."""
        if self.is_sqlite:
            return []
        with self.engine.connect() as conn:
            if (conn.dialect.server_version_info or (0,)) >= (15,):
                # This connection (usually the one the job just used) reports its counts now.
                conn.exec_driver_sql("SELECT pg_stat_force_next_flush()")
                conn.commit()
            stale = [r[0] for r in conn.execute(_STALE_TABLES)]
            for name in stale:
                conn.exec_driver_sql(f"ANALYZE {name}")
            conn.commit()
        return stale

    def dispose(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self.engine.dispose()
