"""HTTPS transport: a pool of kept-alive connections per device.

TLS certificates are verified by default. A self-signed device is trusted
explicitly, by a CA file (``ca_file``) or by pinning its certificate's SHA-256
fingerprint (``tls_fingerprint``); ``verify: false`` must be configured on
purpose and is logged. Failed connection attempts are retried with backoff for
every method (nothing was sent); failed reads, and answers 429/502/503/504,
only for idempotent methods (``Retry-After`` honoured). Every attempt waits for
the device's rate limit. Credentials are added per call and never stored on the
pool, and no redirect is followed.

Per request this costs little: connections are kept alive and reused, the TLS
context (with its CA file) is built once per device, names are resolved once
per connection, and a request's head and body leave in one write (http.client
joins them for a bytes body). The pool is :mod:`.connpool`.
"""
from __future__ import annotations

import base64
import http.client
import logging
import socket
import ssl
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Optional

from nfp.secrets import redact

from .connpool import ConnectionPool, PlainConnection, TlsConnection, fingerprint_bytes
from .errors import TransportError
from .ratelimit import TokenBucket, backoff_delays
from .render import HttpRequest

LOG = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 502, 503, 504})
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
#: sent unless the dictionary sets them
DEFAULT_HEADERS = {"User-Agent": "nfp-dictionary-driver", "Accept": "*/*"}
_FORM = "application/x-www-form-urlencoded"
#: the longest Retry-After nfp waits
MAX_RETRY_AFTER = 30.0


@dataclass(frozen=True)
class HttpEndpoint:
    """Where and how to reach one device over HTTP(S)."""

    host: str
    port: int
    scheme: str = "https"
    verify: bool = True
    ca_file: Optional[str] = None
    #: SHA-256 fingerprint of the device certificate (hex, colons allowed)
    fingerprint: Optional[str] = None
    timeout: float = 10.0
    retries: int = 2
    backoff: float = 0.2
    rate_limit: Optional[float] = None
    pool_size: int = 8

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


@dataclass(frozen=True)
class AuthMaterial:
    """Credentials for one call. ``repr`` never shows them."""

    headers: dict = field(default_factory=dict)
    basic: Optional[tuple] = None

    def __repr__(self) -> str:
        return f"AuthMaterial(headers={sorted(self.headers)}, basic={'***' if self.basic else None})"


@dataclass
class HttpResponse:
    """A device's answer."""

    status: int
    content: bytes
    headers: dict

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


def _ca_bundle() -> Optional[str]:
    """The CA bundle ``requests`` trusts by default (certifi), if installed."""
    try:
        import certifi
    except ImportError:  # pragma: no cover - certifi comes with requests
        return None
    return certifi.where()


def tls_context(endpoint: HttpEndpoint, pinned: bool) -> ssl.SSLContext:
    """The device's TLS context, built once. It verifies the chain and the host
    name, unless a pinned fingerprint replaces both (checked per connection by
    :class:`.connpool.TlsConnection`) or ``verify`` is off by configuration."""
    # PROTOCOL_TLS_CLIENT: chain and host name checked, no CA trusted until one is loaded
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if pinned or not endpoint.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if endpoint.ca_file:  # the device's CA only, as requests' verify=<file> did
        context.load_verify_locations(cafile=endpoint.ca_file)
    else:
        bundle = _ca_bundle()
        if bundle:
            context.load_verify_locations(cafile=bundle)
        else:  # pragma: no cover
            context.load_default_certs()
    return context


class _Retry(Exception):
    """One attempt failed in a way that may be retried. When no retry is left the
    caller raises ``failure``, or returns ``response`` (a retryable answer such
    as a 503 is still the device's answer, for the response mapping to report)."""

    def __init__(self, failure: TransportError, delay: Optional[float] = None,
                 response: Optional["HttpResponse"] = None):
        super().__init__(str(failure))
        self.failure, self.delay, self.response = failure, delay, response


