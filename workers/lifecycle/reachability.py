"""The "wait while the device is unreachable" steps (seed 004: management link loss).

A device whose management link is lost (health ``UNREACHABLE``) keeps forwarding:
its NFs stay ACTIVE with ``degraded`` set, and nothing nfp would send it could
arrive. So the create, operation and delete flows (:mod:`nfp.flows`) each begin
their device work with a step that polls once a second, durably in the event
table, until the device answers again, up to ``orchestrator.unreachable_wait_max``
seconds; past that limit the flow's own failure edge applies (ERROR for create
and operations, go on for a delete).

Operations also wait while the NF is ``degraded``: the reconcile the health
monitor starts when the device comes back clears the flag, so the device is
brought back to the intent *before* the changes requested during the outage.
Operations that had to wait then pass one at a time, oldest first.
"""
from __future__ import annotations

import logging
from typing import Optional

from sqlalchemy import select

from nfp.db.models import Event, EventStatus
from nfp.db.repositories import network_functions
from nfp.engine.events import Outcome, again, done
from nfp.workers.health.state import UNREACHABLE

LOG = logging.getLogger(__name__)


def _device_of(step):
    return network_functions.view(step.session, step.scope)[2]


def unreachable(nfd) -> Optional[str]:
    """Why the device cannot be talked to now, or None."""
    if nfd is not None and nfd.health == UNREACHABLE:
        return f"device {nfd.id} is UNREACHABLE ({nfd.health_reason or 'no answer'})"
    return None


def _hold(step, why: str) -> Outcome:
    if not step.event.polls:  # one line when the wait starts, not one per poll
        LOG.warning("NF %s: %s %s waits: %s; it runs once the link is back (at most "
                    "orchestrator.unreachable_wait_max s)", step.scope, step.event.type,
                    step.payload.get("op", ""), why)
    return again({"waiting_for": why})


def create_wait(step) -> Outcome:
    """A create on a shared device whose management link is lost waits for it."""
    why = unreachable(_device_of(step))
    return _hold(step, why) if why else done()


def delete_wait(step) -> Outcome:
    """A delete leaves the device config in place while it cannot reach the device."""
    nf = network_functions.get(step.session, step.scope)
    why = unreachable(_device_of(step)) if nf is not None else None
    return _hold(step, why) if why else done()


def operation_wait(step) -> Outcome:
    """An operation waits while its NF is degraded or its device unreachable, then
    passes in arrival order behind operations that waited before it."""
    nf = network_functions.get(step.session, step.scope)
    if nf is None:
        return done(payload=dict(step.payload))  # nf.op reports the vanished NF
    why = unreachable(_device_of(step))
    if why is None and nf.degraded:
        why = f"NF is degraded ({nf.degraded_reason or 'management link lost'}); the reconcile " \
              "after the link returns comes first"
    if why is None:
        why = _queued_before(step)
    return _hold(step, why) if why else done(payload=dict(step.payload))


def _queued_before(step) -> Optional[str]:
    """Why an operation must let older ones go first: an older operation that had to
    wait is still waiting, or (for one that waited itself) an operation it let pass is
    still waiting for the NF. Operations that never waited are not held here, so a
    reachable device's operations behave as they always did (nf.op orders them)."""
    open_ = tuple(EventStatus.OPEN)
    older_waiting = step.session.scalar(
        select(Event.id).where(Event.scope == step.scope, Event.type == step.event.type,
                               Event.status.in_(open_), Event.id < step.id, Event.polls > 0).limit(1))
    if older_waiting is not None:
        return "an operation queued before it during the outage goes first"
    if step.event.polls and step.session.scalar(
            select(Event.id).where(Event.scope == step.scope, Event.type == "nf.op",
                                   Event.status.in_(open_)).limit(1)) is not None:
        return "the operation queued before it during the outage is still waiting for the NF"
    return None
