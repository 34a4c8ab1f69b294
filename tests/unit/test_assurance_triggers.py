"""Assurance state that must outlive the monitor process, and the reconcile triggers,
through the real flows on the in-process engine:

- a deep check that reads a new boot marker means the device restarted: a
  ``device_restart`` reconcile runs, and a restarted monitor does not take the
  stored marker for a restart;
- a new stored dictionary version (``nfp dictionary load``) reconciles the
  vendor's NFs once, even across a monitor restart;
- a device's heal back-off is restored from its row after a restart;
- ``nfp health list --json`` and ``nfp status`` show the degraded flag and reason.
"""
from __future__ import annotations

import dataclasses
import json
import socket
import time

import pytest
from click.testing import CliRunner

from nfp import config as nfp_config
from nfp.api.endpoints import OrchestratorEndpoints
from nfp.cli.main import cli
from nfp.db.models import NetworkFunctionDevice
from nfp.drivers.config.dictionary import catalog
from nfp.drivers.config.dictionary.loader import load_shipped
from nfp.rpc.types import IncomingRequest
from nfp.testing.engine import InProcessEngine
from nfp.workers.health.heal import Healer, Seen
from nfp.workers.health.monitor import Monitor
from nfp.workers.health.probes import Target
from nfp.workers.health.state import Change
from nfp.workers.health.store import HealthSink, load_specs
from nfp.workers.lifecycle.app import ORCHESTRATOR
from nfp.workers.lifecycle.services import sync_static_inventory
from nfp.workers.reconcile.schedule import ReconcileScheduler, runs

DEVICE = "memory-appliance-1"
RULES = [{"name": "web", "protocol": "tcp", "destination_port": 80, "action": "allow"}]


@pytest.fixture
def env(tmp_path):
    conf = nfp_config.load(None, {"state_dir": str(tmp_path), "reconcile": {"interval": 0},
                                  "health": {"liveness_period": 0.2, "timeout": 0.5, "deep_period": 0.1,
                                             "flush_interval": 0.05}}, environ={})
    engine = InProcessEngine(ORCHESTRATOR, conf=conf)
    with engine.sessionmaker.begin() as s:
        sync_static_inventory(conf, s)
    endpoints = OrchestratorEndpoints(conf, engine.sessionmaker, engine.submit)
    out = endpoints.handle_mutations([IncomingRequest(
        method="create_network_function", msg_id="m", unique_id="u1", args={"network_function": {
            "name": "fw", "tenant_id": "t1",
            "service_config": {"config": [{"resource": "firewall", "resource_data": {"rules": RULES}}]},
            "service_profile": {"service_type": "firewall",
                                "service_flavor": "service_vendor=memory,device_type=static"}}})])
    nf_id = out[0].result["id"]
    engine.join()
    yield conf, engine, nf_id
    engine.close()


def _triggers(engine, nf_id):
    with engine.sessionmaker() as s:
        return [r.trigger for r in reversed(runs(s, nf_id))]


@pytest.fixture
def listening():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    yield server
    server.close()


def _spec(engine, conf):
    """The device as the monitor loads it (the inventory entry gets a management address)."""
    with engine.sessionmaker.begin() as s:
        s.get(NetworkFunctionDevice, DEVICE).mgmt_ip_address = "127.0.0.1"
    return next(s for s in load_specs(engine.sessionmaker, conf) if s.device_id == DEVICE)


def _watch(conf, engine, port, markers):
    """A monitor of the NF's device (probed on ``port``) whose deep check reads ``markers``."""
    sink = HealthSink(engine.sessionmaker, on_change=lambda *a: None, on_refs=engine.submit)
    seen = []

    def deep(spec):
        seen.append(spec.device_id)
        return True, "", markers[min(len(seen), len(markers)) - 1]
    monitor = Monitor(conf.health, sink, deep_check=deep)
    spec = _spec(engine, conf)
    monitor.set_devices([dataclasses.replace(spec, target=Target(DEVICE, "127.0.0.1", port), period=0.2)])
    return monitor, seen


