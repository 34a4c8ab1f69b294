"""Broker connections: one kombu ``Connection`` per URL.

- ``rabbit://`` (oslo's spelling, with oslo's comma-separated host list) and
  ``amqp://`` go to RabbitMQ through py-amqp, with publisher confirms when asked.
- ``filesystem://<absolute path>`` is the embedded, broker-less bus: kombu's
  filesystem transport with its data and control folders under that path, so
  every process on the host that opens the same path shares the queues.
- ``memory://`` is kombu's in-process transport, for unit tests.
"""
from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path
from queue import Empty
from typing import Any, Optional
from urllib.parse import urlsplit

import kombu
from kombu.exceptions import ChannelError
from kombu.transport import filesystem, virtual
from kombu.utils.json import dumps, loads

from nfp.config import NfpConfig

#: AMQP heartbeat in seconds for connections whose owner keeps reading the socket
#: and calls ``heartbeat_check`` (the listener's consumer); 0 disables it
AMQP_HEARTBEAT = 60


class TransportURLError(ValueError):
    """The transport URL cannot be used; the message says why."""


class _FilesystemChannel(filesystem.Channel):
    """kombu's filesystem channel with atomic writes and claims.

    kombu writes a message in place (a reader can open it while it is still
    empty) and claims one by ``shutil.move`` into the system temp directory,
    which across filesystems is a copy then an unlink, so two processes can
    both claim it. Here a message is written under a temporary name and renamed
    into the data folder, and a claim is ``os.rename`` into a folder on the same
    filesystem: only the process whose rename succeeded reads and deletes it.
    """

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        name = f"{int(round(time.monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        staging = os.path.join(self.transport_options["staging_folder"], name)
        try:
            with open(staging, "wb") as f:
                f.write(dumps(payload).encode("utf-8"))
            os.rename(staging, os.path.join(self.data_folder_out, name))
        except OSError as exc:
            raise ChannelError(f"Cannot add message {name!r} to the bus") from exc

    def _get(self, queue: str) -> Any:
        wanted = f"{queue}.msg"
        data, claimed = self.data_folder_in, self.transport_options["claim_folder"]
        for name in sorted(os.listdir(data)):
            if name.partition(".")[2] != wanted:
                continue
            target = os.path.join(claimed, name)
            try:
                os.rename(os.path.join(data, name), target)
            except OSError:
                continue  # another consumer claimed it first
            try:
                with open(target, "rb") as f:
                    payload = f.read()
            finally:
                os.unlink(target)
            return loads(payload.decode("utf-8"))
        raise Empty()

    def queue_bind(self, queue: str, exchange: Optional[str] = None, routing_key: str = "",
                   arguments: Optional[dict] = None, **kwargs: Any) -> None:
        super().queue_bind(queue, exchange, routing_key, arguments, **kwargs)
        # kombu skips the file when this process's state already lists the
        # binding, even while another thread is still writing it, and a publish
        # in between is routed nowhere. The file is the shared truth, and adding
        # a binding that is already there is a no-op, so write it every time.
        exchange = exchange or "amq.direct"
        meta = self.typeof(exchange).prepare_bind(queue, exchange, routing_key, arguments)
        self._queue_bind(exchange, *meta)

    def get_table(self, exchange: str) -> list:
        # a binding file being created is empty for an instant: read it again
        for _ in range(50):
            try:
                return super().get_table(exchange)
            except ValueError:
                time.sleep(0.002)
        return super().get_table(exchange)


class FilesystemTransport(filesystem.Transport):
    """The embedded bus (see :class:`_FilesystemChannel`).

    kombu keeps one broker state (declared exchanges and bindings) per process
    for all filesystem buses, and skips writing a binding to a bus's control
    folder when that state already has it, so a second bus in the same process
    (tests, a harness beside a daemon) silently lacks bindings. Here each bus
    directory gets its own state.
    """

    Channel = _FilesystemChannel
    _states: dict[str, virtual.BrokerState] = {}
    _states_lock = threading.Lock()

    def __init__(self, client: kombu.Connection, **kwargs: Any):
        super().__init__(client, **kwargs)
        key = client.transport_options["control_folder"]
        with self._states_lock:
            self.state = self._states.setdefault(key, virtual.BrokerState())


def is_virtual(connection: kombu.Connection) -> bool:
    """True for kombu's emulated transports (filesystem, memory), where bindings
    exist only once a process declares them and nothing enforces TTLs."""
    return isinstance(connection.transport, virtual.Transport)


def connection_for(url: str, conf: Optional[NfpConfig] = None, *,
                   confirm_publish: bool = False, heartbeat: int = 0) -> kombu.Connection:
    """A new, not yet connected, kombu Connection for ``url``.

    Parameters:
        url(str): ``rabbit://``, ``amqp://``, ``amqps://``, ``filesystem:///abs/path`` or ``memory://``.
        conf(NfpConfig): supplies ``transport.polling_interval`` for the filesystem bus.
        confirm_publish(bool): wait for a broker confirm on every publish (AMQP only), as oslo does.
        heartbeat(int): AMQP heartbeat seconds; only for a connection whose owner
            drains it continuously and calls ``heartbeat_check`` (publish-only
            connections rely on ``ensure`` to reconnect instead).
    """
    conf = conf or NfpConfig()
    scheme = urlsplit(url).scheme.lower()
    if scheme == "filesystem":
        return _filesystem_connection(url, conf)
    if scheme == "memory":
        return kombu.Connection("memory://", transport_options={"polling_interval": 0.005})
    if scheme in ("rabbit", "amqp", "amqps", "pyamqp"):
        options = {"confirm_publish": True} if confirm_publish else {}
        return kombu.Connection(_amqp_urls(url), heartbeat=heartbeat,
                                transport_options=options, connect_timeout=5)
    raise TransportURLError(f"transport url: unsupported scheme {scheme!r} "
                            "(use rabbit://, amqp://, filesystem:///path or memory://)")


def _filesystem_connection(url: str, conf: NfpConfig) -> kombu.Connection:
    path = url[len("filesystem://"):]
    if not path.startswith("/"):
        raise TransportURLError("transport url: filesystem:// needs an absolute path "
                                f"(filesystem:///var/lib/nfp/bus), got {url!r}")
    root = Path(path)
    folders = {name: root / name for name in ("data", "control", "claimed", "staging")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    options = {
        "data_folder_in": str(folders["data"]),
        "data_folder_out": str(folders["data"]),
        "control_folder": str(folders["control"]),
        "claim_folder": str(folders["claimed"]),
        "staging_folder": str(folders["staging"]),
        "polling_interval": conf.transport.polling_interval,
    }
    return kombu.Connection("filesystem://", transport=FilesystemTransport,
                            transport_options=options)


def _amqp_urls(url: str) -> str:
    """oslo ``rabbit://u:p@h1:5672,u:p@h2:5672/vhost`` as kombu's failover list
    ``amqp://u:p@h1:5672/vhost;amqp://u:p@h2:5672/vhost``."""
    parts = urlsplit(url)
    scheme = "amqps" if parts.scheme == "amqps" else "amqp"
    query = f"?{parts.query}" if parts.query else ""
    hosts = [h for h in parts.netloc.split(",") if h]
    if not hosts:
        raise TransportURLError(f"transport url: no host in {parts.scheme}:// URL")
    return ";".join(f"{scheme}://{host}{parts.path or '/'}{query}" for host in hosts)
