"""NAACCR data dictionaries and streaming NAACCR XML (specification 1.8).

Two halves:

* **Dictionaries.** ``dictionary("250")`` is the NAACCR base dictionary of that version as an item
  table: every item's id, number, name, length, data type, level (``NaaccrData``, ``Patient`` or
  ``Tumor``), the record types it belongs to and its padding. The tables are package data
  (``naaccr_items/naaccr-items-<version>.json``) generated from NAACCR's dictionary files by
  ``scripts/gen_naaccr_items.py``, so nothing is read from outside the installed package.
  ``check_value(item, value)`` says, in a sentence, why a value does not fit its item (or None).
  ``load_dictionary(path)`` reads any NAACCR dictionary XML, e.g. a registry's user-defined one.

* **XML.** ``read(source)`` streams a NAACCR XML file (plain or gzip) with ``lxml.etree.iterparse``,
  one ``<Patient>`` at a time, clearing each when done so memory stays flat in file size. It yields a
  :class:`NaaccrPatient` for every patient whose items all check, and one :class:`Reject` (line number,
  patient number, item, reason) per problem otherwise; a patient with a problem is not yielded, the
  others are. ``write(out, header, patients, version, record_type)`` streams patients out one at a
  time, items in dictionary order, keeping only the items of the target version and record type (what
  it leaves out is counted in the returned :class:`WriteReport`). It serialises each patient itself
  (escaping &, <, > and carriage returns, refusing characters XML cannot carry): ``lxml.etree.xmlfile``
  costs about 1.2 microseconds an element, which held exports of abstracts to ~4,000 tumours/s
  (``benchmarks/naaccr.py`` keeps it as the baseline); the tests validate what we write against the
  NAACCR XSD and read it back with lxml.

Files written for NAACCR versions older than the oldest shipped dictionary (230; the NAACCR XML
reference samples go back to 180) are read with the 230 table plus the items NAACCR retired in
version 23 that such files still carry (``RETIRED_ITEMS`` of the generator; see the JSON's
``retired`` list). Messages never quote item values, which may be PHI; they name the item and line.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import io
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache, cached_property
from importlib import resources
from pathlib import Path
from typing import IO, Any, NewType

from lxml import etree

from chartkeeper.coding.codes import Code

NAACCR_NS = "http://naaccr.org/naaccrxml"
SPECIFICATION_VERSION = "1.8"
_Q = "{" + NAACCR_NS + "}"
_ITEM, _PATIENT, _TUMOR, _ROOT = _Q + "Item", _Q + "Patient", _Q + "Tumor", _Q + "NaaccrData"
_BASE_URI = "http://naaccr.org/naaccrxml/naaccr-dictionary-{}.xml"
_BASE_URI_RE = re.compile(r"naaccr-dictionary-(\d{3})\.xml$")

NaaccrId = NewType("NaaccrId", str)
"""A NAACCR XML item id such as ``primarySite`` (the dictionary's ``naaccrId``)."""


class NaaccrVersion(Code):
    """A NAACCR data standard version as the XML dictionaries write it: three digits (``250``).

    ``25`` and ``v25`` are accepted and mean ``250``."""

    system = "http://naaccr.org/naaccrxml"
    label = "NAACCR version"
    pattern = re.compile(r"[1-9][0-9]0")
    example = "250 (or 25)"

    @classmethod
    def normalise(cls, value: str) -> str:
        v = value.strip().lower().removeprefix("v")
        return v + "0" if re.fullmatch(r"[1-9][0-9]", v) else v


class Level(StrEnum):
    """Where an item sits in the XML: ``parentXmlElement`` in the dictionary."""

    NAACCR_DATA = "NaaccrData"
    PATIENT = "Patient"
    TUMOR = "Tumor"


class DataType(StrEnum):
    TEXT = "text"
    DIGITS = "digits"
    MIXED = "mixed"
    ALPHA = "alpha"
    NUMERIC = "numeric"
    DATE = "date"
    DATETIME = "dateTime"


class Padding(StrEnum):
    """How a short value is padded in a fixed-width (flat) record; XML values are written unpadded."""

    NONE = "none"
    LEFT_ZERO = "leftZero"
    LEFT_BLANK = "leftBlank"
    RIGHT_ZERO = "rightZero"
    RIGHT_BLANK = "rightBlank"


class RecordType(StrEnum):
    """NAACCR record types: which items an exchange carries."""

    ABSTRACT = "A"
    MODIFIED = "M"
    CONFIDENTIAL = "C"
    INCIDENCE = "I"

    @classmethod
    def parse(cls, value: str) -> RecordType:
        v = value.strip().upper()
        for rt in cls:
            if v in (rt.value, rt.name):
                return rt
        raise ValueError(f"Record type {value.strip()!r} is not a NAACCR record type: use A (abstract), "
                         "M (modified), C (confidential) or I (incidence).")


_SHAPE: dict[DataType, tuple[str, str]] = {
    # data type -> (per-length regex template, what the value must be, for the message)
    DataType.DIGITS: (r"[0-9]{{{n}}}", "exactly {n} digit{s} (0-9)"),
    DataType.MIXED: (r"[A-Z0-9]{{{n}}}", "exactly {n} capital letter{s} or digit{s}"),
    DataType.ALPHA: (r"[A-Z]{{{n}}}", "exactly {n} capital letter{s} (A-Z)"),
}
_NUMERIC = re.compile(r"[0-9]+(\.[0-9]+)?")
_DATE = re.compile(r"(18|19|20)[0-9][0-9]((0[1-9]|1[012])(0[1-9]|[12][0-9]|3[01])?)?")
_DATETIME = re.compile(
    r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])"
    r"(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?)?(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00))?)?)?")


