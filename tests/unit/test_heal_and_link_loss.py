"""Auto-heal decisions (cooldown, back-off, fleet circuit breaker) on a fake clock, and
management-link loss (seed 004) through the real flows on the in-process engine: an
UNREACHABLE device leaves its NF ACTIVE and degraded, operations wait durably, and
when the link returns the reconcile runs first, then the queued operations in order."""
from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest
from nfp.workers.health.heal import Healer, HealState, Seen, decide
from nfp.workers.health.monitor import DeviceSpec
from nfp.workers.health.probes import Target
from nfp.workers.health.state import Change
from nfp.workers.health.store import HealthSink
from nfp.workers.lifecycle.app import ORCHESTRATOR
from nfp.workers.lifecycle.services import sync_static_inventory
from nfp.workers.reconcile.schedule import runs

from nfp import config as nfp_config
from nfp.api.endpoints import OrchestratorEndpoints
from nfp.db.models import Event, NetworkFunction, NetworkFunctionDevice
from nfp.rpc.types import IncomingRequest
from nfp.testing.engine import InProcessEngine
from nfp.testing.memory_config import device_dir, read_device

DEVICE = "memory-appliance-1"
HEAL = SimpleNamespace(after=30.0, cooldown=60.0, max_backoff=600.0, breaker_share=0.5,
                       breaker_min_devices=3)


def _fleet(down: int, total: int = 5, since: float = 0.0):
    return [Seen(f"d{i}", "UNREACHABLE" if i < down else "HEALTHY", since, (f"nf{i}",))
            for i in range(total)]


# -- decisions -------------------------------------------------------------------------
def test_a_device_down_past_the_threshold_is_healed_with_exponential_back_off():
    state = HealState()
    assert decide(_fleet(1), 29.0, HEAL, state).heal == []  # not DOWN long enough yet
    first = decide(_fleet(1), 30.0, HEAL, state)
    assert [(s.device_id, n) for s, n in first.heal] == [("d0", 1)]
    assert decide(_fleet(1), 89.0, HEAL, state).heal == []  # cooldown
    assert [n for _, n in decide(_fleet(1), 90.0, HEAL, state).heal] == [2]
    assert decide(_fleet(1), 209.0, HEAL, state).heal == []  # twice the cooldown now
    assert [n for _, n in decide(_fleet(1), 210.0, HEAL, state).heal] == [3]
    # HEALTHY for a whole cooldown: the next outage starts from attempt 1 again
    decide(_fleet(0), 300.0, HEAL, state)
    assert [n for _, n in decide(_fleet(1, since=300.0), 330.0, HEAL, state).heal] == [1]


def test_sixty_percent_down_at_once_trips_the_breaker_instead_of_healing():
    state = HealState()
    tripped = decide(_fleet(3), 100.0, HEAL, state)
    assert tripped.heal == [] and tripped.breaker_open and tripped.breaker_changed
    assert decide(_fleet(3), 200.0, HEAL, state).heal == []
    assert not decide(_fleet(3), 200.0, HEAL, state).breaker_changed  # one alarm, not one a tick
    recovered = decide(_fleet(1), 300.0, HEAL, state)
    assert not recovered.breaker_open and recovered.breaker_changed
    assert [s.device_id for s, _ in recovered.heal] == ["d0"]
    assert state.breaker_trips == 1
    # a fleet below breaker_min_devices is never judged: one device of one is healed
    assert decide([Seen("solo", "UNHEALTHY", 0.0, ("nf",))], 100.0, HEAL, HealState()).heal


def test_the_breaker_alarm_is_logged_notified_and_counted(caplog):
    notes = []
    conf = SimpleNamespace(heal=SimpleNamespace(enabled=True, **vars(HEAL)))
    healer = Healer(conf, sessionmaker=None, on_refs=lambda refs: None,
                    on_notify=lambda t, p: notes.append((t, p)))
    assert healer.tick(_fleet(3), 100.0) == 0
    assert notes == [("nfp.device.heal.breaker_open", {"down": 3, "watched": 5, "breaker_share": 0.5})]
    assert "circuit breaker OPEN" in caplog.text
    assert healer.snapshot() == {"breaker_open": True, "heals": 0, "breaker_trips": 1}


