"""SEER Site Recode (ICD-O-3, 2023): the site group a tumour is counted under in survival and
incidence reports, from its primary site, histology, behaviour and (for two groups whose histology
lists changed in 2010) its year of diagnosis.

The rules are the public SEER table, generated into package data by ``scripts/gen_seer_site_recode.py``
(``data/seer_site_recode_2023.json``); nothing is downloaded at run time. The groups are tried in the
table's order and the first that matches wins; a tumour no group takes (benign or borderline outside
the brain, CNS and intracranial glands, or a histology no group lists) has no site group (``None``),
which reports show as "unknown or not recoded".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

from chartkeeper.registry.codes import ICDO3Behavior, ICDO3Histology, ICDO3Topography

Ranges = tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class SiteGroup:
    """One SEER site recode group: ``code`` is the two-digit recode (``"39"``), ``name`` its label (``"Breast"``)."""

    code: str
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class _Rule:
    group: SiteGroup
    sites: Ranges
    hist_in: Ranges | None
    hist_out: Ranges
    behaviors: frozenset[str]
    year_min: int | None
    year_max: int | None

    def matches(self, site: int, hist: int, behavior: str, year: int | None) -> bool:
        if behavior not in self.behaviors or not _within(site, self.sites):
            return False
        if self.hist_in is not None and not _within(hist, self.hist_in):
            return False
        if _within(hist, self.hist_out):
            return False
        if year is None:  # no year given: the rule in force now, i.e. one with no upper year
            return self.year_max is None
        if self.year_min is not None and year < self.year_min:
            return False
        return self.year_max is None or year <= self.year_max


def _within(value: int, ranges: Ranges) -> bool:
    return any(lo <= value <= hi for lo, hi in ranges)


def _ranges(raw: list[list[int]] | None) -> Ranges:
    return tuple((int(a), int(b)) for a, b in raw or ())


@cache
def _rules() -> tuple[_Rule, ...]:
    text = resources.files("chartkeeper.registry").joinpath("data/seer_site_recode_2023.json").read_text("utf-8")
    out = []
    for g in json.loads(text)["groups"]:
        out.append(_Rule(
            group=SiteGroup(g["code"], g["name"]),
            sites=_ranges(g["sites"]),
            hist_in=None if g["hist_in"] is None else _ranges(g["hist_in"]),
            hist_out=_ranges(g["hist_out"]),
            behaviors=frozenset(g["behaviors"]),
            year_min=g["year_min"],
            year_max=g["year_max"],
        ))
    return tuple(out)


def site_groups() -> tuple[SiteGroup, ...]:
    """Every site group, in the SEER table's order, once each (for report rows and legends)."""
    seen: dict[str, SiteGroup] = {}
    for rule in _rules():
        seen.setdefault(rule.group.code, rule.group)
    return tuple(seen.values())


def site_group(topography: ICDO3Topography | str, histology: ICDO3Histology | str,
               behavior: ICDO3Behavior | str, dx_year: int | None = None) -> SiteGroup | None:
    """The SEER site recode group of one tumour, or ``None`` when no group takes it.

    Codes may be given as typed values or as text (``"C50.9"``, ``"8500"``, ``"3"``); malformed text
    raises ``CodeFormatError`` with a sentence naming the code system. ``dx_year`` matters only for
    histology 9727 (precursor lymphoid before 2010, non-Hodgkin lymphoma from 2010); without it the
    current rules apply.
    """
    topo = ICDO3Topography(topography)
    hist = int(ICDO3Histology(histology))
    beh = str(ICDO3Behavior(behavior))
    site = int(topo[1:])
    for rule in _rules():
        if rule.matches(site, hist, beh, dx_year):
            return rule.group
    return None
