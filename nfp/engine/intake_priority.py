"""Intake priority: under a burst, accepting requests comes before running steps.

Why this exists: a request is only safe once the listener has committed it to
the event table, and until then it sits unacked in the broker, where a daemon
crash or a caller's timeout loses it. When a burst arrives, workers running
steps compete with the listener for CPU and database, so the burst is accepted
slowly. Steps can wait: what is accepted is durable and is worked off after.
So, while the listener sees a backlog, workers start no new steps (running ones
continue), and they run at a lower CPU priority (``worker_nice``) all the time.
Priority is bounded (``intake_priority_max``) so a steady flood cannot starve
execution.

The backlog is counted, not guessed: the listener's consumer looks every
``BACKLOG_CHECK_EVERY`` s (:mod:`nfp.rpc.listener`) at how many requests wait
on the broker's shared topic queues and adds those it holds delivered and not
yet committed. The size of a group commit was used before, and failed on a
slow or loaded machine: there the consumer hands over small batches (50-200)
however many thousand requests wait, the workers were never held back, and
they took 0.5-0.8 of a core from the intake (drains of 750-1,290 creates/s
against 1,750-1,860 with the workers held back, alternating runs).

The listener side is :class:`IntakePriority` (one shared value, set by
``note_backlog``); the worker side is :func:`worker_gate` and
:func:`lower_worker_priority`.
"""
from __future__ import annotations

import multiprocessing
import os
import time
from typing import Any, Callable, Optional

#: seconds one look at a backlog holds workers back; renewed by every look that
#: finds one. Longer than the gaps between looks under a burst (up to 1.1 s seen
#: while the consumer starts its consumers); a look that finds none releases at once.
HOLD = 2.0


class IntakePriority:
    """The listener's side of intake priority.

    Parameters:
        conf(NfpConfig): reads ``orchestrator.intake_priority_batch`` and
            ``orchestrator.intake_priority_max`` on every call, so a reload applies.
        ctx: the multiprocessing context the workers are spawned with.
    """

    def __init__(self, conf, ctx=multiprocessing):
        self.conf = conf
        #: wall-clock time until which workers start no new steps; shared with every worker
        self.busy_until = ctx.Value("d", 0.0, lock=False)
        self._busy_since = 0.0
        self._yield_until = 0.0

    def note_backlog(self, waiting: int, now: Optional[float] = None) -> None:
        """Called by the listener with the number of requests ``waiting`` to be
        committed (queued on the broker, or delivered and not yet committed). At
        least ``intake_priority_batch`` of them is a backlog: workers then hold
        back new steps for a moment so the burst is accepted (made durable)
        first. After ``intake_priority_max`` seconds of continuous priority,
        execution gets a turn of a quarter of that."""
        orch = self.conf.orchestrator
        now = time.time() if now is None else now
        if not orch.intake_priority_max or waiting < orch.intake_priority_batch:
            self._busy_since = 0.0
            self.busy_until.value = 0.0
            return
        if now < self._yield_until:
            return
        if not self._busy_since:
            self._busy_since = now
        if now - self._busy_since > orch.intake_priority_max:
            self._busy_since, self._yield_until = 0.0, now + orch.intake_priority_max / 4
            self.busy_until.value = 0.0
            return
        self.busy_until.value = now + HOLD


def worker_gate(busy_until: Any) -> Optional[Callable[[], bool]]:
    """The scheduler's gate in a worker: may a new step start now?"""
    if busy_until is None:
        return None
    return lambda: time.time() >= busy_until.value


def lower_worker_priority(conf) -> None:
    """Raise the worker process's nice value by ``orchestrator.worker_nice``."""
    if conf.orchestrator.worker_nice:
        os.nice(conf.orchestrator.worker_nice)
