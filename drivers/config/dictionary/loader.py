"""Loading dictionaries: YAML to a validated :class:`LoadedDictionary`, errors with file:line:key.

Parsing is cached by content hash, so each process parses a dictionary once.
:func:`parse` does the fast checks every load needs (YAML, schema, placeholder
names, variable types); :func:`deep_check` also compiles every template and
path expression, as ``nfp dictionary validate`` does. YAML is PyYAML's safe
schema on libyaml (:func:`read_yaml`); the line of every key comes from the
composed nodes' marks (:func:`key_lines`), worked out only when a problem has
to be reported.
"""
from __future__ import annotations

import hashlib
import importlib.resources
import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from . import placeholders, render, seed
from .errors import DictionaryError, Issue
from .model import SERVICE_NAMES, Call, Dictionary, Operation, Param, Poll

LOG = logging.getLogger(__name__)

_CACHE: dict[str, "LoadedDictionary"] = {}
_CACHE_LOCK = threading.Lock()
_CACHE_MAX = 256
#: libyaml's parser and composer when PyYAML was built with it; the schema is the safe one either way
_YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(text: str) -> tuple[Any, Optional[Node]]:
    """One YAML document as ``(data, root node)``; ``(None, None)`` when empty.

    The data is exactly ``yaml.safe_load``'s, and so are the errors it raises
    (``yaml.MarkedYAMLError`` with the line for syntax errors and refused tags).
    The node is kept for :func:`key_lines` on the error path."""
    reader = _YamlLoader(text)
    try:
        node = reader.get_single_node()
        if node is None:
            return None, None
        return reader.construct_document(node), node
    finally:
        reader.dispose()


def key_lines(source: "str | Node | None") -> dict[tuple, int]:
    """``{key path: 1-based line}`` of every mapping key and sequence item, read
    from the nodes' start marks. ``source`` is YAML text (composed here; ``{}`` if
    it does not parse) or a node from :func:`read_yaml`."""
    if isinstance(source, str):
        try:
            source = yaml.compose(source, Loader=_YamlLoader)
        except yaml.YAMLError:
            return {}
    lines: dict[tuple, int] = {}
    stack: list[tuple[tuple, Node]] = [((), source)] if source is not None else []
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


