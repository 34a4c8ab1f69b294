"""Typed edges: configuration and RPC payloads name the bad field."""
from __future__ import annotations

import pytest

from nfp import config as nfp_config
from nfp.api import schemas
from nfp.api.endpoints import validate_service_config
from nfp.exceptions import InvalidRequest


def test_embedded_defaults_need_no_configuration(tmp_path):
    conf = nfp_config.load(None, environ={"NFP_STATE_DIR": str(tmp_path)})
    assert conf.database_url == f"sqlite:///{tmp_path}/nfp.db"
    assert conf.transport_url == f"filesystem://{tmp_path}/bus"
    assert conf.device_drivers["static"]["devices"][0]["service_vendor"] == "memory"


def test_environment_and_flags_override_file(tmp_path):
    path = tmp_path / "nfp.yaml"
    path.write_text("orchestrator: {workers: 3}\ndatabase: {url: 'sqlite:///a.db'}\n")
    conf = nfp_config.load(str(path), {"database": {"url": "sqlite:///c.db"}},
                           environ={"NFP_DATABASE_URL": "sqlite:///b.db",
                                    "NFP_ORCHESTRATOR__THREADS_PER_WORKER": "4"})
    assert conf.database_url == "sqlite:///c.db"
    assert conf.orchestrator.workers == 3 and conf.orchestrator.threads_per_worker == 4


def test_bad_config_key_is_named(tmp_path):
    path = tmp_path / "nfp.yaml"
    path.write_text("orchestrator: {workers: -1}\n")
    with pytest.raises(nfp_config.ConfigError, match="orchestrator.workers"):
        nfp_config.load(str(path), environ={})
    path.write_text("transport: {nonsense: 1}\n")
    with pytest.raises(nfp_config.ConfigError, match="transport.nonsense"):
        nfp_config.load(str(path), environ={})


def test_flavor_parsing_accepts_upstream_forms():
    profile = schemas.ServiceProfile(service_type="LOADBALANCERV2",
                                     service_flavor="service_vendor=haproxy,device_type=static")
    assert profile.service_type == "loadbalancer"
    assert profile.flavor() == {"service_vendor": "haproxy", "device_type": "static"}
    assert schemas.ServiceProfile(service_type="FIREWALL", service_flavor="vyos").flavor() == \
        {"service_vendor": "vyos"}


@pytest.mark.parametrize("args, field", [
    ({"network_function": {"service_profile": {"service_type": "firewall", "service_flavor": "x"}}},
     "network_function.tenant_id"),
    ({"network_function": {"tenant_id": "t", "service_profile": {"service_type": "teleporter",
                                                                "service_flavor": "x"}}},
     "network_function.service_profile.service_type"),
    ({"network_function": {"tenant_id": 5, "service_profile": {"service_type": "firewall",
                                                               "service_flavor": "x"}}},
     "network_function.tenant_id"),
])
def test_create_payload_errors_name_the_field(args, field):
    with pytest.raises(InvalidRequest) as err:
        schemas.parse(schemas.NetworkFunctionIn, args["network_function"], "network_function.")
    assert err.value.field == field


@pytest.mark.parametrize("rule, field", [
    ({"name": "a", "source_ip_address": "198.18.0.0/33"}, "rules.0.source_ip_address"),
    ({"name": "a", "destination_port": "0"}, "rules.0.destination_port"),
    ({"name": "a", "protocol": "sctp-ish"}, "rules.0.protocol"),
    ({"name": "a; rm -rf /"}, "rules.0.name"),
])
def test_service_config_errors_name_the_field(rule, field):
    config = {"config": [{"resource": "firewall", "resource_data": {"rules": [rule]}}]}
    with pytest.raises(InvalidRequest) as err:
        validate_service_config(config, "config")
    assert err.value.field == f"config.config[0].resource_data.{field}"


def test_heat_templates_pass_through_opaque():
    validate_service_config("heat_template_version: 2015-10-15\nresources: {}\n", "config")


def test_shipped_sample_config_is_valid():
    from pathlib import Path
    sample = Path(__file__).resolve().parents[2] / "etc" / "nfp.yaml"
    conf = nfp_config.load(str(sample), environ={})
    assert conf.device_drivers["static"]["devices"][0]["credentials_ref"] == "vyos-edge-1-ssh"
    from nfp.drivers.config.linux.driver import LinuxOptions
    from nfp.drivers.device.netns.options import NetnsOptions
    from nfp.drivers.device.static import StaticOptions
    StaticOptions.model_validate(conf.device_drivers["static"])
    NetnsOptions.model_validate(conf.device_drivers["netns"])
    LinuxOptions.model_validate(conf.config_drivers["linux"])


@pytest.mark.parametrize("value", ["198.18.1.7/24", "10.0.0.0/8", "1.2.3.4", "0.0.0.0/0",
                                   "255.255.255.255/32", "198.18.0.0/15", "2001:db8::1/64"])
def test_cidr_fast_path_matches_ipaddress(value):
    import ipaddress
    from nfp.resources import _cidr
    assert _cidr(value) == str(ipaddress.ip_network(value, strict=False))


@pytest.mark.parametrize("value", ["256.1.1.1/24", "1.2.3.4/33", "1.2.3/24", "01.2.3.4", "x"])
def test_cidr_rejects_invalid(value):
    from nfp.resources import _cidr
    with pytest.raises(ValueError):
        _cidr(value)
