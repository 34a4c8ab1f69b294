"""``nfp secret set/list/rotate-key``: values from stdin only, names only in list,
rotation re-encrypts every secret and rewrites the key file 0600."""
from __future__ import annotations

import json
import os
import stat

import pytest
import yaml
from click.testing import CliRunner

from nfp.cli.main import cli

VALUE = "s3cr3t-VALUE-9f8e7d6c5b4a"


@pytest.fixture
def config(tmp_path, monkeypatch):
    from nfp.db import all_models
    from nfp.db.engine import make_engine
    for name in [n for n in os.environ if n.startswith("NFP_")]:
        monkeypatch.delenv(name)
    path = tmp_path / "nfp.yaml"
    path.write_text(yaml.safe_dump({"state_dir": str(tmp_path)}))
    engine = make_engine(f"sqlite:///{tmp_path / 'nfp.db'}")
    all_models().create_all(engine)
    engine.dispose()
    return ["--config", str(path)]


def _store(tmp_path):
    from nfp import config as nfp_config
    from nfp.db.engine import make_engine, make_sessionmaker
    from nfp.secrets import SecretStore, load_key
    conf = nfp_config.load(str(tmp_path / "nfp.yaml"), environ={})
    engine = make_engine(conf.database_url)
    return SecretStore(make_sessionmaker(engine), load_key(conf, environ={})), engine


def test_set_reads_stdin_and_list_shows_names_only(tmp_path, config):
    runner = CliRunner()
    result = runner.invoke(cli, ["secret", "set", "api-token", *config], input=VALUE + "\n")
    assert result.exit_code == 0, result.output
    assert VALUE not in result.output
    creds = json.dumps({"username": "admin", "password": VALUE})
    assert runner.invoke(cli, ["secret", "set", "dev-1-credentials", *config], input=creds).exit_code == 0
    listed = runner.invoke(cli, ["secret", "list", *config])
    assert listed.exit_code == 0 and listed.output.split() == ["api-token", "dev-1-credentials"]
    assert VALUE not in listed.output
    store, engine = _store(tmp_path)
    assert store.get("api-token") == VALUE                      # the trailing newline is not kept
    assert store.get_mapping("dev-1-credentials")["password"] == VALUE
    engine.dispose()


def test_a_value_given_as_an_argument_is_refused_and_not_echoed(tmp_path, config):
    result = CliRunner().invoke(cli, ["secret", "set", "api-token", VALUE, *config])
    assert result.exit_code != 0
    assert "never taken as an argument" in result.output and VALUE not in result.output
    assert CliRunner().invoke(cli, ["secret", "list", *config]).output.split() == []


def test_empty_and_broken_json_values_are_refused_without_echo(tmp_path, config):
    runner = CliRunner()
    assert runner.invoke(cli, ["secret", "set", "x", *config], input="").exit_code != 0
    broken = runner.invoke(cli, ["secret", "set", "x", *config], input='{"password": "' + VALUE)
    assert broken.exit_code != 0 and "not valid JSON" in broken.output and VALUE not in broken.output


def test_rotate_key_re_encrypts_and_writes_the_key_0600(tmp_path, config):
    runner = CliRunner()
    runner.invoke(cli, ["secret", "set", "a", *config], input=VALUE)
    runner.invoke(cli, ["secret", "set", "b", *config], input=VALUE + "-b")
    key_file = tmp_path / "secret.key"
    old_key = key_file.read_bytes()
    old_store, engine = _store(tmp_path)
    result = runner.invoke(cli, ["secret", "rotate-key", *config])
    assert result.exit_code == 0, result.output
    assert "2 secret(s) re-encrypted" in result.output
    new_key = key_file.read_bytes()
    assert new_key != old_key and b"," not in new_key.strip()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert new_key.strip().decode() not in result.output
    from nfp.secrets import SecretStore
    with pytest.raises(Exception):
        SecretStore(old_store._sessions, old_key).get("a")       # the old key no longer decrypts
    # a store made before the rotation follows the new key file
    old_store._reload_key = lambda: key_file.read_bytes()
    assert old_store.get("a") == VALUE
    fresh, engine2 = _store(tmp_path)
    assert fresh.get("b") == VALUE + "-b"
    engine.dispose()
    engine2.dispose()


def test_rotate_key_refuses_a_key_from_the_environment(tmp_path, config, monkeypatch):
    from cryptography.fernet import Fernet
    monkeypatch.setenv("NFP_SECRET_KEY", Fernet.generate_key().decode())
    result = CliRunner().invoke(cli, ["secret", "rotate-key", *config])
    assert result.exit_code == 1 and "NFP_SECRET_KEY" in result.output
