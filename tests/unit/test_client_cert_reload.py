"""The orchestrator's and the proxy's TLS client (``configurator_https``) presents a
certificate renewed by ``nfp pki`` on its next connection, without a restart:
a server requiring client certificates from nfp's CA records what it is shown."""
from __future__ import annotations

import socket
import ssl
import threading
import time

from nfp.pki import Pki
from nfp.proxy.http import configurator_https
from nfp.testing.configurator import harness_conf

ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
          b"Connection: close\r\n\r\n[]")


class RecordingServer:
    """Mutual TLS on 127.0.0.1: the serial of every client certificate it accepts."""

    def __init__(self, pki: Pki):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(pki.cert_path("configurator")), str(pki.key_path("configurator")))
        self.ctx.load_verify_locations(cafile=str(pki.ca_cert_path))
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.serials: list[int] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as tls:
                    self.serials.append(int(tls.getpeercert()["serialNumber"], 16))
                    tls.recv(65536)
                    tls.sendall(ANSWER)
            except (OSError, ssl.SSLError):
                continue

    def close(self) -> None:
        self.sock.close()


def test_a_renewed_client_certificate_is_presented_without_a_restart(tmp_path):
    conf = harness_conf(tmp_path, port=0, workers=1, tls={"reload_interval": 0.1})
    pki = Pki.from_conf(conf)
    pki.init()
    pki.issue("configurator")
    first = pki.issue("orchestrator")
    server = RecordingServer(pki)
    client = configurator_https(conf, f"https://127.0.0.1:{server.port}", "orchestrator", 5)
    try:
        assert client.request("GET", "/v1/nfp/get_notifications") == []
        assert server.serials == [first.serial]
        renewed = pki.issue("orchestrator")  # what `nfp pki rotate` does per certificate
        assert renewed.serial != first.serial
        deadline = time.monotonic() + 10
        while server.serials[-1] != renewed.serial:
            assert time.monotonic() < deadline, "the renewed certificate was never presented"
            time.sleep(0.1)
            client.request("GET", "/v1/nfp/get_notifications")
    finally:
        client.close()
        server.close()
    assert not client.reloader._thread.is_alive()  # close() stopped the reloader
