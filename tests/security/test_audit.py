"""The hash-chained audit trail: appends, verification, tamper detection, concurrency, AuditEvent."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sec_helpers import PASSWORD, SYSTEM
from sqlalchemy import Connection, select, text
from sqlalchemy.exc import DBAPIError

from chartkeeper.db import Database
from chartkeeper.db.base import utcnow
from chartkeeper.security import audit, policy, users
from chartkeeper.security.audit import AuditWriteError
from chartkeeper.security.policy import Action, Denied
from chartkeeper.security.principal import ROLES, Principal
from concurrently import run_threads

DOC = Principal("u-doc", "drdoe", frozenset({"physician"}), "Dr Doe", "10.0.0.5")


def _append(db: Database, n: int, start: int = 0) -> None:
    with db.begin() as conn:
        for i in range(start, start + n):
            audit.record(
                conn,
                DOC,
                "read",
                "success",
                resource_type="Observation",
                resource_id=f"obs-{i}",
                patient_id=f"pt-{i % 7}",
                purpose="treatment" if i % 3 else None,
                detail=f"entry {i} é ✓",
            )
    audit.seal_all(db.engine)  # PostgreSQL: into the chain now, so tests can address entries by seq


def _sql(db: Database, sql: str, **params: Any) -> None:
    with db.begin() as conn:
        conn.execute(text(sql), params)


def _row(conn: Connection, seq: int) -> audit.AuditEntry:
    e = audit.get_by_seq(conn, seq)
    assert e is not None
    return e


def _changed(old: str | None) -> str:
    """A different value of the same length (column limits hold on PostgreSQL)."""
    if not old:
        return "x"
    return old[:-1] + ("0" if old[-1] != "0" else "1")


def _verify(db: Database) -> audit.VerifyResult:
    audit.seal_all(db.engine)  # PostgreSQL: link what was committed into the chain (no-op on SQLite)
    with db.read() as conn:
        res = audit.verify(conn, key="")
    assert res.unsealed == 0 or not res.ok
    return res


# ---------------------------------------------------------------------------------------------
# appending and reading


def test_many_appends_verify(db: Database) -> None:
    _append(db, 300)
    for k in range(5):
        _append(db, 20, start=300 + 20 * k)
        _verify(db)
    res = _verify(db)
    assert res.ok and res.checked == 400 and res.head_seq == 400 and res.first_bad_seq is None
    with db.read() as conn:
        assert audit.verify(conn, key="", batch=7).ok  # batches do not matter
        first = _row(conn, 1)
        assert first.prev_hash == audit.GENESIS
        assert _row(conn, 2).prev_hash == first.hash
        assert audit.head(conn) == (400, _row(conn, 400).hash)


def test_empty_log_verifies(db: Database) -> None:
    res = _verify(db)
    assert res.ok and res.checked == 0


def test_entry_fields_and_query_filters(db: Database) -> None:
    t0 = utcnow()
    other = Principal("u-2", "cody", frozenset({"coder", "registrar"}))
    with db.begin() as conn:
        i1 = audit.record(conn, DOC, "read", "success", resource_type="Patient", resource_id="p1", patient_id="p1")
        i2 = audit.record(
            conn,
            other,
            "search",
            "success",
            resource_type="Encounter",
            patient_id="p2",
            client_address="192.0.2.1",
            purpose="coding",
        )
        i3 = audit.record(conn, other, "export", "success", patient_id="p1", at=t0 + timedelta(hours=2))
    assert i1 < i2 < i3
    with db.read() as conn:
        e = audit.get(conn, i2)
        assert e is not None
        assert (e.user_id, e.username, e.roles, e.action, e.outcome) == (
            "u-2",
            "cody",
            "coder registrar",
            "search",
            "success",
        )
        assert (e.patient_id, e.resource_type, e.client_address, e.purpose) == ("p2", "Encounter", "192.0.2.1", "coding")
        assert e.at.tzinfo is not None and abs(e.at - t0) < timedelta(minutes=1)
        assert audit.get(conn, i1).client_address == "10.0.0.5"  # type: ignore[union-attr]
        assert [x.id for x in audit.query(conn, patient_id="p1")] == [i3, i1]
        assert [x.id for x in audit.query(conn, user_id="u-2", newest_first=False)] == [i2, i3]
        assert [x.id for x in audit.query(conn, action="export")] == [i3]
        assert [x.id for x in audit.query(conn, since=t0 + timedelta(hours=1))] == [i3]
        assert [x.id for x in audit.query(conn, until=t0 + timedelta(hours=1))] == [i2, i1]
        assert [x.id for x in audit.query(conn, limit=1, offset=1)] == [i2]


def test_entries_are_sealed_into_the_chain_soon_after_commit(db: Database) -> None:
    """SQLite links at once; PostgreSQL seals from the request path within about SEAL_INTERVAL."""
    import time

    for i in range(15):
        with db.begin() as conn:
            audit.record(conn, DOC, "read", "success", resource_id=f"r{i}")
    deadline = time.monotonic() + 5
    while True:
        with db.read() as conn:
            left = audit.unsealed_count(conn)
        if left == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert left == 0
    with db.read() as conn:
        res = audit.verify(conn, key="")
        entries = audit.query(conn, newest_first=False, limit=100)
    assert res.ok and res.checked == 15
    assert [e.seq for e in entries] == list(range(1, 16))  # one writer: chain order is commit order


def test_entries_are_truncated_and_cleaned_not_refused(db: Database) -> None:
    with db.begin() as conn:
        audit.record(conn, DOC, "read", "success", detail="x" * 5000 + "\x00", resource_id="r" * 100)
    with db.read() as conn:
        e = _row(conn, 1)
        assert len(e.detail or "") == 1000 and len(e.resource_id or "") == 64
        assert audit.verify(conn).ok


def test_a_failing_audit_write_fails_the_request(db: Database) -> None:
    _sql(db, "alter table audit_log rename to audit_log_away")
    try:
        with pytest.raises(AuditWriteError, match="could not be written"):
            with db.begin() as conn:
                users.create_user(conn, "dana", PASSWORD, ["coder"], actor=SYSTEM)
    finally:
        _sql(db, "alter table audit_log_away rename to audit_log")
    with db.read() as conn:
        assert users.find_user(conn, "dana") is None  # the data went with its audit entry
    with pytest.raises(ValueError, match="outcome"):
        with db.begin() as conn:
            audit.record(conn, DOC, "read", "maybe")


def test_audit_needs_a_write_transaction_on_sqlite(db: Database) -> None:
    if not db.is_sqlite:
        pytest.skip("read-only transactions are a SQLite notion here")
    with pytest.raises(AuditWriteError, match="write transaction"):
        with db.read() as conn:
            audit.record(conn, DOC, "read", "success")


# ---------------------------------------------------------------------------------------------
# tampering directly with SQL


def test_altered_field_is_named(db: Database) -> None:
    _append(db, 50)
    _sql(db, "update audit_log set patient_id = 'pt-other' where seq = 17")
    res = _verify(db)
    assert not res.ok and res.first_bad_seq == 17 and res.problem == "entry 17 was altered"
    assert res.checked == 16


@pytest.mark.parametrize("column", ["at", "user_id", "roles", "action", "outcome", "detail", "hash", "prev_hash"])
def test_every_column_is_covered(db: Database, column: str) -> None:
    _append(db, 10)
    with db.read() as conn:
        e = _row(conn, 4)
    new: Any = e.at + timedelta(seconds=1) if column == "at" else _changed(getattr(e, column))
    if column == "id":
        new = e.id + 1_000_000
    if column == "outcome":
        new = "denied"
    _sql(db, f"update audit_log set {column} = :v where seq = 4", v=new)
    res = _verify(db)
    assert not res.ok and res.first_bad_seq == 4 and "altered" in res.problem


def test_altered_entry_with_recomputed_hash_is_named(db: Database) -> None:
    _append(db, 20)
    with db.read() as conn:
        e = _row(conn, 8)
    vals = {name: getattr(e, name) for name in audit.HASHED_FIELDS}
    vals["detail"] = "nothing to see"
    _sql(
        db,
        "update audit_log set detail = :d, hash = :h where seq = 8",
        d="nothing to see",
        h=audit.entry_hash(vals),
    )
    res = _verify(db)
    assert not res.ok and res.first_bad_seq == 8 and res.problem == "entry 8 was altered (its hash was recomputed)"


def test_altered_last_entry_with_recomputed_hash_is_caught_by_the_head(db: Database) -> None:
    _append(db, 5)
    with db.read() as conn:
        e = _row(conn, 5)
    vals = {name: getattr(e, name) for name in audit.HASHED_FIELDS}
    vals["user_id"] = "someone-else"
    _sql(db, "update audit_log set user_id = 'someone-else', hash = :h where seq = 5", h=audit.entry_hash(vals))
    res = _verify(db)
    assert not res.ok and res.first_bad_seq == 5 and "altered" in res.problem


def test_deleted_row_is_named(db: Database) -> None:
    _append(db, 30)
    _sql(db, "delete from audit_log where seq = 12")
    res = _verify(db)
    assert not res.ok and res.first_bad_seq == 12 and res.problem == "entry 12 is missing (deleted)"


def test_deleted_first_and_last_rows_are_named(db: Database) -> None:
    _append(db, 30)
    _sql(db, "delete from audit_log where seq = 30")
    res = _verify(db)
    assert not res.ok and res.first_bad_seq == 30 and res.problem == "entry 30 is missing (deleted)"
    _sql(db, "delete from audit_log where seq = 1")
    res = _verify(db)
    assert not res.ok and res.first_bad_seq == 1 and "missing" in res.problem


def test_deleted_row_with_renumbering_is_named(db: Database) -> None:
    _append(db, 30)
    _sql(db, "delete from audit_log where seq = 12")
    _sql(db, "update audit_log set seq = seq + 1000000 where seq > 12")
    _sql(db, "update audit_log set seq = seq - 1000001 where seq > 1000000")
    res = _verify(db)
    assert not res.ok and res.first_bad_seq == 12 and "missing (deleted" in res.problem


def _insert(db: Database, seq: int, prev_hash: str, *, good_hash: bool = True, detail: str = "forged") -> None:
    vals: dict[str, Any] = {
        "id": 1_000_000_000 + seq,
        "seq": seq,
        "at": utcnow(),
        "user_id": "u-doc",
        "username": "drdoe",
        "roles": "physician",
        "action": "read",
        "outcome": "success",
        "resource_type": None,
        "resource_id": None,
        "patient_id": None,
        "purpose": None,
        "detail": detail,
        "client_address": None,
        "prev_hash": prev_hash,
    }
    vals["hash"] = audit.entry_hash(vals) if good_hash else "f" * 64
    cols = ", ".join(vals)
    binds = ", ".join(f":{c}" for c in vals)
    with db.begin() as conn:
        conn.execute(text(f"insert into audit_log ({cols}) values ({binds})"), vals)


def test_inserted_row_at_the_end_is_named(db: Database) -> None:
    _append(db, 10)
    with db.read() as conn:
        last = _row(conn, 10)
    _insert(db, 11, last.hash)  # a perfectly chained entry, but the head does not know it
    res = _verify(db)
    assert not res.ok and res.first_bad_seq == 11 and "entry 11 was inserted" in res.problem


def test_inserted_row_before_the_start_is_named(db: Database) -> None:
    _append(db, 10)
    _insert(db, 0, audit.GENESIS)
    res = _verify(db)
    assert not res.ok and res.first_bad_seq == 0 and "inserted" in res.problem


@pytest.mark.parametrize("good_hash", [True, False])
def test_inserted_row_in_the_middle_is_named(db: Database, good_hash: bool) -> None:
    _append(db, 20)
    _sql(db, "update audit_log set seq = seq + 1000000 where seq >= 9")
    _sql(db, "update audit_log set seq = seq - 999999 where seq > 1000000")
    with db.read() as conn:
        prev = _row(conn, 8).hash
    _insert(db, 9, prev, good_hash=good_hash)
    res = _verify(db)
    assert not res.ok and res.first_bad_seq == 9 and "entry 9 was inserted" in res.problem


def _swap(db: Database, a: int, b: int) -> None:
    with db.begin() as conn:
        conn.execute(text("update audit_log set seq = -7 where seq = :a"), {"a": a})
        conn.execute(text("update audit_log set seq = :a where seq = :b"), {"a": a, "b": b})
        conn.execute(text("update audit_log set seq = :b where seq = -7"), {"b": b})


@pytest.mark.parametrize(("a", "b"), [(5, 6), (5, 9), (1, 2), (39, 40)])
def test_swapped_order_is_named(db: Database, a: int, b: int) -> None:
    _append(db, 40)
    _swap(db, a, b)
    res = _verify(db)
    assert not res.ok and res.first_bad_seq == a
    assert res.problem == f"entry {a} is out of order (it holds entry {b}: reordered)"


def test_signed_head_and_checkpoints(db: Database) -> None:
    key = "k" * 32
    audit.set_signing_key(key)
    try:
        _append(db, 10)
        audit.seal_all(db.engine)
        with db.begin() as conn:
            assert audit.checkpoint(conn) == 10
        _append(db, 5, start=10)
        audit.seal_all(db.engine)
        with db.read() as conn:
            res = audit.verify(conn)
            assert res.ok and res.signed and res.checkpoints == 1
            assert not audit.verify(conn, key="wrong key").ok
        # rewrite the chain from entry 3 on, recomputing every hash and the head: only the key tells
        with db.begin() as conn:
            rows = sorted(audit.query(conn, limit=100), key=lambda e: e.seq or 0)
            prev = rows[1].hash
            for e in rows[2:]:
                vals = {name: getattr(e, name) for name in audit.HASHED_FIELDS}
                vals["prev_hash"] = prev
                if e.seq == 3:
                    vals["detail"] = "rewritten"
                prev = audit.entry_hash(vals)
                conn.execute(
                    text("update audit_log set detail = :d, prev_hash = :p, hash = :h where seq = :s"),
                    {"d": vals["detail"], "p": vals["prev_hash"], "h": prev, "s": e.seq},
                )
                if e.seq == 10:
                    conn.execute(text("update audit_checkpoint set hash = :h where seq = 10"), {"h": prev})
            conn.execute(text("update audit_head set hash = :h"), {"h": prev})
        with db.read() as conn:
            assert audit.verify(conn, key="").ok  # without the key the rewrite is consistent
            res = audit.verify(conn)
        assert not res.ok and res.first_bad_seq == 10
        assert res.problem == "the checkpoint at entry 10 has a wrong signature"
        _sql(db, "delete from audit_checkpoint")
        with db.read() as conn:
            res = audit.verify(conn)
        assert not res.ok and "signature" in res.problem
    finally:
        audit.set_signing_key(None)


def test_checkpoint_needs_a_key(db: Database) -> None:
    with pytest.raises(ValueError, match="secret key"):
        with db.begin() as conn:
            audit.checkpoint(conn, key="")


# ---------------------------------------------------------------------------------------------
# property: random operations keep a valid chain; a random tamper is always caught

_text = st.text(max_size=40)
_op = st.one_of(
    st.tuples(st.just("record"), _text, st.sampled_from(audit.OUTCOMES), st.none() | _text, st.none() | _text),
    st.tuples(
        st.just("check"),
        st.sampled_from([*ROLES, "nobody"]),
        st.sampled_from(list(Action)),
        st.sampled_from(["Patient", "Observation", "AuditEvent", "Claim", "UserAccount"]),
    ),
    st.tuples(st.just("rollback"), _text),
)
_tamper = st.tuples(
    st.sampled_from(["update", "delete", "insert_end", "insert_start", "swap", "rehash"]),
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=0, max_value=10_000),
    st.sampled_from([*audit.HASHED_FIELDS, "hash"]),
)


def _reset(db: Database) -> None:
    with db.begin() as conn:
        for table in ("audit_log", "audit_head", "audit_checkpoint"):
            conn.execute(text(f"delete from {table}"))


def _run_ops(db: Database, ops: list[tuple[Any, ...]]) -> int:
    expected = 0
    for op in ops:
        if op[0] == "record":
            with db.begin() as conn:
                audit.record(conn, DOC, op[1] or "read", op[2], detail=op[3], purpose=op[4], patient_id="p1")
            expected += 1
        elif op[0] == "check":
            who = Principal("u-x", "x", frozenset({op[1]}))
            with db.begin() as conn:
                try:
                    policy.check(conn, who, op[2], op[3], "p1")
                except Denied:
                    expected += 1
        else:
            with pytest.raises(RuntimeError):
                with db.begin() as conn:
                    audit.record(conn, DOC, "read", "success", detail=op[1])
                    raise RuntimeError("request failed")
    return expected


def _apply_tamper(db: Database, tamper: tuple[str, int, int, str]) -> None:
    kind, i, j, column = tamper
    with db.read() as conn:
        rows = sorted(audit.query(conn, limit=10_000), key=lambda e: e.seq or 0)
    n = len(rows)
    a = rows[i % n]
    if kind == "swap" and n >= 2:
        b = rows[j % n]
        if b.seq == a.seq:
            b = rows[(i + 1) % n]
        _swap(db, a.seq, b.seq)
    elif kind == "delete":
        _sql(db, "delete from audit_log where seq = :s", s=a.seq)
    elif kind == "insert_end":
        _insert(db, n + 1, rows[-1].hash)
    elif kind == "insert_start":
        _insert(db, 0, audit.GENESIS)
    elif kind == "rehash":
        vals = {name: getattr(a, name) for name in audit.HASHED_FIELDS}
        vals["detail"] = _changed(a.detail)
        _sql(
            db,
            "update audit_log set detail = :d, hash = :h where seq = :s",
            d=vals["detail"],
            h=audit.entry_hash(vals),
            s=a.seq,
        )
    else:
        old = getattr(a, column)
        new: Any
        if column == "seq":
            new = n + 5
        elif column == "id":
            new = old + 1_000_000
        elif column == "at":
            new = old + timedelta(microseconds=1 + j)
        elif column == "outcome":
            new = "failure" if old != "failure" else "success"
        else:
            new = _changed(old)
        _sql(db, f"update audit_log set {column} = :v where seq = :s", v=new, s=a.seq)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(_op, min_size=1, max_size=12), tamper=_tamper)
def test_random_operations_verify_and_any_tamper_is_caught(db: Database, ops: list[Any], tamper: Any) -> None:
    _reset(db)
    with db.begin() as conn:
        audit.record(conn, SYSTEM, "start", "success")
    expected = 1 + _run_ops(db, ops)
    res = _verify(db)
    assert res.ok, res.problem
    assert res.unsealed == 0
    assert res.checked == expected
    _apply_tamper(db, tamper)
    res = _verify(db)
    assert not res.ok
    assert res.first_bad_seq is not None and res.problem.startswith("entry ")


# ---------------------------------------------------------------------------------------------
# concurrency


def test_concurrent_appends_keep_one_chain(db: Database) -> None:
    threads, per_thread = 8, 40
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def worker(k: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                with db.begin() as conn:
                    audit.record(conn, DOC, "read", "success", resource_id=f"t{k}-{i}")
                    if i % 10 == 9:  # and some denials, written after their transaction ends
                        try:
                            policy.check(
                                conn,
                                Principal("u-c", "c", frozenset({"coder"})),
                                Action.DELETE,
                                "Patient",
                                f"p{k}",
                            )
                        except Denied:
                            pass
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    run_threads(worker, range(threads))
    assert not errors
    res = _verify(db)
    total = threads * per_thread + threads * (per_thread // 10)
    assert res.ok, res.problem
    assert res.checked == total and res.head_seq == total
    with db.read() as conn:
        ids = {e.resource_id for e in audit.query(conn, action="read", limit=10_000)}
    assert len(ids) == threads * per_thread


# ---------------------------------------------------------------------------------------------
# FHIR AuditEvent


def test_as_audit_event_is_valid_fhir(db: Database) -> None:
    r4b = pytest.importorskip("fhir.resources.R4B.auditevent")
    other = Principal("u-2", "cody", frozenset({"coder"}), client_address="192.0.2.1")
    with db.begin() as conn:
        audit.record(conn, DOC, "read", "success", resource_type="Observation", resource_id="o1", patient_id="p1")
        audit.record(
            conn,
            other,
            "update",
            "denied",
            resource_type="Patient",
            resource_id="p1",
            patient_id="p1",
            detail="role matrix",
        )
        audit.record(conn, other, "login", "failure", detail="wrong password")
        audit.record(
            conn,
            DOC,
            "break_glass",
            "success",
            patient_id="p9",
            resource_type="Patient",
            purpose="emergency department treatment",
        )
        audit.record(conn, None, "export", "success")
    with db.read() as conn:
        entries = audit.query(conn, newest_first=False)
    events = [audit.as_audit_event(e) for e in entries]
    for ev in events:
        r4b.AuditEvent.model_validate(ev)
    read, denied, login, btg, export = events
    assert read["subtype"][0]["code"] == "read" and read["action"] == "R" and read["outcome"] == "0"
    assert read["entity"][0]["what"]["reference"] == "Patient/p1"
    assert read["entity"][1]["what"]["reference"] == "Observation/o1"
    assert read["agent"][0]["who"]["identifier"]["value"] == "u-doc"
    assert read["agent"][0]["network"]["address"] == "10.0.0.5"
    assert denied["outcome"] == "4" and denied["outcomeDesc"] == "role matrix" and len(denied["entity"]) == 1
    assert login["type"]["code"] == "110114" and login["subtype"][0]["code"] == "110122"
    assert btg["purposeOfEvent"][0]["text"] == "emergency department treatment"
    assert export["type"]["code"] == "110106" and "who" not in export["agent"][0]


@pytest.mark.parametrize("link", [False, True], ids=["sealed-later", "linked-now"])
def test_record_many_chains_like_one_by_one_and_verifies(db, link):
    """A bulk job's entries (one per patient touched) go in with one statement, chained as if written
    one by one: verify passes, and a tamper among them is caught."""
    job = Principal.system("bulk-test")
    with db.begin() as c:
        audit.record(c, job, "import", "success", patient_id="p0", detail="before")
        n = audit.record_many(c, job, "import", "success",
                              [{"patient_id": f"p{i}", "detail": f"{i} resources written"} for i in range(1, 40)],
                              link=link)
        audit.record(c, job, "import", "success", patient_id="p40", detail="after")
    assert n == 39
    audit.seal_all(db.engine)
    with db.read() as c:
        assert audit.verify(c).ok
        got = audit.query(c, user_id=job.user_id, limit=100)
    assert sorted(e.patient_id for e in got) == sorted(f"p{i}" for i in range(41))
    with db.begin() as c:
        c.execute(text("UPDATE audit_log SET patient_id = 'someone-else' WHERE patient_id = 'p17'"))
    with db.read() as c:
        bad = audit.verify(c)
    assert not bad.ok and bad.first_bad_seq is not None


@pytest.mark.parametrize("link", [False, True], ids=["sealed-later", "linked-now"])
def test_record_many_keeps_the_entries_order_and_every_field(db, link):
    """The entries of one call are chained in the order given, each with its own fields and the
    call's common ones (on PostgreSQL they are written in one statement from arrays)."""
    job = Principal.system("bulk-order")
    entries = [{"resource_type": "CodingAbstract" if i % 2 else None, "resource_id": f"r{i}" if i % 3 else None,
                "patient_id": f"p{99 - i}", "purpose": "TREAT" if i == 5 else None,
                "detail": f"naïve ✓ {i} 'quoted' \"x\" {{a,b}} back\\slash"} for i in range(60)]
    with db.begin() as c:
        audit.record_many(c, job, "bulk.order", "success", entries, link=link)
    audit.seal_all(db.engine)
    t = audit._log_t
    with db.read() as c:
        assert audit.verify(c).ok
        got = c.execute(select(t.c.resource_type, t.c.resource_id, t.c.patient_id, t.c.purpose, t.c.detail,
                               t.c.username, t.c.action, t.c.outcome, t.c.roles)
                        .where(t.c.action == "bulk.order").order_by(t.c.seq)).all()
    assert [tuple(r[:5]) for r in got] == [(e["resource_type"], e["resource_id"], e["patient_id"], e["purpose"],
                                            e["detail"]) for e in entries]
    assert {tuple(r[5:]) for r in got} == {(job.username, "bulk.order", "success", job.roles_text)}


