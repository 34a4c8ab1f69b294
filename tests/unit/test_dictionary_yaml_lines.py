"""The loader reads YAML exactly as yaml.safe_load does, refuses what it refuses,
and reports key lines (from PyYAML's node marks) only when asked.

(``yamldoc.py``, which these tests once covered, is gone: the loader now uses
PyYAML's own constructor and node marks.)"""
from __future__ import annotations

import datetime as dt
import textwrap

import pytest
import yaml

from nfp.drivers.config.dictionary import loader
from nfp.drivers.config.dictionary.errors import DictionaryError

EDGE_CASES = textwrap.dedent("""\
    plain: text
    quoted: "yes"
    single: 'null'
    bools: [yes, No, true, off, On]
    nulls: [~, null, ]
    numbers: [1, -2, 0x1f, 0o17, 017, 1_000, 3.5, .inf, -.Inf, 1e3, 190:20:30]
    date: 2024-02-29
    stamp: 2024-02-29 12:30:00
    empty_key:
    "": empty string key
    200: int key
    anchors:
      base: &base {a: 1, b: [x, y]}
      copy: *base
      merged:
        <<: *base
        b: over
    block: |
      {"descr": "${name}"}
    folded: >
      one
      two
    set: !!set {a, b}
    omap: !!omap [{x: 1}, {y: 2}]
    binary: !!binary aGVsbG8=
    explicit_str: !!str 123
    nested: [[1, [2, {k: v}]], {}]
    """)


@pytest.mark.parametrize("text", [EDGE_CASES, "", "# only a comment\n", "just a scalar", "- a\n- b\n"]
                         + [loader.load_shipped(v).text for v in loader.shipped_names()])
def test_same_data_as_safe_load(text):
    data, node = loader.read_yaml(text)
    assert data == yaml.safe_load(text)
    assert (node is None) == (data is None)


def test_types_and_aliases_match_pyyaml():
    data, _ = loader.read_yaml(EDGE_CASES)
    assert data["bools"] == [True, False, True, False, True] and data["quoted"] == "yes"
    assert data["date"] == dt.date(2024, 2, 29) and data[200] == "int key"
    assert data["anchors"]["copy"] is data["anchors"]["base"]           # one object, as PyYAML builds
    assert data["anchors"]["merged"] == {"a": 1, "b": "over"}
    assert data["set"] == {"a", "b"} and data["omap"] == [("x", 1), ("y", 2)]


REFUSED = [
    ("a: !!python/object:os.system {}\n", "could not determine a constructor"),
    ("a: !custom 1\n", "could not determine a constructor"),
    ("? [a, b]\n: 1\n", "unhashable"),
    ("a: [1, 2\nb: 3\n", "expected"),
    ("a: 1\n---\nb: 2\n", "single document"),
]


@pytest.mark.parametrize("text, problem", REFUSED)
def test_refuses_what_safe_load_refuses(text, problem):
    with pytest.raises(yaml.YAMLError) as ours:
        loader.read_yaml(text)
    with pytest.raises(yaml.YAMLError) as theirs:
        yaml.safe_load(text)
    assert type(ours.value) is type(theirs.value) and problem in str(ours.value)
    if isinstance(theirs.value, yaml.MarkedYAMLError) and theirs.value.problem_mark is not None:
        assert ours.value.problem_mark.line == theirs.value.problem_mark.line


@pytest.mark.parametrize("text, problem", REFUSED)
def test_a_refused_document_is_reported_as_file_line_reason(text, problem):
    with pytest.raises(yaml.MarkedYAMLError) as theirs:
        yaml.safe_load(text)
    mark = theirs.value.problem_mark or theirs.value.context_mark
    with pytest.raises(DictionaryError) as ours:
        loader.parse(text, "refused.yaml")
    (issue,) = ours.value.issues
    assert issue.line == mark.line + 1
    assert str(issue).startswith(f"refused.yaml:{mark.line + 1}: YAML syntax:")


def test_line_map_names_every_key():
    text = "a:\n  b: 1\n  c:\n    - x\n    - d: 2\n"
    lines = loader.key_lines(text)
    assert lines == {("a",): 1, ("a", "b"): 2, ("a", "c"): 3, ("a", "c", 0): 4, ("a", "c", 1): 5,
                     ("a", "c", 1, "d"): 5}
    assert loader.key_lines("a: [") == {}


def test_loaded_dictionary_finds_lines_lazily():
    loader.clear_cache()
    loaded = loader.load_shipped("pfsense")
    assert loaded._lines is None                                         # not computed on a good load
    line = loaded.line_of(("services", "Firewall", "create", "body"))
    assert loaded.text.splitlines()[line - 1].strip().startswith("body:")
