"""Typed placeholders: every value is checked against its type before it is rendered.

Types reject what cannot be valid (a CIDR with a quote in it is no CIDR), so
only the free-text types (``text``, ``name``) ever need escaping to be safe, and
the escapers in :mod:`.render` handle those per context.

The address types parse with :mod:`ipaddress`, the costly part of a check; the
normalised form of each address string is remembered (a bounded cache), so the
same CIDR on many rules is parsed once.
"""
from __future__ import annotations

import functools
import ipaddress
import re
from typing import Any, Callable

from .errors import PlaceholderError

_IDENT = re.compile(r"^[A-Za-z0-9_.:/@-]{1,255}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_IFNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./:-]{0,31}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

PROTOCOLS = ("tcp", "udp", "icmp", "any")


_OCTET = r"(0|[1-9][0-9]{0,2})"
#: dotted IPv4 without leading zeros, optional /prefix: parsed without ipaddress
_IPV4 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}(?:/(0|[1-9][0-9]?))?")


def _dotted(n: int) -> str:
    return f"{n >> 24}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


@functools.lru_cache(maxsize=8192)
def network(text: str) -> tuple[str, int, int, str]:
    """``(network address, prefix length, longest prefix, netmask)`` of a CIDR or a
    bare address (host bits cleared), as :mod:`ipaddress` would give them;
    ValueError if ``text`` is neither. Dotted IPv4 takes a fast path."""
    match = _IPV4.fullmatch(text)
    if match:
        *octets, prefix_text = match.groups()
        values = [int(o) for o in octets]
        prefix = 32 if prefix_text is None else int(prefix_text)
        if max(values) <= 255 and prefix <= 32:
            mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
            address = ((values[0] << 24) | (values[1] << 16) | (values[2] << 8) | values[3]) & mask
            return _dotted(address), prefix, 32, _dotted(mask)
    net = ipaddress.ip_network(text, strict=False)
    return str(net.network_address), net.prefixlen, net.max_prefixlen, str(net.netmask)


@functools.lru_cache(maxsize=8192)
def _normal_cidr(text: str) -> str:
    address, prefix, _, _ = network(text)
    return f"{address}/{prefix}"


@functools.lru_cache(maxsize=8192)
def _normal_ip(text: str) -> str:
    match = _IPV4.fullmatch(text)
    if match and match.group(5) is None and all(int(o) <= 255 for o in match.groups()[:4]):
        return text  # the regex admits only the canonical dotted form
    return str(ipaddress.ip_address(text))


def _cidr(v: Any) -> str:
    try:
        return _normal_cidr(str(v))
    except ValueError:
        raise ValueError("is not a CIDR") from None


def _ip(v: Any) -> str:
    try:
        return _normal_ip(str(v))
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

#: the seed 000 authors' names for nfp's placeholders: a template may use either
ALIASES: dict[str, str] = {
    "nextHop": "nexthop", "destNetwork": "destination", "privateNetwork": "sourceCidr",
    "vipIp": "vipAddress", "algorithm": "lbAlgorithm", "lbName": "name",
}
KNOWN.update({alias: KNOWN[target] for alias, target in ALIASES.items()})


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
        if value is None:
            out[name] = None
            continue
        checker = TYPES.get(type_name)
        if checker is None:
            raise PlaceholderError(name, f"unknown type {type_name!r}")
        try:
            out[name] = checker(value)
        except ValueError as exc:
            raise PlaceholderError(name, f"{_show(value)} {exc}") from None
    return out


def _show(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"
