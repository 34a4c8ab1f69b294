"""The health monitor's schedule: when each device is probed, what its answers mean.

Every device is probed at its own period, its first probe spread over the first
period by a hash of its id, so 20,000 devices make an even 2,000 probes a second
rather than a burst. Each probe is scheduled on the phase of the previous one
(due + period, not answer + period), so periods do not drift. A probe that
disagrees with the verdict (a failure while UP, a success while DOWN) is
repeated after ``retry_interval`` instead of a whole period: a death is
confirmed in ``period + (failures_down - 1) * retry_interval + timeout`` at worst.

Deep checks (the config driver's ``healthmonitor``) run at ``deep_period``,
spread the same way, on a small thread pool; their results are folded in on the
loop thread, which alone owns the verdicts. A device that does not answer its
liveness probe gets no deep check (it would only wait out its timeout). A deep
check may also read the device's boot marker (the linux driver: boot id and
sshd start time); a marker other than the one stored means the device
restarted, even if no probe missed it, and the sink starts a reconcile.

Overload: lateness is never a failure. A probe sent more than ``late_after``
seconds after it was due is counted late; when more than 5% of a window's probes
are late the monitor says so (:attr:`Monitor.overloaded`, a metric, one log
line) and keeps every verdict as it was. Changes go to a *sink* in batches
(:class:`workers.health.store.HealthSink` in production, a list in tests).
"""
from __future__ import annotations

import heapq
import logging
import queue
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol

from nfp.workers.health.probes import Answer, Prober, Target
from nfp.workers.health.state import DOWN, STATUSES, Change, DeviceHealth, Observation, UNREACHABLE

LOG = logging.getLogger(__name__)

#: share of late probes in a window that means "overloaded"
LATE_SHARE = 0.05
#: seconds per overload window
WINDOW = 10.0


@dataclass
class DeviceSpec:
    """One device to watch, as the store reads it."""

    device_id: str
    target: Target
    period: float
    nf_ids: tuple[str, ...] = ()
    #: what a deep check needs (opaque to the monitor); None: no deep check
    deep: Any = None
    status: str = "Unknown"
    reason: str = ""
    #: wall seconds of the stored verdict's last change (None: unknown)
    changed_at: Optional[float] = None
    #: the boot marker stored for the device (None: never read)
    boot_id: Optional[str] = None


class Sink(Protocol):
    """Where verdict changes and contact times go."""

    def write_changes(self, changes: list[Change], specs: dict[str, DeviceSpec]) -> None: ...

    def write_contacts(self, contacts: dict[str, float]) -> None: ...

    def write_boots(self, boots: dict[str, tuple[str, bool]], specs: dict[str, DeviceSpec]) -> None: ...


@dataclass
class _Watched:
    spec: DeviceSpec
    health: DeviceHealth
    due: float = 0.0
    token: int = 0
    deep_token: int = 0
    deep_due: float = 0.0
    deep_running: bool = False
    boot_id: Optional[str] = None


@dataclass
class Stats:
    """Counters since start; :meth:`Monitor.snapshot` turns them into a report."""

    checks: int = 0
    failures: int = 0
    late: int = 0
    deep_checks: int = 0
    send_retries: int = 0
    window_start: float = 0.0
    window_checks: int = 0
    window_late: int = 0
    max_lag: float = 0.0
    periods_on_time: int = 0
    periods: int = 0
    lags: list = field(default_factory=list)


