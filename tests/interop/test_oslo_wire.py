"""The real oslo.messaging client and notification listener against RpcListener
on a real RabbitMQ (reference/messaging.md A.8)."""
from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
from kombu import Consumer, Exchange, Producer, Queue

from nfp.config import NfpConfig
from nfp.rpc import codec, topology
from nfp.rpc.functions import FunctionDispatcher
from nfp.rpc.listener import RpcListener
from nfp.rpc.transport import connection_for

RUN = uuid.uuid4().hex[:10]
EXCHANGE = f"nfp_interop_{RUN}"
TOPIC = f"nfp_interop_topic_{RUN}"
NOTIFY_TOPIC = f"nfp_interop_notifications_{RUN}"
HOST = "interop-host"
WAIT = 20.0


class NodeLocked(Exception):
    """An error from a module oslo clients do not allow: arrives as RemoteError."""


def _functions(recorded: list):
    def slow(ctxt, s):
        time.sleep(s)
        return "slept"

    def boom(ctxt):
        raise ValueError("bad value")

    def locked(ctxt, node):
        raise NodeLocked(f"node {node} locked")

    return {
        "echo": lambda ctxt, x: x,
        "whoami": lambda ctxt: ctxt.get("user"),
        "slow": slow,
        "boom": boom,
        "locked": locked,
        "increment": lambda ctxt, n: int(n) + 1,
        "rec": lambda ctxt, v: recorded.append(v),
    }


@pytest.fixture(scope="module")
def conf(rabbit_url):
    return NfpConfig(transport={"url": rabbit_url, "control_exchange": EXCHANGE, "prefetch": 50},
                     rpc={"topic": TOPIC, "host": HOST, "notifications_topic": NOTIFY_TOPIC,
                          "max_message_bytes": 4096})


@pytest.fixture(scope="module")
def recorded():
    return []


@pytest.fixture(scope="module")
def listener(conf, recorded):
    dispatcher = FunctionDispatcher(_functions(recorded), reads=["echo", "whoami", "slow"])
    server = RpcListener(conf, dispatcher, [TOPIC])
    assert server.start(wait=WAIT), "listener did not connect"
    yield server
    server.stop(timeout=10)
    _cleanup(conf)


def _cleanup(conf):
    with connection_for(conf.transport_url, conf) as conn:
        channel = conn.channel()
        for name in (TOPIC, f"{TOPIC}.{HOST}", f"{NOTIFY_TOPIC}.info"):
            try:
                channel.queue_delete(name)
            except Exception:  # the channel closes on a missing queue; reopen
                channel = conn.channel()
        for name in (EXCHANGE, f"{TOPIC}_fanout"):
            try:
                channel.exchange_delete(name)
            except Exception:
                channel = conn.channel()


@pytest.fixture(scope="module")
def transport(oslo, rabbit_url):
    om, oconf = oslo
    tr = om.get_rpc_transport(oconf, url=rabbit_url)
    yield tr
    tr.cleanup()


@pytest.fixture
def client(oslo, transport, listener):
    om, _ = oslo
    return om.get_rpc_client(transport, om.Target(topic=TOPIC, exchange=EXCHANGE), timeout=WAIT)


def _until(predicate, what):
    deadline = time.monotonic() + WAIT
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


# -- calls and casts ------------------------------------------------------------------------

def test_call_on_topic_and_on_server_returns_results(client):
    assert client.call({"user": "alice", "auth_token": "tok"}, "whoami") == "alice"
    assert client.call({}, "echo", x={"nested": [1, "two", None]}) == {"nested": [1, "two", None]}
    assert client.prepare(server=HOST).call({}, "echo", x=42) == 42
    assert client.call({}, "rec", v="called") is None


def test_casts_on_topic_server_and_fanout_are_served(client, recorded):
    client.cast({}, "rec", v="topic")
    client.prepare(server=HOST).cast({}, "rec", v="server")
    client.prepare(fanout=True).cast({}, "rec", v="fanout")
    _until(lambda: {"topic", "server", "fanout"} <= set(recorded), "three casts")


# -- errors -----------------------------------------------------------------------------------------

def test_dispatcher_errors_are_reraised_by_oslo(client, oslo):
    om, _ = oslo
    with pytest.raises(ValueError, match="bad value"):
        client.call({}, "boom")
    with pytest.raises(om.RemoteError) as err:
        client.call({}, "locked", node="n1")
    assert err.value.exc_type == "NodeLocked" and err.value.value == "node n1 locked"


def test_unknown_method_and_wrong_arguments_are_errors(client, oslo):
    om, _ = oslo
    with pytest.raises(om.RemoteError) as err:
        client.call({}, "no_such_method")
    assert err.value.exc_type == "NoSuchMethod"
    with pytest.raises(om.RemoteError) as err:
        client.call({}, "_private")
    assert err.value.exc_type == "NoSuchMethod"
    with pytest.raises(TypeError):
        client.call({}, "increment", n=1, unexpected=2)
    with pytest.raises(ValueError):
        client.call({}, "increment", n="not a number")
    with pytest.raises(om.RemoteError) as err:
        client.prepare(version="2.0").call({}, "echo", x=1)
    assert err.value.exc_type == "UnsupportedVersion"
    assert client.call({}, "increment", n=41) == 42


def test_oversized_payload_is_refused_with_the_limit(client, oslo):
    om, _ = oslo
    with pytest.raises(om.RemoteError) as err:
        client.call({}, "echo", x="a" * 10_000)
    assert err.value.exc_type == "MessageTooLarge" and "4096" in err.value.value
    assert client.call({}, "echo", x="small") == "small"


