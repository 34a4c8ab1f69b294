"""A handler's mid-step commit (Step.checkpoint) is fenced like the step's final one.

A worker paused past its lease (GC, a stopped VM) that comes back inside a
handler must not commit the handler's writes once another host has taken the
step's bucket over: the checkpoint raises LeaseLost, the step's result is
dropped, and the write never lands. A checkpoint with nothing written is not
fenced (it changes nothing), and a holder's checkpoint commits as before.
"""
from __future__ import annotations

import pytest
from sqlalchemy import text

from nfp.db.models import EventStatus
from nfp.engine import store
from nfp.engine.events import EventSpec, done
from nfp.engine.executor import Executor
from nfp.engine.leases import LeaseKeeper
from nfp.engine.registry import HandlerSpec, Registry
from tests.conftest import migrated_sessionmaker


@pytest.fixture
def maker(db_maker):
    return db_maker


def _take_over(maker, loser: LeaseKeeper) -> LeaseKeeper:
    """``loser`` was paused past its leases; another host takes its buckets."""
    with maker.begin() as s:
        s.execute(text("UPDATE bucket_leases SET expires_at = '2000-01-01' WHERE owner = :m"),
                  {"m": loser.member})
        s.execute(text("UPDATE engine_members SET heartbeat_at = '2000-01-01' WHERE member = :m"),
                  {"m": loser.member})
    other = LeaseKeeper(maker, "host-b", 0, ttl=15)
    other.join()
    other.tick()
    return other


def _holder(maker) -> LeaseKeeper:
    lease = LeaseKeeper(maker, "host-a", 0, ttl=15)
    lease.join()
    lease.tick()
    return lease


def _run(maker, handler, scope: str, lease=None):
    lease = lease or _holder(maker)
    executor = Executor(maker, services=None, registry=Registry([HandlerSpec("t.step", handler)]))
    executor.lease = lease
    with maker.begin() as s:
        ref = store.add(s, [EventSpec("t.step", scope)])[0]
    return lease, executor.run(ref.id), ref.id


def _written(maker, unique_id: str) -> bool:
    with maker() as s:
        return s.execute(text("SELECT count(*) FROM rpc_requests WHERE unique_id = :u"),
                         {"u": unique_id}).scalar() == 1


def _status(maker, event_id: int) -> str:
    with maker() as s:
        return s.execute(text("SELECT status FROM events WHERE id = :i"), {"i": event_id}).scalar()


def _write(step, unique_id: str) -> None:
    step.session.execute(text("INSERT INTO rpc_requests (unique_id, method, object_id, created_at) "
                              "VALUES (:u, 'test', :s, CURRENT_TIMESTAMP)"),
                         {"u": unique_id, "s": step.scope})


@pytest.fixture
def pg_maker(pg_url):
    with migrated_sessionmaker(pg_url) as maker:
        yield maker


def test_a_checkpoint_after_the_lease_was_taken_over_commits_nothing(pg_maker):
    """PostgreSQL: a take-over while a handler's write is uncommitted (on SQLite the
    handler's write lock keeps any other host from writing until it commits)."""
    maker = pg_maker
    lease = _holder(maker)
    took_over = []

    def handler(step):
        _write(step, "paused-write")
        took_over.append(_take_over(maker, lease))  # paused here, past the lease
        step.checkpoint()
        return done()

    _, result, event_id = _run(maker, handler, "nf-paused", lease)
    assert took_over, "the handler did not run"
    assert result.dropped == "lease lost"
    assert not _written(maker, "paused-write")
    assert _status(maker, event_id) == EventStatus.PENDING  # the new holder runs it


def test_a_holder_checkpoint_commits_its_write_before_the_io(maker):
    seen = {}

    def handler(step):
        _write(step, "held-write")
        step.checkpoint()
        seen["committed"] = _written(maker, "held-write")  # visible to others before the I/O
        return done()

    _, result, event_id = _run(maker, handler, "nf-held")
    assert result.dropped is None
    assert seen["committed"] is True
    assert _status(maker, event_id) == EventStatus.DONE


def test_a_checkpoint_with_nothing_written_is_not_fenced(maker):
    def handler(step):
        step.session.execute(text("SELECT count(*) FROM network_functions")).scalar()
        lease_holder = step.fence
        step.fence = _must_not_be_called
        try:
            step.checkpoint()
        finally:
            step.fence = lease_holder
        return done()

    _, result, event_id = _run(maker, handler, "nf-read")
    assert result.dropped is None
    assert _status(maker, event_id) == EventStatus.DONE


def _must_not_be_called(_session):
    raise AssertionError("a read-only checkpoint was fenced")


@pytest.mark.parametrize("outcome", ["done", "fail"])
def test_a_step_closed_after_its_lease_was_taken_over_commits_nothing(pg_maker, outcome):
    """The step's completion carries the fence in its own statement: a worker that
    was paused past its lease and returns a result (done or failed) commits neither
    the result nor the handler's writes, and the step stays open for the new holder."""
    from nfp.engine.events import fail
    maker = pg_maker
    lease = _holder(maker)
    took_over = []

    def handler(step):
        _write(step, f"late-{outcome}")
        took_over.append(_take_over(maker, lease))  # paused here, past the lease
        return done() if outcome == "done" else fail("the device said no")

    _, result, event_id = _run(maker, handler, f"nf-late-{outcome}", lease)
    assert took_over, "the handler did not run"
    assert result.dropped == "lease lost"
    assert not _written(maker, f"late-{outcome}")
    assert _status(maker, event_id) == EventStatus.PENDING
