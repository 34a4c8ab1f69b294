"""A stock oslo.messaging RPC server with no-op NFP endpoints: the baseline of
``bench/bench_rpc.py``.

It serves ``create_network_function`` (counts, returns nothing) and
``get_network_function`` (returns a small dict) with oslo's ``threading``
executor and default options. With ``--expect K`` it prints one JSON line when
it has handled K creates, with perf-counter timestamps, and keeps serving
until its stdin closes.

    python bench/oslo_noop_server.py --url rabbit://guest:guest@127.0.0.1:5672/ \\
        --exchange bench --topic bench_topic --expect 20000
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import warnings


def oslo_with_conf():
    """oslo_messaging and a private ConfigOpts with the option groups 18.3 reads."""
    warnings.simplefilter("ignore")
    import oslo_messaging as om
    from oslo_config import cfg
    from oslo_messaging._metrics import client as metrics
    from oslo_messaging._tracing import client as tracing
    conf = cfg.ConfigOpts()
    conf.register_opts(tracing.oslo_messaging_tracing, group="oslo_messaging_tracing")
    conf.register_opts(metrics.oslo_messaging_metrics, group="oslo_messaging_metrics")
    return om, conf


class NoopEndpoint:
    """The two NFP methods the bench uses, doing no work."""

    def __init__(self, expect: int):
        self.expect = expect
        self.count = 0
        self.first = None
        self.last = None
        self.lock = threading.Lock()
        self.drained = threading.Event()

    def create_network_function(self, context, network_function):
        with self.lock:
            self.count += 1
            now = time.perf_counter()
            if self.count == 1:
                self.first = now
            if self.count == self.expect:
                self.last = now
                self.drained.set()

    def get_network_function(self, context, network_function_id):
        return {"id": network_function_id, "status": "ACTIVE"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--exchange", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--server", default="bench-oslo")
    parser.add_argument("--expect", type=int, default=0)
    args = parser.parse_args(argv)
    om, conf = oslo_with_conf()
    transport = om.get_rpc_transport(conf, url=args.url)
    endpoint = NoopEndpoint(args.expect)
    target = om.Target(topic=args.topic, server=args.server, exchange=args.exchange)
    server = om.get_rpc_server(transport, target, [endpoint], executor="threading")
    started = time.perf_counter()
    server.start()
    print(json.dumps({"event": "started"}), flush=True)
    if args.expect:
        endpoint.drained.wait()
        print(json.dumps({"event": "drained", "count": endpoint.count,
                          "rate": (endpoint.count - 1) / (endpoint.last - endpoint.first),
                          "rate_from_start": endpoint.count / (endpoint.last - started)}), flush=True)
    sys.stdin.read()
    server.stop()
    server.wait()
    transport.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
