"""Writes the synthetic population through the normal record service (validated and audited like
any import) and creates one demo user per role."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from chartkeeper.db import Database
from chartkeeper.demo.generator import generate
from chartkeeper.fhir.errors import FhirError
from chartkeeper.fhir.service import RecordService
from chartkeeper.fhir.store import Prepared, prepare
from chartkeeper.fhir.validation import validate
from chartkeeper.security import users
from chartkeeper.security.principal import ROLES, Principal

# Demo logins: printed by `make demo`. Never use these outside a demo database.
DEMO_PASSWORD = "chartkeeper-demo"
CHUNK = 3000


@dataclass
class DemoReport:
    patients: int = 0
    resources: int = 0
    rejects: list[str] = field(default_factory=list)


def load_population(db: Database, patients: int, seed: int, *, today: date | None = None,
                    progress: Callable[[int], None] | None = None) -> DemoReport:
    """Generate and store ``patients`` people whose records end on ``today`` (default: the
    generator's fixed day); ``progress(people_done)`` after each chunk."""
    records = RecordService(db)
    who = Principal.system("demo")
    report = DemoReport()
    pending: list[Prepared] = []
    people = 0

    def flush() -> None:
        if pending:
            with db.begin() as conn:
                records.ingest(conn, who, pending, validated=True, source="demo")
            pending.clear()
            if progress:
                progress(people)

    for i, group in enumerate(generate(patients, seed, today)):
        if i > 0:
            people += 1
        for res in group:
            issues = validate(res)
            if issues:
                report.rejects.append(f"{res.get('resourceType')}/{res.get('id')}: {issues[0].message}")
                continue
            pending.append(prepare(res, res["id"]))
            report.resources += 1
        if len(pending) >= CHUNK:
            flush()
    flush()
    report.patients = people
    return report


def demo_users(db: Database) -> list[tuple[str, str, str]]:
    """One user per role (username = role name); existing ones are left as they are."""
    admin = Principal.system("demo")
    out = []
    with db.begin() as conn:
        for role in ROLES:
            if users.find_user(conn, role) is None:
                try:
                    users.create_user(conn, role, DEMO_PASSWORD, [role], actor=admin,
                                      display_name=f"Demo {role.replace('_', ' ')}")
                except (users.UserError, FhirError) as exc:  # pragma: no cover - shown to the user
                    raise SystemExit(f"Could not create the demo user {role}: {exc}") from None
            out.append((role, DEMO_PASSWORD, role))
    return out


def link_demo_physician(db: Database) -> tuple[str, str] | None:
    """Link the demo ``physician`` user to the practitioner with the most open deficiencies (so the
    inbox has work), unless it is linked already. Returns (practitioner id, name) or None."""
    from sqlalchemy import func, select

    from chartkeeper.completion.models import DeficiencyRow
    from chartkeeper.fhir.store import FhirStore

    admin = Principal.system("demo")
    with db.begin() as conn:
        u = users.find_user(conn, "physician")
        if u is None:
            return None
        pid = u.practitioner_id
        if pid is None:
            row = conn.execute(select(DeficiencyRow.physician_id, func.count().label("n"))
                               .where(DeficiencyRow.status == "open", DeficiencyRow.physician_id.is_not(None))
                               .group_by(DeficiencyRow.physician_id).order_by(func.count().desc(), DeficiencyRow.physician_id)
                               .limit(1)).first()
            if row is None:
                return None
            pid = str(row[0])
            users.link_practitioner(conn, u.id, pid, actor=admin)
        name = ""
        try:
            p = FhirStore().read(conn, "Practitioner", pid).resource()
            n = (p.get("name") or [{}])[0]
            name = n.get("text") or " ".join([*n.get("prefix", []), *n.get("given", []), n.get("family", "")]).strip()
        except FhirError:
            pass
        return pid, name
