"""The supervisor's process behaviour (embedded SQLite + filesystem bus): a SIGHUP
hands each shard from the old worker to a new one without overlap, and a hung
worker that ignores SIGTERM is killed and replaced."""
from __future__ import annotations

import os
import re
import signal
import time

import pytest
from sqlalchemy import func, select

from nfp.db.engine import make_engine
from nfp.db.models import Event, EventStatus
from nfp.engine import store
from nfp.engine.events import EventSpec
from nfp.testing.harness import Harness

pytestmark = pytest.mark.integration

T = Event.__table__
#: long enough that the chains are still running when the shards change hands
CHAINS, LINKS = 8, 2500


def _until(predicate, what, timeout=120):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _lines(h, pattern):
    return [(i, m) for i, line in enumerate(h.logs().splitlines())
            if (m := re.search(pattern, line))]


def test_sighup_starts_new_workers_before_retiring_old_ones_and_runs_each_step_once(tmp_path):
    # a short drain: the old workers stop mid-chain and their successors inherit the rest
    with Harness(tmp_path, workers=2, config={"orchestrator": {"drain_timeout": 1}}) as h:
        engine = make_engine(h.conf.database_url)
        try:
            with engine.begin() as conn:
                store.add(conn, [EventSpec("engine.noop", f"chain-{i}", {"remaining": LINKS - 1})
                                 for i in range(CHAINS)])

            def count(*statuses):
                with engine.connect() as conn:
                    return conn.execute(select(func.count()).select_from(T)
                                        .where(T.c.status.in_(statuses))).scalar()
            _until(lambda: count(EventStatus.DONE) > 0, "the chains to start")  # found by rescan
            assert count(*EventStatus.OPEN) > 0
            old = h.worker_pids()
            h.proc.send_signal(signal.SIGHUP)
            _until(lambda: "configuration reloaded" in h.logs(), "the reload")
            _until(lambda: count(EventStatus.DONE) == CHAINS * LINKS, "every link to run")

            with engine.connect() as conn:
                rows = conn.execute(select(T.c.scope, T.c.payload, T.c.status)).all()
        finally:
            engine.dispose()
        # each link ran once: a link run twice would have emitted its successor twice
        links = sorted((scope, payload["remaining"]) for scope, payload, _ in rows)
        assert links == sorted((f"chain-{i}", r) for i in range(CHAINS) for r in range(LINKS))
        assert {status for *_, status in rows} == {EventStatus.DONE}

        # per shard: the new worker is ready before the old one is retired, and it
        # takes the shard only after the old one has exited
        ready = {int(m[2]): (i, int(m[1])) for i, m in
                 _lines(h, r"\(pid (\d+)\) is ready; retiring pid (\d+)")}
        retired = {int(m[1]): i for i, m in _lines(h, r"\(pid (\d+)\) retired")}
        took = {int(m[1]): i for i, m in _lines(h, r"\(pid (\d+)\) took shard")}
        assert sorted(ready) == sorted(old)
        for old_pid, (ready_at, new_pid) in ready.items():
            assert ready_at < retired[old_pid] < took[new_pid]
        assert sorted(h.worker_pids()) == sorted(new for _, new in ready.values())
        assert "died with" not in h.logs()
        # the hand-off happened mid-run: a new worker inherited open steps
        inherited = [int(m[1]) for _, m in _lines(h, r"inherited\) with (\d+) open steps")][2:]
        assert any(inherited)


def test_hung_worker_gets_sigterm_then_sigkill_and_is_replaced(tmp_path):
    with Harness(tmp_path, workers=2, config={"orchestrator": {"worker_heartbeat_timeout": 1}}) as h:
        hung = h.worker_pids()[0]
        # a stopped process neither beats nor handles SIGTERM: only SIGKILL ends it
        os.kill(hung, signal.SIGSTOP)
        _until(lambda: f"(pid {hung}) died with signal {int(signal.SIGKILL)}" in h.logs(),
               "the hung worker to be killed")
        log = h.logs()
        assert log.index(f"(pid {hung}) missed its heartbeat") < \
            log.index(f"(pid {hung}) is still alive") < log.index(f"(pid {hung}) died with")
        _until(lambda: len(h.worker_pids()) == 2 and hung not in h.worker_pids(),
               "a replacement to take the shard")
        nf = h.client.get_network_functions()
        assert nf == []
