"""nftables rendering and read-back for the linux config driver (pure, no kernel)."""
from __future__ import annotations

import json

import pytest

from nfp.drivers.config.linux import nft
from nfp.resources import Firewall, ResourceError, parse_resource


def _fw(*rules, default="deny") -> Firewall:
    return parse_resource("firewall", {"rules": list(rules), "default_action": default})


def test_table_name_is_stable_and_nft_safe():
    assert nft.table_name("6f1c2a1e-0b7e-4c55-9d0c-1c5a2b3c4d5e") == "nfp_6f1c2a1e0b7e4c559d0c1c5a2b3c4d5e"
    odd = nft.table_name("nf with spaces")
    assert odd.startswith("nfp_") and " " not in odd and odd == nft.table_name("nf with spaces")


@pytest.mark.parametrize("rule, expected", [
    ({"name": "web", "protocol": "tcp", "source_ip_address": "198.18.2.0/24",
      "destination_ip_address": "198.18.1.10", "destination_port": 80},
     'ip saddr 198.18.2.0/24 ip daddr 198.18.1.10 tcp dport 80 accept comment "web"'),
    ({"name": "r", "protocol": "udp", "source_port": "1000:2000", "action": "deny"},
     'udp sport 1000-2000 drop comment "r"'),
    ({"name": "t", "protocol": "tcp", "action": "reject"},
     'meta l4proto tcp reject with tcp reset comment "t"'),
    ({"name": "p", "protocol": "icmp", "destination_ip_address": "198.18.1.0/24"},
     'ip daddr 198.18.1.0/24 meta l4proto icmp accept comment "p"'),
    ({"name": "p6", "protocol": "icmp"}, 'meta l4proto { icmp, ipv6-icmp } accept comment "p6"'),
    ({"name": "a", "protocol": "any", "destination_port": 443, "action": "reject"},
     'meta l4proto { tcp, udp } th dport 443 reject comment "a"'),
    ({"name": "v6", "source_ip_address": "2001:db8::/32"}, 'ip6 saddr 2001:db8::/32 accept comment "v6"'),
])
def test_render_rule(rule, expected):
    assert nft.render_rule(_fw(rule).rules[0]) == expected


def test_render_table_replaces_atomically_and_skips_disabled_rules():
    script = nft.render_table("nfp_x", _fw({"name": "on", "protocol": "tcp"},
                                            {"name": "off", "enabled": False}, default="allow"))
    lines = script.splitlines()
    # declare-then-delete makes the replace one transaction whether or not the table exists
    assert lines[:3] == ["table inet nfp_x", "delete table inet nfp_x", "table inet nfp_x {"]
    assert "policy accept;" in script
    assert '"on"' in script and '"off"' not in script


@pytest.mark.parametrize("rule, field", [
    ({"name": "x", "protocol": "icmp", "destination_port": 80}, "rules.0.destination_port"),
    ({"name": "x", "source_ip_address": "198.18.0.0/24", "destination_ip_address": "2001:db8::/64"},
     "rules.0.destination_ip_address"),
])
def test_check_rejects_what_the_schema_allows(rule, field):
    with pytest.raises(ResourceError) as err:
        nft.check(_fw(rule))
    assert err.value.field == f"resource_data.{field}"


def test_check_rejects_duplicate_names():
    with pytest.raises(ResourceError) as err:
        nft.check(_fw({"name": "a"}, {"name": "b"}, {"name": "a"}))
    assert err.value.field == "resource_data.rules.2.name"


def _listing(rules_json: list[dict], policy: str = "drop") -> str:
    items = [{"metainfo": {"json_schema_version": 1}},
             {"table": {"family": "inet", "name": "nfp_x", "handle": 1}},
             {"chain": {"family": "inet", "table": "nfp_x", "name": "forward", "policy": policy}}]
    items += [{"rule": {"family": "inet", "table": "nfp_x", "chain": "forward", **r}} for r in rules_json]
    return json.dumps({"nftables": items})


def test_parse_table_reads_nft_json():
    # shapes as printed by nft 1.0.6 for the statements render_rule writes
    listing = _listing([
        {"expr": [{"match": {"op": "in", "left": {"ct": {"key": "state"}},
                             "right": ["established", "related"]}}, {"accept": None}]},
        {"comment": "web", "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                       "right": {"prefix": {"addr": "198.18.2.0", "len": 24}}}},
            {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                       "right": "198.18.1.10"}},
            {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                       "right": {"range": [80, 90]}}},
            {"accept": None}]},
        {"comment": "ping", "expr": [
            {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}},
                       "right": {"set": ["icmp", "ipv6-icmp"]}}}, {"drop": None}]},
        {"comment": "any", "expr": [
            {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": {"set": ["tcp", "udp"]}}},
            {"match": {"op": "==", "left": {"payload": {"protocol": "th", "field": "sport"}}, "right": 53}},
            {"reject": {"type": "icmpx", "expr": "port-unreachable"}}]},
    ], policy="accept")
    fw = nft.parse_table(listing)
    assert fw.default_action == "allow"
    assert [r.model_dump(include={"name", "action", "protocol", "source_ip_address",
                                  "destination_ip_address", "source_port", "destination_port"})
            for r in fw.rules] == [
        {"name": "web", "action": "allow", "protocol": "tcp", "source_ip_address": "198.18.2.0/24",
         "destination_ip_address": "198.18.1.10/32", "source_port": None, "destination_port": "80:90"},
        {"name": "ping", "action": "deny", "protocol": "icmp", "source_ip_address": None,
         "destination_ip_address": None, "source_port": None, "destination_port": None},
        {"name": "any", "action": "reject", "protocol": "any", "source_ip_address": None,
         "destination_ip_address": None, "source_port": "53", "destination_port": None},
    ]


def test_table_names_lists_only_nfp_tables():
    listing = json.dumps({"nftables": [
        {"table": {"family": "inet", "name": "nfp_a"}}, {"table": {"family": "ip", "name": "nfp_b"}},
        {"table": {"family": "inet", "name": "filter"}}]})
    assert nft.table_names(listing) == ["nfp_a"]
