"""RPC intake benchmark: nfp's durable listener against a stock oslo.messaging server.

Measured in one run, on the same RabbitMQ, with the same bytes (casts encoded by
nfp's codec, which is golden-tested against real oslo bytes):

(b) baseline: a stock oslo RPC server (threading executor) with a no-op
    ``create_network_function``. K casts are pre-loaded into its queue while it is
    stopped; it is started and the drain is timed (first to K-th message handled).
(c-baseline) sequential oslo ``call`` latency, p50/p99, of a no-op
    ``get_network_function`` on that server.
(a) the same K pre-loaded casts against the real daemon
    (``nfp-orchestrator --transport-url ... --database-url postgresql://...``),
    timed until all K network functions are committed in PostgreSQL (polled).
    (a) and (b) are drained in ``--rounds`` alternating rounds (an oslo drain,
    then an nfp drain on a truncated database), so a machine whose speed drifts
    within minutes hits both alike; the ratio is the median of the rounds' ratios.
(c) sequential ``get_network_function`` latency against the idle daemon (its probe
    NF ACTIVE), measured with the same stock oslo client before the load, in
    rounds alternating with a second stock oslo no-op server started beside it:
    the p50 ratio is against that server's p50, measured in the same minutes.
(d) end to end: ``--e2e`` more creates pre-loaded, the daemon started on them
    (memory appliance), timed until every one is ACTIVE: network functions per
    second and steps committed per second, against the physical limit measured in
    the same run: raw UPDATE+INSERT+COMMIT transactions per second on the same
    PostgreSQL (bench_engine's pgbench-style loop, 32 connections).

Targets: (a)/(b) >= 2.0, p50 nfp/oslo <= 1.0, (d) >= 300 NFs ACTIVE/s. Run:
``python bench/bench_rpc.py``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable, Optional

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import kombu  # noqa: E402
import yaml  # noqa: E402
from oslo_noop_server import oslo_with_conf  # noqa: E402

from nfp.config import NfpConfig  # noqa: E402
from nfp.rpc import codec, topology  # noqa: E402
from nfp.rpc.transport import connection_for  # noqa: E402

RUN = uuid.uuid4().hex[:8]
#: a neutron-like request context, so bodies have their real size
CONTEXT = {"user": "bench-user", "tenant": "bench-project", "project_id": "bench-project",
           "request_id": "req-" + str(uuid.uuid4()), "auth_token": "x" * 64, "is_admin": False,
           "roles": ["admin", "member"], "read_only": False, "show_deleted": False}


def nf_payload(i: int) -> dict:
    """A ``network_function`` argument as the upstream node driver sends it."""
    return {"name": f"bench-fw-{i}", "tenant_id": "bench-project",
            "service_profile": {"id": "bench-profile", "service_type": "firewall",
                                "service_flavor": "service_vendor=memory,device_type=static"},
            "service_chain_instance": {"id": f"sci-{i}"}, "service_chain_node": {"id": "scn-1"}}


# -- shared helpers -------------------------------------------------------------

def preload(url: str, conf: NfpConfig, topic: str, count: int) -> float:
    """Declare ``topic``'s queue as its server would and fill it with ``count``
    create_network_function casts. Returns the publish rate (msg/s)."""
    with connection_for(url, conf) as conn:
        channel = conn.channel()
        queue = topology.topic_queue(conf, topic)(channel)
        queue.declare()
        queue.purge()
        producer = kombu.Producer(channel)
        started = time.perf_counter()
        for i in range(count):
            body = codec.encode_request("create_network_function", {"network_function": nf_payload(i)},
                                        CONTEXT)
            producer.publish(body, exchange=queue.exchange, routing_key=topic,
                             content_type="application/json", content_encoding="utf-8")
        deadline = time.monotonic() + 120
        while queue.queue_declare(passive=True).message_count < count:
            if time.monotonic() > deadline:
                raise RuntimeError("the broker did not report all pre-loaded messages")
            time.sleep(0.05)
        return count / (time.perf_counter() - started)


def side_by_side(calls: dict[str, Callable[[], object]], n: int, rounds: int = 5) -> dict[str, dict]:
    """p50/p99 in ms of ``n`` sequential calls of each target in ``calls`` after 20
    warm-up calls, in alternating rounds of ``n // rounds`` calls, so a drift of
    the machine hits all alike (one target, one round: plain sequential calls)."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for fn in calls.values():
        for _ in range(20):
            fn()
    for _ in range(rounds):
        for name, fn in calls.items():
            for _ in range(max(1, n // rounds)):
                t = time.perf_counter()
                fn()
                samples[name].append((time.perf_counter() - t) * 1000)
    return {name: {"p50_ms": statistics.median(got), "p99_ms": statistics.quantiles(got, n=100)[98],
                   "calls_per_s": len(got) / (sum(got) / 1000)} for name, got in samples.items()}


def oslo_client(url: str, exchange: str, topic: str):
    om, oconf = oslo_with_conf()
    transport = om.get_rpc_transport(oconf, url=url)
    return transport, om.get_rpc_client(transport, om.Target(topic=topic, exchange=exchange), timeout=30)


def delete_entities(url: str, queues: list[str], exchanges: list[str]) -> None:
    """Remove what a phase declared (a missing entity closes the channel: reopen)."""
    with connection_for(url) as conn:
        for kind, names in (("queue", queues), ("exchange", exchanges)):
            for name in names:
                channel = conn.channel()
                try:
                    getattr(channel, f"{kind}_delete")(name)
                    channel.close()
                except Exception:
                    pass


@contextlib.contextmanager
def bench_server(url: str, script: str, exchange: str, topic: str, server: str, extra: tuple = ()):
    """``script`` (a bench server) running on ``topic``, with an oslo client of it:
    yields ``(its stdout, client)`` once it printed ``started``; stops it and
    removes its queues and exchanges afterwards."""
    proc = subprocess.Popen([sys.executable, str(HERE / script), "--url", url, "--exchange", exchange,
                             "--topic", topic, "--server", server, *extra],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    transport = None
    try:
        assert json.loads(proc.stdout.readline())["event"] == "started", f"{script} did not start"
        transport, client = oslo_client(url, exchange, topic)
        yield proc.stdout, client
    finally:
        if transport is not None:
            transport.cleanup()
        proc.stdin.close()
        proc.wait(60)
        delete_entities(url, [topic, f"{topic}.{server}"], [exchange, f"{topic}_fanout"])


# -- (b), (c-baseline) and the RPC layer alone: one server subprocess each -------------------

def run_server(url: str, script: str, count: int, calls: int, extra: tuple = ()) -> dict:
    """Pre-load ``count`` casts, start ``script`` (a bench server), read its drain
    rate, then measure sequential oslo ``call`` latency against it."""
    name = Path(script).stem.split("_")[0]
    exchange, topic = f"bench_{name}_{RUN}", f"bench_{name}_topic_{RUN}"
    conf = NfpConfig(transport={"url": url, "control_exchange": exchange})
    publish_rate = preload(url, conf, topic, count)
    with bench_server(url, script, exchange, topic, "bench-server",
                      ("--expect", str(count), *extra)) as (out, client):
        drained = json.loads(out.readline())
        lat = side_by_side({script: lambda: client.call(dict(CONTEXT), "get_network_function",
                                                        network_function_id="nf-1")}, calls, rounds=1)[script] \
            if calls else {}
    return {"publish_rate": publish_rate, "drain_rate": drained["rate"],
            "drain_rate_from_start": drained["rate_from_start"], **lat}


def run_rpc_layer_pg(url: str, admin_db_url: str, count: int, calls: int) -> dict:
    """nfp's RpcListener with a minimal durable group commit (one INSERT per batch)."""
    db = Postgres(admin_db_url)
    try:
        return run_server(url, "nfp_noop_server.py", count, calls, ("--dsn", db.dsn))
    finally:
        db.drop()


# -- (a) and (c): the nfp daemon -----------------------------------------------------------

def nfp_unavailable() -> Optional[str]:
    """Why the nfp side cannot run, or None."""
    for exe in ("nfp-orchestrator", "nfp"):
        if shutil.which(exe) is None:
            return f"{exe} is not installed (pip install -e .)"
    probe = subprocess.run(["nfp-orchestrator", "--help"], capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        return f"nfp-orchestrator --help failed: {(probe.stderr or probe.stdout).strip()[-300:]}"
    return None


class Postgres:
    """A throw-away database for one run."""

    def __init__(self, admin_url: str):
        import psycopg2
        self.psycopg2 = psycopg2
        self.admin_url = admin_url
        self.name = f"nfp_bench_{RUN}"
        plain = admin_url.replace("postgresql+psycopg2://", "postgresql://").rsplit("/", 1)[0]
        # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; nfp ships psycopg2
        self.url = plain.replace("postgresql://", "postgresql+psycopg2://") + f"/{self.name}"
        self.dsn = f"{plain}/{self.name}"
        self._admin("CREATE DATABASE " + self.name)
        self._conn = psycopg2.connect(self.dsn)
        self._conn.autocommit = True

    def _admin(self, sql: str) -> None:
        conn = self.psycopg2.connect(self.admin_url.replace("postgresql+psycopg2://", "postgresql://"))
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)
        conn.close()

    def clean_slate(self) -> None:
        """Empty what requests and steps wrote; the devices are kept, unused."""
        with self._conn.cursor() as cur:
            cur.execute("TRUNCATE network_functions, network_function_instances, events, "
                        "rpc_requests, audit_log, outbox CASCADE")
            cur.execute("UPDATE network_function_devices SET interfaces_in_use = 0, "
                        "reference_count = 0")

    def count_nfs(self) -> int:
        with self._conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM network_functions")
            return cur.fetchone()[0]

    def drop(self) -> None:
        self._conn.close()
        self._admin(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


class Daemon:
    """``nfp-orchestrator`` as a subprocess with its output in a log file."""

    def __init__(self, config: Path, url: str, db_url: str, workers: int, log: Path):
        self.cmd = ["nfp-orchestrator", "--config", str(config), "--transport-url", url,
                    "--database-url", db_url, "--workers", str(workers)]
        self.log = log
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> None:
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT)
        out.close()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-1500:]
            raise RuntimeError(f"nfp-orchestrator exited with {self.proc.returncode}:\n{tail}")


def wait_until_serving(daemon: Daemon, client, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        daemon.check_alive()
        try:
            client.prepare(timeout=2).call(dict(CONTEXT), "get_network_functions")
            return
        except Exception:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nfp-orchestrator did not answer within {timeout:.0f} s; "
                                   f"see {daemon.log}") from None


def run_nfp(url: str, admin_db_url: str, count: int, calls: int, workers: int,
            e2e_count: int = 0, rounds: int = 1,
            before_round: Callable[[], None] = lambda: None) -> dict:
    exchange, topic = f"bench_nfp_{RUN}", f"bench_nfp_topic_{RUN}"
    notifications = f"bench_notifications_{RUN}"
    state = Path(tempfile.mkdtemp(prefix="nfp-bench-"))
    settings = {"state_dir": str(state),
                "transport": {"control_exchange": exchange},
                "rpc": {"topic": topic, "notification_topic": f"{topic}_nso", "host": "bench-nfp",
                        "notifications_topic": notifications}}
    config = state / "nfp.yaml"
    config.write_text(yaml.safe_dump(settings))
    conf = NfpConfig.model_validate({**settings, "transport": {**settings["transport"], "url": url}})
    db = Postgres(admin_db_url)
    daemon = Daemon(config, url, db.url, workers, state / "orchestrator.log")
    transport = None
    try:
        subprocess.run(["nfp", "--config", str(config), "--database-url", db.url, "db", "upgrade"],
                       check=True, capture_output=True, timeout=300)
        transport, client = oslo_client(url, exchange, topic)
        daemon.start()
        wait_until_serving(daemon, client)
        created = client.call(dict(CONTEXT), "create_network_function", network_function=nf_payload(-1))
        settled(client, created["id"])
        lat = latency_beside_oslo(url, lambda: client.call(dict(CONTEXT), "get_network_function",
                                                           network_function_id=created["id"]), calls)
        drains = []
        for _ in range(rounds):
            daemon.stop()
            before_round()
            db.clean_slate()  # every round (and (d)) starts from the same tables
            publish_rate = preload(url, conf, topic, count)
            drains.append(timed_intake(daemon, db, count))
        intake = {key: statistics.median(d[key] for d in drains) for key in drains[0]}
        e2e = {}
        if e2e_count:
            daemon.stop()
            db.clean_slate()
            preload(url, conf, topic, e2e_count)
            e2e = worked_off(daemon, db, e2e_count)
        return {"publish_rate": publish_rate, **intake, **lat, **e2e,
                "drain_rounds": [d["drain_rate"] for d in drains]}
    finally:
        if transport is not None:
            transport.cleanup()
        daemon.stop()
        db.drop()
        delete_entities(url, [topic, f"{topic}.bench-nfp", f"{topic}_nso", f"{topic}_nso.bench-nfp",
                              f"{notifications}.info", f"{notifications}.error"],
                        [exchange, f"{topic}_fanout", f"{topic}_nso_fanout"])
        shutil.rmtree(state, ignore_errors=True)


def settled(client, nf_id: str, timeout: float = 120) -> None:
    """Wait until ``nf_id`` is ACTIVE and the daemon's workers have booted: the
    calls are timed on an idle daemon, as oslo's are on an idle server."""
    deadline = time.monotonic() + timeout
    while (client.call(dict(CONTEXT), "get_network_function", network_function_id=nf_id)
           or {}).get("status") != "ACTIVE":
        if time.monotonic() > deadline:
            raise RuntimeError(f"the latency probe's NF was not ACTIVE after {timeout:.0f} s")
        time.sleep(0.2)
    time.sleep(1.0)


def latency_beside_oslo(url: str, call_nfp: Callable[[], object], calls: int) -> dict:
    """(c) and its baseline side by side: a stock oslo no-op server started next to
    the daemon, the two called in alternating rounds by the same oslo client."""
    exchange, topic = f"bench_side_{RUN}", f"bench_side_topic_{RUN}"
    with bench_server(url, "oslo_noop_server.py", exchange, topic, "bench-side") as (_, oslo):
        got = side_by_side({"nfp": call_nfp, "oslo": lambda: oslo.call(
            dict(CONTEXT), "get_network_function", network_function_id="nf-1")}, calls)
    return {**got["nfp"], "oslo_beside": got["oslo"]}


def timed_intake(daemon: Daemon, db: Postgres, count: int, timeout: float = 900) -> dict:
    """Start the daemon on a full queue; time from the first committed NF to the last."""
    started = time.perf_counter()
    daemon.start()
    first_t = first_n = None
    deadline = time.monotonic() + timeout
    while True:
        n = db.count_nfs()
        now = time.perf_counter()
        if n > 0 and first_t is None:
            first_t, first_n = now, n
        if n >= count:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {n} of {count} NFs committed after {timeout:.0f} s")
        daemon.check_alive()
        time.sleep(0.01)
    if now == first_t:
        raise RuntimeError("all NFs were committed in one poll interval; use more --casts")
    return {"drain_rate": (count - first_n) / (now - first_t),
            "drain_rate_from_start": count / (now - started)}


def worked_off(daemon: Daemon, db: Postgres, count: int, timeout: float = 1800) -> dict:
    """(d): start the daemon on ``count`` queued creates; time until all are ACTIVE."""
    started = time.perf_counter()
    daemon.start()
    deadline = time.monotonic() + timeout
    while True:
        with db._conn.cursor() as cur:
            cur.execute("SELECT count(*) FILTER (WHERE status = 'ACTIVE'), "
                        "count(*) FILTER (WHERE status = 'ERROR') FROM network_functions")
            active, failed = cur.fetchone()
        if failed:
            raise RuntimeError(f"{failed} of the e2e creates went to ERROR")
        if active >= count:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {active} of {count} NFs ACTIVE after {timeout:.0f} s")
        daemon.check_alive()
        time.sleep(0.2)
    elapsed = time.perf_counter() - started
    with db._conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM events WHERE finished_at IS NOT NULL")
        steps = cur.fetchone()[0]
    return {"active_per_s": count / elapsed, "steps_per_s": steps / elapsed,
            "e2e_count": count, "e2e_seconds": elapsed, "raw_commits_per_s": raw_commits(db)}


def raw_commits(db: Postgres, clients: int = 32, seconds: float = 10.0) -> float:
    """The physical limit: bench_engine's raw write transactions on the same server."""
    from bench_engine import baseline
    schema = f"raw_{RUN}"
    with db._conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {schema}")
    try:
        return baseline(schema, clients, seconds, dsn=db.dsn)
    finally:
        with db._conn.cursor() as cur:
            cur.execute(f"DROP SCHEMA {schema} CASCADE")


# -- report ----------------------------------------------------------------------------------------

ROWS = [("casts pre-loaded per s (publisher)", "publish_rate", "{:,.0f}"),
        ("creates drained per s (median of rounds)", "drain_rate", "{:,.0f}"),
        ("  same, counted from process start", "drain_rate_from_start", "{:,.0f}"),
        ("get_network_function p50 ms", "p50_ms", "{:.2f}"),
        ("get_network_function p99 ms", "p99_ms", "{:.2f}"),
        ("sequential calls per s", "calls_per_s", "{:,.0f}")]


def report(columns: dict[str, Optional[dict]], args, why_not: Optional[str]) -> None:
    print(f"\nRPC benchmark  K={args.casts} casts, {args.calls} sequential calls, "
          f"broker {args.url}, {os.cpu_count()} CPUs")
    print(f"{'':42}" + "".join(f"{name:>16}" for name in columns))
    for label, key, fmt in ROWS:
        cells = "".join(f"{(fmt.format(col[key]) if col else '-'):>16}" for col in columns.values())
        print(f"{label:42}{cells}")
    oslo = columns["(b) oslo"]
    for name, col in columns.items():
        if col is None or name == "(b) oslo":
            continue
        # the daemon's calls were timed alternating with an oslo server's (latency_beside_oslo)
        p50_base = col["oslo_beside"]["p50_ms"] if "oslo_beside" in col else oslo["p50_ms"]
        ratio, p50 = col["drain_rate"] / oslo["drain_rate"], col["p50_ms"] / p50_base
        if "drain_rounds" in col and "drain_rounds" in oslo:  # paired rounds: their median ratio
            pairs = list(zip(oslo["drain_rounds"], col["drain_rounds"]))
            ratio = statistics.median(n / o for o, n in pairs)
            print("(a)/(b) alternating rounds, creates drained per s (oslo, nfp): " + ", ".join(
                f"({o:,.0f}, {n:,.0f}) {n / o:.2f}" for o, n in pairs) + f"; median ratio {ratio:.2f}")
        print(f"{name:22} intake ratio vs oslo {ratio:6.2f} (target >= 2.0 "
              f"{'OK' if ratio >= 2.0 else 'MISSED'})   p50 ratio {p50:5.2f} (target <= 1.0 "
              f"{'OK' if p50 <= 1.0 else 'MISSED'})")
    nfp = columns.get("(a) nfp")
    if nfp and "oslo_beside" in nfp:
        side = nfp["oslo_beside"]
        print(f"(c) side by side, alternating rounds on an idle daemon: nfp p50 {nfp['p50_ms']:.2f} / "
              f"p99 {nfp['p99_ms']:.2f} ms, stock oslo no-op server p50 {side['p50_ms']:.2f} / p99 "
              f"{side['p99_ms']:.2f} ms (the (a) nfp p50 ratio above is against this oslo p50)")
    if nfp and "active_per_s" in nfp:
        print(f"(d) end to end: {nfp['e2e_count']:,} creates ACTIVE in {nfp['e2e_seconds']:.1f} s (from "
              f"the daemon's start): {nfp['active_per_s']:,.1f} NFs/s (target >= 300 "
              f"{'OK' if nfp['active_per_s'] >= 300 else 'MISSED'}), {nfp['steps_per_s']:,.0f} steps/s; "
              f"physical limit: {nfp['raw_commits_per_s']:,.0f} raw write transactions/s on the same "
              f"PostgreSQL ({nfp['steps_per_s'] / nfp['raw_commits_per_s']:.2f} of it)")
    if why_not:
        print(f"\nnfp daemon not measured: {why_not}")
    print("\n(b) oslo acks before dispatch and stores nothing. 'rpc noop' is nfp's listener with "
          "a no-op dispatcher; 'rpc+pg' adds one durable INSERT per group commit; '(a) nfp' is "
          "the full daemon (every NF validated and committed with its first step in PostgreSQL).")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="nfp RPC intake and latency vs stock oslo.messaging")
    parser.add_argument("--url", default=os.environ.get("NFP_BENCH_RABBIT_URL",
                                                        "rabbit://guest:guest@127.0.0.1:5672/"))
    parser.add_argument("--database-admin-url", default=os.environ.get(
        "NFP_BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="a database the bench may CREATE/DROP a throw-away database from")
    parser.add_argument("--casts", type=int, default=20000, help="K pre-loaded casts")
    parser.add_argument("--calls", type=int, default=500, help="sequential calls for latency")
    parser.add_argument("--workers", type=int, default=2, help="nfp worker processes")
    parser.add_argument("--e2e", type=int, default=1000,
                        help="(d) creates timed from queued to ACTIVE (0: skip)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating (b) oslo and (a) nfp drains of --casts each")
    parser.add_argument("--only", choices=["all", "rpc"], default="all",
                        help="rpc: skip the nfp daemon")
    args = parser.parse_args(argv)
    # run the cleanups (databases, queues, daemons) on SIGTERM too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    columns: dict[str, Optional[dict]] = {}
    columns["(b) oslo"] = run_server(args.url, "oslo_noop_server.py", args.casts, args.calls)
    columns["rpc noop"] = run_server(args.url, "nfp_noop_server.py", args.casts, args.calls)
    columns["rpc+pg"] = run_rpc_layer_pg(args.url, args.database_admin_url, args.casts, args.calls)
    why_not = "--only rpc" if args.only == "rpc" else nfp_unavailable()
    oslo_drains: list[float] = []

    def oslo_round() -> None:  # (b) again, just before each (a) round
        oslo_drains.append(run_server(args.url, "oslo_noop_server.py", args.casts, 0)["drain_rate"])

    columns["(a) nfp"] = None if why_not else run_nfp(
        args.url, args.database_admin_url, args.casts, args.calls, args.workers, args.e2e,
        rounds=args.rounds, before_round=oslo_round)
    if oslo_drains:
        columns["(b) oslo"]["drain_rounds"] = oslo_drains
        columns["(b) oslo"]["drain_rate"] = statistics.median(oslo_drains)
    report(columns, args, why_not)
    return 0


if __name__ == "__main__":
    sys.exit(main())
