"""Drift on a vendor appliance: a rule removed behind nfp's back on the pfSense
simulator is reported ``missing`` by ``nfp reconcile --dry-run``, put back by
``nfp reconcile`` and recorded in ``nfp audit reconcile``."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nfp.testing.simulators.pfsense import PfSenseSimulator
from nfp.testing.simulators.wiring import firewall_nf, orchestrator_for

pytestmark = pytest.mark.integration

FIREWALL = {"rules": [
    {"name": "web", "protocol": "tcp", "destination_ip_address": "198.18.20.5/32", "destination_port": 80},
    {"name": "dns", "protocol": "udp", "destination_port": 53, "action": "deny"},
]}
PORT_FORWARDING = {"rules": [
    {"name": "ssh", "protocol": "tcp", "external_ip": "198.18.0.10", "external_port": 2222,
     "internal_ip": "198.18.1.5", "internal_port": 22},
]}


def _nfp(harness, *args) -> str:
    out = subprocess.run([sys.executable, "-m", "nfp.cli.main", "--config", str(harness.config_file), *args],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode in (0, 1), out.stderr
    return out.stdout


def _rule_names(sim) -> list[str]:
    return sorted(r["descr"].split(" ")[1].rstrip(":") for r in sim.table("firewall/rule"))


def test_rule_removed_on_the_appliance_is_reported_repaired_and_audited(tmp_path):
    with PfSenseSimulator(api_key="rc-KEY-0b9e4d") as sim, \
            orchestrator_for(sim, tmp_path, reconcile={"interval": 0}) as (harness, _engine):
        nf = harness.client.create_network_function(firewall_nf("pfsense", FIREWALL, PORT_FORWARDING))
        harness.wait_for_status(nf["id"], "ACTIVE", timeout=60)
        assert _rule_names(sim) == ["dns", "web"]
        web = next(i for i, r in enumerate(sim.table("firewall/rule")) if " web" in r["descr"])
        sim.drift({"op": "remove", "model": "firewall/rule", "id": web})  # an operator's hand edit
        assert _rule_names(sim) == ["dns"]

        dry = json.loads(_nfp(harness, "reconcile", nf["id"], "--dry-run", "--json"))
        assert [m["name"] for m in dry["missing"]] == ["web"], dry
        assert _rule_names(sim) == ["dns"]  # a dry run changes nothing

        fixed = json.loads(_nfp(harness, "reconcile", nf["id"], "--json"))
        assert fixed["result"] == "repaired", fixed
        assert _rule_names(sim) == ["dns", "web"]
        audit = json.loads(_nfp(harness, "audit", "reconcile", "--nf", nf["id"], "--json"))
        assert [a["result"] for a in audit[:2]] == ["repaired", "drift"], audit
        again = json.loads(_nfp(harness, "reconcile", nf["id"], "--dry-run", "--json"))
        assert again["result"] == "in_sync", again


def test_rule_added_on_the_appliance_is_flagged_then_pruned(tmp_path):
    with PfSenseSimulator(api_key="rc-KEY-0b9e4d") as sim, \
            orchestrator_for(sim, tmp_path, reconcile={"interval": 0}) as (harness, _engine):
        nf = harness.client.create_network_function(firewall_nf("pfsense", FIREWALL, PORT_FORWARDING))
        harness.wait_for_status(nf["id"], "ACTIVE", timeout=60)
        sim.drift({"op": "add", "model": "firewall/rule", "object": {  # an operator's hand edit
            "type": "pass", "interface": ["lan"], "protocol": "tcp", "source": "any",
            "destination": "198.18.20.9", "destination_port": "23", "descr": "hand-added telnet: by hand"}})
        assert _rule_names(sim) == ["dns", "telnet", "web"]

        dry = json.loads(_nfp(harness, "reconcile", nf["id"], "--dry-run", "--json"))
        assert [e["name"] for e in dry["extra"]] == ["hand-added telnet: by hand"], dry
        assert dry["missing"] == [] and dry["changed"] == [], dry
        flagged = json.loads(_nfp(harness, "reconcile", nf["id"], "--json"))  # policy repair flags it
        assert [(a["action"], a["result"]) for a in flagged["actions"]] == [("flag", "flagged")], flagged
        assert _rule_names(sim) == ["dns", "telnet", "web"]

        pruned = json.loads(_nfp(harness, "reconcile", nf["id"], "--policy", "repair-and-prune", "--json"))
        assert pruned["result"] == "repaired", (pruned["actions"], pruned["error"])
        assert [(a["found"], a["action"], a["result"]) for a in pruned["actions"]] == [
            ("extra", "delete", "done")], pruned
        assert _rule_names(sim) == ["dns", "web"]  # gone from the appliance, nfp's own rules kept
        again = json.loads(_nfp(harness, "reconcile", nf["id"], "--dry-run", "--json"))
        assert again["result"] == "in_sync", again
