"""Hostile input against the RPC listener (embedded filesystem bus): compression
bombs, data the database refuses, forged log lines, malformed calls. Each is
refused once, the caller gets an error when it can be reached, and serving goes on."""
from __future__ import annotations

import bz2
import logging
import resource
import threading
import zlib

import pytest
from sqlalchemy.exc import DataError

from nfp.config import NfpConfig
from nfp.rpc import codec, inflate
from nfp.rpc.client import RemoteError, RpcClient
from nfp.rpc.listener import RpcListener
from tests.unit.test_rpc_listener_memory import Replies, until
from tests.unit.test_rpc_listener_memory import raw_publish as _raw_publish

TOPIC = "nfp-hostile"
WAIT = 20.0


def raw_publish(conf, body, headers=None):
    _raw_publish(conf, body, headers, topic=TOPIC)


class Store:
    """Mutations ``put`` (args ``v``) commit unless a value holds "BAD": then the
    whole batch raises a DataError the way PostgreSQL does for a 37-character
    value in a varchar(36) column. ``echo`` is a read."""

    def __init__(self):
        self.done: list = []
        self.alone_attempts: dict = {}
        self.lock = threading.Lock()

    def has_method(self, topic, method):
        return method in {"echo", "put"}

    def is_read(self, topic, method):
        return method == "echo"

    def handle_read(self, request):
        from nfp.rpc.types import Reply
        return Reply(result=request.args.get("x"))

    def handle_mutations(self, requests):
        from nfp.rpc.types import Reply
        bad = [r for r in requests if "BAD" in str(r.args.get("nf", {}).get("chain_id", ""))]
        if bad:
            if len(requests) == 1:
                key = bad[0].unique_id
                self.alone_attempts[key] = self.alone_attempts.get(key, 0) + 1
            raise DataError("INSERT INTO network_functions ...", {},
                            Exception("value too long for type character varying(36)"))
        with self.lock:
            self.done += [r.args.get("v") for r in requests]
        return [Reply(result=r.args.get("v")) for r in requests]


@pytest.fixture
def conf(tmp_path):
    return NfpConfig(state_dir=str(tmp_path),
                     transport={"url": f"filesystem://{tmp_path}/bus", "polling_interval": 0.005,
                                "prefetch": 200},
                     rpc={"topic": TOPIC, "host": "h1", "max_message_bytes": 65536})


@pytest.fixture
def served(conf):
    store = Store()
    listener = RpcListener(conf, store, [TOPIC])
    assert listener.start(wait=WAIT)
    client = RpcClient(conf.transport_url, conf, TOPIC)
    yield store, listener, client
    client.close()
    listener.stop(timeout=5)


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("kind", ["bz2", "zlib"])
def test_a_compression_bomb_is_refused_without_inflating_it(served, conf, kind):
    store, listener, client = served
    if kind == "bz2":  # ~800 bytes that inflate to 1 GiB
        bomb, header = bz2.compress(b"\0" * (1 << 30)), "application/x-bz2"
    else:  # ~1 MB that inflates to 1 GiB
        bomb, header = zlib.compress(b"\0" * (1 << 30), 9), "application/x-gzip"
    before = _maxrss_mb()
    raw_publish(conf, bomb, headers={"compression": header})
    until(lambda: listener.counters["rejected"] == 1, what="the refusal")
    assert _maxrss_mb() - before < 200  # the 1 GiB was never built
    assert client.call({}, "echo", x="still serving") == "still serving"
    body = zlib.compress(codec.encode_request("put", {"v": 1}).encode())
    raw_publish(conf, body, headers={"compression": "application/x-gzip"})
    until(lambda: store.done == [1], what="a sane compressed request")


def test_the_inflate_cap_applies_to_the_codec_too():
    inflate.limit_this_thread(1000)
    try:
        with pytest.raises(codec.CodecError, match="inflates beyond 1000"):
            codec.unwrap(zlib.compress(b" " * 5000), {"compression": "gzip"})
    finally:
        inflate.limit_this_thread(inflate.DEFAULT_LIMIT)


def test_a_data_error_is_refused_once_naming_the_field_while_good_requests_flow(served):
    store, listener, client = served
    threads = [threading.Thread(target=client.cast, args=({}, "put"), kwargs={"v": i})
               for i in range(50)]
    for t in threads:
        t.start()
    with pytest.raises(RemoteError) as err:
        client.call({}, "put", v="bad", nf={"chain_id": "BAD" + "x" * 34})
    for t in threads:
        t.join()
    assert err.value.exc_type == "DataRefused"
    assert "nf.chain_id" in err.value.value and "character varying(36)" in err.value.value
    until(lambda: len(store.done) == 50, what="the good requests")
    assert list(store.alone_attempts.values()) == [1]  # refused once, never retried alone
    assert listener.counters["data_refused"] == 1


def test_a_newline_in_a_method_name_cannot_forge_a_log_line(served, conf, caplog):
    store, listener, client = served
    forged = "nope\n2026-01-01 00:00:00 INFO listener nfp: forged line"
    with caplog.at_level(logging.INFO, logger="nfp.rpc"):
        with pytest.raises(RemoteError) as err:
            client.call({}, forged)
        until(lambda: listener.counters["rejected"] == 1, what="the refusal")
    assert err.value.exc_type == "NoSuchMethod"
    lines = [r.getMessage() for r in caplog.records if "nope" in r.getMessage()]
    assert lines and all("\n" not in line for line in lines)
    assert any("nope\\x0a2026" in line for line in lines)


def test_malformed_calls_that_carry_a_reply_address_get_an_error_reply(served, conf):
    store, listener, client = served
    replies = Replies(conf)
    q = replies.queue.name
    raw_publish(conf, codec.wrap({"method": 42, "_msg_id": "m1", "_reply_q": q}))
    raw_publish(conf, codec.wrap({"method": "put", "args": {}, "_msg_id": "m2", "_reply_q": q,
                                  "_timeout": "soon"}))
    raw_publish(conf, '{"oslo.version": "3.0", "oslo.message": "{\\"method\\": \\"put\\", '
                      f'\\"_msg_id\\": \\"m3\\", \\"_reply_q\\": \\"{q}\\"}}"}}')
    raw_publish(conf, f'{{"method": "put", "_msg_id": "m4", "_reply_q": "{q}", "args": {{"v": ')
    got = {r["_msg_id"]: codec.parse_failure(r["failure"]) for r in replies.wait(4)}
    assert set(got) == {"m1", "m2", "m3", "m4"}
    assert got["m1"]["kwargs"]["field"] == "method" and got["m2"]["kwargs"]["field"] == "_timeout"
    assert got["m3"]["kwargs"]["field"] == "oslo.version" and got["m4"]["kwargs"]["field"] == "body"
    until(lambda: listener.counters["rejected"] == 4, what="rejections")
    assert client.call({}, "echo", x=1) == 1
