"""oslo's dispatch rules, the duplicate window and topology names."""
from __future__ import annotations

import pytest

from nfp.config import NfpConfig
from nfp.rpc import admission, topology
from nfp.rpc.dedupe import SeenIds
from nfp.rpc.functions import FunctionDispatcher
from nfp.rpc.types import IncomingRequest


@pytest.mark.parametrize("implemented, requested, ok", [
    ("1.0", "1.0", True), ("1.3", "1.2", True), ("1.3", "1.4", False), ("1.0", "2.0", False),
    ("2.0", "1.0", False), ("1.3.1", "1.3.2", False), ("1.3.2", "1.3.1", True),
    ("1.3", "1.3.1", False), (None, "9.9", True), ("1.0", None, False),
])
def test_version_compatibility_follows_oslo(implemented, requested, ok):
    assert admission.version_is_compatible(implemented, requested) is ok


def _req(method="echo", version="1.0", namespace=None, topic="t"):
    return IncomingRequest(method=method, args={}, version=version, namespace=namespace, topic=topic)


def test_refusals_use_oslo_class_and_module_names():
    d = FunctionDispatcher({"echo": lambda c: None, "_hidden": lambda c: None}, version="1.2",
                           topics=["t"])
    assert admission.refusal(d, _req()) is None
    assert admission.refusal(d, _req(version="1.2")) is None
    assert admission.refusal(d, _req("nope"))[:2] == ("NoSuchMethod", "oslo_messaging.rpc.dispatcher")
    assert admission.refusal(d, _req("_hidden"))[0] == "NoSuchMethod"
    assert admission.refusal(d, _req(topic="other"))[0] == "NoSuchMethod"
    cls, module, text = admission.refusal(d, _req(version="1.3"))
    assert (cls, module) == ("UnsupportedVersion", "oslo_messaging.rpc.dispatcher")
    assert text == "Endpoint does not support RPC version 1.3. Attempted method: echo"
    assert admission.refusal(d, _req(namespace="ns1"))[0] == "UnsupportedVersion"


def test_seen_ids_is_a_bounded_lru():
    seen = SeenIds(size=3)
    assert [seen.check_and_add(i) for i in "abc"] == [False] * 3
    assert seen.check_and_add("a") is True  # refreshes a
    assert seen.check_and_add("d") is False  # evicts b, the oldest
    assert seen.check_and_add("b") is False and len(seen) == 3
    assert seen.check_and_add(None) is False and seen.check_and_add(None) is False


def test_topology_mirrors_oslo_declarations():
    conf = NfpConfig(transport={"control_exchange": "neutron"}, rpc={"host": "h1"})
    served = topology.server_queues(conf, "T")
    names = [q.name for q in served.queues]
    assert names[:2] == ["T", "T.h1"] and names[2].startswith("T_fanout_") and len(names[2]) == 41
    topic_q, server_q, fanout_q = served.queues
    assert topic_q.exchange.name == "neutron" and topic_q.exchange.type == "topic"
    assert not topic_q.durable and not topic_q.exchange.durable and not topic_q.queue_arguments
    assert server_q.routing_key == "T.h1"
    assert fanout_q.exchange.name == "T_fanout" and fanout_q.exchange.type == "fanout"
    assert fanout_q.exchange.auto_delete and fanout_q.queue_arguments == {"x-expires": 1800000}
    assert topology.server_queues(conf, "T", stable_fanout=True).fanout.name == "T_fanout_h1"
    quorum = NfpConfig(transport={"quorum_queues": True})
    q = topology.topic_queue(quorum, "T")
    assert q.durable and q.exchange.durable and q.queue_arguments == {"x-queue-type": "quorum"}
