"""The engine in one thread with a fake clock: deterministic tests of flows and drivers.

:class:`InProcessEngine` runs an application's steps through the production
:class:`~nfp.engine.executor.Executor`, :mod:`~nfp.engine.store` and
:class:`~nfp.engine.scheduler.KeyScheduler` on a real database, but the
scheduler's thread pool is replaced by a queue this engine drains in the
calling thread, and time is a :class:`~nfp.clock.FakeClock`. Nothing
runs until the test says so, and nothing waits for the wall clock::

    conf = nfp_config.load(None, {"state_dir": str(tmp_path)}, environ={})
    with InProcessEngine(ORCHESTRATOR, conf=conf) as engine:
        endpoints = OrchestratorEndpoints(conf, engine.sessionmaker, engine.submit)
        endpoints.handle_mutations([...create...])
        engine.join()        # every due step ran; a handler's exception is re-raised
        engine.advance(250)  # polls, parked waits and deadlines of the next 250 s

:func:`call_step` runs one handler with stand-in services and no engine at all
(nameko's ``worker_factory``/``entrypoint_hook``). dramatiq's ``StubBroker.join``
and Temporal's time-skipping environment are the models.
"""
from __future__ import annotations

import collections
import contextlib
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Union

from sqlalchemy import select

from nfp.db import migrate
from nfp.db.engine import make_engine, make_sessionmaker
from nfp.db.models import Event
from nfp import clock as engine_clock
from nfp.engine import store
from nfp.engine.app import Application
from nfp.engine.events import EventSpec, Graph, Outcome
from nfp.engine.executor import Executor, Result
from nfp.engine.registry import HandlerSpec, Registry
from nfp.engine.scheduler import KeyScheduler
from nfp.engine.step import Step

LOG = logging.getLogger(__name__)

AppOrRegistry = Union[Application, Registry]


@dataclass(frozen=True)
class Call:
    """One handler call, in the order the engine made them."""

    type: str
    scope: str
    key: str
    event_id: int
    payload: dict = field(default_factory=dict)


class _InlinePool:
    """Stands in for the scheduler's thread pool: steps queue here, and the
    engine runs them one at a time, first in first out, in its own thread."""

    def __init__(self):
        self.tasks: collections.deque = collections.deque()

    def submit(self, fn, *args) -> None:
        self.tasks.append((fn, args))

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        self.tasks.clear()


