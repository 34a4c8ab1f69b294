"""Which decoded requests the dispatcher may see: oslo's dispatch rules.

A request is refused, as oslo's ``RPCDispatcher`` would refuse it, when its
namespace or version matches no endpoint (``UnsupportedVersion``), when the
method does not exist or starts with ``_`` (``NoSuchMethod``; oslo's default
access policy hides private methods).
"""
from __future__ import annotations

from typing import Optional

from nfp.rpc import errors
from nfp.rpc.types import Dispatcher, IncomingRequest

#: version of nfp's RPC API when the dispatcher does not say (upstream NFP's RPC_API_VERSION)
DEFAULT_API_VERSION = "1.0"


def version_is_compatible(implemented: Optional[str], requested: Optional[str]) -> bool:
    """oslo ``_utils.version_is_compatible``: same major, requested minor (and
    revision at equal minor) not above the implemented one."""
    if implemented is None:
        return True
    if requested is None:
        return False
    req = [int(p) for p in requested.split(".")] + [0]
    imp = [int(p) for p in implemented.split(".")] + [0]
    if req[0] != imp[0] or req[1] > imp[1]:
        return False
    return not (req[1] == imp[1] and req[2] > imp[2])


def api_version(dispatcher: Dispatcher, topic: str) -> str:
    """The version the dispatcher implements on ``topic``: its optional
    ``api_version(topic)`` method, else :data:`DEFAULT_API_VERSION`."""
    getter = getattr(dispatcher, "api_version", None)
    return getter(topic) if callable(getter) else DEFAULT_API_VERSION


def refusal(dispatcher: Dispatcher, request: IncomingRequest) -> Optional[tuple[str, str, str]]:
    """``None`` if the request may be dispatched, else oslo's error as
    ``(class, module, message)``."""
    if request.namespace is not None or not version_is_compatible(
            api_version(dispatcher, request.topic), request.version):
        return errors.unsupported_version(request.version, request.method)
    if request.method.startswith("_") or not dispatcher.has_method(request.topic, request.method):
        return errors.no_such_method(request.method)
    return None