class Monitor:
    """Schedules probes and deep checks and keeps each device's verdict.

    Parameters:
        conf(HealthConf): the ``health`` section.
        sink(Sink): takes changes (every ``flush_interval``) and contact times.
        deep_check(callable): ``(spec) -> (ok, reason)``, blocking; None: no deep checks.
        wall(callable): wall-clock seconds for timestamps (monotonic time schedules).
    """

    def __init__(self, conf, sink: Sink, deep_check: Optional[Callable[[DeviceSpec], tuple]] = None,
                 wall: Callable[[], float] = time.time):
        self.conf = conf
        self.sink = sink
        self.deep_check = deep_check if conf.deep_period > 0 else None
        self.wall = wall
        self.prober = Prober(self._on_answer, conf.timeout)
        self.watched: dict[str, _Watched] = {}
        self._heap: list[tuple[float, int, str, str]] = []  # (due, token, kind, device id)
        self._tokens = 0
        self._changes: list[Change] = []
        self._contacts: dict[str, float] = {}
        #: device id -> (new boot marker, restarted) not yet written
        self._boots: dict[str, tuple[str, bool]] = {}
        self._deep_done: queue.SimpleQueue = queue.SimpleQueue()
        self._pool = ThreadPoolExecutor(conf.deep_threads, thread_name_prefix="nfp-deep-check") \
            if self.deep_check else None
        now = time.monotonic()
        self._next_flush = now + conf.flush_interval
        self._next_contacts = now + conf.contact_write_interval
        self.stats = Stats(window_start=now)
        self.overloaded = False

    # -- the device list -------------------------------------------------------------
    def set_devices(self, specs: list[DeviceSpec]) -> None:
        """Watch exactly ``specs``: new devices are scheduled within one period,
        gone ones forgotten, changed addresses or periods take effect at once."""
        now = time.monotonic()
        wanted = {s.device_id: s for s in specs}
        for device_id in [d for d in self.watched if d not in wanted]:
            del self.watched[device_id]  # its heap entries die with their token
        for device_id, spec in wanted.items():
            current = self.watched.get(device_id)
            if current is not None:
                moved = (current.spec.target, current.spec.period) != (spec.target, spec.period)
                current.spec = spec
                if moved:
                    self._schedule(current, now + _spread(device_id, spec.period))
                continue
            health = DeviceHealth(device_id, spec.status if spec.status in STATUSES else "Unknown",
                                  spec.reason, spec.changed_at)
            watched = self.watched[device_id] = _Watched(spec, health, boot_id=spec.boot_id)
            self._schedule(watched, now + _spread(device_id, spec.period))
            if self.deep_check and spec.deep is not None:
                self._tokens += 1
                watched.deep_token = self._tokens
                watched.deep_due = now + _spread(device_id[::-1], self.conf.deep_period)
                heapq.heappush(self._heap, (watched.deep_due, watched.deep_token, "deep", device_id))

    def _schedule(self, watched: _Watched, due: float) -> None:
        self._tokens += 1
        watched.token, watched.due = self._tokens, due
        heapq.heappush(self._heap, (due, watched.token, "live", watched.spec.device_id))

    # -- the loop -----------------------------------------------------------------------
    def run_once(self, max_wait: float = 0.05) -> None:
        """Send what is due, wait briefly for answers, fold deep results in, flush."""
        now = time.monotonic()
        self._send_due(now)
        wait = max_wait
        if self._heap:
            wait = min(wait, max(0.0, self._heap[0][0] - time.monotonic()))
        self.prober.poll(wait)
        while not self._deep_done.empty():
            self._fold_deep(*self._deep_done.get())
        now = time.monotonic()
        self._check_window(now)
        if now >= self._next_flush:
            self._next_flush = now + self.conf.flush_interval
            self.flush()
        if now >= self._next_contacts:
            self._next_contacts = now + self.conf.contact_write_interval
            self._write_contacts()

    def _send_due(self, now: float) -> None:
        heap, limit = self._heap, self.conf.max_in_flight
        while heap and heap[0][0] <= now:
            if self.prober.in_flight >= limit:
                return  # the rest waits; lateness shows up in the stats, not as failures
            due, token, kind, device_id = heapq.heappop(heap)
            watched = self.watched.get(device_id)
            if watched is None or token != (watched.deep_token if kind == "deep" else watched.token):
                continue
            if kind == "deep":
                self._start_deep(watched, now)
                continue
            lag = now - due
            if not self.prober.send(watched.spec.target):
                # no buffer or descriptor: nothing is known about the device; try again shortly
                self.stats.send_retries += 1
                heapq.heappush(heap, (now + 0.05, token, kind, device_id))
                return
            self._count_send(lag)

    def _count_send(self, lag: float) -> None:
        stats = self.stats
        stats.checks += 1
        stats.window_checks += 1
        stats.periods += 1
        stats.max_lag = max(stats.max_lag, lag)
        if lag > self.conf.late_after:
            stats.late += 1
            stats.window_late += 1
        else:
            stats.periods_on_time += 1
        if len(stats.lags) < 100_000:
            stats.lags.append(lag)

    def _on_answer(self, answer: Answer) -> None:
        watched = self.watched.get(answer.target.device_id)
        if watched is None:
            return
        if not answer.ok:
            self.stats.failures += 1
        health = watched.health
        self._record(health.observe(Observation(answer.ok, answer.reason, answer.reachable), self.wall(),
                                    self.conf.failures_down, self.conf.successes_up), watched)
        if health.last_contact is not None:
            self._contacts[health.device_id] = health.last_contact
        # keep the phase; a probe that disagreed with the verdict is repeated soon
        now = time.monotonic()
        due = watched.due + watched.spec.period
        if health.unsettled:
            due = min(due, now + self.conf.retry_interval)
        self._schedule(watched, max(due, now))

    def _start_deep(self, watched: _Watched, now: float) -> None:
        watched.deep_due = now + self.conf.deep_period
        heapq.heappush(self._heap, (watched.deep_due, watched.deep_token, "deep", watched.spec.device_id))
        if watched.deep_running or watched.health.status == UNREACHABLE:
            return
        watched.deep_running = True
        self.stats.deep_checks += 1
        self._pool.submit(self._run_deep, watched.spec)

    def _run_deep(self, spec: DeviceSpec) -> None:
        """``deep_check`` answers ``(ok, reason)`` or ``(ok, reason, boot marker)``."""
        boot_id = None
        try:
            ok, reason, *rest = self.deep_check(spec)
            boot_id = rest[0] if rest else None
        except Exception as exc:  # a driver bug is this device's failed check, not the monitor's end
            ok, reason = False, f"deep check raised {exc.__class__.__name__}"
        self._deep_done.put((spec.device_id, ok, reason, boot_id))

    def _fold_deep(self, device_id: str, ok: bool, reason: str, boot_id: Optional[str]) -> None:
        watched = self.watched.get(device_id)
        if watched is None:
            return
        watched.deep_running = False
        if ok and boot_id and boot_id != watched.boot_id:
            restarted = watched.boot_id is not None
            if restarted:
                LOG.warning("device %s (NF %s) restarted (its boot marker changed); its NFs are reconciled",
                            device_id, ", ".join(watched.spec.nf_ids) or "none")
            watched.boot_id = boot_id
            self._boots[device_id] = (boot_id, restarted or self._boots.get(device_id, ("", False))[1])
        self._record(watched.health.observe(Observation(ok, reason, reachable=True, deep=True), self.wall(),
                                            self.conf.failures_down, self.conf.successes_up), watched)

    def _record(self, change: Optional[Change], watched: _Watched) -> None:
        if change is None:
            return
        self._changes.append(change)
        level = logging.WARNING if change.new in DOWN else logging.INFO
        LOG.log(level, "device %s (NF %s) is %s (was %s)%s; %s", change.device_id,
                ", ".join(watched.spec.nf_ids) or "none", change.new, change.old,
                f": {change.reason}" if change.reason else "",
                "a notification follows" if change.new in DOWN else
                "a notification follows and its NFs are reconciled")

    # -- overload ------------------------------------------------------------------------
    def _check_window(self, now: float) -> None:
        stats = self.stats
        if now - stats.window_start < WINDOW:
            return
        late_share = stats.window_late / stats.window_checks if stats.window_checks else 0.0
        overloaded = late_share > LATE_SHARE
        if overloaded != self.overloaded:
            if overloaded:
                LOG.error("health monitor overloaded: %.0f%% of %d probes in the last %.0f s went out "
                          "more than %.1f s late; verdicts are kept as they are (lateness is not a "
                          "failure); lengthen health.liveness_period or add monitor capacity",
                          late_share * 100, stats.window_checks, WINDOW, self.conf.late_after)
            else:
                LOG.info("health monitor keeps up again: probes go out on time")
        self.overloaded = overloaded
        stats.window_start, stats.window_checks, stats.window_late = now, 0, 0

    # -- output --------------------------------------------------------------------------
    def flush(self) -> None:
        """Hand the changes so far to the sink in one batch; on failure keep them for the next."""
        if self._boots:
            boots, self._boots = self._boots, {}
            try:
                self.sink.write_boots(boots, {d: self.watched[d].spec for d in boots if d in self.watched})
            except Exception as exc:
                LOG.error("writing the boot marker of %d device(s) failed (%s); written with the next "
                          "batch", len(boots), exc.__class__.__name__)
                self._boots = {**boots, **self._boots}
        if not self._changes:
            return
        changes, self._changes = self._changes, []
        try:
            self.sink.write_changes(changes, {c.device_id: self.watched[c.device_id].spec
                                              for c in changes if c.device_id in self.watched})
        except Exception as exc:
            LOG.error("writing %d health change(s) failed (%s); they are kept and written with "
                      "the next batch", len(changes), exc.__class__.__name__)
            self._changes = changes + self._changes

    def _write_contacts(self) -> None:
        if not self._contacts:
            return
        contacts, self._contacts = self._contacts, {}
        try:
            self.sink.write_contacts(contacts)
        except Exception as exc:
            LOG.warning("writing last_contact of %d device(s) failed (%s); retried in %.0f s",
                        len(contacts), exc.__class__.__name__, self.conf.contact_write_interval)
            self._contacts = {**contacts, **self._contacts}

    def snapshot(self) -> dict:
        """Counts for metrics: devices by status, checks, late probes, overload."""
        by_status = {s: 0 for s in STATUSES}
        for watched in self.watched.values():
            by_status[watched.health.status] = by_status.get(watched.health.status, 0) + 1
        stats = self.stats
        return {"devices": by_status, "checks": stats.checks, "failures": stats.failures,
                "late": stats.late, "deep_checks": stats.deep_checks, "overloaded": self.overloaded,
                "max_lag": stats.max_lag, "in_flight": self.prober.in_flight}

    def close(self) -> None:
        """Write what is pending, stop the deep-check threads and close the sockets."""
        self.flush()
        self._write_contacts()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self.prober.close()


def _spread(device_id: str, period: float) -> float:
    """A stable offset in ``[0, period)`` from the device id: an even spread."""
    return (zlib.crc32(device_id.encode()) / 2**32) * period
