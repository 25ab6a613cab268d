"""Helpers for the security tests (the ``db`` fixture comes from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sec_helpers import PASSWORD, SYSTEM

from chartkeeper.db import Database
from chartkeeper.security import users
from chartkeeper.security.principal import Principal


@pytest.fixture
def make_user(db: Database) -> Callable[..., Principal]:
    """Create an active user with these roles and return their Principal."""

    def _make(username: str, *roles: str, password: str = PASSWORD) -> Principal:
        with db.begin() as conn:
            u = users.create_user(conn, username, password, list(roles), actor=SYSTEM, display_name=username)
        return u.principal("10.0.0.1")

    return _make
