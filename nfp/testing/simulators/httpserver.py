"""The HTTPS side of the simulators: Starlette requests and responses served by
uvicorn in a thread.

Each simulator supplies ``handle(request) -> Response`` and its state. This
module adds TLS (a self-signed certificate made on start), fault injection
before the vendor logic runs, and an admin API under ``/_sim/`` (state, faults,
drift) for runs in another process (``nfp simulate``).

A simulator answers a request in a few hundred microseconds, so benchmarks
measure nfp rather than the simulator: the ASGI app is one function (no router
or middleware stack: every path goes to one handler anyway), uvicorn runs with
httptools and uvloop when they are installed, without access log or proxy-header
rewriting, and keeps connections alive.
"""
from __future__ import annotations

import asyncio
import json
import logging
import socket
import tempfile
import threading
import time
from typing import Any, Optional

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from .faults import Faults
from .tls import CertFiles, make_self_signed

LOG = logging.getLogger(__name__)

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})


def _installed(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


#: uvicorn's fastest choices when installed (what "auto" picks), else the pure-Python ones
HTTP_IMPL = "httptools" if _installed("httptools") else "h11"
LOOP_IMPL = "uvloop" if _installed("uvloop") else "asyncio"


class HttpSimulator:
    """Base of the HTTPS simulators. Use as a context manager or call start()/stop()."""

    vendor = "base"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, cert_dir: Optional[str] = None,
                 tls: bool = True):
        self.host, self._port = host, port
        self.tls = tls
        self.faults = Faults()
        self.lock = threading.RLock()
        self.requests_seen = 0
        self._cert_dir = cert_dir
        self._tmp: Optional[tempfile.TemporaryDirectory] = None
        self.cert: Optional[CertFiles] = None
        self._server: Optional[uvicorn.Server] = None
        self._thread: Optional[threading.Thread] = None
        self._socket: Optional[socket.socket] = None

    # -- vendor hooks ---------------------------------------------------------------------
    async def handle(self, request: Request) -> Response:
        raise NotImplementedError

    def auth_failure(self) -> Response:
        return JSONResponse({"error": "unauthorized"}, status_code=401)

    def server_error(self, status: int) -> Response:
        return JSONResponse({"error": "injected", "http_status": status}, status_code=status)

    def state(self) -> dict:
        """The rule tables, for asserts."""
        raise NotImplementedError

    def drift(self, spec: dict) -> Any:
        """Change state behind nfp's back: {"op": "add"|"remove", ...}."""
        raise NotImplementedError

    # -- plumbing --------------------------------------------------------------------------
    async def _dispatch(self, request: Request) -> Response:
        if request.scope["path"].startswith("/_sim/"):
            return await self._admin(request)
        with self.lock:
            self.requests_seen += 1
        fault = self.faults.take()
        if fault is not None:
            if fault.kind == "delay":
                await asyncio.sleep(fault.seconds)
            elif fault.kind == "status":
                return self.server_error(fault.status)
            elif fault.kind == "auth":
                return self.auth_failure()
        return await self.handle(request)

    async def _admin(self, request: Request) -> Response:
        what = request.scope["path"][len("/_sim/"):]
        try:
            if what == "state":
                with self.lock:
                    return JSONResponse(self.state())
            if what == "faults" and request.method == "POST":
                self.faults.arm(json.loads(await request.body()))
                return JSONResponse({"ok": True})
            if what == "drift" and request.method == "POST":
                with self.lock:
                    return JSONResponse({"ok": True, "result": self.drift(json.loads(await request.body()))})
        except (ValueError, KeyError, TypeError) as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
        return JSONResponse({"ok": False, "error": "unknown admin call"}, status_code=404)

    def app(self):
        """The ASGI app: every HTTP request goes to :meth:`_dispatch`."""
        async def asgi(scope, receive, send) -> None:
            if scope["type"] != "http":
                return
            if scope["method"] not in METHODS:
                response: Response = PlainTextResponse("Method Not Allowed", status_code=405,
                                                       headers={"Allow": ", ".join(sorted(METHODS))})
            else:
                try:
                    response = await self._dispatch(Request(scope, receive))
                except Exception:  # a simulator bug: answer like a server would, keep serving
                    LOG.exception("%s simulator failed on %s %s", self.vendor, scope["method"], scope["path"])
                    response = PlainTextResponse("Internal Server Error", status_code=500)
            await response(scope, receive, send)
        return asgi

    @property
    def port(self) -> int:
        return self._socket.getsockname()[1] if self._socket else self._port

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def start(self) -> "HttpSimulator":
        if self.tls:
            if self._cert_dir is None:
                self._tmp = tempfile.TemporaryDirectory(prefix=f"nfp-sim-{self.vendor}-")
            self.cert = make_self_signed(self._cert_dir or self._tmp.name, self.host, f"{self.vendor}-sim")
        self._socket = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # accepted sockets inherit it: no Nagle wait between a response's header and body writes
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._socket.bind((self.host, self._port))
        config = uvicorn.Config(self.app(), log_level="warning", access_log=False, lifespan="off",
                                http=HTTP_IMPL, loop=LOOP_IMPL, proxy_headers=False, server_header=False,
                                ssl_certfile=self.cert.cert_path if self.tls else None,
                                ssl_keyfile=self.cert.key_path if self.tls else None,
                                timeout_keep_alive=30, backlog=512,
                                timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name=f"sim-{self.vendor}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"{self.vendor} simulator did not start")
            time.sleep(0.01)
        LOG.info("%s simulator listening on %s", self.vendor, self.base_url)
        return self

    def stop(self) -> None:
        if self._server is not None:
            # a client's idle keep-alive TLS connection would hold a graceful exit open
            self._server.should_exit = True
            self._server.force_exit = True
            self._thread.join(timeout=10)
            self._server = None
        if self._socket is not None:
            self._socket.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def connection_facts(self) -> dict:
        """What a device row's ``extra`` needs to reach this simulator."""
        facts: dict[str, Any] = {"port": self.port}
        if self.tls:
            facts["ca_file"] = self.cert.cert_path
        else:
            facts["scheme"] = "http"
        return facts


def json_body(raw: bytes) -> Any:
    """Decode a JSON request body; ValueError when it is not JSON."""
    return json.loads(raw) if raw else None
