"""LinuxConfigDriver: nftables, HAProxy, routes and addresses on Linux devices over SSH.

Every element is parsed by :mod:`nfp.resources` and checked by the resource's
own rules first; a bad value fails the element with its field path before any
connection is made, so the device keeps the config it had. Then:

- ``firewall``: one nftables table per network function, replaced atomically by
  ``nft -f`` (:mod:`.nft`); read back with :meth:`LinuxConfigDriver.read_firewall`.
- ``loadbalancer``: HAProxy rendered with jinja2, ``haproxy -c`` checked, started
  or reloaded without dropping connections (:mod:`.haproxy`).
- ``routes`` and ``interfaces``: kernel routes tagged as nfp's, addresses (:mod:`.routes`).
- ``healthmonitor``: an SSH round trip with the pinned host key.

Firewall, loadbalancer and routes run through the convergence core
(:mod:`nfp.drivers.config.core`) with the sessions of :mod:`.session`: plan
(compare with what the device reads back), commit, verify (read back again),
and the result recorded in ``rules``. :meth:`LinuxConfigDriver.diff` compares
only. Interfaces and the health check are applied directly: they hold no rules.
"""
from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nfp.config import ConfigError as ConfError
from nfp.config import default_state_dir
from nfp.drivers.config.base import (ConfigDriver, ConfigError, ConfigRequest, ConfigResult,
                                     ConfigStatus, DeviceTarget)
from nfp.drivers.config.core import Candidate, Diff, RuleTracker, compare, converge
from nfp.drivers.config.linux import haproxy, nft, routes
from nfp.drivers.config.linux.session import (FirewallSession, LinuxSession, LoadBalancerSession,
                                              RoutesSession)
from nfp.drivers.config.linux.ssh import SshPool
from nfp.resources import (OPAQUE_RESOURCES, Firewall, LoadBalancer, ResourceError,
                           StaticRoutes, parse_resource)

LOG = logging.getLogger(__name__)

SECTION = "config_drivers.linux"


class LinuxOptions(BaseModel):
    """``config_drivers.linux``; every key is optional."""

    model_config = ConfigDict(extra="forbid")

    #: nfp's private key; default ``<state_dir>/ssh/id_ed25519`` (the netns driver's)
    key_file: Optional[str] = None
    #: pinned host keys for devices whose row has no ``extra.host_key``
    known_hosts: Optional[str] = None
    ssh_user: str = "root"
    connect_timeout: float = Field(default=10.0, gt=0)
    command_timeout: float = Field(default=120.0, gt=0)
    #: where service files go on devices that do not name their own ``extra.workdir``
    workdir: str = "/var/lib/nfp-device"
    #: seconds a reloaded HAProxy gets to bring its new worker up
    reload_timeout: float = Field(default=10.0, gt=0)


