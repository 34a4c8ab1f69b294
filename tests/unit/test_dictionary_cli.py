"""``nfp dictionary validate/load/show`` and the 0002_dictionary migration."""
from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

import nfp.dictionaries
from nfp.cli.dictionary import dictionary

SHIPPED = sorted(str(p) for p in Path(nfp.dictionaries.__file__).parent.glob("*.yaml"))


def test_validate_accepts_the_shipped_four():
    assert len(SHIPPED) == 4
    result = CliRunner().invoke(dictionary, ["validate", *SHIPPED])
    assert result.exit_code == 0, result.output
    assert result.output.count(": ok") == 4


def test_validate_rejects_a_broken_one_with_line_and_key(tmp_path):
    text = Path(SHIPPED[0]).read_text().replace("  authType: apikey", "  authType: apikye", 1)
    broken = tmp_path / "broken.yaml"
    broken.write_text(text)
    line = text.splitlines().index("  authType: apikye") + 1
    result = CliRunner().invoke(dictionary, ["validate", str(broken), SHIPPED[1]])
    assert result.exit_code == 1
    assert f"{broken}:{line}: access.authType:" in result.output
    assert "1 of 2 dictionaries are invalid" in result.output


def test_load_stores_versions_and_show_reads_them(tmp_path):
    from nfp.db import all_models
    from nfp.db.engine import make_engine
    url = f"sqlite:///{tmp_path / 'nfp.db'}"
    all_models().create_all(make_engine(url))
    runner = CliRunner()
    vyos = next(p for p in SHIPPED if p.endswith("vyos.yaml"))
    first = runner.invoke(dictionary, ["load", vyos, "--database-url", url])
    assert first.exit_code == 0 and "stored as version 1" in first.output
    assert "unchanged, version 1" in runner.invoke(dictionary, ["load", vyos, "--database-url", url]).output
    changed = tmp_path / "vyos.yaml"
    changed.write_text(Path(vyos).read_text().replace("default: NFP-FW", "default: NFP-TENANT"))
    assert "stored as version 2" in runner.invoke(dictionary, ["load", str(changed), "--database-url", url]).output
    shown = runner.invoke(dictionary, ["show", "vyos", "--database-url", url])
    assert shown.exit_code == 0 and "db:vyos@v2" in shown.output and "NFP-TENANT" in shown.output
    old = runner.invoke(dictionary, ["show", "vyos", "--version", "1", "--raw", "--database-url", url])
    assert "default: NFP-FW" in old.output


def test_migration_matches_the_models_and_downgrades(tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import inspect

    from nfp.db import all_models, migrate
    from nfp.db.engine import make_engine
    url = f"sqlite:///{tmp_path / 'm.db'}"
    migrate.upgrade(url, "0002_dictionary")
    engine = make_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), all_models())
    mine = [d for d in diff if any(t in str(d) for t in ("'rules'", "'dictionaries'", "'secrets'"))]
    assert mine == []
    assert {"rules", "dictionaries", "secrets"} <= set(inspect(engine).get_table_names())
    migrate.downgrade(url, "0001_core")
    assert not {"rules", "dictionaries", "secrets"} & set(inspect(make_engine(url)).get_table_names())
