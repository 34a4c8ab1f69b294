"""The RPC listener: serves oslo.messaging callers on nfp's topics.

Threads, each with one job (the dramatiq / oslo pattern):

- the **consumer** owns the consuming connection. It declares the oslo
  topology, decodes and checks each delivery, routes it, and is the only
  thread that acks or rejects. Others hand settlements back through a queue
  that it applies between short ``drain_events`` waits;
- the **intake** (:mod:`nfp.rpc.intake`) group-commits mutations;
- the **read pool** (:mod:`nfp.rpc.reads`) answers queries;
- the **publisher** (:mod:`nfp.rpc.publisher`) owns a second connection and
  sends replies, call-monitor heartbeats and notifications.

A mutation is acked only after ``dispatcher.handle_mutations`` has committed
it; reads and refused messages are acked once answered.
"""
from __future__ import annotations

import functools
import logging
import queue
import socket
import threading
import time
from typing import Any, Mapping, Optional

from kombu import Consumer

from nfp.config import NfpConfig
from nfp.rpc import admission, codec, topology
from nfp.rpc.acks import ACK, REJECT, AckTracker
from nfp.rpc.counters import Counters
from nfp.rpc.dedupe import SeenIds
from nfp.rpc.delivery import Delivery
from nfp.rpc.errors import MessageTooLarge, PoisonMessage, describe
from nfp.rpc.intake import DEFAULT_MAX_ATTEMPTS, Intake
from nfp.rpc.publisher import Publisher
from nfp.rpc.ratelimit import RateLimitedLog
from nfp.rpc.reads import ReadPool
from nfp.rpc.transport import AMQP_HEARTBEAT, connection_for, is_virtual
from nfp.rpc.types import Dispatcher, Outcome

LOG = logging.getLogger(__name__)

#: longest blocking wait for a delivery before pending acks are applied
DRAIN_TIMEOUT = 0.02
#: during a burst, mutations reach the intake in groups at most this far apart (seconds)
HANDOFF_LINGER = 0.002
#: reconnect backoff bounds, seconds
RECONNECT_START = 0.5
RECONNECT_MAX = 15.0
#: seconds between AMQP heartbeat checks
HEARTBEAT_CHECK_EVERY = 1.0


