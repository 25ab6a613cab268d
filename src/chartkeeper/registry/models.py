"""Cancer registry tables. The workflow state of the registry lives here and points at the record.

* ``registry_suspense``: one row per screened source resource (a pathology report or an ICD-10-CM
  Condition) that casefinding found reportable: the registrar's suspense queue. The matching text
  is kept as spans into the report's text (``matches``), not copied. Status: pending, accepted
  (a case was made), linked (added to an existing tumour), rejected (with a reason).
* ``registry_patient``: one row per registry patient, holding the patient-level NAACCR items as a
  JSON object keyed by naaccrId, and the follow-up columns (vital status, date of last contact).
* ``registry_tumor``: one abstract per tumour: its NAACCR items as a JSON object keyed by naaccrId,
  typed indexed columns for what lists and reports filter on, the stored edit results.
* ``registry_pending``: resources that a bulk import wrote, waiting to be screened (and patients
  whose follow-up may have changed), like ``completion_pending``.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from chartkeeper.db.base import Base, UTCDateTime

PENDING, ACCEPTED, LINKED, REJECTED = "pending", "accepted", "linked", "rejected"
SUSPENSE_STATUSES = (PENDING, ACCEPTED, LINKED, REJECTED)
INCOMPLETE, COMPLETE = "incomplete", "complete"


class SuspenseRow(Base):
    __tablename__ = "registry_suspense"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    source_type: Mapped[str] = mapped_column(String(64), nullable=False)  # DocumentReference | Condition
    source_id: Mapped[str] = mapped_column(String(64), nullable=False)
    source_version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    patient_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # pathology | diagnosis
    source_date: Mapped[date | None] = mapped_column(Date, nullable=True, index=True)
    found_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    reason: Mapped[str] = mapped_column(String(500), nullable=False, default="")
    # JSON list of {"start", "end", "phrase", "kind"}: spans into the report's text.
    matches: Mapped[str] = mapped_column(Text, nullable=False, default="[]")
    code: Mapped[str] = mapped_column(String(16), nullable=False, default="")  # the ICD-10-CM code screened
    suggested_site: Mapped[str] = mapped_column(String(4), nullable=False, default="")
    suggested_histology: Mapped[str] = mapped_column(String(4), nullable=False, default="")
    suggested_behavior: Mapped[str] = mapped_column(String(1), nullable=False, default="")
    suggested_laterality: Mapped[str] = mapped_column(String(1), nullable=False, default="")
    # An existing tumour of the same site for this patient: the registrar links rather than duplicates.
    link_tumor_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=PENDING)
    decided_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    reject_reason: Mapped[str] = mapped_column(String(1000), nullable=False, default="")
    tumor_id: Mapped[str | None] = mapped_column(String(64), nullable=True)

    __table_args__ = (
        UniqueConstraint("source_type", "source_id", name="uq_registry_suspense_source"),
        Index("ix_registry_suspense_status_date", "status", "source_date"),
    )


class RegistryPatientRow(Base):
    __tablename__ = "registry_patient"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The record's Patient id; None for a case imported from another registry's file.
    patient_id: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    patient_id_number: Mapped[str] = mapped_column(String(8), nullable=False, unique=True)  # NAACCR item 20
    items: Mapped[str] = mapped_column(Text, nullable=False, default="{}")
    vital_status: Mapped[str] = mapped_column(String(1), nullable=False, default="")  # 0 dead, 1 alive
    date_of_last_contact: Mapped[date | None] = mapped_column(Date, nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class RegistryTumorRow(Base):
    __tablename__ = "registry_tumor"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    registry_patient_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    patient_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    items: Mapped[str] = mapped_column(Text, nullable=False, default="{}")
    primary_site: Mapped[str] = mapped_column(String(4), nullable=False, default="", index=True)
    histology: Mapped[str] = mapped_column(String(4), nullable=False, default="")
    behavior: Mapped[str] = mapped_column(String(1), nullable=False, default="")
    laterality: Mapped[str] = mapped_column(String(1), nullable=False, default="")
    date_of_diagnosis: Mapped[date | None] = mapped_column(Date, nullable=True, index=True)
    sequence_number: Mapped[str] = mapped_column(String(2), nullable=False, default="")
    class_of_case: Mapped[str] = mapped_column(String(2), nullable=False, default="", index=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=INCOMPLETE)
    edit_errors: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # JSON list of the last edit run's results ({"edit_id", "severity", "items", "message"}).
    edits: Mapped[str] = mapped_column(Text, nullable=False, default="[]")
    source_suspense_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    updated_by: Mapped[str | None] = mapped_column(String(128), nullable=True)


class RegistryPendingRow(Base):
    __tablename__ = "registry_pending"
    resource_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    resource_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
