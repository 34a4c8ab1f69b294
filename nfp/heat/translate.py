"""Translate the Heat templates GBP node drivers send into nfp config elements.

A pure function of the template and the parameter values: no database, no
device. :func:`expand` replaces each ``heat`` element (how
:func:`nfp.resources.parse_service_config` carries a template) by what the
template stands for; :func:`translate` does one template.

=========================================  ===========================================
Heat resource type                         nfp element
=========================================  ===========================================
OS::Neutron::Firewall                      ``firewall`` (``default_action: deny``)
OS::Neutron::FirewallPolicy                its ``rules``, in ``firewall_rules`` order
OS::Neutron::FirewallRule                  one rule (name = the logical resource name)
OS::Neutron::LBaaS::Pool                   ``loadbalancer`` (name, lb_algorithm)
OS::Neutron::LBaaS::Listener               its ``protocol_port`` and ``protocol``
OS::Neutron::LBaaS::LoadBalancer           its ``vip_address``
OS::Neutron::LBaaS::PoolMember             one of its ``members``
OS::Neutron::LBaaS::HealthMonitor          its ``healthmonitor``
OS::Neutron::Pool (v1, with its ``vip``)   ``loadbalancer``
OS::Neutron::PoolMember / HealthMonitor    its members / healthmonitor (v1)
OS::Neutron::LoadBalancer (v1)             the members' default ``protocol_port``
OS::Neutron::VPNService                    ``vpn`` (``local_cidrs`` from its subnet)
OS::Neutron::IPsecSiteConnection           one of its ``connections`` (``psk_ref``)
OS::Neutron::IKEPolicy / IPsecPolicy       the connection's ``ike`` / ``ipsec``
=========================================  ===========================================

Nothing is dropped without saying so: a resource of another type, a property
nfp does not read, a resource nothing applies (a rule in no policy) and a second
firewall or listener for one network function (its device holds one of each)
are all :class:`HeatError`, and every element is validated by
:func:`nfp.resources.parse_resource` before it is returned.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nfp.heat import fwaas, lbaas, vpnaas
from nfp.heat.errors import HeatError
from nfp.heat.template import Context, parse
from nfp.resources import ResourceError, parse_resource

__all__ = ["TRANSLATED_TYPES", "HeatError", "expand", "translate"]

#: every resource type nfp translates
TRANSLATED_TYPES = frozenset(fwaas.TYPES + lbaas.TYPES + vpnaas.TYPES)
#: resources a network function's device holds at most one of
_ONE_PER_NF = {"firewall": "firewall", "loadbalancer": "load balancer listener"}


def expand(elements: list[dict], params: Mapping[str, Any]) -> list[dict]:
    """Replace every ``heat`` element by the nfp elements its template stands for;
    other elements pass through unchanged. Raises :class:`HeatError`."""
    out: list[dict] = []
    for element in elements:
        if element.get("resource") != "heat":
            out.append(element)
            continue
        data = element.get("resource_data") or {}
        out += translate(data.get("template") if isinstance(data, dict) else data, params)
    return out


def translate(source: Any, params: Mapping[str, Any]) -> list[dict]:
    """The nfp config elements of one Heat template (text, tagged text or a dict).

    ``params`` are the values for its ``get_param``; a parameter without a value
    takes its default. Raises :class:`HeatError` naming the resource and its type,
    the property, or the parameter."""
    template = parse(source)
    for resource in template.resources.values():
        if resource.type not in TRANSLATED_TYPES:
            raise HeatError(f"resource {resource.name}: type {resource.type} cannot be translated")
    ctx = Context(template, params)
    try:
        produced = (fwaas.translate(ctx) + lbaas.translate_v2(ctx) + lbaas.translate_v1(ctx)
                    + vpnaas.translate(ctx))
    except RecursionError:
        raise HeatError("template is nested too deeply to translate") from None
    for name, resource in template.resources.items():
        if name not in ctx.used:
            raise HeatError(f"resource {name}: {resource.type} is not reached from any "
                            f"{_anchor(resource.type)}, so nothing would apply it")
    for resource_kind, label in _ONE_PER_NF.items():
        owners = [view.name for view, element in produced if element["resource"] == resource_kind]
        if len(owners) > 1:
            raise HeatError(f"template defines {len(owners)} {label}s ({', '.join(owners)}); a "
                            f"network function holds one")
    for view, element in produced:
        try:
            parse_resource(element["resource"], element["resource_data"])
        except ResourceError as exc:
            raise view.error(None, f"translates to an invalid {element['resource']}"
                                   f"{_rule_of(element, exc.field)}: {exc}") from None
    return [element for _, element in produced]


def _rule_of(element: dict, field: str) -> str:
    """`` (rule <name>)`` when ``field`` is inside a firewall rule: the rule is named
    after its FirewallRule resource, which is what the template's author knows."""
    parts = field.split(".")
    if element["resource"] == "firewall" and len(parts) > 2 and parts[1] == "rules" \
            and parts[2].isdigit():
        rules = element["resource_data"]["rules"]
        if int(parts[2]) < len(rules):
            return f" (rule {rules[int(parts[2])]['name']})"
    return ""


def _anchor(rtype: str) -> str:
    if rtype in fwaas.TYPES:
        return fwaas.FIREWALL
    if rtype in vpnaas.TYPES:
        return vpnaas.SERVICE
    return lbaas.V1_POOL if rtype in (lbaas.V1_MEMBER, lbaas.V1_MONITOR, lbaas.V1_LOADBALANCER) \
        else lbaas.V2_POOL
