"""Who a request comes from (nfp.api.tenancy): admin the way oslo.policy's
``context_is_admin: role:admin`` decides it, and the anonymous context's policy."""
from __future__ import annotations

import pytest

from nfp import config as nfp_config
from nfp.api.endpoints import OrchestratorEndpoints
from nfp.api.tenancy import caller
from nfp.rpc.types import IncomingRequest
from nfp.testing.engine import InProcessEngine
from nfp.workers.lifecycle.app import ORCHESTRATOR


def conf_with(tmp_path, **tenancy):
    return nfp_config.load(None, {"state_dir": str(tmp_path), "tenancy": tenancy}, environ={})


@pytest.mark.parametrize("context,admin,tenant", [
    ({"is_admin": True, "project_id": "p"}, True, "p"),
    ({"roles": ["Admin"], "tenant_id": "t"}, True, "t"),          # role, any case
    ({"roles": ["member"], "tenant": "t", "user": "u"}, False, "t"),
    ({"is_admin": "true", "project_id": "p"}, False, "p"),          # only a real true counts
    ({"is_admin": False}, False, ""),                               # says who it is: nobody
    ({"project_id": "p", "tenant_id": "other"}, False, "p"),        # project_id wins, as in oslo.context
])
def test_admin_and_tenant_from_the_context(tmp_path, context, admin, tenant):
    who = caller(context, conf_with(tmp_path))
    assert (who.is_admin, who.tenant) == (admin, tenant)


def test_admin_roles_are_configurable(tmp_path):
    conf = conf_with(tmp_path, admin_roles=["cloud_admin"])
    assert caller({"roles": ["cloud_admin"], "project_id": "p"}, conf).is_admin
    assert not caller({"roles": ["admin"], "project_id": "p"}, conf).is_admin


def test_anonymous_context_follows_the_policy(tmp_path):
    assert caller({}, conf_with(tmp_path)).is_admin
    assert caller({"auth_token": "t", "request_id": "r"}, conf_with(tmp_path)).is_admin
    denied = caller({}, conf_with(tmp_path, anonymous="deny"))
    assert not denied.is_admin and not denied.may_see("") and not denied.may_see(None)


def test_anonymous_deny_sees_and_changes_nothing(tmp_path):
    conf = nfp_config.load(None, {"state_dir": str(tmp_path), "tenancy": {"anonymous": "deny"},
                                  "config_drivers": {"memory": {}}}, environ={})
    engine = InProcessEngine(ORCHESTRATOR, conf=conf)
    try:
        endpoints = OrchestratorEndpoints(conf, engine.sessionmaker, lambda refs: None)
        body = {"name": "fw", "tenant_id": "t1", "service_profile": {
            "service_type": "firewall", "service_flavor": "service_vendor=memory,device_type=static"}}
        admin = {"is_admin": True}
        [made, refused] = endpoints.handle_mutations([
            IncomingRequest(method="create_network_function", args={"network_function": body},
                            context=ctx, msg_id="m") for ctx in (admin, {})])
        assert made.error is None and type(refused.error).__name__ == "Forbidden"
        nf_id = made.result["id"]

        def read(method, ctx, **args):
            return endpoints.handle_read(IncomingRequest(method=method, args=args, context=ctx, msg_id="r"))

        assert read("get_network_function", {}, network_function_id=nf_id).result is None
        assert read("get_network_functions", {}, filters={}).result == []
        assert read("get_network_function", admin, network_function_id=nf_id).result["id"] == nf_id
        [delete] = endpoints.handle_mutations([IncomingRequest(
            method="delete_network_function", args={"network_function_id": nf_id}, msg_id="d")])
        assert type(delete.error).__name__ == "Forbidden"
        assert read("get_network_function", admin, network_function_id=nf_id).result["status"] == \
            "PENDING_CREATE"
    finally:
        engine.close()


def test_hostile_identity_is_escaped_in_the_audit_log(tmp_path):
    from sqlalchemy import select
    from nfp.audit import AuditLog
    conf = nfp_config.load(None, {"state_dir": str(tmp_path), "config_drivers": {"memory": {}}}, environ={})
    engine = InProcessEngine(ORCHESTRATOR, conf=conf)
    try:
        endpoints = OrchestratorEndpoints(conf, engine.sessionmaker, lambda refs: None)
        body = {"name": "fw", "tenant_id": "t1", "service_profile": {
            "service_type": "firewall", "service_flavor": "service_vendor=memory,device_type=static"}}
        hostile = {"project_id": "evil\x00\nINFO forged line", "user_id": "u\n", "auth_token": "tok-zz"}
        [reply] = endpoints.handle_mutations([IncomingRequest(
            method="create_network_function", args={"network_function": body}, context=hostile, msg_id="m")])
        assert type(reply.error).__name__ == "Forbidden" and "\n" not in str(reply.error)
        with engine.sessionmaker() as session:
            row = session.scalars(select(AuditLog).where(AuditLog.result == "forbidden")).one()
        assert row.tenant_id == "evil\\x00\\x0aINFO forged line" and row.user_id == "u\\x0a"
        assert row.method == "create_network_function" and "tok-zz" not in str(vars(row))
    finally:
        engine.close()
