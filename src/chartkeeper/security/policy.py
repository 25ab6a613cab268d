"""The one policy check: role x action x resource type, then the restricted-patient rule.

Every read, search, write and export of patient data, from the web, the REST API and the CLI,
calls :func:`check` in the service layer. The matrix below is the only place the rules live;
``docs/security.md`` shows the same table (``render_matrix_markdown``; a test keeps them equal).

Resource types are grouped into categories (``TYPE_CATEGORY``); a FHIR type not listed counts as
``clinical``. Domain modules with their own tables register their record types with
:func:`register_resource_type`.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import cast

from sqlalchemy import Connection, Table, and_, bindparam, or_, select

from chartkeeper.db.base import utcnow
from chartkeeper.db.driver import DriverStatement
from chartkeeper.security import audit
from chartkeeper.security.models import AccessGrantRow, CareTeamRow, PatientRestrictionRow
from chartkeeper.security.principal import ROLES, SYSTEM_ROLE, Principal


class Action(StrEnum):
    READ = "read"
    SEARCH = "search"
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    EXPORT = "export"
    SIGN = "sign"
    HISTORY = "history"


class Denied(Exception):
    """The principal may not do this. ``status`` is the HTTP status to answer with (403 or 404).

    ``break_glass_possible`` is True when the only obstacle is a restricted patient: the user may
    break the glass with a reason (grants.break_the_glass) and try again.
    """

    def __init__(self, message: str, *, status: int = 403, break_glass_possible: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.break_glass_possible = break_glass_possible


# One letter per action, used in the matrix and the documentation.
LETTERS: dict[Action, str] = {
    Action.READ: "R",
    Action.SEARCH: "S",
    Action.HISTORY: "H",
    Action.CREATE: "C",
    Action.UPDATE: "U",
    Action.DELETE: "D",
    Action.EXPORT: "E",
    Action.SIGN: "G",
}
_BY_LETTER = {v: k for k, v in LETTERS.items()}

# Categories of data, in the order of the documented table, with what each holds.
CATEGORIES: dict[str, str] = {
    "demographics": "The patient and the people around them",
    "encounter": "Visits and episodes of care",
    "clinical": "Clinical facts: results, problems, procedures, medications, ...",
    "document": "Clinical documents and reports",
    "workflow": "Deficiencies, coding queries and other tasks",
    "coding": "Coding abstracts (the codes assigned to an encounter)",
    "financial": "Claims, coverage and accounts",
    "registry": "Cancer registry abstracts and follow-up",
    "release": "Release-of-information requests and the accounting of disclosures",
    "consent": "Consents and authorizations",
    "directory": "Organizations, practitioners, locations, terminology: no patient data",
    "audit": "The audit log",
    "access": "Restricted patients, care teams and grants",
    "user": "User accounts, roles and API tokens",
}
# Categories that hold a patient's record (break-the-glass needs READ on one of them).
PATIENT_DATA = (
    "demographics",
    "encounter",
    "clinical",
    "document",
    "workflow",
    "coding",
    "financial",
    "registry",
    "release",
    "consent",
)

_TYPES: dict[str, tuple[str, ...]] = {
    "demographics": ("Patient", "RelatedPerson", "Person"),
    "encounter": ("Encounter", "EpisodeOfCare", "Appointment", "AppointmentResponse"),
    "document": ("DocumentReference", "Composition", "DiagnosticReport", "Binary", "DocumentManifest"),
    "workflow": ("Task", "Communication", "CommunicationRequest"),
    "coding": ("CodingAbstract",),
    "financial": (
        "Claim",
        "ClaimResponse",
        "ExplanationOfBenefit",
        "Coverage",
        "CoverageEligibilityRequest",
        "CoverageEligibilityResponse",
        "Account",
        "ChargeItem",
        "Invoice",
        "PaymentNotice",
        "PaymentReconciliation",
    ),
    "registry": ("RegistryAbstract",),
    "release": ("DisclosureRequest",),
    "consent": ("Consent",),
    "directory": (
        "Organization",
        "Practitioner",
        "PractitionerRole",
        "Location",
        "HealthcareService",
        "Endpoint",
        "Medication",
        "Substance",
        "Schedule",
        "Slot",
        "InsurancePlan",
        "OrganizationAffiliation",
        "ValueSet",
        "CodeSystem",
        "ConceptMap",
        "Questionnaire",
        "StructureDefinition",
        "SearchParameter",
        "CapabilityStatement",
        "OperationDefinition",
    ),
    "audit": ("AuditEvent",),
    "access": ("PatientRestriction", "CareTeamMember", "AccessGrant"),
    "user": ("UserAccount", "ApiToken"),
}
TYPE_CATEGORY: dict[str, str] = {t: cat for cat, types in _TYPES.items() for t in types}
DEFAULT_CATEGORY = "clinical"

# The matrix: role -> category -> actions (letters as in LETTERS). A missing cell is no access.
# FHIR DELETE is logical (a new version marked deleted; history keeps every version): HIM
# technicians may delete a result or document entered in error; nobody deletes a patient
# (duplicates are merged) or an encounter.
MATRIX: dict[str, dict[str, str]] = {
    "him_technician": {
        "demographics": "RSHCU",
        "encounter": "RSHCU",
        "clinical": "RSHCUD",
        "document": "RSHCUD",
        "workflow": "RSHCU",
        "coding": "RS",
        "financial": "RS",
        "consent": "RSHCU",
        "directory": "RSHCU",
    },
    "coder": {
        "demographics": "RS",
        "encounter": "RSHU",
        "clinical": "RSH",
        "document": "RSH",
        "workflow": "RSHCU",
        "coding": "RSHCU",
        "financial": "RSHCU",
        "directory": "RS",
    },
    "registrar": {
        "demographics": "RSH",
        "encounter": "RSH",
        "clinical": "RSH",
        "document": "RSH",
        "workflow": "RS",
        "coding": "RS",
        "registry": "RSHCUE",
        "directory": "RS",
    },
    "release_specialist": {
        "demographics": "RSHE",
        "encounter": "RSHE",
        "clinical": "RSHE",
        "document": "RSHE",
        "release": "RSHCUE",
        "consent": "RSHCU",
        "directory": "RS",
    },
    "physician": {
        "demographics": "RSH",
        "encounter": "RSHCU",
        "clinical": "RSHCU",
        "document": "RSHCUG",
        "workflow": "RSHCU",
        "coding": "RS",
        "consent": "RSH",
        "directory": "RS",
    },
    "privacy_officer": {
        "demographics": "RSH",
        "release": "RSH",
        "consent": "RSH",
        "directory": "RS",
        "audit": "RSE",
        "access": "RSHCUD",
        "user": "RS",
    },
    "admin": {
        "directory": "RSHCU",
        "audit": "RSE",
        "access": "RS",
        "user": "RSHCUD",
    },
    # System jobs (CLI import, demo generator): read, search, history, create, update and export
    # every category; no delete, no signature. Always audited like anyone else.
    SYSTEM_ROLE: {cat: "RSHCUE" for cat in CATEGORIES},
}


def _compile(matrix: dict[str, dict[str, str]]) -> dict[str, dict[str, frozenset[Action]]]:
    out: dict[str, dict[str, frozenset[Action]]] = {}
    for role, cells in matrix.items():
        out[role] = {}
        for cat, letters in cells.items():
            if cat not in CATEGORIES:
                raise ValueError(f"matrix names unknown category {cat!r} for role {role!r}")
            out[role][cat] = frozenset(_BY_LETTER[ch] for ch in letters)
    return out


_ALLOWED = _compile(MATRIX)


def register_resource_type(resource_type: str, category: str) -> None:
    """Let a domain module put its own record type into a category (e.g. "CodingAbstract")."""
    if category not in CATEGORIES:
        raise ValueError(f"Unknown category {category!r}: choose from {', '.join(CATEGORIES)}.")
    existing = TYPE_CATEGORY.get(resource_type)
    if existing is not None and existing != category:
        raise ValueError(f"{resource_type} is already in category {existing!r}.")
    TYPE_CATEGORY[resource_type] = category


def category_of(resource_type: str) -> str:
    return TYPE_CATEGORY.get(resource_type, DEFAULT_CATEGORY)


def allowed_actions(principal: Principal, resource_type: str) -> frozenset[Action]:
    cat = category_of(resource_type)
    out: set[Action] = set()
    for role in principal.roles:
        out |= _ALLOWED.get(role, {}).get(cat, frozenset())
    return frozenset(out)


def can(principal: Principal, action: Action | str, resource_type: str) -> bool:
    """The matrix alone (no patient rule, no audit): for menus and filtering."""
    try:
        act = Action(action)
    except ValueError:
        return False
    return act in allowed_actions(principal, resource_type)


def can_read_patient_data(principal: Principal) -> bool:
    return any(Action.READ in _ALLOWED.get(role, {}).get(cat, frozenset()) for role in principal.roles for cat in PATIENT_DATA)


# --------------------------------------------------------------------------------------------
# The patient rule

_restr = cast(Table, PatientRestrictionRow.__table__)
_team = cast(Table, CareTeamRow.__table__)
_grant = cast(Table, AccessGrantRow.__table__)


def _grant_live(now):  # type: ignore[no-untyped-def]
    return and_(
        _grant.c.revoked_at.is_(None),
        or_(_grant.c.expires_at.is_(None), _grant.c.expires_at > now),
    )


_RESTRICTION = select(_restr.c.reason).where(_restr.c.patient_id == bindparam("pid"))
_D_RESTRICTION = DriverStatement(_RESTRICTION)  # in every check: straight to the driver


def restriction_reason(conn: Connection, patient_id: str) -> str | None:
    row = _D_RESTRICTION.first(conn, {"pid": patient_id})
    return str(row[0]) if row else None


def has_patient_access(conn: Connection, principal: Principal, patient_id: str) -> bool:
    """True when the patient is not restricted, or the principal is on the care team or granted."""
    if principal.is_system:
        return True
    if restriction_reason(conn, patient_id) is None:
        return True
    return _team_or_grant(conn, principal.user_id, patient_id)


def _team_or_grant(conn: Connection, user_id: str, patient_id: str) -> bool:
    on_team = conn.execute(select(_team.c.user_id).where(_team.c.patient_id == patient_id, _team.c.user_id == user_id)).first()
    if on_team:
        return True
    granted = conn.execute(
        select(_grant.c.id).where(_grant.c.user_id == user_id, _grant.c.patient_id == patient_id, _grant_live(utcnow())).limit(1)
    ).first()
    return granted is not None


def hidden_patients(conn: Connection, principal: Principal) -> set[str]:
    """Restricted patients this principal may not see: excluded inside search queries, so that
    totals and paging never reveal them. (Restricted patients are few: one small query.)"""
    if principal.is_system:
        return set()
    restricted = {r[0] for r in conn.execute(select(_restr.c.patient_id))}
    if not restricted:
        return set()
    return restricted - visible_patients(conn, principal, restricted)


def visible_patients(conn: Connection, principal: Principal, patient_ids: Iterable[str]) -> set[str]:
    """Which of these patients the principal may see under the restricted-patient rule.

    A handful of queries per 500 ids, never one per row: for search results, _include and
    $everything. (The role matrix is separate: use :func:`can` for the resource type.)
    """
    ids = {p for p in patient_ids if p}
    if principal.is_system or not ids:
        return ids
    if not principal.roles & set(ROLES):
        return set()
    restricted: set[str] = set()
    ordered = sorted(ids)
    for i in range(0, len(ordered), 500):
        chunk = ordered[i : i + 500]
        restricted.update(r[0] for r in conn.execute(select(_restr.c.patient_id).where(_restr.c.patient_id.in_(chunk))))
    if not restricted:
        return ids
    allowed: set[str] = set()
    rlist = sorted(restricted)
    now = utcnow()
    for i in range(0, len(rlist), 500):
        chunk = rlist[i : i + 500]
        allowed.update(
            r[0]
            for r in conn.execute(
                select(_team.c.patient_id).where(_team.c.user_id == principal.user_id, _team.c.patient_id.in_(chunk))
            )
        )
        allowed.update(
            r[0]
            for r in conn.execute(
                select(_grant.c.patient_id).where(
                    _grant.c.user_id == principal.user_id, _grant.c.patient_id.in_(chunk), _grant_live(now)
                )
            )
        )
    return (ids - restricted) | allowed


# --------------------------------------------------------------------------------------------
# The check


def _deny(
    conn: Connection,
    principal: Principal,
    action: Action | str,
    resource_type: str,
    patient_id: str | None,
    resource_id: str | None,
    message: str,
    reason: str,
    *,
    purpose: str | None = None,
    break_glass_possible: bool = False,
) -> Denied:
    audit.record_detached(
        conn,
        principal,
        str(action),
        "denied",
        resource_type=resource_type,
        resource_id=resource_id,
        patient_id=patient_id,
        purpose=purpose,
        detail=reason,
    )
    return Denied(message, status=403, break_glass_possible=break_glass_possible)


def check(
    conn: Connection,
    principal: Principal,
    action: Action | str,
    resource_type: str,
    patient_id: str | None,
    *,
    resource_id: str | None = None,
    purpose: str | None = None,
) -> None:
    """Allow or raise :class:`Denied`. The denial is audited and kept even if the caller rolls back.

    1. An empty or unknown role set is denied everything.
    2. The matrix: one of the principal's roles must allow ``action`` on the type's category.
    3. The patient rule: a restricted patient is visible only to the care team, to users with an
       explicit grant and to users with an unexpired break-the-glass grant (system jobs pass).

    Successful access is not audited here: the caller records it with ``audit.record`` in the same
    transaction as the data it returns or changes.
    """
    try:
        act = Action(action)
    except ValueError:
        raise _deny(
            conn,
            principal,
            str(action)[:32],
            resource_type,
            patient_id,
            resource_id,
            "This action is not known.",
            f"unknown action {str(action)[:32]!r}",
            purpose=purpose,
        ) from None
    known = principal.roles & (set(ROLES) | {SYSTEM_ROLE})
    if not known:
        raise _deny(
            conn,
            principal,
            act,
            resource_type,
            patient_id,
            resource_id,
            "Your account has no role, so it may not see or change anything; ask an administrator.",
            "no known role",
            purpose=purpose,
        )
    if act not in allowed_actions(principal, resource_type):
        raise _deny(
            conn,
            principal,
            act,
            resource_type,
            patient_id,
            resource_id,
            f"Your role does not allow {act.value} on {resource_type}.",
            f"role matrix: {principal.roles_text} may not {act.value} {category_of(resource_type)}",
            purpose=purpose,
        )
    if patient_id and not principal.is_system:
        reason = restriction_reason(conn, patient_id)
        if reason is not None and not _team_or_grant(conn, principal.user_id, patient_id):
            raise _deny(
                conn,
                principal,
                act,
                resource_type,
                patient_id,
                resource_id,
                "This patient's record is restricted: only the care team and users with a grant may "
                "open it. Break the glass, giving your reason, if you must proceed.",
                f"restricted patient ({reason}): not on care team, no grant",
                purpose=purpose,
                break_glass_possible=can_read_patient_data(principal),
            )


# --------------------------------------------------------------------------------------------
# Documentation

MATRIX_BEGIN = "<!-- policy-matrix:begin (generated by chartkeeper.security.policy; do not edit) -->"
MATRIX_END = "<!-- policy-matrix:end -->"


def render_matrix_markdown() -> str:
    """The matrix and the type-to-category table as Markdown (what docs/security.md shows)."""
    cats = list(CATEGORIES)
    lines = [MATRIX_BEGIN, ""]
    legend = ", ".join(f"{letter} {act.value}" for act, letter in LETTERS.items())
    lines.append(f"Letters: {legend}. An empty cell is no access.")
    lines.append("")
    lines.append("| role | " + " | ".join(cats) + " |")
    lines.append("| --- | " + " | ".join("---" for _ in cats) + " |")
    for role, cells in MATRIX.items():
        lines.append(f"| {role} | " + " | ".join(cells.get(c, "") for c in cats) + " |")
    lines.append("")
    lines.append("| category | holds | resource types |")
    lines.append("| --- | --- | --- |")
    for cat, desc in CATEGORIES.items():
        types = ", ".join(_TYPES.get(cat, ()))
        if cat == DEFAULT_CATEGORY:
            types = "every FHIR type not listed in another category (Observation, Condition, ...)"
        lines.append(f"| {cat} | {desc} | {types} |")
    lines.append("")
    lines.append(MATRIX_END)
    return "\n".join(lines)


def parse_matrix_markdown(text: str) -> dict[str, dict[str, str]]:
    """Read the role table back out of docs/security.md (for the test that keeps them equal)."""
    start = text.index(MATRIX_BEGIN)
    end = text.index(MATRIX_END, start)
    rows = [ln for ln in text[start:end].splitlines() if ln.startswith("| ")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    assert header[0] == "role", "the first table in the matrix block must be the role table"
    out: dict[str, dict[str, str]] = {}
    for ln in rows[1:]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        if cells[0] == "category":
            break
        if cells[0] == "---":
            continue
        out[cells[0]] = {cat: v for cat, v in zip(header[1:], cells[1:], strict=True) if v}
    return out


if __name__ == "__main__":
    print(render_matrix_markdown())
