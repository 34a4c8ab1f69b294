"""Protocol-faithful device simulators nfp ships (``nfp simulate``), one per vendor
dictionary. Each keeps its rule tables for asserts, takes injected faults
(:class:`~.faults.Faults`) and allows manual drift (``drift()``)."""
from __future__ import annotations

from typing import Any

#: vendor -> "module:Class"
SIMULATORS = {
    "pfsense": "nfp.testing.simulators.pfsense:PfSenseSimulator",
    "fortigate": "nfp.testing.simulators.fortigate:FortiGateSimulator",
    "paloalto": "nfp.testing.simulators.paloalto:PaloAltoSimulator",
    "vyos": "nfp.testing.simulators.vyos:VyosSimulator",
}


def build(vendor: str, **kwargs: Any):
    """An unstarted simulator for ``vendor``."""
    import importlib
    module, _, name = SIMULATORS[vendor].partition(":")
    return getattr(importlib.import_module(module), name)(**kwargs)
