"""Every orchestrator RPC method, valid and invalid, against the real daemon.

Two back ends, one matrix:

- ``rabbit-postgresql``: a stock oslo.messaging 18 RPC client on RabbitMQ, the
  daemon on PostgreSQL (column lengths enforced, as in production);
- ``embedded``: the default SQLite + filesystem bus. oslo.messaging has no
  driver for nfp's filesystem bus (its ``kombu+`` URLs do not carry the bus's
  folders and atomic claims), so nfp's own oslo-wire client speaks there.

Then the golden upstream payloads (dict-shaped mitaka 4.1.0, list-shaped
newton-queens) go through their release's calling pattern: ``get_plumbing_info``
first, create (call up to newton, cast from ocata), found by tenant and
``service_chain_id``, ACTIVE, deleted. Under ``CI=true`` a missing RabbitMQ or
PostgreSQL fails these tests instead of skipping them.
"""
from __future__ import annotations

import json
import os
import socket
import time
import uuid
import warnings

import pytest

from nfp.testing.harness import Harness
from upstream_golden import load, with_second_provider

pytestmark = pytest.mark.integration
WAIT = 60.0
LB_CONFIG = {"config": [{"resource": "loadbalancer", "resource_data": {
    "vip_address": "10.0.0.10", "protocol_port": 80, "members": []}}]}
FW_CONFIG = {"config": [{"resource": "firewall", "resource_data": {"rules": [
    {"name": "web", "protocol": "tcp", "destination_port": 80}]}}]}
LONG_ID = "f" * 37  # one more than the 36 of a UUID
SQL_WORDS = ("INSERT", "UPDATE ", "[SQL", "parameters", "Traceback", "psycopg2")
#: what upstream's node driver sends: an admin context (nfp.api.tenancy)
ADMIN_CONTEXT = {"tenant_id": "t", "is_admin": True, "roles": ["admin"], "auth_token": "tok-secret"}
PG_URL = os.environ.get("NFP_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")


def require(service: str, host: str, port: int) -> None:
    """Fail under CI=true, skip elsewhere, when ``service`` is not reachable."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return
    except OSError:
        message = f"{service} is not reachable at {host}:{port}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI=true: these tests must run)")
    pytest.skip(message)


class Client:
    """``call``/``cast`` on the orchestrator and notification topics, and the
    remote error's class and text, whichever client speaks."""

    def __init__(self, harness: Harness, backend: str):
        self.harness, self.backend, self._closers = harness, backend, []
        conf = harness.conf
        if backend == "embedded":
            from nfp.rpc.client import RemoteError, RpcClient
            self.errors = (RemoteError,)
            self.rpc = RpcClient(conf.transport_url, conf, conf.rpc.topic, version="1.0")
            self.notify = RpcClient(conf.transport_url, conf, conf.rpc.notification_topic)
            self._closers += [self.rpc.close, self.notify.close]
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import oslo_messaging
            from oslo_config import cfg
        transport = oslo_messaging.get_rpc_transport(cfg.CONF, url=conf.transport_url)
        self._closers.append(transport.cleanup)
        self.errors = (oslo_messaging.RemoteError,)
        # the node driver's client: Target(topic, version='1.0'), no server, no namespace
        self.rpc = oslo_messaging.get_rpc_client(
            transport, oslo_messaging.Target(topic=conf.rpc.topic, version="1.0"), timeout=WAIT)
        self.notify = oslo_messaging.get_rpc_client(
            transport, oslo_messaging.Target(topic=conf.rpc.notification_topic), timeout=WAIT)

    def call(self, method: str, **kwargs):
        return self.rpc.call(ADMIN_CONTEXT, method, **kwargs)

    def cast(self, method: str, **kwargs):
        self.rpc.cast(ADMIN_CONTEXT, method, **kwargs)

    def refused(self, method: str, **kwargs) -> str:
        """Call ``method`` expecting a remote error; return ``Class: message``."""
        with pytest.raises(self.errors) as err:
            self.call(method, **kwargs)
        return f"{err.value.exc_type}: {err.value.value}"

    def wait_status(self, nf_id: str, *statuses: str) -> dict:
        end, got = time.monotonic() + WAIT, None
        while time.monotonic() < end:
            got = self.call("get_network_function", network_function_id=nf_id)
            if got and got["status"] in statuses:
                return got
            time.sleep(0.1)
        raise AssertionError(f"NF {nf_id} not {statuses}: {got}\n{self.harness.logs()[-3000:]}")

    def wait_gone(self, nf_id: str) -> None:
        end = time.monotonic() + WAIT
        while self.call("get_network_function", network_function_id=nf_id) is not None:
            assert time.monotonic() < end, f"NF {nf_id} was not deleted"
            time.sleep(0.1)

    def find(self, tenant: str, chain_id: str) -> dict:
        """The NF of a chain instance, as an ocata+ caller that cast its create finds it."""
        end = time.monotonic() + WAIT
        while time.monotonic() < end:
            found = [nf for nf in self.call("get_network_functions", filters={"tenant_id": [tenant]})
                     if nf["service_chain_id"] == chain_id]
            if found:
                assert len(found) == 1, found
                return found[0]
            time.sleep(0.1)
        raise AssertionError(f"no NF for chain {chain_id}\n{self.harness.logs()[-3000:]}")

    def close(self) -> None:
        for close in self._closers:
            close()


