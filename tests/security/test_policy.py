"""The policy matrix per role, read from docs/security.md (the same table as the code), and the
restricted-patient rule with care teams, grants and break-the-glass."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sec_helpers import SYSTEM

from chartkeeper.db import Database
from chartkeeper.db.base import utcnow
from chartkeeper.security import audit, grants, policy
from chartkeeper.security.grants import GrantError
from chartkeeper.security.policy import Action, Denied
from chartkeeper.security.principal import ROLES, Principal

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
DOC_MATRIX = policy.parse_matrix_markdown(DOC.read_text(encoding="utf-8"))
# One resource type standing for each category.
SAMPLE_TYPE = {
    "demographics": "Patient",
    "encounter": "Encounter",
    "clinical": "Observation",
    "document": "DocumentReference",
    "workflow": "Task",
    "coding": "CodingAbstract",
    "financial": "Claim",
    "registry": "RegistryAbstract",
    "release": "DisclosureRequest",
    "consent": "Consent",
    "directory": "Organization",
    "audit": "AuditEvent",
    "access": "PatientRestriction",
    "user": "UserAccount",
}


def _who(*roles: str, user_id: str = "u-1") -> Principal:
    return Principal(user_id, user_id, frozenset(roles))


def test_doc_shows_exactly_the_code_matrix() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert policy.render_matrix_markdown() in text, "regenerate: python -m chartkeeper.security.policy"
    assert DOC_MATRIX == policy.MATRIX
    assert set(SAMPLE_TYPE) == set(policy.CATEGORIES)
    for cat, rtype in SAMPLE_TYPE.items():
        assert policy.category_of(rtype) == cat


@pytest.mark.parametrize("role", [*ROLES, "system"])
def test_matrix_per_role(db: Database, role: str) -> None:
    """Every action on every category, as the doc says: can() and check() agree, denials audited."""
    who = Principal.system("job") if role == "system" else _who(role)
    expected_denials = 0
    with db.begin() as conn:
        for cat, rtype in SAMPLE_TYPE.items():
            allowed = DOC_MATRIX[role].get(cat, "")
            for action, letter in policy.LETTERS.items():
                want = letter in allowed
                assert policy.can(who, action, rtype) is want, (role, action, rtype)
                try:
                    policy.check(conn, who, action, rtype, None)
                    got = True
                except Denied as exc:
                    assert exc.status == 403
                    got = False
                    expected_denials += 1
                assert got is want, (role, action, rtype)
    with db.read() as conn:
        denials = audit.query(conn, outcome="denied", limit=1000)
        assert audit.verify(conn).ok
    assert len(denials) == expected_denials
    assert all(e.user_id == who.user_id for e in denials)


@pytest.mark.parametrize(
    ("roles", "action", "rtype", "allowed"),
    [
        (("physician",), Action.SIGN, "DocumentReference", True),
        (("him_technician",), Action.SIGN, "DocumentReference", False),
        (("coder",), Action.SIGN, "Composition", False),
        (("coder",), Action.UPDATE, "Encounter", True),
        (("coder",), Action.UPDATE, "Patient", False),
        (("coder",), Action.CREATE, "Claim", True),
        (("coder",), Action.READ, "DocumentReference", True),
        (("release_specialist",), Action.EXPORT, "DocumentReference", True),
        (("him_technician",), Action.EXPORT, "DocumentReference", False),
        (("registrar",), Action.CREATE, "RegistryAbstract", True),
        (("privacy_officer",), Action.READ, "AuditEvent", True),
        (("privacy_officer",), Action.READ, "Observation", False),
        (("privacy_officer",), Action.UPDATE, "Patient", False),
        (("admin",), Action.READ, "AuditEvent", True),
        (("admin",), Action.READ, "Observation", False),
        (("admin",), Action.READ, "Patient", False),
        (("admin",), Action.CREATE, "UserAccount", True),
        (("physician",), Action.READ, "AuditEvent", False),
        (("him_technician",), Action.DELETE, "Observation", True),  # logical: entered in error
        (("him_technician",), Action.DELETE, "Patient", False),
        (("physician",), Action.DELETE, "Observation", False),
        (("physician",), Action.READ, "SomeFutureFhirType", True),  # unlisted types count as clinical
        (("admin",), Action.READ, "SomeFutureFhirType", False),
        (("coder", "registrar"), Action.UPDATE, "RegistryAbstract", True),  # roles add up
        ((), Action.READ, "Organization", False),
        (("surgeon",), Action.READ, "Observation", False),
        (("Physician",), Action.READ, "Observation", False),
    ],
)
def test_matrix_examples(roles: tuple[str, ...], action: Action, rtype: str, allowed: bool) -> None:
    assert policy.can(_who(*roles), action, rtype) is allowed


def test_no_role_is_denied_everything_and_audited(db: Database) -> None:
    nobody = _who()
    with pytest.raises(Denied, match="no role"):
        with db.begin() as conn:
            policy.check(conn, nobody, Action.READ, "Organization", None)
    with pytest.raises(Denied, match="no role"):
        with db.begin() as conn:
            policy.check(conn, _who("surgeon"), "read", "Patient", "p1")
    with pytest.raises(Denied):
        with db.begin() as conn:
            policy.check(conn, _who("physician"), "teleport", "Patient", "p1")
    with db.read() as conn:
        assert policy.visible_patients(conn, nobody, ["p1", "p2"]) == set()
        assert [e.detail for e in audit.query(conn, outcome="denied", newest_first=False)] == [
            "no known role",
            "no known role",
            "unknown action 'teleport'",
        ]


def test_denial_audit_survives_the_callers_rollback_even_after_other_audit_writes(db: Database) -> None:
    doc = _who("physician", user_id="doc")
    coder = _who("coder", user_id="cody")
    with pytest.raises(Denied):
        with db.begin() as conn:
            audit.record(conn, doc, "read", "success", resource_type="Patient", resource_id="p1", patient_id="p1")
            policy.check(conn, coder, Action.UPDATE, "Patient", "p1", resource_id="p1")
    with db.read() as conn:
        entries = audit.query(conn)
        assert audit.verify(conn).ok
    # the read in the rolled-back transaction is gone; the denial is kept
    assert [(e.user_id, e.action, e.outcome, e.patient_id, e.resource_id) for e in entries] == [
        ("cody", "update", "denied", "p1", "p1")
    ]


def _restricted(db: Database, patient_id: str = "pt-vip") -> str:
    with db.begin() as conn:
        grants.restrict_patient(conn, SYSTEM, patient_id, "vip", note="board member")
    return patient_id


def test_restricted_patient_is_denied_to_others(db: Database) -> None:
    pid = _restricted(db)
    doc = _who("physician", user_id="doc")
    with pytest.raises(Denied) as info:
        with db.begin() as conn:
            policy.check(conn, doc, Action.READ, "Observation", pid, resource_id="obs-1")
    assert info.value.status == 403 and info.value.break_glass_possible
    with db.begin() as conn:
        policy.check(conn, doc, Action.READ, "Observation", "pt-ordinary")  # others unaffected
        policy.check(conn, Principal.system("import"), Action.UPDATE, "Observation", pid)  # system jobs pass
        assert policy.visible_patients(conn, doc, [pid, "pt-ordinary"]) == {"pt-ordinary"}
        assert policy.visible_patients(conn, Principal.system("x"), [pid]) == {pid}
    with db.read() as conn:
        denied = audit.query(conn, outcome="denied")
    assert [(e.patient_id, e.resource_id, e.detail) for e in denied] == [
        (pid, "obs-1", "restricted patient (vip): not on care team, no grant")
    ]


def test_care_team_and_explicit_grant_see_a_restricted_patient(db: Database, make_user) -> None:  # type: ignore[no-untyped-def]
    pid = _restricted(db)
    po = make_user("polly", "privacy_officer")
    doc = _who("physician", user_id="doc")
    tech = _who("him_technician", user_id="tech")
    coder = _who("coder", user_id="cody")
    with db.begin() as conn:
        assert grants.add_to_care_team(conn, po, pid, "doc")
        g = grants.grant_access(conn, po, pid, "tech", "chart completion for discharge")
        grants.grant_access(conn, po, pid, "cody", "coding review last week", expires_at=utcnow() + timedelta(seconds=1))
    with db.begin() as conn:
        policy.check(conn, doc, Action.READ, "Observation", pid)
        policy.check(conn, tech, Action.UPDATE, "DocumentReference", pid)
        assert policy.visible_patients(conn, doc, [pid]) == {pid}
        assert policy.visible_patients(conn, tech, [pid, "other"]) == {pid, "other"}
        # the grant lifts the patient rule only: the matrix still applies
        with pytest.raises(Denied, match="role does not allow sign"):
            policy.check(conn, tech, Action.SIGN, "DocumentReference", pid)
    with db.begin() as conn:
        assert grants.revoke_grant(conn, po, g.id)
        assert grants.remove_from_care_team(conn, po, pid, "doc")
    with db.begin() as conn:
        conn.exec_driver_sql("update sec_access_grant set expires_at = created_at where user_id = 'cody'")
    for who in (doc, tech, coder):
        with pytest.raises(Denied):
            with db.begin() as conn:
                policy.check(conn, who, Action.READ, "Encounter", pid)
    with db.read() as conn:
        actions = [e.action for e in audit.query(conn, patient_id=pid, newest_first=False)]
    assert actions == [
        "patient.restrict",
        "careteam.add",
        "grant.create",
        "grant.create",
        "sign",  # the denied signature
        "grant.revoke",
        "careteam.remove",
        "read",
        "read",
        "read",
    ]


def test_only_privacy_officer_manages_restrictions(db: Database, make_user) -> None:  # type: ignore[no-untyped-def]
    doc = make_user("drdoe", "physician")
    with pytest.raises(Denied):
        with db.begin() as conn:
            grants.restrict_patient(conn, doc, "p1", "staff")
    with pytest.raises(GrantError, match="staff, vip, sensitive"):
        with db.begin() as conn:
            grants.restrict_patient(conn, SYSTEM, "p1", "famous")
    with db.read() as conn:
        assert not grants.is_restricted(conn, "p1")


def test_break_the_glass(db: Database, make_user) -> None:  # type: ignore[no-untyped-def]
    pid = _restricted(db)
    doc = make_user("drdoe", "physician")
    with pytest.raises(GrantError, match="reason"):
        with db.begin() as conn:
            grants.break_the_glass(conn, doc, pid, "because")
    t0 = utcnow()
    with db.begin() as conn:
        g = grants.break_the_glass(conn, doc, pid, "  Emergency department:   patient unconscious  ")
    assert g.kind == "break_glass" and g.reason == "Emergency department: patient unconscious"
    assert timedelta(hours=4) - timedelta(seconds=5) < g.expires_at - t0 <= timedelta(hours=4, seconds=5)
    with db.begin() as conn:
        policy.check(conn, doc, Action.READ, "DiagnosticReport", pid)
        assert policy.visible_patients(conn, doc, [pid]) == {pid}
    with db.read() as conn:
        listed = grants.list_break_glass(conn, since=t0 - timedelta(minutes=1))
        entries = audit.query(conn, action="break_glass")
        assert audit.verify(conn).ok
    assert [x.id for x in listed] == [g.id]
    assert len(entries) == 1
    e = entries[0]
    assert (e.user_id, e.patient_id, e.outcome, e.purpose) == (doc.user_id, pid, "success", g.reason)
    ev = audit.as_audit_event(e)
    assert ev["purposeOfEvent"][0]["coding"][0]["code"] == "BTG"


def test_break_the_glass_expires(db: Database, make_user) -> None:  # type: ignore[no-untyped-def]
    pid = _restricted(db)
    doc = make_user("drdoe", "physician")
    with db.begin() as conn:
        grants.break_the_glass(conn, doc, pid, "urgent consult overnight call", now=utcnow() - timedelta(hours=4, seconds=1))
    with pytest.raises(Denied) as info:
        with db.begin() as conn:
            policy.check(conn, doc, Action.READ, "Observation", pid)
    assert info.value.break_glass_possible
    with db.read() as conn:
        assert policy.visible_patients(conn, doc, [pid]) == set()
        assert len(grants.list_break_glass(conn)) == 1


def test_admin_cannot_break_the_glass_and_the_attempt_is_audited(db: Database, make_user) -> None:  # type: ignore[no-untyped-def]
    pid = _restricted(db)
    admin = make_user("ada", "admin")
    with pytest.raises(Denied):
        with db.begin() as conn:
            grants.break_the_glass(conn, admin, pid, "just curious about this patient")
    with db.read() as conn:
        entries = audit.query(conn, action="break_glass")
        assert grants.list_break_glass(conn) == []
    assert [(e.outcome, e.user_id) for e in entries] == [("denied", admin.user_id)]


def test_visible_patients_many_ids(db: Database) -> None:
    ids = [f"p{i}" for i in range(1200)]
    with db.begin() as conn:
        for pid in ids[::100]:
            grants.restrict_patient(conn, SYSTEM, pid, "sensitive")
        grants.add_to_care_team(conn, SYSTEM, "p100", "doc")
    with db.read() as conn:
        seen = policy.visible_patients(conn, _who("physician", user_id="doc"), ids + [""])
    assert seen == (set(ids) - set(ids[::100])) | {"p100"}
