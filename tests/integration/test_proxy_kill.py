"""``kill -9`` of the configurator (twice), the proxy end and the agent while N NFs are
configured over the proxy path (orchestrator → RabbitMQ → agent → unix socket → proxy
end → HTTPS with mutual TLS and tokens → configurator → memory device, and the
notifications back). Every NF still reaches ACTIVE exactly once (one
``create.end`` each, seen by a stock oslo notification listener), the configurator
accepted each request once however often the agent re-sent it, and the device holds
every NF's firewall. Device calls are counted from the memory driver's call log: a
call repeats only when the configurator died after the call and before committing
its result (the step runs again), which the kills bound.
"""
from __future__ import annotations

import collections
import json
import os
import threading
import time
import warnings

import pytest
from sqlalchemy import create_engine, text

from nfp.configurator.service import daemon_conf
from nfp.rpc.errors import MessagingTimeout
from nfp.testing.memory_config import count_calls, read_device
from tests.integration.test_configurator_paths import (AMQP, Daemon, init_pki, tier_config,
                                                        wait_configurator)
from tests.integration.test_payload_secrets import Notifications

pytestmark = pytest.mark.integration

#: configurations in the run (override with NFP_PROXY_KILL_COUNT)
COUNT = int(os.environ.get("NFP_PROXY_KILL_COUNT", "100"))
DEVICE = {"id": "mem-1", "name": "memory", "service_vendor": "memory", "max_interfaces": 1_000_000,
          "mgmt_ip_address": "127.0.0.250"}  # answers ICMP: the health monitor sees it up
RULES = [{"name": "web", "protocol": "tcp", "destination_port": 80}]


def _nf(index: int) -> dict:
    return {"name": f"kill-{index}", "tenant_id": "t1",
            "service_profile": {"id": "p1", "service_type": "firewall",
                                "service_flavor": "service_vendor=memory,device_type=static"},
            "service_config": {"config": [{"resource": "firewall", "resource_data": {"rules": RULES}}]}}


def _until(predicate, what: str, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, f"not within {timeout} s: {what}"
        time.sleep(0.2)


def test_kill9_configurator_and_proxy_during_configurations(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import oslo_messaging
        from oslo_config import cfg
    from nfp.testing.harness import Harness

    calls = tmp_path / "device-calls.jsonl"
    config = tier_config(tmp_path, "proxy", targets=("127.0.0.0/8",), extra={
        "device_drivers": {"static": {"devices": [DEVICE]}},
        "config_drivers": {"memory": {"call_log": str(calls), "delay": 0.05}},
        "configurator_service": {"workers": 2},
        "orchestrator": {"config_wait_timeout": 600},
        "proxy": {"retry_max": 1.0}})
    harness = Harness(tmp_path / "nfp", config=config, transport_url=AMQP, workers=2)
    conf = harness.conf
    init_pki(conf, "127.0.0.1")
    transport = oslo_messaging.get_notification_transport(cfg.CONF, url=AMQP)
    listener = Notifications(transport, conf.rpc.notifications_topic)
    configurator = Daemon("configurator", harness.config_file, tmp_path)
    end = Daemon("proxy-end", harness.config_file, tmp_path, ["--role", "proxy"])
    agent = Daemon("proxy-agent", harness.config_file, tmp_path, ["--role", "agent"])
    kills: list[str] = []
    try:
        for daemon in (configurator, end, agent):
            daemon.start()
        assert wait_configurator(conf, configurator) == 200
        with harness:
            def firewall_calls() -> int:
                return sum(v for k, v in count_calls(calls).items() if k[1] == "firewall")

            def killer() -> None:
                # each victim dies at a point where configurations are in flight
                for share, victim in ((0.15, configurator), (0.35, end), (0.55, agent),
                                      (0.75, configurator)):
                    _until(lambda: firewall_calls() >= COUNT * share, "progress", 600)
                    victim.kill9()
                    kills.append(victim.log.stem)
                    time.sleep(0.5)
                    victim.start()

            thread = threading.Thread(target=killer, daemon=True)
            started = time.monotonic()
            thread.start()
            ids = [harness.client.create_network_function(_nf(i))["id"] for i in range(COUNT)]

            def statuses() -> collections.Counter:
                try:
                    nfs = harness.client.get_network_functions({"id": ids})
                except MessagingTimeout:  # the shared broker may be restarted by other tests
                    return collections.Counter()
                return collections.Counter(n["status"] for n in nfs)

            _until(lambda: statuses()["ACTIVE"] == COUNT, f"{COUNT} NFs ACTIVE", 600)
            elapsed = time.monotonic() - started
            thread.join(60)
            _until(lambda: listener.text().count("create.end") >= COUNT, "create.end of each", 60)

        ended = collections.Counter()
        for line in listener.text().splitlines():
            note = json.loads(line)
            if note["event_type"] == "nfp.network_function.create.end":
                ended[note["payload"]["id"]] += 1
        device_calls = {k[0]: v for k, v in count_calls(calls).items()
                        if k[1] == "firewall" and k[2] == "create"}
        repeated = {nf: n for nf, n in device_calls.items() if n > 1}
        engine = create_engine(daemon_conf(conf).database_url)
        with engine.connect() as db:
            accepted = collections.Counter(r[0] for r in db.execute(text(
                "SELECT nf_id FROM configurator_requests")))
            duplicates = db.execute(text("SELECT count(*) FROM audit_log WHERE result = 'duplicate'")).scalar()
        engine.dispose()
        held = read_device(daemon_conf(conf).state_path, DEVICE["id"])
        print(f"\n{COUNT} NFs ACTIVE in {elapsed:.1f} s through kills of {kills}; device calls "
              f"repeated for {len(repeated)} NF(s); {duplicates} re-sent request(s) answered "
              "'duplicate'")
        assert kills == ["configurator", "proxy-end", "proxy-agent", "configurator"]
        assert dict(ended) == {nf: 1 for nf in ids}  # ACTIVE exactly once each
        assert dict(accepted) == {nf: 1 for nf in ids}  # one request per NF, applied once
        assert set(device_calls) == set(ids)  # no work lost
        assert all(held[nf]["firewall"]["rules"][0]["name"] == "web" for nf in ids)
        # a repeat needs a configurator killed between a device call and its commit: at most
        # its two workers' in-flight steps per configurator kill
        assert sum(n - 1 for n in repeated.values()) <= kills.count("configurator") * 2 * 16
    finally:
        listener.stop()
        transport.cleanup()
        for daemon in (agent, end, configurator):
            daemon.stop()
