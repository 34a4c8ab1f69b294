"""Bounded decompression of message bodies (kombu's ``compression`` header).

kombu inflates a compressed body while it builds the ``Message``, before any
application code sees it, with ``zlib.decompress``/``bz2.decompress``: a
783-byte bz2 body can become a gigabyte there. :func:`install` replaces kombu's
decoders for the codecs it knows (``application/x-gzip`` = zlib,
``application/x-bz2``, ``application/x-lzma``) with streaming decoders that stop
after a limit and raise :class:`InflatedTooLarge`; kombu then hands the message
to the consumer's ``on_decode_error`` instead of ``on_message``. The limit is
:data:`DEFAULT_LIMIT`, or what :func:`limit_this_thread` set for the calling
thread (the RPC consumer sets ``rpc.max_message_bytes``). Other codecs (brotli,
zstd) are not registered by nfp and stay refused by kombu as unknown.
"""
from __future__ import annotations

import bz2
import lzma
import threading
import zlib
from typing import Callable

from kombu import compression

#: largest inflated body outside a thread with its own limit
DEFAULT_LIMIT = 64 << 20
#: bytes fed to a decompressor at a time, so output is checked as it grows
CHUNK = 64 << 10

_local = threading.local()
_installed = False
_lock = threading.Lock()


class InflatedTooLarge(ValueError):
    """A compressed body inflates beyond the limit; ``head`` is what came out
    before the limit, for recovering a reply address."""

    def __init__(self, kind: str, limit: int, head: bytes):
        super().__init__(f"{kind} body inflates beyond {limit} bytes (rpc.max_message_bytes); "
                         "refused without inflating it further")
        self.head = head
        self.kwargs = {"limit": limit}


def limit_this_thread(limit: int) -> None:
    """Cap what kombu inflates in the calling thread at ``limit`` bytes."""
    _local.limit = limit


def current_limit() -> int:
    return getattr(_local, "limit", DEFAULT_LIMIT)


def _bounded(kind: str, make: Callable[[], object]) -> Callable[[bytes], bytes]:
    def decode(body: bytes) -> bytes:
        limit = current_limit()
        out = bytearray()
        engine = make()
        if isinstance(body, str):  # a virtual transport may hand over text
            body = body.encode("latin-1", "replace")
        data = memoryview(bytes(body))
        for start in range(0, len(data), CHUNK):
            # max_length bounds each call's output; what is left stays buffered
            out += engine.decompress(data[start:start + CHUNK], limit + 1 - len(out))
            while len(out) <= limit and _pending(engine):
                out += engine.decompress(b"", limit + 1 - len(out))
            if len(out) > limit:
                raise InflatedTooLarge(kind, limit, bytes(out[:4096]))
        return bytes(out)
    return decode


def _pending(engine) -> bool:
    """More output is waiting in the decompressor without more input."""
    if hasattr(engine, "needs_input"):  # bz2, lzma
        return not engine.needs_input and not engine.eof
    return bool(engine.unconsumed_tail)  # zlib


def inflate(body: bytes, content_type: str) -> bytes:
    """Inflate ``body`` with the bounded decoder of ``content_type`` (kombu's
    names or aliases). KeyError for a codec nfp does not bound."""
    install()
    return compression.decompress(body, content_type)


def install() -> None:
    """Register the bounded decoders with kombu (idempotent, process-wide)."""
    global _installed
    with _lock:
        if _installed:
            return
        for content_type, aliases, kind, make in (
                ("application/x-gzip", ["zlib", "gzip"], "zlib", zlib.decompressobj),
                ("application/x-bz2", ["bz2", "bzip2"], "bz2", bz2.BZ2Decompressor),
                ("application/x-lzma", ["lzma", "xz"], "lzma", lzma.LZMADecompressor)):
            encoder = compression._encoders.get(content_type)
            compression.register(encoder, _bounded(kind, make), content_type, aliases=aliases)
        _installed = True
