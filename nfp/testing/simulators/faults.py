"""Fault injection shared by the simulators: what goes wrong with the next requests."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Optional


@dataclass
class Fault:
    """One fault to apply to one request."""

    kind: str                 # "status", "delay", "auth", "drop"
    status: int = 500
    seconds: float = 0.0


class Faults:
    """A thread-safe queue of faults. Tests arm them; the simulator takes one per request."""

    def __init__(self) -> None:
        self._queue: list[Fault] = []
        self._lock = threading.Lock()
        #: while true every request fails authentication
        self.reject_auth = False
        self.injected = 0

    def fail_next(self, count: int = 1, status: int = 500) -> None:
        """The next ``count`` requests answer ``status`` (a 5xx, 429 ...)."""
        self._add(Fault("status", status=status), count)

    def delay_next(self, count: int = 1, seconds: float = 5.0) -> None:
        """The next ``count`` requests are answered only after ``seconds`` (client timeouts)."""
        self._add(Fault("delay", seconds=seconds), count)

    def auth_fail_next(self, count: int = 1) -> None:
        """The next ``count`` requests fail authentication."""
        self._add(Fault("auth"), count)

    def drop_next(self, count: int = 1) -> None:
        """SSH: the session is cut when the next ``count`` commands arrive."""
        self._add(Fault("drop"), count)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self.reject_auth = False

    def take(self) -> Optional[Fault]:
        with self._lock:
            if self.reject_auth:
                return Fault("auth")
            if not self._queue:
                return None
            self.injected += 1
            return self._queue.pop(0)

    def _add(self, fault: Fault, count: int) -> None:
        with self._lock:
            self._queue.extend(Fault(fault.kind, fault.status, fault.seconds) for _ in range(count))

    def arm(self, spec: dict) -> None:
        """Arm from a JSON spec (the admin endpoint): {"kind": "status", "count": 2, "status": 503}."""
        kind, count = spec.get("kind"), int(spec.get("count", 1))
        if kind == "status":
            self.fail_next(count, int(spec.get("status", 500)))
        elif kind == "delay":
            self.delay_next(count, float(spec.get("seconds", 5)))
        elif kind == "auth":
            self.auth_fail_next(count)
        elif kind == "drop":
            self.drop_next(count)
        elif kind == "clear":
            self.clear()
        else:
            raise ValueError(f"unknown fault kind {kind!r}")
