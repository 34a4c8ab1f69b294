"""Tenant isolation through the real daemon: a stock oslo.messaging client on
RabbitMQ, the orchestrator on PostgreSQL.

Every RPC method the orchestrator serves is called by a non-admin member of
tenant B on tenant A's network function. The methods come from the endpoint
registry (``MUTATIONS | READS``), so a method added without a case here fails.
Reads answer exactly as for a missing NF; mutations are refused (``Forbidden``),
leave the NF unchanged, and are logged and audited with the caller's tenant.
"""
from __future__ import annotations

import json
import time
import uuid
import warnings

import pytest
from sqlalchemy import create_engine, text

from nfp.api.endpoints import MUTATIONS, READS
from nfp.testing.harness import Harness

pytestmark = pytest.mark.integration
WAIT = 60.0
TENANT_A, TENANT_B = "tenant-a-" + uuid.uuid4().hex[:8], "tenant-b-" + uuid.uuid4().hex[:8]
TOKEN_B = "tok-" + uuid.uuid4().hex  # B's keystone token: never in a log or audit row
ADMIN = {"user_id": "neutron", "project_id": "services", "is_admin": True, "roles": ["admin"],
         "auth_token": "tok-admin-" + uuid.uuid4().hex}
MEMBER_A = {"user_id": "alice", "project_id": TENANT_A, "is_admin": False, "roles": ["member"]}
MEMBER_B = {"user_id": "bob", "project_id": TENANT_B, "tenant_id": TENANT_B, "is_admin": False,
            "roles": ["member", "reader"], "auth_token": TOKEN_B, "request_id": "req-bob-1"}
FW = {"config": [{"resource": "firewall", "resource_data": {"rules": [
    {"name": "web", "protocol": "tcp", "destination_port": 80}]}}]}


def nf_body(tenant: str, name: str) -> dict:
    return {"name": name, "tenant_id": tenant, "service_config": FW,
            "provider": {"port": [{"id": str(uuid.uuid4()), "ip_address": "198.18.7.10"}],
                         "subnet": {"cidr": "198.18.7.0/24"}},
            "service_profile": {"service_type": "firewall",
                                "service_flavor": "service_vendor=memory,device_type=static"}}


class Oslo:
    """The node driver's oslo.messaging RPC clients on both orchestrator topics."""

    def __init__(self, conf):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import oslo_messaging
            from oslo_config import cfg
        self.errors = oslo_messaging.RemoteError
        self.transport = oslo_messaging.get_rpc_transport(cfg.CONF, url=conf.transport_url)
        self.rpc = oslo_messaging.get_rpc_client(
            self.transport, oslo_messaging.Target(topic=conf.rpc.topic, version="1.0"), timeout=WAIT)
        self.notify = oslo_messaging.get_rpc_client(
            self.transport, oslo_messaging.Target(topic=conf.rpc.notification_topic), timeout=WAIT)

    def call(self, ctx, method, **kwargs):
        client = self.notify if method == "network_function_notification" else self.rpc
        return client.call(ctx, method, **kwargs)

    def cast(self, ctx, method, **kwargs):
        self.rpc.cast(ctx, method, **kwargs)

    def refused(self, ctx, method, **kwargs):
        with pytest.raises(self.errors) as err:
            self.call(ctx, method, **kwargs)
        return err.value.exc_type, err.value.value


