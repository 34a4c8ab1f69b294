"""Typed placeholders: every value is checked against its type before it is rendered.

Types reject what cannot be valid (a CIDR with a quote in it is no CIDR), so
only the free-text types (``text``, ``name``) ever need escaping to be safe, and
the escapers in :mod:`.render` handle those per context.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any, Callable, Optional

from .errors import PlaceholderError

_IDENT = re.compile(r"^[A-Za-z0-9_.:/@-]{1,255}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_IFNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./:-]{0,31}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

PROTOCOLS = ("tcp", "udp", "icmp", "any")


def _cidr(v: Any) -> str:
    try:
        return str(ipaddress.ip_network(str(v), strict=False))
    except ValueError:
        raise ValueError("is not a CIDR") from None


def _ip(v: Any) -> str:
    try:
        return str(ipaddress.ip_address(str(v)))
    except ValueError:
        raise ValueError("is not an IP address") from None


def _port(v: Any) -> int:
    if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, str) and v.isdigit())):
        raise ValueError("is not a port number")
    n = int(v)
    if not 1 <= n <= 65535:
        raise ValueError("is out of range 1-65535")
    return n


def _port_range(v: Any) -> str:
    text = str(v)
    parts = text.replace("-", ":").split(":")
    if len(parts) > 2 or not all(p.isdigit() for p in parts):
        raise ValueError("is not a port or port range (N or N:M)")
    nums = [_port(p) for p in parts]
    if len(nums) == 2 and nums[0] > nums[1]:
        raise ValueError("has its low port above its high port")
    return ":".join(str(n) for n in nums)


def _protocol(v: Any) -> str:
    text = str(v).lower()
    if text not in PROTOCOLS:
        raise ValueError(f"must be one of {', '.join(PROTOCOLS)}")
    return text


def _pattern(regex: re.Pattern, what: str) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if not isinstance(v, str) or not regex.match(v):
            raise ValueError(f"is not a valid {what}")
        return v
    return check


def _text(v: Any) -> str:
    text = str(v)
    if len(text) > 1024:
        raise ValueError("is longer than 1024 characters")
    if _CONTROL.search(text):
        raise ValueError("contains control characters")
    return text


def _int(v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError("is not an integer")
    try:
        return int(v)
    except (TypeError, ValueError):
        raise ValueError("is not an integer") from None


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError("is not a boolean")
    return v


def _members(v: Any) -> list[dict]:
    if not isinstance(v, list):
        raise ValueError("is not a list of members")
    out = []
    for i, m in enumerate(v):
        try:
            out.append({"name": _pattern(_NAME, "member name")(m["name"]),
                        "address": _ip(m["address"]), "port": _port(m["port"]),
                        "weight": _int(m.get("weight", 1))})
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"member {i}: {exc}") from None
    return out


#: type name -> checker returning the normalised value
TYPES: dict[str, Callable[[Any], Any]] = {
    "cidr": _cidr,
    "ip": _ip,
    "port": _port,
    "port_range": _port_range,
    "protocol": _protocol,
    "name": _pattern(_NAME, "name (letters, digits, '_', '.', '-')"),
    "ident": _pattern(_IDENT, "identifier"),
    "ifname": _pattern(_IFNAME, "interface name"),
    "text": _text,
    "int": _int,
    "bool": _bool,
    "members": _members,
}


def _enum(*choices: str) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if v not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return v
    return check


TYPES["action"] = _enum("allow", "deny", "reject")
TYPES["lb_protocol"] = _enum("HTTP", "TCP")
TYPES["lb_algorithm"] = _enum("ROUND_ROBIN", "LEAST_CONNECTIONS", "SOURCE_IP")
TYPES["health_type"] = _enum("TCP", "HTTP", "PING")

#: every placeholder nfp fills in, and its type (see README.md for what each holds)
KNOWN: dict[str, str] = {
    # every rule
    "nfId": "ident", "name": "name", "ruleId": "ident", "description": "text",
    # firewall
    "action": "action", "protocol": "protocol", "enabled": "bool",
    "sourceCidr": "cidr", "destCidr": "cidr", "sourcePorts": "port_range", "destPorts": "port_range",
    "startPort": "port", "endPort": "port", "sourceStartPort": "port", "sourceEndPort": "port",
    # NAT and port forwarding
    "publicIp": "ip", "publicPort": "port", "publicPorts": "port_range", "publicEndPort": "port",
    "privateIp": "ip", "privatePort": "port", "privatePorts": "port_range", "privateEndPort": "port",
    "translatedIp": "ip", "outboundInterface": "ifname",
    # static routes
    "destination": "cidr", "nexthop": "ip",
    # load balancer
    "vipAddress": "ip", "vipPort": "port", "lbProtocol": "lb_protocol", "lbAlgorithm": "lb_algorithm",
    "members": "members", "healthType": "health_type", "healthDelay": "int", "healthTimeout": "int",
    "healthRetries": "int", "healthUrl": "text",
    # device-side ids
    "externalId": "ident", "ref": "ident", "jobId": "ident",
}


def check(name: str, type_name: str, value: Any) -> Any:
    """Check ``value`` against ``type_name``; ``None`` (no value) always passes."""
    if value is None:
        return None
    checker = TYPES.get(type_name)
    if checker is None:
        raise PlaceholderError(name, f"unknown type {type_name!r}")
    try:
        return checker(value)
    except ValueError as exc:
        raise PlaceholderError(name, f"{_show(value)} {exc}") from None


def check_all(values: dict[str, Any], types: dict[str, str]) -> dict[str, Any]:
    """Check every value whose name has a type; unknown names are refused."""
    out = {}
    for name, value in values.items():
        type_name = types.get(name)
        if type_name is None:
            raise PlaceholderError(name, "is not a known placeholder")
        out[name] = check(name, type_name, value)
    return out


def _show(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"


def type_of(name: str, extra: Optional[dict[str, str]] = None) -> Optional[str]:
    """The type of placeholder ``name`` (nfp's own, or a dictionary var)."""
    if extra and name in extra:
        return extra[name]
    return KNOWN.get(name)
