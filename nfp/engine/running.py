"""Which steps a worker is running right now, in a file-backed shared memory map.

Why: a step that kills its worker must fail after ``max_attempts`` crashes, but
charging an attempt to every open step of the shard at each boot failed steps
that had never started (a crash loop of five quick kills failed 495 queued NFs).
Committing "started" per step would cost a transaction per step. Instead each
worker writes the id of every step it starts into a slot of a small array
(``<state_dir>/running/worker-<index>.bin``, ``mmap``-ed, one 8-byte store per
start and per end, no commit) and clears it when the step ends. The pages
outlive the process, even a ``kill -9`` or the whole daemon's death, so the
successor that takes the shard reads the ids still set, charges an attempt to
those steps only (one UPDATE), and clears the file.
"""
from __future__ import annotations

import mmap
import os
import struct
import threading
from pathlib import Path
from typing import Optional

_SLOT = struct.Struct("<q")


def path_for(state_dir: Path, index: int) -> Path:
    """The running-steps file of worker ``index``."""
    return Path(state_dir) / "running" / f"worker-{index}.bin"


def read(path: Path) -> list[int]:
    """The step ids a (dead) worker left marked as running."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    ids = (_SLOT.unpack_from(data, offset)[0] for offset in range(0, len(data) - 7, _SLOT.size))
    return sorted({i for i in ids if i > 0})


class RunningSteps:
    """The slots of one live worker. Thread-safe; :meth:`add` and :meth:`remove`
    are one memory store each."""

    def __init__(self, path: Path, slots: int):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.ftruncate(fd, 0)  # the previous owner's ids were charged before we got here
            os.ftruncate(fd, slots * _SLOT.size)
            self._map = mmap.mmap(fd, slots * _SLOT.size)
        finally:
            os.close(fd)
        self._free = list(range(slots - 1, -1, -1))
        self._lock = threading.Lock()

    def add(self, event_id: int) -> Optional[int]:
        """Mark ``event_id`` as running; returns its slot (None if all are taken:
        a crash then charges nothing to it, which errs on the side of retrying)."""
        with self._lock:
            if not self._free:
                return None
            slot = self._free.pop()
        _SLOT.pack_into(self._map, slot * _SLOT.size, event_id)
        return slot

    def remove(self, slot: Optional[int]) -> None:
        """The step in ``slot`` ended (finished, failed, or was handed back)."""
        if slot is None:
            return
        _SLOT.pack_into(self._map, slot * _SLOT.size, 0)
        with self._lock:
            self._free.append(slot)

    def close(self) -> None:
        self._map.close()
