"""RpcListener and RpcClient end to end over the embedded filesystem bus.

Every test uses its own bus directory and at least two connections (the
client's and the listener's two); one test runs the listener in another process.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import zlib
from typing import Callable

import pytest
from kombu import Consumer, Producer
from sqlalchemy.exc import OperationalError

from nfp.config import NfpConfig
from nfp.rpc import codec, topology
from nfp.rpc.client import MessagingTimeout, RemoteError, RpcClient
from nfp.rpc.listener import RpcListener
from nfp.rpc.transport import connection_for
from nfp.rpc.types import IncomingRequest, Reply

TOPIC = "nfp-test"
WAIT = 20.0


class Recorder:
    """An in-test dispatcher: ``echo`` and ``whoami`` are reads, the rest mutations
    that append to ``done``. ``gate`` can hold the group commit, ``failures``
    makes the next commits raise, ``poison`` fails any batch containing it."""

    def __init__(self):
        self.done: list = []
        self.batches: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.failures: list[Exception] = []
        self.commit_attempts = 0
        self.on_failure: Callable[[], None] = lambda: None

    def has_method(self, topic, method):
        return method in {"echo", "whoami", "record", "slow", "poison", "needs_x"}

    def is_read(self, topic, method):
        return method in {"echo", "whoami"}

    def handle_read(self, request: IncomingRequest) -> Reply:
        if request.method == "whoami":
            return Reply(result={"pid": os.getpid(), "thread": threading.current_thread().name})
        return Reply(result=request.args["x"])

    def handle_mutations(self, requests):
        self.entered.set()
        self.gate.wait()
        self.commit_attempts += 1
        if self.failures:
            self.on_failure()
            raise self.failures.pop(0)
        if any(r.method == "poison" for r in requests):
            raise ValueError("poison in batch")
        self.batches.append(len(requests))
        outcomes = []
        for r in requests:
            if r.method == "slow":
                time.sleep(r.args["s"])
            if r.method == "needs_x":
                outcomes.append(Reply(error=TypeError("needs_x() missing 1 required argument: 'x'"))
                                if "x" not in r.args else Reply(result=r.args["x"]))
                continue
            self.done.append(r.args.get("v"))
            outcomes.append(Reply(result={"stored": r.args.get("v")}))
        return outcomes


def until(predicate, timeout=WAIT, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


@pytest.fixture
def conf(tmp_path):
    return NfpConfig(state_dir=str(tmp_path),
                     transport={"url": f"filesystem://{tmp_path}/bus", "polling_interval": 0.005,
                                "prefetch": 100},
                     rpc={"topic": TOPIC, "host": "h1", "max_message_bytes": 2048, "read_threads": 2})


@pytest.fixture
def start(conf):
    started = []

    def _start(dispatcher, **kw):
        listener = RpcListener(conf, dispatcher, [TOPIC], **kw)
        assert listener.start(wait=WAIT)
        started.append(listener)
        return listener

    yield _start
    for listener in started:
        listener.stop(timeout=5)


@pytest.fixture
def client(conf):
    c = RpcClient(conf.transport_url, conf, TOPIC)
    yield c
    c.close()


def raw_publish(conf, body, headers=None, topic=TOPIC):
    with connection_for(conf.transport_url, conf) as conn:
        target = topology.topic_queue(conf, topic)
        Producer(conn.default_channel).publish(
            body, exchange=target.exchange, routing_key=topic, headers=headers or {},
            content_type="application/json", content_encoding="utf-8", declare=[target])


class Replies:
    """A reply queue read with plain kombu, for requests built by hand."""

    def __init__(self, conf):
        self.conn = connection_for(conf.transport_url, conf)
        self.queue = topology.reply_queue()
        self.got: list[dict] = []
        Consumer(self.conn.default_channel, [self.queue], no_ack=True,
                 on_message=lambda m: self.got.append(codec.decode_reply(m.body))).consume()

    def wait(self, count=1):
        deadline = time.monotonic() + WAIT
        while len(self.got) < count and time.monotonic() < deadline:
            try:
                self.conn.drain_events(timeout=0.1)
            except TimeoutError:
                pass
        assert len(self.got) >= count, "no reply"
        return self.got


# -- the happy paths -------------------------------------------------------------------

def test_calls_casts_server_and_fanout_are_served(start, client):
    d = Recorder()
    listener = start(d)
    assert client.call({"user": "u"}, "echo", x={"a": [1, 2]}) == {"a": [1, 2]}
    assert client.call({}, "record", v=1) == {"stored": 1}
    assert client.call({}, "record", v=2, server="h1") == {"stored": 2}
    client.cast({}, "record", v=3)
    client.cast({}, "record", v=4, server="h1")
    client.cast({}, "record", v=5, fanout=True)
    until(lambda: len(d.done) == 5, what="5 mutations")
    assert sorted(d.done) == [1, 2, 3, 4, 5]
    assert client.call({}, "whoami")["thread"].startswith("nfp-rpc-read-")
    until(lambda: listener.counters["acked"] == 7, what="acks")
    snap = listener.counters.snapshot()
    assert snap["received"] == 7 and snap["rejected"] == 0 and snap["replies"] == 4


def test_listener_in_another_process_serves_this_one(conf, client, tmp_path):
    script = (
        "import sys, os\n"
        "from nfp.config import NfpConfig\n"
        "from nfp.rpc.listener import RpcListener\n"
        "from nfp.rpc.functions import FunctionDispatcher\n"
        f"conf = NfpConfig.model_validate_json({conf.model_dump_json()!r})\n"
        "d = FunctionDispatcher({'whoami': lambda c: os.getpid()}, reads=['whoami'])\n"
        f"l = RpcListener(conf, d, [{TOPIC!r}])\n"
        "print('ready' if l.start(20) else 'failed', flush=True)\n"
        "sys.stdin.read()\n"
        "l.stop(5)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    try:
        assert proc.stdout.readline().strip() == "ready"
        assert client.call({}, "whoami") == proc.pid
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=WAIT) == 0


def test_casts_sent_while_no_listener_runs_are_served_when_it_starts(start, client):
    client.cast({}, "record", v=9)  # the client declares T and its binding itself
    d = Recorder()
    start(d)
    until(lambda: d.done == [9], what="queued cast")


# -- group commit and acks ---------------------------------------------------------------

def test_mutations_are_batched_and_acked_only_after_commit(start, client):
    d = Recorder()
    d.gate.clear()
    listener = start(d)
    client.cast({}, "record", v=0)
    assert d.entered.wait(WAIT)
    for v in range(1, 21):
        client.cast({}, "record", v=v)
    until(lambda: listener.counters["received"] == 21, what="deliveries")
    assert listener.counters["acked"] == 0
    d.gate.set()
    until(lambda: listener.counters["acked"] == 21, what="acks")
    assert d.batches[0] == 1 and sum(d.batches) == 21 and max(d.batches[1:]) > 1
    assert sorted(d.done) == list(range(21))


def test_the_backlog_is_counted_before_consuming_and_until_committed(start, client):
    """``on_backlog`` gets the requests waiting to be committed: ready on the
    topic queue before the first delivery, then ready plus delivered and
    unsettled while the commit is held, and none once they are committed."""
    for v in range(30):
        client.cast({}, "record", v=v)
    d = Recorder()
    d.gate.clear()
    counts: list[int] = []
    start(d, on_backlog=counts.append)
    assert counts[0] == 30  # counted in get_consumers, before basic.consume
    d.entered.wait(WAIT)
    until(lambda: len(counts) >= 3, what="counts while the commit is held")
    assert counts[-1] == 30  # delivered or not, none is committed yet
    d.gate.set()
    until(lambda: len(d.done) == 30, what="30 commits")
    until(lambda: counts[-1] == 0, what="a count of zero after the commits")


def test_an_idle_listener_does_not_ask_the_broker_for_its_backlog(start, client, monkeypatch):
    """Nothing delivered and nothing in flight: the window is open and empty, so
    the count is 0 without a passive declare; a delivery makes it ask again."""
    import kombu
    asked = []
    declare = kombu.Queue.queue_declare

    def counting(self, *args, **kwargs):
        if kwargs.get("passive"):
            asked.append(self.name)
        return declare(self, *args, **kwargs)

    monkeypatch.setattr(kombu.Queue, "queue_declare", counting)
    d = Recorder()
    counts: list[int] = []
    start(d, on_backlog=counts.append)
    until(lambda: len(counts) >= 6, what="counts of an idle listener")
    assert asked == [TOPIC] and set(counts) == {0}  # only the count before consuming
    d.gate.clear()
    client.cast({}, "record", v=1)
    until(lambda: len(asked) >= 2, what="a count that asks the broker")
    d.gate.set()
    until(lambda: d.done == [1], what="the commit")


def test_messages_not_committed_at_stop_are_redelivered(conf, client):
    d1 = Recorder()
    d1.gate.clear()
    first = RpcListener(conf, d1, [TOPIC])
    assert first.start(WAIT)
    for v in (1, 2, 3):
        client.cast({}, "record", v=v)
    until(lambda: first.counters["received"] == 3, what="deliveries")
    first.stop(timeout=0.5)  # the commit is stuck: nothing may be acked
    assert first.counters["acked"] == 0
    d1.gate.set()
    d2 = Recorder()
    second = RpcListener(conf, d2, [TOPIC])
    assert second.start(WAIT)
    try:
        until(lambda: sorted(d2.done) == [1, 2, 3], what="redelivery")
    finally:
        second.stop(5)


def test_graceful_stop_finishes_the_running_batch_and_replies(conf, client):
    d = Recorder()
    d.gate.clear()
    listener = RpcListener(conf, d, [TOPIC])
    assert listener.start(WAIT)
    result = {}
    caller = threading.Thread(target=lambda: result.update(r=client.call({}, "record", v=7)))
    caller.start()
    assert d.entered.wait(WAIT)
    stopper = threading.Thread(target=listener.stop, kwargs={"timeout": WAIT})
    stopper.start()
    d.gate.set()
    stopper.join(WAIT)
    caller.join(WAIT)
    assert result["r"] == {"stored": 7}
    assert listener.counters["acked"] == 1 and not listener.ready


def test_transient_commit_errors_are_retried_without_acking(start, client):
    d = Recorder()
    listener = start(d)
    acked_during_failures = []
    d.on_failure = lambda: acked_during_failures.append(listener.counters["acked"])
    d.failures = [OperationalError("INSERT", {}, Exception("db down"))] * 3
    assert client.call({}, "record", v=1) == {"stored": 1}
    assert acked_during_failures == [0, 0, 0]
    assert d.commit_attempts == 4 and listener.counters["batch_retries"] == 3


def test_a_poison_request_is_isolated_and_dropped(start, client, conf):
    d = Recorder()
    d.gate.clear()
    listener = start(d, max_attempts=2)
    client.cast({}, "record", v=0)
    assert d.entered.wait(WAIT)
    client.cast({}, "record", v=1)
    replies = Replies(conf)
    raw_publish(conf, codec.encode_request("poison", {}, msg_id="m-poison", reply_q=replies.queue.name))
    client.cast({}, "record", v=2)
    until(lambda: listener.counters["received"] == 4, what="deliveries")
    d.gate.set()
    reply = replies.wait()[0]
    failure = codec.parse_failure(reply["failure"])
    assert failure["class"] == "PoisonMessage" and "failed 2 times" in failure["message"]
    until(lambda: sorted(d.done) == [0, 1, 2], what="healthy requests")
    until(lambda: listener.counters["rejected"] == 1, what="the rejection")
    assert client.call({}, "echo", x="still serving") == "still serving"


# -- bad input never stops the listener --------------------------------------------------------------

def test_refusals_reach_the_caller_with_oslo_names(start, client, conf):
    d = Recorder()
    start(d)
    with pytest.raises(RemoteError) as err:
        client.call({}, "nope")
    assert (err.value.exc_type, err.value.module) == ("NoSuchMethod", "oslo_messaging.rpc.dispatcher")
    with pytest.raises(RemoteError) as err:
        client.call({}, "_private")
    assert err.value.exc_type == "NoSuchMethod"
    with RpcClient(conf.transport_url, conf, TOPIC, version="2.0") as newer:
        with pytest.raises(RemoteError) as err:
            newer.call({}, "echo", x=1)
    assert err.value.exc_type == "UnsupportedVersion"
    with pytest.raises(RemoteError) as err:
        client.call({}, "needs_x")
    assert err.value.exc_type == "TypeError"
    with pytest.raises(RemoteError) as err:
        client.call({}, "echo", x="a" * 4000)
    assert err.value.exc_type == "MessageTooLarge" and "2048" in err.value.value
    assert client.call({}, "echo", x="fine") == "fine"


def test_malformed_messages_are_answered_or_dropped_and_serving_continues(start, client, conf):
    d = Recorder()
    listener = start(d)
    replies = Replies(conf)
    raw_publish(conf, b"{not json")
    raw_publish(conf, json.dumps({"oslo.version": "9.0", "oslo.message": "{}"}))
    raw_publish(conf, codec.wrap({"method": "record", "args": [1], "_msg_id": "m1",
                                  "_reply_q": replies.queue.name}))
    failure = codec.parse_failure(replies.wait()[0]["failure"])
    assert failure["class"] == "CodecError" and failure["kwargs"]["field"] == "args"
    until(lambda: listener.counters["rejected"] == 3, what="rejections")
    assert client.call({}, "record", v=1) == {"stored": 1}
    assert d.done == [1]


def test_duplicates_are_skipped_and_compressed_bodies_accepted(start, client, conf):
    d = Recorder()
    listener = start(d)
    body = codec.encode_request("record", {"v": 5}, unique_id="dup-1")
    raw_publish(conf, body)
    raw_publish(conf, body)
    raw_publish(conf, zlib.compress(codec.encode_request("record", {"v": 6}).encode()),
                headers={"compression": "application/x-gzip"})
    until(lambda: listener.counters["acked"] == 3, what="acks")
    assert sorted(d.done) == [5, 6] and listener.counters["duplicates"] == 1


# -- heartbeats and notifications ----------------------------------------------------------------------

def test_heartbeats_keep_a_slow_call_alive(start, conf):
    d = Recorder()
    listener = start(d)
    with RpcClient(conf.transport_url, conf, TOPIC, call_monitor_timeout=0.4) as monitored:
        assert monitored.call({}, "slow", s=1.5, v=1) == {"stored": 1}
    assert listener.counters["heartbeats"] >= 2


def test_call_monitor_fails_a_call_nobody_answers(conf):
    with RpcClient(conf.transport_url, conf, "nobody-serves-this", call_monitor_timeout=0.3) as c:
        with pytest.raises(MessagingTimeout):
            c.call({}, "echo", timeout=120, x=1)


def test_notifications_are_published_in_oslo_format(start, conf):
    listener = start(Recorder())
    listener.publish_notification("nfp.network_function.create.end", {"id": "nf1"}, "info",
                                  context={"request_id": "req-1"})
    got = []
    with connection_for(conf.transport_url, conf) as conn:
        q = topology.notification_queue(conf, "notifications.info")
        Consumer(conn.default_channel, [q], on_message=lambda m: (got.append(m.body), m.ack())).consume()
        deadline = time.monotonic() + WAIT
        while not got and time.monotonic() < deadline:
            try:
                conn.drain_events(timeout=0.1)
            except TimeoutError:
                pass
    assert got
    msg = codec.unwrap(got[0])
    assert (msg["event_type"], msg["priority"], msg["payload"]) == \
        ("nfp.network_function.create.end", "INFO", {"id": "nf1"})
    assert msg["publisher_id"] == conf.rpc.publisher_id and msg["_context_request_id"] == "req-1"
    until(lambda: listener.counters["notifications"] == 1, what="counter")
