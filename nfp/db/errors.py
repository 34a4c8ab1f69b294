"""Database errors as callers may see them: written for people, never SQL.

SQLAlchemy's message carries the statement and its bound parameters, which
hold caller data (and can hold secrets). What reaches a caller, a
``status_description`` or a notification is built here instead: what could
not be recorded and, when it can be told, which column refused its value.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Optional

from sqlalchemy import String
from sqlalchemy import exc as sa_exc

from nfp.exceptions import NfpError

#: noun per table, for "could not record the <noun>"
_NOUNS = {"network_functions": "network function", "network_function_instances": "instance",
          "network_function_devices": "device", "port_infos": "port", "events": "step",
          "rpc_requests": "request id", "network_infos": "network"}
_TABLE = re.compile(r"\b(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+\"?(\w+)\"?", re.IGNORECASE)
#: what SQLAlchemy appends to a message: the statement, its parameters, a link
_SQL_PARTS = re.compile(r"\s*\[(?:SQL|parameters):.*?\](?=\s*(?:\[|\(Background|$))"
                        r"|\s*\(Background on this error at:[^)]*\)", re.DOTALL)


class RecordRefused(NfpError, ValueError):
    """The database refused a value of a request; one refusal, never retried.

    ``column`` is the refusing column when it can be told, else None."""

    def __init__(self, what: str, column: Optional[str]):
        detail = f"database rejected the value of {column}" if column else "database rejected a value"
        super().__init__(f"could not record the {what} ({detail})")
        self.column = column
        self.kwargs = {"column": column}


def is_data_error(exc: BaseException) -> bool:
    """True when the database refused the data itself (too long, wrong type,
    a constraint), so running the same request again cannot succeed."""
    return isinstance(exc, (sa_exc.DataError, sa_exc.IntegrityError)) and not getattr(
        exc, "connection_invalidated", False)


def refusal(exc: BaseException, what: Optional[str] = None) -> RecordRefused:
    """The person-readable refusal for a database error ``exc``."""
    table = _table_of(exc)
    return RecordRefused(what or _NOUNS.get(table or "", "request"), overlong_column(exc, table))


def human_reason(exc: BaseException) -> str:
    """A step failure reason for ``exc``: the refusal for database errors, the
    exception's own text for anything else."""
    if isinstance(exc, sa_exc.SQLAlchemyError):
        if isinstance(exc, sa_exc.DBAPIError) and not is_data_error(exc):
            return "the database was unavailable; the step failed"
        return str(refusal(exc))
    return scrub(f"{exc.__class__.__name__}: {exc}")


def scrub(text: str) -> str:
    """``text`` without SQLAlchemy's statement, parameters and link sections."""
    if "[SQL:" not in text and "[parameters:" not in text and "(Background on" not in text:
        return text
    return _SQL_PARTS.sub("", text).strip()


def overlong_column(exc: BaseException, table: Optional[str] = None) -> Optional[str]:
    """The column whose bound value is longer than its ``String(n)``, from the
    failed statement's parameters and the model's column sizes."""
    from nfp.db import all_models
    table = table or _table_of(exc)
    meta = all_models()
    if table not in meta.tables:
        return None
    columns = meta.tables[table].columns
    for params in _param_sets(getattr(exc, "params", None)):
        for key, value in params.items():
            column = columns.get(key)
            if (column is not None and isinstance(column.type, String) and column.type.length
                    and isinstance(value, str) and len(value) > column.type.length):
                return key
    return None


def _table_of(exc: BaseException) -> Optional[str]:
    match = _TABLE.search(getattr(exc, "statement", None) or "")
    return match.group(1) if match else None


def _param_sets(params: Any) -> Iterable[dict]:
    if isinstance(params, dict):
        return [params]
    if isinstance(params, (list, tuple)):
        return [p for p in params if isinstance(p, dict)]
    return []