@pytest.fixture(scope="module")
def pg_schema_url():
    """A PostgreSQL schema for this module's daemon, dropped afterwards."""
    require("PostgreSQL", "127.0.0.1", 5432)
    from sqlalchemy import create_engine, text
    schema = f"m_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(scope="module", params=["rabbit-postgresql", "embedded"])
def client(request, tmp_path_factory):
    backend = request.param
    kwargs = {}
    if backend == "rabbit-postgresql":
        require("RabbitMQ", "127.0.0.1", 5672)
        kwargs = {"database_url": request.getfixturevalue("pg_schema_url"),
                  "transport_url": "rabbit://guest:guest@127.0.0.1:5672/"}
    config = {"device_drivers": {"static": {"devices": [
        {"id": "memory-appliance-1", "service_vendor": "memory", "max_interfaces": 1000}]}},
        "rpc": {"notification_topic": f"nfp-test-notify-{uuid.uuid4().hex[:8]}"}}
    harness = Harness(tmp_path_factory.mktemp(backend), config=config, workers=2, **kwargs)
    with harness:
        rpc = Client(harness, backend)
        try:
            yield rpc
        finally:
            rpc.close()
    assert "tok-secret" not in harness.logs() and "gAAAAAB" not in harness.logs()


def _create(client, body) -> dict:
    nf = client.call("create_network_function", network_function=body)
    return client.wait_status(nf["id"], "ACTIVE")


@pytest.fixture(scope="module")
def firewall(client):
    body = load("newton_queens_firewall_list.json")
    body["service_config"] = json.dumps(FW_CONFIG)
    return _create(client, body), body


@pytest.fixture(scope="module")
def balancer(client):
    body = load("newton_queens_lbaasv2_list.json")
    body["service_config"] = json.dumps(LB_CONFIG)
    return _create(client, body), body


# -- reads ----------------------------------------------------------------------------------------------
def test_reads_valid_and_invalid(client, firewall):
    nf, body = firewall
    assert client.call("get_network_function", network_function_id=nf["id"])["id"] == nf["id"]
    assert client.call("get_network_function", network_function_id=str(uuid.uuid4())) is None
    assert "network_function_id" in client.refused("get_network_function", network_function_id=LONG_ID)
    listed = client.call("get_network_functions", filters={"tenant_id": [body["tenant_id"]]})
    assert [n["id"] for n in listed] == [nf["id"]]
    assert "filters.colour" in client.refused("get_network_functions", filters={"colour": ["red"]})
    details = client.call("get_network_function_details", network_function_id=nf["id"])
    assert details["network_function_device"]["id"] == "memory-appliance-1"
    assert "network_function_id" in client.refused("get_network_function_details")
    context = client.call("get_network_function_context", network_function_id=nf["id"])
    assert context["network_function_details"]["network_function"]["id"] == nf["id"]
    port_id = body["provider"]["port"][0]["id"]
    assert [p["id"] for p in context["ports_info"]][0] == port_id
    assert "network_function_id" in client.refused("get_network_function_context",
                                                   network_function_id=LONG_ID)
    assert client.call("get_port_info", port_id=port_id)["port_classification"] == "provider"
    assert client.call("get_port_info", port_id=str(uuid.uuid4())) is None
    assert "port_id" in client.refused("get_port_info", port_id=LONG_ID)


