"""Constants shared by the security tests (imported as a top-level module: tests are not a package)."""

from __future__ import annotations

from chartkeeper.security.principal import Principal

PASSWORD = "correct horse battery staple"
SYSTEM = Principal.system("test")
