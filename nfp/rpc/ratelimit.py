"""Log repeated failures (broker down, database down) once per interval, not per message."""
from __future__ import annotations

import logging
import threading
import time

#: seconds between two log lines about the same recurring problem
DEFAULT_INTERVAL = 10.0


class RateLimitedLog:
    """Emits a message for a key at most once per ``interval`` seconds and counts
    what it suppressed in between (reported with the next emitted line)."""

    def __init__(self, logger: logging.Logger, interval: float = DEFAULT_INTERVAL):
        self.logger = logger
        self.interval = interval
        self._lock = threading.Lock()
        self._last: dict[str, tuple[float, int]] = {}

    def log(self, level: int, key: str, msg: str, *args: object) -> None:
        """Log ``msg % args`` at ``level`` unless ``key`` was logged recently."""
        now = time.monotonic()
        with self._lock:
            last, suppressed = self._last.get(key, (float("-inf"), 0))
            if now - last < self.interval:
                self._last[key] = (last, suppressed + 1)
                return
            self._last[key] = (now, 0)
        if suppressed:
            msg = f"{msg} ({suppressed} similar messages suppressed)"
        self.logger.log(level, msg, *args)

    def clear(self, key: str) -> None:
        """Forget ``key`` (the problem is over), so the next occurrence logs at once."""
        with self._lock:
            self._last.pop(key, None)
