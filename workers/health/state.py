"""A device's health verdict with hysteresis. Pure: no I/O, no clock of its own.

Two kinds of observation feed it: the liveness probe (is the management address
answering?) and the deep check (does the driver's own ``healthmonitor`` succeed?).
A device goes DOWN after ``failures_down`` consecutive failures of either kind and
comes back UP after ``successes_up`` consecutive liveness successes with no
failing deep check. Before its first verdict a device is ``Unknown``; one success
makes it HEALTHY at once, so a new device does not wait for hysteresis to be seen.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

HEALTHY = "HEALTHY"
UNHEALTHY = "UNHEALTHY"
UNREACHABLE = "UNREACHABLE"
UNKNOWN = "Unknown"
DOWN = frozenset({UNHEALTHY, UNREACHABLE})
STATUSES = (HEALTHY, UNHEALTHY, UNREACHABLE, UNKNOWN)


@dataclass
class Observation:
    """One probe result. ``reachable`` says whether the host answered at all (a
    refused TCP connect answers: the host is up, its service is not)."""

    ok: bool
    reason: str = ""
    reachable: bool = False
    deep: bool = False


@dataclass
class Change:
    """A verdict that changed: what the monitor persists and notifies."""

    device_id: str
    old: str
    new: str
    reason: str
    at: float
    last_contact: Optional[float]


@dataclass
class DeviceHealth:
    """The running verdict of one device (see module docstring)."""

    device_id: str
    status: str = UNKNOWN
    reason: str = ""
    changed_at: Optional[float] = None
    last_contact: Optional[float] = None
    live_failures: int = 0
    live_successes: int = 0
    deep_failures: int = 0
    last_failure: Optional[Observation] = None

    def observe(self, obs: Observation, now: float, failures_down: int,
                successes_up: int) -> Optional[Change]:
        """Fold ``obs`` in; return the :class:`Change` if the verdict changed."""
        if obs.ok or obs.reachable:
            self.last_contact = now
        if obs.deep:
            self.deep_failures = 0 if obs.ok else self.deep_failures + 1
        elif obs.ok:
            self.live_failures, self.live_successes = 0, self.live_successes + 1
        else:
            self.live_failures, self.live_successes = self.live_failures + 1, 0
        if not obs.ok:
            self.last_failure = obs
        return self._decide(now, failures_down, successes_up)

    def _decide(self, now: float, failures_down: int, successes_up: int) -> Optional[Change]:
        new, reason = self.status, self.reason
        if self.live_failures >= failures_down:
            failure = self.last_failure
            new = UNHEALTHY if failure is not None and failure.reachable else UNREACHABLE
            reason = failure.reason if failure else "no answer"
        elif self.deep_failures >= failures_down:
            new, reason = UNHEALTHY, self.last_failure.reason if self.last_failure else "deep check failed"
        elif self.deep_failures == 0 and self.live_successes >= (1 if self.status == UNKNOWN else successes_up):
            new, reason = HEALTHY, ""
        if new == self.status:
            return None
        change = Change(self.device_id, self.status, new, reason, now, self.last_contact)
        self.status, self.reason, self.changed_at = new, reason, now
        return change

    @property
    def unsettled(self) -> bool:
        """The last probe disagreed with the verdict (a failure while UP, a success
        while DOWN): probe again soon, so a change is confirmed in seconds."""
        if self.status in DOWN:
            return self.live_successes > 0
        return self.live_failures > 0
