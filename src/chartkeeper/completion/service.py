"""Chart completion: the operations the web pages, the REST API and the CLI use.

* Analysis: ``analyze_encounters`` (in the caller's transaction; runs by itself after every write
  that touches an encounter's chart, through the record service's write listener), ``analyze`` (all
  or a discharge-date range, in batches, for the CLI) and ``analyze_pending`` (what bulk imports
  queued).
* The technician's queue: ``queue``, ``counts``, ``waive``, ``reassign``.
* The physician's inbox: ``inbox``, ``respond``, ``sign``.
* Reminders and escalation: ``send_reminders`` (notify.py delivers).
* Delinquency: ``delinquency`` (report.py computes).

Every operation that shows or changes patient data passes the one policy check and writes its audit
entry in the same transaction (deficiencies are "Task" in the policy matrix: workflow data).
Deficiencies are also written to the record as FHIR Task resources (id = deficiency id), so FHIR
clients see the physician's work list (``GET /fhir/Task?owner=Practitioner/{id}&status=requested``).
"""

from __future__ import annotations

import base64
import os
import re
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
from sqlalchemy import Connection, Table, delete, func, insert, or_, select, update

from chartkeeper.completion import engine
from chartkeeper.completion.models import (
    COMPLETED,
    OPEN,
    WAIVED,
    ChartRow,
    DeficiencyRow,
    NotificationRow,
    PendingRow,
)
from chartkeeper.completion.rules import RuleSet, load_rules
from chartkeeper.db import Database
from chartkeeper.db.bulk import insert_rows
from chartkeeper.db.sql import in_list
from chartkeeper.fhir.errors import FhirError, Issue
from chartkeeper.fhir.models import ResourceRow
from chartkeeper.fhir.service import Change, ListenerDb, RecordService, add_write_listener
from chartkeeper.fhir.store import FhirStore, fhir_instant, is_signed_document, new_id
from chartkeeper.security import audit, policy
from chartkeeper.security.policy import Action
from chartkeeper.security.principal import Principal

CHART = cast(Table, ChartRow.__table__)
DEF = cast(Table, DeficiencyRow.__table__)
NOTE = cast(Table, NotificationRow.__table__)
PENDING = cast(Table, PendingRow.__table__)
RES = cast(Table, ResourceRow.__table__)
# The resource types that belong to an encounter's chart through their encounter reference.
LINKED = ("DocumentReference", "Composition", "Procedure", "ServiceRequest")

TASK_CODES = "https://chartkeeper.org/fhir/CodeSystem/chart-deficiency"
SIGNATURE_TYPE = {"system": "urn:iso-astm:E1762-95:2013", "code": "1.2.840.10065.1.12.1.1",
                  "display": "Author's Signature"}
COSIGNATURE_TYPE = {"system": "urn:iso-astm:E1762-95:2013", "code": "1.2.840.10065.1.12.1.6",
                    "display": "Co-Author's Signature"}
# Resource types whose writes change some encounter's chart.
CHART_TYPES = frozenset({"Encounter", "DocumentReference", "Composition", "Procedure", "ServiceRequest",
                         "Specimen", "Provenance"})
BATCH = 1000
SYSTEM = Principal.system("chart-completion")
HOW = {"document": "document arrived", "authentication": "signed", "elements": "element added"}


def _time_ordered_id() -> str:
    """A UUID in the version 7 layout (RFC 9562): 48 bits of Unix time in milliseconds, then 74 random
    bits. Deficiencies (and their Tasks) made together get ids that sort together, so their rows go
    into neighbouring pages of every index keyed by id instead of all over them."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 68 & 0xFFF) << 64 | 0b10 << 62 | rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


class _Written(dict[str, Any]):
    """A deficiency row's values as just written, read like a fetched row (``row.status``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class CompletionError(FhirError):
    """A request the completion module refuses: a sentence naming the field and the fix."""


@dataclass
class AnalysisCounts:
    encounters: int = 0
    opened: int = 0
    completed: int = 0
    updated: int = 0

    def add(self, other: AnalysisCounts) -> None:
        self.encounters += other.encounters
        self.opened += other.opened
        self.completed += other.completed
        self.updated += other.updated


@dataclass(frozen=True)
class Deficiency:
    id: str
    encounter_id: str
    patient_id: str | None
    rule_id: str
    rule_title: str
    subject: str
    title: str
    document_id: str | None
    physician_id: str | None
    due_at: datetime
    status: str
    opened_at: datetime
    completed_at: datetime | None
    completed_how: str
    waived_reason: str
    response: str
    responded_at: datetime | None
    escalated_at: datetime | None
    encounter_class: str = ""
    service: str = ""
    discharged_at: datetime | None = None

    def age_days(self, now: datetime) -> int:
        start = self.discharged_at or self.opened_at
        return max(0, (now - start).days)

    def overdue(self, now: datetime) -> bool:
        return self.status == OPEN and now > self.due_at


@dataclass
class QueueFilter:
    status: str = OPEN
    physician_id: str | None = None
    encounter_class: str | None = None
    rule_id: str | None = None
    service: str | None = None
    answered: bool | None = None
    older_than_days: int | None = None
    limit: int = 100
    offset: int = 0


@dataclass
class QueuePage:
    rows: list[Deficiency]
    total: int
    charts: int
    patients: dict[str, str] = field(default_factory=dict)  # patient id -> display (name, MRN)
    physicians: dict[str, str] = field(default_factory=dict)  # practitioner id -> name


_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def _fhir_id_ok(value: str) -> bool:
    return bool(_FHIR_ID.fullmatch(value or ""))


