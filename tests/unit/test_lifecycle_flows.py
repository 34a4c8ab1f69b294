"""The network function lifecycle of :mod:`nfp.flows`, step by step, on a fake clock.

Every test runs the real handlers, executor and event table in the test's thread
(:class:`nfp.testing.engine.InProcessEngine`); device polls and waits are skipped
through with ``advance`` instead of slept through. The transition table is
tested on its own at the end.
"""
from __future__ import annotations

import dataclasses
import traceback
from types import SimpleNamespace

import pytest

from nfp import config as nfp_config
from nfp.api.endpoints import OrchestratorEndpoints
from nfp.db.models import NetworkFunction, NetworkFunctionDevice, NetworkFunctionInstance
from nfp.drivers.device.static import StaticDeviceDriver
from nfp import clock
from nfp.engine.events import EventSpec, done, wait
from nfp.engine.registry import Registry
from nfp.flows import (DEVICE_TRANSITIONS, FLOWS, INSTANCE_TRANSITIONS, NF_TRANSITIONS, OP_STATUS,
                       DeviceStatus, IllegalTransition, InstanceStatus, NFStatus,
                       set_device_status, set_instance_status, set_nf_status)
from nfp.rpc.types import IncomingRequest
from nfp.testing.engine import InProcessEngine, call_step
from nfp.testing.memory_config import read_device
from nfp.workers.configurator.client import ConfigOutcome
from nfp.workers.lifecycle.app import ORCHESTRATOR
from nfp.workers.lifecycle.services import Services, sync_static_inventory

FW = {"config": [{"resource": "firewall", "resource_data": {"rules": [
    {"name": "web", "protocol": "tcp", "destination_port": 80, "action": "allow"}]}}]}
LB = {"config": [{"resource": "loadbalancer", "resource_data": {
    "vip_address": "198.18.2.10", "protocol_port": 80, "members": []}}]}
POLL_INTERVAL, POLL_MAX = 10.0, 5


# -- stand-ins ---------------------------------------------------------------------------
class FakeCloud(StaticDeviceDriver):
    """A device driver that creates a device per NF, as a cloud would. Each device
    reports ``status``; deleting one raises ``delete_error`` if set."""

    def __init__(self, conf, status="ACTIVE", delete_error=None):
        super().__init__(conf, {})
        self.status, self.delete_error = status, delete_error
        self.created, self.deleted = [], []

    def select_network_function_device(self, devices, device_data):
        return None  # never share: every NF gets a fresh device

    def create_network_function_device(self, device_data):
        self.created.append(f"vm-{len(self.created) + 1}")
        return {"id": self.created[-1], "name": device_data["name"], "max_interfaces": 4,
                "mgmt_ip_address": "192.0.2.10"}

    def get_network_function_device_status(self, device_data):
        return self.status

    def plug_network_function_device_interface(self, device_data):
        return True

    def delete_network_function_device(self, device_data):
        if self.delete_error is not None:
            raise self.delete_error
        self.deleted.append(device_data["id"])


class StubServices(Services):
    """The orchestrator's services with a stand-in device driver and/or configurator."""

    def __init__(self, conf, driver=None, configurator=None):
        super().__init__(conf)
        self.stub_driver = driver
        if configurator is not None:
            self.configurator = configurator

    def device_driver(self, device_type):
        return self.stub_driver or super().device_driver(device_type)


class RecordingConfigurator:
    """Answers every configure call with ``ok`` (or raises ``error``) and records it."""

    def __init__(self, ok=True, error=None):
        self.ok, self.error, self.calls = ok, error, []

    def configure(self, operation, service_type, config, device, nf_id=None, tenant_id=None):
        self.calls.append((operation, service_type, device.id, nf_id))
        if self.error is not None:
            raise self.error
        return ConfigOutcome(self.ok, None if self.ok else "refused")


