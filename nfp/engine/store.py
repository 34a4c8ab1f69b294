"""The durable event table: every state change of a step is one conditional SQL statement.

A step completes only if it is still ``pending``: a step cancelled by a DELETE, or
failed by its deadline watchdog, cannot commit a late result. All functions take
an open connection or session and never commit; the caller commits the step's
state change, its completion and the events it emits together.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from sqlalchemy import and_, bindparam, case, func, or_, select, update

from nfp.db import bulk
from nfp.db.leases import BUCKETS
from nfp.db.models import Event, EventStatus
from nfp import clock
from nfp.engine.events import EventSpec, Graph, shard_hash
from nfp.engine.leases import HELD

T = Event.__table__

# The statements every step runs are built once: building a statement and its
# cache key cost 40-110 µs of Python each time, several times per step.
_OPEN = or_(*(T.c.status == status for status in sorted(EventStatus.OPEN)))
_REF = (T.c.id, T.c.key, T.c.key_hash, T.c.due_at, T.c.type)
_LOAD = select(T).where(T.c.id.in_(bindparam("ids", expanding=True)))
_LOAD_LOCKED = _LOAD.with_for_update()
_LOAD_ONE = select(T).where(T.c.id == bindparam("eid"))
_FINISH = update(T).where(T.c.id == bindparam("eid"), _OPEN).values(
    status=bindparam("st"), result=bindparam("res"), error=bindparam("err"),
    finished_at=bindparam("at"))
#: the same, fenced in the statement (:data:`nfp.engine.leases.HELD`): a step's
#: completion and its lease check are one statement, not two round trips
_FINISH_HELD = _FINISH.where(HELD)
_FINISH_MANY = update(T).where(T.c.id == bindparam("eid")).values(
    status=EventStatus.DONE, result=bindparam("res"), finished_at=bindparam("at"))
# one child closed: count it, and make a waiting parent whose last child it was due
# now, in one statement (SET expressions read the row as it was before the UPDATE)
_LAST = and_(T.c.pending_children <= 1, T.c.status == EventStatus.WAITING)
_RELEASE = (update(T).where(T.c.id == bindparam("pid")).values(
    pending_children=T.c.pending_children - 1,
    status=case((_LAST, EventStatus.PENDING), else_=T.c.status),
    due_at=case((_LAST, bindparam("at", type_=T.c.due_at.type)), else_=T.c.due_at))
    .returning(*_REF, T.c.status, T.c.pending_children))
#: reschedule's statement per (count_poll, with result)
_RESCHEDULE = {
    (count_poll, with_result): update(T).where(T.c.id == bindparam("eid"), _OPEN).values(
        status=bindparam("st"), attempts=0, due_at=bindparam("at"),
        **({"polls": T.c.polls + 1} if count_poll else {}),
        **({"result": bindparam("res")} if with_result else {})).returning(*_REF)
    for count_poll in (False, True) for with_result in (False, True)}


@dataclass(frozen=True)
class Ref:
    """A committed event's routing facts: enough to hand it to its worker."""

    id: int
    key: str
    key_hash: int
    due_at: dt.datetime
    type: str = ""


def _row(spec: EventSpec, generation: int, now: dt.datetime, status: str,
         parent_id: Optional[int] = None, children: int = 0) -> dict[str, Any]:
    return {
        "key": spec.key or spec.scope, "scope": spec.scope, "key_hash": shard_hash(spec.scope),
        "type": spec.type, "payload": spec.payload, "status": status, "attempts": 0, "polls": 0,
        "due_at": now + dt.timedelta(seconds=spec.delay), "parent_id": parent_id,
        "pending_children": children, "generation": generation, "created_at": now,
    }


def _insert(conn, rows: list[dict]) -> list[Ref]:
    if not rows:
        return []
    return [Ref(*r) for r in bulk.insert_rows(conn, T, rows, (T.c.id, T.c.key, T.c.key_hash,
                                                                T.c.due_at, T.c.type))]


