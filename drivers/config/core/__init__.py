"""The convergence core shared by every config driver (dictionary, linux, netconf, ansible).

- :mod:`.session`: the :class:`DeviceSession` contract (open, load_candidate,
  compare, commit with confirm, discard, rollback, close) and the one
  plan/commit/verify cycle, :func:`converge`, plus the read-only :func:`compare`.
- :mod:`.diff`: the structured :class:`Diff` (to_add, to_change, to_remove).
- :mod:`.tracking`: the ``rules`` repository: what each driver pushed, per
  network function and device, with the external ids the device returned.

See ``drivers/config/README.md`` for how to write a driver on it.
"""
from .diff import Change, Diff, body_hash, compare_items
from .session import (Candidate, DesiredItem, DeviceSession, Mode, Outcome, Unsupported,
                      VerifyError, compare, converge)
from .tracking import RuleTracker, TrackedRule

__all__ = ["Candidate", "Change", "DesiredItem", "DeviceSession", "Diff", "Mode", "Outcome",
           "RuleTracker", "TrackedRule", "Unsupported", "VerifyError", "body_hash", "compare",
           "compare_items", "converge"]
