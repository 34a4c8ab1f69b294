"""The network function lifecycle, declared in one place.

Read this file to know what happens to a network function and in which order:

- the statuses of network functions (NF), their instances (NFI) and devices (NFD);
- the one transition table every status change goes through, whether the RPC
  API or a worker step makes it (:func:`set_nf_status` and friends refuse any
  other change);
- the create, delete and operation (update, chain parameters, policy target and
  consumer PTG changes) flows: their steps, fan-out and fan-in, polls, and the
  failure edge of every step.

The handlers in :mod:`nfp.workers.lifecycle` do the work of each step; they
never name the step that follows. The engine derives that from these flows
(:mod:`nfp.engine.flow`).

create    [rpc] NF PENDING_CREATE
          nf.create → device.allocate → [device.reachable (poll)] → device.wait_up (poll)
          → [device.healthcheck ‖ device.plug] → device.up (NFI, NFD ACTIVE)
          → [device.configure ‖ service.configure] → nf.configured (NF ACTIVE)
          any failure: NF and NFI ERROR with the reason, ``create.error`` notified
          (a shared device whose management link is lost, UNREACHABLE when it is allocated,
          makes the create wait in device.reachable, polling once a second up to
          ``orchestrator.unreachable_wait_max`` s, then fail as above)
delete    [rpc] NF PENDING_DELETE; open steps of the NF cancelled (pre-empts a create)
          nf.delete (waits for pre-empted device calls) → service.unconfigure
          → device.unconfigure → device.unplug → device.release → nf.delete_done
          a failed step is logged and the chain goes on, so a delete always ends;
          only a failure to remove the rows sets ERROR (``delete.error`` notified);
          nf.delete_wait waits while the device is UNREACHABLE (up to the limit)
operation [rpc] NF <op status> when no other operation runs and the NF is not degraded
          nf.op_wait (waits while the device is UNREACHABLE or the NF degraded; once the
          link is back, the reconcile clears ``degraded`` first, then the waiting
          operations pass one at a time in the order they arrived)
          → nf.op (waits while another operation runs) → service.apply (NF ACTIVE)
          any failure: NF ERROR with the reason, ``update.error`` notified
reconcile [schedule, device back UP, rpc] no status change
          nf.reconcile (waits while an operation runs; same key as the NF's steps,
          so it never races them): compare, repair per policy, record the run
          any failure: recorded in reconciliation_log; the NF keeps its status
heal      [health monitor: a device DOWN past ``heal.after``, per-device cooldown with
          exponential back-off, not while the fleet circuit breaker is open] no status change
          device.heal (waits while an operation runs; the device driver re-creates and
          re-plugs a dead device, or leaves a live one whose management path is at
          fault alone; a driver without heal support gets its config re-pushed)
          → device.heal_configure (device and service config of every NF on it)
          any failure: logged, ``nfp.device.heal.error`` notified; the next heal backs off

The ``degraded`` flag of an NF is a column, not a status: the health monitor sets
it when the NF's device becomes UNREACHABLE; the NF stays ACTIVE and its data
plane is not touched.
"""
from __future__ import annotations

import enum
from typing import Optional

from nfp.engine.flow import CONTINUE, Flow, FlowSet, Fork, Poll, Task


class _Status(str, enum.Enum):
    """A status stored as its plain string value."""

    def __str__(self) -> str:
        return self.value


class NFStatus(_Status):
    """Network function statuses (upstream ``NFP_STATUS`` plus the PT/PTG states)."""

    PENDING_CREATE = "PENDING_CREATE"
    PENDING_UPDATE = "PENDING_UPDATE"
    PENDING_DELETE = "PENDING_DELETE"
    ACTIVE = "ACTIVE"
    ERROR = "ERROR"
    PT_ADD_IN_PROGRESS = "PT_ADD_IN_PROGRESS"
    PT_REMOVE_IN_PROGRESS = "PT_REMOVE_IN_PROGRESS"
    PTG_ADD_IN_PROGRESS = "PTG_ADD_IN_PROGRESS"
    PTG_REMOVE_IN_PROGRESS = "PTG_REMOVE_IN_PROGRESS"


