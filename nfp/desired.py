"""The desired config of a network function, derived from its intent.

What a device should hold is computed, never stored twice: the caller's
``service_config`` (nfp's own format, or a Heat template translated by
:mod:`nfp.heat.translate`), then the changes later notifications made to the
intent (the consuming PTGs a firewall's rules follow, the policy targets a load
balancer's pool holds). Provisioning, updates and the diff all use this one
function, so they can never disagree about what "configured" means.
"""
from __future__ import annotations

import json
import re
from typing import Any, Optional

from nfp.heat.translate import HeatError, expand
from nfp.resources import parse_service_config


def heat_params(spec: Optional[dict]) -> dict[str, Any]:
    """Values for a Heat template's ``get_param``: the chain instance's
    ``config_param_values`` (upstream sends a JSON string, possibly empty), over
    what the orchestrator knows itself. Upstream's Heat driver fills ``Subnet``
    with a neutron subnet id; nfp has no subnet catalogue, so it is the provider
    network's CIDR here. ``service_chain_metadata`` is upstream's base-mode
    value. ``vip_ip`` and ``RouterId`` cannot be derived: the caller sends them."""
    spec = spec or {}
    derived: dict[str, Any] = {"service_chain_metadata": ""}
    cidrs = [(spec.get("provider") or {}).get("cidr")] + [
        p.get("cidr") for p in spec.get("ports") or [] if p.get("port_classification") == "provider"]
    if any(cidrs):
        derived["Subnet"] = next(c for c in cidrs if c)
    raw = spec.get("config_param_values")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise HeatError("config_param_values: is not valid JSON") from None
    if raw is not None and not isinstance(raw, dict):
        raise HeatError("config_param_values: must be a JSON object of parameter values")
    return {**derived, **(raw or {})}


def desired_config(service_config: Any, spec: Optional[dict]) -> list[dict]:
    """The config elements the NF's device must hold. Raises
    :class:`nfp.heat.translate.HeatError` for a template nfp cannot translate."""
    elements = parse_service_config(service_config)
    return fold_intent(expand(elements, heat_params(spec)), spec)


# -- what notifications changed (not Heat) -------------------------------------------
#: rule names are at most 63 characters (nfp.resources.RuleName)
_RULE_CHARS = re.compile(r"[^A-Za-z0-9_.-]")


def fold_intent(elements: list[dict], spec: Optional[dict]) -> list[dict]:
    """``elements`` with the intent kept in ``spec`` folded in: firewall rules
    copied per consumer, and the load balancer's policy-target members. The
    input is not changed."""
    spec = spec or {}
    out = []
    for element in elements:
        data = element.get("resource_data") if isinstance(element, dict) else None
        if not isinstance(data, dict):
            out.append(element)
        elif element.get("resource") == "firewall" and spec.get("follow_consumers"):
            out.append({**element, "resource_data": {**data, "rules": consumer_rules(
                data.get("rules") or [], spec)}})
        elif element.get("resource") == "loadbalancer" and spec.get("members"):
            out.append({**element, "resource_data": {**data, "members": pool_members(
                data, spec["members"])}})
        else:
            out.append(element)
    return out


def consumer_rules(rules: list[dict], spec: dict) -> list[dict]:
    """Each rule once per consumer subnet, as upstream's Heat rewrite did: the
    source is the consumer's CIDR (any for an external policy), the destination
    the provider's, unless the rule sets them. Stitching groups are skipped.
    No consumer means no rule: traffic only flows from those who consume."""
    provider_cidr = (spec.get("provider") or {}).get("cidr")
    known = spec.get("subnet_cidrs") or {}
    out = []
    for consumer in spec.get("consumers") or []:
        if not isinstance(consumer, dict) or consumer.get("stitching"):
            continue
        cidrs = list(consumer.get("cidrs") or [])
        cidrs += [known[s] for s in consumer.get("subnet_ids") or [] if s in known]
        tag = _RULE_CHARS.sub("-", str(consumer.get("id", "")))[:16]
        for index, cidr in enumerate(dict.fromkeys(cidrs)):
            for rule in rules:
                copy = dict(rule)
                copy["name"] = f"{str(rule.get('name', 'rule'))[:36]}_{tag}_{index}"
                if cidr and not copy.get("source_ip_address"):
                    copy["source_ip_address"] = cidr
                if provider_cidr and not copy.get("destination_ip_address"):
                    copy["destination_ip_address"] = provider_cidr
                out.append(copy)
    return out


def pool_members(data: dict, members: dict[str, Optional[dict]]) -> list[dict]:
    """The pool's members: those of the config that no notification removed or
    replaced, then those policy targets added (``spec["members"]``: PT id →
    member, or None once removed). A member without a port takes the VIP's."""
    kept = [m for m in data.get("members") or [] if not (isinstance(m, dict) and m.get("id") in members)]
    for pt_id, member in members.items():
        if member is not None:
            kept.append({"id": pt_id, "address": member["address"],
                         "protocol_port": member.get("protocol_port") or data.get("protocol_port")})
    return kept