"""Upstream payload shapes and notifications, in one process on SQLite.

The golden payloads (dict-shaped mitaka 4.1.0, list-shaped newton-queens) go
through the real endpoints and lifecycle (:class:`InProcessEngine`, fake clock):
several provider PTs are plugged and recorded, a firewall's rules follow its
consumers, load-balancer members survive an update, and database errors reach
callers as sentences without SQL. The same payloads go over a real broker in
``test_rpc_matrix.py``.
"""
from __future__ import annotations

import json

import pytest
from sqlalchemy import exc as sa_exc

from nfp import config as nfp_config
from nfp.api import schemas
from nfp.api.endpoints import OrchestratorEndpoints
from nfp.db.models import NetworkFunction, NetworkFunctionDevice, PortInfo
from nfp.db.errors import RecordRefused
from nfp.rpc.types import IncomingRequest
from nfp.testing.engine import InProcessEngine
from nfp.testing.memory_config import read_device
from nfp.workers.lifecycle import network_function as nf_steps
from nfp.workers.lifecycle.app import ORCHESTRATOR
from nfp.workers.lifecycle.services import sync_static_inventory
from upstream_golden import GOLDEN, load, with_second_provider

FW_RULES = {"config": [{"resource": "firewall", "resource_data": {"rules": [
    {"name": "web", "protocol": "tcp", "destination_port": 80, "action": "allow"}]}}]}
LB = {"config": [{"resource": "loadbalancer", "resource_data": {
    "vip_address": "10.0.0.10", "protocol_port": 80, "members": []}}]}
SQL_LEAK = ("INSERT INTO", "UPDATE network_functions", "[SQL:", "[parameters:", "tok-secret")


@pytest.fixture
def env(tmp_path):
    conf = nfp_config.load(None, {"state_dir": str(tmp_path)}, environ={})
    engine = InProcessEngine(ORCHESTRATOR, conf=conf)
    with engine.sessionmaker.begin() as session:
        sync_static_inventory(conf, session)
    yield conf, engine, OrchestratorEndpoints(conf, engine.sessionmaker, engine.submit)
    engine.close()


def _req(method, uid=None, call=True, **args):
    return IncomingRequest(method=method, args=args, msg_id="m" if call else None, unique_id=uid)


def _mutate(endpoints, method, uid=None, call=True, **args):
    reply = endpoints.handle_mutations([_req(method, uid, call, **args)])[0]
    assert reply.error is None, reply.error
    return reply.result


def _nf(engine, nf_id):
    with engine.sessionmaker() as session:
        return session.get(NetworkFunction, nf_id)


def _device(conf, nf_id):
    return read_device(conf.state_path, "memory-appliance-1").get(nf_id, {})


def _settle(engine):
    """Run everything due, including operations parked behind another (1 s polls)."""
    engine.join()
    engine.advance(2.0)
    engine.join()


def test_both_shapes_give_the_same_ports():
    dict_shape = schemas.parse(schemas.NetworkFunctionIn, load("mitaka_4.1.0_firewall_dict.json"))
    list_shape = schemas.parse(schemas.NetworkFunctionIn, load("newton_queens_firewall_list.json"))
    assert dict_shape.ports() == list_shape.ports()
    assert [p["port_classification"] for p in list_shape.ports()] == ["provider", "consumer"]
    assert list_shape.ports()[0]["ip_address"] == "10.0.0.5"
    assert list_shape.nf_name() == "FWNODE_gbp_we"  # upstream: node.name[:6]_sci.name[:6]


def test_null_consumer_and_bad_elements_are_named():
    body = load("newton_queens_lbaasv2_list.json")
    assert len(schemas.parse(schemas.NetworkFunctionIn, body).ports()) == 1
    body["provider"]["pt"] = [{"id": "x" * 37}]
    with pytest.raises(ValueError, match=r"network_function\.provider\.pt\.0\.id: .*36"):
        schemas.parse(schemas.NetworkFunctionIn, body, "network_function.")
    body["provider"]["pt"] = "not a list"
    with pytest.raises(ValueError, match=r"network_function\.provider\.pt"):
        schemas.parse(schemas.NetworkFunctionIn, body, "network_function.")


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_payload_reaches_active_and_is_deleted(env, name):
    conf, engine, endpoints = env
    nf = _mutate(endpoints, "create_network_function", "c-" + name, network_function=load(name))
    engine.join()
    row = _nf(engine, nf["id"])
    assert row.status == "ACTIVE", row.status_description
    assert "gAAAAAB" not in json.dumps(row.spec)  # the caller's token is never stored
    _mutate(endpoints, "delete_network_function", "d-" + name, network_function_id=nf["id"],
            network_function_data=load(name))
    engine.join()
    assert _nf(engine, nf["id"]) is None