@dataclass(frozen=True, slots=True)
class Item:
    """One data item of a NAACCR dictionary."""

    naaccr_id: NaaccrId
    number: int
    name: str
    length: int
    data_type: DataType
    parent: Level
    record_types: frozenset[RecordType]
    padding: Padding = Padding.NONE
    allow_unlimited_text: bool = False
    trim: bool = True
    _check: Callable[[str], str | None] = field(default=None, repr=False, compare=False)  # type: ignore[assignment]
    _ok: set[str] = field(default_factory=set, repr=False, compare=False)
    """Values already found to fit (bounded): most values repeat, so most checks are one set lookup."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "_check", _make_checker(self))

    @property
    def label(self) -> str:
        return f"{self.naaccr_id} (#{self.number})"

    def check(self, value: str) -> str | None:
        """A sentence saying why ``value`` does not fit this item, or None when it does."""
        return self._check(value)

    def to_row(self) -> list[Any]:
        return [self.naaccr_id, self.number, self.name, self.length, self.data_type.value, self.parent.value,
                "".join(sorted(self.record_types, key="AMCI".index)), self.padding.value,
                self.allow_unlimited_text, self.trim]

    @classmethod
    def from_row(cls, row: list[Any]) -> Item:
        nid, num, name, length, dt, parent, rts, pad, unlimited, trim = row
        return cls(NaaccrId(nid), int(num), name, int(length), DataType(dt), Level(parent),
                   frozenset(RecordType(c) for c in rts), Padding(pad), bool(unlimited), bool(trim))


def _make_checker(item: Item) -> Callable[[str], str | None]:
    """A fast checker for one item: most values repeat, so verdicts are remembered per item."""
    n, dt = item.length, item.data_type
    head = f"Item {item.label}"
    too_long = (f"{head} allows at most {n} character{'s' if n != 1 else ''}, and this value has {{}}: "
                f"shorten it to {n}.")
    if dt is DataType.TEXT:
        if item.allow_unlimited_text:
            return lambda v: None

        def text(v: str) -> str | None:
            return None if len(v) <= n else too_long.format(len(v))
        return text

    if dt in _SHAPE:
        rx, what = _SHAPE[dt]
        pattern = re.compile(rx.format(n=n))
        what = what.format(n=n, s="s" if n != 1 else "")

        kind = {DataType.DIGITS: re.compile(r"[0-9]*"), DataType.ALPHA: re.compile(r"[A-Z]*"),
                DataType.MIXED: re.compile(r"[A-Z0-9]*")}[dt]

        def explain(v: str) -> str:
            if not kind.fullmatch(v):
                if dt is not DataType.DIGITS and kind.fullmatch(v.upper()):
                    return f"{head} must be {what}; this value has lower-case letters: write it in capitals."
                return f"{head} must be {what}; this value {_describe(v, dt)}: correct it."
            if len(v) > n:
                return too_long.format(len(v))
            if dt is DataType.DIGITS and item.padding is Padding.LEFT_ZERO:
                return f"{head} must be {what}; this value has {len(v)}: pad it with zeros on the left to {n} digits."
            return f"{head} must be {what}; this value has {len(v)}: correct it."
        match = pattern.fullmatch
    elif dt is DataType.NUMERIC:
        match = _NUMERIC.fullmatch

        def explain(v: str) -> str:
            if len(v) > n and _NUMERIC.fullmatch(v):
                return too_long.format(len(v))
            return (f"{head} must be a number written with digits and at most one decimal point (like 12.5); "
                    "this value is not: correct it.")
    elif dt is DataType.DATE:
        match = _DATE.fullmatch

        def explain(v: str) -> str:
            if re.fullmatch(r"[0-9]{4}[-/.][0-9]{2}([-/.][0-9]{2})?", v):
                return f"{head} is written YYYYMMDD (or YYYYMM, YYYY) without separators: remove them."
            if len(v) > n:
                return too_long.format(len(v))
            if _DATE.fullmatch(v):
                return f"{head} is a date that does not exist on the calendar: correct the day or month."
            return (f"{head} must be a date written YYYYMMDD, YYYYMM or YYYY (years 1800-2099); "
                    "this value is not: correct it (leave unknown parts out rather than writing 99).")
    else:  # dateTime
        match = _DATETIME.fullmatch

        def explain(v: str) -> str:
            return (f"{head} must be a date and time written like 2025-03-13T12:00:00-04:00; "
                    "this value is not: correct it.")

    is_date = dt is DataType.DATE
    good = item._ok

    def check(v: str) -> str | None:
        if v in good:
            return None
        if len(v) <= n and match(v) is not None and (not is_date or len(v) < 8 or _real_day(v)):
            if len(good) < 4096:
                good.add(v)
            return None
        return explain(v)
    return check


def _real_day(v: str) -> bool:
    try:
        _dt.date(int(v[:4]), int(v[4:6]), int(v[6:8]))
    except ValueError:
        return False
    return True


def _describe(v: str, dt: DataType) -> str:
    """What is wrong with the characters of a value, without quoting it."""
    if dt is DataType.DIGITS:
        return "has characters other than digits"
    if dt is DataType.ALPHA:
        return "has characters other than capital letters"
    return "has characters other than capital letters and digits"


def check_value(item: Item, value: str) -> str | None:
    """A sentence naming the item (id and number) and the fix when ``value`` does not fit it; else None.

    The value is checked as written in XML: trimmed, unpadded. Its length must not exceed the item's
    length (unless the dictionary allows unlimited text) and it must have the item's data type:
    digits/alpha/mixed exactly ``length`` characters of that kind, numeric a decimal number, date
    YYYY[MM[DD]] on a real day, dateTime ISO 8601."""
    return item.check(value)


@dataclass(frozen=True)
class Dictionary:
    """A NAACCR data dictionary: base (``naaccr-dictionary-250.xml``) or user-defined."""

    version: NaaccrVersion | None
    uri: str
    specification_version: str
    description: str
    items: dict[NaaccrId, Item]
    retired: frozenset[NaaccrId] = frozenset()
    """Items not in this version's dictionary, carried only so older files can be read."""
    read_as: NaaccrVersion | None = None
    """For a version read with a newer table: the version whose table this is."""

    @cached_property
    def by_number(self) -> dict[int, Item]:
        return {i.number: i for i in self.items.values()}

    def for_record_type(self, record_type: RecordType) -> list[Item]:
        """The items an exchange of this record type carries, in dictionary order."""
        return [i for i in self.items.values() if record_type in i.record_types and i.naaccr_id not in self.retired]

    def with_user(self, *user: Dictionary) -> Dictionary:
        """This dictionary with the items of user-defined dictionaries added (theirs may not redefine ours)."""
        items = dict(self.items)
        for u in user:
            for nid, it in u.items.items():
                if nid in self.items:
                    raise ValueError(f"The user-defined dictionary {u.uri} redefines the base item {it.label}: "
                                     "remove it from the user-defined dictionary.")
                items[nid] = it
        return Dictionary(self.version, self.uri, self.specification_version, self.description, items,
                          self.retired, self.read_as)

    def to_table(self) -> dict[str, Any]:
        return {"version": self.version, "dictionaryUri": self.uri, "specificationVersion": self.specification_version,
                "description": self.description, "retired": sorted(self.retired),
                "items": [i.to_row() for i in self.items.values()]}

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> Dictionary:
        items = {NaaccrId(r[0]): Item.from_row(r) for r in table["items"]}
        v = table.get("version")
        return cls(NaaccrVersion(v) if v else None, table["dictionaryUri"], table["specificationVersion"],
                   table.get("description", ""), items, frozenset(NaaccrId(r) for r in table.get("retired", ())))


