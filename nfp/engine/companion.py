"""Companion processes: process types other than workers that the supervisor runs.

An application names its companions (``Application.companions``); the health
monitor is one. Each runs ``target(CompanionArgs)`` in its own process and is
supervised as the workers are (gunicorn's arbiter again): a heartbeat it must
keep fresh, SIGTERM then SIGKILL when it hangs, respawn with backoff when it
dies, a halt when it fails to boot (exit code 3). It talks back over one pipe,
read by a thread of its handle: ``("notify", type, payload)`` is published as
an oslo notification, ``("dispatch", refs)`` hands committed steps to the
workers, ``("stats", dict)`` is kept for ``/metrics``.

The process side is shared too: :func:`serve` is the entry-point body of a
companion (die with the listener, log set-up, boot with a wait for the
database, run, close, exit), :class:`Outbox` its pipe writer and
:func:`handle_signals` its signal set-up, where handlers only set a flag.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, NoReturn, Optional, Protocol

from nfp import backoff, faults

LOG = logging.getLogger(__name__)

EXIT_BOOT_ERROR = 3
KILL_GRACE = 5.0
#: waiting for the database at boot: first pause and ceiling, seconds
BOOT_WAIT_START = 0.5
BOOT_WAIT_MAX = 10.0


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


# -- the companion process's side ----------------------------------------------------
class Process(Protocol):
    """What :func:`serve` runs: ``boot`` (retried while the database is unreachable;
    leaves nothing open when it raises), ``run`` (returns an exit code) and ``close``."""

    def boot(self) -> None: ...

    def run(self) -> Optional[int]: ...

    def close(self) -> None: ...


class Outbox:
    """The write end of a companion's pipe, shared by its threads. A listener that is
    gone makes sends no-ops: the process notices it by its parent pid and exits."""

    def __init__(self, conn):
        self._conn, self._lock = conn, threading.Lock()

    def send(self, msg) -> None:
        with self._lock:
            try:
                self._conn.send(msg)
            except (BrokenPipeError, OSError):
                pass


def handle_signals(on_term: Callable) -> None:
    """SIGTERM calls ``on_term`` (which only sets a flag); SIGINT and SIGHUP belong
    to the listener, which stops or reloads its children itself."""
    signal.signal(signal.SIGTERM, lambda signum, frame: on_term())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def serve(label: str, conf, process: Process, heartbeat=None) -> NoReturn:
    """Entry-point body of a companion process: boot ``process``, waiting with backoff
    (heartbeat kept) while the database or a service is unreachable; exit with
    :data:`EXIT_BOOT_ERROR` on a configuration error (the daemon halts) and 1 on any
    other boot failure (respawned); then run it, close it and exit with its code."""
    from nfp import logs
    from nfp.engine.worker import _die_with_parent, is_configuration_error
    _die_with_parent()
    logs.setup(conf, label)
    failures = 0
    while True:
        try:
            process.boot()
            break
        except Exception as exc:
            if not faults.is_transient(exc):
                code = EXIT_BOOT_ERROR if is_configuration_error(exc) else 1
                LOG.exception("%s failed to boot (%s); %s", label, exc.__class__.__name__,
                              "the daemon will halt" if code == EXIT_BOOT_ERROR else "it will be respawned")
                os._exit(code)
            failures += 1
            pause = backoff.delay(failures, BOOT_WAIT_START, BOOT_WAIT_MAX, jitter=0.2)
            LOG.warning("%s cannot boot yet (%s: the database or a service is unreachable); "
                        "retrying in %.1f s", label, exc.__class__.__name__, pause)
            end = time.time() + pause
            while time.time() < end:  # the supervisor must not take the wait for a hang
                if heartbeat is not None:
                    heartbeat.value = time.time()
                time.sleep(min(0.5, max(0.0, end - time.time())))
    code = 0
    try:
        code = process.run() or 0
    finally:
        process.close()
    os._exit(code)
