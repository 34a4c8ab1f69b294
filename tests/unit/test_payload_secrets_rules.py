"""The one rule for secrets in callers' payloads (nfp.payload_secrets), and a VPN's
pre-shared key sealed at intake and resolvable only by its name in the store."""
from __future__ import annotations

import copy
import json

import pytest

from nfp import config as nfp_config
from nfp import payload_secrets as ps
from nfp.api.endpoints import OrchestratorEndpoints
from nfp.rpc.types import IncomingRequest
from nfp.secrets import SecretStore, load_key
from nfp.testing.engine import InProcessEngine
from nfp.workers.lifecycle.app import ORCHESTRATOR


@pytest.mark.parametrize("key", ["password", "admin_password", "auth_token", "api_key", "private_key",
                                 "client_secret", "psk", "PSK", "AdminPassword", "X-Auth-Token",
                                 "secretKey", "passphrase", "key", "credentials"])
def test_secret_like_keys(key):
    assert ps.is_secret_key(key)


@pytest.mark.parametrize("key", ["tokenRef", "secret_ref", "psk_ref", "credentials_ref", "key_name",
                                 "password_length", "name", "tenant_id", "secret_fields", "keys", 7])
def test_keys_that_are_not_secrets(key):
    assert not ps.is_secret_key(key)


def test_seal_takes_every_kind_of_secret_and_keeps_the_rest():
    payload = {
        "management": {"id": "m1", "admin_password": "pw-1", "secret_fields": ["community"],
                       "community": "snmp-2", "port": 22},
        "list": [{"auth_token": "tok-3"}, {"name": "keep"}],
        "service_config": json.dumps({"parameters": {
            "Code": {"type": "string", "hidden": True, "default": "hid-4"},
            "Open": {"type": "string", "default": "visible"}}}),
        "config_param_values": {"Code": "hid-5", "Open": "visible-too"},
        "ref": {"password": "secret:already-stored"},
        "empty": {"token": ""},
    }
    original = copy.deepcopy(payload)
    sealer = ps.Sealer("nf/x")
    sealed = sealer.seal_all(payload)
    assert payload == original  # the input is not changed
    assert sorted(sealer.found.values()) == ["hid-4", "hid-5", "pw-1", "snmp-2", "tok-3"]
    assert all(name.startswith("nf/x/") for name in sealer.found)
    text = json.dumps(sealed)
    for value in sealer.found.values():
        assert value not in text
    assert sealed["management"]["id"] == "m1" and sealed["management"]["port"] == 22
    assert sealed["list"][1] == {"name": "keep"}
    assert sealed["config_param_values"]["Open"] == "visible-too"
    assert sealed["ref"] == {"password": "secret:already-stored"}
    assert sealed["empty"] == {"token": ""}
    assert json.loads(sealed["service_config"])["parameters"]["Open"]["default"] == "visible"
    # each reference resolves to its value, and only through the store's names
    stored = {**sealer.found, "already-stored": "old"}
    revealed = ps.reveal(sealed, stored.__getitem__)
    assert revealed["management"]["admin_password"] == "pw-1" and revealed["ref"]["password"] == "old"
    # references the caller sent itself are listed (a tenant may only name its NF's own)
    assert sealer.references == {"already-stored"}


def test_text_without_secrets_is_kept_as_sent():
    text = "heat_template_version: 2015-10-15\nresources: {}\n"
    sealer = ps.Sealer("nf/x")
    assert sealer.seal({"service_config": text}) == {"service_config": text}
    assert sealer.found == {}


