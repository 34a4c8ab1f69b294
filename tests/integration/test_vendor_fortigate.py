"""FortiGate end to end: the dictionary driver against the FortiGate simulator,
directly and through the orchestrator (harness), with faults and drift."""
from __future__ import annotations

import pytest

from nfp.drivers.config.base import ConfigStatus
from nfp.testing.simulators.fortigate import FortiGateSimulator
from nfp.testing.simulators.wiring import (apply_to, device_target, dictionary_driver, firewall_nf,
                                           orchestrator_for)

API_KEY = "fgt-KEY-0b5c77e9a1f24d6e"
FIREWALL = {"rules": [
    {"name": "web", "protocol": "tcp", "source_ip_address": "198.18.10.0/24",
     "destination_ip_address": "198.18.20.0/28", "destination_port": "80:88", "source_port": "1024:65535"},
    {"name": "icmp", "protocol": "icmp", "action": "reject"},
]}
PORT_FORWARDING = {"rules": [
    {"name": "ssh", "protocol": "tcp", "external_ip": "198.18.0.10", "external_port": 2222,
     "internal_ip": "198.18.1.5", "internal_port": 22, "source_ip_address": "198.18.99.0/24"},
]}


@pytest.fixture
def sim():
    with FortiGateSimulator(api_key=API_KEY) as simulator:
        yield simulator


@pytest.fixture
def driver(tmp_path):
    with dictionary_driver(tmp_path, {"api_key": API_KEY}, retries=1, backoff=0.01, timeout=2) as drv:
        yield drv


def _apply(driver, sim, operation, resource, data, nf_id="nf-1"):
    return apply_to(driver, sim, operation, resource, data, nf_id)


def test_firewall_and_port_forwarding_create_list_delete(driver, sim):
    result = _apply(driver, sim, "create", "firewall", FIREWALL)
    assert result.ok, result.error
    policies = sim.table("firewall/policy")
    assert [p["action"] for p in policies] == ["accept", "deny"]
    assert policies[1]["send-deny-packet"] == "enable"
    tag = policies[0]["name"]
    addresses = {a["name"]: a["subnet"] for a in sim.table("firewall/address")}
    assert addresses == {f"{tag}-src": "198.18.10.0 255.255.255.0", f"{tag}-dst": "198.18.20.0 255.255.255.240"}
    services = {s["name"]: s for s in sim.table("firewall.service/custom")}
    assert services[f"{tag}-svc"]["tcp-portrange"] == "80-88:1024-65535"
    assert result.external_ids == {"web": str(policies[0]["policyid"]), "icmp": str(policies[1]["policyid"])}

    assert _apply(driver, sim, "create", "port_forwarding", PORT_FORWARDING).ok
    (vip,) = sim.table("firewall/vip")
    assert (vip["extip"], vip["extport"], vip["mappedip"], vip["mappedport"], vip["src-filter"]) == \
        ("198.18.0.10", "2222", [{"range": "198.18.1.5"}], "22", [{"range": "198.18.99.0/24"}])
    assert any(p["dstaddr"] == [{"name": vip["name"]}] for p in sim.table("firewall/policy"))

    listed = driver.list_resources(device_target(sim), "port_forwarding")
    assert [i["id"] for i in listed] == [vip["name"]]

    assert _apply(driver, sim, "delete", "firewall", FIREWALL).ok
    assert _apply(driver, sim, "delete", "port_forwarding", PORT_FORWARDING).ok
    for table in ("firewall/policy", "firewall/address", "firewall.service/custom", "firewall/vip"):
        assert sim.table(table) == [], table


def test_retried_create_tolerates_objects_left_by_a_failed_attempt(driver, sim):
    from nfp.drivers.config.dictionary.items import rule_tag
    tag = rule_tag("nf-1", "Firewall", "web")
    # an earlier attempt created the address object, then failed before the policy
    sim.drift({"op": "add", "table": "firewall/address", "object": {
        "name": f"{tag}-src", "type": "ipmask", "subnet": "198.18.10.0 255.255.255.0"}})
    result = _apply(driver, sim, "create", "firewall", {"rules": [FIREWALL["rules"][0]]})
    assert result.ok, result.error                  # FortiOS -5 "duplicate" is tolerated
    assert len(sim.table("firewall/policy")) == 1 and len(sim.table("firewall/address")) == 2


def test_server_errors_and_auth_failures_are_clear(driver, sim):
    sim.faults.fail_next(1, status=500)
    result = _apply(driver, sim, "create", "port_forwarding", PORT_FORWARDING)
    assert result.status == ConfigStatus.FAILURE and "HTTP 500" in result.error
    sim.faults.reject_auth = True
    result = _apply(driver, sim, "create", "port_forwarding", PORT_FORWARDING)
    assert result.status == ConfigStatus.FAILURE and "HTTP 401" in result.error
    assert API_KEY not in result.error
    sim.faults.clear()
    assert _apply(driver, sim, "create", "port_forwarding", PORT_FORWARDING).ok


def test_load_balancer_members_update_in_place(driver, sim):
    lb = {"vip_address": "198.18.2.1", "protocol_port": 80,
          "members": [{"address": "198.18.3.1", "protocol_port": 8080}],
          "healthmonitor": {"type": "HTTP", "url_path": "/health"}}
    assert _apply(driver, sim, "create", "loadbalancer", lb).ok
    lb["members"].append({"address": "198.18.3.2", "protocol_port": 8080, "weight": 5})
    assert _apply(driver, sim, "update", "loadbalancer", lb).ok
    (vip,) = sim.table("firewall/vip")
    assert [(s["ip"], s["weight"]) for s in vip["realservers"]] == [("198.18.3.1", 1), ("198.18.3.2", 5)]
    assert _apply(driver, sim, "delete", "loadbalancer", lb).ok
    assert sim.table("firewall/vip") == [] and sim.table("firewall/ldb-monitor") == []


def test_drift_is_visible_in_the_listing(driver, sim):
    result = _apply(driver, sim, "create", "firewall", FIREWALL)
    sim.drift({"op": "remove", "table": "firewall/policy", "mkey": result.external_ids["icmp"]})
    listed = {i["id"] for i in driver.list_resources(device_target(sim), "firewall")}
    assert listed == {result.external_ids["web"]}
    assert _apply(driver, sim, "delete", "firewall", FIREWALL).ok   # the missing policy is tolerated
    assert sim.table("firewall/policy") == []


def test_through_the_orchestrator(tmp_path, sim):
    with orchestrator_for(sim, tmp_path) as (h, engine):
        nf = h.client.create_network_function(firewall_nf("fortigate", FIREWALL, PORT_FORWARDING))
        h.wait_for_status(nf["id"], "ACTIVE", timeout=60)
        assert len(sim.table("firewall/policy")) == 3 and len(sim.table("firewall/vip")) == 1
        h.client.delete_network_function(nf["id"])
        h.wait_gone(nf["id"], timeout=60)
        assert sim.table("firewall/policy") == [] and sim.table("firewall/vip") == []
