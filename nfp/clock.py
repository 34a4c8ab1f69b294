"""The time the engine reads: due times, polls, parked waits and step deadlines.

Production reads the wall clock. Tests install a :class:`FakeClock` for a scope
(:func:`use`) and move time with :meth:`FakeClock.advance`, so a 10 s device
poll or a 600 s wait is tested without sleeping (Temporal's time-skipping test
environment plays the same role).

Call the functions through the module (``clock.utcnow()``), never import them
by name: :func:`use` rebinds the module attributes, which keeps the production
path a single call to the real function, as cheap as before there was a clock.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import math
import threading
import time as _time
from typing import Callable, Iterator, Optional

_EPOCH = dt.datetime(1970, 1, 1)


def _wall_utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


#: naive UTC now (database timestamps); rebound by :func:`use`
utcnow: Callable[[], dt.datetime] = _wall_utcnow
#: seconds since the epoch (in-memory timers and deadlines); rebound by :func:`use`
time: Callable[[], float] = _time.time
#: block for some seconds; a fake clock advances instead; rebound by :func:`use`
sleep: Callable[[float], None] = _time.sleep


class FakeClock:
    """A clock that moves only when told to.

    Time is kept in whole microseconds, the resolution of database timestamps,
    so a timer computed from a due time fires exactly when that row is due
    (float seconds near 2e9 would be off by fractions of a microsecond).

    Parameters:
        start(datetime): naive UTC start; defaults to the wall clock's now.
    """

    def __init__(self, start: Optional[dt.datetime] = None):
        start = start or _wall_utcnow()
        self._us = (start - _EPOCH) // dt.timedelta(microseconds=1)
        self._lock = threading.Lock()
        #: called with the seconds moved after every advance (an engine that
        #: must react to time passing inside a handler registers here)
        self.listeners: list[Callable[[float], None]] = []

    def utcnow(self) -> dt.datetime:
        """Naive UTC now."""
        return _EPOCH + dt.timedelta(microseconds=self._us)

    def time(self) -> float:
        """Seconds since the epoch."""
        return self._us / 1_000_000

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (rounded up to a whole microsecond)."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back ({seconds} s)")
        with self._lock:
            self._us += math.ceil(seconds * 1_000_000)
        for listener in list(self.listeners):
            listener(seconds)

    def sleep(self, seconds: float) -> None:
        """What a fake device calls for a slow operation: time passes, nobody waits."""
        self.advance(max(0.0, seconds))


@contextlib.contextmanager
def use(clock: FakeClock) -> Iterator[FakeClock]:
    """Make the engine (and ``nfp.db.base.utcnow``) read ``clock`` inside the block.

    Process-wide, not per thread: background threads see the fake time too.
    Scopes nest; leaving one restores the clock that was installed before it.
    """
    global utcnow, time, sleep
    saved = utcnow, time, sleep
    utcnow, time, sleep = clock.utcnow, clock.time, clock.sleep
    try:
        yield clock
    finally:
        utcnow, time, sleep = saved