class LinuxConfigDriver(ConfigDriver):
    """Config driver for ``service_vendor=linux`` (entry point ``*:linux``)."""

    HANDLERS = ("firewall", "loadbalancer", "routes", "interfaces", "healthmonitor")

    def __init__(self, conf: Any = None, options: Optional[dict] = None):
        super().__init__(conf, options)
        try:
            self.opts = LinuxOptions.model_validate(self.options)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ConfError(f"{SECTION}.{'.'.join(map(str, err['loc']))}: {err['msg']}") from None
        ssh_dir = (Path(conf.state_path) if conf is not None else default_state_dir()) / "ssh"
        self.pool = SshPool(Path(self.opts.key_file or ssh_dir / "id_ed25519"),
                            Path(self.opts.known_hosts or ssh_dir / "known_hosts"),
                            user=self.opts.ssh_user, connect_timeout=self.opts.connect_timeout)

    # -- the driver interface ---------------------------------------------
    def apply(self, request: ConfigRequest) -> ConfigResult:
        """Validate, then apply one element; FAILURE carries a message naming the field."""
        if request.resource in OPAQUE_RESOURCES:
            return ConfigResult(ConfigStatus.UNHANDLED)
        if request.resource not in self.HANDLERS:
            return _failure(f"resource: {request.resource!r} is not supported by the linux "
                            f"driver (supported: {', '.join(self.HANDLERS)})")
        if request.operation not in ("create", "update", "delete"):
            return _failure(f"operation: {request.operation!r} must be create, update or delete")
        try:
            model = self._parse(request)
        except ResourceError as exc:
            LOG.warning("nf %s: %s config rejected before reaching device %s: %s",
                        request.nf_id, request.resource, request.device.id, exc)
            return _failure(str(exc))
        started = time.monotonic()
        try:
            result = getattr(self, f"_apply_{request.resource}")(request, model)
        except (ConfigError, ResourceError) as exc:
            LOG.error("nf %s: %s %s failed on device %s: %s", request.nf_id, request.operation,
                      request.resource, request.device.id, exc)
            return _failure(str(exc))
        LOG.info("nf %s: %s %s done on device %s in %.0f ms", request.nf_id, request.operation,
                 request.resource, request.device.id, (time.monotonic() - started) * 1000)
        return result

    def list_resources(self, device: DeviceTarget, resource: str) -> list[dict]:
        """What the device has now: firewall tables, LB members, nfp routes or interfaces."""
        run = self._runner(device)
        if resource == "firewall":
            out = run("nft -j list tables")
            return [{"table": table, **self._read_table(run, table).model_dump()}
                    for table in nft.table_names(out.stdout if out.ok else "")]
        if resource == "routes":
            return routes.list_routes(run)
        if resource == "interfaces":
            return routes.list_interfaces(run)
        if resource == "loadbalancer":
            base = f"{self._workdir(device)}/haproxy"
            out = run(f"ls {base} 2>/dev/null")
            return [{"nf": name, "members": haproxy.HaproxyService(run, f"{base}/{name}").members()}
                    for name in out.stdout.split()]
        raise NotImplementedError(f"linux driver cannot list {resource!r}")

    def read_firewall(self, device: DeviceTarget, nf_id: str):
        """The firewall of ``nf_id`` as the kernel has it (a :class:`nfp.resources.Firewall`)."""
        return self._read_table(self._runner(device), nft.table_name(nf_id))

    def diff(self, request: ConfigRequest) -> Optional[Diff]:
        """What the device reads back as against ``request``'s element; nothing is changed.
        None for resources without rules (interfaces, healthmonitor, opaque ones)."""
        if request.resource not in _SESSIONS:
            return None
        try:
            model = self._parse(request)
            return compare(self._session(request), self._candidate(request, model))
        except ResourceError as exc:
            raise ConfigError(str(exc)) from None

    def stop(self) -> None:
        """Close every SSH session, then the engine this driver made (if any). Idempotent."""
        self.pool.close()
        super().stop()

    # -- resources ---------------------------------------------------------
    def _parse(self, request: ConfigRequest):
        """The element's model, checked; a delete whose data no longer validates works
        from the owner alone."""
        try:
            model = parse_resource(request.resource, request.resource_data)
            _CHECKS.get(request.resource, lambda _m: None)(model)
            return model
        except ResourceError:
            if request.operation == "delete" and request.resource in _DELETE_WITHOUT_DATA:
                # removing what an NF owns needs only the NF's id: a config that is (now)
                # invalid must not keep its rules, proxy or routes on the device
                return _DELETE_WITHOUT_DATA[request.resource]()
            raise

    def _session(self, request: ConfigRequest) -> LinuxSession:
        owner, device = _owner_id(request), request.device
        args = (self._runner(device), RuleTracker(self.sessionmaker), device, owner, _key(owner))
        if request.resource == "firewall":
            return FirewallSession(*args)
        if request.resource == "loadbalancer":
            return LoadBalancerSession(*args, workdir=self._workdir(device),
                                       reload_timeout=self.opts.reload_timeout)
        return RoutesSession(*args, workdir=self._workdir(device),
                             route_owner=f"{request.service_type}-{_key(owner)}")

    @staticmethod
    def _candidate(request: ConfigRequest, model) -> Candidate:
        return Candidate.for_operation(request.operation, resource=request.resource, model=model,
                                       owner=_owner_id(request))

    def _converge(self, request: ConfigRequest, model) -> ConfigResult:
        outcome = converge(self._session(request), self._candidate(request, model), repair=request.repair)
        return ConfigResult(ConfigStatus.SUCCESS, external_ids=outcome.external_ids,
                            data={"changes": len(outcome.diff.names())})

    _apply_firewall = _apply_loadbalancer = _apply_routes = _converge

    def _apply_interfaces(self, request: ConfigRequest, interfaces) -> ConfigResult:
        raw = (request.resource_data or {}).get("interfaces") or []
        routes.apply_interfaces(self._runner(request.device), interfaces, raw, request.operation)
        return ConfigResult(ConfigStatus.SUCCESS)

    def _apply_healthmonitor(self, request: ConfigRequest, _monitor) -> ConfigResult:
        """An SSH round trip that also reads the device's boot marker: the kernel's boot
        id and the start time of its sshd (a netns device's pid file is in its home),
        so the health monitor sees a restart even when no probe missed it."""
        started = time.monotonic()
        out = self._runner(request.device)(_BOOT_MARKER)
        if not out.ok:
            raise ConfigError(f"device {request.device.id}: health check command failed")
        return ConfigResult(ConfigStatus.SUCCESS,
                            data={"latency_ms": round((time.monotonic() - started) * 1000, 1),
                                  "boot_id": " ".join(out.stdout.split())[:128]})

    # -- helpers -----------------------------------------------------------
    def _runner(self, device: DeviceTarget):
        return functools.partial(self.pool.run, device, timeout=self.opts.command_timeout)

    def _workdir(self, device: DeviceTarget) -> str:
        return str(device.extra.get("workdir") or self.opts.workdir).rstrip("/")

    @staticmethod
    def _read_table(run, table: str):
        out = run(["nft", "-j", "list", "table", nft.FAMILY, table])
        if not out.ok:
            raise ConfigError(f"firewall table {table} cannot be read: {out.reason()}")
        return nft.parse_table(out.stdout)


#: resources applied through the convergence core
_SESSIONS = ("firewall", "loadbalancer", "routes")
#: prints what changes when the device restarts (see _apply_healthmonitor)
_BOOT_MARKER = ("cat /proc/sys/kernel/random/boot_id; p=$(cat \"$HOME/sshd.pid\" 2>/dev/null || "
                "cat /run/sshd.pid 2>/dev/null) && cut -d' ' -f22 \"/proc/$p/stat\"; true")
#: per-resource checks the schema cannot express
_CHECKS = {"firewall": nft.check, "loadbalancer": haproxy.check}
#: resources whose delete works from the owner alone (routes: every route the owner added)
_DELETE_WITHOUT_DATA = {"firewall": Firewall, "routes": StaticRoutes,
                        "loadbalancer": lambda: LoadBalancer(vip_address="0.0.0.0", protocol_port=1)}


def _owner_id(request: ConfigRequest) -> str:
    return request.nf_id or request.device.id


def _key(owner: str) -> str:
    return nft.table_name(owner)[len(nft.TABLE_PREFIX):]


def _failure(message: str) -> ConfigResult:
    return ConfigResult(ConfigStatus.FAILURE, error=message)