class CompletionService:
    def __init__(self, db: Database, rules: RuleSet | None = None, records: RecordService | None = None) -> None:
        self.db = db
        self.rules = rules or load_rules()
        self.records = records or RecordService(db)
        self.store: FhirStore = self.records.store

    # ============================================================================================
    # Analysis

    def analyze_encounters(self, conn: Connection, encounter_ids: Iterable[str], *,
                           now: datetime | None = None) -> AnalysisCounts:
        """Analyse these encounters' charts in the caller's transaction; reconcile deficiencies and
        their Tasks. Encounters not discharged (or of classes no rule covers) are skipped."""
        now = now or datetime.now(UTC)
        ids = list(dict.fromkeys(encounter_ids))
        total = AnalysisCounts()
        for i in range(0, len(ids), BATCH):
            total.add(self._analyze_batch(conn, ids[i:i + BATCH], now))
        return total

    def _load_charts(self, conn: Connection, ids: list[str]) -> list[engine.Chart]:
        rules = self.rules
        classes = rules.classes
        encs = []
        for s in self.store.read_many(conn, [("Encounter", e) for e in ids]):
            enc = orjson.loads(s.content or "{}")
            if (enc.get("class") or {}).get("code") not in classes:
                continue
            if enc.get("status") not in ("finished",) or not (enc.get("period") or {}).get("end"):
                continue
            encs.append(enc)
        if not encs:
            return []
        linked: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
        # What points at these encounters, of the four linked types, in one index query per 500
        # encounters (then one read per type found): a single document's re-analysis is mostly
        # statement overhead.
        for s in self.store.referencing(conn, LINKED, "encounter", [("Encounter", e["id"]) for e in encs]):
            rtype = s.resource_type
            res = orjson.loads(s.content or "{}")
            ctx = res.get("context") if rtype == "DocumentReference" else None
            refs = (ctx or {}).get("encounter") if rtype == "DocumentReference" else [res.get("encounter")]
            for ref in refs or ():
                eid = engine.ref_id(ref, "Encounter")
                if eid:
                    linked[eid][rtype].append(res)
        patients = {engine.ref_id(e.get("subject"), "Patient") for e in encs} - {None}
        specimens: dict[str, list[dict[str, Any]]] = defaultdict(list)
        if patients:
            for s in self.store.referencing(conn, "Specimen", "patient", [("Patient", p) for p in patients if p]):
                res = orjson.loads(s.content or "{}")
                pid = engine.ref_id(res.get("subject"), "Patient")
                if pid:
                    specimens[pid].append(res)
        doc_ids = [("DocumentReference", d["id"]) for m in linked.values() for d in m.get("DocumentReference", ())]
        signatures: dict[str, datetime] = {}
        if doc_ids:
            for s in self.store.referencing(conn, "Provenance", "target", doc_ids):
                prov = orjson.loads(s.content or "{}")
                whens = [engine.parse_time(sig.get("when")) for sig in prov.get("signature") or ()
                         if any(t.get("code") in engine.SIGNATURE_TYPES for t in sig.get("type") or ())]
                when = min((w for w in whens if w), default=None)
                if when is None:
                    continue
                for t in prov.get("target") or ():
                    ref = t.get("reference", "")
                    if ref.startswith("DocumentReference/"):
                        key = ref.split("/_history")[0]
                        signatures[key] = min(when, signatures.get(key, when))
        text_types = frozenset(t for r in rules.active if r.kind == "elements" for t in r.types)
        charts = []
        for enc in encs:
            m = linked.get(enc["id"], {})
            pid = engine.ref_id(enc.get("subject"), "Patient")
            charts.append(engine.chart_from_resources(
                enc, [*m.get("DocumentReference", ()), *m.get("Composition", ())], m.get("Procedure", ()),
                m.get("ServiceRequest", ()), specimens.get(pid or "", ()), signatures, text_types=text_types))
        return charts

    def _analyze_batch(self, conn: Connection, ids: list[str], now: datetime) -> AnalysisCounts:
        counts = AnalysisCounts()
        charts = self._load_charts(conn, ids)
        if not charts:
            return counts
        counts.encounters = len(charts)
        version = self.rules.version
        existing: dict[tuple[str, str, str], Any] = {}
        by_encounter: dict[str, list[tuple[tuple[str, str, str], Any]]] = defaultdict(list)
        enc_ids = [c.encounter_id for c in charts]
        for drow in conn.execute(select(DEF).where(in_list(DEF.c.encounter_id, enc_ids))):
            key = (drow.encounter_id, drow.rule_id, drow.subject)
            existing[key] = drow
            by_encounter[drow.encounter_id].append((key, drow))
        # The chart rows of the batch are replaced in two statements (one per chart cost more than the
        # analysis itself).
        conn.execute(delete(CHART).where(in_list(CHART.c.encounter_id, enc_ids)))
        insert_rows(conn, CHART, [
            {"encounter_id": c.encounter_id, "patient_id": c.patient_id, "encounter_class": c.cls,
             "service": c.service[:200], "attending_id": c.attending, "admitted_at": c.admitted,
             "discharged_at": c.discharged, "analysed_at": now, "rules_version": version} for c in charts])
        inserts: list[dict[str, Any]] = []
        changed: list[tuple[Any, dict[str, Any]]] = []  # (stored row, new values)
        for chart in charts:
            seen: set[tuple[str, str, str]] = set()
            for f in engine.evaluate(chart, self.rules):
                key = (chart.encounter_id, f.rule_id, f.subject)
                seen.add(key)
                row = existing.get(key)
                if row is None:
                    late = f.satisfied_at is not None
                    inserts.append({
                        "id": _time_ordered_id(), "encounter_id": chart.encounter_id, "patient_id": chart.patient_id,
                        "rule_id": f.rule_id, "subject": f.subject, "title": f.title[:300],
                        "document_id": f.document_id, "physician_id": f.physician_id, "due_at": f.due_at,
                        "status": COMPLETED if late else OPEN, "opened_at": min(f.due_at, now) if late else now,
                        "completed_at": f.satisfied_at, "completed_how": (HOW[self._kind(f.rule_id)] + " late") if late else "",
                        "waived_reason": "", "closed_by": None, "response": "", "responded_at": None,
                        "reassigned_by": None, "escalated_at": None, "last_reminded_at": None,
                        "updated_at": now, "rules_version": version})
                    if late:
                        counts.completed += 1
                    else:
                        counts.opened += 1
                    continue
                if row.status != OPEN:
                    continue  # completed and waived deficiencies stay closed
                if f.satisfied_at is not None:
                    when = min(f.satisfied_at, now) if f.satisfied_at > row.opened_at else now
                    changed.append((row, {"status": COMPLETED, "completed_at": when,
                                          "completed_how": HOW[self._kind(f.rule_id)] + " late", "updated_at": now}))
                    counts.completed += 1
                    continue
                vals: dict[str, Any] = {}
                if row.reassigned_by is None and f.physician_id != row.physician_id:
                    vals["physician_id"] = f.physician_id
                if row.due_at != f.due_at:
                    vals["due_at"] = f.due_at
                if row.title != f.title[:300]:
                    vals["title"] = f.title[:300]
                if row.document_id != f.document_id:
                    vals["document_id"] = f.document_id
                if vals:
                    vals["updated_at"] = now
                    changed.append((row, vals))
                    counts.updated += 1
            present = {f"DocumentReference/{d.id}" for d in chart.docs} | {
                f"{a.rtype}/{a.id}" for a in (*chart.procedures, *chart.orders, *chart.specimens)}
            for key, row in by_encounter.get(chart.encounter_id, ()):
                if key not in seen and row.status == OPEN:
                    kind = self._kind(row.rule_id)
                    what = row.subject.split("#", 1)[0]
                    # The procedure, order, specimen or document it was about is gone (entered in
                    # error, deleted): nothing is left to complete.
                    how = HOW.get(kind, "requirement met") if not what or what in present else "no longer required"
                    changed.append((row, {"status": COMPLETED, "completed_at": now,
                                          "completed_how": how, "updated_at": now}))
                    counts.completed += 1
        insert_rows(conn, DEF, inserts)
        for row, vals in changed:
            conn.execute(update(DEF).where(DEF.c.id == row.id).values(**vals))
        # The Tasks are built from the values just written (a row read back would hold the same).
        touched = [_Written(r) for r in inserts] + [_Written({**row._mapping, **vals}) for row, vals in changed]
        if touched:
            self._write_task_rows(conn, touched, SYSTEM)
        return counts

    def _kind(self, rule_id: str) -> str:
        r = self.rules.by_id.get(rule_id)
        return r.kind if r else "document"

    # --- FHIR Task view ----------------------------------------------------------------------------

    def _write_tasks(self, conn: Connection, ids: Sequence[str], principal: Principal, *,
                     action: str = "update") -> None:
        rows: list[Any] = []
        for i in range(0, len(ids), 500):
            rows.extend(conn.execute(select(DEF).where(in_list(DEF.c.id, ids[i:i + 500]))))
        self._write_task_rows(conn, rows, principal, action=action)

    def _write_task_rows(self, conn: Connection, rows: Sequence[Any], principal: Principal, *,
                         action: str = "update") -> None:
        """Write these deficiency rows (as stored) as their FHIR Tasks."""
        tasks = [self.task_resource(r) for r in rows]
        # The server builds these Tasks from typed rows (task_resource); a test validates its output for
        # every status, so they are not validated again one by one (half the cost of a first analysis).
        self.records.ingest(conn, principal, tasks, source="chart completion", audit_action=action, bulk=False,
                            validated=True)

    def task_resource(self, row: Any) -> dict[str, Any]:
        status = {OPEN: "requested", COMPLETED: "completed", WAIVED: "cancelled"}[row.status]
        if row.status == OPEN and row.response:
            status = "rejected"
        business = {OPEN: "open", COMPLETED: "completed", WAIVED: "waived"}[row.status]
        if row.status == COMPLETED and row.completed_at and row.completed_at > row.due_at:
            business = "completed late"
        task: dict[str, Any] = {
            "resourceType": "Task", "id": row.id, "status": status, "intent": "order", "priority": "routine",
            "code": {"coding": [{"system": TASK_CODES, "code": row.rule_id, "display": self.rules.title(row.rule_id)}],
                     "text": row.title},
            "description": row.title,
            "businessStatus": {"text": business},
            "encounter": {"reference": f"Encounter/{row.encounter_id}"},
            "focus": {"reference": f"DocumentReference/{row.document_id}" if row.document_id
                      else f"Encounter/{row.encounter_id}"},
            "authoredOn": fhir_instant(row.opened_at),
            "lastModified": fhir_instant(row.updated_at),
            "restriction": {"period": {"end": fhir_instant(row.due_at)}},
            "requester": {"display": "Health information management"},
        }
        if row.patient_id:
            task["for"] = {"reference": f"Patient/{row.patient_id}"}
        if row.physician_id:
            task["owner"] = {"reference": f"Practitioner/{row.physician_id}"}
        reason = row.waived_reason or row.response
        if reason:
            task["statusReason"] = {"text": reason[:1000]}
        if row.completed_at:
            task["executionPeriod"] = {"start": fhir_instant(row.opened_at),
                                       "end": fhir_instant(row.completed_at)}
        return task

    # --- batch runs ---------------------------------------------------------------------------------

    def encounter_ids(self, conn: Connection) -> list[str]:
        return [r[0] for r in conn.execute(select(RES.c.id).where(RES.c.resource_type == "Encounter",
                                                                   RES.c.deleted.is_(False)).order_by(RES.c.id))]

    def analyze(self, principal: Principal, *, since: datetime | None = None, until: datetime | None = None,
                progress: Callable[[int, int], None] | None = None, now: datetime | None = None) -> dict[str, Any]:
        """Analyse every encounter (discharged in [since, until) when given), in batches of their own
        transactions; returns the counts the CLI prints with --json."""
        with self.db.read() as conn:
            self.records.authorize(conn, principal, Action.UPDATE, "Task", None)
            ids = self.encounter_ids(conn)
        total = AnalysisCounts()
        done = 0
        for i in range(0, len(ids), BATCH):
            chunk = ids[i:i + BATCH]
            if since or until:
                chunk = self._discharged_between(chunk, since, until)
            if chunk:
                with self.db.begin() as conn:
                    total.add(self.analyze_encounters(conn, chunk, now=now))
                    conn.execute(delete(PENDING).where(in_list(PENDING.c.encounter_id, chunk)))
            done += len(ids[i:i + BATCH])
            if progress:
                progress(done, len(ids))
        with self.db.begin() as conn:
            audit.record(conn, principal, "completion.analyze", "success", resource_type="Task",
                         detail=f"{total.encounters} encounters analysed; {total.opened} opened, "
                                f"{total.completed} completed")
            return self.summary(conn, total)

    def _discharged_between(self, ids: list[str], since: datetime | None, until: datetime | None) -> list[str]:
        out = []
        with self.db.read() as conn:
            for s in self.store.read_many(conn, [("Encounter", e) for e in ids]):
                end = engine.parse_time((orjson.loads(s.content or "{}").get("period") or {}).get("end"))
                if end is None or (since and end < since) or (until and end >= until):
                    continue
                out.append(s.id)
        return out

    def analyze_pending(self, principal: Principal, *, progress: Callable[[int, int], None] | None = None) -> AnalysisCounts:
        """Analyse the encounters that bulk imports queued."""
        with self.db.read() as conn:
            self.records.authorize(conn, principal, Action.UPDATE, "Task", None)
            ids = [r[0] for r in conn.execute(select(PENDING.c.encounter_id).order_by(PENDING.c.encounter_id))]
        total = AnalysisCounts()
        if not ids:
            return total
        for i in range(0, len(ids), BATCH):
            chunk = ids[i:i + BATCH]
            with self.db.begin() as conn:
                total.add(self.analyze_encounters(conn, chunk))
                conn.execute(delete(PENDING).where(in_list(PENDING.c.encounter_id, chunk)))
            if progress:
                progress(min(i + BATCH, len(ids)), len(ids))
        with self.db.begin() as conn:
            audit.record(conn, principal, "completion.analyze", "success", resource_type="Task",
                         detail=f"queued charts: {total.encounters} encounters analysed")
        return total

    def summary(self, conn: Connection, counts: AnalysisCounts | None = None) -> dict[str, Any]:
        by_rule: dict[str, dict[str, int]] = {}
        for rule_id, status, n in conn.execute(select(DEF.c.rule_id, DEF.c.status, func.count())
                                               .group_by(DEF.c.rule_id, DEF.c.status)):
            by_rule.setdefault(rule_id, {OPEN: 0, COMPLETED: 0, WAIVED: 0})[status] = int(n)
        totals = {s: sum(v[s] for v in by_rule.values()) for s in (OPEN, COMPLETED, WAIVED)}
        charts = int(conn.execute(select(func.count()).select_from(CHART)).scalar_one())
        return {"rules_version": self.rules.version, "encounters_analysed": counts.encounters if counts else charts,
                "charts": charts, "opened": counts.opened if counts else None,
                "completed_now": counts.completed if counts else None,
                "deficiencies": totals, "by_rule": dict(sorted(by_rule.items()))}

    # ============================================================================================
    # Reading deficiencies

    def _rows(self, conn: Connection, where: list[Any], *, limit: int | None = None, offset: int = 0,
              order: Any = None) -> list[Deficiency]:
        stmt = (select(DEF, CHART.c.encounter_class, CHART.c.service, CHART.c.discharged_at)
                .select_from(DEF.outerjoin(CHART, CHART.c.encounter_id == DEF.c.encounter_id))
                .where(*where).order_by(*(order if order is not None else (DEF.c.due_at, DEF.c.id))))
        if limit is not None:
            stmt = stmt.limit(limit).offset(offset)
        return [self._deficiency(r) for r in conn.execute(stmt)]

    def _deficiency(self, r: Any) -> Deficiency:
        return Deficiency(
            id=r.id, encounter_id=r.encounter_id, patient_id=r.patient_id, rule_id=r.rule_id,
            rule_title=self.rules.title(r.rule_id), subject=r.subject, title=r.title, document_id=r.document_id,
            physician_id=r.physician_id, due_at=r.due_at, status=r.status, opened_at=r.opened_at,
            completed_at=r.completed_at, completed_how=r.completed_how,
            waived_reason=r.waived_reason, response=r.response,
            responded_at=r.responded_at,
            escalated_at=r.escalated_at,
            encounter_class=getattr(r, "encounter_class", "") or "", service=getattr(r, "service", "") or "",
            discharged_at=r.discharged_at)

    def _filters(self, f: QueueFilter, now: datetime, hidden: set[str]) -> list[Any]:
        where: list[Any] = []
        if f.status != "all":
            where.append(DEF.c.status == f.status)
        if f.physician_id:
            where.append(DEF.c.physician_id == f.physician_id)
        if f.encounter_class:
            where.append(CHART.c.encounter_class == f.encounter_class)
        if f.rule_id:
            where.append(DEF.c.rule_id == f.rule_id)
        if f.service:
            where.append(CHART.c.service == f.service)
        if f.answered is True:
            where.append(DEF.c.response != "")
        elif f.answered is False:
            where.append(DEF.c.response == "")
        if f.older_than_days:
            where.append(CHART.c.discharged_at < now - timedelta(days=f.older_than_days))
        if hidden:
            where.append(or_(DEF.c.patient_id.is_(None), DEF.c.patient_id.not_in(sorted(hidden))))
        return where

    def queue(self, principal: Principal, f: QueueFilter | None = None, *, now: datetime | None = None) -> QueuePage:
        """The HIM technician's queue: deficiencies (open by default), oldest due first. Restricted
        patients the user may not see are left out of rows and counts; each patient shown is audited."""
        f = f or QueueFilter()
        now = now or datetime.now(UTC)
        if f.limit < 1 or f.limit > 500:
            raise CompletionError(400, "limit must be between 1 and 500.")
        with self.db.begin() as conn:
            self.records.authorize(conn, principal, Action.SEARCH, "Task", None)
            hidden = policy.hidden_patients(conn, principal)
            where = self._filters(f, now, hidden)
            base = select(DEF.c.id, DEF.c.encounter_id).select_from(
                DEF.outerjoin(CHART, CHART.c.encounter_id == DEF.c.encounter_id)).where(*where).subquery()
            total, charts = conn.execute(select(func.count(), func.count(func.distinct(base.c.encounter_id)))).one()
            rows = self._rows(conn, where, limit=f.limit, offset=f.offset)
            page = QueuePage(rows, int(total), int(charts))
            page.patients = self._patient_labels(conn, {r.patient_id for r in rows if r.patient_id})
            page.physicians = self.physician_names(conn, {r.physician_id for r in rows if r.physician_id})
            self._audit_rows(conn, principal, "search", rows, "chart completion queue")
            return page

    def deficiency(self, principal: Principal, deficiency_id: str) -> Deficiency:
        with self.db.begin() as conn:
            d = self._one(conn, principal, deficiency_id, Action.READ)
            self.records.audit(conn, principal, Action.READ, resource_type="Task", resource_id=d.id,
                               patient_id=d.patient_id)
            return d

    def _one(self, conn: Connection, principal: Principal, deficiency_id: str, action: Action) -> Deficiency:
        rows = self._rows(conn, [DEF.c.id == deficiency_id]) if _fhir_id_ok(deficiency_id) else []
        if not rows:
            self.records.authorize(conn, principal, action, "Task", None)
            raise CompletionError(404, f"There is no deficiency {deficiency_id[:64]!r}; it may have been "
                                  "removed. Reload the queue.", code="not-found")
        d = rows[0]
        self.records.authorize(conn, principal, action, "Task", d.patient_id, d.id)
        return d

    def counts(self, principal: Principal, *, now: datetime | None = None) -> dict[str, int]:
        """What is waiting, for home pages: open deficiencies, incomplete charts, delinquent charts,
        answered by physicians (technician) or the physician's own open deficiencies."""
        now = now or datetime.now(UTC)
        limit = now - timedelta(days=self.rules.delinquency_days)
        with self.db.begin() as conn:
            self.records.authorize(conn, principal, Action.SEARCH, "Task", None)
            hidden = policy.hidden_patients(conn, principal)
            vis = [or_(DEF.c.patient_id.is_(None), DEF.c.patient_id.not_in(sorted(hidden)))] if hidden else []
            open_ = [DEF.c.status == OPEN, *vis]
            j = DEF.outerjoin(CHART, CHART.c.encounter_id == DEF.c.encounter_id)
            n, charts = conn.execute(select(func.count(), func.count(func.distinct(DEF.c.encounter_id)))
                                     .where(*open_)).one()
            delinquent = conn.execute(select(func.count(func.distinct(DEF.c.encounter_id))).select_from(j)
                                      .where(*open_, CHART.c.discharged_at < limit)).scalar_one()
            answered = conn.execute(select(func.count()).where(*open_, DEF.c.response != "")).scalar_one()
            mine = 0
            if principal.practitioner_id:
                mine = conn.execute(select(func.count()).where(*open_, DEF.c.physician_id == principal.practitioner_id)
                                    ).scalar_one()
            self.records.audit(conn, principal, Action.SEARCH, resource_type="Task", detail="completion counts")
            return {"open": int(n), "charts": int(charts), "delinquent_charts": int(delinquent),
                    "answered": int(answered), "mine": int(mine)}

    def breakdown(self, principal: Principal, *, now: datetime | None = None,
                  ages: Sequence[int] = (7, 14, 30, 60)) -> dict[str, Any]:
        """Open deficiencies counted by physician, encounter class, rule and service, and how many
        charts were discharged more than N days ago: the technician queue's filters and summary.
        Aggregate counts only; restricted patients the user may not see are left out."""
        now = now or datetime.now(UTC)
        with self.db.begin() as conn:
            self.records.authorize(conn, principal, Action.SEARCH, "Task", None)
            hidden = policy.hidden_patients(conn, principal)
            where: list[Any] = [DEF.c.status == OPEN]
            if hidden:
                where.append(or_(DEF.c.patient_id.is_(None), DEF.c.patient_id.not_in(sorted(hidden))))
            j = DEF.outerjoin(CHART, CHART.c.encounter_id == DEF.c.encounter_id)
            out: dict[str, Any] = {}
            for key, col in (("physician", DEF.c.physician_id), ("class", CHART.c.encounter_class),
                             ("rule", DEF.c.rule_id), ("service", CHART.c.service)):
                rows = conn.execute(select(col, func.count()).select_from(j).where(*where).group_by(col))
                out[key] = sorted(((v or "", int(n)) for v, n in rows), key=lambda kv: (-kv[1], kv[0]))
            out["older_than"] = [
                (days, int(conn.execute(select(func.count()).select_from(j).where(
                    *where, CHART.c.discharged_at < now - timedelta(days=days))).scalar_one()))
                for days in ages]
            out["physician_names"] = self.physician_names(conn, {p for p, _ in out["physician"] if p})
            self.records.audit(conn, principal, Action.SEARCH, resource_type="Task",
                               detail="completion queue breakdown (aggregate counts)")
            return out

    def _patient_labels(self, conn: Connection, pids: set[str]) -> dict[str, str]:
        out = {}
        for s in self.store.read_many(conn, [("Patient", p) for p in pids]):
            p = s.resource()
            name = (p.get("name") or [{}])[0]
            label = " ".join([*name.get("given", [])[:1], name.get("family", "")]).strip() or s.id
            mrn = next((i.get("value") for i in p.get("identifier") or () if i.get("value")), "")
            out[s.id] = f"{label} ({mrn})" if mrn else label
        return out

    def physician_names(self, conn: Connection, ids: set[str]) -> dict[str, str]:
        out = {}
        for s in self.store.read_many(conn, [("Practitioner", p) for p in ids if p]):
            p = s.resource()
            name = (p.get("name") or [{}])[0]
            text = name.get("text") or " ".join([*name.get("prefix", []), *name.get("given", []), name.get("family", "")])
            out[s.id] = text.strip() or s.id
        return out

    def _audit_rows(self, conn: Connection, principal: Principal, action: str, rows: Sequence[Deficiency],
                    detail: str) -> None:
        by_patient = Counter(r.patient_id for r in rows)
        if not by_patient:
            self.records.audit(conn, principal, action, resource_type="Task", detail=detail + ": nothing shown")
        for pid, n in by_patient.items():
            self.records.audit(conn, principal, action, resource_type="Task", patient_id=pid,
                               detail=f"{detail}: {n} deficiencies shown")

    # ============================================================================================
    # Technician actions

    def waive(self, principal: Principal, ids: Sequence[str], reason: str) -> list[Deficiency]:
        """Waive open deficiencies with a reason (bulk). All or nothing: one that cannot be waived
        (closed already, unknown, not allowed) fails the whole request and changes nothing."""
        reason = (reason or "").strip()
        if len(reason) < 5:
            raise CompletionError(422, "reason: say why the deficiency is waived (at least 5 characters), e.g. "
                                  "\"physician deceased\" or \"document filed on paper\".", code="required")
        if not ids:
            raise CompletionError(422, "Choose at least one deficiency to waive.", code="required")
        return self._close(principal, ids, {"status": WAIVED, "waived_reason": reason[:1000],
                                            "completed_how": "waived"}, "completion.waive", reason)

    def _close(self, principal: Principal, ids: Sequence[str], values: dict[str, Any], action: str,
               detail: str) -> list[Deficiency]:
        now = datetime.now(UTC)
        with self.db.begin() as conn:
            _require_him(conn, principal, action)
            rows = [self._one(conn, principal, i, Action.UPDATE) for i in dict.fromkeys(ids)]
            for d in rows:
                if d.status != OPEN:
                    raise CompletionError(409, f"Deficiency {d.id[:8]} is already {d.status}; only open "
                                          "deficiencies can be changed. Reload the queue.", code="conflict")
            for d in rows:
                conn.execute(update(DEF).where(DEF.c.id == d.id, DEF.c.status == OPEN)
                             .values(completed_at=now, closed_by=principal.user_id, updated_at=now, **values))
                self.records.audit(conn, principal, action, resource_type="Task", resource_id=d.id,
                                   patient_id=d.patient_id, detail=detail[:200])
            self._write_tasks(conn, [d.id for d in rows], principal)
            return self._rows(conn, [DEF.c.id.in_([d.id for d in rows])])

    def reassign(self, principal: Principal, ids: Sequence[str], practitioner_id: str) -> list[Deficiency]:
        """Give open deficiencies to another physician (bulk); later analyses keep the choice."""
        practitioner_id = (practitioner_id or "").strip().removeprefix("Practitioner/")
        if not _fhir_id_ok(practitioner_id):
            raise CompletionError(422, "physician: choose the physician to reassign to.", code="required")
        if not ids:
            raise CompletionError(422, "Choose at least one deficiency to reassign.", code="required")
        now = datetime.now(UTC)
        with self.db.begin() as conn:
            _require_him(conn, principal, "completion.reassign")
            try:
                doc = self.store.read(conn, "Practitioner", practitioner_id)
            except FhirError:
                raise _refuse(conn, principal, "completion.reassign", "Practitioner", practitioner_id, None, 422,
                              f"physician: there is no practitioner {practitioner_id!r}; pick one from the list.",
                              "unknown physician") from None
            rows = [self._one(conn, principal, i, Action.UPDATE) for i in dict.fromkeys(ids)]
            for d in rows:
                if d.status != OPEN:
                    raise CompletionError(409, f"Deficiency {d.id[:8]} is already {d.status}; only open "
                                          "deficiencies can be reassigned.", code="conflict")
            for d in rows:
                conn.execute(update(DEF).where(DEF.c.id == d.id).values(
                    physician_id=doc.id, reassigned_by=principal.user_id, updated_at=now, response="",
                    responded_at=None, last_reminded_at=None))
                self.records.audit(conn, principal, "completion.reassign", resource_type="Task", resource_id=d.id,
                                   patient_id=d.patient_id, detail=f"{d.physician_id or '-'} -> {doc.id}")
            self._write_tasks(conn, [d.id for d in rows], principal)
            return self._rows(conn, [DEF.c.id.in_([d.id for d in rows])])

    # ============================================================================================
    # Physician

    def _practitioner(self, principal: Principal) -> str:
        if not principal.practitioner_id:
            raise CompletionError(403, "Your account is not linked to a practitioner in the record, so it has no "
                                  "deficiencies or signature. Ask an administrator to run "
                                  "`chartkeeper user link-practitioner`.", code="forbidden")
        return principal.practitioner_id

    def inbox(self, principal: Principal, *, include_closed_days: int = 0) -> QueuePage:
        """The physician's own deficiencies: open ones, oldest due first (and those closed in the
        last ``include_closed_days`` days)."""
        me = self._practitioner(principal)
        with self.db.begin() as conn:
            self.records.authorize(conn, principal, Action.SEARCH, "Task", None)
            hidden = policy.hidden_patients(conn, principal)
            where: list[Any] = [DEF.c.physician_id == me]
            if include_closed_days:
                since = datetime.now(UTC) - timedelta(days=include_closed_days)
                where.append(or_(DEF.c.status == OPEN, DEF.c.completed_at >= since))
            else:
                where.append(DEF.c.status == OPEN)
            if hidden:
                where.append(or_(DEF.c.patient_id.is_(None), DEF.c.patient_id.not_in(sorted(hidden))))
            rows = self._rows(conn, where, order=(DEF.c.status.desc(), DEF.c.due_at, DEF.c.id))
            page = QueuePage(rows, len(rows), len({r.encounter_id for r in rows}))
            page.patients = self._patient_labels(conn, {r.patient_id for r in rows if r.patient_id})
            page.physicians = self.physician_names(conn, {me})
            self._audit_rows(conn, principal, "search", rows, "physician inbox")
            return page

    def respond(self, principal: Principal, deficiency_id: str, answer: str) -> Deficiency:
        """The physician says why a deficiency cannot be completed; it goes back to HIM (still open,
        shown as answered) to waive or reassign."""
        me = self._practitioner(principal)
        answer = (answer or "").strip()
        if len(answer) < 5:
            raise CompletionError(422, "answer: say why this cannot be completed (at least 5 characters), e.g. "
                                  "\"not my patient: I was not the attending\".", code="required")
        now = datetime.now(UTC)
        with self.db.begin() as conn:
            d = self._one(conn, principal, deficiency_id, Action.UPDATE)
            if d.physician_id != me:
                raise _refuse(conn, principal, "completion.respond", "Task", d.id, d.patient_id, 403,
                              "This deficiency is assigned to another physician; you can only answer your own.",
                              "not the assigned physician")
            if d.status != OPEN:
                raise CompletionError(409, f"This deficiency is already {d.status}.", code="conflict")
            conn.execute(update(DEF).where(DEF.c.id == d.id).values(response=answer[:1000], responded_at=now,
                                                                    updated_at=now))
            self.records.audit(conn, principal, "completion.respond", resource_type="Task", resource_id=d.id,
                               patient_id=d.patient_id, detail="physician answered")
            self._write_tasks(conn, [d.id], principal)
            return self._rows(conn, [DEF.c.id == d.id])[0]

    def sign(self, principal: Principal, document_id: str, *, now: datetime | None = None) -> dict[str, Any]:
        """Authenticate a document: only its author, or the encounter's attending as co-signer, may.
        Records who and when (docStatus final, authenticator, a Provenance with the signature), locks
        the document, and closes the signature deficiency through re-analysis."""
        me = self._practitioner(principal)
        now = now or datetime.now(UTC)
        if not _fhir_id_ok(document_id):
            raise CompletionError(404, "There is no such document.", code="not-found")
        with self.db.begin() as conn:
            try:
                stored = self.store.read(conn, "DocumentReference", document_id)
            except FhirError as err:
                self.records.authorize(conn, principal, Action.SIGN, "DocumentReference", None, document_id)
                raise CompletionError(err.status, f"There is no document {document_id!r} to sign "
                                      "(it may have been removed).", code="not-found") from None
            self.records.authorize(conn, principal, Action.SIGN, "DocumentReference", stored.patient_id, document_id)
            doc = stored.resource()
            authors = [engine.ref_id(a, "Practitioner") for a in doc.get("author") or ()]
            enc_ids = [engine.ref_id(e, "Encounter") for e in (doc.get("context") or {}).get("encounter") or ()]
            attendings = set()
            for s in self.store.read_many(conn, [("Encounter", e) for e in enc_ids if e]):
                att = engine.attending_of(s.resource())
                if att:
                    attendings.add(att)
            if me not in authors and me not in attendings:
                raise _refuse(conn, principal, Action.SIGN, "DocumentReference", document_id, stored.patient_id, 403,
                              "You cannot sign this document: only its author or the attending physician of its "
                              "encounter (as co-signer) may authenticate it.", "not the author or attending co-signer")
            if is_signed_document(doc) or doc.get("status") != "current":
                raise _refuse(conn, principal, Action.SIGN, "DocumentReference", document_id, stored.patient_id, 409,
                              "This document is already signed (or no longer current); to change it, write an "
                              "addendum.", "already signed")
            doc["docStatus"] = "final"
            doc["authenticator"] = {"reference": f"Practitioner/{me}"}
            doc.pop("meta", None)
            res = self.store.write_many(conn, [(doc, document_id, stored.version_id)], author=principal.user_id,
                                        mode="update")[0]
            statement = (f"Electronically signed by {principal.display_name or principal.username} "
                         f"({principal.user_id}) at {fhir_instant(now)}")
            prov: dict[str, Any] = {
                "resourceType": "Provenance", "id": new_id(),
                "target": [{"reference": f"DocumentReference/{document_id}/_history/{res.version_id}"},
                           *([{"reference": f"Patient/{stored.patient_id}"}] if stored.patient_id else [])],
                "recorded": fhir_instant(now),
                "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DocumentCompletion",
                                         "code": "AU", "display": "authenticated"}]},
                "agent": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                                "code": "verifier", "display": "Verifier"}]},
                           "who": {"reference": f"Practitioner/{me}"}}],
                "signature": [{"type": [SIGNATURE_TYPE if me in authors else COSIGNATURE_TYPE], "when": fhir_instant(now),
                               "who": {"reference": f"Practitioner/{me}"}, "sigFormat": "text/plain",
                               "data": base64.b64encode(statement.encode()).decode()}],
            }
            pres = self.store.write_many(conn, [(prov, prov["id"], None)], author=principal.user_id, mode="create")[0]
            self.records.audit(conn, principal, Action.SIGN, resource_type="DocumentReference", resource_id=document_id,
                               patient_id=stored.patient_id, detail=f"signed version {res.version_id}"
                               + ("" if me in authors else " as co-signer"))
            self.records.notify(conn, [res, pres])
            return {"document": res.resource(), "provenance": pres.resource()}

    # ============================================================================================
    # Reminders and escalation

    def send_reminders(self, principal: Principal, *, now: datetime | None = None, sender: Any = None) -> list[dict[str, Any]]:
        """One reminder per physician with open deficiencies not reminded within the rule file's
        interval; one escalation per newly delinquent deficiency batch. Every notification is stored
        (shown in the UI) and handed to the sender (e-mail when SMTP is configured)."""
        from chartkeeper.completion import notify

        now = now or datetime.now(UTC)
        sender = sender or notify.configured_sender()
        every = timedelta(days=self.rules.reminder_every_days)
        delinquent_before = now - timedelta(days=self.rules.delinquency_days)
        made: list[dict[str, Any]] = []
        with self.db.begin() as conn:
            self.records.authorize(conn, principal, Action.UPDATE, "Task", None)
            _require_him(conn, principal, "completion.remind")
            rows = self._rows(conn, [DEF.c.status == OPEN], order=(DEF.c.physician_id, DEF.c.due_at))
            raw = {r.id: r for r in conn.execute(select(DEF.c.id, DEF.c.last_reminded_at).where(DEF.c.status == OPEN))}
            by_doc: dict[str | None, list[Deficiency]] = defaultdict(list)
            for d in rows:
                by_doc[d.physician_id].append(d)
            names = self.physician_names(conn, {p for p in by_doc if p})
            emails = self._emails(conn, {p for p in by_doc if p})
            for pid, items in sorted(by_doc.items(), key=lambda kv: kv[0] or ""):
                if pid is None:
                    continue
                due_for = [d for d in items if raw[d.id].last_reminded_at is None
                           or raw[d.id].last_reminded_at <= now - every]
                if not due_for:
                    continue
                overdue = sum(1 for d in items if d.overdue(now))
                subject = (f"{len(items)} incomplete chart item{'s' if len(items) != 1 else ''} waiting for "
                           "your signature or documentation")
                body = notify.reminder_body(names.get(pid, pid), items, overdue, now)
                made.append(self._notification(conn, "reminder", pid, emails.get(pid, ""), subject, body, len(items), now))
                conn.execute(update(DEF).where(DEF.c.id.in_([d.id for d in items])).values(last_reminded_at=now))
            newly = [d for d in rows if d.escalated_at is None and (d.discharged_at or d.opened_at) < delinquent_before]
            if newly:
                by_phys = Counter(names.get(d.physician_id or "", d.physician_id or "unassigned") for d in newly)
                subject = f"{len({d.encounter_id for d in newly})} charts became delinquent ({len(newly)} deficiencies)"
                body = notify.escalation_body(by_phys, self.rules.delinquency_days, now)
                for to in self.rules.escalate_to or ("",):
                    made.append(self._notification(conn, "escalation", None, to, subject, body, len(newly), now))
                ids = [d.id for d in newly]
                for i in range(0, len(ids), 500):
                    conn.execute(update(DEF).where(DEF.c.id.in_(ids[i:i + 500])).values(escalated_at=now))
            audit.record(conn, principal, "completion.remind", "success", resource_type="Task",
                         detail=f"{sum(1 for m in made if m['kind'] == 'reminder')} reminders, "
                                f"{sum(1 for m in made if m['kind'] == 'escalation')} escalations")
        # Deliver after the commit: a mail server that is down must not undo the record of the reminder.
        for m in made:
            if m["recipient"] and sender is not None:
                err = sender.send(m["recipient"], m["subject"], m["body"])
                with self.db.begin() as conn:
                    conn.execute(update(NOTE).where(NOTE.c.id == m["id"]).values(
                        channel="email", sent_at=None if err else datetime.now(UTC), error=err or ""))
                m["error"] = err or ""
        return made

    def _notification(self, conn: Connection, kind: str, physician_id: str | None, recipient: str, subject: str,
                      body: str, n: int, now: datetime) -> dict[str, Any]:
        values = {"kind": kind, "physician_id": physician_id, "recipient": recipient, "subject": subject[:300],
                  "body": body, "deficiencies": n, "created_at": now, "channel": "inbox", "sent_at": None, "error": ""}
        nid = conn.execute(insert(NOTE).values(**values).returning(NOTE.c.id)).scalar_one()
        return {"id": nid, **values}

    def _emails(self, conn: Connection, ids: set[str]) -> dict[str, str]:
        out = {}
        for s in self.store.read_many(conn, [("Practitioner", p) for p in ids]):
            for t in s.resource().get("telecom") or ():
                if t.get("system") == "email" and t.get("value"):
                    out[s.id] = t["value"]
                    break
        return out

    def notifications(self, principal: Principal, *, physician_only: bool = False, limit: int = 50) -> list[dict[str, Any]]:
        with self.db.begin() as conn:
            self.records.authorize(conn, principal, Action.READ, "Task", None)
            stmt = select(NOTE).order_by(NOTE.c.created_at.desc(), NOTE.c.id.desc()).limit(limit)
            if physician_only:
                stmt = stmt.where(NOTE.c.physician_id == self._practitioner(principal))
            out = [dict(r._mapping) for r in conn.execute(stmt)]
            self.records.audit(conn, principal, Action.SEARCH, resource_type="Task", detail=f"{len(out)} notifications listed")
            return out

    # ============================================================================================
    # Delinquency

    def delinquency(self, principal: Principal, *, months: int = 12, now: datetime | None = None) -> Any:
        from chartkeeper.completion import report

        now = now or datetime.now(UTC)
        if not 1 <= months <= 120:
            raise CompletionError(422, "months must be between 1 and 120.")
        with self.db.begin() as conn:
            self.records.authorize(conn, principal, Action.SEARCH, "Task", None)
            result = report.delinquency(conn, self, months=months, now=now)
            names = self.physician_names(conn, {r["physician_id"] for r in result.by_physician if r["physician_id"]})
            for r in result.by_physician:
                r["physician"] = names.get(r["physician_id"] or "", r["physician_id"] or "unassigned")
            self.records.audit(conn, principal, Action.SEARCH, resource_type="Task",
                               detail=f"delinquency report, {months} months (aggregate counts, no patient rows)")
            return result

    def practitioners(self, principal: Principal) -> list[tuple[str, str]]:
        """(id, name) of every practitioner, for the reassign list."""
        with self.db.begin() as conn:
            self.records.authorize(conn, principal, Action.SEARCH, "Practitioner", None)
            ids = [r[0] for r in conn.execute(select(RES.c.id).where(RES.c.resource_type == "Practitioner",
                                                                     RES.c.deleted.is_(False)))]
            names = self.physician_names(conn, set(ids))
            return sorted(names.items(), key=lambda kv: kv[1])


