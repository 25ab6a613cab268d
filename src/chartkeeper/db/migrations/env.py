"""Alembic environment: one metadata for every module's tables."""

from __future__ import annotations

from alembic import context

from chartkeeper.db.engine import make_engine
from chartkeeper.db.models_registry import load_all_models

target_metadata = load_all_models()
config = context.config


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("No database to migrate: set sqlalchemy.url or pass a connection (Database.upgrade does).")
    engine = make_engine(url)
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
