"""ConfiguratorClient: how orchestrator steps push config to devices.

``DirectConfiguratorClient`` (the default for ``nfp serve``) runs the config
drivers inside the worker process: each ``config[]`` element is validated with
:mod:`nfp.resources`, then handed to the driver registered for
``(service_type, service_vendor)`` under the ``nfp.config_drivers`` entry point.
REST and proxy clients (to a remote ``nfp-configurator``) implement the same
interface.

Secrets sealed at intake (:mod:`nfp.payload_secrets`) travel as ``"secret:<name>"``
references in the stored config; the direct client reveals them (:meth:`reveal`)
just before each driver call and nowhere else, so the device gets the value while
the NF's row, its notifications and the logs keep the reference.

:meth:`ConfiguratorClient.diff` is the read-only twin of ``configure``: the
structured diff of each element against the device (the convergence core's
compare), changing nothing. The direct client owns the drivers it creates and
forwards ``setup``/``start``/``stop`` to them.
"""
from __future__ import annotations

import abc
import dataclasses
import logging
import threading
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Optional

from nfp import payload_secrets
from nfp.drivers.component import DriverContext
from nfp.drivers.config.base import (ConfigDriver, ConfigError, ConfigRequest, ConfigResult,
                                     ConfigStatus, DeviceTarget)
from nfp.drivers.config.core import Diff
from nfp.exceptions import NotFound
from nfp.resources import ResourceError, parse_resource
from nfp.secrets import SecretError, SecretStore, load_key

LOG = logging.getLogger(__name__)
#: resources that are the service itself: a driver that leaves one unhandled fails the
#: element (generic device config such as interfaces or health checks may be skipped)
SERVICE_RESOURCES = frozenset({"firewall", "port_forwarding", "static_nat", "source_nat",
                               "loadbalancer", "vpn"})
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
                  tenant_id: Optional[str] = None, repair: bool = False) -> ConfigOutcome:
        """Apply ``config`` (``[{'resource', 'resource_data'}]``) with ``operation``;
        ``repair`` plans from the device's real state (see ConfigRequest.repair)."""

    def diff(self, service_type: str, config: list[dict], device: DeviceTarget,
             nf_id: Optional[str] = None) -> list[Diff]:
        """One :class:`~nfp.drivers.config.core.Diff` per element of ``config``: what
        the device lacks, has differently or has extra. The device is not changed.
        Raises ConfigError naming the element's field when one is invalid."""
        raise NotImplementedError(f"{type(self).__name__} cannot compare")


def find_driver_class(service_type: str, vendor: str):
    """The entry point for ``service_type:vendor``, else ``*:vendor``; None if neither."""
    eps = {ep.name: ep for ep in entry_points(group=GROUP)}
    ep = eps.get(f"{service_type}:{vendor}") or eps.get(f"*:{vendor}")
    return ep.load() if ep else None


def dictionary_catalog(conf, vendor: str, sessionmaker=None):
    """The catalog the dictionary driver would use for ``vendor`` (its own
    ``config_drivers.<vendor>.dictionary_dir``, else ``configurator.dictionary_dir``;
    stored dictionaries when a database is at hand)."""
    from nfp.drivers.config.dictionary.catalog import DictionaryCatalog
    options = (conf.config_drivers.get(vendor, {}) if conf else {}) or {}
    directory = options.get("dictionary_dir") or (conf.configurator.dictionary_dir if conf else "") or None
    return DictionaryCatalog(sessionmaker, directory, options.get("use_stored", True))


