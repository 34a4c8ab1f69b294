"""The ``nf.reconcile`` step: compare an NF's intent with its device, act per policy, record it.

It runs as a declared flow step under the NF's key (:data:`nfp.flows.RECONCILE`),
so the engine runs it strictly before or after the NF's lifecycle steps, never
during one; while an operation holds the NF (or the NF is still being created) it
waits and polls. Every run that gets to compare is written to
``reconciliation_log`` in the step's own transaction: names, reasons, counts and
results, never a rule body. A run that cannot finish (the device does not
answer) is recorded as ``failed`` by :func:`fail_reconcile`; the NF keeps its
status either way: drift is reported, it does not make an NF ERROR.
"""
from __future__ import annotations

import logging
from typing import Optional

from sqlalchemy import delete

from nfp.db.base import utcnow
from nfp.db.models import ReconciliationLog
from nfp.db.repositories import devices, instances, network_functions
from nfp.desired import desired_config
from nfp.drivers.config.base import ConfigError
from nfp.engine.events import Outcome, again, done
from nfp.flows import IN_PROGRESS, NFStatus
from nfp.secrets import redact
from nfp.workers.lifecycle.driver_data import target
from nfp.workers.reconcile import policy as policies

LOG = logging.getLogger(__name__)


def resolve_policy(conf, nf, asked: Optional[str]) -> str:
    """The caller's policy, else the NF's ``spec.reconcile.policy``, else the vendor's
    (``reconcile.vendor_policies``), else ``reconcile.policy``."""
    own = ((nf.spec or {}).get("reconcile") or {}).get("policy")
    return asked or own or conf.reconcile.vendor_policies.get(nf.service_vendor or "") or conf.reconcile.policy


def reconcile(step) -> Outcome:
    """Compare, repair per policy, verify with a second compare, record the run."""
    payload = step.payload
    nf = network_functions.get(step.session, step.scope)
    if nf is None:
        LOG.info("NF %s is gone; its reconcile run %s has nothing to do", step.scope, payload.get("run_id"))
        return done({"result": "skipped"})
    if nf.operation is not None or nf.status in IN_PROGRESS or step.others_running():
        return again({"waiting_for": nf.operation or nf.status})
    nfi = instances.of(step.session, nf.id)
    nfd = devices.get(step.session, nfi.network_function_device_id if nfi else None)
    chosen = resolve_policy(step.services.conf, nf, payload.get("policy"))
    dry_run = bool(payload.get("dry_run")) or chosen == "report"
    row = ReconciliationLog(run_id=payload.get("run_id"), network_function_id=nf.id,
                            device_id=nfd.id if nfd else None, trigger=payload.get("trigger", "on_demand"),
                            policy=chosen, dry_run=dry_run, started_at=utcnow(), details={}, error="")
    if nf.status != NFStatus.ACTIVE or nfd is None:
        why = f"NF is {nf.status}" if nf.status != NFStatus.ACTIVE else "NF has no device"
        return _record(step, row, None, "skipped", why)
    elements = desired_config(nf.service_config, nf.spec)
    where = target(nfd, nf.service_vendor)
    service_type, tenant_id, intent = nf.service_type, nf.tenant_id, nf.service_config
    step.checkpoint()  # no transaction held while the device is read and repaired
    configurator = step.services.configurator
    try:
        before = [d.to_dict() for d in configurator.diff(service_type, elements, where, nf.id)]
    except (ConfigError, LookupError) as exc:
        return _record(step, row, None, "failed", f"compare failed: {exc}")
    found = policies.plan(before, chosen, dry_run)
    errors: dict[str, str] = {}
    after, adopted = None, None
    if chosen == "adopt" and not dry_run and found.drift:
        adopted, elements = _adopt(step, nf.id, row.device_id, before, intent)
        try:
            after = [d.to_dict() for d in configurator.diff(service_type, elements, where, nf.id)]
        except (ConfigError, LookupError) as exc:
            errors.setdefault("*", f"compare after the adoption failed: {exc}")
    if found.apply:
        for index, operation in found.apply:
            element = elements[index]
            outcome = configurator.configure(operation, service_type, [element], where, nf.id, tenant_id,
                                             repair=True)
            if not outcome.ok:
                errors[element.get("resource")] = redact(outcome.error or "failed")
        try:
            after = [d.to_dict() for d in configurator.diff(service_type, elements, where, nf.id)]
        except (ConfigError, LookupError) as exc:
            errors.setdefault("*", f"compare after the repair failed: {exc}")
    result = policies.settle(found, after, errors, adopted)
    return _record(step, row, found, result, "; ".join(f"{k}: {v}" for k, v in errors.items()))


