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


def find(fmt: str, doc: Any, expr: str) -> list[Any]:
    """Every match of ``expr`` in ``doc`` (raw: elements stay elements)."""
    if doc is None:
        return []
    compiled = compile_path(fmt, expr)
    if fmt == "json":
        return [m.value for m in compiled.find(doc)]
    result = compiled(doc)
    return result if isinstance(result, list) else [result]


def first(fmt: str, doc: Any, expr: Optional[str]) -> Any:
    """The first match as a scalar (element text for XML), or None."""
    if not expr:
        return None
    matches = find(fmt, doc, expr)
    return _scalar(matches[0]) if matches else None


def check_http(rm: ResponseMapping, fmt: str, status: int, doc: Any, text: str, what: str) -> bool:
    """Raise VendorError unless the answer is a success. Return True if it was a
    tolerated error (already exists / not found), False for a plain success."""
    ok = status in rm.success_codes if rm.success_codes else 200 <= status < 300
    if ok and rm.success_path:
        ok = str(first(fmt, doc, rm.success_path)) == str(rm.success_value)
    if ok:
        return False
    code = first(fmt, doc, rm.error_code_path)
    code = None if code is None else str(code)
    if (code is not None and code in rm.tolerate) or str(status) in rm.tolerate:
        return True
    message = first(fmt, doc, rm.error_path) if rm.error_path else None
    if message is None or message == "":
        message = _snippet(text)
    detail = f" (vendor code {code})" if code is not None else ""
    raise VendorError(f"{what}: device answered HTTP {status}{detail}: {message}",
                      code=code, status=status)


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


def check_cli(rm: ResponseMapping, global_errors: list[str], command: str, output: str) -> bool:
    """Raise VendorError if ``output`` matches an error pattern that is not tolerated;
    return True for a tolerated error, False for success."""
    for pattern in rm.tolerate:
        if _regex(pattern).search(output):
            return True
    for pattern in list(rm.error_patterns) + list(global_errors):
        if _regex(pattern).search(output):
            raise VendorError(f"device refused `{_verb(command)}`: {_snippet(output)}")
    if rm.success_pattern and not _regex(rm.success_pattern).search(output):
        raise VendorError(f"device did not confirm `{_verb(command)}`: {_snippet(output)}")
    return False


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
