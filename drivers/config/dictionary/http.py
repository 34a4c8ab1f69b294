"""HTTPS transport: one pooled ``requests.Session`` per device.

TLS certificates are verified by default. A self-signed device is trusted
explicitly, by a CA file (``ca_file``) or by pinning its certificate's SHA-256
fingerprint (``tls_fingerprint``); ``verify: false`` must be configured on
purpose and is logged. Connection errors are retried by urllib3 with backoff,
answers 429/502/503/504 too for idempotent methods, and every call waits for the
device's rate limit. Credentials are added per call and never stored on the session.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Optional

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from nfp.secrets import redact

from .errors import TransportError
from .ratelimit import TokenBucket
from .render import HttpRequest

LOG = logging.getLogger(__name__)

RETRY_STATUSES = (429, 502, 503, 504)
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


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


class _PinningAdapter(HTTPAdapter):
    """An adapter whose pools check the peer certificate's fingerprint."""

    def __init__(self, fingerprint: Optional[str], **kwargs):
        self._fingerprint = fingerprint
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs):
        if self._fingerprint:
            kwargs["assert_fingerprint"] = self._fingerprint
        super().init_poolmanager(*args, **kwargs)


class HttpTransport:
    """Sends rendered requests to one device over a pooled session."""

    def __init__(self, endpoint: HttpEndpoint, device_id: str = ""):
        self.endpoint = endpoint
        self.device_id = device_id
        self._bucket = TokenBucket(endpoint.rate_limit) if endpoint.rate_limit else None
        self._session = requests.Session()
        self._session.trust_env = False  # no proxies or netrc credentials from the environment
        retry = Retry(total=endpoint.retries, connect=endpoint.retries, read=endpoint.retries,
                      status=endpoint.retries, other=0, backoff_factor=endpoint.backoff,
                      status_forcelist=RETRY_STATUSES, allowed_methods=IDEMPOTENT,
                      raise_on_status=False, respect_retry_after_header=True)
        fingerprint = endpoint.fingerprint.replace(":", "").lower() if endpoint.fingerprint else None
        adapter = _PinningAdapter(fingerprint, pool_connections=1, pool_maxsize=endpoint.pool_size,
                                  max_retries=retry, pool_block=True)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        if fingerprint:
            # the pin replaces CA validation: urllib3 compares the certificate digest itself
            self._verify: object = False
        elif endpoint.ca_file:
            self._verify = endpoint.ca_file
        else:
            self._verify = endpoint.verify
            if not endpoint.verify and endpoint.scheme == "https":
                LOG.warning("device %s: TLS certificate verification is disabled by configuration "
                            "(verify: false); set ca_file or tls_fingerprint instead", device_id)
        self._lock = threading.Lock()

    def send(self, request: HttpRequest, auth: AuthMaterial) -> HttpResponse:
        """Send ``request``; raise TransportError if the device cannot be reached."""
        if self._bucket is not None:
            self._bucket.acquire()
        headers = dict(request.headers)
        headers.update(auth.headers)
        timeout = request.timeout or self.endpoint.timeout
        try:
            response = self._session.request(
                request.method, self.endpoint.base_url + request.path, params=request.params or None,
                data=request.data or request.body, headers=headers, auth=auth.basic,
                timeout=(min(timeout, 10.0), timeout), verify=self._verify, allow_redirects=False)
        except requests.exceptions.SSLError as exc:
            raise TransportError(self._where() + f"TLS verification failed ({_reason(exc)}); trust the "
                                 "device with ca_file or tls_fingerprint") from None
        except requests.exceptions.Timeout:
            raise TransportError(self._where() + f"no answer within {timeout:g} s") from None
        except requests.exceptions.ConnectionError as exc:
            raise TransportError(self._where() + f"cannot connect ({_reason(exc)})") from None
        except requests.exceptions.RequestException as exc:
            raise TransportError(self._where() + f"request failed ({_reason(exc)})") from None
        return HttpResponse(response.status_code, response.content, dict(response.headers))

    def _where(self) -> str:
        return f"device {self.device_id} at {self.endpoint.host}:{self.endpoint.port}: "

    def close(self) -> None:
        self._session.close()


def _reason(exc: Exception) -> str:
    text = str(exc)
    for marker in ("Caused by ", "Fingerprints did not match", "CERTIFICATE_VERIFY_FAILED",
                   "Connection refused", "Read timed out", "Connection aborted"):
        if marker in text:
            start = text.find(marker)
            text = text[start:start + 160]
            break
    return redact(text[:200])
