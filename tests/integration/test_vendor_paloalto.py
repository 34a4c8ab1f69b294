"""PAN-OS end to end: candidate configuration plus commit against the PAN-OS
simulator, directly and through the orchestrator (harness), with faults and drift."""
from __future__ import annotations

import pytest

from nfp.drivers.config.base import ConfigStatus
from nfp.testing.simulators.paloalto import PaloAltoSimulator
from nfp.testing.simulators.wiring import (apply_to, device_target, dictionary_driver, firewall_nf,
                                           orchestrator_for)

API_KEY = "LUFRPT-pan-0c1d2e3f4a5b6c7d"
RULES, NAT = "/rulebase/security/rules", "/rulebase/nat/rules"
FIREWALL = {"rules": [
    {"name": "web", "protocol": "tcp", "source_ip_address": "198.18.10.0/24",
     "destination_ip_address": "198.18.20.5/32", "destination_port": "80:88", "source_port": "1024:65535"},
    {"name": "dns", "protocol": "udp", "destination_port": 53, "action": "deny", "enabled": False},
]}
PORT_FORWARDING = {"rules": [
    {"name": "ssh", "protocol": "tcp", "external_ip": "198.18.0.10", "external_port": 2222,
     "internal_ip": "198.18.1.5", "internal_port": 22},
]}


@pytest.fixture
def sim():
    with PaloAltoSimulator(api_key=API_KEY) as simulator:
        yield simulator


@pytest.fixture
def driver(tmp_path):
    with dictionary_driver(tmp_path, {"api_key": API_KEY}, retries=1, backoff=0.01, timeout=5) as drv:
        yield drv


def _apply(driver, sim, operation, resource, data, nf_id="nf-1"):
    return apply_to(driver, sim, operation, resource, data, nf_id)


def test_firewall_and_port_forwarding_create_list_delete(driver, sim):
    result = _apply(driver, sim, "create", "firewall", FIREWALL)
    assert result.ok, result.error
    running = sim.entries(RULES)                       # committed: in the running config
    web = running[result.external_ids["web"]]
    assert web.findtext("source/member") == "198.18.10.0/24"
    assert web.findtext("destination/member") == "198.18.20.5/32"
    assert web.findtext("action") == "allow"
    svc = sim.entries("/service")[web.findtext("service/member")]
    assert (svc.findtext("protocol/tcp/port"), svc.findtext("protocol/tcp/source-port")) == ("80-88", "1024-65535")
    dns = running[result.external_ids["dns"]]
    assert (dns.findtext("action"), dns.findtext("disabled")) == ("deny", "yes")

    assert _apply(driver, sim, "create", "port_forwarding", PORT_FORWARDING).ok
    (nat,) = sim.entries(NAT).values()
    assert nat.findtext("destination-translation/translated-address") == "198.18.1.5"
    assert nat.findtext("destination-translation/translated-port") == "22"
    assert nat.findtext("destination/member") == "198.18.0.10"

    listed = {i["id"] for i in driver.list_resources(device_target(sim), "firewall")}
    assert listed == set(result.external_ids.values())

    assert _apply(driver, sim, "delete", "firewall", FIREWALL).ok
    assert _apply(driver, sim, "delete", "port_forwarding", PORT_FORWARDING).ok
    assert sim.entries(RULES) == {} and sim.entries(NAT) == {} and sim.entries("/service") == {}
    assert all(job["errors"] == [] for job in sim.state()["jobs"].values())


def test_failed_commit_job_is_reported(driver, sim):
    sim.commit_failures.append("Validation Error: vsys1 -> rulebase is invalid")
    result = _apply(driver, sim, "create", "firewall", FIREWALL)
    assert result.status == ConfigStatus.FAILURE
    assert "commit job" in result.error and "rulebase is invalid" in result.error
    assert sim.entries(RULES) == {}                      # the running config did not change


def test_bad_key_and_server_errors(driver, sim):
    sim.faults.reject_auth = True
    result = _apply(driver, sim, "create", "firewall", FIREWALL)
    assert result.status == ConfigStatus.FAILURE and "403" in result.error and "Invalid Credential" in result.error
    assert API_KEY not in result.error
    sim.faults.clear()
    sim.faults.fail_next(1, status=502)
    result = _apply(driver, sim, "create", "firewall", FIREWALL)
    assert result.status == ConfigStatus.FAILURE and "HTTP 502" in result.error
    assert _apply(driver, sim, "create", "firewall", FIREWALL).ok     # the retry converges


def test_drift_is_visible_in_the_listing(driver, sim):
    result = _apply(driver, sim, "create", "firewall", FIREWALL)
    base = "/config/devices/entry[@name='localhost.localdomain']/vsys/entry[@name='vsys1']"
    sim.drift({"op": "remove", "xpath": base + f"/rulebase/security/rules/entry[@name='{result.external_ids['web']}']"})
    sim.drift({"op": "add", "xpath": base + "/rulebase/security/rules",
               "element": "<entry name='manual'><action>allow</action></entry>"})
    listed = {i["id"] for i in driver.list_resources(device_target(sim), "firewall")}
    assert listed == {result.external_ids["dns"], "manual"}


def test_through_the_orchestrator(tmp_path, sim):
    with orchestrator_for(sim, tmp_path) as (h, engine):
        nf = h.client.create_network_function(firewall_nf("paloalto", FIREWALL, PORT_FORWARDING))
        h.wait_for_status(nf["id"], "ACTIVE", timeout=60)
        assert len(sim.entries(RULES)) == 2 and len(sim.entries(NAT)) == 1
        h.client.delete_network_function(nf["id"])
        h.wait_gone(nf["id"], timeout=60)
        assert sim.entries(RULES) == {} and sim.entries(NAT) == {}
