"""Duplicate suppression by oslo ``_unique_id``.

A broker redelivers a message whose ack was lost with its connection. oslo
keeps the last 16 ids; nfp acks only after the group commit, so the window
between delivery and ack is longer and the window kept here is larger.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional

#: ids remembered; far more than the listener ever holds unacked by default
DEFAULT_SIZE = 4096


class SeenIds:
    """A bounded LRU set of message ids. Used by one thread only."""

    def __init__(self, size: int = DEFAULT_SIZE):
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def check_and_add(self, unique_id: Optional[str]) -> bool:
        """True if ``unique_id`` was seen before; otherwise remember it.
        Messages without an id are never duplicates."""
        if not unique_id:
            return False
        if unique_id in self._ids:
            self._ids.move_to_end(unique_id)
            return True
        self._ids[unique_id] = None
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)
        return False

    def __len__(self) -> int:
        return len(self._ids)
