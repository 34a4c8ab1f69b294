"""Typed RPC arguments. Every payload is parsed here; errors name the field.

Shapes follow what upstream GBP node drivers send (see
``reference/upstream-gbp-nfp.md`` §2.2). Unknown keys are ignored so newer
callers keep working, but known keys must have the right types. Credentials a
caller passes (``resource_owner_context`` carries an admin token) are dropped
here and never stored.
"""
from __future__ import annotations

from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from nfp.exceptions import InvalidRequest

Id = str  # kept permissive: neutron/GBP ids are UUIDs, test inventories use names

SERVICE_TYPES = {"firewall": "firewall", "fw": "firewall", "loadbalancer": "loadbalancer",
                 "loadbalancerv2": "loadbalancer", "lb": "loadbalancer", "vpn": "vpn",
                 "router": "router", "generic": "generic"}


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ServiceProfile(_Model):
    id: Optional[str] = None
    service_type: str
    service_flavor: str = Field(min_length=1)

    @field_validator("service_type")
    @classmethod
    def _type(cls, v: str) -> str:
        norm = SERVICE_TYPES.get(v.strip().lower().replace("_", ""))
        if norm is None:
            raise ValueError(f"unknown service type {v!r}; expected one of {sorted(set(SERVICE_TYPES.values()))}")
        return norm

    def flavor(self) -> dict[str, str]:
        """``service_vendor=vyos,device_type=static`` (or a bare vendor) as a dict."""
        out: dict[str, str] = {}
        for part in self.service_flavor.split(","):
            part = part.strip()
            if not part:
                continue
            key, sep, value = part.partition("=")
            if not sep:
                key, value = "service_vendor", key
            out[key.strip()] = value.strip()
        return out


class FixedIp(_Model):
    ip_address: Optional[str] = None
    subnet_id: Optional[str] = None


class Port(_Model):
    id: Optional[str] = None
    mac_address: Optional[str] = None
    fixed_ips: list[FixedIp] = Field(default_factory=list)
    network_id: Optional[str] = None


class Subnet(_Model):
    id: Optional[str] = None
    cidr: Optional[str] = None
    gateway_ip: Optional[str] = None


class Endpoint(_Model):
    """``provider`` / ``consumer`` as upstream sends them."""

    pt: Optional[dict[str, Any]] = None
    ptg: Optional[dict[str, Any]] = None
    port: Optional[Port] = None
    subnet: Optional[Subnet] = None
    port_model: Optional[str] = None
    port_classification: Optional[str] = None


class Ref(_Model):
    id: Optional[str] = None
    name: Optional[str] = None
    config: Optional[str] = None


class NetworkFunctionIn(_Model):
    """``create_network_function(network_function=...)``."""

    name: str = Field(default="", max_length=255)
    description: str = Field(default="", max_length=1024)
    tenant_id: str = Field(min_length=1, max_length=255)
    service_profile: ServiceProfile
    service_config: Optional[Union[str, dict, list]] = None
    service_chain_instance: Optional[Ref] = None
    service_chain_node: Optional[Ref] = None
    provider: Optional[Endpoint] = None
    consumer: Optional[Endpoint] = None
    management: Optional[dict[str, Any]] = None
    management_ptg_id: Optional[str] = None
    network_function_mode: str = "gbp"
    consuming_ptgs_details: Optional[list[dict[str, Any]]] = None
    consuming_eps_details: Optional[list[dict[str, Any]]] = None
    #: caller-chosen id (lets a retried create find its NF)
    id: Optional[str] = Field(default=None, max_length=36)

    def ports(self) -> list[dict]:
        out = []
        for cls, ep in (("provider", self.provider), ("consumer", self.consumer)):
            if ep is None or (ep.port is None and ep.pt is None):
                continue
            port = ep.port or Port()
            pid = port.id or (ep.pt or {}).get("id")
            if not pid:
                continue
            ip = port.fixed_ips[0].ip_address if port.fixed_ips else None
            out.append({"id": pid, "port_classification": ep.port_classification or cls,
                        "port_model": ep.port_model or "neutron_port", "ip_address": ip,
                        "mac_address": port.mac_address, "network_id": port.network_id,
                        "cidr": ep.subnet.cidr if ep.subnet else None,
                        "gateway_ip": ep.subnet.gateway_ip if ep.subnet else None})
        return out


class NfIdArgs(_Model):
    network_function_id: str = Field(min_length=1, max_length=36)


class UpdateArgs(NfIdArgs):
    config: Union[str, dict, list]


class DeleteArgs(NfIdArgs):
    network_function_data: Optional[dict[str, Any]] = None


class PolicyTarget(_Model):
    id: str = Field(min_length=1)
    ip_address: Optional[str] = None
    port: Optional[int] = Field(default=None, ge=1, le=65535)
    port_id: Optional[str] = None


class PolicyTargetArgs(NfIdArgs):
    policy_target: PolicyTarget


class PolicyTargetGroup(_Model):
    id: str = Field(min_length=1)
    name: Optional[str] = None
    subnets: list[str] = Field(default_factory=list)


class ConsumerArgs(NfIdArgs):
    policy_target_group: PolicyTargetGroup


class ChainParamsArgs(NfIdArgs):
    chain_parameters: Union[dict, str, None] = None


class FiltersArgs(_Model):
    filters: Optional[dict[str, list[Any]]] = None


class NotificationArgs(_Model):
    notification_data: dict[str, Any]


def parse(model: type[BaseModel], args: dict, prefix: str = "") -> Any:
    """Validate ``args`` into ``model``; raise InvalidRequest naming the field."""
    try:
        return model.model_validate(args)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "arguments"
        raise InvalidRequest(f"{prefix}{field}", err["msg"]) from None
