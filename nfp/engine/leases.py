"""Bucket leases: any number of hosts run one event table, and no step runs on two.

Why buckets and not per-step claims: every step of a network function must run
in order on one worker (the scheduler's per-key lock), including fan-out
children. Steps are therefore grouped by ``key_hash % BUCKETS`` (all steps of an
NF share a bucket) and a worker runs a step only while it holds that bucket's
lease, as Temporal runs history shards. Buckets are not pinned: every live
member (``host/worker-index``) aims at an even share, takes free or expired
buckets with ``FOR UPDATE SKIP LOCKED`` in one batch, renews its leases every
``ttl/3`` seconds, and gives back buckets over its share once no step of them
is running, so hosts may join and leave.

Fencing: taking a bucket increments its ``epoch``. Every step commit checks its
bucket's lease row, locked ``FOR KEY SHARE``, and proceeds only if the row still
names this member with the epoch it took: :meth:`LeaseKeeper.fence` reads it, and
:data:`HELD` is the same check inside a statement (a step's finishing UPDATE, a
shared device's autocommit reservation). A member that was
paused past its lease (GC, a stopped VM, a partition) and comes back finds the
row changed and rolls back: it cannot commit a result for a step another host
has taken over. The share lock makes the check and the commit atomic against a
take-over (a taker locks the row ``FOR UPDATE``, which waits for it), while a
renewal (a non-key UPDATE) does not wait for it.

A worker that is replaced on the same host (crash, reload) keeps its member id,
so its successor inherits its leases at once, bumping their epochs, instead of
waiting for them to expire. A whole host that dies loses its leases after
``ttl`` seconds. Lease times use the database's clock on PostgreSQL, so hosts'
clocks need not agree.

Duplicate hosts: member ids are ``rpc.host/index``, so two machines configured
with the same ``rpc.host`` would share them and run the same buckets. Each member
row records its machine (:func:`machine_id`). :meth:`LeaseKeeper.join` refuses
(:class:`DuplicateHost`) a member whose row names another machine that beat
within ``ttl``, and takes it over once that machine is silent past ``ttl`` (a
replacement machine: its worker retries the join once, when the holder's last
heartbeat has turned ``ttl`` old, so starting it right after the old machine
died works). A member whose row another machine took over (it was
paused past ``ttl``) finds its heartbeat refused at its next
:meth:`LeaseKeeper.tick`: it renews nothing, drops every bucket and raises
:class:`DuplicateHost`; the epochs the taker bumped already fence its commits.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import os
import socket
import threading
from typing import Iterable, Optional

from sqlalchemy import and_, bindparam, delete, func, insert, literal, or_, select, update
from sqlalchemy.exc import IntegrityError

from nfp import clock
from nfp.config import ConfigError
from nfp.db.leases import BUCKETS, BucketLease, EngineMember
from nfp.engine.events import shard_hash

LOG = logging.getLogger(__name__)
L = BucketLease.__table__
M = EngineMember.__table__


# the fence runs before every step commit: built once, by primary key (the owner is
# compared here, so the lookup does not go through the owner index)
_FENCE = select(L.c.bucket, L.c.epoch, L.c.owner).where(L.c.bucket.in_(bindparam("buckets", expanding=True)))
_FENCE_PG = _FENCE.with_for_update(key_share=True, read=True)
#: the fence as a condition inside one statement (PostgreSQL), with the parameters
#: :meth:`LeaseKeeper.lease` gives: the lease row is share-locked as the fence locks it
HELD = (select(L.c.bucket).where(L.c.bucket == bindparam("lease_bucket"),
                                 L.c.epoch == bindparam("lease_epoch"),
                                 L.c.owner == bindparam("lease_owner"))
        .with_for_update(key_share=True, read=True).exists())


class LeaseLost(Exception):
    """This member no longer holds the bucket it is about to commit a step of."""


class DuplicateHost(ConfigError):
    """Another machine runs (or took over) this member: two machines share one
    ``rpc.host``. A configuration error: restarting cannot fix it.

    Attributes:
        lost(set[int]): buckets this member dropped because of it (empty at join).
        wait(float | None): at join, seconds until the holder's last heartbeat is
            ``ttl`` old. A machine replacing a dead one retries the join once
            after that long and takes the member over; a live holder has beaten
            again by then and the retry is refused for good.
    """

    def __init__(self, message: str, lost: Iterable[int] = (), wait: Optional[float] = None):
        super().__init__(message)
        self.lost = set(lost)
        self.wait = wait


#: a refused join is retried this long (s) after the holder's heartbeat turns ``ttl`` old
JOIN_RETRY_MARGIN = 1.0
#: environment variable that overrides :func:`machine_id` (tests simulate two machines with it)
MACHINE_ENV = "NFP_MACHINE_ID"
#: where the OS keeps its machine id (systemd; older D-Bus systems)
MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")


def machine_id() -> str:
    """This machine's identity as a lease member, to tell a worker restarted on the
    same machine (which must inherit its predecessor's leases at once) from another
    machine configured with the same ``rpc.host`` (which must be refused).

    It must be the same across restarts of the daemon on one machine and differ
    between machines: a hash of the OS machine id (``/etc/machine-id``; cloned
    VMs that were prepared for cloning get a new one) and the hostname (containers
    started from one image share the machine id but not, by default, the
    hostname). Neither alone suffices; a machine that shares both with another
    needs ``NFP_MACHINE_ID`` (used as is up to 64 characters, else hashed). Not a
    pid or boot id: those change on a restart, which must keep the identity.
    """
    override = os.environ.get(MACHINE_ENV, "").strip()
    if override:
        return override if len(override) <= 64 else hashlib.sha256(override.encode()).hexdigest()[:32]
    os_id = ""
    for path in MACHINE_ID_FILES:
        try:
            with open(path, encoding="ascii", errors="replace") as handle:
                os_id = handle.read().strip()
        except OSError:
            continue
        if os_id:
            break
    return hashlib.sha256(f"{os_id}\0{socket.gethostname()}".encode()).hexdigest()[:32]


def bucket_of(key_hash: int) -> int:
    """The bucket of a step (every step of one network function shares it)."""
    return key_hash % BUCKETS


def member_id(host: str, index: int) -> str:
    return f"{host}/{index}"


def _now(session):
    """The lease clock: the database's on PostgreSQL (hosts may disagree), else ours."""
    if session.get_bind().dialect.name == "postgresql":
        return func.timezone("UTC", func.now())
    return literal(clock.utcnow(), L.c.expires_at.type)


def _plus(session, seconds: float):
    return _now(session) + literal(dt.timedelta(seconds=seconds)) \
        if session.get_bind().dialect.name == "postgresql" \
        else literal(clock.utcnow() + dt.timedelta(seconds=seconds), L.c.expires_at.type)


class LeaseKeeper:
    """One worker's leases.

    Parameters:
        sessionmaker: a session factory (the keeper's own pool: it must renew
            even while every handler thread holds a connection).
        host(str): this host's name (``rpc.host``; unique per host).
        index(int): the worker's index on its host.
        ttl(float): seconds a lease lasts without renewal.
        local_members(int): workers of this host; they count towards the share
            before they have joined, so a host's workers split its buckets at once.
        machine(str): this machine's identity (default :func:`machine_id`).
    """

    def __init__(self, sessionmaker, host: str, index: int, ttl: float, local_members: int = 1,
                 machine: Optional[str] = None):
        self.sessionmaker = sessionmaker
        self.host, self.index, self.ttl = host, index, ttl
        self.local_members = local_members
        self.member = member_id(host, index)
        self.machine = machine or machine_id()
        #: bucket -> epoch this member took it with
        self.held: dict[int, int] = {}
        #: buckets over our share that we give back once none of their steps runs
        self.releasing: set[int] = set()
        self._short = False
        self._lock = threading.Lock()

    # -- membership ---------------------------------------------------------
    def join(self) -> dict[int, int]:
        """Register (or re-register) this member and inherit the leases an earlier
        incarnation of it held, with new epochs (fencing it). Returns them.

        Raises :class:`DuplicateHost` when the member row names another machine
        that beat within ``ttl``; a machine silent longer is taken over."""
        with self.sessionmaker.begin() as session:
            self._ensure_buckets(session)
            self._claim_member(session)
            rows = session.execute(
                update(L).where(L.c.owner == self.member)
                .values(epoch=L.c.epoch + 1, expires_at=_plus(session, self.ttl))
                .returning(L.c.bucket, L.c.epoch)).all()
        with self._lock:
            self.held = {b: e for b, e in rows}
            self.releasing = set()
        return dict(self.held)

    def _claim_member(self, session) -> None:
        """Write this member's row for this machine, its row locked until the
        join commits (a concurrent join of the same member from elsewhere waits
        and then sees it), unless another machine holds it alive."""
        values = {"host": self.host, "worker": self.index, "pid": os.getpid(),
                  "machine": self.machine, "started_at": _now(session),
                  "heartbeat_at": _now(session)}
        stmt = (select(M.c.machine, M.c.pid, M.c.heartbeat_at, _now(session).label("now"))
                .where(M.c.member == self.member))
        if session.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update(of=M)
        for _ in range(2):
            row = session.execute(stmt).first()
            if row is None:
                try:
                    with session.begin_nested():
                        session.execute(insert(M).values(member=self.member, **values))
                    return
                except IntegrityError:  # inserted meanwhile by another join: look at whose
                    continue
            if row.machine is not None and row.machine != self.machine:
                age = (row.now - row.heartbeat_at).total_seconds()
                if age <= self.ttl:
                    raise DuplicateHost(
                        f"rpc.host {self.host!r} is in use by another machine: member "
                        f"{self.member} is held by machine {row.machine} (pid {row.pid}, last "
                        f"heartbeat {age:.1f} s ago; this machine is {self.machine}). Give each "
                        f"host a unique rpc.host; a machine replacing a dead one takes its "
                        f"members over {self.ttl:.0f} s (orchestrator.lease_ttl) after its last "
                        f"heartbeat", wait=self.ttl - age + JOIN_RETRY_MARGIN)
                LOG.warning("member %s: taking it over from machine %s (pid %d), silent for "
                            "%.0f s (past lease_ttl %.0f s); this machine is %s",
                            self.member, row.machine, row.pid, age, self.ttl, self.machine)
            session.execute(update(M).where(M.c.member == self.member).values(**values))
            return
        raise DuplicateHost(f"rpc.host {self.host!r}: member {self.member} is being registered "
                            f"by another process at the same time; give each host a unique rpc.host")

    @staticmethod
    def _ensure_buckets(session) -> None:
        """A database made by ``create_all`` (tests) has the table but no rows."""
        have = set(session.execute(select(L.c.bucket)).scalars())
        missing = [{"bucket": b, "owner": None, "epoch": 0, "expires_at": None}
                   for b in range(BUCKETS) if b not in have]
        if missing:
            try:
                with session.begin_nested():
                    session.execute(insert(L), missing)
            except IntegrityError:  # another member inserted them meanwhile
                pass

    def tick(self, busy_buckets: Iterable[int] = (), take: bool = True) -> tuple[set[int], set[int]]:
        """Heartbeat, renew, give back idle buckets over our share, take free ones
        up to it (unless ``take`` is false: draining). Returns ``(gained, lost)``.

        Raises :class:`DuplicateHost`, holding nothing any more, when the heartbeat
        finds this member's row taken over by another machine."""
        busy = set(busy_buckets)
        with self.sessionmaker.begin() as session:
            # the heartbeat locks our row: a take-over by another machine's join
            # either waits for this tick to commit or has committed before it
            beat = session.execute(update(M).where(M.c.member == self.member,
                                                   M.c.machine == self.machine)
                                   .values(heartbeat_at=_now(session), pid=os.getpid()))
            if beat.rowcount == 0:  # not ours any more: renew nothing, take nothing
                taker = session.execute(select(M.c.machine, M.c.pid)
                                        .where(M.c.member == self.member)).first()
                self._superseded(taker)  # raises; the rollback undoes nothing (no row matched)
            gained, lost, held, share, short = self._renew(session, busy, take)
        over = len(held) - share
        with self._lock:
            self._short = short
            self.held = held
            # over our share: stop starting steps of the highest buckets and give
            # each back at a tick where none of its steps is running
            self.releasing = set(sorted(held, reverse=True)[:over]) if over > 0 else set()
        if lost:
            LOG.warning("member %s lost the leases of buckets %s (it was paused or cut off "
                        "past their %.0f s; another member runs them now)",
                        self.member, sorted(lost), self.ttl)
        return set(gained), lost

    def _renew(self, session, busy: set[int], take: bool):
        """The tick's work once the heartbeat found our row: renew, give back, take."""
        renewed = dict(session.execute(
            update(L).where(L.c.owner == self.member)
            .values(expires_at=_plus(session, self.ttl))
            .returning(L.c.bucket, L.c.epoch)).all())
        with self._lock:
            mine = dict(self.held)
        lost = {b for b, e in mine.items() if renewed.get(b) != e}
        held = {b: e for b, e in mine.items() if b not in lost}
        share = self._share(session)
        give_back = sorted(b for b in self.releasing if b in held and b not in busy)
        if give_back:
            session.execute(update(L).where(and_(L.c.owner == self.member,
                                                 L.c.bucket.in_(give_back)))
                            .values(owner=None, expires_at=None))
            for b in give_back:
                held.pop(b)
        gained = {}
        want = share - len(held) if take else 0
        if want > 0:
            gained = self._take(session, want)
            held.update(gained)
        # short of our share while another member is over its own: it is giving
        # buckets back, so look again soon
        short = take and len(held) < share and self._someone_over(session, share)
        return gained, lost, held, share, short

    def _superseded(self, taker) -> None:
        """Our member row names another machine (or is gone): drop every bucket
        (their epochs were bumped by the taker, so no commit of ours passes the
        fence anyway) and raise :class:`DuplicateHost`."""
        with self._lock:
            lost = set(self.held)
            self.held, self.releasing, self._short = {}, set(), False
        if taker is None:
            whom = "its row in engine_members was removed"
        else:
            whom = f"machine {taker.machine} (pid {taker.pid}) took it over"
        message = (f"rpc.host {self.host!r}: member {self.member} is no longer this machine's "
                   f"({self.machine}): {whom}, either because this member was paused or cut "
                   f"off past lease_ttl ({self.ttl:.0f} s) or because another machine uses "
                   f"the same rpc.host. This member dropped its {len(lost)} buckets and runs "
                   f"nothing more; give each host a unique rpc.host")
        LOG.error("%s", message)
        raise DuplicateHost(message, lost)

    def _share(self, session) -> int:
        """Our fair share: buckets divided by this host's workers plus the other
        hosts' members that beat recently."""
        alive_since = _plus(session, -self.ttl)
        others = session.execute(select(func.count()).select_from(M)
                                 .where(M.c.heartbeat_at >= alive_since, M.c.host != self.host)).scalar()
        return math.ceil(BUCKETS / max(1, (others or 0) + self.local_members))

    def _someone_over(self, session, share: int) -> bool:
        biggest = session.execute(select(func.count()).where(L.c.owner.isnot(None))
                                  .group_by(L.c.owner).order_by(func.count().desc()).limit(1)).scalar()
        return (biggest or 0) > share

    @property
    def settling(self) -> bool:
        """Giving buckets back, or short of its share: tick often until balanced."""
        with self._lock:
            return bool(self.releasing) or self._short



    def _take(self, session, want: int) -> dict[int, int]:
        """Take up to ``want`` free or expired buckets, skipping rows others lock."""
        stmt = (select(L.c.bucket).where(or_(L.c.owner.is_(None), L.c.expires_at < _now(session)))
                .order_by(L.c.bucket).limit(want))
        if session.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        free = list(session.execute(stmt).scalars())
        if not free:
            return {}
        rows = session.execute(
            update(L).where(and_(L.c.bucket.in_(free),
                                 or_(L.c.owner.is_(None), L.c.expires_at < _now(session))))
            .values(owner=self.member, epoch=L.c.epoch + 1, expires_at=_plus(session, self.ttl))
            .returning(L.c.bucket, L.c.epoch)).all()
        return {b: e for b, e in rows}

    def leave(self) -> None:
        """A clean exit: give every lease back so another member takes them at once.
        Not if another machine took this member over: its leases are that machine's."""
        try:
            with self.sessionmaker.begin() as session:
                # first: the row lock orders this against another machine's join
                if session.execute(delete(M).where(M.c.member == self.member,
                                                   M.c.machine == self.machine)).rowcount:
                    session.execute(update(L).where(L.c.owner == self.member)
                                    .values(owner=None, expires_at=None))
                else:
                    LOG.warning("member %s is no longer this machine's (%s): leaving its row "
                                "and leases to the machine that took it over",
                                self.member, self.machine)
        except Exception as exc:  # the database is gone: the leases expire instead
            LOG.warning("member %s could not give its leases back (%s); they expire in %.0f s",
                        self.member, exc.__class__.__name__, self.ttl)
        with self._lock:
            self.held = {}

    # -- the commit check ---------------------------------------------------
    def runs(self, key_hash: int) -> bool:
        """May this member start a step of ``key_hash``? (held and not being given back)"""
        bucket = bucket_of(key_hash)
        with self._lock:
            return bucket in self.held and bucket not in self.releasing

    def holds(self, key_hash: int) -> bool:
        """Does this member hold the bucket of ``key_hash`` (even while giving it back)?"""
        with self._lock:
            return bucket_of(key_hash) in self.held

    def buckets(self) -> list[int]:
        with self._lock:
            return sorted(self.held)

    def lease(self, key_hash: int) -> dict:
        """The parameters of :data:`HELD` for the bucket of ``key_hash``: the fence
        of a write that commits in one statement (autocommit), which has no
        transaction to run :meth:`fence` in. Raises :class:`LeaseLost` at once
        when this member no longer holds the bucket."""
        bucket = bucket_of(key_hash)
        with self._lock:
            epoch = self.held.get(bucket)
        if epoch is None:
            raise LeaseLost(f"bucket {bucket} not held")
        return {"lease_bucket": bucket, "lease_epoch": epoch, "lease_owner": self.member}

    def fence(self, session, key_hashes: Iterable[int]) -> None:
        """Inside the step's transaction, before its commit: raise :class:`LeaseLost`
        unless this member still holds each bucket with the epoch it took."""
        buckets = {bucket_of(h) for h in key_hashes}
        with self._lock:
            expected = {b: self.held.get(b) for b in buckets}
        if any(e is None for e in expected.values()):
            raise LeaseLost(f"buckets {sorted(b for b, e in expected.items() if e is None)} not held")
        conn = session.connection()
        stmt = _FENCE_PG if conn.dialect.name == "postgresql" else _FENCE
        found = {b: (epoch, owner) for b, epoch, owner in conn.execute(stmt, {"buckets": list(buckets)})}
        stale = sorted(b for b, e in expected.items() if found.get(b) != (e, self.member))
        if stale:
            with self._lock:
                for b in stale:
                    self.held.pop(b, None)
            raise LeaseLost(f"buckets {stale} were taken over by another member")


def host_buckets(session, host: str) -> Optional[set[int]]:
    """Buckets the workers of ``host`` hold unexpired leases on, for work that is
    per host rather than per step (health probes, scheduled reconciles): each host
    takes the devices and NFs of its own buckets, so N hosts do not probe every
    device N times. None when no bucket is leased at all (no engine runs yet, or a
    tool's own database): then the caller takes everything."""
    rows = session.execute(select(L.c.bucket, L.c.owner).where(
        L.c.owner.isnot(None), L.c.expires_at > _now(session))).all()
    if not rows:
        return None
    prefix = member_id(host, 0).rsplit("/", 1)[0] + "/"
    return {b for b, owner in rows if owner.startswith(prefix)}


def owned_by(buckets: Optional[set[int]], object_id: str) -> bool:
    """Is ``object_id`` (an NF or device id) in ``buckets`` (None: everything is)?"""
    return buckets is None or bucket_of(shard_hash(object_id)) in buckets


def hosts(session, ttl: float) -> dict[str, dict]:
    """Every host with its members' machines, heartbeats and leases, for ``nfp
    status``. A member is alive if it beat within ``ttl`` (by the lease clock); its
    ``machine`` is the :func:`machine_id` of the machine running it."""
    now = session.execute(select(_now(session))).scalar()
    counts = dict(session.execute(select(L.c.owner, func.count()).where(L.c.owner.isnot(None))
                                  .group_by(L.c.owner)).all())
    out: dict[str, dict] = {}
    for r in session.execute(select(M).order_by(M.c.host, M.c.worker)).all():
        age = (now - r.heartbeat_at).total_seconds()
        host = out.setdefault(r.host, {"alive": False, "leases": 0, "machines": [], "workers": []})
        if r.machine not in host["machines"]:
            host["machines"].append(r.machine)
        host["workers"].append({"worker": r.worker, "pid": r.pid, "machine": r.machine,
                                "leases": counts.get(r.member, 0),
                                "heartbeat_at": r.heartbeat_at.isoformat() + "Z",
                                "heartbeat_age": round(age, 1), "alive": age <= ttl})
        host["alive"] = host["alive"] or age <= ttl
        host["leases"] += counts.get(r.member, 0)
    return out