# Who manages the completion queue (waive, reassign, send reminders): the HIM department. The policy
# matrix also lets physicians and coders update workflow data (their own tasks and queries); a waiver
# or a reassignment is HIM's decision, never the physician's about their own deficiency.
HIM_ROLES = frozenset({"him_technician"})


def _require_him(conn: Connection, principal: Principal, action: str) -> None:
    if principal.is_system or principal.roles & HIM_ROLES:
        return
    raise _refuse(conn, principal, action, "Task", None, None, 403,
                  "Only the HIM department (role him_technician) can do this to deficiencies.", "not HIM staff")


def _refuse(conn: Connection, principal: Principal, action: str, rtype: str, rid: str | None, pid: str | None,
            status: int, message: str, reason: str) -> CompletionError:
    """A refused request: audited (kept though the transaction rolls back), nothing changed."""
    audit.record_detached(conn, principal, str(action), "denied" if status == 403 else "failure",
                          resource_type=rtype, resource_id=rid, patient_id=pid, detail=reason)
    return CompletionError(status, message, code="forbidden" if status == 403 else
                           "conflict" if status == 409 else "invalid")


# ================================================================================================
# The write listener: re-analyse a chart when its encounter or documents change


def encounters_touched(conn: Connection, store: FhirStore, changes: Sequence[Change]) -> set[str]:
    out: set[str] = set()
    for ch in changes:
        if ch.resource_type not in CHART_TYPES:
            continue
        if ch.resource_type == "Encounter":
            out.add(ch.id)
            continue
        if not ch.content:
            continue
        res = orjson.loads(ch.content)
        rt = ch.resource_type
        if rt == "DocumentReference":
            for ref in (res.get("context") or {}).get("encounter") or ():
                eid = engine.ref_id(ref, "Encounter")
                if eid:
                    out.add(eid)
        elif rt in ("Composition", "Procedure", "ServiceRequest"):
            eid = engine.ref_id(res.get("encounter"), "Encounter")
            if eid:
                out.add(eid)
        elif rt == "Provenance":
            docs = [engine.ref_id(t, "DocumentReference") for t in res.get("target") or ()]
            for s in store.read_many(conn, [("DocumentReference", d) for d in docs if d]):
                for ref in (s.resource().get("context") or {}).get("encounter") or ():
                    eid = engine.ref_id(ref, "Encounter")
                    if eid:
                        out.add(eid)
        elif rt == "Specimen" and ch.patient_id:
            at = engine.parse_time((res.get("collection") or {}).get("collectedDateTime"))
            for s in store.referencing(conn, "Encounter", "patient", [("Patient", ch.patient_id)]):
                period = s.resource().get("period") or {}
                start, end = engine.parse_time(period.get("start")), engine.parse_time(period.get("end"))
                if at and start and start - engine.SLACK <= at and (end is None or at <= end + engine.SLACK):
                    out.add(s.id)
    return out


