"""Errors of the dictionary engine. None of them ever carries a secret value."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Issue:
    """One problem in a dictionary file: where it is and what is wrong."""

    source: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        key = f" {self.key}:" if self.key else ""
        return f"{self.source}:{self.line}:{key} {self.message}"


class DictionaryError(ValueError):
    """A dictionary failed to load or validate. ``issues`` lists every problem
    found, each naming the file, the line and the key."""

    def __init__(self, issues: list[Issue], warnings: Optional[list[Issue]] = None):
        self.issues = list(issues)
        #: problems that alone would not have failed the load (unknown keys)
        self.warnings = list(warnings or [])
        super().__init__("\n".join(str(i) for i in self.issues))

    @classmethod
    def one(cls, source: str, line: int, key: str, message: str) -> "DictionaryError":
        return cls([Issue(source, line, key, message)])


class PlaceholderError(ValueError):
    """A placeholder value failed its type check or cannot be escaped for its context."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"placeholder {name}: {reason}")
        self.name = name
        self.reason = reason


class TransportError(RuntimeError):
    """The device could not be reached or did not answer in time."""


class VendorError(RuntimeError):
    """The device answered but refused the request. ``code`` is the vendor's error code,
    ``kind`` nfp's error kind for it (the dictionary's ``errorCodes``), if known."""

    def __init__(self, message: str, code: Optional[str] = None, status: Optional[int] = None,
                 kind: Optional[str] = None):
        super().__init__(message)
        self.code = code
        self.status = status
        self.kind = kind
