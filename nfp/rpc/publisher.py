"""The publisher thread: the only user of the listener's second connection.

It sends replies (default exchange ``''``, routing key ``_reply_q``, mandatory,
confirmed on AMQP: :mod:`nfp.rpc.producer`), call-monitor heartbeats for calls
still in flight, and oslo notifications that are not kept in the outbox. Other
threads only enqueue; encoding happens in the calling thread, so a result that
cannot be encoded becomes an error reply at its source and the publisher never
sees bad data.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from nfp.config import NfpConfig
from nfp.rpc import codec
from nfp.rpc.counters import Counters
from nfp.rpc.errors import describe, safe
from nfp.rpc.producer import ConfirmedProducer, Send
from nfp.rpc.types import IncomingRequest, Reply

LOG = logging.getLogger(__name__)

#: heartbeats never go out more often than this, whatever ``_timeout`` says
MIN_HEARTBEAT_INTERVAL = 0.1
#: longest idle wait of the publisher loop (bounds how late a stop is noticed)
IDLE_WAIT = 0.5

_STOP = object()


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
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: Optional[threading.Thread] = None
        self._producer = ConfirmedProducer(url, conf, self.counters)
        self._tracked: dict[str, _Track] = {}

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        """Start the publisher thread (it connects on its own)."""
        self._thread = threading.Thread(target=self._run, name="nfp-rpc-publisher", daemon=True)
        self._thread.start()

    def stop(self, timeout: Optional[float] = None) -> None:
        """Publish everything enqueued so far, then close the connection."""
        self._queue.put(_STOP)
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
            self._queue.put(_Track(request.msg_id, request.reply_q, interval))

    def publish_notification(self, event_type: str, payload: Any, priority: str = "INFO",
                             context: Optional[Mapping[str, Any]] = None) -> None:
        """Publish an oslo notification on ``<rpc.notifications_topic>.<priority>``."""
        self._queue.put(self._producer.notification(event_type, payload, priority, context))

    def _send_reply(self, msg_id: str, reply_q: str, body: str) -> None:
        self._queue.put(Send("", reply_q, body, mandatory=True, ends=msg_id))

    # -- the thread ------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._producer.connect()
        except Exception as exc:  # the broker may come back; publishing retries
            LOG.warning("RPC publisher cannot connect yet (%s); it retries on the next publish.",
                        type(exc).__name__)
        while True:
            try:
                item = self._queue.get(timeout=self._wait_time())
            except queue.Empty:
                item = None
            if item is _STOP:
                break
            if item is not None:
                self._handle(item)
            self._send_heartbeats()
        self._tracked.clear()
        self._producer.close()

    def _handle(self, item: Any) -> None:
        if isinstance(item, _Track):
            item.due = time.monotonic() + item.interval
            self._tracked[item.msg_id] = item
            return
        if item.ends is not None:
            self._tracked.pop(item.ends, None)
        if self._producer.publish(item):
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
                if self._producer.publish(Send("", track.reply_q, body, mandatory=True)):
                    self.counters.add("heartbeats")
