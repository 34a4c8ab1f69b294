"""The listener on real RabbitMQ survives the broker closing its connection:
kombu reconnects it, the topology is declared again and requests are served."""
from __future__ import annotations

import shutil
import subprocess
import time
import uuid

import pytest

from nfp.config import NfpConfig
from nfp.rpc.client import RpcClient
from nfp.rpc.listener import RpcListener
from nfp.rpc.types import Reply

pytestmark = pytest.mark.integration


class Echo:
    """Serves ``echo`` (a read) and ``record`` (a mutation)."""

    def __init__(self):
        self.recorded: list = []

    def has_method(self, topic, method):
        return method in {"echo", "record"}

    def is_read(self, topic, method):
        return method == "echo"

    def handle_read(self, request):
        return Reply(result=request.args["x"])

    def handle_mutations(self, requests):
        self.recorded.extend(r.args["v"] for r in requests)
        return [Reply(result=r.args["v"]) for r in requests]


def _until(predicate, what, timeout=60):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_listener_reconnects_after_the_broker_closes_its_connection(tmp_path, rabbit_url):
    rabbitmqctl = shutil.which("rabbitmqctl")
    if rabbitmqctl is None:
        pytest.fail("rabbitmqctl is needed to close connections from the server side")
    topic = f"nfp-reconnect-{uuid.uuid4().hex[:8]}"
    conf = NfpConfig(state_dir=str(tmp_path), transport={"url": rabbit_url},
                     rpc={"topic": topic, "host": "h1"})
    dispatcher = Echo()
    listener = RpcListener(conf, dispatcher, [topic])
    assert listener.start(wait=30)
    client = RpcClient(rabbit_url, conf, topic)
    try:
        assert client.call({}, "echo", x=1, timeout=30) == 1
        subprocess.run([rabbitmqctl, "close_all_connections", "nfp reconnect test"],
                       check=True, capture_output=True, timeout=60)
        _until(lambda: listener.counters.snapshot().get("reconnects", 0) >= 1 and listener.ready,
               "the listener to reconnect")
        client.close()
        client = RpcClient(rabbit_url, conf, topic)
        assert client.call({}, "echo", x=2, timeout=30) == 2
        assert client.call({}, "record", v="after", timeout=30) == "after"
        assert dispatcher.recorded == ["after"]
    finally:
        client.close()
        listener.stop(timeout=10)
