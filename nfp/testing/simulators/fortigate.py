"""FortiGate simulator: the FortiOS REST API (``/api/v2/cmdb``), FortiOS 7.x shapes.

API-key auth as ``Authorization: Bearer <key>`` (or the ``access_token``
query parameter), VDOMs, the CMDB answer envelope (``http_method``,
``results``, ``mkey``, ``status``, ``http_status``, ``revision``), and FortiOS
error codes: -3 entry not found (404), -5 duplicate entry (500), -23 entry in
use (500), -651 invalid value (500). Policies reference address, service, VIP
and IP-pool objects by name, and those references are checked.
"""
from __future__ import annotations

import ipaddress
import itertools
import uuid
from typing import Any, Callable, Optional

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .httpserver import HttpSimulator, json_body

PREFIX = "/api/v2/cmdb/"
SERIAL, VERSION, BUILD = "FGVM02TM24000001", "v7.2.8", 1639


class Refused(ValueError):
    def __init__(self, http: int, code: int, message: str):
        super().__init__(message)
        self.http, self.code = http, code


def _invalid(message: str) -> Refused:
    return Refused(500, -651, message)


def _names(value: Any, field: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, dict) and isinstance(v.get("name"), str) for v in value):
        raise _invalid(f"{field} must be a list of {{name: ...}}")
    return [v["name"] for v in value]


def _subnet(value: Any) -> None:
    try:
        ip, mask = str(value).split()
        ipaddress.ip_network(f"{ip}/{mask}", strict=False)
    except ValueError:
        raise _invalid("subnet must be 'address netmask'") from None


def _portranges(value: Any) -> None:
    for spec in str(value or "").split():
        for part in spec.split(":"):
            bounds = part.split("-")
            if len(bounds) > 2 or not all(b.isdigit() and 0 <= int(b) <= 65535 for b in bounds):
                raise _invalid(f"invalid port range {spec!r}")


def _ip(value: Any, field: str) -> None:
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        raise _invalid(f"{field} must be an IP address") from None


class Table:
    """One CMDB table: its key field, whether the key is allocated, and a validator."""

    def __init__(self, mkey: str, auto: bool, check: Callable[["FortiGateSimulator", dict], None]):
        self.mkey, self.auto, self.check = mkey, auto, check
        self.rows: dict[str, dict] = {}
        self.counter = itertools.count(1)


def _check_address(sim, obj):
    if obj.get("type", "ipmask") == "ipmask":
        _subnet(obj.get("subnet", "0.0.0.0 0.0.0.0"))


def _check_service(sim, obj):
    if obj.get("protocol", "TCP/UDP/SCTP") not in ("TCP/UDP/SCTP", "ICMP", "IP"):
        raise _invalid("protocol must be TCP/UDP/SCTP, ICMP or IP")
    _portranges(obj.get("tcp-portrange"))
    _portranges(obj.get("udp-portrange"))


def _check_vip(sim, obj):
    _ip(obj.get("extip"), "extip")
    for mapped in obj.get("mappedip", []):
        _ip(mapped.get("range"), "mappedip")
    if obj.get("portforward") == "enable" and not (obj.get("extport") and obj.get("mappedport")):
        raise _invalid("portforward needs extport and mappedport")
    if obj.get("type") == "server-load-balance":
        if obj.get("ldb-method") not in ("static", "round-robin", "weighted", "least-session", "first-alive"):
            raise _invalid("invalid ldb-method")
        for server in obj.get("realservers", []):
            _ip(server.get("ip"), "realservers.ip")
        for monitor in obj.get("monitor", []):
            sim.require("firewall/ldb-monitor", monitor.get("name"))


