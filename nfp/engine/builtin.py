"""Built-in step types: ``engine.noop`` chains measure the engine itself."""
from __future__ import annotations

from nfp.engine.events import EventSpec, done
from nfp.engine.registry import handler


@handler("engine.noop", io=False)
def noop(step):
    """Emit the next link of a chain until ``remaining`` reaches zero."""
    remaining = int(step.payload.get("remaining", 0))
    if remaining <= 0:
        return done({"finished": True})
    nxt = EventSpec("engine.noop", step.scope, {"remaining": remaining - 1})
    return done(emit=[nxt])
