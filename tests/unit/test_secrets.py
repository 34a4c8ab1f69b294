"""The encrypted secret store and log redaction."""
from __future__ import annotations

import logging
import os
import stat

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from nfp.config import NfpConfig
from nfp.db import all_models
from nfp.db.engine import make_engine, make_sessionmaker
from nfp.db.rules import Secret
from nfp.exceptions import NotFound
from nfp.secrets import RedactionFilter, Redactor, SecretError, SecretStore, load_key


@pytest.fixture
def sessions(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'nfp.db'}")
    all_models().create_all(engine)
    return make_sessionmaker(engine)


def test_round_trip_stores_only_ciphertext(sessions):
    store = SecretStore(sessions, Fernet.generate_key())
    store.put("dev-1", {"api_key": "K3y-value-123"})
    store.put("token", "plain-Token-456")
    assert store.get_mapping("dev-1") == {"api_key": "K3y-value-123"}
    assert store.get("token") == "plain-Token-456" and store.get_mapping("token") == {"value": "plain-Token-456"}
    with sessions() as session:
        stored = " ".join(session.scalars(select(Secret.ciphertext)))
    assert "K3y-value-123" not in stored and "plain-Token-456" not in stored
    assert store.names() == ["dev-1", "token"]
    store.delete("token")
    with pytest.raises(NotFound):
        store.get("token")


def test_wrong_key_is_a_clear_error_without_the_value(sessions):
    SecretStore(sessions, Fernet.generate_key()).put("s", "Sup3r-secret")
    with pytest.raises(SecretError) as info:
        SecretStore(sessions, Fernet.generate_key()).get("s")
    assert "cannot be decrypted" in str(info.value) and "Sup3r" not in str(info.value)
    with pytest.raises(SecretError):
        SecretStore(sessions, "not-a-key")


def test_rotation_keeps_values_readable(sessions):
    old, new = Fernet.generate_key(), Fernet.generate_key()
    SecretStore(sessions, old).put("s", "r0tate-me")
    rotated = SecretStore(sessions, new + b"," + old)
    assert rotated.rotate() == 1
    assert SecretStore(sessions, new).get("s") == "r0tate-me"


def test_key_from_environment_or_created_file(tmp_path):
    conf = NfpConfig(state_dir=str(tmp_path))
    key = Fernet.generate_key()
    assert load_key(conf, environ={"NFP_SECRET_KEY": key.decode()}) == key
    created = load_key(conf, environ={})
    assert Fernet(created) and load_key(conf, environ={}) == created
    assert stat.S_IMODE(os.stat(conf.secret_key_file).st_mode) == 0o600


def test_redaction_filter_masks_message_arguments_and_tracebacks():
    redactor = Redactor()
    redactor.register("hunter2-secret")
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    handler = Keep()
    handler.addFilter(RedactionFilter(redactor))
    log = logging.getLogger("test.redaction")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("token is %s", "hunter2-secret")
        log.warning("quoted %s", '{"k": "hunter2-secret"}')
        try:
            raise ValueError("bad hunter2-secret")
        except ValueError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    assert len(records) == 3
    assert all("hunter2-secret" not in r for r in records) and "***" in records[0]
    assert "ValueError" in records[2]


def test_secret_leaks_finds_log_lines_and_rows(tmp_path):
    from sqlalchemy import create_engine, text
    from nfp.testing.simulators.wiring import secret_leaks
    engine = create_engine(f"sqlite:///{tmp_path}/leak.db")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (v TEXT)"))
        conn.execute(text("INSERT INTO t VALUES ('token=s3cr3t-value')"))
    assert secret_leaks("s3cr3t-value", "ok\nsent s3cr3t-value\n", engine) == [
        "sent s3cr3t-value", "table t"]
    assert secret_leaks("absent-value", "ok\n", engine) == []
    engine.dispose()
