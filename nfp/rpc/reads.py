"""Threads that serve read requests (``get_*``) beside the group commit.

Reads never wait behind a batch of mutations, and mutations never wait behind
a slow read. Each thread calls ``dispatcher.handle_read`` and hands the outcome
to ``settle`` (reply, then ack on the consumer thread). A read the dispatcher
``serves_inline`` is answered by :meth:`ReadPool.serve_now` on the consumer
thread instead, through ``dispatcher.handle_inline_read``.
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import Callable, Optional

from nfp.rpc.counters import Counters
from nfp.rpc.delivery import Delivery
from nfp.rpc.errors import describe, safe
from nfp.rpc.types import Dispatcher, IncomingRequest, Reply

LOG = logging.getLogger(__name__)

_STOP = object()


class ReadPool:
    """``size`` threads serving reads from one queue.

    Parameters:
        dispatcher(Dispatcher): its ``handle_read`` answers each request.
        settle(callable): ``settle(delivery, outcome)``, thread-safe.
        size(int): threads (``rpc.read_threads``).
    """

    def __init__(self, dispatcher: Dispatcher, settle: Callable[[Delivery, Reply], None],
                 size: int, counters: Optional[Counters] = None):
        self.dispatcher = dispatcher
        self.settle = settle
        self.size = size
        self.counters = counters or Counters()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start the threads."""
        for n in range(self.size):
            thread = threading.Thread(target=self._run, name=f"nfp-rpc-read-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def put(self, delivery: Delivery) -> None:
        """Queue a read request."""
        self._queue.put(delivery)

    def stop(self, timeout: Optional[float] = None) -> bool:
        """Serve what is queued, then stop. False if threads were still busy at ``timeout``."""
        for _ in self._threads:
            self._queue.put(_STOP)
        for thread in self._threads:
            thread.join(timeout)
        return not any(t.is_alive() for t in self._threads)

    def serve_now(self, delivery: Delivery) -> Reply:
        """Answer a read on the calling thread (``dispatcher.handle_inline_read``);
        errors become the caller's, as in the pool."""
        return self._serve(delivery, self.dispatcher.handle_inline_read)

    def _run(self) -> None:
        while True:
            delivery = self._queue.get()
            if delivery is _STOP:
                return
            self.settle(delivery, self._serve(delivery, self.dispatcher.handle_read))

    def _serve(self, delivery: Delivery, handle: Callable[[IncomingRequest], Reply]) -> Reply:
        request = delivery.request
        try:
            outcome = handle(request)
        except Exception as exc:  # the dispatcher's bug must not kill the pool
            LOG.warning("Read %s (msg_id %s) failed (%s); the caller gets the error.",
                        safe(request.method), safe(request.msg_id), describe(exc))
            outcome = Reply(error=exc)
        self.counters.add("reads")
        return outcome