# --- dictionaries: package data and XML ---------------------------------------------------------------

TABLE_PACKAGE = "chartkeeper.registry.naaccr_items"


def shipped_versions() -> list[NaaccrVersion]:
    """The NAACCR versions whose base dictionary ships with Chartkeeper, oldest first."""
    names = [p.name for p in resources.files(TABLE_PACKAGE).iterdir()]
    found = sorted(m.group(1) for n in names if (m := re.fullmatch(r"naaccr-items-(\d{3})\.json", n)))
    return [NaaccrVersion(v) for v in found]


@cache
def _table(version: str) -> Dictionary:
    """A shipped table as generated: for the oldest version, with the retired items it carries for older files."""
    text = resources.files(TABLE_PACKAGE).joinpath(f"naaccr-items-{version}.json").read_text("utf-8")
    return Dictionary.from_table(json.loads(text))


@cache
def dictionary(version: str) -> Dictionary:
    """The NAACCR base dictionary of ``version`` (``"250"``, ``"25"``), from the shipped item tables.

    Versions older than the oldest shipped table are given as that table plus the items retired since
    (``read_as`` says which table); versions newer than the newest shipped one raise ``ValueError``."""
    v = NaaccrVersion(version)
    shipped = shipped_versions()
    if v in shipped:
        d = _table(v)
        # The retired items are for reading older files only: this version's own dictionary leaves them out.
        return Dictionary(d.version, d.uri, d.specification_version, d.description,
                          {k: i for k, i in d.items.items() if k not in d.retired})
    if shipped and int(v) < int(shipped[0]):
        full = _table(shipped[0])
        return Dictionary(v, _BASE_URI.format(v), full.specification_version,
                          f"NAACCR {v}, read with the {shipped[0]} item table and the items retired since",
                          full.items, full.retired, shipped[0])
    have = ", ".join(shipped)
    raise ValueError(f"Chartkeeper has no NAACCR {v} dictionary: it reads versions {have} (and older ones with the "
                     f"{shipped[0]} table). Export the file as one of those versions, or update Chartkeeper.")


