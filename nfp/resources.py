"""Typed service-config resources: the bodies inside ``config[].resource_data``.

A network function's ``service_config`` is a JSON or YAML document::

    {"config": [{"resource": "firewall", "resource_data": {"rules": [...]}}]}

Each resource is parsed here, at the edge, into a pydantic model; an invalid
value is rejected with the field's path (``rules.0.destination_port``) before any
driver touches a device. Drivers take these models and trust them.

Mapping to dictionary services (seed 000): ``firewall`` → Firewall,
``port_forwarding`` → PortForwarding, ``static_nat`` → StaticNat,
``source_nat`` → SourceNat, ``loadbalancer`` → LoadBalancer, ``routes`` →
StaticRoutes. ``vpn`` (site-to-site IPsec) has no dictionary service yet.
"""
from __future__ import annotations

import functools
import ipaddress
import json
import re
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field,
                      ValidationError, field_validator)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


_OCTET = r"(0|[1-9]\d{0,2})"
_IPV4_CIDR = re.compile(rf"^{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}(?:/(0|[1-9]\d?))?$")


@functools.lru_cache(maxsize=65536)
def _cidr(value: str) -> str:
    """Normalised network (host bits cleared). Rule sets repeat the same few
    networks thousands of times, hence the cache and the IPv4 fast path."""
    match = _IPV4_CIDR.match(value)
    if match:
        octets = [int(g) for g in match.groups()[:4]]
        prefix = int(match.group(5)) if match.group(5) is not None else 32
        if all(o <= 255 for o in octets) and prefix <= 32:
            addr = (octets[0] << 24) | (octets[1] << 16) | (octets[2] << 8) | octets[3]
            addr &= (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
            return f"{addr >> 24}.{(addr >> 16) & 255}.{(addr >> 8) & 255}.{addr & 255}/{prefix}"
        raise ValueError(f"{value!r} is not a valid CIDR")
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise ValueError(f"{value!r} is not a valid CIDR") from None


def _interface(value: str) -> str:
    """An address with its prefix (``198.18.1.1/24``): host bits are kept."""
    try:
        return str(ipaddress.ip_interface(value))
    except ValueError:
        raise ValueError(f"{value!r} is not a valid address/prefix") from None


@functools.lru_cache(maxsize=65536)
def _ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not a valid IP address") from None


@functools.lru_cache(maxsize=65536)
def _port_range(value: Any) -> str:
    text = str(value)
    parts = text.replace("-", ":").split(":")
    if len(parts) > 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"{text!r} is not a port or port range (N or N:M)")
    nums = [int(p) for p in parts]
    if not all(1 <= n <= 65535 for n in nums):
        raise ValueError(f"{text!r} is out of range 1-65535")
    if len(nums) == 2 and nums[0] > nums[1]:
        raise ValueError(f"{text!r} has its low port above its high port")
    return ":".join(str(n) for n in nums)


def _name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"{value!r} must be 1-63 letters, digits, '_', '.' or '-'")
    return value


