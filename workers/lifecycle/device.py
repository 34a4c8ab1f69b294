"""The network function device (NFD) state machine.

create:  device.allocate → device.wait_up (poll) → [device.healthcheck ‖ device.plug]
         → device.up (fan-in) → hands back to the NF machine (nf.configure)
delete:  device.unconfigure → device.unplug → device.release → nf.delete_done

Capacity is reserved with one conditional UPDATE, so concurrent NFs on other
workers can never over-commit a shared device. The instance records what it
holds (``interfaces_held``), which makes reserve and release idempotent.
"""
from __future__ import annotations

import logging

from sqlalchemy import select, update

from nfp.db.models import (DeviceStatus, NetworkFunctionDevice,
                           NetworkFunctionInstance)
from nfp.engine.events import EventSpec, Graph, done, fail, poll
from nfp.engine.registry import handler
from nfp.workers.lifecycle import common
from nfp.workers.lifecycle.network_function import on_create_failure, on_delete_step_failure

LOG = logging.getLogger(__name__)
D = NetworkFunctionDevice.__table__


def _reserve(session, device_id: str, need: int) -> bool:
    res = session.execute(
        update(D).where(D.c.id == device_id, D.c.interfaces_in_use + need <= D.c.max_interfaces,
                        D.c.status == DeviceStatus.ACTIVE)
        .values(interfaces_in_use=D.c.interfaces_in_use + need,
                reference_count=D.c.reference_count + 1))
    return res.rowcount == 1


def _candidates(session, filters: dict) -> list[dict]:
    stmt = select(NetworkFunctionDevice).where(NetworkFunctionDevice.shared.is_(True),
                                               NetworkFunctionDevice.status == DeviceStatus.ACTIVE)
    for column, value in (filters or {}).items():
        if hasattr(NetworkFunctionDevice, column):
            stmt = stmt.where(getattr(NetworkFunctionDevice, column) == value)
    return [common.device_dict(d) for d in session.scalars(stmt.order_by(NetworkFunctionDevice.id))]


@handler("device.allocate", on_failure=on_create_failure)
def allocate(step):
    """Share an existing device with room for our ports, or create one."""
    nf = common.get_nf(step.session, step.scope)
    nfi = common.get_nfi(step.session, step.scope)
    if nf is None or nfi is None:
        return fail("network function vanished during create")
    nxt = EventSpec("device.wait_up", nf.id)
    if nfi.network_function_device_id:  # a retry after the reservation committed
        return done(emit=[nxt])
    driver = step.services.device_driver(nf.device_type)
    data = common.device_data(nf, nfi=nfi)
    need = max(1, len(data["ports"]))
    filters = driver.get_network_function_device_sharing_info(data).get("filters", {})
    candidates = _candidates(step.session, filters)
    while candidates:
        chosen = driver.select_network_function_device(candidates, data)
        if chosen is None:
            break
        if _reserve(step.session, chosen["id"], need):
            nfi.network_function_device_id, nfi.interfaces_held = chosen["id"], need
            return done({"device_id": chosen["id"], "shared": True}, emit=[nxt])
        candidates = [c for c in candidates if c["id"] != chosen["id"]]
    step.checkpoint()  # no transaction held while the driver creates a device
    created = driver.create_network_function_device(data)
    if not created:
        return fail(f"no {nf.device_type} device for vendor {nf.service_vendor!r} with "
                    f"{need} free interface(s), and the driver could not create one")
    nfd = NetworkFunctionDevice(
        id=created["id"], name=created.get("name", ""), tenant_id=nf.tenant_id,
        status=DeviceStatus.DEVICE_SPAWNING, mgmt_ip_address=created.get("mgmt_ip_address"),
        service_vendor=nf.service_vendor, service_type=nf.service_type, device_type=nf.device_type,
        max_interfaces=created.get("max_interfaces", need), interfaces_in_use=need,
        reference_count=1, shared=False, managed=False, description=created.get("description", ""),
        credentials_ref=created.get("credentials_ref"), extra=created.get("extra", {}),
        provider_metadata=created.get("provider_metadata", {}))
    step.session.merge(nfd)
    nfi = step.session.get(NetworkFunctionInstance, nfi.id)
    nfi.network_function_device_id, nfi.interfaces_held = created["id"], need
    return done({"device_id": created["id"], "shared": False}, emit=[nxt])


@handler("device.wait_up", on_failure=on_create_failure)
def wait_up(step):
    """Poll the driver until the device is ACTIVE (interval and max from config)."""
    nf = common.get_nf(step.session, step.scope)
    nfi = common.get_nfi(step.session, step.scope)
    nfd = common.get_device(step.session, nfi.network_function_device_id if nfi else None)
    if nf is None or nfd is None:
        return fail("device vanished while waiting for it")
    driver = step.services.device_driver(nf.device_type)
    data = common.device_data(nf, nfd, nfi)
    step.checkpoint()
    status = driver.get_network_function_device_status(data)
    if status == "ACTIVE":
        graph = Graph(EventSpec("device.up", nf.id),
                      [EventSpec("device.healthcheck", nf.id, key=f"{nf.id}:health"),
                       EventSpec("device.plug", nf.id, key=f"{nf.id}:plug")])
        return done({"status": status}, emit=[graph])
    if status in (None, "ERROR"):
        return fail(f"device {nfd.id} reports status {status}")
    conf = step.services.conf.orchestrator
    return poll(conf.device_poll_interval, conf.device_poll_max, {"status": status})