class DirectConfiguratorClient(ConfiguratorClient):
    """Runs config drivers in-process; one driver instance per vendor per worker."""

    def __init__(self, conf):
        self.conf = conf
        self._drivers: dict[tuple[str, str], ConfigDriver] = {}
        self._lock = threading.Lock()
        self._context: Optional[DriverContext] = None
        self._started = False
        self._secrets: Optional[SecretStore] = None

    # -- lifecycle: forwarded to every driver this client created ---------------
    def setup(self, context: DriverContext) -> None:
        """Hand ``context`` to every driver, now and as they are created."""
        with self._lock:
            self._context = context
            drivers = list(self._drivers.values())
        for driver in drivers:
            driver.setup(context)

    def start(self) -> None:
        """Start every driver, now and as they are created."""
        with self._lock:
            self._started = True
            drivers = list(self._drivers.values())
        for driver in drivers:
            driver.start()

    def stop(self) -> None:
        """Stop (close) every driver and forget it; a later call creates fresh ones.
        Idempotent; one driver failing to stop does not keep the others open."""
        with self._lock:
            drivers, self._drivers = list(self._drivers.values()), {}
            self._started = False
        for driver in drivers:
            try:
                driver.stop()
            except Exception:  # noqa: BLE001 - the rest must still be closed
                LOG.exception("config driver %s did not stop cleanly; continuing", type(driver).__name__)

    close = stop

    def driver(self, service_type: str, vendor: str) -> ConfigDriver:
        vendor = self.conf.configurator.vendor_aliases.get(vendor, vendor) if self.conf else vendor
        with self._lock:
            key = (service_type, vendor)
            if key not in self._drivers:
                cls = find_driver_class(service_type, vendor) or self._dictionary_driver(service_type, vendor)
                options = (self.conf.config_drivers.get(vendor, {}) if self.conf else {})
                driver = cls(self.conf, options)
                if self._context is not None:
                    driver.setup(self._context)
                if self._started:
                    driver.start()
                self._drivers[key] = driver
            return self._drivers[key]

    def _dictionary_driver(self, service_type: str, vendor: str):
        """A vendor without a driver of its own is a dictionary vendor if a dictionary
        for it exists now (a file, stored, shipped): looked up on every miss, so one
        loaded after the daemon started is found without a restart."""
        from nfp.drivers.config.dictionary.driver import DictionaryConfigDriver
        sessionmaker = self._context.sessionmaker if self._context is not None else None
        catalog = dictionary_catalog(self.conf, vendor, sessionmaker)
        if catalog.has(vendor):
            LOG.info("service_vendor %s has no config driver of its own; the dictionary driver "
                     "serves it from its dictionary", vendor)
            return DictionaryConfigDriver
        raise LookupError(f"no config driver for service_type={service_type!r} service_vendor={vendor!r}: "
                          f"no entry point in {GROUP}, no configurator.vendor_aliases entry, and no "
                          f"dictionary for {vendor!r} ({catalog.describe()})")

    def reveal(self, data, seen: Optional[dict] = None):
        """``data`` with every ``"secret:<name>"`` reference (what intake sealed, or a
        secret an operator named) replaced by its value, for the driver call only: the
        caller's element, the stored NF and its notifications keep the reference.
        Values read are registered with the log redactor (:meth:`SecretStore.get`).
        SecretError (naming the secret) when one cannot be read: fail closed rather
        than push the reference text to a device as if it were the value. ``seen``
        collects ``{value: reference}`` of what was revealed (:func:`_masked`)."""
        if not payload_secrets.holds_reference(data):
            return data
        store = self._secret_store()

        def get(name: str) -> str:
            value = store.get(name)
            if seen is not None:
                seen[value] = payload_secrets.reference(name)
            return value
        try:
            return payload_secrets.reveal(data, get)
        except NotFound as exc:
            raise SecretError(f"{exc}; the element refers to it") from None

    def _secret_store(self) -> SecretStore:
        with self._lock:
            if self._secrets is None:
                given = self._context.secrets if self._context is not None else None
                if given is None:
                    if self._context is None or self._context.sessionmaker is None:
                        raise SecretError("a secret reference needs the secret store, and this "
                                          "configurator client has no database")
                    given = SecretStore(self._context.sessionmaker, load_key(self.conf),
                                        reload_key=lambda: load_key(self.conf))
                self._secrets = given
            return self._secrets

    def configure(self, operation, service_type, config, device, nf_id=None, tenant_id=None,
                  repair=False):
        results = []
        for index, element in enumerate(config):
            try:
                resource, data = _parsed(index, element)
            except ResourceError as exc:
                return ConfigOutcome(False, str(exc), results)
            try:
                data = self.reveal(data)
            except SecretError as exc:  # names the secret, never a value
                return ConfigOutcome(False, f"{resource}: {exc}", results)
            try:
                driver = self.driver(service_type, device.service_vendor)
                result = driver.apply(ConfigRequest(operation, service_type, resource, data,
                                                    device, nf_id, tenant_id, repair))
            except Exception as exc:  # a driver bug fails this NF, not the worker
                LOG.exception("config driver failed on %s for NF %s", resource, nf_id)
                return ConfigOutcome(False, f"{resource}: {exc.__class__.__name__}: {exc}", results)
            results.append(result)
            if not result.ok:
                return ConfigOutcome(False, f"{resource}: {result.error or 'failed'}", results)
            if result.status == ConfigStatus.UNHANDLED:
                if resource in SERVICE_RESOURCES and operation != "delete":
                    # A service the caller asked for and the device cannot take is a
                    # failure: reporting ACTIVE with nothing configured is the worst defect.
                    return ConfigOutcome(False, f"{resource}: the {device.service_vendor} driver "
                                         f"does not support {resource}", results)
                LOG.info("NF %s: resource %s not handled by the %s driver; skipped",
                         nf_id, resource, device.service_vendor)
        return ConfigOutcome(True, None, results)

    def diff(self, service_type, config, device, nf_id=None):
        diffs = []
        for index, element in enumerate(config):
            try:
                resource, data = _parsed(index, element)
            except ResourceError as exc:
                raise ConfigError(str(exc)) from None
            seen: dict[str, str] = {}
            try:
                data = self.reveal(data, seen)  # else a device holding the value always "drifts"
            except SecretError as exc:
                raise ConfigError(f"{resource}: {exc}") from None
            driver = self.driver(service_type, device.service_vendor)
            found = _masked(driver.diff(ConfigRequest("update", service_type, resource, data, device,
                                                      nf_id)), seen)
            diffs.append(found if found is not None else Diff(
                resource, compared=False, note=f"the {device.service_vendor} driver does not compare {resource}"))
        return diffs


def _masked(found: Optional[Diff], seen: dict[str, str]) -> Optional[Diff]:
    """``found`` with each revealed value (both sides: the device holds it too) put
    back as its reference: diffs are shown (``nfp nf diff``), stored
    (``reconciliation_log``) and adopted into the NF's config."""
    if found is None or not seen:
        return found

    def mask(node):
        if isinstance(node, str):
            return seen.get(node, node)
        if isinstance(node, dict):
            return {k: mask(v) for k, v in node.items()}
        if isinstance(node, list):
            return [mask(v) for v in node]
        return node

    for changes in (found.to_add, found.to_change, found.to_remove):
        changes[:] = [dataclasses.replace(c, desired=mask(c.desired), actual=mask(c.actual))
                      for c in changes]
    return found


def _parsed(index: int, element) -> tuple:
    """``(resource, resource_data as JSON-ready data)``, validated; ResourceError names the field."""
    resource = element.get("resource") if isinstance(element, dict) else None
    parsed = parse_resource(resource, element.get("resource_data") if isinstance(element, dict) else None,
                            prefix=f"config[{index}].resource_data")
    return resource, parsed.model_dump(mode="json") if hasattr(parsed, "model_dump") else parsed