# -- the flows on the in-process engine ---------------------------------------------------
RULES = [{"name": "web", "protocol": "tcp", "destination_port": 80, "action": "allow"}]


@pytest.fixture
def env(tmp_path):
    conf = nfp_config.load(None, {"state_dir": str(tmp_path), "reconcile": {"interval": 0},
                                  "orchestrator": {"unreachable_wait_max": 600}}, environ={})
    engine = InProcessEngine(ORCHESTRATOR, conf=conf)
    with engine.sessionmaker.begin() as s:
        sync_static_inventory(conf, s)
    endpoints = OrchestratorEndpoints(conf, engine.sessionmaker, engine.submit)
    nf_id = _mutate(endpoints, "create_network_function", "c1", network_function={
        "name": "fw", "tenant_id": "t1", "service_config": _fw(RULES),
        "service_profile": {"service_type": "firewall",
                            "service_flavor": "service_vendor=memory,device_type=static"}})["id"]
    engine.join()
    sink = HealthSink(engine.sessionmaker, on_change=lambda *a: None, on_refs=engine.submit)
    spec = DeviceSpec(DEVICE, Target(DEVICE, "192.0.2.1", 22), 10.0, (nf_id,))
    yield conf, engine, endpoints, nf_id, lambda old, new: sink.write_changes(
        [Change(DEVICE, old, new, "no answer" if new != "HEALTHY" else "", 1.0, None)], {DEVICE: spec})
    engine.close()


def _fw(rules):
    return {"config": [{"resource": "firewall", "resource_data": {"rules": rules}}]}


def _mutate(endpoints, method, uid, **args):
    out = endpoints.handle_mutations([IncomingRequest(method=method, args=args, msg_id="m", unique_id=uid)])
    assert out[0].error is None, out[0].error
    return out[0].result


def _nf(engine, nf_id):
    with engine.sessionmaker() as s:
        return s.get(NetworkFunction, nf_id)


def _rules(conf, nf_id):
    return [r["name"] for r in read_device(conf.state_path, DEVICE)[nf_id]["firewall"]["rules"]]


def test_operations_wait_while_unreachable_and_run_in_order_after_the_reconcile(env):
    conf, engine, endpoints, nf_id, health = env
    health("HEALTHY", "UNREACHABLE")
    nf = _nf(engine, nf_id)
    assert nf.status == "ACTIVE" and nf.degraded and "UNREACHABLE" in nf.degraded_reason
    two = [*RULES, {"name": "alt", "protocol": "tcp", "destination_port": 8080, "action": "allow"}]
    three = [*two, {"name": "dns", "protocol": "udp", "destination_port": 53, "action": "allow"}]
    _mutate(endpoints, "update_network_function", "u1", network_function_id=nf_id, config=_fw(two))
    _mutate(endpoints, "update_network_function", "u2", network_function_id=nf_id, config=_fw(three))
    engine.join()
    engine.advance(30)
    # still ACTIVE and degraded; the updates wait as steps in the event table, nothing reached the device
    assert _nf(engine, nf_id).status == "ACTIVE" and _rules(conf, nf_id) == ["web"]
    with engine.sessionmaker() as s:
        waiting = s.query(Event).filter_by(scope=nf_id, type="nf.op_wait", status="pending").all()
        assert len(waiting) == 2 and all(e.polls > 0 for e in waiting)
    health("UNREACHABLE", "HEALTHY")  # the link is back: a reconcile is started
    engine.join()
    for _ in range(10):
        engine.advance(1.0)
    calls = engine.call_types(nf_id)
    first_apply = calls.index("service.apply")
    assert "nf.reconcile" in calls[:first_apply]
    applied = [c.payload.get("op") for c in engine.calls if c.type == "service.apply"]
    assert applied == ["update", "update"]
    with engine.sessionmaker() as s:
        assert runs(s, nf_id)[0].trigger == "device_up"
    nf = _nf(engine, nf_id)
    assert nf.status == "ACTIVE" and not nf.degraded and nf.operation is None
    assert _rules(conf, nf_id) == ["web", "alt", "dns"]  # the later update won, as requested


