#!/usr/bin/env bash
# Regenerates the initial Alembic revision from the models (only while no release exists; after the
# first release every change gets its own revision with `alembic revision --autogenerate`).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
rm -f src/chartkeeper/db/migrations/versions/0001_initial.py
.venv/bin/python - "$tmp" <<'PY'
import sys
from alembic import command
from alembic.config import Config
from chartkeeper.db.engine import MIGRATIONS
cfg = Config()
cfg.set_main_option("script_location", str(MIGRATIONS))
cfg.set_main_option("sqlalchemy.url", f"sqlite:///{sys.argv[1]}/gen.db")
command.revision(cfg, message="initial schema", autogenerate=True, rev_id="0001")
PY
mv src/chartkeeper/db/migrations/versions/0001_initial_schema.py src/chartkeeper/db/migrations/versions/0001_initial.py
rm -rf "$tmp"
.venv/bin/ruff format -q src/chartkeeper/db/migrations/versions/0001_initial.py || true
