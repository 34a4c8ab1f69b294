"""The hot read (``get_network_function``'s row) on PostgreSQL: nfp's prepared
statement against the same read through SQLAlchemy Core, in one run.

Both run on one autocommit connection (as the listener's consumer thread holds
it) against one network function, alternating in rounds so drift on the
machine hits both alike. Also printed: a raw psycopg2 ``SELECT 1`` (one round
trip, no table), the floor any read stands on.

    python bench/bench_read.py [--reads 2000] [--rounds 7]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent)]

from sqlalchemy import text  # noqa: E402

from nfp import config as nfp_config  # noqa: E402
from nfp.api.endpoints import OrchestratorEndpoints  # noqa: E402
from nfp.db import migrate  # noqa: E402
from nfp.db.engine import make_engine, make_sessionmaker  # noqa: E402
from nfp.db.repositories import _VIEW_ROW, network_functions  # noqa: E402
from nfp.rpc import codec  # noqa: E402

PG = os.environ.get("NFP_BENCH_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")


def per_read_us(fn, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n * 1e6


def create_one(maker) -> str:
    conf = nfp_config.load(None, {"state_dir": tempfile.mkdtemp(prefix="nfp-bench-read-")}, environ={})
    request = codec.decode_request(codec.encode_request("create_network_function", {"network_function": {
        "name": "bench-fw", "tenant_id": "bench",
        "service_profile": {"id": "p", "service_type": "firewall",
                            "service_flavor": "service_vendor=memory,device_type=static"},
        "service_chain_instance": {"id": "sci"}, "service_chain_node": {"id": "scn"}}},
        {"tenant": "bench", "project_id": "bench", "is_admin": True, "roles": ["admin"]}))
    request.unique_id = uuid.uuid4().hex
    [outcome] = OrchestratorEndpoints(conf, maker, lambda refs: None).handle_mutations([request])
    assert outcome.error is None, outcome.error
    return outcome.result["id"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=2000, help="reads per method per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    schema = f"bench_read_{uuid.uuid4().hex[:8]}"
    admin = make_engine(PG, 1)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    url = f"{PG}?options=-csearch_path%3D{schema}"
    engine = reads = None
    try:
        migrate.upgrade(url)
        engine = make_engine(url, 2)
        nf_id = create_one(make_sessionmaker(engine))
        reads = make_engine(url, 1, autocommit=True)
        with reads.connect() as conn:
            raw = conn.connection.dbapi_connection

            def select_one():
                with raw.cursor() as cur:
                    cur.execute("SELECT 1")
                    cur.fetchone()

            methods = {"raw SELECT 1 (floor)": select_one,
                       "Core select (baseline)": lambda: conn.execute(_VIEW_ROW, {"nf_id": nf_id}).first(),
                       "nfp prepared read": lambda: network_functions.row(conn, nf_id)}
            assert tuple(methods["nfp prepared read"]()) == tuple(methods["Core select (baseline)"]())
            samples: dict[str, list[float]] = {name: [] for name in methods}
            for _ in range(args.rounds):
                for name, fn in methods.items():
                    per_read_us(fn, args.reads // 10)  # warm-up
                    samples[name].append(per_read_us(fn, args.reads))
    finally:
        for e in (reads, engine):
            if e is not None:
                e.dispose()
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
    print(f"\nhot read, {args.rounds} rounds x {args.reads} sequential reads, one autocommit connection; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}")
    medians = {name: statistics.median(values) for name, values in samples.items()}
    for name, value in medians.items():
        print(f"  {name:26} {value:7.1f} us/read (rounds: {min(samples[name]):.1f}-{max(samples[name]):.1f})")
    core, prepared = medians["Core select (baseline)"], medians["nfp prepared read"]
    print(f"prepared/Core time ratio {prepared / core:.2f} ({core / prepared:.2f}x the reads per second)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
