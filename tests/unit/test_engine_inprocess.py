"""The engine and lifecycle in one process on SQLite: steps, graphs, polls,
pre-emption and failures, with the real handlers and the memory config driver.

Steps run in the test's thread through :class:`nfp.testing.engine.InProcessEngine`:
``join()`` returns once every due step has run, so nothing sleeps or polls."""
from __future__ import annotations

import pytest

from nfp import config as nfp_config
from nfp.api.endpoints import OrchestratorEndpoints
from nfp.db.models import Event, NetworkFunction, NetworkFunctionDevice
from nfp.engine.events import EventSpec
from nfp.rpc.types import IncomingRequest
from nfp.testing.engine import InProcessEngine
from nfp.testing.memory_config import read_device
from nfp.workers.lifecycle.app import ORCHESTRATOR
from nfp.workers.lifecycle.services import sync_static_inventory

FW = {"config": [{"resource": "firewall", "resource_data": {"rules": [
    {"name": "web", "protocol": "tcp", "destination_port": 80, "action": "allow",
     "destination_ip_address": "198.18.1.0/24"}]}}]}


def _orchestrator(tmp_path, memory_options=None):
    """The orchestrator application on a fresh SQLite file, with the memory inventory."""
    conf = nfp_config.load(None, {"state_dir": str(tmp_path),
                                  "config_drivers": {"memory": memory_options or {}}},
                           environ={})
    engine = InProcessEngine(ORCHESTRATOR, conf=conf)
    with engine.sessionmaker.begin() as s:
        sync_static_inventory(conf, s)
    return conf, engine, OrchestratorEndpoints(conf, engine.sessionmaker, engine.submit)


@pytest.fixture
def engine_env(tmp_path):
    conf, engine, endpoints = _orchestrator(tmp_path)
    yield conf, engine.sessionmaker, endpoints, engine
    engine.close()


def _req(method, uid=None, call=True, **args):
    return IncomingRequest(method=method, args=args, msg_id="m" if call else None, unique_id=uid)


def _nf(sm, nf_id):
    with sm() as s:
        return s.get(NetworkFunction, nf_id)


def _create(endpoints, uid="u1", config=FW, vendor="memory"):
    out = endpoints.handle_mutations([_req("create_network_function", uid, network_function={
        "name": "fw", "tenant_id": "t1", "service_config": config,
        "service_profile": {"service_type": "firewall",
                            "service_flavor": f"service_vendor={vendor},device_type=static"}})])
    assert out[0].error is None, out[0].error
    return out[0].result


def test_create_reaches_active_and_config_lands_on_device(engine_env):
    conf, sm, endpoints, engine = engine_env
    nf = _create(endpoints)
    assert nf["status"] == "PENDING_CREATE"
    engine.join()
    assert _nf(sm, nf["id"]).status == "ACTIVE"
    state = read_device(conf.state_path, "memory-appliance-1")
    assert state[nf["id"]]["firewall"]["rules"][0]["destination_port"] == "80"


def test_duplicate_unique_id_creates_once(engine_env):
    _, sm, endpoints, _ = engine_env
    first = _create(endpoints, uid="same")
    second = _create(endpoints, uid="same")
    assert first["id"] == second["id"]
    with sm() as s:
        assert s.query(NetworkFunction).count() == 1


def test_bad_field_is_named(engine_env):
    _, _, endpoints, _ = engine_env
    bad = {"config": [{"resource": "firewall", "resource_data": {"rules": [
        {"name": "x", "destination_port": 70000}]}}]}
    out = endpoints.handle_mutations([_req("create_network_function", "u2", network_function={
        "tenant_id": "t", "service_config": bad,
        "service_profile": {"service_type": "firewall", "service_flavor": "memory"}})])
    assert "network_function.service_config.config[0].resource_data.rules.0.destination_port" in str(out[0].error)


def test_delete_removes_nf_and_frees_device(engine_env):
    conf, sm, endpoints, engine = engine_env
    nf = _create(endpoints)
    engine.join()
    assert _nf(sm, nf["id"]).status == "ACTIVE"
    endpoints.handle_mutations([_req("delete_network_function", "d1", network_function_id=nf["id"])])
    engine.join()
    assert _nf(sm, nf["id"]) is None
    assert nf["id"] not in read_device(conf.state_path, "memory-appliance-1")
    with sm() as s:
        assert s.get(NetworkFunctionDevice, "memory-appliance-1").interfaces_in_use == 0


def test_update_then_pt_add_applies_in_order(engine_env):
    conf, sm, endpoints, engine = engine_env
    lb = {"config": [{"resource": "loadbalancer", "resource_data": {
        "vip_address": "198.18.2.10", "protocol_port": 80, "members": []}}]}
    out = endpoints.handle_mutations([_req("create_network_function", "lb1", network_function={
        "tenant_id": "t", "service_config": lb,
        "service_profile": {"service_type": "loadbalancerv2", "service_flavor": "memory"}})])
    nf_id = out[0].result["id"]
    endpoints.handle_mutations([_req("policy_target_added_notification", "pt1", call=False,
                                     network_function_id=nf_id,
                                     policy_target={"id": "pt-1", "ip_address": "198.18.2.21"})])
    engine.join()
    assert _nf(sm, nf_id).status == "ACTIVE"
    # the PT add waited behind the create; its next try is one busy-wait poll (1 s) away
    engine.advance(1.0)
    engine.join()
    members = read_device(conf.state_path, "memory-appliance-1").get(nf_id, {}).get(
        "loadbalancer", {}).get("members", [])
    assert [m["address"] for m in members] == ["198.18.2.21"]


def test_failing_device_config_sets_error_with_reason(tmp_path):
    _, engine, endpoints = _orchestrator(tmp_path, {"fail_resources": ["firewall"]})
    with engine:
        nf = _create(endpoints)
        engine.join()
        got = _nf(engine.sessionmaker, nf["id"])
        assert got.status == "ERROR"
        assert "device refused firewall" in got.status_description


def test_engine_noop_chain_runs_every_link(engine_env):
    _, sm, _, engine = engine_env
    engine.add([EventSpec("engine.noop", f"chain-{i}", {"remaining": 20}) for i in range(5)])
    engine.join()
    with sm() as s:
        done = s.query(Event).filter(Event.type == "engine.noop", Event.status == "done").count()
    assert done == 5 * 21