def _adopt(step, nf_id: str, device_id: str, before: list[dict], intent) -> tuple[dict, list[dict]]:
    """Policy ``adopt``: write the device's values into the NF's intent, and forget the
    ``rules`` records of items that left it, in one transaction; return each item's
    result and the new desired config (for the compare that verifies it). An intent
    that a caller changed while the device was read is left alone: its update runs next."""
    from nfp.db.rules import PushedRule
    from nfp.workers.reconcile.adopt import Adoption, adopt
    nf = network_functions.get(step.session, nf_id)
    if nf.service_config != intent:
        names = [(d["resource"], c["name"]) for d in before for k in ("to_add", "to_change", "to_remove")
                 for c in d.get(k, [])]
        adoption = Adoption(results={n: "not adopted: the intent changed during the run" for n in names})
    else:
        adoption = adopt(nf.service_config, before)
    if adoption.service_config is not None:
        nf.service_config = adoption.service_config
    for _resource, name in adoption.gone:
        step.session.execute(delete(PushedRule).where(
            PushedRule.nf_id == nf_id, PushedRule.device_id == device_id, PushedRule.name == name))
    elements = desired_config(nf.service_config, nf.spec)
    step.checkpoint()  # the intent is committed before the device is read again
    adopted = sum(r.startswith("adopted") for r in adoption.results.values())
    LOG.warning("NF %s device %s: policy adopt took %d of %d drifted item(s) from the device into the "
                "intent", nf_id, device_id, adopted, len(adoption.results))
    return adoption.results, elements


def _record(step, row: ReconciliationLog, found, result: str, error: str) -> Outcome:
    if found is not None:
        _clear_degraded(step, row)
    row.finished_at = utcnow()
    row.result, row.error = result, redact(error or "")[:2048]
    if found is not None:
        row.missing, row.extra, row.changed = len(found.missing), len(found.extra), len(found.changed)
        row.details = found.to_dict()
    step.session.add(row)
    counts = {"missing": row.missing or 0, "extra": row.extra or 0, "changed": row.changed or 0}
    level = logging.WARNING if result in ("drift", "partial", "failed") else logging.INFO
    LOG.log(level, "NF %s device %s: reconcile run %s (%s, policy %s%s): %s; missing %d, extra %d, "
            "changed %d%s; recorded in reconciliation_log", row.network_function_id, row.device_id,
            row.run_id, row.trigger, row.policy, ", dry run" if row.dry_run else "", result,
            counts["missing"], counts["extra"], counts["changed"], f"; {row.error}" if row.error else "")
    notify = []
    if found is not None and found.drift:
        notify.append(("nfp.network_function.reconcile.end",
                       {"network_function_id": row.network_function_id, "device_id": row.device_id,
                        "run_id": row.run_id, "result": result, **counts}))
    return done({"run_id": row.run_id, "result": result, **counts}, notify=notify)


def _clear_degraded(step, row: ReconciliationLog) -> None:
    """The device answered a compare: the management link is back and the device was
    brought to the intent (or its drift reported), so operations that waited may run."""
    nf = network_functions.get(step.session, row.network_function_id)
    if nf is not None and nf.degraded:
        nf.degraded, nf.degraded_reason = False, ""
        LOG.info("NF %s is no longer degraded: device %s answered reconcile run %s; operations that "
                 "waited during the outage run next, in order", nf.id, row.device_id, row.run_id)


def fail_reconcile(step, reason: str) -> Optional[Outcome]:
    """The run could not finish (deadline, crash, a device error): record it as failed."""
    payload = step.payload
    nf = network_functions.get(step.session, step.scope)
    now = utcnow()
    step.session.add(ReconciliationLog(
        run_id=payload.get("run_id"), network_function_id=step.scope,
        device_id=None, trigger=payload.get("trigger", "on_demand"),
        policy=payload.get("policy") or (resolve_policy(step.services.conf, nf, None) if nf else "repair"),
        dry_run=bool(payload.get("dry_run")), started_at=now, finished_at=now, details={},
        result="failed", error=redact(reason)[:2048]))
    LOG.error("NF %s: reconcile run %s failed (%s); recorded in reconciliation_log; the NF keeps its "
              "status and the next scheduled run tries again", step.scope, payload.get("run_id"), reason)
    return done()
