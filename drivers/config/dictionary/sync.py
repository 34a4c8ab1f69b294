"""Converging a device to the rules of one config element, with every push tracked.

``create`` pushes what is not yet recorded (a recorded, unchanged rule is not
pushed again), ``update`` also removes recorded rules the element no longer
has, ``delete`` removes the element's rules by their recorded external ids.
A changed rule is updated in place when the dictionary has ``update``, else
deleted and created again.
"""
from __future__ import annotations

import logging
from typing import Optional

from nfp.db.rules import PushedRule, RuleState

from .errors import VendorError
from .items import Item
from .operations import Executor, NotOnDevice
from .tracking import RuleTracker

LOG = logging.getLogger(__name__)


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

    # -- entry points -------------------------------------------------------------
    def create(self, items: list[Item]) -> dict[str, str]:
        return {item.name: self._ensure(item) for item in items}

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

    # -- one item ------------------------------------------------------------------
    def _ensure(self, item: Item) -> str:
        values = self.executor.values(item.values)
        row = self._rows.get(item.name)
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
        op = self.executor.dictionary.services[self.service].create
        if op.allocate_id is not None:
            values["externalId"] = self._allocate(row, op.allocate_id.min, op.allocate_id.max)
        result = self.executor.run(self.service, "create", values)
        external_id = result.external_id or values.get("externalId")
        if external_id is None and result.tolerated:
            external_id = self._find(item.rule_id)
        if external_id is None:
            raise VendorError(f"{self.service} create of {item.name}: the device returned no id")
        self.tracker.applied(row.id, external_id, item.body_hash)
        row.external_id, row.status, row.body_hash = external_id, RuleState.APPLIED, item.body_hash
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
        self.tracker.applied(row.id, external_id, item.body_hash)
        row.external_id, row.body_hash = external_id, item.body_hash
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
