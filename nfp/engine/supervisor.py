"""Worker supervision in the listener: a ``{index: worker}`` table, heartbeats,
respawn with backoff, halt on boot errors, and routing of step refs to shards.

Each worker incarnation gets fresh pipes: a worker killed mid-read cannot leave a
half-read message for its successor, and whatever was in its pipe is recovered
from the event table when the successor boots.
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import multiprocessing.connection as mpc
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from nfp.engine import worker as worker_mod
from nfp.engine.store import Ref

LOG = logging.getLogger(__name__)
CTX = multiprocessing.get_context("spawn")

#: refs per pipe message
CHUNK = 200


class BootError(RuntimeError):
    """A worker could not boot; respawning it would only loop."""


@dataclass
class _Slot:
    index: int
    process: Any = None
    inbox: Any = None          # write end (ours)
    outbox: Any = None         # read end (ours)
    heartbeat: Any = None
    ready: bool = False
    started: float = 0.0
    restarts: int = 0
    next_spawn: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Supervisor:
    """Starts N workers, keeps them alive and hands them step refs.

    Parameters:
        conf(NfpConfig): validated configuration.
        on_notify(callable): ``(event_type, payload)`` for notifications workers emit.
        services_factory(str): ``module:function`` that builds worker services.
    """

    def __init__(self, conf, on_notify: Optional[Callable[[str, dict], None]] = None,
                 services_factory: str = "nfp.workers.lifecycle.services:build"):
        self.conf = conf
        self.n = conf.worker_count
        self.on_notify = on_notify or (lambda t, p: None)
        self.services_factory = services_factory
        self.slots = [_Slot(i) for i in range(self.n)]
        self._stop = threading.Event()
        self._router: Optional[threading.Thread] = None
        self.boot_error: Optional[str] = None
        #: wall-clock time until which workers start no new steps (intake priority)
        self.intake_busy = CTX.Value("d", 0.0, lock=False)
        self._busy_since = 0.0
        self._yield_until = 0.0

    # -- lifecycle --------------------------------------------------------
    def start(self, wait_ready: float = 60.0) -> None:
        """Spawn every worker and wait until each has booted (BootError if one can't)."""
        for slot in self.slots:
            self._spawn(slot)
        self._router = threading.Thread(target=self._route, name="router", daemon=True)
        self._router.start()
        end = time.time() + wait_ready
        while not all(s.ready for s in self.slots):
            self.check()
            if self.boot_error:
                raise BootError(self.boot_error)
            if time.time() > end:
                raise BootError("workers did not report ready in time")
            time.sleep(0.05)

    def stop(self, timeout: float) -> None:
        """Graceful: ask each worker to drain, then escalate SIGTERM → SIGKILL."""
        self._stop.set()
        for slot in self.slots:
            self._send(slot, ("stop",))
            if slot.process and slot.process.is_alive():
                os.kill(slot.process.pid, signal.SIGTERM)
        end = time.time() + timeout + 2
        for slot in self.slots:
            if slot.process:
                slot.process.join(max(0.0, end - time.time()))
                if slot.process.is_alive():
                    LOG.warning("worker %d did not stop in time; killing it", slot.index)
                    slot.process.kill()
                    slot.process.join(2)

    # -- supervision ------------------------------------------------------
    def _spawn(self, slot: _Slot) -> None:
        in_r, in_w = CTX.Pipe(duplex=False)
        out_r, out_w = CTX.Pipe(duplex=False)
        slot.heartbeat = CTX.Value("d", time.time(), lock=False)
        args = worker_mod.WorkerArgs(slot.index, self.n, self.conf, in_r, out_w,
                                     slot.heartbeat, self.services_factory, self.intake_busy)
        proc = CTX.Process(target=worker_mod.main, args=(args,), name=f"nfp-worker-{slot.index}",
                           daemon=False)
        proc.start()
        in_r.close()
        out_w.close()
        with slot.lock:
            for old in (slot.inbox, slot.outbox):
                if old is not None:
                    old.close()
            slot.process, slot.inbox, slot.outbox = proc, in_w, out_r
            slot.ready, slot.started = False, time.time()
        LOG.info("worker %d started as pid %d", slot.index, proc.pid)
        self._write_pids()

    def _write_pids(self) -> None:
        """``<state_dir>/workers.json``: the pid table, for operators and tests."""
        path = self.conf.state_path / "workers.json"
        try:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({s.index: s.process.pid for s in self.slots if s.process}))
            tmp.replace(path)
        except OSError:
            pass

    def check(self) -> None:
        """Reap dead workers, kill hung ones, respawn with backoff. Call periodically."""
        now = time.time()
        for slot in self.slots:
            proc = slot.process
            if proc is None:
                if now >= slot.next_spawn and not self._stop.is_set():
                    self._spawn(slot)
                continue
            if proc.is_alive():
                if slot.ready and now - slot.heartbeat.value > self.conf.orchestrator.worker_heartbeat_timeout:
                    LOG.error("worker %d (pid %d) missed its heartbeat; killing it", slot.index, proc.pid)
                    proc.kill()
                continue
            proc.join(0)
            code = proc.exitcode
            if self._stop.is_set():
                continue
            if code == worker_mod.EXIT_BOOT_ERROR:
                self.boot_error = f"worker {slot.index} failed to boot (exit code {code})"
                LOG.critical("%s; halting instead of respawning in a loop", self.boot_error)
                continue
            slot.restarts += 1
            delay = min(30.0, 0.1 * 2 ** min(slot.restarts, 8)) * random.uniform(0.8, 1.2)
            LOG.error("worker %d (pid %d) died with %s; respawning in %.1f s; its open steps "
                      "resume from the database", slot.index, proc.pid,
                      f"signal {-code}" if code and code < 0 else f"exit code {code}", delay)
            slot.process, slot.next_spawn = None, now + delay

    # -- intake priority ----------------------------------------------------
    def note_intake(self, batch_size: int) -> None:
        """Called after each group commit. A full batch means the broker holds a
        backlog: workers then hold back new steps for a moment so the burst is
        accepted (made durable) first. After ``intake_priority_max`` seconds of
        continuous priority, execution gets a turn of a quarter of that."""
        limit = self.conf.orchestrator.intake_priority_max
        now = time.time()
        if not limit or batch_size < self.conf.orchestrator.intake_priority_batch:
            self._busy_since = 0.0
            return
        if now < self._yield_until:
            return
        if not self._busy_since:
            self._busy_since = now
        if now - self._busy_since > limit:
            self._busy_since, self._yield_until = 0.0, now + limit / 4
            self.intake_busy.value = 0.0
            return
        self.intake_busy.value = now + 0.5

    # -- routing ----------------------------------------------------------
    def dispatch(self, refs: list[Ref]) -> None:
        """Hand committed steps to their workers (``key_hash % N``). Best effort:
        a ref lost here is found by the worker's next rescan."""
        by_shard: dict[int, list[Ref]] = {}
        for ref in refs:
            by_shard.setdefault(ref.key_hash % self.n, []).append(ref)
        for shard, items in by_shard.items():
            for i in range(0, len(items), CHUNK):
                self._send(self.slots[shard], ("dispatch", items[i:i + CHUNK]))

    def _send(self, slot: _Slot, msg) -> None:
        with slot.lock:
            if slot.inbox is None:
                return
            try:
                slot.inbox.send(msg)
            except (BrokenPipeError, OSError):
                pass  # the worker is dead: its successor rescans the database

    def _route(self) -> None:
        while not self._stop.is_set():
            conns = {s.outbox: s for s in self.slots if s.outbox is not None}
            for conn in mpc.wait(list(conns), timeout=0.2):
                slot = conns[conn]
                try:
                    msg = conn.recv()
                except (EOFError, OSError):
                    with slot.lock:
                        if slot.outbox is conn:
                            slot.outbox = None
                    continue
                self._on_message(slot, msg)

    def _on_message(self, slot: _Slot, msg) -> None:
        if msg[0] == "ready":
            slot.ready = True
            slot.restarts = 0 if time.time() - slot.started > 60 else slot.restarts
        elif msg[0] == "notify":
            try:
                self.on_notify(msg[1], msg[2])
            except Exception:
                LOG.exception("publishing notification %s failed; dropped", msg[1])

    def pids(self) -> dict[int, int]:
        return {s.index: s.process.pid for s in self.slots if s.process and s.process.is_alive()}
