"""The linux driver's device sessions: what nfp wants against what the kernel reads back.

One session class per resource, all on the convergence core
(:mod:`nfp.drivers.config.core`):

- :class:`FirewallSession`: the NF's nftables table. Items are the enabled
  rules (by name, in order) and ``default_action`` (the chain policy); the
  device side is ``nft -j list table`` parsed back (:func:`.nft.parse_table`).
- :class:`LoadBalancerSession`: the NF's HAProxy. Items are the members (by
  server name) and ``haproxy`` (the rendered config's digest, and that the
  master runs); the device side is the installed ``haproxy.cfg``.
- :class:`RoutesSession`: the owner's kernel routes (protocol 233), read with
  ``ip -j route``.

Every commit is atomic on the device (``nft -f``, a checked HAProxy reload,
``ip -batch`` with its own rollback) and is then recorded in ``rules`` with one
transaction (:meth:`~nfp.drivers.config.core.RuleTracker.record_set`); a delete
removes the records.
"""
from __future__ import annotations

import hashlib
import shlex
from typing import Callable, Optional

from nfp.drivers.config.base import ConfigError, DeviceTarget
from nfp.drivers.config.core import (Candidate, DeviceSession, Diff, Mode, RuleTracker, TrackedRule,
                                     body_hash, compare_items)
from nfp.resources import Firewall, FirewallRule

from . import haproxy, nft, routes

Run = Callable[..., object]


class LinuxSession(DeviceSession):
    """What the three resource sessions share: the device, its runner and the tracker.

    Parameters:
        run: ``run(command, stdin=None)`` on the device (the driver's SSH pool).
        tracker(RuleTracker): the ``rules`` repository.
        device(DeviceTarget): the device.
        owner(str): the network function id (the device id when there is none).
        key(str): the owner as a table/directory name (``nft.table_name`` without prefix).
    """

    #: the ``rules.service`` value of this resource's records
    service = ""

    def __init__(self, run: Run, tracker: RuleTracker, device: DeviceTarget, owner: str, key: str):
        self.run, self.tracker, self.device, self.owner, self.key = run, tracker, device, owner, key

    def load_candidate(self, candidate: Candidate) -> None:
        self.candidate = candidate

    def compare(self) -> Diff:
        desired = self._desired() if self.candidate.mode != Mode.REMOVE else {}
        ids = {**self._tracked_ids(), **self._ids()}
        return compare_items(self.candidate.resource, desired, self._actual(), ids=ids,
                             order=self._order())

    def commit(self, diff: Diff, confirm_timeout: Optional[float] = None) -> dict[str, str]:
        self._apply()
        return self._record()

    def external_ids(self) -> dict[str, str]:
        # nothing needed committing: bring the records up to date all the same (rows lost to
        # a crash between a commit and its record, or written before tracking existed)
        return self._record()

    # -- per resource -----------------------------------------------------------
    def _desired(self) -> dict[str, dict]:
        raise NotImplementedError

    def _actual(self) -> dict[str, dict]:
        raise NotImplementedError

    def _order(self) -> Optional[list[str]]:
        return None

    def _ids(self) -> dict[str, str]:
        """name -> external id of the desired items."""
        return {}

    def _apply(self) -> None:
        raise NotImplementedError

    # -- tracking ---------------------------------------------------------------
    def _record(self) -> dict[str, str]:
        if self.candidate.mode == Mode.REMOVE:
            self.tracker.forget(self.owner, self.device.id, self.service)
            return {}
        ids = self._ids()
        desired = self._desired()
        self.tracker.record_set(
            nf_id=self.owner, device_id=self.device.id, vendor=self.device.service_vendor,
            service=self.service, resource=self.candidate.resource,
            rules=[TrackedRule(name, ids[name], body_hash(desired[name]), self.key)
                   for name in ids if name in desired])
        return ids

    def _tracked_ids(self) -> dict[str, str]:
        rows = self.tracker.recorded(self.owner, self.device.id, self.service)
        return {name: row.external_id for name, row in rows.items() if row.external_id}

    def _checked(self, out, what: str):
        if not out.ok:
            raise ConfigError(f"device {self.device.id}: could not {what}: {out.reason()}")
        return out


def _ports(value) -> Optional[str]:
    """``80:80`` and ``80`` are one port; nft prints a one-port range as the port."""
    if value is None:
        return None
    low, _, high = str(value).partition(":")
    return low if not high or high == low else f"{low}:{high}"


def rule_view(rule: FirewallRule) -> dict:
    """The fields of a rule that nft keeps, normalised as nft reads them back."""
    return {"action": rule.action, "protocol": rule.protocol,
            "source_ip_address": rule.source_ip_address,
            "destination_ip_address": rule.destination_ip_address,
            "source_port": _ports(rule.source_port), "destination_port": _ports(rule.destination_port)}


