"""Shared fixtures: real services, failing (not skipping) under CI=true when absent."""
from __future__ import annotations

import contextlib
import os
import socket
import uuid

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
RABBIT_URL = os.environ.get("NFP_TEST_RABBIT_URL", "amqp://guest:guest@127.0.0.1:5672//")
PG_URL = os.environ.get("NFP_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require(service: str, host: str, port: int) -> None:
    """Fail under CI, skip elsewhere, when ``service`` is not reachable."""
    if _port_open(host, port):
        return
    message = f"{service} is not reachable at {host}:{port}"
    if IN_CI:
        pytest.fail(message + " (CI=true: integration tests must not skip)")
    pytest.skip(message)


@pytest.fixture
def rabbit_url():
    require("RabbitMQ", "127.0.0.1", 5672)
    return RABBIT_URL


@contextlib.contextmanager
def pg_schema(prefix: str = "t"):
    """A fresh PostgreSQL schema as a database URL (its search_path), dropped afterwards."""
    require("PostgreSQL", "127.0.0.1", 5432)
    from sqlalchemy import create_engine, text
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def pg_url():
    """A fresh PostgreSQL schema per test, dropped afterwards."""
    with pg_schema("t") as url:
        yield url


@contextlib.contextmanager
def migrated_sessionmaker(url: str):
    """A session factory on ``url``, migrated to the head revision."""
    from nfp.db import migrate
    from nfp.db.engine import make_engine, make_sessionmaker
    migrate.upgrade(url)
    engine = make_engine(url, pool_size=4)
    try:
        yield make_sessionmaker(engine)
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_maker(request, tmp_path):
    """A migrated database's session factory, once on SQLite and once on PostgreSQL."""
    url = f"sqlite:///{tmp_path}/nfp.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    with migrated_sessionmaker(url) as maker:
        yield maker


@pytest.fixture(scope="module")
def pg_module_url():
    """A fresh PostgreSQL schema per test module (one daemon serving its tests)."""
    with pg_schema("m") as url:
        yield url


@pytest.fixture
def netns_required():
    """Root, iproute2, nftables, haproxy and sshd: fail under CI, skip elsewhere."""
    from nfp.testing.topology import unavailable_reason
    reason = unavailable_reason()
    if reason:
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: netns tests must run)")
        pytest.skip(reason)
