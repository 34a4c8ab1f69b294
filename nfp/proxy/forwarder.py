"""The proxy end: serves the agent's unix socket and forwards each request to the
configurator over HTTPS, adding what the agent side never holds: nfp's client
certificate (mutual TLS) and a fresh short-lived token per request.

It runs inside a namespace that reaches the service management network, so the
agent (in the management domain) needs no route to the configurator, and the
configurator sees only this namespace's address (its source allowlist). Only
seed 001's paths and the notification acknowledgement are forwarded; the
``X-Request-Id`` header passes through, so a retried request is applied once.
The socket's directory is 0700 and the socket 0600: whoever can connect can
make authenticated configurator requests.

Every forwarded POST and every refusal (the configurator's 401 or 403, to a GET
as well) is audited (:mod:`nfp.audit`): the proxy's certificate subject and token
subject (the identity it forwards as), the method, the NF and device ids of the
body's context, the agent's unix credentials (``uid``/``pid``) and the result. Never
the body itself: it may hold credentials.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Callable, Optional

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nfp import audit
from nfp.configurator.models import METHODS
from nfp.proxy.http import PREFIX, ConfiguratorHttp, Refused, Unavailable

LOG = logging.getLogger(__name__)
FORWARDED_POSTS = frozenset(METHODS) | {"ack_notifications"}


def _json(status: int, body) -> Response:
    return Response(json.dumps(body), status_code=status, media_type="application/json")


def create_app(upstream: ConfiguratorHttp, record: Optional[Callable[..., None]] = None,
               identity: Optional[dict] = None) -> Starlette:
    """The proxy end's ASGI app, forwarding to ``upstream`` (module docstring).

    Parameters:
        record: an :class:`nfp.audit.Sink` (``record(event, **fields)``); None audits nothing.
        identity: ``cert_subject`` and ``token_subject`` the proxy forwards as.
    """
    record = record or (lambda event, **fields: None)
    identity = dict(identity or {})

    def forward(verb: str, path: str, body, headers: dict, source: str = "") -> Response:
        method = path.split("?", 1)[0].rsplit("/", 1)[-1]
        who = {**identity, "source": source, "method": method, **_ids(body)}
        rid = headers.get("X-Request-Id", "")
        try:
            answer = upstream.request(verb, path, body, headers)
        except Refused as exc:
            event = {401: audit.AUTH_FAILURE, 403: audit.ACCESS_DENIED}.get(exc.status, audit.PROXY_REQUEST)
            if event != audit.PROXY_REQUEST or verb == "POST":
                record(event, result=_RESULTS.get(exc.status, "rejected"),
                       detail=_detail(rid, f"the configurator answered {exc.status}: {exc.error}"), **who)
            return _json(exc.status, {"error": exc.error, "field": exc.field})
        except Unavailable as exc:
            LOG.warning("proxy: %s %s not forwarded (%s); the agent retries", verb, path, exc)
            if verb == "POST":
                record(audit.PROXY_REQUEST, result="unavailable", detail=_detail(rid, str(exc)), **who)
            return _json(502, {"error": str(exc), "field": ""})
        if verb == "POST":
            status = answer.get("status", "") if isinstance(answer, dict) else ""
            record(audit.PROXY_REQUEST, result=status or "success",
                   detail=_detail(rid, "forwarded to the configurator"), **who)
        return _json(200, answer)

    async def post(request: Request) -> Response:
        method = request.path_params["method"]
        if method not in FORWARDED_POSTS:
            return _json(404, {"error": f"{method}: not a configurator method", "field": "path"})
        body = await request.body()
        rid = request.headers.get("x-request-id")
        return await run_in_threadpool(forward, "POST", f"{PREFIX}/{method}", body,
                                       {"X-Request-Id": rid} if rid else {}, _source(request))

    def notifications(request: Request) -> Response:  # sync: Starlette runs it in a thread
        keep = "?keep=true" if request.query_params.get("keep") == "true" else ""
        return forward("GET", f"{PREFIX}/get_notifications{keep}", None, {}, _source(request))

    return Starlette(routes=[Route(f"{PREFIX}/get_notifications", notifications, methods=["GET"]),
                             Route(f"{PREFIX}/{{method}}", post, methods=["POST"])])


#: the configurator's refusal as an audit result
_RESULTS = {401: "unauthorized", 403: "forbidden"}


def _source(request: Request) -> str:
    client = request.scope.get("client")
    return str(client[0]) if client else "unix"


def _detail(request_id: str, text: str) -> str:
    return f"request {request_id}: {text}" if request_id else text


def _ids(body) -> dict:
    """``nf_id`` and ``device_id`` of a seed 001 body's ``info.context`` (only those:
    the rest of the body may hold credentials)."""
    try:
        context = json.loads(body)["info"]["context"] if body else None
    except (ValueError, TypeError, KeyError):
        return {}
    if not isinstance(context, dict):
        return {}
    return {"nf_id": str(context.get("nf_id") or "")[:64], "device_id": str(context.get("nfd_id") or "")[:64]}


def peer_protocol():
    """uvicorn's h11 protocol, naming a unix socket's client by its kernel-checked
    credentials (``SO_PEERCRED``: ``uid 0 pid 1234``) where uvicorn names none, so the
    audit log says which local process sent a request."""
    import socket
    import struct
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class PeerCredProtocol(H11Protocol):
        def connection_made(self, transport):
            super().connection_made(transport)
            sock = transport.get_extra_info("socket")
            if self.client is None and sock is not None and sock.family == socket.AF_UNIX:
                try:
                    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
                    pid, uid, _ = struct.unpack("3i", raw)
                    self.client = (f"unix uid {uid} pid {pid}", 0)
                except OSError:
                    pass

    return PeerCredProtocol


def prepare_socket(path: str) -> None:
    """Make the socket's directory (0700) and remove a stale socket of a dead proxy."""
    sock = Path(path)
    sock.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(sock.parent, 0o700)
    if sock.is_socket():
        sock.unlink()
