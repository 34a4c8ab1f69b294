"""Golden vectors for the Heat translator: template in, nfp elements out.

The templates have the shapes upstream GBP's node drivers send (fw.template,
haproxy_lbaasv2.template, the AWS-format LBaaS v1 lb.template, vpn.template),
written here with 198.18.0.0/15 addresses."""
from __future__ import annotations

import json

import pytest

from nfp.heat.translate import HeatError, expand, translate
from nfp.resources import parse_resource, parse_service_config

FW_HOT = {
    "heat_template_version": "2013-05-23",
    "description": "Configuration for Firewall service",
    "resources": {
        "Firewall": {"type": "OS::Neutron::Firewall", "properties": {
            "admin_state_up": True, "firewall_policy_id": {"get_resource": "Firewall_Policy"},
            "name": "FWaaS", "description": "Firewall Resource"}},
        "Firewall_Policy": {"type": "OS::Neutron::FirewallPolicy", "properties": {
            "description": "policy", "audited": False, "name": "FW_policy",
            "firewall_rules": [{"get_resource": "Rule_1"}, {"get_resource": "Rule_2"}]}},
        "Rule_1": {"type": "OS::Neutron::FirewallRule", "properties": {
            "protocol": "tcp", "name": "fw-tcp-rule", "enabled": True, "destination_port": "80",
            "action": "allow", "description": "fw config to allow tcp"}},
        "Rule_2": {"type": "OS::Neutron::FirewallRule", "properties": {
            "protocol": "icmp", "name": "fw-icmp-rule", "enabled": True, "action": "allow"}},
    }}
FW_ELEMENTS = [{"resource": "firewall", "resource_data": {"default_action": "deny", "rules": [
    {"name": "Rule_1", "action": "allow", "protocol": "tcp", "enabled": True,
     "destination_port": "80", "description": "fw config to allow tcp"},
    {"name": "Rule_2", "action": "allow", "protocol": "icmp", "enabled": True,
     "description": "fw-icmp-rule"}]}}]

FW_YAML = """\
heat_template_version: 2013-05-23
description: Template to deploy firewall
resources:
    sc_firewall:
        type: OS::Neutron::Firewall
        properties:
            description: "{'insert_type': 'east_west'}"
            firewall_policy_id: { get_resource: sc_firewall_policy }
            name: "serviceVM_infra_FW"
    sc_firewall_policy:
        type: OS::Neutron::FirewallPolicy
        properties:
            name: ""
            firewall_rules: [{ get_resource: sc_rule_ssh }, {get_resource: sc_rule_web }]
    sc_rule_web:
        type: OS::Neutron::FirewallRule
        properties: {name: "Rule_4", action: "allow", protocol: "tcp", destination_port: "80",
                     source_ip_address: 198.18.2.0/24, enabled: "false"}
    sc_rule_ssh:
        type: OS::Neutron::FirewallRule
        properties: {name: "Rule_3", action: "deny", protocol: "TCP", destination_port: "22:23"}
"""

LB_V2 = {
    "heat_template_version": "2015-10-15",
    "parameters": {
        "lb_port": {"type": "number", "default": 80},
        "app_port": {"type": "number", "default": 8080},
        "Subnet": {"type": "string"}, "vip_ip": {"type": "string"},
        "service_chain_metadata": {"type": "string"}},
    "resources": {
        "monitor": {"type": "OS::Neutron::LBaaS::HealthMonitor", "depends_on": "pool", "properties": {
            "delay": 3, "type": "HTTP", "timeout": 3, "max_retries": 3,
            "pool": {"get_resource": "pool"}}},
        "pool": {"type": "OS::Neutron::LBaaS::Pool", "depends_on": "listener",
                 "description": "{'app_port_param_name': 'app_port'}", "properties": {
                     "lb_algorithm": "ROUND_ROBIN", "protocol": "HTTP",
                     "listener": {"get_resource": "listener"}}},
        "listener": {"type": "OS::Neutron::LBaaS::Listener", "depends_on": "loadbalancer",
                     "properties": {"loadbalancer": {"get_resource": "loadbalancer"},
                                    "protocol": "HTTP", "protocol_port": {"get_param": "lb_port"}}},
        "loadbalancer": {"type": "OS::Neutron::LBaaS::LoadBalancer", "properties": {
            "vip_subnet": {"get_param": "Subnet"}, "provider": "haproxy",
            "vip_address": {"get_param": "vip_ip"},
            "description": {"get_param": "service_chain_metadata"}}},
        "m1": {"type": "OS::Neutron::LBaaS::PoolMember", "properties": {
            "pool": {"get_resource": "pool"}, "address": "198.18.1.10",
            "protocol_port": {"get_param": "app_port"}, "subnet": {"get_param": "Subnet"},
            "weight": 1}},
        "m2": {"type": "OS::Neutron::LBaaS::PoolMember", "properties": {
            "pool": {"get_resource": "pool"}, "address": "198.18.1.11",
            "protocol_port": {"get_param": "app_port"}, "weight": 2}},
    }}
