"""The orchestrator daemon: one listener process supervising N worker processes.

Start order: schema → inventory → workers (halt if one cannot boot) → RPC
listener. Stop order (SIGTERM): stop taking messages and finish the batches in
hand, so everything acked is committed → let workers drain their running steps
→ close the database. Anything unfinished stays in the event table and resumes
on the next start. SIGHUP reloads the configuration: new workers boot before the old ones retire.
"""
from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import sys
import time
from typing import Optional

from nfp import audit, backoff, faults, logs
from nfp import config as nfp_config
from nfp.api.endpoints import OrchestratorEndpoints
from nfp.db import migrate
from nfp.db import budget
from nfp.db.engine import make_engine, make_sessionmaker, normalise_url
from nfp.engine.app import Application
from nfp.engine.supervisor import BootError, Supervisor
from nfp.rpc.errors import describe
from nfp.workers.lifecycle.app import ORCHESTRATOR
from nfp.workers.lifecycle.services import Services, sync_static_inventory

LOG = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_BOOT = 3

#: waiting for the database at start: first pause and ceiling, seconds
DB_WAIT_START = 0.5
DB_WAIT_MAX = 10.0
#: at stop, after the workers drained: longest the outbox relay publishes what is left (s)
RELAY_DRAIN_TIMEOUT = 5.0


