"""FWaaS v1 resources as nfp's ``firewall``.

``OS::Neutron::Firewall`` → one ``firewall`` element; its
``firewall_policy_id`` → the policy whose ``firewall_rules`` are the element's
rules, in order; each ``OS::Neutron::FirewallRule`` → one rule. FWaaS denies
what no rule allows, so ``default_action`` is ``deny``; a firewall with
``admin_state_up: false`` blocks everything, as neutron-fwaas does.
"""
from __future__ import annotations

from nfp.heat.template import Context, Ref, View, element_name

FIREWALL = "OS::Neutron::Firewall"
POLICY = "OS::Neutron::FirewallPolicy"
RULE = "OS::Neutron::FirewallRule"
TYPES = (FIREWALL, POLICY, RULE)

_IGNORED = {"name", "description", "shared"}
_RULE_FIELDS = ("source_ip_address", "destination_ip_address", "source_port", "destination_port")


def translate(ctx: Context) -> list[tuple[View, dict]]:
    """``(firewall resource, firewall element)`` for every Firewall of the template."""
    out = []
    for fw in ctx.of_type(FIREWALL):
        fw.check(_IGNORED | {"firewall_policy_id", "admin_state_up", "router_ids"})
        policy = ctx.view(fw.ref("firewall_policy_id", POLICY))
        policy.check(_IGNORED | {"firewall_rules", "audited"})
        refs = policy.get("firewall_rules", default=[])
        if not isinstance(refs, list):
            raise policy.error("firewall_rules", "must be a list of {get_resource: <rule>}")
        taken: set[str] = set()
        rules = []
        for index in range(len(refs)):
            target = _rule_ref(policy, refs, index)
            rules.append(_rule(ctx.view(target), taken))
        if not fw.flag("admin_state_up"):
            rules = []  # neutron-fwaas: an administratively down firewall drops all traffic
        out.append((fw, {"resource": "firewall",
                         "resource_data": {"rules": rules, "default_action": "deny"}}))
    return out


def _rule_ref(policy: View, refs: list, index: int) -> str:
    ref = refs[index]
    if not isinstance(ref, Ref):
        raise policy.error(f"firewall_rules[{index}]", "must be {get_resource: <rule>} of this "
                                                       "template; nfp cannot look up existing rules")
    rtype = policy.resolver.template.resources[ref.name].type
    if rtype != RULE:
        raise policy.error(f"firewall_rules[{index}]", f"points at {ref.name}, a {rtype}; "
                                                       f"expected {RULE}")
    return ref.name


def _rule(rule: View, taken: set[str]) -> dict:
    rule.check(_IGNORED | {"action", "protocol", "enabled", "ip_version", *_RULE_FIELDS})
    out = {"name": element_name(rule.name, taken),
           "action": str(rule.get("action", default="deny")).lower(),
           "protocol": str(rule.get("protocol", default="any")).lower(),
           "enabled": rule.flag("enabled")}
    for field in _RULE_FIELDS:
        value = rule.get(field)
        if value is not None and value != "":
            out[field] = value
    text = rule.get("description") or rule.get("name")
    if text:
        out["description"] = str(text)[:255]
    return out
