"""Errors of the record layer, each able to render itself as a FHIR OperationOutcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Issue:
    message: str
    code: str = "invalid"
    severity: str = "error"
    path: str | None = None

    def as_fhir(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity, "code": self.code, "diagnostics": self.message}
        if self.path:
            out["expression"] = [self.path]
        return out


@dataclass
class FhirError(Exception):
    """An error with an HTTP status and OperationOutcome issues. Messages never carry PHI."""

    status: int
    issues: list[Issue] = field(default_factory=list)

    def __init__(self, status: int, message: str | None = None, *, code: str = "processing",
                 issues: list[Issue] | None = None) -> None:
        self.status = status
        self.issues = list(issues or [])
        if message:
            self.issues.insert(0, Issue(message, code=code))
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return "; ".join(i.message for i in self.issues) or f"HTTP {self.status}"

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.as_fhir() for i in issues]}


def not_found(rtype: str, rid: str) -> FhirError:
    return FhirError(404, f"{rtype}/{rid} does not exist.", code="not-found")


def gone(rtype: str, rid: str) -> FhirError:
    return FhirError(410, f"{rtype}/{rid} was deleted.", code="deleted")


def bad_request(message: str, code: str = "invalid") -> FhirError:
    return FhirError(400, message, code=code)