def _run_until(monitor, predicate, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        monitor.run_once(0.02)
        monitor.flush()
        if predicate():
            return
    raise AssertionError("timed out")


def _boot_id(engine):
    with engine.sessionmaker() as s:
        return s.get(NetworkFunctionDevice, DEVICE).boot_id


def test_a_new_boot_marker_starts_a_device_restart_reconcile_once(env, listening):
    conf, engine, nf_id = env
    port = listening.getsockname()[1]
    monitor, seen = _watch(conf, engine, port, ["boot-A", "boot-A", "boot-B"])
    try:
        _run_until(monitor, lambda: len(seen) >= 2 and _boot_id(engine) == "boot-A")
        engine.join()
        assert _triggers(engine, nf_id) == []  # the first marker seen is no restart
        _run_until(monitor, lambda: _boot_id(engine) == "boot-B")
        engine.join()
        assert _triggers(engine, nf_id) == ["device_restart"]
    finally:
        monitor.close()
    # a restarted monitor starts from the stored marker: the same one is no restart
    monitor, seen = _watch(conf, engine, port, ["boot-B"])
    try:
        _run_until(monitor, lambda: len(seen) >= 3)
        engine.join()
        assert _triggers(engine, nf_id) == ["device_restart"]
    finally:
        monitor.close()


def test_a_new_dictionary_version_reconciles_the_vendors_nfs_once(env):
    conf, engine, nf_id = env
    scheduler = ReconcileScheduler(conf, engine.sessionmaker, on_refs=engine.submit)
    assert scheduler.tick(now=0.0) == 0  # no stored dictionary yet
    catalog.store(engine.sessionmaker, load_shipped("vyos"), vendor="memory")  # `nfp dictionary load`
    assert scheduler.tick(now=100.0) == 1
    engine.join()
    assert _triggers(engine, nf_id) == ["dictionary_update"]
    assert scheduler.tick(now=200.0) == 0
    restarted = ReconcileScheduler(conf, engine.sessionmaker, on_refs=engine.submit)
    assert restarted.tick(now=0.0) == 0  # recorded: a restart does not repeat it
    catalog.store(engine.sessionmaker, load_shipped("pfsense"), vendor="memory")  # a changed dictionary
    assert restarted.tick(now=100.0) == 1
    engine.join()
    assert _triggers(engine, nf_id) == ["dictionary_update", "dictionary_update"]


def test_heal_back_off_survives_a_monitor_restart(env):
    conf, engine, nf_id = env
    down = [Seen(DEVICE, "UNHEALTHY", 0.0, (nf_id,))]
    healer = Healer(conf, engine.sessionmaker, on_refs=engine.submit, on_notify=lambda *a: None)
    assert healer.tick(down, 100.0) == 1
    engine.join()
    cooldown = conf.heal.cooldown
    restarted = Healer(conf, engine.sessionmaker, on_refs=engine.submit, on_notify=lambda *a: None)
    assert restarted.tick(down, 101.0) == 0  # the back-off was read back from the device row
    assert restarted.tick(down, 100.0 + cooldown) == 1
    engine.join()
    with engine.sessionmaker() as s:
        assert s.get(NetworkFunctionDevice, DEVICE).heal_attempts == 2
    # HEALTHY for a whole back-off: the count is reset in the row too
    restarted.tick([Seen(DEVICE, "HEALTHY", 0.0, (nf_id,))], 100.0 + 4 * cooldown)
    with engine.sessionmaker() as s:
        assert s.get(NetworkFunctionDevice, DEVICE).heal_attempts == 0
    fresh = Healer(conf, engine.sessionmaker, on_refs=engine.submit, on_notify=lambda *a: None)
    assert fresh.tick(down, 100.0 + 4 * cooldown) == 1


def test_health_list_and_status_show_the_degraded_flag(env, tmp_path):
    conf, engine, nf_id = env
    spec = _spec(engine, conf)
    HealthSink(engine.sessionmaker, on_change=lambda *a: None).write_changes(
        [Change(DEVICE, "HEALTHY", "UNREACHABLE", "no ICMP echo reply in 1 s", 1.0, None)], {DEVICE: spec})
    args = ["--state-dir", str(conf.state_path), "--database-url", conf.database_url]
    listed = CliRunner().invoke(cli, [*args, "health", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    row = next(r for r in json.loads(listed.output) if r["device_id"] == DEVICE)
    assert row["health"] == "UNREACHABLE" and row["degraded"] is True
    assert "UNREACHABLE" in row["degraded_reason"] and "no ICMP echo reply" in row["degraded_reason"]
    status = CliRunner().invoke(cli, [*args, "status"])
    assert status.exit_code == 0, status.output
    degraded = json.loads(status.output)["degraded"]
    assert [d["network_function_id"] for d in degraded] == [nf_id] and degraded[0]["status"] == "ACTIVE"
