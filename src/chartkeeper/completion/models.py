"""Chart completion tables. The workflow state lives here; each deficiency is also a FHIR Task.

* ``completion_chart``: one row per analysed (discharged) encounter: the denominator of the
  delinquency rate and the grouping of the technician's queue.
* ``completion_deficiency``: one row per (encounter, rule, subject); the same row is updated by every
  re-analysis, never duplicated. Its ``id`` is the id of the FHIR Task that shows it.
* ``completion_notification``: every reminder and escalation, whether or not e-mail delivered it.
* ``completion_pending``: encounters whose chart changed in a bulk import, waiting to be analysed.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from chartkeeper.db.base import Base, UTCDateTime

OPEN, COMPLETED, WAIVED = "open", "completed", "waived"
STATUSES = (OPEN, COMPLETED, WAIVED)


class ChartRow(Base):
    __tablename__ = "completion_chart"
    encounter_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    patient_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    encounter_class: Mapped[str] = mapped_column(String(16), nullable=False, default="")
    service: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    attending_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    admitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    discharged_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, index=True)
    analysed_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    rules_version: Mapped[str] = mapped_column(String(64), nullable=False)


class DeficiencyRow(Base):
    __tablename__ = "completion_deficiency"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    encounter_id: Mapped[str] = mapped_column(String(64), nullable=False)
    patient_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    rule_id: Mapped[str] = mapped_column(String(64), nullable=False)
    subject: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    title: Mapped[str] = mapped_column(String(300), nullable=False)
    document_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    physician_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    completed_how: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    waived_reason: Mapped[str] = mapped_column(String(1000), nullable=False, default="")
    closed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    response: Mapped[str] = mapped_column(String(1000), nullable=False, default="")
    responded_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Set when a technician reassigned it by hand: re-analysis keeps that physician.
    reassigned_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    rules_version: Mapped[str] = mapped_column(String(64), nullable=False)

    __table_args__ = (
        UniqueConstraint("encounter_id", "rule_id", "subject", name="uq_completion_deficiency_key"),
        Index("ix_completion_deficiency_status_physician", "status", "physician_id"),
        Index("ix_completion_deficiency_status_due", "status", "due_at"),
        Index("ix_completion_deficiency_document", "document_id"),
    )


class NotificationRow(Base):
    __tablename__ = "completion_notification"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # reminder | escalation
    physician_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    recipient: Mapped[str] = mapped_column(String(320), nullable=False, default="")
    subject: Mapped[str] = mapped_column(String(300), nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    deficiencies: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, index=True)
    channel: Mapped[str] = mapped_column(String(16), nullable=False, default="inbox")  # inbox | email
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    error: Mapped[str] = mapped_column(String(1000), nullable=False, default="")


class PendingRow(Base):
    __tablename__ = "completion_pending"
    encounter_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
