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


def describe(exc: BaseException) -> str:
    """``Class: first line of the message``, for logs and replies.

    SQLAlchemy errors print the statement and its bound parameters, which may
    hold secrets from the request; only the driver's own first line is kept.
    """
    orig = getattr(exc, "orig", None)
    if orig is not None and getattr(exc, "statement", None) is not None:
        exc = orig
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if len(text) > DESCRIBE_LIMIT:
        text = text[:DESCRIBE_LIMIT] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
