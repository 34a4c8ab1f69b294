"""What steps emit and return: event specs, graphs and outcomes (plain data)."""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Optional


def shard_hash(scope: str) -> int:
    """Stable across processes (unlike ``hash()``): the worker shard is this % N."""
    return zlib.crc32(scope.encode())


@dataclass
class EventSpec:
    """A step to run.

    Parameters:
        type(str): the registered handler name (``nf.create``).
        scope(str): the object it belongs to (the NF id); all steps of one scope go
            to one worker and are cancelled together.
        key(str): serialisation key; defaults to ``scope``. Fan-out children use
            ``scope:child`` keys so they run concurrently.
        payload(dict): ids and small parameters only, never copied state.
        delay(float): seconds before it is due.
    """

    type: str
    scope: str
    payload: dict[str, Any] = field(default_factory=dict)
    key: Optional[str] = None
    delay: float = 0.0


@dataclass
class Graph:
    """Fan-out / fan-in: ``children`` run in parallel, ``parent`` after all of them."""

    parent: EventSpec
    children: list[EventSpec]


@dataclass
class Outcome:
    """What a handler decided. Build it with the helpers below."""

    kind: str  # done | fail | poll | wait
    result: Optional[dict[str, Any]] = None
    reason: Optional[str] = None
    interval: float = 0.0
    max_polls: Optional[int] = None
    emit: list[EventSpec | Graph] = field(default_factory=list)
    #: (event_type, payload) oslo notifications published after commit
    notify: list[tuple[str, dict]] = field(default_factory=list)
    #: flow steps only: the declared branch to follow instead of ``then``
    branch: Optional[str] = None
    #: flow steps only: payload handed to the next step(s) the flow declares
    payload: Optional[dict[str, Any]] = None


def done(result: Optional[dict] = None, emit: Optional[list] = None,
         notify: Optional[list] = None, branch: Optional[str] = None,
         payload: Optional[dict] = None) -> Outcome:
    """The step succeeded. Engine-level steps ``emit`` follow-ups themselves; flow
    steps leave that to their flow and may only pick a declared ``branch`` and
    hand a ``payload`` on. Everything commits in the same transaction."""
    return Outcome("done", result=result or {}, emit=list(emit or []), notify=list(notify or []),
                   branch=branch, payload=payload)


def fail(reason: str, result: Optional[dict] = None) -> Outcome:
    """The step failed: its failure handler runs in the same transaction."""
    return Outcome("fail", reason=reason, result=result or {})


def poll(interval: float, max_polls: int, result: Optional[dict] = None) -> Outcome:
    """Run the step again in ``interval`` s; fail once it has polled ``max_polls`` times."""
    return Outcome("poll", interval=interval, max_polls=max_polls, result=result)


def again(result: Optional[dict] = None) -> Outcome:
    """A flow step that polls: run again at the interval its flow declares."""
    return Outcome("poll", result=result)


def wait(timeout: float) -> Outcome:
    """Park the step until a notification resumes it, or fail after ``timeout`` s."""
    return Outcome("wait", interval=timeout)
