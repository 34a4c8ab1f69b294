"""Flows as data: which step follows which, fan-out and fan-in, polls, deadlines
and the failure edge of every step, compiled into a :class:`Registry`.

An application declares its flows once (the orchestrator's are in
:mod:`nfp.flows`) and binds each task name to the function that does the work.
Handlers never name a next step: they return ``done()`` (optionally choosing a
branch the flow declares, and a payload for what follows), ``again()`` to poll,
or ``fail(reason)``. :func:`compile_flows` wraps each handler so the engine emits
the declared successors, fills in the declared poll interval, and on failure
either runs the flow's failure handler or, for ``CONTINUE`` steps, goes on with
the declared successor. Octavia's ``flows/*.py`` play the same role.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Union

from nfp.engine.events import EventSpec, Graph, Outcome, done, fail
from nfp.engine.registry import HandlerSpec, Registry

LOG = logging.getLogger(__name__)

#: failure edge of a step that must not stop its flow (every delete step)
CONTINUE = "continue"


@dataclass(frozen=True)
class Poll:
    """How a polling task repeats. Each value is seconds/count, or the name of an
    ``orchestrator`` config key read when the step runs."""

    interval: Union[float, str]
    max_polls: Union[int, str]

    def resolve(self, conf: Any) -> tuple[float, int]:
        section = getattr(conf, "orchestrator", None)
        interval = getattr(section, self.interval) if isinstance(self.interval, str) else self.interval
        max_polls = getattr(section, self.max_polls) if isinstance(self.max_polls, str) else self.max_polls
        return float(interval), int(max_polls)


@dataclass(frozen=True)
class Fork:
    """Fan-out and fan-in: ``children`` run in parallel, ``join`` once all have closed."""

    children: tuple[str, ...]
    join: str


Next = Union[str, Fork, None]


@dataclass(frozen=True)
class Task:
    """One step of a flow.

    Parameters:
        name(str): the step type (``device.allocate``).
        then: what follows a plain ``done()``: a task name, a :class:`Fork`, or None (end).
        branches(dict): other successors a handler may choose with ``done(branch=...)``.
        on_failure(str): ``CONTINUE``, or the name of a failure handler; None takes the flow's.
        io(bool): False for pure database transitions (batched, many per transaction).
        poll(Poll): for tasks that return ``again()``.
        key(str): fan-out children run under ``<scope>:<key>`` so they run concurrently.
        deadline(float): seconds, else the engine default.
    """

    name: str
    then: Next = None
    branches: Mapping[str, Next] = field(default_factory=dict)
    on_failure: Optional[str] = None
    io: bool = True
    poll: Optional[Poll] = None
    key: Optional[str] = None
    deadline: Optional[float] = None


@dataclass(frozen=True)
class Flow:
    """An ordered set of tasks. ``first`` starts it; ``on_failure`` names the
    failure handler its tasks use unless they declare their own edge."""

    name: str
    tasks: tuple[Task, ...]
    on_failure: Optional[str] = None

    @property
    def first(self) -> Task:
        return self.tasks[0]

    def task(self, name: str) -> Task:
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(f"flow {self.name} has no task {name!r}")

    def start(self, scope: str, payload: Optional[dict] = None) -> EventSpec:
        """The event that starts this flow for ``scope``."""
        return EventSpec(self.first.name, scope, dict(payload or {}))


class FlowError(ValueError):
    """A flow declaration that cannot run (unknown task, missing handler...)."""


def successors(flows: "FlowSet", nxt: Next, scope: str,
               payload: Optional[dict]) -> list[Union[EventSpec, Graph]]:
    """The events that ``nxt`` stands for."""
    if nxt is None:
        return []
    if isinstance(nxt, Fork):
        children = [_spec(flows.task(c), scope, payload) for c in nxt.children]
        return [Graph(_spec(flows.task(nxt.join), scope, payload), children)]
    return [_spec(flows.task(nxt), scope, payload)]


def _spec(task: Task, scope: str, payload: Optional[dict]) -> EventSpec:
    return EventSpec(task.name, scope, dict(payload or {}),
                     key=f"{scope}:{task.key}" if task.key else None)


class FlowSet:
    """Several flows whose task names are unique across all of them."""

    def __init__(self, flows: list[Flow]):
        self.flows = {f.name: f for f in flows}
        self._tasks: dict[str, tuple[Flow, Task]] = {}
        for flow in flows:
            for task in flow.tasks:
                if task.name in self._tasks:
                    raise FlowError(f"task {task.name} is declared in two flows")
                self._tasks[task.name] = (flow, task)
        for flow, task in self._tasks.values():
            for nxt in (task.then, *task.branches.values()):
                for name in _names(nxt):
                    if name not in self._tasks:
                        raise FlowError(f"{flow.name}: {task.name} leads to unknown task {name}")

    def task(self, name: str) -> Task:
        return self._tasks[name][1]

    def flow_of(self, name: str) -> Flow:
        return self._tasks[name][0]

    def __getitem__(self, flow_name: str) -> Flow:
        return self.flows[flow_name]

    def order(self, flow_name: str) -> list[str]:
        """Task names of a flow in the order a successful run reaches them."""
        flow, seen, out = self.flows[flow_name], set(), []

        def visit(nxt: Next) -> None:
            for name in _names(nxt):
                if name not in seen:
                    seen.add(name)
                    out.append(name)
                    visit(self.task(name).then)

        visit(flow.first.name)
        return out


def _names(nxt: Next) -> list[str]:
    if nxt is None:
        return []
    if isinstance(nxt, Fork):
        return [*nxt.children, nxt.join]
    return [nxt]


def compile_flows(flows: FlowSet, handlers: Mapping[str, Callable[..., Outcome]],
                  failures: Mapping[str, Callable[..., Optional[Outcome]]]) -> Registry:
    """A registry whose handlers do ``handlers[name]``'s work and the flow's wiring."""
    missing = sorted(set(flows._tasks) - set(handlers))
    extra = sorted(set(handlers) - set(flows._tasks))
    if missing or extra:
        raise FlowError(f"handlers missing for {missing}; handlers for undeclared tasks {extra}")
    registry = Registry()
    for name, (flow, task) in flows._tasks.items():
        edge = task.on_failure or flow.on_failure
        if edge not in (None, CONTINUE) and edge not in failures:
            raise FlowError(f"{flow.name}: {name} fails to unknown failure handler {edge!r}")
        registry.add(HandlerSpec(name, _wired(flows, task, handlers[name]),
                                 _failure_edge(flows, task, edge, failures), task.deadline, task.io))
    return registry


def _wired(flows: FlowSet, task: Task, fn: Callable[..., Outcome]) -> Callable[..., Outcome]:
    def run(step) -> Outcome:
        outcome = fn(step)
        if not isinstance(outcome, Outcome):
            return outcome  # the executor reports the type error
        if outcome.emit:
            return fail(f"{task.name}: a flow step must not emit steps itself; declare them in its flow")
        if outcome.kind == "done":
            if outcome.branch is not None and outcome.branch not in task.branches:
                return fail(f"{task.name}: undeclared branch {outcome.branch!r}")
            nxt = task.branches[outcome.branch] if outcome.branch is not None else task.then
            outcome.emit = successors(flows, nxt, step.scope, outcome.payload)
        elif outcome.kind == "poll" and task.poll is not None and outcome.max_polls is None:
            outcome.interval, outcome.max_polls = task.poll.resolve(step.services.conf)
        return outcome
    run.__name__ = getattr(fn, "__name__", task.name)
    run.__doc__ = fn.__doc__
    return run


def _failure_edge(flows: FlowSet, task: Task, edge: Optional[str],
                  failures: Mapping[str, Callable]) -> Optional[Callable]:
    if edge is None:
        return None
    if edge == CONTINUE:
        def go_on(step, reason: str) -> Outcome:
            LOG.warning("%s %s failed (%s); the flow continues", step.scope, task.name, reason)
            return done(emit=successors(flows, task.then, step.scope, None))
        return go_on
    return failures[edge]
