"""The network function (NF) and instance (NFI) state machines, in one place.

create:  [rpc] NF PENDING_CREATE → nf.create (NFI, ports) → device machine
         → nf.configured (fan-in of device.configure ‖ service.configure) → ACTIVE
delete:  [rpc] NF PENDING_DELETE, open steps of the NF cancelled (pre-empts a create)
         → nf.delete → service.unconfigure → device machine → nf.delete_done (rows removed)
update, policy target and consumer PTG changes, chain parameters:
         [rpc] nf.op → (waits while another operation runs) → service.apply → ACTIVE

Any failure of a create or update step sets the NF to ERROR with the reason.
Delete steps log failures and go on, so a delete always removes the NF.
"""
from __future__ import annotations

import logging

from sqlalchemy import delete as sql_delete

from nfp.db.models import NFStatus, PortInfo
from nfp.db.models import NetworkFunctionInstance
from nfp.engine.events import EventSpec, done, fail, poll
from nfp.engine.registry import handler
from nfp.workers.lifecycle import common

LOG = logging.getLogger(__name__)

#: NF status while each queued operation runs
OP_STATUS = {
    "update": NFStatus.PENDING_UPDATE,
    "chain_parameters": NFStatus.PENDING_UPDATE,
    "pt_add": NFStatus.PT_ADD_IN_PROGRESS,
    "pt_remove": NFStatus.PT_REMOVE_IN_PROGRESS,
    "consumer_add": NFStatus.PTG_ADD_IN_PROGRESS,
    "consumer_remove": NFStatus.PTG_REMOVE_IN_PROGRESS,
}


# -- failure handlers -------------------------------------------------------
def on_create_failure(step, reason):
    nf = common.mark_error(step.session, step.scope, reason)
    if nf is not None:
        return done(notify=[("nfp.network_function.create.error",
                             {"network_function_id": nf.id, "reason": reason})])
    return None


def on_op_failure(step, reason):
    nf = common.mark_error(step.session, step.scope, reason)
    if nf is not None:
        return done(notify=[("nfp.network_function.update.error",
                             {"network_function_id": nf.id, "reason": reason})])
    return None


def on_delete_step_failure(step, reason):
    """Deletion goes on regardless: the next step of the chain still runs."""
    following = {"service.unconfigure": "device.unconfigure", "device.unconfigure": "device.unplug",
                 "device.unplug": "device.release", "device.release": "nf.delete_done",
                 "nf.delete": "service.unconfigure"}
    nxt = following.get(step.event.type)
    LOG.warning("NF %s: delete step %s failed (%s); continuing", step.scope, step.event.type, reason)
    return done(emit=[EventSpec(nxt, step.scope)]) if nxt else None


# -- create -----------------------------------------------------------------
@handler("nf.create", on_failure=on_create_failure, io=False)
def create(step):
    """Record the instance and its data ports, then hand over to the device machine."""
    nf = common.get_nf(step.session, step.scope)
    if nf is None:
        return fail("network function vanished")
    if common.get_nfi(step.session, nf.id) is None:
        nfi = NetworkFunctionInstance(name=f"{nf.name}-instance", tenant_id=nf.tenant_id,
                                      status=NFStatus.PENDING_CREATE, network_function_id=nf.id)
        for port in nf.spec.get("ports", []):
            info = step.session.get(PortInfo, port["id"]) or PortInfo(
                id=port["id"], tenant_id=nf.tenant_id, port_model=port.get("port_model", "neutron_port"),
                port_classification=port.get("port_classification", "provider"))
            nfi.port_info.append(info)
        step.session.add(nfi)
    return done(emit=[EventSpec("device.allocate", nf.id)])


@handler("service.configure", on_failure=on_create_failure)
def configure_service(step):
    """Push the NF's service_config through the configurator."""
    return _apply_service_config(step, "create")


@handler("nf.configured", on_failure=on_create_failure, io=False)
def configured(step):
    """Fan-in of the configuration steps: the NF is ACTIVE."""
    failed = [c for c in step.children() if c.status != "done"]
    if failed:
        return fail("; ".join(f"{c.type}: {c.error}" for c in failed))
    nf = common.get_nf(step.session, step.scope)
    common.set_nf_status(nf, NFStatus.ACTIVE, "")
    nf.operation = None
    LOG.info("NF %s is ACTIVE", nf.id)
    return done(notify=[("nfp.network_function.create.end", common.nf_dict(nf))])


# -- queued operations ------------------------------------------------------
@handler("nf.op", on_failure=on_op_failure, io=False)
def operation(step):
    """Start a queued operation once no other operation runs on the NF."""
    nf = common.get_nf(step.session, step.scope, lock=True)
    if nf is None:
        return fail("network function vanished")
    token, op = step.payload["token"], step.payload["op"]
    if nf.operation not in (None, token):
        conf = step.services.conf.orchestrator
        return poll(1.0, int(conf.busy_wait_max), {"waiting_for": nf.operation})
    nf.operation = token
    common.set_nf_status(nf, OP_STATUS[op], "")
    _merge_op(nf, op, step.payload.get("args", {}))
    return done(emit=[EventSpec("service.apply", nf.id, {"op": op})])


