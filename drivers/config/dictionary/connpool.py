"""A pool of kept-alive HTTP(S) connections to one device (``http.client``).

Why not urllib3's pool: measured on the pfSense simulator, ``urlopen`` spends
100-170 us per call on URL re-parsing, timeout and retry objects and response
wrapping, a fifth of a whole request over loopback TLS. A device is one host and
port, so the pool is small: a LIFO of idle connections and a semaphore that
bounds them (callers wait for a free connection, as with ``pool_block``).

TLS is the standard library's: the device's :class:`ssl.SSLContext` is built
once and verifies the certificate chain and the host name, unless a pinned
SHA-256 fingerprint replaces both, in which case every new connection's
certificate digest is compared (constant time) before the first byte is sent.
"""
from __future__ import annotations

import hashlib
import hmac
import http.client
import select
import socket
import ssl
import threading
from typing import Optional


class PinMismatch(ssl.SSLError):
    """The device's certificate is not the pinned one."""


_CORK = getattr(socket, "TCP_CORK", None)


class _Timeouts:
    """Connect and read timeouts of one connection (http.client has one timeout),
    and one TCP segment per request: http.client writes the head and the body
    separately, which would wake the device twice per request, so the socket is
    corked while both are written (Linux; elsewhere they go as they are)."""

    connect_timeout: float
    read_timeout: float

    def _after_connect(self) -> None:
        self.sock.settimeout(self.read_timeout)  # type: ignore[attr-defined]

    def request(self, method, url, body=None, headers=None, **kwargs):  # type: ignore[override]
        sock = self.sock if (body and _CORK is not None) else None  # type: ignore[attr-defined]
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, _CORK, 1)
            except OSError:
                sock = None
        try:
            super().request(method, url, body=body, headers=headers or {}, **kwargs)  # type: ignore[misc]
        finally:
            if sock is not None:
                try:
                    sock.setsockopt(socket.IPPROTO_TCP, _CORK, 0)  # uncork: the request leaves now
                except OSError:
                    pass  # closed while sending: getresponse reports it


class PlainConnection(_Timeouts, http.client.HTTPConnection):
    """HTTP without TLS (lab devices configured with ``scheme: http``)."""

    def __init__(self, host: str, port: int, connect_timeout: float, read_timeout: float):
        super().__init__(host, port, timeout=connect_timeout)
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout

    def connect(self) -> None:
        self.timeout = self.connect_timeout
        super().connect()
        self._after_connect()


class TlsConnection(_Timeouts, http.client.HTTPSConnection):
    """HTTPS verified by its context, or by a pinned certificate fingerprint."""

    def __init__(self, host: str, port: int, connect_timeout: float, read_timeout: float,
                 context: ssl.SSLContext, fingerprint: Optional[bytes] = None):
        super().__init__(host, port, timeout=connect_timeout, context=context)
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self._fingerprint = fingerprint

    def connect(self) -> None:
        self.timeout = self.connect_timeout
        super().connect()  # TCP, then the TLS handshake (chain and host name checked by the context)
        if self._fingerprint is not None:
            der = self.sock.getpeercert(binary_form=True) or b""
            digest = hashlib.sha256(der).digest()
            if not hmac.compare_digest(digest, self._fingerprint):
                self.close()
                raise PinMismatch(f"Fingerprints did not match. Expected {self._fingerprint.hex()}, "
                                  f"got {digest.hex()}")
        self._after_connect()


def dropped(conn: http.client.HTTPConnection) -> bool:
    """True if an idle connection was closed by the device (readable while idle
    means end of stream or unsolicited data: either way it cannot be reused)."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


class ConnectionPool:
    """Up to ``size`` connections to one device; idle ones are kept alive and reused."""

    def __init__(self, factory, size: int):
        self._factory = factory
        self._idle: list[http.client.HTTPConnection] = []
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._closed = False

    def checkout(self) -> http.client.HTTPConnection:
        """A connection for one request: the most recently used idle one, or a new one
        (connected lazily). Blocks while ``size`` connections are in use."""
        self._slots.acquire()
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            return self._factory()
        if dropped(conn):
            conn.close()  # reconnects on its next request
        return conn

    def checkin(self, conn: http.client.HTTPConnection, reusable: bool) -> None:
        """Give a connection back; one that is not reusable is closed first."""
        if not reusable or self._closed:
            conn.close()
        with self._lock:
            if not self._closed:
                self._idle.append(conn)
        self._slots.release()

    def close(self) -> None:
        """Close every idle connection; busy ones are closed when checked in."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def fingerprint_bytes(text: Optional[str]) -> Optional[bytes]:
    """A configured SHA-256 fingerprint (hex, colons allowed) as 32 bytes."""
    if not text:
        return None
    raw = bytes.fromhex(text.replace(":", ""))
    if len(raw) != 32:
        raise ValueError("tls_fingerprint must be a SHA-256 digest (64 hex digits)")
    return raw
