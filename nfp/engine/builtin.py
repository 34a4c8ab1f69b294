"""Built-in step types: ``engine.noop`` chains measure the engine itself."""
from __future__ import annotations

from nfp.engine.events import EventSpec, done
from nfp.engine.registry import HandlerSpec, Registry


def noop(step):
    """Emit the next link of a chain until ``remaining`` reaches zero."""
    remaining = int(step.payload.get("remaining", 0))
    if remaining <= 0:
        return done({"finished": True})
    nxt = EventSpec("engine.noop", step.scope, {"remaining": remaining - 1})
    return done(emit=[nxt])


def registry() -> Registry:
    """The engine's own step types, for any application that wants them."""
    return Registry([HandlerSpec("engine.noop", noop, io=False)])
