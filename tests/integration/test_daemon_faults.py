"""The real daemon under faults, on a PostgreSQL database of its own
(``nfp_faults_<hex>``, dropped afterwards), so terminating backends touches
no other test's connections:

- backends terminated mid-run: no NF fails (transient errors are retried);
- the database unreachable while a worker boots: it waits, the daemon does
  not halt, and the NFs finish once the database is back;
- a worker killed five times in a row: queued steps are not charged;
- a create the database refuses (37-character id, NUL byte) is refused once
  with an error naming the field while good creates flow;
- SIGTERM with a large backlog stops well within ``drain_timeout``.
"""
from __future__ import annotations

import os
import signal
import socket
import threading
import time
import uuid

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.pool import NullPool

from nfp.db.models import Event, NetworkFunction
from nfp.rpc.client import RemoteError
from nfp.testing.harness import Harness
from nfp.testing.wait import until as _until
from tests.conftest import PG_URL, require
from tests.integration.test_daemon_behaviour import nf_body

pytestmark = pytest.mark.integration
NF = NetworkFunction.__table__


@pytest.fixture
def faults_db():
    """A database of this test's own; yields its URL for a given host:port."""
    require("PostgreSQL", "127.0.0.1", 5432)
    name = f"nfp_faults_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = PG_URL.rsplit("/", 1)[0]
    yield name, lambda hostport="127.0.0.1:5432": base.replace("127.0.0.1:5432", hostport) + "/" + name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _terminate(name: str) -> int:
    """Terminate every backend of database ``name`` (and of no other)."""
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        killed = conn.execute(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                   "WHERE datname = :d AND pid <> pg_backend_pid()"), {"d": name}).scalar()
    admin.dispose()
    return killed


def _statuses(url: str) -> dict:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(select(NF.c.status, func.count()).group_by(NF.c.status)).all())
    finally:
        engine.dispose()


def _cast_creates(h, count, prefix="fw"):
    for i in range(count):
        h.client.cast("create_network_function", network_function=nf_body(f"{prefix}{i}"))


def _harness(tmp_path, url, delay=0.05, **orch):
    orch.setdefault("threads_per_worker", 4)
    return Harness(tmp_path, database_url=url, workers=2,
                   config={"config_drivers": {"memory": {"delay": delay}}, "orchestrator": orch})


def _all_active(url, count):
    got = _statuses(url)
    assert got.get("ERROR", 0) == 0, got
    return got.get("ACTIVE", 0) == count


def test_backends_terminated_mid_run_fail_no_nf(tmp_path, faults_db):
    name, url = faults_db
    with _harness(tmp_path, url()) as h:
        _cast_creates(h, 150)
        _until(lambda: _statuses(url()).get("ACTIVE", 0) >= 10, "the first NFs")
        killed = 0
        for _ in range(3):
            killed += _terminate(name)
            time.sleep(0.7)
        assert killed > 0
        _until(lambda: _all_active(url(), 150), "every NF ACTIVE")
        assert "transient" in h.logs()


class _Proxy:
    """A TCP forwarder to PostgreSQL that the test can close (refusing and
    cutting every connection, as an unreachable database does) and reopen."""

    def __init__(self, upstream=("127.0.0.1", 5432)):
        self.upstream = upstream
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._socks: list = []
        self._server = None
        self.open()

    def open(self):
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(128)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def close(self):
        server, self._server = self._server, None
        try:
            server.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        except OSError:
            pass
        server.close()
        for sock in list(self._socks):
            try:
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            except OSError:
                pass
        self._socks.clear()

    def _accept(self, server):
        while self._server is server:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            self._socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.close()
                except OSError:
                    pass


def test_a_worker_booting_while_the_database_is_unreachable_waits_for_it(tmp_path, faults_db):
    _, url = faults_db
    proxy = _Proxy()
    try:
        with _harness(tmp_path, url(f"127.0.0.1:{proxy.port}"), delay=0.3) as h:
            _cast_creates(h, 40)
            _until(lambda: _statuses(url()).get("PENDING_CREATE", 0) + _statuses(url()).get(
                "ACTIVE", 0) == 40, "the creates to be accepted")
            proxy.close()
            victim = h.worker_pids()[0]
            os.kill(victim, signal.SIGKILL)
            _until(lambda: "cannot reach the database" in h.logs(), "the new worker to wait")
            time.sleep(2)
            assert h.proc.poll() is None, "the daemon halted"
            assert "failed to boot" not in h.logs()
            proxy.open()
            try:
                _until(lambda: _all_active(url(), 40), "every NF ACTIVE")
            except AssertionError:
                raise AssertionError(f"{_statuses(url())}\n{h.logs()[-6000:]}") from None
    finally:
        proxy.close()


def test_a_worker_kill_loop_does_not_fail_queued_steps(tmp_path, faults_db):
    _, url = faults_db
    with _harness(tmp_path, url(), delay=0.05, max_attempts=5) as h:
        _cast_creates(h, 200)
        _until(lambda: sum(_statuses(url()).values()) == 200, "the creates to be accepted")
        for _ in range(5):
            old = h.worker_pids()
            joined = h.logs().count("inherited) with")
            os.kill(old[0], signal.SIGKILL)
            _until(lambda: len(h.worker_pids()) == 2 and old[0] not in h.worker_pids(),
                   "a new worker to take the shard", timeout=60)
            # killed 0.3 s after it joined (took its leases and offered its steps):
            # a quick crash loop, yet each incarnation gets to start steps
            _until(lambda: h.logs().count("inherited) with") > joined, "the new worker to join",
                   timeout=60)
            time.sleep(0.3)
        _until(lambda: _all_active(url(), 200), "every NF ACTIVE")
        engine = create_engine(url(), poolclass=NullPool)
        with engine.connect() as conn:
            charged = conn.execute(select(func.count()).select_from(Event.__table__)
                                   .where(Event.__table__.c.attempts > 0)).scalar()
        engine.dispose()
        # only steps running at a kill are charged: a handful per kill, not the shard
        assert charged <= 5 * (4 + 2 * 64)


def test_a_create_the_database_refuses_is_refused_once_while_good_ones_flow(tmp_path, faults_db):
    _, url = faults_db
    with _harness(tmp_path, url()) as h:
        sender = threading.Thread(target=_cast_creates, args=(h, 100, "good"))
        sender.start()
        long_id = nf_body("long")
        long_id["service_chain_instance"] = {"id": "c" * 37}
        with pytest.raises(RemoteError) as err:
            h.client.create_network_function(long_id)
        assert "service_chain_instance.id" in err.value.value
        with pytest.raises(RemoteError) as err:
            h.client.create_network_function(nf_body("nul\x00byte"))
        assert "network_function.name" in err.value.value or "name" in err.value.value
        sender.join()
        _until(lambda: _all_active(url(), 100), "the good creates")
        assert h.logs().count("failed 5 times") == 0


def test_sigterm_with_a_large_backlog_stops_within_the_drain_timeout(tmp_path, faults_db):
    _, url = faults_db
    drain = 20
    h = _harness(tmp_path, url(), delay=0.2, drain_timeout=drain).start()
    try:
        _cast_creates(h, 400)
        _until(lambda: _statuses(url()).get("ACTIVE", 0) >= 5, "work to be under way")
        started = time.monotonic()
        assert h.stop(timeout=drain + 30) == 0
        assert time.monotonic() - started < drain + 10
        assert "drain timed out" not in h.logs()
        assert _statuses(url()).get("ACTIVE", 0) < 400  # there was a backlog to leave behind
    finally:
        h.stop()
        h.client.close()