def test_a_create_on_an_unreachable_shared_device_waits_for_the_link(env):
    """device.allocate skips device.reachable only for a device that answers: a
    second NF placed on the shared device while its link is lost waits, nothing
    is pushed, and it goes ACTIVE once the link is back."""
    conf, engine, endpoints, nf_id, health = env
    health("HEALTHY", "UNREACHABLE")
    second = _mutate(endpoints, "create_network_function", "c2", network_function={
        "name": "fw2", "tenant_id": "t1", "service_config": _fw(RULES),
        "service_profile": {"service_type": "firewall",
                            "service_flavor": "service_vendor=memory,device_type=static"}})["id"]
    engine.join()
    engine.advance(20)
    assert _nf(engine, second).status == "PENDING_CREATE" and second not in read_device(conf.state_path, DEVICE)
    with engine.sessionmaker() as s:
        waiting = s.query(Event).filter_by(scope=second, type="device.reachable", status="pending").one()
        assert waiting.polls > 0
    health("UNREACHABLE", "HEALTHY")
    for _ in range(5):
        engine.advance(1.0)
    assert _nf(engine, second).status == "ACTIVE" and _rules(conf, second) == ["web"]
    assert "device.reachable" in engine.call_types(second)
    assert "device.reachable" not in engine.call_types(nf_id)  # the first found it answering


def test_an_operation_past_the_wait_limit_fails_as_before(env):
    conf, engine, endpoints, nf_id, health = env
    health("HEALTHY", "UNREACHABLE")
    _mutate(endpoints, "update_network_function", "u1", network_function_id=nf_id, config=_fw([]))
    engine.join()
    engine.advance(700)
    nf = _nf(engine, nf_id)
    assert nf.status == "ERROR" and "nf.op_wait: gave up" in nf.status_description


def test_a_delete_waits_for_the_link_then_removes_the_config(env):
    conf, engine, endpoints, nf_id, health = env
    health("HEALTHY", "UNREACHABLE")
    _mutate(endpoints, "delete_network_function", "d1", network_function_id=nf_id, network_function_data={})
    engine.join()
    engine.advance(20)
    assert _nf(engine, nf_id) is not None and nf_id in read_device(conf.state_path, DEVICE)
    health("UNREACHABLE", "HEALTHY")
    engine.advance(2)
    assert _nf(engine, nf_id) is None and nf_id not in read_device(conf.state_path, DEVICE)


def test_a_static_device_down_is_healed_by_re_pushing_its_config(env):
    conf, engine, endpoints, nf_id, health = env
    health("HEALTHY", "UNHEALTHY")
    shutil.rmtree(device_dir(conf.state_path, DEVICE))  # the appliance restarted empty
    healer = Healer(conf, engine.sessionmaker, on_refs=engine.submit, on_notify=lambda *a: None)
    assert healer.tick([Seen(DEVICE, "UNHEALTHY", 0.0, (nf_id,))], 100.0) == 1
    assert healer.tick([Seen(DEVICE, "UNHEALTHY", 0.0, (nf_id,))], 101.0) == 0  # cooldown
    healer.state.devices.clear()  # even past its back-off, a heal still open is not doubled
    assert healer.tick([Seen(DEVICE, "UNHEALTHY", 0.0, (nf_id,))], 102.0) == 0
    engine.join()
    assert [c for c in engine.call_types(nf_id) if c in ("device.heal", "device.heal_configure")] == \
        ["device.heal", "device.heal_configure"]
    assert _rules(conf, nf_id) == ["web"]
    assert ("nfp.device.heal.end" in [t for t, _ in engine.notifications])
    with engine.sessionmaker() as s:
        assert s.get(NetworkFunctionDevice, DEVICE).heal_attempts == 1
