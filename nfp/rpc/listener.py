"""The RPC listener: serves oslo.messaging callers on nfp's topics.

Threads, each with one job (the dramatiq / oslo pattern):

- the **consumer** owns the consuming connection. It declares the oslo
  topology, decodes and checks each delivery, routes it, and is the only
  thread that acks or rejects. Others hand settlements back through a queue
  that it applies between short ``drain_events`` waits. Reconnection is
  kombu's: ``ConsumerMixin`` restarts consuming after a connection error and
  ``Connection.ensure_connection`` waits for the broker;
- the **intake** (:mod:`nfp.rpc.intake`) group-commits mutations;
- the **read pool** (:mod:`nfp.rpc.reads`) answers queries; the few that the
  dispatcher ``serves_inline`` (one bounded statement) the consumer answers itself;
- the **publisher** (:mod:`nfp.rpc.publisher`) owns a second connection and
  sends replies and call-monitor heartbeats;
- the **outbox relay** (:mod:`nfp.rpc.relay`), given a database, owns a third
  and publishes the notifications committed in the outbox table.

A mutation is acked only after ``dispatcher.handle_mutations`` has committed
it; reads and refused messages are acked once answered.

Given ``on_backlog``, the consumer also counts, every ``BACKLOG_CHECK_EVERY``
s, the requests waiting to be committed: those ready on the broker's shared
topic queues (a passive declare) plus those delivered and not yet settled
here. The orchestrator holds its workers back while that backlog is large
(:mod:`nfp.engine.intake_priority`).
"""
from __future__ import annotations

import contextlib
import functools
import logging
import socket
import threading
import time
from typing import Any, Callable, Mapping, Optional

from kombu.mixins import ConsumerMixin

from nfp import backoff
from nfp.config import NfpConfig
from nfp.rpc import admission, codec, inflate, refusals, topology
from nfp.rpc.acks import ACK, REJECT, Settlements
from nfp.rpc.counters import Counters
from nfp.rpc.dedupe import SeenIds
from nfp.rpc.delivery import Delivery
from nfp.rpc.errors import DataRefused, PoisonMessage, describe, safe
from nfp.rpc.intake import DEFAULT_MAX_ATTEMPTS, Intake
from nfp.rpc.publisher import Publisher
from nfp.rpc.ratelimit import RateLimitedLog
from nfp.rpc.reads import ReadPool
from nfp.rpc.relay import Relay
from nfp.rpc.transport import AMQP_HEARTBEAT, connection_for, is_virtual
from nfp.rpc.types import Dispatcher, Reply

LOG = logging.getLogger(__name__)

#: longest blocking wait for a delivery before pending acks are applied
DRAIN_TIMEOUT = 0.02
#: during a burst, mutations reach the intake in groups at most this far apart (seconds)
HANDOFF_LINGER = 0.002
#: kombu's reconnect pauses: the first, the step added per retry and the ceiling, seconds
RECONNECT_START = 0.5
RECONNECT_MAX = 15.0
#: seconds between AMQP heartbeat checks
HEARTBEAT_CHECK_EVERY = 1.0
#: seconds between counts of the requests waiting on the broker (``on_backlog``)
BACKLOG_CHECK_EVERY = 0.25


