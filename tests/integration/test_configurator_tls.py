"""nfp-configurator as a daemon over mutual TLS: the handshake refuses a client with no
certificate, another CA's, an expired or a revoked one, and TLS below 1.2; a good
client and token get through, and `nfp pki rotate` swaps the server certificate live."""
from __future__ import annotations

import datetime as dt
import http.client
import json
import ssl
import time

import pytest

from nfp.configurator.daemon import ConfiguratorDaemon
from nfp.configurator.security import client_ssl_context, jwt_key, mint_token
from nfp.pki import Pki
from nfp.testing.configurator import firewall_body, harness_conf

pytestmark = pytest.mark.integration


@pytest.fixture
def daemon(tmp_path):
    conf = harness_conf(tmp_path, port=0, workers=1, tls={"reload_interval": 0.2})
    pki = Pki.from_conf(conf)
    pki.init()
    pki.issue("configurator")
    pki.issue("orchestrator")
    d = ConfiguratorDaemon(conf)
    d.start()
    try:
        yield d, pki, jwt_key(d.conf)
    finally:
        d.stop()


def _request(d, ctx, key, method="GET", path="/v1/nfp/get_notifications", body=None):
    conn = http.client.HTTPSConnection("127.0.0.1", d.port, context=ctx, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {mint_token(key, 'orchestrator')}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null"), conn.sock.getpeercert()
    finally:
        conn.close()


def _refused(d, ctx, key):
    """No HTTP answer at all: the handshake (or, under TLS 1.3, the first read) fails."""
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.RemoteDisconnected)):
        _request(d, ctx, key)


def _client(pki, name="orchestrator"):
    return client_ssl_context(pki.ca_cert_path, pki.cert_path(name), pki.key_path(name))


def test_good_client_and_token_are_served_end_to_end(daemon):
    d, pki, key = daemon
    status, answer, _ = _request(d, _client(pki), key, "POST",
                                 "/v1/nfp/create_network_function_config", firewall_body())
    assert status == 200 and answer["status"] == "accepted"
    end, notes = time.monotonic() + 30, []
    while not notes and time.monotonic() < end:
        notes = _request(d, _client(pki), key)[1]
        time.sleep(0.1)
    assert notes[0]["notification"][0]["data"]["status_code"] == "success"


def test_no_client_certificate_is_refused_at_the_handshake(daemon):
    d, pki, key = daemon
    _refused(d, client_ssl_context(pki.ca_cert_path), key)


def test_another_cas_certificate_is_refused(daemon, tmp_path):
    d, pki, key = daemon
    other = Pki(tmp_path / "other-ca")
    other.init()
    other.issue("orchestrator")
    ctx = client_ssl_context(pki.ca_cert_path, other.cert_path("orchestrator"), other.key_path("orchestrator"))
    _refused(d, ctx, key)


def test_an_expired_certificate_is_refused(daemon):
    d, pki, key = daemon
    now = dt.datetime.now(dt.timezone.utc)
    pki.issue("old", not_before=now - dt.timedelta(days=10), not_after=now - dt.timedelta(days=1))
    _refused(d, _client(pki, "old"), key)


def test_a_revoked_certificate_is_refused_once_the_crl_is_reloaded(daemon):
    d, pki, key = daemon
    pki.issue("soon-revoked")
    assert _request(d, _client(pki, "soon-revoked"), key)[0] == 200
    pki.revoke("soon-revoked")
    assert d.reloader.check() or True  # the reloader thread may have got there first
    _refused(d, _client(pki, "soon-revoked"), key)
    assert _request(d, _client(pki), key)[0] == 200  # others are unaffected


def test_tls_below_1_2_is_refused(daemon):
    d, pki, key = daemon
    ctx = _client(pki)
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    _refused(d, ctx, key)


def test_rotation_swaps_the_server_certificate_without_a_restart(daemon):
    d, pki, key = daemon
    before = _request(d, _client(pki), key)[2]["serialNumber"]
    renewed = {i.name for i in pki.rotate(force=True)}
    assert {"configurator", "orchestrator"} <= renewed
    d.reloader.check()
    after = _request(d, _client(pki), key)[2]["serialNumber"]
    assert after != before


def test_missing_token_over_tls_is_401_and_audited_with_the_certificate_subject(daemon):
    d, pki, key = daemon
    conn = http.client.HTTPSConnection("127.0.0.1", d.port, context=_client(pki), timeout=10)
    conn.request("GET", "/v1/nfp/get_notifications")
    assert conn.getresponse().status == 401
    conn.close()
    from nfp import audit
    with d.sessionmaker() as session:
        [row] = audit.rows(session, event="auth")
    assert row.cert_subject == "CN=orchestrator,O=nfp" and row.source == "127.0.0.1"
