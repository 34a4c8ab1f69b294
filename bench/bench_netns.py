"""Benchmark: netns firewall NFs.

1. create_network_function -> ACTIVE for a netns firewall, through the RPC API of a real
   daemon (embedded SQLite + filesystem bus). Aim: under 2 s.
2. Applying 10,000 firewall rules: nfp's apply (validate, render, SSH, ``nft -f``) against
   a baseline ``nft -f`` of the same script run directly in the device's namespace, in the
   same run. Prints the rate ratio nfp/baseline. Aim: at least 0.8.

Needs root. Run: ``python bench/bench_netns.py [--rules 10000] [--rounds 3] [--nfs 3]``
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from nfp.drivers.config.linux import nft
from nfp.drivers.device.netns import NetnsDeviceDriver, iproute
from nfp.resources import parse_resource
from nfp.testing.topology import NetnsLab, Topology, unavailable_reason


def firewall_rules(count: int) -> dict:
    """``count`` distinct allow rules, as a caller would send them."""
    return {"default_action": "deny", "rules": [
        {"name": f"r{i}", "protocol": "tcp", "source_ip_address": f"198.18.{i // 250}.{i % 250}/32",
         "destination_ip_address": "198.19.0.0/16", "destination_port": 1 + i % 60000}
        for i in range(count)]}


def bench_create(state: Path, count: int) -> list[float]:
    from nfp.testing.harness import Harness

    config = {"orchestrator": {"device_poll_interval": 0.1}, "device_drivers": {"netns": {}}}
    times = []
    with Topology() as topo:
        provider = topo.network("provider", "198.18.1.0/24", gateway_ip="198.18.1.1")
        consumer = topo.network("consumer", "198.18.2.0/24", gateway_ip="198.18.2.1")
        harness = Harness(state, config=config, workers=2)
        try:
            with harness:
                for i in range(count):
                    started = time.monotonic()
                    nf = harness.client.create_network_function({
                        "name": f"bench-fw{i}", "tenant_id": "bench",
                        "service_profile": {"id": "p", "service_type": "firewall",
                                            "service_flavor": "service_vendor=linux,device_type=netns"},
                        "provider": provider.port("198.18.1.1", "provider"),
                        "consumer": consumer.port("198.18.2.1", "consumer"),
                        "service_config": {"config": [{"resource": "firewall", "resource_data": {
                            "rules": [{"name": "web", "protocol": "tcp", "destination_port": 80}]}}]}})
                    harness.wait_for_status(nf["id"], "ACTIVE", timeout=60)
                    times.append(time.monotonic() - started)
                    harness.client.delete_network_function(nf["id"])
                    harness.wait_gone(nf["id"], timeout=60)
        finally:
            NetnsDeviceDriver(harness.conf, {}).startup_sweep(known_ids=set())
    return times


def bench_rules(state: Path, count: int, rounds: int) -> tuple[list[float], list[float], list[float]]:
    data = firewall_rules(count)
    with NetnsLab(state) as lab:
        device, target = lab.device("bench")
        netns = device["extra"]["netns"]
        script = Path(device["extra"]["workdir"]) / "baseline.nft"
        script.write_text(nft.render_table(nft.table_name("nf-bench"), parse_resource("firewall", data)))
        lab.apply(target, "healthmonitor", {})  # the SSH session is pooled in both cases
        run = lab.config._runner(target)
        ours, push, base = [], [], []
        for _ in range(rounds):
            started = time.monotonic()
            iproute.netns_exec(netns, "nft", "-f", str(script), timeout=120)
            base.append(time.monotonic() - started)
            # the whole driver call: validate, check, render, SSH, nft -f
            started = time.monotonic()
            result = lab.apply(target, "firewall", data, operation="update", nf_id="nf-bench")
            ours.append(time.monotonic() - started)
            if not result.ok:
                raise SystemExit(f"apply failed: {result.error}")
            # the push alone: the rendered script over SSH into nft -f
            started = time.monotonic()
            if not run("nft -f -", stdin=script.read_text()).ok:
                raise SystemExit("push failed")
            push.append(time.monotonic() - started)
        assert len(lab.config.read_firewall(target, "nf-bench").rules) == count
    return ours, push, base


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--nfs", type=int, default=3, help="NFs created for the create->ACTIVE figure")
    args = parser.parse_args()
    reason = unavailable_reason()
    if reason:
        print(f"bench_netns: cannot run: {reason}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="nfp-bench-") as tmp:
        created = bench_create(Path(tmp) / "daemon", args.nfs)
        print(f"create_network_function -> ACTIVE (netns firewall, {args.nfs} NFs): "
              f"median {statistics.median(created):.2f} s, min {min(created):.2f} s, "
              f"max {max(created):.2f} s (aim < 2 s)")
        ours, push, base = bench_rules(Path(tmp) / "lab", args.rules, args.rounds)
    n, med = args.rules, statistics.median
    print(f"{n} firewall rules, median of {args.rounds}: baseline nft -f {med(base):.3f} s "
          f"({n / med(base):,.0f} rules/s); nfp push (SSH + nft -f) {med(push):.3f} s; "
          f"nfp apply (validate + render + push) {med(ours):.3f} s ({n / med(ours):,.0f} rules/s)")
    print(f"ratio push/baseline rate: {med(base) / med(push):.2f}; "
          f"ratio apply/baseline rate: {med(base) / med(ours):.2f} (aim >= 0.8)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
