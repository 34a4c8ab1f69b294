"""Per-device pacing: a token bucket, and exponential backoff delays for retries."""
from __future__ import annotations

import random
import threading
import time
from typing import Iterator, Optional


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


def backoff_delays(retries: int, base: float, cap: float = 10.0) -> Iterator[float]:
    """``retries`` delays: base, 2*base, 4*base ... capped, with +-20% jitter."""
    for attempt in range(retries):
        delay = min(cap, base * (2 ** attempt))
        yield delay * random.uniform(0.8, 1.2)
