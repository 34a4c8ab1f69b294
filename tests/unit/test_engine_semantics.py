"""Engine semantics with test-only step types: polls, deadlines, fan-in, notifications."""
from __future__ import annotations

import threading
import time

import pytest

from nfp import config as nfp_config
from nfp.db import migrate
from nfp.db.engine import make_engine, make_sessionmaker
from nfp.db.models import Event
from nfp.engine import store
from nfp.engine.events import EventSpec, Graph, done, fail, poll, wait
from nfp.engine.executor import Executor
from nfp.engine.registry import Registry
from nfp.engine.scheduler import KeyScheduler

REGISTRY = Registry()
handler = REGISTRY.handler
FAILURES: list[tuple[str, str]] = []
RELEASE = threading.Event()


@handler("test.poll_forever")
def _poll_forever(step):
    return poll(0.01, 3)


@handler("test.hang", deadline=0.3)
def _hang(step):
    RELEASE.wait(5)
    return done({"late": True})


@handler("test.ok")
def _ok(step):
    return done({"child": step.event.key})


@handler("test.bad")
def _bad(step):
    return fail("broken on purpose")


def _record(step, reason):
    FAILURES.append((step.event.type, reason))


@handler("test.join", on_failure=_record)
def _join(step):
    failed = [c for c in step.children() if c.status != "done"]
    return fail(f"{len(failed)} child(ren) failed") if failed else done({"children": len(step.children())})


@handler("test.park")
def _park(step):
    if step.notification is None:
        return wait(30)
    return done({"got": step.notification})


@pytest.fixture
def env(tmp_path):
    conf = nfp_config.load(None, {"state_dir": str(tmp_path)}, environ={})
    migrate.upgrade(conf.database_url)
    engine = make_engine(conf.database_url)
    sm = make_sessionmaker(engine)
    sched = KeyScheduler(Executor(sm, None, registry=REGISTRY), threads=4)
    stop = sched.run_timers_in_background()
    FAILURES.clear()
    yield sm, sched
    RELEASE.set()
    stop.set()
    sched.close()
    engine.dispose()


def _add(sm, sched, items):
    with sm.begin() as s:
        refs = store.add(s, items)
    sched.offer(refs)
    return refs


def _row(sm, event_id, statuses=("done", "failed", "cancelled"), timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        with sm() as s:
            row = s.get(Event, event_id)
            if row.status in statuses:
                return row
        time.sleep(0.02)
    raise AssertionError(f"event {event_id} stuck in {row.status}")


def test_poll_gives_up_after_max_polls(env):
    sm, sched = env
    ref = _add(sm, sched, [EventSpec("test.poll_forever", "s1")])[0]
    row = _row(sm, ref.id)
    assert row.status == "failed" and "gave up after 3 polls" in row.error


def test_deadline_fails_step_and_drops_late_result(env):
    sm, sched = env
    RELEASE.clear()
    ref = _add(sm, sched, [EventSpec("test.hang", "s2")])[0]
    row = _row(sm, ref.id)
    assert row.status == "failed" and "deadline" in row.error
    RELEASE.set()
    time.sleep(0.3)
    assert _row(sm, ref.id).status == "failed"  # the late "done" was dropped


def test_fan_in_runs_parent_after_children_and_sees_failures(env):
    sm, sched = env
    refs = _add(sm, sched, [Graph(EventSpec("test.join", "s3"),
                                  [EventSpec("test.ok", "s3", key="s3:a"),
                                   EventSpec("test.bad", "s3", key="s3:b")])])
    with sm() as s:
        parent_id = s.query(Event).filter(Event.type == "test.join").one().id
    row = _row(sm, parent_id)
    assert row.status == "failed" and "1 child(ren) failed" in row.error
    assert FAILURES == [("test.join", "1 child(ren) failed")]
    assert len(refs) == 2  # only the children were ready at first


def test_parked_step_resumes_on_notification(env):
    sm, sched = env
    ref = _add(sm, sched, [EventSpec("test.park", "s4")])[0]
    _row(sm, ref.id, statuses=("waiting",))
    with sm.begin() as s:
        resumed = store.resume(s, ref.id, {"status": "SUCCESS"})
    sched.offer([resumed])
    row = _row(sm, ref.id)
    assert row.status == "done" and row.result == {"got": {"status": "SUCCESS"}}


def test_cancelled_step_never_runs(env):
    sm, _ = env
    with sm.begin() as s:
        ref = store.add(s, [EventSpec("test.ok", "s5")])[0]
        assert store.cancel_scope(s, "s5") == 1
    result = Executor(sm, None, registry=REGISTRY).run(ref.id)
    assert result.dropped == "not open"
    assert _row(sm, ref.id).status == "cancelled"
