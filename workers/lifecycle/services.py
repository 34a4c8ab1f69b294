"""What the orchestrator's steps use, owned in one place: the process's database
engine, its device drivers and the configurator client with its config drivers.

:class:`Services` is built once per process (nameko's container plays this
role): ``start()`` before the first step, ``stop()`` on drain, SIGHUP and exit,
which stops every driver it created (closing their pools and sessions) and
disposes of the database engine if it made it.
"""
from __future__ import annotations

import logging
import os
import threading
from importlib.metadata import entry_points
from typing import Any, Optional

from nfp.db import budget
from nfp.db.engine import make_engine, make_sessionmaker
from nfp.db.repositories import devices
from nfp.drivers.component import DriverContext
from nfp.drivers.device.base import DeviceDriver
from nfp.workers.configurator.client import ConfiguratorClient
from nfp.workers.configurator.remote import make_client

LOG = logging.getLogger(__name__)
GROUP = "nfp.device_drivers"


class Services:
    """Shared by every step in one process.

    Parameters:
        conf(NfpConfig): the validated configuration.
        sessionmaker: a session factory to use; when None, Services makes (and
            owns) an engine sized to the process's step threads.
    """

    def __init__(self, conf: Any, sessionmaker: Optional[Any] = None):
        self.conf = conf
        self._engine = None
        if sessionmaker is None:
            self._engine = make_engine(conf.database_url, pool_size=budget.worker_pool(conf))
            sessionmaker = make_sessionmaker(self._engine)
        self.sessionmaker = sessionmaker
        self.context = DriverContext(conf=conf, sessionmaker=sessionmaker, secrets=None)
        self.configurator: ConfiguratorClient = make_client(conf)  # configurator.client
        _call(self.configurator, "setup", self.context)
        self._drivers: dict[str, DeviceDriver] = {}
        self._lock = threading.Lock()
        self._started = False
        self._stopped = False

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> None:
        """Start the configurator and every driver made so far (later ones start on creation)."""
        with self._lock:
            self._started = True
            drivers = list(self._drivers.values())
        _call(self.configurator, "start")
        for driver in drivers:
            _call(driver, "start")

    def stop(self) -> None:
        """Stop every driver and the configurator, then dispose of an owned engine. Idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            drivers, self._drivers = list(self._drivers.items()), {}
        for name, driver in drivers:
            try:
                _call(driver, "stop")
            except Exception:  # one driver's failure must not keep the others open
                LOG.exception("device driver %s failed to stop; continuing", name)
        try:
            _call(self.configurator, "stop")
        except Exception:
            LOG.exception("configurator client failed to stop; continuing")
        if self._engine is not None:
            self._engine.dispose()
        LOG.info("services stopped in pid %d: device drivers %s and the configurator's drivers "
                 "closed%s", os.getpid(), ", ".join(name for name, _ in drivers) or "none",
                 "; database engine disposed" if self._engine is not None else "")

    # -- drivers ----------------------------------------------------------------------
    def device_driver(self, device_type: str) -> DeviceDriver:
        """The driver for ``device_type`` from the ``nfp.device_drivers`` entry point."""
        with self._lock:
            driver = self._drivers.get(device_type)
            if driver is None:
                eps = {ep.name: ep for ep in entry_points(group=GROUP)}
                if device_type not in eps:
                    raise LookupError(f"no device driver {device_type!r}; installed: {sorted(eps)}")
                cls = eps[device_type].load()
                driver = cls(self.conf, self.conf.device_drivers.get(device_type, {}))
                _call(driver, "setup", self.context)
                if self._started:
                    _call(driver, "start")
                self._drivers[device_type] = driver
            return driver


def _call(obj: Any, hook: str, *args) -> None:
    """Call a lifecycle hook if the object has it (third-party drivers may not)."""
    method = getattr(obj, hook, None)
    if callable(method):
        method(*args)


def build(conf: Any) -> Services:
    """The orchestrator application's services factory."""
    return Services(conf)


def sync_static_inventory(conf, session) -> int:
    """Mirror ``device_drivers.static.devices`` into the device table (upsert)."""
    if "static" not in conf.device_drivers:
        return 0
    from nfp.drivers.device.static import StaticDeviceDriver
    return devices.upsert_inventory(session, StaticDeviceDriver(conf, conf.device_drivers["static"]).rows())
