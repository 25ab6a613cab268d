"""Restricted patients, care teams, explicit grants and break-the-glass.

A restricted patient (a staff member, a VIP, sensitive care) is visible only to users on the
patient's care team or holding a live grant. Anyone else who may read patient data can break the
glass: they type a reason and get a time-limited grant; it is always audited and listed for the
privacy officer. The rule itself is applied by ``policy.check`` and ``policy.visible_patients``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Table, delete, insert, select, update

from chartkeeper.db.base import utcnow
from chartkeeper.security import audit
from chartkeeper.security.models import AccessGrantRow, CareTeamRow, PatientRestrictionRow
from chartkeeper.security.policy import Action, Denied, can_read_patient_data, check
from chartkeeper.security.principal import Principal

RESTRICTION_REASONS = ("staff", "vip", "sensitive")
BREAK_GLASS_HOURS = 4.0
BREAK_GLASS_MAX_HOURS = 24.0
BREAK_GLASS_MIN_WORDS = 3
BREAK_GLASS_MIN_CHARS = 15

_restr = cast(Table, PatientRestrictionRow.__table__)
_team = cast(Table, CareTeamRow.__table__)
_grant = cast(Table, AccessGrantRow.__table__)


class GrantError(ValueError):
    """A restriction or grant request was refused; the message says why and what to do."""


@dataclass(frozen=True)
class Restriction:
    patient_id: str
    reason: str
    note: str
    set_by: str
    set_at: datetime


@dataclass(frozen=True)
class Grant:
    id: str
    patient_id: str
    user_id: str
    kind: str  # explicit | break_glass
    reason: str
    granted_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def live(self, now: datetime | None = None) -> bool:
        now = now or utcnow()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


_GRANT_COLS = [
    _grant.c.id,
    _grant.c.patient_id,
    _grant.c.user_id,
    _grant.c.kind,
    _grant.c.reason,
    _grant.c.granted_by,
    _grant.c.created_at,
    _grant.c.expires_at,
    _grant.c.revoked_at,
]


def _grant_obj(row: Any) -> Grant:
    return Grant(**dict(row._mapping))


def _need_patient(patient_id: str) -> str:
    pid = (patient_id or "").strip()
    if not pid or len(pid) > 64:
        raise GrantError("Give the patient's id (at most 64 characters).")
    return pid


# --------------------------------------------------------------------------------------------
# Restriction


def restrict_patient(conn: Connection, actor: Principal, patient_id: str, reason: str, *, note: str = "") -> Restriction:
    """Mark a patient restricted (reason: staff, vip or sensitive); changing the reason is allowed."""
    check(conn, actor, Action.CREATE, "PatientRestriction", None, resource_id=patient_id)
    pid = _need_patient(patient_id)
    reason = (reason or "").strip().lower()
    if reason not in RESTRICTION_REASONS:
        raise GrantError(f"The restriction reason must be one of: {', '.join(RESTRICTION_REASONS)}.")
    now = utcnow()
    conn.execute(delete(_restr).where(_restr.c.patient_id == pid))
    conn.execute(
        insert(_restr),
        {
            "patient_id": pid,
            "reason": reason,
            "note": (note or "")[:500],
            "set_by": actor.user_id,
            "set_at": now,
        },
    )
    audit.record(
        conn,
        actor,
        "patient.restrict",
        "success",
        resource_type="PatientRestriction",
        resource_id=pid,
        patient_id=pid,
        detail=f"reason={reason}",
    )
    return Restriction(pid, reason, (note or "")[:500], actor.user_id, now)


def unrestrict_patient(conn: Connection, actor: Principal, patient_id: str) -> bool:
    check(conn, actor, Action.DELETE, "PatientRestriction", None, resource_id=patient_id)
    pid = _need_patient(patient_id)
    n = conn.execute(delete(_restr).where(_restr.c.patient_id == pid)).rowcount
    if n:
        audit.record(
            conn,
            actor,
            "patient.unrestrict",
            "success",
            resource_type="PatientRestriction",
            resource_id=pid,
            patient_id=pid,
        )
    return bool(n)


def get_restriction(conn: Connection, patient_id: str) -> Restriction | None:
    row = conn.execute(
        select(_restr.c.patient_id, _restr.c.reason, _restr.c.note, _restr.c.set_by, _restr.c.set_at).where(
            _restr.c.patient_id == patient_id
        )
    ).first()
    return Restriction(*row) if row else None


def is_restricted(conn: Connection, patient_id: str) -> bool:
    return get_restriction(conn, patient_id) is not None


def list_restricted(conn: Connection) -> list[Restriction]:
    rows = conn.execute(
        select(_restr.c.patient_id, _restr.c.reason, _restr.c.note, _restr.c.set_by, _restr.c.set_at).order_by(
            _restr.c.set_at.desc()
        )
    )
    return [Restriction(*r) for r in rows]


# --------------------------------------------------------------------------------------------
# Care team


def add_to_care_team(conn: Connection, actor: Principal, patient_id: str, user_id: str) -> bool:
    check(conn, actor, Action.CREATE, "CareTeamMember", None, resource_id=patient_id)
    pid = _need_patient(patient_id)
    exists = conn.execute(select(_team.c.user_id).where(_team.c.patient_id == pid, _team.c.user_id == user_id)).first()
    if exists:
        return False
    conn.execute(
        insert(_team),
        {"patient_id": pid, "user_id": user_id, "added_by": actor.user_id, "added_at": utcnow()},
    )
    audit.record(
        conn,
        actor,
        "careteam.add",
        "success",
        resource_type="CareTeamMember",
        resource_id=user_id,
        patient_id=pid,
    )
    return True


def remove_from_care_team(conn: Connection, actor: Principal, patient_id: str, user_id: str) -> bool:
    check(conn, actor, Action.DELETE, "CareTeamMember", None, resource_id=patient_id)
    n = conn.execute(delete(_team).where(_team.c.patient_id == patient_id, _team.c.user_id == user_id)).rowcount
    if n:
        audit.record(
            conn,
            actor,
            "careteam.remove",
            "success",
            resource_type="CareTeamMember",
            resource_id=user_id,
            patient_id=patient_id,
        )
    return bool(n)


def care_team(conn: Connection, patient_id: str) -> list[str]:
    return [r[0] for r in conn.execute(select(_team.c.user_id).where(_team.c.patient_id == patient_id))]


# --------------------------------------------------------------------------------------------
# Grants


def _insert_grant(
    conn: Connection,
    *,
    patient_id: str,
    user_id: str,
    kind: str,
    reason: str,
    granted_by: str,
    now: datetime,
    expires_at: datetime | None,
) -> Grant:
    gid = secrets.token_hex(8)
    values = {
        "id": gid,
        "patient_id": patient_id,
        "user_id": user_id,
        "kind": kind,
        "reason": reason[:1000],
        "granted_by": granted_by,
        "created_at": now,
        "expires_at": expires_at,
        "revoked_at": None,
    }
    conn.execute(insert(_grant), values)
    return Grant(**values)  # type: ignore[arg-type]


def grant_access(
    conn: Connection,
    actor: Principal,
    patient_id: str,
    user_id: str,
    reason: str,
    *,
    expires_at: datetime | None = None,
) -> Grant:
    """An explicit grant (by the privacy officer) to see one restricted patient; may expire."""
    check(conn, actor, Action.CREATE, "AccessGrant", None, resource_id=patient_id)
    pid = _need_patient(patient_id)
    reason = " ".join((reason or "").split())
    if not reason:
        raise GrantError("Give the reason for the grant.")
    now = utcnow()
    if expires_at is not None and expires_at <= now:
        raise GrantError("The grant's expiry must be in the future.")
    g = _insert_grant(
        conn,
        patient_id=pid,
        user_id=user_id,
        kind="explicit",
        reason=reason,
        granted_by=actor.user_id,
        now=now,
        expires_at=expires_at,
    )
    audit.record(
        conn,
        actor,
        "grant.create",
        "success",
        resource_type="AccessGrant",
        resource_id=g.id,
        patient_id=pid,
        purpose=reason,
        detail=f"for user {user_id}",
    )
    return g


def revoke_grant(conn: Connection, actor: Principal, grant_id: str) -> bool:
    check(conn, actor, Action.UPDATE, "AccessGrant", None, resource_id=grant_id)
    row = conn.execute(select(_grant.c.patient_id, _grant.c.revoked_at).where(_grant.c.id == grant_id)).first()
    if row is None or row[1] is not None:
        return False
    conn.execute(update(_grant).where(_grant.c.id == grant_id).values(revoked_at=utcnow()))
    audit.record(
        conn,
        actor,
        "grant.revoke",
        "success",
        resource_type="AccessGrant",
        resource_id=grant_id,
        patient_id=row[0],
    )
    return True


def break_the_glass(
    conn: Connection,
    principal: Principal,
    patient_id: str,
    reason: str,
    *,
    hours: float = BREAK_GLASS_HOURS,
    now: datetime | None = None,
) -> Grant:
    """Emergency access to a restricted patient: a typed reason buys a grant for ``hours`` (4).

    The grant and its audit entry commit together. The role matrix still applies afterwards: the
    grant lifts only the restricted-patient rule.
    """
    pid = _need_patient(patient_id)
    text = " ".join((reason or "").split())
    if len(text.split()) < BREAK_GLASS_MIN_WORDS or len(text) < BREAK_GLASS_MIN_CHARS:
        raise GrantError(
            "Type the reason for breaking the glass in a few words (at least "
            f"{BREAK_GLASS_MIN_WORDS} words, {BREAK_GLASS_MIN_CHARS} characters), e.g. "
            "'emergency department treatment, patient unconscious'."
        )
    if not 0 < hours <= BREAK_GLASS_MAX_HOURS:
        raise GrantError(f"A break-the-glass grant lasts more than 0 and at most {BREAK_GLASS_MAX_HOURS:g} hours.")
    if not can_read_patient_data(principal):
        audit.record_detached(
            conn,
            principal,
            "break_glass",
            "denied",
            resource_type="Patient",
            patient_id=pid,
            purpose=text,
            detail="role may not read patient data",
        )
        raise Denied("Your role does not allow reading patient records, so it cannot break the glass.")
    now = now or utcnow()
    g = _insert_grant(
        conn,
        patient_id=pid,
        user_id=principal.user_id,
        kind="break_glass",
        reason=text,
        granted_by=principal.user_id,
        now=now,
        expires_at=now + timedelta(hours=hours),
    )
    audit.record(
        conn,
        principal,
        "break_glass",
        "success",
        resource_type="Patient",
        resource_id=pid,
        patient_id=pid,
        purpose=text,
        detail=f"grant {g.id} until {audit.format_time(g.expires_at)}",  # type: ignore[arg-type]
        at=now,
    )
    return g


def list_break_glass(
    conn: Connection,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    user_id: str | None = None,
    patient_id: str | None = None,
    limit: int = 1000,
) -> list[Grant]:
    """Break-the-glass grants, newest first (the privacy officer's review list)."""
    stmt = select(*_GRANT_COLS).where(_grant.c.kind == "break_glass")
    if since is not None:
        stmt = stmt.where(_grant.c.created_at >= since)
    if until is not None:
        stmt = stmt.where(_grant.c.created_at < until)
    if user_id is not None:
        stmt = stmt.where(_grant.c.user_id == user_id)
    if patient_id is not None:
        stmt = stmt.where(_grant.c.patient_id == patient_id)
    stmt = stmt.order_by(_grant.c.created_at.desc()).limit(limit)
    return [_grant_obj(r) for r in conn.execute(stmt)]


def list_grants(conn: Connection, *, user_id: str | None = None, patient_id: str | None = None) -> list[Grant]:
    stmt = select(*_GRANT_COLS)
    if user_id is not None:
        stmt = stmt.where(_grant.c.user_id == user_id)
    if patient_id is not None:
        stmt = stmt.where(_grant.c.patient_id == patient_id)
    return [_grant_obj(r) for r in conn.execute(stmt.order_by(_grant.c.created_at.desc()))]