def test_linked_entries_are_in_the_chain_at_commit_among_entries_sealed_later(db):
    """``record_many(link=True)`` (a short bulk transaction's last write) links its entries into the
    chain as it inserts them: once committed they are sealed, with no sealer run, on PostgreSQL as on
    SQLite. Entries other transactions leave for the sealer, before and after them, are sealed after
    them, and the whole chain verifies."""
    job = Principal.system("bulk-linked")
    with db.begin() as c:
        audit.record(c, DOC, "read", "success", patient_id="p-before")
    with db.begin() as c:
        audit.record_many(c, job, "coding.working-drg", "success",
                          [{"resource_type": "CodingAbstract", "patient_id": f"p{i}"} for i in range(30)], link=True)
    with db.begin() as c:
        audit.record(c, DOC, "read", "success", patient_id="p-after")
    t = audit._log_t
    with db.read() as c:
        linked = c.execute(select(t.c.seq, t.c.hash).where(t.c.action == "coding.working-drg")).all()
        assert len(linked) == 30 and all(seq is not None and h for seq, h in linked)
        assert sorted(seq for seq, _ in linked) == list(range(min(s for s, _ in linked), min(s for s, _ in linked) + 30))
    audit.seal_all(db.engine)
    with db.read() as c:
        result = audit.verify(c)
        assert result.ok and result.unsealed == 0, result
        order = [r[0] for r in c.execute(select(t.c.patient_id).order_by(t.c.seq))]
    assert set(order) >= {"p-before", "p-after"} and order.index("p0") + 29 == order.index("p29")


