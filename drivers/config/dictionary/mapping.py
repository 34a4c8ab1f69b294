"""Response mapping: success, error, id and list extraction from vendor answers.

JSON answers use JSONPath (jsonpath-ng), XML answers XPath (lxml), CLI output
regular expressions. Pure functions over already-received answers.
"""
from __future__ import annotations

import functools
import json
import re
from typing import Any, Optional

from jsonpath_ng.ext import parse as jsonpath_parse
from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError
from lxml import etree

from .errors import VendorError
from .model import ResponseMapping

_XML_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)


@functools.lru_cache(maxsize=2048)
def compile_path(fmt: str, expr: str):
    """A compiled JSONPath (json) or XPath (xml); ValueError on bad syntax."""
    if fmt == "json":
        try:
            return jsonpath_parse(expr)
        except (JsonPathLexerError, JsonPathParserError, Exception) as exc:
            raise ValueError(f"invalid JSONPath {expr!r}: {exc}") from None
    try:
        return etree.XPath(expr)
    except etree.XPathSyntaxError as exc:
        raise ValueError(f"invalid XPath {expr!r}: {exc}") from None


def parse_document(fmt: str, content: bytes) -> Any:
    """The answer body as JSON data or an lxml element; None if it is neither."""
    if not content:
        return None
    try:
        if fmt == "json":
            return json.loads(content)
        return etree.fromstring(content, _XML_PARSER)
    except (ValueError, etree.XMLSyntaxError):
        return None


def _scalar(value: Any) -> Any:
    if isinstance(value, etree._Element):
        return (value.text or "").strip()
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, str):
        return str(value)  # drop lxml's smart-string back-reference
    return value


_SIMPLE_JSON = re.compile(r"^\$(?:\.[A-Za-z_][A-Za-z0-9_-]*)+$")


@functools.lru_cache(maxsize=2048)
def _simple_keys(expr: str) -> Optional[tuple[str, ...]]:
    """``$.a.b`` as ``("a", "b")``; None for anything jsonpath must evaluate."""
    return tuple(expr[2:].split(".")) if _SIMPLE_JSON.match(expr) else None


def find(fmt: str, doc: Any, expr: str) -> list[Any]:
    """Every match of ``expr`` in ``doc`` (raw: elements stay elements)."""
    if doc is None:
        return []
    if fmt == "json":
        keys = _simple_keys(expr)
        if keys is not None:
            # Plain member paths (most item paths of a listing) are dictionary
            # lookups: jsonpath_ng costs ~20 us each, which made reading back a
            # 1,000-rule listing cost more than pushing the rules.
            for key in keys:
                if not isinstance(doc, dict) or key not in doc:
                    return []
                doc = doc[key]
            return [doc]
        return [m.value for m in compile_path(fmt, expr).find(doc)]
    compiled = compile_path(fmt, expr)
    result = compiled(doc)
    return result if isinstance(result, list) else [result]


def first(fmt: str, doc: Any, expr: Optional[str]) -> Any:
    """The first match as a scalar (element text for XML), or None."""
    if not expr:
        return None
    matches = find(fmt, doc, expr)
    return _scalar(matches[0]) if matches else None


def check_http(rm: ResponseMapping, fmt: str, status: int, doc: Any, text: str, what: str,
               codes: Optional[dict[str, str]] = None, done_kinds: frozenset = frozenset()) -> bool:
    """Raise VendorError unless the answer is a success. Return True if it was a
    tolerated error (already exists / not found), False for a plain success.
    ``codes`` (the dictionary's ``errorCodes``) names the error's kind by vendor code
    or HTTP status; an error of a kind in ``done_kinds`` is tolerated."""
    ok = status in rm.success_codes if rm.success_codes else 200 <= status < 300
    if ok and rm.success_path:
        ok = str(first(fmt, doc, rm.success_path)) == str(rm.success_value)
    if ok and rm.success_pattern:
        ok = _regex(rm.success_pattern).search(text or "") is not None
    if ok:
        return False
    code = first(fmt, doc, rm.error_code_path)
    code = None if code is None else str(code)
    if (code is not None and code in rm.tolerate) or str(status) in rm.tolerate:
        return True
    kind = (codes or {}).get(code) if code is not None else None
    kind = kind or (codes or {}).get(str(status))
    if kind is not None and kind in done_kinds:
        return True
    message = first(fmt, doc, rm.error_path) if rm.error_path else None
    if message is None or message == "":
        message = _snippet(text)
    detail = ", ".join(p for p in (f"vendor code {code}" if code is not None else "", kind or "") if p)
    detail = f" ({detail})" if detail else ""
    raise VendorError(f"{what}: device answered HTTP {status}{detail}: {message}",
                      code=code, status=status, kind=kind)


