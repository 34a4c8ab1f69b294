"""The oslo.messaging wire format, as pure functions.

Every message is a JSON object ``{"oslo.version": "2.0", "oslo.message": "<JSON
string>"}``: the inner message is encoded a second time, as a string. Field order
follows oslo's so that encoded bytes match captured oslo bytes exactly (see
``tests/fixtures/oslo_wire_probe.json``). The reference is
``reference/messaging.md`` part A.

Nothing here logs: bodies carry ``_context_auth_token`` and device secrets.
"""
from __future__ import annotations

import datetime as _dt
import decimal
import json
import re
import traceback
import uuid
from typing import Any, Mapping, Optional, Union

from nfp import jsonfast
from nfp.rpc import inflate
from nfp.rpc.types import IncomingRequest

#: the only envelope version oslo emits since 2013; minor versions above 0 are refused like oslo does
ENVELOPE_VERSION = "2.0"
VERSION_KEY = "oslo.version"
MESSAGE_KEY = "oslo.message"
CONTEXT_PREFIX = "_context_"
#: oslo strips this suffix from re-raised remote exceptions (``common._REMOTE_POSTFIX``)
REMOTE_POSTFIX = "_Remote"
#: frames of traceback sent with a failure; enough to locate it, short enough to leak little
TRACEBACK_FRAMES = 3

_VERSION_RE = re.compile(r"^\d+\.\d+(\.\d+)?$")
_PRIORITIES = ("audit", "debug", "info", "warn", "warning", "error", "critical", "sample")

Raw = Union[bytes, bytearray, str, Mapping[str, Any]]


class CodecError(ValueError):
    """A message is malformed. ``field`` names the offending field (dotted path)."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        # oslo clients rebuild allowed remote exceptions as klass(*args, **kwargs)
        self.kwargs = {"field": field, "reason": reason}


# -- JSON ---------------------------------------------------------------------

def to_primitive(value: Any) -> Any:
    """``json.dumps`` default: what oslo's ``jsonutils.to_primitive`` does for the
    types nfp returns (datetimes as ``2024-01-02T03:04:05.000000``)."""
    if isinstance(value, _dt.datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.%f")
    if isinstance(value, (_dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if hasattr(value, "model_dump"):  # pydantic models
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(obj: Any) -> str:
    """JSON with oslo's separators and :func:`to_primitive` for other types."""
    return json.dumps(obj, default=to_primitive)


# -- envelope -------------------------------------------------------------------

def wrap(message: Mapping[str, Any]) -> str:
    """The 2.0 envelope around ``message``, as the JSON text that goes on the wire."""
    return json.dumps({VERSION_KEY: ENVELOPE_VERSION, MESSAGE_KEY: dumps(message)})


