"""pfSense simulator: the REST API v2 of the pfSense-pkg-RESTAPI package (pfrest).

Faithful where nfp depends on it: ``X-API-Key`` authentication, the answer
envelope ``{code, status, response_id, message, data}``, object ids that are
array indexes (deleting object 0 renumbers the rest, so clients must resolve
by a stable field: the filter rule's ``tracker`` or the description), field
validation with 400 answers, 404 ``MODEL_OBJECT_NOT_FOUND``, and pending
changes that take effect on ``POST /api/v2/firewall/apply``.
"""
from __future__ import annotations

import copy
import functools
import ipaddress
import itertools
import time
from typing import Any, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .httpserver import HttpSimulator, json_body

PREFIX = "/api/v2"


class Invalid(ValueError):
    def __init__(self, response_id: str, message: str):
        super().__init__(message)
        self.response_id = response_id


def _choice(*options):
    def check(field, v):
        if v not in options:
            raise Invalid("FIELD_INVALID_CHOICE", f"Field `{field}` must be one of {list(options)}.")
        return v
    return check


@functools.lru_cache(maxsize=4096)
def _network(text: str):
    return ipaddress.ip_network(text, strict=False)


def _address(field, v):
    """any, an interface macro (wanip, lan ...), an IP or a CIDR."""
    if v in ("any", "wanip", "lanip", "wan", "lan", "(self)"):
        return v
    try:
        _network(str(v))
    except ValueError:
        raise Invalid("IP_ADDRESS_VALIDATOR_FAILED", f"Field `{field}` must be a valid IP, subnet or alias.") from None
    return v


def _ip(field, v):
    try:
        ipaddress.ip_address(str(v))
    except ValueError:
        raise Invalid("IP_ADDRESS_VALIDATOR_FAILED", f"Field `{field}` must be a valid IP address.") from None
    return v


def _port(field, v):
    if v is None or v == "":
        return None
    parts = str(v).split(":")
    if len(parts) > 2 or not all(p.isdigit() and 1 <= int(p) <= 65535 for p in parts):
        raise Invalid("PORT_VALIDATOR_FAILED", f"Field `{field}` must be a valid port or port range.")
    return str(v)


def _text(field, v):
    if not isinstance(v, str) or len(v) > 200:
        raise Invalid("STRING_FIELD_INVALID", f"Field `{field}` must be a string of at most 200 characters.")
    return v


def _bool(field, v):
    if not isinstance(v, bool):
        raise Invalid("BOOLEAN_FIELD_INVALID", f"Field `{field}` must be a boolean.")
    return v


def _int(field, v):
    if isinstance(v, bool) or not isinstance(v, int):
        raise Invalid("INTEGER_FIELD_INVALID", f"Field `{field}` must be an integer.")
    return v


def _iface_list(field, v):
    if not isinstance(v, list) or not v or not all(isinstance(i, str) and i for i in v):
        raise Invalid("FIELD_INVALID_CHOICE", f"Field `{field}` must be a list of interfaces.")
    return v


def _servers(field, v):
    if not isinstance(v, list):
        raise Invalid("LIST_FIELD_INVALID", f"Field `{field}` must be a list.")
    for server in v:
        _text(field + ".name", server.get("name"))
        _ip(field + ".address", server.get("address"))
        _port(field + ".port", server.get("port"))
    return v