@pytest.fixture(scope="module")
def env(tmp_path_factory, pg_module_url):
    """One daemon for the module, with tenant A's and tenant B's NF ACTIVE."""
    harness = Harness(tmp_path_factory.mktemp("tenancy"), database_url=pg_module_url, workers=1,
                      transport_url="rabbit://guest:guest@127.0.0.1:5672/",
                      config={"rpc": {"notification_topic": f"nfp-ten-{uuid.uuid4().hex[:8]}"}})
    with harness:
        oslo = Oslo(harness.conf)
        engine = create_engine(pg_module_url)
        try:
            body_a = nf_body(TENANT_A, "fw-a")
            nf_a = oslo.call(MEMBER_A, "create_network_function", network_function=body_a)
            nf_b = oslo.call(MEMBER_B, "create_network_function",
                             network_function=nf_body(TENANT_B, "fw-b"))
            for nf in (nf_a, nf_b):
                wait_status(oslo, nf["id"], "ACTIVE")
            yield {"h": harness, "oslo": oslo, "db": engine, "nf_a": nf_a, "nf_b": nf_b,
                   "port_a": body_a["provider"]["port"][0]["id"],
                   "a_before": oslo.call(ADMIN, "get_network_function", network_function_id=nf_a["id"])}
        finally:
            engine.dispose()
            oslo.transport.cleanup()
    logs = harness.logs()
    assert TOKEN_B not in logs and ADMIN["auth_token"] not in logs


def wait_status(oslo, nf_id, status):
    end, got = time.monotonic() + WAIT, None
    while time.monotonic() < end:
        got = oslo.call(ADMIN, "get_network_function", network_function_id=nf_id)
        if got and got["status"] == status:
            return got
        time.sleep(0.2)
    raise AssertionError(f"NF {nf_id} not {status}: {got}")


def audit_rows(env, method):
    with env["db"].connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(
            "SELECT * FROM audit_log WHERE method = :m AND tenant_id = :t ORDER BY id"),
            {"m": method, "t": TENANT_B})]


def wait_audit(env, method, result):
    end = time.monotonic() + WAIT
    while time.monotonic() < end:
        rows = [r for r in audit_rows(env, method) if r["result"] == result]
        if rows:
            return rows[-1]
        time.sleep(0.2)
    raise AssertionError(f"no audit row {method}/{result} for {TENANT_B}: {audit_rows(env, method)}")


def assert_a_unchanged(env):
    now = env["oslo"].call(ADMIN, "get_network_function", network_function_id=env["nf_a"]["id"])
    assert now == env["a_before"]


def denied_as_missing(env, method, **kwargs):
    """B's answer for A's NF is the answer for an id that does not exist."""
    oslo, a_id, missing = env["oslo"], env["nf_a"]["id"], str(uuid.uuid4())
    theirs = oslo.refused(MEMBER_B, method, network_function_id=a_id, **kwargs)
    absent = oslo.refused(MEMBER_B, method, network_function_id=missing, **kwargs)
    assert theirs[0] == absent[0] == "NotFound"
    assert theirs[1].replace(a_id, "X") == absent[1].replace(missing, "X")
    row = wait_audit(env, method, "not_found")
    assert row["event"] == "access.denied" and row["user_id"] == "bob"


def forbidden(env, method, **kwargs):
    exc_type, message = env["oslo"].refused(MEMBER_B, method, **kwargs)
    assert exc_type == "Forbidden", message
    assert TENANT_B in message
    row = wait_audit(env, method, "forbidden")
    assert row["event"] == "access.denied" and row["user_id"] == "bob"
    assert "req-bob-1" in row["detail"]
    assert_a_unchanged(env)


# -- one case per method ----------------------------------------------------------------------
def _get_network_function(env):
    oslo, a_id = env["oslo"], env["nf_a"]["id"]
    assert oslo.call(MEMBER_B, "get_network_function", network_function_id=a_id) is None
    assert oslo.call(MEMBER_B, "get_network_function", network_function_id=str(uuid.uuid4())) is None
    assert oslo.call(MEMBER_A, "get_network_function", network_function_id=a_id)["id"] == a_id
    assert wait_audit(env, "get_network_function", "not_found")["nf_id"] == a_id


