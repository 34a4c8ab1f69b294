"""The health monitor: the verdict's hysteresis (pure), and real probes on loopback
(TCP connect to a listening and a closed port, ICMP echo) through the monitor's
schedule into a sink. Verdicts are awaited by polling, never timed."""
from __future__ import annotations

import socket
import time

import pytest

from nfp.config import HealthConf
from nfp.workers.health.monitor import DeviceSpec, Monitor
from nfp.workers.health.probes import Target
from nfp.workers.health.state import (HEALTHY, UNHEALTHY, UNKNOWN, UNREACHABLE, DeviceHealth,
                                      Observation)
from nfp.workers.health.store import notification, probe_target


def test_hysteresis_needs_n_failures_down_and_m_successes_up():
    dev = DeviceHealth("d1")
    assert dev.observe(Observation(True), 1.0, 3, 2).new == HEALTHY  # first verdict at once
    assert dev.observe(Observation(False, "x"), 2.0, 3, 2) is None
    assert dev.unsettled
    assert dev.observe(Observation(False, "x"), 3.0, 3, 2) is None
    change = dev.observe(Observation(False, "no reply"), 4.0, 3, 2)
    assert (change.old, change.new, change.reason) == (HEALTHY, UNREACHABLE, "no reply")
    assert dev.observe(Observation(True), 5.0, 3, 2) is None
    assert dev.observe(Observation(True), 6.0, 3, 2).new == HEALTHY
    assert dev.last_contact == 6.0


def test_refused_is_unhealthy_and_a_failing_deep_check_too():
    dev = DeviceHealth("d1", status=HEALTHY)
    for _ in range(2):
        change = dev.observe(Observation(False, "refused", reachable=True), 1.0, 2, 1)
    assert change.new == UNHEALTHY
    dev = DeviceHealth("d2", status=HEALTHY)
    dev.observe(Observation(False, "ssh failed", reachable=True, deep=True), 1.0, 2, 1)
    assert dev.observe(Observation(False, "ssh failed", reachable=True, deep=True), 2.0, 2, 1).new == UNHEALTHY
    assert dev.observe(Observation(True), 3.0, 2, 1) is None  # liveness alone does not clear it
    assert dev.observe(Observation(True, deep=True), 4.0, 2, 1).new == HEALTHY


def test_probe_target_prefers_a_named_port():
    assert probe_target("d", "10.0.0.1", {"ssh_port": 2222}, "auto") == Target("d", "10.0.0.1", 2222)
    assert probe_target("d", "10.0.0.1", {}, "auto") == Target("d", "10.0.0.1", None)
    assert probe_target("d", "10.0.0.1", {"ssh_port": 22, "health_probe": "icmp"}, "auto").port is None


def test_notification_names_device_and_nfs():
    from nfp.workers.health.state import Change
    event, payload = notification(Change("d1", HEALTHY, UNREACHABLE, "no reply", 0.0, None),
                                  DeviceSpec("d1", Target("d1", "127.0.0.1"), 1.0, ("nf-1",)))
    assert event == "nfp.device.health.down"
    assert payload["device_id"] == "d1" and payload["network_function_ids"] == ["nf-1"]


class ListSink:
    def __init__(self):
        self.changes, self.contacts = [], {}

    def write_changes(self, changes, specs):
        self.changes += changes

    def write_contacts(self, contacts):
        self.contacts.update(contacts)


def _until(monitor, predicate, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        monitor.run_once(0.02)
        monitor.flush()
        if predicate():
            return True
    return False


@pytest.fixture
def listening():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    yield server
    server.close()


def test_monitor_reports_up_down_and_up_again(listening):
    port = listening.getsockname()[1]
    conf = HealthConf(liveness_period=0.2, retry_interval=0.1, timeout=0.5, failures_down=2,
                      successes_up=2, deep_period=0, flush_interval=0.05, contact_write_interval=0.2)
    sink = ListSink()
    monitor = Monitor(conf, sink)
    try:
        monitor.set_devices([DeviceSpec("tcp-up", Target("tcp-up", "127.0.0.1", port), 0.2),
                             DeviceSpec("icmp-up", Target("icmp-up", "127.0.0.1"), 0.2)])
        health = lambda d: monitor.watched[d].health.status  # noqa: E731
        assert _until(monitor, lambda: health("tcp-up") == HEALTHY and health("icmp-up") == HEALTHY)
        listening.close()  # the service dies; the host still answers (refused)
        assert _until(monitor, lambda: health("tcp-up") == UNHEALTHY)
        assert health("icmp-up") == HEALTHY
        assert [c.new for c in sink.changes if c.device_id == "tcp-up"] == [HEALTHY, UNHEALTHY]
        assert _until(monitor, lambda: "icmp-up" in sink.contacts)
        snap = monitor.snapshot()
        assert snap["devices"][UNHEALTHY] == 1 and snap["checks"] > 4 and not snap["overloaded"]
    finally:
        monitor.close()


def test_an_unroutable_device_is_unreachable():
    conf = HealthConf(liveness_period=0.2, retry_interval=0.1, timeout=0.3, failures_down=2,
                      deep_period=0, flush_interval=0.05)
    monitor = Monitor(conf, ListSink())
    try:
        # TEST-NET-2 never answers: either no route (an immediate error) or silence (a timeout)
        monitor.set_devices([DeviceSpec("gone", Target("gone", "198.51.100.77"), 0.2)])
        assert _until(monitor, lambda: monitor.watched["gone"].health.status == UNREACHABLE)
        assert monitor.watched["gone"].health.last_contact is None
    finally:
        monitor.close()


def test_deep_checks_are_folded_in(listening):
    port = listening.getsockname()[1]
    conf = HealthConf(liveness_period=0.2, timeout=0.5, failures_down=2, deep_period=0.1,
                      flush_interval=0.05)
    results = iter([(True, "")] + [(False, "deep check: ssh failed")] * 100)
    monitor = Monitor(conf, ListSink(), deep_check=lambda spec: next(results))
    try:
        monitor.set_devices([DeviceSpec("dev", Target("dev", "127.0.0.1", port), 0.2, deep={})])
        assert _until(monitor, lambda: monitor.watched["dev"].health.status == UNHEALTHY)
        assert monitor.watched["dev"].health.reason == "deep check: ssh failed"
        assert monitor.watched["dev"].health.status != UNKNOWN
    finally:
        monitor.close()
