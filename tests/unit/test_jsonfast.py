"""nfp.jsonfast gives the standard library's answers (it only answers faster),
and refuses what is not JSON instead of turning it into a float."""
from __future__ import annotations

import datetime as dt
import json
import math

import pytest
from hypothesis import given, settings, strategies as st

from nfp import jsonfast

# every JSON value the standard library writes, with integers of any size, any
# finite float and any text (lone surrogates included)
_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) \
    | st.text()
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=5)
                       | st.dictionaries(st.text(), inner, max_size=5), max_leaves=30)


@settings(max_examples=500, deadline=None)
@given(_values)
def test_loads_reads_what_json_reads(value):
    text = json.dumps(value)
    expected = json.loads(text)
    got = jsonfast.loads(text)
    assert got == expected and _types(got) == _types(expected)
    assert jsonfast.loads(text.encode()) == expected


@settings(max_examples=500, deadline=None)
@given(_values)
def test_dumps_writes_what_json_reads_back(value):
    assert json.loads(jsonfast.dumps(value)) == json.loads(json.dumps(value))


@pytest.mark.parametrize("text", ["[NaN]", '{"a": Infinity}', "[-Infinity]", "[1e400]", "[-1e999]"])
def test_what_is_not_json_is_refused_not_read_as_a_float(text):
    with pytest.raises(ValueError):
        jsonfast.loads(text)
    # the standard library would have made a float of it
    assert not math.isfinite(json.loads(text)[0] if text.startswith("[") else json.loads(text)["a"])


def test_integers_beyond_64_bits_keep_every_digit():
    big = 123456789012345678901234567890
    assert jsonfast.loads(f'{{"a": {big}, "b": -{big}}}') == {"a": big, "b": -big}
    assert jsonfast.loads(b"[18446744073709551616]") == [18446744073709551616]
    assert json.loads(jsonfast.dumps({"a": big})) == {"a": big}


def test_utf16_bytes_and_lone_surrogates_are_read_as_json_reads_them():
    assert jsonfast.loads('["\\ud800"]') == ["\ud800"]
    assert jsonfast.loads('[1, "x"]'.encode("utf-16")) == [1, "x"]


def test_dumps_keys_and_defaults_as_json_does():
    when = dt.datetime(2026, 12, 3, 17, 0, 59, 531114)
    assert json.loads(jsonfast.dumps({1: "a", "when": when}, default=str)) == \
        {"1": "a", "when": when.isoformat()}
    with pytest.raises(TypeError):
        jsonfast.dumps({"x": object()})


def _types(value):
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v) for v in value]
    return type(value)