class InProcessEngine:
    """An application's steps, run deterministically in the calling thread.

    Parameters:
        app: an :class:`~nfp.engine.app.Application` or a
            :class:`~nfp.engine.registry.Registry`.
        services: what handlers reach as ``step.services``; the caller owns it.
            When omitted and ``app`` is an Application, ``app.services(conf)`` is
            built, started, and stopped by :meth:`close`.
        conf(NfpConfig): the configuration (deadline, attempts, database URL).
        database_url(str): any SQLAlchemy URL; else ``conf.database_url``; else
            SQLite in a temporary directory removed by :meth:`close`. It is
            migrated to the current schema.
        clock(FakeClock): installed for the engine's lifetime; a new one by default.
    """

    def __init__(self, app: AppOrRegistry, services: Any = None, *, conf: Any = None,
                 database_url: Optional[str] = None,
                 clock: Optional[engine_clock.FakeClock] = None):
        self._exit = contextlib.ExitStack()
        try:
            self._open(app, services, conf, database_url, clock)
        except BaseException:
            self._exit.close()
            raise

    def _open(self, app, services, conf, database_url, clock) -> None:
        self.clock = clock or engine_clock.FakeClock()
        self._exit.enter_context(engine_clock.use(self.clock))
        if database_url is None and conf is not None:
            database_url = conf.database_url
        if database_url is None:
            tmp = tempfile.mkdtemp(prefix="nfp-engine-")
            self._exit.callback(shutil.rmtree, tmp, True)
            database_url = f"sqlite:///{tmp}/nfp.db"
        migrate.upgrade(database_url)
        self.db = make_engine(database_url, pool_size=4)
        self._exit.callback(self.db.dispose)
        self.sessionmaker = make_sessionmaker(self.db)

        registry = app.registry() if isinstance(app, Application) else app
        if services is None and isinstance(app, Application):
            if conf is None:
                raise ValueError("InProcessEngine: pass conf= (or services=) to build "
                                 f"the services of application {app.name!r}")
            services = app.services(conf)
            self._exit.callback(services.stop)
            services.start()
        self.services = services
        #: every handler call, in order (a failure handler's call is not listed)
        self.calls: list[Call] = []
        #: exceptions handlers raised, first first; :meth:`join` re-raises and clears them
        self.errors: list[BaseException] = []
        #: oslo notifications the steps published, as ``(event_type, payload)``
        self.notifications: list[tuple[str, dict]] = []
        self._in_step = 0
        orchestrator = getattr(conf, "orchestrator", None)
        self.executor = Executor(self.sessionmaker, services,
                                 getattr(orchestrator, "max_attempts", 5),
                                 registry=self._recording(registry))
        self._pool = _InlinePool()
        self.scheduler = KeyScheduler(self.executor, threads=1, on_result=self._published,
                                      default_deadline=getattr(orchestrator, "step_deadline", 300.0),
                                      pool=self._pool, batch_threads=0)
        self._exit.callback(self.scheduler.close)
        self.clock.listeners.append(self._time_moved)
        self._exit.callback(self.clock.listeners.remove, self._time_moved)

    # -- lifecycle ------------------------------------------------------------------
    def close(self) -> None:
        """Stop owned services, dispose of the database engine, restore the clock."""
        self._exit.close()

    def __enter__(self) -> "InProcessEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- feeding it ---------------------------------------------------------------------
    def submit(self, refs: Iterable[store.Ref]) -> None:
        """Take committed steps (the ``dispatch`` of the RPC endpoints). Nothing
        runs until :meth:`run_until_idle`, :meth:`join` or :meth:`advance`."""
        self.scheduler.offer(list(refs))

    def add(self, items: Iterable[Union[EventSpec, Graph]], generation: int = 0) -> list[store.Ref]:
        """Commit steps or graphs (a flow's ``start(scope)``) and submit them."""
        with self.sessionmaker.begin() as session:
            refs = store.add(session, list(items), generation)
        self.submit(refs)
        return refs

    # -- running ------------------------------------------------------------------------
    def run_until_idle(self, max_steps: int = 10_000) -> int:
        """Run every step that is due now, and whatever they make due now (follow-ups,
        fan-out children, released fan-in parents); return how many ran. Future
        steps wait for :meth:`advance`. A handler's exception fails its step, as
        in production, and is kept in :attr:`errors`."""
        ran = 0
        while True:
            self.scheduler.fire_timers()
            self.scheduler.expire_overdue()
            if self._pool.tasks:
                fn, args = self._pool.tasks.popleft()
                fn(*args)
                ran += 1
            else:
                batched = self.scheduler.run_queued_batches()
                if not batched:
                    return ran
                ran += batched
            if ran > max_steps:
                # a step due again within a millisecond never waits for the fake clock
                raise RuntimeError(f"not idle after {max_steps} steps; last calls: {self.calls[-5:]}")

    def join(self, max_steps: int = 10_000) -> int:
        """:meth:`run_until_idle`, then re-raise the first exception a handler
        raised (with its traceback) instead of leaving only a failed step."""
        ran = self.run_until_idle(max_steps)
        if self.errors:
            first, self.errors = self.errors[0], []
            raise first
        return ran

    def advance(self, seconds: float, max_steps: int = 100_000) -> int:
        """Move the clock ``seconds`` forward, timer by timer, running what each
        instant makes due (polls, parked waits timing out, deadlines); return how
        many steps ran. A poll every 10 s runs 25 times in ``advance(250)``."""
        end = self.clock.time() + seconds
        ran = self.run_until_idle(max_steps)
        while True:
            # Idle means every timer due now has fired, so this fire_timers starts
            # nothing: it only says how far the next timer is (at most 1 s ahead).
            remaining = end - self.clock.time()
            if remaining <= 0:
                return ran
            self.clock.advance(min(self.scheduler.fire_timers(), remaining) or 1e-6)
            ran += self.run_until_idle(max_steps)

    # -- reading --------------------------------------------------------------------
    def events(self, scope: Optional[str] = None) -> list:
        """Event rows (every status), oldest first; only ``scope``'s if given."""
        stmt = select(Event.__table__).order_by(Event.id)
        if scope is not None:
            stmt = stmt.where(Event.scope == scope)
        with self.sessionmaker() as session:
            return list(session.execute(stmt))

    def call_types(self, scope: Optional[str] = None) -> list[str]:
        """Step types called, in order, each once (polls and retries folded)."""
        return list(dict.fromkeys(c.type for c in self.calls if scope in (None, c.scope)))

    # -- internals --------------------------------------------------------------------
    def _recording(self, registry: Registry) -> Registry:
        """The same step types, each handler wrapped to record its call and any
        exception before the executor turns that into a failed step."""
        return Registry(HandlerSpec(spec.name, self._record(spec.fn, spec.name, True),
                                    spec.on_failure and self._record(spec.on_failure, spec.name, False),
                                    spec.deadline, spec.io) for spec in registry)

    def _record(self, fn, name: str, listed: bool):
        def run(step, *args):
            if listed:
                self.calls.append(Call(name, step.scope, step.event.key, step.id, dict(step.payload)))
            self._in_step += 1
            try:
                return fn(step, *args)
            except Exception as exc:
                self.errors.append(exc)
                raise
            finally:
                self._in_step -= 1
        return run

    def _time_moved(self, seconds: float) -> None:
        # Time moved inside a handler (a fake device's ``clock.sleep``): run the
        # deadline watchdog now, as a worker's main loop would while the handler
        # blocks, so an overrunning step is failed and its late result dropped.
        # The handler must have called ``step.checkpoint()`` first, as every
        # handler does before device I/O; on SQLite its open write would block this.
        if self._in_step:
            self.scheduler.expire_overdue()

    def _published(self, result: Result) -> None:
        self.notifications.extend(result.notify)