def unwrap(body: Raw, headers: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """Decode a raw AMQP body into the inner message dict.

    Accepts bytes, text or an already-decoded dict; undoes kombu compression
    (header ``compression``, e.g. ``application/x-gzip`` = zlib); accepts the 2.0
    envelope and a bare 1.0 dict (oslo's ``deserialize_msg``).
    """
    data = _load_json(_decompress(body, headers or {}))
    if not isinstance(data, dict):
        raise CodecError("body", f"must be a JSON object, not {_kind(data)}")
    if VERSION_KEY not in data and MESSAGE_KEY not in data:
        return data  # oslo 1.0: the bare message
    _check_envelope_version(data.get(VERSION_KEY))
    inner = data.get(MESSAGE_KEY)
    if not isinstance(inner, str):
        raise CodecError(MESSAGE_KEY, f"must be a JSON string, not {_kind(inner)}")
    try:
        message = jsonfast.loads(inner)
    except ValueError as exc:
        raise CodecError(MESSAGE_KEY, f"invalid JSON: {exc.args[0] if exc.args else exc}") from None
    if not isinstance(message, dict):
        raise CodecError(MESSAGE_KEY, f"must encode a JSON object, not {_kind(message)}")
    return message


def _decompress(body: Raw, headers: Mapping[str, Any]) -> Raw:
    kind = headers.get("compression")
    if not kind:
        return body
    if isinstance(body, Mapping):
        raise CodecError("headers.compression", "set on a body that is not bytes")
    if isinstance(body, str):
        body = body.encode("latin-1", "replace")
    try:
        return inflate.inflate(bytes(body), str(kind))
    except KeyError:
        raise CodecError("headers.compression", f"unsupported compression {str(kind)[:64]!r}") from None
    except inflate.InflatedTooLarge as exc:
        raise CodecError("headers.compression", str(exc)) from None
    except Exception as exc:  # zlib.error, OSError, ValueError from the codecs
        raise CodecError("headers.compression", f"cannot decompress: {type(exc).__name__}") from None


def _load_json(body: Raw) -> Any:
    if isinstance(body, Mapping):
        return dict(body)
    if not isinstance(body, (bytes, bytearray, str)):
        raise CodecError("body", f"unsupported body type {type(body).__name__}")
    try:
        return jsonfast.loads(body)  # bytes are decoded as UTF-8 (RFC 8259)
    except UnicodeDecodeError:
        raise CodecError("body", "not UTF-8 text") from None
    except ValueError as exc:
        raise CodecError("body", f"invalid JSON: {exc.args[0] if exc.args else exc}") from None


def _check_envelope_version(version: Any) -> None:
    if not isinstance(version, str) or not _VERSION_RE.match(version):
        raise CodecError(VERSION_KEY, f"unsupported envelope version {str(version)[:32]!r}")
    major, minor = (int(p) for p in version.split(".")[:2])
    if major != 2 or minor > 0:
        raise CodecError(VERSION_KEY, f"unsupported envelope version {version!r}")


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean",
            type(None): "null"}.get(type(value), "number" if isinstance(value, (int, float))
                                    else type(value).__name__)


# -- requests -------------------------------------------------------------------

def decode_request(body: Raw, headers: Optional[Mapping[str, Any]] = None,
                   topic: str = "") -> IncomingRequest:
    """Decode one RPC request (call or cast) into an :class:`IncomingRequest`.

    ``_context_*`` keys become ``context`` (unknown ones included: oslo ≥ 18.3
    may add ``traceparent``); other unknown keys are ignored.
    """
    msg = unwrap(body, headers)
    method = msg.get("method")
    if not isinstance(method, str) or not method:
        raise CodecError("method", "must be a non-empty string")
    args = msg.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise CodecError("args", f"must be an object of keyword arguments, not {_kind(args)}")
    return IncomingRequest(
        method=method,
        args=args,
        context=_context_of(msg),
        namespace=_optional_str(msg, "namespace"),
        version=_version_of(msg),
        msg_id=_optional_str(msg, "_msg_id"),
        reply_q=_reply_q_of(msg),
        monitor_timeout=_monitor_timeout_of(msg),
        unique_id=_optional_str(msg, "_unique_id"),
        topic=topic,
    )


def encode_request(method: str, args: Mapping[str, Any], context: Optional[Mapping[str, Any]] = None,
                   *, namespace: Optional[str] = None, version: Optional[str] = None,
                   msg_id: Optional[str] = None, reply_q: Optional[str] = None,
                   monitor_timeout: Optional[float] = None, unique_id: Optional[str] = None) -> str:
    """Encode a call (``msg_id`` set) or a cast exactly as an oslo ``RPCClient`` does."""
    msg: dict[str, Any] = {"method": method, "args": dict(args)}
    if namespace is not None:
        msg["namespace"] = namespace
    if version is not None:
        msg["version"] = version
    if msg_id is not None:
        msg["_msg_id"] = msg_id
        msg["_reply_q"] = reply_q
        msg["_timeout"] = monitor_timeout
    msg["_unique_id"] = unique_id or uuid.uuid4().hex
    for key, value in (context or {}).items():
        msg[CONTEXT_PREFIX + key] = value
    return wrap(msg)


def reply_address(body: Raw, headers: Optional[Mapping[str, Any]] = None) -> Optional[tuple[str, str]]:
    """``(_msg_id, _reply_q)`` of a request that failed to decode, if both can be
    recovered, so that a caller waiting on a call still gets an error back."""
    try:
        msg = unwrap(body, headers)
    except CodecError:
        msg = _lenient_inner(body)
    if msg is not None:
        msg_id, reply_q = msg.get("_msg_id"), msg.get("_reply_q")
        if _is_address(msg_id) and _is_address(reply_q):
            return msg_id, reply_q
    return reply_address_in_text(body)