def _check_policy(sim, obj):
    if obj.get("action") not in ("accept", "deny"):
        raise _invalid("action must be accept or deny")
    if obj.get("status", "enable") not in ("enable", "disable"):
        raise _invalid("status must be enable or disable")
    for field in ("srcintf", "dstintf"):
        for name in _names(obj.get(field), field):
            if name not in sim.interfaces and name != "any":
                raise Refused(500, -3, f"interface {name} not found")
    for field in ("srcaddr", "dstaddr"):
        for name in _names(obj.get(field), field):
            if name != "all" and name not in sim.tables["firewall/address"].rows \
                    and name not in sim.tables["firewall/vip"].rows:
                raise Refused(500, -3, f"{field} {name} not found")
    for name in _names(obj.get("service"), "service"):
        if name not in ("ALL", "ALL_ICMP", "HTTP", "HTTPS", "SSH") and name not in sim.tables["firewall.service/custom"].rows:
            raise Refused(500, -3, f"service {name} not found")
    for pool in obj.get("poolname", []):
        sim.require("firewall/ippool", pool.get("name"))


def _check_ippool(sim, obj):
    _ip(obj.get("startip"), "startip")
    _ip(obj.get("endip"), "endip")


def _check_route(sim, obj):
    _subnet(obj.get("dst"))
    _ip(obj.get("gateway"), "gateway")


def _check_monitor(sim, obj):
    if obj.get("type") not in ("ping", "tcp", "http", "passive-sip", "https", "dns"):
        raise _invalid("invalid monitor type")


#: tables that reference others by name: (table, field) pairs checked on delete
REFERENCES = {
    "firewall/address": [("firewall/policy", "srcaddr"), ("firewall/policy", "dstaddr")],
    "firewall/vip": [("firewall/policy", "dstaddr")],
    "firewall.service/custom": [("firewall/policy", "service")],
    "firewall/ippool": [("firewall/policy", "poolname")],
    "firewall/ldb-monitor": [("firewall/vip", "monitor")],
}


