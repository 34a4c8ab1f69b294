"""Tables of the multi-host engine: who is alive, and who runs which bucket of steps.

Every step belongs to a bucket (``key_hash % BUCKETS``; all steps of one network
function share it). A bucket is run by the worker that holds its lease, on any
host. The lease carries an epoch that grows with every change of holder: a
worker commits a step's result only while the lease row still names it with the
epoch it took (see :mod:`nfp.engine.leases`).
"""
from __future__ import annotations

import datetime as dt
from typing import Optional

from sqlalchemy import BigInteger, DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from nfp.db.base import Base, utcnow

#: buckets of the cluster; fixed: every host must agree on ``key_hash % BUCKETS``
BUCKETS = 64


class EngineMember(Base):
    """One worker process slot of one host (``host/index``), with its heartbeat and
    the identity of the machine running it (:func:`nfp.engine.leases.machine_id`):
    a second machine configured with the same ``rpc.host`` is refused while the
    first one beats."""

    __tablename__ = "engine_members"

    member: Mapped[str] = mapped_column(String(160), primary_key=True)
    host: Mapped[str] = mapped_column(String(128))
    worker: Mapped[int] = mapped_column(Integer)
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    #: the machine whose worker is this member (NULL: written before 0011)
    machine: Mapped[Optional[str]] = mapped_column(String(64))


class BucketLease(Base):
    """Bucket ``bucket``: its holder, the holder's fencing epoch, and its expiry."""

    __tablename__ = "bucket_leases"

    bucket: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    owner: Mapped[Optional[str]] = mapped_column(String(160), index=True)
    epoch: Mapped[int] = mapped_column(BigInteger, default=0)
    expires_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
