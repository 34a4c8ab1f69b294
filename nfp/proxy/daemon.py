"""``nfp-proxy``: the agent, the proxy end, or both, as one daemon.

``--role agent`` runs in the management domain (RabbitMQ, the unix socket);
``--role proxy`` runs inside the namespace that reaches the configurator (the
unix socket, HTTPS); ``--role all`` runs both on one host. Start order: the proxy
end listens (its certificate and token key are loaded first: a missing one halts
the start), then the agent consumes and the notifier polls, then ``READY=1``.
Stop order (SIGTERM): the agent stops consuming (the request in hand stays
unacked and is redelivered), the notifier finishes its pass, the proxy end
finishes the requests in hand. No state lives here: the broker holds unsent
requests and the configurator holds undelivered notifications. Its audit log
(the proxy end's requests and refusals, and ``audit.start``/``audit.stop`` of
every role) is JSON lines, or rows in ``proxy.audit_database_url``.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Optional

from nfp import audit
from nfp import config as nfp_config
from nfp import logs
from nfp.engine.supervisor import BootError
from nfp.proxy.agent import Agent
from nfp.proxy.forwarder import create_app, peer_protocol, prepare_socket
from nfp.proxy.http import ConfiguratorHttp, configurator_https, socket_path, unix_pool
from nfp.proxy.notifier import Notifier
from nfp.service import EXIT_CONFIG, run_until_signalled, sd_notify

LOG = logging.getLogger(__name__)
ROLES = ("agent", "proxy", "all")


class _NoWorkers:
    """``run_until_signalled`` reaps a supervisor's workers; nfp-proxy has none."""

    def check(self) -> None:
        return None


class ProxyDaemon:
    """Owns the proxy end's server and upstream pool, the agent, the notifier and the
    socket client and RPC client they share."""

    def __init__(self, conf: nfp_config.NfpConfig, role: str = "all"):
        if role not in ROLES:
            raise nfp_config.ConfigError(f"role: {role!r} is not one of {', '.join(ROLES)}")
        self.conf, self.role = conf, role
        self.socket = socket_path(conf)
        self._signals: list[int] = []
        self.supervisor = _NoWorkers()
        self.server = None
        self.upstream: Optional[ConfiguratorHttp] = None
        self.local: Optional[ConfiguratorHttp] = None
        self.caster = None
        self.agent: Optional[Agent] = None
        self.notifier: Optional[Notifier] = None
        self._thread: Optional[threading.Thread] = None
        self.audit: Optional[audit.Sink] = None
        self._audit_engine = None
        self._audited = False

    def start(self) -> None:
        self._start_audit()
        if self.role in ("proxy", "all"):
            self._start_proxy_end()
        if self.role in ("agent", "all"):
            self._start_agent()
        LOG.info("nfp-proxy ready (%s): socket %s%s", self.role, self.socket,
                 f", configurator {self.conf.proxy.configurator_url}" if self.upstream else "")
        self.audit.daemon(audit.AUDIT_START, f"nfp-proxy ({self.role})")
        self._audited = True
        sd_notify("READY=1")

    def _start_proxy_end(self) -> None:
        import uvicorn
        px = self.conf.proxy
        try:
            self.upstream = configurator_https(self.conf, px.configurator_url, px.cert_name,
                                               px.request_timeout)
        except ValueError as exc:  # no certificate, no token key, not an https URL
            raise BootError(f"proxy: {exc}") from None
        from nfp.pki import Pki, subject_of
        try:
            subject = subject_of(Pki.from_conf(self.conf).cert_path(px.cert_name))
        except (OSError, ValueError):
            subject = ""  # configurator_https loaded it just now; a race with rotate
        prepare_socket(self.socket)
        app = create_app(self.upstream, self.audit, {"cert_subject": subject, "token_subject": px.cert_name})
        config = uvicorn.Config(app, uds=self.socket, lifespan="off", http=peer_protocol(),
                                log_config=None, access_log=False)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name="proxy-end", daemon=True)
        self._thread.start()
        while not self.server.started:
            if not self._thread.is_alive():
                raise BootError(f"proxy.socket: cannot listen on {self.socket}")
            time.sleep(0.05)
        os.chmod(self.socket, 0o600)  # uvicorn makes it 0666

    def _start_audit(self) -> None:
        """The proxy end's audit sink: ``proxy.audit_database_url``'s ``audit_log`` if
        set, else JSON lines in ``proxy.audit_file`` (see etc/nfp.yaml)."""
        px = self.conf.proxy
        sessionmaker = None
        if px.audit_database_url:
            from nfp.db.engine import make_engine, make_sessionmaker
            self._audit_engine = make_engine(px.audit_database_url, 2)
            sessionmaker = make_sessionmaker(self._audit_engine)
        path = px.audit_file or ("" if sessionmaker else str(self.conf.state_path / "proxy" / "audit.jsonl"))
        self.audit = audit.Sink(sessionmaker, path)

    def _start_agent(self) -> None:
        from nfp.rpc.client import RpcClient
        self.local = ConfiguratorHttp(unix_pool(self.socket, self.conf.proxy.request_timeout))
        self.caster = RpcClient(self.conf.transport_url, self.conf, topic=self.conf.rpc.notification_topic)
        self.agent = Agent(self.conf, self.local, self.caster)
        self.agent.start()
        self.notifier = Notifier(self.local, self.caster, self.conf.proxy.poll_interval,
                                 self.conf.proxy.retry_max)
        self.notifier.start()

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; the process exit code."""
        return run_until_signalled(self)

    def reload(self) -> None:
        """SIGHUP: the client certificate is reloaded as its files change; check now."""
        LOG.info("SIGHUP: the TLS client certificate is reloaded as it changes; other settings "
                 "need a restart")
        if self.upstream is not None and self.upstream.reloader is not None:
            self.upstream.reloader.check()

    def halt_reason(self) -> Optional[str]:
        if self._thread is not None and not self._thread.is_alive():
            return "the proxy end's socket server stopped"
        if self.agent is not None and not self.agent.alive():
            return "the configurator agent stopped"
        if self.notifier is not None and not self.notifier.alive():
            return "the notifier stopped"
        return None

    def stop(self) -> None:
        sd_notify("STOPPING=1")
        if self.agent is not None:
            self.agent.stop()
        if self.notifier is not None:
            self.notifier.stop()
        if self.caster is not None:
            self.caster.close()
        if self.local is not None:
            self.local.close()
        if self.server is not None:
            self.server.should_exit = True  # requests in hand finish
            self._thread.join(15)
        if self.upstream is not None:
            self.upstream.close()
        if self._audited:
            self.audit.daemon(audit.AUDIT_STOP, f"nfp-proxy ({self.role})")
            self._audited = False
        if self._audit_engine is not None:
            self._audit_engine.dispose()
        LOG.info("nfp-proxy stopped (%s)", self.role)


def serve(conf: nfp_config.NfpConfig, role: str = "all") -> int:
    """Run the daemon in the foreground; the exit code."""
    try:
        daemon = ProxyDaemon(conf, role)
    except nfp_config.ConfigError as exc:
        LOG.critical("configuration error: %s", exc)
        return EXIT_CONFIG
    logs.setup(conf, f"proxy-{role}")
    return daemon.run()
