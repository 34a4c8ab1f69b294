"""Notifications back to the orchestrator, at least once.

One pass: read the waiting notifications (``get_notifications?keep=true``), cast
each to the orchestrator's notification topic as ``network_function_notification``
(the cast waits for the broker's publisher confirm), and only then acknowledge
their ids. A crash anywhere before the acknowledgement leaves them at the
configurator and the next pass delivers them again; the orchestrator resumes a
parked step once and ignores the repeat. Used by ``nfp-proxy``'s agent (through
the proxy end) and by the orchestrator's ``rest`` client (straight over HTTPS).
"""
from __future__ import annotations

import logging
import threading
from typing import Optional

from nfp import backoff
from nfp.proxy.http import ConfiguratorHttp, Refused, Unavailable

LOG = logging.getLogger(__name__)
METHOD = "network_function_notification"
#: the oslo context of the casts: the configurator tier acts as a service, not as a tenant
SERVICE_CONTEXT = {"user_id": "nfp-proxy", "is_admin": True, "roles": ["admin"]}


def deliver(source: ConfiguratorHttp, caster) -> int:
    """One pass (module docstring); how many notifications were delivered."""
    notes = source.notifications()
    for note in notes:
        data = {k: v for k, v in note.items() if k != "id"}
        caster.cast(SERVICE_CONTEXT, METHOD, notification_data=data)
    ids = [n["id"] for n in notes if isinstance(n.get("id"), int)]
    if ids:
        source.ack(ids)
        LOG.info("delivered %d configurator notification(s) to the orchestrator: requests %s",
                 len(ids), ", ".join(str(n.get("request_id")) for n in notes[:5]))
    return len(notes)


class Notifier:
    """A thread running :func:`deliver` every ``interval`` s (at once again after a full
    pass), backing off up to ``retry_max`` s while the configurator or broker is away.
    Owns neither ``source`` nor ``caster``."""

    def __init__(self, source: ConfiguratorHttp, caster, interval: float, retry_max: float = 10.0,
                 name: str = "notifier"):
        self.source, self.caster = source, caster
        self.interval, self.retry_max, self.name = interval, retry_max, name
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.failures = 0

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the pass in hand (its unacknowledged notifications stay waiting)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                count = deliver(self.source, self.caster)
                self.failures = 0
                pause = 0.0 if count else self.interval
            except (Unavailable, Refused) as exc:
                pause = self._failed(f"configurator: {exc}")
            except Exception as exc:  # the broker (kombu's errors vary by transport)
                pause = self._failed(f"{exc.__class__.__name__}: {exc}")
            self._stop.wait(pause)

    def _failed(self, reason: str) -> float:
        self.failures += 1
        pause = max(self.interval, backoff.delay(self.failures, self.interval, self.retry_max))
        LOG.warning("notifications not delivered (%s); they stay at the configurator; "
                    "polling again in %.1f s", reason, pause)
        return pause
