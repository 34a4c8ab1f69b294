"""One typed configuration: YAML file, then ``NFP_*`` environment, then CLI flags.

With nothing configured at all nfp runs embedded: SQLite and kombu's filesystem
transport under ``state_dir``, so ``nfp serve`` and the ``nfp nf`` commands work
on one host with no broker and no database server.

Environment variables: ``NFP_DATABASE_URL``, ``NFP_TRANSPORT_URL``,
``NFP_STATE_DIR``, ``NFP_CONFIG`` (the YAML file), and
``NFP_<SECTION>__<KEY>`` for any other key (``NFP_ORCHESTRATOR__WORKERS=4``).
"""
from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_CONFIG_FILE = "/etc/nfp/nfp.yaml"


def default_state_dir() -> Path:
    """``$NFP_STATE_DIR``, else ``/var/lib/nfp`` for root, else ``~/.local/state/nfp``."""
    if os.environ.get("NFP_STATE_DIR"):
        return Path(os.environ["NFP_STATE_DIR"])
    if os.geteuid() == 0:
        return Path("/var/lib/nfp")
    return Path.home() / ".local" / "state" / "nfp"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatabaseConf(_Section):
    #: SQLAlchemy URL; empty means SQLite at ``<state_dir>/nfp.db``.
    url: str = ""
    #: the listener's pool (without host_connections)
    pool_size: int = Field(default=10, ge=1)
    #: most PostgreSQL connections one host opens, shared by its processes (see
    #: nfp.db.budget); 0 sizes each process's pool to its threads instead
    host_connections: int = Field(default=0, ge=0)
    echo: bool = False


class TransportConf(_Section):
    #: kombu URL (``amqp://guest:guest@127.0.0.1:5672//``); empty means the
    #: broker-less filesystem transport under ``<state_dir>/bus``.
    url: str = ""
    #: oslo ``control_exchange``: ``openstack``, or ``neutron`` for node drivers in neutron-server.
    control_exchange: str = "openstack"
    #: mirror the callers' oslo ``amqp_durable_queues``
    durable_queues: bool = False
    #: mirror the callers' oslo ``rabbit_quorum_queue``
    quorum_queues: bool = False
    #: unacked messages the listener holds; also the largest group-commit batch
    prefetch: int = Field(default=1000, ge=1)
    #: seconds between polls on the filesystem transport
    polling_interval: float = Field(default=0.02, gt=0)


class RpcConf(_Section):
    topic: str = "nfp-service-orchestrator"
    notification_topic: str = "nfp-nso-notification-topic"
    #: the ``server`` of ``topic.<host>``
    host: str = Field(default_factory=socket.gethostname)
    #: larger request bodies are refused with an error naming the size
    max_message_bytes: int = Field(default=1 << 20, ge=1024)
    #: oslo notifications topic for ``nfp.network_function.*`` events
    notifications_topic: str = "notifications"
    publisher_id: str = "nfp.orchestrator"
    #: threads answering reads (get_*) while mutations are group-committed
    read_threads: int = Field(default=2, ge=1)


