"""HAProxy config rendering for the linux config driver (pure, no processes)."""
from __future__ import annotations

import pytest

from nfp.drivers.config.linux import haproxy
from nfp.resources import ResourceError, parse_resource


def _lb(**over):
    data = {"vip_address": "198.18.2.100", "protocol_port": 80,
            "members": [{"address": "198.18.1.10", "protocol_port": 8080, "id": "pt-1"},
                        {"address": "198.18.1.11", "protocol_port": 8080, "weight": 5}]}
    data.update(over)
    return parse_resource("loadbalancer", data)


def test_render_has_master_worker_frontend_and_members():
    text = haproxy.render(_lb(lb_algorithm="LEAST_CONNECTIONS"), "nf-1", "/d")
    assert "master-worker" in text
    assert "pidfile /d/haproxy.pid" in text
    assert "bind 198.18.2.100:80" in text
    assert "balance leastconn" in text
    assert "server pt-1 198.18.1.10:8080 weight 1\n" in text
    assert "server m-198.18.1.11-8080 198.18.1.11:8080 weight 5\n" in text
    assert "check" not in text.split("backend", 1)[1]


def test_render_with_http_health_monitor():
    text = haproxy.render(_lb(healthmonitor={"type": "HTTP", "delay": 2, "url_path": "/health"}),
                          "nf-1", "/d")
    assert "option httpchk GET /health" in text
    assert "default-server inter 2s fall 3 rise 2" in text
    assert "weight 1 check" in text


def test_tcp_mode():
    assert "mode tcp" in haproxy.render(_lb(protocol="TCP"), "nf", "/d")


def test_parse_members_reads_back_render():
    members = haproxy.parse_members(haproxy.render(_lb(), "nf", "/d"))
    assert members == [
        {"id": "pt-1", "address": "198.18.1.10", "protocol_port": 8080, "weight": 1},
        {"id": "m-198.18.1.11-8080", "address": "198.18.1.11", "protocol_port": 8080, "weight": 5}]


def test_check_rejects_duplicate_member():
    lb = _lb(members=[{"address": "198.18.1.10", "protocol_port": 80},
                      {"address": "198.18.1.10", "protocol_port": 80}])
    with pytest.raises(ResourceError) as err:
        haproxy.check(lb)
    assert err.value.field == "resource_data.members.1.address"


@pytest.mark.parametrize("data, field", [
    ({"vip_address": "198.18.2.300", "protocol_port": 80}, "resource_data.vip_address"),
    ({"vip_address": "198.18.2.1", "protocol_port": 0}, "resource_data.protocol_port"),
    ({"vip_address": "198.18.2.1", "protocol_port": 80,
      "members": [{"address": "198.18.1.1", "protocol_port": 70000}]},
     "resource_data.members.0.protocol_port"),
])
def test_schema_errors_name_the_field(data, field):
    with pytest.raises(ResourceError) as err:
        parse_resource("loadbalancer", data)
    assert err.value.field == field


@pytest.mark.parametrize("path", ["/a b", "/x\n  server evil 1.2.3.4:80", "/a#b", "/'q'", "relative"])
def test_check_rejects_health_paths_that_would_change_the_config(path):
    with pytest.raises(ResourceError) as err:
        haproxy.check(_lb(healthmonitor={"type": "HTTP", "url_path": path}))
    assert err.value.field == "resource_data.healthmonitor.url_path"


def test_check_accepts_an_ordinary_health_path():
    haproxy.check(_lb(healthmonitor={"type": "HTTP", "url_path": "/health?full=1"}))
