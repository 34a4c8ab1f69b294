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