LB_V2_ELEMENTS = [{"resource": "loadbalancer", "resource_data": {
    "name": "pool", "vip_address": "198.18.2.100", "protocol_port": 80, "protocol": "HTTP",
    "lb_algorithm": "ROUND_ROBIN",
    "members": [{"address": "198.18.1.10", "protocol_port": 8080, "weight": 1},
                {"address": "198.18.1.11", "protocol_port": 8080, "weight": 2}],
    "healthmonitor": {"type": "HTTP", "delay": 3, "timeout": 3, "max_retries": 3}}}]

LB_V1_AWS = """{
    "AWSTemplateFormatVersion" : "2010-09-09",
    "Description": "Template to test Haproxy Loadbalacer service",
    "Parameters": {
        "Subnet": {"Description": "Pool Subnet CIDR", "Type": "String"},
        "PoolMemberIPs": {"Description": "Pool Member IP Address", "Type": "String"},
        "vip_ip": {"Description": "VIP IP Address", "Type": "String"}
    },
    "Resources" : {
        "HttpHM": {"Type": "OS::Neutron::HealthMonitor", "Properties": {
            "admin_state_up": true, "delay": 20, "expected_codes": "200", "http_method": "GET",
            "max_retries": 3, "timeout": 10, "type": "HTTP", "url_path": "/"}},
        "HaproxyPool": {"Type": "OS::Neutron::Pool", "Properties": {
            "admin_state_up": true, "description": "Haproxy pool from template",
            "lb_method": "ROUND_ROBIN", "monitors": [{"Ref": "HttpHM"}], "name": "Haproxy pool",
            "protocol": "HTTP", "subnet_id": {"Ref": "Subnet"}, "provider": "haproxy",
            "vip": {"subnet": {"Ref": "Subnet"}, "address": {"Ref": "vip_ip"}, "name": "vip",
                    "protocol_port": 80, "connection_limit": -1, "admin_state_up": true}}},
        "HaproxyLb": {"Type": "OS::Neutron::LoadBalancer", "Properties": {
            "pool_id": {"Ref": "HaproxyPool"}, "protocol_port": 8080}},
        "Member1": {"Type": "OS::Neutron::PoolMember", "Properties": {
            "address": {"Ref": "PoolMemberIPs"}, "admin_state_up": true,
            "pool_id": {"Ref": "HaproxyPool"}, "weight": 1}}
    }
}"""
LB_V1_ELEMENTS = [{"resource": "loadbalancer", "resource_data": {
    "name": "HaproxyPool", "vip_address": "198.18.2.100", "protocol_port": 80, "protocol": "HTTP",
    "lb_algorithm": "ROUND_ROBIN",
    "members": [{"address": "198.18.1.10", "protocol_port": 8080, "weight": 1}],
    "healthmonitor": {"type": "HTTP", "delay": 20, "timeout": 10, "max_retries": 3,
                      "url_path": "/"}}}]


