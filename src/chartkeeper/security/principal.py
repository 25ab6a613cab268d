"""Who is acting: the authenticated user (or a named system job) with their roles."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Connection

ROLES = (
    "him_technician",
    "coder",
    "registrar",
    "release_specialist",
    "physician",
    "privacy_officer",
    "admin",
)
# Not assignable to users: only system jobs (CLI import, demo generator) act with it.
SYSTEM_ROLE = "system"

ROLE_LABELS = {
    "him_technician": "HIM technician",
    "coder": "Coder",
    "registrar": "Cancer registrar",
    "release_specialist": "Release-of-information specialist",
    "physician": "Physician",
    "privacy_officer": "Privacy officer",
    "admin": "Administrator",
    SYSTEM_ROLE: "System job",
}


@dataclass(frozen=True)
class Principal:
    user_id: str
    username: str
    roles: frozenset[str]
    display_name: str = ""
    client_address: str | None = None
    # The Practitioner this user is in the record (physicians): whose deficiencies, whose signature.
    practitioner_id: str | None = None

    @staticmethod
    def system(name: str) -> Principal:
        """A system job (CLI import, demo generator): reads and writes every type, always audited."""
        return Principal(
            user_id=f"system:{name}",
            username=f"system:{name}",
            roles=frozenset({SYSTEM_ROLE}),
            display_name=f"System job {name}",
        )

    @property
    def is_system(self) -> bool:
        return SYSTEM_ROLE in self.roles

    @property
    def roles_text(self) -> str:
        """Roles as stored in the audit log: sorted, space-separated."""
        return " ".join(sorted(self.roles))

    def with_address(self, client_address: str | None) -> Principal:
        return replace(self, client_address=client_address)


class PendingPrincipal:
    """A caller whose credential is checked inside the service's own transaction.

    An interface passes one instead of a :class:`Principal` when resolving the caller would otherwise
    cost a transaction of its own (a bearer token is one indexed read; on the audited read path a
    separate transaction for it costs as much as the read). The service calls :meth:`resolve` first
    thing in its transaction, before it looks at any data; ``resolve`` returns the principal or raises
    the interface's own "not authenticated" error, which rolls the transaction back.
    """

    def resolve(self, conn: Connection) -> Principal:
        raise NotImplementedError


def normalize_roles(roles: object) -> frozenset[str]:
    """Validate user-assignable roles; raises ValueError naming the unknown role and the choices."""
    if isinstance(roles, str):
        roles = [roles]
    out: set[str] = set()
    for r in roles:  # type: ignore[attr-defined]
        name = str(r).strip().lower()
        if name not in ROLES:
            raise ValueError(f"Unknown role {r!r}: choose from {', '.join(ROLES)}.")
        out.add(name)
    return frozenset(out)
