"""Alembic: upgrade to head, downgrade to base, upgrade again, on SQLite."""
from sqlalchemy import create_engine, inspect

from nfp.db import all_models, migrate


def test_upgrade_downgrade_roundtrip(tmp_path):
    url = f"sqlite:///{tmp_path}/m.db"
    migrate.upgrade(url)
    engine = create_engine(url)
    tables = set(inspect(engine).get_table_names())
    assert set(all_models().tables) <= tables
    migrate.downgrade(url, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(url)
    assert set(all_models().tables) <= set(inspect(engine).get_table_names())
    engine.dispose()


import pytest  # noqa: E402


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/m3.db"
    return request.getfixturevalue("pg_url")


def _operation_length(engine) -> int:
    column = {c["name"]: c for c in inspect(engine).get_columns("network_functions")}["operation"]
    return column["type"].length


def test_0003_widens_operation_and_downgrades(any_db_url):
    from sqlalchemy import text
    migrate.upgrade(any_db_url, "0003_operation_tokens")
    engine = create_engine(any_db_url)
    try:
        assert _operation_length(engine) == 96
        token = "consumer_remove:" + "a" * 32  # 48 characters: refused by the old width
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO network_functions (id, name, description, tenant_id, status, "
                "status_description, spec, generation, operation, created_at, updated_at) VALUES "
                "('nf-1', '', '', 't', 'PT_ADD_IN_PROGRESS', '', '{}', 0, :op, "
                "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"), {"op": token})
        migrate.downgrade(any_db_url, "0002_dictionary")
        assert _operation_length(engine) == 32
        with engine.connect() as conn:
            assert conn.execute(text("SELECT operation FROM network_functions")).scalar() is None
        migrate.upgrade(any_db_url)
        assert _operation_length(engine) == 96
    finally:
        engine.dispose()


CONFIGURATOR_TABLES = {"configurator_requests", "configurator_notifications", "configurator_tokens",
                       "audit_log"}


def test_0005_adds_the_configurator_tables_and_downgrades(any_db_url):
    from sqlalchemy import text
    migrate.upgrade(any_db_url, "0005_configurator")
    engine = create_engine(any_db_url)
    try:
        assert CONFIGURATOR_TABLES <= set(inspect(engine).get_table_names())
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO audit_log (at, event, cert_subject, token_subject, method, nf_id, "
                "device_id, source, result, detail) VALUES (CURRENT_TIMESTAMP, 'pki', '', '', "
                "'pki.init', '', '', 'cli:root', 'ok', '')"))
        migrate.downgrade(any_db_url, "0004_assurance")
        assert not CONFIGURATOR_TABLES & set(inspect(engine).get_table_names())
        assert "reconciliation_log" in set(inspect(engine).get_table_names())
        migrate.upgrade(any_db_url)
        assert CONFIGURATOR_TABLES <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
