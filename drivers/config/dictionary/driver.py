"""``DictionaryConfigDriver``: nfp's config driver for dictionary-described appliances.

Registered under ``nfp.config_drivers`` as ``*:pfsense``, ``*:fortigate``,
``*:paloalto`` and ``*:vyos``; any vendor with a dictionary works the same way.
Options (``config_drivers.<vendor>``) are validated by :class:`DriverOptions`;
per-device facts come from the device row's ``extra`` (same keys, device wins).
Credentials are read from the secret store at call time through the device's
``credentials_ref`` and never appear in results, logs or exceptions.

Every element goes through the convergence core (:mod:`nfp.drivers.config.core`)
with a :class:`~.sync.DictionarySession`: :meth:`DictionaryConfigDriver.apply`
plans, commits and verifies; :meth:`DictionaryConfigDriver.diff` only compares.
"""
from __future__ import annotations

import hashlib
import logging
import socket
import threading
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nfp.config import NfpConfig
from nfp.drivers.config.base import (ConfigDriver, ConfigError, ConfigRequest, ConfigResult,
                                     ConfigStatus, DeviceTarget)
from nfp.drivers.config.core import Candidate, DesiredItem, Diff, RuleTracker, compare, converge
from nfp.exceptions import NotFound
from nfp.resources import ResourceError, parse_resource
from nfp.secrets import SecretError, SecretStore, install_redaction, load_key, redact

from . import placeholders
from .catalog import DictionaryCatalog
from .errors import DictionaryError, PlaceholderError, TransportError, VendorError
from .http import AuthMaterial, HttpEndpoint, HttpTransport
from .items import SERVICE_OF, build_items
from .loader import LoadedDictionary
from .operations import DeviceLink, OperationRunner
from .render import TemplateProblem
from .ssh import SshCredentials, SshEndpoint, SshTransport
from .sync import DictionarySession

LOG = logging.getLogger(__name__)

#: failures reported as FAILURE with their (redacted) message
EXPECTED = (ResourceError, PlaceholderError, TemplateProblem, DictionaryError, TransportError,
            VendorError, SecretError, NotFound, ConfigError)


class DriverOptions(BaseModel):
    """``config_drivers.<vendor>``; each key may also be set per device in ``extra``."""

    model_config = ConfigDict(extra="forbid")

    #: look for ``<vendor>.yaml`` here before the stored and shipped dictionaries
    dictionary_dir: Optional[str] = None
    #: use dictionaries stored with ``nfp dictionary load`` (newest, or this version)
    use_stored: bool = True
    dictionary_version: Optional[int] = Field(default=None, ge=1)
    #: management port (default: the dictionary's access.port)
    port: Optional[int] = Field(default=None, ge=1, le=65535)
    #: http for lab devices without TLS (default: the dictionary's protocol)
    scheme: Optional[str] = Field(default=None, pattern="^(https|http)$")
    verify: bool = True
    ca_file: Optional[str] = None
    tls_fingerprint: Optional[str] = Field(default=None, pattern=r"^[0-9A-Fa-f:]{64,95}$")
    ssh_host_key: Optional[str] = None
    username: Optional[str] = None
    #: secret name used when the device row has no credentials_ref
    credentials_ref: Optional[str] = None
    timeout: Optional[float] = Field(default=None, gt=0, le=600)
    retries: Optional[int] = Field(default=None, ge=0, le=10)
    backoff: Optional[float] = Field(default=None, ge=0, le=30)
    rate_limit: Optional[float] = Field(default=None, gt=0)
    pool_size: int = Field(default=8, ge=1, le=256)
    #: values for the dictionary's vars (interface names, vsys, VDOM ...)
    vars: dict[str, Any] = Field(default_factory=dict)


_DEVICE_KEYS = set(DriverOptions.model_fields) - {"dictionary_dir", "use_stored", "dictionary_version",
                                                   "pool_size"}


