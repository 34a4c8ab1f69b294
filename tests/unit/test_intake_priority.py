"""Intake priority: a counted backlog holds the workers' new steps back
(:mod:`nfp.engine.intake_priority`), bounded so execution always gets a turn."""
from __future__ import annotations

import multiprocessing

from nfp.config import NfpConfig
from nfp.engine.intake_priority import HOLD, IntakePriority, worker_gate


def priority(**orchestrator) -> tuple[IntakePriority, callable]:
    conf = NfpConfig(orchestrator={"intake_priority_batch": 200, "intake_priority_max": 20.0,
                                   **orchestrator})
    p = IntakePriority(conf, multiprocessing.get_context("spawn"))
    return p, worker_gate(p.busy_until)


def test_a_backlog_below_the_threshold_never_holds_workers(monkeypatch):
    p, may_start = priority()
    monkeypatch.setattr("time.time", lambda: 1000.0)
    p.note_backlog(199)
    assert may_start()


def test_a_backlog_holds_new_steps_until_it_is_gone(monkeypatch):
    p, may_start = priority()
    now = [1000.0]
    monkeypatch.setattr("time.time", lambda: now[0])
    p.note_backlog(5000, now=now[0])
    assert not may_start()
    now[0] += HOLD - 0.1  # no look since: still held
    assert not may_start()
    p.note_backlog(300, now=now[0])  # renewed
    now[0] += HOLD - 0.1
    assert not may_start()
    p.note_backlog(10, now=now[0])  # drained: released at once, not after HOLD
    assert may_start()


def test_holding_lapses_when_the_listener_stops_looking(monkeypatch):
    p, may_start = priority()
    monkeypatch.setattr("time.time", lambda: 1000.0 + HOLD + 0.01)
    p.note_backlog(5000, now=1000.0)
    assert may_start()


def test_a_steady_flood_gives_execution_a_turn(monkeypatch):
    p, may_start = priority(intake_priority_max=8.0)
    now = [1000.0]
    monkeypatch.setattr("time.time", lambda: now[0])
    held = []
    for _ in range(40):  # 10 s of backlog, one look every 0.25 s
        p.note_backlog(5000, now=now[0])
        held.append(not may_start())
        now[0] += 0.25
    # held for intake_priority_max, then a quarter of it (2 s) free, then held again
    assert held[:33] == [True] * 33
    assert held[33:41] == [False] * 7
    p.note_backlog(5000, now=now[0] + 0.5)
    now[0] += 0.5
    assert not may_start()


def test_priority_off(monkeypatch):
    p, may_start = priority(intake_priority_max=0)
    monkeypatch.setattr("time.time", lambda: 1000.0)
    p.note_backlog(10**6, now=1000.0)
    assert may_start()
