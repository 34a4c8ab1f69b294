"""The proxy's HTTP legs without a broker: the configurator's acknowledged notifications
(kept until acked, so a crash between reading and casting delivers again), the proxy
end forwarding over real unix sockets, and one notifier pass casting each result as
``network_function_notification`` before it acknowledges."""
from __future__ import annotations

import contextlib
import threading
import time

import kombu
import pytest
from urllib3 import HTTPConnectionPool

from nfp.config import NfpConfig
from nfp.proxy.agent import failure_notification
from nfp.proxy.forwarder import create_app
from nfp.proxy.http import ConfiguratorHttp, Refused, Unavailable, unix_pool
from nfp.proxy.notifier import METHOD, deliver
from nfp.rpc import codec, topology
from nfp.rpc.client import RpcClient
from nfp.testing.configurator import ConfiguratorHarness, firewall_body


@contextlib.contextmanager
def served(app, path=None):
    """``app`` served by uvicorn (a thread) on the unix socket ``path``, else on a free
    loopback port; yields the port (None for a socket)."""
    import uvicorn
    where = {"uds": str(path)} if path else {"host": "127.0.0.1", "port": 0}
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_config=None, access_log=False,
                                           **where))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    end = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < end, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield None if path else server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def chain(tmp_path):
    """The configurator app (plain HTTP on loopback: its source allowlist needs an address),
    the proxy end on a unix socket before it, and the agent's client of that socket."""
    with ConfiguratorHarness(tmp_path) as h, served(h.asgi) as port:
        upstream = ConfiguratorHttp(HTTPConnectionPool("127.0.0.1", port, retries=False), token=h.token)
        with served(create_app(upstream), tmp_path / "px.sock"):
            agent_side = ConfiguratorHttp(unix_pool(str(tmp_path / "px.sock"), 30))
            yield h, agent_side
            agent_side.close()
        upstream.close()


def test_kept_notifications_come_back_until_acknowledged(tmp_path):
    with ConfiguratorHarness(tmp_path) as h:
        for nf in ("nf-a", "nf-b"):
            assert h.post("create_network_function_config", firewall_body(nf_id=nf)).status_code == 200
        h.engine.join()
        headers = h.headers()
        first = h.client.get("/v1/nfp/get_notifications?keep=true", headers=headers).json()
        again = h.client.get("/v1/nfp/get_notifications?keep=true", headers=h.headers()).json()
        assert [n["info"]["context"]["nf_id"] for n in first] == ["nf-a", "nf-b"]
        assert again == first and all(isinstance(n["id"], int) for n in first)  # a re-read: same ids
        ack = h.client.post("/v1/nfp/ack_notifications", json={"ids": [first[0]["id"]]},
                            headers=h.headers())
        assert ack.status_code == 200 and ack.json() == {"acknowledged": 1}
        rest = h.get_notifications()  # seed 001's form: returned once, then deleted
        assert [n["info"]["context"]["nf_id"] for n in rest] == ["nf-b"]
        assert h.get_notifications() == []
        twice = h.client.post("/v1/nfp/ack_notifications", json={"ids": [first[0]["id"]]},
                              headers=h.headers())
        assert twice.json() == {"acknowledged": 0}
        bad = h.client.post("/v1/nfp/ack_notifications", json={"ids": []}, headers=h.headers())
        assert bad.status_code == 400 and bad.json()["field"] == "ids"


def test_proxy_end_forwards_and_retried_request_is_applied_once(chain):
    h, proxy = chain
    body = firewall_body(nf_id="nf-px")
    assert proxy.post("create_network_function_config", body, "req-1") == {
        "request_id": "req-1", "status": "accepted"}
    assert proxy.post("create_network_function_config", body, "req-1")["status"] == "duplicate"
    h.engine.join()
    [note] = proxy.notifications()
    assert note["request_id"] == "req-1" and note["notification"][0]["data"]["status_code"] == "success"
    with pytest.raises(Refused) as refused:  # the configurator's 400, field and all
        proxy.post("create_network_function_config", firewall_body(nf_id=""), "req-2")
    assert refused.value.status == 400 and refused.value.field == "info.context.nf_id"
    assert proxy.ack([note["id"]]) == 1 and proxy.notifications() == []


def test_unreachable_configurator_is_unavailable_not_refused(tmp_path):
    gone = ConfiguratorHttp(unix_pool(str(tmp_path / "nobody.sock"), 5))
    with pytest.raises(Unavailable):
        gone.post("create_network_function_config", firewall_body(), "req-x")
    with served(create_app(gone), tmp_path / "px.sock"):  # the proxy end answers 502: retry
        with pytest.raises(Unavailable, match="502"):
            ConfiguratorHttp(unix_pool(str(tmp_path / "px.sock"), 5)).notifications()


def test_a_pass_casts_then_acknowledges_and_a_crash_before_the_ack_delivers_again(chain):
    h, proxy = chain
    conf = NfpConfig()
    topic = "nfp-nso-test-notify"
    with kombu.Connection("memory://") as conn:
        queue = topology.topic_queue(conf, topic)(conn.default_channel)
        queue.declare()
        caster = RpcClient(conn, conf, topic=topic)
        assert proxy.post("create_network_function_config",
                          firewall_body(nf_id="nf-n", event_id=41), "req-n")["status"] == "accepted"
        h.engine.join()
        # a poller that read and cast, then died before acknowledging
        for note in proxy.notifications():
            caster.cast({}, METHOD, notification_data=note)
        assert deliver(proxy, caster) == 1  # delivered again, then acknowledged
        assert deliver(proxy, caster) == 0
        casts = []
        while (message := queue.get(no_ack=True)) is not None:
            casts.append(codec.decode_request(message.body, message.headers))
        assert [c.method for c in casts] == [METHOD, METHOD]
        data = casts[1].args["notification_data"]
        assert data["info"]["context"]["event_id"] == 41 and "id" not in data
        assert data["notification"][0]["data"]["status_code"] == "success"


def test_failure_notification_names_the_error_and_drops_credentials():
    body = firewall_body(nf_id="nf-f", auth_token="tok-secret", event_id=7)
    note = failure_notification(body, "req-f", "info.context.nfd_ip: required")
    assert note["info"]["context"]["event_id"] == 7 and "auth_token" not in note["info"]["context"]
    assert note["notification"] == [{"resource": "firewall", "data": {
        "status_code": "failure", "error_msg": "info.context.nfd_ip: required"}}]
