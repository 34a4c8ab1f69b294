"""The health monitor process: a companion of the workers under the supervisor.

One process watches every device of every running NF (:mod:`.monitor` on one
event loop, deep checks on a few threads), starts the scheduled drift
reconciles (:class:`nfp.workers.reconcile.schedule.ReconcileScheduler`) and
heals devices that stay DOWN (:class:`nfp.workers.health.heal.Healer`). It
sends what the listener must publish or route over its pipe: health
notifications, reconcile steps for the workers, and its counters for
``/metrics``. Signal handlers only set a flag; the loop stops, writes the
pending changes and closes its sockets, drivers and database engine.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Optional

from nfp.drivers.config.base import DeviceTarget
from nfp.engine.companion import Companion, CompanionArgs, Outbox, handle_signals, serve

LOG = logging.getLogger(__name__)

#: seconds between counter reports to the listener (for /metrics)
STATS_INTERVAL = 2.0
#: seconds between auto-heal decisions
HEAL_INTERVAL = 1.0


def companions(conf) -> list[Companion]:
    """The orchestrator's companion processes: the health monitor, unless ``health.enabled`` is off."""
    return [Companion("health-monitor", main)] if conf.health.enabled else []


class HealthProcess:
    """Boot, loop and close of the monitor process (see module docstring)."""

    def __init__(self, args: CompanionArgs):
        self.args = args
        self.conf = args.conf
        self.stopping = False
        self._send = Outbox(args.outbox).send

    def boot(self) -> None:
        from nfp.workers.health.heal import Healer
        from nfp.workers.health.monitor import Monitor
        from nfp.workers.health.store import HealthSink
        from nfp.workers.lifecycle.services import Services
        from nfp.workers.reconcile.schedule import ReconcileScheduler
        # the services own this process's database engine and the configurator's drivers
        self.services = Services(self.conf)
        try:
            self.services.start()
        except Exception:  # boot() is retried: leave nothing open behind
            self.services.stop()
            raise
        sessionmaker = self.services.sessionmaker
        self.sink = HealthSink(sessionmaker, on_change=lambda t, p: self._send(("notify", t, p)),
                               on_refs=lambda refs: self._send(("dispatch", refs)),
                               reconcile_on_up=self.conf.reconcile.on_device_up,
                               reconcile_on_restart=self.conf.reconcile.on_device_restart)
        self.monitor = Monitor(self.conf.health, self.sink, deep_check=self._deep_check)
        self.healer = Healer(self.conf, sessionmaker, on_refs=lambda refs: self._send(("dispatch", refs)),
                             on_notify=lambda t, p: self._send(("notify", t, p)))
        self.started = time.time()
        self.reconciles = ReconcileScheduler(self.conf, sessionmaker,
                                             on_refs=lambda refs: self._send(("dispatch", refs)))

    def run(self) -> None:
        handle_signals(self._on_term)
        ppid = os.getppid()
        next_refresh = next_stats = next_heal = 0.0
        while not self.stopping:
            now = time.monotonic()
            self.args.heartbeat.value = time.time()
            if now >= next_refresh:
                next_refresh = now + self.conf.health.refresh_interval
                self._refresh()
                self._tick_reconciles()
            self.monitor.run_once(0.05)
            if now >= next_heal:
                next_heal = now + HEAL_INTERVAL
                self._tick_heal()
            if now >= next_stats:
                next_stats = now + STATS_INTERVAL
                self._send(("stats", {**self.monitor.snapshot(), "heal": self.healer.snapshot()}))
            if os.getppid() != ppid:
                LOG.error("health monitor: the listener is gone; exiting")
                return

    def close(self) -> None:
        """Write pending changes, close sockets and threads, then the services."""
        try:
            self.monitor.close()
        finally:
            self.services.stop()

    def _refresh(self) -> None:
        from nfp.workers.health.store import load_specs
        try:
            specs = load_specs(self.services.sessionmaker, self.conf)
        except Exception as exc:
            LOG.warning("health monitor: reading the device list failed (%s); probing the devices "
                        "it had and retrying in %.0f s", exc.__class__.__name__, self.conf.health.refresh_interval)
            return
        before = len(self.monitor.watched)
        self.monitor.set_devices(specs)
        if len(specs) != before:
            LOG.info("health monitor watches %d device(s) (was %d)", len(specs), before)

    def _tick_reconciles(self) -> None:
        try:
            self.reconciles.tick()
        except Exception as exc:
            LOG.warning("scheduling reconciles failed (%s); retrying in %.0f s", exc.__class__.__name__,
                        self.conf.health.refresh_interval)

    def _tick_heal(self) -> None:
        from nfp.workers.health.heal import Seen
        # a verdict read from the database at start has no time of change here: count
        # its DOWN time from when this process started watching
        seen = [Seen(w.spec.device_id, w.health.status, w.health.changed_at or self.started, w.spec.nf_ids)
                for w in self.monitor.watched.values()]
        try:
            self.healer.tick(seen, self.monitor.wall())
        except Exception as exc:
            LOG.warning("starting heals failed (%s); the next decision is in %.0f s",
                        exc.__class__.__name__, HEAL_INTERVAL)

    def _deep_check(self, spec) -> tuple[bool, str, Optional[str]]:
        """The config driver's own ``healthmonitor`` through the configurator, and the
        boot marker it read, if its driver reads one."""
        deep = spec.deep
        where = DeviceTarget(id=spec.device_id, mgmt_ip_address=deep["address"],
                             service_vendor=deep["vendor"], credentials_ref=deep["credentials_ref"],
                             extra=deep["extra"])
        element = {"resource": "healthmonitor", "resource_data": {
            "vmid": spec.device_id, "mgmt_ip": deep["address"], "periodicity": "forever"}}
        outcome = self.services.configurator.configure("create", "generic", [element], where, deep["nf_id"])
        boot_id = next((r.data["boot_id"] for r in outcome.results if r.data.get("boot_id")), None)
        return outcome.ok, "" if outcome.ok else f"deep check: {outcome.error}", boot_id

    def _on_term(self) -> None:
        self.stopping = True


def main(args: CompanionArgs) -> None:
    """Process entry point (multiprocessing target)."""
    serve("health", args.conf, HealthProcess(args), args.heartbeat)
