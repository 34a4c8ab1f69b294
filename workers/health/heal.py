"""Auto-heal decisions: which DOWN devices to heal now, and when to stop healing at all.

Run by the health monitor process, which alone knows every verdict. A device
that has been DOWN (UNHEALTHY or UNREACHABLE) for ``heal.after`` seconds gets a
``heal`` flow (:data:`nfp.flows.HEAL`), whose steps run on the workers. The same
device is healed again only after a per-device back-off: ``heal.cooldown``
doubling per attempt up to ``heal.max_backoff`` (:func:`nfp.backoff.delay`);
the count resets once the device has been HEALTHY for a cooldown. The count and
the time of the last heal are the device row's ``heal_attempts`` and
``healed_at``, read back when the monitor process starts, so a restarted
monitor keeps each device's back-off instead of healing it again at once.

The fleet circuit breaker: when more than ``heal.breaker_share`` of the watched
devices (fleets of at least ``heal.breaker_min_devices``) are DOWN at once, the
likely fault is nfp's own network, not the devices, and re-creating them all
would only make it worse. No heal starts while the breaker is open; opening it
raises an alarm (an ERROR log line, ``nfp_heal_breaker_open`` in ``/metrics``
and an ``nfp.device.heal.breaker_open`` notification); closing it says so too.

:func:`decide` is pure (fake clock in tests); :class:`Healer` adds the database
(the steps and the device's heal counters) and the notifications.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

from nfp.workers.health.state import DOWN, HEALTHY
from nfp.workers.health.store import epoch
from sqlalchemy import select, update

from nfp import backoff
from nfp.db.models import Event, EventStatus, NetworkFunction, NetworkFunctionDevice
from nfp.engine import store
from nfp.flows import HEAL, NFStatus

LOG = logging.getLogger(__name__)
STEP = HEAL.first.name


@dataclass(frozen=True)
class Seen:
    """One watched device as the healer needs it: its verdict, since when (wall
    seconds), and its NFs (the heal runs under the first one's key)."""

    device_id: str
    status: str
    since: Optional[float]
    nf_ids: tuple[str, ...] = ()


@dataclass
class _Device:
    attempts: int = 0
    next_at: float = 0.0
    last_heal: float = 0.0


@dataclass
class HealState:
    """What the healer remembers between ticks."""

    devices: dict[str, _Device] = field(default_factory=dict)
    breaker_open: bool = False
    heals: int = 0
    breaker_trips: int = 0
    #: devices whose back-off ended (HEALTHY for a cooldown) since the last tick
    reset: list[str] = field(default_factory=list)


@dataclass
class Decision:
    """One tick's verdict: devices to heal (with the attempt number), and the breaker."""

    heal: list[tuple[Seen, int]]
    breaker_open: bool
    breaker_changed: bool
    down: int
    watched: int


def decide(seen: Iterable[Seen], now: float, conf, state: HealState) -> Decision:
    """Which devices to heal at ``now`` under the ``heal`` section ``conf``; updates ``state``."""
    seen = list(seen)
    down = [s for s in seen if s.status in DOWN]
    share = len(down) / len(seen) if seen else 0.0
    tripped = len(seen) >= conf.breaker_min_devices and share > conf.breaker_share
    changed = tripped != state.breaker_open
    state.breaker_open = tripped
    if changed and tripped:
        state.breaker_trips += 1
    for s in seen:  # a device HEALTHY for a whole cooldown starts its back-off afresh
        memo = state.devices.get(s.device_id)
        if memo and s.status == HEALTHY and now - memo.last_heal >= conf.cooldown:
            del state.devices[s.device_id]
            state.reset.append(s.device_id)
    gone = set(state.devices) - {s.device_id for s in seen}
    for device_id in gone:
        del state.devices[device_id]
    out: list[tuple[Seen, int]] = []
    if not tripped:
        for s in down:
            if not s.nf_ids or s.since is None or now - s.since < conf.after:
                continue
            memo = state.devices.setdefault(s.device_id, _Device())
            if now < memo.next_at:
                continue
            memo.attempts += 1
            memo.last_heal = now
            memo.next_at = now + backoff.delay(memo.attempts, conf.cooldown, conf.max_backoff)
            state.heals += 1
            out.append((s, memo.attempts))
    return Decision(out, tripped, changed, len(down), len(seen))


class Healer:
    """Starts heal flows for :func:`decide`'s picks and raises the breaker alarm.

    Parameters:
        conf(NfpConfig): the ``heal`` section.
        sessionmaker: the monitor process's session factory.
        on_refs(callable): hands committed steps to the workers.
        on_notify(callable): ``(event_type, payload)`` published as oslo notifications.
    """

    def __init__(self, conf, sessionmaker, on_refs: Callable[[list], None],
                 on_notify: Callable[[str, dict], None]):
        self.conf, self.sessionmaker = conf, sessionmaker
        self.on_refs, self.on_notify = on_refs, on_notify
        self.state = HealState()
        self._restored = sessionmaker is None

    def restore(self) -> None:
        """Each device's back-off as its row recorded it (see module docstring)."""
        with self.sessionmaker() as session:
            rows = session.execute(select(NetworkFunctionDevice.id, NetworkFunctionDevice.heal_attempts,
                                          NetworkFunctionDevice.healed_at)
                                   .where(NetworkFunctionDevice.heal_attempts > 0,
                                          NetworkFunctionDevice.healed_at.is_not(None))).all()
        for device_id, attempts, healed_at in rows:
            last = epoch(healed_at)
            self.state.devices[device_id] = _Device(attempts, last + backoff.delay(
                attempts, self.conf.heal.cooldown, self.conf.heal.max_backoff), last)
        if rows:
            LOG.info("heal back-off of %d device(s) restored from the database", len(rows))
        self._restored = True

    def tick(self, seen: Iterable[Seen], now: float) -> int:
        """Decide and start heals; return how many started."""
        if not self.conf.heal.enabled:
            return 0
        if not self._restored:
            self.restore()
        decision = decide(seen, now, self.conf.heal, self.state)
        if decision.breaker_changed:
            self._alarm(decision)
        if self.state.reset:
            self._forget(self.state.reset)
        if not decision.heal:
            return 0
        with self.sessionmaker.begin() as session:
            refs = self._enqueue(session, decision.heal, now)
        if refs:
            self.on_refs(refs)
        return len(refs)

    def _enqueue(self, session, picks: list[tuple[Seen, int]], now: float) -> list:
        running = session.scalars(select(Event.payload).where(
            Event.type.in_([STEP, "device.heal_configure"]), Event.status.in_(EventStatus.OPEN)))
        busy = {p.get("device_id") for p in running if isinstance(p, dict)}
        nf_ids = [nf for s, _ in picks for nf in s.nf_ids]
        nfs = {nf.id: nf for nf in session.scalars(select(NetworkFunction).where(NetworkFunction.id.in_(nf_ids)))}
        items, started = [], []
        for seen, attempt in picks:
            if seen.device_id in busy:
                LOG.info("device %s: a heal is still running; no second one starts", seen.device_id)
                continue
            nf = next((nfs[n] for n in seen.nf_ids if n in nfs and nfs[n].status != NFStatus.PENDING_DELETE), None)
            if nf is None:
                continue
            items.append((HEAL.start(nf.id, {"device_id": seen.device_id, "attempt": attempt}), nf.generation))
            started.append((seen, attempt, nf.id))
        if not items:
            return []
        at = dt.datetime.fromtimestamp(now, dt.timezone.utc).replace(tzinfo=None)
        for seen, attempt, nf_id in started:
            session.execute(update(NetworkFunctionDevice).where(NetworkFunctionDevice.id == seen.device_id)
                            .values(heal_attempts=attempt, healed_at=at))
            memo = self.state.devices.get(seen.device_id)
            LOG.warning("device %s (NF %s) has been %s for %.0f s: heal attempt %d started; the next "
                        "one, if needed, not before %.0f s", seen.device_id, ", ".join(seen.nf_ids),
                        seen.status, now - seen.since if seen.since is not None else 0.0, attempt,
                        (memo.next_at - now) if memo else self.conf.heal.cooldown)
        return store.add_many(session, items)

    def _forget(self, device_ids: list[str]) -> None:
        """Back-off over: a restarted monitor must not restore it."""
        if self.sessionmaker is not None:
            with self.sessionmaker.begin() as session:
                session.execute(update(NetworkFunctionDevice).where(NetworkFunctionDevice.id.in_(device_ids))
                                .values(heal_attempts=0))
        self.state.reset = []

    def _alarm(self, decision: Decision) -> None:
        payload = {"down": decision.down, "watched": decision.watched,
                   "breaker_share": self.conf.heal.breaker_share}
        if decision.breaker_open:
            LOG.error("heal circuit breaker OPEN: %d of %d devices are DOWN at once (over %.0f%%); the "
                      "fault is likely nfp's own management network, so no device is healed until "
                      "fewer are down", decision.down, decision.watched, self.conf.heal.breaker_share * 100)
            self.on_notify("nfp.device.heal.breaker_open", payload)
        else:
            LOG.warning("heal circuit breaker closed: %d of %d devices DOWN; healing resumes",
                        decision.down, decision.watched)
            self.on_notify("nfp.device.heal.breaker_closed", payload)

    def snapshot(self) -> dict:
        """Counters for ``/metrics``."""
        return {"breaker_open": self.state.breaker_open, "heals": self.state.heals,
                "breaker_trips": self.state.breaker_trips}
