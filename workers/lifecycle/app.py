"""The orchestrator application: its flows bound to their handlers, and its services.

This is the one place that says which function does the work of which declared
step (:mod:`nfp.flows`). The daemon hands :data:`ORCHESTRATOR` to the engine.
"""
from __future__ import annotations

from nfp.engine import builtin
from nfp.engine.app import Application
from nfp.engine.flow import compile_flows
from nfp.engine.registry import Registry
from nfp.flows import FLOWS
from nfp.workers.lifecycle import device, heal, network_function as nf, reachability
from nfp.workers.health import process as health_process
from nfp.workers.lifecycle.services import build
from nfp.workers.reconcile import handler as reconcile

HANDLERS = {
    # create
    "nf.create": nf.create,
    "device.allocate": device.allocate,
    "device.reachable": reachability.create_wait,
    "device.wait_up": device.wait_up,
    "device.healthcheck": device.healthcheck,
    "device.plug": device.plug,
    "device.up": device.device_up,
    "device.configure": device.configure_device,
    "service.configure": nf.configure_service,
    "nf.configured": nf.configured,
    # delete
    "nf.delete": nf.delete,
    "nf.delete_wait": reachability.delete_wait,
    "service.unconfigure": nf.unconfigure_service,
    "device.unconfigure": device.unconfigure_device,
    "device.unplug": device.unplug,
    "device.release": device.release,
    "nf.delete_done": nf.delete_done,
    # operations
    "nf.op_wait": reachability.operation_wait,
    "nf.op": nf.operation,
    "service.apply": nf.apply_update,
    # reconcile (drift)
    "nf.reconcile": reconcile.reconcile,
    # heal (auto-heal of a device that stays DOWN)
    "device.heal": heal.heal,
    "device.heal_configure": heal.heal_configure,
}

FAILURES = {
    "fail_create": nf.fail_create,
    "fail_operation": nf.fail_operation,
    "fail_delete": nf.fail_delete,
    "fail_reconcile": reconcile.fail_reconcile,
    "fail_heal": heal.fail_heal,
}


def registry() -> Registry:
    """The lifecycle's step types plus the engine's own (``engine.noop``)."""
    return compile_flows(FLOWS, HANDLERS, FAILURES).merge(builtin.registry())


ORCHESTRATOR = Application("orchestrator", registry=registry, services=build,
                           companions=health_process.companions)
