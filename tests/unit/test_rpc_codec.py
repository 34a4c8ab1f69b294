"""The oslo wire codec against real captured oslo bytes (tests/fixtures/oslo_wire_probe.json)."""
from __future__ import annotations

import datetime as dt
import json
import zlib
from pathlib import Path

import pytest

from nfp.rpc import codec
from nfp.rpc.codec import CodecError

PROBE = json.loads((Path(__file__).parent.parent / "fixtures" / "oslo_wire_probe.json").read_text())
CONTEXT = {"user": "u1", "project_id": "p1", "request_id": "req-123", "is_admin": False}


def _envelope(case: str) -> dict:
    body = dict(PROBE[case]["body"])
    body.pop("oslo.message(decoded)")
    return body


def _inner(case: str) -> dict:
    return PROBE[case]["body"]["oslo.message(decoded)"]


# -- golden vectors: our encoder produces oslo's exact bytes ----------------------

def test_cast_encodes_to_the_captured_oslo_bytes():
    inner = _inner("cast")
    wire = codec.encode_request("do_thing", inner["args"], CONTEXT, namespace="ns1",
                                version="1.3", unique_id=inner["_unique_id"])
    assert json.loads(wire) == _envelope("cast")
    assert json.loads(wire)["oslo.message"] == PROBE["cast"]["body"]["oslo.message"]


def test_call_encodes_to_the_captured_oslo_bytes():
    inner = _inner("call")
    wire = codec.encode_request("get_x", {"x": 5}, CONTEXT, namespace="ns1", version="1.3",
                                msg_id=inner["_msg_id"], reply_q=inner["_reply_q"],
                                monitor_timeout=3, unique_id=inner["_unique_id"])
    assert json.loads(wire)["oslo.message"] == PROBE["call"]["body"]["oslo.message"]


def test_datetime_args_encode_like_oslo_jsonutils():
    wire = codec.encode_request("do_thing", {"a": 1, "when": dt.datetime(2024, 1, 2, 3, 4, 5)},
                                CONTEXT, namespace="ns1", version="1.3",
                                unique_id=_inner("cast")["_unique_id"])
    assert json.loads(wire)["oslo.message"] == PROBE["cast"]["body"]["oslo.message"]


def test_notification_encodes_to_the_captured_oslo_bytes():
    inner = _inner("notification")
    wire = codec.encode_notification(
        "probe.thing.update", {"k": "v"}, publisher_id="probe.host1", priority="info",
        message_id=inner["message_id"], unique_id=inner["_unique_id"],
        timestamp=dt.datetime(2026, 11, 21, 13, 1, 10, 125414))
    assert json.loads(wire)["oslo.message"] == PROBE["notification"]["body"]["oslo.message"]
    assert codec.notification_routing_key("probe_notifications", "INFO") == \
        PROBE["notification"]["routing_key"]


def test_notification_defaults_have_oslo_shapes():
    msg = json.loads(json.loads(codec.encode_notification("a.b", {}, publisher_id="p"))["oslo.message"])
    assert len(msg["message_id"]) == 36 and msg["message_id"].count("-") == 4
    assert msg["priority"] == "INFO"
    parsed = dt.datetime.strptime(msg["timestamp"], "%Y-%m-%d %H:%M:%S.%f")
    assert abs((dt.datetime.utcnow() - parsed).total_seconds()) < 60
    with pytest.raises(CodecError) as err:
        codec.encode_notification("a.b", {}, publisher_id="p", priority="LOUD")
    assert err.value.field == "priority"


# -- decoding captured oslo messages -------------------------------------------------

@pytest.mark.parametrize("form", ["bytes", "str", "dict"])
def test_decodes_captured_call_in_any_body_form(form):
    envelope = _envelope("call")
    body = {"bytes": json.dumps(envelope).encode(), "str": json.dumps(envelope), "dict": envelope}[form]
    req = codec.decode_request(body, {}, topic="probe_topic")
    inner = _inner("call")
    assert (req.method, req.args, req.namespace, req.version) == ("get_x", {"x": 5}, "ns1", "1.3")
    assert (req.msg_id, req.reply_q, req.unique_id) == (inner["_msg_id"], inner["_reply_q"],
                                                        inner["_unique_id"])
    assert req.monitor_timeout == 3 and req.is_call and req.topic == "probe_topic"
    assert req.context == CONTEXT


