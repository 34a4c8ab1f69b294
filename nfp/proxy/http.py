"""The configurator REST client: seed 001's POSTs, ``get_notifications?keep=true`` and
``ack_notifications``, over HTTPS (mutual TLS plus a fresh token per request) or
over a unix domain socket (the agent to the proxy end, which adds both).

Errors come in two kinds, because the callers treat them differently:
:class:`Unavailable` (no connection, a 5xx, a timeout: the configurator may or
may not have the request, so send it again with the same request id, which it
applies once) and :class:`Refused` (a 4xx: sending it again gives the same answer;
the message names the field the configurator named).
"""
from __future__ import annotations

import json
import logging
import socket
from typing import Callable, Optional
from urllib.parse import urlsplit

import urllib3
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool

LOG = logging.getLogger(__name__)
PREFIX = "/v1/nfp"


class Unavailable(Exception):
    """The configurator did not answer (or answered 5xx); retry with the same request id."""


class Refused(Exception):
    """The configurator refused the request (4xx); ``field`` as it named it."""

    def __init__(self, status: int, error: str, field: str = ""):
        super().__init__(f"configurator refused the request ({status}): {error}")
        self.status, self.error, self.field = status, error, field


class _UnixConnection(HTTPConnection):
    """urllib3's HTTP connection over a unix domain socket (``socket_path``)."""

    socket_path = ""

    def _new_conn(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout if isinstance(self.timeout, (int, float)) else None)
        try:
            sock.connect(self.socket_path)
        except OSError as exc:
            sock.close()
            raise urllib3.exceptions.NewConnectionError(self, f"unix socket {self.socket_path}: {exc}") from exc
        return sock


def unix_pool(path: str, timeout: float, maxsize: int = 4) -> HTTPConnectionPool:
    """A urllib3 pool whose connections go to the unix socket ``path``."""
    pool = HTTPConnectionPool("localhost", timeout=urllib3.Timeout(total=timeout), maxsize=maxsize,
                              block=False, retries=False)
    pool.ConnectionCls = type("UnixConnection", (_UnixConnection,), {"socket_path": path})
    return pool


def https_pool(url: str, ssl_context, timeout: float, maxsize: int = 4):
    """A urllib3 pool to ``url`` (``https://host:port``) with ``ssl_context`` (mutual TLS)."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"{url!r}: expected https://host:port (the configurator only speaks TLS)")
    return urllib3.HTTPSConnectionPool(parts.hostname, parts.port or 443, ssl_context=ssl_context,
                                       timeout=urllib3.Timeout(total=timeout), maxsize=maxsize,
                                       block=False, retries=False)


class ConfiguratorHttp:
    """One configurator (or proxy end) reached through ``pool``.

    Parameters:
        pool: a urllib3 connection pool (:func:`https_pool` or :func:`unix_pool`); owned.
        token: ``() -> str`` a fresh bearer token per request, or None (the proxy end adds it).
        reloader: a started :class:`nfp.configurator.security.TlsReloader` of the pool's
            client certificate; owned (stopped by :meth:`close`).
    """

    def __init__(self, pool, token: Optional[Callable[[], str]] = None, reloader=None):
        self.pool, self.token, self.reloader = pool, token, reloader

    def post(self, method: str, body: dict, request_id: str) -> dict:
        """POST ``/v1/nfp/<method>``; the configurator's ``{request_id, status}``."""
        return self.request("POST", f"{PREFIX}/{method}", json.dumps(body).encode(),
                            {"X-Request-Id": request_id})

    def notifications(self) -> list[dict]:
        """Waiting notifications, kept until :meth:`ack` (each with its ``id``)."""
        return self.request("GET", f"{PREFIX}/get_notifications?keep=true")

    def ack(self, ids: list[int]) -> int:
        """Delete delivered notifications; how many were still waiting."""
        return self.request("POST", f"{PREFIX}/ack_notifications",
                            json.dumps({"ids": ids}).encode())["acknowledged"]

    def request(self, verb: str, path: str, body: Optional[bytes] = None,
                headers: Optional[dict] = None):
        """The decoded JSON answer; Unavailable or Refused (module docstring)."""
        send = {"Accept": "application/json", **(headers or {})}
        if body is not None:
            send["Content-Type"] = "application/json"
        if self.token is not None:
            send["Authorization"] = f"Bearer {self.token()}"
        try:
            response = self.pool.urlopen(verb, path, body=body, headers=send, retries=False,
                                         redirect=False)
        except urllib3.exceptions.HTTPError as exc:
            raise Unavailable(f"configurator unreachable: {exc.__class__.__name__}") from None
        return decode(response.status, response.data)

    def close(self) -> None:
        if self.reloader is not None:
            self.reloader.stop()
        self.pool.close()


def decode(status: int, data: bytes):
    """The JSON body of a 2xx; Unavailable for 5xx, Refused (with the field) for 4xx."""
    try:
        answer = json.loads(data or b"null")
    except ValueError:
        answer = None
    if 200 <= status < 300:
        return answer
    error = answer.get("error", "") if isinstance(answer, dict) else ""
    if status >= 500:
        raise Unavailable(f"configurator answered {status}: {error or 'no detail'}")
    raise Refused(status, error or f"HTTP {status}",
                  answer.get("field", "") if isinstance(answer, dict) else "")


def configurator_https(conf, url: str, cert_name: str, timeout: float) -> ConfiguratorHttp:
    """The configurator at ``url`` as ``cert_name``: nfp's CA checks the server, the
    certificate ``cert_name`` (``nfp pki issue``) identifies this client, and every
    request carries a fresh token (subject ``cert_name``, unique ``jti``). The
    certificate and the CA are reloaded into the live context when their files change
    (``nfp pki rotate``), every ``configurator_service.tls.reload_interval`` s, so
    new connections present the renewed certificate before the old one expires."""
    from nfp.configurator.security import TlsReloader, client_ssl_context, jwt_key, mint_token
    from nfp.pki import Pki

    pki = Pki.from_conf(conf)
    cert, key = pki.cert_path(cert_name), pki.key_path(cert_name)
    try:
        ctx = client_ssl_context(pki.ca_cert_path, cert, key)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot load the TLS client certificate {cert} ({exc}); run "
                         f"`nfp pki issue {cert_name}`") from None
    secret, j = jwt_key(conf), conf.configurator_service.jwt
    ttl = min(60, j.max_ttl)
    # the client has no CRL: "crl" is the CA file, reloaded as a trust store
    reloader = TlsReloader(ctx, {"cert": cert, "key": key, "crl": pki.ca_cert_path},
                           conf.configurator_service.tls.reload_interval)
    reloader.start()
    return ConfiguratorHttp(https_pool(url, ctx, timeout),
                            lambda: mint_token(secret, cert_name, j.audience, j.issuer, ttl=ttl), reloader)


def socket_path(conf) -> str:
    """``proxy.socket``, else ``<state_dir>/proxy/proxy.sock``."""
    return conf.proxy.socket or str(conf.state_path / "proxy" / "proxy.sock")