Cidr = Annotated[str, AfterValidator(_cidr)]
IPInterface = Annotated[str, AfterValidator(_interface)]
IPAddress = Annotated[str, AfterValidator(_ip)]
PortRange = Annotated[Union[int, str], AfterValidator(_port_range)]
Port = Annotated[int, Field(ge=1, le=65535)]
RuleName = Annotated[str, AfterValidator(_name)]
Protocol = Literal["tcp", "udp", "icmp", "any"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class FirewallRule(_Model):
    """One FWaaS-style rule. ``None`` addresses and ports mean any."""

    name: RuleName
    action: Literal["allow", "deny", "reject"] = "allow"
    protocol: Protocol = "any"
    source_ip_address: Optional[Cidr] = None
    destination_ip_address: Optional[Cidr] = None
    source_port: Optional[PortRange] = None
    destination_port: Optional[PortRange] = None
    enabled: bool = True
    description: str = Field(default="", max_length=255)

    @field_validator("protocol", mode="before")
    @classmethod
    def _lower(cls, v):
        return v.lower() if isinstance(v, str) else v


class Firewall(_Model):
    rules: list[FirewallRule] = Field(default_factory=list)
    #: What happens to traffic no rule matches.
    default_action: Literal["allow", "deny"] = "deny"


class PortForward(_Model):
    name: RuleName
    protocol: Literal["tcp", "udp"] = "tcp"
    external_ip: Optional[IPAddress] = None
    external_port: PortRange
    internal_ip: IPAddress
    internal_port: Optional[PortRange] = None
    source_ip_address: Optional[Cidr] = None


class PortForwarding(_Model):
    rules: list[PortForward] = Field(default_factory=list)


class StaticNatRule(_Model):
    name: RuleName
    external_ip: IPAddress
    internal_ip: IPAddress


class StaticNat(_Model):
    rules: list[StaticNatRule] = Field(default_factory=list)


class SourceNatRule(_Model):
    name: RuleName
    source_cidr: Cidr
    #: Translate to this address; None means masquerade on the egress interface.
    translated_ip: Optional[IPAddress] = None
    outbound_interface: Optional[str] = None


class SourceNat(_Model):
    rules: list[SourceNatRule] = Field(default_factory=list)


class Member(_Model):
    address: IPAddress
    protocol_port: Port
    weight: int = Field(default=1, ge=0, le=256)
    #: policy target id when the member came from policy_target_added_notification
    id: Optional[str] = None


class HealthMonitor(_Model):
    type: Literal["TCP", "HTTP", "PING"] = "TCP"
    delay: int = Field(default=5, ge=1, le=3600)
    timeout: int = Field(default=5, ge=1, le=3600)
    max_retries: int = Field(default=3, ge=1, le=10)
    url_path: str = "/"


class LoadBalancer(_Model):
    name: RuleName = "lb"
    vip_address: IPAddress
    protocol_port: Port
    protocol: Literal["HTTP", "TCP"] = "HTTP"
    lb_algorithm: Literal["ROUND_ROBIN", "LEAST_CONNECTIONS", "SOURCE_IP"] = "ROUND_ROBIN"
    members: list[Member] = Field(default_factory=list)
    healthmonitor: Optional[HealthMonitor] = None


class Route(_Model):
    destination: Cidr
    nexthop: IPAddress
    name: Optional[RuleName] = None


class StaticRoutes(_Model):
    routes: list[Route] = Field(default_factory=list)


class Interface(_Model):
    name: Optional[str] = None
    port_classification: Literal["provider", "consumer", "management", "monitoring"] = "provider"
    ip_address: Optional[IPInterface] = None
    mac_address: Optional[str] = None
    gateway: Optional[IPAddress] = None


class Interfaces(_Model):
    interfaces: list[Interface] = Field(default_factory=list)


AuthAlgorithm = Literal["sha1", "sha256", "sha384", "sha512"]
EncryptionAlgorithm = Literal["3des", "aes-128", "aes-192", "aes-256"]
Pfs = Literal["group2", "group5", "group14"]


class Lifetime(_Model):
    units: Literal["seconds", "kilobytes"] = "seconds"
    value: int = Field(default=3600, ge=60)


class IkePolicy(_Model):
    """Phase 1 (VPNaaS ``ikepolicy``)."""

    auth_algorithm: AuthAlgorithm = "sha1"
    encryption_algorithm: EncryptionAlgorithm = "aes-128"
    ike_version: Literal["v1", "v2"] = "v1"
    pfs: Pfs = "group5"
    phase1_negotiation_mode: Literal["main", "aggressive"] = "main"
    lifetime: Lifetime = Field(default_factory=Lifetime)


class IpsecPolicy(_Model):
    """Phase 2 (VPNaaS ``ipsecpolicy``)."""

    auth_algorithm: AuthAlgorithm = "sha1"
    encryption_algorithm: EncryptionAlgorithm = "aes-128"
    encapsulation_mode: Literal["tunnel", "transport"] = "tunnel"
    transform_protocol: Literal["esp", "ah", "ah-esp"] = "esp"
    pfs: Pfs = "group5"
    lifetime: Lifetime = Field(default_factory=Lifetime)


class DeadPeerDetection(_Model):
    action: Literal["hold", "clear", "restart", "disabled", "restart-by-peer"] = "hold"
    interval: int = Field(default=30, ge=1)
    timeout: int = Field(default=120, ge=1)


class SiteConnection(_Model):
    """One IPsec site-to-site connection. The pre-shared key is never carried:
    ``psk_ref`` names a secret in nfp's secret store, resolved by the driver."""

    name: RuleName
    peer_address: IPAddress
    peer_id: Optional[str] = Field(default=None, max_length=255)
    peer_cidrs: list[Cidr] = Field(min_length=1)
    psk_ref: str = Field(min_length=1, max_length=255)
    initiator: Literal["bi-directional", "response-only"] = "bi-directional"
    mtu: int = Field(default=1500, ge=68, le=9216)
    dpd: DeadPeerDetection = Field(default_factory=DeadPeerDetection)
    enabled: bool = True
    ike: IkePolicy = Field(default_factory=IkePolicy)
    ipsec: IpsecPolicy = Field(default_factory=IpsecPolicy)


class Vpn(_Model):
    """Site-to-site IPsec (VPNaaS ``vpnservice`` with its connections)."""

    name: RuleName = "vpn"
    #: the networks behind this end of the tunnels
    local_cidrs: list[Cidr] = Field(default_factory=list)
    connections: list[SiteConnection] = Field(default_factory=list)


class HealthMonitorResource(BaseModel):
    """Device health check request; fields are driver-specific, so extras are kept."""

    model_config = ConfigDict(extra="allow")
    periodicity: Literal["initial", "forever"] = "initial"


#: resource name -> model
RESOURCE_MODELS: dict[str, type[BaseModel]] = {
    "firewall": Firewall,
    "port_forwarding": PortForwarding,
    "static_nat": StaticNat,
    "source_nat": SourceNat,
    "loadbalancer": LoadBalancer,
    "routes": StaticRoutes,
    "interfaces": Interfaces,
    "healthmonitor": HealthMonitorResource,
    "vpn": Vpn,
}

#: resources nfp passes through without a schema (upstream's Heat templates)
OPAQUE_RESOURCES = {"heat"}


class ResourceError(ValueError):
    """A config element failed validation; ``field`` is its dotted path."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def parse_resource(resource: str, data: Any, prefix: str = "resource_data") -> BaseModel | dict:
    """Validate one element's ``resource_data``; raise ResourceError naming the field."""
    if resource in OPAQUE_RESOURCES:
        return data
    model = RESOURCE_MODELS.get(resource)
    if model is None:
        raise ResourceError("resource", f"unknown resource {resource!r}; "
                            f"expected one of {sorted(RESOURCE_MODELS) + sorted(OPAQUE_RESOURCES)}")
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        err = exc.errors()[0]
        path = ".".join(str(p) for p in (prefix, *err["loc"]))
        raise ResourceError(path, err["msg"]) from None


# -- the service_config document ---------------------------------------------------
def parse_service_config(raw: Any) -> list[dict]:
    """``service_config`` (JSON or YAML text, or already parsed) as config elements.
    Text that is not nfp's format (for example an upstream Heat template) becomes
    one opaque ``heat`` element."""
    if raw is None or raw == "":
        return []
    data = raw
    if isinstance(raw, str):
        try:
            data = json.loads(raw)
        except ValueError:
            try:
                data = yaml.safe_load(raw)
            except yaml.YAMLError:
                data = None
    if isinstance(data, dict) and isinstance(data.get("config"), list):
        return data["config"]
    if isinstance(data, list) and all(isinstance(e, dict) and "resource" in e for e in data):
        return data
    return [{"resource": "heat", "resource_data": {"template": raw if isinstance(raw, str)
                                                    else json.dumps(raw)}}]


def dump_service_config(elements: list[dict]) -> str:
    """Config elements as the canonical stored text."""
    return json.dumps({"config": elements}, sort_keys=True)
