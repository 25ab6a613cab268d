"""Generated NAACCR item tables (scripts/gen_naaccr_items.py)."""
