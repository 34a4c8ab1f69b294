"""The dictionary driver's device session, and converging a device to the rules of one
config element with every push tracked.

:class:`DictionarySession` is the driver's :class:`~nfp.drivers.config.core.DeviceSession`:
the candidate is the element's items; ``plan`` reads the ``rules`` records only
(an unchanged element costs no request); ``compare`` adds the device's listing
(a rule recorded but gone from the device is ``to_add``); ``commit`` is
:class:`RuleSync` plus the dictionary's ``commit`` operation; ``verify`` lists
the device again and requires every pushed rule there and every removed one gone.

:class:`RuleSync` does the pushing:

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

Objects the device lists that nfp tracks for no NF (an operator's hand edit)
are reported by ``compare`` of a replace (``update``) candidate as ``to_remove``
with the reason :data:`UNTRACKED`, so the drift reconciler flags them, and a
replace commit planned from that compare (``repair-and-prune``) deletes them
by their device id.
"""
from __future__ import annotations

import logging
import time
from typing import Optional

from nfp.db.rules import PushedRule, RuleState
from nfp.drivers.config.core import (Candidate, Change, DeviceSession, Diff, Mode, RuleTracker,
                                     VerifyError)

from .errors import VendorError
from .items import Item
from .operations import NotOnDevice, OperationRunner

LOG = logging.getLogger(__name__)

#: record the device's ids after this many pushed rules ...
APPLIED_BATCH = 100
#: ... or after this many seconds, whichever comes first
APPLIED_EVERY = 1.0
#: the reason of a ``to_remove`` change for a device object no NF has a record of
UNTRACKED = "on device, not tracked by nfp"


class RuleSync:
    """Applies one config element's items to one device."""

    def __init__(self, runner: OperationRunner, tracker: RuleTracker, *, nf_id: str, device_id: str,
                 vendor: str, resource: str, service: str, rows: Optional[dict] = None):
        self.runner, self.tracker = runner, tracker
        self.nf_id, self.device_id, self.vendor = nf_id, device_id, vendor
        self.resource, self.service = resource, service
        self.changed = False
        self._rows = tracker.recorded(nf_id, device_id, service) if rows is None else dict(rows)
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
        values = self.runner.values(item.values)
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
            if self.runner.has(self.service, "update"):
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
        op = self.runner.dictionary.services[self.service].create
        if op.allocate_id is not None:
            values["externalId"] = self._allocate(row, op.allocate_id.min, op.allocate_id.max)
        result = self.runner.run(self.service, "create", values)
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
            result = self.runner.run(self.service, "update", values)
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

    def _delete(self, external_id: str, label: str, **names) -> None:
        """Delete by ``external_id``; ``names`` are the other delete placeholders known."""
        values = self.runner.values({"externalId": external_id, "nfId": self.nf_id, **names})
        try:
            self.runner.run(self.service, "delete", values)
            self.changed = True
        except NotOnDevice:
            LOG.info("nf %s: %s rule %s (%s) was already gone from device %s",
                     self.nf_id, self.service, label, external_id, self.device_id)

    def remove_untracked(self, external_id: str, name: str) -> None:
        """Delete a device object no NF tracks (``repair-and-prune``)."""
        self._delete(external_id, name)  # no tag or rule name of nfp's: the device id alone
        LOG.warning("nf %s: deleted %s object %s (%s) from device %s: nfp does not track it",
                    self.nf_id, self.service, name, external_id, self.device_id)

    def _remove(self, row: PushedRule) -> None:
        external_id = row.external_id or self._find(row.rule_tag)
        if external_id is not None:
            self._delete(external_id, row.name, ruleId=row.rule_tag, name=row.name, nfId=row.nf_id)
        self.tracker.remove(row.id)
        self._rows.pop(row.name, None)
        LOG.info("nf %s: deleted %s rule %s from device %s", self.nf_id, self.service, row.name, self.device_id)

    # -- device lookups ----------------------------------------------------------------
    def _listed(self) -> list[dict]:
        if self._listing is None:
            self._listing = self.runner.list(self.service) if self.runner.has(self.service, "list") else []
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