class FortiGateSimulator(HttpSimulator):
    """A FortiGate VM. ``api_key`` is the accepted REST API key."""

    vendor = "fortigate"

    def __init__(self, api_key: str = "fortigate-sim-key", vdoms=("root",),
                 interfaces=("port1", "port2", "port3"), **kwargs):
        super().__init__(**kwargs)
        self.api_key = api_key
        self.vdoms = set(vdoms)
        self.interfaces = set(interfaces)
        self.revision = uuid.uuid4().hex
        self.tables = {
            "firewall/policy": Table("policyid", True, _check_policy),
            "firewall/address": Table("name", False, _check_address),
            "firewall.service/custom": Table("name", False, _check_service),
            "firewall/vip": Table("name", False, _check_vip),
            "firewall/ippool": Table("name", False, _check_ippool),
            "firewall/ldb-monitor": Table("name", False, _check_monitor),
            "router/static": Table("seq-num", True, _check_route),
        }

    def require(self, table: str, name: Optional[str]) -> None:
        if name not in self.tables[table].rows:
            raise Refused(500, -3, f"{table} {name} not found")

    # -- answers -------------------------------------------------------------------------
    def _reply(self, method: str, http: int, vdom: str, path: str, name: str, **extra) -> JSONResponse:
        body = {"http_method": method, "vdom": vdom, "path": path, "name": name,
                "status": "success" if http == 200 else "error", "http_status": http,
                "serial": SERIAL, "version": VERSION, "build": BUILD}
        body.update(extra)
        return JSONResponse(body, status_code=http)

    def auth_failure(self) -> Response:
        return JSONResponse({"status": "error", "http_status": 401, "serial": SERIAL,
                             "version": VERSION, "build": BUILD}, status_code=401)

    def server_error(self, status: int) -> Response:
        return JSONResponse({"status": "error", "http_status": status, "error": -1,
                             "serial": SERIAL, "version": VERSION, "build": BUILD}, status_code=status)

    async def handle(self, request: Request) -> Response:
        token = request.headers.get("authorization", "")
        if token != f"Bearer {self.api_key}" and request.query_params.get("access_token") != self.api_key:
            return self.auth_failure()
        path = request.scope["path"]
        if not path.startswith(PREFIX):
            return JSONResponse({"status": "error", "http_status": 404}, status_code=404)
        parts = path[len(PREFIX):].strip("/").split("/")
        table_name, mkey = "/".join(parts[:2]), "/".join(parts[2:]) or None
        vdom = request.query_params.get("vdom", "root")
        method = request.method
        base, leaf = (parts + [""])[:2]
        if vdom not in self.vdoms:
            return self._reply(method, 404, vdom, base, leaf, error=-3)
        table = self.tables.get(table_name)
        if table is None:
            return self._reply(method, 404, vdom, base, leaf, error=-3)
        try:
            body = json_body(await request.body()) if method in ("POST", "PUT") else None
        except ValueError:
            return self._reply(method, 400, vdom, base, leaf, error=-1)
        with self.lock:
            try:
                return self._apply(table_name, table, method, mkey, body, vdom, base, leaf)
            except Refused as exc:
                return self._reply(method, exc.http, vdom, base, leaf, error=exc.code, cli_error=str(exc))

    def _apply(self, table_name, table: Table, method, mkey, body, vdom, base, leaf) -> Response:
        if method == "GET":
            if mkey is None:
                return self._reply("GET", 200, vdom, base, leaf, results=list(table.rows.values()),
                                   matched_count=len(table.rows))
            if mkey not in table.rows:
                raise Refused(404, -3, "entry not found")
            return self._reply("GET", 200, vdom, base, leaf, results=[table.rows[mkey]])
        if method == "POST":
            if not isinstance(body, dict):
                raise _invalid("body must be an object")
            obj = dict(body)
            if table.auto:
                obj[table.mkey] = next(table.counter)
            elif not obj.get(table.mkey):
                raise _invalid(f"{table.mkey} is required")
            key = str(obj[table.mkey])
            if key in table.rows:
                raise Refused(500, -5, "a duplicate entry already exists")
            table.check(self, obj)
            table.rows[key] = obj
            return self._changed("POST", vdom, base, leaf, obj[table.mkey])
        if mkey is None or mkey not in table.rows:
            raise Refused(404, -3, "entry not found")
        if method == "PUT":
            obj = dict(table.rows[mkey])
            obj.update({k: v for k, v in (body or {}).items() if k != table.mkey})
            table.check(self, obj)
            table.rows[mkey] = obj
            return self._changed("PUT", vdom, base, leaf, obj[table.mkey])
        if method == "DELETE":
            for other, field in REFERENCES.get(table_name, []):
                for row in self.tables[other].rows.values():
                    if any(ref.get("name") == mkey for ref in row.get(field, [])):
                        raise Refused(500, -23, f"entry is used by {other} {row[self.tables[other].mkey]}")
            del table.rows[mkey]
            return self._changed("DELETE", vdom, base, leaf, mkey)
        raise Refused(405, -1, "method not allowed")

    def _changed(self, method, vdom, base, leaf, mkey) -> Response:
        old, self.revision = self.revision, uuid.uuid4().hex
        return self._reply(method, 200, vdom, base, leaf, mkey=mkey,
                           revision=self.revision, revision_changed=True, old_revision=old)

    # -- test helpers ------------------------------------------------------------------------
    def table(self, name: str) -> list[dict]:
        with self.lock:
            return [dict(row) for row in self.tables[name].rows.values()]

    def state(self) -> dict:
        with self.lock:
            return {"tables": {n: list(t.rows.values()) for n, t in self.tables.items()}}

    def drift(self, spec: dict) -> Any:
        """``{"op": "add", "table": "firewall/policy", "object": {...}}`` or
        ``{"op": "remove", "table": ..., "mkey": ...}``."""
        table = self.tables[spec["table"]]
        with self.lock:
            if spec["op"] == "add":
                obj = dict(spec["object"])
                if table.auto:
                    obj[table.mkey] = next(table.counter)
                table.rows[str(obj[table.mkey])] = obj
                return obj[table.mkey]
            if spec["op"] == "remove":
                return table.rows.pop(str(spec["mkey"]))
        raise ValueError(f"unknown drift op {spec.get('op')!r}")