def _orchestrator(tmp_path, driver=None, configurator=None):
    conf = nfp_config.load(None, {
        "state_dir": str(tmp_path), "config_drivers": {"memory": {}},
        "orchestrator": {"device_poll_interval": POLL_INTERVAL, "device_poll_max": POLL_MAX}},
        environ={})
    app = ORCHESTRATOR
    if driver is not None or configurator is not None:
        app = dataclasses.replace(ORCHESTRATOR,
                                  services=lambda c: StubServices(c, driver, configurator))
    engine = InProcessEngine(app, conf=conf)
    with engine.sessionmaker.begin() as s:
        sync_static_inventory(conf, s)
    return conf, engine, OrchestratorEndpoints(conf, engine.sessionmaker, engine.submit)


@pytest.fixture
def orchestrator(tmp_path):
    conf, engine, endpoints = _orchestrator(tmp_path)
    yield conf, engine, endpoints
    engine.close()


def _req(method, uid, **args):
    return IncomingRequest(method=method, args=args, msg_id=None, unique_id=uid)


def _create(endpoints, config=FW, service_type="firewall", uid="c1"):
    out = endpoints.handle_mutations([_req("create_network_function", uid, network_function={
        "tenant_id": "t1", "service_config": config,
        "service_profile": {"service_type": service_type, "service_flavor": "memory"}})])
    assert out[0].error is None, out[0].error
    return out[0].result["id"]


def _get(engine, model, row_id):
    with engine.sessionmaker() as s:
        return s.get(model, row_id)


def _notified(engine):
    return [event_type for event_type, _ in engine.notifications]


def _polls(engine):
    return sum(c.type == "device.wait_up" for c in engine.calls)


def _row(engine, ref):
    return next(e for e in engine.events() if e.id == ref.id)


# -- create ------------------------------------------------------------------------------
def test_create_runs_the_declared_steps_in_order(orchestrator):
    _, engine, endpoints = orchestrator
    nf_id = _create(endpoints)
    engine.join()
    # a device that answers skips the wait for its management link (device.allocate's branch)
    assert engine.call_types(nf_id) == [t for t in FLOWS.order("create") if t != "device.reachable"]
    assert _get(engine, NetworkFunction, nf_id).status == "ACTIVE"
    assert _notified(engine) == ["nfp.network_function.create.end"]


def test_device_spawning_until_the_poll_limit_fails_the_create(tmp_path):
    cloud = FakeCloud(None, status="BUILD")
    _, engine, endpoints = _orchestrator(tmp_path, driver=cloud)
    with engine:
        nf_id = _create(endpoints)
        engine.join()
        assert _polls(engine) == 1
        engine.advance(POLL_INTERVAL * (POLL_MAX - 2))
        assert _polls(engine) == POLL_MAX - 1
        assert _get(engine, NetworkFunction, nf_id).status == "PENDING_CREATE"
        assert _get(engine, NetworkFunctionDevice, "vm-1").status == "DEVICE_SPAWNING"
        engine.advance(POLL_INTERVAL)
        assert _polls(engine) == POLL_MAX
        nf = _get(engine, NetworkFunction, nf_id)
        assert nf.status == "ERROR"
        assert f"device.wait_up: gave up after {POLL_MAX} polls" in nf.status_description
        with engine.sessionmaker() as s:
            nfi = s.query(NetworkFunctionInstance).filter_by(network_function_id=nf_id).one()
            assert nfi.status == "ERROR" and "gave up" in nfi.status_description
        # the device never came up: it is no longer reported as spawning
        assert _get(engine, NetworkFunctionDevice, "vm-1").status == "DEVICE_NOT_UP"
        assert "device.plug" not in engine.call_types()
        assert _notified(engine) == ["nfp.network_function.create.error"]


# -- delete ------------------------------------------------------------------------------
def test_delete_preempts_a_create_waiting_for_its_device(tmp_path):
    cloud = FakeCloud(None, status="BUILD")
    _, engine, endpoints = _orchestrator(tmp_path, driver=cloud)
    with engine:
        nf_id = _create(endpoints)
        engine.join()
        assert engine.call_types()[-1] == "device.wait_up"
        endpoints.handle_mutations([_req("delete_network_function", "d1", network_function_id=nf_id)])
        engine.join()
        assert _get(engine, NetworkFunction, nf_id) is None
        waits = [e for e in engine.events(nf_id) if e.type == "device.wait_up"]
        assert [(e.status, e.error) for e in waits] == [("cancelled", "pre-empted")]
        calls_after_delete = engine.call_types()[engine.call_types().index("nf.delete"):]
        assert calls_after_delete == FLOWS.order("delete")
        assert cloud.deleted == ["vm-1"] and _get(engine, NetworkFunctionDevice, "vm-1") is None
        # the cancelled poll's timer still fires, but the step never runs again
        engine.advance(POLL_INTERVAL * POLL_MAX)
        assert _polls(engine) == 1
        assert _notified(engine) == ["nfp.network_function.delete.end"]


