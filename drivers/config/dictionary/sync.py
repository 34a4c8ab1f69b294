"""Converging a device to the rules of one config element, with every push tracked.

``create`` pushes what is not yet recorded (a recorded, unchanged rule is not
pushed again), ``update`` also removes recorded rules the element no longer
has, ``delete`` removes the element's rules by their recorded external ids.
A changed rule is updated in place when the dictionary has ``update``, else
deleted and created again.

Tracking is batched: the element's new rules are reserved (pending) in one
transaction before the first push, and the ids the device returns are recorded
every :data:`APPLIED_BATCH` rules (or :data:`APPLIED_EVERY` seconds) and when the
element is done or fails, in one transaction each. Each rule is still pending
before it is pushed and applied only after the device accepted it; a crash
leaves at most one batch pending, which the next attempt adopts by rule tag
(``_find``) rather than pushing again. Rows reserved for rules that were never
attempted (the element failed earlier) are removed again.
"""
from __future__ import annotations

import logging
import time
from typing import Optional

from nfp.db.rules import PushedRule, RuleState

from .errors import VendorError
from .items import Item
from .operations import Executor, NotOnDevice
from .tracking import RuleTracker

LOG = logging.getLogger(__name__)

#: record the device's ids after this many pushed rules ...
APPLIED_BATCH = 100
#: ... or after this many seconds, whichever comes first
APPLIED_EVERY = 1.0


