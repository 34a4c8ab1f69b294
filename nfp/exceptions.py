"""Errors that cross the RPC boundary. Messages name the field and never carry secrets."""
from __future__ import annotations


class NfpError(Exception):
    """Base of nfp's own errors."""


class InvalidRequest(NfpError, ValueError):
    """A request argument failed validation. ``field`` is its dotted path."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        # oslo rebuilds remote exceptions as klass(*args, **kwargs)
        self.kwargs = {"field": field, "reason": reason}


class NotFound(NfpError, LookupError):
    """The named object does not exist."""


class Conflict(NfpError):
    """The request conflicts with the object's current state."""
