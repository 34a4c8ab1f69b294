"""nftables firewall NF on a netns device, proven with real packets."""
from __future__ import annotations


import pytest

from nfp.testing.topology import NetnsLab

pytestmark = pytest.mark.integration

WEB = "198.18.1.10"
RULES = {"rules": [
    {"name": "web", "protocol": "tcp", "source_ip_address": "198.18.2.0/24",
     "destination_ip_address": WEB, "destination_port": 80},
    {"name": "ping", "protocol": "icmp", "destination_ip_address": "198.18.1.0/24"},
    {"name": "alt-reject", "protocol": "tcp", "destination_port": 8081, "action": "reject"},
], "default_action": "deny"}


@pytest.fixture
def net(tmp_path, netns_required):
    with NetnsLab(tmp_path) as lab:
        device, target = lab.device()
        web = lab.topo.host("web", lab.provider, WEB)
        for port in (80, 8080, 8081):
            web.serve_http(port)
        client = lab.topo.host("client", lab.consumer, "198.18.2.10")
        yield lab, target, web, client


def test_without_rules_everything_is_forwarded(net):
    lab, target, web, client = net
    assert client.http_get(WEB, 80) == (200, "web")
    assert client.tcp(WEB, 8080) == "open"


def test_allowed_flows_pass_and_denied_flows_are_dropped(net):
    lab, target, web, client = net
    result = lab.apply(target, "firewall", RULES)
    assert result.ok, result.error
    assert client.http_get(WEB, 80) == (200, "web")     # allowed by "web"
    assert client.ping(WEB)                             # allowed by "ping"
    assert client.tcp(WEB, 8080) == "timeout"           # default deny: dropped silently
    assert client.tcp(WEB, 8081) == "refused"           # reject: a TCP reset comes back
    # the other direction has no allow rule
    assert web.tcp("198.18.2.10", 22, timeout=0.5) == "timeout"
    assert result.external_ids["web"].endswith("forward web")


def test_rules_read_back_from_the_kernel(net):
    lab, target, *_ = net
    assert lab.apply(target, "firewall", RULES).ok
    back = lab.config.read_firewall(target, "nf-lab")
    assert back.default_action == "deny"
    assert [(r.name, r.action, r.protocol, r.destination_ip_address, r.destination_port)
            for r in back.rules] == [
        ("web", "allow", "tcp", f"{WEB}/32", "80"),
        ("ping", "allow", "icmp", "198.18.1.0/24", None),
        ("alt-reject", "reject", "tcp", None, "8081")]
    listed = lab.config.list_resources(target, "firewall")
    assert [t["table"] for t in listed] == ["nfp_nflab"]


def test_update_replaces_the_rule_set(net):
    lab, target, web, client = net
    assert lab.apply(target, "firewall", RULES).ok
    updated = {"rules": [{"name": "alt", "protocol": "tcp", "destination_port": 8080}]}
    assert lab.apply(target, "firewall", updated, operation="update").ok
    assert client.tcp(WEB, 8080) == "open"
    assert client.tcp(WEB, 80) == "timeout"
    assert [r.name for r in lab.config.read_firewall(target, "nf-lab").rules] == ["alt"]


@pytest.mark.parametrize("bad_rule, field", [
    ({"name": "x", "source_ip_address": "198.18.2.0/33"}, "resource_data.rules.0.source_ip_address"),
    ({"name": "x", "protocol": "tcp", "destination_port": 70000}, "resource_data.rules.0.destination_port"),
    ({"name": "x", "protocol": "sctp"}, "resource_data.rules.0.protocol"),
])
def test_bad_config_is_rejected_and_the_device_keeps_its_rules(net, bad_rule, field):
    lab, target, web, client = net
    assert lab.apply(target, "firewall", RULES).ok
    before = lab.config.read_firewall(target, "nf-lab")
    result = lab.apply(target, "firewall", {"rules": [bad_rule]}, operation="update")
    assert not result.ok
    assert result.error.startswith(field)
    assert lab.config.read_firewall(target, "nf-lab") == before
    assert client.http_get(WEB, 80) == (200, "web")
    assert client.tcp(WEB, 8080) == "timeout"


def test_delete_removes_the_table(net):
    lab, target, web, client = net
    assert lab.apply(target, "firewall", RULES).ok
    assert lab.apply(target, "firewall", RULES, operation="delete").ok
    assert lab.config.list_resources(target, "firewall") == []
    assert client.tcp(WEB, 8080) == "open"
    # deleting what is not there succeeds (a retried step)
    assert lab.apply(target, "firewall", RULES, operation="delete").ok


def test_two_network_functions_get_separate_tables(net):
    lab, target, *_ = net
    assert lab.apply(target, "firewall", {"rules": [], "default_action": "allow"}, nf_id="nf-a").ok
    assert lab.apply(target, "firewall", RULES, nf_id="nf-b").ok
    assert sorted(t["table"] for t in lab.config.list_resources(target, "firewall")) == ["nfp_nfa", "nfp_nfb"]
