"""Assurance end to end on a real daemon, RabbitMQ and netns devices: a device whose
sshd is killed, or whose management link is cut, is reported DOWN, a stock
oslo.messaging notification listener hears it, and ``nfp health list --json``
shows it; nftables rules removed or added behind nfp's back are reported by
``nfp reconcile --dry-run --json``, repaired (or pruned) by ``nfp reconcile``
and recorded in ``nfp audit reconcile``. Everything is awaited by polling with
generous timeouts; no duration is asserted."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
from sqlalchemy import select

from nfp.drivers.device.netns import NetnsDeviceDriver, naming
from nfp.testing.topology import Topology

pytestmark = pytest.mark.integration

FLAVOR = "service_vendor=linux,device_type=netns"
CONFIG = {"orchestrator": {"device_poll_interval": 0.2}, "device_drivers": {"netns": {}},
          "health": {"liveness_period": 2, "retry_interval": 1, "timeout": 1, "failures_down": 3,
                     "refresh_interval": 1, "deep_period": 5, "flush_interval": 0.5,
                     "contact_write_interval": 2},
          "reconcile": {"interval": 0}}
RULES = [{"name": "web", "protocol": "tcp", "destination_port": 80},
         {"name": "alt", "protocol": "tcp", "destination_port": 8080}]


@pytest.fixture
def env(tmp_path, netns_required, rabbit_url):
    from nfp.testing.harness import Harness
    with Topology() as topo:
        provider = topo.network("provider", "198.18.1.0/24", gateway_ip="198.18.1.1")
        consumer = topo.network("consumer", "198.18.2.0/24", gateway_ip="198.18.2.1")
        harness = Harness(tmp_path / "nfp", config=CONFIG, workers=2,
                          transport_url=rabbit_url)
        try:
            with harness:
                yield harness, provider, consumer
        finally:
            NetnsDeviceDriver(harness.conf, {}).startup_sweep(known_ids=set())


@pytest.fixture
def notifications(rabbit_url):
    """A stock oslo.messaging notification listener on ``notifications.info``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        om = pytest.importorskip("oslo_messaging")
        from oslo_config import cfg
        from oslo_messaging._metrics import client as metrics
        from oslo_messaging._tracing import client as tracing
    oconf = cfg.ConfigOpts()
    oconf.register_opts(tracing.oslo_messaging_tracing, group="oslo_messaging_tracing")
    oconf.register_opts(metrics.oslo_messaging_metrics, group="oslo_messaging_metrics")
    received, lock = [], threading.Lock()

    class Endpoint:
        def info(self, ctxt, publisher_id, event_type, payload, metadata):
            with lock:
                received.append((event_type, payload))

    transport = om.get_notification_transport(oconf, url=rabbit_url.replace("amqp://", "rabbit://", 1))
    listener = om.get_notification_listener(
        transport, [om.Target(topic="notifications", exchange="openstack")], [Endpoint()], executor="threading")
    listener.start()
    yield received
    listener.stop()
    listener.wait()
    transport.cleanup()


def _nfp(harness, *args) -> str:
    out = subprocess.run([sys.executable, "-m", "nfp.cli.main", "--config", str(harness.config_file), *args],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode in (0, 1), out.stderr
    return out.stdout


def _until(what, predicate, timeout=90.0):
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _device(harness):
    rows = json.loads(_nfp(harness, "health", "list", "--json"))
    return rows[0] if rows else None


def _create(harness, provider, consumer, name):
    nf = harness.client.create_network_function({
        "name": name, "tenant_id": "t1",
        "service_profile": {"id": "p1", "service_type": "firewall", "service_flavor": FLAVOR},
        "provider": provider.port("198.18.1.1", "provider"),
        "consumer": consumer.port("198.18.2.1", "consumer"),
        "service_config": {"config": [{"resource": "firewall", "resource_data": {"rules": RULES}}]}})
    harness.wait_for_status(nf["id"], "ACTIVE", timeout=90)
    return nf["id"]


def test_killed_sshd_and_cut_link_are_reported_down(env, notifications):
    harness, provider, consumer = env
    nf_id = _create(harness, provider, consumer, "hm")
    _until("HEALTHY", lambda: (_device(harness) or {}).get("health") == "HEALTHY")
    device = _device(harness)
    netns = naming.device_netns(device["device_id"]) if hasattr(naming, "device_netns") else None
    netns = netns or subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()[0]
    for pid in subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True).stdout.split():
        subprocess.run(["kill", "-9", pid])
    down = _until("DOWN after sshd was killed",
                  lambda: (lambda d: d if d and d["health"] in ("UNHEALTHY", "UNREACHABLE") else None)(_device(harness)))
    assert down["network_function_ids"] == [nf_id] and down["reason"]
    _until("the down notification", lambda: any(
        e == "nfp.device.health.down" and p["device_id"] == device["device_id"]
        and p["network_function_ids"] == [nf_id] for e, p in list(notifications)))
    onap = json.loads(_nfp(harness, "health", "check", device["device_id"], "--json"))
    assert onap["identifier"] == device["device_id"] and onap["state"] == "unhealthy"
    rpc = harness.client.call("get_device_health", device_id=device["device_id"])
    assert rpc[0]["state"] == "unhealthy"
    subprocess.run(["ip", "-n", netns, "link", "set", naming.MGMT_IFNAME, "down"], check=True)
    _until("UNREACHABLE after the management link was cut",
           lambda: (_device(harness) or {}).get("health") == "UNREACHABLE")


