"""0004_assurance: up and down on SQLite and PostgreSQL, keeping device rows."""
from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect, text

from nfp.db import migrate


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/m4.db"
    return request.getfixturevalue("pg_url")


def _device_columns(engine) -> set[str]:
    return {c["name"] for c in inspect(engine).get_columns("network_function_devices")}


def test_0004_adds_health_columns_and_the_log_and_downgrades(db_url):
    migrate.upgrade(db_url, "0003_operation_tokens")
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO network_function_devices (id, name, description, tenant_id, status, "
                "status_description, device_type, max_interfaces, reference_count, interfaces_in_use, "
                "provider_metadata, shared, managed, extra, health, created_at) VALUES ('d1', '', '', '', "
                "'ACTIVE', '', 'static', 8, 0, 0, '{}', true, true, '{}', 'Unknown', CURRENT_TIMESTAMP)"))
        migrate.upgrade(db_url, "0004_assurance")
        assert {"health_reason", "health_changed_at"} <= _device_columns(engine)
        assert "reconciliation_log" in inspect(engine).get_table_names()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT health_reason FROM network_function_devices")).scalar() == ""
        migrate.downgrade(db_url, "0003_operation_tokens")
        assert not {"health_reason", "health_changed_at"} & _device_columns(engine)
        assert "reconciliation_log" not in inspect(engine).get_table_names()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id FROM network_function_devices")).scalar() == "d1"
        migrate.upgrade(db_url)
        assert "reconciliation_log" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def _nf_columns(engine) -> set[str]:
    return {c["name"] for c in inspect(engine).get_columns("network_functions")}


def test_0006_adds_degraded_and_heal_columns_and_downgrades(db_url):
    migrate.upgrade(db_url, "0005_configurator")
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO network_functions (id, name, description, tenant_id, status, status_description, "
                "spec, generation, created_at, updated_at) VALUES ('nf1', '', '', 't', 'ACTIVE', '', '{}', 0, "
                "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
        migrate.upgrade(db_url, "0006_heal")
        assert {"degraded", "degraded_reason"} <= _nf_columns(engine)
        assert {"heal_attempts", "healed_at"} <= _device_columns(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT degraded, degraded_reason FROM network_functions")).one() \
                in [(False, ""), (0, "")]
        migrate.downgrade(db_url, "0005_configurator")
        assert not {"degraded", "degraded_reason"} & _nf_columns(engine)
        assert not {"heal_attempts", "healed_at"} & _device_columns(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id FROM network_functions")).scalar() == "nf1"
    finally:
        engine.dispose()


def test_0008_adds_the_boot_marker_and_the_reconciled_dictionaries_and_downgrades(db_url):
    migrate.upgrade(db_url, "0007_leases")
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO network_function_devices (id, name, description, tenant_id, status, "
                "status_description, device_type, max_interfaces, reference_count, interfaces_in_use, "
                "provider_metadata, shared, managed, extra, health, created_at) VALUES ('d1', '', '', '', "
                "'ACTIVE', '', 'static', 8, 0, 0, '{}', true, true, '{}', 'Unknown', CURRENT_TIMESTAMP)"))
        migrate.upgrade(db_url, "0008_assurance_state")
        assert "boot_id" in _device_columns(engine)
        assert "reconciled_dictionaries" in inspect(engine).get_table_names()
        with engine.begin() as conn:
            assert conn.execute(text("SELECT boot_id FROM network_function_devices")).scalar() is None
            conn.execute(text("INSERT INTO reconciled_dictionaries (vendor, version, reconciled_at) "
                              "VALUES ('vyos', 2, CURRENT_TIMESTAMP)"))
        migrate.downgrade(db_url, "0007_leases")
        assert "boot_id" not in _device_columns(engine)
        assert "reconciled_dictionaries" not in inspect(engine).get_table_names()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id FROM network_function_devices")).scalar() == "d1"
    finally:
        engine.dispose()


def _member_columns(engine) -> dict:
    return {c["name"]: c for c in inspect(engine).get_columns("engine_members")}


def test_0011_adds_the_member_machine_matching_the_model_and_downgrades(db_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from nfp.db import all_models
    migrate.upgrade(db_url, "0010_tenancy")
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:  # a member written before 0011 keeps its row
            conn.execute(text("INSERT INTO engine_members (member, host, worker, pid, started_at, "
                              "heartbeat_at) VALUES ('h/0', 'h', 0, 1, CURRENT_TIMESTAMP, "
                              "CURRENT_TIMESTAMP)"))
        migrate.upgrade(db_url, "0011_member_machine")
        machine = _member_columns(engine)["machine"]
        assert machine["nullable"] and machine["type"].length == 64
        with engine.connect() as conn:
            assert conn.execute(text("SELECT machine FROM engine_members")).scalar() is None
            diff = compare_metadata(MigrationContext.configure(conn), all_models())
        assert [d for d in diff if "engine_members" in str(d)] == []
        migrate.downgrade(db_url, "0010_tenancy")
        assert "machine" not in _member_columns(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT member FROM engine_members")).scalar() == "h/0"
        migrate.upgrade(db_url)
        assert "machine" in _member_columns(engine)
    finally:
        engine.dispose()
