"""Publisher confirms and quorum queues on the real RabbitMQ.

A RabbitMQ policy (``max-length: 0, overflow: reject-publish``) on one queue of
this test makes the broker refuse every message for it with ``basic.nack``.
Only a publisher in confirm mode learns of that: the outbox keeps the
notification and the reply is counted as refused, not as sent. Once the policy
is cleared, the same notification goes out and its row is deleted.

With ``transport.quorum_queues`` the listener declares its topic queues as
quorum queues, a stock oslo.messaging client calls it, and oslo's notifier and
nfp's relay share the quorum notification queue.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
import warnings

import pytest

from nfp import outbox
from nfp.config import NfpConfig
from nfp.db import migrate
from nfp.db.engine import make_engine, make_sessionmaker
from nfp.rpc import codec, topology
from nfp.rpc.listener import RpcListener
from nfp.rpc.publisher import Publisher
from nfp.rpc.relay import Relay
from nfp.rpc.transport import connection_for
from nfp.rpc.types import Reply

pytestmark = pytest.mark.integration


def _ctl(*args: str, check: bool = True) -> str:
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        pytest.fail("rabbitmqctl is needed to set queue policies")
    return subprocess.run([ctl, *args], check=check, capture_output=True, text=True, timeout=120).stdout


def _queue(name: str) -> dict:
    for row in json.loads(_ctl("list_queues", "name", "type", "policy", "messages", "--formatter", "json")):
        if row["name"] == name:
            return row
    return {}


def _until(predicate, what: str, timeout: float = 60):
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.1)


class _Refusing:
    """A policy that makes the broker nack every message for queue ``name``."""

    def __init__(self, name: str):
        self.name, self.policy = name, f"nfp-test-refuse-{uuid.uuid4().hex[:8]}"

    def __enter__(self):
        _ctl("set_policy", "--apply-to", "queues", "--priority", "100", self.policy,
             f"^{self.name}$", json.dumps({"max-length": 0, "overflow": "reject-publish"}))
        _until(lambda: _queue(self.name).get("policy") == self.policy, "the policy to apply")
        return self

    def __exit__(self, *exc):
        _ctl("clear_policy", self.policy)
        _until(lambda: _queue(self.name).get("policy") in ("", None), "the policy to go")


def _declare(conf, queue) -> None:
    with connection_for(conf.transport_url, conf) as conn:
        queue(conn.channel()).declare()


def _drain(conf, queue) -> list[dict]:
    got = []
    with connection_for(conf.transport_url, conf) as conn:
        bound = queue(conn.channel())
        while (message := bound.get(no_ack=True)) is not None:
            got.append(codec.unwrap(message.body))
    return got


@pytest.fixture
def env(tmp_path, rabbit_url):
    topic = f"nfp-confirm-{uuid.uuid4().hex[:8]}"
    conf = NfpConfig(state_dir=str(tmp_path), transport={"url": rabbit_url},
                     rpc={"notifications_topic": topic, "host": "h1"})
    url = f"sqlite:///{tmp_path}/o.db"
    migrate.upgrade(url)
    engine = make_engine(url)
    yield conf, make_sessionmaker(engine)
    engine.dispose()


def test_a_nacked_notification_stays_in_the_outbox_until_the_broker_takes_it(env):
    conf, sessionmaker = env
    key = f"{conf.rpc.notifications_topic}.info"
    queue = topology.notification_queue(conf, key)
    _declare(conf, queue)
    with sessionmaker.begin() as session:
        outbox.add(session, "nf-1", [("nfp.network_function.create.end", {"id": "nf-1"})])
    relay = Relay(sessionmaker, conf.transport_url, conf)
    try:
        with _Refusing(key):
            assert relay.run_round() is False
            assert relay.counters["nacked"] == 1
            assert relay.producer.connected  # a nack is not a broken connection
            with sessionmaker() as session:
                assert outbox.count(session) == 1
        assert relay.run_round() is True
        with sessionmaker() as session:
            assert outbox.count(session) == 0
        got = _drain(conf, queue)
        assert [(m["event_type"], m["payload"]) for m in got] == [
            ("nfp.network_function.create.end", {"id": "nf-1"})]
    finally:
        relay.producer.close()
        _ctl("delete_queue", key)


def test_replies_are_confirmed(env):
    conf, _ = env
    reply_q = f"reply_{uuid.uuid4().hex}"
    queue = topology.reply_queue(reply_q)
    _declare(conf, queue)
    publisher = Publisher(conf.transport_url, conf)
    publisher.start()
    try:
        failure = codec.serialize_failure(ValueError("x"), with_traceback=False)
        with _Refusing(reply_q):
            publisher.reply_failure("m1", reply_q, failure)
            _until(lambda: publisher.counters["nacked"] == 1, "the nack")
            assert publisher.counters["replies"] == 0
        publisher.reply_failure("m2", reply_q, failure)
        _until(lambda: publisher.counters["replies"] == 1, "the confirmed reply")
        assert [m["_msg_id"] for m in _drain(conf, queue)] == ["m2"]
    finally:
        publisher.stop(10)
        _ctl("delete_queue", reply_q)


class _Echo:
    def has_method(self, topic, method):
        return method == "echo"

    def is_read(self, topic, method):
        return True

    def handle_read(self, request):
        return Reply(result=request.args["x"])

    def handle_mutations(self, requests):
        return [Reply(result=None) for _ in requests]


def _oslo(rabbit_url: str, exchange: str):
    """A stock oslo.messaging configuration with ``rabbit_quorum_queue`` on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        om = pytest.importorskip("oslo_messaging")
        from oslo_config import cfg
        from oslo_messaging import transport as om_transport
        from oslo_messaging._drivers import impl_rabbit
        from oslo_messaging._metrics import client as metrics
        from oslo_messaging._tracing import client as tracing
    oconf = cfg.ConfigOpts()
    oconf([], project="nfp-test", default_config_files=[])
    oconf.register_opts(tracing.oslo_messaging_tracing, group="oslo_messaging_tracing")
    oconf.register_opts(metrics.oslo_messaging_metrics, group="oslo_messaging_metrics")
    oconf.register_opts(impl_rabbit.rabbit_opts, group="oslo_messaging_rabbit")
    oconf.register_opts(om_transport._transport_opts)
    oconf.set_override("rabbit_quorum_queue", True, group="oslo_messaging_rabbit")
    oconf.set_override("control_exchange", exchange)
    return om, oconf, rabbit_url.replace("amqp://", "rabbit://", 1)


