"""Deficiency analysis: a chart (one encounter and what belongs to it) against the rule set.

Pure functions over plain values, no database: ``chart_from_resources`` turns FHIR resources into a
:class:`Chart`, ``evaluate`` turns a chart into :class:`Finding` values. The service reconciles
findings with stored deficiencies.

A finding is *open* (``satisfied_at`` is None: something is missing or unsigned) or *satisfied late*
(it arrived after its due time: recorded so that late completion shows in the delinquency report).
What arrived on time yields no finding at all.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from chartkeeper.completion.rules import Rule, RuleSet

ATTENDING_CODES = frozenset({"ATND"})
SIGNATURE_TYPES = frozenset({"1.2.840.10065.1.12.1.1", "1.2.840.10065.1.12.1.5", "1.2.840.10065.1.12.1.6"})
# A document written up to an hour before its procedure/order/specimen time still counts (clock skew
# between systems, notes started before the case).
SLACK = timedelta(hours=1)


@dataclass(frozen=True)
class Doc:
    id: str
    types: frozenset[str]
    date: datetime | None
    authors: tuple[str, ...]  # Practitioner ids
    signed_at: datetime | None  # None: not authenticated
    text: str = ""
    sections: frozenset[str] = frozenset()  # upper-cased Composition section titles
    appends_to: str | None = None  # addendum of this DocumentReference id


@dataclass(frozen=True)
class Act:
    """A surgical procedure, a consult order or a specimen: something that needs its own document."""
    id: str
    rtype: str
    codes: frozenset[str]
    at: datetime | None
    performer: str | None


@dataclass
class Chart:
    encounter_id: str
    patient_id: str | None
    cls: str
    admitted: datetime | None
    discharged: datetime | None
    attending: str | None
    service: str = ""
    expired: bool = False
    docs: list[Doc] = field(default_factory=list)
    procedures: list[Act] = field(default_factory=list)
    orders: list[Act] = field(default_factory=list)
    specimens: list[Act] = field(default_factory=list)

    @property
    def stay_hours(self) -> float | None:
        if self.admitted and self.discharged:
            return (self.discharged - self.admitted).total_seconds() / 3600
        return None


@dataclass(frozen=True)
class Finding:
    rule_id: str
    subject: str  # what within the encounter: "" (the chart), "Procedure/x", "DocumentReference/y#element"
    title: str
    physician_id: str | None
    due_at: datetime
    satisfied_at: datetime | None = None
    document_id: str | None = None


# --------------------------------------------------------------------------------------------------
# FHIR values


def parse_time(value: Any) -> datetime | None:
    """A FHIR date, dateTime or instant as an aware UTC datetime (a date is its midnight UTC)."""
    if not isinstance(value, str) or len(value) < 4:
        return None
    try:
        if len(value) == 4:
            return datetime(int(value), 1, 1, tzinfo=UTC)
        if len(value) == 7:
            return datetime(int(value[:4]), int(value[5:7]), 1, tzinfo=UTC)
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def ref_id(ref: Any, rtype: str) -> str | None:
    if isinstance(ref, dict):
        r = ref.get("reference")
        if isinstance(r, str) and r.startswith(rtype + "/"):
            return r.split("/", 1)[1].split("/_history", 1)[0]
    return None


def codes_of(*concepts: Any) -> frozenset[str]:
    out: set[str] = set()
    for c in concepts:
        for cc in c if isinstance(c, list) else [c]:
            if isinstance(cc, dict):
                for cd in cc.get("coding") or ():
                    if isinstance(cd, dict) and cd.get("code"):
                        out.add(f"{cd.get('system', '')}|{cd['code']}")
    return frozenset(out)


def _period_start(p: Any) -> datetime | None:
    return parse_time(p.get("start")) if isinstance(p, dict) else None


def attending_of(enc: dict[str, Any]) -> str | None:
    first = None
    for part in enc.get("participant") or ():
        pid = ref_id(part.get("individual"), "Practitioner")
        if not pid:
            continue
        first = first or pid
        kinds = {cd.get("code") for t in part.get("type") or () for cd in (t.get("coding") or ())}
        if kinds & ATTENDING_CODES:
            return pid
    return first


def _decode_text(doc: dict[str, Any]) -> str:
    parts = []
    for c in doc.get("content") or ():
        att = c.get("attachment") or {}
        if not str(att.get("contentType", "text/plain")).startswith("text/"):
            continue
        data = att.get("data")
        if isinstance(data, str):
            try:
                parts.append(base64.b64decode(data, validate=False).decode("utf-8", "replace"))
            except (binascii.Error, ValueError):
                continue
    return "\n".join(parts)


def doc_from_resource(res: dict[str, Any], signatures: dict[str, datetime], *,
                      text_types: frozenset[str] = frozenset()) -> Doc | None:
    """A DocumentReference or Composition as a :class:`Doc`; None when it does not count (entered in
    error, superseded)."""
    rtype = res.get("resourceType")
    rid = str(res.get("id"))
    if rtype == "DocumentReference":
        if res.get("status") != "current":
            return None
        authors = tuple(a for a in (ref_id(x, "Practitioner") for x in res.get("author") or ()) if a)
        signed = res.get("docStatus") in (None, "final", "amended") and ref_id(res.get("authenticator"), "Practitioner")
        date = parse_time(res.get("date")) or parse_time((res.get("content") or [{}])[0].get("attachment", {}).get("creation"))
        signed_at = signatures.get(f"DocumentReference/{rid}") or (date if signed else None)
        if signed_at is not None and not signed:
            signed_at = None
        appends = None
        for rel in res.get("relatesTo") or ():
            if rel.get("code") == "appends":
                appends = ref_id(rel.get("target"), "DocumentReference")
        types = codes_of(res.get("type"))
        # The text is decoded only where a rule reads it (or for an addendum, which may carry it).
        text = _decode_text(res) if (types & text_types or (appends and text_types)) else ""
        return Doc(rid, types, date, authors, signed_at, text, frozenset(), appends)
    if rtype == "Composition":
        if res.get("status") not in ("final", "amended", "preliminary"):
            return None
        authors = tuple(a for a in (ref_id(x, "Practitioner") for x in res.get("author") or ()) if a)
        legal = [parse_time(a.get("time")) for a in res.get("attester") or () if a.get("mode") in ("legal", "professional")]
        signed_at = min((t for t in legal if t), default=None) if res.get("status") != "preliminary" else None
        sections = frozenset(str(s.get("title", "")).strip().upper() for s in res.get("section") or () if s.get("title"))
        return Doc(rid, codes_of(res.get("type")), parse_time(res.get("date")), authors, signed_at,
                   "", sections, None)
    return None


def chart_from_resources(encounter: dict[str, Any], docs: Iterable[dict[str, Any]], procedures: Iterable[dict[str, Any]],
                         orders: Iterable[dict[str, Any]], specimens: Iterable[dict[str, Any]],
                         signatures: dict[str, datetime], *, text_types: frozenset[str] = frozenset()) -> Chart:
    period = encounter.get("period") or {}
    cls = encounter.get("class") or {}
    hosp = encounter.get("hospitalization") or {}
    dispo = codes_of(hosp.get("dischargeDisposition"))
    types = encounter.get("serviceType") or (encounter.get("type") or [None])[0] or {}
    service = types.get("text") or next((c.get("display") for c in types.get("coding") or () if c.get("display")), "")
    chart = Chart(
        encounter_id=str(encounter.get("id")), patient_id=ref_id(encounter.get("subject"), "Patient"),
        cls=str(cls.get("code", "")), admitted=parse_time(period.get("start")), discharged=parse_time(period.get("end")),
        attending=attending_of(encounter), service=str(service or ""),
        expired=any(c.endswith("|exp") for c in dispo),
    )
    for d in docs:
        doc = doc_from_resource(d, signatures, text_types=text_types)
        if doc is not None:
            chart.docs.append(doc)
    for p in procedures:
        if p.get("status") in ("entered-in-error", "not-done", "preparation"):
            continue
        at = parse_time(p.get("performedDateTime")) or _period_start(p.get("performedPeriod"))
        performer = next((x for x in (ref_id(pf.get("actor"), "Practitioner") for pf in p.get("performer") or ()) if x), None)
        chart.procedures.append(Act(str(p["id"]), "Procedure", codes_of(p.get("category")), at, performer))
    for o in orders:
        if o.get("status") in ("entered-in-error", "revoked", "draft"):
            continue
        performer = next((x for x in (ref_id(pf, "Practitioner") for pf in o.get("performer") or ()) if x), None)
        chart.orders.append(Act(str(o["id"]), "ServiceRequest", codes_of(o.get("category"), o.get("code")),
                                parse_time(o.get("authoredOn")), performer))
    for s in specimens:
        if s.get("status") == "entered-in-error":
            continue
        coll = s.get("collection") or {}
        at = parse_time(coll.get("collectedDateTime")) or _period_start(coll.get("collectedPeriod"))
        if chart.admitted and at and (at < chart.admitted - SLACK or (chart.discharged and at > chart.discharged + SLACK)):
            continue
        chart.specimens.append(Act(str(s["id"]), "Specimen", codes_of(s.get("type")), at,
                                   ref_id(coll.get("collector"), "Practitioner")))
    return chart


# --------------------------------------------------------------------------------------------------
# Rules


def applies(rule: Rule, chart: Chart) -> bool:
    if not rule.enabled or chart.cls not in rule.classes or chart.discharged is None:
        return False
    stay = chart.stay_hours
    if rule.min_stay_hours is not None and (stay is None or stay < rule.min_stay_hours):
        return False
    return not (rule.max_stay_hours is not None and (stay is None or stay >= rule.max_stay_hours))


def evaluate(chart: Chart, rules: RuleSet) -> list[Finding]:
    out: list[Finding] = []
    for rule in rules.active:
        if applies(rule, chart):
            out.extend(_EVAL[rule.kind](rule, chart))
    return out


def _due(rule: Rule, chart: Chart, at: datetime | None) -> datetime:
    base = {"admission": chart.admitted, "discharge": chart.discharged}.get(rule.anchor, at)
    base = base or at or chart.discharged or chart.admitted or datetime.now(UTC)
    return base + timedelta(hours=rule.within_hours)


def _responsible(rule: Rule, chart: Chart, performer: str | None = None, authors: tuple[str, ...] = ()) -> str | None:
    if rule.responsible == "performer" and performer:
        return performer
    if rule.responsible == "author" and authors:
        return authors[0]
    return chart.attending


def _matching(rule: Rule, chart: Chart) -> list[Doc]:
    docs = [d for d in chart.docs if d.types & rule.types]
    return sorted(docs, key=lambda d: d.date or datetime.max.replace(tzinfo=UTC))


def _finding(rule: Rule, chart: Chart, subject: str, title: str, physician: str | None, due: datetime,
             found: Doc | None) -> Finding | None:
    if found is None:
        return Finding(rule.id, subject, title, physician, due)
    arrived = found.date
    if arrived is not None and arrived > due:
        return Finding(rule.id, subject, title, physician, due, satisfied_at=arrived, document_id=found.id)
    return None


def _eval_document(rule: Rule, chart: Chart) -> list[Finding]:
    docs = _matching(rule, chart)
    out: list[Finding] = []
    if rule.per == "encounter":
        due = _due(rule, chart, None)
        if rule.before_first_procedure:
            starts = [p.at for p in chart.procedures if p.at and p.codes & rule.procedure_categories]
            if starts and min(starts) < due:
                due = min(starts)
        f = _finding(rule, chart, "", rule.title, _responsible(rule, chart), due, docs[0] if docs else None)
        return [f] if f else []
    acts = {"surgical_procedure": [p for p in chart.procedures if p.codes & rule.procedure_categories],
            "consult_order": [o for o in chart.orders if o.codes & rule.order_categories],
            "specimen": chart.specimens}[rule.per]
    unused = list(docs)
    for act in sorted(acts, key=lambda a: (a.at or datetime.min.replace(tzinfo=UTC), a.id)):
        match = next((d for d in unused if d.date is None or act.at is None or d.date >= act.at - SLACK), None)
        if match is not None:
            unused.remove(match)
        label = {"Procedure": "procedure", "ServiceRequest": "consult order", "Specimen": "specimen"}[act.rtype]
        f = _finding(rule, chart, f"{act.rtype}/{act.id}", f"{rule.title} ({label} {act.id[:8]})",
                     _responsible(rule, chart, act.performer), _due(rule, chart, act.at), match)
        if f:
            out.append(f)
    return out


def _eval_authentication(rule: Rule, chart: Chart) -> list[Finding]:
    out = []
    for d in chart.docs:
        if rule.types and not d.types & rule.types:
            continue
        if d.types & rule.exclude_types:
            continue
        due = _due(rule, chart, d.date)
        physician = _responsible(rule, chart, authors=d.authors)
        subject = f"DocumentReference/{d.id}"
        if d.signed_at is None:
            out.append(Finding(rule.id, subject, "Sign document", physician, due, document_id=d.id))
        elif d.signed_at > due:
            out.append(Finding(rule.id, subject, "Sign document", physician, due, satisfied_at=d.signed_at,
                               document_id=d.id))
    return out


def _eval_elements(rule: Rule, chart: Chart) -> list[Finding]:
    out = []
    addenda: dict[str, list[Doc]] = {}
    for d in chart.docs:
        if d.appends_to:
            addenda.setdefault(d.appends_to, []).append(d)
    for d in _matching(rule, chart):
        if d.appends_to:
            continue
        heads = set(d.sections)
        for t in [d, *addenda.get(d.id, ())]:
            for line in t.text.splitlines():
                s = line.strip().rstrip(":").upper()
                if s:
                    heads.add(s)
        due = _due(rule, chart, d.date)
        physician = _responsible(rule, chart, authors=d.authors)
        for name, headings in rule.elements:
            if chart.expired and name in rule.expired_exempt:
                continue
            if not heads.intersection(headings):
                out.append(Finding(rule.id, f"DocumentReference/{d.id}#{name}",
                                   f"Discharge summary lacks {name.replace('_', ' ')}", physician, due, document_id=d.id))
    return out


_EVAL = {"document": _eval_document, "authentication": _eval_authentication, "elements": _eval_elements}