def _get_network_functions(env):
    oslo = env["oslo"]
    mine = [env["nf_b"]["id"]]
    assert [n["id"] for n in oslo.call(MEMBER_B, "get_network_functions", filters={})] == mine
    assert oslo.call(MEMBER_B, "get_network_functions", filters={"tenant_id": [TENANT_A]}) == []
    assert oslo.call(MEMBER_B, "get_network_functions",
                     filters={"id": [env["nf_a"]["id"], env["nf_b"]["id"]]})[0]["id"] == mine[0]
    every = {n["id"] for n in oslo.call(ADMIN, "get_network_functions", filters={})}
    assert {env["nf_a"]["id"], env["nf_b"]["id"]} <= every


def _get_network_function_details(env):
    denied_as_missing(env, "get_network_function_details")


def _get_network_function_context(env):
    denied_as_missing(env, "get_network_function_context")


def _get_port_info(env):
    oslo, port = env["oslo"], env["port_a"]
    assert oslo.call(ADMIN, "get_port_info", port_id=port)["id"] == port
    assert oslo.call(MEMBER_A, "get_port_info", port_id=port)["id"] == port
    assert oslo.call(MEMBER_B, "get_port_info", port_id=port) is None
    wait_audit(env, "get_port_info", "not_found")


def _get_device_health(env):
    oslo = env["oslo"]
    denied_as_missing(env, "get_device_health")
    # the memory appliance serves both tenants' NFs: each sees it, through its own NF
    assert [d["identifier"] for d in oslo.call(MEMBER_B, "get_device_health")] == ["memory-appliance-1"]
    assert oslo.call(MEMBER_B, "get_device_health", device_id="memory-appliance-1")
    lonely = {"user_id": "carol", "project_id": "tenant-c-" + uuid.uuid4().hex[:6], "roles": ["member"]}
    assert oslo.call(lonely, "get_device_health") == []
    assert oslo.refused(lonely, "get_device_health", device_id="memory-appliance-1")[0] == "NotFound"


def _get_plumbing_info(env):
    # no tenant's data in the answer: it follows from the profile alone
    profile = {"service_type": "firewall", "service_flavor": "service_vendor=memory,device_type=static"}
    answer = env["oslo"].call(MEMBER_B, "get_plumbing_info", request_info={
        "profile": profile, "tenant_id": TENANT_B})
    assert answer == env["oslo"].call(ADMIN, "get_plumbing_info", request_info={"profile": profile})


def _create_network_function(env):
    forbidden(env, "create_network_function", network_function=nf_body(TENANT_A, "planted"))
    listed = env["oslo"].call(ADMIN, "get_network_functions", filters={"tenant_id": [TENANT_A]})
    assert [n["name"] for n in listed] == ["fw-a"]


def _delete_network_function(env):
    forbidden(env, "delete_network_function", network_function_id=env["nf_a"]["id"],
              network_function_data={})


def _update_network_function(env):
    forbidden(env, "update_network_function", network_function_id=env["nf_a"]["id"],
              config={"config": [{"resource": "firewall", "resource_data": {"rules": []}}]})


def _policy_target_added_notification(env):
    forbidden(env, "policy_target_added_notification", network_function_id=env["nf_a"]["id"],
              policy_target={"id": str(uuid.uuid4()), "ip_address": "198.18.7.20"})


def _policy_target_removed_notification(env):
    forbidden(env, "policy_target_removed_notification", network_function_id=env["nf_a"]["id"],
              policy_target={"id": str(uuid.uuid4())})


def _consumer_ptg_added_notification(env):
    forbidden(env, "consumer_ptg_added_notification", network_function_id=env["nf_a"]["id"],
              policy_target_group={"id": str(uuid.uuid4()), "subnets": ["198.18.9.0/24"]})


def _consumer_ptg_removed_notification(env):
    forbidden(env, "consumer_ptg_removed_notification", network_function_id=env["nf_a"]["id"],
              policy_target_group={"id": str(uuid.uuid4())})


def _chain_parameters_updated_notification(env):
    forbidden(env, "chain_parameters_updated_notification", network_function_id=env["nf_a"]["id"],
              chain_parameters=json.dumps({"x": "1"}))


