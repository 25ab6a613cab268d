"""The versioned store: versions, history, logical delete, optimistic locking, search index."""

from __future__ import annotations

import threading

import pytest

from chartkeeper.fhir import search
from chartkeeper.fhir.errors import FhirError
from chartkeeper.fhir.store import FhirStore
from concurrently import run_threads
from fhirdata import obs, patient

STORE = FhirStore()


def test_create_read_update_keeps_every_version(db):
    with db.begin() as c:
        created = STORE.create(c, patient(), author="u1")
    assert created.version_id == 1
    with db.begin() as c:
        p = STORE.read(c, "Patient", created.id).resource()
        assert p["meta"]["versionId"] == "1" and p["meta"]["lastUpdated"].endswith("Z")
        p["name"][0]["family"] = "Rivera-Lopez"
        upd = STORE.update(c, "Patient", created.id, p, author="u2", if_match=1)
    assert upd.version_id == 2 and upd.outcome == "updated"
    with db.read() as c:
        assert STORE.read(c, "Patient", created.id).resource()["name"][0]["family"] == "Rivera-Lopez"
        assert STORE.vread(c, "Patient", created.id, 1).resource()["name"][0]["family"] == "Rivera"
        hist = STORE.history(c, "Patient", created.id)
    assert [h.version_id for h in hist] == [2, 1]
    assert [h.author for h in hist] == ["u2", "u1"]


def test_stale_if_match_is_412_and_changes_nothing(db):
    with db.begin() as c:
        r = STORE.create(c, patient(), author=None)
        body = STORE.read(c, "Patient", r.id).resource()
        STORE.update(c, "Patient", r.id, body, author=None, if_match=1)
    with pytest.raises(FhirError) as e, db.begin() as c:
        STORE.update(c, "Patient", r.id, body, author=None, if_match=1)
    assert e.value.status == 412
    with db.read() as c:
        assert STORE.history_count(c, "Patient", r.id) == 2


def test_of_two_concurrent_updates_to_one_version_exactly_one_wins(db):
    with db.begin() as c:
        r = STORE.create(c, patient(), author=None)
    outcomes: list[object] = []
    barrier = threading.Barrier(2)

    def worker(name: str) -> None:
        body = patient(family=name)
        barrier.wait()
        try:
            with db.begin() as c:
                STORE.update(c, "Patient", r.id, body, author=name, if_match=1)
            outcomes.append("ok")
        except FhirError as err:
            outcomes.append(err.status)

    run_threads(worker, ("Alpha", "Beta"))
    assert sorted(map(str, outcomes)) == ["412", "ok"]
    with db.read() as c:
        assert STORE.read(c, "Patient", r.id).version_id == 2


def test_delete_is_logical_and_read_answers_gone(db):
    with db.begin() as c:
        r = STORE.create(c, patient(), author=None)
        STORE.delete(c, "Patient", r.id, author=None)
    with db.read() as c:
        with pytest.raises(FhirError) as e:
            STORE.read(c, "Patient", r.id)
        assert e.value.status == 410
        assert STORE.vread(c, "Patient", r.id, 1).resource()["name"][0]["family"] == "Rivera"
        q = search.parse("Patient", [("family", "rivera")])
        assert search.run(c, STORE, q).total == 0


def test_invalid_resource_is_422_and_writes_nothing(db):
    bad = patient()
    bad["gender"] = "M"
    with pytest.raises(FhirError) as e, db.begin() as c:
        STORE.create(c, bad, author=None)
    assert e.value.status == 422
    assert any("gender" in (i.path or "") for i in e.value.issues)
    with db.read() as c:
        assert STORE.history_count(c) == 0


def test_ingest_is_idempotent_and_dedupes_same_id(db):
    org = {"resourceType": "Organization", "id": "org-1", "name": "General Hospital"}
    with db.begin() as c:
        _, s1 = STORE.ingest(c, [dict(org), dict(org)], author="import")
    assert s1.created == {"Organization": 1} and s1.unchanged == {"Organization": 1}
    with db.begin() as c:
        _, s2 = STORE.ingest(c, [dict(org)], author="import")
    assert s2.unchanged == {"Organization": 1} and not s2.created
    with db.read() as c:
        assert STORE.history_count(c, "Organization", "org-1") == 1