def load_dictionary(source: str | Path | IO[bytes]) -> Dictionary:
    """Read a NAACCR dictionary XML file (base or user-defined, specification 1.0-1.8)."""
    stream, opened = _open(source)
    try:
        root = etree.parse(stream).getroot()
    finally:
        for s in opened:
            s.close()
    if root.tag != _Q + "NaaccrDictionary":
        raise ValueError("This is not a NAACCR dictionary: its root element must be NaaccrDictionary in the "
                         f"{NAACCR_NS} namespace.")
    items: dict[NaaccrId, Item] = {}
    for e in root.iter(_Q + "ItemDef"):
        a = e.attrib
        nid = NaaccrId(a["naaccrId"])
        items[nid] = Item(
            nid, int(a["naaccrNum"]), a.get("naaccrName", ""), int(a["length"]), DataType(a.get("dataType", "text")),
            Level(a["parentXmlElement"]), frozenset(RecordType(c.strip()) for c in a.get("recordTypes", "A,M,C,I").split(",")),
            Padding(a.get("padding", "none")), a.get("allowUnlimitedText", "false") == "true",
            a.get("trim", "all") != "none")
    v = root.get("naaccrVersion")
    return Dictionary(NaaccrVersion(v) if v else None, root.get("dictionaryUri", ""),
                      root.get("specificationVersion", ""), root.get("description", ""), items)


def version_of_uri(uri: str) -> NaaccrVersion | None:
    """The NAACCR version a base dictionary URI names (``.../naaccr-dictionary-250.xml`` -> ``250``)."""
    m = _BASE_URI_RE.search(uri.strip())
    return NaaccrVersion(m.group(1)) if m else None


# --- reading -----------------------------------------------------------------------------------------


@dataclass(slots=True)
class NaaccrPatient:
    """One ``<Patient>``: its items and its tumours' items, values as written (trimmed)."""

    items: dict[str, str]
    tumors: list[dict[str, str]]
    line: int = 0


@dataclass(frozen=True, slots=True)
class Reject:
    """One problem in a file: where it is (line, 1-based patient number, item) and what to do."""

    line: int | None
    patient_index: int | None
    item_id: str | None
    reason: str

    def __str__(self) -> str:
        where = [f"line {self.line}" if self.line else "", f"patient {self.patient_index}" if self.patient_index else "",
                 f"item {self.item_id}" if self.item_id else ""]
        return ", ".join(w for w in where if w) + ": " + self.reason


@dataclass(slots=True)
class NaaccrHeader:
    """The ``<NaaccrData>`` element: its attributes and NaaccrData-level items."""

    base_dictionary_uri: str
    version: NaaccrVersion | None
    record_type: RecordType | None
    specification_version: str = SPECIFICATION_VERSION
    user_dictionary_uris: tuple[str, ...] = ()
    time_generated: str | None = None
    items: dict[str, str] = field(default_factory=dict)
    line: int = 0
    dictionary: Dictionary | None = None


