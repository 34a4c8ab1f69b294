"""The work of the ``heal`` flow's steps (:data:`nfp.flows.HEAL`).

The health monitor starts a heal for a device that stayed DOWN past
``heal.after`` (:mod:`nfp.workers.health.heal` decides when, with cooldown,
back-off and the fleet circuit breaker). The flow runs under the key of one NF on
the device, so it never races that NF's lifecycle steps.

- ``device.heal``: the device driver's ``heal_network_function_device`` (when it
  has one) looks at the device out of band. A device that is alive, whose
  management path is at fault, is left alone (its data plane keeps forwarding,
  seed 004). A dead one is deleted, re-created under the same id and re-plugged;
  the device row takes the new management address and host key. A driver
  without heal support (static appliances) gets its config re-pushed instead,
  unless the device is UNREACHABLE, where a push could not arrive.
- ``device.heal_configure``: the device config (interfaces, routes) and the
  service config of every NF on the device, planned from the device's real state.
"""
from __future__ import annotations

import logging
from typing import Optional

from sqlalchemy import select

from nfp.db.errors import scrub
from nfp.db.models import NetworkFunction, NetworkFunctionInstance
from nfp.db.repositories import devices, instances, network_functions
from nfp.desired import desired_config
from nfp.engine.events import Outcome, again, done, fail
from nfp.flows import IN_PROGRESS, NFStatus
from nfp.workers.health.state import UNREACHABLE
from nfp.workers.lifecycle.driver_data import device_data, target

LOG = logging.getLogger(__name__)


def _nfs_on(session, device_id: str) -> list[NetworkFunction]:
    """The NFs on a device that are not being deleted, oldest first."""
    return list(session.scalars(
        select(NetworkFunction).join(NetworkFunctionInstance,
                                     NetworkFunctionInstance.network_function_id == NetworkFunction.id)
        .where(NetworkFunctionInstance.network_function_device_id == device_id,
               NetworkFunction.status != NFStatus.PENDING_DELETE.value)
        .order_by(NetworkFunction.created_at)))


def heal(step) -> Outcome:
    """Let the driver re-create a dead device (see module docstring)."""
    device_id = step.payload.get("device_id")
    nfd = devices.get(step.session, device_id)
    nf = network_functions.get(step.session, step.scope)
    if nfd is None or nf is None:
        LOG.info("heal of device %s (NF %s): the device or NF is gone; nothing to heal",
                 device_id, step.scope)
        return done(branch="skip")
    if nf.operation is not None or nf.status in IN_PROGRESS or step.others_running():
        return again({"waiting_for": nf.operation or nf.status})
    nfs = _nfs_on(step.session, nfd.id)
    driver = step.services.device_driver(nfd.device_type)
    heal_device = getattr(driver, "heal_network_function_device", None)
    payload = {"device_id": nfd.id, "attempt": step.payload.get("attempt", 1)}
    if heal_device is None:
        if nfd.health == UNREACHABLE:
            LOG.warning("device %s (NF %s) is UNREACHABLE and its %s driver cannot heal it out of "
                        "band; its config is not re-pushed (it could not arrive); its NFs stay "
                        "degraded until the link returns", nfd.id, step.scope, nfd.device_type)
            return done({"action": "none"}, branch="skip")
        LOG.warning("device %s (NF %s): its %s driver has no heal; re-pushing its config",
                    nfd.id, step.scope, nfd.device_type)
        return done({"action": "reconfigure"}, payload=payload)
    data = device_data(nf, nfd)
    data["ports"] = [p for other in nfs for p in (other.spec or {}).get("ports", [])]
    step.checkpoint()  # no transaction held while the driver works on the device
    outcome = heal_device(data) or {}
    action = outcome.get("action", "none")
    if action == "none":
        LOG.info("device %s (NF %s): not healed: %s", device_id, step.scope,
                 outcome.get("reason", "the driver found nothing to heal"))
        return done({"action": "none"}, branch="skip")
    described = outcome.get("device") or {}
    nfd = devices.get(step.session, device_id)
    if nfd is None:
        return fail(f"device {device_id} row vanished while it was re-created")
    # a re-created device has a new host key and may have a new management address
    for column in ("mgmt_ip_address", "extra", "description"):
        if described.get(column) is not None:
            setattr(nfd, column, described[column])
    LOG.warning("device %s (NF %s) was re-created by its %s driver; its config is pushed next",
                device_id, step.scope, nfd.device_type)
    return done({"action": action}, payload=payload)


def heal_configure(step) -> Outcome:
    """Push the device config and every NF's service config onto the healed device."""
    device_id = step.payload["device_id"]
    nfd = devices.get(step.session, device_id)
    if nfd is None:
        return fail(f"device {device_id} vanished")
    plans = []
    driver = step.services.device_driver(nfd.device_type)
    for nf in _nfs_on(step.session, device_id):
        info = driver.get_network_function_device_config_info(
            device_data(nf, nfd, instances.of(step.session, nf.id)))
        plans.append((nf.id, nf.tenant_id, nf.service_type, target(nfd, nf.service_vendor),
                      info.get("config") or [], desired_config(nf.service_config, nf.spec)))
    step.checkpoint()
    configurator, errors = step.services.configurator, []
    for nf_id, tenant_id, service_type, where, device_config, elements in plans:
        for kind, config in (("generic", device_config), (service_type, elements)):
            if not config:
                continue
            outcome = configurator.configure("create", kind, config, where, nf_id, tenant_id, repair=True)
            if not outcome.ok:
                errors.append(f"NF {nf_id} {kind}: {outcome.error}")
    if errors:
        return fail("; ".join(errors))
    LOG.info("device %s healed: config of %d NF(s) pushed (attempt %s)", device_id, len(plans),
             step.payload.get("attempt"))
    return done({"nfs": len(plans)}, notify=[("nfp.device.heal.end", {
        "device_id": device_id, "network_function_ids": [p[0] for p in plans],
        "attempt": step.payload.get("attempt")})])


def fail_heal(step, reason: str) -> Optional[Outcome]:
    """A heal that could not finish: say so; the monitor backs off before the next."""
    reason = scrub(reason)
    device_id = step.payload.get("device_id")
    LOG.error("heal of device %s (NF %s, attempt %s) failed: %s; the NF keeps its status and the "
              "health monitor tries again after its back-off", device_id, step.scope,
              step.payload.get("attempt"), reason)
    return done(notify=[("nfp.device.heal.error", {"device_id": device_id, "network_function_id": step.scope,
                                                   "attempt": step.payload.get("attempt"), "reason": reason})])