class RuleSync:
    """Applies one config element's items to one device."""

    def __init__(self, executor: Executor, tracker: RuleTracker, *, nf_id: str, device_id: str,
                 vendor: str, resource: str, service: str):
        self.executor, self.tracker = executor, tracker
        self.nf_id, self.device_id, self.vendor = nf_id, device_id, vendor
        self.resource, self.service = resource, service
        self.changed = False
        self._rows = tracker.recorded(nf_id, device_id, service)
        self._listing: Optional[list[dict]] = None
        #: (row id, external id, body hash) accepted by the device, not yet recorded
        self._accepted: list[tuple[str, str, str]] = []
        self._flushed_at = time.monotonic()
        #: rows reserved in bulk whose rule has not been attempted yet
        self._unattempted: set[str] = set()

    # -- entry points -------------------------------------------------------------
    def create(self, items: list[Item]) -> dict[str, str]:
        self._reserve_new(items)
        try:
            return {item.name: self._ensure(item) for item in items}
        finally:
            self._finish()

    def update(self, items: list[Item]) -> dict[str, str]:
        wanted = {item.name for item in items}
        for name, row in list(self._rows.items()):
            if name not in wanted:
                self._remove(row)
        return self.create(items)

    def delete(self, items: list[Item]) -> dict[str, str]:
        names = {item.name for item in items} or set(self._rows)
        for name in names:
            row = self._rows.get(name)
            if row is not None:
                self._remove(row)
        return {}

    # -- tracking in bulk -------------------------------------------------------------
    def _reserve_new(self, items: list[Item]) -> None:
        """Reserve every rule that has no row yet, in one transaction."""
        new = [item for item in items if item.name not in self._rows]
        if len(new) < 2:
            return  # one rule: _ensure reserves it as it always did
        rows = self.tracker.reserve_many([
            dict(nf_id=self.nf_id, device_id=self.device_id, vendor=self.vendor, service=self.service,
                 resource=self.resource, name=item.name, rule_tag=item.rule_id, body_hash=item.body_hash)
            for item in new])
        if rows is None:
            return  # someone reserved some of them meanwhile: _ensure goes one by one
        for row in rows:
            self._rows[row.name] = row
            self._unattempted.add(row.id)

    def _applied(self, row: PushedRule, external_id: str, body_hash: str) -> None:
        """Record (soon) that the device accepted ``row`` as ``external_id``."""
        row.external_id, row.status, row.body_hash = external_id, RuleState.APPLIED, body_hash
        self._accepted.append((row.id, external_id, body_hash))
        if len(self._accepted) >= APPLIED_BATCH or time.monotonic() - self._flushed_at >= APPLIED_EVERY:
            self._flush()

    def _flush(self) -> None:
        accepted, self._accepted = self._accepted, []
        self._flushed_at = time.monotonic()
        self.tracker.applied_many(accepted)

    def _finish(self) -> None:
        """Record what was pushed; drop reservations of rules never attempted."""
        try:
            self._flush()
        finally:
            if self._unattempted:
                ids, self._unattempted = self._unattempted, set()
                for name, row in list(self._rows.items()):
                    if row.id in ids:
                        del self._rows[name]
                self.tracker.remove_many(ids)

    # -- one item ------------------------------------------------------------------
    def _ensure(self, item: Item) -> str:
        values = self.executor.values(item.values)
        row = self._rows.get(item.name)
        if row is not None and row.id in self._unattempted:
            self._unattempted.discard(row.id)
            return self._push(item, values, row)
        if row is not None and row.status == RuleState.PENDING:
            found = self._find(row.rule_tag)
            if found is not None:
                LOG.info("nf %s: %s rule %s was pushed before a crash; adopted device id %s",
                         self.nf_id, self.service, item.name, found)
                self.tracker.applied(row.id, found, "adopted")
                row.external_id, row.status, row.body_hash = found, RuleState.APPLIED, "adopted"
        if row is not None and row.status == RuleState.APPLIED and row.external_id:
            if row.body_hash == item.body_hash:
                return row.external_id
            if self.executor.has(self.service, "update"):
                return self._update(row, item, values)
            self._remove(row)
            row = None
        if row is None:
            row = self.tracker.reserve(nf_id=self.nf_id, device_id=self.device_id, vendor=self.vendor,
                                       service=self.service, resource=self.resource, name=item.name,
                                       rule_tag=item.rule_id, body_hash=item.body_hash)
            self._rows[item.name] = row
        return self._push(item, values, row)

    def _push(self, item: Item, values: dict, row: PushedRule) -> str:
        """Create the rule of a reserved (pending) row on the device."""
        op = self.executor.dictionary.services[self.service].create
        if op.allocate_id is not None:
            values["externalId"] = self._allocate(row, op.allocate_id.min, op.allocate_id.max)
        result = self.executor.run(self.service, "create", values)
        external_id = result.external_id or values.get("externalId")
        if external_id is None and result.tolerated:
            external_id = self._find(item.rule_id)
        if external_id is None:
            raise VendorError(f"{self.service} create of {item.name}: the device returned no id")
        self._applied(row, external_id, item.body_hash)
        self.changed = True
        LOG.info("nf %s: pushed %s rule %s to device %s as %s",
                 self.nf_id, self.service, item.name, self.device_id, external_id)
        return external_id

    def _update(self, row: PushedRule, item: Item, values: dict) -> str:
        values = dict(values, externalId=row.external_id)
        try:
            result = self.executor.run(self.service, "update", values)
        except NotOnDevice:
            LOG.warning("nf %s: %s rule %s (%s) is gone from device %s; creating it again",
                        self.nf_id, self.service, item.name, row.external_id, self.device_id)
            self.tracker.remove(row.id)
            del self._rows[item.name]
            return self._ensure(item)
        external_id = result.external_id or row.external_id
        self._applied(row, external_id, item.body_hash)  # a lost record only means updating again
        self.changed = True
        LOG.info("nf %s: updated %s rule %s on device %s", self.nf_id, self.service, item.name, self.device_id)
        return external_id

    def _remove(self, row: PushedRule) -> None:
        external_id = row.external_id or self._find(row.rule_tag)
        if external_id is not None:
            values = self.executor.values({"externalId": external_id, "ruleId": row.rule_tag,
                                           "name": row.name, "nfId": row.nf_id})
            try:
                self.executor.run(self.service, "delete", values)
                self.changed = True
            except NotOnDevice:
                LOG.info("nf %s: %s rule %s (%s) was already gone from device %s",
                         self.nf_id, self.service, row.name, external_id, self.device_id)
        self.tracker.remove(row.id)
        self._rows.pop(row.name, None)
        LOG.info("nf %s: deleted %s rule %s from device %s", self.nf_id, self.service, row.name, self.device_id)

    # -- device lookups ----------------------------------------------------------------
    def _listed(self) -> list[dict]:
        if self._listing is None:
            self._listing = self.executor.list(self.service) if self.executor.has(self.service, "list") else []
        return self._listing

    def _find(self, rule_tag: str) -> Optional[str]:
        """The id of the device object tagged ``rule_tag`` (by the list's keyPath)."""
        for item in self._listed():
            key = item.get("key")
            if isinstance(key, str) and (key == rule_tag or key.startswith(rule_tag + " ")):
                return item["id"]
        return None

    def _allocate(self, row: PushedRule, low: int, high: int) -> str:
        if row.external_id:
            return row.external_id
        self._listing = None
        taken = {str(i["id"]) for i in self._listed()}
        taken |= {r.external_id for r in self.tracker.on_device(self.device_id, self.service) if r.external_id}
        candidates = (str(n) for n in range(low, high + 1) if str(n) not in taken)
        claimed = self.tracker.claim_external_id(row.id, candidates)
        if claimed is None:
            raise VendorError(f"{self.service}: no free id left in {low}-{high} on device {self.device_id}")
        row.external_id = claimed
        return claimed