class OrchestratorConf(_Section):
    #: worker processes; 0 means the CPU count
    workers: int = Field(default=0, ge=0)
    #: handler threads per worker (driver calls block on I/O)
    threads_per_worker: int = Field(default=16, ge=1)
    #: default step deadline in seconds
    step_deadline: float = Field(default=300, gt=0)
    #: a step that crashed its worker this many times is failed, not retried again
    max_attempts: int = Field(default=5, ge=1)
    #: device status poll: interval seconds and maximum count (upstream 10 s x 25)
    device_poll_interval: float = Field(default=10, gt=0)
    device_poll_max: int = Field(default=25, ge=1)
    #: seconds a step waits for an asynchronous configurator notification
    config_wait_timeout: float = Field(default=600, gt=0)
    #: SIGTERM: seconds running steps get to finish
    drain_timeout: float = Field(default=30, ge=0)
    #: added to the workers' CPU nice value, so intake wins under a burst (0 = same)
    worker_nice: int = Field(default=5, ge=0, le=19)
    #: at least this many requests waiting to be committed (ready on the broker's
    #: topic queues, or delivered and not yet committed) is a backlog: workers hold
    #: back new steps while it lasts, so the burst is made durable first
    intake_priority_batch: int = Field(default=200, ge=1)
    #: longest continuous intake priority in seconds (0 = never); execution then
    #: gets a quarter of that before priority can return
    intake_priority_max: float = Field(default=20.0, ge=0)
    #: a worker silent this long is killed and respawned
    worker_heartbeat_timeout: float = Field(default=30, gt=0)
    #: an operation arriving while another runs on the same NF waits this many seconds at most
    busy_wait_max: float = Field(default=3600, gt=0)
    #: a create, update or delete of an NF whose device is UNREACHABLE (management link
    #: lost) waits this many seconds at most, polling once a second, then fails as usual
    unreachable_wait_max: float = Field(default=3600, gt=0)
    #: finished steps (done, failed, cancelled) are purged from the event table
    #: after this many seconds; open steps are never purged
    event_retention: float = Field(default=86400, ge=0)
    #: seconds a worker's bucket leases last without renewal (renewed every third of
    #: it): a host that dies loses its steps to the other hosts after this long
    lease_ttl: float = Field(default=15, ge=3, le=300)


class ConfiguratorConf(_Section):
    #: ``direct`` runs config drivers in the worker process; ``rest`` sends each NF's
    #: configuration to ``nfp-configurator`` over HTTPS (mutual TLS + token) and polls its
    #: notifications; ``proxy`` casts it to ``nfp-proxy`` on ``proxy.topic``. With ``rest``
    #: and ``proxy`` the step parks until the result comes back (``orchestrator.config_wait_timeout``)
    client: Literal["direct", "rest", "proxy"] = "direct"
    #: ``rest``: the configurator's URL
    url: str = "https://127.0.0.1:8070"
    #: ``rest``: the client certificate (``nfp pki issue NAME``) and token subject
    cert_name: str = "orchestrator"
    #: ``rest``: seconds between ``get_notifications`` polls
    poll_interval: float = Field(default=1.0, gt=0)
    #: ``rest``: seconds one HTTPS request may take
    request_timeout: float = Field(default=30.0, gt=0)
    #: map a flavor's service_vendor to another vendor's driver (``{vyos: memory}``)
    vendor_aliases: dict[str, str] = Field(default_factory=dict)
    #: a vendor with no config driver of its own is served by the dictionary driver when
    #: ``<vendor>.yaml`` is here, stored (``nfp dictionary load``) or shipped; "" for none
    dictionary_dir: str = ""


class ConfiguratorTlsConf(_Section):
    """TLS of ``nfp-configurator`` (mutual: clients must present a certificate of nfp's CA).
    Empty paths default to the PKI directory (``nfp pki init`` / ``issue configurator``)."""

    #: serve HTTPS with required client certificates; false only for a unix-local lab
    enabled: bool = True
    cert_file: str = ""
    key_file: str = ""
    ca_file: str = ""
    #: certificate revocation list (``nfp pki revoke``); checked for every client certificate
    crl_file: str = ""
    #: seconds between checks of the certificate, key and CRL files for changes (reloaded
    #: into the running server: ``nfp pki rotate`` and ``revoke`` need no restart)
    reload_interval: float = Field(default=5.0, gt=0)


class ConfiguratorJwtConf(_Section):
    """The short-lived token every configurator request carries (``Authorization: Bearer``)."""

    #: HS256 key file (created 0600 by ``nfp pki init``); empty: ``<pki_dir>/jwt.key``
    key_file: str = ""
    audience: str = "nfp-configurator"
    issuer: str = "nfp-orchestrator"
    #: longest accepted lifetime (``exp - iat``) in seconds; at most 300
    max_ttl: int = Field(default=300, ge=1, le=300)
    #: clock skew tolerated, seconds
    leeway: int = Field(default=5, ge=0, le=60)