def _vpn(psk):
    lifetime = {"units": "seconds", "value": 3600}
    return {
        "heat_template_version": "2013-05-23",
        "parameters": {"RouterId": {"type": "string"}, "ServiceDescription": {"type": "string"},
                       "Subnet": {"type": "string"}, "psk": {"type": "string", "default": psk}},
        "resources": {
            "IKEPolicy": {"type": "OS::Neutron::IKEPolicy", "properties": {
                "auth_algorithm": "sha1", "encryption_algorithm": "3des", "ike_version": "v1",
                "lifetime": lifetime, "name": "IKEPolicy", "pfs": "group5",
                "phase1_negotiation_mode": "main"}},
            "IPsecPolicy": {"type": "OS::Neutron::IPsecPolicy", "properties": {
                "auth_algorithm": "sha1", "encapsulation_mode": "tunnel",
                "encryption_algorithm": "3des", "lifetime": lifetime, "name": "IPsecPolicy",
                "pfs": "group5", "transform_protocol": "esp"}},
            "VPNService": {"type": "OS::Neutron::VPNService", "properties": {
                "admin_state_up": "true", "description": {"get_param": "ServiceDescription"},
                "name": "VPNService", "router_id": {"get_param": "RouterId"},
                "subnet_id": {"get_param": "Subnet"}}},
            "site1": {"type": "OS::Neutron::IPsecSiteConnection", "properties": {
                "admin_state_up": "true", "dpd": {"actions": "hold", "interval": 30, "timeout": 120},
                "ikepolicy_id": {"get_resource": "IKEPolicy"},
                "ipsecpolicy_id": {"get_resource": "IPsecPolicy"},
                "vpnservice_id": {"get_resource": "VPNService"},
                "initiator": "bi-directional", "mtu": 1500, "name": "site_to_site_connection1",
                "peer_address": "198.19.0.1", "peer_cidrs": ["198.19.10.0/24"],
                "peer_id": "198.19.0.1", "psk": {"get_param": "psk"}}},
        }}


VPN_ELEMENTS = [{"resource": "vpn", "resource_data": {
    "name": "VPNService", "local_cidrs": ["198.18.1.0/24"], "connections": [{
        "name": "site1", "peer_address": "198.19.0.1", "peer_cidrs": ["198.19.10.0/24"],
        "psk_ref": "vpn-site1", "enabled": True, "peer_id": "198.19.0.1",
        "initiator": "bi-directional", "mtu": 1500,
        "dpd": {"action": "hold", "interval": 30, "timeout": 120},
        "ike": {"auth_algorithm": "sha1", "encryption_algorithm": "3des", "pfs": "group5",
                "ike_version": "v1", "phase1_negotiation_mode": "main",
                "lifetime": {"units": "seconds", "value": 3600}},
        "ipsec": {"auth_algorithm": "sha1", "encryption_algorithm": "3des", "pfs": "group5",
                  "encapsulation_mode": "tunnel", "transform_protocol": "esp",
                  "lifetime": {"units": "seconds", "value": 3600}}}]}}]


def _valid(elements):
    for element in elements:
        parse_resource(element["resource"], element["resource_data"])
    return elements


# -- golden vectors -------------------------------------------------------------------
def test_fwaas_hot_json_text():
    assert _valid(translate(json.dumps(FW_HOT), {})) == FW_ELEMENTS


def test_fwaas_dict_and_heat_config_tag_give_the_same_elements():
    assert translate(FW_HOT, {}) == FW_ELEMENTS
    assert translate("heat_config:" + json.dumps(FW_HOT), {}) == FW_ELEMENTS


def test_fwaas_yaml_keeps_policy_order_and_reads_string_booleans():
    assert _valid(translate(FW_YAML, {})) == [{"resource": "firewall", "resource_data": {
        "default_action": "deny", "rules": [
            {"name": "sc_rule_ssh", "action": "deny", "protocol": "tcp", "enabled": True,
             "destination_port": "22:23", "description": "Rule_3"},
            {"name": "sc_rule_web", "action": "allow", "protocol": "tcp", "enabled": False,
             "source_ip_address": "198.18.2.0/24", "destination_port": "80",
             "description": "Rule_4"}]}}]


def test_fwaas_firewall_administratively_down_blocks_everything():
    template = json.loads(json.dumps(FW_HOT))
    template["resources"]["Firewall"]["properties"]["admin_state_up"] = "false"
    assert translate(template, {}) == [{"resource": "firewall", "resource_data": {
        "rules": [], "default_action": "deny"}}]


def test_lbaas_v2():
    assert _valid(translate(LB_V2, {"vip_ip": "198.18.2.100", "Subnet": "198.18.1.0/24",
                                    "service_chain_metadata": ""})) == LB_V2_ELEMENTS