def add(conn, items: Iterable[EventSpec | Graph], generation: int = 0,
        parent_id: Optional[int] = None) -> list[Ref]:
    """Insert steps and graphs; return the refs that are ready to dispatch now."""
    return add_many(conn, [(item, generation) for item in items], parent_id)


def add_many(conn, items: list[tuple[EventSpec | Graph, int]],
             parent_id: Optional[int] = None) -> list[Ref]:
    """Like :func:`add` with a generation per item: plain steps in one INSERT."""
    now = clock.utcnow()
    ready = _insert(conn, [_row(s, gen, now, EventStatus.PENDING, parent_id)
                           for s, gen in items if isinstance(s, EventSpec)])
    for graph, generation in ((g, gen) for g, gen in items if isinstance(g, Graph)):
        parent = _insert(conn, [_row(graph.parent, generation, now, EventStatus.WAITING,
                                     parent_id, children=len(graph.children))])[0]
        if not graph.children:
            conn.execute(update(T).where(T.c.id == parent.id).values(status=EventStatus.PENDING))
            ready.append(parent)
            continue
        ready += _insert(conn, [_row(c, generation, now, EventStatus.PENDING, parent.id)
                                for c in graph.children])
    return ready


def load(conn, ids: list[int], lock: bool = False) -> list:
    """Rows of the given ids (any status); ``lock`` holds them until commit, so a
    concurrent cancel waits for a batch instead of racing it."""
    return list(conn.execute(_LOAD_LOCKED if lock else _LOAD, {"ids": list(ids)}))


def load_one(conn, event_id: int):
    """The row of step ``event_id`` (any status), or None."""
    return conn.execute(_LOAD_ONE, {"eid": event_id}).first()


def finish_many(conn, items: list[dict]) -> None:
    """Close rows already locked open by :func:`load` (``id``, ``result``) as done."""
    if items:
        now = clock.utcnow()
        conn.execute(_FINISH_MANY, [{"eid": i["id"], "res": i["result"], "at": now} for i in items])


def claim(conn, ids: list[int]) -> None:
    """Count an attempt for each pending id: the steps that were running when
    their worker died (see :mod:`nfp.engine.running`)."""
    conn.execute(update(T).where(and_(T.c.id.in_(ids), T.c.status == EventStatus.PENDING))
                 .values(attempts=T.c.attempts + 1))


def finish(conn, event_id: int, status: str, result: Optional[dict] = None,
           error: Optional[str] = None, lease: Optional[dict] = None) -> bool:
    """Close a pending (or parked) step. False if it was cancelled or closed
    meanwhile, or, with ``lease`` (:meth:`nfp.engine.leases.LeaseKeeper.lease`),
    if that lease no longer holds: the caller tells which with the fence."""
    params = {"eid": event_id, "st": status, "res": result, "err": error, "at": clock.utcnow()}
    if lease:
        return conn.execute(_FINISH_HELD, {**params, **lease}).rowcount == 1
    return conn.execute(_FINISH, params).rowcount == 1


def release_parent(conn, parent_id: int) -> Optional[Ref]:
    """One child of ``parent_id`` closed; return the parent's ref once all have."""
    row = conn.execute(_RELEASE, {"pid": parent_id, "at": clock.utcnow()}).first()
    # pending with no child left: this release made it so (a parent becomes pending
    # only here, and a child's release commits with its own once-only completion)
    if row is None or row.status != EventStatus.PENDING or row.pending_children > 0:
        return None
    return Ref(*row[:5])


def reschedule(conn, event_id: int, delay: float, status: str = EventStatus.PENDING,
               count_poll: bool = True, result: Optional[dict] = None) -> Optional[Ref]:
    """Make a step due again later (a poll) or park it (``waiting``) until then."""
    # a run that got as far as rescheduling did not crash: crashes count anew
    # from here, so a long poll is not failed by restarts spread over its polls
    params: dict[str, Any] = {"eid": event_id, "st": status,
                              "at": clock.utcnow() + dt.timedelta(seconds=delay)}
    if result is not None:
        params["res"] = result
    row = conn.execute(_RESCHEDULE[count_poll, result is not None], params).first()
    return Ref(*row) if row else None


