"""What the orchestrator's endpoints do around every request, apart from its work:
seal the secrets a payload carries, find whose a port or device is, and audit.

Kept beside :mod:`nfp.api.endpoints` so the endpoints stay about network
functions. Audit rows of mutations join the batch's transaction, so a request
is recorded exactly when its intent is; refusals of reads, which write nothing
else, get a transaction of their own (:func:`nfp.audit.record_now`).
"""
from __future__ import annotations

import logging
import uuid
from typing import Any, Callable, Optional

from sqlalchemy import select

from nfp import audit, payload_secrets
from nfp.api.tenancy import Caller, Forbidden
from nfp.db.models import NetworkFunction, NetworkFunctionDevice, NetworkFunctionInstance, \
    nfi_dataport_associations
from nfp.rpc.errors import safe
from nfp.rpc.types import IncomingRequest, Reply

LOG = logging.getLogger(__name__)

# -- secrets ----------------------------------------------------------------------

def seal_create(raw: Any, who: Caller) -> tuple[Any, dict[str, str]]:
    """A create's ``network_function`` with its secrets replaced by references, and
    the secrets by name. An NF without an id gets its id here, so its secrets'
    names (``nf/<id>/…``) say whose they are."""
    if not isinstance(raw, dict):
        return raw, {}
    nf_id = raw.get("id")
    if nf_id is None:
        raw = {**raw, "id": str(uuid.uuid4())}
        nf_id = raw["id"]
    nf_id = nf_id if isinstance(nf_id, str) and 0 < len(nf_id) <= 36 else "-"
    sealer = payload_secrets.Sealer(f"nf/{nf_id}")
    sealed = sealer.seal_all(raw)
    check_references("create_network_function", nf_id, who, sealer)
    return sealed, sealer.found


def seal_operation(method: str, args: dict, nf: NetworkFunction, who: Caller) -> tuple[dict, dict[str, str]]:
    """An operation's arguments sealed; a hidden parameter of the NF's stored Heat
    template is secret in ``chain_parameters`` too."""
    sealer = payload_secrets.Sealer(f"nf/{nf.id}", payload_secrets.hidden_parameters(
        {"service_config": nf.service_config}))
    sealed = sealer.seal_all(args)
    check_references(method, nf.id, who, sealer)
    return sealed, sealer.found


def check_references(method: str, nf_id: str, who: Caller, sealer: payload_secrets.Sealer) -> None:
    """A tenant may refer only to secrets sealed from its own NF's payloads: naming
    another secret (a device's credentials) would let it have that secret configured
    on a peer it controls. Admin callers name the secrets operators provisioned."""
    own = f"nf/{nf_id}/"
    if not who.is_admin and any(not name.startswith(own) or "/" in name[len(own):]
                                for name in sealer.references):
        raise Forbidden(f"{method}: tenant {safe(who.tenant or '(none)')} may refer only to "
                        f"secrets of network function {safe(nf_id)}")


def store_secrets(session, store_of: Callable[[], Any], found: dict[str, str]) -> None:
    """Write sealed secrets in ``session`` (the request's own transaction)."""
    if not found:
        return
    store = store_of()
    for name, value in found.items():
        store.put_in(session, name, value)


# -- ownership ---------------------------------------------------------------------

def nf_tenants_of_device(session, device_id: str) -> set[str]:
    """Tenants of the NFs a device serves (a shared device serves several)."""
    return set(session.scalars(
        select(NetworkFunction.tenant_id).join(
            NetworkFunctionInstance, NetworkFunctionInstance.network_function_id == NetworkFunction.id)
        .where(NetworkFunctionInstance.network_function_device_id == device_id)))


def nf_tenants_of_port(session, port_id: str) -> set[str]:
    """Tenants of the NFs whose instance holds the port as a data port, or whose
    device has it as its management or monitoring port."""
    data = select(NetworkFunction.tenant_id).join(
        NetworkFunctionInstance, NetworkFunctionInstance.network_function_id == NetworkFunction.id).join(
        nfi_dataport_associations,
        nfi_dataport_associations.c.network_function_instance_id == NetworkFunctionInstance.id).where(
        nfi_dataport_associations.c.data_port_id == port_id)
    tenants = set(session.scalars(data))
    for device_id in session.scalars(select(NetworkFunctionDevice.id).where(
            (NetworkFunctionDevice.mgmt_port_id == port_id)
            | (NetworkFunctionDevice.monitoring_port_id == port_id))):
        tenants |= nf_tenants_of_device(session, device_id)
    return tenants


# -- audit -------------------------------------------------------------------------

def _who(who: Caller) -> dict:
    """The caller's columns, escaped: a NUL or a newline in a context must neither
    fail the batch's insert nor forge a line of the CLI's listing."""
    return {"user_id": safe(who.user, 255), "tenant_id": safe(who.tenant, 255),
            "source": safe(who.source or "rpc", 128)}


def audit_entry(req: IncomingRequest, who: Caller, outcome: Reply, nf_id: Optional[str]) -> dict:
    """The ``audit_log`` row of a mutating request (:func:`nfp.audit.record_many`
    writes a batch's rows in its transaction)."""
    error = outcome.error
    if isinstance(error, Forbidden):
        event, result = audit.ACCESS_DENIED, "forbidden"
    else:
        event, result = audit.ORCHESTRATOR_REQUEST, "accepted" if error is None else "rejected"
    detail = "" if error is None else f"{type(error).__name__}: {error}"
    if who.request_id:
        detail = f"request {who.request_id}" + (f"; {detail}" if detail else "")
    return audit.entry(event, method=safe(req.method, 96), nf_id=_nf_id(req, outcome, nf_id),
                       result=result, detail=safe(detail, 1024), **_who(who))


def audit_read_denied(sessionmaker, method: str, nf_id: str, who: Caller, what: str) -> None:
    """A read of another tenant's object: answered as not found, logged and audited."""
    LOG.warning("%s: %s of another tenant answered as not found (caller %s)",
                safe(method), safe(what), who.label)
    audit.record_now(sessionmaker, audit.ACCESS_DENIED, method=safe(method, 96), nf_id=safe(nf_id, 64),
                     result="not_found", detail=safe(what, 1024), **_who(who))


def _nf_id(req: IncomingRequest, outcome: Reply, nf_id: Optional[str]) -> str:
    if nf_id:
        return safe(nf_id, 64)
    result = outcome.result
    if isinstance(result, dict):
        found = result.get("id") or result.get("network_function_id")
        if isinstance(found, str):
            return safe(found, 64)
    args = req.args if isinstance(req.args, dict) else {}
    given = args.get("network_function_id")
    if not isinstance(given, str) and isinstance(args.get("network_function"), dict):
        given = args["network_function"].get("id")
    return safe(given, 64) if isinstance(given, str) else ""
