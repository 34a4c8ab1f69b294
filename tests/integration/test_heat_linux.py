"""Translated Heat templates through the linux config driver on a netns device
(no orchestrator): an AWS-format LBaaS v1 template on HAProxy, a YAML FWaaS
template with a reject rule, and a VPN the driver refuses out loud."""
from __future__ import annotations

import collections
import json

import pytest

from nfp.desired import desired_config
from nfp.testing.topology import NetnsLab

pytestmark = pytest.mark.integration

VIP = "198.18.2.100"
LB_V1 = """{
  "AWSTemplateFormatVersion": "2010-09-09",
  "Parameters": {"Subnet": {"Type": "String"}, "vip_ip": {"Type": "String"},
                 "service_chain_metadata": {"Type": "String"}},
  "Resources": {
    "HttpHM": {"Type": "OS::Neutron::HealthMonitor", "Properties": {
      "delay": 2, "max_retries": 3, "timeout": 2, "type": "HTTP", "url_path": "/"}},
    "HaproxyPool": {"Type": "OS::Neutron::Pool", "Properties": {
      "lb_method": "ROUND_ROBIN", "monitors": [{"Ref": "HttpHM"}], "protocol": "HTTP",
      "subnet_id": {"Ref": "Subnet"},
      "vip": {"subnet": {"Ref": "Subnet"}, "address": {"Ref": "vip_ip"},
              "description": {"Ref": "service_chain_metadata"}, "protocol_port": 80}}},
    "HaproxyLb": {"Type": "OS::Neutron::LoadBalancer", "Properties": {
      "pool_id": {"Ref": "HaproxyPool"}, "protocol_port": 8080}},
    "m0": {"Type": "OS::Neutron::PoolMember", "Properties": {
      "pool_id": {"Ref": "HaproxyPool"}, "address": "198.18.1.10"}},
    "m1": {"Type": "OS::Neutron::PoolMember", "Properties": {
      "pool_id": {"Ref": "HaproxyPool"}, "address": "198.18.1.11"}}
  }
}"""
FW_YAML = """\
heat_template_version: 2013-05-23
resources:
  fw: {type: "OS::Neutron::Firewall", properties: {firewall_policy_id: {get_resource: policy}}}
  policy:
    type: OS::Neutron::FirewallPolicy
    properties: {firewall_rules: [{get_resource: web}, {get_resource: alt}]}
  web: {type: "OS::Neutron::FirewallRule",
        properties: {protocol: tcp, destination_port: "80", action: allow}}
  alt: {type: "OS::Neutron::FirewallRule",
        properties: {protocol: tcp, destination_port: "8081", action: reject}}
"""
SPEC = {"config_param_values": json.dumps({"vip_ip": VIP}),
        "ports": [{"port_classification": "provider", "cidr": NetnsLab.PROVIDER_CIDR}]}


@pytest.fixture
def lab(tmp_path, netns_required):
    with NetnsLab(tmp_path) as lab:
        yield lab


def _apply_all(lab, target, elements):
    for element in elements:
        result = lab.apply(target, element["resource"], element["resource_data"])
        assert result.ok, result.error


def test_lbaas_v1_aws_template_on_haproxy(lab):
    _, target = lab.device("lb")
    for i in range(2):
        lab.topo.host(f"m{i}", lab.provider, f"198.18.1.{10 + i}").serve_http(8080)
    client = lab.topo.host("client", lab.consumer, "198.18.2.10")
    _apply_all(lab, target, desired_config(LB_V1, SPEC))
    counts = collections.Counter(client.http_get(VIP, 80)[1] for _ in range(20))
    assert counts == {"m0": 10, "m1": 10}


def test_fwaas_yaml_template_allows_rejects_and_drops(lab):
    _, target = lab.device()
    web = lab.topo.host("web", lab.provider, "198.18.1.10")
    for port in (80, 8080, 8081):
        web.serve_http(port)
    client = lab.topo.host("client", lab.consumer, "198.18.2.10")
    _apply_all(lab, target, desired_config(FW_YAML, SPEC))
    assert client.http_get(web.ip, 80) == (200, "web")
    assert client.tcp(web.ip, 8081) == "refused"    # the reject rule answers with a reset
    assert client.tcp(web.ip, 8080) == "timeout"    # FWaaS default: dropped


def test_a_vpn_is_refused_by_the_linux_driver_not_skipped(lab):
    _, target = lab.device()
    vpn = {"connections": [{"name": "site1", "peer_address": "198.19.0.1",
                            "peer_cidrs": ["198.19.10.0/24"], "psk_ref": "vpn-site1"}]}
    result = lab.apply(target, "vpn", vpn)
    assert not result.ok
    assert "'vpn' is not supported by the linux driver" in result.error
