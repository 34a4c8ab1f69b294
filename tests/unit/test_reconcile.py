"""Drift reconciliation through the real flow on the in-process engine: the memory
config driver's device file is edited behind nfp's back, and a reconcile run
reports, repairs or prunes it per policy, recorded in reconciliation_log."""
from __future__ import annotations

import json

import pytest

from nfp import config as nfp_config
from nfp.api.endpoints import OrchestratorEndpoints
from nfp.db.models import ReconciliationLog
from nfp.rpc.types import IncomingRequest
from nfp.testing.engine import InProcessEngine
from nfp.testing.memory_config import read_device, write_element
from nfp.workers.lifecycle.app import ORCHESTRATOR
from nfp.workers.lifecycle.services import sync_static_inventory
from nfp.workers.reconcile import policy
from nfp.workers.reconcile.schedule import enqueue, run_dict, runs

DEVICE = "memory-appliance-1"
RULES = [{"name": "web", "protocol": "tcp", "destination_port": 80, "action": "allow"},
         {"name": "ssh", "protocol": "tcp", "destination_port": 22, "action": "allow"}]


@pytest.fixture
def env(tmp_path):
    conf = nfp_config.load(None, {"state_dir": str(tmp_path)}, environ={})
    engine = InProcessEngine(ORCHESTRATOR, conf=conf)
    with engine.sessionmaker.begin() as s:
        sync_static_inventory(conf, s)
    endpoints = OrchestratorEndpoints(conf, engine.sessionmaker, engine.submit)
    out = endpoints.handle_mutations([IncomingRequest(
        method="create_network_function", msg_id="m", unique_id="u1", args={"network_function": {
            "name": "fw", "tenant_id": "t1",
            "service_config": {"config": [{"resource": "firewall", "resource_data": {"rules": RULES}}]},
            "service_profile": {"service_type": "firewall",
                                "service_flavor": "service_vendor=memory,device_type=static"}}})])
    nf_id = out[0].result["id"]
    engine.join()
    yield conf, engine, nf_id
    engine.close()


def _edit_device(conf, nf_id, change):
    firewall = read_device(conf.state_path, DEVICE)[nf_id]["firewall"]
    change(firewall["rules"])
    write_element(conf.state_path, DEVICE, nf_id, "firewall", firewall)


def _run(engine, nf_id, **kwargs):
    with engine.sessionmaker.begin() as s:
        refs = enqueue(s, [nf_id], "on_demand", **kwargs)
    engine.submit(refs)
    engine.join()
    with engine.sessionmaker() as s:
        return run_dict(runs(s, nf_id, limit=1)[0])


def _rule_names(conf, nf_id):
    return [r["name"] for r in read_device(conf.state_path, DEVICE)[nf_id]["firewall"]["rules"]]


def test_in_sync_run_is_recorded(env):
    conf, engine, nf_id = env
    run = _run(engine, nf_id)
    assert run["result"] == "in_sync" and run["counts"] == {"missing": 0, "extra": 0, "changed": 0}


def test_missing_rule_reported_by_dry_run_then_repaired(env):
    conf, engine, nf_id = env
    _edit_device(conf, nf_id, lambda rules: rules.pop(1))
    dry = _run(engine, nf_id, dry_run=True)
    assert dry["result"] == "drift" and [m["name"] for m in dry["missing"]] == ["rules/ssh"]
    assert dry["actions"][0]["action"] == "report"
    assert _rule_names(conf, nf_id) == ["web"]
    fixed = _run(engine, nf_id)
    assert fixed["result"] == "repaired", fixed
    assert fixed["actions"] == [{"resource": "firewall", "name": "rules/ssh", "found": "missing",
                                 "action": "re-apply", "result": "done"}]
    assert _rule_names(conf, nf_id) == ["web", "ssh"]


def test_extra_rule_flagged_under_report_and_pruned_under_repair_and_prune(env):
    conf, engine, nf_id = env
    _edit_device(conf, nf_id, lambda rules: rules.append({"name": "rogue", "protocol": "tcp"}))
    flagged = _run(engine, nf_id, policy="report")
    assert [e["name"] for e in flagged["extra"]] == ["rules/rogue"] and flagged["result"] == "drift"
    pruned = _run(engine, nf_id, policy="repair-and-prune")
    assert pruned["result"] == "repaired" and pruned["actions"][0]["action"] == "delete"
    assert _rule_names(conf, nf_id) == ["web", "ssh"]


