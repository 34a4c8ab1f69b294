"""Typed RPC arguments. Every payload is parsed here; errors name the field.

Shapes follow what upstream GBP node drivers send (see
``reference/upstream-gbp-nfp.md`` §2.2). Unknown keys are ignored so newer
callers keep working, but known keys must have the right types. Credentials a
caller passes (``resource_owner_context`` carries an admin token) are dropped
here and never stored.
"""
from __future__ import annotations

import json
from typing import Annotated, Any, Optional, Union

from pydantic import (BaseModel, ConfigDict, Field, StringConstraints, ValidationError,
                      field_validator)

from nfp.exceptions import InvalidRequest

#: neutron/GBP ids are 36-character UUIDs (columns are String(36)); test inventories
#: use names. Anything longer is refused here, with the field named, before a write.
Id = Annotated[str, StringConstraints(min_length=1, max_length=36)]
#: keystone project ids: 32 hex characters in practice, String(255) upstream
TenantId = Annotated[str, StringConstraints(min_length=1, max_length=255)]
#: short labels stored in String(32) columns (``port_model``, ``port_classification``)
Label = Annotated[str, StringConstraints(max_length=32)]
#: upstream's names and descriptions are String(255)
Text255 = Annotated[str, StringConstraints(max_length=255)]

SERVICE_TYPES = {"firewall": "firewall", "fw": "firewall", "loadbalancer": "loadbalancer",
                 "loadbalancerv2": "loadbalancer", "lb": "loadbalancer", "vpn": "vpn",
                 "router": "router", "generic": "generic"}
