"""Database: engine, metadata and migrations (SQLite embedded, PostgreSQL in production)."""

from chartkeeper.db.base import Base, metadata
from chartkeeper.db.engine import Database, make_engine

__all__ = ["Base", "metadata", "Database", "make_engine"]