def test_a_failing_delete_step_continues_the_chain(tmp_path):
    cloud = FakeCloud(None, delete_error=RuntimeError("cloud API down"))
    _, engine, endpoints = _orchestrator(tmp_path, driver=cloud)
    with engine:
        nf_id = _create(endpoints)
        engine.join()
        endpoints.handle_mutations([_req("delete_network_function", "d1", network_function_id=nf_id)])
        engine.run_until_idle()  # not join(): the handler's exception is the point here
        steps = {e.type: e for e in engine.events(nf_id)}
        assert steps["device.release"].status == "failed"
        assert "RuntimeError: cloud API down" in steps["device.release"].error
        assert steps["nf.delete_done"].status == "done"
        assert _get(engine, NetworkFunction, nf_id) is None
        assert [str(e) for e in engine.errors] == ["cloud API down"]
        assert _notified(engine)[-1] == "nfp.network_function.delete.end"


# -- operations ----------------------------------------------------------------------------
def test_an_update_waits_behind_another_operation(orchestrator):
    conf, engine, endpoints = orchestrator
    nf_id = _create(endpoints, LB, "loadbalancerv2")
    engine.join()
    moved = {"config": [{"resource": "loadbalancer", "resource_data": {
        "vip_address": "198.18.2.11", "protocol_port": 80, "members": []}}]}
    endpoints.handle_mutations([
        _req("policy_target_added_notification", "pt1", network_function_id=nf_id,
             policy_target={"id": "pt-1", "ip_address": "198.18.2.21"}),
        _req("update_network_function", "up1", network_function_id=nf_id, config=moved)])
    assert _get(engine, NetworkFunction, nf_id).status == "PT_ADD_IN_PROGRESS"
    engine.join()
    # the PT add ran; the update is parked behind it, polling once a second
    lb = read_device(conf.state_path, "memory-appliance-1")[nf_id]["loadbalancer"]
    assert [m["address"] for m in lb["members"]] == ["198.18.2.21"]
    assert lb["vip_address"] == "198.18.2.10"
    queued = [e for e in engine.events(nf_id) if e.type == "nf.op" and e.status == "pending"]
    assert len(queued) == 1 and queued[0].payload["op"] == "update"
    assert _get(engine, NetworkFunction, nf_id).status == "ACTIVE"
    engine.advance(1.0)
    engine.join()
    lb = read_device(conf.state_path, "memory-appliance-1")[nf_id]["loadbalancer"]
    assert lb["vip_address"] == "198.18.2.11"  # the update's config replaced the whole LB
    assert [c.payload["op"] for c in engine.calls if c.type == "service.apply"] == ["pt_add", "update"]
    nf = _get(engine, NetworkFunction, nf_id)
    assert nf.status == "ACTIVE" and nf.operation is None


# -- the test engine itself ---------------------------------------------------------------
def test_join_reraises_a_handler_bug(tmp_path):
    buggy = RecordingConfigurator(error=ZeroDivisionError("division by zero"))
    _, engine, endpoints = _orchestrator(tmp_path, configurator=buggy)
    with engine:
        nf_id = _create(endpoints)
        with pytest.raises(ZeroDivisionError) as caught:
            engine.join()
        frames = [f.name for f in traceback.extract_tb(caught.value.__traceback__)]
        assert ["healthcheck", "configure"] == [f for f in frames if f in ("healthcheck", "configure")]
        nf = _get(engine, NetworkFunction, nf_id)
        assert nf.status == "ERROR" and "ZeroDivisionError" in nf.status_description
        engine.join()  # the error was reported once


