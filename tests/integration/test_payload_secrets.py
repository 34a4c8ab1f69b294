"""Secrets a caller puts in its payloads never reach the database in clear, a log,
a notification or a ``get_*`` answer: the real daemon on RabbitMQ and PostgreSQL,
a stock oslo.messaging RPC client and a stock oslo notification listener.

Known secrets go into every place the rule covers: secret-like keys (in
``management``, in ``consuming_ptgs_details``, in ``config_param_values`` and in
``chain_parameters``), a Heat parameter marked ``hidden: true`` (its default in
the template, its value in ``config_param_values`` and, later, in
``chain_parameters``), and a field a mapping declares secret (``secret_fields``).
Then the whole database, the daemon's log (at DEBUG) and every notification are
searched for them, and the secret store is read back to prove they were kept.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
import warnings

import pytest
from sqlalchemy import create_engine, inspect, text

from nfp.secrets import SecretStore, load_key
from nfp.db.engine import make_sessionmaker
from nfp.testing.harness import Harness

pytestmark = pytest.mark.integration
WAIT = 60.0
ADMIN = {"user_id": "neutron", "project_id": "services", "is_admin": True, "roles": ["admin"]}


def secret(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex}"


S = {name: secret(name) for name in (
    "mgmt_password", "declared", "ptg_token", "hidden_default", "hidden_value", "api_key",
    "update_hidden_default", "chain_hidden", "chain_token", "template_literal")}


def template(hidden_default: str) -> str:
    """A Heat firewall (YAML text, as upstream stores it) with a hidden parameter."""
    return "\n".join([
        "heat_template_version: 2015-10-15",
        "parameters:",
        "  SiteCode:",
        "    type: string",
        "    hidden: true",
        f"    default: {hidden_default}",
        "  Subnet:",
        "    type: string",
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
        "    properties: {protocol: tcp, destination_port: '80', action: allow}",
        ""])


class Notifications:
    """A stock oslo notification listener on nfp's notifications topic."""

    def __init__(self, transport, topic):
        import oslo_messaging
        self.seen: list[str] = []
        self.lock = threading.Lock()
        outer = self

        class Endpoint:
            def info(self, ctxt, publisher_id, event_type, payload, metadata):
                with outer.lock:
                    outer.seen.append(json.dumps({"ctxt": ctxt, "event_type": event_type,
                                                  "payload": payload}, default=str))

            warn = error = audit = debug = info

        self.listener = oslo_messaging.get_notification_listener(
            transport, [oslo_messaging.Target(topic=topic)], [Endpoint()], executor="threading")
        self.listener.start()

    def text(self) -> str:
        with self.lock:
            return "\n".join(self.seen)

    def stop(self):
        self.listener.stop()
        self.listener.wait()


def wait_status(rpc, nf_id, status="ACTIVE"):
    end, got = time.monotonic() + WAIT, None
    while time.monotonic() < end:
        got = rpc.call(ADMIN, "get_network_function", network_function_id=nf_id)
        if got and got["status"] == status and not got["status"].endswith("PROGRESS"):
            return got
        time.sleep(0.2)
    raise AssertionError(f"NF {nf_id} not {status}: {got}")


def dump(db_url: str) -> str:
    """Every row of every table, as text."""
    engine = create_engine(db_url)
    try:
        out = []
        with engine.connect() as conn:
            for table in inspect(engine).get_table_names():
                for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                    out.append(f"{table}: {tuple(row)!r}")
        return "\n".join(out)
    finally:
        engine.dispose()


