"""pfSense end to end: the dictionary driver against the pfSense simulator,
directly and through the orchestrator (harness), with faults and drift."""
from __future__ import annotations

import pytest

from nfp.drivers.config.base import ConfigStatus
from nfp.testing.simulators.pfsense import PfSenseSimulator
from nfp.testing.simulators.wiring import (apply_to, device_target, dictionary_driver, firewall_nf,
                                           orchestrator_for, secret_leaks)

API_KEY = "pfs-KEY-7f3a9c2e51d04b8a"
FIREWALL = {"rules": [
    {"name": "web", "protocol": "tcp", "source_ip_address": "198.18.10.0/24",
     "destination_ip_address": "198.18.20.5/32", "destination_port": "80:88", "source_port": "1024:65535"},
    {"name": "dns", "protocol": "udp", "destination_port": 53, "action": "deny", "description": "no dns"},
]}
PORT_FORWARDING = {"rules": [
    {"name": "ssh", "protocol": "tcp", "external_ip": "198.18.0.10", "external_port": 2222,
     "internal_ip": "198.18.1.5", "internal_port": 22, "source_ip_address": "198.18.99.0/24"},
]}


@pytest.fixture
def sim():
    with PfSenseSimulator(api_key=API_KEY) as simulator:
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
    rules = sim.table("firewall/rule")
    assert [r["type"] for r in rules] == ["pass", "block"]
    web = rules[0]
    assert (web["protocol"], web["source"], web["destination"]) == ("tcp", "198.18.10.0/24", "198.18.20.5")
    assert (web["source_port"], web["destination_port"]) == ("1024:65535", "80:88")
    assert result.external_ids == {"web": str(web["tracker"]), "dns": str(rules[1]["tracker"])}
    assert sim.pending_apply is False and sim.applied_count == 1

    assert _apply(driver, sim, "create", "port_forwarding", PORT_FORWARDING).ok
    (pf,) = sim.table("firewall/nat/port_forward")
    assert (pf["destination"], pf["destination_port"], pf["target"], pf["local_port"], pf["source"]) == \
        ("198.18.0.10", "2222", "198.18.1.5", "22", "198.18.99.0/24")

    listed = driver.list_resources(device_target(sim), "firewall")
    assert sorted(i["id"] for i in listed) == sorted(result.external_ids.values())

    seen = sim.requests_seen
    assert _apply(driver, sim, "create", "firewall", FIREWALL).ok      # idempotent: nothing pushed
    assert sim.requests_seen == seen and len(sim.table("firewall/rule")) == 2

    # delete the first rule: pfSense renumbers the second, nfp resolves it by tracker
    assert _apply(driver, sim, "update", "firewall", {"rules": [FIREWALL["rules"][1]]}).ok
    assert [r["type"] for r in sim.table("firewall/rule")] == ["block"]
    assert _apply(driver, sim, "delete", "firewall", FIREWALL).ok
    assert _apply(driver, sim, "delete", "port_forwarding", PORT_FORWARDING).ok
    assert sim.table("firewall/rule") == [] and sim.table("firewall/nat/port_forward") == []


def test_changed_rule_is_updated_in_place(driver, sim):
    assert _apply(driver, sim, "create", "firewall", FIREWALL).ok
    tracker = sim.table("firewall/rule")[1]["tracker"]
    changed = {"rules": [FIREWALL["rules"][0], dict(FIREWALL["rules"][1], action="reject")]}
    assert _apply(driver, sim, "update", "firewall", changed).ok
    rule = sim.table("firewall/rule")[1]
    assert (rule["type"], rule["tracker"]) == ("reject", tracker)


def test_retries_5xx_on_reads_and_reports_auth_failure(driver, sim):
    assert _apply(driver, sim, "create", "firewall", FIREWALL).ok
    sim.faults.fail_next(1, status=503)                      # GET list is idempotent: retried
    assert len(driver.list_resources(device_target(sim), "firewall")) == 2
    sim.faults.reject_auth = True
    result = _apply(driver, sim, "create", "port_forwarding", PORT_FORWARDING)
    assert result.status == ConfigStatus.FAILURE
    assert "401" in result.error and "AUTH_AUTHENTICATION_FAILED" in result.error
    assert API_KEY not in result.error


def test_timeout_is_a_clear_failure(driver, sim):
    sim.faults.delay_next(1, seconds=3)
    result = _apply(driver, sim, "create", "port_forwarding", PORT_FORWARDING)
    assert result.status == ConfigStatus.FAILURE and "no answer within 2 s" in result.error


def test_vendor_validation_error_names_the_field(driver, sim):
    bad = {"rules": [{"name": "p", "protocol": "any", "destination_port": 80}]}
    result = _apply(driver, sim, "create", "firewall", bad)
    assert result.status == ConfigStatus.FAILURE
    assert "FIREWALL_RULE_PORTS_WITHOUT_TCP_UDP" in result.error


def test_drift_is_visible_in_the_listing(driver, sim):
    assert _apply(driver, sim, "create", "firewall", FIREWALL).ok
    sim.drift({"op": "remove", "model": "firewall/rule", "id": 0})
    sim.drift({"op": "add", "model": "firewall/rule", "object": {
        "type": "pass", "interface": ["wan"], "source": "any", "destination": "any", "descr": "manual"}})
    keys = [i["key"] for i in driver.list_resources(device_target(sim), "firewall")]
    assert keys[1] == "manual" and not any(k.startswith(("nfp-") ) and "web" in k for k in keys)
    # deleting the NF's rules removes what is there and tolerates what is gone
    assert _apply(driver, sim, "delete", "firewall", FIREWALL).ok
    assert [r["descr"] for r in sim.table("firewall/rule")] == ["manual"]


def test_through_the_orchestrator(tmp_path, sim):
    with orchestrator_for(sim, tmp_path, logging={"level": "DEBUG"}) as (h, engine):
        nf = h.client.create_network_function(firewall_nf("pfsense", FIREWALL, PORT_FORWARDING))
        h.wait_for_status(nf["id"], "ACTIVE", timeout=60)
        assert [r["type"] for r in sim.table("firewall/rule")] == ["pass", "block"]
        assert len(sim.table("firewall/nat/port_forward")) == 1
        h.client.delete_network_function(nf["id"])
        h.wait_gone(nf["id"], timeout=60)
        assert sim.table("firewall/rule") == [] and sim.table("firewall/nat/port_forward") == []
        logs = h.logs()
        assert logs, "the daemon wrote no log lines"
        assert secret_leaks(API_KEY, logs, engine) == []

