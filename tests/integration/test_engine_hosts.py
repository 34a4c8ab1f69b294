"""Two orchestrator hosts on one PostgreSQL and one RabbitMQ topic.

Both consume the same topic, so each accepts about half of the creates, and
their workers split the step buckets between them by lease. Every create must
reach ACTIVE with its device call made exactly once (counted on the device
side, across hosts), and ``nfp status`` must show both hosts with all buckets
leased. A host stopped cleanly gives its buckets back and the other takes them
all and serves new creates alone.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import pytest

from nfp.testing.harness import Harness
from nfp.testing.memory_config import count_calls
from tests.integration.test_daemon_behaviour import nf_body

pytestmark = pytest.mark.integration

COUNT = 120


def _host(tmp_path, name, url, rabbit_url, topic, call_log, delay=0.02):
    return Harness(tmp_path / name, database_url=url, transport_url=rabbit_url, workers=2,
                   topic=topic,
                   config={"rpc": {"host": name},
                           "orchestrator": {"threads_per_worker": 4, "lease_ttl": 6},
                           "config_drivers": {"memory": {"delay": delay, "call_log": str(call_log)}}})


def _status(h) -> dict:
    out = subprocess.run([sys.executable, "-m", "nfp.cli.main", "--config", str(h.config_file),
                          "status"], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def _split(h) -> bool:
    """Both hosts are alive, each holds leases, and all 64 buckets are held."""
    hosts = _status(h)["hosts"]
    return (sorted(n for n, v in hosts.items() if v["alive"] and v["leases"]) == ["host-a", "host-b"]
            and sum(v["leases"] for v in hosts.values()) == 64)


def _wait(predicate, what, timeout=180):
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.3)


def test_two_hosts_share_the_work_and_no_device_call_is_made_twice(tmp_path, pg_url, rabbit_url):
    topic = f"nfp-hosts-{uuid.uuid4().hex[:8]}"
    call_log = tmp_path / "calls.log"
    with _host(tmp_path, "host-a", pg_url, rabbit_url, topic, call_log) as a, \
            _host(tmp_path, "host-b", pg_url, rabbit_url, topic, call_log) as b:
        # (a harness answers "ready" through either host: the topic is shared)
        _wait(lambda: _split(a), "both hosts to hold leases")

        ids = [a.client.create_network_function(nf_body(f"fw{i}"))["id"] for i in range(COUNT)]

        def all_active():
            got = a.client.get_network_functions({})
            assert not [nf for nf in got if nf["status"] == "ERROR"], "an NF went to ERROR"
            return sum(nf["status"] == "ACTIVE" for nf in got) == COUNT
        _wait(all_active, f"{COUNT} NFs ACTIVE")

        calls = count_calls(call_log, ("nf", "resource", "operation"))
        creates = {nf: n for (nf, _res, op), n in calls.items() if op == "create"}
        assert set(creates) == set(ids)
        assert set(creates.values()) == {1}, {k: v for k, v in creates.items() if v != 1}
        by_host = count_calls(call_log, ("host",))
        assert set(by_host) == {("host-a",), ("host-b",)}, by_host  # both did work

        # a clean stop gives the buckets back: b takes all 64
        a.stop()
        _wait(lambda: _status(b)["hosts"]["host-b"]["leases"] == 64, "host-b to hold every bucket",
              timeout=60)
        more = [b.client.create_network_function(nf_body(f"late{i}"))["id"] for i in range(10)]
        for nf_id in more:
            b.wait_for_status(nf_id, timeout=120)
        assert "was interrupted" not in a.logs() + b.logs()


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a host's listener, workers and monitor)."""
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        child, parent = map(int, line.split())
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        cur = todo.pop()
        found.append(cur)
        todo += children.get(cur, [])
    return found