#: a msg_id or reply queue name nfp will answer to: what oslo generates (uuid hex,
#: ``reply_<hex>``) and other plain names; anything else is not trusted as an address
_ADDRESS_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,255}$")
_TEXT_ADDRESS = {key: re.compile(r'\\?"%s\\?"\s*:\s*\\?"([A-Za-z0-9_.:@-]{1,255})\\?"' % key)
                 for key in ("_msg_id", "_reply_q")}


def _is_address(value: Any) -> bool:
    return isinstance(value, str) and bool(_ADDRESS_RE.match(value))


def _lenient_inner(body: Raw) -> Optional[dict]:
    """The inner message of a body :func:`unwrap` refused for its envelope
    version, if it is otherwise readable."""
    try:
        data = body if isinstance(body, Mapping) else json.loads(body)
        inner = data.get(MESSAGE_KEY, data) if isinstance(data, Mapping) else None
        if isinstance(inner, str):
            inner = json.loads(inner)
        return inner if isinstance(inner, dict) else None
    except (ValueError, TypeError, RecursionError):
        return None


def reply_address_in_text(body: Raw) -> Optional[tuple[str, str]]:
    """``(_msg_id, _reply_q)`` found by pattern in a body that is not valid JSON
    (or a prefix of one), in plain or string-escaped form."""
    if isinstance(body, Mapping):
        return None
    text = body.decode("utf-8", "replace") if isinstance(body, (bytes, bytearray)) else str(body)
    found = [_TEXT_ADDRESS[key].search(text) for key in ("_msg_id", "_reply_q")]
    if found[0] and found[1]:
        return found[0].group(1), found[1].group(1)
    return None


def _context_of(msg: Mapping[str, Any]) -> dict[str, Any]:
    return {k[len(CONTEXT_PREFIX):]: v for k, v in msg.items() if k.startswith(CONTEXT_PREFIX)}


def _optional_str(msg: Mapping[str, Any], key: str) -> Optional[str]:
    value = msg.get(key)
    if value is not None and not isinstance(value, str):
        raise CodecError(key, f"must be a string, not {_kind(value)}")
    return value


def _version_of(msg: Mapping[str, Any]) -> str:
    version = msg.get("version")
    if version is None:
        return "1.0"  # oslo's default for a Target without version
    if not isinstance(version, str) or not _VERSION_RE.match(version):
        raise CodecError("version", "must look like '1.0' or '1.2.3'")
    return version


def _reply_q_of(msg: Mapping[str, Any]) -> Optional[str]:
    reply_q = _optional_str(msg, "_reply_q")
    if msg.get("_msg_id") is not None and not reply_q:
        raise CodecError("_reply_q", "required on a call (a message with _msg_id)")
    return reply_q


def _monitor_timeout_of(msg: Mapping[str, Any]) -> Optional[float]:
    value = msg.get("_timeout")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise CodecError("_timeout", "must be null or a non-negative number")
    return value


# -- replies --------------------------------------------------------------------

def encode_reply(msg_id: str, result: Any = None, failure: Optional[str] = None,
                 *, ending: bool = True, unique_id: Optional[str] = None) -> str:
    """The final reply to a call (``failure`` from :func:`serialize_failure`).

    Raises TypeError if ``result`` is not JSON-serializable, before anything is sent.
    """
    return wrap({"result": result, "failure": failure, "ending": ending,
                 "_msg_id": msg_id, "_unique_id": unique_id or uuid.uuid4().hex})


def encode_heartbeat(msg_id: str, unique_id: Optional[str] = None) -> str:
    """A call-monitor heartbeat: ``result`` null and ``ending`` false."""
    return encode_reply(msg_id, None, None, ending=False, unique_id=unique_id)


