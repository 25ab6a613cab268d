"""The shapes the coding engines share: a coded case (what edits and the grouper read), the edits
they report, and the suggestions computer-assisted coding proposes. Pure values; no storage."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from chartkeeper.coding.codes import HCPCSCode, ICD10CMCode, ICD10PCSCode

Setting = Literal["inpatient", "outpatient"]
Sex = Literal["M", "F", "U"]
# Present on admission: Y yes, N no, U documentation insufficient, W clinically undetermined,
# "1" exempt (reported blank on the UB-04; CMS's exempt list).
POA_VALUES = ("Y", "N", "U", "W", "1")


@dataclass(frozen=True)
class CodedDiagnosis:
    code: ICD10CMCode
    poa: str | None = None


@dataclass(frozen=True)
class CodedProcedure:
    code: ICD10PCSCode | HCPCSCode
    performed: date | None = None


@dataclass(frozen=True)
class CodingCase:
    """One encounter as coded. ``diagnoses[0]`` is the principal (inpatient) or first-listed
    (outpatient) diagnosis; ``procedures[0]`` the principal procedure."""

    encounter_id: str
    setting: Setting
    admit_date: date
    discharge_date: date | None
    birth_date: date | None
    sex: Sex
    discharge_status: str = "01"  # UB-04 patient discharge status, two digits; 01 home, 20 died
    diagnoses: tuple[CodedDiagnosis, ...] = ()
    procedures: tuple[CodedProcedure, ...] = ()

    @property
    def age(self) -> int | None:
        if self.birth_date is None:
            return None
        on = self.admit_date
        b = self.birth_date
        return on.year - b.year - ((on.month, on.day) < (b.month, b.day))


@dataclass(frozen=True)
class Edit:
    """One edit failure: ``edit`` is a stable id (``mce.sex_conflict``, ``cm.excludes1``, ``poa.missing``),
    ``codes`` the codes it concerns, ``message`` what is wrong and how to fix it, as a sentence.
    An ``error`` blocks finalizing; a ``warning`` is shown and may be finalized past."""

    edit: str
    severity: Literal["error", "warning"]
    codes: tuple[str, ...]
    message: str


@dataclass(frozen=True)
class Evidence:
    document_id: str
    sentence: str
    start: int  # character offsets into the document text
    end: int


@dataclass(frozen=True)
class Suggestion:
    """A code proposed by computer-assisted coding, with the text that supports it."""

    kind: Literal["diagnosis", "procedure"]
    code: ICD10CMCode | ICD10PCSCode | HCPCSCode
    title: str
    evidence: tuple[Evidence, ...]
    principal: bool = False
    reason: str = ""  # e.g. "uncertain diagnosis coded as established (inpatient)"
    alternatives: tuple[str, ...] = field(default=())