#: model -> (field -> (validator, required, default))
Spec = dict[str, tuple[Callable, bool, Any]]
MODELS: dict[str, Spec] = {
    "firewall/rule": {
        "type": (_choice("pass", "block", "reject"), True, None),
        "interface": (_iface_list, True, None),
        "ipprotocol": (_choice("inet", "inet6", "inet46"), False, "inet"),
        "protocol": (_choice(None, "tcp", "udp", "tcp/udp", "icmp"), False, None),
        "source": (_address, True, None),
        "source_port": (_port, False, None),
        "destination": (_address, True, None),
        "destination_port": (_port, False, None),
        "descr": (_text, False, ""),
        "disabled": (_bool, False, False),
        "log": (_bool, False, False),
    },
    "firewall/nat/port_forward": {
        "interface": (_text, True, None),
        "ipprotocol": (_choice("inet", "inet6", "inet46"), False, "inet"),
        "protocol": (_choice("tcp", "udp", "tcp/udp"), True, None),
        "source": (_address, False, "any"),
        "source_port": (_port, False, None),
        "destination": (_address, True, None),
        "destination_port": (_port, True, None),
        "target": (_ip, True, None),
        "local_port": (_port, True, None),
        "descr": (_text, False, ""),
        "disabled": (_bool, False, False),
        "associated_rule_id": (_choice("", "pass", "new"), False, ""),
    },
    "firewall/nat/one_to_one/mapping": {
        "interface": (_text, True, None),
        "external": (_ip, True, None),
        "source": (_address, True, None),
        "destination": (_address, False, "any"),
        "descr": (_text, False, ""),
        "disabled": (_bool, False, False),
    },
    "firewall/nat/outbound/mapping": {
        "interface": (_text, True, None),
        "protocol": (_choice(None, "tcp", "udp", "tcp/udp", "icmp"), False, None),
        "source": (_address, True, None),
        "destination": (_address, False, "any"),
        "target": (lambda f, v: v if v in ("", None) else _ip(f, v), False, ""),
        "descr": (_text, False, ""),
        "disabled": (_bool, False, False),
    },
    "routing/gateway": {
        "name": (_text, True, None),
        "interface": (_text, True, None),
        "ipprotocol": (_choice("inet", "inet6"), False, "inet"),
        "gateway": (_ip, True, None),
        "descr": (_text, False, ""),
    },
    "routing/static_route": {
        "network": (_address, True, None),
        "gateway": (_text, True, None),
        "descr": (_text, False, ""),
        "disabled": (_bool, False, False),
    },
    "services/haproxy/backend": {
        "name": (_text, True, None),
        "balance": (_choice("roundrobin", "leastconn", "source"), False, "roundrobin"),
        "servers": (_servers, False, []),
        "check_type": (_choice("none", "Basic", "HTTP"), False, "Basic"),
        "checkinter": (_int, False, None),
        "monitor_uri": (_text, False, ""),
        "descr": (_text, False, ""),
    },
    "services/haproxy/frontend": {
        "name": (_text, True, None),
        "type": (_choice("http", "tcp"), False, "http"),
        "a_extaddr": (lambda f, v: v, True, None),
        "backend_serverpool": (_text, True, None),
        "descr": (_text, False, ""),
    },
}
UNIQUE_NAMES = {"routing/gateway", "services/haproxy/backend", "services/haproxy/frontend"}
#: list endpoints are the plural of the object endpoint
PLURALS = {"firewall/rules": "firewall/rule", "firewall/nat/port_forwards": "firewall/nat/port_forward",
           "firewall/nat/one_to_one/mappings": "firewall/nat/one_to_one/mapping",
           "firewall/nat/outbound/mappings": "firewall/nat/outbound/mapping",
           "routing/gateways": "routing/gateway", "routing/static_routes": "routing/static_route",
           "services/haproxy/backends": "services/haproxy/backend",
           "services/haproxy/frontends": "services/haproxy/frontend"}


def envelope(code: int, data: Any = None, response_id: str = "SUCCESS", message: str = "") -> JSONResponse:
    status = {200: "ok", 400: "bad request", 401: "unauthorized", 403: "forbidden", 404: "not found",
              405: "method not allowed", 409: "conflict", 415: "unsupported media type",
              500: "server error", 503: "service unavailable"}.get(code, "error")
    return JSONResponse({"code": code, "status": status, "response_id": response_id,
                         "message": message, "data": [] if data is None else data}, status_code=code)


