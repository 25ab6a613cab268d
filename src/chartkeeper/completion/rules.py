"""Chart completion rules: a readable, versioned TOML file per facility, loaded and checked at start.

The defaults ship in ``default_rules.toml``. A facility points ``CHARTKEEPER_COMPLETION_RULES`` at its
own file: a full rule file, or ``extends = "default"`` with ``[overrides.<rule-id>]`` tables that
switch rules off or change their limits. Every problem in a file is reported at once, each as a
sentence naming the rule, the field and the fix (:class:`RuleFileError`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from typing import Any

from chartkeeper import rulefiles

KINDS = ("document", "authentication", "elements")
PER = ("encounter", "surgical_procedure", "consult_order", "specimen")
ANCHORS = {
    "document": ("admission", "discharge", "procedure", "order", "specimen"),
    "authentication": ("document", "discharge"),
    "elements": ("discharge", "document"),
}
PER_ANCHOR = {"surgical_procedure": "procedure", "consult_order": "order", "specimen": "specimen"}
RESPONSIBLE = ("attending", "author", "performer")
CLASSES = ("IMP", "AMB", "EMER", "OBSENC", "SS", "HH", "VR", "PRENC", "ACUTE", "NONAC")
SURGICAL = "http://snomed.info/sct|387713003"
CONSULTATION = "http://snomed.info/sct|11429006"
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_CODE = re.compile(r"^[^|\s]+\|[^|\s]+$")

_COMMON = {"id", "title", "kind", "enabled", "classes", "source", "responsible", "anchor", "within_hours"}
_FIELDS = {
    "document": _COMMON | {"types", "per", "min_stay_hours", "max_stay_hours", "before_first_procedure",
                           "procedure_categories", "order_categories"},
    "authentication": _COMMON | {"types", "exclude_types"},
    "elements": _COMMON | {"types", "elements", "expired_exempt"},
}
_OVERRIDABLE = {"enabled", "within_hours", "title", "classes", "min_stay_hours", "max_stay_hours", "responsible"}
_TOP = {"version", "facility", "extends", "delinquency", "notifications", "rule", "overrides"}


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    kind: str
    classes: frozenset[str]
    anchor: str
    within_hours: float
    responsible: str
    source: str = ""
    enabled: bool = True
    types: frozenset[str] = frozenset()
    exclude_types: frozenset[str] = frozenset()
    per: str = "encounter"
    min_stay_hours: float | None = None
    max_stay_hours: float | None = None
    before_first_procedure: bool = False
    procedure_categories: frozenset[str] = frozenset({SURGICAL})
    order_categories: frozenset[str] = frozenset({CONSULTATION})
    elements: tuple[tuple[str, tuple[str, ...]], ...] = ()
    expired_exempt: frozenset[str] = frozenset()


@dataclass(frozen=True)
class RuleSet:
    version: str
    facility: str
    rules: tuple[Rule, ...]
    delinquency_days: int = 30
    reminder_every_days: int = 3
    escalate_to: tuple[str, ...] = ()
    source: str = "default"
    by_id: dict[str, Rule] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        self.by_id.update({r.id: r for r in self.rules})

    @property
    def active(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.enabled)

    @property
    def classes(self) -> frozenset[str]:
        return frozenset(c for r in self.active for c in r.classes)

    def title(self, rule_id: str) -> str:
        r = self.by_id.get(rule_id)
        return r.title if r else rule_id


class RuleFileError(rulefiles.RuleFileError):
    """A chart completion rule file that cannot be used; ``problems`` lists each one as a sentence."""

    what = "chart completion rule file"


def _default_text() -> str:
    return rulefiles.shipped_text("chartkeeper.completion", "default_rules.toml")


def load_rules(path: str | os.PathLike[str] | None = None) -> RuleSet:
    """The rule set to use: ``path``, else ``CHARTKEEPER_COMPLETION_RULES``, else the defaults."""
    chosen = rulefiles.chosen_file(path, "CHARTKEEPER_COMPLETION_RULES", RuleFileError)
    return parse_rules(*chosen) if chosen else parse_rules(_default_text(), "default")


_DEFAULT: RuleSet | None = None


def default_rules() -> RuleSet:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = parse_rules(_default_text(), "default")
    return _DEFAULT


def parse_rules(text: str, source: str = "<text>") -> RuleSet:
    data = rulefiles.parse_toml(text, source, RuleFileError)
    problems = rulefiles.unknown_keys(data, _TOP)
    base: RuleSet | None = None
    extends = data.get("extends")
    if extends is not None:
        if extends != "default":
            problems.append(f"extends = {extends!r} is not known; the only base is \"default\".")
        else:
            base = default_rules()
    version = data.get("version", base.version if base else None)
    if not isinstance(version, str) or not version.strip():
        problems.append('version is missing: give the rule set a version, e.g. version = "2026.1", so '
                        "every deficiency records which rules found it.")
        version = ""
    facility = str(data.get("facility", base.facility if base else ""))

    delinq = _table(data, "delinquency", problems)
    days = delinq.get("days_after_discharge", base.delinquency_days if base else 30)
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 365:
        problems.append("delinquency.days_after_discharge must be a whole number of days from 1 to 365, "
                        "e.g. 30.")
        days = 30
    notif = _table(data, "notifications", problems)
    every = notif.get("reminder_every_days", base.reminder_every_days if base else 3)
    if not isinstance(every, int) or isinstance(every, bool) or not 1 <= every <= 90:
        problems.append("notifications.reminder_every_days must be a whole number of days from 1 to 90, e.g. 3.")
        every = 3
    escalate = notif.get("escalate_to", list(base.escalate_to) if base else [])
    if not isinstance(escalate, list) or not all(isinstance(a, str) and "@" in a for a in escalate):
        problems.append('notifications.escalate_to must be a list of e-mail addresses, e.g. '
                        '["him-director@hospital.org"].')
        escalate = []
    for k in set(delinq) - {"days_after_discharge"}:
        problems.append(f"Unknown setting delinquency.{k}; the only one is days_after_discharge.")
    for k in set(notif) - {"reminder_every_days", "escalate_to"}:
        problems.append(f"Unknown setting notifications.{k}; allowed: reminder_every_days, escalate_to.")

    rules: list[Rule] = list(base.rules) if base else []
    raw_rules = data.get("rule", [])
    if not isinstance(raw_rules, list):
        problems.append("rule must be an array of tables: write each rule under [[rule]].")
        raw_rules = []
    seen = {r.id for r in rules}
    for n, raw in enumerate(raw_rules, 1):
        rule = _rule(raw, n, problems)
        if rule is None:
            continue
        if rule.id in seen:
            problems.append(f"Rule {rule.id!r} (rule {n}) is defined twice; give each rule its own id, or "
                            "change a default with [overrides.<id>].")
            continue
        seen.add(rule.id)
        rules.append(rule)
    overrides = _table(data, "overrides", problems)
    for rid, ov in overrides.items():
        idx = next((i for i, r in enumerate(rules) if r.id == rid), None)
        if idx is None:
            problems.append(f"overrides.{rid} names no rule; known rules: {', '.join(r.id for r in rules)}.")
            continue
        if not isinstance(ov, dict):
            problems.append(f"overrides.{rid} must be a table, e.g. [overrides.{rid}] then enabled = false.")
            continue
        bad = set(ov) - _OVERRIDABLE
        if bad:
            problems.append(f"overrides.{rid} cannot change {', '.join(sorted(bad))}; a facility may change "
                            f"{', '.join(sorted(_OVERRIDABLE))} (or define its own rule).")
            continue
        merged = {**_as_raw(rules[idx]), **ov}
        new = _rule(merged, f"override of {rid}", problems)
        if new is not None:
            rules[idx] = new
    if not any(r.enabled for r in rules) and not problems:
        problems.append("Every rule is switched off; switch at least one on, or charts are never analysed.")
    if problems:
        raise RuleFileError(source, problems)
    return RuleSet(version=version, facility=facility, rules=tuple(rules), delinquency_days=days,
                   reminder_every_days=every, escalate_to=tuple(escalate), source=source)


def _table(data: dict[str, Any], key: str, problems: list[str]) -> dict[str, Any]:
    v = data.get(key, {})
    if not isinstance(v, dict):
        problems.append(f"{key} must be a table: write [{key}] on its own line and its settings below.")
        return {}
    return v


def _as_raw(r: Rule) -> dict[str, Any]:
    out: dict[str, Any] = {"id": r.id, "title": r.title, "kind": r.kind, "classes": sorted(r.classes),
                           "anchor": r.anchor, "within_hours": r.within_hours, "responsible": r.responsible,
                           "source": r.source, "enabled": r.enabled}
    if r.kind in ("document", "elements") or r.types:
        out["types"] = sorted(r.types)
    if r.kind == "authentication":
        out["exclude_types"] = sorted(r.exclude_types)
    if r.kind == "document":
        out.update(per=r.per, before_first_procedure=r.before_first_procedure,
                   procedure_categories=sorted(r.procedure_categories), order_categories=sorted(r.order_categories))
        if r.min_stay_hours is not None:
            out["min_stay_hours"] = r.min_stay_hours
        if r.max_stay_hours is not None:
            out["max_stay_hours"] = r.max_stay_hours
    if r.kind == "elements":
        out["elements"] = {k: list(v) for k, v in r.elements}
        out["expired_exempt"] = sorted(r.expired_exempt)
    return out


def _codes(raw: dict[str, Any], key: str, where: str, problems: list[str], *, required: bool = False) -> frozenset[str]:
    v = raw.get(key)
    if v is None:
        if required:
            problems.append(f"{where}: {key} is missing; list the document codes it needs, e.g. "
                            f'{key} = ["http://loinc.org|18842-5"].')
        return frozenset()
    if not isinstance(v, list) or not all(isinstance(c, str) and _CODE.match(c) for c in v) or (required and not v):
        problems.append(f'{where}: {key} must be a list of "system|code" strings, e.g. ["http://loinc.org|18842-5"].')
        return frozenset()
    return frozenset(v)


def _hours(raw: dict[str, Any], key: str, where: str, problems: list[str], *, required: bool) -> float | None:
    v = raw.get(key)
    if v is None:
        if required:
            problems.append(f"{where}: {key} is missing; give the limit in hours, e.g. {key} = 24.")
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0 or v > 24 * 366:
        problems.append(f"{where}: {key} must be a number of hours greater than 0 (and at most a year), "
                        f"e.g. {key} = 24; it is {v!r}.")
        return None
    return float(v)


def _rule(raw: Any, n: int | str, problems: list[str]) -> Rule | None:
    if not isinstance(raw, dict):
        problems.append(f"Rule {n} is not a table; write each rule under [[rule]] with key = value lines.")
        return None
    rid = raw.get("id")
    if not isinstance(rid, str) or not _ID.match(rid):
        problems.append(f"Rule {n}: id must be lower-case letters, digits and dashes (e.g. id = \"hp-24h\"); "
                        f"it is {rid!r}.")
        return None
    where = f"Rule {rid!r}"
    before = len(problems)
    kind = raw.get("kind")
    if kind not in KINDS:
        problems.append(f"{where}: kind must be one of {', '.join(KINDS)}; it is {kind!r}.")
        return None
    for k in sorted(set(raw) - _FIELDS[kind]):
        problems.append(f"{where}: {k!r} is not a setting of a {kind} rule; allowed: {', '.join(sorted(_FIELDS[kind]))}.")
    title = raw.get("title")
    if not isinstance(title, str) or not title.strip():
        problems.append(f"{where}: title is missing; say in a few words what the chart must have.")
        title = rid
    classes = raw.get("classes")
    if not isinstance(classes, list) or not classes or not all(c in CLASSES for c in classes):
        problems.append(f"{where}: classes must be a non-empty list of encounter classes from "
                        f"{', '.join(CLASSES)}; it is {classes!r}.")
        classes = []
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        problems.append(f"{where}: enabled must be true or false; it is {enabled!r}.")
        enabled = True
    per = raw.get("per", "encounter")
    if kind == "document" and per not in PER:
        problems.append(f"{where}: per must be one of {', '.join(PER)}; it is {per!r}.")
        per = "encounter"
    anchor = raw.get("anchor")
    if anchor not in ANCHORS[kind]:
        problems.append(f"{where}: anchor (what the time limit counts from) must be one of "
                        f"{', '.join(ANCHORS[kind])}; it is {anchor!r}.")
        anchor = ANCHORS[kind][0]
    elif kind == "document" and per in PER_ANCHOR and anchor not in (PER_ANCHOR[per], "admission", "discharge"):
        problems.append(f"{where}: a rule per {per} counts from {PER_ANCHOR[per]}, admission or discharge, "
                        f"not {anchor}.")
    elif kind == "document" and per == "encounter" and anchor in ("procedure", "order", "specimen"):
        problems.append(f"{where}: anchor {anchor} needs per = \"{ {v: k for k, v in PER_ANCHOR.items()}[anchor]}\".")
    within = _hours(raw, "within_hours", where, problems, required=True) or 24.0
    responsible = raw.get("responsible", "attending")
    if responsible not in RESPONSIBLE:
        problems.append(f"{where}: responsible must be one of {', '.join(RESPONSIBLE)}; it is {responsible!r}.")
        responsible = "attending"
    types = _codes(raw, "types", where, problems, required=kind != "authentication")
    exclude = _codes(raw, "exclude_types", where, problems)
    min_stay = _hours(raw, "min_stay_hours", where, problems, required=False)
    max_stay = _hours(raw, "max_stay_hours", where, problems, required=False)
    if min_stay is not None and max_stay is not None and min_stay >= max_stay:
        problems.append(f"{where}: min_stay_hours ({min_stay:g}) must be less than max_stay_hours ({max_stay:g}).")
    bfp = raw.get("before_first_procedure", False)
    if not isinstance(bfp, bool):
        problems.append(f"{where}: before_first_procedure must be true or false.")
        bfp = False
    proc_cats = _codes(raw, "procedure_categories", where, problems) or frozenset({SURGICAL})
    order_cats = _codes(raw, "order_categories", where, problems) or frozenset({CONSULTATION})
    elements: list[tuple[str, tuple[str, ...]]] = []
    exempt: frozenset[str] = frozenset()
    if kind == "elements":
        els = raw.get("elements")
        if not isinstance(els, dict) or not els:
            problems.append(f"{where}: elements is missing; add a [rule.elements] table naming each required "
                            'element and its headings, e.g. disposition = ["DISPOSITION"].')
        else:
            for name, heads in els.items():
                if not isinstance(heads, list) or not heads or not all(isinstance(h, str) and h.strip() for h in heads):
                    problems.append(f"{where}: element {name!r} needs a list of headings, e.g. "
                                    f'{name} = ["{name.upper().replace("_", " ")}"].')
                    continue
                elements.append((name, tuple(h.strip().upper() for h in heads)))
        ex = raw.get("expired_exempt", [])
        names = {e for e, _ in elements}
        if not isinstance(ex, list) or not all(isinstance(e, str) and e in names for e in ex):
            problems.append(f"{where}: expired_exempt must list element names from this rule ({', '.join(sorted(names))}).")
        else:
            exempt = frozenset(ex)
    if len(problems) > before:
        return None
    return Rule(id=rid, title=title.strip(), kind=kind, classes=frozenset(classes), anchor=anchor,
                within_hours=within, responsible=responsible, source=str(raw.get("source", "")), enabled=enabled,
                types=types, exclude_types=exclude, per=per, min_stay_hours=min_stay, max_stay_hours=max_stay,
                before_first_procedure=bfp, procedure_categories=proc_cats, order_categories=order_cats,
                elements=tuple(elements), expired_exempt=exempt)


def with_changes(rules: RuleSet, **changes: Any) -> RuleSet:
    """A copy with top-level settings changed (tests, benchmarks)."""
    return replace(rules, by_id={}, **changes)