# ---------------------------------------------------------------------------------------------
# audited reads (group commit)


def _read_work(pid: str, rid: str, fail: BaseException | None = None) -> audit.ReadWork[str]:
    def work(conn: Connection) -> tuple[str, list[dict[str, Any]]]:
        conn.execute(text("select 1")).scalar_one()  # a real read in the shared transaction
        if fail is not None:
            raise fail
        return rid, [audit.entry(DOC, "read", "success", resource_type="Observation", resource_id=rid, patient_id=pid)]

    return work


def test_concurrent_audited_reads_share_commits_and_keep_one_chain(db: Database, monkeypatch: Any) -> None:
    batches: list[int] = []
    real_append = audit._append_chained

    def counting_append(conn: Connection, rows: list[dict[str, Any]]) -> None:
        batches.append(len(rows))
        real_append(conn, rows)

    monkeypatch.setattr(audit, "_append_chained", counting_append)
    threads, per_thread = 8, 40
    errors: list[BaseException] = []
    returned: list[str] = []
    barrier = threading.Barrier(threads)

    def worker(k: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                rid = f"t{k}-{i}"
                assert audit.audited_read(db, _read_work(f"p{k}", rid)) == rid
                returned.append(rid)
                if i % 10 == 9:  # writers with entries of their own in between
                    with db.begin() as conn:
                        audit.record(conn, DOC, "update", "success", resource_id=f"w{k}-{i}")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    run_threads(worker, range(threads))
    assert not errors
    total = threads * per_thread + threads * (per_thread // 10)
    res = _verify(db)
    assert res.ok, res.problem
    assert res.checked == total and res.head_seq == total
    with db.read() as conn:
        reads = [e.resource_id for e in audit.query(conn, action="read", limit=10_000)]
    assert sorted(reads) == sorted(returned) and len(reads) == threads * per_thread  # one entry per read
    assert sum(batches) == threads * per_thread


def test_an_audited_read_returns_only_after_its_entry_is_committed(db: Database) -> None:
    seen: list[int] = []

    def work(conn: Connection) -> tuple[int, list[dict[str, Any]]]:
        return 1, [audit.entry(DOC, "read", "success", resource_id="r-1")]

    assert audit.audited_read(db, work) == 1
    # Another connection sees the entry as soon as the read has returned: it was committed first.
    with db.engine.connect() as other:
        seen.append(int(other.execute(text("select count(*) from audit_log where resource_id = 'r-1'")).scalar_one()))
    assert seen == [1]
    assert _verify(db).ok


def test_a_failing_audit_write_fails_every_read_of_its_batch(db: Database) -> None:
    _sql(db, "alter table audit_log rename to audit_log_away")
    try:
        errors: list[BaseException] = []
        values: list[str] = []
        barrier = threading.Barrier(4)

        def worker(k: int) -> None:
            barrier.wait()
            try:
                values.append(audit.audited_read(db, _read_work("p", f"r{k}")))
            except AuditWriteError as exc:
                errors.append(exc)

        run_threads(worker, range(4))
        assert values == [] and len(errors) == 4  # no data without its committed entry
        assert all("could not be written" in str(e) for e in errors)
    finally:
        _sql(db, "alter table audit_log_away rename to audit_log")
    assert audit.audited_read(db, _read_work("p", "r-after")) == "r-after"
    assert _verify(db).ok


def test_a_read_that_fails_fails_alone_and_writes_no_entry(db: Database) -> None:
    results: dict[str, Any] = {}
    barrier = threading.Barrier(6)

    def worker(k: int) -> None:
        barrier.wait()
        fail = LookupError(f"not found {k}") if k % 2 else None
        try:
            results[f"r{k}"] = audit.audited_read(db, _read_work("p", f"r{k}", fail))
        except LookupError as exc:
            results[f"r{k}"] = exc

    run_threads(worker, range(6))
    for k in range(6):
        if k % 2:
            assert isinstance(results[f"r{k}"], LookupError) and str(results[f"r{k}"]) == f"not found {k}"
        else:
            assert results[f"r{k}"] == f"r{k}"
    with db.read() as conn:
        assert sorted(e.resource_id or "" for e in audit.query(conn, action="read")) == ["r0", "r2", "r4"]
    assert _verify(db).ok


def test_a_read_whose_sql_fails_fails_alone_and_the_reads_around_it_keep_their_entries(db: Database,
                                                                                       monkeypatch: Any) -> None:
    """A batch's reads share one transaction. On PostgreSQL a failed statement aborts it: the reads
    queued after a read whose SQL failed, and the entries of those before it, must not fail with it."""
    queue_of = audit._shared
    appended: list[list[str | None]] = []
    real_append = audit._append_chained

    def recording_append(conn: Connection, rows: list[dict[str, Any]]) -> None:
        appended.append([r["resource_id"] for r in rows])
        real_append(conn, rows)

    monkeypatch.setattr(audit, "_append_chained", recording_append)

    def bad_sql(conn: Connection) -> tuple[str, list[dict[str, Any]]]:
        conn.execute(text("select * from no_such_table_here"))
        raise AssertionError("not reached")

    def queued(n: int) -> None:  # until n reads wait behind the leader's
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(queue_of[db].queue) < n:
            time.sleep(0.002)

    def caught_bad_sql(conn: Connection) -> tuple[str, list[dict[str, Any]]]:
        try:  # a read that handles its own failed statement (its transaction is aborted all the same)
            conn.execute(text("select * from no_such_table_here"))
        except DBAPIError:
            pass
        return "r4", [audit.entry(DOC, "read", "success", resource_type="Observation", resource_id="r4",
                                  patient_id="p")]

    entered, release = threading.Event(), threading.Event()

    def leader(conn: Connection) -> tuple[str, list[dict[str, Any]]]:
        conn.execute(text("select 1")).scalar_one()
        entered.set()
        release.wait(10)  # the other reads queue meanwhile and join this batch, in order
        return "r0", [audit.entry(DOC, "read", "success", resource_type="Observation", resource_id="r0",
                                  patient_id="p")]

    works: list[audit.ReadWork[str]] = [leader, _read_work("p", "r1"), bad_sql, _read_work("p", "r3"),
                                        caught_bad_sql, _read_work("p", "r5")]
    results: dict[int, Any] = {}

    def call(k: int) -> None:
        try:
            results[k] = audit.audited_read(db, works[k])
        except Exception as exc:  # noqa: BLE001 - each caller's outcome is checked below
            results[k] = exc

    threads = [threading.Thread(target=call, args=(k,)) for k in range(len(works))]
    threads[0].start()
    assert entered.wait(10)
    for k in range(1, len(works)):
        threads[k].start()
        queued(k)
    release.set()
    for t in threads:
        t.join()
    assert isinstance(results[2], DBAPIError) and "no_such_table_here" in str(results[2])
    assert {k: v for k, v in results.items() if k != 2} == {0: "r0", 1: "r1", 3: "r3", 4: "r4", 5: "r5"}
    assert appended == [["r0", "r1", "r3", "r4", "r5"]]  # one batch: the reads after the failed ones were in it
    with db.read() as conn:
        assert sorted(e.resource_id or "" for e in audit.query(conn, action="read")) == ["r0", "r1", "r3", "r4", "r5"]
    assert _verify(db).ok
    assert audit.audited_read(db, _read_work("p", "r-after")) == "r-after"


def test_a_denied_read_keeps_its_denial_entry(db: Database) -> None:
    coder = Principal("u-c", "cody", frozenset({"coder"}))

    def work(conn: Connection) -> tuple[None, list[dict[str, Any]]]:
        policy.check(conn, coder, Action.READ, "AuditEvent", None)  # coders do not read the audit log
        raise AssertionError("not reached")

    with pytest.raises(Denied):
        audit.audited_read(db, work)
    with db.read() as conn:
        denied = audit.query(conn, outcome="denied")
    assert [(e.user_id, e.action, e.resource_type) for e in denied] == [("u-c", "read", "AuditEvent")]
    assert _verify(db).ok


def test_an_audited_read_may_not_write(db: Database) -> None:
    if not db.is_sqlite:
        pytest.skip("the check counts SQLite's changed rows")

    def work(conn: Connection) -> tuple[None, list[dict[str, Any]]]:
        audit.record(conn, DOC, "update", "success", resource_id="sneaky")
        return None, [audit.entry(DOC, "read", "success", resource_id="r")]

    with pytest.raises(AuditWriteError):
        audit.audited_read(db, work)
    with db.read() as conn:
        assert audit.query(conn) == []  # rolled back whole: neither the write nor the read's entry
    assert _verify(db).ok


# --- the canonical encoding that is hashed: orjson's bytes are the standard library's ----------------

_field_values = (st.none() | st.text() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
                 | st.integers() | st.floats() | st.booleans())


@settings(max_examples=2000, deadline=None)
@given(st.lists(_field_values, min_size=len(audit.HASHED_FIELDS), max_size=len(audit.HASHED_FIELDS)),
       st.datetimes(timezones=st.just(UTC)))
def test_canonical_bytes_are_the_standard_json_encoding_for_any_field_values(values, at) -> None:
    fields = dict(zip(audit.HASHED_FIELDS, values, strict=True))
    fields["at"] = at
    parts = [audit.format_time(at) if name == "at" else fields[name] for name in audit.HASHED_FIELDS]
    try:
        want = json.dumps(parts, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, ValueError) as exc:  # a lone surrogate, a NaN: refused the same way
        with pytest.raises(type(exc)):
            audit.canonical(fields)
        return
    assert audit.canonical(fields) == want


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())))
def test_canonical_bytes_match_for_control_characters_and_every_plane(text) -> None:
    fields = {name: text for name in audit.HASHED_FIELDS} | {"id": 1, "seq": 2, "at": datetime(2026, 1, 1, tzinfo=UTC)}
    parts = [audit.format_time(fields["at"]) if n == "at" else fields[n] for n in audit.HASHED_FIELDS]
    try:
        want = json.dumps(parts, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            audit.canonical(fields)
        return
    assert audit.canonical(fields) == want


@settings(max_examples=300, deadline=None)
@given(st.lists(st.datetimes(timezones=st.none() | st.just(UTC) | st.timezones()), min_size=1, max_size=6))
def test_timestamps_are_written_in_utc_whichever_came_before(times) -> None:
    """format_time remembers the last timestamp it wrote (a bulk job's entries share one); whatever came
    before, each is written as its instant in UTC, and a naive one as UTC."""
    for at in [*times, *reversed(times), times[0]]:
        utc = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
        assert audit.format_time(at) == utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert audit.format_time(at) == utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # the remembered one