def test_lbaas_v2_https_is_passed_through_as_tcp_and_terminated_https_is_refused():
    template = json.loads(json.dumps(LB_V2))
    template["resources"]["listener"]["properties"]["protocol"] = "HTTPS"
    out = translate(template, {"vip_ip": "198.18.2.100"})
    assert out[0]["resource_data"]["protocol"] == "TCP"
    template["resources"]["listener"]["properties"]["protocol"] = "TERMINATED_HTTPS"
    with pytest.raises(HeatError, match=r"resource listener \(OS::Neutron::LBaaS::Listener\): "
                                        r"property protocol: TERMINATED_HTTPS cannot be translated"):
        translate(template, {"vip_ip": "198.18.2.100"})


def test_lbaas_v1_aws_format():
    params = {"vip_ip": "198.18.2.100", "Subnet": "198.18.1.0/24", "PoolMemberIPs": "198.18.1.10"}
    assert _valid(translate(LB_V1_AWS, params)) == LB_V1_ELEMENTS


def test_vpnaas_with_a_secret_reference():
    out = translate(_vpn("secret:vpn-site1"), {"Subnet": "198.18.1.0/24"})
    assert _valid(out) == VPN_ELEMENTS


def test_vpnaas_literal_psk_is_refused_without_repeating_it():
    with pytest.raises(HeatError) as err:
        translate(_vpn("s3cr3t-psk-value"), {"Subnet": "198.18.1.0/24"})
    assert str(err.value).startswith(
        "resource site1 (OS::Neutron::IPsecSiteConnection): property psk: a literal pre-shared key")
    assert "s3cr3t" not in str(err.value)


def test_vpnaas_subnet_must_be_a_cidr():
    with pytest.raises(HeatError, match=r"resource VPNService .*property subnet_id: .*not a CIDR"):
        translate(_vpn("secret:x"), {"Subnet": "6f1c0e9a-2b1d-4c53-9d2e-1f0a4b7c8d90"})


# -- parameters and references -----------------------------------------------------------
def test_caller_values_override_defaults_and_numbers_are_coerced():
    out = translate(LB_V2, {"vip_ip": "198.18.2.101", "lb_port": "8443", "app_port": 9000})
    data = out[0]["resource_data"]
    assert (data["vip_address"], data["protocol_port"]) == ("198.18.2.101", 8443)
    assert {m["protocol_port"] for m in data["members"]} == {9000}


def test_parameters_nfp_does_not_read_need_no_value():
    # RouterId and ServiceDescription have no default and no value: the VPN still translates
    assert translate(_vpn("secret:vpn-site1"), {"Subnet": "198.18.1.0/24"})


def test_missing_parameter_is_named_with_the_property_needing_it():
    with pytest.raises(HeatError) as err:
        translate(LB_V2, {})
    assert str(err.value) == (
        "resource loadbalancer (OS::Neutron::LBaaS::LoadBalancer): property vip_address: "
        "parameter vip_ip has no value (not in the chain instance's config_param_values) "
        "and no default")


def test_undeclared_parameter_is_named():
    template = json.loads(json.dumps(FW_HOT))
    template["resources"]["Rule_1"]["properties"]["destination_port"] = {"get_param": "web_port"}
    with pytest.raises(HeatError, match="parameter 'web_port' is not declared"):
        translate(template, {"web_port": 80})


def test_get_param_paths_list_join_and_str_replace():
    template = json.loads(json.dumps(FW_HOT))
    template["parameters"] = {"ports": {"type": "comma_delimited_list", "default": "80,443"},
                              "net": {"type": "json", "default": {"web": "198.18.1.0"}}}
    props = template["resources"]["Rule_1"]["properties"]
    props["destination_port"] = {"get_param": ["ports", 1]}
    props["destination_ip_address"] = {"list_join": ["/", [{"get_param": ["net", "web"]}, "24"]]}
    props["description"] = {"str_replace": {"template": "allow $p", "params": {"$p": "https"}}}
    rule = translate(template, {})[0]["resource_data"]["rules"][0]
    assert (rule["destination_port"], rule["destination_ip_address"], rule["description"]) == (
        "443", "198.18.1.0/24", "allow https")


def test_get_resource_to_a_missing_resource_is_named():
    template = json.loads(json.dumps(FW_HOT))
    template["resources"]["Firewall_Policy"]["properties"]["firewall_rules"].append(
        {"get_resource": "Rule_9"})
    with pytest.raises(HeatError, match=r"resource Firewall_Policy .*property firewall_rules: "
                                        r"no resource named 'Rule_9'"):
        translate(template, {})


