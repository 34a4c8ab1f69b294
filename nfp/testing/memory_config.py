"""A config driver that keeps each device's configuration in a JSON file.

It lets the whole orchestrator run, and be tested, without any appliance:
``service_vendor=memory`` (or ``configurator.vendor_aliases: {vyos: memory}``).
Tests read the files to assert what nfp pushed. Options
(``config_drivers.memory``): ``fail_resources`` (resources that fail, to test
error paths), ``delay`` (seconds each apply blocks, to model a slow device).
:meth:`MemoryConfigDriver.diff` compares an element with the file, item by item
(rules, routes, members by name), so ``nfp nf diff`` works without a device.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

from nfp.drivers.config.base import ConfigDriver, ConfigRequest, ConfigResult, ConfigStatus
from nfp.drivers.config.core import Diff, compare_items

#: list fields whose entries are items of a diff, by their ``name`` (else their position)
_ITEM_LISTS = ("rules", "routes", "members")


def device_file(state_dir: Path, device_id: str) -> Path:
    return Path(state_dir) / "memory-devices" / f"{device_id}.json"


def read_device(state_dir: Path, device_id: str) -> dict:
    """What the device holds: ``{nf_id: {resource: resource_data}}``."""
    path = device_file(state_dir, device_id)
    if not path.exists():
        return {}
    with open(path) as handle:
        fcntl.flock(handle, fcntl.LOCK_SH)  # a writer truncates before it rewrites
        return json.loads(handle.read() or "{}")


class MemoryConfigDriver(ConfigDriver):
    """Applies config to a JSON file per device (see module docstring)."""

    def apply(self, request: ConfigRequest) -> ConfigResult:
        if request.resource == "heat":
            return ConfigResult(ConfigStatus.UNHANDLED)
        if request.resource in self.options.get("fail_resources", []):
            return ConfigResult(ConfigStatus.FAILURE, error=f"device refused {request.resource}")
        if self.options.get("delay"):
            time.sleep(float(self.options["delay"]))
        if request.resource == "healthmonitor":
            return ConfigResult(ConfigStatus.SUCCESS)
        path = device_file(self.conf.state_path, request.device.id)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # workers are separate processes
            handle.seek(0)
            state = json.loads(handle.read() or "{}")
            nf_state = state.setdefault(request.nf_id or "-", {})
            if request.operation == "delete":
                nf_state.pop(request.resource, None)
                if not nf_state:
                    state.pop(request.nf_id or "-", None)
            else:
                nf_state[request.resource] = request.resource_data
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps(state, sort_keys=True))
            handle.flush()
            os.fsync(handle.fileno())
        return ConfigResult(ConfigStatus.SUCCESS)

    def list_resources(self, device, resource):
        state = read_device(self.conf.state_path, device.id)
        return [nf[resource] for nf in state.values() if resource in nf]

    def diff(self, request: ConfigRequest) -> Diff:
        """The element against the device file; nothing is written."""
        if request.resource in ("heat", "healthmonitor"):
            return Diff(request.resource, compared=False, note="nothing to compare")
        state = read_device(self.conf.state_path, request.device.id)
        have = state.get(request.nf_id or "-", {}).get(request.resource)
        return compare_items(request.resource, _items(request.resource_data),
                             _items(have) if have is not None else {})


def _items(data) -> dict[str, dict]:
    """An element as named items: entries of its item lists, plus its other fields."""
    if not isinstance(data, dict):
        return {"resource_data": {"value": data}}
    items, rest = {}, {}
    for key, value in data.items():
        if key in _ITEM_LISTS and isinstance(value, list):
            for index, entry in enumerate(value):
                name = entry.get("name") if isinstance(entry, dict) else None
                items[f"{key}/{name or index}"] = entry if isinstance(entry, dict) else {"value": entry}
        else:
            rest[key] = value
    if rest:
        items["settings"] = rest
    return items
