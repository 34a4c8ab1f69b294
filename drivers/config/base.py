"""The config driver interface: how the configurator pushes one resource to one device.

The configurator splits each request's ``config[]`` list into elements
``{'resource': ..., 'resource_data': ...}`` and hands each one, with the target
device, to the driver registered for ``(service_type, service_vendor)`` under
the ``nfp.config_drivers`` entry point. Entry point names are
``"<service_type>:<service_vendor>"``; ``"*"`` as service type matches any.

Drivers must be idempotent: a step can run twice after a crash, so ``create``
of a resource that already exists on the device (same external id or same
content) succeeds without duplicating it.

Drivers are components (:class:`nfp.drivers.component.Component`): the owner
calls ``setup(context)``, ``start()`` and ``stop()``. They apply and compare
through the convergence core (:mod:`nfp.drivers.config.core`); see
``drivers/config/README.md``.
"""
from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from nfp.drivers.component import Component

if TYPE_CHECKING:
    from nfp.drivers.config.core.diff import Diff


class ConfigStatus(str, enum.Enum):
    """Outcome of one config element, as upstream's notification ``status_code``."""

    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    #: The driver does not handle this resource (upstream: 'heat'); not an error.
    UNHANDLED = "UNHANDLED"


@dataclass(frozen=True)
class DeviceTarget:
    """The device a config element goes to.

    ``credentials_ref`` names a secret in the secret store; never the secret itself.
    ``extra`` carries driver-specific facts recorded at device creation
    (for example ``ssh_port``, ``host_key``, ``netns``).
    """

    id: str
    mgmt_ip_address: Optional[str]
    service_vendor: str
    credentials_ref: Optional[str] = None
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ConfigRequest:
    """One config element for one device.

    Parameters:
        operation(str): ``create``, ``update`` or ``delete``.
        service_type(str): ``firewall``, ``loadbalancer``, ``vpn``, ``generic``...
        resource(str): ``firewall``, ``port_forwarding``, ``static_nat``, ``source_nat``,
            ``loadbalancer``, ``routes``, ``interfaces``, ``healthmonitor``, ``heat``...
        resource_data(dict): the resource body (see :mod:`nfp.resources`).
        device(DeviceTarget): where to apply it.
        nf_id(str): the owning network function, for logs and rule tracking.
        tenant_id(str): the owning tenant.
        repair(bool): plan from what the device really has (a full compare), not
            from the driver's records, so drift is repaired (the reconciler sets it).
    """

    operation: str
    service_type: str
    resource: str
    resource_data: dict
    device: DeviceTarget
    nf_id: Optional[str] = None
    tenant_id: Optional[str] = None
    repair: bool = False


@dataclass
class ConfigResult:
    """What a driver did. ``external_ids`` maps nfp rule names to device ids."""

    status: ConfigStatus
    error: Optional[str] = None
    external_ids: dict[str, str] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in (ConfigStatus.SUCCESS, ConfigStatus.UNHANDLED)


class ConfigError(Exception):
    """A config element could not be applied. The message must name the field and
    must never contain a secret."""


class ConfigDriver(Component, abc.ABC):
    """Applies config elements to devices of one vendor.

    Parameters:
        conf(NfpConfig): the daemon's validated configuration.
        options(dict): this driver's section, ``config_drivers.<vendor>``.

    Database access goes through :attr:`sessionmaker`: the context's (the
    process's one engine) after ``setup(context)``; only a driver built without
    a context (the CLI, tests) makes an engine of its own, which ``stop()``
    disposes of.
    """

    def __init__(self, conf: Any = None, options: Optional[dict] = None):
        self.conf = conf
        self.options = dict(options or {})
        self._own_engine = None
        self._own_sessions = None

    @abc.abstractmethod
    def apply(self, request: ConfigRequest) -> ConfigResult:
        """Apply one element. Validation errors return FAILURE with a message that
        names the field, before anything touches the device."""

    def diff(self, request: ConfigRequest) -> Optional["Diff"]:
        """The structured diff between ``request``'s element and the device, changing
        nothing; None when this driver cannot compare the resource."""
        return None

    def list_resources(self, device: DeviceTarget, resource: str) -> list[dict]:
        """Return what the device currently has for ``resource`` (for reconciliation)."""
        raise NotImplementedError

    @property
    def sessionmaker(self):
        """The SQLAlchemy session factory this driver uses (see the class docstring)."""
        context = self.context
        if context is not None and context.sessionmaker is not None:
            return context.sessionmaker
        if self._own_sessions is None:
            from nfp.config import NfpConfig
            from nfp.db.engine import make_engine, make_sessionmaker
            conf = self.conf if self.conf is not None else NfpConfig()
            # no owner gave us one: a small engine of our own, disposed of by stop()
            self._own_engine = make_engine(conf.database_url, pool_size=conf.database.pool_size)
            self._own_sessions = make_sessionmaker(self._own_engine)
        return self._own_sessions

    def stop(self) -> None:
        """Dispose of the engine this driver made itself, if any. Idempotent;
        subclasses close their pools first, then call this."""
        engine, self._own_engine, self._own_sessions = self._own_engine, None, None
        if engine is not None:
            engine.dispose()
