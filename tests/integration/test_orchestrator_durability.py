"""The real daemon on RabbitMQ and PostgreSQL, driven by a stock oslo.messaging client.

- an upstream-shaped create reaches ACTIVE, is deleted and is gone;
- 200 creates survive ``kill -9`` of a worker, and in a separate run of the
  listener: every NF reaches ACTIVE exactly once.
"""
from __future__ import annotations

import os
import signal
import time
import uuid

import pytest
from sqlalchemy import create_engine, func, select

from nfp.db.models import Event, NetworkFunction
from nfp.testing.harness import Harness
from nfp.testing.memory_config import read_device

pytestmark = pytest.mark.integration

FW = {"config": [{"resource": "firewall", "resource_data": {"rules": [
    {"name": "web", "protocol": "tcp", "destination_ip_address": "198.18.10.0/24",
     "destination_port": "80", "action": "allow"}]}}]}


@pytest.fixture
def oslo():
    """A stock oslo.messaging RPC client factory."""
    import oslo_messaging
    from oslo_config import cfg
    transports = []

    def make(topic: str, **prepare):
        transport = oslo_messaging.get_rpc_transport(cfg.CONF,
                                                     url="rabbit://guest:guest@127.0.0.1:5672/")
        transports.append(transport)
        target = oslo_messaging.Target(topic=topic, version="1.0")
        return oslo_messaging.get_rpc_client(transport, target).prepare(**prepare)
    yield make
    for transport in transports:
        transport.cleanup()


def upstream_payload(name: str, tenant: str = "tenant-1") -> dict:
    """What a GBP node driver sends (reference/upstream-gbp-nfp.md §2.2)."""
    ptg = uuid.uuid4().hex
    return {
        "resource_owner_context": {"admin_token": "tok-secret-do-not-store", "admin_tenant_id": "a"},
        "service_chain_instance": {"id": str(uuid.uuid4()), "name": "sci"},
        "service_chain_node": {"id": str(uuid.uuid4()), "name": "node", "config": None},
        "service_profile": {"id": str(uuid.uuid4()), "service_type": "FIREWALL",
                            "service_flavor": "service_vendor=memory,device_type=static"},
        "service_config": FW,
        "provider": {"pt": {"id": str(uuid.uuid4())}, "ptg": {"id": ptg},
                     "port": {"id": str(uuid.uuid4()), "mac_address": "fa:16:3e:00:00:01",
                              "fixed_ips": [{"ip_address": "198.18.10.5"}], "network_id": "net-p"},
                     "subnet": {"cidr": "198.18.10.0/24", "gateway_ip": "198.18.10.1"},
                     "port_model": "gbp_policy_target", "port_classification": "provider"},
        "consumer": {"pt": None, "ptg": None, "port": None, "subnet": None, "port_model": None,
                     "port_classification": "consumer"},
        "management": {"id": "mgmt-ptg"}, "management_ptg_id": "mgmt-ptg",
        "network_function_mode": "gbp", "tenant_id": tenant, "name": name,
        "consuming_ptgs_details": [], "consuming_eps_details": [], "service_chain_specs": [],
    }


def _harness(tmp_path, rabbit_url, pg_url, **memory_opts):
    return Harness(tmp_path, database_url=pg_url, transport_url=rabbit_url, workers=2,
                   config={"config_drivers": {"memory": memory_opts},
                           "orchestrator": {"threads_per_worker": 8}})


def test_oslo_client_create_active_delete_gone(tmp_path, rabbit_url, pg_url, oslo):
    with _harness(tmp_path, rabbit_url, pg_url) as h:
        client = oslo(h.conf.rpc.topic)
        nf = client.call({}, "create_network_function", network_function=upstream_payload("fw-a"))
        assert nf["status"] == "PENDING_CREATE" and nf["service_type"] == "firewall"
        end = time.time() + 60
        while time.time() < end:
            got = client.call({}, "get_network_function", network_function_id=nf["id"])
            if got["status"] in ("ACTIVE", "ERROR"):
                break
            time.sleep(0.1)
        assert got["status"] == "ACTIVE", got
        details = client.call({}, "get_network_function_details", network_function_id=nf["id"])
        assert details["network_function_device"]["id"] == "memory-appliance-1"
        assert details["network_function_instance"]["status"] == "ACTIVE"
        listed = client.call({}, "get_network_functions",
                             filters={"tenant_id": ["tenant-1"], "status": ["ACTIVE"]})
        assert [n["id"] for n in listed] == [nf["id"]]
        assert nf["id"] in read_device(h.state_dir, "memory-appliance-1")
        client.cast({}, "delete_network_function", network_function_id=nf["id"],
                    network_function_data=upstream_payload("fw-a"))
        end = time.time() + 60
        while time.time() < end and client.call({}, "get_network_function",
                                                 network_function_id=nf["id"]) is not None:
            time.sleep(0.1)
        assert client.call({}, "get_network_function", network_function_id=nf["id"]) is None
        assert nf["id"] not in read_device(h.state_dir, "memory-appliance-1")
        # the admin token the caller sent was never stored
        engine = create_engine(pg_url)
        with engine.connect() as conn:
            dump = " ".join(str(r) for r in conn.execute(select(Event.payload, Event.result)))
        engine.dispose()
        assert "tok-secret-do-not-store" not in dump
        assert "tok-secret-do-not-store" not in h.logs()


