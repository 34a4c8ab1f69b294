"""The assurance RPC methods: ``get_device_health`` (read) and ``reconcile_network_function``
(mutation). Kept apart from the lifecycle endpoints; :class:`OrchestratorEndpoints`
routes the two method names here.

``get_device_health(device_id=… | network_function_id=…)`` answers ONAP's
HealthCheck shape for each device: ``{"identifier", "state": "healthy" |
"unhealthy", "time", "info"}`` from the monitor's last verdict, or, with no
argument, every watched device. ``reconcile_network_function(network_function_id,
policy=None, dry_run=False)`` starts a reconcile run (a step under the NF's key)
and answers ``{"network_function_id", "run_id"}``; the run's record appears in
``reconciliation_log`` under that ``run_id``.
"""
from __future__ import annotations

import datetime as dt
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from nfp.api import schemas
from nfp.db.models import NetworkFunctionDevice, NetworkFunctionInstance
from nfp.db.repositories import network_functions
from nfp.exceptions import Conflict, InvalidRequest, NotFound
from nfp.flows import NFStatus

#: more devices than this in one answer: use ``nfp health list`` against the database
MAX_DEVICES = 5000


class HealthArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device_id: Optional[str] = Field(default=None, min_length=1, max_length=64)
    network_function_id: Optional[str] = Field(default=None, min_length=1, max_length=36)


class ReconcileArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    network_function_id: str = Field(min_length=1, max_length=36)
    policy: Optional[Literal["repair", "repair-and-prune", "report", "adopt"]] = None
    dry_run: bool = False


def _iso(value: Optional[dt.datetime]) -> Optional[str]:
    return value.isoformat() + "Z" if value else None


def onap_health(nfd: NetworkFunctionDevice) -> dict:
    """ONAP's HealthCheck answer for one device, from the stored verdict."""
    state = "healthy" if nfd.health == "HEALTHY" else "unhealthy"
    return {"identifier": nfd.id, "state": state,
            "time": _iso(nfd.health_changed_at or nfd.last_contact),
            "info": {"health": nfd.health, "reason": nfd.health_reason or "",
                     "last_contact": _iso(nfd.last_contact), "last_change": _iso(nfd.health_changed_at),
                     "mgmt_ip_address": nfd.mgmt_ip_address, "status": nfd.status}}


def devices_of(session, nf_id: str) -> list[NetworkFunctionDevice]:
    return list(session.scalars(select(NetworkFunctionDevice).join(
        NetworkFunctionInstance, NetworkFunctionInstance.network_function_device_id == NetworkFunctionDevice.id)
        .where(NetworkFunctionInstance.network_function_id == nf_id)))


def get_device_health(session, args) -> list[dict]:
    """``[onap_health(device)]`` for a device, an NF's devices, or every device."""
    parsed = schemas.parse(HealthArgs, args if isinstance(args, dict) else {})
    if parsed.device_id:
        nfd = session.get(NetworkFunctionDevice, parsed.device_id)
        if nfd is None:
            raise NotFound(f"device {parsed.device_id} not found")
        return [onap_health(nfd)]
    if parsed.network_function_id:
        if network_functions.get(session, parsed.network_function_id) is None:
            raise NotFound(f"network function {parsed.network_function_id} not found")
        return [onap_health(d) for d in devices_of(session, parsed.network_function_id)]
    rows = session.scalars(select(NetworkFunctionDevice).order_by(NetworkFunctionDevice.id)
                           .limit(MAX_DEVICES + 1)).all()
    if len(rows) > MAX_DEVICES:
        raise InvalidRequest("device_id", f"more than {MAX_DEVICES} devices: name a device_id or "
                             "network_function_id")
    return [onap_health(d) for d in rows]


def reconcile_network_function(session, args) -> tuple[dict, list]:
    """Start a reconcile run of one NF; ``(answer, refs to dispatch)``."""
    from nfp.workers.reconcile.schedule import enqueue
    parsed = schemas.parse(ReconcileArgs, args if isinstance(args, dict) else {})
    nf = network_functions.get(session, parsed.network_function_id)
    if nf is None:
        raise NotFound(f"network function {parsed.network_function_id} not found")
    if nf.status == NFStatus.PENDING_DELETE:
        raise Conflict(f"network function {nf.id} is being deleted")
    refs = enqueue(session, [nf.id], "on_demand", policy=parsed.policy, dry_run=parsed.dry_run)
    run_id = None
    if refs:
        from nfp.db.models import Event
        run_id = (session.get(Event, refs[0].id).payload or {}).get("run_id")
    return {"network_function_id": nf.id, "run_id": run_id}, refs