class InstanceStatus(_Status):
    """Network function instance statuses."""

    PENDING_CREATE = "PENDING_CREATE"
    ACTIVE = "ACTIVE"
    ERROR = "ERROR"


class DeviceStatus(_Status):
    """Network function device statuses."""

    DEVICE_SPAWNING = "DEVICE_SPAWNING"
    ACTIVE = "ACTIVE"
    DEVICE_NOT_UP = "DEVICE_NOT_UP"
    ERROR = "ERROR"
    PENDING_DELETE = "PENDING_DELETE"


#: NF status while each queued operation runs
OP_STATUS = {
    "update": NFStatus.PENDING_UPDATE,
    "chain_parameters": NFStatus.PENDING_UPDATE,
    "pt_add": NFStatus.PT_ADD_IN_PROGRESS,
    "pt_remove": NFStatus.PT_REMOVE_IN_PROGRESS,
    "consumer_add": NFStatus.PTG_ADD_IN_PROGRESS,
    "consumer_remove": NFStatus.PTG_REMOVE_IN_PROGRESS,
}
_OPS = frozenset(OP_STATUS.values())
IN_PROGRESS = frozenset({NFStatus.PENDING_CREATE, NFStatus.PENDING_DELETE, *_OPS})

# -- the transition table ------------------------------------------------------
# ``None`` is "no row yet". A status may always be set again (a retried step).
# ERROR → ACTIVE exists because a rejected cast can mark an NF ERROR while its
# create or operation is still running and then completes.
NF_TRANSITIONS: dict[Optional[NFStatus], frozenset[NFStatus]] = {
    None: frozenset({NFStatus.PENDING_CREATE}),
    NFStatus.PENDING_CREATE: frozenset({NFStatus.ACTIVE, NFStatus.ERROR, NFStatus.PENDING_DELETE}),
    NFStatus.ACTIVE: frozenset({*_OPS, NFStatus.ERROR, NFStatus.PENDING_DELETE}),
    NFStatus.ERROR: frozenset({*_OPS, NFStatus.ACTIVE, NFStatus.PENDING_DELETE}),
    **{op: frozenset({NFStatus.ACTIVE, NFStatus.ERROR, NFStatus.PENDING_DELETE}) for op in _OPS},
    # only a delete that could not remove the rows leaves PENDING_DELETE (to ERROR)
    NFStatus.PENDING_DELETE: frozenset({NFStatus.ERROR}),
}
INSTANCE_TRANSITIONS: dict[Optional[InstanceStatus], frozenset[InstanceStatus]] = {
    None: frozenset({InstanceStatus.PENDING_CREATE}),
    InstanceStatus.PENDING_CREATE: frozenset({InstanceStatus.ACTIVE, InstanceStatus.ERROR}),
    InstanceStatus.ACTIVE: frozenset(),
    InstanceStatus.ERROR: frozenset(),
}
DEVICE_TRANSITIONS: dict[Optional[DeviceStatus], frozenset[DeviceStatus]] = {
    None: frozenset({DeviceStatus.DEVICE_SPAWNING, DeviceStatus.ACTIVE}),  # created, or inventory
    DeviceStatus.DEVICE_SPAWNING: frozenset({DeviceStatus.ACTIVE, DeviceStatus.DEVICE_NOT_UP,
                                             DeviceStatus.ERROR, DeviceStatus.PENDING_DELETE}),
    DeviceStatus.DEVICE_NOT_UP: frozenset({DeviceStatus.ACTIVE, DeviceStatus.ERROR,
                                           DeviceStatus.PENDING_DELETE}),
    DeviceStatus.ACTIVE: frozenset({DeviceStatus.ERROR, DeviceStatus.PENDING_DELETE}),
    DeviceStatus.ERROR: frozenset({DeviceStatus.ACTIVE, DeviceStatus.PENDING_DELETE}),
    DeviceStatus.PENDING_DELETE: frozenset(),
}


class IllegalTransition(RuntimeError):
    """A status change the table does not allow: a bug, reported as the step's failure."""


