"""A worker process: takes step refs from its inbox pipe and runs them.

It boots as a standby; when the supervisor sends ``take`` it joins the cluster
as member ``host/index``, inherits the bucket leases its predecessor held, takes
its share of free ones (:mod:`nfp.engine.leases`) and rebuilds its queue from
the event table (every open step of its buckets), so whatever was in flight when
a worker, the whole daemon or another host died is resumed. A lease thread
renews the leases, takes buckets other members lost and gives back buckets over
its share; a wake listener scans a bucket at once when another host commits a
step of it (:mod:`nfp.engine.wake`). Only the steps its predecessor was running
when it died are charged an attempt (:mod:`nfp.engine.running`). Signal
handlers only set flags; the main loop acts on them.

Faults: a database that cannot be reached at boot or at ``take`` is waited
for (with backoff, heartbeat kept), never a boot error; exit code 3 means a
configuration error. Another machine running this member (two machines with one
``rpc.host``: :class:`~nfp.engine.leases.DuplicateHost`, at ``take`` or when a
renewal finds the member taken over) is one. At ``take`` it is retried once, when
the holder has been silent for ``lease_ttl`` (a replacement machine started right
after the old one died gets its members then); when it stands, the worker runs nothing more, tells
the supervisor why, drains and exits with code 3, and the daemon halts. A worker
whose threads are stuck in handlers past their deadline (hung device calls:
Python cannot stop a thread) drains and exits with :data:`EXIT_RECYCLE`, and the
supervisor starts a fresh one at once.
"""
from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional

from nfp import backoff, faults
from sqlalchemy import text

from nfp import config as nfp_config
from nfp.db import budget
from nfp.db.engine import make_engine, make_sessionmaker
from nfp.engine import intake_priority, leases, running, store, wake
from nfp.engine.app import Application
from nfp.engine.executor import Executor, Result
from nfp.engine.scheduler import KeyScheduler
from nfp.rpc.errors import describe

LOG = logging.getLogger(__name__)

#: exit codes the supervisor understands
EXIT_OK = 0
EXIT_FAILURE = 1
#: a configuration error: respawning cannot help, the daemon halts
EXIT_BOOT_ERROR = 3
#: threads stuck in hung handlers: replace this worker now (not a crash)
EXIT_RECYCLE = 4

#: waiting for the database at boot or take: first pause and ceiling, seconds
DB_WAIT_START = 0.5
DB_WAIT_MAX = 10.0

#: longest wait for a row lock while taking a shard (PostgreSQL), in ms
TAKE_LOCK_TIMEOUT_MS = 5000