@handler("device.healthcheck", on_failure=on_create_failure)
def healthcheck(step):
    """Initial health check through the configurator (upstream HEALTH_MONITOR)."""
    nf, nfd = _nf_and_device(step)
    driver = step.services.device_driver(nf.device_type)
    info = driver.get_network_function_device_healthcheck_info(common.device_data(nf, nfd))
    target = common.target(nfd, nf.service_vendor)
    step.checkpoint()
    outcome = step.services.configurator.configure("create", "generic", info.get("config", []),
                                                   target, nf.id, nf.tenant_id)
    return done() if outcome.ok else fail(f"health check failed: {outcome.error}")


@handler("device.plug", on_failure=on_create_failure)
def plug(step):
    """Attach the NF's data ports to the device."""
    nf, nfd = _nf_and_device(step)
    driver = step.services.device_driver(nf.device_type)
    data = common.device_data(nf, nfd)
    step.checkpoint()
    if not data["ports"]:
        return done({"plugged": 0})
    if not driver.plug_network_function_device_interface(data):
        return fail(f"could not plug {len(data['ports'])} port(s) into device {nfd.id}")
    return done({"plugged": len(data["ports"])})


@handler("device.up", on_failure=on_create_failure, io=False)
def device_up(step):
    """Fan-in: every child succeeded → device and instance ACTIVE, configure."""
    failed = [c for c in step.children() if c.status != "done"]
    if failed:
        return fail("; ".join(f"{c.type}: {c.error}" for c in failed))
    nf, nfd = _nf_and_device(step)
    if nfd.status != DeviceStatus.ACTIVE:
        nfd.status = DeviceStatus.ACTIVE
    nfi = common.get_nfi(step.session, nf.id)
    nfi.status = "ACTIVE"
    graph = Graph(EventSpec("nf.configured", nf.id),
                  [EventSpec("device.configure", nf.id, key=f"{nf.id}:devcfg"),
                   EventSpec("service.configure", nf.id, key=f"{nf.id}:svccfg")])
    return done(emit=[graph])


@handler("device.configure", on_failure=on_create_failure)
def configure_device(step):
    """Generic device config (interfaces, routes) from the device driver."""
    nf, nfd = _nf_and_device(step)
    driver = step.services.device_driver(nf.device_type)
    info = driver.get_network_function_device_config_info(common.device_data(nf, nfd))
    target = common.target(nfd, nf.service_vendor)
    step.checkpoint()
    if not info.get("config"):
        return done()
    outcome = step.services.configurator.configure("create", "generic", info["config"], target,
                                                   nf.id, nf.tenant_id)
    return done() if outcome.ok else fail(f"device configuration failed: {outcome.error}")


# -- delete ---------------------------------------------------------------
@handler("device.unconfigure", on_failure=on_delete_step_failure)
def unconfigure_device(step):
    nf, nfd = _nf_and_device(step, required=False)
    nxt = EventSpec("device.unplug", step.scope)
    if nf is None or nfd is None:
        return done(emit=[nxt])
    driver = step.services.device_driver(nf.device_type)
    info = driver.get_network_function_device_config_info(common.device_data(nf, nfd))
    target = common.target(nfd, nf.service_vendor)
    step.checkpoint()
    if info.get("config"):
        outcome = step.services.configurator.configure("delete", "generic", info["config"],
                                                       target, nf.id, nf.tenant_id)
        if not outcome.ok:
            LOG.warning("NF %s: device config delete failed (%s); continuing the delete",
                        nf.id, outcome.error)
    return done(emit=[nxt])


@handler("device.unplug", on_failure=on_delete_step_failure)
def unplug(step):
    nf, nfd = _nf_and_device(step, required=False)
    nxt = EventSpec("device.release", step.scope)
    if nf is None or nfd is None:
        return done(emit=[nxt])
    driver = step.services.device_driver(nf.device_type)
    data = common.device_data(nf, nfd)
    step.checkpoint()
    if data["ports"] and not driver.unplug_network_function_device_interface(data):
        LOG.warning("NF %s: unplugging from device %s failed; continuing the delete", nf.id, nfd.id)
    return done(emit=[nxt])


@handler("device.release", on_failure=on_delete_step_failure)
def release(step):
    """Give back the interfaces; delete a device nfp created once nobody uses it."""
    nxt = EventSpec("nf.delete_done", step.scope)
    nfi = common.get_nfi(step.session, step.scope)
    if nfi is None or not nfi.network_function_device_id:
        return done(emit=[nxt])
    device_id, held = nfi.network_function_device_id, nfi.interfaces_held
    step.session.execute(update(D).where(D.c.id == device_id).values(
        interfaces_in_use=D.c.interfaces_in_use - held, reference_count=D.c.reference_count - 1))
    nfi.network_function_device_id, nfi.interfaces_held = None, 0
    nfd = common.get_device(step.session, device_id)
    if nfd is None or nfd.managed or nfd.reference_count > 0:
        return done(emit=[nxt])
    nf = common.get_nf(step.session, step.scope)
    driver = step.services.device_driver(nfd.device_type)
    data = common.device_data(nf, nfd) if nf else common.device_dict(nfd)
    nfd.status = DeviceStatus.PENDING_DELETE
    step.checkpoint()  # the release is committed; deleting the device is idempotent
    driver.delete_network_function_device(data)
    step.session.execute(D.delete().where(D.c.id == device_id, D.c.reference_count <= 0))
    return done({"deleted_device": device_id}, emit=[nxt])


def _nf_and_device(step, required: bool = True):
    nf = common.get_nf(step.session, step.scope)
    nfi = common.get_nfi(step.session, step.scope)
    nfd = common.get_device(step.session, nfi.network_function_device_id if nfi else None)
    if required and (nf is None or nfd is None):
        raise LookupError(f"NF {step.scope} or its device no longer exists")
    return nf, nfd
