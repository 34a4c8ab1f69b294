"""A config driver that keeps each device's configuration in files.

It lets the whole orchestrator run, and be tested, without any appliance:
``service_vendor=memory`` (or ``configurator.vendor_aliases: {vyos: memory}``).
Tests read the device with :func:`read_device` to assert what nfp pushed.
Options (``config_drivers.memory``): ``fail_resources`` (resources that fail,
to test error paths), ``delay`` (seconds each apply blocks, to model a slow
device), ``call_log`` (a file every apply that changes the device appends one
line to, so a test can count device calls across processes and hosts: see
:func:`count_calls`), ``devices_root`` (where the devices live, default the
state directory: hosts of one test share it as they would share an appliance).
Like a convergent driver, an apply whose element the device already holds
changes nothing and is not logged: a step retried after its process died
between the device call and the commit finds its earlier work. :meth:`MemoryConfigDriver.diff` compares an element with
the device, item by item (rules, routes, members by name), so ``nfp nf diff``
works without a device.

Layout: ``<state_dir>/memory-devices/<device>/<nf>/<resource>.json``, one small
file per element, replaced atomically (write a temporary file, ``rename``).
Each change writes only its own element, so the cost of a change does not grow
with the number of NFs on the device, and concurrent steps (workers are
separate processes) never read-modify-write a shared file, so no lock is
needed. No ``fsync``: this is a test double, and a rename is atomic against a
killed process, which is what the tests exercise.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import quote, unquote

from nfp.drivers.config.base import ConfigDriver, ConfigRequest, ConfigResult, ConfigStatus
from nfp.drivers.config.core import Diff, compare_items

#: list fields whose entries are items of a diff, by their ``name`` (else their position)
_ITEM_LISTS = ("rules", "routes", "members")
#: the NF key of an element pushed without an NF id
NO_NF = "-"


def device_dir(state_dir: Path, device_id: str) -> Path:
    """The directory holding one device's configuration."""
    return Path(state_dir) / "memory-devices" / _name(device_id)


def _name(value: str) -> str:
    # ids come from requests: never let one name another directory
    return quote(value, safe="") if value not in ("", ".", "..") else f"%{value or 'empty'}"


def read_device(state_dir: Path, device_id: str) -> dict:
    """What the device holds: ``{nf_id: {resource: resource_data}}``."""
    root = device_dir(state_dir, device_id)
    state: dict = {}
    try:
        nf_dirs = list(os.scandir(root))
    except FileNotFoundError:
        return {}
    for nf_dir in nf_dirs:
        if not nf_dir.is_dir():
            continue
        for entry in os.scandir(nf_dir.path):
            if not entry.name.endswith(".json"):
                continue  # a temporary file being written
            try:
                with open(entry.path) as handle:
                    data = json.load(handle)
            except FileNotFoundError:  # deleted since the scan
                continue
            state.setdefault(unquote(nf_dir.name), {})[unquote(entry.name[:-5])] = data
    return state


def element_file(state_dir: Path, device_id: str, nf_id: str, resource: str) -> Path:
    """The file of one element (``resource`` of ``nf_id``) on a device."""
    return device_dir(state_dir, device_id) / _name(nf_id or NO_NF) / f"{_name(resource)}.json"


def write_element(state_dir: Path, device_id: str, nf_id: str, resource: str, data) -> None:
    """Set one element as if the device had changed it (tests simulate drift
    with it); ``data`` None removes it."""
    path = element_file(state_dir, device_id, nf_id, resource)
    if data is None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{uuid.uuid4().hex}.tmp"
    tmp.write_text(json.dumps(data, sort_keys=True))
    os.replace(tmp, path)  # atomic: a reader sees the old element or the new one


def record_call(path: str, request: ConfigRequest, host: str) -> None:
    """Append one line for a device call. One ``write`` on an ``O_APPEND`` file
    is atomic for a short line, so processes of several hosts share the file
    without a lock, and a killed process leaves whole lines."""
    line = json.dumps({"nf": request.nf_id, "resource": request.resource,
                       "operation": request.operation, "device": request.device.id,
                       "host": host, "pid": os.getpid(), "at": time.time()}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def count_calls(path, fields: tuple = ("nf", "resource", "operation")) -> Counter:
    """Device calls in a ``call_log``, counted by the tuple of ``fields``
    (``nf``, ``resource``, ``operation``, ``device``, ``host``, ``pid``, ``at``)."""
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        return Counter()
    calls = (json.loads(line) for line in lines if line)
    return Counter(tuple(call[f] for f in fields) for call in calls)


class MemoryConfigDriver(ConfigDriver):
    """Applies config to one file per element (see module docstring)."""

    @property
    def root(self) -> Path:
        """Where the devices live: ``devices_root`` (several hosts of one test share
        it, as they would share a real appliance), else the state directory."""
        return Path(self.options.get("devices_root") or self.conf.state_path)

    def apply(self, request: ConfigRequest) -> ConfigResult:
        if request.resource == "heat":
            return ConfigResult(ConfigStatus.UNHANDLED)
        if request.resource in self.options.get("fail_resources", []):
            return ConfigResult(ConfigStatus.FAILURE, error=f"device refused {request.resource}")
        if self.options.get("delay"):
            time.sleep(float(self.options["delay"]))
        if request.resource == "healthmonitor":  # a check: it changes nothing
            return ConfigResult(ConfigStatus.SUCCESS)
        data = None if request.operation == "delete" else request.resource_data
        if self._holds(request, data):
            # a step retried after its process died between this call and its
            # commit finds its earlier work, as a convergent driver's compare does
            return ConfigResult(ConfigStatus.SUCCESS)
        write_element(self.root, request.device.id, request.nf_id, request.resource, data)
        self._record(request)
        return ConfigResult(ConfigStatus.SUCCESS)

    def _holds(self, request: ConfigRequest, data) -> bool:
        """Does the device already hold exactly ``data`` for this element?"""
        path = element_file(self.root, request.device.id, request.nf_id, request.resource)
        try:
            with open(path) as handle:
                return data is not None and json.load(handle) == json.loads(json.dumps(data))
        except FileNotFoundError:
            return data is None

    def _record(self, request: ConfigRequest) -> None:
        if self.options.get("call_log"):
            record_call(self.options["call_log"], request, self.conf.rpc.host if self.conf else "")

    def list_resources(self, device, resource):
        state = read_device(self.root, device.id)
        return [nf[resource] for nf in state.values() if resource in nf]

    def diff(self, request: ConfigRequest) -> Diff:
        """The element against the device file; nothing is written."""
        if request.resource in ("heat", "healthmonitor"):
            return Diff(request.resource, compared=False, note="nothing to compare")
        state = read_device(self.root, request.device.id)
        have = state.get(request.nf_id or NO_NF, {}).get(request.resource)
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
