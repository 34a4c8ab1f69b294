"""The engine and lifecycle in one process on SQLite: steps, graphs, polls,
pre-emption and failures, with the real handlers and the memory config driver."""
from __future__ import annotations

import time

import pytest

from nfp import config as nfp_config
from nfp.api.endpoints import OrchestratorEndpoints
from nfp.db import migrate
from nfp.db.engine import make_engine, make_sessionmaker
from nfp.db.models import Event, NetworkFunction
from nfp.engine import registry
from nfp.engine.executor import Executor
from nfp.engine.scheduler import KeyScheduler
from nfp.rpc.types import IncomingRequest
from nfp.testing.memory_config import read_device
from nfp.workers.lifecycle.services import Services, sync_static_inventory

FW = {"config": [{"resource": "firewall", "resource_data": {"rules": [
    {"name": "web", "protocol": "tcp", "destination_port": 80, "action": "allow",
     "destination_ip_address": "198.18.1.0/24"}]}}]}


@pytest.fixture
def engine_env(tmp_path):
    conf = nfp_config.load(None, {"state_dir": str(tmp_path), "config_drivers": {"memory": {}}},
                           environ={})
    migrate.upgrade(conf.database_url)
    engine = make_engine(conf.database_url)
    sm = make_sessionmaker(engine)
    with sm.begin() as s:
        sync_static_inventory(conf, s)
    registry.load_all()
    services = Services(conf, sm)
    sched = KeyScheduler(Executor(sm, services), threads=4)
    stop = sched.run_timers_in_background()
    endpoints = OrchestratorEndpoints(conf, sm, sched.offer)
    yield conf, sm, endpoints, sched
    stop.set()
    sched.close()
    engine.dispose()


def _req(method, uid=None, call=True, **args):
    return IncomingRequest(method=method, args=args, msg_id="m" if call else None, unique_id=uid)


def _wait(sm, nf_id, status, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        with sm() as s:
            nf = s.get(NetworkFunction, nf_id)
            if (nf is None and status is None) or (nf is not None and nf.status == status):
                return nf
        time.sleep(0.05)
    raise AssertionError(f"{nf_id} never reached {status}")


def _create(endpoints, uid="u1", config=FW, vendor="memory"):
    out = endpoints.handle_mutations([_req("create_network_function", uid, network_function={
        "name": "fw", "tenant_id": "t1", "service_config": config,
        "service_profile": {"service_type": "firewall",
                            "service_flavor": f"service_vendor={vendor},device_type=static"}})])
    assert out[0].error is None, out[0].error
    return out[0].result


def test_create_reaches_active_and_config_lands_on_device(engine_env):
    conf, sm, endpoints, _ = engine_env
    nf = _create(endpoints)
    assert nf["status"] == "PENDING_CREATE"
    _wait(sm, nf["id"], "ACTIVE")
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
    conf, sm, endpoints, _ = engine_env
    nf = _create(endpoints)
    _wait(sm, nf["id"], "ACTIVE")
    endpoints.handle_mutations([_req("delete_network_function", "d1", network_function_id=nf["id"])])
    _wait(sm, nf["id"], None)
    assert nf["id"] not in read_device(conf.state_path, "memory-appliance-1")
    from nfp.db.models import NetworkFunctionDevice
    with sm() as s:
        assert s.get(NetworkFunctionDevice, "memory-appliance-1").interfaces_in_use == 0


def test_update_then_pt_add_applies_in_order(engine_env):
    conf, sm, endpoints, _ = engine_env
    lb = {"config": [{"resource": "loadbalancer", "resource_data": {
        "vip_address": "198.18.2.10", "protocol_port": 80, "members": []}}]}
    out = endpoints.handle_mutations([_req("create_network_function", "lb1", network_function={
        "tenant_id": "t", "service_config": lb,
        "service_profile": {"service_type": "loadbalancerv2", "service_flavor": "memory"}})])
    nf_id = out[0].result["id"]
    endpoints.handle_mutations([_req("policy_target_added_notification", "pt1", call=False,
                                     network_function_id=nf_id,
                                     policy_target={"id": "pt-1", "ip_address": "198.18.2.21"})])
    _wait(sm, nf_id, "ACTIVE")
    deadline = time.time() + 10
    while time.time() < deadline:
        members = read_device(conf.state_path, "memory-appliance-1").get(nf_id, {}).get(
            "loadbalancer", {}).get("members", [])
        if members:
            break
        time.sleep(0.05)
    assert [m["address"] for m in members] == ["198.18.2.21"]


def test_failing_device_config_sets_error_with_reason(tmp_path):
    conf = nfp_config.load(None, {"state_dir": str(tmp_path),
                                  "config_drivers": {"memory": {"fail_resources": ["firewall"]}}},
                           environ={})
    migrate.upgrade(conf.database_url)
    sm = make_sessionmaker(make_engine(conf.database_url))
    with sm.begin() as s:
        sync_static_inventory(conf, s)
    registry.load_all()
    sched = KeyScheduler(Executor(sm, Services(conf, sm)), threads=2)
    endpoints = OrchestratorEndpoints(conf, sm, sched.offer)
    nf = _create(endpoints)
    got = _wait(sm, nf["id"], "ERROR")
    assert "device refused firewall" in got.status_description
    sched.close()


def test_engine_noop_chain_runs_every_link(engine_env):
    _, sm, _, sched = engine_env
    from nfp.engine import store
    from nfp.engine.events import EventSpec
    with sm.begin() as s:
        refs = store.add(s, [EventSpec("engine.noop", f"chain-{i}", {"remaining": 20}) for i in range(5)])
    sched.offer(refs)
    end = time.time() + 20
    while time.time() < end:
        with sm() as s:
            done = s.query(Event).filter(Event.type == "engine.noop", Event.status == "done").count()
        if done == 5 * 21:
            break
        time.sleep(0.05)
    assert done == 5 * 21
