"""The RPC wire view of network functions, instances and devices.

What ``get_network_function*`` answers, what notifications carry and what the
CLI prints all come from these functions, so the shape callers see is defined
once. They accept ORM rows, Core rows or anything with the same attributes.
"""
from __future__ import annotations

from typing import Any, Optional


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


def details(nf: Any, nfi: Any = None, nfd: Any = None) -> dict:
    """``get_network_function_details``: the NF, its instance and its device
    (without the driver's private ``extra`` facts)."""
    return {"network_function": nf_dict(nf), "service_type": nf.service_type,
            "network_function_instance": None if nfi is None else instance_dict(nfi),
            "network_function_device": None if nfd is None else {
                k: v for k, v in device_dict(nfd).items() if k != "extra"}}