def test_decodes_captured_casts_as_casts():
    for case in ("cast", "fanout_cast"):
        req = codec.decode_request(json.dumps(_envelope(case)))
        assert not req.is_call and req.reply_q is None and req.monitor_timeout is None
        assert req.args == _inner(case)["args"]


def test_unknown_context_keys_are_kept_and_unknown_fields_ignored():
    inner = dict(_inner("cast"), _context_traceparent="00-abc-def-01", future_field=[1])
    req = codec.decode_request(codec.wrap(inner))
    assert req.context["traceparent"] == "00-abc-def-01"
    assert "future_field" not in req.context


def test_bare_v1_message_is_accepted_and_defaults_apply():
    req = codec.decode_request(json.dumps({"method": "ping", "args": {"n": 1}}))
    assert (req.method, req.args, req.version, req.namespace) == ("ping", {"n": 1}, "1.0", None)
    assert codec.decode_request({"method": "ping"}).args == {}


def test_compressed_body_is_inflated_with_zlib():
    raw = json.dumps(_envelope("cast")).encode()
    req = codec.decode_request(zlib.compress(raw), {"compression": "application/x-gzip"})
    assert req.method == "do_thing"


# -- errors name the field -----------------------------------------------------------------

@pytest.mark.parametrize("body, headers, field", [
    (b"{not json", {}, "body"),
    (b"\xff\xfe", {}, "body"),
    (b"[1, 2]", {}, "body"),
    (json.dumps({"oslo.version": "3.0", "oslo.message": "{}"}), {}, "oslo.version"),
    (json.dumps({"oslo.version": "2.1", "oslo.message": "{}"}), {}, "oslo.version"),
    (json.dumps({"oslo.version": "2.0", "oslo.message": {"method": "x"}}), {}, "oslo.message"),
    (json.dumps({"oslo.version": "2.0", "oslo.message": "{oops"}), {}, "oslo.message"),
    (codec.wrap({"args": {}}), {}, "method"),
    (codec.wrap({"method": "m", "args": [1]}), {}, "args"),
    (codec.wrap({"method": "m", "version": "one"}), {}, "version"),
    (codec.wrap({"method": "m", "namespace": 5}), {}, "namespace"),
    (codec.wrap({"method": "m", "_msg_id": "abc"}), {}, "_reply_q"),
    (codec.wrap({"method": "m", "_msg_id": "a", "_reply_q": "r", "_timeout": "soon"}), {}, "_timeout"),
    (codec.wrap({"method": "m", "_msg_id": "a", "_reply_q": "r", "_timeout": True}), {}, "_timeout"),
    # NaN and infinities are not JSON: refused at the door, not stored as null
    (codec.wrap({"method": "m", "args": {"x": float("nan")}}), {}, "oslo.message"),
    (b'{"method": "m", "args": {"x": -Infinity}}', {}, "body"),
    (b'{"method": "m", "args": {"x": 1e999}}', {}, "body"),
    (b"xx", {"compression": "application/x-gzip"}, "headers.compression"),
    (b"xx", {"compression": "application/x-lzma-unknown"}, "headers.compression"),
])
def test_malformed_requests_raise_codec_error_naming_the_field(body, headers, field):
    with pytest.raises(CodecError) as err:
        codec.decode_request(body, headers)
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}: ")


def test_reply_address_is_recovered_from_a_request_that_fails_validation():
    body = codec.wrap({"method": "m", "args": "bad", "_msg_id": "m1", "_reply_q": "reply_1"})
    with pytest.raises(CodecError):
        codec.decode_request(body)
    assert codec.reply_address(body) == ("m1", "reply_1")
    assert codec.reply_address(b"garbage") is None
    assert codec.reply_address(codec.wrap({"method": "m"})) is None


