"""Counters of the RPC listener, read later by the Prometheus exporter."""
from __future__ import annotations

import threading

#: every counter the listener keeps, with its meaning
NAMES = {
    "received": "messages delivered by the broker",
    "acked": "messages acknowledged after they were served or refused",
    "rejected": "messages refused: malformed, too large, unknown method, dropped poison",
    "duplicates": "redelivered messages skipped by _unique_id",
    "batches": "group commits (handle_mutations calls that returned)",
    "batch_retries": "group commits retried after an error",
    "reads": "read requests served",
    "replies": "replies published",
    "replies_undeliverable": "replies returned by the broker (caller gone)",
    "heartbeats": "call-monitor heartbeats published",
    "notifications": "notifications published",
    "publish_failures": "replies or notifications that could not be published",
    "nacked": "replies or notifications the broker refused (basic.nack under publisher confirms)",
    "outbox_published": "outbox notifications the broker confirmed (then deleted from the table)",
    "outbox_held": "outbox notifications held back after a failed publish (retried later)",
    "reconnects": "consumer reconnections",
    "data_refused": "mutations the database refused for a data reason, dropped once",
}


class Counters:
    """Thread-safe monotonic counters named in :data:`NAMES`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(NAMES, 0)

    def add(self, name: str, amount: int = 1) -> None:
        """Increase counter ``name`` by ``amount``."""
        with self._lock:
            self._values[name] += amount

    def __getitem__(self, name: str) -> int:
        return self._values[name]

    def snapshot(self) -> dict[str, int]:
        """A consistent copy of all counters."""
        with self._lock:
            return dict(self._values)
