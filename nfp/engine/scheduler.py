"""In-worker scheduling: one step per key at a time, timers, deadlines, a thread pool.

Steps with the same key run one at a time in the order they were offered; steps
with different keys run concurrently in a thread pool, because driver calls
block on devices. Future steps (polls, parked waits) sit in a timer heap.
Nothing here is durable: the event table is, and a restarted worker rebuilds
this state from it.
"""
from __future__ import annotations

import collections
import heapq
import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional

import dataclasses
import datetime as dt

from nfp import clock
from nfp.engine.executor import Executor, Result
from nfp.engine.running import RunningSteps
from nfp.engine.store import Ref

LOG = logging.getLogger(__name__)

#: most pure state-transition steps committed in one transaction
BATCH = 64
#: threads committing batches (each holds one database connection)
BATCH_THREADS = 2


class KeyScheduler:
    """Runs offered steps through ``executor`` with per-key ordering.

    Parameters:
        executor(Executor): runs one step and commits it.
        threads(int): size of the handler thread pool.
        on_result(callable): ``(Result) -> None`` for notifications, called in pool threads.
        default_deadline(float): seconds a step may run when its handler sets none.
        pool: runs ``pool.submit(fn, *args)``; defaults to a thread pool of ``threads``.
        batch_threads(int): threads committing batches; with 0 the owner calls
            :meth:`run_queued_batches` (the in-process test engine does).
        running(RunningSteps): where started steps are marked until they end, so
            a successor charges a crash only to them (:mod:`nfp.engine.running`).
    """

    def __init__(self, executor: Executor, threads: int,
                 on_result: Optional[Callable[[Result], None]] = None,
                 default_deadline: float = 300.0, gate: Optional[Callable[[], bool]] = None,
                 pool=None, batch_threads: int = BATCH_THREADS,
                 running: Optional[RunningSteps] = None):
        self.executor = executor
        self.pool = pool if pool is not None else ThreadPoolExecutor(max_workers=threads,
                                                                     thread_name_prefix="step")
        self.on_result = on_result or (lambda r: None)
        self.default_deadline = default_deadline
        self._lock = threading.Lock()
        self._known: set[int] = set()
        self._busy_keys: dict[str, tuple[int, float, float]] = {}  # key -> (id, start, deadline)
        self._refs: dict[int, Ref] = {}  # busy id -> its ref, to retry it after a transient error
        self._started: set[int] = set()  # busy ids whose handler is running in a thread
        #: expired steps whose thread has not come back (a hung device call)
        self._abandoned: set[int] = set()
        if running is not None:
            self.running_steps = running
        self._waiting: dict[str, collections.deque[Ref]] = collections.defaultdict(collections.deque)
        self._timers: list[tuple[float, int, Ref]] = []
        self._timer_due: dict[int, float] = {}
        self._idle = threading.Condition(self._lock)
        self.completed = 0
        self._batch_q: queue.SimpleQueue = queue.SimpleQueue()
        executor.busy_probe = self.scope_busy
        #: ``() -> bool``: may new steps start now? (closed while intake has priority)
        self.gate = gate or (lambda: True)
        self._deferred: list[tuple[str, int, str]] = []
        self._closed = False
        #: set by drain(): no new step starts, running ones finish
        self._draining = False
        #: ``(Ref) -> bool``: may this worker start the step? (its bucket lease, see
        #: :mod:`nfp.engine.leases`); a step refused here stays open in the table
        self.admit: Callable[[Ref], bool] = lambda ref: True
        self._batchers = [threading.Thread(target=self._run_batches, name=f"batch-{i}", daemon=True)
                          for i in range(batch_threads)]
        for thread in self._batchers:
            thread.start()

    # -- intake -----------------------------------------------------------
    def offer(self, refs: list[Ref]) -> None:
        """Take steps to run now or at their due time; duplicates are ignored."""
        if self._draining:
            return  # follow-ups of draining steps stay in the table for the next owner
        now_wall, now_db = clock.time(), clock.utcnow()
        to_start = []
        with self._lock:
            for ref in refs:
                if not self.admit(ref):
                    continue
                delay = (ref.due_at - now_db).total_seconds()
                if ref.id in self._known:
                    # only a parked step may come back early (a notification resumed it)
                    due = self._timer_due.get(ref.id)
                    if due is None or now_wall + delay >= due:
                        continue
                self._known.add(ref.id)
                if delay > 0.001:
                    self._timer_due[ref.id] = now_wall + delay
                    heapq.heappush(self._timers, (now_wall + delay, ref.id, ref))
                    continue
                self._timer_due.pop(ref.id, None)
                if ref.key in self._busy_keys:
                    self._waiting[ref.key].append(ref)
                else:
                    to_start.append(self._mark_busy(ref))
        for item in to_start:
            self._submit(*item)

    def fire_timers(self) -> float:
        """Start due timers; return seconds until the next one (at most 1)."""
        now = clock.time()
        to_start = []
        with self._lock:
            while self._timers and self._timers[0][0] <= now:
                when, _, ref = heapq.heappop(self._timers)
                if self._timer_due.get(ref.id) != when:
                    continue  # superseded by an earlier wake-up
                del self._timer_due[ref.id]
                if not self.admit(ref):
                    self._known.discard(ref.id)
                    continue
                if ref.key in self._busy_keys:
                    self._waiting[ref.key].append(ref)
                else:
                    to_start.append(self._mark_busy(ref))
            nxt = self._timers[0][0] - now if self._timers else 1.0
        for item in to_start:
            self._submit(*item)
        return max(0.0, min(nxt, 1.0))

    def expire_overdue(self) -> None:
        """Fail steps past their deadline; their late results will be dropped."""
        now = clock.time()
        with self._lock:
            held = {event_id for _, event_id, _ in self._deferred}
            overdue = [(k, v[0]) for k, v in self._busy_keys.items()
                       if v[2] <= now and v[0] not in held]
        for key, event_id in overdue:
            LOG.error("step %s (key %s) passed its deadline; failing it and moving on", event_id, key)
            try:
                result = self.executor.expire(event_id, "step deadline exceeded")
            except Exception as exc:  # database down: the next loop tries again
                LOG.warning("step %s: could not fail it yet (%s); retrying", event_id,
                            exc.__class__.__name__)
                continue
            self._finish(key, event_id, result, expired=True)

    def stuck(self) -> int:
        """Threads still inside a handler whose step already passed its deadline.
        Python cannot stop a thread; the worker recycles itself when too many are."""
        with self._lock:
            return len(self._abandoned)

    # -- running ----------------------------------------------------------
    def _mark_busy(self, ref: Ref) -> tuple[str, int, str]:
        now = clock.time()
        self._busy_keys[ref.key] = (ref.id, now, now + self.executor.registry.deadline(ref.type, self.default_deadline))
        self._refs[ref.id] = ref
        return ref.key, ref.id, ref.type

    @property
    def deferred(self) -> int:
        return len(self._deferred)

    def release_deferred(self) -> None:
        """Start the steps held back while the gate was closed, once it opens."""
        if not self._deferred or not self.gate():
            return
        now = clock.time()
        with self._lock:
            held, self._deferred = self._deferred, []
            for key, event_id, event_type in held:  # the deadline counts from the real start
                self._busy_keys[key] = (event_id, now, now + self.executor.registry.deadline(event_type, self.default_deadline))
        for item in held:
            self._submit(*item)

    def _submit(self, key: str, event_id: int, event_type: str = "") -> None:
        if not self.gate():
            with self._lock:
                self._deferred.append((key, event_id, event_type))
            return
        if self._closed:
            return  # shutting down: the step stays open in the database
        if self.executor.registry.batchable(event_type):
            self._batch_q.put((key, event_id))
        else:
            try:
                self.pool.submit(self._run, key, event_id)
            except RuntimeError:  # the pool shut down between the check and here
                pass

    def _run_batches(self) -> None:
        """Pure state transitions: take what is queued (up to BATCH) and commit it
        in one transaction."""
        while True:
            first = self._batch_q.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < BATCH:
                try:
                    item = self._batch_q.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._batch_q.put(None)
                    break
                batch.append(item)
            self._run_batch(batch)

    def run_queued_batches(self) -> int:
        """Run the queued pure steps in the calling thread, up to BATCH per
        transaction as the batch threads would; return how many ran. For a
        scheduler built with ``batch_threads=0``."""
        ran = 0
        while True:
            batch = []
            while len(batch) < BATCH:
                try:
                    batch.append(self._batch_q.get_nowait())
                except queue.Empty:
                    break
            if not batch:
                return ran
            self._run_batch(batch)
            ran += len(batch)

    def _run_batch(self, batch: list[tuple[str, int]]) -> None:
        if self._draining:  # queued, never started: they stay open for the next owner
            for key, event_id in batch:
                self._finish(key, event_id, Result(dropped="draining"))
            return
        self._start([event_id for _, event_id in batch])
        try:
            results = self.executor.run_batch([event_id for _, event_id in batch])
        except Exception:
            LOG.exception("batch of %d steps crashed; they stay pending for a rescan", len(batch))
            results = {}
        for key, event_id in batch:
            self._finish(key, event_id, results.get(event_id) or Result())

    def _run(self, key: str, event_id: int) -> None:
        if self._draining:  # queued in the pool, never started: stays open in the table
            self._finish(key, event_id, Result(dropped="draining"))
            return
        self._start([event_id])
        try:
            result = self.executor.run(event_id)
        except Exception:  # never lose the key: a bug here must not wedge it forever
            LOG.exception("step %s crashed the executor; it stays pending for a rescan", event_id)
            result = Result(dropped="executor error")
        self._finish(key, event_id, result)

    def _start(self, event_ids: list[int]) -> None:
        """Note steps whose handler now runs in a thread (see :meth:`stuck`)."""
        with self._lock:
            self._started.update(event_ids)

    @property
    def running_steps(self) -> Optional[RunningSteps]:
        """The shared running-steps map; the executor marks each step it runs."""
        return self.executor.running

    @running_steps.setter
    def running_steps(self, value: Optional[RunningSteps]) -> None:
        self.executor.running = value

    def _finish(self, key: str, event_id: int, result: Result, expired: bool = False) -> None:
        to_start = None
        with self._lock:
            if not expired:  # its thread came back
                self._started.discard(event_id)
                self._abandoned.discard(event_id)
            elif event_id in self._started:
                self._abandoned.add(event_id)  # its thread is still inside the handler
            cur = self._busy_keys.get(key)
            if cur is None or cur[0] != event_id:
                return  # expired earlier: its key was already released
            self._known.discard(event_id)
            del self._busy_keys[key]
            ref = self._refs.pop(event_id, None)
            queue = self._waiting.get(key)
            while queue and not self.admit(queue[0]):
                self._known.discard(queue.popleft().id)
            if queue:
                to_start = self._mark_busy(queue.popleft())
            if not queue:
                self._waiting.pop(key, None)
            self.completed += 1
            self._idle.notify_all()
        if to_start:
            self._submit(*to_start)
        if result.retry_after is not None and ref is not None:
            # a transient database error: the same step again after a backoff
            due = clock.utcnow() + dt.timedelta(seconds=result.retry_after)
            self.offer([dataclasses.replace(ref, due_at=due)])
        if result.refs:
            self.offer(result.refs)
        if result.notify:
            self.on_result(result)

    def busy_hashes(self) -> set[int]:
        """``key_hash`` of every step started or queued to start (not timers)."""
        with self._lock:
            return {self._refs[v[0]].key_hash for v in self._busy_keys.values() if v[0] in self._refs}

    def forget(self, drop: Callable[[Ref], bool]) -> int:
        """Drop timers and queued steps matching ``drop`` (a bucket given up);
        running ones finish. They stay open in the table for their new owner."""
        with self._lock:
            before = len(self._known)
            gone = {ref.id for _, _, ref in self._timers if drop(ref)}
            for key in list(self._waiting):
                gone |= {ref.id for ref in self._waiting[key] if drop(ref)}
                self._waiting[key] = collections.deque(r for r in self._waiting[key] if not drop(r))
                if not self._waiting[key]:
                    del self._waiting[key]
            self._timers = [t for t in self._timers if t[2].id not in gone]
            heapq.heapify(self._timers)
            for event_id in gone:
                self._timer_due.pop(event_id, None)
                self._known.discard(event_id)
            return before - len(self._known)

    def scope_busy(self, scope: str, own_key: str) -> bool:
        """Another key of ``scope`` (``scope`` or ``scope:child``) is running."""
        with self._lock:
            return any(k != own_key and k.split(":", 1)[0] == scope for k in self._busy_keys)

    def run_timers_in_background(self) -> threading.Event:
        """For embedding without a worker main loop: a thread that fires timers and
        deadlines until the returned event is set."""
        stop = threading.Event()

        def loop():
            while not stop.is_set():
                stop.wait(self.fire_timers() or 0.01)
                self.expire_overdue()
        threading.Thread(target=loop, name="timers", daemon=True).start()
        return stop

    # -- shutdown ---------------------------------------------------------
    def running(self) -> int:
        with self._lock:
            return len(self._busy_keys)

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for running steps; queued ones stay in the DB."""
        end = time.time() + timeout
        with self._lock:
            self._draining = True
            self._waiting.clear()
            self._timers.clear()
            self._timer_due.clear()
            while self._busy_keys and time.time() < end:
                self._idle.wait(min(0.2, max(0.0, end - time.time())))
            return not self._busy_keys

    def close(self) -> None:
        self._closed = True
        for _ in self._batchers:
            self._batch_q.put(None)
        self.pool.shutdown(wait=False, cancel_futures=True)