# -- replies and heartbeats -------------------------------------------------------------------

def test_reply_has_oslo_keys_in_oslo_order():
    wire = codec.encode_reply("m1", {"x": 10}, unique_id="u1")
    outer = json.loads(wire)
    assert outer["oslo.version"] == "2.0"
    assert outer["oslo.message"] == ('{"result": {"x": 10}, "failure": null, "ending": true, '
                                     '"_msg_id": "m1", "_unique_id": "u1"}')
    assert codec.decode_reply(wire) == {"result": {"x": 10}, "failure": None, "ending": True,
                                        "_msg_id": "m1", "heartbeat": False}


def test_heartbeat_is_an_empty_non_ending_reply():
    msg = json.loads(json.loads(codec.encode_heartbeat("m1"))["oslo.message"])
    assert {k: msg[k] for k in ("result", "failure", "ending", "_msg_id")} == \
        {"result": None, "failure": None, "ending": False, "_msg_id": "m1"}
    assert codec.decode_reply(codec.encode_heartbeat("m1"))["heartbeat"] is True


def test_unserializable_result_fails_before_anything_is_sent():
    with pytest.raises(TypeError):
        codec.encode_reply("m1", object())


# -- remote exceptions ------------------------------------------------------------------------------

def _raise_with_secret_local():
    password = "s3cr3t-local-value"  # noqa: F841 - must never reach the wire
    raise ValueError("bad value")


def test_failure_is_a_json_string_with_oslo_fields_and_no_locals():
    try:
        _raise_with_secret_local()
    except ValueError as exc:
        failure = codec.serialize_failure(exc)
    assert isinstance(failure, str)
    data = json.loads(failure)
    assert set(data) == {"class", "module", "message", "tb", "args", "kwargs"}
    assert (data["class"], data["module"], data["message"]) == ("ValueError", "builtins", "bad value")
    assert data["args"] == ["bad value"] and data["kwargs"] == {}
    assert data["tb"][0].startswith("Traceback") and data["tb"][-1] == "ValueError: bad value\n"
    assert "s3cr3t-local-value" not in failure


def test_failure_carries_exception_kwargs_and_strips_remote_postfix():
    remote_cls = type("NodeLocked_Remote", (Exception,), {"__module__": "ironic.exc_Remote"})
    exc = remote_cls("node n1 locked")
    exc.kwargs = {"node": "n1"}
    data = json.loads(codec.serialize_failure(exc))
    assert (data["class"], data["module"], data["kwargs"]) == ("NodeLocked", "ironic.exc", {"node": "n1"})


def test_failure_with_unencodable_args_still_encodes():
    data = json.loads(codec.serialize_failure(RuntimeError(object())))
    assert data["class"] == "RuntimeError" and isinstance(data["args"][0], str)


def test_oslo_client_rebuilds_our_failures_like_its_own():
    common = pytest.importorskip("oslo_messaging._drivers.common")
    try:
        _raise_with_secret_local()
    except ValueError as exc:
        failure = codec.serialize_failure(exc)
    rebuilt = common.deserialize_remote_exception(failure, [])
    assert isinstance(rebuilt, ValueError) and str(rebuilt).startswith("bad value\nTraceback")
    refused = codec.failure_json("NoSuchMethod", "oslo_messaging.rpc.dispatcher",
                                 "Endpoint does not support RPC method nope")
    remote = common.deserialize_remote_exception(refused, [])
    assert type(remote).__name__ == "RemoteError" and remote.exc_type == "NoSuchMethod"


def test_parse_failure_roundtrip_and_errors():
    data = codec.parse_failure(codec.failure_json("X", "m", "msg", args=("a",)))
    assert (data["class"], data["module"], data["message"], data["args"]) == ("X", "m", "msg", ["a"])
    with pytest.raises(CodecError):
        codec.parse_failure("{")
