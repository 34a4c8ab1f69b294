"""End to end through the RPC API: a real nfp daemon creates netns devices and configures
nftables and HAProxy on them; real packets prove it."""
from __future__ import annotations

import collections

import pytest

from nfp.drivers.device.netns import NetnsDeviceDriver, iproute, naming
from nfp.testing.topology import Topology

pytestmark = pytest.mark.integration

FLAVOR = "service_vendor=linux,device_type=netns"
WEB = "198.18.1.10"
CONFIG = {"orchestrator": {"device_poll_interval": 0.2}, "device_drivers": {"netns": {}}}


@pytest.fixture
def env(tmp_path, netns_required):
    from nfp.testing.harness import Harness
    with Topology() as topo:
        provider = topo.network("provider", "198.18.1.0/24", gateway_ip="198.18.1.1")
        consumer = topo.network("consumer", "198.18.2.0/24", gateway_ip="198.18.2.1")
        harness = Harness(tmp_path / "nfp", config=CONFIG, workers=2)
        try:
            with harness:
                yield harness, topo, provider, consumer
        finally:
            # devices outlive the daemon by design; a failed test must not leave any
            NetnsDeviceDriver(harness.conf, {}).startup_sweep(known_ids=set())


def _nf(provider, consumer, service_type, elements, name="nf"):
    return {"name": name, "tenant_id": "t1",
            "service_profile": {"id": "p1", "service_type": service_type, "service_flavor": FLAVOR},
            "provider": provider.port("198.18.1.1", "provider"),
            "consumer": consumer.port("198.18.2.1", "consumer"),
            "service_config": {"config": elements}}


def _firewall(*rules):
    return [{"resource": "firewall", "resource_data": {"rules": list(rules)}}]


def _device_namespaces():
    return iproute.list_netns(naming.DEVICE_NETNS_PREFIX)


def test_firewall_nf_create_update_bad_update_delete(env):
    harness, topo, provider, consumer = env
    web = topo.host("web", provider, WEB)
    web.serve_http(80)
    web.serve_http(8080)
    client = topo.host("client", consumer, "198.18.2.10")
    web_rule = {"name": "web", "protocol": "tcp", "destination_port": 80}

    nf = harness.client.create_network_function(_nf(provider, consumer, "firewall", _firewall(web_rule)))
    harness.wait_for_status(nf["id"], "ACTIVE", timeout=60)
    assert client.http_get(WEB, 80) == (200, "web")
    assert client.tcp(WEB, 8080) == "timeout"

    alt_rule = {"name": "alt", "protocol": "tcp", "destination_port": 8080}
    harness.client.call("update_network_function", network_function_id=nf["id"],
                        config={"config": _firewall(web_rule, alt_rule)})
    harness.wait_for_status(nf["id"], "ACTIVE", timeout=60)
    assert client.tcp(WEB, 8080) == "open"

    # invalid for the schema: refused at the API, the NF keeps running as it was
    bad = {"name": "bad", "protocol": "tcp", "source_ip_address": "198.18.2.0/99"}
    with pytest.raises(Exception, match=r"rules\.1\.source_ip_address"):
        harness.client.call("update_network_function", network_function_id=nf["id"],
                            config={"config": _firewall(web_rule, bad)})
    assert harness.client.get_network_function(nf["id"])["status"] == "ACTIVE"

    # valid for the schema, refused by the linux driver before it touches the device
    clash = {"name": "web", "protocol": "udp"}
    harness.client.call("update_network_function", network_function_id=nf["id"],
                        config={"config": _firewall(web_rule, clash)})
    failed = harness.wait_for_status(nf["id"], "ERROR", timeout=60)
    assert "rules.1.name" in failed["status_description"]
    # either way the device kept its previous working config
    assert client.http_get(WEB, 80) == (200, "web")
    assert client.tcp(WEB, 8080) == "open"

    harness.client.delete_network_function(nf["id"])
    harness.wait_gone(nf["id"], timeout=60)
    assert _device_namespaces() == []
    assert client.tcp(WEB, 8080) in ("unreachable", "timeout")


def test_bad_config_on_create_fails_naming_the_field(env):
    harness, topo, provider, consumer = env
    with pytest.raises(Exception, match=r"rules\.0\.destination_port"):
        harness.client.create_network_function(_nf(provider, consumer, "firewall", _firewall(
            {"name": "x", "protocol": "tcp", "destination_port": 99999})))
    # icmp with a port passes the schema; the driver refuses it and the NF goes to ERROR
    nf = harness.client.create_network_function(_nf(provider, consumer, "firewall", _firewall(
        {"name": "x", "protocol": "icmp", "destination_port": 80})))
    failed = harness.wait_for_status(nf["id"], "ERROR", timeout=60)
    assert "rules.0.destination_port" in failed["status_description"]
    harness.client.delete_network_function(nf["id"])
    harness.wait_gone(nf["id"], timeout=60)
    assert _device_namespaces() == []


def test_loadbalancer_members_follow_policy_target_notifications(env):
    harness, topo, provider, consumer = env
    members = [topo.host(f"m{i}", provider, f"198.18.1.{10 + i}") for i in range(3)]
    for host in members:
        host.serve_http(8080)
    client = topo.host("client", consumer, "198.18.2.10")
    lb = {"vip_address": "198.18.2.100", "protocol_port": 80,
          "members": [{"id": "pt-m0", "address": members[0].ip, "protocol_port": 8080},
                      {"id": "pt-m1", "address": members[1].ip, "protocol_port": 8080}]}
    nf = harness.client.create_network_function(
        _nf(provider, consumer, "loadbalancer", [{"resource": "loadbalancer", "resource_data": lb}]))
    harness.wait_for_status(nf["id"], "ACTIVE", timeout=60)

    def spread():
        return collections.Counter(client.http_get("198.18.2.100", 80)[1] for _ in range(30))

    assert set(spread()) == {"m0", "m1"}
    harness.client.call("policy_target_added_notification", network_function_id=nf["id"],
                        policy_target={"id": "pt-m2", "ip_address": members[2].ip, "port": 8080})
    harness.wait_for_status(nf["id"], "ACTIVE", timeout=60)
    assert set(spread()) == {"m0", "m1", "m2"}
    harness.client.call("policy_target_removed_notification", network_function_id=nf["id"],
                        policy_target={"id": "pt-m0"})
    harness.wait_for_status(nf["id"], "ACTIVE", timeout=60)
    assert set(spread()) == {"m1", "m2"}

    harness.client.delete_network_function(nf["id"])
    harness.wait_gone(nf["id"], timeout=60)
    assert _device_namespaces() == []
