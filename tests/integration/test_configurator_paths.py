"""One netns firewall NF through each of the orchestrator's three configuration paths,
proved with packets:

- ``direct``: the config drivers run in the orchestrator's workers;
- ``rest``: the orchestrator's workers POST to ``nfp-configurator`` over HTTPS (mutual
  TLS + token), the step parks, and the client's notifier polls
  ``get_notifications`` and casts the result back;
- ``proxy``: connected as seed 001's diagram connects them. The orchestrator casts on
  RabbitMQ to the ``nfp-proxy`` agent; the agent talks only to a unix socket; the
  proxy end behind that socket runs in its own network namespace on a service
  management network (198.18.50.0/24) and is the only source the configurator's
  allowlist admits; the configurator configures the device and its notifications
  come back the same way and drive the NF to ACTIVE.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from typing import Optional

import pytest

from nfp.drivers.device.netns import NetnsDeviceDriver, iproute, segments
from nfp.pki import Pki, subject_of
from nfp.proxy.http import Refused, Unavailable, configurator_https
from nfp.testing.topology import Topology

pytestmark = pytest.mark.integration

AMQP = "rabbit://guest:guest@127.0.0.1:5672/"
FLAVOR = "service_vendor=linux,device_type=netns"
WEB = "198.18.1.10"
SVC_CIDR, SVC_GATEWAY, PROXY_IP = "198.18.50.0/24", "198.18.50.1", "198.18.50.10"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tier_config(tmp_path, client: str, address: str = "127.0.0.1", management=("127.0.0.0/8",),
                targets=("198.18.0.0/24",), extra: Optional[dict] = None) -> dict:
    """The orchestrator's and the configurator tier's shared config (one file, as
    ``nfp serve`` on one host would have it), with private topics on the shared broker."""
    tag, port = uuid.uuid4().hex[:8], free_port()
    conf = {"transport": {"url": AMQP},
            "rpc": {"notification_topic": f"nfp-nso-{tag}", "notifications_topic": f"nfp-notif-{tag}"},
            "orchestrator": {"device_poll_interval": 0.2, "config_wait_timeout": 180},
            "configurator": {"client": client, "url": f"https://{address}:{port}", "poll_interval": 0.2},
            "configurator_service": {"address": address, "port": port, "workers": 1,
                                     "allowed_management_cidrs": list(management),
                                     "allowed_target_cidrs": list(targets)},
            "proxy": {"topic": f"nfp-configurator-{tag}", "socket": str(tmp_path / "px" / "proxy.sock"),
                      "configurator_url": f"https://{address}:{port}", "poll_interval": 0.2}}
    for key, value in (extra or {}).items():
        conf.setdefault(key, {}).update(value)
    return conf


class Daemon:
    """One ``nfp-configurator`` or ``nfp-proxy`` process (optionally inside a namespace)."""

    def __init__(self, name: str, config_file, log_dir, args=(), netns: Optional[str] = None):
        module = {"configurator": "nfp.cli.configurator", "proxy": "nfp.cli.proxy"}[name.split("-")[0]]
        self.cmd = [sys.executable, "-c", f"from {module} import main; main()",
                    "--config", str(config_file), *args]
        if netns:
            self.cmd = [iproute.IP, "netns", "exec", netns, *self.cmd]
        self.log = log_dir / f"{name}.log"
        self.proc: Optional[subprocess.Popen] = None
        self.starts = 0

    def start(self) -> "Daemon":
        env = {k: v for k, v in os.environ.items() if not k.startswith("NFP_")}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        self.starts += 1
        return self

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill9()

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def init_pki(conf, address: str) -> None:
    pki = Pki.from_conf(conf)
    pki.init()
    pki.issue("configurator", hosts=[address])
    pki.issue("orchestrator")
    pki.issue("proxy")


def wait_configurator(conf, daemon: Daemon, timeout: float = 90) -> int:
    """Until the configurator answers the orchestrator's TLS client: 200, or the status
    it refuses it with (403 from outside its management allowlist)."""
    c = conf.configurator
    http = configurator_https(conf, c.url, "orchestrator", 5)
    end = time.monotonic() + timeout
    try:
        while True:
            assert daemon.proc.poll() is None, f"configurator exited:\n{daemon.logs()[-3000:]}"
            try:
                http.notifications()
                return 200
            except Unavailable:
                assert time.monotonic() < end, f"configurator not up:\n{daemon.logs()[-3000:]}"
                time.sleep(0.3)
            except Refused as exc:
                return exc.status
    finally:
        http.close()


def configurator_audit(conf, method: str) -> list[tuple]:
    """``(source, cert_subject, token_subject, result)`` of the configurator's audit rows."""
    from sqlalchemy import create_engine, text
    from nfp.configurator.service import daemon_conf
    engine = create_engine(daemon_conf(conf).database_url)
    try:
        with engine.connect() as db:
            return [tuple(r) for r in db.execute(text(
                "SELECT source, cert_subject, token_subject, result FROM audit_log "
                "WHERE method = :m"), {"m": method})]
    finally:
        engine.dispose()


