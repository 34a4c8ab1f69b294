"""Bucket leases and fencing (nfp.engine.leases) on PostgreSQL and SQLite.

Members are driven tick by tick; a "paused" member is one that stops ticking
while its lease is made to run out, as a stopped VM's would.
"""
from __future__ import annotations

import pytest
from sqlalchemy import text

from nfp.db import migrate
from nfp.db.engine import make_engine, make_sessionmaker
from nfp.db.leases import BUCKETS
from nfp.engine import leases
from nfp.engine.leases import LeaseKeeper, LeaseLost


@pytest.fixture(params=["sqlite", "postgresql"])
def maker(request, tmp_path):
    url = f"sqlite:///{tmp_path}/l.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    migrate.upgrade(url)
    engine = make_engine(url, pool_size=4)
    yield make_sessionmaker(engine)
    engine.dispose()


def _expire(maker, member: str) -> None:
    """``member``'s leases and heartbeat run out (it was paused past them)."""
    with maker.begin() as s:
        s.execute(text("UPDATE bucket_leases SET expires_at = '2000-01-01' WHERE owner = :m"), {"m": member})
        s.execute(text("UPDATE engine_members SET heartbeat_at = '2000-01-01' WHERE member = :m"), {"m": member})


def _owners(maker) -> dict[int, str]:
    with maker() as s:
        return dict(s.execute(text("SELECT bucket, owner FROM bucket_leases")).all())


def test_members_split_the_buckets_and_rebalance_when_one_joins(maker):
    a = LeaseKeeper(maker, "host-a", 0, ttl=15)
    a.join()
    a.tick()
    assert len(a.held) == BUCKETS  # alone: every bucket
    b = LeaseKeeper(maker, "host-b", 0, ttl=15)
    b.join()
    b.tick()
    assert b.held == {}  # nothing is free yet
    busy = sorted(a.held)[-1]  # a step of this bucket is running on a
    a.tick(busy_buckets=[busy])
    assert len(a.releasing) == BUCKETS // 2
    a.tick(busy_buckets=[busy])  # gives back the idle ones over its share
    assert busy in a.held
    b.tick()
    assert len(a.held) + len(b.held) == BUCKETS
    assert not set(a.held) & set(b.held)
    # a bucket being given back starts no new step, but its running step may commit
    if busy in a.releasing:
        assert not a.runs(busy) and a.holds(busy)
    a.tick()  # the busy bucket finished: given back, and b takes it
    b.tick()
    assert len(a.held) == len(b.held) == BUCKETS // 2
    owners = _owners(maker)
    assert {owners[x] for x in a.held} == {"host-a/0"} and {owners[x] for x in b.held} == {"host-b/0"}


def test_a_paused_member_cannot_commit_a_step_another_member_took_over(maker):
    a = LeaseKeeper(maker, "host-a", 0, ttl=15)
    a.join()
    a.tick()
    key_hash = 7  # bucket 7
    with maker.begin() as s:
        a.fence(s, [key_hash])  # a holds it: no error
    _expire(maker, "host-a/0")  # a was paused past its lease ...
    b = LeaseKeeper(maker, "host-b", 0, ttl=15)
    b.join()
    b.tick()  # ... and b took its buckets over
    assert 7 in b.held
    with maker() as s, pytest.raises(LeaseLost, match="taken over"):
        a.fence(s, [key_hash])
    assert not a.holds(key_hash)  # a stops treating the bucket as its own
    with maker.begin() as s:
        b.fence(s, [key_hash])
    # a's next tick reports the loss
    a.held[7] = 1
    _, lost = a.tick()
    assert 7 in lost


def test_a_successor_inherits_its_member_leases_and_fences_the_old_incarnation(maker):
    old = LeaseKeeper(maker, "host-a", 1, ttl=15)
    old.join()
    old.tick()
    held = dict(old.held)
    new = LeaseKeeper(maker, "host-a", 1, ttl=15)
    inherited = new.join()
    assert set(inherited) == set(held)
    assert all(inherited[b] == held[b] + 1 for b in held)  # new epochs
    with maker() as s, pytest.raises(LeaseLost):
        old.fence(s, [0])


def test_a_clean_leave_frees_the_buckets_at_once(maker):
    a = LeaseKeeper(maker, "host-a", 0, ttl=15)
    a.join()
    a.tick()
    a.leave()
    assert set(_owners(maker).values()) == {None}
    b = LeaseKeeper(maker, "host-b", 0, ttl=15)
    b.join()
    b.tick()
    assert len(b.held) == BUCKETS


def test_a_take_over_waits_for_a_commit_in_flight_postgresql(request, tmp_path):
    """The fence's share lock: while a's step transaction (fence done, commit not
    yet) is open, b's take skips that bucket; once a committed, b may take it."""
    url = request.getfixturevalue("pg_url")
    migrate.upgrade(url)
    engine = make_engine(url, pool_size=4)
    maker = make_sessionmaker(engine)
    try:
        a = LeaseKeeper(maker, "host-a", 0, ttl=15)
        a.join()
        a.tick()
        _expire(maker, "host-a/0")
        in_flight = maker()
        a.fence(in_flight, [5])  # bucket 5's row is share-locked until the commit
        b = LeaseKeeper(maker, "host-b", 0, ttl=15)
        b.join()
        b.tick()
        assert 5 not in b.held and len(b.held) == BUCKETS - 1
        in_flight.commit()
        in_flight.close()
        b.tick()
        assert 5 in b.held
    finally:
        engine.dispose()


def test_a_database_made_by_create_all_gets_its_bucket_rows(tmp_path):
    from nfp.db import all_models
    engine = make_engine(f"sqlite:///{tmp_path}/c.db")
    all_models().create_all(engine)
    maker = make_sessionmaker(engine)
    a = LeaseKeeper(maker, "h", 0, ttl=15)
    a.join()
    a.tick()
    assert len(a.held) == BUCKETS
    engine.dispose()


def test_per_host_work_is_split_by_the_hosts_buckets(maker):
    """Health probes and scheduled reconciles: each host takes the objects of its
    own buckets; with no leases at all (no engine), a host takes everything."""
    from nfp.engine.events import shard_hash
    ids = [f"dev-{i}" for i in range(200)]
    with maker() as s:
        assert leases.host_buckets(s, "host-a") is None
    assert all(leases.owned_by(None, i) for i in ids)
    a, b = LeaseKeeper(maker, "host-a", 0, ttl=15), LeaseKeeper(maker, "host-b", 0, ttl=15)
    for k in (a, b):
        k.join()
    a.tick()
    a.tick()
    b.tick()
    with maker() as s:
        mine_a, mine_b = leases.host_buckets(s, "host-a"), leases.host_buckets(s, "host-b")
    assert mine_a == set(a.held) and mine_b == set(b.held) and not mine_a & mine_b
    split_a = {i for i in ids if leases.owned_by(mine_a, i)}
    split_b = {i for i in ids if leases.owned_by(mine_b, i)}
    assert split_a | split_b == set(ids) and not split_a & split_b
    assert split_a and split_b
    assert all(leases.bucket_of(shard_hash(i)) in mine_a for i in split_a)
