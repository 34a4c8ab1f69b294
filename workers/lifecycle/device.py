"""The work of the network function device (NFD) steps.

The order (allocate → wait_up → [healthcheck ‖ plug] → up → [configure ‖
service] on create; unconfigure → unplug → release on delete) is declared in
:mod:`nfp.flows`. Capacity is reserved with one conditional UPDATE
(:meth:`nfp.db.repositories.DeviceRepository.reserve`), so concurrent NFs on
other workers can never over-commit a shared device. The instance records what
it holds (``interfaces_held``), which makes reserve and release idempotent.
"""
from __future__ import annotations

import logging

from nfp.api.views import device_dict
from nfp.db.repositories import devices, instances, network_functions
from nfp.engine.events import Outcome, again, done, fail
from nfp.flows import (DeviceStatus, InstanceStatus, set_device_status,
                       set_instance_status)
from nfp.workers.lifecycle.driver_data import device_data, target
from nfp.workers.lifecycle.reachability import unreachable

LOG = logging.getLogger(__name__)


def allocate(step) -> Outcome:
    """Share an existing device with room for our ports, or create one."""
    nf, nfi, _ = network_functions.view(step.session, step.scope)
    if nf is None or nfi is None:
        return fail("network function vanished during create")
    if nfi.network_function_device_id:  # a retry after the reservation committed
        return done()
    driver = step.services.device_driver(nf.device_type)
    data = device_data(nf, nfi=nfi)
    need = max(1, len(data["ports"]))
    filters = driver.get_network_function_device_sharing_info(data).get("filters", {})
    rows = {d.id: d for d in devices.shared_candidates(step.session, filters)}
    candidates = [device_dict(d) for d in rows.values()]
    step.checkpoint()  # reads only; on PostgreSQL a reservation commits by itself
    while candidates:
        chosen = driver.select_network_function_device(candidates, data)
        if chosen is None:
            break
        taken = devices.reserve(step.session, chosen["id"], need, nfi.id, step.lease())
        if taken is not None:
            # SQLite reserves in this transaction: commit at once, every NF sharing
            # the device waits for its row's lock
            step.checkpoint()
            if taken != "reserved":
                return done()
            # a device that answers needs no wait for its management link (device.reachable)
            return done({"device_id": chosen["id"], "shared": True},
                        branch="reachable" if unreachable(rows[chosen["id"]]) is None else None)
        candidates = [c for c in candidates if c["id"] != chosen["id"]]
    step.checkpoint()  # no transaction held while the driver creates a device
    created = driver.create_network_function_device(data)
    if not created:
        return fail(f"no {nf.device_type} device for vendor {nf.service_vendor!r} with "
                    f"{need} free interface(s), and the driver could not create one")
    devices.add_created(step.session, nf, created, need)
    nfi = instances.of(step.session, step.scope)
    nfi.network_function_device_id, nfi.interfaces_held = created["id"], need
    return done({"device_id": created["id"], "shared": False}, branch="reachable")  # a new device


def wait_up(step) -> Outcome:
    """Poll the driver until the device is ACTIVE (interval and count from the flow)."""
    found = _context(step)
    if isinstance(found, Outcome):
        return found
    nf, nfi, nfd = found
    driver = step.services.device_driver(nf.device_type)
    data = device_data(nf, nfd, nfi)
    step.checkpoint()
    status = driver.get_network_function_device_status(data)
    if status == DeviceStatus.ACTIVE:
        return done({"status": status})
    if status in (None, DeviceStatus.ERROR):
        return fail(f"device {nfd.id} reports status {status}")
    return again({"status": status})


def healthcheck(step) -> Outcome:
    """Initial health check through the configurator (upstream HEALTH_MONITOR)."""
    found = _nf_and_device(step)
    if isinstance(found, Outcome):
        return found
    nf, nfd = found
    driver = step.services.device_driver(nf.device_type)
    info = driver.get_network_function_device_healthcheck_info(device_data(nf, nfd))
    where = target(nfd, nf.service_vendor)
    step.checkpoint()
    outcome = step.services.configurator.configure("create", "generic", info.get("config", []),
                                                   where, nf.id, nf.tenant_id)
    return done() if outcome.ok else fail(f"health check failed: {outcome.error}")


def plug(step) -> Outcome:
    """Attach the NF's data ports to the device."""
    found = _nf_and_device(step)
    if isinstance(found, Outcome):
        return found
    nf, nfd = found
    driver = step.services.device_driver(nf.device_type)
    data = device_data(nf, nfd)
    step.checkpoint()
    if not data["ports"]:
        return done({"plugged": 0})
    if not driver.plug_network_function_device_interface(data):
        return fail(f"could not plug {len(data['ports'])} port(s) into device {nfd.id}")
    return done({"plugged": len(data["ports"])})


