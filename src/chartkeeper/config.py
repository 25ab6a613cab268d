"""Settings, read from CHARTKEEPER_* environment variables in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

# The identifier system of this facility's medical record numbers (Patient.identifier.system).
MRN_SYSTEM = "https://chartkeeper.example.org/mrn"


def _default_db_url() -> str:
    return f"sqlite:///{Path('var') / 'chartkeeper.db'}"


@dataclass(frozen=True)
class Settings:
    database_url: str = field(default_factory=_default_db_url)
    # Secret used to sign session cookies and CSRF tokens. The demo generates one under var/.
    secret_key: str = ""
    # Minutes of inactivity after which a web session ends (HIPAA automatic logoff).
    session_idle_minutes: int = 15
    # Hours an API bearer token lives.
    token_hours: int = 8
    # Largest accepted request body in bytes.
    max_body_bytes: int = 20 * 1024 * 1024
    # Deepest accepted JSON nesting.
    max_json_depth: int = 64
    # Auth and audit on the FHIR API. Only benchmarks switch this off, to measure the overhead.
    auth_enabled: bool = True
    base_url: str = "http://127.0.0.1:8000"
    # Minutes between the web server's chart-completion reminder runs (0: off; use cron instead).
    reminder_minutes: int = 60

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        kw: dict[str, object] = {}
        if v := env.get("CHARTKEEPER_DATABASE_URL"):
            kw["database_url"] = v
        if v := env.get("CHARTKEEPER_SECRET_KEY"):
            kw["secret_key"] = v
        if v := env.get("CHARTKEEPER_SESSION_IDLE_MINUTES"):
            kw["session_idle_minutes"] = int(v)
        if v := env.get("CHARTKEEPER_TOKEN_HOURS"):
            kw["token_hours"] = int(v)
        if v := env.get("CHARTKEEPER_MAX_BODY_BYTES"):
            kw["max_body_bytes"] = int(v)
        if v := env.get("CHARTKEEPER_AUTH_ENABLED"):
            kw["auth_enabled"] = v.lower() not in ("0", "false", "no", "off")
        if v := env.get("CHARTKEEPER_REMINDER_MINUTES"):
            kw["reminder_minutes"] = int(v)
        if v := env.get("CHARTKEEPER_BASE_URL"):
            kw["base_url"] = v.rstrip("/")
        return cls(**kw)  # type: ignore[arg-type]


def get_settings() -> Settings:
    return Settings.from_env()
