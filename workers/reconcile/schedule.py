"""Starting reconcile runs, and reading what they recorded.

:func:`enqueue` adds the ``reconcile`` flow's first step for NFs, in the caller's
transaction, with the NF's generation (a delete cancels it like any other step
of the NF). Scheduled and device-up runs are skipped for an NF that already has
one waiting; on-demand runs always start (the caller waits for its ``run_id``).
:class:`ReconcileScheduler` is the periodic trigger, run by the health monitor
process: each NF is due every ``reconcile.interval`` (or its own
``spec.reconcile.interval``), spread evenly by a hash of its id. It is also the
dictionary-update trigger: when a vendor's newest stored dictionary (``nfp
dictionary load``) is not the version recorded in ``reconciled_dictionaries``,
that vendor's ACTIVE NFs get a ``dictionary_update`` run, and the version is
recorded in the same transaction, so a restarted monitor neither misses an
update made while it was down nor repeats one.
"""
from __future__ import annotations

import logging
import time
import uuid
import zlib
from typing import Callable, Iterable, Optional

from sqlalchemy import func, select

from nfp.engine import leases
from nfp.db.base import utcnow
from nfp.db.models import Event, EventStatus, NetworkFunction, ReconciledDictionary, ReconciliationLog
from nfp.db.rules import StoredDictionary
from nfp.engine import store
from nfp.flows import RECONCILE, NFStatus

LOG = logging.getLogger(__name__)
STEP = RECONCILE.first.name


def enqueue(session, nf_ids: Iterable[str], trigger: str, policy: Optional[str] = None,
            dry_run: bool = False) -> list:
    """Add a reconcile run for each NF in ``nf_ids``; return the refs to dispatch.
    The payload carries the ``run_id`` the run records itself under."""
    nf_ids = list(dict.fromkeys(nf_ids))
    if not nf_ids:
        return []
    nfs = {nf.id: nf for nf in session.scalars(select(NetworkFunction).where(NetworkFunction.id.in_(nf_ids)))}
    waiting: set[str] = set()
    if trigger != "on_demand":
        waiting = set(session.scalars(select(Event.scope).where(
            Event.scope.in_(nf_ids), Event.type == STEP, Event.status.in_(EventStatus.OPEN))))
    items = []
    for nf_id in nf_ids:
        nf = nfs.get(nf_id)
        if nf is None or nf_id in waiting or nf.status == NFStatus.PENDING_DELETE:
            continue
        payload = {"run_id": str(uuid.uuid4()), "trigger": trigger, "dry_run": bool(dry_run)}
        if policy:
            payload["policy"] = policy
        items.append((RECONCILE.start(nf_id, payload), nf.generation))
    return store.add_many(session, items) if items else []