class RpcListener:
    """Consumes ``topics`` the way an oslo RPC server does and serves them with
    ``dispatcher``.

    Parameters:
        conf(NfpConfig): transport, rpc and prefetch settings.
        dispatcher(Dispatcher): serves requests (:mod:`nfp.rpc.types`).
        topics(list[str]): defaults to ``rpc.topic`` and ``rpc.notification_topic``.
        url(str): transport URL; defaults to ``conf.transport_url``.
        max_attempts(int): failures of one mutation committed alone before it is dropped.
    """

    def __init__(self, conf: NfpConfig, dispatcher: Dispatcher, topics: Optional[list[str]] = None,
                 *, url: Optional[str] = None, max_attempts: int = DEFAULT_MAX_ATTEMPTS):
        self.conf = conf
        self.dispatcher = dispatcher
        self.topics = list(topics or [conf.rpc.topic, conf.rpc.notification_topic])
        self.url = url or conf.transport_url
        self.counters = Counters()
        self.publisher = Publisher(self.url, conf, self.counters)
        self.intake = Intake(dispatcher, self._settle, self._drop, conf.transport.prefetch,
                             max_attempts, self.counters)
        self.reads = ReadPool(dispatcher, self._settle, conf.rpc.read_threads, self.counters)
        self._settlements: queue.SimpleQueue = queue.SimpleQueue()
        self._acks = AckTracker(multiple=False)  # replaced per connection
        self._handoff: list[Delivery] = []  # consumer thread only
        self._handed_off_at = 0.0
        self._seen = SeenIds()
        self._generation = 0
        self._in_flight = 0  # consumer thread only
        self._ready = threading.Event()
        self._stop_consuming = threading.Event()
        self._abandon = threading.Event()
        self._delivering_stopped = threading.Event()
        self._recoverable: tuple = ()
        self._served: Optional[list[topology.ServerQueues]] = None
        #: the current consuming connection (owned by the consumer thread; for diagnostics)
        self.consumer_connection = None
        self._thread: Optional[threading.Thread] = None
        self._ratelog = RateLimitedLog(LOG)

    # -- lifecycle ---------------------------------------------------------
    def start(self, wait: Optional[float] = 30.0) -> bool:
        """Start all threads; wait up to ``wait`` s until the queues are declared
        and consumed. Returns whether that happened (if not, the listener keeps
        trying to connect in the background)."""
        self.publisher.start()
        self.intake.start()
        self.reads.start()
        self._thread = threading.Thread(target=self._run, name="nfp-rpc-consumer", daemon=True)
        self._thread.start()
        return self._ready.wait(wait) if wait else self._ready.is_set()

    @property
    def ready(self) -> bool:
        """True once the topology is declared and consumed on the current connection."""
        return self._ready.is_set()

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful stop, in this order:

        1. stop consuming, so the broker sends nothing new;
        2. commit and answer what was already delivered (intake, reads);
        3. apply the last acks, close the consuming connection (anything not
           acked by then returns to the queue), and remove the private fanout queue;
        4. publish the remaining replies and close the publishing connection.
        """
        deadline = time.monotonic() + timeout
        self._stop_consuming.set()
        if self._thread is None:  # never started
            self._delivering_stopped.set()
        # the intake and read queues may only be closed once the consumer can
        # no longer add to them
        self._delivering_stopped.wait(max(_left(deadline), 1.0))
        finished = self.intake.stop(_left(deadline))
        finished = self.reads.stop(_left(deadline)) and finished
        if not finished:
            LOG.warning("RPC listener stop: requests still running after %.1f s stay "
                        "unacked and will be redelivered.", timeout)
            self._abandon.set()
        if self._thread is not None:
            self._thread.join(max(_left(deadline), 1.0))
            if self._thread.is_alive():
                self._abandon.set()
                self._thread.join(2.0)
        self.publisher.stop(max(_left(deadline), 1.0))

    def join(self, timeout: Optional[float] = None) -> None:
        """Block until the consumer thread has finished (after :meth:`stop`)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def publish_notification(self, event_type: str, payload: Any, priority: str = "INFO",
                             context: Optional[Mapping[str, Any]] = None) -> None:
        """Publish an oslo notification (thread-safe; see :class:`Publisher`)."""
        self.publisher.publish_notification(event_type, payload, priority, context)

    # -- consumer thread: connection management --------------------------------
    def _run(self) -> None:
        try:
            self._connect_and_serve()
        finally:
            self._delivering_stopped.set()

    def _connect_and_serve(self) -> None:
        attempt = 0
        while not self._stop_consuming.is_set():
            conn = connection_for(self.url, self.conf, heartbeat=AMQP_HEARTBEAT)
            try:
                conn.connect()
                attempt = 0
                self._serve(conn)
                return
            except Exception as exc:  # connection lost or declare refused: retry
                self._ready.clear()
                attempt += 1
                self.counters.add("reconnects")
                delay = min(RECONNECT_MAX, RECONNECT_START * 2 ** (attempt - 1))
                self._ratelog.log(logging.ERROR, "consume", "RPC consumer connection failed (%s); "
                                  "unacked requests return to the queue; reconnecting in %.1f s.",
                                  describe(exc), delay)
                self._stop_consuming.wait(delay)
            finally:
                _release(conn)

    def _serve(self, conn) -> None:
        self.consumer_connection = conn
        self._recoverable = conn.connection_errors + conn.channel_errors
        # a new generation before the first basic.consume: deliveries already
        # arrive while later consumers wait for their consume-ok
        self._generation += 1
        self._acks = AckTracker(multiple=not is_virtual(conn))
        channel = conn.channel()
        if self._served is None:  # the same names on every reconnect, as oslo does
            self._served = [topology.server_queues(self.conf, topic, stable_fanout=is_virtual(conn))
                            for topic in self.topics]
        served = self._served
        consumers = []
        for group in served:
            for q in group.queues:
                q(channel).declare()
            consumer = Consumer(channel, group.queues, no_ack=False, auto_declare=False,
                                prefetch_count=self.conf.transport.prefetch,
                                on_message=functools.partial(self._on_message, group.topic))
            consumer.consume()
            consumers.append(consumer)
        self._ready.set()
        self._ratelog.clear("consume")
        LOG.info("RPC listener consuming %s on exchange %s as server %s.",
                 ", ".join(self.topics), self.conf.transport.control_exchange, self.conf.rpc.host)
        self._consume(conn)
        self._drain_and_close(conn, consumers, served)

    def _consume(self, conn) -> None:
        next_check = time.monotonic() + HEARTBEAT_CHECK_EVERY
        while not self._stop_consuming.is_set():
            self._apply_settlements()
            try:
                conn.drain_events(timeout=HANDOFF_LINGER if self._handoff else DRAIN_TIMEOUT)
            except socket.timeout:
                self._hand_off()  # the burst is over
            if self._handoff and time.monotonic() - self._handed_off_at >= HANDOFF_LINGER:
                self._hand_off()
            if conn.heartbeat and time.monotonic() >= next_check:
                conn.heartbeat_check()
                next_check = time.monotonic() + HEARTBEAT_CHECK_EVERY
        self._hand_off()

    def _hand_off(self) -> None:
        """Pass the mutations collected so far to the intake in one piece."""
        if self._handoff:
            self.intake.put_many(self._handoff)
            self._handoff = []
        self._handed_off_at = time.monotonic()

    def _drain_and_close(self, conn, consumers: list, served: list) -> None:
        for consumer in consumers:
            consumer.cancel()
        self._delivering_stopped.set()
        while self._in_flight > 0 and not self._abandon.is_set():
            self._apply_settlements(wait=0.05)
        self._apply_settlements()
        for group in served:
            try:
                fanout = group.fanout(conn.default_channel)
                fanout.purge()
                fanout.delete()
            except Exception:  # it expires on its own on RabbitMQ
                LOG.debug("Could not delete fanout queue %s", group.fanout.name, exc_info=True)
        self._ready.clear()

    # -- consumer thread: deliveries -----------------------------------------------
    def _on_message(self, topic: str, message) -> None:
        try:
            self._accept(topic, message)
        except self._recoverable:
            raise  # the connection is gone: reconnect
        except Exception as exc:  # a bug here must not turn into a redelivery loop
            LOG.exception("Could not handle a message on %s (%s); it is dropped.",
                          topic, describe(exc))
            self.counters.add("rejected")
            message.reject(requeue=False)

    def _accept(self, topic: str, message) -> None:
        self.counters.add("received")
        # kombu's Message has already inflated a compressed body
        body = message.body
        headers = {k: v for k, v in (message.headers or {}).items() if k != "compression"}
        limit = self.conf.rpc.max_message_bytes
        if len(body) > limit:
            exc = MessageTooLarge(len(body), limit)
            self._refuse(message, codec.serialize_failure(exc, with_traceback=False),
                         codec.reply_address(body, headers), f"request on {topic}: {exc}")
            return
        try:
            request = codec.decode_request(body, headers, topic)
        except codec.CodecError as exc:
            self._refuse(message, codec.serialize_failure(exc, with_traceback=False),
                         codec.reply_address(body, headers), f"malformed request on {topic}: {exc}")
            return
        if self._seen.check_and_add(request.unique_id):
            self.counters.add("duplicates")
            self._ack(message)
            return
        refusal = admission.refusal(self.dispatcher, request)
        if refusal is not None:
            cls, module, text = refusal
            address = (request.msg_id, request.reply_q) if request.is_call else None
            self._refuse(message, codec.failure_json(cls, module, text), address,
                         f"{request.method} on {topic}: {text}")
            return
        self._route(Delivery(request, message, self._generation))

    def _route(self, delivery: Delivery) -> None:
        request = delivery.request
        self.publisher.track(request)
        self._acks.add(delivery.message)
        self._in_flight += 1
        try:
            is_read = self.dispatcher.is_read(request.topic, request.method)
        except Exception:  # a broken classifier must not lose the message: commit it
            is_read = False
        if is_read:
            self.reads.put(delivery)
            return
        # Waking the intake thread for every message of a burst costs more than
        # the message (GIL hand-offs); within a burst, mutations are passed on
        # together at most HANDOFF_LINGER apart. An idle listener passes on at once.
        self._handoff.append(delivery)
        if time.monotonic() - self._handed_off_at >= HANDOFF_LINGER:
            self._hand_off()

    def _refuse(self, message, failure: str, address: Optional[tuple[str, str]], why: str) -> None:
        LOG.warning("Refused %s; %s", why,
                    "the caller gets the error." if address else "it is dropped (no reply address).")
        if address is not None:
            self.publisher.reply_failure(address[0], address[1], failure)
        self.counters.add("rejected")
        message.reject(requeue=False)

    def _ack(self, message) -> None:
        message.ack()
        self.counters.add("acked")

    # -- settlements: any thread hands over, the consumer thread applies ---------------
    def _settle(self, delivery: Delivery, outcome: Outcome) -> None:
        request = delivery.request
        self.publisher.reply(request, outcome)
        if outcome.error is not None and not request.is_call:
            LOG.error("Cast %s (unique_id %s) failed: %s.", request.method, request.unique_id,
                      describe(outcome.error))
        self._settlements.put((ACK, delivery))

    def _drop(self, delivery: Delivery, exc: BaseException) -> None:
        request = delivery.request
        poison = PoisonMessage(request.method, delivery.attempts, exc)
        LOG.error("Dropped %s (msg_id %s, unique_id %s): %s", request.method, request.msg_id,
                  request.unique_id, poison)
        self.publisher.reply(request, Outcome(error=poison))
        self._settlements.put((REJECT, delivery))

    def _apply_settlements(self, wait: Optional[float] = None) -> None:
        settlements = []
        if wait and self._settlements.empty():
            try:
                settlements.append(self._settlements.get(timeout=wait))
            except queue.Empty:
                return
        while not self._settlements.empty():  # this thread is the only reader
            settlements.append(self._settlements.get_nowait())
        if not settlements:
            return
        for action, delivery in settlements:
            self._in_flight -= 1
            # a delivery of an earlier connection: the broker redelivers it and dedupe skips it
            if delivery.generation == self._generation:
                self._acks.mark(delivery.message, action)
        acked, rejected = self._acks.flush()
        if acked:
            self.counters.add("acked", acked)
        if rejected:
            self.counters.add("rejected", rejected)


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def _release(conn) -> None:
    try:
        conn.release()
    except Exception:  # closing a broken connection may raise again
        LOG.debug("Error while closing the consumer connection", exc_info=True)
