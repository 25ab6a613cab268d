"""Security tables: users, login failures, web sessions, API tokens, restriction and grants, audit log.

* ``sec_user``: one row per person; ``roles`` is a space-separated sorted list of role names.
* ``sec_login_failure``: one row per failed login, for the lockout window (10 failures in 15 minutes).
* ``sec_session``: server-side web sessions; the cookie holds a random id, the table only its SHA-256.
* ``sec_api_token``: API bearer tokens, stored as SHA-256, expiring and revocable.
* ``sec_patient_restriction``, ``sec_care_team``, ``sec_access_grant``: the patient-level rule
  (restricted patients, care teams, explicit and break-the-glass grants).
* ``audit_log``: the append-only, hash-chained audit trail; ``audit_head`` is its one-row chain head
  (last sequence number and hash, optionally HMAC-signed), locked by whoever extends the chain so it
  stays linear under concurrent writers. ``audit_checkpoint`` holds signed checkpoints.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from chartkeeper.db.base import Base, UTCDateTime


class UserRow(Base):
    __tablename__ = "sec_user"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Stored lower-cased: user names are unique without regard to case.
    username: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    display_name: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    roles: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # A physician's account is this Practitioner in the record: their deficiencies, their signature.
    practitioner_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)


class LoginFailureRow(Base):
    __tablename__ = "sec_login_failure"
    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), nullable=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)

    __table_args__ = (Index("ix_sec_login_failure_user_at", "username", "at"),)


class SessionRow(Base):
    __tablename__ = "sec_session"
    # SHA-256 (hex) of the random session id held in the cookie.
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    csrf_token: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    client_address: Mapped[str | None] = mapped_column(String(64), nullable=True)


class ApiTokenRow(Base):
    __tablename__ = "sec_api_token"
    # Public id (shown in lists, used to revoke); the secret itself is never stored.
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    user_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    label: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class PatientRestrictionRow(Base):
    __tablename__ = "sec_patient_restriction"
    patient_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # staff | vip | sensitive
    reason: Mapped[str] = mapped_column(String(16), nullable=False)
    note: Mapped[str] = mapped_column(String(500), nullable=False, default="")
    set_by: Mapped[str] = mapped_column(String(128), nullable=False)
    set_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class CareTeamRow(Base):
    __tablename__ = "sec_care_team"
    patient_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    added_by: Mapped[str] = mapped_column(String(128), nullable=False)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)

    __table_args__ = (Index("ix_sec_care_team_user", "user_id", "patient_id"),)


class AccessGrantRow(Base):
    __tablename__ = "sec_access_grant"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64), nullable=False)
    user_id: Mapped[str] = mapped_column(String(64), nullable=False)
    # explicit | break_glass
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    reason: Mapped[str] = mapped_column(String(1000), nullable=False)
    granted_by: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        Index("ix_sec_access_grant_user_patient", "user_id", "patient_id"),
        Index("ix_sec_access_grant_kind_created", "kind", "created_at"),
    )


# The actions recorded for nearly every request (see ix_audit_log_action_at).
BULK_ACTIONS = ("read", "search")
BULK_ACTIONS_EXCLUDED = text("action NOT IN ('read', 'search')")


class AuditRow(Base):
    __tablename__ = "audit_log"
    # Identity of the entry (AuditEvent.id). On SQLite it equals ``seq``; on PostgreSQL it comes from
    # the table's sequence when the entry is written and ``seq`` is given when it is sealed.
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    # Position in the hash chain: 1, 2, 3, ... with no gaps (a gap is a deleted entry). NULL only
    # while an entry written on PostgreSQL waits to be sealed into the chain (audit.seal).
    seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True, unique=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    user_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    username: Mapped[str | None] = mapped_column(String(128), nullable=True)
    roles: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    action: Mapped[str] = mapped_column(String(32), nullable=False)
    # success | denied | failure
    outcome: Mapped[str] = mapped_column(String(16), nullable=False)
    resource_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    resource_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    patient_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    purpose: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    detail: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    client_address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    prev_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    hash: Mapped[str | None] = mapped_column(String(64), nullable=True)

    __table_args__ = (
        Index("ix_audit_log_patient_at", "patient_id", "at"),
        Index("ix_audit_log_user_at", "user_id", "at"),
        Index("ix_audit_log_at", "at"),
        # Reads and searches are nearly every entry, so an index on them would select nothing and only
        # add a page write to every audited request; the actions a privacy officer looks for by name
        # (break_glass, export, login, denied writes, ...) are few and indexed here. audit.query adds
        # this same condition so both databases use the index.
        Index("ix_audit_log_action_at", "action", "at", sqlite_where=BULK_ACTIONS_EXCLUDED,
              postgresql_where=BULK_ACTIONS_EXCLUDED),
        Index(
            "ix_audit_log_unsealed",
            "id",
            postgresql_where=text("seq IS NULL"),
            sqlite_where=text("seq IS NULL"),
        ),
    )


class AuditHeadRow(Base):
    __tablename__ = "audit_head"
    # Always 1: one row, locked by every append.
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)
    # HMAC-SHA256 of "seq:hash" with the secret key ("" when no key is configured).
    mac: Mapped[str] = mapped_column(String(64), nullable=False, default="")


class AuditCheckpointRow(Base):
    __tablename__ = "audit_checkpoint"
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    mac: Mapped[str] = mapped_column(String(64), nullable=False)
    note: Mapped[str] = mapped_column(Text, nullable=False, default="")
