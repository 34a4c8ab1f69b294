"""One repository per table of the orchestrator's data model (Octavia's pattern).

Every query the API and the lifecycle handlers make lives here; callers pass
an open session (or connection) and commit themselves, so a step's writes and
its completion still commit together. The event table's statements are the
engine's own (:mod:`nfp.engine.store`) and the rule table's belong to the
convergence core.
"""
from __future__ import annotations

from collections import namedtuple
from typing import Any, Iterable, Optional

from sqlalchemy import bindparam, delete, insert, select, true, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError

from nfp.db import bulk
from nfp.db.base import new_id
from nfp.db.models import (NetworkFunction, NetworkFunctionDevice, NetworkFunctionInstance,
                           PortInfo, RpcRequest, nfi_dataport_associations)
from nfp.engine.leases import HELD, LeaseLost
from nfp.flows import DeviceStatus, InstanceStatus, set_device_status, set_instance_status

NF = NetworkFunction.__table__
NFD = NetworkFunctionDevice.__table__
NFI = NetworkFunctionInstance.__table__

#: what :func:`nfp.api.views.nf_dict` shows of an NF
VIEW_COLUMNS = ("id", "name", "description", "tenant_id", "service_id", "service_chain_id",
                "service_profile_id", "service_config", "config_policy_id", "status",
                "status_description", "service_type", "service_vendor", "device_type", "degraded",
                "degraded_reason", "created_at", "updated_at")
_VIEW_ROW = select(*(NF.c[name] for name in VIEW_COLUMNS)).where(NF.c.id == bindparam("nf_id"))
#: the same read as a server-side prepared statement, once per PostgreSQL session:
#: psycopg2 has no prepared statements, and planning it anew plus SQLAlchemy's
#: result machinery cost about half of the read (see ``NetworkFunctionRepository.row``)
_VIEW_PREPARED = ("nfp_nf_view", f"SELECT {', '.join(VIEW_COLUMNS)} FROM {NF.name} WHERE id = $1")
ViewRow = namedtuple("ViewRow", VIEW_COLUMNS)

# the lifecycle's per-step reads, built once (see nfp.engine.store)
_NF_BY_ID = select(NetworkFunction).where(NetworkFunction.id == bindparam("nf_id"))
_NF_BY_ID_LOCKED = _NF_BY_ID.with_for_update()
_NFI_OF_NF = select(NetworkFunctionInstance).where(
    NetworkFunctionInstance.network_function_id == bindparam("nf_id"))
#: an NF with its instance and device, in one statement (most lifecycle steps need all three)
_NF_CONTEXT = (select(NetworkFunction, NetworkFunctionInstance, NetworkFunctionDevice)
               .outerjoin(NetworkFunctionInstance,
                          NetworkFunctionInstance.network_function_id == NetworkFunction.id)
               .outerjoin(NetworkFunctionDevice, NetworkFunctionDevice.id
                          == NetworkFunctionInstance.network_function_device_id)
               .where(NetworkFunction.id == bindparam("nf_id")))
#: the same three rows as plain named tuples (no ORM identity map, no instance
#: state), for the steps that only read them; ``_VIEW_SLICES`` cuts its row per table
_NF_CONTEXT_VIEW = (select(*NF.c, *NFI.c, *NFD.c)
                    .select_from(NF.outerjoin(NFI, NFI.c.network_function_id == NF.c.id)
                                 .outerjoin(NFD, NFD.c.id == NFI.c.network_function_device_id))
                    .where(NF.c.id == bindparam("nf_id")))
_CONTEXT_PREPARED = ("nfp_nf_context", str(_NF_CONTEXT_VIEW.compile(
    dialect=postgresql.dialect(paramstyle="numeric_dollar"))))
_VIEW_ROWS = tuple(namedtuple(f"{table.name}_row", [c.name for c in table.c]) for table in (NF, NFI, NFD))
_VIEW_SLICES = tuple(zip(_VIEW_ROWS, (0, len(NF.c), len(NF.c) + len(NFI.c)),
                         (len(NF.c), len(NF.c) + len(NFI.c), len(NF.c) + len(NFI.c) + len(NFD.c))))
