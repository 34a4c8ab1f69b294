"""Exchanges and queues, named and declared exactly as oslo.messaging does.

An oslo RPC server for topic ``T`` on host ``S`` consumes three queues
(``reference/messaging.md`` A.1): ``T`` and ``T.S`` on the topic exchange
``<control_exchange>``, and a private ``T_fanout_<uuid4hex>`` on the fanout
exchange ``T_fanout``. RabbitMQ refuses a re-declaration with other arguments
(``PRECONDITION_FAILED``), so durability and queue type mirror the callers'
oslo options ``amqp_durable_queues`` and ``rabbit_quorum_queue`` through
``transport.durable_queues`` and ``transport.quorum_queues``.
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Optional

from kombu import Exchange, Queue

from nfp.config import NfpConfig

#: oslo ``rabbit_transient_queues_ttl`` (1800 s) for reply and fanout queues, in ms
TRANSIENT_QUEUE_TTL_MS = 1_800_000


def durable(conf: NfpConfig) -> bool:
    """oslo: quorum queues are always durable, else ``amqp_durable_queues``."""
    return conf.transport.durable_queues or conf.transport.quorum_queues


def durability_warning(conf: NfpConfig) -> Optional[str]:
    """What a broker restart loses with this configuration, if anything: on
    RabbitMQ with non-durable queues every queued request (the queues and their
    messages vanish with the broker). None for durable or quorum queues and for
    the filesystem bus (its messages are files)."""
    url = conf.transport_url
    if durable(conf) or not url.startswith(("amqp", "rabbit", "pyamqp")):
        return None
    return ("transport.durable_queues and transport.quorum_queues are off: the RPC queues are "
            "not durable, so a RabbitMQ restart loses every request still queued there "
            "(accepted requests are safe in the database). This mirrors the callers' oslo "
            "defaults; set amqp_durable_queues or rabbit_quorum_queue on both sides to keep "
            "them (see README, 'Durable queues').")


def queue_arguments(conf: NfpConfig) -> dict:
    """Arguments of the topic and server queues (no TTL: they outlive servers)."""
    return {"x-queue-type": "quorum"} if conf.transport.quorum_queues else {}


def control_exchange(conf: NfpConfig, name: Optional[str] = None) -> Exchange:
    """The topic exchange ``<control_exchange>`` (``openstack`` by default)."""
    return Exchange(name or conf.transport.control_exchange, type="topic",
                    durable=durable(conf), auto_delete=False)


def fanout_exchange(topic: str) -> Exchange:
    """``<topic>_fanout``: non-durable and auto-deleted, as oslo declares it."""
    return Exchange(f"{topic}_fanout", type="fanout", durable=False, auto_delete=True)


def topic_queue(conf: NfpConfig, topic: str, server: Optional[str] = None,
                exchange: Optional[Exchange] = None) -> Queue:
    """``T`` (competing consumers) or ``T.<server>``, bound with the same key."""
    name = f"{topic}.{server}" if server else topic
    return Queue(name, exchange=exchange or control_exchange(conf), routing_key=name,
                 durable=durable(conf), auto_delete=False,
                 queue_arguments=queue_arguments(conf) or None)


def fanout_queue(topic: str, suffix: Optional[str] = None) -> Queue:
    """The server's private copy of fanout casts, expiring 30 min after its owner goes."""
    name = f"{topic}_fanout_{suffix or uuid.uuid4().hex}"
    return Queue(name, exchange=fanout_exchange(topic), routing_key=topic,
                 durable=False, auto_delete=False,
                 queue_arguments={"x-expires": TRANSIENT_QUEUE_TTL_MS})


def reply_queue(name: Optional[str] = None) -> Queue:
    """A client's ``reply_<uuid4hex>`` on the default exchange (no binding)."""
    return Queue(name or f"reply_{uuid.uuid4().hex}", exchange=Exchange(""),
                 routing_key=name, durable=False, auto_delete=False,
                 queue_arguments={"x-expires": TRANSIENT_QUEUE_TTL_MS})


def notification_queue(conf: NfpConfig, routing_key: str) -> Queue:
    """The queue oslo's notifier declares beside each notification it publishes,
    so that notifications sent before any listener exists are kept."""
    exchange = control_exchange(conf)
    return Queue(routing_key, exchange=exchange, routing_key=routing_key,
                 durable=exchange.durable, auto_delete=False,
                 queue_arguments=queue_arguments(conf) or None)


@dataclass
class ServerQueues:
    """What one server consumes for one topic."""

    topic: str
    queues: list[Queue]

    @property
    def fanout(self) -> Queue:
        return self.queues[-1]


def server_queues(conf: NfpConfig, topic: str, *, stable_fanout: bool = False) -> ServerQueues:
    """``T``, ``T.<host>`` and the fanout queue for ``topic``.

    ``stable_fanout`` names the fanout queue after the host instead of a random
    id: on the filesystem bus nothing expires queues, so a restarted daemon must
    reuse its queue rather than leave an orphan that collects every fanout.
    """
    host = conf.rpc.host
    suffix = _safe(host) if stable_fanout else None
    return ServerQueues(topic, [topic_queue(conf, topic), topic_queue(conf, topic, host),
                                fanout_queue(topic, suffix)])


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)