def test_reference_to_an_existing_neutron_object_is_refused():
    template = json.loads(json.dumps(FW_HOT))
    template["resources"]["Firewall"]["properties"]["firewall_policy_id"] = "5d1c-uuid"
    with pytest.raises(HeatError, match=r"property firewall_policy_id: must be \{get_resource"):
        translate(template, {})


# -- nothing is dropped silently -------------------------------------------------------------
def test_unknown_resource_type_names_the_resource_and_its_type():
    template = json.loads(json.dumps(FW_HOT))
    template["resources"]["fw_rule_x"] = {"type": "OS::Nova::Server", "properties": {}}
    with pytest.raises(HeatError) as err:
        translate(template, {})
    assert str(err.value) == "resource fw_rule_x: type OS::Nova::Server cannot be translated"


def test_a_property_nfp_does_not_read_is_named():
    template = json.loads(json.dumps(LB_V2))
    template["resources"]["pool"]["properties"]["session_persistence"] = {"type": "SOURCE_IP"}
    with pytest.raises(HeatError, match=r"resource pool \(OS::Neutron::LBaaS::Pool\): "
                                        r"property session_persistence: cannot be translated"):
        translate(template, {"vip_ip": "198.18.2.100"})


def test_a_rule_in_no_policy_is_refused():
    template = json.loads(json.dumps(FW_HOT))
    template["resources"]["Firewall_Policy"]["properties"]["firewall_rules"].pop()
    with pytest.raises(HeatError, match="resource Rule_2: OS::Neutron::FirewallRule is not "
                                        "reached from any OS::Neutron::Firewall"):
        translate(template, {})


def test_two_firewalls_for_one_nf_are_refused():
    template = json.loads(json.dumps(FW_HOT))
    template["resources"]["Firewall2"] = template["resources"]["Firewall"]
    with pytest.raises(HeatError, match=r"2 firewalls \(Firewall, Firewall2\)"):
        translate(template, {})


def test_runtime_functions_and_other_tags_are_refused():
    template = json.loads(json.dumps(FW_HOT))
    template["resources"]["Rule_1"]["properties"]["destination_ip_address"] = {
        "get_attr": ["server", "first_address"]}
    with pytest.raises(HeatError, match="property destination_ip_address: function get_attr"):
        translate(template, {})
    with pytest.raises(HeatError, match="tagged 'ansible' is not a Heat template"):
        translate("ansible: {}", {})
    with pytest.raises(HeatError, match="neither nfp's"):
        translate({"rules": []}, {})


def test_an_invalid_translated_value_names_the_resource_and_the_field():
    template = json.loads(json.dumps(FW_HOT))
    template["resources"]["Rule_1"]["properties"]["destination_port"] = "70000"
    with pytest.raises(HeatError) as err:
        translate(template, {})
    assert str(err.value).startswith("resource Firewall (OS::Neutron::Firewall): translates to "
                                     "an invalid firewall (rule Rule_1): "
                                     "resource_data.rules.0.destination_port")


# -- the seam nfp.desired calls ------------------------------------------------------------------
def test_expand_translates_heat_elements_and_keeps_the_others():
    routes = {"resource": "routes", "resource_data": {"routes": []}}
    elements = parse_service_config(json.dumps(FW_HOT)) + [routes]
    assert elements[0]["resource"] == "heat"
    assert expand(elements, {}) == FW_ELEMENTS + [routes]


def test_hostile_templates_fail_with_heat_errors():
    bomb = ["heat_template_version: 2013-05-23", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 8):
        bomb.append(f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, "
                    f"*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]")
    bomb += ["resources:", "  fw: {type: OS::Neutron::Firewall, properties: "
             "{firewall_policy_id: {get_resource: p}}}",
             "  p: {type: OS::Neutron::FirewallPolicy, properties: {firewall_rules: *a7}}"]
    with pytest.raises(HeatError, match="template too large to translate"):  # 10**8 values
        translate("\n".join(bomb), {})
    with pytest.raises(HeatError, match="nested too deeply"):
        translate("[" * 100_000 + "]" * 100_000, {})
