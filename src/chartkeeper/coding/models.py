"""Coding workflow tables and the typed values they hold.

* ``coding_abstract``: one row per discharged encounter (its key); the coding queue, the status of
  the work (uncoded, in progress, query pending, final), who has it, the MS-DRG when final and the
  working MS-DRG (what the codes group to now, with their edit counts) before that.
  Rows appear by themselves when an encounter is written finished with a discharge time (the record
  service's write listener); ``CodingService.sync`` fills them in for encounters written before.
* ``coding_code``: the codes on an abstract, diagnoses and procedures, in sequence (``seq`` 1 is the
  principal / first-listed), with POA and whether the code came from a suggestion.
* ``coding_decision``: every suggestion computer-assisted coding made, and the coder's decision on
  it (accepted unchanged, edited to another code, rejected): the data of the accuracy report.
* ``coding_query``: physician queries; ``id`` is the id of the FHIR Task that shows it in the
  physician's inbox.
* ``coding_hcpcs``: the HCPCS Level II code list as imported from CMS's quarterly files.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import Date, Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from chartkeeper.coding.case import Setting
from chartkeeper.db.base import Base, UTCDateTime


class AbstractStatus(StrEnum):
    UNCODED = "uncoded"
    IN_PROGRESS = "in_progress"
    QUERY_PENDING = "query_pending"
    FINAL = "final"


class CodingSetting(StrEnum):
    """Where the encounter happened, from Encounter.class: what the queue is sorted by. (Emergency
    visits are coded by outpatient rules.)"""

    INPATIENT = "inpatient"
    OUTPATIENT = "outpatient"
    EMERGENCY = "emergency"

    @property
    def case_setting(self) -> Setting:
        return "inpatient" if self is CodingSetting.INPATIENT else "outpatient"


class CodeKind(StrEnum):
    DIAGNOSIS = "dx"
    PROCEDURE = "px"


class CodeSource(StrEnum):
    SUGGESTED = "suggested"
    MANUAL = "manual"


class Decision(StrEnum):
    PENDING = "pending"  # suggested, not yet decided
    ACCEPTED = "accepted"  # taken unchanged
    EDITED = "edited"  # taken as another (usually more specific) code
    REJECTED = "rejected"


class QueryStatus(StrEnum):
    OPEN = "open"
    ANSWERED = "answered"
    WITHDRAWN = "withdrawn"


# Encounter.class (v3 ActCode) -> coding setting. Classes not listed are not coded by this queue.
CLASS_SETTING: dict[str, CodingSetting] = {
    "IMP": CodingSetting.INPATIENT,
    "ACUTE": CodingSetting.INPATIENT,
    "NONAC": CodingSetting.INPATIENT,
    "EMER": CodingSetting.EMERGENCY,
    "AMB": CodingSetting.OUTPATIENT,
    "OBSENC": CodingSetting.OUTPATIENT,
    "SS": CodingSetting.OUTPATIENT,
    "PRENC": CodingSetting.OUTPATIENT,
    "HH": CodingSetting.OUTPATIENT,
    "VR": CodingSetting.OUTPATIENT,
}


class AbstractRow(Base):
    __tablename__ = "coding_abstract"
    encounter_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    patient_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    setting: Mapped[str] = mapped_column(String(16), nullable=False)
    encounter_class: Mapped[str] = mapped_column(String(16), nullable=False, default="")
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    admitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    discharged_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    assigned_to: Mapped[str | None] = mapped_column(String(64), nullable=True)
    assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finalized_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    finalized_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    claim_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    drg: Mapped[str | None] = mapped_column(String(8), nullable=True)
    drg_title: Mapped[str] = mapped_column(String(300), nullable=False, default="")
    drg_detail: Mapped[str] = mapped_column(Text, nullable=False, default="")  # the grouper's result, JSON
    edits_checked: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    # The working MS-DRG: what the stay groups to with the codes as they are now (worked out when a coder
    # saves the codes, ``service.regroup_stay``, and in bulk by ``CodingService.working_drgs``, run for
    # stays not yet final and after a grouper update), with the grouper version used, the relative weight
    # and how many error and warning edits the codes have.
    working_drg: Mapped[str | None] = mapped_column(String(8), nullable=True)
    working_drg_title: Mapped[str] = mapped_column(String(300), nullable=False, default="")
    working_weight: Mapped[float | None] = mapped_column(Float, nullable=True)
    working_grouper: Mapped[str] = mapped_column(String(8), nullable=False, default="")
    working_errors: Mapped[int | None] = mapped_column(Integer, nullable=True)
    working_warnings: Mapped[int | None] = mapped_column(Integer, nullable=True)
    working_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    reopened_reason: Mapped[str] = mapped_column(String(1000), nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)

    __table_args__ = (
        Index("ix_coding_abstract_status_discharged", "status", "discharged_at"),
        Index("ix_coding_abstract_assigned", "assigned_to", "status"),
        Index("ix_coding_abstract_finalized", "finalized_at"),
        # PostgreSQL: abstract rows are updated in place (working MS-DRGs thousands at a time, status,
        # codes saved); room on each page lets the new row version stay there without touching the
        # indexes (a HOT update), which halved the regroup's UPDATE. SQLite ignores it.
        {"postgresql_with": {"fillfactor": 75}},
    )


class CodeRow(Base):
    __tablename__ = "coding_code"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    encounter_id: Mapped[str] = mapped_column(String(64), nullable=False)
    kind: Mapped[str] = mapped_column(String(2), nullable=False)  # CodeKind
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    code: Mapped[str] = mapped_column(String(16), nullable=False)
    system: Mapped[str] = mapped_column(String(16), nullable=False)  # key of codes.SYSTEMS
    poa: Mapped[str | None] = mapped_column(String(1), nullable=True)
    performed: Mapped[date | None] = mapped_column(Date, nullable=True)
    source: Mapped[str] = mapped_column(String(16), nullable=False)  # CodeSource

    __table_args__ = (UniqueConstraint("encounter_id", "kind", "seq", name="uq_coding_code_seq"),)


class DecisionRow(Base):
    __tablename__ = "coding_decision"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    encounter_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    kind: Mapped[str] = mapped_column(String(2), nullable=False)
    system: Mapped[str] = mapped_column(String(16), nullable=False)
    suggested_code: Mapped[str] = mapped_column(String(16), nullable=False)
    title: Mapped[str] = mapped_column(String(300), nullable=False, default="")
    evidence: Mapped[str] = mapped_column(Text, nullable=False, default="[]")  # JSON list
    suggested_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    decision: Mapped[str] = mapped_column(String(16), nullable=False)  # Decision
    final_code: Mapped[str | None] = mapped_column(String(16), nullable=True)
    coder: Mapped[str | None] = mapped_column(String(64), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # True when the coder did not decide explicitly and finalizing inferred it from the final codes.
    inferred: Mapped[int] = mapped_column(Integer, nullable=False, default=0)

    __table_args__ = (
        UniqueConstraint("encounter_id", "kind", "suggested_code", name="uq_coding_decision_suggestion"),
        Index("ix_coding_decision_decided", "decided_at"),
    )


class QueryRow(Base):
    __tablename__ = "coding_query"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    encounter_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    patient_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    physician_id: Mapped[str] = mapped_column(String(64), nullable=False)
    asked_by: Mapped[str] = mapped_column(String(64), nullable=False)
    question: Mapped[str] = mapped_column(Text, nullable=False)
    options: Mapped[str] = mapped_column(Text, nullable=False)  # JSON list of strings, as shown
    evidence: Mapped[str] = mapped_column(Text, nullable=False)  # JSON list of {reference, excerpt}
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # QueryStatus
    answer: Mapped[str] = mapped_column(String(300), nullable=False, default="")
    answer_text: Mapped[str] = mapped_column(String(1000), nullable=False, default="")
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    addendum_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    withdrawn_reason: Mapped[str] = mapped_column(String(1000), nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)

    __table_args__ = (Index("ix_coding_query_physician_status", "physician_id", "status"),)


class HcpcsRow(Base):
    __tablename__ = "coding_hcpcs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(5), nullable=False)
    short_description: Mapped[str] = mapped_column(String(100), nullable=False, default="")
    long_description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    effective_from: Mapped[date | None] = mapped_column(Date, nullable=True)
    effective_to: Mapped[date | None] = mapped_column(Date, nullable=True)
    source_file: Mapped[str] = mapped_column(String(300), nullable=False, default="")
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)

    __table_args__ = (
        UniqueConstraint("code", "effective_from", name="uq_coding_hcpcs_code_from"),
        Index("ix_coding_hcpcs_code", "code"),
    )