def _snippet(text: str, limit: int = 200) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[:limit] + "..."


def extract_id(rm: ResponseMapping, fmt: str, doc: Any) -> Optional[str]:
    """The new object's id from ``idPath`` (as a string), or None."""
    value = first(fmt, doc, rm.id_path)
    return None if value is None or value == "" else str(value)


def extract_list(rm: ResponseMapping, fmt: str, doc: Any) -> list[dict[str, Any]]:
    """The listed objects, each as ``{id, ref?, key?, <field>...}`` from the item paths."""
    if not rm.list_path:
        return []
    found = find(fmt, doc, rm.list_path)
    elements = found[0] if fmt == "json" and len(found) == 1 and isinstance(found[0], list) else found
    items = []
    for element in elements:
        item: dict[str, Any] = {}
        for key, expr in rm.item.items():
            values = [_scalar(v) for v in find(fmt, element, expr)]
            item[key[:-4]] = (values[0] if len(values) == 1 else values) if values else None
        if item.get("id") is not None:
            item["id"] = str(item["id"])
            items.append(item)
    return items


# -- CLI ------------------------------------------------------------------------

@functools.lru_cache(maxsize=1024)
def _regex(pattern: str) -> re.Pattern:
    return re.compile(pattern, re.M)


def check_cli(rm: ResponseMapping, global_errors: list[str], command: str, output: str,
              codes: Optional[dict[str, str]] = None, done_kinds: frozenset = frozenset()) -> bool:
    """Raise VendorError if ``output`` matches an error pattern that is not tolerated;
    return True for a tolerated error, False for success. ``codes`` maps output
    patterns to nfp error kinds (the dictionary's ``errorCodes``); an output of a
    kind in ``done_kinds`` is tolerated, any other is an error of that kind."""
    for pattern in rm.tolerate:
        if _regex(pattern).search(output):
            return True
    for pattern, kind in (codes or {}).items():
        if _code_regex(pattern).search(output):
            if kind in done_kinds:
                return True
            raise VendorError(f"device refused `{_verb(command)}` ({kind}): {_snippet(output)}", kind=kind)
    for pattern in list(rm.error_patterns) + list(global_errors):
        if _regex(pattern).search(output):
            raise VendorError(f"device refused `{_verb(command)}`: {_snippet(output)}")
    if rm.success_pattern and not _regex(rm.success_pattern).search(output):
        raise VendorError(f"device did not confirm `{_verb(command)}`: {_snippet(output)}")
    return False


@functools.lru_cache(maxsize=1024)
def _code_regex(pattern: str) -> re.Pattern:
    """An ``errorCodes`` key as a regex; a key that is no valid regex matches literally."""
    try:
        return re.compile(pattern, re.M)
    except re.error:
        return re.compile(re.escape(pattern), re.M)


def check_output(success: Optional[str], error: Optional[str], what: str, output: str) -> None:
    """The whole answer of an operation (seed 000's ``successPattern`` and error
    pattern): raise VendorError if it lacks ``success`` or matches ``error``."""
    if error and _regex(error).search(output or ""):
        raise VendorError(f"{what}: the device reported an error: {_snippet(output)}")
    if success and not _regex(success).search(output or ""):
        raise VendorError(f"{what}: the device did not confirm (no match for {success!r}): {_snippet(output)}")


def _verb(command: str) -> str:
    words = command.split()
    return " ".join(words[:6]) + (" ..." if len(words) > 6 else "")


def extract_cli_list(rm: ResponseMapping, output: str) -> list[dict[str, Any]]:
    """Items from CLI output: each ``listPatterns`` match with an ``id`` group adds
    its named groups to the item with that id."""
    items: dict[str, dict[str, Any]] = {}
    for pattern in rm.list_patterns:
        for match in _regex(pattern).finditer(output):
            groups = {k: v for k, v in match.groupdict().items() if v is not None}
            if "id" in groups:
                items.setdefault(groups["id"], {"id": groups["id"]}).update(groups)
    return list(items.values())
