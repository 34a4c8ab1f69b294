"""A service resource a driver cannot take fails the element: nfp never reports
success for a firewall, load balancer or VPN that was not configured."""
from __future__ import annotations

from nfp import config as nfp_config
from nfp.drivers.config.base import DeviceTarget
from nfp.workers.configurator.client import DirectConfiguratorClient

VPN = {"resource": "vpn", "resource_data": {"local_cidrs": ["198.18.1.0/24"], "connections": [
    {"name": "site-b", "peer_address": "198.18.9.1", "peer_cidrs": ["198.18.9.0/24"],
     "psk_ref": "site-b-psk"}]}}


def _client(tmp_path):
    conf = nfp_config.load(None, {"state_dir": str(tmp_path)}, environ={})
    return DirectConfiguratorClient(conf)


def test_vpn_on_a_vendor_without_vpn_fails_with_the_resource_named(tmp_path):
    client = _client(tmp_path)
    device = DeviceTarget("fw-1", "198.18.0.10", "pfsense")
    try:
        outcome = client.configure("create", "vpn", [VPN], device, "nf-1", "t1")
    finally:
        client.stop()
    assert not outcome.ok
    assert outcome.error == "vpn: the pfsense driver does not support vpn"


def test_removing_what_a_driver_never_held_is_not_a_failure(tmp_path):
    client = _client(tmp_path)
    device = DeviceTarget("fw-1", "198.18.0.10", "pfsense")
    try:
        outcome = client.configure("delete", "vpn", [VPN], device, "nf-1", "t1")
    finally:
        client.stop()
    assert outcome.ok