@handler("service.apply", on_failure=on_op_failure)
def apply_update(step):
    """Re-apply the service config after an update; ACTIVE when it took."""
    outcome = _apply_service_config(step, "update")
    if outcome.kind != "done":
        return outcome
    nf = common.get_nf(step.session, step.scope)
    common.set_nf_status(nf, NFStatus.ACTIVE, "")
    nf.operation = None
    outcome.notify.append(("nfp.network_function.update.end", common.nf_dict(nf)))
    return outcome


def _merge_op(nf, op: str, args: dict) -> None:
    """Fold the operation's arguments into the NF's desired state."""
    spec = dict(nf.spec or {})
    if op == "update":
        nf.service_config = args["config"]
    elif op == "chain_parameters":
        spec["chain_parameters"] = args.get("chain_parameters")
    elif op in ("pt_add", "pt_remove"):
        elements = common.parse_service_config(nf.service_config)
        pt = args["policy_target"]
        for element in elements:
            if element.get("resource") != "loadbalancer":
                continue
            data = element.setdefault("resource_data", {})
            members = [m for m in data.get("members", []) if m.get("id") != pt["id"]]
            if op == "pt_add" and pt.get("ip_address"):
                members.append({"id": pt["id"], "address": pt["ip_address"],
                                "protocol_port": pt.get("port") or data.get("member_port")
                                or data.get("protocol_port")})
            data["members"] = members
        nf.service_config = common.dump_service_config(elements)
    elif op in ("consumer_add", "consumer_remove"):
        ptg = args["policy_target_group"]
        consumers = [c for c in spec.get("consumers", []) if c.get("id") != ptg["id"]]
        if op == "consumer_add":
            consumers.append(ptg)
        spec["consumers"] = consumers
    nf.spec = spec


def _apply_service_config(step, operation: str):
    nf = common.get_nf(step.session, step.scope)
    nfi = common.get_nfi(step.session, step.scope)
    nfd = common.get_device(step.session, nfi.network_function_device_id if nfi else None)
    if nf is None or nfd is None:
        return fail("network function or its device vanished")
    elements = common.parse_service_config(nf.service_config)
    target = common.target(nfd, nf.service_vendor)
    step.checkpoint()
    if not elements:
        return done()
    outcome = step.services.configurator.configure(operation, nf.service_type, elements, target,
                                                   nf.id, nf.tenant_id)
    if not outcome.ok:
        return fail(f"service configuration failed: {outcome.error}")
    return done({"resources": len(elements)})


# -- delete -----------------------------------------------------------------
@handler("nf.delete", on_failure=on_delete_step_failure, io=False)
def delete(step):
    """Wait for pre-empted steps still talking to the device, then tear down."""
    if step.others_running():
        return poll(0.1, 100000, {"waiting_for": "pre-empted steps to return"})
    nf = common.get_nf(step.session, step.scope)
    nfi = common.get_nfi(step.session, step.scope)
    if nf is None:
        return done()
    if nfi is None or not nfi.network_function_device_id:
        return done(emit=[EventSpec("nf.delete_done", nf.id)])
    return done(emit=[EventSpec("service.unconfigure", nf.id)])


@handler("service.unconfigure", on_failure=on_delete_step_failure)
def unconfigure_service(step):
    nf = common.get_nf(step.session, step.scope)
    nfi = common.get_nfi(step.session, step.scope)
    nfd = common.get_device(step.session, nfi.network_function_device_id if nfi else None)
    nxt = EventSpec("device.unconfigure", step.scope)
    if nf is None or nfd is None:
        return done(emit=[nxt])
    elements = common.parse_service_config(nf.service_config)
    target = common.target(nfd, nf.service_vendor)
    step.checkpoint()
    if elements:
        outcome = step.services.configurator.configure("delete", nf.service_type,
                                                       list(reversed(elements)), target,
                                                       nf.id, nf.tenant_id)
        if not outcome.ok:
            LOG.warning("NF %s: removing service config failed (%s); continuing the delete",
                        nf.id, outcome.error)
    return done(emit=[nxt])


def on_delete_done_failure(step, reason):
    """The rows could not be removed: say so instead of staying PENDING_DELETE."""
    nf = common.get_nf(step.session, step.scope)
    if nf is not None:
        common.set_nf_status(nf, NFStatus.ERROR, f"delete failed: {reason}")
        nf.operation = None
    return None


@handler("nf.delete_done", on_failure=on_delete_done_failure, io=False)
def delete_done(step):
    """Remove the NF, its instance and port records."""
    nf = common.get_nf(step.session, step.scope)
    if nf is None:
        return done()
    nfi = common.get_nfi(step.session, nf.id)
    if nfi is not None:
        port_ids = [p.id for p in nfi.port_info]
        nfi.port_info.clear()
        step.session.flush()
        step.session.delete(nfi)
        step.session.flush()
        if port_ids:
            step.session.execute(sql_delete(PortInfo).where(PortInfo.id.in_(port_ids)))
    payload = {"network_function_id": nf.id, "tenant_id": nf.tenant_id}
    step.session.delete(nf)
    LOG.info("NF %s deleted", payload["network_function_id"])
    return done(notify=[("nfp.network_function.delete.end", payload)])
