"""``nfp db upgrade`` / ``downgrade``: Alembic driven from nfp's config."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

import nfp


def script_location() -> str:
    """Installed wheels carry the migrations as ``nfp/migrations``; a source or
    editable checkout has them in the top-level ``alembic/`` folder."""
    here = Path(nfp.__file__).resolve().parent
    for candidate in (here / "migrations", here.parent / "alembic"):
        if (candidate / "env.py").exists():
            return str(candidate)
    raise FileNotFoundError("nfp's Alembic migrations are not installed")


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", script_location())
    from nfp.db.engine import normalise_url
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def current(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext
    from nfp.db.engine import make_engine
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