_LINK = (update(NFI).where(NFI.c.id == bindparam("nfi"), NFI.c.network_function_device_id.is_(None))
         .values(network_function_device_id=bindparam("dev"), interfaces_held=bindparam("need")))
_TAKE = (update(NFD).where(NFD.c.id == bindparam("dev"),
                           NFD.c.interfaces_in_use + bindparam("need") <= NFD.c.max_interfaces,
                           NFD.c.status == DeviceStatus.ACTIVE.value)
         .values(interfaces_in_use=NFD.c.interfaces_in_use + bindparam("need"),
                 reference_count=NFD.c.reference_count + 1))
_RELEASE = update(NFD).where(NFD.c.id == bindparam("dev")).values(
    interfaces_in_use=NFD.c.interfaces_in_use - bindparam("held"),
    reference_count=NFD.c.reference_count - 1)


def _reserve_statement(leased):
    """PostgreSQL: :meth:`DeviceRepository.reserve` in one statement. The device's
    counters are taken (``take``) only if ``leased`` holds, the device has room and
    the instance is unlinked in the statement's snapshot; the instance is linked
    (``link``) only if they were taken. The row tells which happened, and
    ``held`` is the instance's device as it was before the statement."""
    take = (update(NFD).where(NFD.c.id == bindparam("dev"),
                              NFD.c.interfaces_in_use + bindparam("need") <= NFD.c.max_interfaces,
                              NFD.c.status == DeviceStatus.ACTIVE.value, leased,
                              select(NFI.c.id).where(NFI.c.id == bindparam("nfi"),
                                                     NFI.c.network_function_device_id.is_(None)).exists())
            .values(interfaces_in_use=NFD.c.interfaces_in_use + bindparam("need"),
                    reference_count=NFD.c.reference_count + 1)
            .returning(NFD.c.id).cte("take"))
    link = (update(NFI).where(NFI.c.id == bindparam("nfi"), NFI.c.network_function_device_id.is_(None),
                              select(take.c.id).exists())
            .values(network_function_device_id=bindparam("dev"), interfaces_held=bindparam("need"))
            .returning(NFI.c.id).cte("link"))
    return select(select(leased.label("ok")).scalar_subquery().label("leased"),
                  select(take.c.id).exists().label("taken"),
                  select(link.c.id).exists().label("linked"),
                  select(NFI.c.network_function_device_id).where(NFI.c.id == bindparam("nfi"))
                  .scalar_subquery().label("held"))


_RESERVE, _RESERVE_LEASED = _reserve_statement(true()), _reserve_statement(HELD)
_NFI_INSERT = insert(NFI).values(id=bindparam("id"), name=bindparam("name"), description="",
                                 tenant_id=bindparam("tenant_id"), status=bindparam("status"),
                                 status_description=bindparam("status_description"),
                                 network_function_id=bindparam("network_function_id"),
                                 interfaces_held=0)
_KNOWN_PORTS = select(PortInfo.__table__.c.id).where(
    PortInfo.__table__.c.id.in_(bindparam("ids", expanding=True)))
_UNLINK = update(NFI).where(NFI.c.id == bindparam("nfi")).values(network_function_device_id=None,
                                                                  interfaces_held=0)

#: shared_candidates' statement per tuple of filter columns
_CANDIDATES: dict[tuple, Any] = {}

#: columns callers may filter ``get_network_functions`` by
NF_FILTER_COLUMNS = frozenset({"id", "name", "tenant_id", "service_id", "service_chain_id",
                               "service_profile_id", "status", "service_type", "service_vendor",
                               "device_type"})