def test_drift_on_nftables_is_reported_repaired_and_pruned(env):
    harness, provider, consumer = env
    nf_id = _create(harness, provider, consumer, "rc")
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    netns = next(line.split()[0] for line in netns.splitlines() if line.startswith(naming.DEVICE_NETNS_PREFIX))
    listing = json.loads(subprocess.run(["ip", "netns", "exec", netns, "nft", "-j", "-a", "list", "ruleset"],
                                        capture_output=True, text=True, check=True).stdout)
    rules = [r["rule"] for r in listing["nftables"] if "rule" in r and "alt" in json.dumps(r["rule"])]
    rule = rules[0]
    subprocess.run(["ip", "netns", "exec", netns, "nft", "delete", "rule", rule["family"], rule["table"],
                    rule["chain"], "handle", str(rule["handle"])], check=True)
    dry = json.loads(_nfp(harness, "reconcile", nf_id, "--dry-run", "--json"))
    assert [m["name"] for m in dry["missing"]] == ["alt"], dry
    assert set(dry) >= {"missing", "extra", "changed", "actions"}
    fixed = json.loads(_nfp(harness, "reconcile", nf_id, "--json"))
    assert fixed["result"] == "repaired", fixed
    audit = json.loads(_nfp(harness, "audit", "reconcile", "--nf", nf_id, "--json"))
    assert [a["result"] for a in audit[:2]] == ["repaired", "drift"]
    again = json.loads(_nfp(harness, "reconcile", nf_id, "--dry-run", "--json"))
    assert again["result"] == "in_sync", again


def _boot_id(harness, device_id):
    from nfp.db.engine import make_engine
    from nfp.db.models import NetworkFunctionDevice
    engine = make_engine(harness.conf.database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(NetworkFunctionDevice.boot_id, NetworkFunctionDevice.extra)
                                .where(NetworkFunctionDevice.id == device_id)).one()
    finally:
        engine.dispose()


def test_a_restarted_device_is_detected_by_its_boot_marker_and_reconciled(env):
    from nfp.drivers.device.netns import iproute, sshd
    harness, provider, consumer = env
    nf_id = _create(harness, provider, consumer, "rs")
    device_id = _until("HEALTHY", lambda: (lambda d: d["device_id"] if d and d["health"] == "HEALTHY" else None)(
        _device(harness)))
    first, extra = _until("the first boot marker", lambda: (lambda row: row if row[0] else None)(
        _boot_id(harness, device_id)))
    # the device's sshd restarts between two probes: no probe need miss it
    netns, workdir = naming.device_netns(device_id), Path(extra["workdir"])
    iproute.kill_pids([int((workdir / "sshd.pid").read_text())])
    sshd.start(netns, workdir)
    audit = _until("a device_restart reconcile", lambda: [r for r in json.loads(_nfp(
        harness, "audit", "reconcile", "--nf", nf_id, "--json")) if r["trigger"] == "device_restart"])
    assert audit[0]["result"] == "in_sync", audit  # the namespace kept its rules
    assert _boot_id(harness, device_id)[0] != first
