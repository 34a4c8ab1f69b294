"""Lifecycle hooks shared by every driver (device and config), in nameko's manner.

The process's :class:`~nfp.workers.lifecycle.services.Services` builds each
driver, then calls ``setup(context)`` once, ``start()`` before the first step
and ``stop()`` on drain, SIGHUP and worker exit. A driver never builds its own
database engine when it is given one: the context's ``sessionmaker`` is bound to
the process's single engine, which ``Services`` owns and disposes of.
``stop()`` must release every pooled connection, session and thread the driver
opened, and must be safe to call twice.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional


@dataclass
class DriverContext:
    """What the owner hands a driver at ``setup``.

    Parameters:
        conf(NfpConfig): the daemon's validated configuration.
        sessionmaker: SQLAlchemy session factory on the process's one engine.
        secrets(SecretStore): the encrypted secret store, or None when the
            process has no key (drivers that need secrets fail with a clear error).
    """

    conf: Any
    sessionmaker: Any = None
    secrets: Optional[Any] = None


class Component:
    """Default no-op hooks; drivers override what they need."""

    context: Optional[DriverContext] = None

    def setup(self, context: DriverContext) -> None:
        """Receive shared resources; no I/O to devices yet."""
        self.context = context

    def start(self) -> None:
        """Called once before the first step runs in this process."""

    def stop(self) -> None:
        """Release pools, sessions and threads. Idempotent."""

    def close(self) -> None:
        """Older name of :meth:`stop`, kept for callers outside the daemon."""
        self.stop()
