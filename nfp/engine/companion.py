"""Companion processes: process types other than workers that the supervisor runs.

An application names its companions (``Application.companions``); the health
monitor is one. Each runs ``target(CompanionArgs)`` in its own process and is
supervised as the workers are (gunicorn's arbiter again): a heartbeat it must
keep fresh, SIGTERM then SIGKILL when it hangs, respawn with backoff when it
dies, a halt when it fails to boot (exit code 3). It talks back over one pipe,
read by a thread of its handle: ``("notify", type, payload)`` is published as
an oslo notification, ``("dispatch", refs)`` hands committed steps to the
workers, ``("stats", dict)`` is kept for ``/metrics``.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from nfp import backoff

LOG = logging.getLogger(__name__)

EXIT_BOOT_ERROR = 3
KILL_GRACE = 5.0


@dataclass(frozen=True)
class Companion:
    """A companion process type: ``name`` for logs, ``target`` a module-level function."""

    name: str
    target: Callable[["CompanionArgs"], None]


@dataclass
class CompanionArgs:
    """What a companion process gets (picklable)."""

    name: str
    conf: Any
    outbox: Any      # multiprocessing Connection, write end
    heartbeat: Any   # multiprocessing.Value('d')


class CompanionHandle:
    """The supervisor's side of one companion (see module docstring)."""

    def __init__(self, spec: Companion, conf, ctx, on_notify: Callable[[str, dict], None],
                 on_dispatch: Callable[[list], None]):
        self.spec, self.conf, self.ctx = spec, conf, ctx
        self.on_notify, self.on_dispatch = on_notify, on_dispatch
        self.process = None
        self.heartbeat = None
        self.stats: dict = {}
        self.restarts = 0
        self.next_spawn = 0.0
        self.kill_at = 0.0
        self.started = 0.0
        self.boot_error: Optional[str] = None
        self._stopping = False
        #: asked to exit by a reload: its exit is no crash
        self._retiring = False
        self._reader: Optional[threading.Thread] = None

    def spawn(self) -> None:
        out_r, out_w = self.ctx.Pipe(duplex=False)
        self.heartbeat = self.ctx.Value("d", time.time(), lock=False)
        args = CompanionArgs(self.spec.name, self.conf, out_w, self.heartbeat)
        self.process = self.ctx.Process(target=self.spec.target, args=(args,),
                                        name=f"nfp-{self.spec.name}", daemon=False)
        self.process.start()
        out_w.close()
        self.started, self.kill_at = time.time(), 0.0
        self._reader = threading.Thread(target=self._read, args=(out_r,), daemon=True,
                                        name=f"{self.spec.name}-reader")
        self._reader.start()
        LOG.info("%s process started as pid %d", self.spec.name, self.process.pid)

    def _read(self, conn) -> None:
        # the one reader of this incarnation's pipe; it ends at EOF (the process exited)
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                conn.close()
                return
            try:
                if msg[0] == "notify":
                    self.on_notify(msg[1], msg[2])
                elif msg[0] == "dispatch":
                    self.on_dispatch(msg[1])
                elif msg[0] == "stats":
                    self.stats = msg[1]
            except Exception:
                LOG.exception("%s: handling a %s message failed; it is dropped", self.spec.name, msg[0])

    def check(self, now: float) -> None:
        """Reap, escalate on a missed heartbeat, respawn with backoff. Call from the main loop."""
        if self._stopping or self.boot_error:
            return
        proc = self.process
        if proc is None:
            if now >= self.next_spawn:
                self.spawn()
            return
        if proc.is_alive():
            if self.kill_at:
                if now >= self.kill_at:
                    proc.kill()
                    self.kill_at = float("inf")
                return
            timeout = self.conf.orchestrator.worker_heartbeat_timeout
            if now - self.heartbeat.value > timeout:
                LOG.error("%s process (pid %d) missed its heartbeat for %.0f s; sending SIGTERM, then "
                          "SIGKILL in %.0f s; it is respawned", self.spec.name, proc.pid, timeout, KILL_GRACE)
                self._signal(signal.SIGTERM)
                self.kill_at = now + KILL_GRACE
            return
        proc.join(0)
        code, self.process = proc.exitcode, None
        if self._retiring:
            self._retiring, self.next_spawn = False, now
            LOG.info("%s process (pid %d) retired for the reload (exit code %s); its successor "
                     "starts with the new configuration", self.spec.name, proc.pid, code)
            return
        if code == EXIT_BOOT_ERROR:
            self.boot_error = f"{self.spec.name} process failed to boot (exit code {code})"
            LOG.critical("%s; halting instead of respawning in a loop", self.boot_error)
            return
        self.restarts = 1 if now - self.started > 60 else self.restarts + 1
        pause = backoff.delay(self.restarts, 0.2, 30.0, jitter=0.2)
        self.next_spawn = now + pause
        LOG.error("%s process (pid %d) died with exit code %s; respawning in %.1f s",
                  self.spec.name, proc.pid, code, pause)

    def reload(self, conf) -> None:
        """SIGHUP: stop this incarnation; :meth:`check` starts one with ``conf``."""
        self.conf = conf
        if self.process is not None and self.process.is_alive():
            self._retiring = True
            self._signal(signal.SIGTERM)
            self.kill_at = time.time() + KILL_GRACE
        self.next_spawn = 0.0

    def stop(self, timeout: float) -> None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL."""
        self._stopping = True
        proc = self.process
        if proc is None:
            return
        self._signal(signal.SIGTERM)
        proc.join(timeout)
        if proc.is_alive():
            LOG.warning("%s process (pid %d) did not stop in %.0f s; killing it",
                        self.spec.name, proc.pid, timeout)
            proc.kill()
            proc.join(2)
        if self._reader is not None:
            self._reader.join(2)

    def _signal(self, sig: int) -> None:
        try:
            os.kill(self.process.pid, sig)
        except (ProcessLookupError, AttributeError):
            pass
