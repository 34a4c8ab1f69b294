"""YAML text to plain data, fast, with key lines computed only when asked for.

PyYAML's ``CSafeLoader`` parses and composes in C (libyaml) but resolves every
scalar's tag and constructs every object in Python through a generic, generator
based constructor; on a 300-line dictionary that Python part is half the time.
:func:`load` keeps libyaml's composer and the YAML 1.1 safe schema and replaces
the two Python parts with direct ones: a resolver without the (unused) path
resolvers, and a walk that builds plain ``str``/``dict``/``list`` nodes itself.
Everything else (ints, booleans, nulls, floats, timestamps, merge keys ``<<``,
``!!set``, ``!!omap``, unknown tags, which are refused) goes to PyYAML's own
``SafeConstructor``, so the result equals ``yaml.safe_load``'s.

Key lines (for error messages) come from :func:`line_map`, which composes the
text again; callers use it only on the error path.
"""
from __future__ import annotations

from typing import Any, Optional

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_STR = "tag:yaml.org,2002:str"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"
#: keys whose mapping PyYAML rewrites (merge ``<<``, value ``=``): left to it
_SPECIAL_KEYS = frozenset({"tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"})


def _resolver_table() -> tuple[dict[str, tuple], tuple]:
    implicit = Resolver.yaml_implicit_resolvers
    wildcard = tuple(implicit.get(None, ()))
    table = {first: tuple(resolvers) + wildcard for first, resolvers in implicit.items() if first is not None}
    return table, wildcard


class _FastLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """libyaml's parser and composer with the safe schema's implicit resolvers."""

    _table, _wildcard = _resolver_table()

    def resolve(self, kind, value, implicit):  # noqa: D401 - PyYAML's hook
        if kind is ScalarNode:
            if implicit[0]:
                for tag, regexp in self._table.get(value[:1], self._wildcard):
                    if regexp.match(value):
                        return tag
            return _STR
        return _SEQ if kind is SequenceNode else _MAP

    # the safe schema has no path resolvers: skip their bookkeeping per node
    def descend_resolver(self, current_node, current_index):
        return None

    def ascend_resolver(self):
        return None


def load(text: str) -> tuple[Any, Optional[Node]]:
    """Parse one YAML document: ``(data, root node)``; ``(None, None)`` when empty.

    Raises ``yaml.YAMLError`` (a ``MarkedYAMLError`` with the line for syntax
    errors and refused tags) exactly as ``yaml.safe_load`` would.
    """
    loader = _FastLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        return _Builder(loader).build(node), node
    finally:
        loader.dispose()


class _Builder:
    """Builds plain Python data from composed nodes; unusual nodes go to PyYAML."""

    def __init__(self, loader: _FastLoader):
        self._loader = loader
        #: collections already built, by node identity: aliases share one object
        self._done: dict[int, Any] = {}

    def build(self, node: Node) -> Any:
        kind = node.__class__
        if kind is ScalarNode:
            return node.value if node.tag == _STR else self._pyyaml(node)
        done = self._done.get(id(node))
        if done is not None:
            return done
        if kind is SequenceNode and node.tag == _SEQ:
            items: list = []
            self._done[id(node)] = items
            for child in node.value:
                items.append(self.build(child))
            return items
        if kind is MappingNode and node.tag == _MAP and not any(k.tag in _SPECIAL_KEYS for k, _ in node.value):
            mapping: dict = {}
            self._done[id(node)] = mapping
            for key_node, value_node in node.value:
                key = self.build(key_node)
                try:
                    hash(key)
                except TypeError:
                    raise ConstructorError("while constructing a mapping", node.start_mark,
                                           "found unhashable key", key_node.start_mark) from None
                mapping[key] = self.build(value_node)
            return mapping
        value = self._pyyaml(node)
        self._done[id(node)] = value
        return value

    def _pyyaml(self, node: Node) -> Any:
        return self._loader.construct_object(node, deep=True)


def line_map(node: Node) -> dict[tuple, int]:
    """``{key path: 1-based line}`` for every mapping key and sequence item under ``node``."""
    lines: dict[tuple, int] = {}
    stack: list[tuple[tuple, Node]] = [((), node)]
    while stack:
        path, current = stack.pop()
        if isinstance(current, MappingNode):
            for key_node, value_node in current.value:
                sub = path + (key_node.value,)
                lines[sub] = key_node.start_mark.line + 1
                stack.append((sub, value_node))
        elif isinstance(current, SequenceNode):
            for index, item in enumerate(current.value):
                sub = path + (index,)
                lines[sub] = item.start_mark.line + 1
                stack.append((sub, item))
    return lines


def line_map_of(text: str) -> dict[tuple, int]:
    """:func:`line_map` of ``text`` (composed again; for error messages only)."""
    loader = _FastLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.YAMLError:
        return {}
    finally:
        loader.dispose()
    return line_map(node) if node is not None else {}
