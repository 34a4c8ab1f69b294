"""Durable intake in one process: what accepting a create costs the listener.

``OrchestratorEndpoints.handle_mutations`` (validation, payload sealing, the NF
row, its first step, its request id and its audit row, one transaction per batch)
is timed on PostgreSQL with upstream-shaped creates, without a broker, so the CPU
per create is the listener's own. Baseline in the same run: the same intake with
``nfp.db.bulk`` taking SQLAlchemy's ordinary executemany (``insertmanyvalues``)
instead of one ``json_populate_recordset`` statement per table; rounds alternate.

    python bench/bench_intake.py [--creates 10000] [--batch 250] [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import psycopg2  # noqa: E402
from bench_rpc import CONTEXT, nf_payload  # noqa: E402

from nfp import config as nfp_config  # noqa: E402
from nfp.api.endpoints import OrchestratorEndpoints  # noqa: E402
from nfp.db import bulk, migrate  # noqa: E402
from nfp.db.engine import make_engine, make_sessionmaker  # noqa: E402
from nfp.rpc import codec  # noqa: E402

ADMIN = os.environ.get("NFP_BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextmanager
def database():
    name = "nfp_intake_" + uuid.uuid4().hex[:8]
    admin = psycopg2.connect(ADMIN)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    url = ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg2://") + f"/{name}"
    try:
        migrate.upgrade(url)
        yield url
    finally:
        admin.cursor().execute(f"DROP DATABASE {name} WITH (FORCE)")
        admin.close()


@contextmanager
def executemany_only():
    """The baseline: every bulk insert through SQLAlchemy's executemany."""
    original = bulk.insert_rows
    bulk.insert_rows = lambda conn, table, rows, returning=(): (
        bulk._executemany(conn, table, rows, returning) if rows else ([] if returning else None))
    try:
        yield
    finally:
        bulk.insert_rows = original


def one_round(url: str, creates: int, batch: int) -> tuple[float, float]:
    """(creates per s of wall time, µs of this process's CPU per create)."""
    state = tempfile.mkdtemp(prefix="nfp-bench-intake-")
    conf = nfp_config.load(None, {"state_dir": state, "database": {"url": url}}, environ={})
    engine = make_engine(url)
    try:
        endpoints = OrchestratorEndpoints(conf, make_sessionmaker(engine), lambda refs: None)
        requests = [codec.decode_request(codec.encode_request(
            "create_network_function", {"network_function": nf_payload(i)}, CONTEXT))
            for i in range(creates)]
        for request in requests:
            request.unique_id = uuid.uuid4().hex
        endpoints.handle_mutations(requests[:batch])  # warm up: connections, caches
        wall, cpu = time.perf_counter(), time.process_time()
        for start in range(batch, creates, batch):
            outcomes = endpoints.handle_mutations(requests[start:start + batch])
            assert all(o.error is None for o in outcomes), outcomes[0].error
        done = creates - batch
        return done / (time.perf_counter() - wall), (time.process_time() - cpu) / done * 1e6
    finally:
        engine.dispose()
        shutil.rmtree(state, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--creates", type=int, default=10000)
    parser.add_argument("--batch", type=int, default=250, help="creates per group commit")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    runs: dict[str, list[tuple[float, float]]] = {"json_populate_recordset": [], "executemany": []}
    with database() as url:
        for _ in range(args.rounds):
            runs["json_populate_recordset"].append(one_round(url, args.creates, args.batch))
            with executemany_only():
                runs["executemany"].append(one_round(url, args.creates, args.batch))
    print(f"\nintake in one process: {args.creates:,} creates per round, batches of {args.batch}, "
          f"{args.rounds} alternating rounds, {os.cpu_count()} CPUs")
    for name, results in runs.items():
        rate = statistics.median(r[0] for r in results)
        cpu = statistics.median(r[1] for r in results)
        print(f"{name:26} {rate:8,.0f} creates/s   {cpu:6.0f} µs CPU per create")
    nfp_cpu = statistics.median(r[1] for r in runs["json_populate_recordset"])
    base_cpu = statistics.median(r[1] for r in runs["executemany"])
    print(f"CPU per create, json_populate_recordset / executemany: {nfp_cpu / base_cpu:.2f}")


if __name__ == "__main__":
    main()