class DictionarySession(DeviceSession):
    """One config element of one NF on one dictionary-described device (see module docstring).

    ``open`` builds the operation runner from ``link_factory`` (pooled transports,
    credentials from the secret store); the device is not contacted until
    ``compare``, ``commit`` or ``verify``.
    """

    def __init__(self, link_factory, tracker: RuleTracker, *, nf_id: str, device_id: str,
                 vendor: str, resource: str, service: str):
        self._link_factory, self.tracker = link_factory, tracker
        self.nf_id, self.device_id, self.vendor = nf_id, device_id, vendor
        self.resource, self.service = resource, service
        self.runner: Optional[OperationRunner] = None
        self._items: list[Item] = []
        #: the records as they were before the commit (for verifying removals)
        self._before: dict[str, PushedRule] = {}

    def open(self) -> None:
        if self.runner is None:
            self.runner = OperationRunner(self._link_factory())

    def load_candidate(self, candidate: Candidate) -> None:
        self.candidate = candidate
        self._items = [Item(self.service, i.name, i.body) for i in candidate.items]

    # -- diff ---------------------------------------------------------------------------
    def plan(self) -> Diff:
        """From the records alone: what RuleSync will push, change and remove."""
        return self._diff(self._recorded(), listing=None)

    def compare(self) -> Diff:
        """Records and the device's listing against the candidate."""
        if not self.runner.has(self.service, "list"):
            return Diff(self.resource, compared=False,
                        note=f"services.{self.service} has no list operation to read the device with")
        return self._diff(self._recorded(), self.runner.list(self.service))

    def _diff(self, rows: dict[str, PushedRule], listing: Optional[list[dict]]) -> Diff:
        diff = Diff(self.resource)
        on_device = _Listing(listing)
        mode = self.candidate.mode
        wanted = {item.name: item for item in self._items}
        if mode != Mode.REMOVE:
            for item in self._items:
                row = rows.get(item.name)
                applied = row is not None and row.status == RuleState.APPLIED and row.external_id
                seen = on_device.has(row.external_id if applied else None, item.rule_id)
                ext = row.external_id if row is not None else None
                if listing is not None and applied and not seen:
                    diff.to_add.append(Change(item.name, f"recorded as {ext} but missing on device",
                                              item.values, None, ext))
                elif not applied and listing is not None and seen:
                    diff.to_change.append(Change(item.name, "on device but not recorded; will be adopted",
                                                 item.values, on_device.get(None, item.rule_id),
                                                 on_device.id_of(item.rule_id)))
                elif not applied:
                    reason = "pending: pushed before a crash or never" if row is not None else "not pushed yet"
                    diff.to_add.append(Change(item.name, reason, item.values, None, ext))
                elif row.body_hash != item.body_hash:
                    diff.to_change.append(Change(item.name, "changed since it was pushed", item.values,
                                                 on_device.get(ext, item.rule_id), ext))
        if mode == Mode.REPLACE:
            gone = [row for name, row in rows.items() if name not in wanted]
        elif mode == Mode.REMOVE:
            gone = [rows[n] for n in (wanted or rows) if n in rows]
        else:
            gone = []
        for row in gone:
            present = listing is None or on_device.has(row.external_id, row.rule_tag)
            diff.to_remove.append(Change(row.name, "not wanted" if present else
                                         "recorded only: already gone from device", None,
                                         on_device.get(row.external_id, row.rule_tag), row.external_id))
        if listing is not None and mode == Mode.REPLACE:
            diff.to_remove += self._untracked(on_device, wanted.values())
        return diff

    def _untracked(self, on_device: "_Listing", wanted) -> list[Change]:
        """Listed objects that neither a record (of any NF on the device) nor a wanted
        item's tag accounts for."""
        known = {id(on_device.get(r.external_id, r.rule_tag))
                 for r in self.tracker.on_device(self.device_id, self.service)}
        known |= {id(on_device.get(None, item.rule_id)) for item in wanted}
        return [Change(str(obj.get("key") or f"{self.service} {obj['id']}"), UNTRACKED, None, obj, str(obj["id"]))
                for obj in on_device.items if id(obj) not in known]

    # -- changing the device ------------------------------------------------------------
    def commit(self, diff: Diff, confirm_timeout: Optional[float] = None) -> dict[str, str]:
        rows = self._recorded()
        self._before = dict(rows)
        for change in diff.to_add:  # recorded but gone (drift): forget the id so it is pushed again
            row = rows.get(change.name)
            if row is not None and row.status == RuleState.APPLIED:
                self.tracker.forget_external_id(row.id)
                row.external_id, row.status = None, RuleState.PENDING
        sync = RuleSync(self.runner, self.tracker, nf_id=self.nf_id, device_id=self.device_id,
                        vendor=self.vendor, resource=self.resource, service=self.service, rows=rows)
        mode = self.candidate.mode
        if mode == Mode.REMOVE:
            ids = sync.delete(self._items)
        elif mode == Mode.REPLACE:
            ids = sync.update(self._items)
            for change in diff.to_remove:
                if change.reason == UNTRACKED:
                    sync.remove_untracked(change.external_id, change.name)
        else:
            ids = sync.create(self._items)
        if sync.changed:
            self.runner.commit()
        return ids

    def verify(self, diff: Diff) -> list[str]:
        """List the device: pushed rules must be there, removed ones gone."""
        if not self.runner.has(self.service, "list"):
            raise VerifyError(self.resource, sorted(diff.names()),
                              f"services.{self.service} has no list operation to read them back with")
        on_device = _Listing(self.runner.list(self.service))
        rows = self._recorded()
        missing = []
        for change in diff.to_add + diff.to_change:
            row = rows.get(change.name)
            if row is None or not row.external_id or not on_device.has(row.external_id, row.rule_tag):
                missing.append(change.name)
        for change in diff.to_remove:
            row = self._before.get(change.name)
            if on_device.has(change.external_id, row.rule_tag if row is not None else None):
                missing.append(change.name)
        return sorted(set(missing))

    def external_ids(self) -> dict[str, str]:
        if self.candidate is None or self.candidate.mode == Mode.REMOVE:
            return {}
        rows = self._recorded()
        return {i.name: rows[i.name].external_id for i in self._items
                if i.name in rows and rows[i.name].external_id}

    def _recorded(self) -> dict[str, PushedRule]:
        return self.tracker.recorded(self.nf_id, self.device_id, self.service)


class _Listing:
    """A device listing, searchable by external id and by rule tag (the list's keyPath)."""

    def __init__(self, listing: Optional[list[dict]]):
        self.items = listing or []
        self.by_id = {str(i["id"]): i for i in self.items}

    def _by_tag(self, tag: Optional[str]) -> Optional[dict]:
        if not tag:
            return None
        for item in self.items:
            key = item.get("key")
            if isinstance(key, str) and (key == tag or key.startswith(tag + " ")):
                return item
        return None

    def get(self, external_id: Optional[str], tag: Optional[str]) -> Optional[dict]:
        found = self.by_id.get(str(external_id)) if external_id else None
        return found if found is not None else self._by_tag(tag)

    def has(self, external_id: Optional[str], tag: Optional[str]) -> bool:
        return self.get(external_id, tag) is not None

    def id_of(self, tag: str) -> Optional[str]:
        found = self._by_tag(tag)
        return None if found is None else str(found["id"])
