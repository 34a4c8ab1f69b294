"""nfp's RpcListener alone, as a server for ``bench/bench_rpc.py``: the RPC layer
without the orchestrator behind it.

Modes:

- ``noop``: ``create_network_function`` counts and does nothing, like the oslo
  baseline (``bench/oslo_noop_server.py``); ``get_network_function`` returns a dict.
- ``pg``: every group-commit batch is inserted into a PostgreSQL table in one
  transaction (``execute_values``) before the listener acks it: durable intake
  with the least work a real dispatcher must do.

Prints the same JSON lines as the oslo server and serves until stdin closes.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nfp.config import NfpConfig  # noqa: E402
from nfp.rpc.listener import RpcListener  # noqa: E402
from nfp.rpc.types import IncomingRequest, Reply  # noqa: E402


class BenchDispatcher:
    """Counts creates; in ``pg`` mode stores each batch durably first."""

    def __init__(self, expect: int, dsn: str = ""):
        self.expect = expect
        self.count = 0
        self.first = self.last = None
        self.drained = threading.Event()
        self.db = None
        if dsn:
            import psycopg2
            from psycopg2 import extras
            self.execute_values = extras.execute_values
            self.db = psycopg2.connect(dsn)
            with self.db, self.db.cursor() as cur:
                cur.execute("CREATE TABLE IF NOT EXISTS bench_intake "
                            "(unique_id text PRIMARY KEY, method text, args jsonb)")

    def has_method(self, topic: str, method: str) -> bool:
        return method in ("create_network_function", "get_network_function")

    def is_read(self, topic: str, method: str) -> bool:
        return method == "get_network_function"

    def handle_read(self, request: IncomingRequest) -> Reply:
        return Reply(result={"id": request.args.get("network_function_id"), "status": "ACTIVE"})

    def handle_mutations(self, requests: list[IncomingRequest]) -> list[Reply]:
        if self.first is None:  # the clock starts when the first batch starts
            self.first = time.perf_counter()
        if self.db is not None:
            rows = [(r.unique_id, r.method, json.dumps(r.args)) for r in requests]
            with self.db, self.db.cursor() as cur:
                self.execute_values(cur, "INSERT INTO bench_intake VALUES %s "
                                         "ON CONFLICT (unique_id) DO NOTHING", rows, page_size=1000)
        self.count += len(requests)
        if self.count >= self.expect and not self.drained.is_set():
            self.last = time.perf_counter()
            self.drained.set()
        return [Reply() for _ in requests]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--exchange", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--server", default="bench-nfp-rpc")
    parser.add_argument("--expect", type=int, default=0)
    parser.add_argument("--dsn", default="", help="PostgreSQL DSN: pg mode")
    parser.add_argument("--prefetch", type=int, default=1000)
    args = parser.parse_args(argv)
    conf = NfpConfig(transport={"url": args.url, "control_exchange": args.exchange,
                                "prefetch": args.prefetch},
                     rpc={"host": args.server})
    dispatcher = BenchDispatcher(args.expect, args.dsn)
    listener = RpcListener(conf, dispatcher, [args.topic])
    started = time.perf_counter()
    if not listener.start(wait=60):
        print(json.dumps({"event": "failed"}), flush=True)
        return 1
    print(json.dumps({"event": "started"}), flush=True)
    if args.expect:
        dispatcher.drained.wait()
        print(json.dumps({"event": "drained", "count": dispatcher.count,
                          "rate": dispatcher.count / (dispatcher.last - dispatcher.first),
                          "rate_from_start": dispatcher.count / (dispatcher.last - started)}),
              flush=True)
    sys.stdin.read()
    listener.stop(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
