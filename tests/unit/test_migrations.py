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
