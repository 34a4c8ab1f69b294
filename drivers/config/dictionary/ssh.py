"""SSH CLI transport: one reused interactive session per device, host key pinned.

The device's host key must be known in advance (``ssh_host_key`` as
``"ssh-ed25519 AAAA..."``); any other key is refused (paramiko RejectPolicy).
The shell stays open between operations. A dropped session is reopened and the
whole operation is run again: uncommitted configure-mode changes die with the
session on the device, so a rerun starts clean.
"""
from __future__ import annotations

import base64
import io
import logging
import re
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional, TypeVar

import paramiko

from nfp import backoff
from nfp.secrets import redact

from .errors import TransportError
from .model import CliSettings
from .pacing import TokenBucket

LOG = logging.getLogger(__name__)
T = TypeVar("T")
#: the longest pause between reconnects
MAX_BACKOFF = 10.0
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass(frozen=True)
class SshEndpoint:
    """Where and how to reach one device over SSH."""

    host: str
    port: int
    host_key: str
    timeout: float = 10.0
    retries: int = 2
    backoff: float = 0.2
    rate_limit: Optional[float] = None


@dataclass(frozen=True)
class SshCredentials:
    """Login for one device. ``repr`` never shows the secrets."""

    username: str
    password: Optional[str] = None
    private_key: Optional[str] = None

    def __repr__(self) -> str:
        return f"SshCredentials(username={self.username!r}, password=***, private_key=***)"


class SessionDropped(Exception):
    """The SSH session ended under us."""


def parse_host_key(text: str) -> paramiko.PKey:
    """A public key in OpenSSH form (``ssh-ed25519 AAAA...``; a known_hosts line works too)."""
    parts = text.split()
    if len(parts) >= 3 and not parts[0].startswith(("ssh-", "ecdsa-")):
        parts = parts[1:]  # known_hosts: "host keytype base64"
    if len(parts) < 2:
        raise ValueError("ssh_host_key must look like 'ssh-ed25519 AAAA...'")
    try:
        return paramiko.PKey.from_type_string(parts[0], base64.b64decode(parts[1]))
    except Exception as exc:  # paramiko raises several types for malformed keys
        raise ValueError(f"ssh_host_key is not a valid {parts[0]} key: {exc}") from None


def load_private_key(text: str) -> paramiko.PKey:
    """A private key in OpenSSH or PEM form."""
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError):
            continue
    raise TransportError("the device's private key secret is not a usable OpenSSH/PEM key")


class CliSession:
    """An interactive shell: send one line, get its output once the prompt is back."""

    def __init__(self, client: paramiko.SSHClient, channel: paramiko.Channel, prompt: str, timeout: float):
        self.client, self.channel = client, channel
        self._prompt = re.compile(prompt)
        self.timeout = timeout
        self.read_until_prompt()

    def read_until_prompt(self) -> str:
        buffer = ""
        deadline = time.monotonic() + self.timeout
        while True:
            tail = buffer.rstrip("\r\n").rsplit("\n", 1)[-1] if buffer else ""
            if tail and self._prompt.search(tail):
                return buffer
            if time.monotonic() > deadline:
                raise TransportError(f"no prompt within {self.timeout:g} s")
            try:
                self.channel.settimeout(max(0.05, deadline - time.monotonic()))
                chunk = self.channel.recv(65536)
            except socket.timeout:
                continue
            except (OSError, EOFError, paramiko.SSHException):
                raise SessionDropped() from None
            if not chunk:
                raise SessionDropped()
            buffer += _ANSI.sub("", chunk.decode("utf-8", "replace")).replace("\r", "")

    def send(self, line: str) -> str:
        """Run one command; return its output without the echo and the prompt."""
        if self.channel.closed:
            raise SessionDropped()
        try:
            self.channel.sendall(line + "\n")
        except (OSError, EOFError, paramiko.SSHException):
            raise SessionDropped() from None
        lines = self.read_until_prompt().split("\n")
        if lines and lines[0].strip() == line.strip():
            lines = lines[1:]
        return "\n".join(lines[:-1]).strip("\n")

    @property
    def alive(self) -> bool:
        transport = self.client.get_transport()
        return bool(transport and transport.is_active() and not self.channel.closed)

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # closing a dead session must not mask the real error
            pass


