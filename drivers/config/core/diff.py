"""The structured diff between a desired config element and a device.

A :class:`Diff` says, for one config element (``resource``), which named items
are missing on the device (``to_add``), present but different (``to_change``)
and present but no longer wanted (``to_remove``). Items are rules, routes,
load-balancer members, or a driver's own scaffolding (``default_action``).
Diffs are plain data: :meth:`Diff.to_dict` is JSON-serialisable, and nothing in
a diff may be a secret (bodies come from ``resource_data`` and device
listings, never from credentials).

Pure functions only: no I/O here.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional


def body_hash(body: dict) -> str:
    """sha256 of a body's canonical JSON: equal bodies, equal hashes."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def plain(value: Any) -> Any:
    """``value`` as JSON types (tuples to lists, odd scalars to strings)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return str(value)


@dataclass(frozen=True)
class Change:
    """One item of a diff.

    Parameters:
        name(str): the item's name inside its resource (a rule name, a route...).
        reason(str): why it is in the diff, for people (``missing on device``).
        desired(dict): what nfp wants (None for removals).
        actual(dict): what the device has (None when it has nothing).
        external_id(str): the device's id, when one is known (tracked or listed).
    """

    name: str
    reason: str = ""
    desired: Optional[dict] = None
    actual: Optional[dict] = None
    external_id: Optional[str] = None

    def to_dict(self) -> dict:
        return {"name": self.name, "reason": self.reason, "desired": plain(self.desired),
                "actual": plain(self.actual), "external_id": self.external_id}


@dataclass
class Diff:
    """Desired versus device for one config element (see module docstring).

    ``compared`` is False when the driver cannot compare this resource (it is
    opaque, or the driver has no read-back for it); the lists are then empty
    and say nothing about the device.
    """

    resource: str
    to_add: list[Change] = field(default_factory=list)
    to_change: list[Change] = field(default_factory=list)
    to_remove: list[Change] = field(default_factory=list)
    compared: bool = True
    note: str = ""

    @property
    def empty(self) -> bool:
        """True when the device already matches (nothing to add, change or remove)."""
        return not (self.to_add or self.to_change or self.to_remove)

    def names(self) -> set[str]:
        """Every item name in the diff."""
        return {c.name for c in self.to_add + self.to_change + self.to_remove}

    def find(self, name: str) -> Optional[Change]:
        """The change for ``name``, in whichever list holds it."""
        for change in self.to_add + self.to_change + self.to_remove:
            if change.name == name:
                return change
        return None

    def to_dict(self) -> dict:
        out = {"resource": self.resource,
               "to_add": [c.to_dict() for c in self.to_add],
               "to_change": [c.to_dict() for c in self.to_change],
               "to_remove": [c.to_dict() for c in self.to_remove]}
        if not self.compared:
            out["compared"] = False
        if self.note:
            out["note"] = self.note
        return out


def compare_items(resource: str, desired: dict[str, dict], actual: dict[str, dict], *,
                  remove_extra: bool = True, ids: Optional[dict[str, str]] = None,
                  order: Optional[Iterable[str]] = None) -> Diff:
    """Compare named bodies: the core of every driver's ``compare``.

    Parameters:
        desired: name -> body nfp wants, in the order it wants them.
        actual: name -> body the device reads back as, in device order.
        remove_extra: report device items nfp does not want as ``to_remove``
            (False for a merge, which leaves them alone).
        ids: name -> external id, attached to each change.
        order: the device's item order, when order matters (firewall rules):
            a wanted item at another position than wanted is a change.
    """
    ids = ids or {}
    diff = Diff(resource)
    for name, body in desired.items():
        have = actual.get(name)
        if have is None:
            diff.to_add.append(Change(name, "missing on device", body, None, ids.get(name)))
        elif have != body:
            diff.to_change.append(Change(name, "differs on device", body, have, ids.get(name)))
    if order is not None:
        order = list(order)
        listed = set(order)
        wanted = [n for n in desired if n in actual and n in listed]
        placed = [n for n in order if n in desired]
        changed = {c.name for c in diff.to_change}
        for index, name in enumerate(wanted):
            if placed[index] != name and name not in changed:
                diff.to_change.append(Change(name, f"at position {placed.index(name)}, wanted at {index}",
                                             desired[name], actual[name], ids.get(name)))
    if remove_extra:
        for name, have in actual.items():
            if name not in desired:
                diff.to_remove.append(Change(name, "not wanted", None, have, ids.get(name)))
    return diff