class RpcListener(ConsumerMixin):
    """Consumes ``topics`` the way an oslo RPC server does and serves them with
    ``dispatcher``.

    Parameters:
        conf(NfpConfig): transport, rpc and prefetch settings.
        dispatcher(Dispatcher): serves requests (:mod:`nfp.rpc.types`).
        topics(list[str]): defaults to ``rpc.topic`` and ``rpc.notification_topic``.
        url(str): transport URL; defaults to ``conf.transport_url``.
        max_attempts(int): failures of one mutation committed alone before it is dropped.
        sessionmaker: the database of the notification outbox (:mod:`nfp.outbox`);
            without one, notifications are published directly and a broker
            outage loses them.
        on_backlog(callable): ``(waiting)``, called on the consumer thread every
            ``BACKLOG_CHECK_EVERY`` s with the requests waiting to be committed.
    """

    def __init__(self, conf: NfpConfig, dispatcher: Dispatcher, topics: Optional[list[str]] = None,
                 *, url: Optional[str] = None, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
                 sessionmaker=None, on_backlog: Optional[Callable[[int], None]] = None):
        self.conf = conf
        self.dispatcher = dispatcher
        self.on_backlog = on_backlog
        self._received_at_count = 0  # deliveries received at the last backlog count
        self.topics = list(topics or [conf.rpc.topic, conf.rpc.notification_topic])
        self.url = url or conf.transport_url
        self.counters = Counters()
        self.publisher = Publisher(self.url, conf, self.counters)
        self.relay = Relay(sessionmaker, self.url, conf, self.counters) if sessionmaker else None
        self.intake = Intake(dispatcher, self._settle, self._drop, conf.transport.prefetch,
                             max_attempts, self.counters)
        self.reads = ReadPool(dispatcher, self._settle, conf.rpc.read_threads, self.counters)
        #: optional in the Dispatcher protocol: without it every read goes to the pool
        self._serves_inline = getattr(dispatcher, "serves_inline", lambda topic, method: False)
        self._settlements = Settlements(self.counters)
        self._handoff: list[Delivery] = []  # consumer thread only
        self._handed_off_at = 0.0
        self._seen = SeenIds()
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
        if self.relay is not None:
            self.relay.start()
        self.intake.start()
        self.reads.start()
        self._thread = threading.Thread(target=self._run, name="nfp-rpc-consumer", daemon=True)
        self._thread.start()
        return self._ready.wait(wait) if wait else self._ready.is_set()

    @property
    def ready(self) -> bool:
        """True once the topology is declared and consumed on the current connection."""
        return self._ready.is_set()

    def stop(self, timeout: float = 30.0, relay: bool = True) -> None:
        """Graceful stop, in this order:

        1. stop consuming, so the broker sends nothing new;
        2. commit and answer what was already delivered (intake, reads);
        3. apply the last acks, close the consuming connection (anything not
           acked by then returns to the queue), and remove the private fanout queue;
        4. publish the remaining replies and close the publishing connections
           (notifications not yet published stay in the outbox). With
           ``relay=False`` the outbox relay runs on, for the workers' drain:
           stop it later with :meth:`stop_relay`.
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
        if relay:
            self.stop_relay(max(_left(deadline), 1.0))

    def stop_relay(self, timeout: float, drain: bool = False) -> None:
        """Stop the outbox relay; with ``drain``, after publishing what the outbox
        holds (at most ``timeout`` s)."""
        if self.relay is not None:
            self.relay.stop(timeout, drain=drain)

    def join(self, timeout: Optional[float] = None) -> None:
        """Block until the consumer thread has finished (after :meth:`stop`)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def publish_notification(self, event_type: str, payload: Any, priority: str = "INFO",
                             context: Optional[Mapping[str, Any]] = None) -> None:
        """Publish an oslo notification; thread-safe. With an outbox, through it
        (:meth:`Relay.notify`), unless it carries a caller ``context`` (tokens are
        never stored)."""
        if self.relay is None or context is not None:
            self.publisher.publish_notification(event_type, payload, priority, context)
        else:
            self.relay.notify(event_type, payload, priority)

    # -- consumer thread: connection management (kombu's ConsumerMixin) -------------
    # kombu reconnects: ``ConsumerMixin.run`` restarts ``consume`` after a
    # connection or channel error, and ``establish_connection`` below waits for
    # the broker with ``Connection.ensure_connection``. The hooks only keep the
    # listener's own state (ack generation, readiness, counters) in step.
    @property
    def should_stop(self) -> bool:  # read by ConsumerMixin's loops
        return self._stop_consuming.is_set()

    def _run(self) -> None:
        # never connected: ConsumerMixin reads its error classes, and
        # establish_connection opens a fresh connection for every attempt
        self.connection = connection_for(self.url, self.conf, heartbeat=AMQP_HEARTBEAT)
        # kombu inflates compressed bodies in this thread, before _on_message:
        # cap that at the message size limit (see nfp.rpc.inflate)
        inflate.install()
        inflate.limit_this_thread(self.conf.rpc.max_message_bytes)
        failures = 0
        try:
            while not self.should_stop:
                try:
                    self.run()
                except _Stopping:
                    return
                except Exception as exc:  # not a broker error: a bug must not end intake
                    self._ready.clear()
                    failures += 1
                    pause = backoff.delay(failures, RECONNECT_START, RECONNECT_MAX)
                    LOG.exception("RPC consumer failed (%s); unacked requests return to the "
                                  "queue; starting it again in %.1f s.", describe(exc), pause)
                    self._stop_consuming.wait(pause)
        finally:
            self._delivering_stopped.set()
            self.connection.release()

    @contextlib.contextmanager
    def establish_connection(self):
        """A connected consuming connection; kombu retries until the broker answers
        (or :meth:`stop` is called), pausing ``RECONNECT_START`` growing to ``RECONNECT_MAX``."""
        self._ready.clear()
        if self._settlements.generation:
            LOG.warning("RPC consumer lost its broker connection; its unacked requests return "
                        "to the queue and are redelivered; reconnecting.")
        with connection_for(self.url, self.conf, heartbeat=AMQP_HEARTBEAT) as conn:
            conn.ensure_connection(errback=self.on_connection_error, max_retries=None,
                                   interval_start=RECONNECT_START, interval_step=RECONNECT_START,
                                   interval_max=RECONNECT_MAX, callback=self._abort_if_stopping)
            self.consumer_connection = conn
            yield conn

    def _abort_if_stopping(self) -> None:
        if self.should_stop:
            raise _Stopping()

    def on_connection_error(self, exc, interval) -> None:
        self._ratelog.log(logging.ERROR, "consume", "RPC consumer cannot reach the broker (%s); "
                          "unacked requests stay queued there; retrying in %.1f s.",
                          describe(exc), interval)

    def on_connection_revived(self) -> None:
        conn = self.consumer_connection
        if self._settlements.generation:
            self.counters.add("reconnects")
        self._recoverable = conn.connection_errors + conn.channel_errors
        # a new generation before the first basic.consume: deliveries already
        # arrive while later consumers wait for their consume-ok; acks of the
        # lost connection's deliveries are skipped (the broker redelivers those)
        self._settlements.new_connection(multiple=not is_virtual(conn))
        if self._served is None:  # the same names on every reconnect, as oslo does
            self._served = [topology.server_queues(self.conf, topic, stable_fanout=is_virtual(conn))
                            for topic in self.topics]

    def get_consumers(self, Consumer, channel) -> list:
        consumers = []
        for group in self._served:
            for q in group.queues:
                q(channel).declare()
            consumers.append(Consumer(group.queues, no_ack=False, auto_declare=False,
                                      prefetch_count=self.conf.transport.prefetch,
                                      on_message=functools.partial(self._on_message, group.topic),
                                      on_decode_error=functools.partial(self._on_decode_error,
                                                                        group.topic)))
        if self.on_backlog is not None:
            # before the first basic.consume: a backlog holds the workers back
            # from the first delivery on, not from the consumer loop's first turn;
            # nothing is consumed yet, so the broker is always asked
            self._count_backlog(channel, ask_broker=True)
        return consumers

    def on_consume_ready(self, connection, channel, consumers, **kwargs) -> None:
        self._ready.set()
        self._ratelog.clear("consume")
        LOG.info("RPC listener consuming %s on exchange %s as server %s.",
                 ", ".join(self.topics), self.conf.transport.control_exchange, self.conf.rpc.host)

    def consume(self, *args, **kwargs):
        """ConsumerMixin's consume with nfp's own drain loop: acks are applied
        between short drains and mutations are handed to the intake in groups."""
        with self.consumer_context() as (conn, channel, _consumers):
            self._consume(conn, channel)
            yield

    def _consume(self, conn, channel) -> None:
        next_check = time.monotonic() + HEARTBEAT_CHECK_EVERY
        next_count = time.monotonic()
        while not self.should_stop:
            if self.on_backlog is not None and time.monotonic() >= next_count:
                self._count_backlog(channel)
                next_count = time.monotonic() + BACKLOG_CHECK_EVERY
            self._settlements.apply()
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

    def _count_backlog(self, channel, ask_broker: bool = False) -> None:
        """Report the requests waiting to be committed: ready on the shared topic
        queues (other hosts' consumers compete for those) plus delivered here and
        not yet settled. Deliveries that arrive while the broker answers are
        routed as usual (py-amqp dispatches them during the wait). An idle
        listener is not asked about: with nothing delivered since the last count
        and nothing in flight, the prefetch window is open and empty, so the
        broker has nothing ready for it."""
        waiting = self._settlements.in_flight
        received = self.counters["received"]
        idle = waiting == 0 and received == self._received_at_count
        self._received_at_count = received
        if idle and not ask_broker:
            self.on_backlog(0)
            return
        try:
            for group in self._served:
                waiting += group.queues[0](channel).queue_declare(passive=True).message_count
        except self._recoverable:
            raise  # the connection is gone: reconnect
        except Exception as exc:  # a count is advice: intake must not stop for it
            self._ratelog.log(logging.WARNING, "backlog", "Could not count the requests waiting "
                              "on the broker (%s); counting only those delivered here.",
                              describe(exc))
        self.on_backlog(waiting)

    def _hand_off(self) -> None:
        """Pass the mutations collected so far to the intake in one piece."""
        if self._handoff:
            self.intake.put_many(self._handoff)
            self._handoff = []
        self._handed_off_at = time.monotonic()

    def on_consume_end(self, conn, channel) -> None:
        """A stop (not a lost connection): the consumers are cancelled; settle
        what is in flight, then remove the private fanout queues."""
        self._delivering_stopped.set()
        while self._settlements.in_flight > 0 and not self._abandon.is_set():
            self._settlements.apply(wait=0.05)
        self._settlements.apply()
        for group in self._served:
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
                          safe(topic), describe(exc))
            address = refusals.internal_error(message, exc, self.conf.rpc.max_message_bytes)
            if address is not None:
                self.publisher.reply_failure(*address, codec.serialize_failure(
                    exc, with_traceback=False))
            self.counters.add("rejected")
            message.reject(requeue=False)

    def _on_decode_error(self, topic: str, message, exc: BaseException) -> None:
        """kombu could not build the message: a compressed body that inflates past
        the limit (:mod:`nfp.rpc.inflate`), an unknown codec or a corrupt stream.
        It is refused once; a caller whose address survives gets the error."""
        self.counters.add("received")
        self._refuse(message, *refusals.decode_error(topic, message, exc))

    def _accept(self, topic: str, message) -> None:
        self.counters.add("received")
        request, refused = refusals.decode(topic, message, self.conf.rpc.max_message_bytes)
        if refused is not None:
            self._refuse(message, *refused)
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
        self._route(Delivery(request, message, self._settlements.generation))

    def _route(self, delivery: Delivery) -> None:
        request = delivery.request
        self.publisher.track(request)
        self._settlements.track(delivery.message)
        try:
            is_read = self.dispatcher.is_read(request.topic, request.method)
        except Exception:  # a broken classifier must not lose the message: commit it
            is_read = False
        if is_read:
            if self._serves_inline(request.topic, request.method):
                self._settle(delivery, self.reads.serve_now(delivery))
            else:
                self.reads.put(delivery)
            return
        # Waking the intake thread for every message of a burst costs more than
        # the message (GIL hand-offs); within a burst, mutations are passed on
        # together at most HANDOFF_LINGER apart. An idle listener passes on at once.
        self._handoff.append(delivery)
        if time.monotonic() - self._handed_off_at >= HANDOFF_LINGER:
            self._hand_off()

    def _refuse(self, message, failure: str, address: Optional[tuple[str, str]], why: str) -> None:
        LOG.warning("Refused %s; %s", safe(why, 400),
                    "the caller gets the error." if address else "it is dropped (no reply address).")
        if address is not None:
            self.publisher.reply_failure(address[0], address[1], failure)
        self.counters.add("rejected")
        message.reject(requeue=False)

    def _ack(self, message) -> None:
        message.ack()
        self.counters.add("acked")

    # -- settlements: any thread hands over, the consumer thread applies ---------------
    def _settle(self, delivery: Delivery, outcome: Reply) -> None:
        request = delivery.request
        self.publisher.reply(request, outcome)
        if outcome.error is not None and not request.is_call:
            LOG.error("Cast %s (unique_id %s) failed: %s.", safe(request.method),
                      safe(request.unique_id), describe(outcome.error))
        self._settlements.put(ACK, delivery)

    def _drop(self, delivery: Delivery, exc: BaseException) -> None:
        request = delivery.request
        poison = exc if isinstance(exc, DataRefused) else \
            PoisonMessage(request.method, delivery.attempts, exc)
        LOG.error("Dropped %s (msg_id %s, unique_id %s): %s", safe(request.method),
                  safe(request.msg_id), safe(request.unique_id), safe(str(poison), 400))
        self.publisher.reply(request, Reply(error=poison))
        self._settlements.put(REJECT, delivery)


class _Stopping(Exception):
    """Raised from kombu's reconnect wait when :meth:`RpcListener.stop` is called."""


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())