class SshTransport:
    """Runs CLI work on one device over a kept-open shell."""

    def __init__(self, endpoint: SshEndpoint, cli: CliSettings, device_id: str = ""):
        self.endpoint, self.cli, self.device_id = endpoint, cli, device_id
        self._host_key = parse_host_key(endpoint.host_key)
        self._session: Optional[CliSession] = None
        self._lock = threading.Lock()
        self._bucket = TokenBucket(endpoint.rate_limit) if endpoint.rate_limit else None

    def run(self, work: Callable[[CliSession], T], credentials: SshCredentials) -> T:
        """Run ``work(session)``; on a dropped session reconnect and run it again
        (``retries`` times, with nfp's backoff between attempts)."""
        attempts = backoff.retrying(self.endpoint.retries, self.endpoint.backoff, MAX_BACKOFF,
                                    retry_on=(SessionDropped,), before_sleep=self._reconnecting)
        with self._lock:
            try:
                for attempt in attempts:
                    with attempt:
                        return self._attempt(work, credentials)
            except SessionDropped:
                tries = self.endpoint.retries + 1
                raise TransportError(self._where() + f"the SSH session dropped {tries} time(s); "
                                     "giving up") from None
        raise AssertionError("unreachable")  # tenacity either returns or re-raises

    def _attempt(self, work: Callable[[CliSession], T], credentials: SshCredentials) -> T:
        if self._bucket is not None:
            self._bucket.acquire()
        try:
            return work(self._connect(credentials))
        except (SessionDropped, TransportError):
            self._drop()
            raise

    def _reconnecting(self, state) -> None:
        LOG.warning("device %s: SSH session dropped; reconnecting in %.2f s and running the "
                    "operation again", self.device_id, state.next_action.sleep)

    def _connect(self, credentials: SshCredentials) -> CliSession:
        if self._session is not None and self._session.alive:
            return self._session
        self._drop()
        ep = self.endpoint
        client = paramiko.SSHClient()
        name = ep.host if ep.port == 22 else f"[{ep.host}]:{ep.port}"
        client.get_host_keys().add(name, self._host_key.get_name(), self._host_key)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        pkey = load_private_key(credentials.private_key) if credentials.private_key else None
        try:
            client.connect(ep.host, ep.port, username=credentials.username, password=credentials.password,
                           pkey=pkey, timeout=ep.timeout, banner_timeout=ep.timeout,
                           auth_timeout=ep.timeout, look_for_keys=False, allow_agent=False)
            channel = client.invoke_shell(term="vt100", width=4096, height=1000)
            session = CliSession(client, channel, self.cli.prompt, ep.timeout)
            for line in self.cli.setup:
                session.send(line)
        except paramiko.BadHostKeyException:
            client.close()
            raise TransportError(self._where() + "SSH host key does not match the pinned key; "
                                 "refusing to connect") from None
        except paramiko.SSHException as exc:
            client.close()
            if "not found in known_hosts" in str(exc):
                raise TransportError(self._where() + "SSH host key is not the pinned one") from None
            if isinstance(exc, paramiko.AuthenticationException):
                raise TransportError(self._where() + "SSH authentication failed") from None
            raise SessionDropped() from None
        except SessionDropped:
            client.close()
            raise
        except (OSError, EOFError) as exc:
            client.close()
            if isinstance(exc, socket.timeout):
                raise TransportError(self._where() + f"no SSH answer within {ep.timeout:g} s") from None
            raise TransportError(self._where() + f"cannot connect ({redact(str(exc))[:120]})") from None
        self._session = session
        return session

    def _drop(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def _where(self) -> str:
        return f"device {self.device_id} at {self.endpoint.host}:{self.endpoint.port}: "

    def close(self) -> None:
        with self._lock:
            self._drop()
