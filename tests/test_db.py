import pytest
from sqlalchemy import inspect


def test_migrations_create_the_store_tables(db):
    names = set(inspect(db.engine).get_table_names())
    assert {"fhir_resource", "fhir_resource_version", "fhir_idx_token", "alembic_version"} <= names


def test_driver_statements_convert_types_as_sqlalchemy_does(db):
    from datetime import UTC, datetime

    from sqlalchemy import Boolean, Column, DateTime, Integer, MetaData, String, Table, bindparam, insert, select

    from chartkeeper.db.base import UTCDateTime
    from chartkeeper.db.driver import DriverStatement

    md = MetaData()
    t = Table("drv_check", md, Column("id", Integer, primary_key=True), Column("at", UTCDateTime()),
              Column("naive", DateTime()), Column("flag", Boolean), Column("name", String(20)))
    md.create_all(db.engine)
    at = datetime(2026, 1, 31, 14, 5, 6, 789, tzinfo=UTC)
    ins = DriverStatement(insert(t), keys=("id", "at", "naive", "flag", "name"))
    sel = select(t.c.at, t.c.naive, t.c.flag, t.c.name).where(t.c.id == bindparam("i"))
    with db.begin() as conn:
        ins.execute(conn, {"id": 1, "at": at, "naive": datetime(2026, 1, 31), "flag": True, "name": "x"})
        conn.execute(insert(t), {"id": 2, "at": at, "naive": datetime(2026, 1, 31), "flag": False, "name": None})
    with db.begin() as conn:
        for i in (1, 2):
            assert DriverStatement(sel).first(conn, {"i": i}) == tuple(conn.execute(sel, {"i": i}).one())
        assert DriverStatement(sel).first(conn, {"i": 3}) is None
        assert DriverStatement(select(t.c.id).order_by(t.c.id)).all(conn) == [(1,), (2,)]
    md.drop_all(db.engine)


def test_in_list_binds_any_number_of_values_as_one_parameter_and_execute_many_updates_each_row(db):
    from sqlalchemy import Column, Float, Integer, MetaData, String, Table, bindparam, insert, select, update

    from chartkeeper.db.driver import DriverStatement
    from chartkeeper.db.sql import in_list

    md = MetaData()
    t = Table("drv_list", md, Column("id", Integer, primary_key=True), Column("code", String(40)),
              Column("weight", Float, nullable=True))
    md.create_all(db.engine)
    codes = ["a", "b'; drop table drv_list; --", "c", "d\"e", "é"]
    sel = DriverStatement(select(t.c.id).where(in_list(t.c.code, "codes")).order_by(t.c.id))
    upd = DriverStatement(update(t).where(t.c.id == bindparam("b_id")).values(weight=bindparam("b_w")))
    try:
        with db.begin() as conn:
            conn.execute(insert(t), [{"id": i, "code": c} for i, c in enumerate(codes, 1)])
            assert sel.all(conn, {"codes": codes}) == [(1,), (2,), (3,), (4,), (5,)]
            assert sel.all(conn, {"codes": ["c", "é", "zz"]}) == [(3,), (5,)]
            assert sel.all(conn, {"codes": []}) == []
            # the same construct through SQLAlchemy: each column is its own cache entry
            assert conn.execute(select(t.c.code).where(in_list(t.c.id.cast(String), "ids")), {"ids": ["2"]}).all() \
                == [(codes[1],)]
            upd.execute_many(conn, [{"b_id": 1, "b_w": 1.5}, {"b_id": 3, "b_w": None}, {"b_id": 4, "b_w": 0.25}])
            upd.execute_many(conn, [])
            got = conn.execute(select(t.c.id, t.c.weight).order_by(t.c.id)).all()
        assert [tuple(r) for r in got] == [(1, 1.5), (2, None), (3, None), (4, 0.25), (5, None)]
    finally:
        md.drop_all(db.engine)


