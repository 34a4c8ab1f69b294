"""nftables for the firewall resource: render a Firewall as one table, read it back.

Each network function owns one table, ``inet nfp_<nf id>``, with one base chain
on the forward hook. :func:`render_table` returns a script that nft applies in
a single transaction (``table; delete table; table {...}``), so a device either
gets the whole new rule set or keeps the old one. :func:`parse_table` turns
``nft -j list table`` output back into :class:`~nfp.resources.FirewallRule`
objects, reading the kernel's rules rather than anything nfp remembers.

Pure functions only: no I/O here.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from typing import Any, Optional

from nfp.resources import Firewall, FirewallRule, ResourceError

FAMILY = "inet"
CHAIN = "forward"
TABLE_PREFIX = "nfp_"
_VERDICT = {"allow": "accept", "deny": "drop", "reject": "reject"}
_ACTION = {v: k for k, v in _VERDICT.items()}


def table_name(nf_id: str) -> str:
    """``nfp_<hex>``: the NF id without dashes, or a digest if it has other characters."""
    compact = nf_id.replace("-", "")
    if not re.fullmatch(r"[A-Za-z0-9_]{1,48}", compact):
        compact = hashlib.sha1(nf_id.encode()).hexdigest()
    return TABLE_PREFIX + compact


def check(firewall: Firewall, prefix: str = "resource_data") -> None:
    """Checks the schema cannot express; raise ResourceError naming the rule's field."""
    seen: set[str] = set()
    for index, rule in enumerate(firewall.rules):
        where = f"{prefix}.rules.{index}"
        if rule.name in seen:
            raise ResourceError(f"{where}.name", f"duplicate rule name {rule.name!r}")
        seen.add(rule.name)
        if rule.protocol == "icmp" and (rule.source_port or rule.destination_port):
            field = "source_port" if rule.source_port else "destination_port"
            raise ResourceError(f"{where}.{field}", "ports need protocol tcp, udp or any")
        versions = {_version(a) for a in (rule.source_ip_address, rule.destination_ip_address) if a}
        if len(versions) > 1:
            raise ResourceError(f"{where}.destination_ip_address",
                                "address family differs from source_ip_address")


def render_table(table: str, firewall: Firewall) -> str:
    """The nft script that atomically replaces ``table`` with ``firewall``'s rules."""
    policy = "accept" if firewall.default_action == "allow" else "drop"
    lines = [f"table {FAMILY} {table}", f"delete table {FAMILY} {table}",
             f"table {FAMILY} {table} {{", f"  chain {CHAIN} {{",
             f"    type filter hook forward priority filter; policy {policy};",
             "    ct state established,related accept"]
    lines.extend("    " + render_rule(rule) for rule in firewall.rules if rule.enabled)
    lines.extend(["  }", "}", ""])
    return "\n".join(lines)


def render_delete(table: str) -> str:
    """The nft script that removes ``table`` whether or not it exists."""
    return f"table {FAMILY} {table}\ndelete table {FAMILY} {table}\n"


def render_rule(rule: FirewallRule) -> str:
    """One rule as an nft statement, tagged with its name as the comment.

    Addresses arrive normalised by the schema (``addr/prefix``), so plain string work is
    enough here; this runs once per rule and 10,000-rule sets are normal."""
    parts: list[str] = []
    version = None
    for field, addr in (("saddr", rule.source_ip_address), ("daddr", rule.destination_ip_address)):
        if addr:
            family, text, version = _match_addr(addr)
            parts.append(f"{family} {field} {text}")
    proto = rule.protocol
    sport, dport = rule.source_port, rule.destination_port
    if proto in ("tcp", "udp"):
        if sport or dport:
            if sport:
                parts.append(f"{proto} sport {sport.replace(':', '-')}")
            if dport:
                parts.append(f"{proto} dport {dport.replace(':', '-')}")
        else:
            parts.append(f"meta l4proto {proto}")
    elif proto == "icmp":
        parts.append(_ICMP[version])
    elif sport or dport:
        parts.append("meta l4proto { tcp, udp }")
        if sport:
            parts.append(f"th sport {sport.replace(':', '-')}")
        if dport:
            parts.append(f"th dport {dport.replace(':', '-')}")
    verdict = _VERDICT[rule.action]
    if verdict == "reject" and proto == "tcp":
        verdict = "reject with tcp reset"
    parts.append(verdict)
    parts.append(f'comment "{rule.name}"')
    return " ".join(parts)


