"""The notification outbox: the one owner of the ``outbox`` table.

A notification is INSERTed in the same transaction that commits the state
change it announces (:func:`add`, called by the step executor before its
commit), and published after the commit by the listener's relay
(:mod:`nfp.rpc.relay`), which deletes a row only once the broker confirmed the
message. So a broker outage, or a crash between commit and publish, delays a
notification but never drops it. Delivery is at least once: a crash after the
confirm and before the delete publishes a row again, with the same
``message_id`` (:func:`message_id`), so a consumer can tell.

Order: within one scope (an NF or a device), rows are published in id order,
which is the order their steps committed in. Several hosts' relays may share
the table: :func:`claim` locks rows with ``FOR UPDATE SKIP LOCKED``
(PostgreSQL; SQLite has one host and ignores it) and hands out a scope's rows
only while no earlier row of that scope is held elsewhere, so no row is
published by two hosts at once and no scope overtakes itself.
"""
from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from typing import Any, Iterable

from sqlalchemy import delete, func, insert, select

from nfp import clock
from nfp.db.models import OutboxNotification
from nfp.rpc import codec

TABLE = OutboxNotification.__table__

#: the event type a worker sends over its pipe once a commit stored notifications
#: here: "the outbox has new rows", never published itself
WAKE = "nfp.outbox.wake"

_MESSAGE_IDS = uuid.UUID("2f1d7c56-1c1e-4b83-9d7e-5e0c2b8f6a11")


@dataclass(frozen=True)
class Pending:
    """A claimed row, ready to publish."""

    id: int
    scope: str
    event_type: str
    priority: str
    payload: Any
    created_at: dt.datetime


def add(session, scope: str, notifications: Iterable[tuple[str, Any]],
        priority: str = "INFO") -> int:
    """Store ``(event_type, payload)`` notifications about ``scope`` in the
    caller's transaction; they are published once it commits. Returns how many."""
    now = clock.utcnow()
    rows = [{"scope": scope, "event_type": event_type, "priority": priority.upper(),
             "payload": _primitive(payload), "created_at": now}
            for event_type, payload in notifications]
    if rows:
        session.execute(insert(TABLE), rows)
    return len(rows)


def _primitive(payload: Any) -> Any:
    """The payload as the published JSON will carry it (oslo's primitives: a
    datetime as its string). A value of no JSON type becomes its ``str``: a
    handler's odd payload must not fail the step that caused it."""
    def default(value: Any) -> Any:
        try:
            return codec.to_primitive(value)
        except TypeError:
            return str(value)
    return json.loads(json.dumps(payload, default=default))


def claim(session, limit: int) -> list[Pending]:
    """Lock and return up to ``limit`` of the oldest rows this relay may publish
    now, in publication order. Rows other relays hold are skipped, and so is
    every later row of their scopes; a row of a scope that is interleaved with
    such a row is left for the next round."""
    rows = session.execute(select(TABLE).order_by(TABLE.c.id).limit(limit)
                           .with_for_update(skip_locked=True)).all()
    if not rows:
        return []
    mine = {row.id: row for row in rows}
    # every row of those scopes up to the last one claimed: a plain read sees
    # rows others hold (it does not wait for their locks) and rows committed
    # since the claim with a lower id (a step that committed late)
    every = session.execute(select(TABLE.c.id, TABLE.c.scope)
                            .where(TABLE.c.scope.in_({row.scope for row in rows}),
                                   TABLE.c.id <= rows[-1].id)
                            .order_by(TABLE.c.id)).all()
    blocked: set[str] = set()
    ready = []
    for row_id, scope in every:
        if row_id in mine and scope not in blocked:
            row = mine[row_id]
            ready.append(Pending(row.id, row.scope, row.event_type, row.priority, row.payload,
                                 row.created_at))
        else:
            blocked.add(scope)
    return ready


def remove(session, ids: list[int]) -> None:
    """Delete published rows (the broker confirmed them)."""
    for start in range(0, len(ids), 500):
        session.execute(delete(TABLE).where(TABLE.c.id.in_(ids[start:start + 500])))


def count(session) -> int:
    """Rows not yet published (tests and diagnostics)."""
    return session.execute(select(func.count()).select_from(TABLE)).scalar_one()


def message_id(row: Pending) -> str:
    """The oslo ``message_id`` of a row: the same on every publish of it."""
    return str(uuid.uuid5(_MESSAGE_IDS, f"{row.id}/{row.created_at.isoformat()}"))


def locks_rows(session) -> bool:
    """Whether the database holds row locks for :func:`claim` (PostgreSQL).
    Without them (SQLite, one host), a relay must not keep its transaction open
    while it publishes: SQLite's write lock would stall every other writer."""
    return session.get_bind().dialect.name == "postgresql"
