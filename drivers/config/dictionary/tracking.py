"""Rule tracking for the dictionary driver: the core's repository.

The ``rules`` repository now lives in :mod:`nfp.drivers.config.core.tracking`,
shared by every config driver; this name stays for existing imports.
"""
from nfp.drivers.config.core.tracking import RuleTracker, TrackedRule

__all__ = ["RuleTracker", "TrackedRule"]
