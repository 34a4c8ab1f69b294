"""What step handlers use: config, sessions, device drivers and the configurator."""
from __future__ import annotations

import logging
import threading
from importlib.metadata import entry_points

from sqlalchemy import select

from nfp.db.models import DeviceStatus, NetworkFunctionDevice
from nfp.workers.configurator.client import DirectConfiguratorClient

LOG = logging.getLogger(__name__)
GROUP = "nfp.device_drivers"


class Services:
    """Shared by every step in one process."""

    def __init__(self, conf, sessionmaker):
        self.conf = conf
        self.sessionmaker = sessionmaker
        self.configurator = DirectConfiguratorClient(conf)
        self._drivers: dict = {}
        self._lock = threading.Lock()

    def device_driver(self, device_type: str):
        """The driver for ``device_type`` from the ``nfp.device_drivers`` entry point."""
        with self._lock:
            if device_type not in self._drivers:
                eps = {ep.name: ep for ep in entry_points(group=GROUP)}
                if device_type not in eps:
                    raise LookupError(f"no device driver {device_type!r}; installed: {sorted(eps)}")
                cls = eps[device_type].load()
                self._drivers[device_type] = cls(self.conf, self.conf.device_drivers.get(device_type, {}))
            return self._drivers[device_type]


def build(conf, sessionmaker) -> Services:
    return Services(conf, sessionmaker)


def sync_static_inventory(conf, session) -> int:
    """Mirror ``device_drivers.static.devices`` into the device table (upsert)."""
    if "static" not in conf.device_drivers:
        return 0
    from nfp.drivers.device.static import StaticDeviceDriver
    rows = StaticDeviceDriver(conf, conf.device_drivers["static"]).rows()
    existing = {d.id: d for d in session.scalars(
        select(NetworkFunctionDevice).where(NetworkFunctionDevice.id.in_([r["id"] for r in rows])))}
    for row in rows:
        dev = existing.get(row["id"])
        if dev is None:
            session.add(NetworkFunctionDevice(status=DeviceStatus.ACTIVE, **row))
        else:
            for key, value in row.items():
                setattr(dev, key, value)
    return len(rows)
