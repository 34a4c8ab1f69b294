"""The linux driver on the convergence core: diffs against what the kernel reads back,
and rule tracking in the ``rules`` table, on a real netns device."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from nfp.db.rules import PushedRule
from nfp.drivers.config.base import ConfigRequest
from nfp.drivers.device.netns import iproute
from nfp.testing.topology import NetnsLab

pytestmark = pytest.mark.integration

RULES = {"rules": [
    {"name": "web", "protocol": "tcp", "source_ip_address": "198.18.2.0/24",
     "destination_ip_address": "198.18.1.10", "destination_port": 80},
    {"name": "ping", "protocol": "icmp", "destination_ip_address": "198.18.1.0/24"},
], "default_action": "deny"}
ROUTES = {"routes": [{"destination": "198.18.3.0/24", "nexthop": "198.18.1.254"}]}


@pytest.fixture
def lab(tmp_path, netns_required):
    with NetnsLab(tmp_path) as lab:
        _, target = lab.device()
        yield lab, target


def _diff(lab, target, resource, data):
    return lab.config.diff(ConfigRequest("update", resource, resource, data, target, nf_id="nf-lab"))


def _rows(lab):
    with lab.config.sessionmaker() as session:
        return {(r.service, r.name): r for r in session.scalars(select(PushedRule))}


def _nft(target, *args):
    return iproute.netns_exec(target.extra["netns"], "nft", *args)


def test_a_rule_deleted_on_the_device_shows_in_the_diff_and_the_diff_changes_nothing(lab):
    lab, target = lab
    assert _diff(lab, target, "firewall", RULES).names() == {"web", "ping", "default_action"}
    assert lab.apply(target, "firewall", RULES).ok
    assert _diff(lab, target, "firewall", RULES).empty
    listing = json.loads(_nft(target, "-j", "-a", "list", "table", "inet", "nfp_nflab"))
    handle = next(i["rule"]["handle"] for i in listing["nftables"]
                  if "rule" in i and i["rule"].get("comment") == "web")
    _nft(target, "delete", "rule", "inet", "nfp_nflab", "forward", "handle", str(handle))
    before = _nft(target, "list", "table", "inet", "nfp_nflab")

    diff = _diff(lab, target, "firewall", RULES)
    assert [c.name for c in diff.to_add] == ["web"] and not diff.to_change and not diff.to_remove
    assert diff.to_add[0].desired["destination_port"] == "80"
    assert diff.to_add[0].external_id == "inet nfp_nflab forward web"          # from the records
    assert _nft(target, "list", "table", "inet", "nfp_nflab") == before         # the device is untouched

    _nft(target, "add", "rule", "inet", "nfp_nflab", "forward", "tcp", "dport", "9", "accept",
         "comment", '"manual"')
    changed = _diff(lab, target, "firewall", {"rules": RULES["rules"][1:], "default_action": "allow"})
    assert [c.name for c in changed.to_remove] == ["manual"]
    assert [c.name for c in changed.to_change] == ["default_action"]
    # an update converges the device again and reads it back
    assert lab.apply(target, "firewall", RULES, operation="update").ok
    assert _diff(lab, target, "firewall", RULES).empty


def test_linux_rules_are_tracked_and_forgotten_on_delete(lab):
    lab, target = lab
    result = lab.apply(target, "firewall", RULES)
    assert result.ok, result.error
    rows = _rows(lab)
    assert {k: r.external_id for k, r in rows.items()} == {
        ("Firewall", "web"): "inet nfp_nflab forward web", ("Firewall", "ping"): "inet nfp_nflab forward ping"}
    assert all(r.nf_id == "nf-lab" and r.device_id == target.id and r.status == "applied" for r in rows.values())
    assert result.external_ids == {"web": "inet nfp_nflab forward web", "ping": "inet nfp_nflab forward ping"}

    assert lab.apply(target, "firewall", {"rules": RULES["rules"][:1]}, operation="update").ok
    assert set(_rows(lab)) == {("Firewall", "web")}

    assert lab.apply(target, "routes", ROUTES, service_type="firewall").ok
    route_rows = {k: r for k, r in _rows(lab).items() if k[0] == "StaticRoutes"}
    assert [r.external_id for r in route_rows.values()] == ["firewall-nflab 198.18.3.0/24 via 198.18.1.254"]
    assert _diff(lab, target, "routes", ROUTES).empty

    assert lab.apply(target, "firewall", RULES, operation="delete").ok
    assert lab.apply(target, "routes", ROUTES, operation="delete", service_type="firewall").ok
    assert _rows(lab) == {}
    assert [c.name for c in _diff(lab, target, "firewall", RULES).to_add] == ["web", "ping", "default_action"]
