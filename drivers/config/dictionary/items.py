"""From nfp's typed resources to dictionary services and placeholder values.

=================  ===============  =============================================
nfp resource       service          one item per
=================  ===============  =============================================
firewall           Firewall         rule (``rules[].name``)
port_forwarding    PortForwarding   rule
static_nat         StaticNat        rule
source_nat         SourceNat        rule
loadbalancer       LoadBalancer     load balancer (its ``name``; members inside)
routes             StaticRoutes     route (``name``, else derived from destination)
=================  ===============  =============================================

Every item carries ``nfId``, ``name`` and ``ruleId``: a short tag derived from
the NF, the service and the name (``nfp-3f09a2c4d1``), which dictionaries use
for object names on the device so rules of different NFs sharing a device never
collide. The placeholder list and types are in :mod:`.placeholders`.
"""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable

from nfp import resources as r
from nfp.resources import ResourceError

#: nfp resource -> dictionary service
SERVICE_OF = {
    "firewall": "Firewall",
    "port_forwarding": "PortForwarding",
    "static_nat": "StaticNat",
    "source_nat": "SourceNat",
    "loadbalancer": "LoadBalancer",
    "routes": "StaticRoutes",
}


@dataclass(frozen=True)
class Item:
    """One device object to converge: a rule, a route, a load balancer."""

    service: str
    name: str
    values: dict[str, Any]

    @property
    def rule_id(self) -> str:
        return self.values["ruleId"]

    @functools.cached_property
    def body_hash(self) -> str:
        """sha256 of the values (computed once: an item's values do not change)."""
        return hashlib.sha256(json.dumps(self.values, sort_keys=True, default=str).encode()).hexdigest()


def rule_tag(nf_id: str, service: str, name: str) -> str:
    """The device-side tag of a rule: stable, unique per NF/service/name, [a-z0-9-]."""
    return "nfp-" + hashlib.sha1(f"{nf_id}/{service}/{name}".encode()).hexdigest()[:10]


def _split(ports: Any) -> tuple:
    if ports is None:
        return None, None
    low, _, high = str(ports).partition(":")
    return int(low), int(high or low)


def _firewall(rule: r.FirewallRule) -> dict:
    start, end = _split(rule.destination_port)
    s_start, s_end = _split(rule.source_port)
    return {"action": rule.action, "protocol": rule.protocol, "enabled": rule.enabled,
            "description": rule.description or rule.name,
            "sourceCidr": rule.source_ip_address, "destCidr": rule.destination_ip_address,
            "sourcePorts": rule.source_port, "destPorts": rule.destination_port,
            "startPort": start, "endPort": end, "sourceStartPort": s_start, "sourceEndPort": s_end}


def _port_forward(rule: r.PortForward) -> dict:
    public_low, public_high = _split(rule.external_port)
    private_ports = rule.internal_port or rule.external_port
    private_low, private_high = _split(private_ports)
    return {"protocol": rule.protocol, "publicIp": rule.external_ip,
            "publicPorts": rule.external_port, "publicPort": public_low, "publicEndPort": public_high,
            "privateIp": rule.internal_ip, "privatePorts": private_ports, "privatePort": private_low,
            "privateEndPort": private_high, "sourceCidr": rule.source_ip_address,
            "description": rule.name}


def _static_nat(rule: r.StaticNatRule) -> dict:
    return {"publicIp": rule.external_ip, "privateIp": rule.internal_ip, "description": rule.name}


def _source_nat(rule: r.SourceNatRule) -> dict:
    return {"sourceCidr": rule.source_cidr, "translatedIp": rule.translated_ip,
            "outboundInterface": rule.outbound_interface, "description": rule.name}


def _route(route: r.Route) -> dict:
    return {"destination": route.destination, "nexthop": route.nexthop,
            "description": route.name or route.destination}


def _route_name(route: r.Route) -> str:
    return route.name or "route-" + route.destination.replace("/", "-").replace(":", ".")


def _loadbalancer(lb: r.LoadBalancer) -> dict:
    members = [{"name": m.id if m.id and len(m.id) <= 63 and m.id[0].isalnum()
                else f"m-{m.address.replace(':', '.')}-{m.protocol_port}",
                "address": m.address, "port": m.protocol_port, "weight": m.weight}
               for m in lb.members]
    hm = lb.healthmonitor
    return {"vipAddress": lb.vip_address, "vipPort": lb.protocol_port, "lbProtocol": lb.protocol,
            "lbAlgorithm": lb.lb_algorithm, "members": members, "description": lb.name,
            "healthType": hm.type if hm else None, "healthDelay": hm.delay if hm else None,
            "healthTimeout": hm.timeout if hm else None,
            "healthRetries": hm.max_retries if hm else None, "healthUrl": hm.url_path if hm else None}


_EXPAND: dict[str, tuple[str, Callable, Callable]] = {
    "firewall": ("rules", _firewall, lambda x: x.name),
    "port_forwarding": ("rules", _port_forward, lambda x: x.name),
    "static_nat": ("rules", _static_nat, lambda x: x.name),
    "source_nat": ("rules", _source_nat, lambda x: x.name),
    "routes": ("routes", _route, _route_name),
}


def build_items(resource: str, model: Any, nf_id: str) -> list[Item]:
    """The items of one parsed resource. Duplicate names are refused (ResourceError)."""
    service = SERVICE_OF[resource]
    if resource == "loadbalancer":
        pairs = [(model.name, _loadbalancer(model))]
    else:
        attr, expand, name_of = _EXPAND[resource]
        pairs = [(name_of(x), expand(x)) for x in getattr(model, attr)]
    items, seen = [], set()
    for index, (name, values) in enumerate(pairs):
        if name in seen:
            raise ResourceError(f"resource_data.{'rules' if resource != 'routes' else 'routes'}.{index}.name",
                                f"duplicate name {name!r}")
        seen.add(name)
        values.update(nfId=nf_id, name=name, ruleId=rule_tag(nf_id, service, name))
        items.append(Item(service, name, values))
    return items
