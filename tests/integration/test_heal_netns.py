"""Auto-heal and management-link loss (seed 004) on a real daemon with netns devices.

A netns device killed outright (its processes and namespace gone) is re-created by
auto-heal, and its firewall NF passes (and drops) the same packets again. A device
whose management veth is cut for longer than the health timeout keeps forwarding
exactly as before: its NF stays ACTIVE and degraded, an update requested during the
outage waits as a durable step, and when the link returns nfp reconciles the device
first and then applies the update. Everything is awaited by polling with generous
timeouts; no duration is asserted."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from nfp.drivers.device.netns import NetnsDeviceDriver, iproute, naming

from nfp.testing.topology import Topology

pytestmark = pytest.mark.integration

FLAVOR = "service_vendor=linux,device_type=netns"
WEB = "198.18.1.10"
CONFIG = {"orchestrator": {"device_poll_interval": 0.2}, "device_drivers": {"netns": {}},
          "health": {"liveness_period": 1, "retry_interval": 0.5, "timeout": 1, "failures_down": 3,
                     "refresh_interval": 1, "deep_period": 0, "flush_interval": 0.5,
                     "contact_write_interval": 2},
          "heal": {"after": 2, "cooldown": 5, "max_backoff": 20},
          "reconcile": {"interval": 0}}
WEB_RULE = {"name": "web", "protocol": "tcp", "destination_port": 80}
ALT_RULE = {"name": "alt", "protocol": "tcp", "destination_port": 8080}


@pytest.fixture
def env(tmp_path, netns_required):
    from nfp.testing.harness import Harness
    with Topology() as topo:
        provider = topo.network("provider", "198.18.1.0/24", gateway_ip="198.18.1.1")
        consumer = topo.network("consumer", "198.18.2.0/24", gateway_ip="198.18.2.1")
        web = topo.host("web", provider, WEB)
        web.serve_http(80)
        web.serve_http(8080)
        client = topo.host("client", consumer, "198.18.2.10")
        harness = Harness(tmp_path / "nfp", config=CONFIG, workers=2)
        try:
            with harness:
                yield harness, provider, consumer, client
        finally:
            NetnsDeviceDriver(harness.conf, {}).startup_sweep(known_ids=set())


def _nfp(harness, *args):
    out = subprocess.run([sys.executable, "-m", "nfp.cli.main", "--config", str(harness.config_file), *args],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode in (0, 1), out.stderr
    return json.loads(out.stdout)


def _until(what, predicate, timeout=120.0):
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _health(harness):
    rows = _nfp(harness, "health", "list", "--json")
    return rows[0]["health"] if rows else None


def _create(harness, provider, consumer, *rules):
    nf = harness.client.create_network_function({
        "name": "fw", "tenant_id": "t1",
        "service_profile": {"id": "p1", "service_type": "firewall", "service_flavor": FLAVOR},
        "provider": provider.port("198.18.1.1", "provider"),
        "consumer": consumer.port("198.18.2.1", "consumer"),
        "service_config": {"config": [{"resource": "firewall", "resource_data": {"rules": list(rules)}}]}})
    harness.wait_for_status(nf["id"], "ACTIVE", timeout=90)
    return nf["id"]


def _netns():
    return iproute.list_netns(naming.DEVICE_NETNS_PREFIX)[0]


def _forwarding(client):
    return client.tcp(WEB, 80, timeout=1.0), client.tcp(WEB, 8080, timeout=1.0)


def test_a_killed_device_is_re_created_and_passes_packets_again(env):
    harness, provider, consumer, client = env
    _create(harness, provider, consumer, WEB_RULE)
    assert _forwarding(client) == ("open", "timeout")
    _until("HEALTHY", lambda: _health(harness) == "HEALTHY")
    netns = _netns()
    iproute.kill_pids(iproute.netns_pids(netns))
    subprocess.run(["ip", "netns", "delete", netns], check=True)
    _until("the device DOWN", lambda: _health(harness) in ("UNHEALTHY", "UNREACHABLE"))
    assert client.tcp(WEB, 80) != "open"  # the data plane died with the device
    _until("the device re-created and HEALTHY", lambda: _health(harness) == "HEALTHY", timeout=180)
    # the heal re-plugged the ports and re-pushed the rules: the same packets pass and drop
    _until("packets passing again", lambda: _forwarding(client) == ("open", "timeout"), timeout=120)
    assert _netns() == netns


def test_management_link_loss_keeps_forwarding_and_converges_afterwards(env):
    harness, provider, consumer, client = env
    nf_id = _create(harness, provider, consumer, WEB_RULE)
    _until("HEALTHY", lambda: _health(harness) == "HEALTHY")
    netns = _netns()
    subprocess.run(["ip", "-n", netns, "link", "set", naming.MGMT_IFNAME, "down"], check=True)
    try:
        _until("UNREACHABLE", lambda: _health(harness) == "UNREACHABLE")
        nf = _until("the NF degraded", lambda: (lambda n: n if n["degraded"] else None)(
            harness.client.get_network_function(nf_id)))
        assert nf["status"] == "ACTIVE" and "UNREACHABLE" in nf["degraded_reason"]
        harness.client.call("update_network_function", network_function_id=nf_id,
                            config={"config": [{"resource": "firewall", "resource_data": {
                                "rules": [WEB_RULE, ALT_RULE]}}]})
        # longer than the health timeout, and past heal.after: the device is alive, so the
        # heal leaves it alone, and the firewall keeps passing and dropping the same packets
        end = time.time() + 10
        while time.time() < end:
            assert _forwarding(client) == ("open", "timeout")
            assert harness.client.get_network_function(nf_id)["status"] == "ACTIVE"
            time.sleep(0.5)
    finally:
        subprocess.run(["ip", "-n", netns, "link", "set", naming.MGMT_IFNAME, "up"], check=True)
    _until("the update applied after the link returned",
           lambda: _forwarding(client) == ("open", "open"), timeout=120)
    nf = harness.client.get_network_function(nf_id)
    assert nf["status"] == "ACTIVE" and not nf["degraded"]
    audit = _nfp(harness, "audit", "reconcile", "--nf", nf_id, "--json")
    assert "device_up" in [run["trigger"] for run in audit]
    assert _nfp(harness, "reconcile", nf_id, "--dry-run", "--json")["result"] == "in_sync"
    assert _netns() == netns  # never re-created
