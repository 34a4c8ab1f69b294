"""A sealed payload secret over its whole life, on the real daemon (RabbitMQ and
PostgreSQL) with the memory appliance:

- at call time the config driver gets the value: a hidden Heat parameter's
  default, used as a firewall rule's description, is on the device in clear
  (:func:`nfp.testing.memory_config.read_device`), while the NF's row, every
  other table, the ``get_*`` answers, the daemon's log and the notifications
  hold only its ``secret:nf/<id>/…`` reference;
- when the NF's delete completes, its ``nf/<id>/`` secrets are gone from the
  ``secrets`` table (and an unrelated secret is kept).
"""
from __future__ import annotations

import json
import time
import uuid
import warnings

import pytest
from sqlalchemy import create_engine, text

from nfp.db.engine import make_sessionmaker
from nfp.secrets import SecretStore, load_key
from nfp.testing.harness import Harness
from nfp.testing.memory_config import read_device
from tests.integration.test_payload_secrets import Notifications, dump

pytestmark = pytest.mark.integration
WAIT = 60.0
ADMIN = {"user_id": "neutron", "project_id": "services", "is_admin": True, "roles": ["admin"]}
DEVICE = "memory-appliance-1"


def template(password: str) -> str:
    """A Heat firewall whose rule carries a hidden parameter (as upstream hides data in
    descriptions): the value must reach the device, and nothing else."""
    return "\n".join([
        "heat_template_version: 2015-10-15",
        "parameters:",
        "  DevicePassword:",
        "    type: string",
        "    hidden: true",
        f"    default: {password}",
        "resources:",
        "  fw:",
        "    type: OS::Neutron::Firewall",
        "    properties:",
        "      firewall_policy_id: {get_resource: policy}",
        "  policy:",
        "    type: OS::Neutron::FirewallPolicy",
        "    properties:",
        "      firewall_rules: [{get_resource: web}]",
        "  web:",
        "    type: OS::Neutron::FirewallRule",
        "    properties:",
        "      protocol: tcp",
        "      destination_port: '80'",
        "      action: allow",
        "      description: {get_param: DevicePassword}",
        ""])


def secret_names(db_url: str) -> list[str]:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(text("SELECT name FROM secrets ORDER BY name"))]
    finally:
        engine.dispose()


def test_sealed_secret_reaches_only_the_device_and_ends_with_its_nf(tmp_path, pg_url, rabbit_url):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import oslo_messaging
        from oslo_config import cfg
    password = f"pw-{uuid.uuid4().hex}"
    topic = f"nfp-notif-{uuid.uuid4().hex[:8]}"
    harness = Harness(tmp_path, database_url=pg_url, workers=1,
                      transport_url="rabbit://guest:guest@127.0.0.1:5672/",
                      config={"logging": {"level": "DEBUG"}, "rpc": {"notifications_topic": topic}})
    with harness:
        transport = oslo_messaging.get_rpc_transport(cfg.CONF, url=harness.conf.transport_url)
        notify_transport = oslo_messaging.get_notification_transport(cfg.CONF, url=harness.conf.transport_url)
        listener = Notifications(notify_transport, topic)
        rpc = oslo_messaging.get_rpc_client(
            transport, oslo_messaging.Target(topic=harness.conf.rpc.topic, version="1.0"), timeout=WAIT)
        engine = create_engine(pg_url)
        store = SecretStore(make_sessionmaker(engine), load_key(harness.conf))
        try:
            store.put("operator/unrelated", "kept-" + uuid.uuid4().hex)  # not an NF's: must survive
            created = rpc.call(ADMIN, "create_network_function", network_function={
                "name": "fw-sealed", "tenant_id": "services", "service_config": template(password),
                "service_profile": {"service_type": "firewall",
                                    "service_flavor": "service_vendor=memory,device_type=static"}})
            nf_id = created["id"]
            active = harness.wait_for_status(nf_id, timeout=WAIT)

            # the device got the value, in clear, from the driver call
            on_device = read_device(harness.state_dir, DEVICE)[nf_id]["firewall"]
            assert [r["description"] for r in on_device["rules"]] == [password]
            # everything nfp keeps or shows holds the reference only
            ours = [n for n in secret_names(pg_url) if n.startswith(f"nf/{nf_id}/")]
            assert len(ours) == 1 and store.get(ours[0]) == password
            assert f"secret:{ours[0]}" in created["service_config"]
            answers = json.dumps([active, rpc.call(ADMIN, "get_network_function_details",
                                                   network_function_id=nf_id)])
            end = time.monotonic() + WAIT
            while "create.end" not in listener.text():  # the positive control
                assert time.monotonic() < end, "no nfp.network_function.create.end notification"
                time.sleep(0.2)
            stored = dump(pg_url)
            assert f"secret:{ours[0]}" in stored
            for where, haystack in (("database", stored), ("get_* answers", answers),
                                    ("notifications", listener.text()), ("log", harness.logs())):
                assert password not in haystack, f"the password is in the {where}"

            rpc.call(ADMIN, "delete_network_function", network_function_id=nf_id)
            harness.wait_gone(nf_id, timeout=WAIT)
            names = secret_names(pg_url)
            assert not [n for n in names if n.startswith(f"nf/{nf_id}/")], names
            assert "operator/unrelated" in names
            assert nf_id not in read_device(harness.state_dir, DEVICE)
        finally:
            engine.dispose()
            listener.stop()
            transport.cleanup()
            notify_transport.cleanup()
    assert password not in harness.logs()
