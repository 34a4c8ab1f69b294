"""``nfp-proxy`` as a daemon: the proxy end halts at start without its certificate
(naming the command that makes one), serves a socket only its owner can use, and
the command line refuses an unknown role."""
from __future__ import annotations

import stat

import pytest
from click.testing import CliRunner

from nfp import config as nfp_config
from nfp.engine.supervisor import BootError
from nfp.pki import Pki
from nfp.proxy.daemon import ProxyDaemon


def _conf(tmp_path):
    return nfp_config.load(None, {"state_dir": str(tmp_path)}, environ={})


def test_proxy_end_without_certificate_does_not_start(tmp_path):
    conf = _conf(tmp_path)
    Pki.from_conf(conf).init()  # a CA and a token key, but no certificate for the proxy
    daemon = ProxyDaemon(conf, "proxy")
    with pytest.raises(BootError, match=r"nfp pki issue proxy"):
        daemon.start()
    daemon.stop()


def test_proxy_end_socket_is_private(tmp_path):
    conf = _conf(tmp_path)
    pki = Pki.from_conf(conf)
    pki.init()
    pki.issue("proxy")
    daemon = ProxyDaemon(conf, "proxy")
    daemon.start()
    try:
        sock = tmp_path / "proxy" / "proxy.sock"
        assert stat.S_ISSOCK(sock.stat().st_mode)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
        assert daemon.halt_reason() is None
    finally:
        daemon.stop()


def test_unknown_role_is_refused(tmp_path):
    from nfp.cli.proxy import proxy
    result = CliRunner().invoke(proxy, ["--state-dir", str(tmp_path), "--role", "both"])
    assert result.exit_code == 2 and "--role" in result.output
    with pytest.raises(nfp_config.ConfigError, match="role"):
        ProxyDaemon(_conf(tmp_path), "both")
