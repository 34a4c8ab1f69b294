"""Kernel routes and interface addresses: the generic ``routes`` and ``interfaces`` resources.

Routes nfp adds carry their own routing protocol number (:data:`ROUTE_PROTO`),
so ``ip route show proto 233`` lists exactly nfp's routes and nothing an
operator added is ever touched. Which owner (network function and service
type) pushed which routes is kept in a small file on the device, so an update
removes the owner's routes that are no longer wanted and nothing else. A batch
that fails half way is rolled back to the routes that were there before.
"""
from __future__ import annotations

import ipaddress
import json
import shlex
from typing import Callable, Optional

from nfp.drivers.config.base import ConfigError
from nfp.drivers.config.linux.ssh import Output
from nfp.resources import Interfaces, ResourceError, StaticRoutes

Run = Callable[..., Output]

#: rtnetlink protocol number of routes nfp owns (unassigned in /etc/iproute2/rt_protos)
ROUTE_PROTO = 233


def route_key(destination: str, nexthop: str) -> tuple[str, str]:
    """A route as ``(network, nexthop)``, both normalised."""
    return (str(ipaddress.ip_network(destination, strict=False)), str(ipaddress.ip_address(nexthop)))


def _batch(routes: list[tuple[str, str]], verb: str) -> list[str]:
    return [f"{'-6 ' if ':' in dst else ''}route {verb} {dst} via {via} proto {ROUTE_PROTO}"
            for dst, via in routes]


class RouteTable:
    """One owner's routes on one device."""

    def __init__(self, run: Run, state_dir: str, owner: str):
        self.run = run
        self.state_file = f"{state_dir}/routes/{owner}.json"

    def apply(self, routes: StaticRoutes, operation: str) -> None:
        """Make the owner's routes equal ``routes`` (create/update), or remove them (delete)."""
        wanted = [route_key(r.destination, r.nexthop) for r in routes.routes]
        previous = self.owned()
        if operation == "delete":
            removals, wanted = (wanted or previous), []
            keep = [r for r in previous if r not in removals]
        else:
            removals = [r for r in previous if r not in wanted]
            keep = wanted
        commands = _batch(removals, "del") + _batch(wanted, "replace")
        out = self.run(["ip", "-batch", "-"], stdin="\n".join(commands) + "\n") if commands else None
        if out is not None and not out.ok:
            self._rollback(previous, wanted)
            raise ConfigError(f"resource_data.routes: the kernel refused a route: "
                              f"{out.reason()}; previous routes restored")
        self._save(keep)

    def _rollback(self, previous: list, wanted: list) -> None:
        commands = _batch([r for r in wanted if r not in previous], "del") + _batch(previous, "replace")
        if commands:
            self.run(["ip", "-force", "-batch", "-"], stdin="\n".join(commands) + "\n")

    def owned(self) -> list[tuple[str, str]]:
        """The routes this owner added, as recorded on the device."""
        out = self.run(f"cat {shlex.quote(self.state_file)} 2>/dev/null")
        try:
            return [tuple(r) for r in json.loads(out.stdout)] if out.ok else []
        except ValueError:
            return []

    def _save(self, routes: list) -> None:
        path = shlex.quote(self.state_file)
        self.run(f"mkdir -p $(dirname {path}) && cat > {path}", stdin=json.dumps(routes))


def list_routes(run: Run) -> list[dict]:
    """Every route nfp owns on the device, read from the kernel."""
    found = []
    for family in ("-4", "-6"):
        out = run(["ip", family, "-j", "route", "show", "proto", str(ROUTE_PROTO)])
        for route in json.loads(out.stdout or "[]") if out.ok else []:
            dst = route.get("dst")
            if dst == "default":
                dst = "0.0.0.0/0" if family == "-4" else "::/0"
            found.append({"destination": str(ipaddress.ip_network(dst, strict=False)),
                          "nexthop": route.get("gateway"), "device": route.get("dev")})
    return found


def apply_interfaces(run: Run, interfaces: Interfaces, raw: list, operation: str,
                     prefix: str = "resource_data") -> None:
    """Address and bring up (or, on delete, unaddress) each interface named or found by MAC."""
    links = json.loads(_checked(run(["ip", "-j", "link", "show"]), "list links").stdout or "[]")
    by_name = {link["ifname"]: link for link in links}
    by_mac = {link.get("address"): link["ifname"] for link in links}
    commands = []
    for index, (iface, body) in enumerate(zip(interfaces.interfaces, raw, strict=True)):
        where = f"{prefix}.interfaces.{index}"
        name = iface.name or by_mac.get((iface.mac_address or "").lower())
        if not name or name not in by_name:
            field = "name" if iface.name else "mac_address"
            raise ResourceError(f"{where}.{field}",
                                f"no interface {iface.name or iface.mac_address!r} on the device")
        address = _host_address((body or {}).get("ip_address")) if iface.ip_address else None
        if operation == "delete":
            if address:
                commands.append(f"addr del {address} dev {name}")
            continue
        if address:
            commands.append(f"addr replace {address} dev {name}")
        commands.append(f"link set {name} up")
    if commands:
        flags = ["-force"] if operation == "delete" else []
        _checked(run(["ip", *flags, "-batch", "-"], stdin="\n".join(commands) + "\n"),
                 "configure interfaces")


def list_interfaces(run: Run) -> list[dict]:
    """Data interfaces with their addresses (loopback and management excluded)."""
    out = run(["ip", "-j", "addr", "show"])
    result = []
    for link in json.loads(out.stdout or "[]") if out.ok else []:
        if link.get("ifname") in ("lo", "mgmt0"):
            continue
        addrs = [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])
                 if a.get("scope") == "global"]
        result.append({"name": link["ifname"], "mac_address": link.get("address"),
                       "ip_addresses": addrs, "up": "UP" in link.get("flags", [])})
    return result


def _host_address(raw: Optional[str]) -> Optional[str]:
    """``198.18.1.1/24`` keeps its host bits (the schema's CIDR type would drop them)."""
    if not raw:
        return None
    return str(ipaddress.ip_interface(raw))


def _checked(out: Output, what: str) -> Output:
    if not out.ok:
        raise ConfigError(f"could not {what}: {out.reason()}")
    return out