class ConfiguratorServiceConf(_Section):
    """The ``nfp-configurator`` daemon (seed 001's REST API). Not the orchestrator's
    ``configurator:`` section, which says how the orchestrator reaches drivers."""

    address: str = "127.0.0.1"
    port: int = Field(default=8070, ge=0, le=65535)
    #: worker processes running ``configurator.apply`` steps
    workers: int = Field(default=2, ge=1)
    #: its own database (the engine's events table must not be shared with the
    #: orchestrator's workers); empty: SQLite at ``<state_dir>/configurator/configurator.db``
    database_url: str = ""
    #: empty: ``<state_dir>/configurator``
    state_dir: str = ""
    #: the CA, issued certificates, CRL and JWT key; empty: ``<state_dir>/pki``
    pki_dir: str = ""
    #: days a certificate from ``nfp pki issue`` is valid; ``rotate`` renews those
    #: expiring within ``renew_before_days``
    cert_days: int = Field(default=30, ge=1)
    ca_days: int = Field(default=3650, ge=1)
    renew_before_days: int = Field(default=7, ge=0)
    tls: ConfiguratorTlsConf = Field(default_factory=ConfiguratorTlsConf)
    jwt: ConfiguratorJwtConf = Field(default_factory=ConfiguratorJwtConf)
    #: management source networks allowed to call (CIDRs); empty: nobody (403)
    allowed_management_cidrs: list[str] = Field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    #: appliance management networks requests may target (CIDRs); empty: none (403)
    allowed_target_cidrs: list[str] = Field(default_factory=list)
    #: appliances by management IP: ``{id, mgmt_ip_address, credentials_ref, extra}``
    #: (connection facts and secret names, never secrets)
    devices: list[dict[str, Any]] = Field(default_factory=list)
    #: also write the audit log as JSON lines to this file; "" for the table only
    audit_file: str = ""
    #: largest request body in bytes (400 above it)
    max_body_bytes: int = Field(default=1 << 20, ge=1024)


class SecretsConf(_Section):
    #: file holding the Fernet key; created on first use when missing
    key_file: str = ""
    #: environment variable that may hold the key instead
    key_env: str = "NFP_SECRET_KEY"


class MetricsConf(_Section):
    #: Prometheus /metrics port of the listener; 0 turns it off
    port: int = Field(default=0, ge=0, le=65535)
    address: str = "127.0.0.1"


class HealthConf(_Section):
    """The health monitor process (see ``workers/health``)."""

    #: run the monitor process beside the workers
    enabled: bool = True
    #: seconds between liveness probes of one device (a device may set ``extra.health_period``)
    liveness_period: float = Field(default=10.0, gt=0)
    #: seconds to wait for a probe's answer
    timeout: float = Field(default=1.0, gt=0)
    #: after a failed probe, the next one comes this soon (confirms a failure fast)
    retry_interval: float = Field(default=2.0, gt=0)
    #: consecutive failures before a device is DOWN; successes before it is UP again
    failures_down: int = Field(default=3, ge=1)
    successes_up: int = Field(default=2, ge=1)
    #: seconds between deep checks (the config driver's ``healthmonitor``); 0 = off
    deep_period: float = Field(default=60.0, ge=0)
    #: threads running deep checks (each blocks on one device)
    deep_threads: int = Field(default=8, ge=1)
    #: ``auto`` (TCP connect to a device's ``extra.health_port``/``ssh_port`` or
    #: ``port``, else ICMP), ``icmp`` or ``tcp``
    probe: Literal["auto", "icmp", "tcp"] = "auto"
    #: seconds between writes of health changes (one transaction for all of them)
    flush_interval: float = Field(default=1.0, gt=0)
    #: seconds between batched ``last_contact`` writes for devices that did not change
    contact_write_interval: float = Field(default=60.0, gt=0)
    #: seconds between reloads of the device list from the database
    refresh_interval: float = Field(default=5.0, gt=0)
    #: probes in flight at once; more due probes wait (and count as late)
    max_in_flight: int = Field(default=8192, ge=1)
    #: a probe sent this many seconds after it was due counts as late; when many are,
    #: the monitor reports itself overloaded instead of marking devices down
    late_after: float = Field(default=1.0, gt=0)


