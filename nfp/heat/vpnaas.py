"""VPNaaS resources as nfp's ``vpn``.

``OS::Neutron::VPNService`` → one ``vpn`` element whose ``local_cidrs`` is its
subnet (a CIDR: nfp has no subnet catalogue, and the orchestrator fills the
``Subnet`` parameter with the provider network's CIDR); every
``OS::Neutron::IPsecSiteConnection`` of the service → one connection, with its
``OS::Neutron::IKEPolicy`` and ``OS::Neutron::IPsecPolicy`` inlined.

The pre-shared key is carried only as a reference to nfp's secret store:
``psk: "secret:<name>"``. A literal key is refused, because the translated
config is stored and shown (``nfp nf show``); the error does not repeat it.
"""
from __future__ import annotations

import ipaddress

from nfp.heat.template import Context, View, element_name
from nfp.payload_secrets import is_reference, referenced_name

SERVICE = "OS::Neutron::VPNService"
CONNECTION = "OS::Neutron::IPsecSiteConnection"
IKE = "OS::Neutron::IKEPolicy"
IPSEC = "OS::Neutron::IPsecPolicy"
TYPES = (SERVICE, CONNECTION, IKE, IPSEC)

_COMMON = {"name", "description", "admin_state_up", "tenant_id"}
_POLICY = {"name", "description", "tenant_id", "auth_algorithm", "encryption_algorithm", "pfs",
           "lifetime"}


def translate(ctx: Context) -> list[tuple[View, dict]]:
    """``(vpn service, vpn element)`` for every VPNService of the template."""
    out = []
    for service in ctx.of_type(SERVICE):
        service.check(_COMMON | {"router_id", "router", "subnet_id", "subnet"})
        subnet = service.get("subnet_id") or service.get("subnet")
        data: dict = {"name": element_name(service.name, set()), "local_cidrs": []}
        if subnet is not None:
            data["local_cidrs"] = [_cidr(service, "subnet_id", subnet)]
        taken: set[str] = set()
        data["connections"] = [
            _connection(ctx, c, taken)
            for c in ctx.pointing_at([CONNECTION], "vpnservice_id", service.name)]
        out.append((service, {"resource": "vpn", "resource_data": data}))
    return out


def _cidr(view: View, prop: str, value) -> str:
    try:
        return str(ipaddress.ip_network(str(value), strict=False))
    except ValueError:
        raise view.error(prop, f"{value!r} is not a CIDR; nfp cannot look up neutron subnets "
                               f"(leave the Subnet parameter to the orchestrator or pass a CIDR)"
                         ) from None


def _connection(ctx: Context, conn: View, taken: set[str]) -> dict:
    conn.check(_COMMON | {"vpnservice_id", "ikepolicy_id", "ipsecpolicy_id", "peer_address",
                          "peer_id", "peer_cidrs", "psk", "initiator", "mtu", "dpd"})
    out = {"name": element_name(conn.name, taken),
           "peer_address": conn.get("peer_address", required=True),
           "peer_cidrs": conn.get("peer_cidrs", required=True),
           "psk_ref": _psk_ref(conn),
           "enabled": conn.flag("admin_state_up")}
    for field in ("peer_id", "initiator", "mtu"):
        value = conn.get(field)
        if value is not None:
            out[field] = value
    dpd = conn.get("dpd")
    if dpd is not None:
        if not isinstance(dpd, dict):
            raise conn.error("dpd", "must be a mapping of actions, interval and timeout")
        out["dpd"] = {("action" if k == "actions" else k): v for k, v in dpd.items()}
    ike = ctx.view(conn.ref("ikepolicy_id", IKE))
    ike.check(_POLICY | {"ike_version", "phase1_negotiation_mode"})
    out["ike"] = _policy(ike, ("ike_version", "phase1_negotiation_mode"))
    ipsec = ctx.view(conn.ref("ipsecpolicy_id", IPSEC))
    ipsec.check(_POLICY | {"encapsulation_mode", "transform_protocol"})
    out["ipsec"] = _policy(ipsec, ("encapsulation_mode", "transform_protocol"))
    return out


def _psk_ref(conn: View) -> str:
    psk = conn.get("psk", required=True)
    if is_reference(psk) and referenced_name(psk):
        return referenced_name(psk)
    raise conn.error("psk", "a literal pre-shared key is refused (it would be stored and "
                            "shown in clear); store it with `nfp secret set <name>` and "
                            "write psk: \"secret:<name>\"")


def _policy(view: View, extra: tuple[str, ...]) -> dict:
    out = {}
    for field in ("auth_algorithm", "encryption_algorithm", "pfs", *extra):
        value = view.get(field)
        if value is not None:
            out[field] = value
    lifetime = view.get("lifetime")
    if lifetime is not None:
        out["lifetime"] = lifetime
    return out