def test_list_parameters_go_in_the_binary_format_on_postgresql_and_keep_every_value(db):
    """On psycopg, ``in_list`` values and the parameters a statement names as ``binary`` are sent in
    PostgreSQL's binary format (six times cheaper for a batch's arrays than the text format, which
    quotes every element); the values arrive exactly, NULLs, quotes, braces and all."""
    import pytest
    from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text

    from chartkeeper.db.driver import DriverStatement
    from chartkeeper.db.sql import in_list

    md = MetaData()
    t = Table("drv_bin", md, Column("id", Integer, primary_key=True), Column("code", String(40)))
    md.create_all(db.engine)
    sel = DriverStatement(select(t.c.code).where(in_list(t.c.id, "ids"), t.c.code != text("'x'")).order_by(t.c.id))
    try:
        with db.begin() as conn:
            conn.execute(insert(t), [{"id": i, "code": f"c{i}"} for i in range(1, 6)])
            assert sel.all(conn, {"ids": [5, 2, 2**40]}) == [("c2",), ("c5",)]
            if conn.dialect.name != "postgresql":
                pytest.skip("binary parameters are psycopg's (SQLite binds a list as JSON text)")
            assert "%(ids)b" in sel._compiled(conn.dialect).sql
            values = ["plain", None, "it's \"quoted\"", "{a,b}", "back\\slash", "naïve ✓", ""]
            arrays = DriverStatement(text("SELECT v.s, v.n, :label FROM unnest(CAST(:s AS text[]), CAST(:n AS bigint[])) "
                                          "WITH ORDINALITY AS v(s, n, o) ORDER BY v.o"), binary=("s", "n"))
            compiled = arrays._compiled(conn.dialect).sql
            assert "%(s)b" in compiled and "%(n)b" in compiled and "%(label)s" in compiled
            got = arrays.all(conn, {"s": values, "n": [1, None, 2**40, -3, 0, 7, 8], "label": "scalar"})
            assert got == [(v, n, "scalar") for v, n in zip(values, [1, None, 2**40, -3, 0, 7, 8], strict=True)]
    finally:
        md.drop_all(db.engine)


def test_a_fork_waits_while_the_background_checkpoint_is_inside_sqlite():
    """A process forked while the checkpoint thread held one of SQLite's process-wide mutexes would keep
    it locked forever (the coding engines' workers open connections of their own): a fork waits for the
    checkpoint thread to leave SQLite."""
    import os
    import threading
    import time

    from chartkeeper.db import engine

    forked = threading.Event()

    def fork() -> None:
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        forked.set()
        os.waitpid(pid, 0)

    with engine._BACKGROUND_SQLITE:  # as the checkpoint thread holds it around its work
        t = threading.Thread(target=fork)
        t.start()
        time.sleep(0.3)
        assert not forked.is_set()
    t.join(10)
    assert forked.is_set()


def test_sqlite_checkpointer_runs_beside_writes_and_stops_with_dispose(tmp_path):
    from chartkeeper.db import Database

    d = Database(f"sqlite:///{tmp_path}/c.db")
    with d.begin() as conn:
        conn.exec_driver_sql("create table t (x)")
    cp = d._checkpointer
    assert cp is not None and cp._thread is not None and cp._thread.is_alive()
    thread = cp._thread
    d.dispose()
    assert not thread.is_alive()
    assert Database("sqlite://")._checkpointer is None


def test_driver_execute_many_inserts_every_row_with_conversions(db):
    from datetime import UTC, datetime, timedelta, timezone

    from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select

    from chartkeeper.db.base import UTCDateTime
    from chartkeeper.db.driver import DriverStatement

    md = MetaData()
    t = Table("drv_many", md, Column("id", Integer, primary_key=True), Column("at", UTCDateTime()),
              Column("name", String(20)))
    md.create_all(db.engine)
    at = datetime(2026, 1, 31, 14, 5, 6, 789, tzinfo=UTC)
    rows = [{"id": i, "at": at, "name": f"n{i}" if i % 2 else None} for i in range(1, 6)]
    # rows sharing one timestamp object (converted once) beside rows with their own, in other zones
    rows += [{"id": 5 + i, "at": datetime(2026, 2, i, 23, 59, tzinfo=timezone(timedelta(hours=-i))), "name": "z"}
             for i in range(1, 4)]
    rows += [{"id": 9, "at": at, "name": None}]
    with db.begin() as conn:
        DriverStatement(insert(t), keys=("id", "at", "name")).execute_many(conn, rows)
        DriverStatement(insert(t), keys=("id", "at", "name")).execute_many(conn, [])
    with db.read() as conn:
        got = [tuple(r) for r in conn.execute(select(t.c.id, t.c.at, t.c.name).order_by(t.c.id))]
    assert got == [(r["id"], r["at"], r["name"]) for r in rows]
    md.drop_all(db.engine)


