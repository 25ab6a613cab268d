"""Imports every module's tables so that Alembic and tests see one complete metadata.

A module that adds tables adds its models module here.
"""

from __future__ import annotations

import importlib

from sqlalchemy import MetaData

from chartkeeper.db.base import metadata

MODEL_MODULES = [
    "chartkeeper.fhir.models",
    "chartkeeper.security.models",
    "chartkeeper.completion.models",
    "chartkeeper.registry.models",
    "chartkeeper.coding.models",
]


def load_all_models() -> MetaData:
    for name in MODEL_MODULES:
        importlib.import_module(name)
    return metadata