class ReconcileConf(_Section):
    """Drift reconciliation (see ``workers/reconcile``)."""

    #: seconds between scheduled reconciles of one NF (``spec.reconcile.interval`` per NF); 0 = off
    interval: float = Field(default=900.0, ge=0)
    #: what a run does with drift: repair, repair-and-prune, report or adopt
    policy: Literal["repair", "repair-and-prune", "report", "adopt"] = "repair"
    #: policy per service vendor (``{vyos: report}``); the NF's ``spec.reconcile.policy`` wins
    vendor_policies: dict[str, Literal["repair", "repair-and-prune", "report", "adopt"]] = \
        Field(default_factory=dict)
    #: reconcile an NF's device when it comes back UP
    on_device_up: bool = True
    #: reconcile a device's NFs when its deep check reads a new boot marker (a restart)
    on_device_restart: bool = True
    #: reconcile a vendor's NFs when a new version of its dictionary is stored
    on_dictionary_update: bool = True


class HealConf(_Section):
    """Auto-heal of devices that stay DOWN (see ``workers/health/heal.py``)."""

    #: heal devices at all
    enabled: bool = True
    #: seconds a device must stay DOWN before it is healed
    after: float = Field(default=30.0, gt=0)
    #: seconds before a device is healed again; doubles per attempt up to ``max_backoff``
    cooldown: float = Field(default=60.0, gt=0)
    max_backoff: float = Field(default=1800.0, gt=0)
    #: circuit breaker: when more than this share of the watched devices is DOWN at
    #: once, nothing is healed and an alarm is raised (the fault is likely nfp's network)
    breaker_share: float = Field(default=0.5, gt=0, le=1)
    #: the breaker only judges fleets of at least this many devices
    breaker_min_devices: int = Field(default=3, ge=1)


class TenancyConf(_Section):
    """Who may see and change which network functions (nfp.api.tenancy)."""

    #: a request whose context names no user, tenant, admin flag or role (nfp's own
    #: CLI and tools send ``{}``): ``admin`` treats it as the local operator,
    #: ``deny`` as a caller of no tenant (it sees nothing and may change nothing)
    anonymous: Literal["admin", "deny"] = "admin"
    #: roles that make a context admin, besides ``is_admin: true`` (oslo.policy's
    #: ``context_is_admin: role:admin``)
    admin_roles: list[str] = Field(default_factory=lambda: ["admin"])


class ProxyConf(_Section):
    """``nfp-proxy``: the agent (RPC on ``topic`` → unix ``socket``) and the proxy end
    (``socket`` → ``configurator_url`` over mutual TLS + token)."""

    #: the RPC topic the agent consumes and the orchestrator's ``proxy`` client casts to
    topic: str = "nfp-configurator"
    #: the unix socket between agent and proxy end; empty: ``<state_dir>/proxy/proxy.sock``
    socket: str = ""
    #: the configurator as the proxy end reaches it on the service management network
    configurator_url: str = "https://127.0.0.1:8070"
    #: the proxy end's client certificate (``nfp pki issue NAME``) and token subject
    cert_name: str = "proxy"
    #: seconds between ``get_notifications`` polls
    poll_interval: float = Field(default=1.0, gt=0)
    #: seconds one forwarded request may take
    request_timeout: float = Field(default=30.0, gt=0)
    #: longest pause between retries of a request the configurator did not take
    retry_max: float = Field(default=10.0, gt=0)
    #: the proxy end's audit log (every forwarded request, every refusal, start and
    #: stop) as JSON lines; empty: ``<state_dir>/proxy/audit.jsonl`` when
    #: ``audit_database_url`` is empty too
    audit_file: str = ""
    #: an nfp database (its schema migrated, e.g. the orchestrator's) whose ``audit_log``
    #: table gets the proxy's rows instead, so ``nfp audit list`` shows them; empty: none
    #: (the proxy end usually cannot reach a database from its namespace)
    audit_database_url: str = ""


