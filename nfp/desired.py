"""The desired config of a network function, derived from its intent.

What a device should hold is computed, never stored twice: the caller's
``service_config`` (nfp's own format, or a Heat template translated by
:mod:`nfp.heat.translate`), then the changes later notifications made to the
intent (the consuming PTGs a firewall's rules follow, the policy targets a load
balancer's pool holds). Provisioning, updates and the diff all use this one
function, so they can never disagree about what "configured" means.
"""
from __future__ import annotations

from typing import Any, Optional

from nfp.heat.translate import expand
from nfp.resources import parse_service_config


def heat_params(spec: Optional[dict]) -> dict[str, Any]:
    """Values for a Heat template's ``get_param``: the chain instance's
    ``config_param_values`` and what the orchestrator knows itself."""
    spec = spec or {}
    return dict(spec.get("config_param_values") or {})


def desired_config(service_config: Any, spec: Optional[dict]) -> list[dict]:
    """The config elements the NF's device must hold. Raises
    :class:`nfp.heat.translate.HeatError` for a template nfp cannot translate."""
    elements = parse_service_config(service_config)
    return expand(elements, heat_params(spec))