def test_call_step_with_a_stub_configurator(orchestrator):
    conf, engine, endpoints = orchestrator
    nf_id = _create(endpoints)
    engine.join()
    stub = RecordingConfigurator()
    with engine.sessionmaker() as s:
        outcome = call_step(ORCHESTRATOR, "service.configure", nf_id,
                            services=SimpleNamespace(conf=conf, configurator=stub), session=s)
    assert (outcome.kind, outcome.result, outcome.emit) == ("done", {"resources": 1}, [])
    assert stub.calls == [("create", "firewall", "memory-appliance-1", nf_id)]
    with engine.sessionmaker() as s:
        refused = call_step(ORCHESTRATOR, "service.configure", nf_id, session=s,
                            services=SimpleNamespace(conf=conf, configurator=RecordingConfigurator(ok=False)))
        # a flow step's outcome carries the successor its flow declares
        created = call_step(ORCHESTRATOR, "nf.create", nf_id, session=s, services=None)
        s.rollback()
    assert (refused.kind, refused.reason) == ("fail", "service configuration failed: refused")
    assert created.emit == [EventSpec("device.allocate", nf_id)]


TIMED = Registry()


@TIMED.handler("test.park")
def _park(step):
    return wait(30) if step.notification is None else done()


@TIMED.handler("test.slow_device", deadline=60)
def _slow_device(step):
    step.checkpoint()
    clock.sleep(61)  # a fake device taking a minute: time passes, nobody waits
    return done({"late": True})


def test_fake_clock_enforces_deadlines_and_times_out_a_parked_step():
    with InProcessEngine(TIMED) as engine:
        slow, = engine.add([EventSpec("test.slow_device", "s")])
        engine.join()
        # failed by the watchdog while it "ran"; its late done() was dropped
        assert (_row(engine, slow).status, _row(engine, slow).error) == ("failed", "step deadline exceeded")
        park, = engine.add([EventSpec("test.park", "p")])
        engine.join()
        assert _row(engine, park).status == "waiting"
        engine.advance(29.9)
        assert _row(engine, park).status == "waiting"
        engine.advance(0.1)
        assert _row(engine, park).status == "failed" and "timed out waiting" in _row(engine, park).error


# -- the transition table ------------------------------------------------------------------
def test_an_illegal_transition_is_refused():
    nf = {"status": "PENDING_DELETE", "status_description": ""}
    with pytest.raises(IllegalTransition, match="PENDING_DELETE → ACTIVE"):
        set_nf_status(nf, NFStatus.ACTIVE)
    assert nf["status"] == "PENDING_DELETE"
    with pytest.raises(IllegalTransition):
        set_nf_status({}, NFStatus.ACTIVE)  # a new NF starts PENDING_CREATE
    with pytest.raises(IllegalTransition):
        set_instance_status({"status": "ACTIVE"}, InstanceStatus.ERROR)
    with pytest.raises(IllegalTransition):
        set_device_status({"status": "PENDING_DELETE"}, DeviceStatus.ACTIVE)
    set_nf_status(nf, NFStatus.PENDING_DELETE)  # setting the same status again is allowed


# what the RPC API and the handlers set (grep set_*_status in nfp/ and workers/)
SET_BY_CODE = {
    "nf": {NFStatus.PENDING_CREATE, NFStatus.ACTIVE, NFStatus.ERROR, NFStatus.PENDING_DELETE,
           *OP_STATUS.values()},
    "instance": {InstanceStatus.PENDING_CREATE, InstanceStatus.ACTIVE, InstanceStatus.ERROR},
    "device": {DeviceStatus.DEVICE_SPAWNING, DeviceStatus.ACTIVE, DeviceStatus.DEVICE_NOT_UP,
               DeviceStatus.PENDING_DELETE},
}


@pytest.mark.parametrize("kind, table, statuses", [
    ("nf", NF_TRANSITIONS, NFStatus), ("instance", INSTANCE_TRANSITIONS, InstanceStatus),
    ("device", DEVICE_TRANSITIONS, DeviceStatus)])
def test_every_status_is_reachable_from_a_new_row(kind, table, statuses):
    assert set(table) == {None, *statuses}  # every status has a row in the table
    reached, todo = set(), [None]
    while todo:
        for nxt in table[todo.pop()] - reached:
            reached.add(nxt)
            todo.append(nxt)
    assert SET_BY_CODE[kind] <= reached
    assert reached == set(statuses)
