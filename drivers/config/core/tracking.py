"""Rule tracking: the ``rules`` table repository, shared by every config driver.

A rule is *reserved* (status pending, no external id) before it is pushed, and
*applied* with the device's id after. A crash between the two leaves a pending
row, which the next attempt resolves by finding the rule on the device by its
tag instead of pushing a duplicate. Allocated ids (VyOS rule numbers) are
claimed through the unique ``(device_id, service, external_id)`` constraint, so
two workers never hand out the same number.

A config element with many rules is tracked in bulk: every new rule is reserved
in one transaction (:meth:`RuleTracker.reserve_many`) and the device's ids are
recorded a batch at a time (:meth:`RuleTracker.applied_many`), instead of two
transactions per rule. The pending-then-applied order per rule is unchanged.

Devices that replace an owner's whole rule set at once (an nftables table, a
HAProxy config) record the result in one transaction instead
(:meth:`RuleTracker.record_set`), after the device read it back.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Optional

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from nfp.db.base import new_id, utcnow
from nfp.db.rules import PushedRule, RuleState


class RuleTracker:
    """The repository of ``rules``: every config driver records what it pushed here."""

    def __init__(self, session_factory: Callable):
        self._sessions = session_factory

    def recorded(self, nf_id: str, device_id: str, service: str) -> dict[str, PushedRule]:
        """The NF's rules of ``service`` on the device, by name."""
        with self._sessions() as session:
            rows = session.scalars(select(PushedRule).where(
                PushedRule.nf_id == nf_id, PushedRule.device_id == device_id,
                PushedRule.service == service))
            return {row.name: row for row in rows}

    def on_device(self, device_id: str, service: Optional[str] = None) -> list[PushedRule]:
        """Every tracked rule on a device (all NFs), optionally of one service."""
        query = select(PushedRule).where(PushedRule.device_id == device_id)
        if service:
            query = query.where(PushedRule.service == service)
        with self._sessions() as session:
            return list(session.scalars(query.order_by(PushedRule.created_at)))

    def reserve(self, *, nf_id: str, device_id: str, vendor: str, service: str, resource: str,
                name: str, rule_tag: str, body_hash: str) -> PushedRule:
        """Insert a pending row, or return the existing one for this NF/service/name."""
        row = PushedRule(nf_id=nf_id, device_id=device_id, vendor=vendor, service=service,
                         resource=resource, name=name, rule_tag=rule_tag, body_hash=body_hash,
                         status=RuleState.PENDING)
        try:
            with self._sessions() as session, session.begin():
                session.add(row)
            return row
        except IntegrityError:
            existing = self.recorded(nf_id, device_id, service).get(name)
            if existing is None:
                raise
            return existing

    def reserve_many(self, rows: list[dict]) -> Optional[list[PushedRule]]:
        """Insert pending rows (``reserve``'s keyword arguments, one dict per rule)
        in one transaction. None if any of them exists already (another worker
        reserved it): nothing is inserted and the caller reserves one by one."""
        if not rows:
            return []
        now = utcnow()
        params = [dict(row, id=new_id(), status=RuleState.PENDING, external_id=None, created_at=now,
                       updated_at=now) for row in rows]
        try:
            with self._sessions() as session, session.begin():
                session.execute(insert(PushedRule), params)  # ORM bulk INSERT: one executemany
        except IntegrityError:
            return None
        return [PushedRule(**p) for p in params]  # detached copies of what was written

    def claim_external_id(self, row_id: str, candidates: Iterable[str]) -> Optional[str]:
        """Set the first free candidate as the row's external id; None if all are taken."""
        for candidate in candidates:
            try:
                with self._sessions() as session, session.begin():
                    session.execute(update(PushedRule).where(PushedRule.id == row_id)
                                    .values(external_id=candidate))
                return candidate
            except IntegrityError:
                continue
        return None

    def applied(self, row_id: str, external_id: str, body_hash: str) -> None:
        """The device accepted the rule under ``external_id``."""
        with self._sessions() as session, session.begin():
            session.execute(update(PushedRule).where(PushedRule.id == row_id).values(
                external_id=external_id, body_hash=body_hash, status=RuleState.APPLIED))

    def applied_many(self, results: Iterable[tuple[str, str, str]]) -> None:
        """``applied`` for many rows in one transaction: ``(row id, external id, body hash)``."""
        now = utcnow()
        params = [{"id": row_id, "external_id": external_id, "body_hash": body_hash,
                   "status": RuleState.APPLIED, "updated_at": now}
                  for row_id, external_id, body_hash in results]
        if not params:
            return
        with self._sessions() as session, session.begin():
            session.execute(update(PushedRule), params)  # ORM bulk UPDATE by primary key

    def remove_many(self, row_ids: Iterable[str]) -> None:
        """Delete rows in one transaction."""
        ids = list(row_ids)
        if ids:
            with self._sessions() as session, session.begin():
                session.execute(delete(PushedRule).where(PushedRule.id.in_(ids)))

    def forget_external_id(self, row_id: str) -> None:
        """The device no longer has the rule (drift); keep the row pending."""
        with self._sessions() as session, session.begin():
            session.execute(update(PushedRule).where(PushedRule.id == row_id).values(
                external_id=None, status=RuleState.PENDING))

    def remove(self, row_id: str) -> None:
        """Delete one row."""
        with self._sessions() as session, session.begin():
            session.execute(delete(PushedRule).where(PushedRule.id == row_id))

    # -- whole sets, for devices that replace an owner's rules atomically -----------
    def record_set(self, *, nf_id: str, device_id: str, vendor: str, service: str, resource: str,
                   rules: Iterable[TrackedRule]) -> None:
        """Make the owner's rows of ``service`` exactly ``rules``, all applied, in one
        transaction: rows of rules no longer there are deleted, the others written."""
        rules = list(rules)
        names = {r.name for r in rules}
        now = utcnow()
        with self._sessions() as session, session.begin():
            owner = (PushedRule.nf_id == nf_id, PushedRule.device_id == device_id,
                     PushedRule.service == service)
            existing = {row.name: row for row in session.scalars(select(PushedRule).where(*owner))}
            gone = [row.id for name, row in existing.items() if name not in names]
            if gone:  # first, so a renamed rule can take over its old external id
                session.execute(delete(PushedRule).where(PushedRule.id.in_(gone)))
            for rule in rules:
                row = existing.get(rule.name)
                values = dict(external_id=rule.external_id, body_hash=rule.body_hash,
                              rule_tag=rule.rule_tag, status=RuleState.APPLIED, updated_at=now)
                if row is None:
                    session.execute(insert(PushedRule), [dict(
                        values, id=new_id(), nf_id=nf_id, device_id=device_id, vendor=vendor,
                        service=service, resource=resource, name=rule.name, created_at=now)])
                elif (row.external_id, row.body_hash, row.status) != (rule.external_id, rule.body_hash,
                                                                      RuleState.APPLIED):
                    session.execute(update(PushedRule).where(PushedRule.id == row.id).values(**values))

    def forget(self, nf_id: str, device_id: str, service: str) -> int:
        """Delete every row of the owner's ``service`` (after the device removed them)."""
        with self._sessions() as session, session.begin():
            result = session.execute(delete(PushedRule).where(
                PushedRule.nf_id == nf_id, PushedRule.device_id == device_id,
                PushedRule.service == service))
        return result.rowcount or 0


@dataclass(frozen=True)
class TrackedRule:
    """What :meth:`RuleTracker.record_set` writes for one rule."""

    name: str
    external_id: str
    body_hash: str
    rule_tag: str = ""
