"""The ``static`` device driver: appliances that already exist.

The inventory comes from config (``device_drivers.static.devices``) and is
mirrored into ``network_function_devices`` at start (``managed`` rows, never
deleted by nfp). Devices are shared by interface capacity: an NF takes one
interface per data port, and a device with ``max_interfaces`` exhausted is
not selected. No cloud is needed.
"""
from __future__ import annotations

import socket
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field

from nfp.drivers.device.base import DeviceDriver
from nfp.flows import DeviceStatus


class StaticDevice(BaseModel):
    """One inventory entry."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=64)
    name: str = ""
    mgmt_ip_address: Optional[str] = None
    service_vendor: str
    #: service types it can serve; empty means any
    service_types: list[str] = Field(default_factory=list)
    max_interfaces: int = Field(default=8, ge=1)
    credentials_ref: Optional[str] = None
    extra: dict[str, Any] = Field(default_factory=dict)
    #: TCP port probed for status; none means the device is assumed up
    probe_port: Optional[int] = Field(default=None, ge=1, le=65535)


class StaticOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    devices: list[StaticDevice] = Field(default_factory=list)
    probe_timeout: float = 2.0


def ports_needed(device_data: dict) -> int:
    return max(1, len(device_data.get("ports") or []))


class StaticDeviceDriver(DeviceDriver):
    """Seed-001 driver over a fixed inventory (see module docstring)."""

    name = "static"

    def __init__(self, conf=None, options=None):
        super().__init__(conf, options)
        self.settings = StaticOptions.model_validate(self.options)
        self.inventory = {d.id: d for d in self.settings.devices}

    def create_network_function_device(self, device_data):
        return None  # static devices exist already; nothing to create

    def delete_network_function_device(self, device_data):
        return None  # never delete an appliance we did not create

    def select_network_function_device(self, devices, device_data):
        service_type = device_data.get("service_details", {}).get("service_type")
        need = ports_needed(device_data)
        fitting = []
        for dev in devices:
            entry = self.inventory.get(dev["id"])
            types = entry.service_types if entry else dev.get("service_types") or []
            if types and service_type not in types:
                continue
            free = dev["max_interfaces"] - dev["interfaces_in_use"]
            if free >= need:
                fitting.append((free, dev["id"], dev))
        # the fullest device that still fits keeps large holes for large NFs
        return sorted(fitting, key=lambda f: (f[0], f[1]))[0][2] if fitting else None

    def get_network_function_device_status(self, device_data):
        entry = self.inventory.get(device_data.get("id"))
        if entry is None:
            # registered in the database (``nfp device register``), not in the config
            extra = device_data.get("extra") or {}
            if not device_data.get("status"):
                return DeviceStatus.ERROR
            probe, address = extra.get("probe_port"), device_data.get("mgmt_ip_address")
        else:
            probe, address = entry.probe_port, entry.mgmt_ip_address
        if probe and address:
            try:
                with socket.create_connection((address, probe),
                                              timeout=self.settings.probe_timeout):
                    return DeviceStatus.ACTIVE
            except OSError:
                return DeviceStatus.ERROR
        return DeviceStatus.ACTIVE

    def plug_network_function_device_interface(self, device_data):
        return device_data.get("id") in self.inventory or bool(device_data.get("status"))

    def unplug_network_function_device_interface(self, device_data):
        return True

    def get_network_function_device_sharing_info(self, device_data):
        vendor = device_data.get("service_details", {}).get("service_vendor")
        return {"filters": {"device_type": "static", "service_vendor": vendor}}

    def get_network_function_device_healthcheck_info(self, device_data):
        return {"config": [{"resource": "healthmonitor", "resource_data": {
            "vmid": device_data.get("id"), "mgmt_ip": device_data.get("mgmt_ip_address"),
            "periodicity": "initial"}}]}

    def get_network_function_device_config_info(self, device_data):
        interfaces, routes = [], []
        for port in device_data.get("ports") or []:
            if port.get("ip_address") and port.get("cidr"):
                prefix = port["cidr"].split("/")[-1]
                interfaces.append({"port_classification": port.get("port_classification", "provider"),
                                   "ip_address": f"{port['ip_address']}/{prefix}",
                                   "mac_address": port.get("mac_address"),
                                   "gateway": port.get("gateway_ip")})
        config = []
        if interfaces:
            config.append({"resource": "interfaces", "resource_data": {"interfaces": interfaces}})
        if routes:
            config.append({"resource": "routes", "resource_data": {"routes": routes}})
        return {"config": config}

    def rows(self) -> list[dict]:
        """Inventory entries as ``network_function_devices`` column values."""
        return [{"id": d.id, "name": d.name or d.id, "mgmt_ip_address": d.mgmt_ip_address,
                 "service_vendor": d.service_vendor, "max_interfaces": d.max_interfaces,
                 "credentials_ref": d.credentials_ref,
                 "extra": {**d.extra, "service_types": d.service_types},
                 "device_type": "static", "managed": True, "shared": True}
                for d in self.settings.devices]
