"""SSH to Linux devices with paramiko: pinned host keys, key auth, pooled connections.

A device's host key comes from its row (``extra.host_key``, recorded when the
device was made) or else from nfp's ``known_hosts``; a device with neither, or
one that shows another key, is refused. Connections are kept per device and
shared by threads (paramiko multiplexes channels over one transport); a broken
one is reopened once per command.
"""
from __future__ import annotations

import dataclasses
import logging
import shlex
import socket
import threading
from pathlib import Path
from typing import Optional, Sequence, Union

import paramiko

from nfp.drivers.config.base import ConfigError, DeviceTarget
from nfp.drivers.device.netns import keys

LOG = logging.getLogger(__name__)

#: large scripts (10,000 firewall rules) go over stdin: give the channel room
_WINDOW = 16 * 1024 * 1024
_PACKET = 256 * 1024


@dataclasses.dataclass
class Output:
    """What a remote command returned."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def reason(self) -> str:
        """The first line the command complained with, for an error message."""
        text = (self.stderr or self.stdout).strip()
        return text.splitlines()[0][:300] if text else f"exit status {self.returncode}"


class Remote:
    """One authenticated SSH transport to one device."""

    def __init__(self, client: paramiko.SSHClient, label: str):
        self.client = client
        self.label = label

    @property
    def alive(self) -> bool:
        transport = self.client.get_transport()
        return bool(transport and transport.is_active())

    def run(self, command: Union[str, Sequence[str]], stdin: Optional[str] = None,
            timeout: float = 120) -> Output:
        """Run ``command`` (a shell string, or argv that gets quoted) and wait for it."""
        if not isinstance(command, str):
            command = shlex.join(command)
        transport = self.client.get_transport()
        if transport is None:
            raise paramiko.SSHException("transport closed")
        chan = transport.open_session(window_size=_WINDOW, max_packet_size=_PACKET)
        try:
            chan.settimeout(timeout)
            chan.exec_command(command)
            if stdin is not None:
                chan.sendall(stdin.encode())
            chan.shutdown_write()
            stdout = chan.makefile("rb").read().decode(errors="replace")
            stderr = chan.makefile_stderr("rb").read().decode(errors="replace")
            return Output(chan.recv_exit_status(), stdout, stderr)
        finally:
            chan.close()

    def close(self) -> None:
        self.client.close()


class SshPool:
    """Open SSH sessions to devices, keyed by device id and address."""

    def __init__(self, key_file: Path, known_hosts: Path, user: str = "root",
                 connect_timeout: float = 10.0):
        self.key_file = Path(key_file)
        self.known_hosts = keys.KnownHosts(known_hosts)
        self.user = user
        self.connect_timeout = connect_timeout
        self._pkey: Optional[paramiko.PKey] = None
        self._sessions: dict[tuple, Remote] = {}
        self._connecting: dict[tuple, threading.Lock] = {}
        self._lock = threading.Lock()

    def run(self, device: DeviceTarget, command: Union[str, Sequence[str]],
            stdin: Optional[str] = None, timeout: float = 120) -> Output:
        """Run one command on ``device``, reconnecting once if the session broke."""
        for attempt in (1, 2):
            remote = self.get(device)
            try:
                return remote.run(command, stdin=stdin, timeout=timeout)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                self.drop(device)
                if attempt == 2:
                    raise ConfigError(f"device {device.id}: ssh command failed: {exc}") from None
                LOG.info("device %s: ssh session broke (%s); reconnecting once", device.id, exc)
        raise AssertionError("unreachable")

    def get(self, device: DeviceTarget) -> Remote:
        """The open session to ``device``; threads asking at once share one connect."""
        key = self._key(device)
        with self._lock:
            connecting = self._connecting.setdefault(key, threading.Lock())
        with connecting:
            with self._lock:
                remote = self._sessions.get(key)
            if remote is not None and remote.alive:
                return remote
            fresh = self._connect(device)
            with self._lock:
                self._sessions[key] = fresh
        if remote is not None:
            remote.close()
        return fresh

    def drop(self, device: DeviceTarget) -> None:
        with self._lock:
            remote = self._sessions.pop(self._key(device), None)
        if remote is not None:
            remote.close()

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for remote in sessions:
            remote.close()

    # -- internals -------------------------------------------------------
    def _key(self, device: DeviceTarget) -> tuple:
        return (device.id, device.mgmt_ip_address, _port(device), device.extra.get("host_key"))

    def _connect(self, device: DeviceTarget) -> Remote:
        if not device.mgmt_ip_address:
            raise ConfigError(f"device {device.id}: mgmt_ip_address is not set")
        port = _port(device)
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        entry = keys.host_entry(device.mgmt_ip_address, port)
        pinned = device.extra.get("host_key")
        if pinned:
            key = keys.public_key(pinned)
            client.get_host_keys().add(entry, key.get_name(), key)
        else:
            known = self.known_hosts.load().lookup(entry)
            if not known:
                raise ConfigError(f"device {device.id}: extra.host_key: no pinned host key "
                                  f"for {entry}; refusing to trust an unknown key")
            for key_type, key in known.items():
                client.get_host_keys().add(entry, key_type, key)
        try:
            sock = socket.create_connection((device.mgmt_ip_address, port),
                                            timeout=self.connect_timeout)
            # every command is a few small packets each way: without NODELAY, Nagle and
            # delayed ACKs add ~40 ms to each one
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client.connect(device.mgmt_ip_address, port=port, sock=sock,
                           username=device.extra.get("ssh_user") or self.user,
                           pkey=self._private_key(), look_for_keys=False, allow_agent=False,
                           timeout=self.connect_timeout, banner_timeout=self.connect_timeout,
                           auth_timeout=self.connect_timeout)
        except paramiko.BadHostKeyException:
            client.close()
            raise ConfigError(f"device {device.id}: host key of {entry} does not match the "
                              f"pinned key; refusing to connect") from None
        except (paramiko.SSHException, OSError) as exc:
            client.close()
            raise ConfigError(f"device {device.id}: cannot ssh to {entry}: {exc}") from None
        return Remote(client, f"{device.id}@{entry}")

    def _private_key(self) -> paramiko.PKey:
        if self._pkey is None:
            try:
                self._pkey = paramiko.PKey.from_path(self.key_file)
            except (OSError, paramiko.SSHException) as exc:
                raise ConfigError(f"config_drivers.linux.key_file: cannot load "
                                  f"{self.key_file}: {exc}") from None
        return self._pkey


def _port(device: DeviceTarget) -> int:
    return int(device.extra.get("ssh_port") or 22)
