"""Rendering: typed values into templates, each value escaped for its context.

A template's context is fixed by the field it sits in: ``endpoint`` is a URL
(each value becomes one percent-encoded path segment or query value), ``body``
is JSON or XML, ``commands`` are CLI lines, a ``Param`` may be XML or an XPath
string literal. The escaper for that context is Jinja2's ``finalize`` hook, so
it runs on every ``${...}`` value and a template author cannot forget it.

After rendering, JSON and XML bodies are parsed: a value that tried to change
the structure and was not neutralised by escaping fails here, before anything
is sent.

Speed (one request renders in tens of microseconds): templates are compiled
once per process, each :class:`~.model.Call` is prepared once (its templates,
body format and headers, :func:`prepared`), the escapers take a fast path for
values that need no escaping, and the network filters parse each CIDR once.
"""
from __future__ import annotations

import functools
import json
import re
import shlex
import threading
import urllib.parse
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _json_string  # json.dumps' own C encoder
from typing import Any, Callable, Optional

import jinja2
from jinja2 import meta
from lxml import etree

from .errors import PlaceholderError
from .model import Call, Param
from .placeholders import network

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
#: characters escape_xml changes or refuses; a value without any is returned as is
_XML_SPECIAL = re.compile(r"[&<>\"'\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
#: RFC 3986 unreserved characters: what urllib.parse.quote(safe="") leaves alone
_URL_PLAIN = re.compile(r"[A-Za-z0-9_.~-]+")
_CLI_BAD = re.compile(r"[\x00-\x1f\x7f]")
#: a CLI line that rendered a missing value is dropped (optional settings)
_NO_VALUE = "\x00novalue\x00"
PLACEHOLDER = re.compile(r"\$\{\s*([A-Za-z_][A-Za-z0-9_]*)")


class Raw(str):
    """A filter's finished output (a JSON literal): not escaped again in JSON."""


class TemplateProblem(ValueError):
    """A template does not compile or render; ``where`` is its key path."""

    def __init__(self, where: str, message: str):
        super().__init__(f"{where}: {message}")
        self.where = where


# -- escapers: one per context ---------------------------------------------------

def escape_json(value: Any) -> str:
    """Inside a JSON string, or a JSON scalar literal for numbers, booleans, null."""
    if value.__class__ is str:  # the common case; exactly json.dumps(value)[1:-1]
        return _json_string(value)[1:-1]
    if isinstance(value, Raw):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return _json_string(str(value))[1:-1]


def escape_xml(value: Any) -> str:
    """XML text or attribute value: & < > " ' are entities; control characters refused."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value)
    if not _XML_SPECIAL.search(text):
        return text
    if _CONTROL.search(text):
        raise PlaceholderError("value", "contains characters XML cannot carry")
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&apos;"))


def escape_url(value: Any) -> str:
    """One URL path segment or query value: everything but unreserved characters is encoded."""
    if value is None:
        return ""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if text in (".", ".."):
        return text.replace(".", "%2E")
    if _URL_PLAIN.fullmatch(text):
        return text
    return urllib.parse.quote(text, safe="")


def escape_cli(value: Any) -> str:
    """One shell-style CLI argument (VyOS vbash): quoted, so ; $( ) | & are inert."""
    if value is None:
        return _NO_VALUE
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if _CLI_BAD.search(text):
        raise PlaceholderError("value", "contains control characters, which a CLI line cannot carry")
    return shlex.quote(text)


def escape_xpath(value: Any) -> str:
    """Inside an XPath string literal written with single quotes."""
    if value is None:
        return ""
    text = str(value)
    if "'" in text or _CONTROL.search(text):
        raise PlaceholderError("value", "cannot appear in an XPath string literal")
    return text


def escape_text(value: Any) -> str:
    """Plain text for a transport that encodes it itself (form fields, ids)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


ESCAPERS: dict[str, Callable[[Any], str]] = {
    "json": escape_json, "xml": escape_xml, "url": escape_url, "cli": escape_cli,
    "xpath": escape_xpath, "text": escape_text,
}


# -- filters -----------------------------------------------------------------------

def _f_json(value: Any) -> Raw:
    if value is None:
        return Raw("null")
    if value.__class__ is str:
        return Raw(_json_string(value))
    if value.__class__ is bool:
        return Raw("true" if value else "false")
    return Raw(json.dumps(value))


def _f_netmask(value: Any) -> Optional[str]:
    if value is None:
        return None
    address, _, _, mask = network(str(value))
    return f"{address} {mask}"


def _f_address(value: Any) -> Optional[str]:
    return None if value is None else network(str(value))[0]


def _f_prefixlen(value: Any) -> Optional[int]:
    return None if value is None else network(str(value))[1]


def _f_ports(value: Any, sep: str = "-") -> Optional[str]:
    return None if value is None else str(value).replace(":", sep)


def _f_host(value: Any) -> Optional[str]:
    """A /32 or /128 CIDR as a bare address; other CIDRs unchanged."""
    if value is None:
        return None
    address, prefix, longest, _ = network(str(value))
    return address if prefix == longest else f"{address}/{prefix}"


FILTERS = {"json": _f_json, "netmask": _f_netmask, "address": _f_address,
           "prefixlen": _f_prefixlen, "ports": _f_ports, "host": _f_host}


@functools.lru_cache(maxsize=None)
def environment(context: str) -> jinja2.Environment:
    """The Jinja2 environment of one context (its escaper is ``finalize``)."""
    escaper = ESCAPERS[context]
    env = jinja2.Environment(variable_start_string="${", variable_end_string="}",
                             undefined=jinja2.StrictUndefined, autoescape=False,
                             keep_trailing_newline=False, finalize=escaper)
    env.filters.update(FILTERS)
    return env


@functools.lru_cache(maxsize=4096)
def compile_template(context: str, source: str) -> Optional[jinja2.Template]:
    """Compile once per process; None for a template without placeholders."""
    if "${" not in source and "{%" not in source:
        return None
    template = environment(context).from_string(source)
    # Template.globals is a ChainMap: copied into each render, it costs more than the
    # render itself. Flattened once here (nfp never changes globals after start).
    template.nfp_globals = dict(template.globals)
    return template


@functools.lru_cache(maxsize=1024)
def compile_condition(source: str):
    return environment("text").compile_expression(source)


def names_in(source: str) -> set[str]:
    """Placeholders a template uses (Jinja's own analysis; for deep validation)."""
    return set(meta.find_undeclared_variables(environment("text").parse(source)))


def render(context: str, source: str, values: dict[str, Any], where: str = "template") -> str:
    """Render ``source`` in ``context`` with already type-checked ``values``."""
    try:
        template = compile_template(context, source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateProblem(where, f"line {exc.lineno} of the template: {exc.message}") from None
    if template is None:
        return source
    return _run(template, values, where)


def _run(template: jinja2.Template, values: dict[str, Any], where: str) -> str:
    """``template.render(values)`` without its two copies of the values and its
    traceback rewriting: one merged dict, shared with the render context."""
    try:
        context = template.new_context({**template.nfp_globals, **values}, shared=True)
        return "".join(template.root_render_func(context))
    except PlaceholderError as exc:
        raise PlaceholderError(where, exc.reason) from None
    except jinja2.UndefinedError as exc:
        raise TemplateProblem(where, str(exc)) from None
    except (TypeError, ValueError) as exc:
        raise TemplateProblem(where, f"cannot render: {exc}") from None


def condition(source: str, values: dict[str, Any], where: str) -> bool:
    """Evaluate a ``when`` expression."""
    try:
        return bool(compile_condition(source)(**values))
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateProblem(where, f"bad condition: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise TemplateProblem(where, str(exc)) from None


# -- requests ------------------------------------------------------------------------

@dataclass
class HttpRequest:
    """A rendered HTTP request; auth headers are added by the transport at send time."""

    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    data: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: Optional[bytes] = None
    timeout: Optional[float] = None


def _check_body(fmt: str, text: str, where: str) -> None:
    if fmt == "json":
        try:
            json.loads(text)
        except ValueError as exc:
            raise TemplateProblem(where, f"rendered body is not valid JSON ({exc.msg} at "
                                  f"char {exc.pos}); a value may have tried to change its structure") from None
    elif fmt == "xml":
        _check_xml(text, where)


_XML_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


def _check_xml(text: str, where: str) -> None:
    try:
        etree.fromstring(f"<nfp-root>{text}</nfp-root>".encode(), _XML_PARSER)
    except etree.XMLSyntaxError as exc:
        raise TemplateProblem(where, f"rendered XML is not well-formed: {exc}") from None


def _param(name: str, spec: Any, values: dict, where: str) -> str:
    if isinstance(spec, Param):
        text = render(spec.context, spec.value, values, f"{where}.{name}")
        if spec.context == "xml":
            _check_xml(text, f"{where}.{name}")
        elif spec.context == "json":
            _check_body("json", text, f"{where}.{name}")
        return text
    return render("text", spec, values, f"{where}.{name}")


_CONTENT_TYPES = {"json": "application/json", "xml": "application/xml", "text": "text/plain"}


@dataclass(frozen=True)
class PreparedCall:
    """What rendering an HTTP call needs that does not depend on the values."""

    #: compiled endpoint (None: no placeholders, use ``endpoint_text``)
    endpoint: Optional[jinja2.Template]
    endpoint_text: str
    #: compiled body (None: no body, or ``body_text`` has no placeholders)
    body: Optional[jinja2.Template]
    body_text: Optional[str]
    #: json, xml or text
    body_format: str
    #: the call's headers, with the Content-Type its body format implies
    headers: dict


_PREPARED: dict[int, tuple[Call, PreparedCall]] = {}
_PREPARED_LOCK = threading.Lock()
_PREPARED_MAX = 4096


def prepared(call: Call) -> Optional[PreparedCall]:
    """``call`` prepared for rendering, once per process (calls are immutable).
    None if a template does not compile: :func:`render` then reports it."""
    entry = _PREPARED.get(id(call))
    if entry is not None and entry[0] is call:
        return entry[1]
    try:
        endpoint = compile_template("url", call.endpoint or "")
        body = compile_template(call.content_format(), call.body) if call.body is not None else None
    except jinja2.TemplateSyntaxError:
        return None
    headers = dict(call.headers)
    fmt = call.content_format()
    if call.body is not None and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = _CONTENT_TYPES[fmt]
    prep = PreparedCall(endpoint, call.endpoint or "", body, call.body, fmt, headers)
    with _PREPARED_LOCK:
        if len(_PREPARED) >= _PREPARED_MAX:
            _PREPARED.clear()
        # the entry holds the call itself, so its id cannot be reused while cached
        _PREPARED[id(call)] = (call, prep)
    return prep


def render_http(call: Call, values: dict[str, Any], base_path: str = "",
                where: str = "call") -> HttpRequest:
    """Render an HTTP call. ``values`` must already be type-checked."""
    prep = prepared(call)
    if prep is None:
        return _render_http_slow(call, values, base_path, where)
    if prep.endpoint is None:
        path = base_path.rstrip("/") + prep.endpoint_text
    else:
        path = base_path.rstrip("/") + _run(prep.endpoint, values, where + ".endpoint")
    request = HttpRequest(method=call.method or "GET", path=path, headers=dict(prep.headers),
                          timeout=call.timeout)
    if call.query:
        for name, spec in call.query.items():
            request.params[name] = _param(name, spec, values, f"{where}.query")
    if call.form:
        for name, spec in call.form.items():
            request.data[name] = _param(name, spec, values, f"{where}.form")
    if prep.body_text is not None:
        text = prep.body_text if prep.body is None else _run(prep.body, values, where + ".body")
        _check_body(prep.body_format, text, where + ".body")
        request.body = text.encode()
    return request


def _render_http_slow(call: Call, values: dict[str, Any], base_path: str, where: str) -> HttpRequest:
    """render_http without preparation: reports template syntax errors with their place."""
    path = base_path.rstrip("/") + render("url", call.endpoint or "", values, f"{where}.endpoint")
    request = HttpRequest(method=call.method or "GET", path=path, headers=dict(call.headers),
                          timeout=call.timeout)
    for name, spec in call.query.items():
        request.params[name] = _param(name, spec, values, f"{where}.query")
    for name, spec in call.form.items():
        request.data[name] = _param(name, spec, values, f"{where}.form")
    if call.body is not None:
        fmt = call.content_format()
        text = render(fmt, call.body, values, f"{where}.body")
        _check_body(fmt, text, f"{where}.body")
        request.body = text.encode()
        if not any(k.lower() == "content-type" for k in request.headers):
            request.headers["Content-Type"] = _CONTENT_TYPES[fmt]
    return request


def render_cli(call: Call, values: dict[str, Any], where: str = "call") -> list[str]:
    """Render CLI lines; a line whose placeholder has no value is dropped."""
    text = render("cli", call.command_template, values, f"{where}.commands")
    return [line.strip() for line in text.splitlines()
            if line.strip() and _NO_VALUE not in line]