def _prepared(conn, statement: tuple[str, str], args: tuple):
    """The first row of ``statement`` (its name and its SQL with ``$n`` parameters)
    run as a server-side prepared statement on ``conn``'s PostgreSQL session, or
    None. It is prepared once per database session (the pooled connection's
    ``info`` remembers it, and forgets it with the connection): no planning per
    call, and none of SQLAlchemy's per-execute work. Driver errors are raised as
    SQLAlchemy's ``DBAPIError`` subclasses, which callers catch; a lost session
    invalidates the pooled connection, as Core would, so the next call opens a
    new session (and prepares again)."""
    name, sql = statement
    pooled = conn.connection
    execute = f"EXECUTE {name}({', '.join(['%s'] * len(args))})"
    try:
        with pooled.dbapi_connection.cursor() as cur:
            if not pooled.info.get(name):
                cur.execute(f"PREPARE {name} AS {sql}")
                pooled.info[name] = True
            cur.execute(execute, args)
            return cur.fetchone()
    except conn.dialect.loaded_dbapi.Error as exc:
        gone = conn.dialect.is_disconnect(exc, pooled.dbapi_connection, None)
        if gone:
            conn.invalidate(exc)
        # the SQLAlchemy exception Core would raise (its class is what callers catch)
        raise DBAPIError.instance(execute, None, exc, conn.dialect.loaded_dbapi.Error,
                                  hide_parameters=True, connection_invalidated=gone,
                                  dialect=conn.dialect) from exc


class NetworkFunctionRepository:
    """``network_functions``."""

    @staticmethod
    def get(session, nf_id: str, lock: bool = False) -> Optional[NetworkFunction]:
        return session.scalars(_NF_BY_ID_LOCKED if lock else _NF_BY_ID, {"nf_id": nf_id}).first()

    @staticmethod
    def context(session, nf_id: str) -> tuple[Optional[NetworkFunction],
                                              Optional[NetworkFunctionInstance],
                                              Optional[NetworkFunctionDevice]]:
        """The NF, its instance and the instance's device (each None if missing),
        read with one statement; the same objects the single reads return."""
        row = session.execute(_NF_CONTEXT, {"nf_id": nf_id}).first()
        return (row[0], row[1], row[2]) if row is not None else (None, None, None)

    @staticmethod
    def view(session, nf_id: str) -> tuple:
        """:meth:`context` as read-only named tuples with the models' attribute
        names (each None if missing), in the session's transaction: for steps that
        read the rows and write nothing through them. On PostgreSQL a prepared
        statement (:func:`_prepared`); no ORM load, no autoflush: read before writing."""
        conn = session.connection()
        if conn.dialect.name == "postgresql":
            row = _prepared(conn, _CONTEXT_PREPARED, (nf_id,))
        else:
            row = conn.execute(_NF_CONTEXT_VIEW, {"nf_id": nf_id}).first()
        if row is None:
            return None, None, None
        return tuple(kind._make(row[start:end]) if row[start] is not None else None
                     for kind, start, end in _VIEW_SLICES)

    @staticmethod
    def row(conn, nf_id: str):
        """The NF with the columns of its RPC view, or None (the hot read: no ORM
        identity map, no large columns). ``conn`` is a Core connection.

        On PostgreSQL a prepared statement (:func:`_prepared`), in 0.5-0.6 of the
        time of the same read through Core on the development machine
        (``bench/bench_read.py``)."""
        if conn.dialect.name != "postgresql":
            return conn.execute(_VIEW_ROW, {"nf_id": nf_id}).first()
        found = _prepared(conn, _VIEW_PREPARED, (nf_id,))
        return ViewRow._make(found) if found is not None else None

    @staticmethod
    def existing_ids(session, ids: Iterable[str]) -> set[str]:
        return set(session.scalars(select(NetworkFunction.id).where(NetworkFunction.id.in_(list(ids)))))

    @staticmethod
    def insert_many(session, rows: list[dict]) -> None:
        """Insert validated rows with one statement, after anything the ORM holds."""
        session.flush()
        bulk.insert_rows(session, NF, rows)

    @staticmethod
    def find(session, filters: dict[str, list]) -> list[NetworkFunction]:
        """NFs matching neutron-style filters (``{column: [values]}``), oldest first.
        Unknown columns raise ``KeyError`` naming the column."""
        stmt = select(NetworkFunction)
        for column, values in filters.items():
            if column not in NF_FILTER_COLUMNS:
                raise KeyError(column)
            stmt = stmt.where(getattr(NetworkFunction, column).in_(values))
        return list(session.scalars(stmt.order_by(NetworkFunction.created_at)))

    @staticmethod
    def delete(session, nf: NetworkFunction) -> None:
        session.delete(nf)


