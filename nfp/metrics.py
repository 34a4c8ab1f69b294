"""Prometheus ``/metrics`` for the listener process (``metrics.port``; 0 = off).

Values are read at scrape time: the RPC listener's counters and the
supervisor's pid table, network functions by status and open steps by status.
"""
from __future__ import annotations

import logging
import time

from prometheus_client import start_http_server
from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily
from sqlalchemy import func, select

from nfp.db.models import NetworkFunction
from nfp.engine import store
from nfp.rpc.counters import NAMES

LOG = logging.getLogger(__name__)


class NfpCollector:
    """Collects on scrape; a failing database read only drops those series."""

    def __init__(self, service):
        self.service = service

    def collect(self):
        listener, supervisor = self.service.listener, self.service.supervisor
        if listener is not None:
            values = listener.counters.snapshot()
            for name, help_text in NAMES.items():
                family = CounterMetricFamily(f"nfp_rpc_{name}", help_text)
                family.add_metric([], values.get(name, 0))
                yield family
        if supervisor is not None:
            alive = GaugeMetricFamily("nfp_workers_alive", "worker processes alive")
            alive.add_metric([], len(supervisor.pids()))
            yield alive
            restarts = GaugeMetricFamily("nfp_worker_restarts", "consecutive restarts per worker",
                                         labels=["worker"])
            beat = GaugeMetricFamily("nfp_worker_heartbeat_age_seconds",
                                     "seconds since each worker's last heartbeat", labels=["worker"])
            now = time.time()
            for slot in supervisor.slots:
                restarts.add_metric([str(slot.index)], slot.restarts)
                if slot.heartbeat is not None:
                    beat.add_metric([str(slot.index)], max(0.0, now - slot.heartbeat.value))
            yield restarts
            yield beat
            yield from health_families(supervisor)
        try:
            nfs, steps = self._read_db()
        except Exception as exc:
            LOG.warning("metrics: database read failed (%s); the database series are left "
                        "out of this scrape", exc.__class__.__name__)
            return
        family = GaugeMetricFamily("nfp_network_functions", "network functions by status",
                                   labels=["status"])
        for status, count in nfs:
            family.add_metric([status], count)
        yield family
        family = GaugeMetricFamily("nfp_steps", "open engine steps by status", labels=["status"])
        for status, count in steps.items():
            family.add_metric([status], count)
        yield family


    def _read_db(self) -> tuple[list, dict]:
        # Finished steps pile up in the event table until they are purged, so a
        # count over all of it grows with history, and every scrape (often several
        # scrapers, every few seconds) would scan it. Only open steps are counted,
        # through the status index: the cost follows the backlog, and a scrape
        # still shows the current value (no cache to go stale).
        with self.service.sessionmaker() as session:
            nfs = session.execute(select(NetworkFunction.status, func.count())
                                  .group_by(NetworkFunction.status)).all()
            return nfs, store.open_counts(session)


def serve_metrics(service, address: str, port: int) -> None:
    REGISTRY.register(NfpCollector(service))
    start_http_server(port, addr=address)
    LOG.info("Prometheus metrics on http://%s:%d/metrics", address, port)


def health_families(supervisor):
    """The health monitor's gauges, from the counters it reports every 2 s
    (see :mod:`nfp.workers.health.process`): devices by verdict, checks, late
    probes, overload."""
    for companion in getattr(supervisor, "companions", []):
        stats = companion.stats
        if not stats:
            continue
        family = GaugeMetricFamily("nfp_device_health", "watched devices by health verdict",
                                   labels=["health"])
        for status, count in stats["devices"].items():
            family.add_metric([status], count)
        yield family
        for name, key, help_text in (
                ("nfp_health_checks", "checks", "liveness probes sent"),
                ("nfp_health_check_failures", "failures", "liveness probes that failed"),
                ("nfp_health_late_checks", "late", "probes sent later than health.late_after"),
                ("nfp_health_deep_checks", "deep_checks", "deep checks started")):
            counter = CounterMetricFamily(name, help_text)
            counter.add_metric([], stats[key])
            yield counter
        for name, key, help_text in (
                ("nfp_health_overloaded", "overloaded", "1 while the monitor cannot probe on time"),
                ("nfp_health_max_lag_seconds", "max_lag", "largest delay of a probe past its due time"),
                ("nfp_health_in_flight", "in_flight", "probes awaiting an answer")):
            gauge = GaugeMetricFamily(name, help_text)
            gauge.add_metric([], float(stats[key]))
            yield gauge
        heal = stats.get("heal")
        if heal:
            yield from _heal_families(heal)


def _heal_families(heal: dict):
    """Auto-heal: heals started, breaker trips, and the breaker's state (the alarm)."""
    for name, key, help_text in (
            ("nfp_heals", "heals", "device heals started"),
            ("nfp_heal_breaker_trips", "breaker_trips", "times the heal circuit breaker opened")):
        counter = CounterMetricFamily(name, help_text)
        counter.add_metric([], heal[key])
        yield counter
    gauge = GaugeMetricFamily("nfp_heal_breaker_open", "1 while too many devices are DOWN at once to heal")
    gauge.add_metric([], float(heal["breaker_open"]))
    yield gauge