@dataclass
class LoadedDictionary:
    """A validated dictionary with where it came from and the line of every key."""

    model: Dictionary
    source: str
    sha256: str
    text: str
    _lines: Optional[dict[tuple, int]] = field(repr=False, default=None)
    #: where keys the seed format spells differently are in the file (:mod:`.seed`)
    renames: seed.Renames = field(repr=False, default_factory=seed.Renames)
    #: unknown keys (ignored); ``nfp dictionary validate --strict`` rejects them
    warnings: list[Issue] = field(default_factory=list)

    @property
    def lines(self) -> dict[tuple, int]:
        """``{key path: line}``; composed from the text on first use (error paths only)."""
        if self._lines is None:
            self._lines = key_lines(self.text)
        return self._lines

    @property
    def name(self) -> str:
        """The vendor it serves: ``name:``, else the file name without ``-dictionary``."""
        return self.model.name or vendor_of(self.source)

    def line_of(self, path: tuple) -> int:
        """The line of the deepest key of ``path`` (a path into the model) that exists (1 if none)."""
        path = self.renames.original(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return 1

    def issue(self, path: tuple, message: str, line_offset: int = 0) -> Issue:
        """An issue at ``path`` (into the model), named as the author wrote it."""
        return Issue(self.source, self.line_of(path) + line_offset,
                     seed.original_key(self.renames, path), message)

    def var_types(self) -> dict[str, str]:
        return {name: spec.type for name, spec in self.model.vars.items()}

    def placeholder_types(self) -> dict[str, str]:
        """Every name a template may use, with its type."""
        types = dict(placeholders.KNOWN)
        types.update(self.var_types())
        return types


def _lazy_lines(node: Optional[Node]):
    """A function giving :func:`key_lines` of ``node``, worked out on first call."""
    memo: list[dict[tuple, int]] = []

    def lines() -> dict[tuple, int]:
        if not memo:
            memo.append(key_lines(node))
        return memo[0]
    return lines


def vendor_of(source: str) -> str:
    """The vendor a dictionary file serves by its name: ``acme.yaml`` and
    ``acme-dictionary.yaml`` both serve ``acme``."""
    stem = Path(source.split(":", 1)[-1] if source.startswith("db:") else source).stem
    for suffix in ("-dictionary", "_dictionary"):
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def parse(text: str, source: str = "<string>") -> LoadedDictionary:
    """Parse and validate dictionary ``text``; raise DictionaryError naming file:line:key."""
    digest = hashlib.sha256(text.encode()).hexdigest()
    cached = _CACHE.get(digest)
    if cached is not None and cached.source == source:
        return cached
    try:
        data, node = read_yaml(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise DictionaryError.one(source, (mark.line + 1) if mark else 1, "",
                                  f"YAML syntax: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise DictionaryError.one(source, 1, "", f"YAML: {exc}") from None
    lines = _lazy_lines(node)
    seed.check_format(data, source, lines)
    data, renames = seed.normalise(data, source, lines)
    model, warnings = seed.validate(data, source, lines, renames)
    loaded = LoadedDictionary(model, source, digest, text, renames=renames, warnings=warnings)
    issues = list(_check_names(loaded))
    if issues:
        raise DictionaryError(issues, warnings)
    for warning in warnings:
        LOG.warning("dictionary %s", warning)
    with _CACHE_LOCK:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[digest] = loaded
    return loaded


def load_file(path: str | Path) -> LoadedDictionary:
    """Load a dictionary file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise DictionaryError.one(str(path), 1, "", f"cannot read: {exc.strerror}") from None
    return parse(text, str(path))


def shipped_names() -> list[str]:
    """Vendors whose dictionaries ship in ``nfp.dictionaries``."""
    root = importlib.resources.files("nfp.dictionaries")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_shipped(vendor: str) -> LoadedDictionary:
    """The dictionary nfp ships for ``vendor``."""
    resource = importlib.resources.files("nfp.dictionaries") / f"{vendor}.yaml"
    if not resource.is_file():
        raise DictionaryError.one(f"{vendor}.yaml", 1, "",
                                  f"no dictionary ships for vendor {vendor!r} "
                                  f"(shipped: {', '.join(shipped_names())})")
    return parse(resource.read_text(), f"nfp/dictionaries/{vendor}.yaml")


# -- checks ---------------------------------------------------------------------------

def templates(model: Dictionary) -> Iterator[tuple[tuple, str, str]]:
    """Every template in the dictionary: (key path, context, source)."""
    for sname, service in model.services.items():
        for opname in ("create", "delete", "update", "list"):
            op = getattr(service, opname)
            if op is not None:
                yield from _op_templates(("services", sname, opname), op)
    if model.commit is not None:
        yield from _op_templates(("commit",), model.commit)


def _op_templates(path: tuple, op: Operation) -> Iterator[tuple[tuple, str, str]]:
    if op.external_id:
        yield path + ("externalId",), "text", op.external_id
    if op.steps:
        for index, call in enumerate(op.steps):
            yield from _call_templates(path + ("steps", index), call)
    else:
        yield from _call_templates(path, op)
    if op.poll is not None:
        yield from _call_templates(path + ("poll",), op.poll)


def _call_templates(path: tuple, call: Call) -> Iterator[tuple[tuple, str, str]]:
    if call.when:
        yield path + ("when",), "when", call.when
    if call.endpoint:
        yield path + ("endpoint",), "url", call.endpoint
    if call.lookup is not None:
        yield path + ("lookup", "endpoint"), "url", call.lookup.endpoint
        yield path + ("lookup", "equals"), "text", call.lookup.equals
    for section in ("query", "form"):
        for name, spec in getattr(call, section).items():
            if isinstance(spec, Param):
                yield path + (section, name, "value"), spec.context, spec.value
            else:
                yield path + (section, name), "text", spec
    if call.body is not None:
        yield path + ("body",), call.content_format(), call.body
    if call.commands is not None:
        yield path + ("commands",), "cli", call.command_template


def _check_names(loaded: LoadedDictionary) -> Iterator[Issue]:
    model = loaded.model
    for name in SERVICE_NAMES:
        service = model.services.get(name)
        if service is not None and (service.create is None or service.delete is None):
            yield loaded.issue(("services", name), "a service needs at least create and delete")
    for name, spec in model.vars.items():
        path = ("vars", name)
        if spec.type not in placeholders.TYPES:
            yield Issue(loaded.source, loaded.line_of(path + ("type",)), "vars." + name + ".type",
                        f"unknown type {spec.type!r}; expected one of {sorted(placeholders.TYPES)}")
        elif name in placeholders.KNOWN:
            yield Issue(loaded.source, loaded.line_of(path), "vars." + name,
                        f"{name!r} is one of nfp's own placeholders; choose another name")
        else:
            try:
                placeholders.check(name, spec.type, spec.default)
            except ValueError as exc:
                yield Issue(loaded.source, loaded.line_of(path + ("default",)),
                            "vars." + name + ".default", str(exc))
    known = loaded.placeholder_types()
    for path, _context, source in templates(model):
        bound = set(_BOUND.findall(source))
        for name in render.PLACEHOLDER.findall(source):
            if name not in known and name not in _LOOP_NAMES and name not in bound:
                yield loaded.issue(path, f"unknown placeholder ${{{name}}}; nfp fills in "
                                         f"{', '.join(sorted(placeholders.KNOWN))} and the dictionary's vars")


#: names a template binds itself: {% set x = ... %}, {% for x in ... %}
_BOUND = re.compile(r"\{%-?\s*(?:set|for)\s+([A-Za-z_][A-Za-z0-9_]*)")
#: names Jinja binds itself inside templates (loop variables used as ${m.address})
_LOOP_NAMES = {"m", "member", "loop", "item"}


def deep_check(loaded: LoadedDictionary) -> list[Issue]:
    """Compile every template, condition, JSONPath, XPath and regex; return the problems."""
    import jinja2

    from . import mapping, operations
    issues: list[Issue] = []
    known = set(loaded.placeholder_types()) | _LOOP_NAMES
    delete_known = set(operations.DELETE_NAMES) | set(loaded.var_types()) | _LOOP_NAMES
    for path, context, source in templates(loaded.model):
        allowed = delete_known if "delete" in path[:3] or path[:1] == ("commit",) else known
        try:
            if context == "when":
                render.compile_condition(source)
                continue
            render.compile_template(context, source)
            unknown = render.names_in(source) - allowed
            if unknown:
                issues.append(loaded.issue(path, f"unknown placeholder(s): {', '.join(sorted(unknown))}"))
        except jinja2.TemplateSyntaxError as exc:
            issues.append(loaded.issue(path, f"template syntax: {exc.message}", max(exc.lineno - 1, 0)))
    fmt = loaded.model.access.response_format
    for path, expr in _paths(loaded.model):
        try:
            mapping.compile_path(fmt, expr)
        except ValueError as exc:
            issues.append(loaded.issue(path, str(exc)))
    return issues


def _paths(model: Dictionary) -> Iterator[tuple[tuple, str]]:
    def from_call(path: tuple, call: Call):
        rm = call.response_mapping
        for name in ("success_path", "error_path", "error_code_path", "id_path", "list_path"):
            value = getattr(rm, name)
            if value:
                yield path + ("responseMapping", _camel(name)), value
        for key, value in rm.item.items():
            yield path + ("responseMapping", "item", key), value
        if call.lookup is not None:
            for name in ("list_path", "match_path", "ref_path"):
                yield path + ("lookup", _camel(name)), getattr(call.lookup, name)
        if isinstance(call, Poll):
            for name in ("until_path", "ok_path"):
                if getattr(call, name):
                    yield path + (_camel(name),), getattr(call, name)

    def from_op(path: tuple, op: Operation):
        if op.steps:
            for index, call in enumerate(op.steps):
                yield from from_call(path + ("steps", index), call)
        else:
            yield from from_call(path, op)
        if op.poll is not None:
            yield from from_call(path + ("poll",), op.poll)

    for sname, service in model.services.items():
        for opname in ("create", "delete", "update", "list"):
            op = getattr(service, opname)
            if op is not None:
                yield from from_op(("services", sname, opname), op)
    if model.commit is not None:
        yield from from_op(("commit",), model.commit)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def validate_file(path: str | Path, strict: bool = False) -> tuple[list[Issue], list[Issue]]:
    """``(problems, warnings)`` of a dictionary file; no problems means valid. With
    ``strict`` the warnings (unknown keys) count as problems. For the CLI."""
    try:
        loaded = load_file(path)
    except DictionaryError as exc:
        return (exc.issues + exc.warnings, []) if strict else (exc.issues, exc.warnings)
    issues = deep_check(loaded)
    return (issues + loaded.warnings, []) if strict else (issues, loaded.warnings)


def clear_cache() -> None:
    """Forget parsed dictionaries (tests, benchmarks)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def cached(text: str) -> Optional[LoadedDictionary]:
    return _CACHE.get(hashlib.sha256(text.encode()).hexdigest())