class FirewallSession(LinuxSession):
    """The NF's nftables table (see module docstring)."""

    service = "Firewall"

    @property
    def table(self) -> str:
        return nft.TABLE_PREFIX + self.key

    def read(self) -> Optional[Firewall]:
        """The table as the kernel has it; None when there is no table."""
        out = self.run(["nft", "-j", "list", "table", nft.FAMILY, self.table])
        if not out.ok:
            if "No such file or directory" in (out.stderr or ""):
                return None
            raise ConfigError(f"firewall table {self.table} cannot be read: {out.reason()}")
        return nft.parse_table(out.stdout)

    def _desired(self) -> dict[str, dict]:
        firewall: Firewall = self.candidate.model
        wanted = {rule.name: rule_view(rule) for rule in firewall.rules if rule.enabled}
        wanted["default_action"] = {"policy": firewall.default_action}
        return wanted

    def _actual(self) -> dict[str, dict]:
        firewall = self.read()
        self._device_order = [] if firewall is None else [rule.name for rule in firewall.rules]
        if firewall is None:
            return {}
        have = {rule.name: rule_view(rule) for rule in firewall.rules}
        have["default_action"] = {"policy": firewall.default_action}
        return have

    def _order(self) -> Optional[list[str]]:
        return getattr(self, "_device_order", None)

    def _ids(self) -> dict[str, str]:
        firewall: Firewall = self.candidate.model
        return {rule.name: nft.external_id(self.table, rule.name) for rule in firewall.rules if rule.enabled}

    def _apply(self) -> None:
        script = (nft.render_delete(self.table) if self.candidate.mode == Mode.REMOVE
                  else nft.render_table(self.table, self.candidate.model))
        out = self.run("nft -f -", stdin=script)
        if not out.ok:
            raise ConfigError(f"resource_data.rules: nft refused the rule set "
                              f"({nft.first_error_line(out.stderr)}); the previous rules stay")


class LoadBalancerSession(LinuxSession):
    """The NF's HAProxy (see module docstring)."""

    service = "LoadBalancer"

    def __init__(self, *args, workdir: str, reload_timeout: float):
        super().__init__(*args)
        self.haproxy = haproxy.HaproxyService(self.run, f"{workdir}/haproxy/{self.key}",
                                              reload_timeout=reload_timeout)

    def _desired(self) -> dict[str, dict]:
        lb = self.candidate.model
        wanted = {haproxy.server_name(m): {"address": m.address, "protocol_port": m.protocol_port,
                                           "weight": m.weight} for m in lb.members}
        config = haproxy.render(lb, self.owner, self.haproxy.dir)
        wanted["haproxy"] = {"config_sha256": hashlib.sha256(config.encode()).hexdigest(), "running": True}
        return wanted

    def _actual(self) -> dict[str, dict]:
        out = self.run(f"cat {shlex.quote(self.haproxy.dir)}/haproxy.cfg 2>/dev/null")
        if not out.ok:
            return {}
        have = {m["id"]: {"address": m["address"], "protocol_port": m["protocol_port"],
                          "weight": m["weight"]} for m in haproxy.parse_members(out.stdout)}
        have["haproxy"] = {"config_sha256": hashlib.sha256(out.stdout.encode()).hexdigest(),
                           "running": self.haproxy.master_pid() is not None}
        return have

    def _ids(self) -> dict[str, str]:
        return {haproxy.server_name(m): f"{self.key}/{m.address}:{m.protocol_port}"
                for m in self.candidate.model.members}

    def _apply(self) -> None:
        if self.candidate.mode == Mode.REMOVE:
            self.haproxy.delete()
        else:
            self.haproxy.apply(self.candidate.model, self.owner)


class RoutesSession(LinuxSession):
    """The owner's kernel routes (see module docstring)."""

    service = "StaticRoutes"

    def __init__(self, *args, workdir: str, route_owner: str):
        super().__init__(*args)
        self.table = routes.RouteTable(self.run, workdir, route_owner)
        self.route_owner = route_owner

    def _wanted(self) -> dict[tuple, str]:
        """(destination, nexthop) -> item name, for the candidate's routes."""
        return {routes.route_key(r.destination, r.nexthop): r.name or _route_name(*routes.route_key(
            r.destination, r.nexthop)) for r in self.candidate.model.routes}

    def _desired(self) -> dict[str, dict]:
        return {name: {"destination": dst, "nexthop": via} for (dst, via), name in self._wanted().items()}

    def _actual(self) -> dict[str, dict]:
        wanted = self._wanted()
        kernel = {routes.route_key(r["destination"], r["nexthop"])
                  for r in routes.list_routes(self.run) if r.get("nexthop")}
        mine = set(self.table.owned()) | set(wanted)
        if self.candidate.mode == Mode.REMOVE and wanted:
            mine = set(wanted)  # a delete naming routes removes only those
        return {wanted.get(key) or _route_name(*key): {"destination": key[0], "nexthop": key[1]}
                for key in kernel & mine}

    def _ids(self) -> dict[str, str]:
        return {name: f"{self.route_owner} {dst} via {via}" for (dst, via), name in self._wanted().items()}

    def _apply(self) -> None:
        self.table.apply(self.candidate.model, "delete" if self.candidate.mode == Mode.REMOVE else "update")


def _route_name(destination: str, nexthop: str) -> str:
    return f"{destination} via {nexthop}"