def _reconcile_network_function(env):
    forbidden(env, "reconcile_network_function", network_function_id=env["nf_a"]["id"])


def _network_function_notification(env):
    # only the configurator (an admin context) reports results
    forbidden(env, "network_function_notification", notification_data={
        "info": {"context": {"nf_id": env["nf_a"]["id"]}},
        "notification": [{"resource": "firewall", "data": {"status_code": "failure",
                                                           "error_msg": "forged"}}]})


CASES = {name[1:]: fn for name, fn in dict(globals()).items()
         if name.startswith("_") and not name.startswith("__") and callable(fn) and name[1:] in MUTATIONS | READS}


@pytest.mark.parametrize("method", sorted(MUTATIONS | READS))
def test_tenant_b_cannot_reach_tenant_a(env, method):
    assert method in CASES, f"{method}: the orchestrator serves it, and no isolation case covers it"
    CASES[method](env)


def test_casts_of_another_tenants_nf_change_nothing(env):
    """A cast has no caller to answer: the refusal is logged and audited, and the NF
    is not set to ERROR (which a rejected cast of one's own NF would do)."""
    oslo, a_id = env["oslo"], env["nf_a"]["id"]
    before = len(audit_rows(env, "update_network_function"))
    oslo.cast(MEMBER_B, "update_network_function", network_function_id=a_id,
              config={"config": [{"resource": "firewall", "resource_data": {"rules": []}}]})
    oslo.cast(MEMBER_B, "delete_network_function", network_function_id=a_id, network_function_data={})
    end = time.monotonic() + WAIT
    while len(audit_rows(env, "update_network_function")) <= before:
        assert time.monotonic() < end, "the refused cast was not audited"
        time.sleep(0.2)
    wait_audit(env, "delete_network_function", "forbidden")
    assert_a_unchanged(env)
    logs = env["h"].logs()
    assert f"delete_network_function refused" in logs and TENANT_B in logs


def test_admin_by_flag_or_role_sees_and_owner_may_change(env):
    oslo, a_id = env["oslo"], env["nf_a"]["id"]
    by_role = {"user_id": "ops", "project_id": "ops", "roles": ["Admin"]}
    assert oslo.call(by_role, "get_network_function", network_function_id=a_id)["id"] == a_id
    assert oslo.call({"is_admin": True}, "get_network_function_details",
                     network_function_id=a_id)["network_function"]["id"] == a_id
    # the owner's own mutation is accepted and audited with its identity
    new = {"config": [{"resource": "firewall", "resource_data": {"rules": [
        {"name": "dns", "protocol": "udp", "destination_port": 53}]}}]}
    assert oslo.call(MEMBER_A, "update_network_function", network_function_id=a_id, config=new) is None
    wait_status(oslo, a_id, "ACTIVE")
    with env["db"].connect() as conn:
        row = conn.execute(text("SELECT * FROM audit_log WHERE method = 'update_network_function' "
                                "AND tenant_id = :t AND result = 'accepted'"), {"t": TENANT_A}).first()
    assert row is not None and row.user_id == "alice" and row.nf_id == a_id
    assert row.event == "orchestrator.request"
    env["a_before"] = oslo.call(ADMIN, "get_network_function", network_function_id=a_id)


def test_audit_list_cli_shows_orchestrator_rows(env):
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "nfp.cli.main", "--config", str(env["h"].config_file),
                          "audit", "list", "--since", "1h", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    denied = [r for r in rows if r["event"] == "access.denied" and r["tenant_id"] == TENANT_B]
    assert {r["method"] for r in denied} >= {"delete_network_function", "get_network_function"}
    assert any(r["event"] == "orchestrator.request" and r["result"] == "accepted" for r in rows)
    assert TOKEN_B not in out.stdout and ADMIN["auth_token"] not in out.stdout
