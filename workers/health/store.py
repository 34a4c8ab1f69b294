"""What the health monitor reads from and writes to the database.

Reads: the devices of every running NF (one query, refreshed periodically).
Writes: only changes, in batches. All the verdict changes of one flush go in
one transaction (one executemany UPDATE), together with the reconcile steps a
device coming back UP starts for its NFs; ``last_contact`` of devices that did
not change is written in bulk every ``health.contact_write_interval``. 20,000
devices are never 20,000 transactions a period. New boot markers are written the
same way, with a ``device_restart`` reconcile of the NFs of a device that restarted.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Callable, Optional

from sqlalchemy import bindparam, select, update

from nfp.engine import leases
from nfp.db.models import NetworkFunction, NetworkFunctionDevice, NetworkFunctionInstance
from nfp.flows import DeviceStatus, NFStatus, OP_STATUS
from nfp.secrets import redact
from nfp.workers.health.monitor import DeviceSpec
from nfp.workers.health.probes import Target
from nfp.workers.health.state import DOWN, HEALTHY, UNREACHABLE, Change

LOG = logging.getLogger(__name__)
NFD = NetworkFunctionDevice.__table__

#: NFs whose devices are watched: running ones (an update in progress still runs), and
#: ones being deleted, whose delete waits while their device is UNREACHABLE
WATCHED_NF_STATUSES = frozenset({NFStatus.ACTIVE.value, NFStatus.PENDING_DELETE.value,
                                 *(s.value for s in OP_STATUS.values())})

#: device ``extra`` keys naming a TCP port to probe, in order of preference
PORT_KEYS = ("health_port", "ssh_port", "port")


def epoch(value: Optional[dt.datetime]) -> Optional[float]:
    """A naive UTC timestamp from the database as wall seconds."""
    return value.replace(tzinfo=dt.timezone.utc).timestamp() if value is not None else None


def _utc(seconds: Optional[float]) -> Optional[dt.datetime]:
    if seconds is None:
        return None
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).replace(tzinfo=None)


def probe_target(device_id: str, address: str, extra: dict, mode: str) -> Target:
    """How to probe a device: TCP to its management port when it names one (or
    ``mode`` is tcp), else ICMP echo. ``extra.health_probe`` overrides ``mode``."""
    mode = extra.get("health_probe") or mode
    port = next((extra[k] for k in PORT_KEYS if extra.get(k)), None)
    if mode == "icmp" or (mode == "auto" and port is None):
        return Target(device_id, address, None)
    return Target(device_id, address, int(port or 22))


def load_specs(sessionmaker, conf) -> list[DeviceSpec]:
    """Every ACTIVE device of a running NF, with its NFs and how to probe it (on
    several hosts: those of this host's lease buckets)."""
    stmt = (select(NFD.c.id, NFD.c.mgmt_ip_address, NFD.c.extra, NFD.c.service_vendor,
                   NFD.c.credentials_ref, NFD.c.health, NFD.c.health_reason, NFD.c.health_changed_at,
                   NFD.c.boot_id, NetworkFunction.id, NetworkFunction.service_vendor)
            .join(NetworkFunctionInstance, NetworkFunctionInstance.network_function_device_id == NFD.c.id)
            .join(NetworkFunction, NetworkFunction.id == NetworkFunctionInstance.network_function_id)
            .where(NFD.c.status == DeviceStatus.ACTIVE.value,
                   NetworkFunction.status.in_(WATCHED_NF_STATUSES)))
    specs: dict[str, DeviceSpec] = {}
    with sessionmaker() as session:
        rows = session.execute(stmt).all()
        # several hosts: each probes the devices of its own lease buckets
        mine = leases.host_buckets(session, conf.rpc.host)
    health = conf.health
    for device_id, address, extra, vendor, cref, status, reason, changed, boot_id, nf_id, nf_vendor in rows:
        if not address or not leases.owned_by(mine, device_id):
            continue
        spec = specs.get(device_id)
        if spec is None:
            extra = dict(extra or {})
            spec = specs[device_id] = DeviceSpec(
                device_id, probe_target(device_id, address, extra, health.probe),
                float(extra.get("health_period") or health.liveness_period), (),
                deep={"address": address, "vendor": nf_vendor or vendor or "", "credentials_ref": cref,
                      "extra": extra, "nf_id": nf_id},
                status=status or "Unknown", reason=reason or "", changed_at=epoch(changed), boot_id=boot_id)
        spec.nf_ids = (*spec.nf_ids, nf_id)
    return list(specs.values())


class HealthSink:
    """The monitor's database writer (see module docstring).

    Parameters:
        sessionmaker: the monitor process's session factory.
        on_change(callable): ``(event_type, payload)`` after a batch committed:
            the ``nfp.device.health.up``/``.down`` notifications.
        on_refs(callable): ``(refs)`` reconcile steps to hand to the workers.
        reconcile_on_up(bool): start a reconcile of a device's NFs when it comes back UP.
        reconcile_on_restart(bool): ... when its boot marker changes (it restarted).
    """

    def __init__(self, sessionmaker, on_change: Callable[[str, dict], None],
                 on_refs: Callable[[list], None] = lambda refs: None, reconcile_on_up: bool = True,
                 reconcile_on_restart: bool = True):
        self.sessionmaker = sessionmaker
        self.on_change = on_change
        self.on_refs = on_refs
        self.reconcile_on_up = reconcile_on_up
        self.reconcile_on_restart = reconcile_on_restart

    def write_changes(self, changes: list[Change], specs: dict[str, DeviceSpec]) -> None:
        """One transaction: every change (the last per device wins), plus reconcile
        steps for NFs whose device came back UP; then notify."""
        last = {c.device_id: c for c in changes}
        rows = [{"b_id": c.device_id, "b_health": c.new, "b_reason": redact(c.reason)[:512],
                 "b_changed": _utc(c.at), "b_contact": _utc(c.last_contact)} for c in last.values()]
        stmt = (update(NFD).where(NFD.c.id == bindparam("b_id"))
                .values(health=bindparam("b_health"), health_reason=bindparam("b_reason"),
                        health_changed_at=bindparam("b_changed"), last_contact=bindparam("b_contact")))
        came_back = [c for c in last.values() if c.new == HEALTHY and c.old in DOWN]
        refs = []
        with self.sessionmaker.begin() as session:
            session.connection().execute(stmt.execution_options(synchronize_session=False), rows)
            self._mark_degraded(session, last.values(), specs)
            if self.reconcile_on_up and came_back:
                from nfp.workers.reconcile.schedule import enqueue
                nf_ids = [nf for c in came_back for nf in specs.get(c.device_id, _NO_SPEC).nf_ids]
                refs = enqueue(session, nf_ids, "device_up")
        if refs:
            self.on_refs(refs)
        for change in changes:
            self.on_change(*notification(change, specs.get(change.device_id)))

    def _mark_degraded(self, session, changes, specs: dict[str, DeviceSpec]) -> None:
        """Seed 004: an NF whose device lost its management link stays ACTIVE with
        ``degraded`` set and the reason. The flag is cleared by the reconcile that
        runs when the device comes back (so queued operations run after it), or
        here when no such reconcile is configured."""
        nf_table = NetworkFunction.__table__
        for change in changes:
            nf_ids = list(specs.get(change.device_id, _NO_SPEC).nf_ids)
            if not nf_ids:
                continue
            if change.new == UNREACHABLE:
                reason = f"device {change.device_id} is UNREACHABLE: {redact(change.reason) or 'no answer'}"
                session.execute(update(nf_table).where(nf_table.c.id.in_(nf_ids))
                                .values(degraded=True, degraded_reason=reason[:512]))
                LOG.warning("NF %s degraded: %s; it stays ACTIVE, its data plane is not touched and its "
                            "operations wait for the link", ", ".join(nf_ids), reason)
            elif change.new == HEALTHY and not self.reconcile_on_up:
                session.execute(update(nf_table).where(nf_table.c.id.in_(nf_ids), nf_table.c.degraded.is_(True))
                                .values(degraded=False, degraded_reason=""))

    def write_boots(self, boots: dict[str, tuple[str, bool]], specs: dict[str, DeviceSpec]) -> None:
        """New boot markers in one transaction, with a ``device_restart`` reconcile of
        the NFs of each device that restarted (its marker replaced another)."""
        from nfp.workers.reconcile.schedule import enqueue
        rows = [{"b_id": device_id, "b_boot": marker} for device_id, (marker, _) in boots.items()]
        restarted = [nf for device_id, (_, again) in boots.items() if again and self.reconcile_on_restart
                     for nf in specs.get(device_id, _NO_SPEC).nf_ids]
        with self.sessionmaker.begin() as session:
            session.connection().execute(update(NFD).where(NFD.c.id == bindparam("b_id"))
                                         .values(boot_id=bindparam("b_boot")), rows)
            refs = enqueue(session, restarted, "device_restart") if restarted else []
        if refs:
            self.on_refs(refs)

    def write_contacts(self, contacts: dict[str, float]) -> None:
        """``last_contact`` of many devices in one transaction."""
        rows = [{"b_id": k, "b_contact": _utc(v)} for k, v in contacts.items()]
        stmt = update(NFD).where(NFD.c.id == bindparam("b_id")).values(last_contact=bindparam("b_contact"))
        with self.sessionmaker.begin() as session:
            for start in range(0, len(rows), 5000):
                session.connection().execute(stmt, rows[start:start + 5000])


class _NoSpec:
    nf_ids: tuple = ()


_NO_SPEC = _NoSpec()


def notification(change: Change, spec: Optional[DeviceSpec]) -> tuple[str, dict]:
    """The oslo notification for one change: ``nfp.device.health.up`` or ``.down``."""
    event = "nfp.device.health.down" if change.new in DOWN else "nfp.device.health.up"
    at = _utc(change.at)
    contact = _utc(change.last_contact)
    return event, {"device_id": change.device_id,
                   "network_function_ids": list(spec.nf_ids) if spec else [],
                   "health": change.new, "previous": change.old, "reason": redact(change.reason),
                   "changed_at": at.isoformat() + "Z" if at else None,
                   "last_contact": contact.isoformat() + "Z" if contact else None}