def test_a_paused_host_cannot_commit_steps_the_other_host_took_over(tmp_path, pg_url, rabbit_url):
    """SIGSTOP a whole host while its device calls are in flight, for longer than
    its leases; the other host takes its buckets and finishes its NFs. When the
    paused host resumes, its late results are refused by the fence: every step
    of every NF is committed once."""
    import os
    import signal
    from sqlalchemy import create_engine, func, select, text
    from nfp.db.models import Event
    topic = f"nfp-hosts-{uuid.uuid4().hex[:8]}"
    call_log = tmp_path / "calls.log"
    # slow device calls: the pause catches some in flight
    with _host(tmp_path, "host-a", pg_url, rabbit_url, topic, call_log, delay=1.0) as a, \
            _host(tmp_path, "host-b", pg_url, rabbit_url, topic, call_log, delay=1.0) as b:
        _wait(lambda: _split(a), "both hosts to hold leases")
        ids = [a.client.create_network_function(nf_body(f"fw{i}"))["id"] for i in range(40)]
        _wait(lambda: count_calls(call_log, ("host",)).get(("host-a",), 0) >= 2,
              "host-a to be inside device calls")
        paused = _tree(a.proc.pid)
        for pid in paused:
            os.kill(pid, signal.SIGSTOP)
        try:
            _wait(lambda: _status(b)["hosts"]["host-b"]["leases"] == 64,
                  "host-b to take the paused host's buckets", timeout=120)
        finally:
            for pid in paused:
                os.kill(pid, signal.SIGCONT)

        def all_active():
            got = b.client.get_network_functions({})
            return sum(nf["status"] == "ACTIVE" for nf in got) == len(ids)
        _wait(all_active, "every NF ACTIVE", timeout=240)
        _wait(lambda: "the new holder runs it" in a.logs() or "taken over" in a.logs(),
              "the paused host to see its lease lost", timeout=60)
        engine = create_engine(pg_url)
        try:
            with engine.connect() as conn:
                done = conn.execute(select(Event.scope, Event.type, func.count())
                                    .where(Event.status == "done")
                                    .group_by(Event.scope, Event.type)).all()
                errors = conn.execute(text("SELECT count(*) FROM network_functions "
                                           "WHERE status = 'ERROR'")).scalar()
        finally:
            engine.dispose()
        twice = [(scope, kind, n) for scope, kind, n in done if n > 1]
        assert not twice, twice
        assert errors == 0


def test_five_hosts_fit_a_stock_postgresql_with_a_connection_budget(tmp_path, pg_url, rabbit_url):
    """Five hosts (two workers and a health monitor each) with
    ``database.host_connections: 18`` on PostgreSQL's default max_connections=100:
    every create reaches ACTIVE, no process is refused a connection, and no host
    ever holds more than its budget (sampled from pg_stat_activity)."""
    import threading
    from sqlalchemy import create_engine, text
    from tests.conftest import PG_URL
    topic = f"nfp-hosts-{uuid.uuid4().hex[:8]}"
    names = [f"host-{i}" for i in range(5)]
    hosts = [Harness(tmp_path / n, database_url=pg_url, transport_url=rabbit_url, workers=2,
                     topic=topic,
                     config={"rpc": {"host": n}, "database": {"host_connections": 18},
                             "orchestrator": {"threads_per_worker": 8}})
             for n in names]
    admin = create_engine(PG_URL)
    peak: dict[str, int] = {}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            trees = {n: {f"nfp-{p}" for p in _tree(h.proc.pid)} for n, h in zip(names, hosts)
                     if h.proc is not None and h.proc.poll() is None}
            with admin.connect() as conn:
                apps = list(conn.execute(text("SELECT application_name FROM pg_stat_activity")).scalars())
            for n, tree in trees.items():
                peak[n] = max(peak.get(n, 0), sum(a in tree for a in apps))
            stop.wait(0.5)
    sampler = threading.Thread(target=sample, daemon=True)
    try:
        for h in hosts:
            h.start(timeout=120)
        sampler.start()
        _wait(lambda: sum(v["alive"] for v in _status(hosts[0])["hosts"].values()) == 5,
              "all five hosts alive")
        ids = [hosts[0].client.create_network_function(nf_body(f"fw{i}"))["id"] for i in range(60)]

        def all_active():
            got = hosts[0].client.get_network_functions({})
            assert not [nf for nf in got if nf["status"] == "ERROR"], "an NF went to ERROR"
            return sum(nf["status"] == "ACTIVE" for nf in got) == len(ids)
        _wait(all_active, "every NF ACTIVE", timeout=300)
    finally:
        stop.set()
        for h in hosts:
            h.stop()
            if h.client is not None:
                h.client.close()
        admin.dispose()
    logs = "".join(h.logs() for h in hosts)
    assert "too many clients" not in logs and "remaining connection slots" not in logs
    assert len(peak) == 5 and max(peak.values()) <= 18, peak
    assert "at most 16 connections from this host" in hosts[0].logs()