def _open(source: str | Path | IO[bytes]) -> tuple[IO[bytes], list[IO[bytes]]]:
    """A binary stream of the (possibly gzip-compressed) file, and the streams we opened (to close)."""
    opened: list[IO[bytes]] = []
    if isinstance(source, str | Path):
        raw: IO[bytes] = open(source, "rb")  # noqa: SIM115 - closed by the caller
        opened.append(raw)
    else:
        raw = source
    if hasattr(raw, "peek"):
        magic = raw.peek(2)[:2]
    elif raw.seekable():
        pos = raw.tell()
        magic = raw.read(2)
        raw.seek(pos)
    else:
        raw = io.BufferedReader(raw)  # type: ignore[arg-type,type-var]
        magic = raw.peek(2)[:2]
    if magic == b"\x1f\x8b":
        gz: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]
        opened.insert(0, gz)
        return gz, opened
    return raw, opened


class NaaccrReader:
    """Streams one NAACCR XML file. ``header`` is read on construction (None if the file cannot be read
    at all: iterating then yields the reason); iterating yields patients and rejects in file order.

    ``complete`` is False after iteration when reading stopped early (malformed XML, unknown version).
    ``patients``, ``tumors`` count what was yielded; ``rejected_patients`` the patients held back."""

    def __init__(self, source: str | Path | IO[bytes], *, user_dictionaries: Iterable[Dictionary] = ()) -> None:
        self._stream, self._opened = _open(source)
        self._user = {d.uri: d for d in user_dictionaries}
        self.header: NaaccrHeader | None = None
        self.complete = True
        self.patients = self.tumors = self.rejected_patients = 0
        self._pending: list[Reject] = []
        self._events = etree.iterparse(self._stream, events=("start", "end"), tag=(_ROOT, _PATIENT),
                                       remove_comments=True, remove_pis=True, resolve_entities=False,
                                       no_network=True, huge_tree=True)
        self._first: tuple[str, Any] | None = None
        self._root: Any = None
        self._dict: Dictionary | None = None
        self._read_header()

    def __enter__(self) -> NaaccrReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for s in self._opened:
            s.close()
        self._opened = []

    def _stop(self, line: int | None, patient: int | None, reason: str) -> None:
        self.complete = False
        self._pending.append(Reject(line, patient, None, reason))

    def _syntax(self, exc: etree.XMLSyntaxError, patient: int | None) -> None:
        line, col = exc.position if exc.position else (exc.lineno, 0)
        done = f"the {self.patients} patient{'s' if self.patients != 1 else ''} before it were read" if patient else \
            "no patient was read"
        self._stop(line, patient, f"The file is not well-formed XML at line {line}, column {col} ({exc.msg}); reading "
                                  f"stopped there and {done}. Repair the file from that line on and import it again.")

    def _read_header(self) -> None:
        root = None
        try:
            for ev, el in self._events:
                if el.tag == _ROOT and ev == "start":
                    root = self._root = el
                    continue
                self._first = (ev, el)
                break
        except etree.XMLSyntaxError as exc:
            self._syntax(exc, None)
            if root is None:
                return
        if root is None:
            self._stop(1, None, f"This is not a NAACCR XML file: its root element must be NaaccrData in the {NAACCR_NS} "
                                "namespace. Check that the right file was chosen.")
            return
        a = root.attrib
        uri = a.get("baseDictionaryUri", "")
        rt_text = a.get("recordType", "")
        h = NaaccrHeader(uri, version_of_uri(uri), None, a.get("specificationVersion", ""),
                         tuple(a.get("userDictionaryUri", "").split()), a.get("timeGenerated"), {}, root.sourceline or 0)
        self.header = h
        if not rt_text:
            self._stop(h.line, None, "The NaaccrData element has no recordType: add recordType=\"A\", \"M\", \"C\" or \"I\".")
        else:
            try:
                h.record_type = RecordType.parse(rt_text)
            except ValueError as exc:
                self._stop(h.line, None, str(exc))
        if h.version is None:
            self._stop(h.line, None, "The baseDictionaryUri does not name a NAACCR base dictionary (it must end in "
                                     "naaccr-dictionary-NNN.xml, like naaccr-dictionary-250.xml): correct it.")
            return
        try:
            d = dictionary(h.version)
        except ValueError as exc:
            self._stop(h.line, None, str(exc))
            return
        users = []
        for u in h.user_dictionary_uris:
            if u in self._user:
                users.append(self._user[u])
            else:
                self._pending.append(Reject(h.line, None, None, (
                    f"The file uses the user-defined dictionary {u}, which was not given: items it defines are "
                    "rejected as unknown. Import again with that dictionary.")))
        if users:
            try:
                d = d.with_user(*users)
            except ValueError as exc:
                self._stop(h.line, None, str(exc))
                return
        h.dictionary = self._dict = d
        self._items_get = d.items.get
        for child in root:
            if child.tag == _ITEM:
                self._take(child, Level.NAACCR_DATA, h.items, None, self._pending)

    def _take(self, el: Any, level: Level, into: dict[str, str], patient: int | None, rejects: list[Reject]) -> None:
        """Check one ``<Item>`` and put its value into ``into``, or add a reject."""
        d = self._dict
        assert d is not None
        nid = el.get("naaccrId")
        item = d.items.get(nid) if nid else None
        if item is None:
            rejects.append(Reject(el.sourceline, patient, nid, self._unknown(el, nid)))
            return
        if item.parent is not level:
            rejects.append(Reject(el.sourceline, patient, nid, (
                f"Item {item.label} belongs inside a {item.parent.value} element, not {level.value}: move it there.")))
            return
        value = el.text
        if value is None:
            return
        if item.trim:
            value = value.strip()
            if not value:
                return
        num = el.get("naaccrNum")
        if num is not None and num != str(item.number):
            rejects.append(Reject(el.sourceline, patient, nid, (
                f"Item {nid} has naaccrNum {num}, but it is item #{item.number}: correct or remove the naaccrNum.")))
            return
        err = item._check(value)
        if err is not None:
            rejects.append(Reject(el.sourceline, patient, nid, err))
            return
        if nid in into:
            rejects.append(Reject(el.sourceline, patient, nid, (
                f"Item {item.label} appears twice in the same {level.value}: keep one.")))
            return
        into[nid] = value

    def _unknown(self, el: Any, nid: str | None) -> str:
        d = self._dict
        assert d is not None
        v = d.version
        if not nid:
            num = el.get("naaccrNum")
            hint = ""
            if num and num.isdigit() and int(num) in d.by_number:
                hint = f" (naaccrNum {num} is {d.by_number[int(num)].naaccr_id})"
            return f"An Item has no naaccrId{hint}: every Item needs its naaccrId attribute."
        elsewhere = [s for s in shipped_versions() if s != v and nid in dictionary(s).items]
        hint = f" It is in the NAACCR {', '.join(elsewhere)} dictionary: check the file's baseDictionaryUri." if elsewhere else \
            " If a registry defines it, give its user-defined dictionary; otherwise correct the id."
        return f"Item {nid} is not in the NAACCR {v} dictionary{' or the given user-defined ones' if self._user else ''}.{hint}"

    def __iter__(self) -> Iterator[NaaccrPatient | Reject]:
        yield from self._pending
        self._pending = []
        if self._dict is None or self._first is None:
            self.close()
            return
        index = 0
        events: Iterator[tuple[str, Any]] = _chain_first(self._first, self._events)
        current = 0
        try:
            for ev, el in events:
                if el.tag != _PATIENT:
                    continue
                if ev == "start":
                    current = index + 1
                    continue
                index += 1
                out = self._patient(el, index)
                # Done with this patient: empty it and drop it and what came before from the tree.
                el.clear(keep_tail=False)
                parent = el.getparent()
                if parent is not None:
                    while el.getprevious() is not None:
                        del parent[0]
                if isinstance(out, NaaccrPatient):
                    self.patients += 1
                    self.tumors += len(out.tumors)
                    yield out
                else:
                    self.rejected_patients += 1
                    yield from out
        except etree.XMLSyntaxError as exc:
            self._syntax(exc, current or None)
            yield from self._pending
            self._pending = []
        finally:
            self.close()

    def _patient(self, el: Any, index: int) -> NaaccrPatient | list[Reject]:
        rejects: list[Reject] = []
        items: dict[str, str] = {}
        tumors: list[dict[str, str]] = []
        self._fill(el, Level.PATIENT, items, index, rejects, tumors)
        if rejects:
            return rejects
        return NaaccrPatient(items, tumors, el.sourceline or 0)

    def _fill(self, parent: Any, level: Level, into: dict[str, str], index: int, rejects: list[Reject],
              tumors: list[dict[str, str]] | None = None) -> None:
        """The children of a Patient (``tumors`` given) or Tumor. The usual ``<Item naaccrId="x">value</Item>``
        with a known, fitting value takes the fast path here; anything else goes to ``_take`` to be explained."""
        get = self._items_get
        take = self._take
        for c in parent:
            tag = c.tag
            if tag != _ITEM:
                if tag == _TUMOR and tumors is not None:
                    t: dict[str, str] = {}
                    self._fill(c, Level.TUMOR, t, index, rejects)
                    tumors.append(t)
                elif tag.startswith(_Q):
                    rejects.append(_unexpected(c, index, level.value))
                # elements in other namespaces are extensions the standard lets readers skip
                continue
            attrs = c.items()
            if len(attrs) != 1 or attrs[0][0] != "naaccrId":
                take(c, level, into, index, rejects)
                continue
            nid = attrs[0][1]
            item = get(nid)
            if item is None or item.parent is not level or nid in into:
                take(c, level, into, index, rejects)
                continue
            value = c.text
            if value is None:
                continue
            if item.trim:
                value = value.strip()
                if not value:
                    continue
            if value not in item._ok and item._check(value) is not None:
                take(c, level, into, index, rejects)
                continue
            into[nid] = value


