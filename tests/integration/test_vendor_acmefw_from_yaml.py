"""A fifth vendor from YAML alone: a dictionary in seed 000's format (tests/fixtures/
dictionaries/acmefw.yaml) drives the VyOS simulator, loaded with `nfp dictionary
load` into a running daemon and its credentials stored with `nfp secret set` from
stdin; no entry point, no alias, no restart."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from nfp.cli.main import cli
from nfp.testing.harness import Harness
from nfp.testing.simulators.vyos import VyosSimulator
from nfp.testing.simulators.wiring import (dictionary_driver, firewall_nf, secret_leaks,
                                           static_inventory_entry)

DICTIONARY = Path(__file__).parents[1] / "fixtures" / "dictionaries" / "acmefw.yaml"
PASSWORD = "acme-PASS-0a1b2c3d4e5f6a7b"
FIREWALL = {"rules": [
    {"name": "web", "protocol": "tcp", "source_ip_address": "198.18.10.0/24",
     "destination_ip_address": "198.18.20.5/32", "destination_port": 443},
    {"name": "dns", "protocol": "udp", "destination_port": 53, "action": "deny"},
]}
PORT_FORWARDING = {"rules": [
    {"name": "ssh", "protocol": "tcp", "external_ip": "198.18.0.10", "external_port": 2222,
     "internal_ip": "198.18.1.5", "internal_port": 22},
]}
FW = "firewall ipv4 name ACME rule"


@pytest.fixture
def sim():
    with VyosSimulator(password=PASSWORD) as simulator:
        yield simulator


def test_the_dictionary_drives_the_simulator_directly(tmp_path, sim):
    directory = tmp_path / "dictionaries"
    directory.mkdir()
    (directory / "acmefw.yaml").write_text(DICTIONARY.read_text())
    creds = {"username": "vyos", "password": PASSWORD}
    with dictionary_driver(tmp_path, creds, dictionary_dir=str(directory), retries=1, backoff=0.01,
                           timeout=5) as driver:
        result = _apply(driver, sim, "create", "firewall", FIREWALL)
        assert result.ok, result.error
        assert result.external_ids == {"web": "1000", "dns": "1001"}
        assert f"set {FW} 1000 destination port '443'" in sim.show("firewall")
        assert f"set {FW} 1001 action 'drop'" in sim.show("firewall")
        assert sim.state()["saved"] == sim.state()["active"]                # commit and save ran
        routes = {"routes": [{"name": "r1", "destination": "10.9.0.0/16", "nexthop": "198.18.0.1"}]}
        result = _apply(driver, sim, "create", "routes", routes)         # Routing, ${destNetwork}, ${nextHop}
        assert result.ok, result.error
        assert "set protocols static route 10.9.0.0/16 next-hop 198.18.0.1" in sim.show("protocols")

        assert _apply(driver, sim, "create", "port_forwarding", PORT_FORWARDING).ok     # NAT
        assert "set nat destination rule 100 translation port '22'" in sim.show("nat")
        # removed behind nfp's back: the device says "Nothing to delete", which errorCodes
        # names not_found, and a delete that finds nothing to delete is done
        sim.drift({"op": "delete", "path": "nat destination rule 100"})
        result = _apply(driver, sim, "delete", "port_forwarding", PORT_FORWARDING)
        assert result.ok, result.error
        assert _apply(driver, sim, "delete", "firewall", FIREWALL).ok
        assert _apply(driver, sim, "delete", "routes", routes).ok
        assert sim.show() == []


def _apply(driver, sim, operation, resource, data):
    from nfp.drivers.config.base import ConfigRequest
    from nfp.testing.simulators.wiring import device_target
    target = device_target(sim)
    target = type(target)(target.id, target.mgmt_ip_address, "acmefw", target.credentials_ref, target.extra)
    return driver.apply(ConfigRequest(operation, "firewall", resource, data, target, nf_id="nf-1"))


def test_a_fifth_vendor_loaded_into_a_running_daemon(tmp_path, sim):
    entry = dict(static_inventory_entry(sim), service_vendor="acmefw")
    settings = {"device_drivers": {"static": {"devices": [entry]}}}
    runner = CliRunner()
    with Harness(tmp_path, config=settings, workers=2) as h:
        config = ["--config", str(h.config_file)]
        # before the dictionary exists the vendor is unknown: the NF fails with a reason naming it
        nf = h.client.create_network_function(firewall_nf("acmefw", FIREWALL, PORT_FORWARDING))
        failed = h.wait_for_status(nf["id"], "ERROR", timeout=60)
        assert "acmefw" in json.dumps(failed)
        h.client.delete_network_function(nf["id"])
        h.wait_gone(nf["id"], timeout=60)

        loaded = runner.invoke(cli, ["dictionary", "load", str(DICTIONARY), *config])
        assert loaded.exit_code == 0, loaded.output
        assert "acmefw: stored as version 1" in loaded.output
        stored = runner.invoke(cli, ["secret", "set", "dev-1-credentials", *config],
                               input=json.dumps({"username": "vyos", "password": PASSWORD}) + "\n")
        assert stored.exit_code == 0, stored.output
        assert PASSWORD not in stored.output
        listed = runner.invoke(cli, ["secret", "list", *config])
        assert listed.output.split() == ["dev-1-credentials"]

        nf = h.client.create_network_function(firewall_nf("acmefw", FIREWALL, PORT_FORWARDING))
        h.wait_for_status(nf["id"], "ACTIVE", timeout=60)
        assert f"set {FW} 1000 action 'accept'" in sim.show("firewall")
        assert f"set {FW} 1001 action 'drop'" in sim.show("firewall")
        assert "set nat destination rule 100 translation address '198.18.1.5'" in sim.show("nat")
        assert sim.state()["saved"] == sim.state()["active"]
        h.client.delete_network_function(nf["id"])
        h.wait_gone(nf["id"], timeout=60)
        assert sim.show() == []
        from nfp.db.engine import make_engine
        engine = make_engine(h.conf.database_url)
        try:
            assert secret_leaks(PASSWORD, h.logs(), engine) == []
        finally:
            engine.dispose()
