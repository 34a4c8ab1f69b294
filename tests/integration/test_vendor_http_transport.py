"""The HTTPS transport against real servers on loopback: TLS trust (CA file,
pinned fingerprint, host name), kept-alive connections, retries by method,
timeouts, and how a request is put on the wire."""
from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import json
import ssl
import threading
import urllib.parse

import pytest
import urllib3
import urllib3.connection
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from nfp.drivers.config.dictionary.errors import TransportError
from nfp.drivers.config.dictionary.http import (MAX_RETRY_AFTER, AuthMaterial, HttpEndpoint, HttpTransport,
                                                retry_policy)
from nfp.drivers.config.dictionary.pacing import TokenBucket
from nfp.drivers.config.dictionary.render import HttpRequest
from nfp.testing.simulators.pfsense import PfSenseSimulator

API_KEY = "transport-KEY-5e1d0c9b"
AUTH = AuthMaterial(headers={"X-API-Key": API_KEY})
RULE = {"type": "pass", "interface": ["wan"], "source": "198.18.0.0/24", "destination": "any"}


def _post(path="/api/v2/firewall/rule", body=RULE) -> HttpRequest:
    return HttpRequest("POST", path, headers={"Content-Type": "application/json"}, body=json.dumps(body).encode())


def _get(path="/api/v2/firewall/rules") -> HttpRequest:
    return HttpRequest("GET", path)


@pytest.fixture
def sim():
    with PfSenseSimulator(api_key=API_KEY) as simulator:
        yield simulator


def _transport(sim, **kwargs) -> HttpTransport:
    kwargs.setdefault("retries", 1)
    kwargs.setdefault("backoff", 0.01)
    return HttpTransport(HttpEndpoint(sim.host, sim.port, **kwargs), "dev-t")


def test_a_self_signed_device_is_refused_unless_trusted(sim):
    untrusted = _transport(sim)
    with pytest.raises(TransportError) as info:
        untrusted.send(_get(), AUTH)
    assert "TLS verification failed" in str(info.value) and "CERTIFICATE_VERIFY_FAILED" in str(info.value)
    assert sim.requests_seen == 0
    trusted = _transport(sim, ca_file=sim.cert.cert_path)
    assert trusted.send(_get(), AUTH).status == 200


def test_a_pinned_fingerprint_replaces_the_ca_and_a_wrong_one_is_refused(sim):
    pinned = _transport(sim, fingerprint=":".join(sim.cert.fingerprint[i:i + 2] for i in range(0, 64, 2)))
    assert pinned.send(_post(), AUTH).status == 200
    wrong = _transport(sim, fingerprint="00" * 32)
    with pytest.raises(TransportError) as info:
        wrong.send(_post(), AUTH)
    assert "Fingerprints did not match" in str(info.value)
    assert len(sim.table("firewall/rule")) == 1  # nothing reached the device over the wrong pin


def test_requests_reuse_one_kept_alive_connection(sim, monkeypatch):
    connects = []
    original = urllib3.connection.HTTPSConnection.connect
    monkeypatch.setattr(urllib3.connection.HTTPSConnection, "connect",
                        lambda self: (connects.append(1), original(self))[1])
    transport = _transport(sim, ca_file=sim.cert.cert_path)
    for _ in range(20):
        assert transport.send(_post(), AUTH).status == 200
    assert transport.send(_get(), AUTH).status == 200
    assert len(connects) == 1 and len(sim.table("firewall/rule")) == 20


def test_reads_are_retried_after_a_5xx_writes_are_not(sim):
    transport = _transport(sim, ca_file=sim.cert.cert_path)
    sim.faults.fail_next(1, status=503)
    assert transport.send(_get(), AUTH).status == 200
    assert sim.requests_seen == 2
    sim.faults.fail_next(1, status=503)
    answer = transport.send(_post(), AUTH)
    assert answer.status == 503 and b"SERVER_ERROR" in answer.content   # the device's own answer
    assert sim.requests_seen == 3 and sim.table("firewall/rule") == []
    sim.faults.fail_next(5, status=502)                                   # retries exhausted: last answer
    assert transport.send(_get(), AUTH).status == 502 and sim.requests_seen == 5


def test_a_slow_answer_is_a_timeout_and_a_write_is_not_repeated(sim):
    transport = _transport(sim, ca_file=sim.cert.cert_path, timeout=0.5)
    sim.faults.delay_next(1, seconds=1.5)
    with pytest.raises(TransportError) as info:
        transport.send(_post(), AUTH)
    assert "no answer within 0.5 s" in str(info.value) and sim.requests_seen == 1
    assert transport.send(_get(), AUTH).status == 200                     # a fresh connection works


def test_an_unreachable_device_is_reported_after_retries():
    with PfSenseSimulator(api_key=API_KEY) as gone:
        host, port, ca = gone.host, gone.port, gone.cert.cert_path
        transport = HttpTransport(HttpEndpoint(host, port, ca_file=ca, retries=2, backoff=0.01), "dev-t")
    with pytest.raises(TransportError) as info:
        transport.send(_post(), AUTH)
    assert "cannot connect" in str(info.value) and "refused" in str(info.value).lower()


