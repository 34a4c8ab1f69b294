"""`nfp pki`: CA, issue, revoke (CRL), rotate; keys 0600; every operation audited."""
from __future__ import annotations

import datetime as dt
import json
import stat

from click.testing import CliRunner
from cryptography import x509

from nfp.cli.main import cli
from nfp.pki import Pki


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_cli_init_issue_revoke_rotate_and_audit(tmp_path):
    run = lambda *args: CliRunner().invoke(cli, ["--state-dir", str(tmp_path), *args])  # noqa: E731
    assert run("pki", "init").exit_code == 0
    assert run("pki", "init").exit_code != 0  # never replaces a CA
    assert run("pki", "issue", "configurator", "--host", "198.18.0.5").exit_code == 0
    assert run("pki", "issue", "bad name").exit_code != 0
    pki = Pki(tmp_path / "pki")
    for key in (pki.ca_key_path, pki.jwt_key_path, pki.key_path("configurator")):
        assert _mode(key) == 0o600
    assert _mode(pki.dir) == 0o700
    cert = x509.load_pem_x509_certificate(pki.cert_path("configurator").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "198.18.0.5" in [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    assert run("pki", "revoke", "configurator").exit_code == 0
    crl = x509.load_pem_x509_crl(pki.crl_path.read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
    assert run("pki", "revoke", "nobody").exit_code != 0
    rotated = run("pki", "rotate")
    assert rotated.exit_code == 0 and "nothing to renew" in rotated.output  # revoked: not renewed
    audit = json.loads(run("audit", "list", "--event", "pki", "--json").output)
    assert [(a["method"], a["result"]) for a in audit] == [
        ("pki.init", "ok"), ("pki.init", "error"), ("pki.issue", "ok"), ("pki.issue", "error"),
        ("pki.revoke", "ok"), ("pki.revoke", "error"), ("pki.rotate", "ok")]
    everything = json.dumps(audit)
    for secret in (pki.ca_key_path.read_text(), pki.jwt_key_path.read_text().strip()):
        assert secret not in everything


def test_rotate_renews_only_what_expires_soon(tmp_path):
    pki = Pki(tmp_path, cert_days=30, renew_before_days=7)
    pki.init()
    now = dt.datetime.now(dt.timezone.utc)
    pki.issue("fresh")
    pki.issue("expiring", not_after=now + dt.timedelta(days=2))
    old_serial = pki.index()["certs"]["expiring"]["serial"]
    assert [i.name for i in pki.rotate()] == ["expiring"]
    assert pki.index()["certs"]["expiring"]["serial"] != old_serial
    assert _mode(pki.key_path("expiring")) == 0o600
    assert {i.name for i in pki.rotate(force=True)} == {"fresh", "expiring"}


def test_a_crl_published_within_the_same_second_still_wins_in_a_live_context(tmp_path):
    """The reloader adds a new CRL beside the one a live server context holds; OpenSSL
    takes the latest by lastUpdate, in whole seconds. A revocation published within
    the second of the previous CRL must still be the one that applies."""
    import socket
    import ssl
    import threading

    from nfp.configurator.security import client_ssl_context, server_ssl_context

    pki = Pki(tmp_path / "pki")
    pki.init()
    pki.issue("configurator", ["127.0.0.1"])
    pki.issue("client")
    paths = {"cert": pki.cert_path("configurator"), "key": pki.key_path("configurator"),
             "ca": pki.dir / "ca.crt", "crl": pki.crl_path}
    for _ in range(3):  # each round: a fresh context, then a revocation at once
        server = server_ssl_context(paths)
        pki.revoke("client")
        server.load_verify_locations(cafile=str(pki.crl_path))  # what TlsReloader.check does
        client = client_ssl_context(pki.dir / "ca.crt", pki.cert_path("client"), pki.key_path("client"))
        a, b = socket.socketpair()
        outcome = {}

        def serve():
            try:
                with server.wrap_socket(a, server_side=True) as tls:
                    tls.recv(1)
                outcome["server"] = "accepted"
            except (ssl.SSLError, OSError) as exc:
                outcome["server"] = f"refused: {exc}"

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            with client.wrap_socket(b, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"x")
                tls.recv(1)
        except (ssl.SSLError, OSError):
            pass
        thread.join(10)
        assert outcome["server"].startswith("refused"), outcome
        assert "revoked" in outcome["server"]
        pki.issue("client")  # a new certificate for the next round