def resume(conn, event_id: int, result: dict) -> Optional[Ref]:
    """A notification arrived for a parked step: make it due now with ``result``."""
    res = conn.execute(
        update(T).where(and_(T.c.id == event_id, T.c.status == EventStatus.WAITING,
                             T.c.pending_children <= 0))
        .values(status=EventStatus.PENDING, due_at=clock.utcnow(), result={"notification": result})
        .returning(T.c.id, T.c.key, T.c.key_hash, T.c.due_at, T.c.type))
    row = res.first()
    return Ref(*row) if row else None


def cancel_scope(conn, scope: str) -> int:
    """Cancel every open step of ``scope`` (DELETE pre-empts CREATE)."""
    res = conn.execute(
        update(T).where(and_(T.c.scope == scope, T.c.status.in_(EventStatus.OPEN)))
        .values(status=EventStatus.CANCELLED, finished_at=clock.utcnow(), error="pre-empted"))
    return res.rowcount


_OPEN_REFS = select(*_REF).where(T.c.status.in_(sorted(EventStatus.OPEN)), T.c.pending_children <= 0)
_OPEN_REFS_ALL = _OPEN_REFS.order_by(T.c.id)
_OPEN_REFS_OF = _OPEN_REFS.where(
    (T.c.key_hash % BUCKETS).in_(bindparam("buckets", expanding=True))).order_by(T.c.id)


def open_refs(conn, buckets: Optional[Iterable[int]] = None) -> list[Ref]:
    """Every open step, or those of the given lease buckets (``key_hash % BUCKETS``)."""
    if buckets is not None:
        buckets = sorted(set(buckets))
        if not buckets:
            return []
        if len(buckets) < BUCKETS:
            return [Ref(*r) for r in conn.execute(_OPEN_REFS_OF, {"buckets": buckets})]
    return [Ref(*r) for r in conn.execute(_OPEN_REFS_ALL)]


def children(conn, parent_id: int) -> list:
    return list(conn.execute(select(T.c.id, T.c.type, T.c.key, T.c.status, T.c.result, T.c.error)
                             .where(T.c.parent_id == parent_id).order_by(T.c.id)))


def open_counts(conn) -> dict[str, int]:
    """Open steps per status. Reads only the open rows through ``ix_events_open``
    (status first), so its cost follows the backlog, not the table's history."""
    return dict(conn.execute(select(T.c.status, func.count())
                             .where(T.c.status.in_(EventStatus.OPEN))
                             .group_by(T.c.status)).all())


def counts(conn) -> dict[str, int]:
    """Steps per status, for ``nfp status`` and metrics."""
    return dict(conn.execute(select(T.c.status, func.count()).group_by(T.c.status)).all())


def purge_finished(conn, older_than: dt.datetime, limit: int = 500) -> int:
    """Delete up to ``limit`` steps that finished before ``older_than``; return how many.

    Kept however old: open steps, a closed parent with an open child, and a closed
    child of an open parent (a fan-in parent reads its children's results). The
    oldest ids go first, so the scan walks the primary key and stops at ``limit``.
    """
    child, parent = T.alias("child"), T.alias("parent")
    open_child = select(child.c.id).where(child.c.parent_id == T.c.id,
                                          child.c.status.in_(EventStatus.OPEN)).exists()
    open_parent = select(parent.c.id).where(parent.c.id == T.c.parent_id,
                                            parent.c.status.in_(EventStatus.OPEN)).exists()
    ids = list(conn.execute(
        select(T.c.id).where(T.c.status.notin_(EventStatus.OPEN), T.c.finished_at < older_than,
                             ~open_child, ~open_parent).order_by(T.c.id).limit(limit)).scalars())
    if not ids:
        return 0
    # closed rows never reopen, so the status check is all a concurrent writer can change
    res = conn.execute(T.delete().where(T.c.id.in_(ids), T.c.status.notin_(EventStatus.OPEN)))
    return res.rowcount