def wait_socket(path, daemon: Daemon, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not os.path.exists(path):
        assert daemon.proc.poll() is None, f"proxy exited:\n{daemon.logs()[-3000:]}"
        assert time.monotonic() < end, f"proxy socket {path} missing:\n{daemon.logs()[-3000:]}"
        time.sleep(0.1)


def _nf(provider, consumer, rules):
    return {"name": "fw", "tenant_id": "t1",
            "service_profile": {"id": "p1", "service_type": "firewall", "service_flavor": FLAVOR},
            "provider": provider.port("198.18.1.1", "provider"),
            "consumer": consumer.port("198.18.2.1", "consumer"),
            "service_config": {"config": [{"resource": "firewall", "resource_data": {"rules": rules}}]}}


@pytest.mark.parametrize("path", ["direct", "rest", "proxy"])
def test_firewall_nf_through_each_configuration_path(path, tmp_path, netns_required):
    from nfp.testing.harness import Harness
    daemons: list[Daemon] = []
    with Topology() as topo:
        provider = topo.network("provider", "198.18.1.0/24", gateway_ip="198.18.1.1")
        consumer = topo.network("consumer", "198.18.2.0/24", gateway_ip="198.18.2.1")
        address, management, proxy_ns = "127.0.0.1", ("127.0.0.0/8",), None
        if path == "proxy":
            # the service management network: the configurator's address in the root
            # namespace on its bridge, the proxy end alone on it in its own namespace
            svc = topo.network("svcmgmt", SVC_CIDR, gateway_ip=SVC_GATEWAY)
            with iproute.host_lock():
                segments.ensure_bridge(svc.bridge, f"{SVC_GATEWAY}/24")
            proxy_ns = topo.host("proxy", svc, PROXY_IP).netns
            address, management = SVC_GATEWAY, (f"{PROXY_IP}/32",)
        config = tier_config(tmp_path, path, address, management, extra={"device_drivers": {"netns": {}}})
        harness = Harness(tmp_path / "nfp", config=config, transport_url=AMQP, workers=2)
        conf = harness.conf
        try:
            if path != "direct":
                init_pki(conf, address)
                configurator = Daemon("configurator", harness.config_file, tmp_path).start()
                daemons.append(configurator)
                status = wait_configurator(conf, configurator)
                # from the management domain only the rest path may reach it
                assert status == (403 if path == "proxy" else 200)
            if path == "proxy":
                daemons.append(Daemon("proxy-end", harness.config_file, tmp_path, ["--role", "proxy"],
                                      netns=proxy_ns).start())
                wait_socket(conf.proxy.socket, daemons[-1])
                daemons.append(Daemon("proxy-agent", harness.config_file, tmp_path,
                                      ["--role", "agent"]).start())
            web = topo.host("web", provider, WEB)
            web.serve_http(80)
            web.serve_http(8080)
            client = topo.host("client", consumer, "198.18.2.10")
            with harness:
                rule = {"name": "web", "protocol": "tcp", "destination_port": 80}
                nf = harness.client.create_network_function(_nf(provider, consumer, [rule]))
                harness.wait_for_status(nf["id"], "ACTIVE", timeout=120)
                assert client.http_get(WEB, 80) == (200, "web")
                assert client.tcp(WEB, 8080) == "timeout"
                harness.client.delete_network_function(nf["id"])
                harness.wait_gone(nf["id"], timeout=120)
                logs = harness.logs()
            configurator_log = "".join(d.logs() for d in daemons if d.log.name == "configurator.log")
            if path == "direct":
                assert "configuration request" not in logs
            else:  # the configurator, not the orchestrator's workers, configured the device
                assert f"NF {nf['id']}: configuration request" in logs
                assert f"NF {nf['id']}, device" in configurator_log and "success" in configurator_log
            if path != "direct":
                audit = configurator_audit(conf, "create_network_function_config")
                name, source = ("proxy", PROXY_IP) if path == "proxy" else ("orchestrator", "127.0.0.1")
                who = (source, subject_of(Pki.from_conf(conf).cert_path(name)), name)
                assert [a[:3] for a in audit if a[3] == "accepted"] == [who]
            if path == "proxy":
                agent_log = daemons[-1].logs()
                assert "forwarded: accepted" in agent_log and "delivered" in agent_log
        finally:
            for daemon in reversed(daemons):
                daemon.stop()
            NetnsDeviceDriver(conf, {}).startup_sweep(known_ids=set())