def test_several_provider_pts_are_plugged_and_recorded(env):
    conf, engine, endpoints = env
    body = with_second_provider(load("newton_queens_firewall_list.json"))
    nf = _mutate(endpoints, "create_network_function", "multi", network_function=body)
    engine.join()
    assert _nf(engine, nf["id"]).status == "ACTIVE"
    with engine.sessionmaker() as session:
        recorded = {p.id: p.port_classification for p in session.query(PortInfo)}
        assert session.get(NetworkFunctionDevice, "memory-appliance-1").interfaces_in_use == 3
    assert sorted(recorded.values()) == ["consumer", "provider", "provider"]
    context = endpoints.handle_read(_req("get_network_function_context",
                                         network_function_id=nf["id"])).result
    assert len(context["ports_info"]) == 3 and context["mngmt_port_info"] is None
    port_id = body["provider"]["port"][1]["id"]
    assert endpoints.handle_read(_req("get_port_info", port_id=port_id)).result == {
        "id": port_id, "port_classification": "provider", "port_model": "gbp_policy_target",
        "port_role": None}
    assert endpoints.handle_read(_req("get_port_info", port_id="nope")).result is None


def _rules(conf, nf_id):
    return [(r["name"], r.get("source_ip_address"), r.get("destination_ip_address"))
            for r in _device(conf, nf_id)["firewall"]["rules"]]


def test_firewall_rules_follow_the_consuming_ptgs(env):
    conf, engine, endpoints = env
    body = load("newton_queens_firewall_list.json")
    body["service_config"] = json.dumps(FW_RULES)
    nf = _mutate(endpoints, "create_network_function", "fw", network_function=body)
    engine.join()
    client_ptg = body["consuming_ptgs_details"][0]["ptg"]
    tag = client_ptg["id"][:16]
    assert _rules(conf, nf["id"]) == [(f"web_{tag}_0", "11.0.0.0/24", "10.0.0.0/24")]
    # a new consumer with a subnet dict; the stitching group (proxied) is never one
    added = {"id": "ptg-db", "name": "db", "subnets": [{"id": "s-db", "cidr": "12.0.0.0/24"}]}
    _mutate(endpoints, "consumer_ptg_added_notification", "a1", call=False,
            network_function_id=nf["id"], policy_target_group=added)
    _mutate(endpoints, "consumer_ptg_added_notification", "a2", call=False,
            network_function_id=nf["id"], policy_target_group={
                "id": "ptg-stitch", "subnets": ["13.0.0.0/24"], "proxied_group_id": "ptg-x"})
    _settle(engine)
    assert _rules(conf, nf["id"]) == [(f"web_{tag}_0", "11.0.0.0/24", "10.0.0.0/24"),
                                      ("web_ptg-db_0", "12.0.0.0/24", "10.0.0.0/24")]
    # upstream sends subnet ids only: those nfp has seen resolve to their CIDR
    _mutate(endpoints, "consumer_ptg_removed_notification", "r1", call=False,
            network_function_id=nf["id"], policy_target_group=client_ptg)
    _settle(engine)
    assert _rules(conf, nf["id"]) == [("web_ptg-db_0", "12.0.0.0/24", "10.0.0.0/24")]
    _mutate(endpoints, "consumer_ptg_added_notification", "a3", call=False,
            network_function_id=nf["id"], policy_target_group=client_ptg)
    _settle(engine)
    assert ("web_" + tag + "_0", "11.0.0.0/24", "10.0.0.0/24") in _rules(conf, nf["id"])
    assert _nf(engine, nf["id"]).status == "ACTIVE"


def test_lb_members_from_notifications_survive_an_update(env):
    conf, engine, endpoints = env
    body = load("newton_queens_lbaasv2_list.json")
    body["service_config"] = json.dumps(LB)
    nf = _mutate(endpoints, "create_network_function", "lb", network_function=body)
    engine.join()
    for uid, pt in (("p1", {"id": "pt-1", "port_id": "port-1",
                            "fixed_ips": [{"ip_address": "10.0.0.21"}]}),
                    ("p2", {"id": "pt-2", "ip_address": "10.0.0.22", "port": 8080})):
        _mutate(endpoints, "policy_target_added_notification", uid, call=False,
                network_function_id=nf["id"], policy_target=pt)
    _settle(engine)
    new = {"config": [{"resource": "loadbalancer", "resource_data": {
        "vip_address": "10.0.0.10", "protocol_port": 8000, "members": []}}]}
    _mutate(endpoints, "update_network_function", "u1", network_function_id=nf["id"], config=new)
    _mutate(endpoints, "policy_target_removed_notification", "p3", call=False,
            network_function_id=nf["id"], policy_target={"id": "pt-1"})
    _settle(engine)
    members = _device(conf, nf["id"])["loadbalancer"]["members"]
    assert [(m["address"], m["protocol_port"]) for m in members] == [("10.0.0.22", 8080)]
    assert _nf(engine, nf["id"]).status == "ACTIVE"


