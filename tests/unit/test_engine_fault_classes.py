"""Engine fault handling with test-only step types (embedded SQLite):

- a transient database error in a handler is retried with backoff and never
  counted against the step;
- a real error still fails the step;
- drain starts nothing that was queued, and nothing that follows a running step;
- a hung handler past its deadline is counted as a stuck thread;
- the running-steps map keeps exactly the ids of steps that had started;
- a poll step's attempts restart at each reschedule.
"""
from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy.exc import OperationalError

from nfp import config as nfp_config
from nfp.db import migrate
from nfp.db.engine import make_engine, make_sessionmaker
from nfp.db.models import Event
from nfp.engine import running, store
from nfp.engine.events import EventSpec, done, poll
from nfp.engine.executor import Executor
from nfp.engine.registry import Registry
from nfp.engine.scheduler import KeyScheduler

REGISTRY = Registry()
handler = REGISTRY.handler
FLAKY = {"left": 0, "calls": 0}
GATE = threading.Event()
STARTED: list[str] = []


@handler("faults.flaky")
def _flaky(step):
    FLAKY["calls"] += 1
    if FLAKY["left"] > 0:
        FLAKY["left"] -= 1
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))
    return done({"calls": FLAKY["calls"]})


@handler("faults.broken")
def _broken(step):
    raise RuntimeError("a real bug")


@handler("faults.slow")
def _slow(step):
    STARTED.append(step.event.key)
    GATE.wait(10)
    return done()


@handler("faults.hang", deadline=0.2)
def _hang(step):
    GATE.wait(10)
    return done()


@handler("faults.poll")
def _poll(step):
    return poll(0.05, 3) if step.event.polls < 2 else done()


@pytest.fixture
def env(tmp_path):
    conf = nfp_config.load(None, {"state_dir": str(tmp_path)}, environ={})
    migrate.upgrade(conf.database_url)
    engine = make_engine(conf.database_url)
    sm = make_sessionmaker(engine)
    path = running.path_for(tmp_path, 0)
    sched = KeyScheduler(Executor(sm, None, registry=REGISTRY), threads=2,
                         running=running.RunningSteps(path, 8))
    stop = sched.run_timers_in_background()
    GATE.clear()
    STARTED.clear()
    yield sm, sched, path
    GATE.set()
    stop.set()
    sched.close()
    engine.dispose()


def _add(sm, sched, items):
    with sm.begin() as s:
        refs = store.add(s, items)
    sched.offer(refs)
    return refs


def _row(sm, event_id, statuses=("done", "failed", "cancelled"), timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        with sm() as s:
            row = s.get(Event, event_id)
            if row.status in statuses:
                return row
        time.sleep(0.02)
    raise AssertionError(f"event {event_id} stuck in {row.status}")


def test_transient_handler_errors_are_retried_and_never_charged(env):
    sm, sched, _ = env
    FLAKY.update(left=3, calls=0)
    ref = _add(sm, sched, [EventSpec("faults.flaky", "t1")])[0]
    row = _row(sm, ref.id)
    assert row.status == "done" and row.result == {"calls": 4}
    assert row.attempts == 0 and row.error is None


def test_a_real_error_still_fails_the_step(env):
    sm, sched, _ = env
    ref = _add(sm, sched, [EventSpec("faults.broken", "t2")])[0]
    row = _row(sm, ref.id)
    assert row.status == "failed" and "a real bug" in row.error


def test_running_map_holds_exactly_the_started_steps(env):
    sm, sched, path = env
    refs = _add(sm, sched, [EventSpec("faults.slow", f"k{i}") for i in range(5)])
    end = time.time() + 10
    while len(STARTED) < 2 and time.time() < end:  # two threads: two running, three queued
        time.sleep(0.01)
    time.sleep(0.1)
    marked = running.read(path)  # what a successor would charge if the worker died now
    assert len(marked) == 2 and set(marked) <= {r.id for r in refs}
    GATE.set()
    for ref in refs:
        _row(sm, ref.id)
    assert running.read(path) == []


def test_drain_starts_nothing_that_was_queued(env):
    sm, sched, _ = env
    refs = _add(sm, sched, [EventSpec("faults.slow", f"d{i}") for i in range(20)])
    end = time.time() + 10
    while len(STARTED) < 2 and time.time() < end:
        time.sleep(0.01)
    threading.Timer(0.3, GATE.set).start()
    assert sched.drain(10)
    time.sleep(0.2)
    assert len(STARTED) == 2  # the 18 queued ones stay open for the next owner
    with sm() as s:
        statuses = [s.get(Event, r.id).status for r in refs]
    assert statuses.count("done") == 2 and statuses.count("pending") == 18
    sched.offer([refs[-1]])  # a follow-up offered while draining is not taken either
    time.sleep(0.2)
    assert len(STARTED) == 2


def test_a_hung_handler_past_its_deadline_counts_as_a_stuck_thread(env):
    sm, sched, _ = env
    ref = _add(sm, sched, [EventSpec("faults.hang", "h1")])[0]
    row = _row(sm, ref.id)
    assert row.status == "failed" and "deadline" in row.error
    assert sched.stuck() == 1
    GATE.set()
    end = time.time() + 5
    while sched.stuck() and time.time() < end:
        time.sleep(0.02)
    assert sched.stuck() == 0  # the thread came back; its late result was dropped


def test_a_poll_step_attempts_restart_when_it_reschedules(env):
    sm, sched, _ = env
    with sm.begin() as s:
        ref = store.add(s, [EventSpec("faults.poll", "p1")])[0]
        s.query(Event).filter(Event.id == ref.id).update({"attempts": 3})
    sched.offer([ref])
    row = _row(sm, ref.id)
    assert row.status == "done" and row.polls == 2 and row.attempts == 0
