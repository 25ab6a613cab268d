from sqlalchemy import inspect


def test_migrations_create_the_store_tables(db):
    names = set(inspect(db.engine).get_table_names())
    assert {"fhir_resource", "fhir_resource_version", "fhir_idx_token", "alembic_version"} <= names