def test_plumbing_info_valid_and_invalid(client):
    profile = load("newton_queens_lbaasv2_list.json")["service_profile"]
    answer = client.call("get_plumbing_info", request_info={
        "profile": profile, "tenant_id": "t", "provider": {"id": str(uuid.uuid4())}})
    assert answer == {"management": [], "provider": [{}], "consumer": [{}], "plumbing_type": "endpoint"}
    base = {**profile, "service_flavor": "service_vendor=haproxy,device_type=None"}
    assert client.call("get_plumbing_info", request_info={"profile": base}) == {}
    assert "request_info.profile" in client.refused("get_plumbing_info", request_info={"tenant_id": "t"})


# -- creates --------------------------------------------------------------------------------------------------
def test_create_invalid_arguments_name_the_field(client):
    body = load("newton_queens_firewall_list.json")
    body["provider"]["pt"][0]["id"] = LONG_ID
    assert "network_function.provider.pt.0.id" in client.refused("create_network_function",
                                                                  network_function=body)
    body = load("mitaka_4.1.0_firewall_dict.json")
    body["service_chain_instance"]["id"] = LONG_ID
    assert "network_function.service_chain_instance.id" in client.refused(
        "create_network_function", network_function=body)
    body = load("newton_queens_firewall_list.json")
    body["service_profile"]["service_flavor"] = "service_vendor=" + "v" * 65
    assert "network_function.service_profile.service_flavor" in client.refused(
        "create_network_function", network_function=body)
    assert "network_function" in client.refused("create_network_function")


# -- operations: the ones that failed on PostgreSQL ---------------------------------------------------------
def test_update_valid_and_invalid(client, firewall):
    nf, _ = firewall
    new = {"config": [{"resource": "firewall", "resource_data": {"rules": [
        {"name": "dns", "protocol": "udp", "destination_port": 53}]}}]}
    assert client.call("update_network_function", network_function_id=nf["id"],
                       config=json.dumps(new)) is None
    got = client.wait_status(nf["id"], "ACTIVE", "ERROR")
    assert got["status"] == "ACTIVE", got["status_description"]
    bad = {"config": [{"resource": "firewall", "resource_data": {"rules": [
        {"name": "x", "destination_port": 70000}]}}]}
    assert "destination_port" in client.refused("update_network_function",
                                                network_function_id=nf["id"], config=bad)
    assert "network_function_id" in client.refused("update_network_function",
                                                   network_function_id=LONG_ID, config=new)
    assert "NotFound" in client.refused("update_network_function",
                                        network_function_id=str(uuid.uuid4()), config=new)


def test_consumer_notifications_valid_and_invalid(client, firewall):
    nf, _ = firewall
    ptg = {"id": str(uuid.uuid4()), "name": "db", "subnets": [{"id": str(uuid.uuid4()),
                                                               "cidr": "12.0.0.0/24"}]}
    for method in ("consumer_ptg_added_notification", "consumer_ptg_removed_notification"):
        assert client.call(method, network_function_id=nf["id"], policy_target_group=ptg) is None
        got = client.wait_status(nf["id"], "ACTIVE", "ERROR")
        assert got["status"] == "ACTIVE", got["status_description"]
        assert "policy_target_group.id" in client.refused(
            method, network_function_id=nf["id"], policy_target_group={"id": LONG_ID})


def test_policy_target_notifications_valid_and_invalid(client, balancer):
    nf, _ = balancer
    pt = {"id": str(uuid.uuid4()), "port_id": str(uuid.uuid4()), "ip_address": "10.0.0.31"}
    for method in ("policy_target_added_notification", "policy_target_removed_notification"):
        # ocata+ casts: no answer, the NF still gets there
        client.cast(method, network_function_id=nf["id"], policy_target=pt)
        got = client.wait_status(nf["id"], "ACTIVE", "ERROR")
        assert got["status"] == "ACTIVE", got["status_description"]
        assert "policy_target.id" in client.refused(method, network_function_id=nf["id"],
                                                    policy_target={"port_id": "p"})