def test_in_list_given_the_values_selects_what_in_selects_with_one_statement_text(db):
    """``in_list`` selects the same rows as ``IN (...)``, for empty, one and many values, with the
    same statement text whatever the list's length."""
    from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select

    from chartkeeper.db.sql import in_list

    md = MetaData()
    t = Table("anyof_check", md, Column("id", String(20), primary_key=True), Column("n", Integer))
    md.create_all(db.engine)
    with db.begin() as conn:
        conn.execute(insert(t), [{"id": f"k{i}", "n": i} for i in range(50)])
    with db.read() as conn:
        texts = set()
        for want in ([], ["k3"], ["k1", "k7", "nope", "k7"], [f"k{i}" for i in range(0, 50, 2)]):
            stmt = select(t.c.id).where(in_list(t.c.id, want)).order_by(t.c.id)
            assert [r[0] for r in conn.execute(stmt)] == sorted(set(want) - {"nope"})
            texts.add(str(stmt.compile(conn)))
        assert len(texts) == 1
        assert [r[0] for r in conn.execute(select(t.c.n).where(in_list(t.c.n, [4, 9])).order_by(t.c.n))] == [4, 9]
    md.drop_all(db.engine)


def test_lookups_by_type_and_id_take_the_primary_key_whatever_the_statistics(db):
    """PostgreSQL: statistics gathered before a bulk job describe the tables without the resource type
    the job added (here Task). A lookup by type and ids must still take the primary key, not walk
    every Task through the type-led lookup index. ``refresh_statistics`` then analyses the tables
    the job changed, and nothing the second time."""
    import pytest
    from sqlalchemy import select

    from chartkeeper.db.sql import eq_planned_for_any, in_list
    from chartkeeper.fhir.store import FhirStore, R

    if db.is_sqlite:
        assert db.refresh_statistics() == []
        pytest.skip("SQLite's planner uses no statistics (Chartkeeper never runs ANALYZE there)")
    store = FhirStore()
    pats = [{"resourceType": "Patient", "id": f"p{i}", "gender": "female"} for i in range(2000)]
    with db.begin() as conn:
        store.ingest(conn, pats, author="import")
    analysed = db.refresh_statistics()
    assert any(a.endswith(".fhir_resource") for a in analysed) and any(a.endswith(".fhir_idx_token") for a in analysed)
    assert db.refresh_statistics() == []
    tasks = [{"resourceType": "Task", "id": f"t{i}", "status": "requested", "intent": "order",
              "code": {"text": "Sign"}, "for": {"reference": f"Patient/p{i % 2000}"}} for i in range(3000)]
    with db.begin() as conn:
        store.ingest(conn, tasks, author="import")
    with db.read() as conn:
        stmt = select(R.c.id).where(eq_planned_for_any(conn, R.c.resource_type, "Task"),
                                    in_list(R.c.id, ["t7", "t42"]))
        compiled = stmt.compile(conn)
        cur = conn.connection.dbapi_connection.cursor()
        cur.execute("EXPLAIN " + str(compiled), compiled.params)
        plan = "\n".join(r[0] for r in cur.fetchall())
        assert "(id = ANY" in plan.split("Index Cond")[1].split("\n")[0], plan
        assert sorted(r[0] for r in conn.execute(stmt)) == ["t42", "t7"]
    assert any(a.endswith(".fhir_idx_token") for a in db.refresh_statistics())


def test_coding_abstract_leaves_room_for_in_place_updates_on_postgresql(db):
    """The model's fillfactor reaches the migrated table (PostgreSQL), so the regroup's updates of
    thousands of abstract rows stay on their page without touching the indexes."""
    if db.is_sqlite:
        pytest.skip("fillfactor is a PostgreSQL storage parameter")
    from sqlalchemy import text

    with db.read() as c:
        opts = c.execute(text("SELECT reloptions FROM pg_class WHERE relname = 'coding_abstract' "
                              "AND relnamespace = current_schema()::regnamespace")).scalar_one()
    assert "fillfactor=75" in (opts or [])