_ICMP = {4: "meta l4proto icmp", 6: "meta l4proto ipv6-icmp", None: "meta l4proto { icmp, ipv6-icmp }"}


def _match_addr(cidr: str) -> tuple[str, str, int]:
    """``(ip|ip6, address or network, version)`` for a normalised ``addr/prefix``."""
    addr, _, prefix = cidr.partition("/")
    if ":" in addr:
        return "ip6", addr if prefix == "128" else cidr, 6
    return "ip", addr if prefix == "32" else cidr, 4


def parse_table(listing: str | dict) -> Firewall:
    """Rebuild a Firewall from ``nft -j list table`` output (rules without a name are nfp's
    own scaffolding and are skipped)."""
    data = json.loads(listing) if isinstance(listing, str) else listing
    default_action = "deny"
    rules = []
    for item in data.get("nftables", []):
        if "chain" in item and item["chain"].get("name") == CHAIN:
            default_action = "allow" if item["chain"].get("policy") == "accept" else "deny"
        rule = item.get("rule")
        if rule and rule.get("comment"):
            rules.append(parse_rule(rule))
    return Firewall(rules=rules, default_action=default_action)


def parse_rule(rule: dict) -> FirewallRule:
    """One nft JSON rule back into a FirewallRule."""
    fields: dict[str, Any] = {"name": rule["comment"], "protocol": "any"}
    for expr in rule.get("expr", []):
        if "match" in expr:
            _parse_match(expr["match"], fields)
        for verdict in ("accept", "drop", "reject"):
            if verdict in expr:
                fields["action"] = _ACTION[verdict]
    return FirewallRule.model_validate(fields)


def _parse_match(match: dict, fields: dict) -> None:
    left, right = match.get("left", {}), match.get("right")
    if "meta" in left and left["meta"].get("key") == "l4proto":
        fields["protocol"] = _protocol(right)
    elif "payload" in left:
        proto, field = left["payload"].get("protocol"), left["payload"].get("field")
        if proto in ("ip", "ip6") and field in ("saddr", "daddr"):
            key = "source_ip_address" if field == "saddr" else "destination_ip_address"
            fields[key] = _cidr(right)
        elif field in ("sport", "dport"):
            if proto in ("tcp", "udp"):
                fields["protocol"] = proto
            key = "source_port" if field == "sport" else "destination_port"
            fields[key] = _port_text(right)


def _protocol(right: Any) -> str:
    names = set(right["set"]) if isinstance(right, dict) and "set" in right else {right}
    if names <= {"icmp", "ipv6-icmp"}:
        return "icmp"
    if len(names) == 1 and names & {"tcp", "udp"}:
        return names.pop()
    return "any"


def _cidr(right: Any) -> str:
    if isinstance(right, dict) and "prefix" in right:
        return f"{right['prefix']['addr']}/{right['prefix']['len']}"
    return str(ipaddress.ip_network(right, strict=False))


def _port_text(right: Any) -> str:
    if isinstance(right, dict) and "range" in right:
        low, high = right["range"]
        return f"{low}:{high}"
    return str(right)


def _version(cidr: str) -> int:
    return 6 if ":" in cidr else 4


def table_names(listing: str) -> list[str]:
    """nfp's tables in ``nft -j list tables`` output."""
    data = json.loads(listing or "{}")
    return [t["table"]["name"] for t in data.get("nftables", [])
            if "table" in t and t["table"].get("family") == FAMILY
            and t["table"]["name"].startswith(TABLE_PREFIX)]


def external_id(table: str, rule_name: str) -> str:
    """A rule's stable id on the device: the table, chain and its name (handles change on
    every atomic replace, names do not)."""
    return f"{FAMILY} {table} {CHAIN} {rule_name}"


def first_error_line(stderr: str) -> Optional[str]:
    """nft's first error line, for a short message."""
    for line in stderr.splitlines():
        if "Error" in line:
            return line.strip()
    return stderr.strip().splitlines()[0] if stderr.strip() else None
