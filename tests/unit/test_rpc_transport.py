"""Transport URLs and the embedded filesystem bus shared by several connections."""
from __future__ import annotations

import threading

import pytest
from kombu import Consumer, Producer

from nfp.config import NfpConfig
from nfp.rpc import topology
from nfp.rpc.transport import TransportURLError, _amqp_urls, connection_for, is_virtual


def test_oslo_rabbit_urls_become_kombu_failover_lists():
    assert _amqp_urls("rabbit://u:p@h1:5672,u:p@h2:5673/vh") == \
        "amqp://u:p@h1:5672/vh;amqp://u:p@h2:5673/vh"
    assert _amqp_urls("rabbit://guest:guest@127.0.0.1:5672/") == "amqp://guest:guest@127.0.0.1:5672/"
    conn = connection_for("rabbit://guest:guest@127.0.0.1:5672/")
    assert conn.transport_cls in ("amqp", "pyamqp") and not conn.connected


def test_filesystem_url_needs_an_absolute_path_and_creates_its_folders(tmp_path):
    with pytest.raises(TransportURLError, match="absolute path"):
        connection_for("filesystem://relative/bus")
    with pytest.raises(TransportURLError, match="unsupported scheme"):
        connection_for("kafka://x")
    conf = NfpConfig(transport={"polling_interval": 0.5})
    conn = connection_for(f"filesystem://{tmp_path}/bus", conf)
    assert {p.name for p in (tmp_path / "bus").iterdir()} == {"data", "control", "claimed", "staging"}
    assert conn.transport_options["polling_interval"] == 0.5
    assert is_virtual(conn) and is_virtual(connection_for("memory://"))


def _publish(conn, conf, count, topic="T"):
    queue = topology.topic_queue(conf, topic)
    producer = Producer(conn.default_channel)
    for i in range(count):
        producer.publish({"n": i}, exchange=queue.exchange, routing_key=topic, declare=[queue])


def test_each_message_is_claimed_by_exactly_one_of_two_consumers(tmp_path):
    conf = NfpConfig(transport={"polling_interval": 0.001})
    url = f"filesystem://{tmp_path}/bus"
    got: list[list[int]] = [[], []]
    conns = [connection_for(url, conf) for _ in range(2)]
    for n, conn in enumerate(conns):
        Consumer(conn.default_channel, [topology.topic_queue(conf, "T")], accept=["json"],
                 on_message=lambda m, n=n: (got[n].append(m.payload["n"]), m.ack())).consume()
    stop = threading.Event()

    def drain(conn):
        while not stop.is_set():
            try:
                conn.drain_events(timeout=0.01)
            except TimeoutError:
                pass

    threads = [threading.Thread(target=drain, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    with connection_for(url, conf) as producer_conn:
        _publish(producer_conn, conf, 300)
    deadline = threading.Event()
    for _ in range(2000):
        if len(got[0]) + len(got[1]) >= 300:
            break
        deadline.wait(0.01)
    stop.set()
    for t in threads:
        t.join()
    assert sorted(got[0] + got[1]) == list(range(300))
    for conn in conns:
        conn.release()


def test_a_binding_known_in_memory_but_missing_on_disk_is_written_again(tmp_path):
    conf = NfpConfig()
    url = f"filesystem://{tmp_path}/bus"
    queue = topology.topic_queue(conf, "T")
    with connection_for(url, conf) as first:
        queue(first.default_channel).declare()
    # as if another thread had recorded the binding but not yet written its file
    (tmp_path / "bus" / "control" / "openstack.exchange").unlink()
    with connection_for(url, conf) as second:
        _publish(second, conf, 1)
        assert queue(second.default_channel).queue_declare(passive=True).message_count == 1


def test_two_buses_in_one_process_keep_separate_bindings(tmp_path):
    conf = NfpConfig()
    for name in ("a", "b"):
        url = f"filesystem://{tmp_path}/{name}"
        with connection_for(url, conf) as conn:
            _publish(conn, conf, 2)
            assert topology.topic_queue(conf, "T")(conn.default_channel).queue_declare(
                passive=True).message_count == 2
