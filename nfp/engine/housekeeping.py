"""Periodic upkeep in the listener process: purging finished steps.

Finished steps (done, failed, cancelled) stay in the event table for
``orchestrator.event_retention`` seconds, for ``nfp status`` and debugging,
then go. Deletion runs in small batches, each its own short transaction, so
it never holds locks the intake or the workers wait for.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Optional

from nfp.db.base import utcnow
from nfp.engine import store

LOG = logging.getLogger(__name__)

#: seconds between purges
PURGE_EVERY = 60.0
#: rows per delete transaction, and at most this many transactions per purge
PURGE_BATCH = 500
PURGE_BATCHES = 20


class Housekeeping:
    """Purges finished steps every PURGE_EVERY seconds; driven by :meth:`tick`.

    Parameters:
        conf(NfpConfig): ``database_url`` and ``orchestrator.event_retention``.
        sessionmaker: a SQLAlchemy sessionmaker; when omitted, one small engine
            is created on first use and disposed by :meth:`close`.
    """

    def __init__(self, conf, sessionmaker=None, every: float = PURGE_EVERY):
        self.conf = conf
        self.every = every
        self._sessionmaker = sessionmaker
        self._engine = None
        self._next = time.time() + every

    def tick(self, now: Optional[float] = None) -> None:
        """Purge if it is time; never raises (a failure is retried next time)."""
        now = time.time() if now is None else now
        if now < self._next:
            return
        self._next = now + self.every
        try:
            self.purge()
        except Exception as exc:
            LOG.warning("purging finished steps failed (%s); they stay in the event table "
                        "and the purge is retried in %.0f s", exc.__class__.__name__, self.every)

    def purge(self, retention: Optional[float] = None) -> int:
        """Delete steps finished more than ``retention`` (default: the configured
        ``event_retention``) seconds ago, in bounded batches; return how many."""
        retention = self.conf.orchestrator.event_retention if retention is None else retention
        cutoff = utcnow() - dt.timedelta(seconds=retention)
        total = 0
        for _ in range(PURGE_BATCHES):
            with self._sessions().begin() as session:
                deleted = store.purge_finished(session, cutoff, PURGE_BATCH)
            total += deleted
            if deleted < PURGE_BATCH:
                break
        if total:
            LOG.info("purged %d steps finished more than %.0f s ago", total, retention)
        return total

    def _sessions(self):
        if self._sessionmaker is None:
            from nfp.db.engine import make_engine, make_sessionmaker
            self._engine = make_engine(self.conf.database_url, pool_size=1)
            self._sessionmaker = make_sessionmaker(self._engine)
        return self._sessionmaker

    def close(self) -> None:
        """Dispose of the engine this object created, if any."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
            self._sessionmaker = None
