"""The configurator's REST API applies an nftables firewall to a real netns device:
`success` in get_notifications and packets that obey it; a bad rule is a `failure`
naming the field; a `heat` element is `unhandled`."""
from __future__ import annotations

import pytest

from nfp.testing.configurator import ConfiguratorHarness, firewall_body, harness_conf
from nfp.testing.topology import NetnsLab

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
WEB = "198.18.1.10"


@pytest.fixture
def lab(tmp_path, netns_required):
    with NetnsLab(tmp_path) as lab:
        device, target = lab.device()
        web = lab.topo.host("web", lab.provider, WEB)
        for port in (80, 8080):
            web.serve_http(port)
        client = lab.topo.host("client", lab.consumer, "198.18.2.10")
        inventory = [{"id": target.id, "mgmt_ip_address": target.mgmt_ip_address, "extra": target.extra}]
        conf = harness_conf(tmp_path, devices=inventory)
        with ConfiguratorHarness(tmp_path, conf=conf) as h:
            yield h, target, client


def _notify(h):
    h.engine.join()
    [note] = h.get_notifications()
    return note["notification"]


def test_firewall_through_the_rest_api_filters_packets(lab):
    h, target, client = lab
    rules = [{"name": "web", "protocol": "tcp", "destination_ip_address": WEB, "destination_port": 80}]
    body = firewall_body(rules, nf_id="nf-rest", mgmt_ip=target.mgmt_ip_address, vendor="linux")
    body["info"]["context"]["nfd_id"] = target.id
    body["config"][0]["resource_data"]["default_action"] = "deny"
    body["config"].append({"resource": "heat", "resource_data": {"template": "{}"}})
    assert h.post("create_network_function_config", body).status_code == 200
    assert [e["data"]["status_code"] for e in _notify(h)] == ["success", "unhandled"]
    assert client.http_get(WEB, 80) == (200, "web")
    assert client.tcp(WEB, 8080) == "timeout"

    bad = firewall_body([{"name": "x", "protocol": "tcp", "destination_port": 70000}], nf_id="nf-rest",
                        mgmt_ip=target.mgmt_ip_address, vendor="linux")
    assert h.post("update_network_function_config", bad).status_code == 200
    [element] = _notify(h)
    assert element["data"]["status_code"] == "failure"
    assert element["data"]["error_msg"].startswith("config[0].resource_data.rules.0.destination_port")
    assert client.http_get(WEB, 80) == (200, "web")  # the device kept its rules

    assert h.post("delete_network_function_config", body).status_code == 200
    assert _notify(h)[0]["data"]["status_code"] == "success"
    assert client.tcp(WEB, 8080) == "open"
