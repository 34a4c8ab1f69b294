"""Acknowledgements in delivery order, with as few frames as possible.

On AMQP a single ``basic.ack(tag, multiple=True)`` settles every outstanding
delivery up to ``tag``; acking a committed batch of a thousand messages costs
one frame instead of a thousand, which matters to both nfp and the broker.
Such an ack is sent only for a run of settled deliveries at the head of the
channel's outstanding ones. Deliveries settled behind one still running (a
slow read, say) are acked one by one, so a slow request never holds back the
acks of others (nor, through the prefetch limit, the intake).

kombu's virtual transports ignore ``multiple``; there every delivery is
settled on its own. :class:`AckTracker` is used by the consumer thread only;
other threads hand their settlements over through :class:`Settlements`.
"""
from __future__ import annotations

import queue
from collections import OrderedDict
from typing import Any, Optional

from nfp.rpc.counters import Counters

ACK, REJECT = "ack", "reject"


class AckTracker:
    """The outstanding deliveries of one channel, in delivery order.

    Parameters:
        multiple(bool): use ``multiple=True`` acks (AMQP); False on virtual transports.
    """

    def __init__(self, multiple: bool):
        self.multiple = multiple
        self._outstanding: OrderedDict[Any, list] = OrderedDict()

    def add(self, message: Any) -> None:
        """Track a delivery that will be settled later."""
        self._outstanding[message.delivery_tag] = [message, None]

    def mark(self, message: Any, action: str) -> None:
        """Record how a tracked delivery is to be settled (:data:`ACK` or :data:`REJECT`)."""
        entry = self._outstanding.get(message.delivery_tag)
        if entry is not None:
            entry[1] = action

    def flush(self) -> tuple[int, int]:
        """Send the acks and rejects that are due; returns ``(acked, rejected)``."""
        acked = rejected = 0
        run_end = None  # last message of the settled run at the head
        blocked = not self.multiple
        for tag, (message, action) in list(self._outstanding.items()):
            if action is None:
                if run_end is not None:
                    run_end.ack(multiple=True)
                    run_end = None
                blocked = True
                continue
            del self._outstanding[tag]
            if action == REJECT:
                if run_end is not None:
                    run_end.ack(multiple=True)
                    run_end = None
                message.reject(requeue=False)
                rejected += 1
            elif blocked:
                message.ack()
                acked += 1
            else:
                run_end = message
                acked += 1
        if run_end is not None:
            run_end.ack(multiple=True)
        return acked, rejected

    def __len__(self) -> int:
        return len(self._outstanding)


class Settlements:
    """Settlements handed over by any thread (intake, reads), applied by the
    consumer thread, which alone may touch its channel.

    ``generation`` counts consumer connections: the delivery tags of a lost
    connection mean nothing on the next one, so their settlements are skipped
    (the broker redelivers those messages and :mod:`nfp.rpc.dedupe` knows them).
    """

    def __init__(self, counters: Counters):
        self.counters = counters
        self.generation = 0
        #: deliveries routed and not yet settled (consumer thread only)
        self.in_flight = 0
        self._tracker = AckTracker(multiple=False)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()

    def new_connection(self, multiple: bool) -> None:
        """A consumer connection was (re)established; call before its first consume."""
        self.generation += 1
        self._tracker = AckTracker(multiple)

    def track(self, message: Any) -> None:
        """A delivery of the current connection that will be settled later."""
        self._tracker.add(message)
        self.in_flight += 1

    def put(self, action: str, delivery: Any) -> None:
        """Hand a settlement over (:data:`ACK` or :data:`REJECT`); any thread."""
        self._queue.put((action, delivery))

    def apply(self, wait: Optional[float] = None) -> None:
        """Apply what was handed over (consumer thread), waiting up to ``wait`` s
        for a first settlement if none is there."""
        settled = []
        if wait and self._queue.empty():
            try:
                settled.append(self._queue.get(timeout=wait))
            except queue.Empty:
                return
        while not self._queue.empty():  # the consumer thread is the only reader
            settled.append(self._queue.get_nowait())
        if not settled:
            return
        for action, delivery in settled:
            self.in_flight -= 1
            if delivery.generation == self.generation:
                self._tracker.mark(delivery.message, action)
        acked, rejected = self._tracker.flush()
        if acked:
            self.counters.add("acked", acked)
        if rejected:
            self.counters.add("rejected", rejected)
