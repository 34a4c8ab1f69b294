"""The device session contract and the plan/apply/verify cycle every config driver runs.

In the manner of NAPALM, a driver talks to one device through a
:class:`DeviceSession`: ``open``, ``load_candidate`` (the desired config of one
element), ``compare`` (a structured :class:`~.diff.Diff` against what the
device reads back as, changing nothing), ``commit`` (optionally with a
confirm timeout and automatic revert, where the device has them), ``discard``
(forget the candidate), ``rollback`` (undo the last commit, where the device
can) and ``close``.

:func:`converge` is the one path that changes a device: plan, commit, verify.
Verify reads back from the device after the commit; an item that does not read
back as committed is a :class:`VerifyError` (a FAILURE of the element), never a
silent success. :func:`compare` is the read-only path: the ``nfp nf diff``
command and the drift reconciler use it.
"""
from __future__ import annotations

import abc
import logging
from dataclasses import dataclass, field
from typing import Any, Optional

from nfp.drivers.config.base import ConfigError

from .diff import Diff, body_hash

LOG = logging.getLogger(__name__)


class Mode:
    """How a candidate relates to what the owner already has on the device."""

    #: add and change the candidate's items; leave the owner's other items alone (create)
    MERGE = "merge"
    #: the owner's items become exactly the candidate's (update)
    REPLACE = "replace"
    #: remove the candidate's items; all the owner's items when it names none (delete)
    REMOVE = "remove"

    OF_OPERATION = {"create": MERGE, "update": REPLACE, "delete": REMOVE}


@dataclass(frozen=True)
class DesiredItem:
    """One named item of a candidate: a rule, a route, a member.

    ``body`` is JSON data without secrets; ``tag`` is the device-side tag the
    driver derived for it (object names), if it uses one.
    """

    name: str
    body: dict
    tag: str = ""

    @property
    def body_hash(self) -> str:
        return body_hash(self.body)


@dataclass
class Candidate:
    """The desired config of one element for one owner (network function) on one device.

    Parameters:
        resource(str): the nfp resource (``firewall``, ``routes``...).
        mode(str): a :class:`Mode` value.
        items(list): the desired items, in the wanted order.
        model: the parsed resource (:mod:`nfp.resources`) for drivers that render
            the whole element at once.
        owner(str): the network function id (or the device id when there is none).
    """

    resource: str
    mode: str
    items: list[DesiredItem] = field(default_factory=list)
    model: Any = None
    owner: str = ""

    @classmethod
    def for_operation(cls, operation: str, **kwargs) -> "Candidate":
        """The candidate of a ``create``/``update``/``delete`` config request."""
        if operation not in Mode.OF_OPERATION:
            raise ConfigError(f"operation: {operation!r} must be create, update or delete")
        return cls(mode=Mode.OF_OPERATION[operation], **kwargs)

    def desired(self) -> dict[str, dict]:
        """name -> body of what the owner should have after a commit (nothing for REMOVE)."""
        return {} if self.mode == Mode.REMOVE else {i.name: i.body for i in self.items}


class Unsupported(ConfigError):
    """The device cannot do this (a confirmed commit, a rollback)."""


class VerifyError(ConfigError):
    """Committed items did not read back from the device."""

    def __init__(self, resource: str, names: list[str], detail: str = ""):
        self.resource, self.names = resource, list(names)
        shown = ", ".join(self.names[:10]) + (f" and {len(self.names) - 10} more" if len(self.names) > 10 else "")
        super().__init__(f"{resource}: after the commit the device does not show {shown}"
                         + (f" ({detail})" if detail else ""))


class DeviceSession(abc.ABC):
    """One driver's conversation with one device about one config element.

    Subclasses implement ``load_candidate``, ``compare`` and ``commit``; the
    rest has safe defaults. A session is used by one thread, once.
    """

    #: commit(confirm_timeout=...) reverts by itself unless confirm() follows
    supports_confirm: bool = False
    #: rollback() can undo the last commit
    supports_rollback: bool = False

    candidate: Optional[Candidate] = None

    def open(self) -> None:
        """Connect or take a pooled connection; nothing is changed on the device."""

    @abc.abstractmethod
    def load_candidate(self, candidate: Candidate) -> None:
        """Hold ``candidate`` as the desired config; nothing is sent to the device."""

    @abc.abstractmethod
    def compare(self) -> Diff:
        """The candidate against what the device reads back as. Changes nothing."""

    def plan(self) -> Diff:
        """What a commit of the candidate will do. Defaults to :meth:`compare`;
        drivers that track rules may plan from their records alone, so an
        unchanged element costs no round trip to the device."""
        return self.compare()

    @abc.abstractmethod
    def commit(self, diff: Diff, confirm_timeout: Optional[float] = None) -> dict[str, str]:
        """Make the device match the candidate (``diff`` is what plan or compare found);
        return ``{item name: external id}``. With ``confirm_timeout`` on a device
        that supports it, the device reverts unless :meth:`confirm` follows."""

    def confirm(self) -> None:
        """Keep a commit made with a confirm timeout."""
        if self.supports_confirm:
            raise NotImplementedError
        raise Unsupported(f"{type(self).__name__}: the device has no confirmed commit")

    def verify(self, diff: Diff) -> list[str]:
        """Names of committed items that do not read back as committed (empty: all did).
        The default compares again and reports every item of ``diff`` still in it."""
        return sorted(self.compare().names() & diff.names())

    def external_ids(self) -> dict[str, str]:
        """The candidate items' external ids as recorded, for an element needing no commit."""
        return {}

    def discard(self) -> None:
        """Forget the candidate. The device keeps what it has."""
        self.candidate = None

    def rollback(self) -> None:
        """Undo the last commit of this session."""
        raise Unsupported(f"{type(self).__name__}: the device cannot roll back")

    def close(self) -> None:
        """Give the connection back; safe to call twice."""

    def __enter__(self) -> "DeviceSession":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class Outcome:
    """What :func:`converge` did: the plan, the device's ids, whether it committed."""

    diff: Diff
    external_ids: dict[str, str]
    committed: bool


def converge(session: DeviceSession, candidate: Candidate,
             confirm_timeout: Optional[float] = None, repair: bool = False) -> Outcome:
    """Plan, commit and verify one element: the only path that changes a device.

    With ``repair`` the plan is a full :meth:`DeviceSession.compare` (what the
    device really has), so drift is repaired too; otherwise drivers may plan from
    their records. A failed commit discards the candidate; a failed verify rolls
    back where the device can, and raises :class:`VerifyError` either way.
    """
    with session:
        session.load_candidate(candidate)
        diff = session.compare() if repair else session.plan()
        if diff.empty:
            ids = session.external_ids()
            session.discard()
            return Outcome(diff, ids, committed=False)
        timeout = confirm_timeout if session.supports_confirm else None
        try:
            ids = session.commit(diff, confirm_timeout=timeout)
        except BaseException:
            session.discard()
            raise
        missing = session.verify(diff)
        if missing:
            if session.supports_rollback:
                LOG.warning("%s: %d item(s) did not read back after the commit; rolling back",
                            candidate.resource, len(missing))
                session.rollback()
                raise VerifyError(candidate.resource, missing, "rolled back")
            raise VerifyError(candidate.resource, missing)
        if timeout is not None:
            session.confirm()
        return Outcome(diff, ids, committed=True)


def compare(session: DeviceSession, candidate: Candidate) -> Diff:
    """The structured diff of ``candidate`` against the device; the device is not changed."""
    with session:
        session.load_candidate(candidate)
        try:
            return session.compare()
        finally:
            session.discard()
