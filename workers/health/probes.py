"""Batched liveness probes on one event loop: ICMP echo from one socket, TCP connect.

:class:`Prober` sends probes as they are handed to it and reports each answer,
or its timeout, through a callback; it never blocks on one device. One raw ICMP
socket (or an unprivileged ``SOCK_DGRAM`` ping socket when raw sockets are not
allowed) carries every echo request; replies are matched by sequence number and
source address. A TCP probe is a non-blocking connect: established is alive
(closed at once with a reset, so 2,000 probes a second leave no TIME_WAIT),
refused is "host up, service down", anything else or silence is unreachable.

Why not fping or asyncio: fping is a separate process per sweep with no
per-device schedule and no TCP; asyncio costs a task and a future per probe,
which at 2,000 probes a second is most of a core (``bench/bench_health.py``
measures this prober against fping on the same targets).
"""
from __future__ import annotations

import errno
import heapq
import itertools
import logging
import os
import selectors
import socket
import struct
import time
from dataclasses import dataclass
from typing import Callable, Optional

LOG = logging.getLogger(__name__)

ICMP_ECHO, ICMP_ECHO_REPLY = 8, 0
#: receive buffer of the ICMP socket: a burst of replies must not be dropped
RCVBUF = 8 << 20


@dataclass(frozen=True)
class Target:
    """Where and how to probe one device: ``port`` None means ICMP echo."""

    device_id: str
    address: str
    port: Optional[int] = None

    @property
    def kind(self) -> str:
        return "icmp" if self.port is None else "tcp"


@dataclass
class Answer:
    """A probe's result, with the round trip in seconds when it answered."""

    target: Target
    ok: bool
    reachable: bool
    reason: str
    rtt: Optional[float] = None


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


