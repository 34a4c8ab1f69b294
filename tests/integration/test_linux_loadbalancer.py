"""HAProxy load balancer NF on a netns device, proven with real HTTP."""
from __future__ import annotations

import collections
import threading

import pytest

from nfp.testing.topology import NetnsLab

pytestmark = pytest.mark.integration

VIP = "198.18.2.100"


@pytest.fixture
def net(tmp_path, netns_required):
    with NetnsLab(tmp_path) as lab:
        device, target = lab.device("lb")
        members = [lab.topo.host(f"m{i}", lab.provider, f"198.18.1.{10 + i}") for i in range(3)]
        for host in members:
            host.server = host.serve_http(8080)
        client = lab.topo.host("client", lab.consumer, "198.18.2.10")
        yield lab, target, members, client


def _lb(members, **over):
    data = {"vip_address": VIP, "protocol_port": 80,
            "members": [{"address": h.ip, "protocol_port": 8080, "id": f"pt-{h.name}"} for h in members]}
    data.update(over)
    return data


def _spread(client, n=30):
    return collections.Counter(client.http_get(VIP, 80)[1] for _ in range(n))


def test_requests_are_spread_over_the_members(net):
    lab, target, members, client = net
    result = lab.apply(target, "loadbalancer", _lb(members))
    assert result.ok, result.error
    counts = _spread(client)
    assert set(counts) == {"m0", "m1", "m2"}
    assert counts["m0"] == counts["m1"] == counts["m2"] == 10  # round robin


def test_a_removed_member_stops_receiving_requests(net):
    lab, target, members, client = net
    assert lab.apply(target, "loadbalancer", _lb(members)).ok
    hits_before = members[2].server.hits
    # policy_target_removed_notification re-applies the resource without the member
    assert lab.apply(target, "loadbalancer", _lb(members[:2]), operation="update").ok
    counts = _spread(client)
    assert set(counts) == {"m0", "m1"}
    assert members[2].server.hits == hits_before
    # and an added one starts receiving
    assert lab.apply(target, "loadbalancer", _lb(members), operation="update").ok
    assert set(_spread(client)) == {"m0", "m1", "m2"}
    assert [m["id"] for m in lab.config.list_resources(target, "loadbalancer")[0]["members"]] == [
        "pt-m0", "pt-m1", "pt-m2"]


def test_reloads_drop_no_connections(net):
    lab, target, members, client = net
    assert lab.apply(target, "loadbalancer", _lb(members)).ok
    failures, done = [], collections.Counter()
    stop = threading.Event()

    def traffic():
        while not stop.is_set():
            try:
                status, _ = client.http_get(VIP, 80)
                done[status] += 1
            except OSError as exc:
                failures.append(repr(exc))

    threads = [threading.Thread(target=traffic) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(8):
            assert lab.apply(target, "loadbalancer", _lb(members[: 1 + i % 3]), operation="update").ok
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert set(done) == {200} and done[200] > 0


def test_bad_config_is_rejected_and_the_old_config_keeps_serving(net):
    lab, target, members, client = net
    assert lab.apply(target, "loadbalancer", _lb(members)).ok
    bad = _lb(members)
    bad["members"][1]["protocol_port"] = 0
    result = lab.apply(target, "loadbalancer", bad, operation="update")
    assert not result.ok and result.error.startswith("resource_data.members.1.protocol_port")
    assert set(_spread(client)) == {"m0", "m1", "m2"}


def test_a_config_haproxy_refuses_keeps_the_old_one(net, monkeypatch):
    lab, target, members, client = net
    assert lab.apply(target, "loadbalancer", _lb(members)).ok
    # the checks leave nothing for `haproxy -c` to refuse, so break the rendered file itself
    from nfp.drivers.config.linux import haproxy
    good_render = haproxy.render
    monkeypatch.setattr(haproxy, "render",
                        lambda *a, **kw: good_render(*a, **kw).replace("balance", "balanse"))
    result = lab.apply(target, "loadbalancer", _lb(members[:1]), operation="update")
    assert not result.ok and "haproxy rejected" in result.error
    assert set(_spread(client)) == {"m0", "m1", "m2"}


def test_a_health_check_path_cannot_inject_config(net):
    lab, target, members, client = net
    bad = _lb(members, healthmonitor={"type": "HTTP", "url_path": "/ok\n    server evil 198.18.1.99:80"})
    result = lab.apply(target, "loadbalancer", bad)
    assert not result.ok and result.error.startswith("resource_data.healthmonitor.url_path")


def test_delete_stops_haproxy_and_releases_the_vip(net):
    lab, target, members, client = net
    assert lab.apply(target, "loadbalancer", _lb(members)).ok
    assert lab.apply(target, "loadbalancer", _lb(members), operation="delete").ok
    assert client.tcp(VIP, 80, timeout=0.5) in ("timeout", "unreachable")
    assert lab.config.list_resources(target, "loadbalancer") == []
