"""The daemon started while its database is unreachable waits for it.

The database is reached through a TCP forwarder the test closes (as
tests/integration/test_daemon_faults.py does). Creates cast meanwhile stay
queued on RabbitMQ, unconsumed and unacked; once the forwarder opens again the
daemon serves, and every create reaches ACTIVE.
"""
from __future__ import annotations

import signal
import threading
import uuid

import pytest

from nfp.config import NfpConfig
from nfp.rpc import topology
from nfp.rpc.client import RpcClient
from nfp.rpc.transport import connection_for
from nfp.testing.harness import Harness, HarnessError
from tests.integration.test_daemon_behaviour import nf_body
from tests.integration.test_daemon_faults import _Proxy, _statuses, _until, faults_db  # noqa: F401

pytestmark = pytest.mark.integration

CREATES = 20


def _queue_state(conf, topic) -> tuple[int, int]:
    """(ready messages, consumers) of the topic queue."""
    with connection_for(conf.transport_url, conf) as conn:
        declared = topology.topic_queue(conf, topic)(conn.channel()).queue_declare(passive=True)
    return declared.message_count, declared.consumer_count


def test_the_daemon_waits_for_its_database_and_then_serves(tmp_path, faults_db, rabbit_url):  # noqa: F811
    _, url = faults_db
    topic = f"nfp-dbwait-{uuid.uuid4().hex[:8]}"
    conf = NfpConfig(state_dir=str(tmp_path), transport={"url": rabbit_url}, rpc={"topic": topic})
    with connection_for(rabbit_url, conf) as conn:  # the queue a previous run left
        topology.topic_queue(conf, topic)(conn.channel()).declare()
    client = RpcClient(rabbit_url, conf, topic)
    proxy = _Proxy()
    proxy.close()
    h = Harness(tmp_path, database_url=url(f"127.0.0.1:{proxy.port}"), transport_url=rabbit_url,
                topic=topic, workers=2, config={"config_drivers": {"memory": {"delay": 0.05}}})
    started: list = []
    starter = threading.Thread(target=lambda: started.append(h.start(timeout=600)), daemon=True)
    try:
        for i in range(CREATES):
            client.cast({}, "create_network_function", network_function=nf_body(f"wait{i}"))
        starter.start()
        _until(lambda: h.logs().count("the database cannot be reached") >= 3,
               "the daemon to wait for its database")
        assert h.proc.poll() is None, f"the daemon exited:\n{h.logs()[-3000:]}"
        ready, consumers = _queue_state(conf, topic)
        assert consumers == 0, "requests must not be taken while the database is away"
        assert ready >= CREATES
        assert not started
        proxy.open()
        starter.join(600)
        assert started, f"the daemon did not start serving:\n{h.logs()[-3000:]}"
        try:
            _until(lambda: _statuses(url()).get("ACTIVE", 0) == CREATES, "every create ACTIVE")
        except AssertionError:
            raise AssertionError(f"{_statuses(url())}\n{h.logs()[-4000:]}") from None
        assert _statuses(url()) == {"ACTIVE": CREATES}
    finally:
        h.stop()
        if h.client is not None:
            h.client.close()
        client.close()
        proxy.close()
        with connection_for(rabbit_url, conf) as conn:
            topology.topic_queue(conf, topic)(conn.channel()).delete()


def test_sigterm_while_waiting_for_the_database_stops_the_daemon_cleanly(tmp_path):
    # nothing listens on the discard port: every connection is refused
    h = Harness(tmp_path, database_url="postgresql+psycopg2://postgres@127.0.0.1:9/nfp", workers=1)
    starter = threading.Thread(target=lambda: _start_quietly(h), daemon=True)
    starter.start()
    try:
        _until(lambda: "the database cannot be reached" in h.logs(), "the daemon to wait")
        h.proc.send_signal(signal.SIGTERM)
        assert h.proc.wait(60) == 0, h.logs()[-3000:]
        assert "Traceback" not in h.logs()
    finally:
        h.stop()
        starter.join(60)
        if h.client is not None:
            h.client.close()


def _start_quietly(h: Harness) -> None:
    try:
        h.start(timeout=300)
    except HarnessError:  # it exits on SIGTERM without ever serving: expected here
        pass