def _vpn_template() -> dict:
    return {"heat_template_version": "2013-05-23",
            "parameters": {"Subnet": {"type": "string"},
                           "SitePsk": {"type": "string", "hidden": True}},
            "resources": {
                "vpn": {"type": "OS::Neutron::VPNService", "properties": {
                    "name": "vpn", "subnet_id": {"get_param": "Subnet"}}},
                "site1": {"type": "OS::Neutron::IPsecSiteConnection", "properties": {
                    "vpnservice_id": {"get_resource": "vpn"}, "ikepolicy_id": {"get_resource": "ike"},
                    "ipsecpolicy_id": {"get_resource": "ipsec"}, "peer_address": "198.19.0.1",
                    "peer_id": "198.19.0.1", "peer_cidrs": ["198.19.10.0/24"],
                    "psk": {"get_param": "SitePsk"}}},
                "ike": {"type": "OS::Neutron::IKEPolicy", "properties": {}},
                "ipsec": {"type": "OS::Neutron::IPsecPolicy", "properties": {}}}}


def test_hidden_psk_is_sealed_at_intake_and_the_vpn_names_it(tmp_path):
    """A literal pre-shared key is refused by the Heat translation; sent as a hidden
    parameter's value it is sealed first, so the VPN carries ``psk_ref`` (a name a
    driver resolves in the secret store when it configures the peer)."""
    conf = nfp_config.load(None, {"state_dir": str(tmp_path), "config_drivers": {"memory": {}}}, environ={})
    engine = InProcessEngine(ORCHESTRATOR, conf=conf)
    try:
        endpoints = OrchestratorEndpoints(conf, engine.sessionmaker, lambda refs: None)
        body = {"name": "vpn", "tenant_id": "t1", "service_config": json.dumps(_vpn_template()),
                "service_profile": {"service_type": "vpn",
                                    "service_flavor": "service_vendor=memory,device_type=static"},
                "service_chain_instance": {"config_param_values": json.dumps(
                    {"SitePsk": "the-psk-value", "Subnet": "198.18.1.0/24"})}}
        [reply] = endpoints.handle_mutations([IncomingRequest(
            method="create_network_function", args={"network_function": body}, msg_id="m")])
        assert reply.error is None, reply.error
        nf_id = reply.result["id"]
        details = endpoints.handle_read(IncomingRequest(
            method="get_network_function_details", args={"network_function_id": nf_id}, msg_id="r"))
        assert details.error is None and details.result["translation_error"] is None
        assert "the-psk-value" not in json.dumps(details.result)
        [vpn] = details.result["translated_config"]
        ref = vpn["resource_data"]["connections"][0]["psk_ref"]
        assert ref.startswith(f"nf/{nf_id}/")
        assert SecretStore(engine.sessionmaker, load_key(conf)).get(ref) == "the-psk-value"
    finally:
        engine.close()


def test_a_tenant_may_not_name_secrets_outside_its_nf(tmp_path):
    """``psk: "secret:<name>"`` naming an operator's secret would have that secret
    configured on the tenant's peer: refused for a tenant, allowed for an admin."""
    conf = nfp_config.load(None, {"state_dir": str(tmp_path), "config_drivers": {"memory": {}}}, environ={})
    engine = InProcessEngine(ORCHESTRATOR, conf=conf)
    try:
        endpoints = OrchestratorEndpoints(conf, engine.sessionmaker, lambda refs: None)
        template = _vpn_template()
        template["parameters"]["SitePsk"]["default"] = "secret:device-1-credentials"
        body = {"name": "vpn", "tenant_id": "t1", "service_config": json.dumps(template),
                "service_profile": {"service_type": "vpn",
                                    "service_flavor": "service_vendor=memory,device_type=static"},
                "service_chain_instance": {"config_param_values": {"Subnet": "198.18.1.0/24"}}}
        member = {"project_id": "t1", "user_id": "u", "roles": ["member"]}
        admin = {"project_id": "ops", "is_admin": True}
        replies = endpoints.handle_mutations([
            IncomingRequest(method="create_network_function", args={"network_function": body},
                            context=ctx, msg_id="m") for ctx in (member, admin)])
        assert type(replies[0].error).__name__ == "Forbidden"
        assert "may refer only to secrets" in str(replies[0].error)
        assert replies[1].error is None, replies[1].error
    finally:
        engine.close()