def test_chain_parameters_change_the_params(env):
    conf, engine, endpoints = env
    nf = _mutate(endpoints, "create_network_function", "cp",
                 network_function=load("newton_queens_lbaasv2_list.json"))
    engine.join()
    assert _nf(engine, nf["id"]).spec["config_param_values"] == {"vip_ip": "10.0.0.10"}
    _mutate(endpoints, "chain_parameters_updated_notification", "cp1", call=True,
            network_function_id=nf["id"], chain_parameters='{"lb_port": 8080}')
    _settle(engine)
    row = _nf(engine, nf["id"])
    assert row.status == "ACTIVE"
    assert row.spec["config_param_values"] == {"vip_ip": "10.0.0.10", "lb_port": 8080}
    bad = endpoints.handle_mutations([_req("chain_parameters_updated_notification", "cp2",
                                           network_function_id=nf["id"], chain_parameters="[1]")])
    assert "chain_parameters" in str(bad[0].error)


@pytest.mark.parametrize("code,status", [("success", "ACTIVE"), ("SUCCESS", "ACTIVE"),
                                         ("unhandled", "ACTIVE"), ("failure", "ERROR"),
                                         ("FAILURE", "ERROR")])
def test_configurator_status_code_in_any_case(env, code, status):
    conf, engine, endpoints = env
    nf = _mutate(endpoints, "create_network_function", "n", network_function=load(
        "newton_queens_firewall_list.json"))
    engine.join()
    _mutate(endpoints, "network_function_notification", "n1", call=False, notification_data={
        "info": {"service_type": "firewall", "context": {"nf_id": nf["id"], "operation": "create"}},
        "notification": [{"resource": "firewall", "data": {"status_code": code,
                                                           "error_msg": "refused"}}]})
    assert _nf(engine, nf["id"]).status == status


def test_plumbing_info_by_service_type_and_flavor(env):
    _, _, endpoints = env

    def ask(service_type, flavor="service_vendor=vyos,device_type=nova"):
        reply = endpoints.handle_read(_req("get_plumbing_info", request_info={
            "profile": {"service_type": service_type, "service_flavor": flavor},
            "tenant_id": "t", "provider": {"id": "ptg"}}))
        return reply.error or reply.result

    gateway = {"management": [], "provider": [{}], "consumer": [{}], "plumbing_type": "gateway"}
    assert ask("FIREWALL") == gateway and ask("VPN") == gateway
    assert ask("LOADBALANCERV2")["plumbing_type"] == "endpoint"
    assert ask("LOADBALANCERV2", "service_vendor=haproxy,device_type=None") == {}
    assert "request_info.profile.service_type" in str(ask("TOASTER"))


def test_a_database_error_in_a_step_is_told_without_sql(env, monkeypatch):
    conf, engine, endpoints = env

    def broken(service_config, spec):
        raise sa_exc.DataError("UPDATE network_functions SET operation=%(operation)s",
                               {"operation": "x" * 100, "token": "tok-secret"},
                               Exception("value too long for type character varying(32)"))
    monkeypatch.setattr(nf_steps, "desired_config", broken)
    nf = _mutate(endpoints, "create_network_function", "e", network_function=load(
        "newton_queens_firewall_list.json"))
    engine.run_until_idle()
    row = _nf(engine, nf["id"])
    assert row.status == "ERROR"
    assert "database rejected the value of operation" in row.status_description
    text = row.status_description + json.dumps(engine.notifications)
    assert not [leak for leak in SQL_LEAK if leak in text], text
    assert ("nfp.network_function.create.error" in [n[0] for n in engine.notifications])


def test_a_database_error_at_intake_is_one_refusal_without_sql(env, monkeypatch):
    conf, engine, endpoints = env
    calls = []

    def refuse(session, rows):
        calls.append(len(rows))
        raise sa_exc.DataError("INSERT INTO network_functions (id, name) VALUES (%(id)s, %(name)s)",
                               [{"id": "n", "name": "tok-secret" * 40}], Exception("too long"))
    monkeypatch.setattr("nfp.api.endpoints.network_functions.insert_many", refuse)
    reply = endpoints.handle_mutations([_req("create_network_function", "i",
                                             network_function=load("newton_queens_firewall_list.json"))])[0]
    assert isinstance(reply.error, RecordRefused) and calls == [1]
    assert str(reply.error) == "could not record the network function (database rejected the value of name)"
    assert not [leak for leak in SQL_LEAK if leak in str(reply.error)]


def test_failure_reasons_are_scrubbed_before_callers_see_them():
    from nfp.db.errors import scrub
    raw = ("nf.create: DataError: (psycopg2.errors.StringDataRightTruncation) value too long\n"
           "[SQL: UPDATE network_functions SET operation=%(operation)s]\n"
           "[parameters: {'operation': 'tok-secret'}]\n(Background on this error at: https://sqlalche.me/e/20/9h9h)")
    assert not [leak for leak in SQL_LEAK if leak in scrub(raw)]
    assert nf_steps.scrub is scrub