def test_runs_never_hold_rule_bodies(env):
    conf, engine, nf_id = env
    _edit_device(conf, nf_id, lambda rules: rules[0].update(destination_port="8443"))
    _run(engine, nf_id)
    with engine.sessionmaker() as s:
        row = s.query(ReconciliationLog).first()
        assert "8443" not in json.dumps(row.details) and "destination_port" not in json.dumps(row.details)


def test_reconcile_waits_for_a_running_operation(env):
    conf, engine, nf_id = env
    from nfp.db.models import NetworkFunction
    with engine.sessionmaker.begin() as s:
        s.get(NetworkFunction, nf_id).operation = "update:x"
        refs = enqueue(s, [nf_id], "on_demand")
    engine.submit(refs)
    engine.advance(10)
    with engine.sessionmaker() as s:
        assert runs(s, nf_id) == []
    with engine.sessionmaker.begin() as s:
        s.get(NetworkFunction, nf_id).operation = None
    engine.advance(5)
    with engine.sessionmaker() as s:
        assert runs(s, nf_id)[0].result == "in_sync"


def test_policy_plan_is_pure_and_checks_its_name():
    diff = {"resource": "firewall", "to_add": [{"name": "a"}], "to_change": [], "to_remove": [{"name": "x"}]}
    found = policy.plan([diff], "repair")
    assert found.apply == [(0, "create")]
    assert [a["action"] for a in found.actions] == ["re-apply", "flag"]
    assert policy.plan([diff], "repair-and-prune").apply == [(0, "update")]
    assert policy.plan([diff], "repair", dry_run=True).apply == []
    with pytest.raises(ValueError, match="policy"):
        policy.plan([diff], "fix-it")


def _intent_rules(engine, nf_id):
    from nfp.db.models import NetworkFunction
    from nfp.resources import parse_service_config
    with engine.sessionmaker() as s:
        elements = parse_service_config(s.get(NetworkFunction, nf_id).service_config)
    return {r["name"]: r for r in elements[0]["resource_data"]["rules"]}


def test_adopt_takes_the_device_values_into_the_intent_and_a_dry_run_then_finds_no_drift(env):
    conf, engine, nf_id = env

    from nfp.resources import parse_resource
    # a device reads back in nfp's own shape (as the linux driver's nft parser does)
    dns = parse_resource("firewall", {"rules": [{"name": "dns", "protocol": "udp", "destination_port": 53}]})

    def hand_edit(rules):
        rules.pop(1)                                   # ssh removed: missing
        rules[0]["destination_port"] = "8080"          # web changed
        rules.append(dns.model_dump(mode="json")["rules"][0])  # extra
    _edit_device(conf, nf_id, hand_edit)
    adopted = _run(engine, nf_id, policy="adopt")
    assert adopted["result"] == "adopted", [a["result"] for a in adopted["actions"]]
    assert {(a["name"], a["found"], a["action"]) for a in adopted["actions"]} == {
        ("rules/ssh", "missing", "adopt"), ("rules/web", "changed", "adopt"), ("rules/dns", "extra", "adopt")}
    assert all(a["result"].startswith("adopted") for a in adopted["actions"]), adopted["actions"]
    intent = _intent_rules(engine, nf_id)
    assert sorted(intent) == ["dns", "web"] and intent["web"]["destination_port"] == "8080"
    assert _rule_names(conf, nf_id) == ["web", "dns"]  # the device was not touched
    dry = _run(engine, nf_id, dry_run=True)
    assert dry["result"] == "in_sync", dry


def test_adopt_refuses_a_device_value_the_schema_rejects_and_keeps_the_intent(env):
    conf, engine, nf_id = env
    _edit_device(conf, nf_id, lambda rules: rules.append({"name": "odd", "protocol": "tcp",
                                                          "destination_port": "not-a-port"}))
    run = _run(engine, nf_id, policy="adopt")
    assert run["result"] == "partial", run
    assert run["actions"][0]["result"].startswith("not adopted: the device's value is no valid firewall item")
    assert sorted(_intent_rules(engine, nf_id)) == ["ssh", "web"]
    assert "not-a-port" not in json.dumps(run)  # the audit record holds names and reasons only