class LoggingConf(_Section):
    level: str = "INFO"
    file: str = ""


class NfpConfig(BaseModel):
    """The whole configuration, validated at start."""

    model_config = ConfigDict(extra="forbid")

    state_dir: str = ""
    database: DatabaseConf = Field(default_factory=DatabaseConf)
    transport: TransportConf = Field(default_factory=TransportConf)
    rpc: RpcConf = Field(default_factory=RpcConf)
    orchestrator: OrchestratorConf = Field(default_factory=OrchestratorConf)
    configurator: ConfiguratorConf = Field(default_factory=ConfiguratorConf)
    configurator_service: ConfiguratorServiceConf = Field(default_factory=ConfiguratorServiceConf)
    secrets: SecretsConf = Field(default_factory=SecretsConf)
    logging: LoggingConf = Field(default_factory=LoggingConf)
    metrics: MetricsConf = Field(default_factory=MetricsConf)
    health: HealthConf = Field(default_factory=HealthConf)
    reconcile: ReconcileConf = Field(default_factory=ReconcileConf)
    heal: HealConf = Field(default_factory=HealConf)
    proxy: ProxyConf = Field(default_factory=ProxyConf)
    tenancy: TenancyConf = Field(default_factory=TenancyConf)
    #: per device driver options, ``{static: {devices: [...]}}``. The embedded
    #: default is one ``memory`` appliance, so a bare ``nfp serve`` can run NFs;
    #: its capacity (1,000,000 interfaces, 2 per NF) is high enough that it never
    #: caps a test or a benchmark.
    device_drivers: dict[str, dict[str, Any]] = Field(default_factory=lambda: {
        "static": {"devices": [{"id": "memory-appliance-1", "name": "memory appliance",
                                "service_vendor": "memory", "max_interfaces": 1_000_000}]}})
    #: per config driver options, keyed by vendor
    config_drivers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: the file this was loaded from, if any
    source: Optional[str] = None

    # -- derived values --------------------------------------------------
    @property
    def state_path(self) -> Path:
        return Path(self.state_dir) if self.state_dir else default_state_dir()

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.state_path / 'nfp.db'}"

    @property
    def transport_url(self) -> str:
        return self.transport.url or f"filesystem://{self.state_path / 'bus'}"

    @property
    def worker_count(self) -> int:
        return self.orchestrator.workers or (os.cpu_count() or 1)

    @property
    def secret_key_file(self) -> Path:
        return Path(self.secrets.key_file) if self.secrets.key_file else self.state_path / "secret.key"


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key."""


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    shortcuts = {"NFP_DATABASE_URL": ("database", "url"),
                 "NFP_TRANSPORT_URL": ("transport", "url"),
                 "NFP_STATE_DIR": ("state_dir",)}
    for var, path in shortcuts.items():
        if environ.get(var):
            _set(out, path, environ[var])
    for var, value in environ.items():
        if var.startswith("NFP_") and "__" in var:
            path = tuple(p.lower() for p in var[4:].split("__"))
            _set(out, path, yaml.safe_load(value) if value else value)
    return out


def _set(tree: dict, path: tuple, value: Any) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load(path: Optional[str] = None, overrides: Optional[dict] = None,
         environ: Optional[dict[str, str]] = None) -> NfpConfig:
    """Build the config from ``path`` (or ``$NFP_CONFIG``, or /etc/nfp/nfp.yaml if it
    exists), the environment and ``overrides`` (CLI flags), in that order."""
    environ = dict(os.environ if environ is None else environ)
    path = path or environ.get("NFP_CONFIG")
    if not path and Path(DEFAULT_CONFIG_FILE).exists():
        path = DEFAULT_CONFIG_FILE
    data: dict = {}
    if path:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
    data = _merge(data, _env_overrides(environ))
    data = _merge(data, overrides or {})
    try:
        conf = NfpConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{path or 'configuration'}: {key}: {err['msg']}") from None
    conf.source = path
    return conf
