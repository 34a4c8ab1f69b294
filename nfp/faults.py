"""Which failures are the environment's and which are the request's.

One classification for the RPC intake and the step executor:

- :func:`is_transient`: the database connection was lost or timed out, or the
  database aborted the transaction for a reason that retrying fixes
  (serialisation failure, deadlock). Retry with backoff; never blame the request
  or the network function.
- :func:`is_data_error`: the database refused a value of the request (too long
  for its column, a NUL byte, a constraint). Retrying cannot help; refuse it once.
- :func:`data_field`: the dotted path of the offending value in a request's
  arguments, when it can be found, so the refusal names the field.
"""
from __future__ import annotations

import re
from typing import Any, Iterator, Optional

from sqlalchemy import exc as sa_exc

#: SQLSTATEs a retry fixes: serialization_failure, deadlock_detected, lock_not_available,
#: admin/crash shutdown, cannot_connect_now
TRANSIENT_SQLSTATES = {"40001", "40P01", "55P03", "57P01", "57P02", "57P03"}
#: SQLSTATE classes of data the database refused: 22 data exception, 23 integrity
DATA_SQLSTATE_CLASSES = ("22", "23")

_TOO_LONG = re.compile(r"character varying\((\d+)\)")
_NUL_TEXT = "NUL (0x00)"


def _sqlstate(exc: BaseException) -> Optional[str]:
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None)
    return code if isinstance(code, str) else None


def is_transient(exc: BaseException) -> bool:
    """True for errors of the environment rather than of the work:
    :func:`is_transient_db`, or a plain connection error or timeout."""
    return is_transient_db(exc) or isinstance(exc, (ConnectionError, TimeoutError))


def is_transient_db(exc: BaseException) -> bool:
    """True when the database, not the work, failed: the connection was lost or
    timed out, the transaction was aborted by a serialisation failure or
    deadlock, or the exception says so with a true ``transient`` attribute.
    A device's ``ConnectionError`` is not one: the step's handler owns it."""
    if getattr(exc, "transient", False):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated or _sqlstate(exc) in TRANSIENT_SQLSTATES:
            return True
        if _sqlstate(exc) is not None:  # the server answered with a definite error
            return isinstance(exc, sa_exc.OperationalError) and not is_data_error(exc)
    return isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError))


def is_data_error(exc: BaseException) -> bool:
    """True when the database (or its driver) refused a value of the request."""
    if isinstance(exc, (sa_exc.DataError, sa_exc.IntegrityError)):
        return True
    code = _sqlstate(exc)
    if code is not None and code[:2] in DATA_SQLSTATE_CLASSES:
        return True
    # psycopg2 refuses NUL bytes while binding, before the server sees anything
    return isinstance(exc, ValueError) and _NUL_TEXT in str(exc)


def data_field(exc: BaseException, args: Any, prefix: str = "") -> Optional[str]:
    """The dotted path in ``args`` of the value ``exc`` refused, if one fits:
    the first string holding a NUL byte, or longer than the column's limit."""
    text = str(getattr(exc, "orig", None) or exc)
    if _NUL_TEXT in text or "\x00" in text or "0x00" in text:
        return next((path for path, value in _strings(args, prefix) if "\x00" in value), None)
    match = _TOO_LONG.search(text)
    if match:
        limit = int(match.group(1))
        return next((path for path, value in _strings(args, prefix) if len(value) > limit), None)
    return None


def _strings(value: Any, path: str, depth: int = 0) -> Iterator[tuple[str, str]]:
    """(dotted path, string) for every string in a JSON value, depth-first."""
    if depth > 32:
        return
    if isinstance(value, str):
        yield path or "args", value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}" if path else str(key), depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}.{index}" if path else str(index), depth + 1)