def test_quorum_queues_are_declared_and_served_to_a_stock_oslo_client(tmp_path, env, rabbit_url):
    _, sessionmaker = env
    topic = f"nfp-quorum-{uuid.uuid4().hex[:8]}"
    # an exchange of its own: oslo and nfp declare a quorum setup's exchange durable,
    # and the shared broker's "openstack" exchange is not
    conf = NfpConfig(state_dir=str(tmp_path),
                     transport={"url": rabbit_url, "quorum_queues": True, "control_exchange": topic},
                     rpc={"topic": topic, "host": "h1", "notifications_topic": topic})
    listener = RpcListener(conf, _Echo(), [topic], sessionmaker=sessionmaker)
    om, oconf, url = _oslo(rabbit_url, topic)
    transport = om.get_rpc_transport(oconf, url=url)
    notifier_transport = om.get_notification_transport(oconf, url=url)
    try:
        assert listener.start(wait=60)
        assert _queue(topic)["type"] == "quorum"
        assert _queue(f"{topic}.h1")["type"] == "quorum"
        client = om.get_rpc_client(transport, om.Target(topic=topic), timeout=60)
        assert client.call({}, "echo", x="through a quorum queue") == "through a quorum queue"
        # oslo's notifier declares the notification queue as a quorum queue; nfp's
        # relay declares the same queue the same way and publishes beside it
        om.Notifier(notifier_transport, publisher_id="oslo", driver="messaging",
                    topics=[topic]).info({}, "oslo.sent", {"by": "oslo"})
        listener.publish_notification("nfp.sent", {"network_function_id": "nf-q"})
        _until(lambda: _queue(f"{topic}.info").get("messages") == 2, "both notifications")
        assert _queue(f"{topic}.info")["type"] == "quorum"
        assert listener.counters["outbox_published"] == 1
    finally:
        listener.stop(timeout=10)
        transport.cleanup()
        notifier_transport.cleanup()
        for name in (topic, f"{topic}.h1", f"{topic}.info"):
            _ctl("delete_queue", name, check=False)
        _ctl("delete_exchange", topic, check=False)
