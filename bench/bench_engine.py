"""Engine steps per second end-to-end through the worker processes on PostgreSQL.

Each step is a real engine step: the worker loads the event row, runs the
handler (``engine.noop``, which emits the next link of its chain), and commits
the completion together with the emitted event in one transaction; the next
link is scheduled in the same worker. Baseline, measured in the same run: a
pgbench-style loop of the same shape of raw write transaction (one UPDATE and
one INSERT, committed) from as many psycopg2 connections as the workers have
threads, with no engine at all.

    python bench/bench_engine.py [--chains 400] [--links 25] [--workers 2]
"""
from __future__ import annotations

import argparse
import os
import platform
import threading
import time
import uuid

import psycopg2
from sqlalchemy import create_engine, func, select, text

from nfp import config as nfp_config
from nfp.db import migrate
from nfp.db.engine import make_engine, make_sessionmaker
from nfp.db.models import Event
from nfp.engine import store
from nfp.engine.events import EventSpec
from nfp.engine.supervisor import Supervisor
from nfp.workers.lifecycle.app import ORCHESTRATOR

PG = os.environ.get("NFP_BENCH_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")


def schema_url(schema: str) -> str:
    return f"{PG}?options=-csearch_path%3D{schema}"


def baseline(schema: str, clients: int, seconds: float, dsn: str = "") -> float:
    """Raw UPDATE+INSERT+COMMIT transactions per second from ``clients`` connections
    (to ``dsn``, default the bench database) in ``schema``."""
    dsn = dsn or PG.replace("postgresql+psycopg2://", "postgresql://")
    setup = psycopg2.connect(dsn, options=f"-csearch_path={schema}")
    with setup, setup.cursor() as cur:
        cur.execute("CREATE TABLE bench_base (id bigserial primary key, k text, status text, n int)")
        cur.execute("INSERT INTO bench_base (k, status, n) SELECT 'k'||g, 'pending', 0 "
                    "FROM generate_series(1, %s) g", (clients,))
    setup.close()
    count = [0] * clients
    stop = time.time() + seconds

    def run(i: int) -> None:
        conn = psycopg2.connect(dsn, options=f"-csearch_path={schema}")
        cur = conn.cursor()
        while time.time() < stop:
            cur.execute("UPDATE bench_base SET status='done', n=n+1 WHERE id=%s", (i + 1,))
            cur.execute("INSERT INTO bench_base (k, status, n) VALUES (%s, 'pending', 0)", (f"x{i}",))
            conn.commit()
            count[i] += 1
        conn.close()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    start = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(count) / (time.time() - start)


def engine_rate(url: str, chains: int, links: int, workers: int, threads: int) -> tuple[float, int]:
    conf = nfp_config.load(None, {"database": {"url": url}, "state_dir": f"/tmp/nfp-bench-{os.getpid()}",
                                  "orchestrator": {"workers": workers, "threads_per_worker": threads},
                                  "logging": {"level": "WARNING"}}, environ={})
    migrate.upgrade(url)
    sup = Supervisor(conf, app=ORCHESTRATOR)
    sup.start()
    engine = make_engine(url)
    sm = make_sessionmaker(engine)
    try:
        with sm.begin() as session:
            refs = store.add(session, [EventSpec("engine.noop", f"chain-{uuid.uuid4().hex[:12]}",
                                                 {"remaining": links - 1}) for _ in range(chains)])
        total = chains * links
        start = time.time()
        sup.dispatch(refs)
        done = 0
        while time.time() - start < 300:
            with engine.connect() as conn:
                done = conn.execute(select(func.count()).select_from(Event.__table__).where(
                    Event.status == "done")).scalar()
            if done >= total:
                break
            time.sleep(0.25)
        elapsed = time.time() - start
        return done / elapsed, done
    finally:
        sup.stop(5)
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=400)
    parser.add_argument("--links", type=int, default=25)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--baseline-seconds", type=float, default=5)
    args = parser.parse_args()
    admin = create_engine(PG)
    schemas = [f"bench_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    with admin.begin() as conn:
        for s in schemas:
            conn.execute(text(f'CREATE SCHEMA "{s}"'))
    try:
        rate, steps = engine_rate(schema_url(schemas[0]), args.chains, args.links, args.workers,
                                  args.threads)
        base = baseline(schemas[1], args.workers * args.threads, args.baseline_seconds)
    finally:
        with admin.begin() as conn:
            for s in schemas:
                conn.execute(text(f'DROP SCHEMA "{s}" CASCADE'))
        admin.dispose()
    with create_engine(PG).connect() as conn:
        pg_version = conn.execute(text("SHOW server_version")).scalar()
    print(f"machine: {platform.node()} {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"PostgreSQL {pg_version}")
    print(f"engine: {steps} steps ({args.chains} chains x {args.links} links), "
          f"{args.workers} workers x {args.threads} threads")
    print(f"{'measure':<48}{'per second':>12}")
    print(f"{'nfp engine steps, end to end through workers':<48}{rate:>12.0f}")
    print(f"{'baseline: raw UPDATE+INSERT+COMMIT transactions':<48}{base:>12.0f}")
    print(f"ratio engine/baseline: {rate / base:.2f}   target: >= 2000 steps/s "
          f"({'met' if rate >= 2000 else 'NOT met'})")


if __name__ == "__main__":
    main()
