"""nfp-configurator's REST API (seed 001) in process: acceptance, routing to modules
and drivers, notifications, idempotency, and 400s that name the field."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from nfp.testing.configurator import ConfiguratorHarness, firewall_body

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def h(tmp_path):
    with ConfiguratorHarness(tmp_path) as harness:
        yield harness


def test_firewall_config_is_applied_and_notified_with_its_context(h):
    answer = h.post("create_network_function_config", firewall_body(), request_id="req-1")
    assert answer.status_code == 200 and answer.json() == {"request_id": "req-1", "status": "accepted"}
    h.engine.join()
    [note] = h.get_notifications()
    assert note["request_id"] == "req-1"
    assert note["info"] == {"service_type": "firewall", "context": firewall_body()["info"]["context"]}
    assert note["notification"] == [{"resource": "firewall",
                                     "data": {"status_code": "success", "error_msg": ""}}]
    assert h.get_notifications() == []  # drained: each notification is returned once


def test_a_bad_element_is_a_failure_naming_the_field(h):
    body = firewall_body(rules=[{"name": "x", "protocol": "sctp"}])
    assert h.post("create_network_function_config", body).status_code == 200
    h.engine.join()
    [note] = h.get_notifications()
    data = note["notification"][0]["data"]
    assert data["status_code"] == "failure"
    assert data["error_msg"].startswith("config[0].resource_data.rules.0.protocol")


def test_heat_is_unhandled_and_later_elements_still_run(h):
    body = firewall_body()
    body["config"].insert(0, {"resource": "heat", "resource_data": {"template": "heat_template_version: x"}})
    h.post("create_network_function_config", body)
    h.engine.join()
    [note] = h.get_notifications()
    assert [e["data"]["status_code"] for e in note["notification"]] == ["unhandled", "success"]


def test_create_stops_at_the_first_failure_delete_goes_on(h):
    bad = {"resource": "routes", "resource_data": {"routes": "nope"}}
    good = firewall_body()["config"][0]
    for method in ("create_network_function_config", "delete_network_function_config"):
        body = firewall_body()
        body["config"] = [bad, good]
        h.post(method, body)
    h.engine.join()
    create, delete = h.get_notifications()
    assert [e["data"]["status_code"] for e in create["notification"]] == ["failure", "failure"]
    assert create["notification"][1]["data"]["error_msg"] == "not applied: config[0] failed first"
    assert [e["data"]["status_code"] for e in delete["notification"]] == ["failure", "success"]


def test_device_config_routes_generic_resources(h):
    body = {"info": {"service_vendor": "memory", "service_type": "firewall", "context": {"x": [1]}},
            "config": [{"resource": "healthmonitor",
                        "resource_data": {"vmid": "vm-1", "mgmt_ip": "198.18.0.20", "periodicity": "initial"}}]}
    assert h.post("create_network_function_device_config", body).status_code == 200
    h.engine.join()
    [note] = h.get_notifications()
    assert note["info"]["context"] == {"x": [1]}
    assert note["notification"][0]["data"]["status_code"] == "success"


def test_a_retried_post_is_applied_once(h):
    first = h.post("create_network_function_config", firewall_body(), request_id="same")
    again = h.post("create_network_function_config", firewall_body(), request_id="same")
    assert first.json()["status"] == "accepted" and again.json()["status"] == "duplicate"
    h.engine.join()
    assert len(h.get_notifications()) == 1
    assert sum(c.type == "configurator.apply" for c in h.engine.calls) == 1


def test_an_unknown_vendor_is_a_failure_naming_service_vendor(h):
    h.post("create_network_function_config", firewall_body(vendor="nosuchvendor"))
    h.engine.join()
    [note] = h.get_notifications()
    assert note["notification"][0]["data"]["error_msg"].startswith("info.service_vendor")


@pytest.mark.parametrize("mutate, field", [
    (lambda b: b.pop("info"), "info"),
    (lambda b: b["info"].pop("service_type"), "info.service_type"),
    (lambda b: b.update(config=[]), "config"),
    (lambda b: b["config"][0].update(resource="vip"), "config[0].resource"),
    (lambda b: b["config"][0].pop("resource_data"), "config[0].resource_data"),
    (lambda b: b["info"]["context"].pop("nf_id"), "info.context.nf_id"),
    (lambda b: b["info"]["context"].pop("nfd_ip"), "info.context.nfd_ip"),
    (lambda b: b["info"]["context"].update(nfd_ip="not-an-ip"), "info.context.nfd_ip"),
    (lambda b: b["config"][0]["resource_data"].update(password="hunter22"),
     "config[0].resource_data.password"),
])
def test_invalid_requests_are_400_naming_the_field(h, mutate, field):
    body = firewall_body()
    mutate(body)
    answer = h.post("create_network_function_config", body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == field
    assert answer.json()["error"].startswith(field)


def test_malformed_json_and_bad_request_id_are_400(h):
    headers = {**h.headers(), "content-type": "application/json"}
    answer = h.client.post("/v1/nfp/create_network_function_config", content=b"{nope", headers=headers)
    assert answer.status_code == 400 and answer.json()["field"] == "body"
    answer = h.client.post("/v1/nfp/create_network_function_config", json=firewall_body(),
                           headers={**h.headers(), "X-Request-Id": "bad id with spaces"})
    assert answer.status_code == 400 and answer.json()["field"] == "header.X-Request-Id"


def test_credentials_in_the_context_are_not_stored_or_returned(h):
    body = firewall_body(auth_token="tok-SECRET-12345", nested={"password": "pw-SECRET-678"})
    h.post("create_network_function_config", body)
    h.engine.join()
    [note] = h.get_notifications()
    assert "auth_token" not in note["info"]["context"]
    assert note["info"]["context"]["nested"] == {}


def test_print_openapi_is_the_served_document(h, tmp_path):
    from nfp.cli.configurator import configurator
    result = CliRunner().invoke(configurator, ["--state-dir", str(tmp_path), "--print-openapi"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    served = h.client.get("/openapi.json", headers=h.headers())
    assert served.status_code == 200 and served.json() == printed
    assert set(printed["paths"]) == {f"/v1/nfp/{m}" for m in (
        "create_network_function_device_config", "delete_network_function_device_config",
        "create_network_function_config", "update_network_function_config",
        "delete_network_function_config", "get_notifications", "ack_notifications")}
    assert all("422" not in op["responses"] for path in printed["paths"].values() for op in path.values())
