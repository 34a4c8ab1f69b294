"""An RPC client that speaks oslo.messaging's wire format.

It publishes exactly what an oslo ``RPCClient`` publishes, so either an oslo
server or nfp's :class:`~nfp.rpc.listener.RpcListener` can serve it; the
``nfp`` CLI and the tests use it. One reply queue per client, created on the
first call and reused; replies are matched to calls by ``_msg_id``.
"""
from __future__ import annotations

import socket
import threading
import time
import uuid
from typing import Any, Mapping, Optional, Union

import kombu
from kombu import Consumer, Producer

from nfp.config import NfpConfig
from nfp.rpc import codec, topology
from nfp.rpc.errors import MessagingTimeout, RemoteError
from nfp.rpc.transport import connection_for, is_virtual

__all__ = ["RpcClient", "RemoteError", "MessagingTimeout"]

#: kombu ``ensure`` policy for a request publish
RETRY_POLICY = {"max_retries": 3, "interval_start": 0.1, "interval_step": 0.5, "interval_max": 1.0}

Context = Union[Mapping[str, Any], Any, None]


class RpcClient:
    """Calls and casts on ``topic`` through ``exchange`` (default: the control exchange).

    Parameters:
        connection_or_url: a transport URL (the client then owns and closes the
            connection) or a kombu Connection the caller owns.
        conf(NfpConfig): control exchange, durability and polling settings.
        topic(str): defaults to ``rpc.topic``.
        exchange(str): overrides ``transport.control_exchange`` (oslo ``Target.exchange``).
        version(str): sent as ``version`` (oslo ``Target.version``); omitted when None.
        call_monitor_timeout(float): oslo's ``call_monitor_timeout``: the server
            sends heartbeats every half of it, and a call without one for this
            long fails even before ``timeout``.
    """

    def __init__(self, connection_or_url: Union[str, kombu.Connection], conf: Optional[NfpConfig] = None,
                 topic: Optional[str] = None, exchange: Optional[str] = None, *,
                 version: Optional[str] = None, call_monitor_timeout: Optional[float] = None):
        self.conf = conf or NfpConfig()
        self.topic = topic or self.conf.rpc.topic
        self.version = version
        self.call_monitor_timeout = call_monitor_timeout
        self._owned = isinstance(connection_or_url, str)
        self._conn = (connection_for(connection_or_url, self.conf, confirm_publish=True)
                      if self._owned else connection_or_url)
        self._exchange = topology.control_exchange(self.conf, exchange)
        self._lock = threading.RLock()
        self._producer: Optional[Producer] = None
        self._reply_queue: Optional[kombu.Queue] = None
        self._reply_consumer: Optional[Consumer] = None
        self._replies: dict[str, list[dict]] = {}
        self._waiting: set[str] = set()

    # -- public API ------------------------------------------------------------
    def call(self, ctxt: Context, method: str, timeout: float = 60, server: Optional[str] = None,
             **kwargs: Any) -> Any:
        """Invoke ``method(**kwargs)`` and return its result.

        Raises RemoteError if the server raised, MessagingTimeout if no reply
        came within ``timeout`` s (or no heartbeat within ``call_monitor_timeout``).
        """
        with self._lock:
            reply_q = self._ensure_reply_queue()
            msg_id = uuid.uuid4().hex
            body = codec.encode_request(method, kwargs, _context(ctxt), version=self.version,
                                        msg_id=msg_id, reply_q=reply_q,
                                        monitor_timeout=self.call_monitor_timeout)
            self._waiting.add(msg_id)
            try:
                self._publish(body, server=server, expiration=timeout)
                return self._wait(msg_id, timeout)
            finally:
                self._waiting.discard(msg_id)
                self._replies.pop(msg_id, None)

    def cast(self, ctxt: Context, method: str, server: Optional[str] = None, fanout: bool = False,
             **kwargs: Any) -> None:
        """Send ``method(**kwargs)`` without waiting for a result (to every server if ``fanout``)."""
        body = codec.encode_request(method, kwargs, _context(ctxt), version=self.version)
        with self._lock:
            self._publish(body, server=server, fanout=fanout)

    def close(self) -> None:
        """Release the connection if this client opened it."""
        with self._lock:
            if self._reply_consumer is not None and is_virtual(self._conn):
                # nothing expires queues on the embedded bus: drop late replies
                self._reply_queue(self._conn.default_channel).purge()
            if self._owned:
                self._conn.release()
            self._producer = self._reply_consumer = None

    def __enter__(self) -> "RpcClient":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- publishing --------------------------------------------------------------
    def _publish(self, body: str, server: Optional[str] = None, fanout: bool = False,
                 expiration: Optional[float] = None) -> None:
        if fanout:
            if server:
                raise ValueError("a fanout cast goes to every server; do not name one")
            exchange, routing_key = topology.fanout_exchange(self.topic), ""
            declare = [exchange]
        else:
            target = topology.topic_queue(self.conf, self.topic, server, self._exchange)
            exchange, routing_key = self._exchange, target.routing_key
            # On RabbitMQ the servers declare T and T.<server>; the client only
            # declares the exchange, as oslo does. On kombu's virtual transports
            # (filesystem, memory) an exchange's bindings are a table that exists
            # only once some process declares the queue, and a message routed to
            # no binding is discarded; declaring the target queue and binding
            # here (idempotent) keeps a request sent before the server started.
            declare = [target] if is_virtual(self._conn) else [exchange]
        self._get_producer().publish(
            body, exchange=exchange, routing_key=routing_key,
            content_type="application/json", content_encoding="utf-8",
            expiration=expiration, declare=declare, retry=True, retry_policy=RETRY_POLICY)

    def _get_producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(self._conn.default_channel)
        return self._producer

    # -- replies -------------------------------------------------------------------
    def _ensure_reply_queue(self) -> str:
        if self._reply_consumer is None:
            queue = self._reply_queue or topology.reply_queue()
            self._reply_queue = queue
            self._reply_consumer = Consumer(self._conn.default_channel, [queue], no_ack=True,
                                            on_message=self._on_reply)
            self._reply_consumer.consume()
        return self._reply_queue.name

    def _on_reply(self, message: Any) -> None:
        try:
            reply = codec.decode_reply(message.body, message.headers or {})
        except codec.CodecError:
            return  # not a reply nfp can use; oslo logs and drops these too
        if reply["_msg_id"] in self._waiting:
            self._replies.setdefault(reply["_msg_id"], []).append(reply)

    def _wait(self, msg_id: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        monitor = self.call_monitor_timeout
        monitor_deadline = time.monotonic() + monitor if monitor else None
        result = None
        while True:
            for reply in self._replies.pop(msg_id, []):
                if reply["failure"] is not None:
                    raise _remote_error(reply["failure"])
                if not reply["heartbeat"]:
                    # oslo < 4.0 sent the result first and an empty "ending" second
                    result = reply["result"] if reply["result"] is not None else result
                if reply["ending"]:
                    return result
                if monitor:  # a heartbeat: the server is still working on it
                    monitor_deadline = time.monotonic() + monitor
            now = time.monotonic()
            limit = min(deadline, monitor_deadline) if monitor_deadline else deadline
            if now >= limit:
                raise MessagingTimeout(f"Timed out waiting for a reply to message ID {msg_id}")
            try:
                self._conn.drain_events(timeout=min(limit - now, 1.0))
            except socket.timeout:
                pass


def _context(ctxt: Context) -> dict[str, Any]:
    if ctxt is None:
        return {}
    if hasattr(ctxt, "to_dict"):
        return dict(ctxt.to_dict())
    return dict(ctxt)


def _remote_error(failure: str) -> RemoteError:
    data = codec.parse_failure(failure)
    return RemoteError(data.get("class"), data.get("message"), data.get("tb"),
                       module=data.get("module"), kwargs=data.get("kwargs"))