#: services upstream plumbs as a gateway (the device routes between provider and
#: consumer); every other service is an endpoint on the provider network
GATEWAY_SERVICES = frozenset({"firewall", "vpn", "router"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ServiceProfile(_Model):
    id: Optional[Id] = None
    service_type: str
    service_flavor: str = Field(min_length=1, max_length=1024)

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
    ip_address: Optional[str] = Field(default=None, max_length=64)
    subnet_id: Optional[Id] = None


class Port(_Model):
    """A neutron port as the node driver sends it (``ip_address`` injected upstream)."""

    id: Optional[Id] = None
    mac_address: Optional[str] = Field(default=None, max_length=64)
    fixed_ips: list[FixedIp] = Field(default_factory=list)
    network_id: Optional[Id] = None
    ip_address: Optional[str] = Field(default=None, max_length=64)

    def address(self) -> Optional[str]:
        return self.ip_address or (self.fixed_ips[0].ip_address if self.fixed_ips else None)


class Subnet(_Model):
    id: Optional[Id] = None
    cidr: Optional[str] = Field(default=None, max_length=64)
    gateway_ip: Optional[str] = Field(default=None, max_length=64)
    name: Optional[Text255] = None


class PolicyTarget(_Model):
    """A GBP policy target (``provider.pt`` entries and PT notifications)."""

    id: Id
    name: Optional[Text255] = None
    port_id: Optional[Id] = None
    policy_target_group_id: Optional[Id] = None
    ip_address: Optional[str] = Field(default=None, max_length=64)
    fixed_ips: list[FixedIp] = Field(default_factory=list)
    #: the member port for a load balancer (nfp's own callers)
    port: Optional[int] = Field(default=None, ge=1, le=65535)

    def address(self) -> Optional[str]:
        return self.ip_address or (self.fixed_ips[0].ip_address if self.fixed_ips else None)


class PolicyTargetGroup(_Model):
    """A GBP policy target group. ``subnets`` are subnet ids upstream; nfp also
    takes subnet dicts or CIDRs, which is what a firewall's rules need."""

    id: Id
    name: Optional[Text255] = None
    tenant_id: Optional[TenantId] = None
    subnets: list[Union[Annotated[str, StringConstraints(max_length=64)], Subnet]] = \
        Field(default_factory=list)
    proxied_group_id: Optional[Id] = None


def _as_list(value: Any) -> Any:
    """dict (mitaka 4.1.0), list of dicts (newton … queens) or null, as a list."""
    if value is None:
        return []
    return [value] if isinstance(value, dict) else value


class Endpoint(_Model):
    """``provider`` / ``consumer`` as upstream sends them: ``pt``, ``ptg`` and
    ``port`` each a dict, a list of dicts or null; kept whole, as lists."""

    pt: list[PolicyTarget] = Field(default_factory=list)
    ptg: list[PolicyTargetGroup] = Field(default_factory=list)
    port: list[Port] = Field(default_factory=list)
    subnet: Optional[Subnet] = None
    port_model: Optional[Label] = None
    port_classification: Optional[Label] = None

    _lists = field_validator("pt", "ptg", "port", mode="before")(lambda cls, v: _as_list(v))


class Ref(_Model):
    id: Optional[Id] = None
    name: Optional[Text255] = None
    config: Optional[str] = None
    #: a JSON string upstream (``servicechain_instance.config_param_values``)
    config_param_values: Optional[Union[str, dict]] = None


class ConsumingPtg(_Model):
    """One ``consuming_ptgs_details`` entry: the PTG and its neutron subnets."""

    ptg: PolicyTargetGroup
    subnets: list[Subnet] = Field(default_factory=list)


class ExternalPolicy(_Model):
    id: Id


class NetworkFunctionIn(_Model):
    """``create_network_function(network_function=...)``."""

    name: Text255 = ""
    description: str = Field(default="", max_length=1024)
    tenant_id: TenantId
    service_profile: ServiceProfile
    service_config: Optional[Union[str, dict, list]] = None
    service_chain_instance: Optional[Ref] = None
    service_chain_node: Optional[Ref] = None
    provider: Optional[Endpoint] = None
    consumer: Optional[Endpoint] = None
    management: Optional[dict[str, Any]] = None
    management_ptg_id: Optional[Id] = None
    network_function_mode: Annotated[str, StringConstraints(max_length=32)] = "gbp"
    consuming_ptgs_details: Optional[list[ConsumingPtg]] = None
    consuming_eps_details: Optional[list[ExternalPolicy]] = None
    #: caller-chosen id (lets a retried create find its NF)
    id: Optional[Id] = None

    def nf_name(self) -> str:
        """The name given, else upstream's ``<node name[:6]>_<chain name[:6]>``."""
        if self.name:
            return self.name
        node, sci = self.service_chain_node, self.service_chain_instance
        if node and sci and node.name is not None and sci.name is not None:
            return f"{node.name[:6]}_{sci.name[:6]}"
        return ""

    def ports(self) -> list[dict]:
        """Every data port of provider and consumer, in order (several provider
        PTs and ports are all kept); ``port[i]`` belongs to ``pt[i]``."""
        out, seen = [], set()
        for cls, ep in (("provider", self.provider), ("consumer", self.consumer)):
            if ep is None:
                continue
            for index in range(max(len(ep.pt), len(ep.port))):
                pt = ep.pt[index] if index < len(ep.pt) else None
                port = ep.port[index] if index < len(ep.port) else Port()
                pid = port.id or (pt.port_id if pt else None) or (pt.id if pt else None)
                if not pid or pid in seen:
                    continue  # VPN+FW chains send the same port twice
                seen.add(pid)
                out.append({"id": pid, "port_classification": ep.port_classification or cls,
                            "port_model": ep.port_model or "neutron_port",
                            "ip_address": port.address() or (pt.address() if pt else None),
                            "mac_address": port.mac_address, "network_id": port.network_id,
                            "policy_target_id": pt.id if pt else None,
                            "cidr": ep.subnet.cidr if ep.subnet else None,
                            "gateway_ip": ep.subnet.gateway_ip if ep.subnet else None})
        return out

    def consumers(self) -> list[dict]:
        """The consumers a firewall's rules follow: each consuming PTG with its
        subnet CIDRs, and each consuming external policy (any source)."""
        out = []
        for entry in self.consuming_ptgs_details or []:
            out.append(consumer_record(entry.ptg, entry.subnets))
        for ep in self.consuming_eps_details or []:
            out.append({"id": ep.id, "kind": "external_policy", "cidrs": [None]})
        return out

    def subnet_cidrs(self) -> dict[str, str]:
        """``{subnet id: cidr}`` of every subnet the payload describes, so a
        consumer PTG notified later with subnet ids only can be resolved."""
        out = {}
        subnets = [e.subnet for e in (self.provider, self.consumer) if e and e.subnet]
        for entry in self.consuming_ptgs_details or []:
            subnets += entry.subnets
        for subnet in subnets:
            if subnet.id and subnet.cidr:
                out[subnet.id] = subnet.cidr
        return out

    def config_param_values(self) -> dict:
        """``service_chain_instance.config_param_values`` parsed (a JSON string
        upstream, possibly empty), for Heat ``get_param``."""
        raw = self.service_chain_instance.config_param_values if self.service_chain_instance else None
        if isinstance(raw, dict):
            return raw
        if not raw:
            return {}
        try:
            value = json.loads(raw)
        except ValueError:
            raise InvalidRequest("network_function.service_chain_instance.config_param_values",
                                 "must be a JSON object") from None
        if not isinstance(value, dict):
            raise InvalidRequest("network_function.service_chain_instance.config_param_values",
                                 "must be a JSON object")
        return value


def consumer_record(ptg: PolicyTargetGroup, subnets: list = ()) -> dict:
    """A consuming PTG as the desired config uses it: its id and the CIDRs of
    its subnets. Upstream skips stitching groups (``proxied_group_id``) and
    subnets named ``apic_owned_res_*``; subnets known only by id are kept as
    ids and resolved against the subnets the NF already knows."""
    cidrs, subnet_ids = [], []
    for subnet in [*subnets, *ptg.subnets]:
        if isinstance(subnet, Subnet):
            if (subnet.name or "").startswith("apic_owned_res_"):
                continue
            if subnet.cidr:
                cidrs.append(subnet.cidr)
            elif subnet.id:
                subnet_ids.append(subnet.id)
        elif "/" in subnet:
            cidrs.append(subnet)
        else:
            subnet_ids.append(subnet)
    return {"id": ptg.id, "kind": "ptg", "stitching": bool(ptg.proxied_group_id),
            "cidrs": list(dict.fromkeys(cidrs)), "subnet_ids": list(dict.fromkeys(subnet_ids))}


class NfIdArgs(_Model):
    network_function_id: Id


class UpdateArgs(NfIdArgs):
    config: Union[str, dict, list]


class DeleteArgs(NfIdArgs):
    network_function_data: Optional[dict[str, Any]] = None


class PolicyTargetArgs(NfIdArgs):
    policy_target: PolicyTarget


class ConsumerArgs(NfIdArgs):
    policy_target_group: PolicyTargetGroup


class ChainParamsArgs(NfIdArgs):
    """Chain parameters: values for the template's ``get_param`` (a JSON object
    or its text, like ``config_param_values``)."""

    chain_parameters: Union[dict, str, None] = None

    @field_validator("chain_parameters")
    @classmethod
    def _json_object(cls, v):
        if isinstance(v, str) and v.strip():
            try:
                parsed = json.loads(v)
            except ValueError:
                raise ValueError("must be a JSON object") from None
            if not isinstance(parsed, dict):
                raise ValueError("must be a JSON object")
        return v


class FiltersArgs(_Model):
    filters: Optional[dict[str, list[Any]]] = None


class NotificationArgs(_Model):
    notification_data: dict[str, Any]


class PlumbingProfile(_Model):
    """The service profile in ``get_plumbing_info``: only its type and flavor matter."""

    id: Optional[Id] = None
    service_type: str
    service_flavor: Optional[str] = Field(default=None, max_length=1024)

    _type = field_validator("service_type")(ServiceProfile._type.__func__)

    def device_type(self) -> Optional[str]:
        if not self.service_flavor:
            return None
        return ServiceProfile(service_type=self.service_type,
                              service_flavor=self.service_flavor).flavor().get("device_type")


class PlumbingRequest(_Model):
    profile: PlumbingProfile
    tenant_id: Optional[TenantId] = None
    provider: Optional[dict[str, Any]] = None


class PlumbingArgs(_Model):
    """``get_plumbing_info(request_info={profile, tenant_id, provider})``."""

    request_info: PlumbingRequest


class PortIdArgs(_Model):
    port_id: Id


def parse(model: type[BaseModel], args: dict, prefix: str = "") -> Any:
    """Validate ``args`` into ``model``; raise InvalidRequest naming the field."""
    try:
        return model.model_validate(args)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "arguments"
        raise InvalidRequest(f"{prefix}{field}", err["msg"]) from None
