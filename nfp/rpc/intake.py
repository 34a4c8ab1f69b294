"""Group commit: mutations are handed to the dispatcher in batches, on one thread.

``dispatcher.handle_mutations(batch)`` commits the whole batch durably in one
transaction; only then are the messages acked and their callers answered.
Batching is what lets durable intake keep up with callers: while one commit
runs, the next batch collects (up to the prefetch count).

When a commit raises:

- a *transient* error (database unreachable or locked, see :func:`is_transient`)
  retries the same batch with exponential backoff, for as long as it takes.
  Nothing is acked, so nothing is lost, and the prefetch limit stops the broker
  from sending more meanwhile;
- any other error splits the batch and commits its requests one at a time, so
  one bad request cannot block the others. A request the database refuses for
  a *data* reason (a value too long for its column, a NUL byte, a constraint:
  :func:`nfp.faults.is_data_error`) is dropped at once with an error naming the
  field: retrying it would only hold up the requests behind it. Any other
  request that fails alone ``max_attempts`` times is dropped with an error
  reply and an error log, so it is never redelivered forever.
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import Callable, Optional

from nfp import backoff as retry_policy
from nfp import faults
from nfp.rpc.counters import Counters
from nfp.rpc.delivery import Delivery
from nfp.rpc.errors import DataRefused, describe, safe
from nfp.rpc.ratelimit import RateLimitedLog
from nfp.rpc.types import Dispatcher, Reply

LOG = logging.getLogger(__name__)

#: failures of one request, committed alone, before it is dropped
DEFAULT_MAX_ATTEMPTS = 5
#: first retry delay and ceiling, seconds
BACKOFF_START = 0.05
BACKOFF_MAX = 5.0

_STOP = object()


def is_transient(exc: BaseException) -> bool:
    """True for errors of the environment rather than of the request (see
    :func:`nfp.faults.is_transient`)."""
    return faults.is_transient(exc)


def backoff(attempt: int) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): nfp's one
    exponential policy (:mod:`nfp.backoff`) between BACKOFF_START and BACKOFF_MAX."""
    return retry_policy.delay(attempt, BACKOFF_START, BACKOFF_MAX)


class Intake:
    """The group-commit thread.

    Parameters:
        dispatcher(Dispatcher): ``handle_mutations`` commits a batch.
        settle(callable): ``settle(delivery, outcome)`` replies and acks; thread-safe.
        drop(callable): ``drop(delivery, exc)`` rejects a request that kept failing.
        max_batch(int): largest batch (the prefetch count).
        max_attempts(int): failures of one request alone before it is dropped.
    """

    def __init__(self, dispatcher: Dispatcher, settle: Callable[[Delivery, Reply], None],
                 drop: Callable[[Delivery, BaseException], None], max_batch: int,
                 max_attempts: int = DEFAULT_MAX_ATTEMPTS, counters: Optional[Counters] = None):
        self.dispatcher = dispatcher
        self.settle = settle
        self.drop = drop
        self.max_batch = max_batch
        self.max_attempts = max_attempts
        self.counters = counters or Counters()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._abandon = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._ratelog = RateLimitedLog(LOG)

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        """Start the group-commit thread."""
        self._thread = threading.Thread(target=self._run, name="nfp-rpc-intake", daemon=True)
        self._thread.start()

    def put(self, delivery: Delivery) -> None:
        """Queue a mutation for the next batch."""
        self._queue.put([delivery])

    def put_many(self, deliveries: list[Delivery]) -> None:
        """Queue several mutations with one wake-up of the intake thread."""
        self._queue.put(list(deliveries))

    def stop(self, timeout: Optional[float] = None) -> bool:
        """Commit everything queued so far, then stop. If that takes longer than
        ``timeout``, abandon the rest unacked (the broker redelivers it) and
        return False."""
        self._queue.put(_STOP)
        if self._thread is None:
            return True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._abandon.set()
            self._thread.join(1.0)
            return False
        return True

    # -- the thread ----------------------------------------------------------
    def _run(self) -> None:
        stopping = False
        while not stopping and not self._abandon.is_set():
            batch, stopping = self._next_batch()
            if batch:
                self._commit(batch)

    def _next_batch(self) -> tuple[list[Delivery], bool]:
        # a batch may exceed max_batch by less than one hand-off; the prefetch
        # count already bounds what can be outstanding
        first = self._queue.get()
        if first is _STOP:
            return [], True
        batch = list(first)
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True
            batch.extend(item)
        return batch, False

    def _commit(self, batch: list[Delivery]) -> None:
        transient_failures = 0
        while not self._abandon.is_set():
            try:
                outcomes = self._handle(batch)
            except Exception as exc:  # classified below; the thread must survive
                self.counters.add("batch_retries")
                if is_transient(exc):
                    transient_failures += 1
                    self._log_transient(batch, exc, transient_failures)
                    self._abandon.wait(backoff(transient_failures))
                    continue
                if len(batch) > 1:
                    LOG.warning("Group commit of %d requests failed (%s); committing them "
                                "one at a time to isolate the failing one.",
                                len(batch), describe(exc))
                    for delivery in batch:
                        self._commit([delivery])
                    return
                if self._failed_alone(batch[0], exc):
                    return
                continue
            self._ratelog.clear("transient")
            self.counters.add("batches")
            for delivery, outcome in zip(batch, outcomes):
                self.settle(delivery, outcome)
            return

    def _handle(self, batch: list[Delivery]) -> list[Reply]:
        outcomes = self.dispatcher.handle_mutations([d.request for d in batch])
        if len(outcomes) != len(batch):
            raise RuntimeError(f"handle_mutations returned {len(outcomes)} outcomes "
                               f"for {len(batch)} requests")
        return outcomes

    def _failed_alone(self, delivery: Delivery, exc: Exception) -> bool:
        """Count a failure of ``delivery`` committed alone; drop it at the limit.
        Returns True when it was dropped."""
        delivery.attempts += 1
        request = delivery.request
        if faults.is_data_error(exc):
            self.counters.add("data_refused")
            self.drop(delivery, DataRefused(request.method, faults.data_field(exc, request.args), exc))
            return True
        if delivery.attempts >= self.max_attempts:
            self.drop(delivery, exc)
            return True
        delay = backoff(delivery.attempts)
        LOG.warning("Committing %s (msg_id %s) failed (%s), attempt %d of %d; "
                    "retrying in %.2f s.", safe(request.method), safe(request.msg_id),
                    describe(exc), delivery.attempts, self.max_attempts, delay)
        self._abandon.wait(delay)
        return False

    def _log_transient(self, batch: list[Delivery], exc: Exception, failures: int) -> None:
        self._ratelog.log(logging.ERROR, "transient",
                          "Cannot commit %d requests (%s); they stay unacked and the "
                          "commit is retried every %.1f s until the database answers.",
                          len(batch), describe(exc), backoff(failures))
