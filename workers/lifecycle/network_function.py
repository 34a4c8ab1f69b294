"""The work of the network function (NF) and instance (NFI) steps.

Which step follows which, and what a failure leads to, is declared in
:mod:`nfp.flows`; these functions only do each step's work and report
``done``, ``again`` (poll) or ``fail``. Statuses change only through the
transition table (:func:`nfp.flows.set_nf_status`).
"""
from __future__ import annotations

import json
import logging

from nfp.api import schemas
from nfp.api.views import nf_dict
from nfp.db.errors import scrub
from nfp.db.repositories import devices, instances, network_functions
from nfp.engine.events import Outcome, again, done, fail
from nfp.flows import (OP_STATUS, DeviceStatus, InstanceStatus, NFStatus, set_device_status,
                       set_instance_status, set_nf_status)
from nfp.desired import desired_config
from nfp.heat.translate import HeatError
from nfp.secrets import delete_under
from nfp.workers.configurator.remote import configure_step
from nfp.workers.lifecycle.driver_data import target

LOG = logging.getLogger(__name__)


# -- failure handlers ----------------------------------------------------------
def mark_error(session, nf_id: str, reason: str):
    """NF and its unfinished instance to ERROR with the reason (not while deleting)."""
    nf = network_functions.get(session, nf_id)
    if nf is None or nf.status == NFStatus.PENDING_DELETE:
        return nf
    set_nf_status(nf, NFStatus.ERROR, reason)
    nf.operation = None
    nfi = instances.of(session, nf_id)
    if nfi is not None and nfi.status != InstanceStatus.ACTIVE:
        set_instance_status(nfi, InstanceStatus.ERROR, reason)
        nfd = devices.get(session, nfi.network_function_device_id)
        if nfd is not None and nfd.status == DeviceStatus.DEVICE_SPAWNING:
            set_device_status(nfd, DeviceStatus.DEVICE_NOT_UP)  # never came up for this NF
    return nf


def _fail_with(step, reason: str, event_type: str):
    reason = scrub(reason)  # callers see it: no SQL, whatever raised
    nf = mark_error(step.session, step.scope, reason)
    if nf is None:
        return None
    return done(notify=[(event_type, {"network_function_id": nf.id, "reason": reason})])


def fail_create(step, reason: str):
    return _fail_with(step, reason, "nfp.network_function.create.error")


def fail_operation(step, reason: str):
    return _fail_with(step, reason, "nfp.network_function.update.error")


def fail_delete(step, reason: str):
    """The rows could not be removed: say so instead of staying PENDING_DELETE."""
    nf = network_functions.get(step.session, step.scope)
    if nf is None:
        return None
    reason = scrub(reason)
    set_nf_status(nf, NFStatus.ERROR, f"delete failed: {reason}")
    nf.operation = None
    return done(notify=[("nfp.network_function.delete.error",
                         {"network_function_id": nf.id, "reason": reason})])


# -- create ----------------------------------------------------------------------
def create(step) -> Outcome:
    """Record the instance and its data ports; the device steps follow."""
    nf, nfi, _ = network_functions.view(step.session, step.scope)
    if nf is None:
        return fail("network function vanished")
    try:  # a config nfp cannot translate fails here, before any device is touched
        desired_config(nf.service_config, nf.spec)
    except HeatError as exc:
        return fail(f"service_config: {exc}")
    if nfi is None:
        instances.create(step.session, nf, nf.spec.get("ports", []))
    return done()


def configure_service(step) -> Outcome:
    """Push the NF's service_config through the configurator."""
    return _apply_service_config(step, "create")


def configured(step) -> Outcome:
    """Fan-in of the configuration steps: the NF is ACTIVE."""
    failed = step.failed_children()
    if failed:
        return fail("; ".join(f"{c.type}: {c.error}" for c in failed))
    nf = network_functions.get(step.session, step.scope)
    if nf is None or nf.status == NFStatus.PENDING_DELETE:
        return done()  # pre-empted by a delete: its result is dropped anyway
    set_nf_status(nf, NFStatus.ACTIVE)
    nf.operation = None
    LOG.info("NF %s is ACTIVE", nf.id)
    return done(notify=[("nfp.network_function.create.end", nf_dict(nf))])


# -- queued operations -------------------------------------------------------------
def operation(step) -> Outcome:
    """Start a queued operation once no other operation runs on the NF."""
    nf = network_functions.get(step.session, step.scope, lock=True)
    if nf is None:
        return fail("network function vanished")
    token, op = step.payload["token"], step.payload["op"]
    if nf.operation not in (None, token):
        return again({"waiting_for": nf.operation})
    nf.operation = token
    set_nf_status(nf, OP_STATUS[op])
    _merge_op(nf, op, step.payload.get("args", {}))
    return done(payload={"op": op})