SEARCHES = [
    ([("family", "riv")], 1),
    ([("family:exact", "rivera")], 1),
    ([("name", "ANA")], 1),
    ([("given:contains", "n")], 1),
    ([("birthdate", "1961")], 1),
    ([("birthdate", "lt1961-01-01")], 0),
    ([("birthdate", "ge1961-04-02")], 1),
    ([("gender", "female")], 1),
    ([("gender", "male")], 0),
    ([("identifier", "https://chartkeeper.example.org/mrn|MRN001")], 1),
    ([("identifier", "MRN001")], 1),
    ([("identifier", "other|MRN001")], 0),
    ([("address-postalcode", "016")], 1),
    ([("_lastUpdated", "gt2000-01-01")], 1),
    ([("_lastUpdated", "lt2000-01-01")], 0),
]


@pytest.mark.parametrize("params,expected", SEARCHES)
def test_patient_search_parameters(db, params, expected):
    with db.begin() as c:
        STORE.create(c, patient(), author=None)
    with db.read() as c:
        assert search.run(c, STORE, search.parse("Patient", params)).total == expected


def test_clinical_search_paging_sort_and_include(db):
    with db.begin() as c:
        pid = STORE.create(c, patient(), author=None).id
        other = STORE.create(c, patient(family="Other", mrn="MRN002"), author=None).id
        for day in range(1, 26):
            STORE.create(c, obs(pid, when=f"2024-03-{day:02d}T10:00:00Z", value=day), author=None)
        STORE.create(c, obs(other), author=None)
        STORE.create(c, obs(pid, code="2345-7"), author=None)
    with db.read() as c:
        q = search.parse("Observation", [("patient", pid), ("code", "http://loinc.org|4548-4"),
                                         ("_sort", "-date"), ("_count", "10"),
                                         ("_include", "Observation:patient")])
        r = search.run(c, STORE, q)
        assert r.total == 25 and len(r.matches) == 10
        assert r.matches[0].resource()["effectiveDateTime"].startswith("2024-03-25")
        assert [i.resource_type for i in r.included] == ["Patient"]
        q2 = search.parse("Observation", [("subject", f"Patient/{pid}"), ("date", "ge2024-03-20"),
                                          ("date", "lt2024-03-23"), ("status", "final"),
                                          ("category", "laboratory")])
        assert search.run(c, STORE, q2).total == 3
        page3 = search.run(c, STORE, search.parse("Observation", [("patient", pid), ("_count", "10"),
                                                                 ("_offset", "20")]))
        assert len(page3.matches) == 6


@pytest.mark.parametrize("params,fragment", [
    ([("colour", "red")], "Unknown search parameter 'colour'"),
    ([("_sort", "x; drop table fhir_resource")], "Cannot sort"),
    ([("birthdate", "yesterday")], "needs a date"),
    ([("_count", "many")], "whole number"),
    ([("_include", "Patient:name")], "not a reference parameter"),
])
def test_bad_search_is_400_naming_the_parameter(params, fragment):
    with pytest.raises(FhirError) as e:
        search.parse("Patient", params)
    assert e.value.status == 400 and fragment in e.value.message


def test_sql_text_in_search_values_is_only_data(db):
    with db.begin() as c:
        STORE.create(c, patient(), author=None)
    with db.read() as c:
        q = search.parse("Patient", [("family", "x' OR '1'='1"), ("identifier", "a|b' OR 1=1 --")])
        assert search.run(c, STORE, q).total == 0
        assert search.run(c, STORE, search.parse("Patient", [])).total == 1