def test_a_connection_the_device_closed_while_idle_is_replaced():
    first = PfSenseSimulator(api_key=API_KEY, tls=False).start()
    port = first.port
    transport = HttpTransport(HttpEndpoint("127.0.0.1", port, scheme="http", retries=0), "dev-t")
    try:
        assert transport.send(_post(), AUTH).status == 200
    finally:
        first.stop()
    with PfSenseSimulator(api_key=API_KEY, tls=False, port=port) as second:
        assert transport.send(_post(), AUTH).status == 200                # a POST, with no retry allowed
        assert len(second.table("firewall/rule")) == 1


def test_the_simulator_answers_like_a_server_for_methods_and_its_own_failures(sim, monkeypatch):
    transport = _transport(sim, ca_file=sim.cert.cert_path, retries=0)
    answer = transport.send(HttpRequest("OPTIONS", "/api/v2/firewall/rules"), AUTH)
    assert answer.status == 405 and "GET" in answer.headers.get("allow", "")

    async def broken(request):
        raise KeyError("simulator bug")
    monkeypatch.setattr(sim, "handle", broken)
    assert transport.send(_get(), AUTH).status == 500
    monkeypatch.undo()
    assert transport.send(_get(), AUTH).status == 200                     # and it keeps serving


# -- what goes on the wire, and host name checks: a plain standard-library server ----------

class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.seen.append((self.command, self.path, dict(self.headers), body))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def recorder():
    _Recorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_query_form_and_basic_auth_are_encoded(recorder):
    port = recorder.server_address[1]
    transport = HttpTransport(HttpEndpoint("127.0.0.1", port, scheme="http"), "dev-t")
    request = HttpRequest("POST", "/api/?type=config", params={"action": "set", "xpath": "/a[@n='x y']"},
                          data={"element": "<entry name='r&1'/>"})
    answer = transport.send(request, AuthMaterial(basic=("admin", "pä ss")))
    assert answer.status == 200 and answer.content == b"{}"
    ((method, path, headers, body),) = _Recorder.seen
    url = urllib.parse.urlsplit(path)
    assert method == "POST" and url.path == "/api/"
    assert urllib.parse.parse_qs(url.query) == {"type": ["config"], "action": ["set"], "xpath": ["/a[@n='x y']"]}
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert urllib.parse.parse_qs(body.decode()) == {"element": ["<entry name='r&1'/>"]}
    assert headers["Authorization"] == "Basic YWRtaW46cOQgc3M="          # base64 of latin-1 "admin:pä ss"


def _cert_for(tmp_path, dns_name: str) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "c.crt", tmp_path / "c.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_a_certificate_for_another_name_is_refused_even_from_a_trusted_ca(tmp_path, recorder):
    cert, key = _cert_for(tmp_path, "device.example")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    recorder.socket = context.wrap_socket(recorder.socket, server_side=True)
    assert ipaddress.ip_address(recorder.server_address[0]).is_loopback
    transport = HttpTransport(HttpEndpoint("127.0.0.1", recorder.server_address[1], ca_file=cert, retries=0),
                              "dev-t")
    with pytest.raises(TransportError) as info:
        transport.send(_post(), AUTH)
    assert "TLS verification failed" in str(info.value) and "127.0.0.1" in str(info.value)
    assert _Recorder.seen == []


# -- the retry policy itself: nfp's backoff, Retry-After capped, pacing; nothing sleeps ----

def _answer(status: int, **headers) -> urllib3.HTTPResponse:
    return urllib3.HTTPResponse(body=b"", headers=headers, status=status, preload_content=False)


def test_retry_after_is_capped_and_an_unreadable_one_falls_back_to_the_backoff(monkeypatch):
    slept: list = []
    monkeypatch.setattr("urllib3.util.retry.time.sleep", slept.append)
    waits: list = []
    bucket = TokenBucket(1.0, burst=1.0, clock=lambda: 0.0, sleep=waits.append)
    retry = retry_policy(HttpEndpoint("device.example", 443, retries=3, backoff=0.5), bucket)
    busy = _answer(503, **{"Retry-After": "120"})
    assert retry.is_retry("GET", 503, True) and not retry.is_retry("POST", 503, True)
    retry = retry.increment("GET", "/api", response=busy)
    retry.sleep(busy)
    assert slept == [MAX_RETRY_AFTER]                                     # the device asked for 120 s
    retry.sleep(_answer(503, **{"Retry-After": "soon"}))
    assert 0.5 <= slept[-1] <= 0.5 * 1.2                                  # nfp's first backoff step
    assert len(waits) == 1                                                # the second retry waited for a token


def test_a_tls_failure_is_never_retried():
    retry = retry_policy(HttpEndpoint("device.example", 443, retries=3))
    with pytest.raises(urllib3.exceptions.MaxRetryError):
        retry.increment("GET", "/api", error=urllib3.exceptions.SSLError("CERTIFICATE_VERIFY_FAILED"))
