"""Typed ICD-O-3 values for the registry, on the same ``Code`` base as the coding module's codes, so a
histology cannot be passed where a topography (primary site) or an ICD-10-CM code is wanted."""

from __future__ import annotations

import re

from chartkeeper.coding.codes import Code


class ICDO3Topography(Code):
    """Primary site, NAACCR item 400: ``C`` and three digits, stored without the dot (``C509``)."""

    system = "urn:oid:2.16.840.1.113883.6.43.1"
    label = "ICD-O-3 topography (primary site)"
    pattern = re.compile(r"C[0-9]{3}")
    example = "C50.9 or C509"

    @property
    def dotted(self) -> str:
        return f"{self[:3]}.{self[3:]}"


class ICDO3Histology(Code):
    """Histologic type, NAACCR item 522: four digits (``8500``)."""

    system = "urn:oid:2.16.840.1.113883.6.43.1"
    label = "ICD-O-3 histology"
    pattern = re.compile(r"[89][0-9]{3}")
    example = "8500"


class ICDO3Behavior(Code):
    """Behavior code, NAACCR item 523: 0 benign, 1 uncertain/borderline, 2 in situ, 3 malignant."""

    system = "urn:oid:2.16.840.1.113883.6.43.1"
    label = "ICD-O-3 behavior"
    pattern = re.compile(r"[0-3]")
    example = "3"
