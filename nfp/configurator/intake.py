"""Durable acceptance and the notification drain: the listener's two database paths.

:func:`accept` writes the request row, its ``configurator.apply`` step and the
audit row in one transaction, before the API answers; the caller hands the
returned refs to the workers after the commit. A request id seen before is
answered ``duplicate`` and applied only once.

:func:`drain` is ``get_notifications``. Seed 001's form deletes what it
returns in the same transaction (at most once: a response lost in transit loses
its notifications). With ``keep`` (``?keep=true``, what ``nfp-proxy`` and the
orchestrator's ``rest`` client use) nothing is deleted: each notification carries
its ``id`` and stays until :func:`acknowledge` (``POST ack_notifications``) removes
it, which the caller does only after the orchestrator has it. A poller that dies
between reading and acknowledging therefore delivers again (at least once); the
orchestrator resumes a parked step only once, so a repeat is harmless.
"""
from __future__ import annotations

from typing import Optional

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from nfp import audit
from nfp.configurator.models import Checked
from nfp.configurator.service import STEP
from nfp.configurator.tables import ConfiguratorNotification, ConfiguratorRequest, RequestStatus
from nfp.db.base import utcnow
from nfp.engine import store
from nfp.engine.events import EventSpec

#: most notifications one GET returns
DRAIN_LIMIT = 500


def accept(sessionmaker, request_id: str, method: str, checked: Checked, who: dict,
           audit_file: str = "") -> tuple[str, list]:
    """Store the request and its step; ``("accepted", refs)`` or ``("duplicate", [])``."""
    try:
        return _accept(sessionmaker, request_id, method, checked, who, audit_file)
    except IntegrityError:  # the same id accepted concurrently by another connection
        audit.record_now(sessionmaker, audit.REQUEST, audit_file, method=method, nf_id=checked.nf_id,
                         device_id=checked.device_id, result="duplicate",
                         detail=f"request {request_id} was accepted concurrently; not applied again",
                         **who)
        return "duplicate", []


def _accept(sessionmaker, request_id, method, checked, who, audit_file):
    info = checked.body["info"]
    with sessionmaker.begin() as session:
        if session.get(ConfiguratorRequest, request_id) is not None:
            audit.record(session, audit.REQUEST, audit_file, method=method, nf_id=checked.nf_id,
                         device_id=checked.device_id, result="duplicate",
                         detail=f"request {request_id} was accepted before; not applied again", **who)
            return "duplicate", []
        session.add(ConfiguratorRequest(
            id=request_id, method=method, operation=checked.operation,
            service_type=info["service_type"], service_vendor=info["service_vendor"],
            nf_id=checked.nf_id, device_id=checked.device_id, body=checked.body,
            status=RequestStatus.ACCEPTED, caller=who.get("token_subject", ""), created_at=utcnow()))
        session.flush()  # the row exists before its step can be claimed
        scope = f"cfg:{checked.device_id or checked.mgmt_ip}"
        refs = store.add(session, [EventSpec(STEP, scope, {"request_id": request_id})])
        resources = ",".join(e["resource"] for e in checked.body["config"])
        audit.record(session, audit.REQUEST, audit_file, method=method, nf_id=checked.nf_id,
                     device_id=checked.device_id, result="accepted",
                     detail=f"request {request_id}: {checked.operation} {resources} "
                            f"({info['service_type']}/{info['service_vendor']})", **who)
    return "accepted", refs


def drain(sessionmaker, limit: int = DRAIN_LIMIT, keep: bool = False) -> list[dict]:
    """The oldest waiting notifications with their ids; deleted as they are returned
    unless ``keep`` (then :func:`acknowledge` deletes them; module docstring)."""
    with sessionmaker.begin() as session:
        rows = list(session.scalars(select(ConfiguratorNotification)
                                    .order_by(ConfiguratorNotification.id).limit(limit)))
        if rows and not keep:
            session.execute(delete(ConfiguratorNotification)
                            .where(ConfiguratorNotification.id.in_([r.id for r in rows])))
        return [dict(r.body, request_id=r.request_id, id=r.id) for r in rows]


def acknowledge(sessionmaker, ids: list[int]) -> int:
    """Delete the notifications ``ids`` (the caller has delivered them); how many
    existed. An id acknowledged twice, or never issued, is simply not counted."""
    if not ids:
        return 0
    with sessionmaker.begin() as session:
        return session.execute(delete(ConfiguratorNotification)
                               .where(ConfiguratorNotification.id.in_(ids))).rowcount


def pending(sessionmaker, request_id: str) -> Optional[str]:
    """A request's status, or None if unknown (for tests and operators)."""
    with sessionmaker() as session:
        row = session.get(ConfiguratorRequest, request_id)
        return row.status if row else None
