"""The context a handler gets: its event, a database session and the services."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from sqlalchemy.orm import Session

from nfp.db.engine import wrote
from nfp.db.models import EventStatus
from nfp.engine import store


@dataclass
class Step:
    """One running step.

    ``session`` is open and uncommitted: what the handler writes commits together
    with the step's completion and the events it emits. A handler that must block
    on a device calls :meth:`checkpoint` first, so no transaction (or SQLite write
    lock) is held across the I/O; everything it wrote before then is committed,
    so it must be safe to run again.
    """

    event: Any
    session: Session
    services: Any
    #: set when a parked step was resumed by a notification
    notification: Optional[dict] = None
    #: ``(scope, own_key) -> bool``: is another step of this scope running here?
    busy_probe: Callable[[str, str], bool] = lambda scope, key: False
    #: ``fence(session)`` raises :class:`nfp.engine.leases.LeaseLost` unless this
    #: worker still holds the step's bucket lease (None: no fencing)
    fence: Optional[Callable[[Session], None]] = None
    #: ``lease()``: the same check's parameters for a statement that commits on
    #: its own (:meth:`nfp.engine.leases.LeaseKeeper.lease`; None: no fencing)
    lease: Callable[[], Optional[dict]] = lambda: None

    @property
    def id(self) -> int:
        return self.event.id

    @property
    def payload(self) -> dict:
        return self.event.payload or {}

    @property
    def scope(self) -> str:
        return self.event.scope

    def checkpoint(self) -> None:
        """Commit what was written so far and release the connection before I/O.

        A commit that writes is fenced like the step's final one: a worker that
        lost the step's lease (paused past it) raises LeaseLost here, and the step's
        result is dropped, instead of committing a write another host's step may
        have made already. A commit with nothing written needs no fence."""
        if self.fence is not None and wrote(self.session):
            self.fence(self.session)
        self.session.commit()

    def others_running(self) -> bool:
        """True while another step of the same NF is still executing (for example a
        cancelled configuration step whose device call has not returned yet)."""
        return self.busy_probe(self.event.scope, self.event.key)

    def failed_children(self) -> list:
        """Children of a fan-in parent that did not finish ``done``."""
        return [c for c in self.children() if c.status != EventStatus.DONE]

    def children(self) -> list:
        """Results of a fan-in parent's children: rows with type, status, result, error."""
        return store.children(self.session, self.event.id)
