"""Run one step and commit its outcome atomically with its completion.

``run`` is what a worker thread calls for an event id. It returns what the
worker must do next: events to dispatch (follow-ups, released fan-in parents,
re-scheduled polls) and notifications to publish, all already committed.

Transient failures (:func:`nfp.faults.is_transient`: the database connection
lost, a serialisation failure, a deadlock), whether raised by the handler or by
the commit, never fail the step or its network function: the attempt is rolled
back and the step runs again after a backoff (``Result.retry_after``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional

from sqlalchemy.exc import SQLAlchemyError

from nfp.db.models import EventStatus
from nfp import backoff, clock, faults, outbox
from nfp.db.errors import human_reason
from nfp.engine import store
from nfp.engine.events import Outcome, fail
from nfp.engine.leases import LeaseLost
from nfp.engine.registry import Registry
from nfp.engine.step import Step
from nfp.rpc.errors import describe
from nfp.rpc.ratelimit import RateLimitedLog

LOG = logging.getLogger(__name__)

#: retry of a step after a transient error: first pause and ceiling, seconds
RETRY_START = 0.2
RETRY_MAX = 10.0


class _TransientError(Exception):
    """A handler hit a transient error; the step is retried, not failed."""

    def __init__(self, cause: BaseException):
        super().__init__(str(cause))
        self.cause = cause


@dataclass
class Result:
    """What the worker does after a step: dispatch ``refs``, publish ``notify``."""

    refs: list[store.Ref] = field(default_factory=list)
    notify: list[tuple[str, dict]] = field(default_factory=list)
    #: why nothing was committed, if so
    dropped: Optional[str] = None
    #: run the same step again after this many seconds (a transient error)
    retry_after: Optional[float] = None
    #: the step was closed (done or failed): its fan-in parent, if any, is released
    closed: bool = False

    @property
    def wakes(self) -> list[tuple[str, dict]]:
        """What the worker sends the listener: ``notify`` is already committed to
        the outbox (:mod:`nfp.outbox`), so one wake for its relay, not the payloads."""
        return [(outbox.WAKE, {})] if self.notify else []


class Executor:
    """Runs steps against one database with one set of services.

    Parameters:
        sessionmaker: session factory on the process's engine.
        services: what handlers reach as ``step.services``.
        max_attempts(int): crashes a step survives.
        registry(Registry): the application's step types.
    """

    def __init__(self, sessionmaker, services: Any, max_attempts: int = 5, *,
                 registry: Optional[Registry] = None):
        self.sessionmaker = sessionmaker
        self.services = services
        self.max_attempts = max_attempts
        self.registry = registry if registry is not None else Registry()
        #: set by the scheduler: ``(scope, key) -> bool``
        self.busy_probe = lambda scope, key: False
        #: where running steps are marked for a successor to charge (nfp.engine.running)
        self.running = None
        #: the worker's bucket leases (nfp.engine.leases.LeaseKeeper); None: no fencing
        self.lease = None
        #: consecutive transient failures per step (in memory: they are never charged)
        self._transient: dict[int, int] = {}
        self._is_sqlite: Optional[bool] = None
        self._ratelog = RateLimitedLog(LOG)

    # -- entry points -----------------------------------------------------
    def run(self, event_id: int) -> Result:
        """Run the step ``event_id`` if it is due and still open."""
        session = self.sessionmaker()
        slots = self._mark([event_id])
        try:
            result = self._run(session, event_id)
        except LeaseLost as exc:
            _rollback(session)
            LOG.warning("step %s: result dropped, %s; the new holder runs it", event_id, exc)
            return Result(dropped="lease lost")
        except _TransientError as exc:
            _rollback(session)
            return self._retry(event_id, exc.cause)
        except SQLAlchemyError as exc:
            _rollback(session)
            if faults.is_transient_db(exc):
                return self._retry(event_id, exc)
            LOG.error("step %s: database error %s; it stays pending and will be retried",
                      event_id, exc.__class__.__name__)
            return Result(dropped="database error")
        finally:
            self._unmark(slots)
            session.close()
        self._transient.pop(event_id, None)
        return result

    def _retry(self, event_id: int, exc: BaseException) -> Result:
        """Schedule ``event_id`` again after a backoff; nothing is charged to it."""
        failures = self._transient[event_id] = self._transient.get(event_id, 0) + 1
        delay = backoff.delay(failures, RETRY_START, RETRY_MAX, jitter=0.2)
        self._ratelog.log(logging.WARNING, "transient", "step %s: transient error (%s), retry %d "
                          "in %.1f s; not counted against the step or its network function",
                          event_id, describe(exc), failures, delay)
        return Result(dropped="transient error", retry_after=delay)

    def run_batch(self, event_ids: list[int]) -> dict[int, Result]:
        """Run pure state-transition steps (``io=False``) in one transaction.

        The fast path commits only when every step in the batch is open, due and
        returns ``done``; otherwise the whole batch rolls back and each step runs
        alone through :meth:`run`. That is safe because such handlers only touch
        the database, so running one again after a rollback has no other effect.
        """
        if len(event_ids) == 1:
            return {event_ids[0]: self.run(event_ids[0])}
        session = self.sessionmaker()
        slots = self._mark(event_ids)
        try:
            fast = self._batch(session, event_ids)
        except LeaseLost as exc:
            _rollback(session)
            LOG.warning("batch of %d steps dropped: %s; the new holder runs them", len(event_ids), exc)
            return {event_id: Result(dropped="lease lost") for event_id in event_ids}
        except Exception as exc:
            _rollback(session)
            LOG.debug("batch of %d fell back to single steps: %s", len(event_ids), exc)
            fast = None
        finally:
            self._unmark(slots)
            session.close()
        if fast is not None:
            return fast
        return {event_id: self.run(event_id) for event_id in event_ids}

    def _batch(self, session, event_ids: list[int]) -> Optional[dict[int, Result]]:
        rows = {r.id: r for r in store.load(session.connection(), event_ids, lock=True)}
        now = clock.utcnow()
        finished, emits, notify = [], [], {}
        for event_id in event_ids:
            row = rows.get(event_id)
            # a step charged for a crash runs alone: if it crashes its worker again,
            # only it is charged, not the other steps of its batch
            if (row is None or row.status != EventStatus.PENDING or row.pending_children > 0
                    or row.due_at > now or row.attempts > 0):
                return None
            spec = self.registry.lookup(row.type)
            if spec is None or spec.io:
                return None
            step = Step(event=row, session=session, services=self.services,
                        notification=(row.result or {}).get("notification"),
                        busy_probe=self.busy_probe)
            outcome = spec.fn(step)
            if not isinstance(outcome, Outcome) or outcome.kind != "done":
                return None
            finished.append({"id": row.id, "result": outcome.result})
            emits += [(item, row.generation) for item in outcome.emit]
            notify[row.id] = outcome.notify
            outbox.add(session.connection(), row.scope, outcome.notify)  # committed with the step
        session.flush()
        conn = session.connection()
        store.finish_many(conn, finished)
        refs = store.add_many(conn, emits)
        self._fence(session, [row.key_hash for row in rows.values()])
        for event_id in event_ids:
            refs += self._release(session, rows[event_id])
        session.commit()
        results = {event_id: Result(notify=notify[event_id]) for event_id in event_ids}
        results[event_ids[0]].refs = refs  # follow-ups are dispatched once, not per step
        return results

    def _mark(self, event_ids: list[int]) -> list:
        running = self.running
        return [running.add(i) for i in event_ids] if running is not None else []

    def _unmark(self, slots: list) -> None:
        running = self.running
        if running is not None:
            for slot in slots:
                running.remove(slot)

    def expire(self, event_id: int, reason: str) -> Result:
        """Fail a step from outside (deadline watchdog); a late result is then dropped."""
        session = self.sessionmaker()
        try:
            row = store.load_one(session.connection(), event_id)
            if row is None or row.status not in EventStatus.OPEN:
                return Result(dropped="already closed")
            result = self._fail(session, row, reason)
            self._close(session, row, result)
            session.commit()
            return result
        except LeaseLost:
            _rollback(session)
            return Result(dropped="lease lost")
        finally:
            session.close()

    # -- internals --------------------------------------------------------
    def _run(self, session, event_id: int) -> Result:
        row = store.load_one(session.connection(), event_id)
        if row is None or row.status not in EventStatus.OPEN or row.pending_children > 0:
            session.rollback()
            return Result(dropped="not open")
        now = clock.utcnow()
        if row.due_at > now:
            session.rollback()
            return Result(refs=[store.Ref(row.id, row.key, row.key_hash, row.due_at, row.type)],
                          dropped="not due")
        if self.lease is not None and not self.lease.holds(row.key_hash):
            session.rollback()
            return Result(dropped="lease lost")
        if row.status == EventStatus.WAITING:
            result = self._fail(session, row, "timed out waiting for a configurator notification")
            self._close(session, row, result)
            session.commit()
            return result
        spec = self.registry.lookup(row.type)
        if self._sqlite(session):
            # End the read transaction: on SQLite it holds the database write lock,
            # which must not stay held while a handler blocks on a device. On
            # PostgreSQL the read holds no lock, and handlers commit (Step.checkpoint)
            # before they block, so the load and the handler's reads share one
            # transaction (two round trips and a pool check-in fewer per step).
            session.commit()
        step = Step(event=row, session=session, services=self.services,
                    notification=(row.result or {}).get("notification"), busy_probe=self.busy_probe,
                    fence=lambda s: self._fence(s, [row.key_hash]),
                    lease=lambda: self._lease(row))
        if spec is None:
            outcome = fail(f"no handler for step type {row.type!r}")
        elif row.attempts >= self.max_attempts:
            outcome = fail(f"step {row.type} was interrupted {row.attempts} times; giving up")
        else:
            outcome = self._call(spec, step, session)
        try:
            result = self._apply(session, row, outcome, step)
            self._close(session, row, result)
            session.commit()
            return result
        except SQLAlchemyError as exc:
            if faults.is_transient_db(exc):
                raise  # run() retries the whole step; a commit that did land closed it
            session.rollback()
            LOG.error("step %s %s: commit failed (%s); failing it", row.id, row.type,
                      exc.__class__.__name__)
            row = store.load_one(session.connection(), event_id)
            result = self._fail(session, row, f"could not commit step result: {exc.__class__.__name__}")
            self._close(session, row, result)
            session.commit()
            return result

    def _sqlite(self, session) -> bool:
        if self._is_sqlite is None:
            self._is_sqlite = session.get_bind().dialect.name == "sqlite"
        return self._is_sqlite

    def _fence(self, session, key_hashes: list[int]) -> None:
        """Last statement before a step's commit: this worker still holds the
        steps' buckets with the epochs it took them with (raises LeaseLost)."""
        if self.lease is not None:
            self.lease.fence(session, key_hashes)

    def _call(self, spec, step: Step, session) -> Outcome:
        try:
            outcome = spec.fn(step)
        except LeaseLost:  # a fenced checkpoint: the new holder runs the step
            raise
        except Exception as exc:  # a handler bug must fail the step, not the worker
            if faults.is_transient_db(exc):
                raise _TransientError(exc) from exc
            LOG.exception("step %s %s (scope %s) raised; failing it", step.id, spec.name, step.scope)
            session.rollback()
            # a database error's text holds SQL and bound parameters: never shown
            return fail(f"{spec.name}: {human_reason(exc)}")
        if not isinstance(outcome, Outcome):
            return fail(f"{spec.name} returned {type(outcome).__name__}, not an Outcome")
        return outcome

    def _apply(self, session, row, outcome: Outcome, step: Step) -> Result:
        if outcome.kind == "poll":
            if row.polls + 1 >= (outcome.max_polls or 1):
                outcome = fail(f"{row.type}: gave up after {row.polls + 1} polls")
            else:
                ref = store.reschedule(session.connection(), row.id, outcome.interval, result=outcome.result)
                return Result(refs=[ref] if ref else [], dropped=None if ref else "cancelled")
        if outcome.kind == "wait":
            ref = store.reschedule(session.connection(), row.id, outcome.interval, EventStatus.WAITING,
                                   count_poll=False)
            return Result(refs=[ref] if ref else [])
        if outcome.kind == "fail":
            return self._fail(session, row, outcome.reason or "failed", step)
        if not self._finish(session, row, EventStatus.DONE, result=outcome.result):
            session.rollback()  # cancelled or expired meanwhile: drop the late result
            return Result(dropped="closed meanwhile")
        conn = session.connection()
        refs = store.add(conn, outcome.emit, row.generation, parent_id=None)
        outbox.add(conn, row.scope, outcome.notify)  # committed with the step
        return Result(refs=refs, notify=outcome.notify, closed=True)

    def _fail(self, session, row, reason: str, step: Optional[Step] = None) -> Result:
        LOG.warning("step %s %s (scope %s) failed: %s", row.id, row.type, row.scope, reason)
        session.rollback()  # the failed attempt's own writes never commit
        if not self._finish(session, row, EventStatus.FAILED, error=reason[:4000]):
            session.rollback()
            return Result(dropped="closed meanwhile")
        refs, notify = [], []
        spec = self.registry.lookup(row.type)
        if spec and spec.on_failure:
            fresh = Step(event=row, session=session, services=self.services)
            try:
                follow = spec.on_failure(fresh, reason)
            except Exception:
                LOG.exception("failure handler of %s raised; the step stays failed", row.type)
                follow = None
            if follow is not None:
                refs += store.add(session.connection(), follow.emit, row.generation)
                notify += follow.notify
        outbox.add(session.connection(), row.scope, notify)  # committed with the failure
        return Result(refs=refs, notify=notify, closed=True)

    def _finish(self, session, row, status: str, result: Optional[dict] = None,
                error: Optional[str] = None) -> bool:
        """Close the step, fenced in the same statement (one round trip, and the
        lease row stays share-locked until the commit, as :meth:`_fence` locks it).
        False if it was closed meanwhile; raises LeaseLost if the lease is why."""
        lease = self._lease(row)
        if store.finish(session.connection(), row.id, status, result, error, lease):
            return True
        if lease is not None:
            self._fence(session, [row.key_hash])  # raises LeaseLost when it was the lease
        return False

    def _lease(self, row) -> Optional[dict]:
        """The parameters of the step's fence inside one statement (None: no fencing)."""
        return self.lease.lease(row.key_hash) if self.lease is not None else None

    def _close(self, session, row, result: Result) -> None:
        """The end of a step's transaction, before its commit: the fence (a closed
        step's :meth:`_finish` carried it), then the release of a closed step's
        fan-in parent. The parent's row is shared with the step's siblings, which
        wait for its lock, so it is the last statement: the lock is held for the
        commit, not also for the fence."""
        session.flush()  # the handler's ORM changes go first: the parent's lock waits for nothing else
        if result.closed:
            result.refs += self._release(session, row)
        else:
            self._fence(session, [row.key_hash])

    @staticmethod
    def _release(session, row) -> list[store.Ref]:
        if row.parent_id is None:
            return []
        parent = store.release_parent(session.connection(), row.parent_id)
        return [parent] if parent else []


def _rollback(session) -> None:
    """Roll back a session whose connection may be dead; its pool replaces it."""
    try:
        session.rollback()
    except Exception:  # the connection is gone: nothing to roll back
        LOG.debug("rollback on a lost connection failed", exc_info=True)