def test_everything_returns_compartment_and_referenced(db):
    with db.begin() as c:
        STORE.ingest(c, [{"resourceType": "Practitioner", "id": "dr-1", "name": [{"family": "House"}]}],
                     author=None)
        pid = STORE.create(c, patient(), author=None).id
        e = {"resourceType": "Encounter", "status": "finished",
             "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
             "subject": {"reference": f"Patient/{pid}"},
             "participant": [{"individual": {"reference": "Practitioner/dr-1"}}]}
        STORE.create(c, e, author=None)
        STORE.create(c, obs(pid), author=None)
        STORE.create(c, obs(STORE.create(c, patient(mrn="X"), author=None).id), author=None)
    with db.read() as c:
        types = sorted(s.resource_type for s in search.everything(c, STORE, pid))
    assert types == ["Encounter", "Observation", "Patient", "Practitioner"]


def _index_rows(c, rtype, rid):
    """(table, param, values...) of one resource's index rows, found through its integer key."""
    from sqlalchemy import select

    from chartkeeper.fhir.store import INDEX_TABLES, R

    pk = c.execute(select(R.c.pk).where(R.c.resource_type == rtype, R.c.id == rid)).scalar_one()
    out = set()
    for t in INDEX_TABLES:
        cols = [col for col in t.c if col.name not in ("resource_pk", "resource_type")]
        for row in c.execute(select(t.c.resource_type, *cols).where(t.c.resource_pk == pk)):
            assert row[0] == rtype
            out.add((t.name, *row[1:]))
    return pk, out


def test_resource_keys_follow_creation_and_carry_the_index_rows(db):
    """Index rows hang off fhir_resource.pk: keys are new and ascending for every created resource
    (one at a time and in bulk), stay with the resource through update, delete and re-creation, and
    the index rows under a key are exactly the current version's."""
    with db.begin() as c:
        pid = STORE.create(c, patient(), author=None).id
        _, _ = STORE.ingest(c, [dict(obs(pid), id=f"o{i}") for i in range(5)], author="import")
    with db.begin() as c:
        later = STORE.create(c, obs(pid, code="2345-7"), author=None).id
    with db.read() as c:
        keys = [_index_rows(c, "Patient", pid)[0], *(_index_rows(c, "Observation", f"o{i}")[0] for i in range(5)),
                _index_rows(c, "Observation", later)[0]]
        assert keys == sorted(keys) and len(set(keys)) == 7
        pk, rows = _index_rows(c, "Observation", "o3")
        assert ("fhir_idx_token", "code", "http://loinc.org", "4548-4") in rows
        assert ("fhir_idx_reference", "subject", "Patient", pid) in rows
    with db.begin() as c:
        STORE.update(c, "Observation", "o3", obs(pid, code="718-7", when="2023-01-01"), author=None)
    with db.read() as c:
        pk2, rows = _index_rows(c, "Observation", "o3")
        assert pk2 == pk
        assert ("fhir_idx_token", "code", "http://loinc.org", "718-7") in rows
        assert not any(r[:2] == ("fhir_idx_token", "code") and r[3] == "4548-4" for r in rows)
        assert [m.id for m in search.run(c, STORE, search.parse("Observation", [("code", "718-7")])).matches] == ["o3"]
        assert search.run(c, STORE, search.parse("Observation", [("code", "4548-4")])).total == 4
    with db.begin() as c:
        STORE.delete(c, "Observation", "o3", author=None)
    with db.read() as c:
        assert _index_rows(c, "Observation", "o3") == (pk, set())
    with db.begin() as c:
        _, stats = STORE.ingest(c, [dict(obs(pid), id="o3")], author="import")
    assert stats.created == {"Observation": 1}
    with db.read() as c:
        pk3, rows = _index_rows(c, "Observation", "o3")
        assert pk3 == pk and ("fhir_idx_token", "code", "http://loinc.org", "4548-4") in rows
        assert search.run(c, STORE, search.parse("Observation", [("code", "4548-4")])).total == 5


