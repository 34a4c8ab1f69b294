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

The listener side is :class:`IntakePriority` (one shared value, set by
``note_intake``); the worker side is :func:`worker_gate` and
:func:`lower_worker_priority`.
"""
from __future__ import annotations

import multiprocessing
import os
import time
from typing import Any, Callable, Optional

#: seconds one full batch holds workers back; renewed by every full batch
HOLD = 0.5


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

    def note_intake(self, batch_size: int, now: Optional[float] = None) -> None:
        """Called after each group commit. A full batch means the broker holds a
        backlog: workers then hold back new steps for a moment so the burst is
        accepted (made durable) first. After ``intake_priority_max`` seconds of
        continuous priority, execution gets a turn of a quarter of that."""
        orch = self.conf.orchestrator
        now = time.time() if now is None else now
        if not orch.intake_priority_max or batch_size < orch.intake_priority_batch:
            self._busy_since = 0.0
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
