"""The publisher thread: the only user of the listener's second connection.

It sends replies (default exchange ``''``, routing key ``_reply_q``, mandatory,
confirmed on AMQP), call-monitor heartbeats for calls still in flight, and
oslo notifications. Other threads only enqueue; encoding happens in the
calling thread, so a result that cannot be encoded becomes an error reply at
its source and the publisher never sees bad data.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from kombu import Producer

from nfp.config import NfpConfig
from nfp.rpc import codec, topology
from nfp.rpc.counters import Counters
from nfp.rpc.errors import describe, safe
from nfp.rpc.ratelimit import RateLimitedLog
from nfp.rpc.transport import connection_for, is_virtual
from nfp.rpc.types import IncomingRequest, Reply

LOG = logging.getLogger(__name__)

#: kombu ``ensure`` policy for one publish; a reply is worth a short wait, not a stall
RETRY_POLICY = {"max_retries": 3, "interval_start": 0.1, "interval_step": 0.5, "interval_max": 1.0}
#: heartbeats never go out more often than this, whatever ``_timeout`` says
MIN_HEARTBEAT_INTERVAL = 0.1
#: longest idle wait of the publisher loop (bounds how late a stop is noticed)
IDLE_WAIT = 0.5

_STOP = object()


@dataclass
class _Send:
    exchange: Any
    routing_key: str
    body: str
    mandatory: bool = False
    declare: tuple = ()
    #: the call this reply ends, so its heartbeats stop
    ends: Optional[str] = None
    kind: str = "replies"


@dataclass
class _Track:
    msg_id: str
    reply_q: str
    interval: float
    due: float = 0.0


class Publisher:
    """Publishes replies, heartbeats and notifications from one thread.

    Parameters:
        url(str): transport URL (see :func:`nfp.rpc.transport.connection_for`).
        conf(NfpConfig): control exchange, notification topic and publisher id.
        counters(Counters): where ``replies``, ``heartbeats``... are counted.
    """

    def __init__(self, url: str, conf: NfpConfig, counters: Optional[Counters] = None):
        self.url = url
        self.conf = conf
        self.counters = counters or Counters()
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: Optional[threading.Thread] = None
        self._conn = None
        self._producer: Optional[Producer] = None
        self._tracked: dict[str, _Track] = {}
        self._notification_queues: dict[str, Any] = {}
        self._ratelog = RateLimitedLog(LOG)

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        """Start the publisher thread (it connects on its own)."""
        self._thread = threading.Thread(target=self._run, name="nfp-rpc-publisher", daemon=True)
        self._thread.start()

    def stop(self, timeout: Optional[float] = None) -> None:
        """Publish everything enqueued so far, then close the connection."""
        self._outbox.put(_STOP)
        if self._thread is not None:
            self._thread.join(timeout)

    # -- called from any thread ----------------------------------------------
    def reply(self, request: IncomingRequest, outcome: Reply) -> None:
        """Send the final reply of a call (nothing for a cast)."""
        if not request.is_call:
            return
        if outcome.error is not None:
            body = codec.encode_reply(request.msg_id, None, codec.serialize_failure(outcome.error))
        else:
            try:
                body = codec.encode_reply(request.msg_id, outcome.result)
            except (TypeError, ValueError) as exc:
                LOG.error("The result of %s (msg_id %s) is not JSON-serializable (%s); "
                          "the caller gets an error instead.", safe(request.method), safe(request.msg_id),
                          describe(exc))
                body = codec.encode_reply(request.msg_id, None, codec.serialize_failure(exc))
        self._send_reply(request.msg_id, request.reply_q, body)

    def reply_failure(self, msg_id: str, reply_q: str, failure: str) -> None:
        """Send an error reply built with :mod:`nfp.rpc.codec` (``failure`` JSON string)."""
        self._send_reply(msg_id, reply_q, codec.encode_reply(msg_id, None, failure))

    def track(self, request: IncomingRequest) -> None:
        """Send call-monitor heartbeats every ``_timeout/2`` s until the call's reply.
        Only calls whose caller set ``call_monitor_timeout`` get them (oslo rule)."""
        timeout = request.monitor_timeout
        if request.is_call and timeout and timeout > 0:
            interval = max(timeout / 2.0, MIN_HEARTBEAT_INTERVAL)
            self._outbox.put(_Track(request.msg_id, request.reply_q, interval))

    def publish_notification(self, event_type: str, payload: Any, priority: str = "INFO",
                             context: Optional[Mapping[str, Any]] = None) -> None:
        """Publish an oslo notification on ``<rpc.notifications_topic>.<priority>``."""
        body = codec.encode_notification(event_type, payload, priority=priority,
                                         publisher_id=self.conf.rpc.publisher_id, context=context)
        key = codec.notification_routing_key(self.conf.rpc.notifications_topic, priority)
        self._outbox.put(_Send(topology.control_exchange(self.conf), key, body,
                               declare=(self._notification_queue(key),), kind="notifications"))

    def _send_reply(self, msg_id: str, reply_q: str, body: str) -> None:
        self._outbox.put(_Send("", reply_q, body, mandatory=True, ends=msg_id))

    def _notification_queue(self, key: str):
        q = self._notification_queues.get(key)
        if q is None:
            q = self._notification_queues.setdefault(key, topology.notification_queue(self.conf, key))
        return q

    # -- the thread ------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._connect()
        except Exception as exc:  # the broker may come back; publishing retries
            self._ratelog.log(logging.WARNING, "connect", "RPC publisher cannot connect yet (%s); "
                              "it retries on the next publish.", type(exc).__name__)
        while True:
            try:
                item = self._outbox.get(timeout=self._wait_time())
            except queue.Empty:
                item = None
            if item is _STOP:
                break
            if item is not None:
                self._handle(item)
            self._send_heartbeats()
        self._tracked.clear()
        self._close()

    def _handle(self, item: Any) -> None:
        if isinstance(item, _Track):
            item.due = time.monotonic() + item.interval
            self._tracked[item.msg_id] = item
            return
        if item.ends is not None:
            self._tracked.pop(item.ends, None)
        if self._publish(item):
            self.counters.add(item.kind)

    def _wait_time(self) -> float:
        if not self._tracked:
            return IDLE_WAIT
        due = min(t.due for t in self._tracked.values())
        return min(IDLE_WAIT, max(0.0, due - time.monotonic()))

    def _send_heartbeats(self) -> None:
        now = time.monotonic()
        for track in list(self._tracked.values()):
            if track.due <= now:
                track.due = now + track.interval
                body = codec.encode_heartbeat(track.msg_id)
                if self._publish(_Send("", track.reply_q, body, mandatory=True)):
                    self.counters.add("heartbeats")

    def _publish(self, item: _Send) -> bool:
        try:
            if self._producer is None:
                self._connect()
            self._producer.publish(
                item.body, exchange=item.exchange, routing_key=item.routing_key,
                content_type="application/json", content_encoding="utf-8",
                mandatory=item.mandatory, declare=list(item.declare),
                retry=True, retry_policy=RETRY_POLICY)
        except Exception as exc:  # never let one publish kill the thread
            self.counters.add("publish_failures")
            self._ratelog.log(logging.ERROR, "publish", "Could not publish to %s (%s); the "
                              "message is dropped and the connection reopened.",
                              safe(item.routing_key), describe(exc))
            self._close()
            return False
        self._ratelog.clear("publish")
        return True

    def _connect(self) -> None:
        self._conn = connection_for(self.url, self.conf, confirm_publish=True)
        self._conn.ensure_connection(max_retries=3, interval_start=0.2, interval_step=0.5)
        # kombu's virtual transports have no basic.return (and nothing to return)
        on_return = None if is_virtual(self._conn) else self._on_return
        self._producer = Producer(self._conn.channel(), on_return=on_return)

    def _on_return(self, exc: Exception, exchange: str, routing_key: str, message: Any) -> None:
        # basic.return: no queue had that name; the caller went away (its reply
        # queue expired). Nothing can be delivered later, so just say so.
        self.counters.add("replies_undeliverable")
        LOG.warning("Reply to %s was returned by the broker (%s): the caller is gone; "
                    "the reply is dropped.", safe(routing_key), safe(exc))

    def _close(self) -> None:
        conn, self._conn, self._producer = self._conn, None, None
        if conn is not None:
            try:
                conn.release()
            except Exception:  # closing a broken connection may fail again
                LOG.debug("Error while closing the publisher connection", exc_info=True)
