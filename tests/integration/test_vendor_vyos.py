"""VyOS end to end: configure/commit/save over SSH (host key pinned) against the
VyOS simulator, directly and through the orchestrator (harness), with dropped
sessions, refused logins, drift, and a secret-grep of logs and database."""
from __future__ import annotations

import pytest

from nfp.drivers.config.base import ConfigStatus
from nfp.testing.simulators.vyos import VyosSimulator
from nfp.testing.simulators.wiring import (apply_to, device_target, dictionary_driver, firewall_nf,
                                           orchestrator_for, secret_leaks)

PASSWORD = "vy-PASS-5e6f7a8b9c0d1e2f"
FIREWALL = {"rules": [
    {"name": "web", "protocol": "tcp", "source_ip_address": "198.18.10.0/24",
     "destination_ip_address": "198.18.20.5/32", "destination_port": "80:88", "source_port": "1024:65535"},
    {"name": "dns", "protocol": "udp", "destination_port": 53, "action": "deny",
     "description": "\"; delete firewall $(reboot)"},
]}
PORT_FORWARDING = {"rules": [
    {"name": "ssh", "protocol": "tcp", "external_ip": "198.18.0.10", "external_port": 2222,
     "internal_ip": "198.18.1.5", "internal_port": 22},
]}
FW = "firewall ipv4 name NFP-FW rule"


@pytest.fixture
def sim():
    with VyosSimulator(password=PASSWORD) as simulator:
        yield simulator


@pytest.fixture
def driver(tmp_path):
    with dictionary_driver(tmp_path, {"username": "vyos", "password": PASSWORD}, retries=2, backoff=0.01, timeout=5) as drv:
        yield drv


def _apply(driver, sim, operation, resource, data, nf_id="nf-1", **extra):
    return apply_to(driver, sim, operation, resource, data, nf_id, **extra)


def test_firewall_and_port_forwarding_create_list_delete(driver, sim):
    result = _apply(driver, sim, "create", "firewall", FIREWALL)
    assert result.ok, result.error
    assert result.external_ids == {"web": "1000", "dns": "1001"}
    lines = sim.show("firewall")
    assert f"set {FW} 1000 source address '198.18.10.0/24'" in lines
    assert f"set {FW} 1000 destination address '198.18.20.5/32'" in lines
    assert f"set {FW} 1000 destination port '80-88'" in lines
    assert f"set {FW} 1000 source port '1024-65535'" in lines
    assert f"set {FW} 1001 action 'drop'" in lines
    # the injection attempt is a description, not a command
    assert any(l.startswith(f"set {FW} 1001 description") and "$(reboot)" in l for l in lines)
    assert sim.state()["saved"] == sim.state()["active"]                 # committed and saved

    assert _apply(driver, sim, "create", "port_forwarding", PORT_FORWARDING).ok
    nat = sim.show("nat destination rule 100")
    assert "set nat destination rule 100 translation address '198.18.1.5'" in nat
    assert "set nat destination rule 100 destination port '2222'" in nat

    listed = {i["id"] for i in driver.list_resources(device_target(sim), "firewall")}
    assert listed == {"1000", "1001"}
    opened = sim.sessions_opened
    assert _apply(driver, sim, "create", "firewall", FIREWALL).ok
    assert sim.sessions_opened == opened                                  # the session is reused

    assert _apply(driver, sim, "delete", "firewall", FIREWALL).ok
    assert _apply(driver, sim, "delete", "port_forwarding", PORT_FORWARDING).ok
    assert sim.show() == []


def test_dropped_session_is_reopened_and_the_operation_rerun(driver, sim):
    assert _apply(driver, sim, "create", "firewall", {"rules": FIREWALL["rules"][:1]}).ok
    sim.faults.drop_next(1)
    assert _apply(driver, sim, "create", "port_forwarding", PORT_FORWARDING).ok
    assert sim.sessions_opened == 2
    assert "set nat destination rule 100 translation port '22'" in sim.show("nat")


def test_unpinned_host_key_and_bad_password_are_refused(driver, sim):
    other = VyosSimulator().host_key_line
    result = _apply(driver, sim, "create", "firewall", FIREWALL, ssh_host_key=other)
    assert result.status == ConfigStatus.FAILURE and "host key" in result.error
    sim.faults.reject_auth = True
    result = _apply(driver, sim, "create", "firewall", FIREWALL)
    assert result.status == ConfigStatus.FAILURE and "authentication failed" in result.error
    assert PASSWORD not in result.error and sim.show() == []


def test_allocation_skips_numbers_taken_behind_nfps_back(driver, sim):
    sim.drift({"op": "set", "path": f"{FW} 1000 action accept"})
    result = _apply(driver, sim, "create", "firewall", FIREWALL)
    assert result.ok and result.external_ids == {"web": "1001", "dns": "1002"}


def test_device_error_discards_the_change_and_names_the_command(driver, sim):
    bad = {"rules": [{"name": "out", "source_cidr": "198.18.1.0/24", "outbound_interface": "BAD0"}]}
    result = _apply(driver, sim, "create", "source_nat", bad)
    assert result.status == ConfigStatus.FAILURE
    assert "Set failed" in result.error and "set nat source rule 100" in result.error
    assert sim.show("nat") == []                     # nothing half-applied: exit discard
    assert _apply(driver, sim, "create", "firewall", FIREWALL).ok   # the session is usable again


def test_through_the_orchestrator_without_leaking_secrets(tmp_path, sim):
    with orchestrator_for(sim, tmp_path, logging={"level": "DEBUG"}) as (h, engine):
        nf = h.client.create_network_function(firewall_nf("vyos", FIREWALL, PORT_FORWARDING))
        h.wait_for_status(nf["id"], "ACTIVE", timeout=60)
        assert len([l for l in sim.show("firewall") if l.endswith("action 'accept'") or "action 'drop'" in l]) == 2
        h.client.delete_network_function(nf["id"])
        h.wait_gone(nf["id"], timeout=60)
        assert sim.show() == []
        assert secret_leaks(PASSWORD, h.logs(), engine) == []