def sd_notify(message: str) -> None:
    """Tell systemd (Type=notify) about readiness and watchdog pings, if it listens."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(addr)
            sock.sendall(message.encode())
    except OSError:
        pass


def run_until_signalled(daemon) -> int:
    """The main loop every nfp daemon shares: start; then act on queued signals
    (SIGHUP → ``daemon.reload()``, SIGTERM/SIGINT → ``daemon.stop()``), let the
    supervisor reap and respawn, halt on ``daemon.halt_reason()``, ping the
    systemd watchdog. Signal handlers only queue; this loop acts on them."""
    signals: list[int] = daemon._signals
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda s, f: signals.append(s))
    try:
        daemon.start()
    except BootError as exc:
        LOG.critical("boot failed: %s; halting", exc)
        daemon.stop()
        return EXIT_BOOT
    while True:
        while signals:
            sig = signals.pop(0)
            if sig == signal.SIGHUP:
                daemon.reload()
                continue
            LOG.info("received %s; draining", signal.Signals(sig).name)
            daemon.stop()
            return EXIT_OK
        daemon.supervisor.check()
        reason = daemon.halt_reason()
        if reason:
            LOG.critical("halting: %s", reason)
            daemon.stop()
            return EXIT_BOOT
        sd_notify("WATCHDOG=1")
        time.sleep(0.2)


class OrchestratorService:
    """Owns the listener, the supervisor and the database engine."""

    def __init__(self, conf: nfp_config.NfpConfig, config_path: Optional[str] = None,
                 overrides: Optional[dict] = None, app: Optional[Application] = None):
        self.conf = conf
        #: what the workers run: the orchestrator's flows, handlers and services
        self.app = app or ORCHESTRATOR
        self.config_path = config_path
        self.overrides = overrides or {}
        self._signals: list[int] = []
        self.listener = None
        self.supervisor: Optional[Supervisor] = None
        #: set once ``audit.start`` is recorded; ``stop`` then records ``audit.stop``
        self.audit: Optional[audit.Sink] = None

    # -- start --------------------------------------------------------------
    def prepare(self) -> bool:
        """Schema, device inventory and orphan sweeps: everything before workers.
        Returns False when SIGTERM came while it waited for the database."""
        conf = self.conf
        conf.state_path.mkdir(parents=True, exist_ok=True)
        if normalise_url(conf.database_url).startswith("postgresql"):
            reads = budget.listener_read_pool(conf)
            self.engine = make_engine(conf.database_url, budget.listener_pool(conf) - reads)
            self.read_engine = make_engine(conf.database_url, reads, autocommit=True)
        else:  # SQLite: one pool (there is no round trip to save)
            self.engine = self.read_engine = make_engine(conf.database_url, budget.listener_pool(conf))
        self.sessionmaker = make_sessionmaker(self.engine)
        if not self._wait_for_database():
            return False
        services = Services(conf, self.sessionmaker)
        sweep = set(conf.device_drivers)
        if (conf.state_path / "netns").exists():
            sweep.add("netns")  # devices from an earlier run may have outlived it
        try:
            for name in sorted(sweep):
                try:
                    services.device_driver(name).startup_sweep()
                except LookupError as exc:
                    raise BootError(str(exc)) from None
        finally:
            services.stop()
        return True

    def _wait_for_database(self) -> bool:
        """Migrate the schema and sync the inventory, waiting with backoff while the
        database cannot be reached: nothing consumes requests meanwhile, so they
        stay queued on the broker. False if SIGTERM/SIGINT came first."""
        def schema_and_inventory() -> None:
            migrate.upgrade(self.conf.database_url)
            with self.sessionmaker.begin() as session:
                count = sync_static_inventory(self.conf, session)
            if count:
                LOG.info("static inventory: %d device(s)", count)

        def waiting(state) -> None:
            LOG.warning("the database cannot be reached (%s); waiting for it before taking "
                        "requests (they stay queued on the broker); retrying in %.1f s",
                        describe(state.outcome.exception()), state.next_action.sleep)

        def stopping() -> bool:
            return any(sig != signal.SIGHUP for sig in self._signals)

        try:
            backoff.retrying_while(faults.is_transient, DB_WAIT_START, DB_WAIT_MAX, jitter=0.2,
                                   give_up=stopping, before_sleep=waiting)(schema_and_inventory)
        except Exception as exc:
            if stopping() and faults.is_transient(exc):
                return False
            raise
        return True

    def start(self) -> None:
        from nfp.rpc.listener import RpcListener
        if not self.prepare():
            return  # stopped while waiting for the database
        self.supervisor = Supervisor(self.conf, on_notify=self._notify, app=self.app)
        self.supervisor.start()
        self.endpoints = OrchestratorEndpoints(self.conf, self.sessionmaker, self.supervisor.dispatch,
                                               read_engine=self.read_engine)
        self.listener = RpcListener(self.conf, self.endpoints,
                                    topics=[self.conf.rpc.topic, self.conf.rpc.notification_topic],
                                    sessionmaker=self.sessionmaker,  # the notification outbox
                                    on_backlog=self.supervisor.note_backlog)
        # What booting built (SQLAlchemy's and pydantic's structures, the modules)
        # lives as long as the process: frozen out of the cyclic collector, which
        # otherwise walks it again on every full collection. Under a burst the
        # listener's collections took 0.58 s per thousand; frozen, 0.22-0.27 s,
        # and intake drained 5,136-5,350 creates/s against 3,453-4,782 (a GC
        # callback timing them in alternating runs of 20,000 casts).
        gc.collect()
        gc.freeze()
        self.listener.start()
        from nfp.rpc.topology import durability_warning
        warning = durability_warning(self.conf)
        if warning:
            LOG.warning(warning)
        LOG.info("nfp orchestrator ready: host %s, %d workers, topic %s on exchange %s, "
                 "database %s (at most %d connections from this host)", self.conf.rpc.host,
                 self.conf.worker_count, self.conf.rpc.topic, self.conf.transport.control_exchange,
                 self.engine.url.render_as_string(hide_password=True), budget.host_total(self.conf))
        if self.conf.metrics.port:
            from nfp.metrics import serve_metrics
            serve_metrics(self, self.conf.metrics.address, self.conf.metrics.port)
        (self.conf.state_path / "orchestrator.pid").write_text(str(os.getpid()))
        self.audit = audit.Sink(self.sessionmaker)
        self.audit.daemon(audit.AUDIT_START, "nfp-orchestrator")
        sd_notify("READY=1")

    def _notify(self, event_type: str, payload: dict) -> None:
        if self.listener is not None:
            self.listener.publish_notification(event_type, payload)

    # -- run ----------------------------------------------------------------
    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; return the process exit code."""
        return run_until_signalled(self)

    def halt_reason(self) -> Optional[str]:
        """Why the daemon must stop now (a worker could not boot), else None."""
        return self.supervisor.boot_error

    def reload(self) -> None:
        """SIGHUP: re-read the config; new workers replace the old ones (see Supervisor.reload)."""
        try:
            new = nfp_config.load(self.config_path, self.overrides)
        except nfp_config.ConfigError as exc:
            LOG.error("reload refused, keeping the running config: %s", exc)
            return
        if (new.database_url, new.transport_url) != (self.conf.database_url, self.conf.transport_url):
            LOG.warning("database or transport URL changed; that needs a restart, not a reload")
        logging.getLogger().setLevel(new.logging.level.upper())
        new.database, new.transport = self.conf.database, self.conf.transport
        self.conf = new
        # new workers boot first; each old one drains and exits before its successor
        # takes the shard ("configuration reloaded" is logged once all have)
        self.supervisor.reload(new)

    # -- stop -----------------------------------------------------------------
    def stop(self) -> None:
        sd_notify("STOPPING=1")
        if self.listener is not None:
            # First: no new messages, and the batches in hand are committed and acked.
            # The outbox relay runs on: the draining steps commit notifications.
            self.listener.stop(timeout=10, relay=False)
            self.endpoints.close()
        if self.supervisor is not None:
            # Then: running steps get drain_timeout to finish; the rest stays in the DB.
            self.supervisor.stop(self.conf.orchestrator.drain_timeout)
        if self.listener is not None:
            # Last: what those steps committed to the outbox is published now.
            self.listener.stop_relay(RELAY_DRAIN_TIMEOUT, drain=True)
        if self.audit is not None:
            self.audit.daemon(audit.AUDIT_STOP, "nfp-orchestrator")
            self.audit = None
        for engine in {getattr(self, "engine", None), getattr(self, "read_engine", None)} - {None}:
            engine.dispose()
        LOG.info("nfp orchestrator stopped")


def serve(conf: nfp_config.NfpConfig, config_path: Optional[str] = None,
          overrides: Optional[dict] = None) -> int:
    logs.setup(conf, "listener")
    # The listener hands each request between threads (consumer → intake/reads →
    # publisher); a shorter GIL switch interval keeps those hand-offs from
    # waiting out the default 5 ms.
    sys.setswitchinterval(0.0005)
    return OrchestratorService(conf, config_path, overrides).run()
