"""Broker security of nfp-configurator, negatives first: every refusal fails closed,
is audited, and no credential reaches the audit table, the log or a notification."""
from __future__ import annotations

import datetime as dt
import json
import logging

import pytest
from sqlalchemy import text

from nfp.testing.configurator import ConfiguratorHarness, firewall_body

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
NOTIFY = "/v1/nfp/get_notifications"


@pytest.fixture
def h(tmp_path):
    with ConfiguratorHarness(tmp_path) as harness:
        yield harness


def _refused(h, token, status=401):
    answer = h.post("create_network_function_config", firewall_body(), token=token)
    assert answer.status_code == status, answer.text
    h.engine.join()
    assert h.engine.calls == []  # nothing was accepted
    return answer.json()


def test_missing_token_is_401(h):
    answer = h.client.post("/v1/nfp/create_network_function_config", json=firewall_body())
    assert answer.status_code == 401 and answer.json()["field"] == "Authorization"
    assert h.client.get(NOTIFY).status_code == 401


def test_expired_token_is_401(h):
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=10)
    assert "expired" in _refused(h, h.token(now=past))["error"]


def test_wrong_audience_is_401(h):
    assert "audience" in _refused(h, h.token(audience="someone-else"))["error"]


def test_wrong_issuer_is_401(h):
    assert "issuer" in _refused(h, h.token(issuer="mallory"))["error"]


def test_token_signed_with_another_key_is_401(h):
    _refused(h, h.token(key=b"x" * 48))


def test_token_living_longer_than_five_minutes_is_401(h):
    assert "lifetime" in _refused(h, h.token(ttl=301))["error"]


def test_replayed_token_is_401(h):
    token = h.token()
    assert h.client.get(NOTIFY, headers=h.headers(token)).status_code == 200
    again = h.client.get(NOTIFY, headers=h.headers(token))
    assert again.status_code == 401 and "replayed" in again.json()["error"]


def test_token_without_jti_is_401(h):
    import jwt
    now = dt.datetime.now(dt.timezone.utc)
    j = h.conf.configurator_service.jwt
    token = jwt.encode({"sub": "x", "aud": j.audience, "iss": j.issuer, "iat": now,
                        "exp": now + dt.timedelta(seconds=30)}, h.key, algorithm="HS256")
    assert "jti" in _refused(h, token)["error"]


def test_alg_none_is_401(h):
    import jwt
    now = dt.datetime.now(dt.timezone.utc)
    token = jwt.encode({"sub": "x", "aud": "nfp-configurator", "iss": "nfp-orchestrator", "jti": "a",
                        "iat": now, "exp": now + dt.timedelta(seconds=30)}, None, algorithm="none")
    _refused(h, token)


def test_source_outside_the_management_allowlist_is_403(tmp_path):
    with ConfiguratorHarness(tmp_path, source="203.0.113.9") as h:
        answer = h.post("create_network_function_config", firewall_body())
        assert answer.status_code == 403 and answer.json()["field"] == "source"
        assert h.client.get(NOTIFY, headers=h.headers()).status_code == 403


def test_empty_management_allowlist_refuses_everyone(tmp_path):
    with ConfiguratorHarness(tmp_path, allowed_management_cidrs=[]) as h:
        assert h.post("create_network_function_config", firewall_body()).status_code == 403


def test_target_outside_the_appliance_allowlist_is_403(h):
    answer = h.post("create_network_function_config", firewall_body(mgmt_ip="10.9.9.9"))
    assert answer.status_code == 403 and answer.json()["field"] == "info.context.nfd_ip"
    h.engine.join()
    assert h.engine.calls == []


def test_oversized_body_is_400(tmp_path):
    with ConfiguratorHarness(tmp_path, max_body_bytes=1024) as h:
        body = firewall_body(padding="x" * 2000)
        answer = h.post("create_network_function_config", body)
        assert answer.status_code == 400 and answer.json()["field"] == "body"


def test_every_mutation_and_refusal_is_audited_without_secrets(h, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    good_token = h.token(subject="orch-1")
    h.post("create_network_function_config", firewall_body(auth_token="ctx-SECRET-token-123"),
           token=good_token)
    h.post("create_network_function_config", firewall_body(), token="not.a.token-SECRET")
    h.post("create_network_function_config", firewall_body(mgmt_ip="10.9.9.9"))
    h.post("create_network_function_config", firewall_body(rules="nope"))
    h.engine.join()
    notes = h.get_notifications()
    with h.sessionmaker() as session:
        rows = [dict(r._mapping) for r in session.execute(text("SELECT * FROM audit_log ORDER BY id"))]
        requests = [dict(r._mapping) for r in session.execute(text("SELECT * FROM configurator_requests"))]
    assert [(r["event"], r["result"]) for r in rows] == [
        ("configurator.request", "accepted"), ("auth.failure", "unauthorized"),
        ("access.denied", "forbidden"), ("configurator.request", "accepted")]
    first = rows[0]
    assert first["token_subject"] == "orch-1" and first["source"] == "127.0.0.1"
    assert first["method"] == "create_network_function_config"
    assert first["nf_id"] == "nf-1" and first["device_id"] == "dev-1"
    everything = json.dumps([rows, requests, notes], default=str) + caplog.text
    for secret in (good_token, "ctx-SECRET-token-123", "not.a.token-SECRET", h.key.decode(),
                   h.pki.ca_key_path.read_text()):
        assert secret not in everything


def test_audit_file_gets_json_lines(tmp_path):
    path = tmp_path / "audit.jsonl"
    with ConfiguratorHarness(tmp_path, audit_file=str(path)) as h:
        h.post("create_network_function_config", firewall_body())
        h.client.get(NOTIFY)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["event"] for line in lines] == ["configurator.request", "auth.failure"]
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_audit_list_cli(h, tmp_path):
    from click.testing import CliRunner
    from nfp.cli.main import cli
    h.post("create_network_function_config", firewall_body())
    h.client.get(NOTIFY)
    result = CliRunner().invoke(cli, ["--state-dir", str(tmp_path), "audit", "list", "--json",
                                      "--since", "1h"])
    assert result.exit_code == 0, result.output
    events = [r["event"] for r in json.loads(result.output)]
    assert events == ["configurator.request", "auth.failure"]
    result = CliRunner().invoke(cli, ["--state-dir", str(tmp_path), "audit", "list", "--event", "auth",
                                      "--since", "2000-01-01T00:00:00", "--json"])
    assert result.exit_code == 0 and [r["event"] for r in json.loads(result.output)] == ["auth.failure"]
    table = CliRunner().invoke(cli, ["--state-dir", str(tmp_path), "audit", "list"])
    assert table.exit_code == 0 and "when" in table.output
