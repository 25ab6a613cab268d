"""Security tables (users, sessions, tokens, grants, audit log)."""

from __future__ import annotations
