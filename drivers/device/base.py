"""The device lifecycle driver interface of seed 001, exactly.

A device driver creates, finds, plugs and deletes the devices (appliances, VMs,
namespaces) that network functions run on. The orchestrator's device state
machine calls these methods from worker threads; each call may block on I/O and
must be idempotent, because a step can run again after a crash.

Every method takes the seed's ``device_data`` dict. The ``service_details``
entry always holds ``service_vendor``, ``service_type``, ``device_type`` and
``network_mode``. Drivers are loaded through the ``nfp.device_drivers`` entry
point, keyed by the ``device_type`` of the service flavor.
"""
from __future__ import annotations

import abc
from typing import Any, Optional

from nfp.drivers.component import Component

DeviceDict = dict[str, Any]


class DeviceDriver(Component, abc.ABC):
    """Seed-001 life cycle management driver, with the lifecycle hooks of
    :class:`~nfp.drivers.component.Component` (setup, start, stop).

    Parameters:
        conf(NfpConfig): the daemon's validated configuration.
        options(dict): this driver's own section, ``device_drivers.<name>``.
    """

    #: Name under the ``nfp.device_drivers`` entry point.
    name = "base"

    def __init__(self, conf: Any = None, options: Optional[dict] = None):
        self.conf = conf
        self.options = dict(options or {})

    # -- lifecycle -------------------------------------------------------
    @abc.abstractmethod
    def create_network_function_device(self, device_data: DeviceDict) -> Optional[DeviceDict]:
        """Create a device; return ``{id, name, mgmt_ip_address, mgmt_port_id,
        max_interfaces, interfaces_in_use, description}`` or None on failure."""

    @abc.abstractmethod
    def delete_network_function_device(self, device_data: DeviceDict) -> None:
        """Delete the device ``device_data['id']`` (or only its ports if no id)."""

    @abc.abstractmethod
    def select_network_function_device(
        self, devices: list[DeviceDict], device_data: DeviceDict
    ) -> Optional[DeviceDict]:
        """Pick one of ``devices`` with room for ``device_data['ports']``, or None."""

    @abc.abstractmethod
    def get_network_function_device_status(self, device_data: DeviceDict) -> Optional[str]:
        """Return the device status string (``ACTIVE``, ``BUILD``, ``ERROR``) or None."""

    @abc.abstractmethod
    def plug_network_function_device_interface(self, device_data: DeviceDict) -> bool:
        """Attach ``device_data['ports']`` to the device; True on success."""

    @abc.abstractmethod
    def unplug_network_function_device_interface(self, device_data: DeviceDict) -> bool:
        """Detach ``device_data['ports']`` from the device; True on success."""

    @abc.abstractmethod
    def get_network_function_device_sharing_info(self, device_data: DeviceDict) -> dict:
        """Return ``{'filters': {column: value, ...}}`` selecting shareable devices."""

    @abc.abstractmethod
    def get_network_function_device_healthcheck_info(self, device_data: DeviceDict) -> dict:
        """Return ``{'config': [{'resource': 'healthmonitor', 'resource_data': {...}}]}``."""

    @abc.abstractmethod
    def get_network_function_device_config_info(self, device_data: DeviceDict) -> dict:
        """Return ``{'config': [{'resource': 'interfaces'|'routes', 'resource_data': {...}}]}``."""

    # -- optional hooks --------------------------------------------------
    def startup_sweep(self) -> None:
        """Remove leftovers this driver owns from a previous crash (optional)."""
