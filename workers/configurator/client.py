"""ConfiguratorClient: how orchestrator steps push config to devices.

``DirectConfiguratorClient`` (the default for ``nfp serve``) runs the config
drivers inside the worker process: each ``config[]`` element is validated with
:mod:`nfp.resources`, then handed to the driver registered for
``(service_type, service_vendor)`` under the ``nfp.config_drivers`` entry point.
REST and proxy clients (to a remote ``nfp-configurator``) implement the same
interface.
"""
from __future__ import annotations

import abc
import logging
import threading
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Optional

from nfp.drivers.config.base import (ConfigDriver, ConfigRequest, ConfigResult,
                                     ConfigStatus, DeviceTarget)
from nfp.resources import ResourceError, parse_resource

LOG = logging.getLogger(__name__)
GROUP = "nfp.config_drivers"


@dataclass
class ConfigOutcome:
    """The result of one configuration request (all its elements)."""

    ok: bool
    error: Optional[str] = None
    results: list[ConfigResult] = field(default_factory=list)


class ConfiguratorClient(abc.ABC):
    """Applies a list of config elements to one device."""

    @abc.abstractmethod
    def configure(self, operation: str, service_type: str, config: list[dict],
                  device: DeviceTarget, nf_id: Optional[str] = None,
                  tenant_id: Optional[str] = None) -> ConfigOutcome:
        """Apply ``config`` (``[{'resource', 'resource_data'}]``) with ``operation``."""


def find_driver_class(service_type: str, vendor: str):
    """The entry point for ``service_type:vendor``, else ``*:vendor``; None if neither."""
    eps = {ep.name: ep for ep in entry_points(group=GROUP)}
    ep = eps.get(f"{service_type}:{vendor}") or eps.get(f"*:{vendor}")
    return ep.load() if ep else None


class DirectConfiguratorClient(ConfiguratorClient):
    """Runs config drivers in-process; one driver instance per vendor per worker."""

    def __init__(self, conf):
        self.conf = conf
        self._drivers: dict[tuple[str, str], ConfigDriver] = {}
        self._lock = threading.Lock()

    def driver(self, service_type: str, vendor: str) -> ConfigDriver:
        vendor = self.conf.configurator.vendor_aliases.get(vendor, vendor) if self.conf else vendor
        with self._lock:
            key = (service_type, vendor)
            if key not in self._drivers:
                cls = find_driver_class(service_type, vendor)
                if cls is None:
                    raise LookupError(f"no config driver for service_type={service_type!r} "
                                      f"service_vendor={vendor!r} (entry point group {GROUP})")
                options = (self.conf.config_drivers.get(vendor, {}) if self.conf else {})
                self._drivers[key] = cls(self.conf, options)
            return self._drivers[key]

    def configure(self, operation, service_type, config, device, nf_id=None, tenant_id=None):
        results = []
        for index, element in enumerate(config):
            resource = element.get("resource") if isinstance(element, dict) else None
            try:
                parsed = parse_resource(resource, element.get("resource_data"),
                                        prefix=f"config[{index}].resource_data")
            except ResourceError as exc:
                return ConfigOutcome(False, str(exc), results)
            data = parsed.model_dump(mode="json") if hasattr(parsed, "model_dump") else parsed
            try:
                driver = self.driver(service_type, device.service_vendor)
                result = driver.apply(ConfigRequest(operation, service_type, resource, data,
                                                    device, nf_id, tenant_id))
            except Exception as exc:  # a driver bug fails this NF, not the worker
                LOG.exception("config driver failed on %s for NF %s", resource, nf_id)
                return ConfigOutcome(False, f"{resource}: {exc.__class__.__name__}: {exc}", results)
            results.append(result)
            if not result.ok:
                return ConfigOutcome(False, f"{resource}: {result.error or 'failed'}", results)
            if result.status == ConfigStatus.UNHANDLED:
                LOG.info("NF %s: resource %s not handled by the %s driver; skipped",
                         nf_id, resource, device.service_vendor)
        return ConfigOutcome(True, None, results)
