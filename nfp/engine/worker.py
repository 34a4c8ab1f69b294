"""A worker process: takes step refs from its inbox pipe and runs them.

It boots as a standby; when the supervisor sends ``take`` it rebuilds its
queue from the event table (every open step of its shard), so whatever was in flight when a worker or the whole daemon died is
resumed. Signal handlers only set flags; the main loop acts on them.
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

from nfp import config as nfp_config
from nfp.engine import intake_priority, store
from nfp.engine.app import Application
from nfp.engine.executor import Executor, Result
from nfp.engine.scheduler import KeyScheduler

LOG = logging.getLogger(__name__)

#: exit codes the supervisor understands
EXIT_OK = 0
EXIT_BOOT_ERROR = 3

#: seconds between full rescans of the shard (a safety net for lost hand-offs)
RESCAN_INTERVAL = 5.0


@dataclass
class WorkerArgs:
    """Everything a spawned worker needs; picklable."""

    index: int
    shards: int
    conf: nfp_config.NfpConfig
    inbox: Any        # multiprocessing Connection, read end
    outbox: Any       # multiprocessing Connection, write end
    heartbeat: Any    # multiprocessing.Value('d')
    #: the application whose steps this worker runs (its handlers and services)
    app: Application = None  # type: ignore[assignment]
    #: multiprocessing.Value('d'): no new steps start before this wall-clock time
    intake_busy: Any = None


def _die_with_parent() -> None:
    """Ask the kernel to SIGKILL us when the listener dies (even by kill -9)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Worker:
    """The worker main loop. See module docstring."""

    def __init__(self, args: WorkerArgs):
        self.args = args
        self.stopping = False
        self._out_lock = threading.Lock()
        self.ppid = os.getppid()

    # -- boot -------------------------------------------------------------
    def boot(self) -> None:
        conf = self.args.conf
        app = self.args.app
        # The services own this process's database engine, drivers and pools.
        self.services = app.services(conf)
        self.services.start()
        self.sessionmaker = self.services.sessionmaker
        self.executor = Executor(self.sessionmaker, self.services, conf.orchestrator.max_attempts,
                                 registry=app.registry())
        self.scheduler = KeyScheduler(self.executor, conf.orchestrator.threads_per_worker,
                                      on_result=self._publish,
                                      default_deadline=conf.orchestrator.step_deadline,
                                      gate=intake_priority.worker_gate(self.args.intake_busy))
        self.owns_shard = False

    def take_shard(self) -> None:
        """The supervisor's go-ahead (its previous owner has exited): rebuild the
        shard's queue from the event table and start running its steps."""
        with self.sessionmaker.begin() as session:
            # Anything still pending in our shard may have been running when the
            # previous incarnation died: count that as an attempt.
            refs = store.open_refs(session, self.args.index, self.args.shards)
            ids = [r.id for r in refs]
            for chunk in range(0, len(ids), 500):
                store.claim(session, ids[chunk:chunk + 500])
        self.scheduler.offer(refs)
        self.owns_shard = True
        LOG.info("worker %d/%d took its shard with %d open steps from the database",
                 self.args.index, self.args.shards, len(refs))

    # -- loop -------------------------------------------------------------
    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        next_rescan = time.time() + RESCAN_INTERVAL
        self._send(("ready", self.args.index, os.getpid()))
        while not self.stopping:
            self.args.heartbeat.value = time.time()
            self.scheduler.release_deferred()
            timeout = self.scheduler.fire_timers()
            if self.args.inbox.poll(min(timeout, 0.1 if self.scheduler.deferred else 0.5)):
                try:
                    self._handle(self.args.inbox.recv())
                except (EOFError, OSError):
                    LOG.error("worker %d lost its inbox; exiting for a respawn", self.args.index)
                    return EXIT_OK
            self.scheduler.expire_overdue()
            if time.time() >= next_rescan:
                next_rescan = time.time() + RESCAN_INTERVAL
                self._rescan()
            if os.getppid() != self.ppid:
                LOG.error("worker %d: listener is gone; exiting", self.args.index)
                return EXIT_OK
        drained = self.scheduler.drain(self.args.conf.orchestrator.drain_timeout)
        LOG.info("worker %d stopped (%s); unfinished steps stay in the database",
                 self.args.index, "drained" if drained else "drain timed out")
        return EXIT_OK

    def close(self) -> None:
        """Stop the thread pool, then the services (drivers' pools and sessions, then
        the database engine). Runs on every exit path, including a lost listener."""
        self.scheduler.close()
        self.services.stop()

    def _handle(self, msg) -> None:
        kind = msg[0]
        if kind == "dispatch":
            self.scheduler.offer(msg[1])
        elif kind == "take":
            self.take_shard()
        elif kind == "stop":
            self.stopping = True

    def _rescan(self) -> None:
        if not self.owns_shard:  # a standby must not touch the shard its predecessor runs
            return
        try:
            with self.sessionmaker() as session:
                refs = store.open_refs(session, self.args.index, self.args.shards)
            self.scheduler.offer(refs)
        except Exception as exc:
            LOG.warning("worker %d: rescan failed (%s); retrying in %.0f s",
                        self.args.index, exc.__class__.__name__, RESCAN_INTERVAL)

    def _publish(self, result: Result) -> None:
        for event_type, payload in result.notify:
            self._send(("notify", event_type, payload))

    def _send(self, msg) -> None:
        with self._out_lock:
            try:
                self.args.outbox.send(msg)
            except (BrokenPipeError, OSError):
                pass

    def _on_term(self, signum, frame) -> None:
        self.stopping = True


def main(args: WorkerArgs) -> None:
    """Process entry point (multiprocessing target)."""
    _die_with_parent()
    intake_priority.lower_worker_priority(args.conf)  # see nfp.engine.intake_priority
    from nfp import logs
    logs.setup(args.conf, f"worker-{args.index}")
    worker = Worker(args)
    try:
        worker.boot()
    except Exception:
        LOG.exception("worker %d failed to boot; the daemon will halt", args.index)
        os._exit(EXIT_BOOT_ERROR)
    try:
        code = worker.run()
    finally:
        worker.close()
    os._exit(code)
