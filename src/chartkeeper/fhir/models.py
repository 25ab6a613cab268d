"""Tables of the FHIR resource store.

* ``fhir_resource`` holds one row per logical resource: its current version number, whether it is
  deleted, and the patient compartment it belongs to (for ``$everything`` and access control).
* ``fhir_resource_version`` holds every version's full JSON. Nothing is overwritten: an update adds
  a row, a delete adds a row with ``deleted`` set and no content.
* ``fhir_idx_*`` hold the search parameters of current versions, one row per value.

Each resource has an integer surrogate key, ``fhir_resource.pk``, given in creation order. Index rows
carry it (``resource_pk``) instead of the resource's type and id strings: their primary key is
(resource_pk, param, value...), clustered on SQLite (WITHOUT ROWID), so the rows of newly created
resources are appended at the end of the B-tree instead of inserted at random places (ids are UUIDs),
and the keys are a third of the width. Each index table has one lookup index by (type, param, value);
a search finds resource keys there and joins them to ``fhir_resource`` by ``pk``.
Index dates are fixed-width UTC ISO strings (``YYYY-MM-DDTHH:MM:SS``) so that range comparison is a
plain string comparison on every backend.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from chartkeeper.db.base import Base, UTCDateTime

# SQLite: INTEGER PRIMARY KEY, the table's rowid; PostgreSQL: BIGINT with a sequence.
_PK = BigInteger().with_variant(Integer(), "sqlite")


class ResourceRow(Base):
    __tablename__ = "fhir_resource"
    # Surrogate key, in creation order (given by the store: see FhirStore._new_keys).
    pk: Mapped[int] = mapped_column(_PK, primary_key=True, autoincrement=True)
    resource_type: Mapped[str] = mapped_column(String(64), nullable=False)
    id: Mapped[str] = mapped_column(String(64), nullable=False)
    version_id: Mapped[int] = mapped_column(Integer, nullable=False)
    last_updated: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    deleted: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    patient_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Digest of the content without meta.versionId/lastUpdated: an unchanged re-import adds no version.
    content_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)

    __table_args__ = (
        UniqueConstraint("resource_type", "id"),
        Index("ix_fhir_resource_patient", "patient_id", "resource_type"),
        Index("ix_fhir_resource_type_updated", "resource_type", "last_updated"),
    )


class VersionRow(Base):
    __tablename__ = "fhir_resource_version"
    resource_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_updated: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    deleted: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # create | update | delete
    method: Mapped[str] = mapped_column(String(8), nullable=False)
    # The user who made the change (security user id), or a system name such as "import".
    author: Mapped[str | None] = mapped_column(String(128), nullable=True)
    content: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Same digest as fhir_resource.content_hash: an import never re-adds a state the record had.
    content_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)

    __table_args__ = (Index("ix_fhir_resource_version_updated", "last_updated"),)


class TokenIndex(Base):
    __tablename__ = "fhir_idx_token"
    resource_pk: Mapped[int] = mapped_column(_PK, primary_key=True, autoincrement=False)
    param: Mapped[str] = mapped_column(String(64), primary_key=True)
    resource_type: Mapped[str] = mapped_column(String(64), nullable=False)
    system: Mapped[str] = mapped_column(String(255), primary_key=True, default="")
    code: Mapped[str] = mapped_column(String(255), primary_key=True)

    __table_args__ = (
        Index("ix_fhir_idx_token_lookup", "resource_type", "param", "code", "system", "resource_pk"),
        {"sqlite_with_rowid": False},
    )


class StringIndex(Base):
    __tablename__ = "fhir_idx_string"
    resource_pk: Mapped[int] = mapped_column(_PK, primary_key=True, autoincrement=False)
    param: Mapped[str] = mapped_column(String(64), primary_key=True)
    resource_type: Mapped[str] = mapped_column(String(64), nullable=False)
    # Lower-cased, accents removed: FHIR string search is case- and accent-insensitive.
    value: Mapped[str] = mapped_column(String(255), primary_key=True)

    __table_args__ = (
        Index("ix_fhir_idx_string_lookup", "resource_type", "param", "value", "resource_pk"),
        {"sqlite_with_rowid": False},
    )


class DateIndex(Base):
    __tablename__ = "fhir_idx_date"
    resource_pk: Mapped[int] = mapped_column(_PK, primary_key=True, autoincrement=False)
    param: Mapped[str] = mapped_column(String(64), primary_key=True)
    resource_type: Mapped[str] = mapped_column(String(64), nullable=False)
    low: Mapped[str] = mapped_column(String(19), primary_key=True)
    high: Mapped[str] = mapped_column(String(19), primary_key=True)

    __table_args__ = (
        Index("ix_fhir_idx_date_lookup", "resource_type", "param", "low", "resource_pk"),
        {"sqlite_with_rowid": False},
    )


class ReferenceIndex(Base):
    __tablename__ = "fhir_idx_reference"
    resource_pk: Mapped[int] = mapped_column(_PK, primary_key=True, autoincrement=False)
    param: Mapped[str] = mapped_column(String(64), primary_key=True)
    resource_type: Mapped[str] = mapped_column(String(64), nullable=False)
    target_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    target_id: Mapped[str] = mapped_column(String(64), primary_key=True)

    __table_args__ = (
        Index("ix_fhir_idx_reference_lookup", "resource_type", "param", "target_id", "target_type",
              "resource_pk"),
        {"sqlite_with_rowid": False},
    )


INDEX_TABLES = (TokenIndex, StringIndex, DateIndex, ReferenceIndex)
