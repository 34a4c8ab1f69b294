"""Cross-host wake-ups: "a step of bucket B is ready" from one host to another.

A host that commits a step of a bucket another host holds (a create accepted by
its listener, a notification resuming a parked step) cannot hand it over a pipe.
It sends ``NOTIFY nfp_wake, 'B1,B2'`` instead, and the worker holding those
buckets scans them at once. Without it the step would wait for the holder's
periodic rescan; nothing is lost either way, since the table is the truth.
PostgreSQL only: an SQLite database has one host.
"""
from __future__ import annotations

import logging
import queue
import select
import threading
from typing import Callable, Iterable

from nfp import backoff

LOG = logging.getLogger(__name__)

CHANNEL = "nfp_wake"


def supported(engine) -> bool:
    return engine.dialect.name == "postgresql"


class Waker:
    """Sends wake-ups from a thread of its own, coalescing buckets (the caller,
    an intake thread, never waits on it)."""

    def __init__(self, engine):
        self.engine = engine
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="waker", daemon=True)
        self._thread.start()

    def wake(self, buckets: Iterable[int]) -> None:
        self._q.put(set(buckets))

    def close(self) -> None:
        self._q.put(None)

    def _loop(self) -> None:
        while True:
            first = self._q.get()
            if first is None:
                return
            pending = set(first)
            while True:
                try:
                    more = self._q.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._q.put(None)
                    break
                pending |= more
            try:
                with self.engine.begin() as conn:
                    conn.exec_driver_sql("SELECT pg_notify(%(c)s, %(p)s)",
                                         {"c": CHANNEL, "p": ",".join(map(str, sorted(pending)))})
            except Exception as exc:  # the holder's rescan finds the steps anyway
                LOG.debug("wake-up for buckets %s not sent: %s", sorted(pending), exc)


class WakeListener:
    """A thread that LISTENs on its own connection and calls ``on_wake(buckets)``.
    Reconnects with backoff when the database goes away."""

    def __init__(self, engine, on_wake: Callable[[set[int]], None]):
        self.engine = engine
        self.on_wake = on_wake
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="wake-listener", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._listen()
                failures = 0
            except Exception as exc:
                failures += 1
                pause = backoff.delay(failures, 0.5, 10.0, jitter=0.2)
                LOG.debug("wake listener lost its connection (%s); again in %.1f s", exc, pause)
                self._stop.wait(pause)

    def _listen(self) -> None:
        raw = self.engine.raw_connection()
        try:
            conn = raw.driver_connection
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f"LISTEN {CHANNEL}")
            while not self._stop.is_set():
                if select.select([conn], [], [], 1.0)[0]:
                    conn.poll()
                    buckets: set[int] = set()
                    while conn.notifies:
                        note = conn.notifies.pop(0)
                        buckets |= {int(b) for b in note.payload.split(",") if b.isdigit()}
                    if buckets:
                        self.on_wake(buckets)
        finally:
            raw.invalidate()  # never return a LISTENing connection to a pool