class PfSenseSimulator(HttpSimulator):
    """pfSense with pfrest v2. ``api_key`` is the accepted ``X-API-Key``."""

    vendor = "pfsense"

    def __init__(self, api_key: str = "pfsense-sim-key", **kwargs):
        super().__init__(**kwargs)
        self.api_key = api_key
        self.tables: dict[str, list[dict]] = {name: [] for name in MODELS}
        self.pending_apply = False
        self.applied_count = 0
        self._tracker = itertools.count(int(time.time()))

    # -- vendor answers ----------------------------------------------------------------
    def auth_failure(self) -> Response:
        return envelope(401, response_id="AUTH_AUTHENTICATION_FAILED", message="Authentication failed.")

    def server_error(self, status: int) -> Response:
        return envelope(status, response_id="SERVER_ERROR", message="An unexpected error occurred.")

    async def handle(self, request: Request) -> Response:
        if request.headers.get("x-api-key") != self.api_key:
            return self.auth_failure()
        path = request.scope["path"]
        if not path.startswith(PREFIX + "/"):
            return envelope(404, response_id="ENDPOINT_NOT_FOUND", message="Endpoint not found.")
        name = path[len(PREFIX) + 1:].rstrip("/")
        with self.lock:
            if name == "firewall/apply":
                if request.method == "POST":
                    self.pending_apply = False
                    self.applied_count += 1
                return envelope(200, {"applied": not self.pending_apply, "pending_subsystems": []})
            if name in PLURALS and request.method == "GET":
                table = self.tables[PLURALS[name]]
                return envelope(200, [dict(obj, id=i) for i, obj in enumerate(table)])
            if name not in MODELS:
                return envelope(404, response_id="ENDPOINT_NOT_FOUND", message="Endpoint not found.")
            try:
                body = json_body(await request.body()) if request.method in ("POST", "PATCH", "PUT") else None
            except ValueError:
                return envelope(400, response_id="REQUEST_BODY_INVALID_JSON", message="Request body is not valid JSON.")
            query = request.query_params if request.method in ("GET", "DELETE") else None
            return self._object(request.method, name, query, body)

    def _object(self, method: str, name: str, query, body) -> Response:
        table = self.tables[name]
        try:
            if method == "POST":
                obj = self._validated(name, body or {}, partial=False)
                if name == "firewall/rule":
                    obj["tracker"] = next(self._tracker)
                table.append(obj)
                self.pending_apply = True
                return envelope(200, dict(obj, id=len(table) - 1))
            index = self._index(name, query.get("id") if method in ("GET", "DELETE") else (body or {}).get("id"))
            if method == "GET":
                return envelope(200, dict(table[index], id=index))
            if method == "DELETE":
                obj = table.pop(index)
                self.pending_apply = True
                return envelope(200, dict(obj, id=index))
            if method == "PATCH":
                changes = {k: v for k, v in (body or {}).items() if k != "id"}
                updated = dict(table[index])
                updated.update(self._validated(name, changes, partial=True))
                table[index] = updated
                self.pending_apply = True
                return envelope(200, dict(updated, id=index))
        except Invalid as exc:
            return envelope(400 if exc.response_id != "MODEL_OBJECT_NOT_FOUND" else 404,
                            response_id=exc.response_id, message=str(exc))
        return envelope(405, response_id="METHOD_NOT_ALLOWED", message=f"{method} is not allowed.")

    def _index(self, name: str, raw: Any) -> int:
        try:
            index = int(raw)
        except (TypeError, ValueError):
            raise Invalid("FIELD_REQUIRED", "Field `id` is required.") from None
        if not 0 <= index < len(self.tables[name]):
            raise Invalid("MODEL_OBJECT_NOT_FOUND", f"Object with ID `{index}` does not exist.")
        return index

    def _validated(self, name: str, body: dict, partial: bool) -> dict:
        spec = MODELS[name]
        if not isinstance(body, dict):
            raise Invalid("REQUEST_BODY_INVALID", "Request body must be an object.")
        unknown = set(body) - set(spec) - {"id", "tracker", "apply"}
        if unknown:
            raise Invalid("FIELD_UNKNOWN", f"Unknown field(s): {sorted(unknown)}.")
        obj = {}
        for field, (check, required, default) in spec.items():
            if field in body:
                obj[field] = check(field, body[field])
            elif not partial:
                if required:
                    raise Invalid("FIELD_REQUIRED", f"Field `{field}` is required.")
                obj[field] = copy.deepcopy(default) if isinstance(default, (list, dict)) else default
        if name in UNIQUE_NAMES and not partial and any(o["name"] == obj["name"] for o in self.tables[name]):
            raise Invalid("FIELD_MUST_BE_UNIQUE", f"Field `name` must be unique; `{obj['name']}` is in use.")
        if name == "firewall/rule" and not partial:
            ported = obj.get("source_port") or obj.get("destination_port")
            if ported and obj.get("protocol") not in ("tcp", "udp", "tcp/udp"):
                raise Invalid("FIREWALL_RULE_PORTS_WITHOUT_TCP_UDP",
                              "Ports can only be set when `protocol` is tcp, udp or tcp/udp.")
        return obj

    # -- test helpers --------------------------------------------------------------------
    def table(self, name: str) -> list[dict]:
        """A copy of one model's objects, ids included."""
        with self.lock:
            return [dict(obj, id=i) for i, obj in enumerate(self.tables[name])]

    def state(self) -> dict:
        with self.lock:
            return {"tables": {n: [dict(o, id=i) for i, o in enumerate(t)] for n, t in self.tables.items()},
                    "pending_apply": self.pending_apply, "applied": self.applied_count}

    def drift(self, spec: dict) -> Any:
        """``{"op": "add", "model": "firewall/rule", "object": {...}}`` or
        ``{"op": "remove", "model": ..., "id": N}``: manual changes on the box."""
        with self.lock:
            table = self.tables[spec["model"]]
            if spec["op"] == "add":
                obj = self._validated(spec["model"], spec["object"], partial=False)
                if spec["model"] == "firewall/rule":
                    obj["tracker"] = next(self._tracker)
                table.append(obj)
                return len(table) - 1
            if spec["op"] == "remove":
                return table.pop(int(spec["id"]))
        raise ValueError(f"unknown drift op {spec.get('op')!r}")
