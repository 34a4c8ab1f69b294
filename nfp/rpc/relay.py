"""The outbox relay: publishes the notifications committed in the outbox table.

One thread in the listener process, owning one broker connection with
publisher confirms (:class:`~nfp.rpc.producer.ConfirmedProducer`). It runs a
round when woken (a worker committed a step with notifications and said so
over its pipe: :data:`nfp.outbox.WAKE`) and at least every
:data:`SWEEP_INTERVAL` seconds, which also picks up rows left behind by a
crash or by another host. A round claims the oldest rows (:func:`nfp.outbox.claim`),
publishes them in order and deletes those the broker confirmed, in the same
transaction on PostgreSQL (the row locks keep other hosts' relays away).

A publish that fails ends the round (the rows after it wait, so order is
kept); the relay waits with backoff (:mod:`nfp.backoff`) and tries again: a
broker or database outage delays notifications, it never drops them.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Optional

from nfp import backoff, faults, outbox
from nfp.config import NfpConfig
from nfp.rpc.counters import Counters
from nfp.rpc.errors import describe, safe
from nfp.rpc.producer import ConfirmedProducer
from nfp.rpc.ratelimit import RateLimitedLog

LOG = logging.getLogger(__name__)

#: seconds between sweeps of the table when nothing wakes the relay
SWEEP_INTERVAL = 2.0
#: rows claimed per round (a round's transaction stays short)
BATCH = 200
#: longest a draining stop publishes what is left (s), unless told otherwise
DRAIN_TIMEOUT = 5.0
#: retry after a failed round: first pause and ceiling, seconds
RETRY_START = 0.5
RETRY_MAX = 15.0


class Relay:
    """Publishes outbox rows (see module docstring).

    Parameters:
        sessionmaker: session factory of the database holding the outbox.
        url(str): transport URL.
        conf(NfpConfig): notification topic, publisher id, control exchange.
        counters(Counters): ``outbox_published``, ``outbox_held`` and the producer's counters.
    """

    def __init__(self, sessionmaker, url: str, conf: NfpConfig, counters: Optional[Counters] = None):
        self.sessionmaker = sessionmaker
        self.counters = counters or Counters()
        self.producer = ConfirmedProducer(url, conf, self.counters)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        #: with a draining stop: the monotonic time the last rounds must end by
        self._drain_by = 0.0
        self._thread: Optional[threading.Thread] = None
        self._ratelog = RateLimitedLog(LOG)

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        """Start the relay thread; its first round sweeps what an earlier run left."""
        self._thread = threading.Thread(target=self._run, name="nfp-outbox-relay", daemon=True)
        self._thread.start()

    def stop(self, timeout: Optional[float] = None, drain: bool = False) -> None:
        """Finish the current round and close the connection; unpublished rows
        stay in the table for the next start (or another host). With ``drain``,
        first publish what the table holds, for at most ``timeout`` s (default
        ``DRAIN_TIMEOUT``): what the workers committed while they drained goes
        out now, not at the next start."""
        if drain:
            self._drain_by = time.monotonic() + (DRAIN_TIMEOUT if timeout is None else timeout)
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout if timeout is None or not drain else timeout + 1.0)

    # -- called from any thread -------------------------------------------------
    def wake(self) -> None:
        """New rows were committed: run a round now."""
        self._wake.set()

    def notify(self, event_type: str, payload: Any, priority: str = "INFO") -> None:
        """A notification handed to the listener: :data:`nfp.outbox.WAKE` (a worker
        committed rows) wakes the relay; any other is stored first, with its
        ``network_function_id`` or ``device_id`` as its scope."""
        if event_type == outbox.WAKE:
            self.wake()
            return
        about = payload if isinstance(payload, dict) else {}
        scope = about.get("network_function_id") or about.get("device_id") or ""
        self.store(str(scope), event_type, payload, priority)

    def store(self, scope: str, event_type: str, payload: Any, priority: str = "INFO") -> None:
        """Keep a notification that was not committed with its state (a source
        outside the step executor) in the outbox, then publish it like the rest."""
        with self.sessionmaker.begin() as session:
            outbox.add(session, scope, [(event_type, payload)], priority)
        self._wake.set()

    # -- the thread ---------------------------------------------------------------
    def _run(self) -> None:
        failures, complete = 0, True
        try:
            # until stopped; a draining stop runs on until the table is empty or its time is up
            while self._publishing():
                try:
                    complete = self.run_round()
                except Exception as exc:  # the database is down, or a bug: retry, never die
                    complete = False
                    self._ratelog.log(logging.ERROR if not faults.is_transient(exc) else logging.WARNING,
                                      "round", "Outbox relay cannot read the outbox (%s); "
                                      "notifications wait there; retrying.", describe(exc))
                if complete:
                    if self._stopping.is_set():
                        break
                    failures = 0
                    self._ratelog.clear("round")
                    wait = SWEEP_INTERVAL
                else:
                    failures += 1
                    wait = backoff.delay(failures, RETRY_START, RETRY_MAX, jitter=0.2)
                if self._stopping.is_set():
                    wait = min(wait, max(0.0, self._drain_by - time.monotonic()))
                self._wake.wait(wait)
                self._wake.clear()
            if self._drain_by and not complete:
                LOG.warning("Outbox relay stopped with notifications unpublished; they wait in "
                            "the outbox for the next start (or another host).")
        finally:
            self.producer.close()

    def _publishing(self) -> bool:
        """Not stopped, or stopping with drain time left."""
        return not self._stopping.is_set() or time.monotonic() < self._drain_by

    def run_round(self) -> bool:
        """Publish rows until the table holds none this relay may take. Returns
        False when a publish failed (the rest waits for the next round)."""
        while self._publishing():
            published, held = self._batch()
            if held:
                return False
            if not published:
                return True
        return False  # stopped before the table was empty

    def _batch(self) -> tuple[int, int]:
        """One claim: (rows published and deleted, rows held back)."""
        with self.sessionmaker() as session:  # closing it rolls back whatever did not commit
            rows = outbox.claim(session, BATCH)
            if not outbox.locks_rows(session):
                session.commit()  # publish outside SQLite's write lock (one host)
            sent = self._publish(rows)
            outbox.remove(session, sent)
            session.commit()
        if sent:
            self.counters.add("outbox_published", len(sent))
        held = len(rows) - len(sent)
        if held:
            self.counters.add("outbox_held", held)
        return len(sent), held

    def _publish(self, rows: list[outbox.Pending]) -> list[int]:
        """Publish ``rows`` in order, up to the first that fails; the ids the
        broker confirmed. Every row goes to one queue per priority, so what
        refused one (a nack, a lost connection) would refuse the rest too."""
        sent: list[int] = []
        for row in rows:
            try:
                item = self.producer.notification(row.event_type, row.payload, row.priority,
                                                  message_id=outbox.message_id(row),
                                                  timestamp=row.created_at)
            except Exception as exc:  # a row that cannot be encoded would block the table
                LOG.error("Outbox row %d (%s) cannot be encoded (%s); it is dropped.",
                          row.id, safe(row.event_type), describe(exc))
                sent.append(row.id)
                continue
            if not self.producer.publish(item):
                break
            sent.append(row.id)
        return sent
