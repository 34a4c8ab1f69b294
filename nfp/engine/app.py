"""What a daemon hands the engine: its step handlers and how to build its services.

Temporal's worker takes its workflows and activities explicitly; nfp's engine
takes an :class:`Application`. It is passed to every worker process (pickled by
reference, so its two callables must be module-level functions), and nothing
is looked up by module-name strings.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

from nfp.engine.registry import Registry


class Services(Protocol):
    """What an application's services object must offer the engine."""

    conf: Any
    sessionmaker: Any

    def start(self) -> None:
        """Open what the steps need (drivers' ``start``)."""

    def stop(self) -> None:
        """Close everything it owns: drivers, their pools, the database engine."""


@dataclass(frozen=True)
class Application:
    """An engine application.

    Parameters:
        name(str): for logs.
        registry(callable): ``() -> Registry``, the step types it runs.
        services(callable): ``(conf) -> Services``; the services own the process's
            database engine, drivers and their pools.
        companions(callable): ``(conf) -> [Companion]``, process types the supervisor
            runs beside the workers (the health monitor); see :mod:`nfp.engine.companion`.
    """

    name: str
    registry: Callable[[], Registry]
    services: Callable[[Any], Services]
    companions: Callable[[Any], list] = None  # type: ignore[assignment]

    def __post_init__(self):
        if self.companions is None:  # a module-level default: workers get the app pickled
            object.__setattr__(self, "companions", no_companions)


def no_companions(conf: Any) -> list:
    """An application without companion processes."""
    return []
