"""A shared device's reservation: the instance is linked and the device's counters
taken together, never twice for one instance and never past the device's capacity,
while NFs on other workers race for the same row (PostgreSQL, real transactions)."""
from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import select, update

from nfp.db import migrate
from nfp.db.leases import BucketLease
from nfp.db.engine import make_engine, make_sessionmaker
from nfp.db.models import NetworkFunction, NetworkFunctionDevice, NetworkFunctionInstance
from nfp.db.repositories import devices


def _setup(url: str, instances: int, capacity: int):
    migrate.upgrade(url)
    engine = make_engine(url, pool_size=instances + 2)
    sessions = make_sessionmaker(engine)
    with sessions.begin() as session:
        session.add(NetworkFunctionDevice(id="dev-1", status="ACTIVE", device_type="static",
                                          max_interfaces=capacity))
        ids = []
        for i in range(instances):
            nf = NetworkFunction(id=str(uuid.uuid4()), name=f"nf-{i}", tenant_id="t", status="PENDING_CREATE",
                                 service_vendor="memory", device_type="static")
            session.add(nf)
            nfi = NetworkFunctionInstance(id=str(uuid.uuid4()), status="PENDING_CREATE",
                                          network_function_id=nf.id)
            session.add(nfi)
            ids.append(nfi.id)
    return engine, sessions, ids


def _device(sessions):
    with sessions() as session:
        return session.get(NetworkFunctionDevice, "dev-1")


def test_racing_reservations_never_exceed_the_device_or_link_twice(pg_url):
    engine, sessions, ids = _setup(pg_url, instances=12, capacity=8)  # room for 4 NFs of 2
    results: dict[str, object] = {}
    start = threading.Barrier(len(ids))

    def reserve(nfi_id: str) -> None:
        with sessions() as session:  # the reservation commits by itself
            start.wait()
            results[nfi_id] = devices.reserve(session, "dev-1", 2, nfi_id)
    try:
        threads = [threading.Thread(target=reserve, args=(i,)) for i in ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(map(str, results.values())) == ["None"] * 8 + ["reserved"] * 4
        device = _device(sessions)
        assert (device.interfaces_in_use, device.reference_count) == (8, 4)
        with sessions() as session:
            linked = {n.id: n for n in session.scalars(select(NetworkFunctionInstance))}
        for nfi_id, outcome in results.items():  # a refused instance keeps no link
            held = (linked[nfi_id].network_function_device_id, linked[nfi_id].interfaces_held)
            assert held == (("dev-1", 2) if outcome == "reserved" else (None, 0))
    finally:
        engine.dispose()


def test_a_second_reservation_of_one_instance_takes_nothing(pg_url):
    engine, sessions, ids = _setup(pg_url, instances=1, capacity=8)
    try:
        with sessions() as session:
            assert devices.reserve(session, "dev-1", 2, ids[0]) == "reserved"
        with sessions() as session:  # a step retried after its commit
            assert devices.reserve(session, "dev-1", 2, ids[0]) == "linked"
        device = _device(sessions)
        assert (device.interfaces_in_use, device.reference_count) == (2, 1)
    finally:
        engine.dispose()


def test_a_reservation_without_its_lease_writes_nothing_and_says_so(pg_url):
    """The step's lease is checked in the reservation's own statement: a worker
    that lost its bucket (paused past the lease) takes nothing and links nothing."""
    from nfp.engine.leases import LeaseKeeper, LeaseLost
    from nfp.engine.events import shard_hash
    engine, sessions, ids = _setup(pg_url, instances=1, capacity=8)
    keeper = LeaseKeeper(sessions, "host-a", 0, ttl=15)
    try:
        keeper.join()
        keeper.tick()
        key = shard_hash("nf-x")
        assert keeper.holds(key)
        stale = keeper.lease(key)
        with sessions.begin() as session:  # another member took the bucket over
            session.execute(update(BucketLease.__table__).values(epoch=BucketLease.__table__.c.epoch + 1))
        with sessions() as session:
            with pytest.raises(LeaseLost):
                devices.reserve(session, "dev-1", 2, ids[0], stale)
        device = _device(sessions)
        assert (device.interfaces_in_use, device.reference_count) == (0, 0)
        with sessions() as session:
            assert session.get(NetworkFunctionInstance, ids[0]).network_function_device_id is None
        with sessions() as session:  # the lease still held lets it through
            keeper.join()
            assert devices.reserve(session, "dev-1", 2, ids[0], keeper.lease(key)) == "reserved"
    finally:
        engine.dispose()
