"""The audit log's remaining parts, on real daemons:

- nfp-proxy's proxy end audits each request it forwards (who: its certificate and
  token subject and the agent's unix credentials; what: method, NF and device id;
  result) and each refusal it meets (a token the configurator rejects: 401), as
  JSON lines when it has no database and as ``audit_log`` rows when
  ``proxy.audit_database_url`` names one; a credential sent in the payload is in
  neither;
- the orchestrator and the configurator record ``audit.start`` and ``audit.stop``,
  read back with ``nfp audit list --json``.
"""
from __future__ import annotations

import json
import secrets
import subprocess
import sys
import uuid

import pytest
import yaml
from sqlalchemy import create_engine, text

from nfp import config as nfp_config
from nfp.configurator.service import daemon_conf
from nfp.db import migrate
from nfp.pki import Pki, subject_of
from nfp.proxy.daemon import ProxyDaemon
from nfp.proxy.http import ConfiguratorHttp, Refused, unix_pool
from nfp.testing.configurator import firewall_body
from nfp.testing.harness import Harness
from tests.integration.test_configurator_paths import Daemon, free_port, init_pki, wait_configurator

pytestmark = pytest.mark.integration


def tier(tmp_path, **proxy) -> dict:
    port = free_port()
    return {"state_dir": str(tmp_path / "nfp"),
            "configurator_service": {"port": port, "workers": 1,
                                     "allowed_target_cidrs": ["198.18.0.0/24"]},
            "configurator": {"url": f"https://127.0.0.1:{port}"},
            "proxy": {"configurator_url": f"https://127.0.0.1:{port}", **proxy}}


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def proxy_end(data: dict) -> ProxyDaemon:
    daemon = ProxyDaemon(nfp_config.load(None, data, environ={}), "proxy")
    daemon.start()
    return daemon


def test_proxy_end_audits_forwarded_requests_and_refusals(tmp_path, pg_url):
    password = f"pw-{uuid.uuid4().hex}"
    data = tier(tmp_path, socket=str(tmp_path / "good" / "proxy.sock"),
                audit_file=str(tmp_path / "good-audit.jsonl"))
    (tmp_path / "nfp.yaml").write_text(yaml.safe_dump(data))
    conf = nfp_config.load(None, data, environ={})
    init_pki(conf, "127.0.0.1")
    configurator = Daemon("configurator", tmp_path / "nfp.yaml", tmp_path).start()
    good = bad = None
    try:
        assert wait_configurator(conf, configurator) == 200
        good = proxy_end(data)
        agent = ConfiguratorHttp(unix_pool(good.socket, 10))
        try:
            answer = agent.post("create_network_function_config",
                                firewall_body(admin_password=password), "req-good")
        finally:
            agent.close()
        assert answer["status"] == "accepted"

        # a proxy end whose token key is not the configurator's: 401 at the configurator,
        # recorded by this proxy in the database it is given (the file is not written)
        other_key = tmp_path / "other-jwt.key"
        other_key.write_text(secrets.token_hex(32))
        migrate.upgrade(pg_url)
        bad_data = tier(tmp_path, socket=str(tmp_path / "bad" / "proxy.sock"), audit_database_url=pg_url)
        bad_data["configurator_service"] = {**data["configurator_service"],
                                            "jwt": {"key_file": str(other_key)}}
        bad_data["proxy"]["configurator_url"] = data["proxy"]["configurator_url"]
        bad = proxy_end(bad_data)
        agent = ConfiguratorHttp(unix_pool(bad.socket, 10))
        try:
            with pytest.raises(Refused) as refused:
                agent.post("create_network_function_config",
                           firewall_body(nf_id="nf-2", admin_password=password), "req-bad")
        finally:
            agent.close()
        assert refused.value.status == 401
    finally:
        for daemon in (good, bad):
            if daemon is not None:
                daemon.stop()
        configurator.stop()

    subject = subject_of(Pki.from_conf(conf).cert_path("proxy"))
    written = lines(tmp_path / "good-audit.jsonl")
    [forwarded] = [r for r in written if r["event"] == "proxy.request"]
    assert forwarded["result"] == "accepted" and forwarded["method"] == "create_network_function_config"
    assert (forwarded["nf_id"], forwarded["device_id"]) == ("nf-1", "dev-1")
    assert forwarded["cert_subject"] == subject and "CN=proxy" in subject
    assert forwarded["token_subject"] == "proxy"
    assert forwarded["source"].startswith("unix uid ") and "req-good" in forwarded["detail"]
    assert [r["event"] for r in written][0] == "audit.start" and written[-1]["event"] == "audit.stop"
    assert not (tmp_path / "nfp" / "proxy" / "audit.jsonl").exists()  # the database took the bad one's

    engine = create_engine(pg_url)
    try:
        with engine.connect() as db:
            rows = [dict(r._mapping) for r in db.execute(text("SELECT * FROM audit_log ORDER BY id"))]
    finally:
        engine.dispose()
    [failure] = [r for r in rows if r["event"] == "auth.failure"]
    assert failure["result"] == "unauthorized" and failure["nf_id"] == "nf-2"
    assert failure["method"] == "create_network_function_config" and failure["cert_subject"] == subject
    assert "401" in failure["detail"] and failure["source"].startswith("unix uid ")
    assert {r["event"] for r in rows} == {"audit.start", "auth.failure", "audit.stop"}

    everything = json.dumps(written) + json.dumps(rows, default=str)
    assert password not in everything
    assert password not in (tmp_path / "configurator.log").read_text(errors="replace")


def audit_list(config_file) -> list[dict]:
    done = subprocess.run([sys.executable, "-m", "nfp.cli.main", "--config", str(config_file),
                           "audit", "list", "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_orchestrator_and_configurator_audit_their_start_and_stop(tmp_path):
    port = free_port()
    harness = Harness(tmp_path / "nfp", workers=1, config={
        "configurator_service": {"port": port, "workers": 1},
        "configurator": {"url": f"https://127.0.0.1:{port}"}})
    init_pki(harness.conf, "127.0.0.1")
    configurator = Daemon("configurator", harness.config_file, tmp_path)
    with harness:
        configurator.start()
        assert wait_configurator(harness.conf, configurator) == 200
        running = audit_list(harness.config_file)
        configurator.stop()
    assert harness.proc.returncode == 0 and configurator.proc.returncode == 0
    stopped = audit_list(harness.config_file)

    def events(rows, daemon):
        return [r["event"] for r in rows if r["method"] == daemon and r["event"].startswith("audit.")]

    for daemon in ("nfp-orchestrator", "nfp-configurator"):
        assert events(running, daemon) == ["audit.start"], running
        assert events(stopped, daemon) == ["audit.start", "audit.stop"], stopped
        row = [r for r in stopped if r["method"] == daemon][-1]
        assert row["source"].startswith("host:") and row["result"] == "ok"
    # each daemon's rows are in its own database: the configurator's is not the orchestrator's
    assert daemon_conf(harness.conf).database_url != harness.conf.database_url
