"""Worker supervision in the listener, after gunicorn's arbiter: a ``{pid: worker}``
table, liveness by heartbeat, respawn with backoff, a halt on boot errors, and a
reload that starts new workers before it retires the old ones.

Hand-off. Worker ``i`` is cluster member ``host/i`` and runs the steps of the
buckets it holds leases on (:mod:`nfp.engine.leases`); two incarnations of one
member must never run at once. So every worker boots as a *standby* (database
engine, services), says ``ready``, and waits. It only joins, inheriting its
predecessor's leases and rebuilding its queue from the event table, when the
supervisor sends ``take``, and the supervisor sends that only once no other
incarnation of the index is alive. Workers report the buckets they hold; a
committed step is piped to the local holder of its bucket, or, when another
host holds it, announced to that host (:mod:`nfp.engine.wake`). On a reload the old worker is retired
(SIGTERM: it drains for ``drain_timeout``) only after its successor is ready,
so the gap without an owner is the drain, not a boot. Dispatches to a bucket
with no holder are dropped: the next holder's rebuild reads them from the table.

Each incarnation gets fresh pipes: a worker killed mid-read cannot leave a
half-read message for its successor.
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import multiprocessing.connection as mpc
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from nfp import backoff
from nfp.db.engine import make_engine
from nfp.engine import leases, wake
from nfp.engine import worker as worker_mod
from nfp.engine.companion import CompanionHandle
from nfp.engine.housekeeping import Housekeeping
from nfp.engine.intake_priority import IntakePriority
from nfp.engine.store import Ref

LOG = logging.getLogger(__name__)
CTX = multiprocessing.get_context("spawn")

#: refs per pipe message
CHUNK = 200
#: seconds a worker gets between SIGTERM and SIGKILL when it is hung, or past its drain
KILL_GRACE = 5.0
#: respawn backoff: first pause and ceiling, seconds
RESPAWN_START = 0.2
RESPAWN_MAX = 30.0
#: a worker that ran this long before dying starts the backoff afresh
STABLE_AFTER = 60.0


class BootError(RuntimeError):
    """A worker could not boot; respawning it would only loop."""


@dataclass
class _Proc:
    """One worker incarnation."""

    index: int
    process: Any
    inbox: Any                 # write end (ours)
    outbox: Any                # read end (ours)
    heartbeat: Any
    started: float
    ready: bool = False        # booted; waits for ``take`` until it owns the shard
    owner: bool = False        # took its shard
    joined: bool = False       # reported the buckets it holds (it runs steps)
    buckets: list = field(default_factory=list)  # as last reported
    retiring: bool = False     # asked to drain and exit; its exit is no crash
    fatal: Optional[str] = None  # why it exits with EXIT_BOOT_ERROR, if it said (duplicate host)
    kill_at: float = 0.0       # SIGKILL if still alive then (0 = not terminating)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def pid(self) -> int:
        return self.process.pid


@dataclass
class _Slot:
    """Shard ``index``: its owner, the successor waiting to take over, and backoff."""

    index: int
    owner: Optional[_Proc] = None
    successor: Optional[_Proc] = None
    #: the owner runs an older configuration: start a successor for it
    replace: bool = False
    restarts: int = 0
    next_spawn: float = 0.0

    @property
    def heartbeat(self):
        return self.owner.heartbeat if self.owner else None


class Supervisor:
    """Starts N workers, keeps them alive, reloads them and hands them step refs.

    Parameters:
        conf(NfpConfig): validated configuration.
        on_notify(callable): ``(event_type, payload)`` for notifications workers emit.
        app(Application): the handlers and services factory workers run.
    """

    def __init__(self, conf, on_notify: Optional[Callable[[str, dict], None]] = None,
                 app=None):
        self.conf = conf
        self.n = conf.worker_count
        self.on_notify = on_notify or (lambda t, p: None)
        self.app = app
        self.slots = [_Slot(i) for i in range(self.n)]
        self.procs: dict[int, _Proc] = {}
        self._procs_lock = threading.Lock()
        self._stop = threading.Event()
        self._router: Optional[threading.Thread] = None
        self._reloading = False
        self.boot_error: Optional[str] = None
        #: bucket -> index of the local worker holding its lease
        self.bucket_holder: dict[int, int] = {}
        self._waker: Optional[wake.Waker] = None
        self._wake_engine = None
        self.priority = IntakePriority(conf, CTX)
        self.housekeeping = Housekeeping(conf)
        # other process types the application runs beside the workers (the health monitor)
        self.companions = [CompanionHandle(spec, conf, CTX, self.on_notify, self.dispatch)
                           for spec in (app.companions(conf) if app is not None else [])]

    @property
    def intake_busy(self):
        """The shared "no new steps before" time (see :mod:`nfp.engine.intake_priority`)."""
        return self.priority.busy_until

    def note_backlog(self, waiting: int) -> None:
        """Called by the listener with the requests waiting to be committed (see
        :class:`IntakePriority`)."""
        self.priority.note_backlog(waiting)

    # -- lifecycle --------------------------------------------------------
    def start(self, wait_ready: float = 60.0) -> None:
        """Spawn every worker and wait until each has joined the cluster with its
        leases (BootError if one can't)."""
        engine = make_engine(self.conf.database_url, pool_size=1)
        if wake.supported(engine):
            self._wake_engine, self._waker = engine, wake.Waker(engine)
        else:
            engine.dispose()
        self._router = threading.Thread(target=self._route, name="router", daemon=True)
        self._router.start()
        for companion in self.companions:
            companion.spawn()
        end = time.time() + wait_ready
        while not all(s.owner is not None and s.owner.joined for s in self.slots):
            self.check()
            if self.boot_error:
                raise BootError(self.boot_error)
            if time.time() > end:
                raise BootError("workers did not report ready in time")
            time.sleep(0.05)

    def reload(self, conf) -> None:
        """SIGHUP: start a successor per shard with ``conf``; :meth:`check` retires
        each old worker once its successor is ready, then hands over the shard."""
        self.conf = self.priority.conf = self.housekeeping.conf = conf
        for companion in self.companions:
            companion.reload(conf)
        for slot in self.slots:
            if slot.successor is not None:  # a reload during a reload: it never owned anything
                self._terminate(slot.successor, retire=True)
                slot.successor = None
            slot.replace, slot.next_spawn = True, 0.0
        self._reloading = True
        LOG.info("reload: %d new workers are starting; each old worker drains and exits once "
                 "its successor is ready, then the successor takes over its shard", self.n)

    def stop(self, timeout: float) -> None:
        """Graceful: every worker drains (SIGTERM); SIGKILL after ``timeout`` + grace."""
        self._stop.set()
        for companion in self.companions:
            companion.stop(KILL_GRACE)
        for proc in self._snapshot():
            self._terminate(proc, retire=True)
        end = time.time() + timeout + KILL_GRACE
        for proc in self._snapshot():
            proc.process.join(max(0.0, end - time.time()))
            if proc.process.is_alive():
                LOG.warning("worker %d (pid %d) did not drain in time; killing it; its "
                            "unfinished steps resume from the database", proc.index, proc.pid)
                proc.process.kill()
                proc.process.join(2)
        self.housekeeping.close()
        if self._waker is not None:
            self._waker.close()
            self._wake_engine.dispose()

    # -- supervision ------------------------------------------------------
    def _spawn(self, index: int) -> _Proc:
        in_r, in_w = CTX.Pipe(duplex=False)
        out_r, out_w = CTX.Pipe(duplex=False)
        heartbeat = CTX.Value("d", time.time(), lock=False)
        args = worker_mod.WorkerArgs(index, self.n, self.conf, in_r, out_w, heartbeat,
                                     self.app, self.intake_busy)
        process = CTX.Process(target=worker_mod.main, args=(args,), name=f"nfp-worker-{index}",
                              daemon=False)
        process.start()
        in_r.close()
        out_w.close()
        proc = _Proc(index, process, in_w, out_r, heartbeat, time.time())
        with self._procs_lock:
            self.procs[process.pid] = proc
        LOG.info("worker %d started as pid %d; it takes its shard once booted", index, process.pid)
        return proc

    def check(self) -> None:
        """Reap exited workers, escalate on hung ones, hand shards over, respawn with
        backoff, purge old steps. Call periodically from the main loop."""
        now = time.time()
        for proc in self._snapshot():
            if proc.process.is_alive():
                self._check_alive(proc, now)
            else:
                self._reap(proc, now)
        if self._stop.is_set():
            return
        for companion in self.companions:
            companion.check(now)
            self.boot_error = self.boot_error or companion.boot_error
        for slot in self.slots:
            self._advance(slot, now)
        if self._reloading and not any(s.replace or s.owner is None for s in self.slots):
            self._reloading = False
            LOG.info("configuration reloaded: all %d workers run the new configuration", self.n)
        self.housekeeping.tick(now)

    def _check_alive(self, proc: _Proc, now: float) -> None:
        if proc.kill_at:
            if now >= proc.kill_at:
                LOG.error("worker %d (pid %d) is still alive %.0f s after SIGTERM; sending "
                          "SIGKILL; its open steps resume from the database",
                          proc.index, proc.pid, KILL_GRACE)
                proc.process.kill()
                proc.kill_at = float("inf")  # once
            return
        timeout = self.conf.orchestrator.worker_heartbeat_timeout
        if proc.owner and now - proc.heartbeat.value > timeout:
            LOG.error("worker %d (pid %d) missed its heartbeat for %.0f s; sending SIGTERM, "
                      "then SIGKILL in %.0f s; a new worker will take over its shard",
                      proc.index, proc.pid, timeout, KILL_GRACE)
            self._terminate(proc, retire=False, grace=KILL_GRACE)

    def _reap(self, proc: _Proc, now: float) -> None:
        proc.process.join(0)
        code = proc.process.exitcode
        with self._procs_lock:
            self.procs.pop(proc.pid, None)
        with proc.lock:  # the outbox is the router's to close, after the last message
            proc.inbox.close()
        slot = self.slots[proc.index]
        if slot.owner is proc:
            slot.owner = None
            self._set_buckets(proc.index, [])
        if slot.successor is proc:
            slot.successor = None
        self._write_pids()
        if proc.retiring or self._stop.is_set():
            LOG.info("worker %d (pid %d) retired (exit code %s)", proc.index, proc.pid, code)
            return
        if code == worker_mod.EXIT_BOOT_ERROR:  # a configuration error, nothing else
            self.boot_error = (self._fatal_reason(proc)
                               or f"worker {proc.index} failed to boot (exit code {code})")
            LOG.critical("%s; halting instead of respawning in a loop", self.boot_error)
            return
        if code == worker_mod.EXIT_RECYCLE:  # hung handler threads: replace it now, no backoff
            slot.next_spawn = now
            LOG.warning("worker %d (pid %d) recycled itself (threads stuck in hung handlers); "
                        "a fresh worker takes over its shard", proc.index, proc.pid)
            return
        slot.restarts = 1 if now - proc.started > STABLE_AFTER else slot.restarts + 1
        pause = backoff.delay(slot.restarts, RESPAWN_START, RESPAWN_MAX, jitter=0.2)
        slot.next_spawn = now + pause
        LOG.error("worker %d (pid %d) died with %s; respawning in %.1f s; its open steps "
                  "resume from the database", proc.index, proc.pid,
                  f"signal {-code}" if code and code < 0 else f"exit code {code}", pause)

    @staticmethod
    def _fatal_reason(proc: _Proc, wait: float = 1.0) -> Optional[str]:
        """The reason a worker sent before exiting with EXIT_BOOT_ERROR: the router
        may read it just after the exit, so wait (briefly) for it or the pipe's end."""
        end = time.time() + wait
        while proc.fatal is None and not proc.outbox.closed and time.time() < end:
            time.sleep(0.02)
        return proc.fatal

    def _advance(self, slot: _Slot, now: float) -> None:
        """Move shard ``slot.index`` one step along: spawn → retire the old → take."""
        if slot.successor is None:
            if (slot.owner is None or slot.replace) and now >= slot.next_spawn:
                slot.successor = self._spawn(slot.index)
            return
        successor = slot.successor
        if successor is None or not successor.ready:
            return
        if slot.owner is not None:
            if not slot.owner.retiring:
                LOG.info("worker %d (pid %d) is ready; retiring pid %d, which drains its running "
                         "steps (up to %.0f s) before pid %d takes the shard", slot.index,
                         successor.pid, slot.owner.pid, self.conf.orchestrator.drain_timeout,
                         successor.pid)
                self._terminate(slot.owner, retire=True)
            return
        if any(p.index == slot.index and p is not successor for p in self._snapshot()):
            return  # an earlier incarnation is still alive: it may still run steps
        self._send(successor, ("take",))
        successor.owner, slot.owner, slot.successor, slot.replace = True, successor, None, False
        if successor.joined:  # its report raced the line above
            self._set_buckets(slot.index, successor.buckets)
        LOG.info("worker %d (pid %d) took shard %d of %d", slot.index, successor.pid,
                 slot.index, self.n)
        self._write_pids()

    def _terminate(self, proc: _Proc, retire: bool, grace: Optional[float] = None) -> None:
        """SIGTERM (the worker drains); SIGKILL once ``grace`` has passed (by default
        the drain timeout plus KILL_GRACE)."""
        proc.retiring = proc.retiring or retire
        if grace is None:
            grace = (self.conf.orchestrator.drain_timeout if proc.owner else 0.0) + KILL_GRACE
        proc.kill_at = time.time() + grace
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def _snapshot(self) -> list[_Proc]:
        with self._procs_lock:
            return list(self.procs.values())

    def _write_pids(self) -> None:
        """``<state_dir>/workers.json``: shard owners' pids, for operators and tests."""
        path = self.conf.state_path / "workers.json"
        try:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({s.index: s.owner.pid for s in self.slots if s.owner}))
            tmp.replace(path)
        except OSError:
            pass

    # -- routing ----------------------------------------------------------
    def dispatch(self, refs: list[Ref]) -> None:
        """Hand committed steps to the local holder of their bucket, or wake the
        host that holds it. Best effort: a ref lost here is found by its holder's
        rebuild or next rescan."""
        by_worker: dict[int, list[Ref]] = {}
        elsewhere: set[int] = set()
        for ref in refs:
            bucket = leases.bucket_of(ref.key_hash)
            index = self.bucket_holder.get(bucket)
            if index is None:
                elsewhere.add(bucket)
            else:
                by_worker.setdefault(index, []).append(ref)
        for index, items in by_worker.items():
            owner = self.slots[index].owner
            if owner is None:
                continue
            for i in range(0, len(items), CHUNK):
                self._send(owner, ("dispatch", items[i:i + CHUNK]))
        if elsewhere and self._waker is not None:
            self._waker.wake(elsewhere)

    def _set_buckets(self, index: int, buckets: list[int]) -> None:
        """Worker ``index`` now holds exactly ``buckets``."""
        held = dict(self.bucket_holder)
        for bucket in [b for b, i in held.items() if i == index]:
            del held[bucket]
        held.update((b, index) for b in buckets)
        self.bucket_holder = held  # one swap: dispatch reads it without a lock

    def _send(self, proc: _Proc, msg) -> None:
        with proc.lock:
            try:
                proc.inbox.send(msg)
            except (BrokenPipeError, OSError):
                pass  # the worker is dead: its successor rescans the database

    def _route(self) -> None:
        # This thread alone reads and closes outboxes; it keeps reading a reaped
        # worker's outbox until EOF, so its last notifications are not lost.
        watched: dict[Any, _Proc] = {}
        while not self._stop.is_set():
            for proc in self._snapshot():
                if not proc.outbox.closed:
                    watched.setdefault(proc.outbox, proc)
            for conn in mpc.wait(list(watched), timeout=0.2):
                try:
                    msg = conn.recv()
                except (EOFError, OSError):
                    watched.pop(conn).outbox.close()
                    continue
                self._on_message(watched[conn], msg)

    def _on_message(self, proc: _Proc, msg) -> None:
        if msg[0] == "ready":
            proc.ready = True
        elif msg[0] == "buckets":
            proc.buckets, proc.joined = list(msg[2]), True
            if self.slots[proc.index].owner is proc:
                self._set_buckets(proc.index, proc.buckets)
        elif msg[0] == "fatal":
            proc.fatal = f"worker {proc.index}: {msg[2]}"
        elif msg[0] == "notify":
            try:
                self.on_notify(msg[1], msg[2])
            except Exception:
                LOG.exception("publishing notification %s failed; dropped", msg[1])

    def pids(self) -> dict[int, int]:
        """Live shard owners: ``{index: pid}``."""
        return {s.index: s.owner.pid for s in self.slots
                if s.owner and s.owner.process.is_alive()}