class ReconcileScheduler:
    """Periodic reconciles (see module docstring).

    Parameters:
        conf(NfpConfig): ``reconcile.interval`` and ``health.refresh_interval``.
        sessionmaker: the process's session factory.
        on_refs(callable): hands the committed steps to the workers.
    """

    def __init__(self, conf, sessionmaker, on_refs: Callable[[list], None]):
        self.conf, self.sessionmaker, self.on_refs = conf, sessionmaker, on_refs
        self.due: dict[str, float] = {}
        self._next_refresh = 0.0

    def tick(self, now: Optional[float] = None) -> int:
        """Refresh the NF list when due and start the runs that are due (dictionary
        updates included); return how many."""
        now = time.monotonic() if now is None else now
        started = 0
        if now >= self._next_refresh:
            self._next_refresh = now + self.conf.health.refresh_interval
            if self.conf.reconcile.on_dictionary_update:
                started += self.dictionary_updates()
            if self.conf.reconcile.interval > 0:
                self._refresh(now)
        if self.conf.reconcile.interval <= 0:
            return started
        due = [nf_id for nf_id, at in self.due.items() if at <= now]
        if not due:
            return started
        for nf_id in due:
            self.due[nf_id] = now + self._interval.get(nf_id, self.conf.reconcile.interval)
        with self.sessionmaker.begin() as session:
            refs = enqueue(session, due, "schedule")
        if refs:
            LOG.info("scheduled reconcile of %d NF(s) started: %s", len(refs),
                     ", ".join(r.key for r in refs[:5]) + (" ..." if len(refs) > 5 else ""))
            self.on_refs(refs)
        return started + len(refs)

    def dictionary_updates(self) -> int:
        """Start ``dictionary_update`` runs for vendors with a dictionary version not yet
        reconciled against (see module docstring); return how many."""
        with self.sessionmaker.begin() as session:
            newest = dict(session.execute(select(StoredDictionary.vendor, func.max(StoredDictionary.version))
                                          .group_by(StoredDictionary.vendor)).all())
            done = dict(session.execute(select(ReconciledDictionary.vendor, ReconciledDictionary.version)).all())
            changed = {vendor: version for vendor, version in newest.items() if done.get(vendor) != version}
            if not changed:
                return 0
            nf_ids = session.scalars(select(NetworkFunction.id).where(
                NetworkFunction.status == NFStatus.ACTIVE.value, NetworkFunction.service_vendor.in_(changed)))
            refs = enqueue(session, nf_ids, "dictionary_update")
            for vendor, version in changed.items():
                session.merge(ReconciledDictionary(vendor=vendor, version=version, reconciled_at=utcnow()))
        for vendor, version in sorted(changed.items()):
            LOG.info("dictionary of vendor %s is now version %d: its ACTIVE NFs are reconciled", vendor, version)
        if refs:
            self.on_refs(refs)
        return len(refs)

    def _refresh(self, now: float) -> None:
        with self.sessionmaker() as session:
            rows = session.execute(select(NetworkFunction.id, NetworkFunction.spec)
                                   .where(NetworkFunction.status == NFStatus.ACTIVE.value)).all()
            mine = leases.host_buckets(session, self.conf.rpc.host)
        # several hosts: each schedules the NFs of its own lease buckets
        rows = [(nf_id, spec) for nf_id, spec in rows if leases.owned_by(mine, nf_id)]
        self._interval = {}
        for nf_id, spec in rows:
            own = ((spec or {}).get("reconcile") or {}).get("interval")
            if own:
                self._interval[nf_id] = float(own)
        current = {nf_id for nf_id, _ in rows}
        for nf_id in list(self.due):
            if nf_id not in current:
                del self.due[nf_id]
        for nf_id in current - set(self.due):
            interval = self._interval.get(nf_id, self.conf.reconcile.interval)
            self.due[nf_id] = now + (zlib.crc32(nf_id.encode()) / 2**32) * interval

    _interval: dict[str, float] = {}


def runs(session, nf_id: Optional[str] = None, limit: int = 100) -> list[ReconciliationLog]:
    """The latest recorded runs, newest first; only ``nf_id``'s if given."""
    stmt = select(ReconciliationLog).order_by(ReconciliationLog.id.desc()).limit(limit)
    if nf_id:
        stmt = stmt.where(ReconciliationLog.network_function_id == nf_id)
    return list(session.scalars(stmt))


def run_dict(row: ReconciliationLog) -> dict:
    """A recorded run as JSON data (what ``nfp audit reconcile --json`` prints)."""
    iso = lambda t: t.isoformat() + "Z" if t else None  # noqa: E731
    details = dict(row.details or {})
    return {"run_id": row.run_id, "network_function_id": row.network_function_id,
            "device_id": row.device_id, "trigger": row.trigger, "policy": row.policy,
            "dry_run": row.dry_run, "started_at": iso(row.started_at), "finished_at": iso(row.finished_at),
            "counts": {"missing": row.missing, "extra": row.extra, "changed": row.changed},
            "result": row.result, "error": row.error or None,
            "missing": details.get("missing", []), "extra": details.get("extra", []),
            "changed": details.get("changed", []), "actions": details.get("actions", [])}
