"""What a reconcile run does with a diff, per policy. Pure: no I/O.

The diffs come from :meth:`ConfiguratorClient.diff` (the replace-mode compare of
every element), so ``to_add`` is *missing*, ``to_change`` is *changed* and
``to_remove`` is *extra*. Policies:

- ``repair`` (default): re-apply the elements with missing or changed items in
  merge mode (add and change, leave the rest); extra items are flagged.
- ``repair-and-prune``: re-apply those elements in replace mode, which also
  deletes the extra items.
- ``report``: change nothing (``--dry-run`` is ``report`` for one run).
- ``adopt``: accept the device's values into the intent (:mod:`.adopt`); the
  device is not changed.

Only names, reasons and external ids leave this module: never a rule body,
which is what keeps the audit table free of anything secret.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

POLICIES = ("repair", "repair-and-prune", "report", "adopt")


@dataclass
class Plan:
    """A run's findings and what it will do.

    ``apply`` is ``[(element index, operation)]``: elements to re-apply, with
    ``create`` (merge) or ``update`` (replace, prunes extras).
    """

    missing: list[dict] = field(default_factory=list)
    extra: list[dict] = field(default_factory=list)
    changed: list[dict] = field(default_factory=list)
    actions: list[dict] = field(default_factory=list)
    apply: list[tuple[int, str]] = field(default_factory=list)
    not_compared: list[dict] = field(default_factory=list)

    @property
    def drift(self) -> bool:
        return bool(self.missing or self.extra or self.changed)

    def to_dict(self) -> dict:
        out = {"missing": self.missing, "extra": self.extra, "changed": self.changed,
               "actions": self.actions}
        if self.not_compared:
            out["not_compared"] = self.not_compared
        return out


def _item(resource: str, change: dict) -> dict:
    return {"resource": resource, "name": change["name"], "reason": change.get("reason", ""),
            "external_id": change.get("external_id")}


def plan(diffs: list[dict], policy: str, dry_run: bool = False) -> Plan:
    """The :class:`Plan` for ``diffs`` (each ``Diff.to_dict()``, one per element, in
    element order) under ``policy``; ``dry_run`` changes nothing whatever the policy."""
    if policy not in POLICIES:
        raise ValueError(f"policy: {policy!r} must be one of {', '.join(POLICIES)}")
    out = Plan()
    acting = not dry_run and policy in ("repair", "repair-and-prune")
    adopting = not dry_run and policy == "adopt"
    for index, diff in enumerate(diffs):
        resource = diff["resource"]
        if diff.get("compared") is False:
            out.not_compared.append({"resource": resource, "note": diff.get("note", "")})
            continue
        missing = [_item(resource, c) for c in diff.get("to_add", [])]
        changed = [_item(resource, c) for c in diff.get("to_change", [])]
        extra = [_item(resource, c) for c in diff.get("to_remove", [])]
        out.missing += missing
        out.changed += changed
        out.extra += extra
        prune = policy == "repair-and-prune"
        if acting and (missing or changed or (prune and extra)):
            out.apply.append((index, "update" if prune else "create"))
        for kind, items in (("missing", missing), ("changed", changed), ("extra", extra)):
            for item in items:
                out.actions.append({"resource": resource, "name": item["name"], "found": kind,
                                    "action": "adopt" if adopting else _action(kind, policy, acting),
                                    "result": "pending"})
    return out


def _action(kind: str, policy: str, acting: bool) -> str:
    if not acting:
        return "report"
    if kind == "extra":
        return "delete" if policy == "repair-and-prune" else "flag"
    return "re-apply"


def settle(out: Plan, after: Optional[list[dict]], errors: dict[str, str],
           adopted: Optional[dict[tuple[str, str], str]] = None) -> str:
    """Fill each action's result from a compare made after the repair (``after``,
    None when none was made), the per-resource errors and, under ``adopt``, each
    item's adoption result; return the run's result: ``in_sync``, ``drift``
    (reported only), ``repaired``, ``adopted`` or ``partial``."""
    if not out.drift:
        return "in_sync"
    still: set[tuple[str, str]] = set()
    for diff in after or []:
        for kind in ("to_add", "to_change", "to_remove"):
            still |= {(diff["resource"], c["name"]) for c in diff.get(kind, [])}
    for action in out.actions:
        key = (action["resource"], action["name"])
        if action["action"] == "report":
            action["result"] = "reported"
        elif action["resource"] in errors:
            action["result"] = f"failed: {errors[action['resource']]}"[:300]
        elif action["action"] == "adopt":
            result = (adopted or {}).get(key, "not adopted")
            action["result"] = "failed: still differs after the adoption" \
                if result.startswith("adopted") and after is not None and key in still else result[:300]
        elif action["action"] == "flag":
            # a driver that replaces an owner's set atomically (one nftables table) removes
            # an extra item while it repairs the others: say what really happened
            action["result"] = "flagged" if after is None or key in still else "removed by the re-apply"
        else:
            action["result"] = "failed: still differs after the repair" if after is not None and key in still \
                else "done"
    acted = [a for a in out.actions if a["action"] in ("re-apply", "delete", "adopt")]
    if not acted:
        return "drift"
    if all(a["result"] == "done" for a in acted):
        return "repaired"
    return "adopted" if all(a["result"].startswith("adopted") for a in acted) else "partial"
