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
from nfp.engine.leases import DuplicateHost, LeaseKeeper, LeaseLost


@pytest.fixture
def maker(db_maker):
    return db_maker


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


# -- a duplicate rpc.host: two machines configured with the same host name --------

def _stale_heartbeat(maker, member: str) -> None:
    """``member``'s machine went silent past ``ttl`` (its leases may still run)."""
    with maker.begin() as s:
        s.execute(text("UPDATE engine_members SET heartbeat_at = '2000-01-01' WHERE member = :m"),
                  {"m": member})


def _member_machine(maker, member: str):
    with maker() as s:
        return s.execute(text("SELECT machine FROM engine_members WHERE member = :m"),
                         {"m": member}).scalar()


def test_a_second_machine_with_the_same_host_is_refused_while_the_first_beats(maker):
    a = LeaseKeeper(maker, "host-a", 0, ttl=15, machine="machine-a")
    a.join()
    a.tick()
    epochs = dict(a.held)
    b = LeaseKeeper(maker, "host-a", 0, ttl=15, machine="machine-b")
    with pytest.raises(DuplicateHost, match=r"rpc.host 'host-a' is in use by another machine.*"
                                            r"machine machine-a \(pid \d+, last heartbeat") as info:
        b.join()
    assert "unique rpc.host" in str(info.value)
    # a replacement would be let in once a's heartbeat is ttl old: the worker retries then
    assert 15 - 5 < info.value.wait <= 15 + leases.JOIN_RETRY_MARGIN
    assert b.held == {}
    # nothing of a's changed: its row, its leases and their epochs
    assert _member_machine(maker, "host-a/0") == "machine-a"
    assert set(_owners(maker).values()) == {"host-a/0"}
    a.tick()
    assert a.held == epochs
    with maker.begin() as s:
        a.fence(s, [7])
    with maker() as s:
        shown = leases.hosts(s, 15)["host-a"]
    assert shown["machines"] == ["machine-a"] and shown["workers"][0]["machine"] == "machine-a"


def test_a_replacement_machine_takes_over_a_silent_member_and_the_old_one_stops(maker):
    a = LeaseKeeper(maker, "host-a", 0, ttl=15, machine="machine-a")
    a.join()
    a.tick()
    held = dict(a.held)
    assert len(held) == BUCKETS
    _stale_heartbeat(maker, "host-a/0")  # machine a was paused (or died) past ttl
    b = LeaseKeeper(maker, "host-a", 0, ttl=15, machine="machine-b")
    inherited = b.join()  # a legitimate replacement: it takes the member over at once
    assert inherited == {bucket: epoch + 1 for bucket, epoch in held.items()}
    assert _member_machine(maker, "host-a/0") == "machine-b"
    # a comes back: its commits fail the fence (b bumped every epoch) ...
    with maker() as s, pytest.raises(LeaseLost, match="taken over"):
        a.fence(s, [7])
    # ... and its next tick renews nothing, drops every bucket and reports why
    a.held = dict(held)
    with pytest.raises(DuplicateHost, match=r"rpc.host 'host-a'.*machine machine-b .* took it "
                                            r"over") as info:
        a.tick()
    assert info.value.lost == set(held)
    assert a.held == {} and not a.runs(7) and not a.holds(7)
    with maker() as s, pytest.raises(LeaseLost, match="not held"):
        a.fence(s, [7])
    with maker() as s:
        assert s.execute(text("SELECT count(*) FROM engine_members "
                              "WHERE machine = 'machine-a'")).scalar() == 0
    # a's clean exit leaves b's member row and leases alone
    a.leave()
    assert _member_machine(maker, "host-a/0") == "machine-b"
    assert set(_owners(maker).values()) == {"host-a/0"}
    b.tick()
    assert b.held == inherited
    with maker.begin() as s:
        b.fence(s, [7])


def test_a_restart_on_the_same_machine_inherits_at_once_even_while_it_beats(maker):
    old = LeaseKeeper(maker, "host-a", 0, ttl=15, machine="machine-a")
    old.join()
    old.tick()
    new = LeaseKeeper(maker, "host-a", 0, ttl=15, machine="machine-a")
    assert new.join() == {bucket: epoch + 1 for bucket, epoch in old.held.items()}
    new.tick()
    assert len(new.held) == BUCKETS


def test_the_machine_id_is_stable_per_machine_and_overridable(monkeypatch):
    import socket
    monkeypatch.delenv(leases.MACHINE_ENV, raising=False)
    first = leases.machine_id()
    assert first == leases.machine_id() and 16 <= len(first) <= 64
    monkeypatch.setattr(socket, "gethostname", lambda: "a-clone-with-another-hostname")
    assert leases.machine_id() != first
    monkeypatch.setenv(leases.MACHINE_ENV, "rack-3-node-7")
    assert leases.machine_id() == "rack-3-node-7"
    assert LeaseKeeper(None, "h", 0, ttl=15).machine == "rack-3-node-7"
    monkeypatch.setenv(leases.MACHINE_ENV, "x" * 100)
    assert len(leases.machine_id()) <= 64


def test_two_machines_joining_as_one_new_member_at_once_postgresql(request):
    """Both find no row and insert: the later insert waits for the earlier's
    commit, fails on the key, looks again and is refused."""
    import threading
    url = request.getfixturevalue("pg_url")
    migrate.upgrade(url)
    engine = make_engine(url, pool_size=4)
    maker = make_sessionmaker(engine)
    try:
        a = LeaseKeeper(maker, "host-a", 0, ttl=15, machine="machine-a")
        b = LeaseKeeper(maker, "host-a", 0, ttl=15, machine="machine-b")
        first = maker()
        first.begin()
        a._claim_member(first)  # a's row is inserted, not yet committed
        blocker = first.execute(text("SELECT pg_backend_pid()")).scalar()
        outcome = []

        def join_b():
            try:
                b.join()
                outcome.append("joined")
            except Exception as exc:  # the test reads it
                outcome.append(exc)
        thread = threading.Thread(target=join_b)
        thread.start()
        for _ in range(600):  # until b's insert waits on a's uncommitted key
            with engine.connect() as conn:  # (a transaction reads one snapshot of the view)
                waiting = conn.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE :a = ANY(pg_blocking_pids(pid)) "
                    "AND query ILIKE 'INSERT INTO engine_members%'"), {"a": blocker}).scalar()
            if waiting:
                break
            thread.join(0.05)
        assert waiting, outcome
        first.commit()
        first.close()
        thread.join(30)
        assert len(outcome) == 1 and isinstance(outcome[0], DuplicateHost), outcome
        assert "machine machine-a" in str(outcome[0])
        assert _member_machine(maker, "host-a/0") == "machine-a"
    finally:
        engine.dispose()
