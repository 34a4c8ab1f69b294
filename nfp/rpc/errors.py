"""Errors of the RPC layer: what callers see, and what the listener sends back.

Dispatcher errors keep oslo's class and module names (``NoSuchMethod`` and
``UnsupportedVersion`` in ``oslo_messaging.rpc.dispatcher``) so that callers'
logs and error handling look the same as with an oslo server.
"""
from __future__ import annotations

from typing import Any, Optional

#: module name oslo's dispatcher errors carry on the wire
OSLO_DISPATCHER_MODULE = "oslo_messaging.rpc.dispatcher"


class RpcError(Exception):
    """Base of the errors raised by :class:`nfp.rpc.client.RpcClient`."""


class RemoteError(RpcError):
    """The server raised ``exc_type`` with message ``value`` while serving a call.

    Mirrors ``oslo_messaging.RemoteError``: ``traceback`` is the list of lines
    the server sent.
    """

    def __init__(self, exc_type: Optional[str] = None, value: Optional[str] = None,
                 traceback: Optional[list[str]] = None, module: Optional[str] = None,
                 kwargs: Optional[dict[str, Any]] = None):
        self.exc_type = exc_type
        self.value = value
        self.traceback = traceback or []
        self.module = module
        self.kwargs = kwargs or {}
        super().__init__(f"Remote error: {exc_type} {value}")


class MessagingTimeout(RpcError):
    """No reply arrived in time (or the call monitor saw no heartbeat)."""


class MessageTooLarge(Exception):
    """A request body exceeds ``rpc.max_message_bytes``; sent back to the caller."""

    def __init__(self, size: int, limit: int):
        super().__init__(f"message of {size} bytes exceeds the limit of {limit} bytes "
                         "(rpc.max_message_bytes)")
        self.kwargs = {"size": size, "limit": limit}


class DataRefused(Exception):
    """The database refused a value of a request (too long for its column, a NUL
    byte, a constraint); retrying cannot help, so it is refused once."""

    def __init__(self, method: str, field: Optional[str], cause: BaseException):
        where = field or "a value"
        super().__init__(f"{method}: {where}: refused by the database ({describe(cause)}); "
                         "the request is dropped, not retried")
        self.field = field
        self.kwargs = {"field": field, "method": method}


class PoisonMessage(Exception):
    """A mutation failed every time it was committed and was dropped."""

    def __init__(self, method: str, attempts: int, cause: BaseException):
        super().__init__(f"{method} failed {attempts} times and was dropped: {describe(cause)}")
        self.kwargs = {"method": method, "attempts": attempts}


def no_such_method(method: str) -> tuple[str, str, str]:
    """(class, module, message) of oslo's ``NoSuchMethod``."""
    return ("NoSuchMethod", OSLO_DISPATCHER_MODULE,
            f"Endpoint does not support RPC method {method}")


def unsupported_version(version: str, method: Optional[str] = None) -> tuple[str, str, str]:
    """(class, module, message) of oslo's ``UnsupportedVersion``."""
    message = f"Endpoint does not support RPC version {version}"
    if method:
        message = f"{message}. Attempted method: {method}"
    return "UnsupportedVersion", OSLO_DISPATCHER_MODULE, message


#: longest error text put in a log line or a poison-message reply
DESCRIBE_LIMIT = 300
#: longest caller string (method name, ids, topic) put in a log line
SAFE_LIMIT = 120


def safe(value: Any, limit: int = SAFE_LIMIT) -> str:
    """A caller-supplied value made fit for one log line: control characters
    (newlines above all, which would forge log lines) and non-ASCII are escaped
    as in a Python literal, and the result is cut at ``limit`` characters."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[:limit]
        cut = True
    else:
        cut = False
    if not text.isprintable() or not text.isascii():
        text = text.encode("ascii", "backslashreplace").decode("ascii")
        text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    return text + "..." if cut else text


def describe(exc: BaseException) -> str:
    """``Class: first line of the message``, for logs and replies.

    SQLAlchemy errors print the statement and its bound parameters, which may
    hold secrets from the request; only the driver's own first line is kept.
    """
    orig = getattr(exc, "orig", None)
    if orig is not None and getattr(exc, "statement", None) is not None:
        exc = orig
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = safe(text, DESCRIBE_LIMIT)  # messages may quote caller strings
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