_LISTENER_SERVICE: CompletionService | None = None


def check_encounters_exist(conn: Connection, store: FhirStore, changes: Sequence[Change]) -> None:
    """A document written interactively must belong to an encounter in the record: a
    DocumentReference whose context.encounter names no (current) Encounter is refused with a 422
    naming the field, and the whole write rolls back. (Bulk imports are exempt: a source system's
    batches may bring an encounter after its documents.)"""
    wanted: dict[str, str] = {}
    for ch in changes:
        if ch.resource_type != "DocumentReference" or ch.outcome == "deleted" or not ch.content:
            continue
        for ref in (orjson.loads(ch.content).get("context") or {}).get("encounter") or ():
            eid = engine.ref_id(ref, "Encounter")
            if eid:
                wanted.setdefault(eid, ch.id)
    if not wanted:
        return
    found = {s.id for s in store.read_many(conn, [("Encounter", e) for e in wanted])}
    missing = [e for e in wanted if e not in found]
    if missing:
        raise CompletionError(422, issues=[Issue(
            f"context.encounter: Encounter/{e} does not exist (or was deleted); a document must belong to an "
            "encounter in the record. Correct the reference, or create the encounter first.",
            code="invalid", path="DocumentReference.context.encounter") for e in missing])


def _listener(conn: Connection, changes: list[Change], bulk: bool) -> None:
    if not any(c.resource_type in CHART_TYPES for c in changes):
        return
    store = FhirStore()
    if not bulk:
        check_encounters_exist(conn, store, changes)
    touched = encounters_touched(conn, store, changes)
    if not touched:
        return
    if bulk:
        have = set()
        ids = sorted(touched)
        for i in range(0, len(ids), 500):
            have |= {r[0] for r in conn.execute(select(PENDING.c.encounter_id).where(
                PENDING.c.encounter_id.in_(ids[i:i + 500])))}
        new = [{"encounter_id": e, "queued_at": datetime.now(UTC)} for e in ids if e not in have]
        if new:
            conn.execute(insert(PENDING), new)
        return
    service = _service_for(conn)
    service.analyze_encounters(conn, touched)


def _service_for(conn: Connection) -> CompletionService:
    """The listener's service: the rules the app or CLI loaded at start (else the configured file),
    working only in the writer's transaction."""
    global _LISTENER_SERVICE
    if _LISTENER_SERVICE is None:
        _LISTENER_SERVICE = CompletionService(ListenerDb("completion"), load_rules())  # type: ignore[arg-type]
    return _LISTENER_SERVICE


add_write_listener(_listener)


def reset_listener_rules(rules: RuleSet | None = None) -> None:
    """Use these rules in the write listener (the app and the CLI call this at start, after loading
    and checking the facility's rule file); None: load them again on next use."""
    global _LISTENER_SERVICE
    _LISTENER_SERVICE = None if rules is None else CompletionService(ListenerDb("completion"), rules)  # type: ignore[arg-type]


__all__ = ["AnalysisCounts", "CompletionError", "CompletionService", "Deficiency", "QueueFilter", "QueuePage",
           "reset_listener_rules"]
