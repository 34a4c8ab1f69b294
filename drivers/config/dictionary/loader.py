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
import re
import importlib.resources
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import yaml
from pydantic import ValidationError
from yaml.nodes import MappingNode, Node, SequenceNode

from . import placeholders, render
from .errors import DictionaryError, Issue
from .model import Call, Dictionary, Operation, Param, Poll

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

    @property
    def lines(self) -> dict[tuple, int]:
        """``{key path: line}``; composed from the text on first use (error paths only)."""
        if self._lines is None:
            self._lines = key_lines(self.text)
        return self._lines

    @property
    def name(self) -> str:
        return self.model.name or Path(self.source).stem

    def line_of(self, path: tuple) -> int:
        """The line of the deepest key of ``path`` that exists (1 if none)."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return 1

    def var_types(self) -> dict[str, str]:
        return {name: spec.type for name, spec in self.model.vars.items()}

    def placeholder_types(self) -> dict[str, str]:
        """Every name a template may use, with its type."""
        types = dict(placeholders.KNOWN)
        types.update(self.var_types())
        return types


def _loc_path(loc: tuple, lines: dict[tuple, int]) -> tuple:
    """Pydantic's error location, without union-member tags, as a key path."""
    path: tuple = ()
    for part in loc:
        if path + (part,) in lines:
            path = path + (part,)
    return path


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
    if not isinstance(data, dict):
        raise DictionaryError.one(source, 1, "", "the top level must be a mapping")
    try:
        model = Dictionary.model_validate(data)
    except ValidationError as exc:
        lines = key_lines(node)
        issues = []
        for err in exc.errors():
            path = _loc_path(err["loc"], lines)
            key = ".".join(str(p) for p in err["loc"] if not _is_union_tag(p))
            issues.append(Issue(source, lines.get(path, 1), key, err["msg"]))
        raise DictionaryError(_dedupe(issues)) from None
    loaded = LoadedDictionary(model, source, digest, text)
    issues = list(_check_names(loaded))
    if issues:
        raise DictionaryError(issues)
    with _CACHE_LOCK:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[digest] = loaded
    return loaded


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and (part in ("str", "int", "list[int]", "Param", "list[str]")
                                      or part.startswith(("function-", "nullable[", "union[")))


def _dedupe(issues: list[Issue]) -> list[Issue]:
    seen, out = set(), []
    for issue in issues:
        if (issue.line, issue.key) not in seen:
            seen.add((issue.line, issue.key))
            out.append(issue)
    return out


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
                yield Issue(loaded.source, loaded.line_of(path), ".".join(map(str, path)),
                            f"unknown placeholder ${{{name}}}; nfp fills in "
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
        key = ".".join(map(str, path))
        allowed = delete_known if "delete" in path[:3] or path[:1] == ("commit",) else known
        try:
            if context == "when":
                render.compile_condition(source)
                continue
            render.compile_template(context, source)
            unknown = render.names_in(source) - allowed
            if unknown:
                issues.append(Issue(loaded.source, loaded.line_of(path), key,
                                    f"unknown placeholder(s): {', '.join(sorted(unknown))}"))
        except jinja2.TemplateSyntaxError as exc:
            issues.append(Issue(loaded.source, loaded.line_of(path) + max(exc.lineno - 1, 0), key,
                                f"template syntax: {exc.message}"))
    fmt = loaded.model.access.response_format
    for path, expr in _paths(loaded.model):
        try:
            mapping.compile_path(fmt, expr)
        except ValueError as exc:
            issues.append(Issue(loaded.source, loaded.line_of(path), ".".join(map(str, path)), str(exc)))
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


def validate_file(path: str | Path) -> list[Issue]:
    """Every problem in a dictionary file (empty list: valid). For the CLI."""
    try:
        loaded = load_file(path)
    except DictionaryError as exc:
        return exc.issues
    return deep_check(loaded)


def clear_cache() -> None:
    """Forget parsed dictionaries (tests, benchmarks)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def cached(text: str) -> Optional[LoadedDictionary]:
    return _CACHE.get(hashlib.sha256(text.encode()).hexdigest())