class InstanceRepository:
    """``network_function_instances`` and their data ports."""

    @staticmethod
    def of(session, nf_id: str) -> Optional[NetworkFunctionInstance]:
        return session.scalars(_NFI_OF_NF, {"nf_id": nf_id}).first()

    @staticmethod
    def create(session, nf, ports: list[dict]) -> str:
        """The NF's instance, with a port record per data port (existing ones
        reused); returns its id. Core statements in the session's transaction (the
        create step of every NF runs it): read it back with :meth:`of`."""
        conn = session.connection()
        # an NF name may use all 255 characters of the column; the suffix must still fit
        nfi = {"id": new_id(), "name": f"{nf.name[:246]}-instance", "tenant_id": nf.tenant_id,
               "network_function_id": nf.id, "status": None}
        set_instance_status(nfi, InstanceStatus.PENDING_CREATE)
        conn.execute(_NFI_INSERT, nfi)
        by_id = {port["id"]: port for port in ports}
        if by_id:
            known = set(conn.execute(_KNOWN_PORTS, {"ids": list(by_id)}).scalars())
            fresh = [{"id": pid, "tenant_id": nf.tenant_id,
                      "port_model": port.get("port_model", "neutron_port"),
                      "port_classification": port.get("port_classification", "provider"),
                      "port_role": None}
                     for pid, port in by_id.items() if pid not in known]
            if fresh:
                conn.execute(insert(PortInfo.__table__), fresh)
            conn.execute(insert(nfi_dataport_associations),
                         [{"network_function_instance_id": nfi["id"], "data_port_id": pid} for pid in by_id])
        return nfi["id"]

    @staticmethod
    def delete_with_ports(session, nfi: NetworkFunctionInstance) -> None:
        port_ids = [p.id for p in nfi.port_info]
        nfi.port_info.clear()
        session.flush()
        session.delete(nfi)
        session.flush()
        if port_ids:
            session.execute(delete(PortInfo).where(PortInfo.id.in_(port_ids)))


class PortRepository:
    """``port_infos``."""

    @staticmethod
    def get(session, port_id: Optional[str]) -> Optional[PortInfo]:
        return session.get(PortInfo, port_id) if port_id else None