def test_payload_secrets_are_sealed_everywhere(tmp_path, pg_url, rabbit_url):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import oslo_messaging
        from oslo_config import cfg
    notifications_topic = f"nfp-notif-{uuid.uuid4().hex[:8]}"
    harness = Harness(tmp_path, database_url=pg_url, workers=1,
                      transport_url="rabbit://guest:guest@127.0.0.1:5672/",
                      config={"logging": {"level": "DEBUG"},
                              "rpc": {"notifications_topic": notifications_topic}})
    with harness:
        transport = oslo_messaging.get_rpc_transport(cfg.CONF, url=harness.conf.transport_url)
        notify_transport = oslo_messaging.get_notification_transport(
            cfg.CONF, url=harness.conf.transport_url)
        listener = Notifications(notify_transport, notifications_topic)
        rpc = oslo_messaging.get_rpc_client(
            transport, oslo_messaging.Target(topic=harness.conf.rpc.topic, version="1.0"), timeout=WAIT)
        try:
            body = {
                "name": "fw-secrets", "tenant_id": "services",
                "service_profile": {"service_type": "firewall",
                                    "service_flavor": "service_vendor=memory,device_type=static"},
                "service_config": template(S["hidden_default"]),
                "service_chain_instance": {"id": str(uuid.uuid4()), "name": "sci",
                                           "config_param_values": json.dumps(
                                               {"SiteCode": S["hidden_value"], "api_key": S["api_key"],
                                                "Subnet": "198.18.5.0/24"})},
                "management": {"id": str(uuid.uuid4()), "admin_password": S["mgmt_password"],
                               "secret_fields": ["snmp_community"], "snmp_community": S["declared"]},
                "consuming_ptgs_details": [{"ptg": {"id": str(uuid.uuid4()), "subnets": ["198.18.6.0/24"],
                                                    "auth_token": S["ptg_token"]}, "subnets": []}],
            }
            created = rpc.call(ADMIN, "create_network_function", network_function=body)
            nf_id = created["id"]
            wait_status(rpc, nf_id)
            # the stored template keeps its parameter, by reference
            assert "secret:nf/" + nf_id in created["service_config"]

            # the port changes; the secret, random hex that may hold "80", does not
            updated = template(S["update_hidden_default"]).replace("port: '80'", "port: '443'")
            assert "port: '443'" in updated and S["update_hidden_default"] in updated
            new_config = {"config": [{"resource": "heat", "resource_data": {"template": updated}}]}
            assert rpc.call(ADMIN, "update_network_function", network_function_id=nf_id,
                            config=new_config) is None
            wait_status(rpc, nf_id)
            rpc.call(ADMIN, "chain_parameters_updated_notification", network_function_id=nf_id,
                     chain_parameters=json.dumps({"SiteCode": S["chain_hidden"],
                                                  "X-Auth-Token": S["chain_token"]}))
            wait_status(rpc, nf_id)
            # a secret-like key written literally into a template resource is sealed too
            literal = {"config": [{"resource": "heat", "resource_data": {"template": {
                "heat_template_version": "2015-10-15",
                "parameters": {"admin_password": {"type": "string", "default": S["template_literal"]}},
                "resources": json.loads(json.dumps(_FW_RESOURCES))}}}]}
            rpc.call(ADMIN, "update_network_function", network_function_id=nf_id, config=literal)
            final = wait_status(rpc, nf_id)

            answers = json.dumps([
                final, rpc.call(ADMIN, "get_network_functions", filters={"id": [nf_id]}),
                rpc.call(ADMIN, "get_network_function_details", network_function_id=nf_id),
                rpc.call(ADMIN, "get_network_function_context", network_function_id=nf_id)])
            end = time.monotonic() + WAIT
            while "create.end" not in listener.text():  # the positive control
                assert time.monotonic() < end, "no nfp.network_function.create.end notification"
                time.sleep(0.2)
            stored = dump(pg_url)
            # kept, encrypted, under the NF's names: every secret can be read back
            kept = secrets_of(harness, pg_url, nf_id)
            assert set(S.values()) <= set(kept.values())
            rpc.call(ADMIN, "delete_network_function", network_function_id=nf_id)
            end = time.monotonic() + WAIT
            while rpc.call(ADMIN, "get_network_function", network_function_id=nf_id) is not None:
                assert time.monotonic() < end
                time.sleep(0.2)
        finally:
            listener.stop()
            transport.cleanup()
            notify_transport.cleanup()
    database, logs, published = stored + dump(pg_url), harness.logs(), listener.text()
    assert "secret:nf/" in answers and "secret:nf/" in database
    for label, value in S.items():
        for where, haystack in (("database", database), ("log", logs), ("notifications", published),
                                ("get_* answers", answers)):
            assert value not in haystack, f"{label} found in the {where}"
    # and they end with their NF
    assert secrets_of(harness, pg_url, nf_id) == {}


def secrets_of(harness, db_url: str, nf_id: str) -> dict[str, str]:
    """The secrets stored under the NF's names, decrypted."""
    engine = create_engine(db_url)
    try:
        store = SecretStore(make_sessionmaker(engine), load_key(harness.conf))
        return {n: store.get(n) for n in store.names() if n.startswith(f"nf/{nf_id}/")}
    finally:
        engine.dispose()


_FW_RESOURCES = {
    "fw": {"type": "OS::Neutron::Firewall", "properties": {"firewall_policy_id": {"get_resource": "policy"}}},
    "policy": {"type": "OS::Neutron::FirewallPolicy", "properties": {"firewall_rules": [{"get_resource": "web"}]}},
    "web": {"type": "OS::Neutron::FirewallRule", "properties": {
        "protocol": "tcp", "destination_port": "22", "action": "allow"}},
}
