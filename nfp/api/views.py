"""The RPC wire view of network functions, instances and devices.

What ``get_network_function*`` answers, what notifications carry and what the
CLI prints all come from these functions, so the shape callers see is defined
once. They accept ORM rows, Core rows or anything with the same attributes.
"""
from __future__ import annotations

from typing import Any, Optional

from nfp.desired import desired_config


def _iso(value) -> Optional[str]:
    return value.isoformat() if value else None


def nf_dict(nf: Any) -> dict:
    """The NF as the RPC API returns it (seed NetworkFunction attributes)."""
    return {"id": nf.id, "name": nf.name, "description": nf.description,
            "tenant_id": nf.tenant_id, "service_id": nf.service_id,
            "service_chain_id": nf.service_chain_id, "service_profile_id": nf.service_profile_id,
            "service_config": nf.service_config, "config_policy_id": nf.config_policy_id,
            "status": str(nf.status), "status_description": nf.status_description,
            "service_type": nf.service_type, "service_vendor": nf.service_vendor,
            "device_type": nf.device_type,
            # seed 004: ACTIVE but its device's management link is lost (see nfp.flows)
            "degraded": bool(getattr(nf, "degraded", False)),
            "degraded_reason": getattr(nf, "degraded_reason", "") or "",
            "created_at": _iso(nf.created_at), "updated_at": _iso(nf.updated_at)}


def device_dict(nfd: Any) -> dict:
    """A device as drivers and callers see it (seed NetworkFunctionDevice)."""
    return {"id": nfd.id, "name": nfd.name, "mgmt_ip_address": nfd.mgmt_ip_address,
            "mgmt_port_id": {"id": nfd.mgmt_port_id, "port_classification": "management",
                             "port_model": "neutron_port"} if nfd.mgmt_port_id else None,
            "max_interfaces": nfd.max_interfaces, "interfaces_in_use": nfd.interfaces_in_use,
            "description": nfd.description, "service_vendor": nfd.service_vendor,
            "device_type": nfd.device_type, "status": str(nfd.status),
            "service_types": (nfd.extra or {}).get("service_types", []),
            "extra": nfd.extra or {}}


def instance_dict(nfi: Any) -> dict:
    return {"id": nfi.id, "name": nfi.name, "status": str(nfi.status),
            "status_description": nfi.status_description,
            "network_function_device_id": nfi.network_function_device_id,
            "port_info": [p.id for p in nfi.port_info]}


def port_info(port: Any) -> dict:
    """``get_port_info``: a port record as upstream's NSO returned it."""
    return {"id": port.id, "port_classification": port.port_classification,
            "port_model": port.port_model, "port_role": port.port_role}


def details(nf: Any, nfi: Any = None, nfd: Any = None) -> dict:
    """``get_network_function_details``: the NF, its instance and its device
    (without the driver's private ``extra`` facts), and the config its device
    must hold (a Heat template translated; ``translation_error`` if it cannot be)."""
    try:
        translated, error = desired_config(nf.service_config, getattr(nf, "spec", None)), None
    except ValueError as exc:  # HeatError, or a config that no longer parses
        translated, error = None, str(exc)
    return {"network_function": nf_dict(nf), "service_type": nf.service_type,
            "network_function_instance": None if nfi is None else instance_dict(nfi),
            "network_function_device": None if nfd is None else {
                k: v for k, v in device_dict(nfd).items() if k != "extra"},
            "translated_config": translated, "translation_error": error}