class HttpTransport:
    """Sends rendered requests to one device over a pool of kept-alive connections."""

    def __init__(self, endpoint: HttpEndpoint, device_id: str = ""):
        self.endpoint = endpoint
        self.device_id = device_id
        self._bucket = TokenBucket(endpoint.rate_limit) if endpoint.rate_limit else None
        connect_timeout = min(endpoint.timeout, 10.0)
        if endpoint.scheme == "https":
            pin = fingerprint_bytes(endpoint.fingerprint)
            context = tls_context(endpoint, pin is not None)
            if not endpoint.verify and pin is None:
                LOG.warning("device %s: TLS certificate verification is disabled by configuration "
                            "(verify: false); set ca_file or tls_fingerprint instead", device_id)

            def factory() -> http.client.HTTPConnection:
                return TlsConnection(endpoint.host, endpoint.port, connect_timeout, endpoint.timeout,
                                     context, pin)
        else:
            def factory() -> http.client.HTTPConnection:
                return PlainConnection(endpoint.host, endpoint.port, connect_timeout, endpoint.timeout)
        self._pool = ConnectionPool(factory, endpoint.pool_size)

    def send(self, request: HttpRequest, auth: AuthMaterial) -> HttpResponse:
        """Send ``request``; raise TransportError if the device cannot be reached."""
        headers = dict(DEFAULT_HEADERS)
        headers.update(request.headers)
        url = request.path
        if request.params:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(request.params)
        body = request.body
        if request.data:
            body = urllib.parse.urlencode(request.data).encode()
            if not any(k.lower() == "content-type" for k in headers):
                headers["Content-Type"] = _FORM
        if auth.basic is not None:
            token = base64.b64encode(f"{auth.basic[0]}:{auth.basic[1]}".encode("latin-1")).decode()
            headers["Authorization"] = "Basic " + token
        headers.update(auth.headers)
        timeout = request.timeout or self.endpoint.timeout
        delays = backoff_delays(self.endpoint.retries, self.endpoint.backoff)
        while True:
            try:
                return self._attempt(request.method, url, body, headers, timeout)
            except _Retry as retry:
                delay = next(delays, None)
                if delay is None:
                    if retry.response is not None:
                        return retry.response
                    raise retry.failure from None
                time.sleep(delay if retry.delay is None else retry.delay)

    def _attempt(self, method: str, url: str, body: Optional[bytes], headers: dict,
                 timeout: float) -> HttpResponse:
        """One exchange on a pooled connection; raise _Retry when another may succeed."""
        if self._bucket is not None:
            self._bucket.acquire()
        idempotent = method in IDEMPOTENT
        conn = self._pool.checkout()
        reusable = False
        try:
            if conn.sock is None:
                conn.read_timeout = timeout  # type: ignore[attr-defined]
                try:
                    conn.connect()
                except ssl.SSLError as exc:  # certificate, host name or pin: never retried
                    raise TransportError(self._where() + f"TLS verification failed ({_reason(exc)}); "
                                         "trust the device with ca_file or tls_fingerprint") from None
                except socket.timeout:
                    raise _Retry(TransportError(self._where() + f"no answer within {timeout:g} s")) from None
                except OSError as exc:  # nothing was sent: any method may try again
                    raise _Retry(TransportError(self._where() + f"cannot connect ({_reason(exc)})")) from None
            else:
                conn.sock.settimeout(timeout)
            try:
                conn.request(method, url, body=body, headers=headers)
                response = conn.getresponse()
                content = response.read()
            except socket.timeout:
                failure = TransportError(self._where() + f"no answer within {timeout:g} s")
                raise (_Retry(failure) if idempotent else failure) from None
            except (OSError, http.client.HTTPException) as exc:
                failure = TransportError(self._where() + f"cannot connect ({_reason(exc)})")
                raise (_Retry(failure) if idempotent else failure) from None
            reusable = not response.will_close
            status = response.status
            answer = HttpResponse(status, content, dict(response.getheaders()))
            if idempotent and status in RETRY_STATUSES:
                raise _Retry(TransportError(self._where() + f"device answered HTTP {status}"),
                             _retry_after(response.getheader("Retry-After")), answer)
            return answer
        finally:
            self._pool.checkin(conn, reusable)

    def _where(self) -> str:
        return f"device {self.device_id} at {self.endpoint.host}:{self.endpoint.port}: "

    def close(self) -> None:
        self._pool.close()


def _retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds from a Retry-After header (delta-seconds form), capped; None if absent or a date."""
    if not value:
        return None
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER)
    except ValueError:
        return None


def _reason(exc: Exception) -> str:
    text = str(exc)
    for marker in ("Caused by ", "Fingerprints did not match", "CERTIFICATE_VERIFY_FAILED",
                   "Connection refused", "Read timed out", "Connection aborted"):
        if marker in text:
            start = text.find(marker)
            text = text[start:start + 160]
            break
    return redact(text[:200])
