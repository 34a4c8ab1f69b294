"""Notifications are committed to the outbox with the step that causes them
(nfp.outbox), and the listener's relay publishes them in order, deleting a
row only after the publish went through (nfp.rpc.relay)."""
from __future__ import annotations

import time
import uuid

from sqlalchemy import select

from nfp import outbox
from nfp.config import NfpConfig
from nfp.db import migrate
from nfp.db.engine import make_engine, make_sessionmaker
from nfp.engine.events import EventSpec, done
from nfp.engine.executor import Result
from nfp.engine.registry import HandlerSpec, Registry
from nfp.rpc import codec, topology
from nfp.rpc.relay import Relay
from nfp.rpc.transport import connection_for
from nfp.testing.engine import InProcessEngine


def _rows(sessionmaker) -> list[tuple]:
    with sessionmaker() as session:
        return [(r.scope, r.event_type, r.payload) for r in
                session.execute(select(outbox.TABLE).order_by(outbox.TABLE.c.id))]


def test_a_step_commits_its_notifications_with_its_result():
    registry = Registry([HandlerSpec("a", lambda step: done(notify=[
        ("x.one", {"n": 1}), ("x.two", {"n": 2})]))])
    with InProcessEngine(registry) as engine:
        engine.add([EventSpec("a", "nf-1")])
        engine.join()
        assert _rows(engine.sessionmaker) == [("nf-1", "x.one", {"n": 1}), ("nf-1", "x.two", {"n": 2})]
        assert [e.status for e in engine.events("nf-1")] == ["done"]


def test_batched_state_steps_commit_their_notifications_too():
    registry = Registry([HandlerSpec("s", lambda step: done(notify=[("s.end", {"id": step.scope})]),
                                     io=False)])
    with InProcessEngine(registry) as engine:
        engine.add([EventSpec("s", f"nf-{i}") for i in range(5)])
        engine.join()
        assert sorted(_rows(engine.sessionmaker)) == [(f"nf-{i}", "s.end", {"id": f"nf-{i}"})
                                                      for i in range(5)]


def test_a_step_whose_commit_fails_leaves_only_its_failure_notification():
    def bad(step):  # the result cannot be stored: the commit fails, the step fails
        return done(result={"unserialisable": object()}, notify=[("x.end", {"id": step.scope})])

    registry = Registry([HandlerSpec("bad", bad, on_failure=lambda step, reason: done(
        notify=[("x.error", {"id": step.scope})]))])
    with InProcessEngine(registry) as engine:
        engine.add([EventSpec("bad", "nf-9")])
        engine.run_until_idle()
        assert [e.status for e in engine.events("nf-9")] == ["failed"]
        assert _rows(engine.sessionmaker) == [("nf-9", "x.error", {"id": "nf-9"})]


def test_the_worker_sends_one_wake_not_the_payloads():
    assert Result(notify=[("a", {"secret_looking": 1}), ("b", {})]).wakes == [(outbox.WAKE, {})]
    assert Result().wakes == []


def _relay_env(tmp_path):
    url = f"sqlite:///{tmp_path}/o.db"
    migrate.upgrade(url)
    engine = make_engine(url)
    topic = f"nt-{uuid.uuid4().hex[:8]}"
    conf = NfpConfig(state_dir=str(tmp_path), transport={"url": "memory://"},
                     rpc={"notifications_topic": topic})
    return engine, make_sessionmaker(engine), conf


def _published(conf, expected: int, timeout: float = 30) -> list[dict]:
    """Read ``expected`` notifications from the in-memory broker."""
    got: list[dict] = []
    end = time.monotonic() + timeout
    with connection_for("memory://", conf) as conn:
        queue = topology.notification_queue(conf, f"{conf.rpc.notifications_topic}.info")(conn.channel())
        queue.declare()
        while len(got) < expected and time.monotonic() < end:
            message = queue.get(no_ack=True)
            if message is None:
                time.sleep(0.02)
                continue
            got.append(codec.unwrap(message.body))
    return got


def test_the_relay_publishes_in_commit_order_and_then_deletes(tmp_path):
    engine, sessionmaker, conf = _relay_env(tmp_path)
    with sessionmaker.begin() as session:
        outbox.add(session, "nf-1", [("a.1", {"i": 1}), ("a.2", {"i": 2})])
        outbox.add(session, "nf-2", [("b.1", {"i": 3})])
    relay = Relay(sessionmaker, "memory://", conf)
    try:
        assert relay.run_round()
    finally:
        relay.producer.close()
    got = _published(conf, 3)
    assert [(m["event_type"], m["payload"]) for m in got] == [
        ("a.1", {"i": 1}), ("a.2", {"i": 2}), ("b.1", {"i": 3})]
    assert len({m["message_id"] for m in got}) == 3
    with sessionmaker() as session:
        assert outbox.count(session) == 0
    assert relay.counters.snapshot()["outbox_published"] == 3
    engine.dispose()


def test_a_woken_relay_publishes_rows_committed_later(tmp_path):
    engine, sessionmaker, conf = _relay_env(tmp_path)
    relay = Relay(sessionmaker, "memory://", conf)
    relay.start()
    try:
        with sessionmaker.begin() as session:
            outbox.add(session, "nf-3", [("c.end", {"id": "nf-3"})])
        relay.notify(outbox.WAKE, {})
        relay.notify("nfp.device.health.down", {"device_id": "dev-1"})  # a source without a commit
        got = _published(conf, 2)
        assert [m["event_type"] for m in got] == ["c.end", "nfp.device.health.down"]
    finally:
        relay.stop(10)
    with sessionmaker() as session:
        assert outbox.count(session) == 0
    engine.dispose()


def test_rows_stay_while_the_broker_cannot_be_reached(tmp_path):
    engine, sessionmaker, conf = _relay_env(tmp_path)
    with sessionmaker.begin() as session:
        outbox.add(session, "nf-4", [("d.end", {"id": "nf-4"})])
    relay = Relay(sessionmaker, "amqp://guest:guest@127.0.0.1:1//", conf)  # nothing listens there
    try:
        assert relay.run_round() is False
    finally:
        relay.producer.close()
    assert _rows(sessionmaker) == [("nf-4", "d.end", {"id": "nf-4"})]
    assert relay.counters.snapshot()["publish_failures"] >= 1
    # the same message id on every attempt, so a consumer can drop a second copy
    with sessionmaker() as session:
        first = outbox.claim(session, 10)[0]
    assert outbox.message_id(first) == outbox.message_id(first)
    engine.dispose()