class Prober:
    """Probes targets concurrently; see module docstring.

    Parameters:
        on_answer(callable): ``(Answer) -> None``, called from :meth:`poll`.
        timeout(float): seconds before an unanswered probe is a failure.
    """

    def __init__(self, on_answer: Callable[[Answer], None], timeout: float = 1.0):
        self.on_answer = on_answer
        self.timeout = timeout
        self.selector = selectors.DefaultSelector()
        self._icmp: Optional[socket.socket] = None
        self._raw = False
        self._ident = os.getpid() & 0xFFFF
        self._seq = itertools.count(1)
        self._icmp_wait: dict[int, tuple[Target, float]] = {}
        self._tcp_wait: dict[int, tuple[Target, float, socket.socket]] = {}
        self._deadlines: list[tuple[float, str, int]] = []
        self.sent = 0
        self.send_errors = 0

    # -- lifecycle ---------------------------------------------------------------
    def close(self) -> None:
        """Close every socket; probes in flight are dropped without an answer."""
        for _, _, sock in self._tcp_wait.values():
            sock.close()
        self._tcp_wait.clear()
        if self._icmp is not None:
            self._icmp.close()
            self._icmp = None
        self.selector.close()

    @property
    def in_flight(self) -> int:
        return len(self._icmp_wait) + len(self._tcp_wait)

    # -- sending -------------------------------------------------------------------
    def send(self, target: Target) -> bool:
        """Start one probe. False when it could not even be sent (no buffer, no
        socket): that says nothing about the device, so the caller retries later."""
        try:
            if target.port is None:
                self._send_icmp(target)
            else:
                self._send_tcp(target)
        except OSError as exc:
            if exc.errno in (errno.ENOBUFS, errno.EAGAIN, errno.EMFILE, errno.ENFILE, errno.EPERM):
                self.send_errors += 1
                return False
            # a routing error is the device's answer: nothing can reach it
            self.on_answer(Answer(target, False, False, f"{target.kind} send: {os.strerror(exc.errno or 0)}"))
            return True
        self.sent += 1
        return True

    def _icmp_socket(self) -> socket.socket:
        if self._icmp is None:
            try:
                sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
                self._raw = True
            except PermissionError:
                # unprivileged ping socket (net.ipv4.ping_group_range); the kernel sets the id
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
                self._raw = False
            sock.setblocking(False)
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, opt, RCVBUF)
                except OSError:
                    pass
            self.selector.register(sock, selectors.EVENT_READ, "icmp")
            self._icmp = sock
        return self._icmp

    def _send_icmp(self, target: Target) -> None:
        sock = self._icmp_socket()
        seq = next(self._seq) & 0xFFFF
        while seq in self._icmp_wait or seq == 0:
            seq = next(self._seq) & 0xFFFF
        header = struct.pack("!BBHHH", ICMP_ECHO, 0, 0, self._ident, seq)
        payload = b"nfp-hlth"
        packet = struct.pack("!BBHHH", ICMP_ECHO, 0, _checksum(header + payload), self._ident, seq) + payload
        now = time.monotonic()
        sock.sendto(packet, (target.address, 0))
        self._icmp_wait[seq] = (target, now)
        heapq.heappush(self._deadlines, (now + self.timeout, "icmp", seq))

    def _send_tcp(self, target: Target) -> None:
        sock = socket.socket(socket.AF_INET6 if ":" in target.address else socket.AF_INET,
                             socket.SOCK_STREAM)
        sock.setblocking(False)
        # reset on close: no TIME_WAIT per probe
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        code = sock.connect_ex((target.address, target.port))
        now = time.monotonic()
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            self.on_answer(self._tcp_answer(target, code, now))
            return
        fd = sock.fileno()
        self._tcp_wait[fd] = (target, now, sock)
        self.selector.register(sock, selectors.EVENT_WRITE, "tcp")
        heapq.heappush(self._deadlines, (now + self.timeout, "tcp", fd))

    # -- receiving -------------------------------------------------------------------
    def poll(self, wait: float) -> int:
        """Wait up to ``wait`` s for answers, then expire overdue probes; return how
        many probes finished."""
        finished = 0
        if self._deadlines:
            wait = min(wait, max(0.0, self._deadlines[0][0] - time.monotonic()))
        if self.selector.get_map():
            events = self.selector.select(wait)
        else:
            time.sleep(wait)
            events = []
        for key, _ in events:
            if key.data == "icmp":
                finished += self._read_icmp()
            else:
                finished += self._finish_tcp(key.fileobj.fileno())
        return finished + self._expire()

    def _read_icmp(self) -> int:
        sock, finished = self._icmp, 0
        while True:
            try:
                data, (source, _) = sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return finished
            offset = (data[0] & 0x0F) * 4 if self._raw else 0
            if len(data) < offset + 8:
                continue
            kind, _, _, ident, seq = struct.unpack_from("!BBHHH", data, offset)
            if kind != ICMP_ECHO_REPLY or (self._raw and ident != self._ident):
                continue  # another program's ping, or an echo request we see on loopback
            waiting = self._icmp_wait.get(seq)
            if waiting is None or waiting[0].address != source:
                continue
            del self._icmp_wait[seq]
            target, sent = waiting
            self.on_answer(Answer(target, True, True, "", time.monotonic() - sent))
            finished += 1

    def _finish_tcp(self, fd: int) -> int:
        waiting = self._tcp_wait.pop(fd, None)
        if waiting is None:
            return 0
        target, sent, sock = waiting
        self.selector.unregister(sock)
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        sock.close()
        self.on_answer(self._tcp_answer(target, code, sent))
        return 1

    @staticmethod
    def _tcp_answer(target: Target, code: int, sent: float) -> Answer:
        rtt = time.monotonic() - sent
        if code == 0:
            return Answer(target, True, True, "", rtt)
        if code == errno.ECONNREFUSED:
            return Answer(target, False, True, f"tcp port {target.port} refused", rtt)
        return Answer(target, False, False, f"tcp port {target.port}: {os.strerror(code)}")

    def _expire(self) -> int:
        now, finished = time.monotonic(), 0
        while self._deadlines and self._deadlines[0][0] <= now:
            _, kind, key = heapq.heappop(self._deadlines)
            if kind == "icmp":
                waiting = self._icmp_wait.get(key)
                if waiting is None or waiting[1] + self.timeout > now:
                    continue  # answered, or the sequence number was reused since
                del self._icmp_wait[key]
                self.on_answer(Answer(waiting[0], False, False, f"no ICMP echo reply in {self.timeout:g} s"))
            else:
                waiting = self._tcp_wait.get(key)
                if waiting is None or waiting[1] + self.timeout > now:
                    continue  # answered, or the descriptor was reused since
                del self._tcp_wait[key]
                target, _, sock = waiting
                self.selector.unregister(sock)
                sock.close()
                self.on_answer(Answer(target, False, False,
                                      f"tcp port {target.port}: no answer in {self.timeout:g} s"))
            finished += 1
        return finished
