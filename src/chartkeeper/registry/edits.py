"""Registry edits: the checks run on an abstract when it is saved and before it is exported.

An abstract is NAACCR items keyed by NAACCR XML item id (``naaccrId``): one dict of patient items and
one dict per tumour. :func:`run_edits` returns every failure as a :class:`RegistryEdit` naming the
items involved and saying how to fix it. The edits themselves are a readable TOML rule set
(``default_edits.toml``); a registry may point ``CHARTKEEPER_REGISTRY_EDITS`` at its own file, and a
bad file is refused with every problem listed as a sentence (:class:`EditFileError`).

NAACCR dates are ``YYYYMMDD``; a partial date (``YYYY`` or ``YYYYMM``) is allowed and compared only as
far as both dates are known.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from functools import lru_cache
from importlib import resources
from typing import Any, Literal

from chartkeeper import rulefiles
from chartkeeper.registry import icdo3

Severity = Literal["error", "warning"]
SEVERITIES = ("error", "warning")
KINDS = ("codes", "site-code", "dates", "date-order", "age", "sex-site", "laterality", "site-histology",
         "requires", "required", "sequence")

# Names and numbers of the items the default edits use, for messages (NAACCR data dictionary v26).
ITEM_NAMES: dict[str, tuple[str, int]] = {
    "sex": ("Sex", 220), "sexAssignedAtBirth": ("Sex Assigned at Birth", 225),
    "ageAtDiagnosis": ("Age at Diagnosis", 230), "dateOfBirth": ("Date of Birth", 240),
    "sequenceNumberCentral": ("Sequence Number--Central", 380), "dateOfDiagnosis": ("Date of Diagnosis", 390),
    "primarySite": ("Primary Site", 400), "laterality": ("Laterality", 410),
    "diagnosticConfirmation": ("Diagnostic Confirmation", 490), "histologicTypeIcdO3": ("Histologic Type ICD-O-3", 522),
    "behaviorCodeIcdO3": ("Behavior Code ICD-O-3", 523), "sequenceNumberHospital": ("Sequence Number--Hospital", 560),
    "summaryStage2018": ("Summary Stage 2018", 764), "rxDateSurgery": ("RX Date--Surgery", 1200),
    "rxDateRadiation": ("RX Date--Radiation", 1210), "rxDateChemo": ("RX Date--Chemo", 1220),
    "rxDateHormone": ("RX Date--Hormone", 1230), "rxDateBrm": ("RX Date--BRM", 1240),
    "rxDateOther": ("RX Date--Other", 1250), "dateOfLastContact": ("Date of Last Contact", 1750),
    "vitalStatus": ("Vital Status", 1760), "rxDateMostDefinSurg": ("RX Date--Most Defin Surg", 3170),
    "rxDateSystemic": ("RX Date Systemic", 3230), "schemaId": ("Schema ID", 3800),
}


def item_label(item: str) -> str:
    name = ITEM_NAMES.get(item)
    return f"{name[0]} ({item}, item {name[1]})" if name else item


@dataclass(frozen=True)
class RegistryEdit:
    """One failed edit. ``tumor_index`` is the tumour's position in the list given, or None for a
    patient-level failure; ``items`` are the naaccrIds to show the registrar."""

    edit_id: str
    severity: Severity
    items: tuple[str, ...]
    tumor_index: int | None
    message: str


@dataclass(frozen=True)
class Edit:
    id: str
    kind: str
    severity: Severity
    description: str
    params: Mapping[str, Any]
    source: str = ""
    enabled: bool = True


@dataclass(frozen=True)
class EditSet:
    version: str
    title: str
    edits: tuple[Edit, ...]
    sex_items: tuple[str, ...] = ("sexAssignedAtBirth", "sex")
    source: str = "default"
    by_id: dict[str, Edit] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        self.by_id.update({e.id: e for e in self.edits})

    @property
    def active(self) -> tuple[Edit, ...]:
        return tuple(e for e in self.edits if e.enabled)


class EditFileError(rulefiles.RuleFileError):
    """A registry edit file that cannot be used. ``problems`` lists every problem, each a sentence."""

    what = "registry edit file"


# ----------------------------------------------------------------------------------------- loading

_COMMON = {"id", "kind", "severity", "description", "source", "enabled"}
_PARAMS: dict[str, set[str]] = {
    "codes": {"allowed"},
    "site-code": {"items"},
    "dates": {"items", "earliest_year"},
    "date-order": {"groups"},
    "age": {"max_age"},
    "sex-site": {"female_codes", "male_codes", "female_only_sites", "male_only_sites"},
    "laterality": {"paired_sites"},
    "site-histology": {"rule"},
    "requires": {"when", "require", "fix", "from_year"},
    "required": {"items", "when", "from_year"},
    "sequence": {"items", "malignant", "non_malignant"},
}
_OVERRIDABLE = {"enabled", "severity"}
_TOP = {"version", "title", "extends", "sex_items", "edit", "overrides"}


def _default_text() -> str:
    return resources.files("chartkeeper.registry").joinpath("default_edits.toml").read_text("utf-8")


def load_edits(path: str | os.PathLike[str] | None = None) -> EditSet:
    """The edit set to use: ``path``, else ``CHARTKEEPER_REGISTRY_EDITS``, else the defaults."""
    chosen = rulefiles.chosen_file(path, "CHARTKEEPER_REGISTRY_EDITS", EditFileError)
    return parse_edits(*chosen) if chosen else default_edits()


@lru_cache(maxsize=1)
def default_edits() -> EditSet:
    return parse_edits(_default_text(), "default")


def parse_edits(text: str, source: str = "<text>") -> EditSet:
    data = rulefiles.parse_toml(text, source, EditFileError)
    problems = rulefiles.unknown_keys(data, _TOP)
    base: EditSet | None = None
    if "extends" in data:
        if data["extends"] != "default":
            problems.append(f"extends = {data['extends']!r} is not known; the only base is \"default\".")
        else:
            base = default_edits()
    version = data.get("version", base.version if base else None)
    if not isinstance(version, str) or not version.strip():
        problems.append('version is missing: give the edit set a version, e.g. version = "2026.1", so each '
                        "edit result records which rules produced it.")
        version = ""
    title = str(data.get("title", base.title if base else ""))
    sex_items = data.get("sex_items", list(base.sex_items) if base else ["sexAssignedAtBirth", "sex"])
    if not isinstance(sex_items, list) or not sex_items or not all(isinstance(s, str) for s in sex_items):
        problems.append('sex_items must be a list of item ids, e.g. ["sexAssignedAtBirth", "sex"].')
        sex_items = ["sexAssignedAtBirth", "sex"]
    edits: list[Edit] = list(base.edits) if base else []
    seen = {e.id for e in edits}
    raw_edits = data.get("edit", [])
    if not isinstance(raw_edits, list):
        problems.append("edit must be an array of tables: write each edit under [[edit]].")
        raw_edits = []
    for n, raw in enumerate(raw_edits, 1):
        e = _edit(raw, n, problems)
        if e is None:
            continue
        if e.id in seen:
            problems.append(f"Edit {e.id!r} (edit {n}) is defined twice; give each edit its own id, or change a "
                            "default with [overrides.<id>].")
            continue
        seen.add(e.id)
        edits.append(e)
    overrides = data.get("overrides", {})
    if not isinstance(overrides, dict):
        problems.append("overrides must be a table: write [overrides.<edit-id>] and its settings below.")
        overrides = {}
    for eid, ov in overrides.items():
        idx = next((i for i, e in enumerate(edits) if e.id == eid), None)
        if idx is None:
            problems.append(f"overrides.{eid} names no edit; known edits: {', '.join(e.id for e in edits)}.")
            continue
        if not isinstance(ov, dict) or set(ov) - _OVERRIDABLE:
            problems.append(f"overrides.{eid} may only set enabled (true/false) and severity (error/warning); "
                            "to change an edit's parameters, copy it under a new id.")
            continue
        if "enabled" in ov and not isinstance(ov["enabled"], bool):
            problems.append(f"overrides.{eid}.enabled must be true or false.")
            continue
        if "severity" in ov and ov["severity"] not in SEVERITIES:
            problems.append(f"overrides.{eid}.severity must be \"error\" or \"warning\".")
            continue
        edits[idx] = replace(edits[idx], **ov)
    if problems:
        raise EditFileError(source, problems)
    return EditSet(version=version, title=title, edits=tuple(edits), sex_items=tuple(sex_items), source=source)


def _edit(raw: Any, n: int, problems: list[str]) -> Edit | None:
    if not isinstance(raw, dict):
        problems.append(f"Edit {n} is not a table; write each edit under [[edit]] with key = value lines.")
        return None
    eid = raw.get("id")
    if not isinstance(eid, str) or not eid.strip():
        problems.append(f"Edit {n}: id is missing; give it a short name, e.g. id = \"sex-site\".")
        return None
    where = f"Edit {eid!r}"
    before = len(problems)
    kind = raw.get("kind")
    if kind not in KINDS:
        problems.append(f"{where}: kind must be one of {', '.join(KINDS)}; it is {kind!r}.")
        return None
    for k in sorted(set(raw) - _COMMON - _PARAMS[kind]):
        problems.append(f"{where}: {k!r} is not a setting of a {kind} edit; allowed: "
                        f"{', '.join(sorted(_COMMON | _PARAMS[kind]))}.")
    severity = raw.get("severity", "error")
    if severity not in SEVERITIES:
        problems.append(f"{where}: severity must be \"error\" or \"warning\"; it is {severity!r}.")
    description = raw.get("description")
    if not isinstance(description, str) or not description.strip():
        problems.append(f"{where}: description is missing; say in a sentence what the edit checks.")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        problems.append(f"{where}: enabled must be true or false.")
    params = {k: v for k, v in raw.items() if k not in _COMMON}
    _check_params(kind, params, where, problems)
    if len(problems) > before:
        return None
    return Edit(eid, kind, severity, str(description).strip(), params, str(raw.get("source", "")), enabled)


def _is_codes(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(c, str) and c.strip() for c in v)


def _check_code_map(v: Any, where: str, name: str, problems: list[str]) -> None:
    if not isinstance(v, dict) or not v:
        problems.append(f"{where}: {name} must be a table of item = [codes], e.g. behaviorCodeIcdO3 = [\"2\"].")
        return
    for item, codes in v.items():
        if not _is_codes(codes):
            problems.append(f"{where}: {name}.{item} must be a list of codes or ranges, e.g. [\"1\", \"2\", \"60-88\"].")


def _check_params(kind: str, p: dict[str, Any], where: str, problems: list[str]) -> None:
    def need_items(key: str) -> None:
        v = p.get(key)
        if not _is_codes(v):
            problems.append(f"{where}: {key} must be a list of NAACCR item ids, e.g. {key} = [\"dateOfDiagnosis\"].")

    def need_sites(key: str) -> None:
        v = p.get(key)
        if not isinstance(v, list) or not _is_codes(v) or \
                not all(all(icdo3.is_valid_site(x) for x in s.split("-")) for s in v):
            problems.append(f"{where}: {key} must be a list of ICD-O-3 sites or ranges, e.g. [\"C500-C509\"]; "
                            "each end must be a real site code.")

    def need_year(key: str) -> None:
        v = p.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 1800 <= v <= 2200):
            problems.append(f"{where}: {key} must be a year, e.g. {key} = 2018.")

    if kind == "codes":
        _check_code_map(p.get("allowed"), where, "allowed", problems)
    elif kind == "site-code":
        need_items("items")
    elif kind == "dates":
        need_items("items")
        need_year("earliest_year")
    elif kind == "date-order":
        g = p.get("groups")
        if not isinstance(g, list) or len(g) < 2 or not all(_is_codes(x) for x in g):
            problems.append(f"{where}: groups must be a list of at least two lists of date items, earliest first, "
                            'e.g. groups = [["dateOfBirth"], ["dateOfDiagnosis"]].')
    elif kind == "age":
        v = p.get("max_age", 120)
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 150:
            problems.append(f"{where}: max_age must be a whole number of years, e.g. max_age = 120.")
    elif kind == "sex-site":
        for key in ("female_codes", "male_codes"):
            if not _is_codes(p.get(key)):
                problems.append(f"{where}: {key} must be a list of sex codes, e.g. {key} = [\"2\"].")
        need_sites("female_only_sites")
        need_sites("male_only_sites")
    elif kind == "laterality":
        need_sites("paired_sites")
    elif kind == "site-histology":
        rules = p.get("rule")
        if not isinstance(rules, list) or not rules:
            problems.append(f"{where}: add at least one [[edit.rule]] with histologies, sites and name.")
            return
        for i, r in enumerate(rules, 1):
            if not isinstance(r, dict) or not _is_codes(r.get("histologies")) or not _is_codes(r.get("sites")) \
                    or not isinstance(r.get("name"), str):
                problems.append(f"{where}, rule {i}: give histologies (e.g. [\"8170-8175\"]), sites (e.g. [\"C220\"]) "
                                "and a name saying what the histologies are.")
    elif kind == "requires":
        _check_code_map(p.get("when"), where, "when", problems)
        _check_code_map(p.get("require"), where, "require", problems)
        if not isinstance(p.get("fix"), str) or not p["fix"].strip():
            problems.append(f"{where}: fix is missing; say in a sentence how the registrar corrects the abstract.")
        need_year("from_year")
    elif kind == "required":
        need_items("items")
        if "when" in p:
            _check_code_map(p.get("when"), where, "when", problems)
        need_year("from_year")
    elif kind == "sequence":
        need_items("items")
        for key in ("malignant", "non_malignant"):
            if not _is_codes(p.get(key)):
                problems.append(f"{where}: {key} must be a list of sequence numbers or ranges, e.g. [\"00-59\", \"99\"].")


# ----------------------------------------------------------------------------------------- values


@dataclass(frozen=True, order=True)
class NaaccrDate:
    """A NAACCR date that may be partial: month and day are None when not known."""

    year: int
    month: int | None = None
    day: int | None = None

    @classmethod
    def parse(cls, value: str | None) -> NaaccrDate | None:
        """The date, or None when blank. Raises ValueError for a date that is not a real date."""
        if value is None:
            return None
        v = value.strip()
        if not v:
            return None
        if not v.isdigit() or len(v) not in (4, 6, 8):
            raise ValueError("it must be written YYYYMMDD, or YYYYMM / YYYY when only part of the date is known")
        y = int(v[:4])
        m = int(v[4:6]) if len(v) >= 6 else None
        d = int(v[6:8]) if len(v) == 8 else None
        if m is not None and not 1 <= m <= 12:
            raise ValueError(f"the month {v[4:6]} does not exist")
        if d is not None:
            try:
                date(y, m or 1, d)
            except ValueError:
                raise ValueError(f"day {v[6:8]} does not exist in {y}-{m:02d}") from None
        return cls(y, m, d)

    def key(self, precision: int) -> tuple[int, ...]:
        return (self.year, self.month or 0, self.day or 0)[:precision]

    @property
    def precision(self) -> int:
        return 1 if self.month is None else 2 if self.day is None else 3

    def __str__(self) -> str:
        return "-".join(f"{x:02d}" if i else str(x) for i, x in enumerate((self.year, self.month, self.day))
                        if x is not None)


def is_before(a: NaaccrDate, b: NaaccrDate) -> bool:
    """True when ``a`` is certainly before ``b``: compared as far as both are known."""
    p = min(a.precision, b.precision)
    return a.key(p) < b.key(p)


def _in(value: str, codes: Sequence[str]) -> bool:
    for c in codes:
        lo, _, hi = c.partition("-")
        hi = hi or lo
        if len(value) == len(lo) and lo <= value <= hi:
            return True
    return False


def _sites_in(site: str, ranges: Sequence[str]) -> bool:
    return _in(site, ranges)


# ----------------------------------------------------------------------------------------- running


class _Ctx:
    def __init__(self, edits: EditSet, patient: Mapping[str, Any], tumors: Sequence[Mapping[str, Any]]) -> None:
        self.edits = edits
        self.patient = {k: _s(v) for k, v in patient.items()}
        self.tumors = [{k: _s(v) for k, v in t.items()} for t in tumors]
        self.out: list[RegistryEdit] = []
        self.bad: set[tuple[int | None, str]] = set()  # items already reported as malformed

    def get(self, ti: int | None, item: str) -> str:
        if ti is not None and self.tumors[ti].get(item):
            return self.tumors[ti][item]
        return self.patient.get(item, "")

    def add(self, e: Edit, items: Sequence[str], ti: int | None, message: str) -> None:
        self.out.append(RegistryEdit(e.id, e.severity, tuple(items), ti, message))

    def date(self, ti: int | None, item: str) -> NaaccrDate | None:
        try:
            return NaaccrDate.parse(self.get(ti, item))
        except ValueError:
            return None

    def sex_item(self) -> str | None:
        return next((i for i in self.edits.sex_items if self.patient.get(i)), None)


def _s(v: Any) -> str:
    return "" if v is None else str(v).strip()


def run_edits(patient_items: Mapping[str, Any], tumors: Sequence[Mapping[str, Any]],
              edits: EditSet | None = None) -> list[RegistryEdit]:
    """Run every enabled edit over one patient's abstract and return the failures, patient-level
    ones first, then by tumour in the order given."""
    es = edits or default_edits()
    ctx = _Ctx(es, patient_items, tumors)
    for e in es.active:
        _RUNNERS[e.kind](ctx, e)
    return sorted(ctx.out, key=lambda r: (-1 if r.tumor_index is None else r.tumor_index))


def _tumor_indexes(ctx: _Ctx) -> range:
    return range(len(ctx.tumors))


def _run_codes(ctx: _Ctx, e: Edit) -> None:
    allowed: dict[str, list[str]] = e.params["allowed"]
    for item, codes in allowed.items():
        scopes: list[int | None] = [None] if item in ctx.patient else list(_tumor_indexes(ctx))
        for ti in scopes:
            v = ctx.patient.get(item, "") if ti is None else ctx.tumors[ti].get(item, "")
            if v and not _in(v, codes):
                ctx.bad.add((ti, item))
                ctx.add(e, [item], ti, f"{item_label(item)} is {v!r}, which is not one of its codes "
                                       f"({', '.join(codes)}): correct it from the source record.")


def _run_site_code(ctx: _Ctx, e: Edit) -> None:
    for item in e.params["items"]:
        for ti in _tumor_indexes(ctx):
            v = ctx.tumors[ti].get(item, "")
            if not v:
                ctx.add(e, [item], ti, f"{item_label(item)} is blank: code the primary site (ICD-O-3, e.g. C509).")
            elif not icdo3.is_valid_site(v):
                ctx.bad.add((ti, item))
                ctx.add(e, [item], ti, f"{item_label(item)} {v!r} is not an ICD-O-3 topography code: write it like "
                                       "C509 (C and three digits of a site that exists).")


def _run_dates(ctx: _Ctx, e: Edit) -> None:
    earliest = e.params.get("earliest_year", 1850)
    today = date.today()
    for item in e.params["items"]:
        scopes: list[int | None] = [None] if item in ctx.patient else list(_tumor_indexes(ctx))
        for ti in scopes:
            raw = ctx.patient.get(item, "") if ti is None else ctx.tumors[ti].get(item, "")
            try:
                d = NaaccrDate.parse(raw)
            except ValueError as exc:
                ctx.bad.add((ti, item))
                ctx.add(e, [item], ti, f"{item_label(item)} {raw!r} is not a date: {exc}.")
                continue
            if d is None:
                continue
            if d.year < earliest:
                ctx.add(e, [item], ti, f"{item_label(item)} {d} is before {earliest}: check the year.")
            elif is_before(NaaccrDate(today.year, today.month, today.day), d):
                ctx.add(e, [item], ti, f"{item_label(item)} {d} is in the future: check the date.")


def _run_date_order(ctx: _Ctx, e: Edit) -> None:
    groups: list[list[str]] = e.params["groups"]
    scopes: list[int | None] = list(_tumor_indexes(ctx)) or [None]
    reported: set[tuple[str, str]] = set()
    for ti in scopes:
        for gi, earlier in enumerate(groups):
            for later in groups[gi + 1:]:
                for a in earlier:
                    da = ctx.date(ti, a)
                    if da is None:
                        continue
                    for b in later:
                        db = ctx.date(ti, b)
                        if db is None or not is_before(db, da):
                            continue
                        patient_level = a in ctx.patient and b in ctx.patient
                        if patient_level and (a, b) in reported:
                            continue
                        reported.add((a, b))
                        ctx.add(e, [a, b], None if patient_level else ti,
                                f"{item_label(b)} {db} is before {item_label(a)} {da}: correct whichever date is "
                                f"wrong ({ITEM_NAMES.get(b, (b,))[0].lower()} cannot come before "
                                f"{ITEM_NAMES.get(a, (a,))[0].lower()}).")


def _run_age(ctx: _Ctx, e: Edit) -> None:
    max_age = e.params.get("max_age", 120)
    for ti in _tumor_indexes(ctx):
        raw = ctx.tumors[ti].get("ageAtDiagnosis", "")
        if not raw or (ti, "ageAtDiagnosis") in ctx.bad or not raw.isdigit():
            continue
        age = int(raw)
        dob, dx = ctx.date(ti, "dateOfBirth"), ctx.date(ti, "dateOfDiagnosis")
        items = ["ageAtDiagnosis", "dateOfBirth", "dateOfDiagnosis"]
        if dob is None or dx is None:
            continue
        if age == 999:
            ctx.add(e, items, ti, f"{item_label('ageAtDiagnosis')} is 999 (unknown) but both dates are known: "
                                  f"code the age, {dx.year - dob.year} or one less.")
            continue
        low, high = _possible_ages(dob, dx)
        if not low <= age <= high or age > max_age:
            expect = str(low) if low == high else f"{low} or {high}"
            ctx.add(e, items, ti, f"{item_label('ageAtDiagnosis')} is {age}, but born {dob} and diagnosed {dx} "
                                  f"gives {expect}: correct the age or whichever date is wrong.")


def _possible_ages(dob: NaaccrDate, dx: NaaccrDate) -> tuple[int, int]:
    years = dx.year - dob.year
    p = min(dob.precision, dx.precision)
    if p == 1 or (dob.month == dx.month and p == 2):
        return max(years - 1, 0), years
    before_birthday = (dx.month or 0, dx.day or 0)[: p - 1] < (dob.month or 0, dob.day or 0)[: p - 1]
    age = years - 1 if before_birthday else years
    return age, age


def _run_sex_site(ctx: _Ctx, e: Edit) -> None:
    item = ctx.sex_item()
    if item is None or (None, item) in ctx.bad:
        return
    sex = ctx.patient[item]
    p = e.params
    for ti in _tumor_indexes(ctx):
        site = ctx.tumors[ti].get("primarySite", "")
        if not site or not icdo3.is_valid_site(site):
            continue
        where = f"{site[:3]}.{site[3:]} ({icdo3.site_name(site)})"
        if sex in p["female_codes"] and _sites_in(site, p["male_only_sites"]):
            ctx.add(e, [item, "primarySite"], ti, f"{item_label(item)} is {sex} (female) but {item_label('primarySite')} "
                                                  f"is {where}, a site in males only: correct the sex or the primary site.")
        elif sex in p["male_codes"] and _sites_in(site, p["female_only_sites"]):
            ctx.add(e, [item, "primarySite"], ti, f"{item_label(item)} is {sex} (male) but {item_label('primarySite')} "
                                                  f"is {where}, a site in females only: correct the sex or the primary site.")


def _run_laterality(ctx: _Ctx, e: Edit) -> None:
    paired = e.params["paired_sites"]
    for ti in _tumor_indexes(ctx):
        site = ctx.tumors[ti].get("primarySite", "")
        lat = ctx.tumors[ti].get("laterality", "")
        if not site or not icdo3.is_valid_site(site) or (ti, "laterality") in ctx.bad:
            continue
        where = f"{site[:3]}.{site[3:]} ({icdo3.site_name(site)})"
        if _sites_in(site, paired):
            if lat in ("", "0"):
                shown = "blank" if not lat else "0 (not a paired site)"
                ctx.add(e, ["laterality", "primarySite"], ti,
                        f"{item_label('laterality')} is {shown} but {where} is a paired organ: code the side "
                        "(1 right, 2 left, 3 one side unknown, 4 bilateral, 5 midline, 9 not stated).")
        elif lat not in ("", "0"):
            ctx.add(e, ["laterality", "primarySite"], ti,
                    f"{item_label('laterality')} is {lat} but {where} is not a paired organ: code laterality 0.")
        elif not lat:
            ctx.add(e, ["laterality"], ti, f"{item_label('laterality')} is blank: code 0 for {where}, not a paired organ.")


def _run_site_histology(ctx: _Ctx, e: Edit) -> None:
    for ti in _tumor_indexes(ctx):
        site = ctx.tumors[ti].get("primarySite", "")
        hist = ctx.tumors[ti].get("histologicTypeIcdO3", "")
        if not site or not hist or (ti, "histologicTypeIcdO3") in ctx.bad or (ti, "primarySite") in ctx.bad:
            continue
        for rule in e.params["rule"]:
            if _in(hist, rule["histologies"]) and not _sites_in(site, rule["sites"]):
                ctx.add(e, ["primarySite", "histologicTypeIcdO3"], ti,
                        f"{item_label('histologicTypeIcdO3')} {hist} ({rule['name']}) arises only at "
                        f"{', '.join(rule['sites'])}, but {item_label('primarySite')} is {site}: correct the site or "
                        "the histology.")


def _dx_year(ctx: _Ctx, ti: int) -> int | None:
    d = ctx.date(ti, "dateOfDiagnosis")
    return d.year if d else None


def _conditions_hold(ctx: _Ctx, ti: int, when: Mapping[str, list[str]]) -> bool:
    for item, codes in when.items():
        v = ctx.get(ti, item)
        if not v or (ti, item) in ctx.bad or not _in(v, codes):
            return False
    return True


def _run_requires(ctx: _Ctx, e: Edit) -> None:
    when, require, from_year = e.params["when"], e.params["require"], e.params.get("from_year")
    for ti in _tumor_indexes(ctx):
        if from_year is not None and (_dx_year(ctx, ti) or 0) < from_year:
            continue
        if not _conditions_hold(ctx, ti, when):
            continue
        for item, codes in require.items():
            v = ctx.get(ti, item)
            if not v or (ti, item) in ctx.bad or _in(v, codes):
                continue
            cond = " and ".join(f"{item_label(k)} is {ctx.get(ti, k)}" for k in when)
            ctx.add(e, [*when, item], ti, f"{cond}, so {item_label(item)} must be {' or '.join(codes)}, not {v}: "
                                          f"{e.params['fix']}")


def _run_required(ctx: _Ctx, e: Edit) -> None:
    from_year = e.params.get("from_year")
    for ti in _tumor_indexes(ctx):
        year = _dx_year(ctx, ti)
        if from_year is not None and (year is None or year < from_year):
            continue
        if "when" in e.params and not _conditions_hold(ctx, ti, e.params["when"]):
            continue
        for item in e.params["items"]:
            if not ctx.get(ti, item):
                since = f" for tumours diagnosed in {from_year} and later" if from_year else ""
                ctx.add(e, [item], ti, f"{item_label(item)} is blank; it is required{since}: code it from the record.")


def _run_sequence(ctx: _Ctx, e: Edit) -> None:
    malignant, non_malignant = e.params["malignant"], e.params["non_malignant"]
    for item in e.params["items"]:
        seqs = {ti: ctx.tumors[ti].get(item, "") for ti in _tumor_indexes(ctx)}
        seqs = {ti: s for ti, s in seqs.items() if s and (ti, item) not in ctx.bad}
        for ti, s in seqs.items():
            beh = ctx.tumors[ti].get("behaviorCodeIcdO3", "")
            if beh in ("2", "3") and not _in(s, malignant):
                ctx.add(e, [item, "behaviorCodeIcdO3"], ti, f"{item_label(item)} is {s} but the tumour is in situ or "
                        f"malignant (behaviour {beh}): use {', '.join(malignant)}.")
            elif beh in ("0", "1") and not _in(s, non_malignant):
                ctx.add(e, [item, "behaviorCodeIcdO3"], ti, f"{item_label(item)} is {s} but the tumour is benign or "
                        f"borderline (behaviour {beh}): use {', '.join(non_malignant)}.")
        in_range = [ti for ti, s in seqs.items() if _in(s, ["00-59"])]
        if len(in_range) > 1:
            for ti in in_range:
                if seqs[ti] == "00":
                    ctx.add(e, [item], ti, f"{item_label(item)} is 00 (one malignant tumour only), but the patient has "
                            f"{len(in_range)} in situ or malignant tumours: number them 01, 02, ... in order of diagnosis.")
        by_value: dict[str, list[int]] = {}
        for ti, s in seqs.items():
            if s not in ("98", "99", "00"):
                by_value.setdefault(s, []).append(ti)
        for s, tis in by_value.items():
            if len(tis) > 1:
                for ti in tis:
                    others = ", ".join(str(t + 1) for t in tis if t != ti)
                    ctx.add(e, [item], ti, f"{item_label(item)} {s} is also used by tumour {others}: each tumour of a "
                            "patient has its own sequence number; renumber them in order of diagnosis.")


_RUNNERS = {
    "codes": _run_codes, "site-code": _run_site_code, "dates": _run_dates, "date-order": _run_date_order,
    "age": _run_age, "sex-site": _run_sex_site, "laterality": _run_laterality,
    "site-histology": _run_site_histology, "requires": _run_requires, "required": _run_required,
    "sequence": _run_sequence,
}