class DictionaryConfigDriver(ConfigDriver):
    """Applies config elements to appliances described by vendor dictionaries."""

    def __init__(self, conf: Any = None, options: Optional[dict] = None):
        super().__init__(conf, options)
        try:
            self.settings = DriverOptions.model_validate(self.options)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ValueError("config_drivers options: " + ".".join(map(str, err["loc"])) + ": " + err["msg"]) from None
        self.conf = conf if conf is not None else NfpConfig()
        self._store: Optional[SecretStore] = None
        self._transports: dict[str, tuple[tuple, Any]] = {}
        self._device_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        install_redaction()

    # -- wiring -----------------------------------------------------------------------
    @property
    def sessions(self):
        """The session factory (the context's, else this driver's own; see ConfigDriver)."""
        return self.sessionmaker

    @property
    def catalog(self) -> DictionaryCatalog:
        """Where dictionaries are found: this vendor's directory, else ``configurator.dictionary_dir``."""
        directory = self.settings.dictionary_dir or self.conf.configurator.dictionary_dir or None
        return DictionaryCatalog(self.sessions, directory, self.settings.use_stored,
                                 self.settings.dictionary_version)

    @property
    def secrets(self) -> SecretStore:
        if self._store is None:
            given = self.context.secrets if self.context is not None else None
            self._store = given if given is not None else SecretStore(
                self.sessions, load_key(self.conf), reload_key=lambda: load_key(self.conf))
        return self._store

    # -- the interface ------------------------------------------------------------------
    def apply(self, request: ConfigRequest) -> ConfigResult:
        """Apply one config element; FAILURE carries a message naming the field or the device error."""
        device = request.device
        if request.resource == "healthmonitor":
            return self._healthcheck(device)
        service = SERVICE_OF.get(request.resource)
        if service is None:
            return ConfigResult(ConfigStatus.UNHANDLED,
                                data={"reason": f"{request.resource} is not a dictionary service"})
        what = f"{device.service_vendor} {service} {request.operation}"
        try:
            items = self._items(request)
            loaded = self.catalog.get(device.service_vendor)
            if service not in loaded.model.services:
                if request.operation == "delete":  # nothing can have been pushed
                    return ConfigResult(ConfigStatus.UNHANDLED,
                                        data={"reason": f"dictionary {loaded.name} has no {service}"})
                raise VendorError(f"dictionary {loaded.name} has no {service} service; "
                                  f"{device.service_vendor} devices cannot take {request.resource}")
            with self._device_lock(device.id):
                outcome = converge(self._session(request, loaded, service), self._candidate(request, items),
                                   repair=request.repair)
        except EXPECTED as exc:
            message = redact(f"{what}: {exc}")
            LOG.warning("nf %s device %s: %s; reporting FAILURE", request.nf_id, device.id, message)
            return ConfigResult(ConfigStatus.FAILURE, error=message)
        LOG.info("nf %s device %s: %s applied (%d rule(s), %d change(s))", request.nf_id, device.id, what,
                 len(items), len(outcome.diff.names()))
        return ConfigResult(ConfigStatus.SUCCESS, external_ids=outcome.external_ids)

    def diff(self, request: ConfigRequest) -> Optional[Diff]:
        """The element's rules against the records and the device's listing; nothing is
        changed. Raises ConfigError (redacted, naming the field or device) on failure."""
        service = SERVICE_OF.get(request.resource)
        if service is None:
            return None
        device = request.device
        try:
            items = self._items(request)
            loaded = self.catalog.get(device.service_vendor)
            if service not in loaded.model.services:
                return Diff(request.resource, compared=False, note=f"dictionary {loaded.name} has no {service}")
            with self._device_lock(device.id):
                return compare(self._session(request, loaded, service), self._candidate(request, items))
        except EXPECTED as exc:
            raise ConfigError(redact(f"{device.service_vendor} {service} diff: {exc}")) from None

    def _session(self, request: ConfigRequest, loaded: LoadedDictionary, service: str) -> DictionarySession:
        device = request.device
        return DictionarySession(lambda: self._link(device, loaded), RuleTracker(self.sessions),
                                 nf_id=request.nf_id or "", device_id=device.id,
                                 vendor=device.service_vendor, resource=request.resource, service=service)

    @staticmethod
    def _candidate(request: ConfigRequest, items) -> Candidate:
        return Candidate.for_operation(request.operation, resource=request.resource,
                                       owner=request.nf_id or "",
                                       items=[DesiredItem(i.name, i.values, i.rule_id) for i in items])

    @staticmethod
    def _items(request: ConfigRequest):
        """The element's items. A delete whose body no longer validates removes
        every rule the NF has recorded for the service instead of failing."""
        try:
            model = parse_resource(request.resource, request.resource_data)
        except ResourceError:
            if request.operation == "delete":
                return []
            raise
        return build_items(request.resource, model, request.nf_id or "")

    def list_resources(self, device: DeviceTarget, resource: str) -> list[dict]:
        """What the device has for ``resource`` now (for reconciliation)."""
        service = SERVICE_OF[resource]
        loaded = self.catalog.get(device.service_vendor)
        with self._device_lock(device.id):
            return OperationRunner(self._link(device, loaded)).list(service)

    def stop(self) -> None:
        """Close every pooled transport, then the engine this driver made (if any). Idempotent."""
        with self._lock:
            transports = [transport for _, transport in self._transports.values()]
            self._transports.clear()
        for transport in transports:
            transport.close()
        self._store = None  # it may hold this driver's own engine, disposed of next
        super().stop()

    # -- devices ---------------------------------------------------------------------------
    def _device_lock(self, device_id: str) -> threading.Lock:
        with self._lock:
            return self._device_locks.setdefault(device_id, threading.Lock())

    def _facts(self, device: DeviceTarget) -> DriverOptions:
        """Driver options overlaid with the device's own ``extra`` facts."""
        extra = {k: v for k, v in (device.extra or {}).items() if k in _DEVICE_KEYS}
        if not extra:
            return self.settings
        merged = self.settings.model_dump()
        merged["vars"] = {**merged["vars"], **extra.pop("vars", {})}
        merged.update(extra)
        try:
            return DriverOptions.model_validate(merged)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise VendorError(f"device {device.id} extra." + ".".join(map(str, err["loc"])) + ": " + err["msg"]) from None

    def _vars(self, loaded: LoadedDictionary, facts: DriverOptions) -> dict[str, Any]:
        out = {}
        for name, value in facts.vars.items():
            if name not in loaded.model.vars:
                raise PlaceholderError(name, f"is not a var of dictionary {loaded.name} "
                                       f"(it has: {', '.join(sorted(loaded.model.vars)) or 'none'})")
        for name, spec in loaded.model.vars.items():
            out[name] = placeholders.check(name, spec.type, facts.vars.get(name, spec.default))
        return out

    def _link(self, device: DeviceTarget, loaded: LoadedDictionary) -> DeviceLink:
        facts = self._facts(device)
        access = loaded.model.access
        if not device.mgmt_ip_address:
            raise TransportError(f"device {device.id} has no management address")
        link = DeviceLink(device.id, loaded, self._vars(loaded, facts))
        secret = self._credentials(device, facts)
        timeout = facts.timeout or access.timeout
        retries = access.retries if facts.retries is None else facts.retries
        backoff = access.backoff if facts.backoff is None else facts.backoff
        rate = facts.rate_limit or access.rate_limit
        port = facts.port or access.default_port
        if access.protocol == "ssh":
            if not facts.ssh_host_key:
                raise TransportError(f"device {device.id}: no pinned SSH host key; set ssh_host_key in "
                                     "the device's extra or the driver options")
            endpoint = SshEndpoint(device.mgmt_ip_address, port, facts.ssh_host_key, timeout, retries,
                                   backoff, rate)
            link.ssh = self._transport(device.id, endpoint,
                                       lambda: SshTransport(endpoint, access.cli_settings, device.id))
            username = secret.get(access.username_ref) or facts.username
            if not username:
                raise SecretError(f"device {device.id}: no SSH username (credentials secret "
                                  f"'{access.username_ref}' entry or the username option)")
            link.ssh_credentials = SshCredentials(
                username, password=secret.get(access.password_ref) if access.auth_type == "password" else None,
                private_key=secret.get(access.key_ref) if access.auth_type == "key" else None)
            return link
        client_cert = self._client_cert(device, access, secret)
        endpoint = HttpEndpoint(device.mgmt_ip_address, port, facts.scheme or access.protocol, facts.verify,
                                facts.ca_file, facts.tls_fingerprint, timeout, retries, backoff, rate,
                                self.settings.pool_size,
                                hashlib.sha256(client_cert[0].encode()).hexdigest() if client_cert else None)
        link.http = self._transport(device.id, endpoint, lambda: HttpTransport(endpoint, device.id, client_cert))
        link.auth = self._auth(device, access, secret, facts)
        return link

    def _transport(self, device_id: str, endpoint: Any, factory):
        with self._lock:
            cached = self._transports.get(device_id)
            if cached is not None and cached[0] == endpoint:
                return cached[1]
            if cached is not None:
                cached[1].close()
            transport = factory()
            self._transports[device_id] = (endpoint, transport)
            return transport

    # -- credentials ----------------------------------------------------------------------
    def _credentials(self, device: DeviceTarget, facts: DriverOptions) -> dict[str, str]:
        ref = device.credentials_ref or facts.credentials_ref
        return self.secrets.get_mapping(ref) if ref else {}

    @staticmethod
    def _client_cert(device: DeviceTarget, access, secret: dict) -> Optional[tuple[str, str]]:
        """``(certificate, key)`` PEMs for ``authType: certificate``, else None."""
        if access.auth_type != "certificate":
            return None
        cert, key = secret.get(access.cert_ref), secret.get(access.key_ref)
        if not (cert and key):
            raise SecretError(f"device {device.id}: certificate auth needs '{access.cert_ref}' and "
                              f"'{access.key_ref}' in its credentials secret")
        return cert, key

    def _auth(self, device: DeviceTarget, access, secret: dict, facts: DriverOptions) -> AuthMaterial:
        if access.auth_type in ("none", "certificate"):
            return AuthMaterial()
        if access.auth_type == "basic":
            username = secret.get(access.username_ref) or facts.username
            password = secret.get(access.password_ref)
            if not (username and password):
                raise SecretError(f"device {device.id}: basic auth needs '{access.username_ref}' and "
                                  f"'{access.password_ref}' in its credentials secret")
            return AuthMaterial(basic=(username, password))
        token = secret.get(access.token_ref) or secret.get("value")
        if token is None:
            token = self.secrets.get(access.token_ref)  # a global secret named like the ref
        return AuthMaterial(headers={access.token_header: access.token_prefix + token})

    # -- health ---------------------------------------------------------------------------
    def _healthcheck(self, device: DeviceTarget) -> ConfigResult:
        """Reachability of the management port (TCP connect)."""
        try:
            loaded = self.catalog.get(device.service_vendor)
            port = self._facts(device).port or loaded.model.access.default_port
            with socket.create_connection((device.mgmt_ip_address, port), timeout=5):
                pass
        except (OSError, DictionaryError, VendorError) as exc:
            return ConfigResult(ConfigStatus.FAILURE, error=redact(f"device {device.id} unreachable: {exc}"))
        return ConfigResult(ConfigStatus.SUCCESS)
