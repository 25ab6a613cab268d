"""Typed code values. A code is a ``str`` subclass that checks and normalises its own format, so an
ICD-10-CM diagnosis cannot be passed where an ICD-10-PCS procedure is wanted (type checkers see the
difference) and a malformed code is refused where it enters, with a sentence saying what is wrong.

Format checks only: whether a code exists in the classification is the code sets' job
(``chartkeeper.coding.codesets``).
"""

from __future__ import annotations

import re
from typing import ClassVar, Self


class CodeFormatError(ValueError):
    """A code that is not written the way its system writes codes."""


class Code(str):
    system: ClassVar[str] = ""
    label: ClassVar[str] = ""
    pattern: ClassVar[re.Pattern[str]]
    example: ClassVar[str] = ""

    def __new__(cls, value: str) -> Self:
        if isinstance(value, cls):
            return value
        if not isinstance(value, str):
            raise CodeFormatError(f"A {cls.label} code must be text, not {type(value).__name__}.")
        norm = cls.normalise(value)
        if not cls.pattern.fullmatch(norm):
            raise CodeFormatError(
                f"{value.strip()!r} is not a valid {cls.label} code: write it like {cls.example}.")
        return super().__new__(cls, norm)

    @classmethod
    def normalise(cls, value: str) -> str:
        return value.strip().upper().replace(".", "")

    @classmethod
    def parse(cls, value: str) -> Self | None:
        """The code, or None when ``value`` is not in this system's format."""
        try:
            return cls(value)
        except CodeFormatError:
            return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class ICD10CMCode(Code):
    """An ICD-10-CM diagnosis code, stored without its dot (``E1122``); ``dotted`` shows ``E11.22``."""

    system = "http://hl7.org/fhir/sid/icd-10-cm"
    label = "ICD-10-CM"
    # The second character is a digit, or A in the QA0 category the April 2026 update added
    # (neurodevelopmental disorders related to specific genetic variants, QA0.0101 ...).
    pattern = re.compile(r"[A-Z][0-9A][0-9A-Z]([0-9A-Z]{1,4})?")
    example = "E11.22 or I50.9"

    @property
    def dotted(self) -> str:
        s = str(self)
        return s if len(s) <= 3 else f"{s[:3]}.{s[3:]}"


class ICD10PCSCode(Code):
    """An ICD-10-PCS procedure code: seven characters, digits and letters except I and O."""

    system = "http://www.cms.gov/Medicare/Coding/ICD10"
    label = "ICD-10-PCS"
    pattern = re.compile(r"[0-9A-HJ-NP-Z]{7}")
    example = "0DTJ4ZZ"


class HCPCSCode(Code):
    """A HCPCS Level II code (a letter and four digits) or a CPT code (five characters)."""

    system = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
    label = "HCPCS/CPT"
    pattern = re.compile(r"[A-V][0-9]{4}|[0-9]{4}[0-9FTU]")
    example = "J1100 or 99223"

    @property
    def is_cpt(self) -> bool:
        return self[0].isdigit()


SYSTEMS: dict[str, type[Code]] = {"icd10cm": ICD10CMCode, "icd10pcs": ICD10PCSCode, "hcpcs": HCPCSCode}
