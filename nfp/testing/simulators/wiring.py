"""Wiring a running simulator into nfp: the device row, the static inventory
entry and the credentials secret it needs. Shared by tests, demos and users
trying a dictionary without hardware."""
from __future__ import annotations

from typing import Any

from nfp.drivers.config.base import DeviceTarget


def credentials_for(sim: Any) -> dict[str, str]:
    """The credentials secret (a mapping) that logs into ``sim``."""
    if sim.vendor == "vyos":
        return {"username": sim.username, "password": sim.password}
    return {"api_key": sim.api_key}


def device_target(sim: Any, device_id: str = "dev-1", credentials_ref: str = "dev-1-credentials",
                  **extra: Any) -> DeviceTarget:
    """A DeviceTarget pointing at ``sim`` (TLS trusted through its CA file, SSH key pinned)."""
    facts = dict(sim.connection_facts())
    facts.update(extra)
    return DeviceTarget(device_id, sim.host, sim.vendor, credentials_ref, facts)


def static_inventory_entry(sim: Any, device_id: str = "dev-1", credentials_ref: str = "dev-1-credentials",
                           service_types: tuple = ("firewall",), **extra: Any) -> dict:
    """An item of ``device_drivers.static.devices`` for ``sim``."""
    facts = dict(sim.connection_facts())
    facts.update(extra)
    return {"id": device_id, "name": f"{sim.vendor}-sim", "mgmt_ip_address": sim.host,
            "service_vendor": sim.vendor, "service_types": list(service_types), "max_interfaces": 8,
            "credentials_ref": credentials_ref, "extra": facts}