class DeviceRepository:
    """``network_function_devices``. Capacity changes are single conditional
    statements, so concurrent NFs on other workers never over-commit a device."""

    @staticmethod
    def get(session, device_id: Optional[str]) -> Optional[NetworkFunctionDevice]:
        return session.get(NetworkFunctionDevice, device_id) if device_id else None

    @staticmethod
    def shared_candidates(session, filters: dict[str, Any]) -> list:
        """ACTIVE shared devices matching the driver's sharing filters (by column),
        as read-only rows (Core: the models' attribute names, no ORM load)."""
        filters = filters or {}
        used = tuple(sorted((c, filters[c] is None) for c in filters if c in NFD.c))
        stmt = _CANDIDATES.get(used)
        if stmt is None:  # one statement per set of filter columns, built once
            stmt = select(NFD).where(
                NFD.c.shared.is_(True), NFD.c.status == DeviceStatus.ACTIVE.value,
                *(NFD.c[c].is_(None) if null else NFD.c[c] == bindparam(f"f_{c}")
                  for c, null in used)).order_by(NFD.c.id)
            _CANDIDATES[used] = stmt
        return list(session.connection().execute(
            stmt, {f"f_{c}": filters[c] for c, null in used if not null}))

    @staticmethod
    def reserve(session, device_id: str, need: int, nfi_id: str,
                lease: Optional[dict] = None) -> Optional[str]:
        """Link instance ``nfi_id`` to the device and take ``need`` interfaces and a
        reference, if the device still has room and the instance is not linked yet.

        Returns ``"reserved"``, ``"linked"`` (the instance already holds a device: a
        step of the same NF that ran elsewhere got there first) or None (no room).

        The device row is the one row every NF sharing the device updates. On
        PostgreSQL the reservation is one statement that commits on its own
        (autocommit), so that row's lock lasts for the statement and its commit in
        the server, never for a client round trip: NFs sharing a device queue
        behind each other's statement, not behind each other's worker. With
        ``lease`` (:meth:`nfp.engine.leases.LeaseKeeper.lease`) the statement writes
        nothing unless the step's lease still holds, and :class:`LeaseLost` is raised.
        Call it with the session's transaction ended (the reservation commits by
        itself). Elsewhere (SQLite) the statements run in the session's transaction
        and the device row's lock lasts until the caller commits.
        """
        params = {"nfi": nfi_id, "dev": device_id, "need": need}
        if session.get_bind().dialect.name != "postgresql":
            if session.execute(_LINK, params).rowcount != 1:
                return "linked"
            if session.execute(_TAKE, params).rowcount == 1:
                return "reserved"
            session.execute(_UNLINK, params)  # still locked by us: undo the link
            return None
        with session.get_bind().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            found = conn.execute(_RESERVE_LEASED if lease else _RESERVE, {**params, **(lease or {})}).one()
            if not found.leased:
                raise LeaseLost(f"the lease of the step reserving on device {device_id} was lost")
            if found.held is not None:
                return "linked"
            if not found.taken:
                return None
            if found.linked:
                return "reserved"
            # linked by another writer between the statement's snapshot and its update
            conn.execute(_RELEASE, {"dev": device_id, "held": need})
            return "linked"

    @staticmethod
    def release(session, device_id: str, held: int) -> None:
        session.execute(_RELEASE, {"dev": device_id, "held": held})

    @staticmethod
    def add_created(session, nf: NetworkFunction, created: dict, need: int) -> None:
        """Record a device the driver just created for ``nf`` (spawning, not shared)."""
        nfd = NetworkFunctionDevice(
            id=created["id"], name=created.get("name", ""), tenant_id=nf.tenant_id,
            mgmt_ip_address=created.get("mgmt_ip_address"), service_vendor=nf.service_vendor,
            service_type=nf.service_type, device_type=nf.device_type,
            max_interfaces=created.get("max_interfaces", need), interfaces_in_use=need,
            reference_count=1, shared=False, managed=False, description=created.get("description", ""),
            credentials_ref=created.get("credentials_ref"), extra=created.get("extra", {}),
            provider_metadata=created.get("provider_metadata", {}))
        set_device_status(nfd, DeviceStatus.DEVICE_SPAWNING)
        session.merge(nfd)

    @staticmethod
    def delete_if_unused(session, device_id: str) -> None:
        session.execute(NFD.delete().where(NFD.c.id == device_id, NFD.c.reference_count <= 0))

    @staticmethod
    def upsert_inventory(session, rows: list[dict]) -> int:
        """Mirror inventory rows (static appliances) into the table; new ones ACTIVE."""
        existing = {d.id: d for d in session.scalars(
            select(NetworkFunctionDevice).where(NetworkFunctionDevice.id.in_([r["id"] for r in rows])))}
        for row in rows:
            dev = existing.get(row["id"])
            if dev is None:
                dev = NetworkFunctionDevice(**row)
                set_device_status(dev, DeviceStatus.ACTIVE)
                session.add(dev)
            else:
                for key, value in row.items():
                    setattr(dev, key, value)
        return len(rows)


class RpcRequestRepository:
    """``rpc_requests``: ids of accepted mutations (redelivery protection)."""

    @staticmethod
    def seen(session, ids: list[str]) -> dict[str, Optional[str]]:
        """``{unique_id: object_id}`` of the ids already accepted."""
        if not ids:
            return {}
        rows = session.execute(select(RpcRequest.unique_id, RpcRequest.object_id)
                               .where(RpcRequest.unique_id.in_(ids)))
        return dict(rows.all())

    @staticmethod
    def add(session, unique_id: str, method: str, object_id: Optional[str]) -> None:
        session.add(RpcRequest(unique_id=unique_id, method=method, object_id=object_id))

    @staticmethod
    def insert_many(session, rows: list[dict]) -> None:
        if rows:
            bulk.insert_rows(session, RpcRequest.__table__, rows)


network_functions = NetworkFunctionRepository()
instances = InstanceRepository()
devices = DeviceRepository()
ports = PortRepository()
rpc_requests = RpcRequestRepository()
