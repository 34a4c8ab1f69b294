"""Heat service configs through the orchestrator, in process (SQLite, fake clock,
memory config driver): translated and applied, or ERROR before any device step."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from nfp import config as nfp_config
from nfp.api import views
from nfp.api.endpoints import OrchestratorEndpoints
from nfp.db.models import NetworkFunction
from nfp.desired import heat_params
from nfp.heat.translate import HeatError
from nfp.rpc.types import IncomingRequest
from nfp.testing.engine import InProcessEngine
from nfp.testing.memory_config import read_device
from nfp.workers.lifecycle.app import ORCHESTRATOR
from nfp.workers.lifecycle.services import sync_static_inventory

FW_TEMPLATE = {
    "heat_template_version": "2013-05-23",
    "resources": {
        "fw": {"type": "OS::Neutron::Firewall",
               "properties": {"firewall_policy_id": {"get_resource": "policy"}}},
        "policy": {"type": "OS::Neutron::FirewallPolicy",
                   "properties": {"firewall_rules": [{"get_resource": "web"}]}},
        "web": {"type": "OS::Neutron::FirewallRule", "properties": {
            "protocol": "tcp", "destination_port": "80", "action": "allow"}},
    }}


@pytest.fixture
def orchestrator(tmp_path):
    conf = nfp_config.load(None, {"state_dir": str(tmp_path), "config_drivers": {"memory": {}}},
                           environ={})
    engine = InProcessEngine(ORCHESTRATOR, conf=conf)
    with engine.sessionmaker.begin() as s:
        sync_static_inventory(conf, s)
    yield conf, engine, OrchestratorEndpoints(conf, engine.sessionmaker, engine.submit)
    engine.close()


def _create(endpoints, template, uid):
    out = endpoints.handle_mutations([IncomingRequest(
        method="create_network_function", msg_id="m", unique_id=uid, args={"network_function": {
            "name": "fw", "tenant_id": "t1", "service_config": json.dumps(template),
            "service_profile": {"service_type": "FIREWALL",
                                "service_flavor": "service_vendor=memory,device_type=static"}}})])
    assert out[0].error is None, out[0].error
    return out[0].result["id"]


def _details(endpoints, nf_id):
    reply = endpoints.handle_read(IncomingRequest(
        method="get_network_function_details", msg_id="m", args={"network_function_id": nf_id}))
    assert reply.error is None, reply.error
    return reply.result


def test_heat_firewall_template_is_translated_applied_and_shown(orchestrator):
    conf, engine, endpoints = orchestrator
    nf_id = _create(endpoints, FW_TEMPLATE, "h1")
    engine.join()
    with engine.sessionmaker() as s:
        assert s.get(NetworkFunction, nf_id).status == "ACTIVE"
    rules = read_device(conf.state_path, "memory-appliance-1")[nf_id]["firewall"]["rules"]
    assert [(r["name"], r["protocol"], r["destination_port"]) for r in rules] == [("web", "tcp", "80")]
    details = _details(endpoints, nf_id)
    assert details["translated_config"][0]["resource"] == "firewall"
    assert details["translation_error"] is None


def test_untranslatable_template_is_error_naming_the_type_before_any_device_step(orchestrator):
    conf, engine, endpoints = orchestrator
    template = json.loads(json.dumps(FW_TEMPLATE))
    template["resources"]["server"] = {"type": "OS::Nova::Server", "properties": {}}
    nf_id = _create(endpoints, template, "h2")
    engine.join()
    with engine.sessionmaker() as s:
        nf = s.get(NetworkFunction, nf_id)
        assert nf.status == "ERROR"
        assert nf.status_description == (
            "service_config: resource server: type OS::Nova::Server cannot be translated")
    assert not any(t.startswith(("device.", "service.")) for t in engine.call_types(nf_id))
    assert nf_id not in read_device(conf.state_path, "memory-appliance-1")
    details = _details(endpoints, nf_id)
    assert details["translated_config"] is None
    assert "OS::Nova::Server" in details["translation_error"]


# -- parameters the orchestrator supplies --------------------------------------------------
def test_heat_params_parse_upstream_json_and_derive_the_subnet():
    spec = {"config_param_values": '{"vip_ip": "198.18.2.100"}',
            "ports": [{"port_classification": "consumer", "cidr": "198.18.2.0/24"},
                      {"port_classification": "provider", "cidr": "198.18.1.0/24"}]}
    assert heat_params(spec) == {"vip_ip": "198.18.2.100", "Subnet": "198.18.1.0/24",
                                 "service_chain_metadata": ""}
    assert heat_params({"config_param_values": ""}) == {"service_chain_metadata": ""}
    assert heat_params({"config_param_values": {"Subnet": "198.18.4.0/24"},
                        "provider": {"cidr": "198.18.1.0/24"}})["Subnet"] == "198.18.4.0/24"
    with pytest.raises(HeatError, match="config_param_values"):
        heat_params({"config_param_values": "{not json"})


def test_details_of_a_plain_config_show_it_unchanged():
    config = {"config": [{"resource": "routes", "resource_data": {"routes": []}}]}
    nf = SimpleNamespace(
        id="n1", name="n", description="", tenant_id="t", service_id=None, service_chain_id=None,
        service_profile_id=None, service_config=json.dumps(config), config_policy_id=None,
        status="ACTIVE", status_description="", service_type="firewall", service_vendor="memory",
        device_type="static", created_at=None, updated_at=None, spec={})
    assert views.details(nf)["translated_config"] == config["config"]
