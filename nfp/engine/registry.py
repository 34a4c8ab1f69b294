"""Step handlers by name, held by a :class:`Registry` instance the application builds.

Nothing is found by module-name strings and nothing registers at import time:
an application (see :mod:`nfp.engine.app`) builds its registry explicitly, most
often by compiling its declared flows (:mod:`nfp.engine.flow`), and hands it to
the executor.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Optional

from nfp.engine.events import Outcome


@dataclass(frozen=True)
class HandlerSpec:
    """A step type: its handler, its failure handler and its deadline in seconds.

    ``io=False`` declares a pure state transition (database only, no device or
    network calls): such steps run in batches, many per transaction.
    """

    name: str
    fn: Callable[..., Outcome]
    on_failure: Optional[Callable[..., Optional[Outcome]]] = None
    deadline: Optional[float] = None
    io: bool = True


class Registry:
    """The step types one application runs."""

    def __init__(self, specs: Iterable[HandlerSpec] = ()):
        self._specs: dict[str, HandlerSpec] = {}
        for spec in specs:
            self.add(spec)

    def add(self, spec: HandlerSpec) -> HandlerSpec:
        """Register ``spec``; a second, different handler for one name is a bug."""
        current = self._specs.get(spec.name)
        if current is not None and current != spec:
            raise ValueError(f"step type {spec.name!r} registered twice")
        self._specs[spec.name] = spec
        return spec

    def handler(self, name: str, on_failure: Optional[Callable] = None,
                deadline: Optional[float] = None, io: bool = True):
        """Decorator form of :meth:`add` for step types that are not part of a flow."""
        def wrap(fn):
            self.add(HandlerSpec(name, fn, on_failure, deadline, io))
            return fn
        return wrap

    def merge(self, other: "Registry") -> "Registry":
        """Add every step type of ``other``; returns self."""
        for spec in other:
            self.add(spec)
        return self

    def lookup(self, name: str) -> Optional[HandlerSpec]:
        return self._specs.get(name)

    def batchable(self, name: str) -> bool:
        spec = self._specs.get(name)
        return spec is not None and not spec.io

    def deadline(self, name: str, default: float) -> float:
        spec = self._specs.get(name)
        return spec.deadline if spec and spec.deadline else default

    def __iter__(self):
        return iter(self._specs.values())

    def __contains__(self, name: str) -> bool:
        return name in self._specs

    def names(self) -> list[str]:
        return sorted(self._specs)
