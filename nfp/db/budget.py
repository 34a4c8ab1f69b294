"""How many database connections each process of a host may open.

Every pool is bounded (no overflow), so a host's connection use is the sum of
its processes' pools plus a few single connections: per worker, one for its
lease keeper and one for its wake listener (:mod:`nfp.engine.leases`,
:mod:`nfp.engine.wake`); in the listener, one for wake-ups and one for
housekeeping. :func:`host_total` is what ``nfp-orchestrator`` logs at start.

By default (``database.host_connections: 0``) each pool is sized to the threads
that use it, which is fastest on one host: about 50 connections with two
workers. Several hosts on one PostgreSQL share its ``max_connections`` (100 by
default, 3 of them reserved): set ``host_connections`` to the host's share
(18 lets five hosts fit) and the pools are cut to fit it, with threads queueing
for a connection during bursts, or put PgBouncer in front (session pooling:
the wake listener needs LISTEN).
"""
from __future__ import annotations

#: connections of the listener outside its pool: the waker and housekeeping
LISTENER_EXTRA = 2
#: connections of each worker outside its pool: lease keeper and wake listener
WORKER_EXTRA = 2
#: the listener's pool under a budget: intake, reads and the publisher's lookups
LISTENER_POOL_BUDGETED = 4
#: the smallest pool a worker or companion gets
MIN_POOL = 2


def _pools(conf) -> int:
    """Worker-sized pools of a host: its workers plus the health monitor."""
    return conf.worker_count + (1 if getattr(conf, "health", None) and conf.health.enabled else 0)


def listener_pool(conf) -> int:
    """The listener's connections, its read pool (:func:`listener_read_pool`) included."""
    if conf.database.host_connections:
        return LISTENER_POOL_BUDGETED
    return conf.database.pool_size


def listener_read_pool(conf) -> int:
    """The part of :func:`listener_pool` its read threads use: an autocommit pool,
    so a one-statement read makes one round trip instead of three (BEGIN, SELECT,
    ROLLBACK). At most half the listener's pool; the intake keeps the rest."""
    return max(1, min(conf.rpc.read_threads, listener_pool(conf) // 2))


def worker_pool(conf) -> int:
    """Pool of a worker (or the health monitor), sized to its threads unless a host
    budget is set."""
    from nfp.engine.scheduler import BATCH_THREADS
    threads = conf.orchestrator.threads_per_worker + BATCH_THREADS
    budget = conf.database.host_connections
    if not budget:
        return threads
    left = budget - LISTENER_POOL_BUDGETED - LISTENER_EXTRA - WORKER_EXTRA * conf.worker_count
    return max(MIN_POOL, min(threads, left // _pools(conf)))


def host_total(conf) -> int:
    """Most connections this host's processes open together."""
    return (listener_pool(conf) + LISTENER_EXTRA + WORKER_EXTRA * conf.worker_count
            + worker_pool(conf) * _pools(conf))
