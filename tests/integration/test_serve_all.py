"""``nfp serve --all`` as an operator runs it for a demo: one command on embedded
defaults (SQLite, no PKI yet) with RabbitMQ for the proxy path.

- It makes the PKI and the three certificates (keys 0600), and one create goes
  orchestrator → RabbitMQ → nfp-proxy's agent → unix socket → proxy end → HTTPS
  (mutual TLS + token) → nfp-configurator → the memory appliance, and its
  notification back, to ACTIVE; the element is on the device, and the
  configurator's audit names the proxy's certificate as the caller.
- SIGTERM stops all three children and exits 0; a child killed with ``kill -9``
  stops the others and ``nfp serve --all`` exits non-zero.
"""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, text

from nfp import config as nfp_config
from nfp.configurator.service import daemon_conf
from nfp.testing.harness import NfpClient
from nfp.testing.memory_config import read_device
from tests.integration.test_configurator_paths import AMQP, free_port

pytestmark = pytest.mark.integration
WAIT = 120.0
RULES = [{"name": "web", "protocol": "tcp", "destination_port": 80}]


def config_file(tmp_path) -> Path:
    """Embedded defaults but for RabbitMQ, private topics on the shared broker, a free
    port for the configurator and one worker each (two shared cores)."""
    tag = uuid.uuid4().hex[:8]
    data = {"state_dir": str(tmp_path / "state"),
            "transport": {"url": AMQP},
            "rpc": {"topic": f"nfp-all-{tag}", "notification_topic": f"nfp-nso-{tag}",
                    "notifications_topic": f"nfp-notif-{tag}"},
            "orchestrator": {"workers": 1},
            "configurator_service": {"port": free_port(), "workers": 1},
            "proxy": {"topic": f"nfp-configurator-{tag}", "poll_interval": 0.2}}
    path = tmp_path / "nfp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class ServeAll:
    def __init__(self, path: Path, log: Path):
        self.path, self.log = path, log
        env = {k: v for k, v in os.environ.items() if not k.startswith("NFP_")}
        with open(log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "nfp.cli.main", "--config", str(path),
                                          "serve", "--all"], stdout=out, stderr=subprocess.STDOUT,
                                         env=env, start_new_session=True)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def children(self) -> dict[str, int]:
        """``{"configurator" | "proxy" | "orchestrator": pid}`` of the live children."""
        try:
            pids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except OSError:
            return {}
        out = {}
        for pid in map(int, pids):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            name = ("configurator" if "nfp.cli.configurator" in cmd else "proxy" if "nfp.cli.proxy" in cmd
                    else "orchestrator" if "nfp.cli.main" in cmd else cmd)
            out[name] = pid
        return out

    def wait_up(self, client: NfpClient) -> dict[str, int]:
        end = time.monotonic() + WAIT
        while True:
            assert self.proc.poll() is None, f"nfp serve --all exited:\n{self.logs()[-4000:]}"
            assert time.monotonic() < end, f"nfp serve --all not up:\n{self.logs()[-4000:]}"
            try:
                client.call("get_network_functions", timeout=2, filters={})
                if "nfp-proxy ready" in self.logs() and "nfp configurator ready" in self.logs():
                    found = self.children()
                    assert set(found) == {"configurator", "proxy", "orchestrator"}, found
                    return found
            except AssertionError:
                raise
            except Exception:  # noqa: BLE001 - not answering yet
                pass
            time.sleep(0.3)

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)


def gone(pids) -> bool:
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].split()[0]
        except OSError:
            continue
        if state != "Z":
            return False
    return True


def test_serve_all_drives_a_create_through_the_proxy_path(tmp_path, rabbit_url):
    path = config_file(tmp_path)
    conf = nfp_config.load(str(path), environ={})
    assert not (conf.state_path / "pki").exists()
    run, client = ServeAll(path, tmp_path / "serve-all.log"), NfpClient(conf)
    try:
        children = run.wait_up(client)
        for name in ("configurator", "orchestrator", "proxy"):
            key = conf.state_path / "pki" / "issued" / f"{name}.key"
            assert stat.S_IMODE(key.stat().st_mode) == 0o600, name
        nf = client.create_network_function({
            "name": "fw-all", "tenant_id": "t1",
            "service_profile": {"service_type": "firewall",
                                "service_flavor": "service_vendor=memory,device_type=static"},
            "service_config": {"config": [{"resource": "firewall", "resource_data": {"rules": RULES}}]}})
        end, got = time.monotonic() + WAIT, None
        while time.monotonic() < end:
            got = client.get_network_function(nf["id"])
            if got and got["status"] in ("ACTIVE", "ERROR"):
                break
            time.sleep(0.3)
        assert got and got["status"] == "ACTIVE", f"{got}\n{run.logs()[-4000:]}"
        [rule] = read_device(conf.state_path, "memory-appliance-1")[nf["id"]]["firewall"]["rules"]
        assert (rule["name"], str(rule["destination_port"])) == ("web", "80")

        # the configurator applied it, called by the proxy end (not by the orchestrator directly)
        engine = create_engine(daemon_conf(conf).database_url)
        try:
            with engine.connect() as db:
                callers = db.execute(text(
                    "SELECT cert_subject, token_subject, result FROM audit_log WHERE nf_id = :n "
                    "AND method = 'create_network_function_config'"), {"n": nf["id"]}).all()
        finally:
            engine.dispose()
        assert [tuple(c) for c in callers] == [("CN=proxy,O=nfp", "proxy", "accepted")]
        assert "request" in run.logs() and "forwarded: accepted" in run.logs()

        run.proc.send_signal(signal.SIGTERM)
        assert run.proc.wait(WAIT) == 0, run.logs()[-4000:]
        assert gone(children.values())
        for daemon in ("nfp orchestrator stopped", "nfp-proxy stopped (all)", "nfp configurator stopped"):
            assert daemon in run.logs()
    finally:
        client.close()
        run.close()


def test_serve_all_stops_the_others_when_one_dies(tmp_path, rabbit_url):
    path = config_file(tmp_path)
    conf = nfp_config.load(str(path), environ={})
    run, client = ServeAll(path, tmp_path / "serve-all.log"), NfpClient(conf)
    try:
        children = run.wait_up(client)
        os.kill(children["configurator"], signal.SIGKILL)
        code = run.proc.wait(WAIT)
        assert code != 0, run.logs()[-4000:]
        assert "nfp-configurator (pid" in run.logs() and "stopping the others" in run.logs()
        end = time.monotonic() + 30
        while not gone(children.values()):
            assert time.monotonic() < end, f"children left: {children}"
            time.sleep(0.2)
    finally:
        client.close()
        run.close()
