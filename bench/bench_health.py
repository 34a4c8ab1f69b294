"""Health monitor benchmark: N devices, a liveness period, one process (run as root).

Targets: half on loopback (127.1.0.0/16, answered by the host itself), half in a
test namespace (198.19.0.0/16 routed to it and answered there as local
addresses: no neighbour entry per target). After a warm-up, nftables in the
namespace drops echo requests to 198.19.0.0/24 (256 targets), and the benchmark
measures how long the monitor takes to report each of them DOWN.

Reported: probes/s, share of probes sent on time (within ``late_after`` of their
due time), CPU of the monitor process, detection time (median, max). Baseline:
``fping`` sweeping the same targets (``-C 1``), its wall time per sweep and CPU.

    python bench/bench_health.py --devices 20000 --period 10 --duration 60

The sink here counts changes in memory; the database writer batches the same
changes into one transaction per ``flush_interval`` (see workers/health/store.py).
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import resource
import shutil
import statistics
import subprocess
import tempfile
import time

from nfp.config import HealthConf
from nfp.workers.health.monitor import DeviceSpec, Monitor
from nfp.workers.health.probes import Target
from nfp.workers.health.state import DOWN

NETNS, VETH = "nfp-bench-hm", "nfpbh0"
BLOCKED = "198.19.0.0/24"


def sh(*cmd: str, check: bool = True) -> None:
    subprocess.run(cmd, check=check, capture_output=True)


def setup() -> None:
    teardown()
    sh("ip", "netns", "add", NETNS)
    sh("ip", "link", "add", VETH, "type", "veth", "peer", "name", "eth0", "netns", NETNS)
    sh("ip", "addr", "add", "198.18.255.1/30", "dev", VETH)
    sh("ip", "link", "set", VETH, "up")
    sh("ip", "-n", NETNS, "addr", "add", "198.18.255.2/30", "dev", "eth0")
    sh("ip", "-n", NETNS, "link", "set", "eth0", "up")
    sh("ip", "-n", NETNS, "link", "set", "lo", "up")
    sh("ip", "-n", NETNS, "route", "add", "local", "198.19.0.0/16", "dev", "lo")
    sh("ip", "route", "add", "198.19.0.0/16", "via", "198.18.255.2")
    sh("sysctl", "-qw", "net.ipv4.icmp_ratelimit=0")
    sh("ip", "netns", "exec", NETNS, "sysctl", "-qw", "net.ipv4.icmp_ratelimit=0")


def block() -> None:
    script = (f"table inet nfpbench {{\n chain input {{\n type filter hook input priority 0;\n"
              f" ip daddr {BLOCKED} icmp type echo-request drop\n }}\n}}\n")
    subprocess.run(["ip", "netns", "exec", NETNS, "nft", "-f", "-"], input=script.encode(), check=True)


def teardown() -> None:
    sh("ip", "route", "del", "198.19.0.0/16", check=False)
    sh("ip", "link", "del", VETH, check=False)
    sh("ip", "netns", "del", NETNS, check=False)


def targets(n: int) -> list[str]:
    half = n // 2
    loop = [str(ipaddress.ip_address("127.1.0.1") + i) for i in range(half)]
    ns = [str(ipaddress.ip_address("198.19.0.1") + i) for i in range(n - half)]
    return loop + ns


class CountingSink:
    def __init__(self):
        self.changes = []

    def write_changes(self, changes, specs):
        self.changes += changes

    def write_contacts(self, contacts):
        pass


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_monitor(addresses: list[str], period: float, duration: float, warmup: float) -> dict:
    conf = HealthConf(liveness_period=period, deep_period=0, flush_interval=1.0)
    sink = CountingSink()
    monitor = Monitor(conf, sink)
    monitor.set_devices([DeviceSpec(a, Target(a, a), period) for a in addresses])
    blocked = {a for a in addresses if ipaddress.ip_address(a) in ipaddress.ip_network(BLOCKED)}
    start = time.monotonic()
    while time.monotonic() - start < warmup:
        monitor.run_once(0.05)
    healthy = sum(1 for w in monitor.watched.values() if w.health.status == "HEALTHY")
    stats, checks0, cpu0, t0 = monitor.stats, monitor.stats.checks, cpu(), time.monotonic()
    stats.periods = stats.periods_on_time = 0
    stats.lags.clear()
    block()
    blocked_at = time.time()
    while time.monotonic() - t0 < duration:
        monitor.run_once(0.05)
    wall, used = time.monotonic() - t0, cpu() - cpu0
    detected = {c.device_id: c.at - blocked_at for c in sink.changes if c.new in DOWN and c.device_id in blocked}
    false_down = sum(1 for c in sink.changes if c.new in DOWN and c.device_id not in blocked)
    monitor.close()
    times = sorted(detected.values())
    return {"devices": len(addresses), "healthy_after_warmup": healthy,
            "probes_per_s": round((stats.checks - checks0) / wall, 1),
            "on_time_share": round(stats.periods_on_time / max(1, stats.periods), 4),
            "lag_p99_s": round(sorted(stats.lags)[int(len(stats.lags) * 0.99)] if stats.lags else 0, 3),
            "cpu_share_of_one_core": round(used / wall, 3),
            "blocked": len(blocked), "detected": len(detected), "false_down": false_down,
            "detection_median_s": round(statistics.median(times), 1) if times else None,
            "detection_max_s": round(times[-1], 1) if times else None,
            "overloaded": monitor.overloaded}


def run_fping(addresses: list[str], sweeps: int = 3) -> dict:
    if not shutil.which("fping"):
        return {"error": "fping not installed (apt-get install fping)"}
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as handle:
        handle.write("\n".join(addresses))
        handle.flush()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.monotonic()
        for _ in range(sweeps):
            subprocess.run(["fping", "-q", "-C", "1", "-r", "0", "-t", "1000", "-i", "0.1",
                            "-f", handle.name], capture_output=True)
        wall = time.monotonic() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"sweep_seconds": round(wall / sweeps, 2), "probes_per_s_flat_out": round(len(addresses) * sweeps / wall, 1),
            "cpu_seconds_per_sweep": round(used / sweeps, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=20000)
    parser.add_argument("--period", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds measured after the block")
    parser.add_argument("--warmup", type=float, default=25.0)
    args = parser.parse_args()
    addresses = targets(args.devices)
    setup()
    try:
        baseline = run_fping(addresses)
        result = run_monitor(addresses, args.period, args.duration, args.warmup)
    finally:
        teardown()
    print(json.dumps({"nfp_monitor": result, "fping_baseline": baseline}, indent=2))


if __name__ == "__main__":
    main()
