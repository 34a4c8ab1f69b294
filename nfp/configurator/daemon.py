"""``nfp-configurator``: one listener process (uvicorn serving the REST API over
mutual TLS) supervising N worker processes that run ``configurator.apply`` steps.

Start order: configuration → schema → workers (halt if one cannot boot) → HTTPS
listener → ``READY=1``. Stop order (SIGTERM): stop accepting connections and
finish the requests in hand (every 200 answered is committed) → workers drain
their running steps → close the database. Unfinished steps stay in the events
table and resume on the next start.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Optional

from nfp import audit
from nfp import config as nfp_config
from nfp import logs
from nfp.configurator.api import create_app
from nfp.configurator.security import TlsReloader, TokenVerifier, server_ssl_context, tls_paths
from nfp.configurator.service import CONFIGURATOR, daemon_conf
from nfp.db import migrate
from nfp.db.engine import make_engine, make_sessionmaker
from nfp.engine.supervisor import BootError, Supervisor
from nfp.service import run_until_signalled, sd_notify

LOG = logging.getLogger(__name__)
EXIT_OK, EXIT_CONFIG, EXIT_BOOT = 0, 2, 3


def peer_protocol(peers: dict):
    """uvicorn's h11 protocol, recording each TLS client's certificate subject in
    ``peers`` by client address while its connection lives (uvicorn does not put
    the peer certificate in the ASGI scope)."""
    from cryptography import x509
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class PeerProtocol(H11Protocol):
        def connection_made(self, transport):
            super().connection_made(transport)
            ssl_object = transport.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
            if der and self.client:
                peers[tuple(self.client)] = x509.load_der_x509_certificate(der).subject.rfc4514_string()

        def connection_lost(self, exc):
            if self.client:
                peers.pop(tuple(self.client), None)
            super().connection_lost(exc)

    return PeerProtocol


class ConfiguratorDaemon:
    """Owns the HTTPS listener, the supervisor, the TLS reloader and the database engine."""

    def __init__(self, conf: nfp_config.NfpConfig):
        self.conf = daemon_conf(conf)
        self._signals: list[int] = []
        self.supervisor: Optional[Supervisor] = None
        self.server = None
        self.reloader: Optional[TlsReloader] = None
        self._thread: Optional[threading.Thread] = None
        self.engine = None
        #: set once ``audit.start`` is recorded; ``stop`` then records ``audit.stop``
        self.audit: Optional[audit.Sink] = None

    def start(self) -> None:
        import uvicorn
        conf, svc = self.conf, self.conf.configurator_service
        conf.state_path.mkdir(parents=True, exist_ok=True)
        migrate.upgrade(conf.database_url)
        self.engine = make_engine(conf.database_url, conf.database.pool_size)
        self.sessionmaker = make_sessionmaker(self.engine)
        try:
            verifier = TokenVerifier.from_conf(conf, self.sessionmaker)
        except ValueError as exc:
            raise BootError(str(exc)) from None
        ssl_ctx = None
        if svc.tls.enabled:
            paths = tls_paths(conf)
            try:
                ssl_ctx = server_ssl_context(paths)
            except (OSError, ValueError) as exc:
                raise BootError(f"configurator_service.tls: cannot load {exc}; run `nfp pki init` "
                                "and `nfp pki issue configurator`") from None
            self.reloader = TlsReloader(ssl_ctx, paths, svc.tls.reload_interval)
        self.supervisor = Supervisor(conf, app=CONFIGURATOR)
        self.supervisor.start()
        peers: dict = {}
        guarded, _ = create_app(conf, self.sessionmaker, self.supervisor.dispatch, verifier,
                                peers=peers, require_peer=ssl_ctx is not None)
        config = uvicorn.Config(guarded, host=svc.address, port=svc.port, lifespan="off",
                                http=peer_protocol(peers), log_config=None, access_log=False,
                                ssl_context_factory=(lambda cfg, default: ssl_ctx) if ssl_ctx else None)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name="https", daemon=True)
        self._thread.start()
        while not self.server.started:
            if not self._thread.is_alive():
                raise BootError(f"configurator_service: cannot listen on {svc.address}:{svc.port}")
            time.sleep(0.05)
        if self.reloader:
            self.reloader.start()
        self.audit = audit.Sink(self.sessionmaker, svc.audit_file)
        self.audit.daemon(audit.AUDIT_START, "nfp-configurator")
        LOG.info("nfp configurator ready: %s://%s:%d, %d workers, database %s",
                 "https" if ssl_ctx else "http", svc.address, self.port, conf.worker_count,
                 self.engine.url.render_as_string(hide_password=True))
        sd_notify("READY=1")

    @property
    def port(self) -> int:
        """The bound port (``configurator_service.port: 0`` picks a free one)."""
        servers = getattr(self.server, "servers", None) or []
        for server in servers:
            for sock in server.sockets:
                return sock.getsockname()[1]
        return self.conf.configurator_service.port

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; the process exit code."""
        return run_until_signalled(self)

    def reload(self) -> None:
        """SIGHUP: TLS files are already reloaded as they change; check them now."""
        LOG.info("SIGHUP: TLS files are reloaded as they change; other settings need a restart")
        if self.reloader:
            self.reloader.check()

    def halt_reason(self) -> Optional[str]:
        """A worker that could not boot, or an HTTPS listener that stopped."""
        if self.supervisor.boot_error:
            return self.supervisor.boot_error
        return None if self._thread.is_alive() else "the HTTPS listener stopped"

    def stop(self) -> None:
        sd_notify("STOPPING=1")
        if self.server is not None:
            self.server.should_exit = True  # stop accepting; requests in hand finish
            self._thread.join(15)
        if self.reloader:
            self.reloader.stop()
        if self.supervisor is not None:
            self.supervisor.stop(self.conf.orchestrator.drain_timeout)
        if self.audit is not None:
            self.audit.daemon(audit.AUDIT_STOP, "nfp-configurator")
            self.audit = None
        if self.engine is not None:
            self.engine.dispose()
        LOG.info("nfp configurator stopped")


def serve(conf: nfp_config.NfpConfig) -> int:
    """Run the daemon in the foreground; the exit code."""
    try:
        daemon = ConfiguratorDaemon(conf)
    except nfp_config.ConfigError as exc:
        logging.getLogger(__name__).critical("configuration error: %s", exc)
        return EXIT_CONFIG
    logs.setup(daemon.conf, "configurator")
    return daemon.run()


def openapi(conf: Optional[nfp_config.NfpConfig] = None) -> dict:
    """The OpenAPI document the daemon serves, built without a server or a database."""
    _, app = create_app(conf or nfp_config.NfpConfig(), None, lambda refs: None, None)
    return app.openapi()