def test_search_driven_by_an_index_fetches_keys_not_every_resource_of_the_type(db):
    """The driving filter's keys are fetched by primary key; the planner must not walk every
    resource of the type (SQLite did, by the (type, id) index, while the type was also a condition
    on fhir_resource: 200 ms a search at 2,000 patients)."""
    with db.begin() as c:
        pid = STORE.create(c, patient(), author=None).id
        for i in range(3):
            STORE.create(c, obs(pid, code="8302-2" if i else "4548-4"), author=None)
    q = search.parse("Observation", [("patient", pid), ("code", "http://loinc.org|8302-2")])
    with db.read() as c:
        assert search.run(c, STORE, q).total == 2
        if c.dialect.name != "sqlite":
            return
        sql = str(search._order(q, search.build(q)).compile(dialect=c.dialect,
                                                               compile_kwargs={"literal_binds": True}))
        plan = [r[3] for r in c.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)]
    assert any(p.startswith("SEARCH fhir_resource USING INTEGER PRIMARY KEY") for p in plan), plan


COMBINED = [
    # (params beside patient=pid, ids expected): several filters on one index table (code and category
    # are both tokens), negations and absence, a filter on fhir_resource itself, a date range.
    ([("code", "http://loinc.org|8302-2"), ("category", "laboratory")], {"a", "b"}),
    ([("code", "8302-2,4548-4"), ("category", "vital-signs")], {"c"}),
    ([("category", "laboratory"), ("code:not", "8302-2")], {"d"}),
    ([("code", "8302-2"), ("status", "amended")], {"b"}),
    ([("code", "8302-2"), ("status:missing", "false")], {"a", "b", "c"}),
    ([("code", "8302-2"), ("date", "ge2024-03-02"), ("date", "lt2024-03-04")], {"b", "c"}),
    ([("code", "8302-2"), ("_lastUpdated", "gt2000-01-01"), ("_id", "a,c,d")], {"a", "c"}),
    ([("code", "9999-9"), ("category", "laboratory")], set()),
]


@pytest.mark.parametrize("params,expected", COMBINED)
def test_index_filters_checked_inside_the_driving_subquery_match_as_separate_filters(db, params, expected):
    """The patient filter drives; the other index filters are checked inside its subquery against the
    index row's key (each on its own alias of its table). The answer is the same as each filter alone
    intersected, and the other patient's look-alike resources never leak in."""
    with db.begin() as c:
        pid = STORE.create(c, patient(), author=None).id
        other = STORE.create(c, patient(mrn="MRN002"), author=None).id
        vital = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                             "code": "vital-signs"}]}
        rows = [dict(obs(pid, code="8302-2", when="2024-03-01T10:00:00Z"), id="a"),
                dict(obs(pid, code="8302-2", when="2024-03-02T10:00:00Z", status="amended"), id="b"),
                dict(obs(pid, code="8302-2", when="2024-03-03T10:00:00Z"), id="c", category=[vital]),
                dict(obs(pid, code="4548-4"), id="d"),
                dict(obs(other, code="8302-2"), id="e")]
        STORE.ingest(c, rows, author="import")
    with db.read() as c:
        got = {m.id for m in search.run(c, STORE, search.parse("Observation", [("patient", pid), *params])).matches}
        alone = [{m.id for m in search.run(c, STORE, search.parse("Observation", [("patient", pid), p])).matches}
                 for p in params]
    assert got == expected == set.intersection(*alone)


def test_search_checks_other_filters_before_fetching_a_resource_row(db):
    """A candidate that fails the code filter is dropped inside the driving subquery, before its
    fhir_resource row is looked up (SQLite's plan: the token check is nested in the list subquery)."""
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's EXPLAIN QUERY PLAN shows the nesting; PostgreSQL's planner may flatten it")
    q = search.parse("Observation", [("patient", "p1"), ("code", "http://loinc.org|8302-2")])
    sql = str(search._order(q, search.build(q)).compile(dialect=db.engine.dialect,
                                                       compile_kwargs={"literal_binds": True}))
    with db.read() as c:
        plan = {r[0]: (r[1], r[3]) for r in c.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)}
    token = next(i for i, (_, d) in plan.items() if "fhir_idx_token" in d)
    ancestors = []
    while token in plan:
        token = plan[token][0]
        ancestors.append(plan.get(token, (0, ""))[1])
    assert any(a.startswith("LIST SUBQUERY") for a in ancestors), plan