def test_chain_parameters_valid_and_invalid(client, balancer):
    nf, _ = balancer
    assert client.call("chain_parameters_updated_notification", network_function_id=nf["id"],
                       chain_parameters=json.dumps({"lb_port": 8080})) is None
    got = client.wait_status(nf["id"], "ACTIVE", "ERROR")
    assert got["status"] == "ACTIVE", got["status_description"]
    assert "chain_parameters" in client.refused("chain_parameters_updated_notification",
                                                network_function_id=nf["id"], chain_parameters="[1]")


def test_configurator_notification_valid_and_invalid(client, balancer):
    nf, _ = balancer
    client.notify.cast({}, "network_function_notification", notification_data={
        "info": {"service_type": "loadbalancerv2", "context": {"nf_id": nf["id"], "operation": "update"}},
        "notification": [{"resource": "heat", "data": {"status_code": "unhandled"}}]})
    with pytest.raises(client.errors) as err:
        client.notify.call({}, "network_function_notification", notification_data="not a dict")
    assert "notification_data" in str(err.value.value)
    assert client.wait_status(nf["id"], "ACTIVE")["status_description"] == ""


def test_no_status_description_carries_sql(client, firewall, balancer):
    for nf in (firewall[0], balancer[0]):
        got = client.call("get_network_function", network_function_id=nf["id"])
        assert not [w for w in SQL_WORDS if w in (got["status_description"] or "")], got


def test_delete_valid_and_invalid(client, firewall, balancer):
    assert "network_function_id" in client.refused("delete_network_function",
                                                   network_function_id=LONG_ID)
    assert "NotFound" in client.refused("delete_network_function",
                                        network_function_id=str(uuid.uuid4()))
    for nf, body in (firewall, balancer):
        client.cast("delete_network_function", network_function_id=nf["id"],
                    network_function_data=body)
        client.wait_gone(nf["id"])


# -- golden payloads, as each release sends them --------------------------------------------------------------
@pytest.mark.parametrize("name,create,delete", [
    ("mitaka_4.1.0_firewall_dict.json", "call", "call"),      # mitaka 4.1.0: all calls
    ("newton_queens_firewall_list.json", "call", "call"),     # newton 5.x: all calls
    ("newton_queens_firewall_list.json", "cast", "cast"),     # ocata, pike, queens: casts
    ("newton_queens_lbaasv2_list.json", "cast", "cast"),
])
def test_golden_payload_lifecycle(client, name, create, delete):
    body = load(name)
    if name.endswith("_list.json") and create == "call":
        body = with_second_provider(body)  # lists are kept whole
    if "_list" in name:  # the RPC era asks for plumbing first
        plumbing = client.call("get_plumbing_info", request_info={
            "profile": body["service_profile"], "tenant_id": body["tenant_id"],
            "provider": body["provider"]["ptg"][0]})
        assert plumbing["plumbing_type"] in ("gateway", "endpoint")
    if create == "call":
        nf = client.call("create_network_function", network_function=body)
        assert nf["status"] == "PENDING_CREATE"
    else:
        client.cast("create_network_function", network_function=body)
    found = client.find(body["tenant_id"], body["service_chain_instance"]["id"])
    assert client.wait_status(found["id"], "ACTIVE")["service_chain_id"] == \
        body["service_chain_instance"]["id"]
    ports = client.call("get_network_function_context", network_function_id=found["id"])["ports_info"]
    expected = len(body["provider"]["port"]) + len(body["consumer"]["port"] or []) \
        if isinstance(body["provider"]["port"], list) else 2
    assert len(ports) == expected
    if delete == "call":
        assert client.call("delete_network_function", network_function_id=found["id"]) is None
    else:
        client.cast("delete_network_function", network_function_id=found["id"],
                    network_function_data=body)
    client.wait_gone(found["id"])