def apply_update(step) -> Outcome:
    """Re-apply the service config after an operation; ACTIVE when it took."""
    outcome = _apply_service_config(step, "update")
    if outcome.kind != "done":
        return outcome
    nf = network_functions.get(step.session, step.scope)
    set_nf_status(nf, NFStatus.ACTIVE)
    nf.operation = None
    outcome.notify.append(("nfp.network_function.update.end", nf_dict(nf)))
    return outcome


def _merge_op(nf, op: str, args: dict) -> None:
    """Fold the operation's arguments into the NF's intent. Notifications change
    ``spec`` only, never ``service_config``, so an update keeps what they added;
    :func:`nfp.desired.desired_config` derives the device's config from both."""
    spec = dict(nf.spec or {})
    if op == "update":
        nf.service_config = args["config"]
    elif op == "chain_parameters":
        params = _chain_parameters(args.get("chain_parameters"))
        spec["chain_parameters"] = args.get("chain_parameters")
        spec["config_param_values"] = {**(spec.get("config_param_values") or {}), **params}
    elif op in ("pt_add", "pt_remove"):
        pt = schemas.PolicyTarget.model_validate(args["policy_target"])
        members = dict(spec.get("members") or {})
        if op == "pt_remove":
            members[pt.id] = None
        elif pt.address():
            members[pt.id] = {"address": pt.address(), "protocol_port": pt.port}
        else:
            LOG.warning("NF %s: policy target %s has no IP address; no pool member added",
                        nf.id, pt.id)
        spec["members"] = members
    elif op in ("consumer_add", "consumer_remove"):
        ptg = schemas.PolicyTargetGroup.model_validate(args["policy_target_group"])
        consumers = [c for c in spec.get("consumers", []) if c.get("id") != ptg.id]
        if op == "consumer_add":
            consumers.append(schemas.consumer_record(ptg))
        spec["consumers"] = consumers
        spec["follow_consumers"] = True  # from now on the rules follow the consumers
    nf.spec = spec


def _chain_parameters(value) -> dict:
    """Chain parameters as a dict (a JSON string upstream, like config_param_values)."""
    if isinstance(value, str):
        try:
            value = json.loads(value or "{}")
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def _apply_service_config(step, operation: str) -> Outcome:
    nf, _, nfd = network_functions.view(step.session, step.scope)
    if nf is None or nfd is None:
        LOG.warning("NF %s: the NF or its device row is gone; %s of its config fails",
                    step.scope, operation)
        return fail("network function or its device vanished")
    try:
        elements = desired_config(nf.service_config, nf.spec)
    except HeatError as exc:  # an update to a template nfp cannot translate
        return fail(f"service_config: {exc}")
    where = target(nfd, nf.service_vendor)
    step.checkpoint()
    if not elements:
        return done()
    return configure_step(step, operation, nf.service_type, elements, where, nf.id, nf.tenant_id)


# -- delete -------------------------------------------------------------------------
def delete(step) -> Outcome:
    """Wait for pre-empted steps still talking to the device, then tear down."""
    if step.others_running():
        return again({"waiting_for": "pre-empted steps to return"})
    nf = network_functions.get(step.session, step.scope)
    if nf is None:
        return done(branch="gone")
    nfi = instances.of(step.session, step.scope)
    if nfi is None or not nfi.network_function_device_id:
        return done(branch="no_device")
    return done()


def unconfigure_service(step) -> Outcome:
    nf = network_functions.get(step.session, step.scope)
    nfi = instances.of(step.session, step.scope)
    nfd = devices.get(step.session, nfi.network_function_device_id if nfi else None)
    if nf is None or nfd is None:
        return done()
    try:
        elements = desired_config(nf.service_config, nf.spec)
    except ValueError as exc:  # an untranslatable config never reached the device
        LOG.info("NF %s: nothing to remove for a config that never translated (%s)", nf.id, exc)
        elements = []
    where = target(nfd, nf.service_vendor)
    step.checkpoint()
    if elements:
        outcome = configure_step(step, "delete", nf.service_type, list(reversed(elements)), where,
                                 nf.id, nf.tenant_id)
        if outcome.kind != "fail":
            return outcome  # done, or parked until the configurator's notification
        LOG.warning("NF %s: removing service config failed (%s); continuing the delete",
                    nf.id, outcome.reason)
    return done()


def delete_done(step) -> Outcome:
    """Remove the NF, its instance and port records, and the secrets sealed from its
    payloads (``nf/<id>/…``, :mod:`nfp.payload_secrets`): nothing refers to them once
    the NF is gone, and they go in the same transaction as its rows."""
    nf = network_functions.get(step.session, step.scope)
    if nf is None:
        return done()
    nfi = instances.of(step.session, nf.id)
    if nfi is not None:
        instances.delete_with_ports(step.session, nfi)
    payload = {"network_function_id": nf.id, "tenant_id": nf.tenant_id}
    network_functions.delete(step.session, nf)
    sealed = delete_under(step.session, f"nf/{nf.id}/")
    LOG.info("NF %s deleted%s", payload["network_function_id"],
             f" with its {sealed} sealed secret(s)" if sealed else "")
    return done(notify=[("nfp.network_function.delete.end", payload)])