def _check(table: dict, kind: str, current: Optional[str], new: _Status) -> str:
    now = type(new)(current) if current is not None else None
    if now != new and new not in table[now]:
        raise IllegalTransition(f"{kind} status {current} → {new.value} is not in the transition table")
    return new.value


def set_nf_status(nf, status: NFStatus, description: str = "") -> None:
    """Move an NF (row or dict) to ``status`` with a reason shown to callers."""
    value = _check(NF_TRANSITIONS, "network function", _get(nf, "status"), status)
    _set(nf, "status", value)
    _set(nf, "status_description", (description or "")[:4000])


def set_instance_status(nfi, status: InstanceStatus, description: str = "") -> None:
    _set(nfi, "status", _check(INSTANCE_TRANSITIONS, "instance", _get(nfi, "status"), status))
    _set(nfi, "status_description", (description or "")[:4000])


def set_device_status(nfd, status: DeviceStatus) -> None:
    _set(nfd, "status", _check(DEVICE_TRANSITIONS, "device", _get(nfd, "status"), status))


def _get(obj, name: str):
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def _set(obj, name: str, value) -> None:
    if isinstance(obj, dict):
        obj[name] = value
    else:
        setattr(obj, name, value)


# -- the flows -------------------------------------------------------------------
CREATE = Flow("create", on_failure="fail_create", tasks=(
    Task("nf.create", then="device.allocate", io=False),
    # a new device, or a shared one whose health is not UNREACHABLE, skips device.reachable
    Task("device.allocate", then="device.reachable", branches={"reachable": "device.wait_up"}),
    # waits while a shared device's management link is lost
    Task("device.reachable", then="device.wait_up", io=False, poll=Poll(1.0, "unreachable_wait_max")),
    Task("device.wait_up", then=Fork(("device.healthcheck", "device.plug"), join="device.up"),
         poll=Poll("device_poll_interval", "device_poll_max")),
    Task("device.healthcheck", key="health"),
    Task("device.plug", key="plug"),
    Task("device.up", then=Fork(("device.configure", "service.configure"), join="nf.configured"),
         io=False),
    Task("device.configure", key="devcfg"),
    Task("service.configure", key="svccfg"),
    Task("nf.configured", io=False),
))

DELETE = Flow("delete", on_failure=CONTINUE, tasks=(
    # waits (polls) while pre-empted steps of the NF are still talking to the device
    Task("nf.delete", then="nf.delete_wait", io=False, poll=Poll(0.1, 100000),
         branches={"no_device": "nf.delete_done", "gone": None}),
    # waits while the device is UNREACHABLE; past the limit the delete goes on (CONTINUE)
    Task("nf.delete_wait", then="service.unconfigure", io=False, poll=Poll(1.0, "unreachable_wait_max")),
    Task("service.unconfigure", then="device.unconfigure"),
    Task("device.unconfigure", then="device.unplug"),
    Task("device.unplug", then="device.release"),
    Task("device.release", then="nf.delete_done"),
    Task("nf.delete_done", io=False, on_failure="fail_delete"),
))

OPERATION = Flow("operation", on_failure="fail_operation", tasks=(
    # waits while the device is UNREACHABLE or the NF degraded (see the module docstring)
    Task("nf.op_wait", then="nf.op", io=False, poll=Poll(1.0, "unreachable_wait_max")),
    # waits (polls every second) while another operation holds the NF
    Task("nf.op", then="service.apply", io=False, poll=Poll(1.0, "busy_wait_max")),
    Task("service.apply"),
))

RECONCILE = Flow("reconcile", on_failure="fail_reconcile", tasks=(
    # waits (polls every 2 s) while the NF is being created, updated or changed
    Task("nf.reconcile", poll=Poll(2.0, "busy_wait_max")),
))

HEAL = Flow("heal", on_failure="fail_heal", tasks=(
    # waits (polls every 2 s) while an operation holds the NF; "skip": nothing to heal
    Task("device.heal", then="device.heal_configure", branches={"skip": None},
         poll=Poll(2.0, "busy_wait_max")),
    Task("device.heal_configure"),
))

FLOWS = FlowSet([CREATE, DELETE, OPERATION, RECONCILE, HEAL])
