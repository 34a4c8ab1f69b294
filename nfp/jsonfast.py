"""JSON on the intake's hot path: orjson, with the standard library's answers.

Why this exists: accepting a create costs the listener three JSON passes (the
body and its oslo envelope decoded, the payload's text searched for secret
markers, the batch's rows encoded for :mod:`nfp.db.bulk`), and the listener's
one core is what bounds intake. orjson does each pass in a fraction of the
time of :mod:`json` (1,000 network-function rows: 0.9 ms against 7.2 ms); with
it the daemon accepted 4,631–4,803 creates/s against 3,859–3,985 in
alternating runs (``bench/bench_rpc.py`` (a), 20,000 casts).

Where orjson would answer differently, the standard library answers:

- an integer outside 64 bits: orjson reads it as a float, losing digits, so
  text holding a run of 19 digits or more is read by :mod:`json`;
- what orjson refuses but :mod:`json` reads (a lone surrogate in a string,
  UTF-16 or UTF-32 bytes) is read by :mod:`json`.

``NaN``, ``Infinity`` and numbers beyond a double's range are not JSON
(RFC 8259): :func:`loads` refuses them with a ``ValueError`` where :mod:`json`
would make a float of them, so no such value enters nfp from a caller. That
matters because :func:`dumps` writes ``null`` for such a float (orjson's rule),
where PostgreSQL would have refused :mod:`json`'s ``NaN``.
"""
from __future__ import annotations

import json
import math
from typing import Any, Callable, Optional, Union

import orjson

#: ASCII digits to ``0``, every other byte to a space: a run of 19 digits (an
#: integer that may not fit 64 bits) is then one substring search, twenty times
#: cheaper than a regular expression's scan and cheaper than the parse itself
_DIGITS = bytes(0x30 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))
_LONG_RUN = b"0" * 19


def loads(text: Union[str, bytes, bytearray]) -> Any:
    """``json.loads(text)``, faster; refuses NaN and infinities (ValueError)."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if _LONG_RUN not in raw.translate(_DIGITS):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text, parse_constant=_not_json, parse_float=_finite)


def dumps(obj: Any, default: Optional[Callable[[Any], Any]] = None) -> str:
    """Compact JSON text of ``obj``: non-string keys as strings, as :mod:`json`
    writes them; datetimes, dates and times in ISO 8601 without calling
    ``default`` (``2026-12-03T17:00:59``); ``default`` as :func:`json.dumps` takes it."""
    try:
        return orjson.dumps(obj, default=default, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # an integer beyond 64 bits, or ``default`` refused a value
        return json.dumps(obj, default=default, separators=(",", ":"))


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is beyond a double's range")
    return value
