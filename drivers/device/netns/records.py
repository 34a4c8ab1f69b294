"""What nfp knows about each netns device it made: one JSON file per device.

The file lives in the device's working directory
(``<state_dir>/netns/<namespace>/device.json``) beside its sshd config, host
key and service files. It is written before the namespace exists, so after a
crash the sweep can find everything this nfp instance owns, and nothing that
another instance (another state directory) owns.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path
from typing import Iterator, Optional

RECORD = "device.json"


@dataclasses.dataclass
class DeviceRecord:
    """One device: ids, management address, pinned host key, and who is creating it."""

    id: str
    netns: str
    ssh_port: int
    host_key: str
    status: str = "creating"  # creating | active
    mgmt_index: Optional[int] = None
    mgmt_ip: Optional[str] = None
    mgmt_prefix: Optional[int] = None
    sshd_pid: Optional[int] = None
    creator_pid: int = dataclasses.field(default_factory=os.getpid)
    created_at: float = dataclasses.field(default_factory=time.time)


class DeviceStore:
    """Device working directories under one root (``<state_dir>/netns``)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def workdir(self, netns: str, create: bool = False) -> Path:
        path = self.root / netns
        if create:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path

    def save(self, record: DeviceRecord) -> None:
        path = self.workdir(record.netns, create=True) / RECORD
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(record)))
        os.replace(tmp, path)

    def load(self, netns: str) -> Optional[DeviceRecord]:
        try:
            data = json.loads((self.workdir(netns) / RECORD).read_text())
        except (OSError, ValueError):
            return None
        fields = {f.name for f in dataclasses.fields(DeviceRecord)}
        return DeviceRecord(**{k: v for k, v in data.items() if k in fields})

    def remove(self, netns: str) -> None:
        shutil.rmtree(self.workdir(netns), ignore_errors=True)

    def names(self) -> Iterator[str]:
        """Namespaces that have a working directory here (with or without a record)."""
        if not self.root.is_dir():
            return iter(())
        return iter(sorted(p.name for p in self.root.iterdir() if p.is_dir()))
