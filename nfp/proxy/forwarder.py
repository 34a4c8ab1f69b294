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
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nfp.configurator.models import METHODS
from nfp.proxy.http import PREFIX, ConfiguratorHttp, Refused, Unavailable

LOG = logging.getLogger(__name__)
FORWARDED_POSTS = frozenset(METHODS) | {"ack_notifications"}


def _json(status: int, body) -> Response:
    return Response(json.dumps(body), status_code=status, media_type="application/json")


def create_app(upstream: ConfiguratorHttp) -> Starlette:
    """The proxy end's ASGI app, forwarding to ``upstream`` (module docstring)."""

    def forward(verb: str, path: str, body, headers: dict) -> Response:
        try:
            return _json(200, upstream.request(verb, path, body, headers))
        except Refused as exc:
            return _json(exc.status, {"error": exc.error, "field": exc.field})
        except Unavailable as exc:
            LOG.warning("proxy: %s %s not forwarded (%s); the agent retries", verb, path, exc)
            return _json(502, {"error": str(exc), "field": ""})

    async def post(request: Request) -> Response:
        method = request.path_params["method"]
        if method not in FORWARDED_POSTS:
            return _json(404, {"error": f"{method}: not a configurator method", "field": "path"})
        body = await request.body()
        rid = request.headers.get("x-request-id")
        return await run_in_threadpool(forward, "POST", f"{PREFIX}/{method}", body,
                                       {"X-Request-Id": rid} if rid else {})

    def notifications(request: Request) -> Response:  # sync: Starlette runs it in a thread
        keep = "?keep=true" if request.query_params.get("keep") == "true" else ""
        return forward("GET", f"{PREFIX}/get_notifications{keep}", None, {})

    return Starlette(routes=[Route(f"{PREFIX}/get_notifications", notifications, methods=["GET"]),
                             Route(f"{PREFIX}/{{method}}", post, methods=["POST"])])


def prepare_socket(path: str) -> None:
    """Make the socket's directory (0700) and remove a stale socket of a dead proxy."""
    sock = Path(path)
    sock.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(sock.parent, 0o700)
    if sock.is_socket():
        sock.unlink()
