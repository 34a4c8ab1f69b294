"""What the lifecycle hands drivers: the seed's ``device_data`` dict and config targets."""
from __future__ import annotations

from typing import Optional

from nfp.api.views import device_dict
from nfp.db.models import NetworkFunction, NetworkFunctionDevice, NetworkFunctionInstance
from nfp.drivers.config.base import DeviceTarget


def service_details(nf: NetworkFunction) -> dict:
    return {"service_vendor": nf.service_vendor, "service_type": nf.service_type,
            "device_type": nf.device_type, "network_mode": nf.spec.get("network_mode", "gbp")}


def device_data(nf: NetworkFunction, nfd: Optional[NetworkFunctionDevice] = None,
                nfi: Optional[NetworkFunctionInstance] = None) -> dict:
    """The seed's ``device_data`` dict for device driver calls."""
    data = {"tenant_id": nf.tenant_id, "service_details": service_details(nf),
            "name": f"nfp-{(nfi.id if nfi else nf.id)[:8]}",
            "network_function_id": nf.id,
            "network_function_instance_id": nfi.id if nfi else None,
            "management_network_info": nf.spec.get("management") or {},
            "ports": nf.spec.get("ports", [])}
    if nfd is not None:
        data.update(device_dict(nfd))
    return data


def target(nfd: NetworkFunctionDevice, vendor: Optional[str] = None) -> DeviceTarget:
    """Where the configurator sends an NF's config."""
    return DeviceTarget(id=nfd.id, mgmt_ip_address=nfd.mgmt_ip_address,
                        service_vendor=vendor or nfd.service_vendor or "",
                        credentials_ref=nfd.credentials_ref, extra=dict(nfd.extra or {}))
