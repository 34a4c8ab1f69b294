"""One publishing connection with publisher confirms.

:meth:`ConfirmedProducer.publish` returns True only once the broker confirmed
the message (``basic.ack`` under kombu's ``confirm_publish`` transport option),
so a caller that keeps the message elsewhere until then (the outbox relay) can
delete it safely. A ``basic.nack`` (the broker refused the message, say a full
queue with ``overflow: reject-publish``) is counted as ``nacked``; kombu takes
it for a connection error and retries the publish (:data:`RETRY_POLICY`)
before giving up. Any other error closes the connection, and the next publish
reconnects. The kombu virtual transports
(``filesystem://``, ``memory://``) have no confirms: a publish that returned
is stored.

The producer is not thread-safe: one thread owns it (the publisher's, or the
relay's), as one thread owns each broker connection in nfp.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from amqp.exceptions import MessageNacked
from kombu import Producer

from nfp.config import NfpConfig
from nfp.rpc import codec, topology
from nfp.rpc.counters import Counters
from nfp.rpc.errors import describe, safe
from nfp.rpc.ratelimit import RateLimitedLog
from nfp.rpc.transport import connection_for, is_virtual

LOG = logging.getLogger(__name__)

#: kombu ``ensure`` policy for one publish; a reply is worth a short wait, not a stall
RETRY_POLICY = {"max_retries": 3, "interval_start": 0.1, "interval_step": 0.5, "interval_max": 1.0}
#: longest wait for the broker's confirm of one message, seconds (a blocked
#: broker, e.g. a disk alarm, must not hang the publishing thread for good)
CONFIRM_TIMEOUT = 10.0


@dataclass
class Send:
    """One message to publish."""

    exchange: Any
    routing_key: str
    body: str
    mandatory: bool = False
    declare: tuple = ()
    #: the call this reply ends, so its heartbeats stop
    ends: Optional[str] = None
    #: the counter a confirmed publish adds to
    kind: str = "replies"


class ConfirmedProducer:
    """Publishes :class:`Send` items on its own connection, confirmed on AMQP.

    Parameters:
        url(str): transport URL (see :func:`nfp.rpc.transport.connection_for`).
        conf(NfpConfig): control exchange, notification topic and publisher id.
        counters(Counters): ``publish_failures``, ``nacked``, ``replies_undeliverable``.
    """

    def __init__(self, url: str, conf: NfpConfig, counters: Optional[Counters] = None):
        self.url = url
        self.conf = conf
        self.counters = counters or Counters()
        self._conn = None
        self._producer: Optional[Producer] = None
        self._notification_queues: dict[str, Any] = {}
        self._ratelog = RateLimitedLog(LOG)

    @property
    def connected(self) -> bool:
        """False after a connection error, until the next publish reconnects."""
        return self._producer is not None

    def notification(self, event_type: str, payload: Any, priority: str = "INFO",
                     context: Optional[Mapping[str, Any]] = None, **fields: Any) -> Send:
        """An oslo notification on ``<rpc.notifications_topic>.<priority>``, with the
        queue oslo's notifier declares beside it; ``fields`` go to the codec
        (``message_id``, ``timestamp``). Safe to call from any thread."""
        body = codec.encode_notification(event_type, payload, priority=priority,
                                         publisher_id=self.conf.rpc.publisher_id, context=context,
                                         **fields)
        key = codec.notification_routing_key(self.conf.rpc.notifications_topic, priority)
        queue = self._notification_queues.get(key)
        if queue is None:
            queue = self._notification_queues.setdefault(
                key, topology.notification_queue(self.conf, key))
        return Send(topology.control_exchange(self.conf), key, body, declare=(queue,),
                    kind="notifications")

    def publish(self, item: Send) -> bool:
        """Publish ``item``; True once the broker confirmed it. Never raises."""
        try:
            if self._producer is None:
                self.connect()
            self._producer.publish(
                item.body, exchange=item.exchange, routing_key=item.routing_key,
                content_type="application/json", content_encoding="utf-8",
                mandatory=item.mandatory, declare=list(item.declare),
                retry=True, retry_policy=RETRY_POLICY, confirm_timeout=CONFIRM_TIMEOUT)
        except Exception as exc:  # never let one publish kill the owning thread
            if _nacked(exc):
                self.counters.add("nacked")
                self._ratelog.log(logging.ERROR, "nack", "The broker refused (nacked) a message "
                                  "for %s (a queue limit or a broker alarm); it was not delivered.",
                                  safe(item.routing_key))
                return False
            self.counters.add("publish_failures")
            self._ratelog.log(logging.ERROR, "publish", "Could not publish to %s (%s): a reply "
                              "is lost (its caller times out), an outbox notification is kept "
                              "for a retry; reconnecting on the next publish.",
                              safe(item.routing_key), describe(exc))
            self.close()
            return False
        self._ratelog.clear("publish")
        self._ratelog.clear("nack")
        return True

    def connect(self) -> None:
        """Open the connection (publishing connects on its own when needed)."""
        self.close()
        conn = connection_for(self.url, self.conf, confirm_publish=True)
        try:
            conn.ensure_connection(max_retries=3, interval_start=0.2, interval_step=0.5)
        except Exception:
            conn.release()
            raise
        # kombu's virtual transports have no basic.return (and nothing to return)
        on_return = None if is_virtual(conn) else self._on_return
        self._conn, self._producer = conn, Producer(conn.channel(), on_return=on_return)

    def _on_return(self, exc: Exception, exchange: str, routing_key: str, message: Any) -> None:
        # basic.return: no queue had that name; the caller went away (its reply
        # queue expired). Nothing can be delivered later, so just say so.
        self.counters.add("replies_undeliverable")
        LOG.warning("Reply to %s was returned by the broker (%s): the caller is gone; "
                    "the reply is dropped.", safe(routing_key), safe(exc))

    def close(self) -> None:
        """Close the connection (a broken one too)."""
        conn, self._conn, self._producer = self._conn, None, None
        if conn is not None:
            try:
                conn.release()
            except Exception:  # closing a broken connection may fail again
                LOG.debug("Error while closing a publishing connection", exc_info=True)


def _nacked(exc: Optional[BaseException]) -> bool:
    """The broker nacked the message (kombu re-raises that as its OperationalError)."""
    for _ in range(8):
        if exc is None:
            return False
        if isinstance(exc, MessageNacked):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
