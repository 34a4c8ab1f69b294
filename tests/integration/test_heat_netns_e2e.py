"""Heat service configs end to end: a real nfp daemon gets upstream-shaped Heat
templates in ``service_config``, translates them and configures nftables and
HAProxy on netns devices; real packets prove it. An untranslatable template
ends in ERROR, naming the type, with no device created."""
from __future__ import annotations

import collections
import json
import subprocess

import pytest

from nfp.drivers.config.linux import nft
from nfp.drivers.device.netns import NetnsDeviceDriver, iproute, naming
from nfp.testing.topology import Topology

pytestmark = pytest.mark.integration

FLAVOR = "service_vendor=linux,device_type=netns"
WEB = "198.18.1.10"
VIP = "198.18.2.100"
CONFIG = {"orchestrator": {"device_poll_interval": 0.2}, "device_drivers": {"netns": {}}}

FW_TEMPLATE = {
    "heat_template_version": "2013-05-23",
    "description": "Configuration for Firewall service",
    "resources": {
        "Firewall": {"type": "OS::Neutron::Firewall", "properties": {
            "admin_state_up": True, "name": "FWaaS", "description": "Firewall Resource",
            "firewall_policy_id": {"get_resource": "Firewall_Policy"}}},
        "Firewall_Policy": {"type": "OS::Neutron::FirewallPolicy", "properties": {
            "name": "FW_policy", "audited": False,
            "firewall_rules": [{"get_resource": "web"}]}},
        "web": {"type": "OS::Neutron::FirewallRule", "properties": {
            "name": "fw-tcp-rule", "protocol": "tcp", "destination_port": "80",
            "action": "allow", "enabled": True}},
    }}


def _lb_template(members):
    resources = {
        "monitor": {"type": "OS::Neutron::LBaaS::HealthMonitor", "properties": {
            "delay": 3, "type": "HTTP", "timeout": 3, "max_retries": 3,
            "pool": {"get_resource": "pool"}}},
        "pool": {"type": "OS::Neutron::LBaaS::Pool", "properties": {
            "lb_algorithm": "ROUND_ROBIN", "protocol": "HTTP",
            "listener": {"get_resource": "listener"}}},
        "listener": {"type": "OS::Neutron::LBaaS::Listener", "properties": {
            "loadbalancer": {"get_resource": "loadbalancer"}, "protocol": "HTTP",
            "protocol_port": {"get_param": "lb_port"}}},
        "loadbalancer": {"type": "OS::Neutron::LBaaS::LoadBalancer", "properties": {
            "vip_subnet": {"get_param": "Subnet"}, "provider": "haproxy",
            "vip_address": {"get_param": "vip_ip"},
            "description": {"get_param": "service_chain_metadata"}}}}
    for index, address in enumerate(members):
        resources[f"member{index}"] = {"type": "OS::Neutron::LBaaS::PoolMember", "properties": {
            "pool": {"get_resource": "pool"}, "address": address,
            "protocol_port": {"get_param": "app_port"}, "subnet": {"get_param": "Subnet"}}}
    return {"heat_template_version": "2015-10-15",
            "parameters": {"lb_port": {"type": "number", "default": 80},
                           "app_port": {"type": "number", "default": 80},
                           "Subnet": {"type": "string"}, "vip_ip": {"type": "string"},
                           "service_chain_metadata": {"type": "string"}},
            "resources": resources}


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


def _nf(provider, consumer, service_type, template, params=None):
    """An upstream-shaped create: the template as the node's config string, the
    chain instance's config_param_values as a JSON string."""
    return {"name": "heat-nf", "tenant_id": "t1",
            "service_profile": {"id": "p1", "service_type": service_type, "service_flavor": FLAVOR},
            "service_chain_instance": {"id": "sci-1",
                                       "config_param_values": json.dumps(params or {})},
            "provider": provider.port("198.18.1.1", "provider"),
            "consumer": consumer.port("198.18.2.1", "consumer"),
            "service_config": json.dumps(template)}


def _device_namespaces():
    return iproute.list_netns(naming.DEVICE_NETNS_PREFIX)


def _delete(harness, nf_id):
    harness.client.delete_network_function(nf_id)
    harness.wait_gone(nf_id, timeout=60)
    assert _device_namespaces() == []


def test_heat_firewall_template_becomes_an_nftables_rule(env):
    harness, topo, provider, consumer = env
    web = topo.host("web", provider, WEB)
    web.serve_http(80)
    web.serve_http(8080)
    client = topo.host("client", consumer, "198.18.2.10")

    nf = harness.client.create_network_function(_nf(provider, consumer, "FIREWALL", FW_TEMPLATE))
    harness.wait_for_status(nf["id"], "ACTIVE", timeout=60)
    assert client.http_get(WEB, 80) == (200, "web")     # the FirewallRule allows tcp/80
    assert client.tcp(WEB, 8080) == "timeout"           # FWaaS denies the rest: dropped

    [namespace] = _device_namespaces()
    out = subprocess.run(["ip", "netns", "exec", namespace, "nft", "-j", "list", "table",
                          nft.FAMILY, nft.table_name(nf["id"])],
                         capture_output=True, text=True, check=True, timeout=30)
    table = nft.parse_table(out.stdout)
    assert table.default_action == "deny"
    assert [(r.name, r.action, r.protocol, r.destination_port) for r in table.rules] == [
        ("web", "allow", "tcp", "80")]

    details = harness.client.call("get_network_function_details", network_function_id=nf["id"])
    assert details["translated_config"] == [{"resource": "firewall", "resource_data": {
        "default_action": "deny", "rules": [{"name": "web", "action": "allow", "protocol": "tcp",
                                             "enabled": True, "destination_port": "80",
                                             "description": "fw-tcp-rule"}]}}]
    _delete(harness, nf["id"])


def test_heat_lbaas_v2_template_balances_over_the_members(env):
    harness, topo, provider, consumer = env
    members = [topo.host(f"m{i}", provider, f"198.18.1.{10 + i}") for i in range(2)]
    for host in members:
        host.serve_http(8080)
    client = topo.host("client", consumer, "198.18.2.10")
    template = _lb_template([h.ip for h in members])

    nf = harness.client.create_network_function(_nf(
        provider, consumer, "LOADBALANCERV2", template, {"vip_ip": VIP, "app_port": 8080}))
    harness.wait_for_status(nf["id"], "ACTIVE", timeout=60)
    counts = collections.Counter(client.http_get(VIP, 80)[1] for _ in range(20))
    assert counts == {"m0": 10, "m1": 10}  # ROUND_ROBIN over both members through the VIP
    _delete(harness, nf["id"])


def test_untranslatable_template_sets_error_naming_the_type(env):
    harness, _, provider, consumer = env
    template = json.loads(json.dumps(FW_TEMPLATE))
    template["resources"]["fw_rule_x"] = {"type": "OS::Nova::Server", "properties": {}}
    nf = harness.client.create_network_function(_nf(provider, consumer, "FIREWALL", template))
    failed = harness.wait_for_status(nf["id"], "ERROR", timeout=60)
    assert "resource fw_rule_x: type OS::Nova::Server cannot be translated" in \
        failed["status_description"]
    assert _device_namespaces() == []  # no device was ever created for it
    harness.client.delete_network_function(nf["id"])
    harness.wait_gone(nf["id"], timeout=60)
