"""Step handlers by name. Worker modules register them at import time."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Optional

from nfp.engine.events import Outcome

#: modules imported by every worker so their handlers register
HANDLER_MODULES = [
    "nfp.engine.builtin",
    "nfp.workers.lifecycle.network_function",
    "nfp.workers.lifecycle.device",
]


@dataclass(frozen=True)
class HandlerSpec:
    """A step type: its handler, its failure handler and its deadline in seconds.

    ``io=False`` declares a pure state transition (database only, no device or
    network calls): such steps run in batches, many per transaction.
    """

    name: str
    fn: Callable[..., Outcome]
    on_failure: Optional[Callable[..., Optional[Outcome]]] = None
    deadline: Optional[float] = None
    io: bool = True


_REGISTRY: dict[str, HandlerSpec] = {}


def handler(name: str, on_failure: Optional[Callable] = None, deadline: Optional[float] = None,
            io: bool = True):
    """Decorator: register ``fn(step) -> Outcome`` as the handler of step type ``name``."""
    def wrap(fn):
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            raise ValueError(f"step type {name!r} registered twice")
        _REGISTRY[name] = HandlerSpec(name, fn, on_failure, deadline, io)
        return fn
    return wrap


def lookup(name: str) -> Optional[HandlerSpec]:
    return _REGISTRY.get(name)


def batchable(name: str) -> bool:
    spec = _REGISTRY.get(name)
    return spec is not None and not spec.io


def load_all() -> None:
    for module in HANDLER_MODULES:
        importlib.import_module(module)