def _cast_creates(client, names):
    for name in names:
        client.cast({}, "create_network_function", network_function=upstream_payload(name))


def _wait_all_active(pg_url, n, timeout=240):
    engine = create_engine(pg_url)
    end = time.time() + timeout
    try:
        while time.time() < end:
            with engine.connect() as conn:
                rows = conn.execute(select(NetworkFunction.status, func.count())
                                    .group_by(NetworkFunction.status)).all()
            counts = dict(rows)
            if counts.get("ACTIVE", 0) >= n and sum(counts.values()) >= n:
                return counts
            time.sleep(0.25)
        return counts
    finally:
        engine.dispose()


def _assert_exactly_once(pg_url, names, state_dir):
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        nfs = conn.execute(select(NetworkFunction.id, NetworkFunction.name, NetworkFunction.status)).all()
        finishes = conn.execute(select(Event.scope, func.count()).where(
            Event.type == "nf.configured", Event.status == "done").group_by(Event.scope)).all()
    engine.dispose()
    assert sorted(n.name for n in nfs) == sorted(names), "an NF was lost or duplicated"
    assert {n.status for n in nfs} == {"ACTIVE"}
    assert len(finishes) == len(names) and all(count == 1 for _, count in finishes), \
        "some NF became ACTIVE more than once"
    device = read_device(state_dir, "memory-appliance-1")
    assert {n.id for n in nfs} <= set(device)


def test_200_creates_survive_kill9_of_a_worker(tmp_path, rabbit_url, pg_url, oslo):
    names = [f"w-{i:03d}" for i in range(200)]
    config = {"device_drivers": {"static": {"devices": [
        {"id": "memory-appliance-1", "service_vendor": "memory", "max_interfaces": 1000}]}}}
    h = Harness(tmp_path, database_url=pg_url, transport_url=rabbit_url, workers=2,
                config={**config, "config_drivers": {"memory": {"delay": 0.01}}})
    with h:
        client = oslo(h.conf.rpc.topic)
        _cast_creates(client, names[:100])
        time.sleep(1.0)
        victim = h.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        _cast_creates(client, names[100:])
        counts = _wait_all_active(pg_url, 200)
        assert counts.get("ACTIVE") == 200, (counts, h.logs()[-3000:])
        assert victim not in h.worker_pids()
        assert "died with signal 9" in h.logs()
    _assert_exactly_once(pg_url, names, tmp_path)


def test_200_creates_survive_kill9_of_the_listener(tmp_path, rabbit_url, pg_url, oslo):
    names = [f"l-{i:03d}" for i in range(200)]
    config = {"device_drivers": {"static": {"devices": [
        {"id": "memory-appliance-1", "service_vendor": "memory", "max_interfaces": 1000}]}}}
    h = Harness(tmp_path, database_url=pg_url, transport_url=rabbit_url, workers=2,
                config={**config, "config_drivers": {"memory": {"delay": 0.01}}})
    h.start()
    try:
        client = oslo(h.conf.rpc.topic)
        _cast_creates(client, names[:120])
        time.sleep(0.7)
        h.kill()  # listener SIGKILL; its workers follow through PDEATHSIG
        _cast_creates(client, names[120:])  # accepted by the broker while nfp is down
        h.start()
        counts = _wait_all_active(pg_url, 200)
        assert counts.get("ACTIVE") == 200, (counts, h.logs()[-3000:])
    finally:
        h.stop()
        h.client.close()
    _assert_exactly_once(pg_url, names, tmp_path)


def test_migrations_roundtrip_on_postgresql(pg_url):
    from sqlalchemy import inspect
    from nfp.db import all_models, migrate
    migrate.upgrade(pg_url)
    engine = create_engine(pg_url)
    assert set(all_models().tables) <= set(inspect(engine).get_table_names())
    migrate.downgrade(pg_url, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(pg_url)
    assert set(all_models().tables) <= set(inspect(engine).get_table_names())
    engine.dispose()