def _unexpected(el: Any, index: int, where: str) -> Reject:
    name = el.tag.removeprefix(_Q)
    allowed = "Item and Tumor" if where == "Patient" else "Item"
    return Reject(el.sourceline, index, None, f"A {where} may hold only {allowed} elements, not {name}: remove or rename it.")


def _chain_first(first: tuple[str, Any], rest: Iterator[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
    yield first
    yield from rest


def read(source: str | Path | IO[bytes], *, user_dictionaries: Iterable[Dictionary] = ()) -> NaaccrReader:
    """Open a NAACCR XML file (path or binary file, plain or gzip) for streaming.

    The returned reader has ``.header`` and iterates ``NaaccrPatient | Reject`` in file order."""
    return NaaccrReader(source, user_dictionaries=user_dictionaries)


# --- writing -----------------------------------------------------------------------------------------


@dataclass
class WriteReport:
    """What ``write`` did: patients and tumours written, and what it left out and why."""

    patients: int = 0
    tumors: int = 0
    not_in_version: Counter[str] = field(default_factory=Counter)
    """Item id -> values left out because the target version's dictionary lacks the item (or puts it
    at another level)."""
    not_in_record_type: Counter[str] = field(default_factory=Counter)
    """Item id -> values left out because the item is not exchanged in the target record type."""
    rejects: list[Reject] = field(default_factory=list)
    """Patients not written because a value does not fit the target dictionary."""

    @property
    def left_out(self) -> int:
        return sum(self.not_in_version.values()) + sum(self.not_in_record_type.values())


def write(out: str | Path | IO[bytes], header: NaaccrHeader | Mapping[str, str] | None,
          patients: Iterable[NaaccrPatient], version: str = "260", record_type: RecordType | str = RecordType.INCIDENCE,
          *, user_dictionaries: Iterable[Dictionary] = (), time_generated: _dt.datetime | None = None,
          pretty: bool = True) -> WriteReport:
    """Stream ``patients`` to ``out`` as NAACCR XML of ``version`` and ``record_type``.

    ``header`` gives the NaaccrData-level items (a reader's header or a plain mapping). Items are written in
    dictionary order; items the target version or record type does not carry are left out and counted, and
    a patient with a value that does not fit the target dictionary is not written (a reject in the report).
    A path ending in ``.gz`` is written gzip-compressed."""
    v = NaaccrVersion(version)
    if v not in shipped_versions():
        raise ValueError(f"Chartkeeper writes NAACCR versions {', '.join(shipped_versions())}, not {v}: choose one of those.")
    rt = record_type if isinstance(record_type, RecordType) else RecordType.parse(record_type)
    users = list(user_dictionaries)
    d = dictionary(v).with_user(*users) if users else dictionary(v)
    report = WriteReport()
    stamp = (time_generated or _dt.datetime.now(_dt.UTC)).isoformat(timespec="seconds")
    attrs = {"baseDictionaryUri": _BASE_URI.format(v), "recordType": rt.value, "timeGenerated": stamp,
             "specificationVersion": SPECIFICATION_VERSION}
    if users:
        attrs["userDictionaryUri"] = " ".join(u.uri for u in users)
    header_items = dict(header.items if isinstance(header, NaaccrHeader) else (header or {}))

    # per level: item id -> (dictionary position, checker) for the items this version and record type carry
    allowed: dict[Level, dict[str, tuple[int, Callable[[str], str | None]]]] = {lv: {} for lv in Level}
    for k, (nid, it) in enumerate(d.items.items()):
        if rt in it.record_types:
            allowed[it.parent][nid] = (k, it._check)

    def select(values: Mapping[str, str], level: Level, index: int | None, rejects: list[Reject]) -> list[tuple[int, str, str]]:
        chosen = []
        get = allowed[level].get
        for nid, value in values.items():
            ent = get(nid)
            if ent is None:
                it = d.items.get(NaaccrId(nid))
                if it is not None and it.parent is level:
                    report.not_in_record_type[nid] += 1
                else:
                    report.not_in_version[nid] += 1
                continue
            if not value:
                continue
            err = ent[1](value)
            if err is not None:
                rejects.append(Reject(None, index, nid, err))
                continue
            chosen.append((ent[0], nid, value))
        chosen.sort()
        return chosen

    nl1, nl2, nl3 = ("\n    ", "\n        ", "\n            ") if pretty else ("", "", "")
    root_attrs = "".join(f' {k}="{_escape(val, True)}"' for k, val in attrs.items())

    def items_xml(chosen: list[tuple[int, str, str]], indent: str) -> str:
        return "".join([f'{indent}<Item naaccrId="{nid}">{_escape(value)}</Item>' for _, nid, value in chosen])

    stream, owned = _open_out(out)
    try:
        put = stream.write
        put(f'<?xml version="1.0" encoding="UTF-8"?>\n<NaaccrData xmlns="{NAACCR_NS}"{root_attrs}>'.encode())
        hrejects: list[Reject] = []
        head = select(header_items, Level.NAACCR_DATA, None, hrejects)
        bad = [nid for _, nid, value in head if _NOT_XML.search(value)]
        report.rejects.extend(hrejects + [Reject(None, None, nid, _not_xml_reason(nid)) for nid in bad])
        put(items_xml([c for c in head if c[1] not in bad], nl1).encode())
        for index, p in enumerate(patients, 1):
            rejects: list[Reject] = []
            pitems = select(p.items, Level.PATIENT, index, rejects)
            titems = [select(t, Level.TUMOR, index, rejects) for t in p.tumors]
            parts = [nl1, "<Patient>", items_xml(pitems, nl2)]
            for tumor in titems:
                parts += [nl2, "<Tumor>", items_xml(tumor, nl3), nl2 if tumor else "", "</Tumor>"]
            parts += [nl1 if pitems or titems else "", "</Patient>"]
            text = "".join(parts)
            if _NOT_XML.search(text):
                rejects += [Reject(None, index, nid, _not_xml_reason(nid)) for _, nid, value in
                            pitems + [c for t in titems for c in t] if _NOT_XML.search(value)]
            if rejects:
                report.rejects.extend(Reject(p.line or None, r.patient_index, r.item_id, r.reason) for r in rejects)
                continue
            put(text.encode("utf-8"))
            report.patients += 1
            report.tumors += len(p.tumors)
        put(b"\n</NaaccrData>\n")
    finally:
        if owned:
            stream.close()
    return report


# Characters XML 1.0 cannot carry (C0 controls other than tab/newline/return, U+FFFE/FFFF, lone surrogates).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_SPECIAL = re.compile('[&<>"\r]')
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\r": "&#13;"}


def _escape(value: str, attribute: bool = False) -> str:
    """Text (or a double-quoted attribute value) escaped for XML; a carriage return survives as &#13;."""
    if not _SPECIAL.search(value):
        return value
    return _SPECIAL.sub(lambda m: _ESCAPES[m.group()] if attribute or m.group() != '"' else '"', value)


def _not_xml_reason(nid: str) -> str:
    return (f"Item {nid} has a control character that XML cannot carry: remove it (only tab and line breaks "
            "are allowed).")


def _open_out(out: str | Path | IO[bytes]) -> tuple[IO[bytes], bool]:
    if isinstance(out, str | Path):
        p = Path(out)
        if p.suffix == ".gz":
            return gzip.open(p, "wb", compresslevel=6), True  # type: ignore[return-value]
        return open(p, "wb", buffering=1 << 16), True  # noqa: SIM115
    return out, False


def read_all(source: str | Path | IO[bytes] | bytes, **kw: Any) -> tuple[NaaccrHeader | None, list[NaaccrPatient], list[Reject]]:
    """Small files and tests: the header, the patients and the rejects of a whole file."""
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    reader = read(source, **kw)
    patients: list[NaaccrPatient] = []
    rejects: list[Reject] = []
    for x in reader:
        (patients if isinstance(x, NaaccrPatient) else rejects).append(x)  # type: ignore[arg-type]
    return reader.header, patients, rejects
