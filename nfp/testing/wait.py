"""Polling waits for tests and demos that run real daemons."""
from __future__ import annotations

import time
from typing import Callable


def until(predicate: Callable[[], bool], what: str, timeout: float = 180,
          interval: float = 0.2) -> None:
    """Poll ``predicate`` until it is true; fail after ``timeout`` s. An exception
    from it counts as "not yet" (the database or broker may be down on purpose)."""
    end = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except Exception:  # noqa: BLE001 - a service down on purpose
            pass
        assert time.monotonic() < end, f"timed out after {timeout} s waiting for {what}"
        time.sleep(interval)
