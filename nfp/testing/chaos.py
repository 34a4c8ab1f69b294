"""Chaos for several nfp hosts on one PostgreSQL and one RabbitMQ.

The faults restart the database and the broker, so they run on a private
PostgreSQL cluster (``initdb`` into a temporary directory, run as the
``postgres`` user) and a private RabbitMQ node, on free ports of their own:
the machine's shared services, which other tests use, are never touched.

- :class:`PrivatePostgres`, :class:`PrivateRabbit`: start, stop, restart.
- :class:`ChaosHost`: one ``nfp serve`` host (listener and workers) in its own
  process group, with its own ``rpc.host`` and ``state_dir``; "kill a whole
  host" is SIGKILL to the group.
- :class:`Keeper`: restarts a host whose listener died, as systemd would, except
  the hosts killed for good.
- :class:`LoadDriver`: casts creates and deletes with the real oslo.messaging
  client, the way an upstream caller does.
- :func:`kill_random_process`: ``kill -9`` of one nfp process of any live host.
- :func:`nf_rows`: every NF row by name, read straight from the database.
"""
from __future__ import annotations

import glob
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Callable, Optional

from nfp.testing.harness import Harness, HarnessError


def free_port() -> int:
    """A TCP port nothing listens on now (the kernel's choice)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(predicate: Callable[[], bool], what: str, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise HarnessError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def _remove(base: Path, logs: list[Path], logs_to: Optional[Path]) -> None:
    if logs_to is not None:
        Path(logs_to).mkdir(parents=True, exist_ok=True)
        for log in logs:
            if log.exists():
                shutil.copy(log, Path(logs_to) / log.name)
    shutil.rmtree(base, ignore_errors=True)


def _outage(down: float, on_down: Optional[Callable[[], None]]) -> None:
    if on_down is not None:
        on_down()
    time.sleep(down)


class PrivatePostgres:
    """A PostgreSQL cluster of its own in a temporary directory owned by the
    ``postgres`` user (initdb refuses to run as root). ``fsync`` is off: the
    faults here kill processes, never the machine, and a killed server still
    finds every commit in the page cache."""

    def __init__(self, port: int = 0, max_connections: int = 100, database: str = "nfp"):
        self.port = port or free_port()
        self.max_connections = max_connections
        self.database = database
        self.base = Path(tempfile.mkdtemp(prefix="nfp-chaos-pg-"))
        shutil.chown(self.base, "postgres", "postgres")
        self.data = self.base / "data"
        self.bin = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))[-1]).parent

    def _run(self, *args: str, timeout: float = 120) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", str(self.bin / args[0]), *args[1:]],
                       check=True, timeout=timeout, capture_output=True, cwd=self.base)

    def url(self, database: Optional[str] = None) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database or self.database}"

    def create_database(self, name: str) -> str:
        """A further database on this cluster (one per test); returns its URL."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return self.url(name)

    def start(self) -> "PrivatePostgres":
        fresh = not self.data.exists()
        if fresh:
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        options = (f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off "
                   f"-c max_connections={self.max_connections}")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.base / "postgres.log"),
                  "-w", "-t", "120", "-o", options, "start")
        if fresh:
            self.create_database(self.database)
        return self

    def stop(self, mode: str = "fast") -> None:
        """``fast`` disconnects clients and rolls back their transactions, as
        ``systemctl restart postgresql`` does; ``immediate`` is a crash."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "120", "stop")

    def restart(self, down: float = 3.0, mode: str = "fast",
                on_down: Optional[Callable[[], None]] = None) -> None:
        """Stop, stay down ``down`` seconds (an outage, not only a reconnect;
        ``on_down`` is called when the server is gone), start again."""
        self.stop(mode)
        _outage(down, on_down)
        self.start()

    def close(self, logs_to: Optional[Path] = None) -> None:
        """Stop and remove the cluster, keeping its log in ``logs_to``, if given."""
        try:
            self.stop("immediate")
        finally:
            _remove(self.base, [self.base / "postgres.log"], logs_to)


class PrivateRabbit:
    """A RabbitMQ node of its own (name, ports, Mnesia and log directories, an
    empty plugin list and an Erlang cookie under a temporary ``HOME``), run as
    a child process, stopped with ``rabbitmqctl stop``. Its data directory is
    kept across restarts, so durable queues and persistent messages survive."""

    SCRIPTS = Path("/usr/lib/rabbitmq/bin")

    def __init__(self, port: int = 0, dist_port: int = 0):
        self.port = port or free_port()
        self.dist_port = dist_port or free_port()
        self.node = f"nfpchaos{uuid.uuid4().hex[:6]}@localhost"
        self.base = Path(tempfile.mkdtemp(prefix="nfp-chaos-rabbit-"))
        (self.base / "home").mkdir()
        (self.base / "enabled_plugins").write_text("[].\n")
        (self.base / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        (self.base / "rabbitmq-env.conf").write_text("")  # not the machine's (its NODENAME)
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")},
                    "HOME": str(self.base / "home"), "RABBITMQ_NODENAME": self.node,
                    "RABBITMQ_NODE_PORT": str(self.port), "RABBITMQ_DIST_PORT": str(self.dist_port),
                    "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
                    "RABBITMQ_LOG_BASE": str(self.base / "log"),
                    "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
                    "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
                    "RABBITMQ_CONF_ENV_FILE": str(self.base / "rabbitmq-env.conf"),
                    "ERL_EPMD_ADDRESS": "127.0.0.1"}
        self.proc: Optional[subprocess.Popen] = None

    def url(self, scheme: str = "amqp") -> str:
        return f"{scheme}://guest:guest@127.0.0.1:{self.port}/"

    def start(self, timeout: float = 120) -> "PrivateRabbit":
        with open(self.base / "server.out", "ab") as out:
            self.proc = subprocess.Popen([str(self.SCRIPTS / "rabbitmq-server")], env=self.env,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        _wait(self._serving, f"RabbitMQ node {self.node}", timeout)
        return self

    def _serving(self) -> bool:
        """An AMQP login succeeds (cheaper than a ``rabbitmqctl`` round, which
        boots an Erlang VM of its own: seconds on a busy machine)."""
        import kombu
        if self.proc.poll() is not None:
            raise HarnessError(f"rabbitmq-server exited with {self.proc.returncode}; "
                               f"see {self.base / 'server.out'}")
        try:
            with kombu.Connection(self.url(), connect_timeout=2) as conn:
                conn.connect()
            return True
        except OSError:
            return False

    def ctl(self, *args: str, timeout: float = 60) -> None:
        subprocess.run([str(self.SCRIPTS / "rabbitmqctl"), "-n", self.node, *args], env=self.env,
                       check=True, timeout=timeout, capture_output=True)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.ctl("stop")
            self.proc.wait(60)
        except (subprocess.SubprocessError, OSError):
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def restart(self, down: float = 3.0, on_down: Optional[Callable[[], None]] = None) -> None:
        """As :meth:`PrivatePostgres.restart`."""
        self.stop()
        _outage(down, on_down)
        self.start()

    def close(self, logs_to: Optional[Path] = None) -> None:
        """Stop and remove the node, keeping its logs in ``logs_to``, if given."""
        try:
            self.stop()
        finally:
            _remove(self.base, [self.base / "server.out", *(self.base / "log").glob("*.log")],
                    logs_to)


class ChaosHost(Harness):
    """One nfp host; ``start`` does not use RPC to see it ready (another host on
    the same topic would answer): it waits for this daemon's own pid file."""

    def start(self, timeout: float = 120) -> "ChaosHost":
        self.spawn()
        return self.wait_ready(timeout)

    def spawn(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NFP_")}
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "nfp.cli.main", "--config", str(self.config_file), "serve"],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def wait_ready(self, timeout: float = 120) -> "ChaosHost":
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise HarnessError(f"host {self.name} exited with {self.proc.returncode}")
            return self.ready()
        _wait(ready, f"host {self.name} to be ready", timeout)
        return self

    def ready(self) -> bool:
        """The running daemon has written its pid file: it serves."""
        pid_file = self.state_dir / "orchestrator.pid"
        try:
            return pid_file.read_text().strip() == str(self.proc.pid)
        except FileNotFoundError:
            return False

    @property
    def name(self) -> str:
        return self.conf.rpc.host

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pids(self) -> list[int]:
        """Every live process of this host: its process group."""
        if not self.alive():
            return []
        found = []
        for stat in glob.glob("/proc/[0-9]*/stat"):
            try:
                fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[2]) == self.proc.pid:
                found.append(int(stat.split("/")[2]))
        return found

    def kill_all(self) -> None:
        """SIGKILL the whole host (listener, workers, monitors)."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(30)


def make_hosts(count: int, root: Path, database_url: str, transport_url: str, topic: str,
               config: dict) -> list[ChaosHost]:
    """``count`` hosts on one database and broker, named ``chaos-h1``…, each with
    its own state directory under ``root``."""
    hosts = []
    for index in range(1, count + 1):
        data = {**config, "rpc": {**config.get("rpc", {}), "host": f"chaos-h{index}"}}
        hosts.append(ChaosHost(Path(root) / f"h{index}", config=data, database_url=database_url,
                               transport_url=transport_url, topic=topic))
    return hosts


class Keeper(threading.Thread):
    """Restarts a host whose listener died (as systemd's ``Restart=always``
    would), except the hosts in :attr:`dead`, killed for good. A start that fails
    (database or broker down) is retried on the next round; one that hangs past
    ``boot_timeout`` is killed and retried."""

    def __init__(self, hosts: list[ChaosHost], interval: float = 0.5, boot_timeout: float = 120):
        super().__init__(daemon=True, name="chaos-keeper")
        self.hosts, self.interval, self.boot_timeout = hosts, interval, boot_timeout
        self.dead: set[str] = set()
        #: hosts being restarted: a host killed again and again while it boots
        #: would never serve, which is no fault a real host meets
        self.booting: set[str] = set()
        self.restarts = 0
        self.failed_starts = 0
        self.lock = threading.Lock()  # held while a host is spawned or killed
        self._halt = threading.Event()

    def run(self) -> None:
        """Poll, never block: every host restarts on its own clock."""
        booted_at: dict[str, float] = {}
        while not self._halt.wait(self.interval):
            with self.lock:
                for host in self.hosts:
                    if host.name in self.dead:
                        self.booting.discard(host.name)
                    elif host.name in self.booting:
                        if not host.alive():
                            self.failed_starts += 1  # killed while booting, or the
                            self.booting.discard(host.name)  # database/broker was down
                        elif host.ready():
                            self.restarts += 1
                            self.booting.discard(host.name)
                        elif time.monotonic() - booted_at[host.name] > self.boot_timeout:
                            self.failed_starts += 1
                            host.kill_all()
                            self.booting.discard(host.name)
                    elif not host.alive():
                        host.spawn()
                        self.booting.add(host.name)
                        booted_at[host.name] = time.monotonic()

    def kill_host(self, host: ChaosHost) -> None:
        with self.lock:
            self.dead.add(host.name)
            host.kill_all()

    def stop(self) -> None:
        self._halt.set()
        self.join(150)


def kill_random_process(hosts: list[ChaosHost], keeper: Keeper, rng: random.Random,
                        listener_odds: int = 4) -> Optional[str]:
    """``kill -9`` one process of a random live host: its listener one time in
    ``listener_odds``, else one of its children (workers, monitors). Returns
    what was killed, None if nothing was alive."""
    with keeper.lock:
        live = [h for h in hosts
                if h.name not in keeper.dead and h.name not in keeper.booting and h.alive()]
        if not live:
            return None
        host = rng.choice(live)
        children = [pid for pid in host.pids() if pid != host.proc.pid]
        if not children or rng.random() < 1 / listener_odds:
            pid, role = host.proc.pid, "listener"
        else:
            pid, role = rng.choice(children), "child"
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return None
        if role == "listener":
            host.proc.wait(30)  # its children follow through PDEATHSIG
        return f"{host.name} {role} {pid}"


def oslo_client(transport_url: str, topic: str, durable: bool = True):
    """A stock oslo.messaging RPC client (rabbit driver, publisher confirms,
    ``retry=None``: a cast during a broker outage waits for the broker), on a
    private ConfigOpts; returns ``(client, transport)``."""
    import oslo_messaging
    from oslo_config import cfg
    from oslo_messaging import opts
    conf = cfg.ConfigOpts()
    for group, group_opts in opts.list_opts():
        conf.register_opts(group_opts, group=group)
    from oslo_messaging._metrics import client as metrics
    from oslo_messaging._tracing import client as tracing
    conf.register_opts(tracing.oslo_messaging_tracing, group="oslo_messaging_tracing")
    conf.register_opts(metrics.oslo_messaging_metrics, group="oslo_messaging_metrics")
    conf.set_override("amqp_durable_queues", durable, group="oslo_messaging_rabbit")
    conf([], project="nfp-chaos", default_config_files=[], default_config_dirs=[])
    transport = oslo_messaging.get_rpc_transport(conf, url=transport_url.replace("amqp://", "rabbit://"))
    target = oslo_messaging.Target(topic=topic, version="1.0")
    return oslo_messaging.get_rpc_client(transport, target).prepare(retry=None), transport


class LoadDriver(threading.Thread):
    """Casts ``count`` creates (``body(name)``, names ``<prefix>-<i>``) at most
    ``rate`` per second, and a delete for each name in :attr:`to_delete` once its
    NF is in the database (found with ``lookup(names) -> {name: id}``), so
    deletes meet NFs both in PENDING_CREATE (pre-emption) and ACTIVE."""

    def __init__(self, client, body: Callable[[str], dict], count: int,
                 lookup: Callable[[list[str]], dict], delete_share: float = 0.5,
                 rate: float = 50.0, prefix: str = "chaos", seed: int = 11):
        super().__init__(daemon=True, name="chaos-load")
        self.client, self.body, self.lookup, self.rate = client, body, lookup, rate
        self.names = [f"{prefix}-{i:05d}" for i in range(count)]
        rng = random.Random(seed)
        self.to_delete = {n for n in self.names if rng.random() < delete_share}
        self.created: list[str] = []
        self.deleted: dict[str, str] = {}
        self.errors: list[str] = []
        #: how long each cast took (a broker outage or flow control shows here)
        self.cast_seconds: list[float] = []

    def run(self) -> None:
        pending = []
        for index, name in enumerate(self.names):
            start = time.monotonic()
            self._cast("create_network_function", name, network_function=self.body(name))
            self.created.append(name)
            if name in self.to_delete:
                pending.append(name)
            if index % 20 == 19 and pending:
                pending = self._deletes(pending)
            time.sleep(max(0.0, 1.0 / self.rate - (time.monotonic() - start)))
        while pending:
            pending = self._deletes(pending)
            time.sleep(0.5)

    def _deletes(self, pending: list[str]) -> list[str]:
        try:
            found = self.lookup(pending)
        except Exception:  # the database may be down on purpose
            return pending
        for name, nf_id in found.items():
            self._cast("delete_network_function", name, network_function_id=nf_id,
                       network_function_data={})
            self.deleted[name] = nf_id
        return [n for n in pending if n not in found]

    def _cast(self, method: str, name: str, **kwargs) -> None:
        start = time.monotonic()
        try:
            self.client.cast({}, method, **kwargs)
        except Exception as exc:  # recorded; the test reports it
            self.errors.append(f"{method} {name}: {exc.__class__.__name__}: {exc}")
        self.cast_seconds.append(time.monotonic() - start)


def nf_rows(url: str, prefix: str) -> dict[str, list[tuple[str, str]]]:
    """``{name: [(id, status), ...]}`` of every NF named ``<prefix>-*``."""
    from sqlalchemy import create_engine, select
    from sqlalchemy.pool import NullPool
    from nfp.db.models import NetworkFunction
    table = NetworkFunction.__table__
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(table.c.name, table.c.id, table.c.status)
                                .where(table.c.name.like(f"{prefix}-%"))).all()
    finally:
        engine.dispose()
    found: dict[str, list] = defaultdict(list)
    for name, nf_id, status in rows:
        found[name].append((nf_id, status))
    return found
