"""Routes and interfaces pushed by the linux driver, proven with real packets."""
from __future__ import annotations


import pytest

from nfp.testing.topology import NetnsLab

pytestmark = pytest.mark.integration

FAR_HOST = "198.18.3.10"
ROUTE = {"routes": [{"destination": "198.18.3.0/24", "nexthop": "198.18.1.254", "name": "far"}]}


@pytest.fixture
def net(tmp_path, netns_required):
    """client -> device -> router (198.18.1.254) -> far network 198.18.3.0/24."""
    with NetnsLab(tmp_path) as lab:
        device, target = lab.device("rt")
        far = lab.topo.network("far", "198.18.3.0/24", gateway_ip="198.18.3.1")
        router = lab.topo.host("router", lab.provider, "198.18.1.254", forwarding=True)
        lab.topo.attach(router, far, "198.18.3.1")
        lab.topo.route(router, "198.18.2.0/24", "198.18.1.1")
        server = lab.topo.host("far", far, FAR_HOST)
        server.serve_http(80)
        client = lab.topo.host("client", lab.consumer, "198.18.2.10")
        yield lab, target, client


def test_a_pushed_route_is_used(net):
    lab, target, client = net
    assert client.tcp(FAR_HOST, 80, timeout=0.5) in ("unreachable", "timeout")
    result = lab.apply(target, "routes", ROUTE, service_type="generic")
    assert result.ok, result.error
    assert client.http_get(FAR_HOST, 80) == (200, "far")
    [route] = lab.config.list_resources(target, "routes")
    assert (route["destination"], route["nexthop"]) == ("198.18.3.0/24", "198.18.1.254")
    assert route["device"].startswith("prov")  # out of the provider port


def test_update_removes_routes_no_longer_wanted(net):
    lab, target, client = net
    assert lab.apply(target, "routes", ROUTE, service_type="generic").ok
    assert lab.apply(target, "routes", {"routes": []}, operation="update", service_type="generic").ok
    assert lab.config.list_resources(target, "routes") == []
    assert client.tcp(FAR_HOST, 80, timeout=0.5) in ("unreachable", "timeout")


def test_routes_of_another_owner_are_left_alone(net):
    lab, target, client = net
    assert lab.apply(target, "routes", ROUTE, service_type="generic", nf_id="nf-a").ok
    assert lab.apply(target, "routes", {"routes": []}, operation="update", service_type="generic",
                     nf_id="nf-b").ok
    assert client.http_get(FAR_HOST, 80) == (200, "far")


def test_a_refused_route_rolls_back(net):
    lab, target, client = net
    assert lab.apply(target, "routes", ROUTE, service_type="generic").ok
    # the second nexthop is on no connected network: the kernel refuses it
    bad = {"routes": [{"destination": "198.18.4.0/24", "nexthop": "198.18.1.254"},
                      {"destination": "198.18.5.0/24", "nexthop": "198.19.9.9"}]}
    result = lab.apply(target, "routes", bad, operation="update", service_type="generic")
    assert not result.ok and "routes" in result.error
    assert [r["destination"] for r in lab.config.list_resources(target, "routes")] == ["198.18.3.0/24"]
    assert client.http_get(FAR_HOST, 80) == (200, "far")


def test_invalid_route_is_rejected_before_the_device(net):
    lab, target, client = net
    result = lab.apply(target, "routes", {"routes": [{"destination": "198.18.3.0/24",
                                                       "nexthop": "198.18.1.300"}]},
                       service_type="generic")
    assert not result.ok and result.error.startswith("resource_data.routes.0.nexthop")


def test_interfaces_resource_sets_addresses(net):
    lab, target, client = net
    inner = lab.config.list_resources(target, "interfaces")
    provider = next(i for i in inner if "198.18.1.1/24" in i["ip_addresses"])
    data = {"interfaces": [{"name": provider["name"], "ip_address": "198.18.1.2/24"}]}
    assert lab.apply(target, "interfaces", data, service_type="generic").ok
    now = next(i for i in lab.config.list_resources(target, "interfaces") if i["name"] == provider["name"])
    assert "198.18.1.2/24" in now["ip_addresses"]
    missing = lab.apply(target, "interfaces", {"interfaces": [{"name": "nope0"}]}, service_type="generic")
    assert not missing.ok and missing.error.startswith("resource_data.interfaces.0.name")
