"""Helpers shared by the NF and device state machines."""
from __future__ import annotations

import json
from typing import Any, Optional

import yaml
from sqlalchemy import select

from nfp.db.models import (NetworkFunction, NetworkFunctionDevice,
                           NetworkFunctionInstance, NFStatus)
from nfp.drivers.config.base import DeviceTarget


def get_nf(session, nf_id: str, lock: bool = False) -> Optional[NetworkFunction]:
    stmt = select(NetworkFunction).where(NetworkFunction.id == nf_id)
    if lock:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).first()


def get_nfi(session, nf_id: str) -> Optional[NetworkFunctionInstance]:
    return session.scalars(select(NetworkFunctionInstance)
                           .where(NetworkFunctionInstance.network_function_id == nf_id)).first()


def get_device(session, device_id: Optional[str]) -> Optional[NetworkFunctionDevice]:
    if not device_id:
        return None
    return session.get(NetworkFunctionDevice, device_id)


def service_details(nf: NetworkFunction) -> dict:
    return {"service_vendor": nf.service_vendor, "service_type": nf.service_type,
            "device_type": nf.device_type, "network_mode": nf.spec.get("network_mode", "gbp")}


def device_data(nf: NetworkFunction, nfd: Optional[NetworkFunctionDevice] = None,
                nfi: Optional[NetworkFunctionInstance] = None) -> dict:
    """The seed's ``device_data`` dict for driver calls."""
    data = {"tenant_id": nf.tenant_id, "service_details": service_details(nf),
            "name": f"nfp-{(nfi.id if nfi else nf.id)[:8]}",
            "network_function_id": nf.id,
            "network_function_instance_id": nfi.id if nfi else None,
            "management_network_info": nf.spec.get("management") or {},
            "ports": nf.spec.get("ports", [])}
    if nfd is not None:
        data.update(device_dict(nfd))
    return data


def device_dict(nfd: NetworkFunctionDevice) -> dict:
    return {"id": nfd.id, "name": nfd.name, "mgmt_ip_address": nfd.mgmt_ip_address,
            "mgmt_port_id": {"id": nfd.mgmt_port_id, "port_classification": "management",
                             "port_model": "neutron_port"} if nfd.mgmt_port_id else None,
            "max_interfaces": nfd.max_interfaces, "interfaces_in_use": nfd.interfaces_in_use,
            "description": nfd.description, "service_vendor": nfd.service_vendor,
            "device_type": nfd.device_type, "status": nfd.status,
            "service_types": (nfd.extra or {}).get("service_types", []),
            "extra": nfd.extra or {}}


def target(nfd: NetworkFunctionDevice, vendor: Optional[str] = None) -> DeviceTarget:
    return DeviceTarget(id=nfd.id, mgmt_ip_address=nfd.mgmt_ip_address,
                        service_vendor=vendor or nfd.service_vendor or "",
                        credentials_ref=nfd.credentials_ref, extra=dict(nfd.extra or {}))


def parse_service_config(raw: Any) -> list[dict]:
    """``service_config`` as config elements. Text that is not nfp's format (for
    example an upstream Heat template) becomes one opaque ``heat`` element."""
    if raw is None or raw == "":
        return []
    data = raw
    if isinstance(raw, str):
        try:
            data = json.loads(raw)
        except ValueError:
            try:
                data = yaml.safe_load(raw)
            except yaml.YAMLError:
                data = None
    if isinstance(data, dict) and isinstance(data.get("config"), list):
        return data["config"]
    if isinstance(data, list) and all(isinstance(e, dict) and "resource" in e for e in data):
        return data
    return [{"resource": "heat", "resource_data": {"template": raw if isinstance(raw, str)
                                                    else json.dumps(raw)}}]


def dump_service_config(elements: list[dict]) -> str:
    return json.dumps({"config": elements}, sort_keys=True)


def set_nf_status(nf: NetworkFunction, status: str, description: str = "") -> None:
    nf.status = status
    nf.status_description = description[:4000]


def mark_error(session, nf_id: str, reason: str) -> Optional[NetworkFunction]:
    """Failure handler body: NF and its instance to ERROR with the reason."""
    nf = get_nf(session, nf_id)
    if nf is None or nf.status == NFStatus.PENDING_DELETE:
        return nf
    set_nf_status(nf, NFStatus.ERROR, reason)
    nf.operation = None
    nfi = get_nfi(session, nf_id)
    if nfi is not None and nfi.status != "ACTIVE":
        nfi.status, nfi.status_description = "ERROR", reason[:4000]
    return nf


def nf_dict(nf: NetworkFunction) -> dict:
    """The NF as the RPC API returns it (seed NetworkFunction attributes)."""
    return {"id": nf.id, "name": nf.name, "description": nf.description,
            "tenant_id": nf.tenant_id, "service_id": nf.service_id,
            "service_chain_id": nf.service_chain_id, "service_profile_id": nf.service_profile_id,
            "service_config": nf.service_config, "config_policy_id": nf.config_policy_id,
            "status": nf.status, "status_description": nf.status_description,
            "service_type": nf.service_type, "service_vendor": nf.service_vendor,
            "device_type": nf.device_type,
            "created_at": nf.created_at.isoformat() if nf.created_at else None,
            "updated_at": nf.updated_at.isoformat() if nf.updated_at else None}