@pytest.mark.parametrize("n", [3, 40])
def test_a_bulk_write_that_collides_is_a_409_whatever_its_size(db, n):
    """Many rows go in by COPY on PostgreSQL (a few by INSERT): a key that another writer took in the
    meantime is SQLAlchemy's IntegrityError either way, which the store's writes turn into a 409
    conflict (a driver error from COPY escaped that and the API answered 500); nothing is written."""
    from sqlalchemy.exc import IntegrityError

    from chartkeeper.db.bulk import bulk_insert
    from chartkeeper.fhir.store import V

    with db.begin() as c:
        STORE.ingest(c, [dict(patient(), id="taken")], author="import")
    row = ("Patient", "taken", 1, "2024-01-01 00:00:00", False, "create", None, b"{}", "x")
    rows = [("Patient", f"free{i}", 1, "2024-01-01 00:00:00", False, "create", None, b"{}", "x")
            for i in range(n - 1)] + [row]
    if db.engine.dialect.name == "postgresql":
        from datetime import UTC, datetime

        rows = [(*r[:3], datetime(2024, 1, 1, tzinfo=UTC), *r[4:]) for r in rows]
    with pytest.raises(IntegrityError), db.begin() as c:
        bulk_insert(c, V, ("resource_type", "id", "version_id", "last_updated", "deleted", "method", "author",
                           "content", "content_hash"), rows)
    with db.read() as c:
        assert STORE.history_count(c, "Patient", "taken") == 1


def test_batched_reads_by_id_and_by_reference(db, monkeypatch):
    """``read_many`` and ``referencing`` (the domain jobs' batched reads) give every current resource
    once, whatever the ids per statement: a Provenance pointing at two of the targets comes back once,
    deleted and missing resources not at all, and ``referencing`` orders by type and id."""
    import chartkeeper.fhir.store as store

    monkeypatch.setattr(store, "_IDS_PER_QUERY", 2)
    pats = [{"resourceType": "Patient", "id": f"p{i}", "gender": "female"} for i in range(5)]
    docs = [{"resourceType": "DocumentReference", "id": f"d{i}", "status": "current",
             "subject": {"reference": f"Patient/p{i % 3}"},
             "content": [{"attachment": {"contentType": "text/plain", "data": "Tm90ZQ=="}}]} for i in range(7)]
    prov = [{"resourceType": "Provenance", "id": "v1", "recorded": "2024-01-01T00:00:00Z",
             "target": [{"reference": "DocumentReference/d1"}, {"reference": "DocumentReference/d4"}],
             "agent": [{"who": {"reference": "Practitioner/x"}}]}]
    with db.begin() as c:
        STORE.ingest(c, pats + docs + prov, author="import")
        STORE.delete(c, "DocumentReference", "d6", author=None)
        STORE.delete(c, "Patient", "p4", author=None)
    with db.read() as c:
        got = STORE.read_many(c, [("Patient", "p3"), ("Patient", "p0"), ("Patient", "nope"), ("Patient", "p4"),
                                  ("DocumentReference", "d2"), ("Patient", "p0"), ("Patient", "p1")])
        assert [(s.resource_type, s.id) for s in got] == [("Patient", "p3"), ("Patient", "p0"),
                                                           ("DocumentReference", "d2"), ("Patient", "p1")]
        assert got[0].resource()["id"] == "p3" and got[2].patient_id == "p2"
        refs = STORE.referencing(c, ["DocumentReference", "Provenance"], "patient",
                                 [("Patient", p) for p in ("p0", "p2", "p1")])
        assert [s.id for s in refs] == ["d0", "d1", "d2", "d3", "d4", "d5"]
        prov_hits = STORE.referencing(c, "Provenance", "target",
                                      [("DocumentReference", d) for d in ("d4", "d1", "d0")])
        assert [s.id for s in prov_hits] == ["v1"]
        assert STORE.referencing(c, "Provenance", "target", []) == []
        assert STORE.read_many(c, []) == []