def device_up(step) -> Outcome:
    """Fan-in: every child succeeded → device and instance ACTIVE; configuration follows."""
    failed = step.failed_children()
    if failed:
        return fail("; ".join(f"{c.type}: {c.error}" for c in failed))
    found = _context(step, read=network_functions.context)  # writes the statuses
    if isinstance(found, Outcome):
        return found
    nf, nfi, nfd = found
    set_device_status(nfd, DeviceStatus.ACTIVE)
    set_instance_status(nfi, InstanceStatus.ACTIVE)
    return done()


def configure_device(step) -> Outcome:
    """Generic device config (interfaces, routes) from the device driver."""
    found = _nf_and_device(step)
    if isinstance(found, Outcome):
        return found
    nf, nfd = found
    driver = step.services.device_driver(nf.device_type)
    info = driver.get_network_function_device_config_info(device_data(nf, nfd))
    where = target(nfd, nf.service_vendor)
    step.checkpoint()
    if not info.get("config"):
        return done()
    outcome = step.services.configurator.configure("create", "generic", info["config"], where,
                                                   nf.id, nf.tenant_id)
    return done() if outcome.ok else fail(f"device configuration failed: {outcome.error}")


# -- delete -------------------------------------------------------------------------
def unconfigure_device(step) -> Outcome:
    nf, nfd = _nf_and_device(step, required=False)
    if nf is None or nfd is None:
        return done()
    driver = step.services.device_driver(nf.device_type)
    info = driver.get_network_function_device_config_info(device_data(nf, nfd))
    where = target(nfd, nf.service_vendor)
    step.checkpoint()
    if info.get("config"):
        outcome = step.services.configurator.configure("delete", "generic", info["config"],
                                                       where, nf.id, nf.tenant_id)
        if not outcome.ok:
            LOG.warning("NF %s: device config delete failed (%s); continuing the delete",
                        nf.id, outcome.error)
    return done()


def unplug(step) -> Outcome:
    nf, nfd = _nf_and_device(step, required=False)
    if nf is None or nfd is None:
        return done()
    driver = step.services.device_driver(nf.device_type)
    data = device_data(nf, nfd)
    step.checkpoint()
    if data["ports"] and not driver.unplug_network_function_device_interface(data):
        LOG.warning("NF %s: unplugging from device %s failed; continuing the delete", nf.id, nfd.id)
    return done()


def release(step) -> Outcome:
    """Give back the interfaces; delete a device nfp created once nobody uses it."""
    nfi = instances.of(step.session, step.scope)
    if nfi is None or not nfi.network_function_device_id:
        return done()
    device_id, held = nfi.network_function_device_id, nfi.interfaces_held
    devices.release(step.session, device_id, held)
    nfi.network_function_device_id, nfi.interfaces_held = None, 0
    nfd = devices.get(step.session, device_id)
    if nfd is None or nfd.managed or nfd.reference_count > 0:
        return done()
    nf = network_functions.get(step.session, step.scope)
    driver = step.services.device_driver(nfd.device_type)
    data = device_data(nf, nfd) if nf else device_dict(nfd)
    set_device_status(nfd, DeviceStatus.PENDING_DELETE)
    step.checkpoint()  # the release is committed; deleting the device is idempotent
    driver.delete_network_function_device(data)
    devices.delete_if_unused(step.session, device_id)
    return done({"deleted_device": device_id})


def _nf_and_device(step, required: bool = True):
    """The NF and its device (see :func:`_context`)."""
    found = _context(step, required)
    return found if isinstance(found, Outcome) else (found[0], found[2])


def _context(step, required: bool = True, read=network_functions.view):
    """The NF, its instance and its device, read with one statement: read-only
    rows, unless ``read`` is :meth:`~nfp.db.repositories.NetworkFunctionRepository.context`
    (ORM objects, for a step that changes them). A row that vanished (a concurrent
    delete, an operator removing a device) is an expected case: one log line and
    a failed step."""
    nf, nfi, nfd = read(step.session, step.scope)
    if required and (nf is None or nfd is None):
        what = "network function" if nf is None else "device row"
        LOG.warning("NF %s: %s no longer exists; step %s fails", step.scope, what, step.event.type)
        return fail(f"NF {step.scope} or its device no longer exists")
    return nf, nfi, nfd