def test_malformed_envelopes_are_dropped_or_answered_and_serving_continues(client, conf, listener):
    before = listener.counters["rejected"]
    with connection_for(conf.transport_url, conf) as conn:
        channel = conn.channel()
        reply_q = Queue(f"nfp_interop_reply_{RUN}", exchange=Exchange(""), routing_key=None,
                        auto_delete=True)
        got = []
        Consumer(channel, [reply_q], no_ack=True,
                 on_message=lambda m: got.append(codec.decode_reply(m.body))).consume()
        producer = Producer(channel)
        exchange = topology.control_exchange(conf)
        for body in (b"{not json", json.dumps({"oslo.version": "9.0", "oslo.message": "{}"}),
                     codec.wrap({"method": "echo", "args": ["positional"], "_msg_id": "m-bad",
                                 "_reply_q": reply_q.name})):
            producer.publish(body, exchange=exchange, routing_key=TOPIC,
                             content_type="application/json", content_encoding="utf-8")
        deadline = time.monotonic() + WAIT
        while not got and time.monotonic() < deadline:
            try:
                conn.drain_events(timeout=0.2)
            except TimeoutError:
                pass
    failure = codec.parse_failure(got[0]["failure"])
    assert got[0]["_msg_id"] == "m-bad" and failure["kwargs"]["field"] == "args"
    _until(lambda: listener.counters["rejected"] >= before + 3, "three rejections")
    assert client.call({}, "echo", x="alive") == "alive"


# -- call-monitor heartbeats -----------------------------------------------------------------------------

def test_heartbeats_keep_a_slow_call_alive(client, listener):
    before = listener.counters["heartbeats"]
    assert client.prepare(timeout=WAIT, call_monitor_timeout=2).call({}, "slow", s=4) == "slept"
    assert listener.counters["heartbeats"] > before


def test_without_heartbeats_the_same_call_times_out(client, listener, oslo, monkeypatch):
    om, _ = oslo
    monkeypatch.setattr(listener.publisher, "track", lambda request: None)
    with pytest.raises(om.MessagingTimeout):
        client.prepare(timeout=WAIT, call_monitor_timeout=2).call({}, "slow", s=4)


# -- notifications -------------------------------------------------------------------------------------------

def test_notifications_reach_an_oslo_notification_listener(oslo, rabbit_url, listener):
    om, oconf = oslo
    received = []
    arrived = threading.Event()

    class Endpoint:
        def info(self, ctxt, publisher_id, event_type, payload, metadata):
            received.append((publisher_id, event_type, payload, metadata))
            arrived.set()

    ntransport = om.get_notification_transport(oconf, url=rabbit_url)
    notif_listener = om.get_notification_listener(
        ntransport, [om.Target(topic=NOTIFY_TOPIC, exchange=EXCHANGE)], [Endpoint()],
        executor="threading")
    notif_listener.start()
    try:
        listener.publish_notification("nfp.network_function.create.end", {"id": "nf-1"}, "info")
        assert arrived.wait(WAIT), "no notification arrived"
    finally:
        notif_listener.stop()
        notif_listener.wait()
        ntransport.cleanup()
    publisher_id, event_type, payload, metadata = received[0]
    assert (publisher_id, event_type, payload) == (listener.conf.rpc.publisher_id,
                                                   "nfp.network_function.create.end", {"id": "nf-1"})
    assert len(metadata["message_id"]) == 36 and metadata["timestamp"]


# -- connection loss -------------------------------------------------------------------------------------------

def _cut(kombu_connection):
    """Break a live py-amqp connection under its owner, as a broker restart would."""
    import socket
    kombu_connection.connection.transport.sock.shutdown(socket.SHUT_RDWR)


def test_listener_recovers_from_lost_connections(client, listener):
    reconnects = listener.counters["reconnects"]
    _cut(listener.consumer_connection)
    _until(lambda: listener.counters["reconnects"] == reconnects + 1 and listener.ready,
           "the consumer to reconnect")
    assert client.call({}, "echo", x="after consumer reconnect") == "after consumer reconnect"
    _cut(listener.publisher._producer._conn)  # replies go out on a second connection
    assert client.call({}, "echo", x="after publisher reconnect") == "after publisher reconnect"


def test_a_backlog_waiting_at_start_is_served_and_acked(rabbit_url):
    # Deliveries start while later basic.consume calls still wait for their
    # consume-ok; they must be acked like any other.
    topics = [f"nfp_interop_backlog_{RUN}", f"nfp_interop_backlog2_{RUN}"]
    conf = NfpConfig(transport={"url": rabbit_url, "control_exchange": EXCHANGE, "prefetch": 20},
                     rpc={"host": HOST})
    with connection_for(rabbit_url, conf) as conn:
        queue = topology.topic_queue(conf, topics[0])(conn.channel())
        queue.declare()
        producer = Producer(queue.channel)
        for v in range(300):
            producer.publish(codec.encode_request("rec", {"v": v}), exchange=queue.exchange,
                             routing_key=topics[0], content_type="application/json",
                             content_encoding="utf-8")
    recorded: list = []
    server = RpcListener(conf, FunctionDispatcher(_functions(recorded)), topics)
    try:
        assert server.start(wait=WAIT)
        _until(lambda: server.counters["acked"] == 300, "300 acks")
        assert sorted(recorded) == list(range(300))
    finally:
        server.stop(timeout=10)
        with connection_for(rabbit_url, conf) as conn:
            for name in (*topics, *(f"{t}.{HOST}" for t in topics)):
                conn.channel().queue_delete(name)
            for t in topics:
                conn.channel().exchange_delete(f"{t}_fanout")