@dataclass(frozen=True)
class _Event:
    """An event row's fields, for a handler called without the event table."""

    id: int
    type: str
    scope: str
    key: str
    payload: dict
    result: Optional[dict] = None
    status: str = "pending"
    attempts: int = 1
    polls: int = 0
    generation: int = 0
    parent_id: Optional[int] = None


def call_step(app: AppOrRegistry, step_type: str, scope: str, payload: Optional[dict] = None, *,
              services: Any = None, session: Any = None, notification: Optional[dict] = None,
              key: Optional[str] = None) -> Outcome:
    """Run the handler of ``step_type`` once for ``scope`` and return its Outcome.

    No engine, no event table: ``services`` is the stand-in handed to the handler
    (for flow steps that poll it needs ``conf``), ``session`` the session it
    reads and writes (the caller commits or rolls back; None for handlers that
    never touch the database). A flow step's outcome carries the successors its
    flow declares in ``emit``. Exceptions propagate.
    """
    registry = app.registry() if isinstance(app, Application) else app
    spec = registry.lookup(step_type)
    if spec is None:
        raise LookupError(f"no step type {step_type!r}; registered: {registry.names()}")
    event = _Event(id=0, type=step_type, scope=scope, key=key or scope, payload=dict(payload or {}))
    outcome = spec.fn(Step(event=event, session=session, services=services, notification=notification))
    if not isinstance(outcome, Outcome):
        raise TypeError(f"{step_type} returned {type(outcome).__name__}, not an Outcome")
    return outcome
