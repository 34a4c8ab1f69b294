"""Two hosts' outbox relays on one PostgreSQL database and the real RabbitMQ:
every notification is published once, and each scope's in commit order."""
from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict

import pytest

from nfp import outbox
from nfp.config import NfpConfig
from nfp.db import migrate
from nfp.db.engine import make_engine, make_sessionmaker
from nfp.rpc import codec, topology
from nfp.rpc.relay import Relay
from nfp.rpc.transport import connection_for

pytestmark = pytest.mark.integration

SCOPES, PER_SCOPE = 20, 25


def _outbox_and_queue(tmp_path, pg_url, rabbit_url):
    """A migrated database and a declared notification queue of a topic of its own."""
    migrate.upgrade(pg_url)
    engine = make_engine(pg_url, pool_size=4)
    sessionmaker = make_sessionmaker(engine)
    topic = f"nfp-outbox-{uuid.uuid4().hex[:8]}"
    conf = NfpConfig(state_dir=str(tmp_path), transport={"url": rabbit_url},
                     rpc={"notifications_topic": topic})
    queue = topology.notification_queue(conf, f"{topic}.info")
    with connection_for(rabbit_url, conf) as conn:
        queue(conn.channel()).declare()
    return engine, sessionmaker, conf, queue


def test_two_relays_publish_each_row_once_and_in_order(tmp_path, pg_url, rabbit_url):
    engine, sessionmaker, conf, queue = _outbox_and_queue(tmp_path, pg_url, rabbit_url)
    relays = [Relay(sessionmaker, rabbit_url, conf) for _ in range(2)]
    for relay in relays:
        relay.start()

    def write(scope: str) -> None:  # one step per transaction, as the executor commits them
        for n in range(PER_SCOPE):
            with sessionmaker.begin() as session:
                outbox.add(session, scope, [("t.step", {"scope": scope, "n": n})])
            relays[n % 2].wake()

    writers = [threading.Thread(target=write, args=(f"nf-{s}",)) for s in range(SCOPES)]
    got: list[dict] = []
    try:
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join(120)
        end = time.monotonic() + 120
        with connection_for(rabbit_url, conf) as conn:
            bound = queue(conn.channel())
            while len(got) < SCOPES * PER_SCOPE and time.monotonic() < end:
                message = bound.get(no_ack=True)
                if message is None:
                    time.sleep(0.05)
                    continue
                got.append(codec.unwrap(message.body))
    finally:
        for relay in relays:
            relay.stop(30)
        with connection_for(rabbit_url, conf) as conn:
            queue(conn.channel()).delete()
    assert len(got) == SCOPES * PER_SCOPE
    assert len({m["message_id"] for m in got}) == len(got), "a row was published twice"
    order = defaultdict(list)
    for m in got:
        order[m["payload"]["scope"]].append(m["payload"]["n"])
    assert all(ns == list(range(PER_SCOPE)) for ns in order.values()), "a scope overtook itself"
    assert all(r.counters["outbox_published"] > 0 for r in relays), "one relay did all the work"
    with sessionmaker() as session:
        assert outbox.count(session) == 0
    engine.dispose()


def test_a_draining_stop_publishes_what_the_outbox_holds(tmp_path, pg_url, rabbit_url):
    """At SIGTERM the daemon stops its relay last, draining: rows the workers
    committed while they drained go out now. A plain stop leaves them for the
    next start (or another host)."""
    engine, sessionmaker, conf, queue = _outbox_and_queue(tmp_path, pg_url, rabbit_url)

    def left_after_stop(**stop) -> int:
        relay = Relay(sessionmaker, rabbit_url, conf)
        relay.start()
        time.sleep(0.5)  # its first sweep is done: it waits for a wake-up or the next sweep
        with sessionmaker.begin() as session:  # committed without a wake-up, as by a draining step
            outbox.add(session, "nf-drain", [("t.step", {"n": n}) for n in range(30)])
        relay.stop(10, **stop)
        with sessionmaker() as session:
            return outbox.count(session)

    try:
        assert left_after_stop() == 30  # stopped at once: the rows wait in the table
        assert left_after_stop(drain=True) == 0  # these and the 30 left before
        with connection_for(rabbit_url, conf) as conn:
            bound = queue(conn.channel())
            got = []
            while (message := bound.get(no_ack=True)) is not None:
                got.append(codec.unwrap(message.body))
        assert sorted(m["payload"]["n"] for m in got) == sorted(list(range(30)) * 2)
    finally:
        with connection_for(rabbit_url, conf) as conn:
            queue(conn.channel()).delete()
        engine.dispose()
