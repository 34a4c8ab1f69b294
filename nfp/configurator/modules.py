"""Configurator modules: which module takes each ``config[]`` element, and how an
element's result becomes a seed-001 notification element.

Upstream's configurator had one module per service (generic, firewall,
loadbalancer, vpn, nfp_service); here a module is a row of :data:`MODULES`. A
module either hands its elements to the config driver chosen by
``(service_type, service_vendor)`` (through the same
:class:`~nfp.workers.configurator.client.DirectConfiguratorClient` the
orchestrator uses) or, with no driver support for its resources, reports them
``unhandled``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

from nfp.drivers.config.base import ConfigStatus, DeviceTarget
from nfp.resources import ResourceError, parse_resource
from nfp.secrets import redact

LOG = logging.getLogger(__name__)

SUCCESS, FAILURE, UNHANDLED = "success", "failure", "unhandled"


@dataclass(frozen=True)
class Module:
    """A configurator module: its resources, and whether config drivers apply them."""

    name: str
    resources: frozenset
    via_driver: bool = True
    #: why its resources are unhandled when ``via_driver`` is false
    note: str = ""


MODULES = (
    Module("generic", frozenset({"healthmonitor", "interfaces", "routes"})),
    Module("firewall", frozenset({"firewall", "port_forwarding", "static_nat", "source_nat"})),
    Module("loadbalancer", frozenset({"loadbalancer"})),
    Module("vpn", frozenset({"vpn"})),
    # Heat templates go to the driver, which reports them unhandled unless it runs Heat
    Module("nfp_service", frozenset({"heat"})),
    Module("ansible", frozenset({"ansible"}), via_driver=False,
           note="no ansible config driver is installed"),
)
#: resource -> module
RESOURCE_MODULE = {resource: module for module in MODULES for resource in module.resources}


def element_result(resource: str, status: str, error: str = "") -> dict:
    """One notification element, seed 001's ``{"resource", "data": {status_code, error_msg}}``."""
    return {"resource": resource, "data": {"status_code": status, "error_msg": redact(error or "")[:2000]}}


def apply_all(client, operation: str, service_type: str, config: list[dict], device: DeviceTarget,
              nf_id: Optional[str], tenant_id: Optional[str], resumed: bool = False) -> list[dict]:
    """Apply every element in order; one notification element each. A create or update
    stops at the first failure (later elements are reported not applied); a delete goes
    on, so as much as possible is removed. ``resumed``: the request's step was
    interrupted (its process died) and runs again; see :func:`already_applied`."""
    results: list[dict] = []
    failed_at: Optional[int] = None
    for index, element in enumerate(config):
        resource = element["resource"]
        if failed_at is not None and operation != "delete":
            results.append(element_result(resource, FAILURE,
                                          f"not applied: config[{failed_at}] failed first"))
            continue
        if resumed and operation != "delete" and already_applied(client, service_type, element,
                                                                 device, nf_id):
            LOG.info("NF %s: %s was applied before the configurator restarted; not sent again",
                     nf_id or "-", resource)
            results.append(element_result(resource, SUCCESS))
            continue
        result = apply_one(client, operation, service_type, index, element, device, nf_id, tenant_id)
        if result["data"]["status_code"] == FAILURE and failed_at is None:
            failed_at = index
        results.append(result)
    return results


def already_applied(client, service_type: str, element: dict, device: DeviceTarget,
                    nf_id: Optional[str]) -> bool:
    """True when the device already holds ``element`` exactly (the driver compared it
    and nothing differs). A step killed between its device call and its commit runs
    again; this keeps that from pushing the same configuration a second time."""
    try:
        [found] = client.diff(service_type, [element], device, nf_id)
    except Exception:  # noqa: BLE001 - cannot compare (no support, bad element, no device): apply
        return False
    return found.compared and found.empty


def apply_one(client, operation, service_type, index, element, device, nf_id, tenant_id) -> dict:
    """One element through its module; the field at fault is named in ``error_msg``."""
    resource = element["resource"]
    module = RESOURCE_MODULE.get(resource)
    if module is None:  # refused at intake; a body stored by an older version
        return element_result(resource, FAILURE, f"config[{index}].resource: no module for {resource!r}")
    if not module.via_driver:
        return element_result(resource, UNHANDLED, module.note)
    try:
        parse_resource(resource, element.get("resource_data"), prefix=f"config[{index}].resource_data")
    except ResourceError as exc:
        return element_result(resource, FAILURE, str(exc))
    outcome = client.configure(operation, service_type, [element], device, nf_id, tenant_id)
    if not outcome.ok:
        error = outcome.error or "failed"
        if "no config driver" in error:
            error = f"info.service_vendor: {error}"
        return element_result(resource, FAILURE, error)
    if outcome.results and outcome.results[0].status == ConfigStatus.UNHANDLED:
        return element_result(resource, UNHANDLED, outcome.results[0].error
                              or f"the {device.service_vendor} driver does not handle {resource}")
    return element_result(resource, SUCCESS)