#: seconds between lease ticks while buckets move between members
SETTLE = 0.5

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
    """Ask the kernel to SIGKILL us when the listener dies (even by kill -9). A
    listener killed between spawning us and this call would leave us running
    unsupervised (seen after chaos tests: a health monitor probing on under init),
    so a parent already gone ends us here."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:
        os._exit(1)


class Worker:
    """The worker main loop. See module docstring."""

    def __init__(self, args: WorkerArgs):
        self.args = args
        self.stopping = False
        self.drained = False
        self._closed = threading.Event()
        self._out_lock = threading.Lock()
        self.ppid = os.getppid()

    # -- boot -------------------------------------------------------------
    def boot(self) -> None:
        conf = self.args.conf
        app = self.args.app
        # The services own this process's database engine, drivers and pools.
        self.services = app.services(conf)
        try:
            self.services.start()
        except Exception:  # boot() is retried: leave nothing open behind
            self.services.stop()
            raise
        self.sessionmaker = self.services.sessionmaker
        self.executor = Executor(self.sessionmaker, self.services, conf.orchestrator.max_attempts,
                                 registry=app.registry())
        self.scheduler = KeyScheduler(self.executor, conf.orchestrator.threads_per_worker,
                                      on_result=self._publish,
                                      default_deadline=conf.orchestrator.step_deadline,
                                      gate=intake_priority.worker_gate(self.args.intake_busy))
        self.owns_shard = False
        # the leases get a pool of their own: renewals must not queue behind handlers
        self._lease_engine = make_engine(conf.database_url, pool_size=budget.WORKER_EXTRA)
        self.leases = leases.LeaseKeeper(make_sessionmaker(self._lease_engine), conf.rpc.host,
                                         self.args.index, conf.orchestrator.lease_ttl,
                                         local_members=self.args.shards)
        self.executor.lease = self.leases
        self.scheduler.admit = lambda ref: self.leases.runs(ref.key_hash)
        self._lease_thread: Optional[threading.Thread] = None
        self._wakes: "queue.SimpleQueue[set[int]]" = queue.SimpleQueue()
        self._wake_listener: Optional[wake.WakeListener] = None
        self._take_failures = 0
        #: a join refused for a live-looking holder was retried once (see _try_take)
        self._waited_for_holder = False
        self._take_at: Optional[float] = None  # a pending ``take``: try at this time
        #: why this member must stop (another machine runs it), set by the take or the lease thread
        self.duplicate: Optional[str] = None

    def take_shard(self) -> None:
        """The supervisor's go-ahead (its previous incarnation has exited): charge an
        attempt to the steps that incarnation was running when it died, join the
        cluster (inheriting its leases), take a share of free buckets, then rebuild
        the queue of those buckets from the event table and run their steps."""
        path = running.path_for(self.args.conf.state_path, self.args.index)
        interrupted = running.read(path)
        with self.sessionmaker.begin() as session:
            if session.get_bind().dialect.name == "postgresql":
                # The take runs on the main loop, which also beats the heartbeat: a
                # row lock held elsewhere must fail this attempt (retried with
                # backoff) rather than stall the loop until the supervisor kills us.
                session.execute(text(f"SET LOCAL lock_timeout = '{TAKE_LOCK_TIMEOUT_MS}ms'"))
            for chunk in range(0, len(interrupted), 500):
                store.claim(session, interrupted[chunk:chunk + 500])
        # charged and committed: from here this incarnation's own steps are recorded
        # (at once: a successor of an incarnation killed while joining must not
        # charge the same steps again)
        self.scheduler.running_steps = running.RunningSteps(path, self.slots)
        inherited = self.leases.join()
        self.leases.tick()
        refs = self._scan(self.leases.buckets())
        self.owns_shard = True
        self._report_buckets()
        self._lease_thread = threading.Thread(target=self._keep_leases, name="leases", daemon=True)
        self._lease_thread.start()
        if wake.supported(self._lease_engine):
            self._wake_listener = wake.WakeListener(self._lease_engine, self._wakes.put)
        LOG.info("worker %d (member %s) holds %d buckets (%d inherited) with %d open steps "
                 "(%d were interrupted by the previous incarnation and charged an attempt)",
                 self.args.index, self.leases.member, len(self.leases.held), len(inherited),
                 len(refs), len(interrupted))

    def _scan(self, buckets) -> list:
        """Offer every open step of ``buckets``; return them."""
        buckets = [b for b in buckets if b in self.leases.held]
        if not buckets:
            return []
        with self.sessionmaker() as session:
            refs = store.open_refs(session.connection(), buckets)
        self.scheduler.offer(refs)
        return refs

    def _keep_leases(self) -> None:
        """Lease thread: renew every ``ttl/3`` s (every SETTLE s while buckets move
        between members), act on gained and lost buckets, and scan buckets another
        host woke us for."""
        ttl_period = self.args.conf.orchestrator.lease_ttl / 3
        next_tick = time.monotonic() + (SETTLE if self.leases.settling else ttl_period)
        while not self._closed.is_set():
            try:
                woken = self._wakes.get(timeout=max(0.0, next_tick - time.monotonic()))
            except queue.Empty:
                woken = None
            try:
                if woken is not None:
                    while not self._wakes.empty():
                        woken |= self._wakes.get_nowait()
                    self._scan(woken)
                    continue
                # while draining: renew (running steps must keep their buckets) but take none
                try:
                    gained, lost = self.leases.tick(
                        (leases.bucket_of(h) for h in self.scheduler.busy_hashes()),
                        take=not self.stopping)
                except leases.DuplicateHost as exc:  # we hold nothing now: run nothing more
                    self.scheduler.forget(lambda ref: True)
                    self._report_buckets()
                    self.duplicate = str(exc)
                    return
                next_tick = time.monotonic() + (SETTLE if self.leases.settling else ttl_period)
                if lost or gained or self.leases.releasing:
                    held = set(self.leases.held)
                    self.scheduler.forget(lambda ref: leases.bucket_of(ref.key_hash) not in held
                                          or not self.leases.runs(ref.key_hash))
                    self._scan(gained)
                    self._report_buckets()
            except Exception as exc:  # the database is away: leases expire, fencing holds
                LOG.warning("worker %d: lease renewal failed (%s); retrying", self.args.index,
                            describe(exc))

    def _report_buckets(self) -> None:
        """Tell the supervisor which buckets to route to this worker."""
        self._send(("buckets", self.args.index, self.leases.buckets()))

    @property
    def slots(self) -> int:
        """Most steps that can be running at once: handler threads plus batches."""
        from nfp.engine.scheduler import BATCH, BATCH_THREADS
        return self.args.conf.orchestrator.threads_per_worker + BATCH * BATCH_THREADS

    def _try_take(self) -> None:
        """Take the shard now, or wait for the database with backoff."""
        if self._take_at is None or time.time() < self._take_at:
            return
        try:
            self.take_shard()
            self._take_at = None
        except leases.DuplicateHost as exc:
            if exc.wait is not None and not self._waited_for_holder:
                # a replacement machine started within lease_ttl of the old one's
                # death: once the holder's heartbeat is that old, it is ours
                self._waited_for_holder = True
                self._take_at = time.time() + exc.wait
                LOG.warning("worker %d: %s; retrying once in %.1f s, when it has been silent "
                            "past lease_ttl (a dead machine's members are then taken over)",
                            self.args.index, exc, exc.wait)
                return
            self._take_at = None  # another machine runs this member: stop
            self.duplicate = str(exc)
        except Exception as exc:
            if not faults.is_transient(exc):
                raise
            self._take_failures += 1
            pause = backoff.delay(self._take_failures, DB_WAIT_START, DB_WAIT_MAX, jitter=0.2)
            self._take_at = time.time() + pause
            LOG.warning("worker %d cannot reach the database to take its shard (%s); "
                        "retrying in %.1f s", self.args.index, describe(exc), pause)

    # -- loop -------------------------------------------------------------
    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        next_rescan = time.time() + RESCAN_INTERVAL
        self._send(("ready", self.args.index, os.getpid()))
        code = EXIT_OK
        while not self.stopping:
            self.args.heartbeat.value = time.time()
            self._try_take()
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
            if self.duplicate is not None:
                LOG.critical("worker %d: %s; exiting (code %d: the daemon halts)",
                             self.args.index, self.duplicate, EXIT_BOOT_ERROR)
                self._send(("fatal", self.args.index, self.duplicate))
                self.stopping, code = True, EXIT_BOOT_ERROR
                break
            stuck = self.scheduler.stuck()
            if stuck >= self.stuck_limit:
                LOG.error("worker %d: %d threads are stuck in handlers past their deadline "
                          "(hung device calls); draining the others and exiting so a fresh "
                          "worker takes over", self.args.index, stuck)
                self.stopping, code = True, EXIT_RECYCLE
        drained = self.drained = self.scheduler.drain(self.args.conf.orchestrator.drain_timeout)
        LOG.info("worker %d stopped (%s); unfinished steps stay in the database",
                 self.args.index, "drained" if drained else "drain timed out")
        return code

    @property
    def stuck_limit(self) -> int:
        """Stuck threads that make this worker recycle itself: half its pool."""
        return max(1, self.args.conf.orchestrator.threads_per_worker // 2)

    def close(self, drained: bool = False) -> None:
        """Give the leases back (after a full drain only: a step still running must
        not run elsewhere too), stop the thread pool, then the services (drivers'
        pools and sessions, then the database engine). Runs on every exit path,
        including a lost listener."""
        self.stopping = True
        self._closed.set()
        if self._wake_listener is not None:
            self._wake_listener.close()
        if drained and self.owns_shard:
            self.leases.leave()
        self.scheduler.close()
        self.services.stop()
        self._lease_engine.dispose()

    def _handle(self, msg) -> None:
        kind = msg[0]
        if kind == "dispatch":
            self.scheduler.offer(msg[1])
        elif kind == "take":
            self._take_at = time.time()
        elif kind == "stop":
            self.stopping = True

    def _rescan(self) -> None:
        if not self.owns_shard:  # a standby must not touch the shard its predecessor runs
            return
        try:
            self._scan(self.leases.buckets())
        except Exception as exc:
            LOG.warning("worker %d: rescan failed (%s); retrying in %.0f s",
                        self.args.index, exc.__class__.__name__, RESCAN_INTERVAL)

    def _publish(self, result: Result) -> None:
        for event_type, payload in result.wakes:  # notifications wait in the outbox
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
    failures = 0
    while True:
        try:
            worker.boot()
            break
        except Exception as exc:
            if not faults.is_transient(exc):
                _exit_boot_failure(args.index, exc)
            failures += 1
            pause = backoff.delay(failures, DB_WAIT_START, DB_WAIT_MAX, jitter=0.2)
            LOG.warning("worker %d cannot boot yet (%s: the database or a service is "
                        "unreachable); retrying in %.1f s", args.index, describe(exc), pause)
            time.sleep(pause)
    try:
        code = worker.run()
    finally:
        worker.close(drained=worker.drained)
    os._exit(code)


def is_configuration_error(exc: BaseException) -> bool:
    """A boot failure that respawning cannot fix: bad configuration, an unknown
    driver, a missing module."""
    from pydantic import ValidationError
    return isinstance(exc, (nfp_config.ConfigError, LookupError, ImportError, ValidationError))


def _exit_boot_failure(index: int, exc: BaseException) -> None:
    if is_configuration_error(exc):
        LOG.exception("worker %d failed to boot: configuration error; the daemon will halt", index)
        os._exit(EXIT_BOOT_ERROR)
    LOG.exception("worker %d failed to boot (%s); it will be respawned", index, describe(exc))
    os._exit(EXIT_FAILURE)
