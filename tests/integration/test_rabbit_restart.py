"""A real RabbitMQ restart under the running daemon, on a private node
(nfp.testing.chaos.PrivateRabbit: its own name, ports and data directory; the
machine's shared broker is never touched).

With durable queues, creates are cast before the restart and some are still
in their lifecycle when the broker stops. While it is down, steps keep
committing and their ``create.end`` notifications wait in the outbox. After
the restart the listener reconnects by itself and redeclares its topology;
every create reaches ACTIVE exactly once (no message half-handled: an unacked
delivery is redelivered and recognised), and every ``create.end`` is
published, after the outage for those committed during it.
"""
from __future__ import annotations

import os
import shutil
import time
from collections import Counter

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.pool import NullPool

from nfp import outbox
from nfp.db.models import NetworkFunction
from nfp.rpc import codec, topology
from nfp.rpc.transport import connection_for
from nfp.testing.harness import Harness, NfpClient
from tests.conftest import IN_CI
from tests.integration.test_daemon_behaviour import nf_body

pytestmark = pytest.mark.integration
NF = NetworkFunction.__table__
CREATES = 30


@pytest.fixture
def rabbit():
    from nfp.testing.chaos import PrivateRabbit
    if not os.path.exists(PrivateRabbit.SCRIPTS / "rabbitmq-server") or not shutil.which("epmd"):
        if IN_CI:
            pytest.fail("rabbitmq-server is needed for a private node (CI=true: must not skip)")
        pytest.skip("rabbitmq-server is not installed")
    node = PrivateRabbit().start()
    yield node
    node.close()


def _until(predicate, what: str, timeout: float = 240):
    end = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except Exception:  # the broker or a connection may be down on purpose
            pass
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.2)


class _Db:
    def __init__(self, url: str):
        self.engine = create_engine(url, poolclass=NullPool)

    def statuses(self) -> Counter:
        with self.engine.connect() as conn:
            return Counter(dict(conn.execute(select(NF.c.status, func.count()).group_by(NF.c.status)).all()))

    def names(self) -> Counter:
        with self.engine.connect() as conn:
            return Counter(conn.execute(select(NF.c.name)).scalars())

    def ids(self) -> set:
        with self.engine.connect() as conn:
            return set(conn.execute(select(NF.c.id)).scalars())

    def unpublished(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(outbox.TABLE)).scalar_one()


def _create_ends(conf) -> list[str]:
    """NF ids of the ``create.end`` notifications waiting in ``notifications.info``."""
    ids = []
    with connection_for(conf.transport_url, conf) as conn:
        queue = topology.notification_queue(conf, "notifications.info")(conn.channel())
        while (message := queue.get(no_ack=True)) is not None:
            note = codec.unwrap(message.body)
            if note["event_type"] == "nfp.network_function.create.end":
                ids.append(note["payload"]["id"])
    return ids


def test_after_a_rabbitmq_restart_every_create_and_notification_arrives_once(tmp_path, rabbit, pg_url):
    db = _Db(pg_url)
    h = Harness(tmp_path, database_url=pg_url, transport_url=rabbit.url(), workers=2,
                config={"transport": {"durable_queues": True}, "orchestrator": {"threads_per_worker": 2},
                        "config_drivers": {"memory": {"delay": 0.5}}})
    with h:
        for i in range(CREATES):
            h.client.cast("create_network_function", network_function=nf_body(f"r{i}"))
        _until(lambda: sum(db.statuses().values()) == CREATES, "the creates to be accepted")
        assert db.statuses()["ACTIVE"] < CREATES, "the restart must hit creates in flight"
        active_before = db.statuses()["ACTIVE"]
        rabbit.stop()
        # steps go on while the broker is down; their notifications wait in the outbox
        _until(lambda: db.statuses()["ACTIVE"] > active_before and db.unpublished() > 0,
               "a create to finish during the outage", timeout=120)
        held = db.unpublished()
        assert h.proc.poll() is None, "the daemon exited during the outage"
        rabbit.start()
        _until(lambda: h.logs().count("RPC listener consuming") >= 2, "the listener to reconnect")
        client = NfpClient(h.conf)
        try:
            assert client.call("get_network_functions", filters={}, timeout=60) is not None
        finally:
            client.close()
        _until(lambda: db.statuses() == Counter({"ACTIVE": CREATES}),
               f"every create ACTIVE (now {db.statuses()})")
        _until(lambda: db.unpublished() == 0, "the outbox to drain")
    assert set(db.names().values()) == {1}, "a create ran twice"
    published = _create_ends(h.conf)
    assert held > 0
    assert set(published) == db.ids(), "a create.end was lost"
    db.engine.dispose()