def decode_reply(body: Raw, headers: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """Decode a reply; checks the keys an oslo ``ReplyWaiter`` relies on."""
    msg = unwrap(body, headers)
    msg_id = msg.get("_msg_id")
    if not isinstance(msg_id, str):
        raise CodecError("_msg_id", "missing from reply")
    failure = msg.get("failure")
    if failure is not None and not isinstance(failure, str):
        raise CodecError("failure", f"must be null or a JSON string, not {_kind(failure)}")
    ending = msg.get("ending", True)
    return {"result": msg.get("result"), "failure": failure, "ending": bool(ending),
            "_msg_id": msg_id, "heartbeat": not ending and msg.get("result") is None}


# -- remote exceptions ----------------------------------------------------------

def serialize_failure(exc: BaseException, *, with_traceback: bool = True) -> str:
    """oslo's ``serialize_remote_exception``: the ``failure`` JSON *string*.

    The traceback is the last :data:`TRACEBACK_FRAMES` frames as
    ``traceback.format_exception`` prints them (file, line, source), never
    local variables.
    """
    cls, mod = type(exc).__name__, type(exc).__module__
    if cls.endswith(REMOTE_POSTFIX) and mod.endswith(REMOTE_POSTFIX):
        cls, mod = cls[: -len(REMOTE_POSTFIX)], mod[: -len(REMOTE_POSTFIX)]
    tb = (traceback.format_exception(type(exc), exc, exc.__traceback__,
                                     limit=-TRACEBACK_FRAMES, chain=False)
          if with_traceback and exc.__traceback__ is not None
          else traceback.format_exception_only(type(exc), exc))
    kwargs = getattr(exc, "kwargs", None)
    return failure_json(cls, mod, str(exc), tb=tb, args=exc.args,
                        kwargs=kwargs if isinstance(kwargs, dict) else {})


def failure_json(cls: str, module: str, message: str, *, tb: Optional[list[str]] = None,
                 args: Any = (), kwargs: Optional[Mapping[str, Any]] = None) -> str:
    """A ``failure`` string for an error that is not a live exception object, such
    as oslo's ``NoSuchMethod`` (module ``oslo_messaging.rpc.dispatcher``)."""
    data = {"class": cls, "module": module, "message": message,
            "tb": list(tb) if tb is not None else [f"{cls}: {message}\n"],
            "args": list(args), "kwargs": dict(kwargs or {})}
    # exception args may hold objects json cannot encode: fall back to their str()
    return json.dumps(data, default=lambda o: _safe_primitive(o))


def _safe_primitive(value: Any) -> Any:
    try:
        return to_primitive(value)
    except TypeError:
        return str(value)


def parse_failure(failure: str) -> dict[str, Any]:
    """The dict inside a ``failure`` string (class, module, message, tb, args, kwargs)."""
    try:
        data = json.loads(failure)
    except ValueError:
        raise CodecError("failure", "invalid JSON") from None
    if not isinstance(data, dict):
        raise CodecError("failure", "must encode an object")
    data.setdefault("tb", [])
    data.setdefault("message", "")
    data.setdefault("class", "Exception")
    return data


# -- notifications --------------------------------------------------------------

def encode_notification(event_type: str, payload: Any, *, publisher_id: str,
                        priority: str = "INFO", context: Optional[Mapping[str, Any]] = None,
                        message_id: Optional[str] = None, timestamp: Optional[_dt.datetime] = None,
                        unique_id: Optional[str] = None) -> str:
    """An oslo ``messagingv2`` notification (message_id with dashes, priority in
    upper case, naive-UTC ``str(datetime)`` timestamp)."""
    if priority.lower() not in _PRIORITIES:
        raise CodecError("priority", f"must be one of {', '.join(_PRIORITIES)}")
    if timestamp is None:
        timestamp = _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)
    msg: dict[str, Any] = {
        "message_id": message_id or str(uuid.uuid4()),
        "publisher_id": publisher_id,
        "event_type": event_type,
        "priority": priority.upper(),
        "payload": payload,
        "timestamp": str(timestamp),
        "_unique_id": unique_id or uuid.uuid4().hex,
    }
    for key, value in (context or {}).items():
        msg[CONTEXT_PREFIX + key] = value
    return wrap(msg)


def notification_routing_key(topic: str, priority: str) -> str:
    """``<topic>.<priority lower>``, e.g. ``notifications.info``."""
    return f"{topic}.{priority.lower()}"
