"""Per-device pacing: a token bucket that spaces out the calls to one device.

Retry delays are not here: every retry in nfp takes them from :mod:`nfp.backoff`.
"""
from __future__ import annotations

import threading
import time
from typing import Optional


class TokenBucket:
    """Allow ``rate`` calls per second on average, ``burst`` at once. Thread-safe;
    :meth:`acquire` sleeps until a token is free."""

    def __init__(self, rate: float, burst: Optional[float] = None, clock=time.monotonic, sleep=time.sleep):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.capacity = float(burst if burst is not None else max(1.0, rate))
        self._tokens = self.capacity
        self._clock, self._sleep = clock, sleep
        self._stamp = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token; return the seconds waited."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= 1.0
            wait = 0.0 if self._tokens >= 0 else -self._tokens / self.rate
        if wait:
            self._sleep(wait)
        return wait

