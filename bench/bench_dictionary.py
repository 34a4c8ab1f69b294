"""Dictionary engine benchmark: parse+validate, render, and rules pushed per second.

    python bench/bench_dictionary.py [--rules 2000] [--threads 4] [--repeat 3]
                                     [--vendors pfsense,fortigate] [--driver-rules 500]

Targets (issue 3): parse+validate < 5 ms, render < 50 us, 1,000 rules/s to a REST
simulator over pooled connections. A FortiGate rule is up to four calls (address
objects, a service, the policy), so its lines show HTTP calls per second too.

Timings are the lowest of five block medians (see ``timed``), and every figure
has a reference measured in the same run, on the same machine, so a loaded
machine moves both: parsing against libyaml's own ``yaml.load`` of the
same text; pushing against the same HTTP calls made with plain ``requests``:
``requests.post`` in a loop (a new TLS connection per call, the issue's
baseline) and, for reference, a ``requests.Session`` loop (kept-alive). The
calls are rendered by the engine first, untimed, so the baselines do no
rendering. Each simulator runs in its own process (``nfp simulate``), over TLS
with its certificate verified. Each push figure is the best of ``--repeat``
runs, baselines included.

The engine sends over :class:`HttpTransport` (urllib3's pool, one per device).
The pfSense lines end with the ratio of this run's multiples of the baseline to
the README's (measured with the earlier hand-written ``http.client`` pool), so
a figure from another machine can still be compared.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import requests
import yaml

from nfp.config import NfpConfig
from nfp.db import all_models
from nfp.db.engine import make_engine, make_sessionmaker
from nfp.drivers.config.base import ConfigRequest, DeviceTarget
from nfp.drivers.config.dictionary import loader
from nfp.drivers.config.dictionary.driver import DictionaryConfigDriver
from nfp.drivers.config.dictionary.http import AuthMaterial, HttpEndpoint, HttpResponse, HttpTransport
from nfp.drivers.config.dictionary.items import build_items
from nfp.drivers.config.dictionary.operations import DeviceLink, OperationRunner
from nfp.drivers.config.dictionary.render import HttpRequest, render_http
from nfp.resources import parse_resource
from nfp.secrets import SecretStore, load_key

API_KEY = "bench-api-key-0123456789"
#: the README's pfSense figures (rules/s): pooled, full driver, and their baseline in that run
README_PFSENSE = {"pooled": 1277, "driver": 1071, "baseline": 163}
#: how each REST vendor takes its key, and the device vars its dictionary needs
VENDORS = {
    "pfsense": {"auth": {"X-API-Key": API_KEY}, "vars": {"interface": "wan"}},
    "fortigate": {"auth": {"Authorization": f"Bearer {API_KEY}"},
                  "vars": {"vdom": "root", "externalInterface": "port1", "internalInterface": "port2"}},
}


def timed(fn: Callable[[], object], repeat: int, blocks: int = 5) -> float:
    """Seconds for one ``fn()``: ``repeat`` runs in ``blocks`` blocks, the median of
    each block, the lowest block median. Other work on a shared machine only adds
    time, so the quietest block is the closest to the code's own cost."""
    return timed_together({"fn": fn}, repeat, blocks)["fn"]


def timed_together(fns: dict[str, Callable[[], object]], repeat: int, blocks: int = 5) -> dict[str, float]:
    """:func:`timed` for several functions, their blocks interleaved, so that a
    figure and its reference see the same machine load."""
    per_block = max(1, repeat // blocks)
    medians: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(blocks):
        for name, fn in fns.items():
            samples = []
            for _ in range(per_block):
                start = time.perf_counter()
                fn()
                samples.append(time.perf_counter() - start)
            medians[name].append(statistics.median(samples))
    return {name: min(values) for name, values in medians.items()}


# -- parse ----------------------------------------------------------------------------

def bench_parse() -> None:
    print("parse + validate one dictionary (cache cleared each time):")
    for vendor in loader.shipped_names():
        text = loader.load_shipped(vendor).text

        def parse():
            loader.clear_cache()
            loader.parse(text, f"{vendor}.yaml")

        times = timed_together({"libyaml": lambda: yaml.load(text, Loader=yaml.CSafeLoader),
                                "parse": parse}, 300, blocks=10)
        libyaml, fast = times["libyaml"], times["parse"]
        print(f"  {vendor + '.yaml':15s} ({len(text.splitlines()):3d} lines): {fast * 1e3:5.2f} ms "
              f"(target < 5 ms)   libyaml yaml.load alone: {libyaml * 1e3:5.2f} ms ({fast / libyaml:.2f}x)")
    text = loader.load_shipped("pfsense").text
    deep = timed(lambda: loader.deep_check(loader.parse(text, "pfsense.yaml")), 3)
    cached = timed(lambda: loader.parse(text, "pfsense.yaml"), 2000)
    print(f"  pfsense.yaml with every template compiled (nfp dictionary validate): {deep * 1e3:.1f} ms; "
          f"cache hit: {cached * 1e6:.1f} us")


# -- render ---------------------------------------------------------------------------

_SEQUENCE = iter(range(1 << 30))


def _rules(count: int, prefix: str = "r") -> list[dict]:
    """``count`` firewall rules: names, CIDRs (within 198.18.0.0/15) and ports differ
    from each other and from every earlier call's."""
    rules = []
    for i in range(count):
        n = next(_SEQUENCE)
        rules.append({"name": f"{prefix}{i}", "protocol": "tcp",
                      "source_ip_address": f"198.{18 + (n >> 16) % 2}.{(n >> 8) & 255}.{n & 255}/32",
                      "destination_port": 1 + n % 65535, "description": f"bench rule {i}"})
    return rules


def _executor(vendor: str, transport=None) -> OperationRunner:
    spec = VENDORS[vendor]
    return OperationRunner(DeviceLink("bench", loader.load_shipped(vendor), spec["vars"], http=transport,
                               auth=AuthMaterial(headers=spec["auth"])))


def bench_render() -> None:
    loaded = loader.load_shipped("pfsense")
    executor = _executor("pfsense")
    call = loaded.model.services["Firewall"].create
    (item,) = build_items("firewall", parse_resource("firewall", {"rules": [{
        "name": "web", "protocol": "tcp", "source_ip_address": "198.18.0.0/24",
        "destination_port": "80:88", "description": "bench rule"}]}), "nf-bench")
    values = executor.values(item.values)
    render_http(call, values, "/api/v2")  # compile once
    render = timed(lambda: render_http(call, values, "/api/v2"), 5000)
    checked = timed(lambda: render_http(call, executor.values(item.values), "/api/v2"), 5000)
    cold_runs = []
    for block in range(5):
        items = build_items("firewall", parse_resource("firewall", {"rules": _rules(1000, f"cold{block}-")}),
                            "nf-bench")
        start = time.perf_counter()
        for each in items:
            render_http(call, executor.values(each.values), "/api/v2")
        cold_runs.append((time.perf_counter() - start) / len(items))
    cold = min(cold_runs)
    print(f"render one request (pfSense Firewall.create, {len(item.values)} placeholders; target < 50 us):")
    print(f"  values already checked      {render * 1e6:6.1f} us")
    print(f"  with the typed checks       {checked * 1e6:6.1f} us")
    print(f"  distinct rules, typed       {cold * 1e6:6.1f} us  (mean; every CIDR, port and name new)")


# -- push -----------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_simulator(vendor: str, cert_dir: str) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "nfp.cli.main", "simulate", vendor, "--port", str(port),
                             "--api-key", API_KEY, "--cert-dir", cert_dir],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if "tls_fingerprint" in line:
            return proc, port
    raise RuntimeError(f"{vendor} simulator did not start")


class _Recorder:
    """A transport that keeps the rendered requests and answers success without a device."""

    CANNED = json.dumps({"code": 200, "status": "success", "http_status": 200, "mkey": 1,
                         "data": {"tracker": 1}}).encode()

    def __init__(self):
        self.requests: list[HttpRequest] = []

    def send(self, request: HttpRequest, auth: AuthMaterial) -> HttpResponse:
        self.requests.append(request)
        return HttpResponse(200, self.CANNED, {})


def _rendered_calls(vendor: str, items) -> list[HttpRequest]:
    recorder = _Recorder()
    executor = _executor(vendor, recorder)
    for item in items:
        executor.run("Firewall", "create", executor.values(item.values))
    return recorder.requests


def _baseline(calls: list[HttpRequest], base_url: str, auth: dict, ca_file: str, session=None) -> float:
    """Seconds to send ``calls`` with plain requests (a new connection per call without a session)."""
    send = session.request if session is not None else requests.request
    start = time.perf_counter()
    for call in calls:
        url = base_url + call.path
        response = send(call.method, url, params=call.params or None, data=call.data or call.body,
                        headers={**call.headers, **auth}, verify=ca_file, timeout=10)
        response.raise_for_status()
    return time.perf_counter() - start


def bench_push(vendor: str, count: int, threads: int, repeat: int, driver_rules: int) -> None:
    cert_dir = tempfile.mkdtemp(prefix=f"nfp-bench-{vendor}-")
    proc, port = _start_simulator(vendor, cert_dir)
    ca_file = os.path.join(cert_dir, f"{vendor}-sim.crt")
    base_url = f"https://127.0.0.1:{port}"
    spec = VENDORS[vendor]
    rates: dict[str, list[float]] = {}
    per_rule = 1.0
    try:
        transport = HttpTransport(HttpEndpoint("127.0.0.1", port, ca_file=ca_file, pool_size=max(threads, 1)),
                                  "bench")
        executor = _executor(vendor, transport)

        def push(item):
            return executor.run("Firewall", "create", executor.values(item.values))

        for run in range(repeat):
            n_base = max(50, count // 10)
            calls = _rendered_calls(vendor, build_items("firewall", parse_resource(
                "firewall", {"rules": _rules(n_base, f"b{run}-")}), "nf-base"))
            per_rule = len(calls) / n_base
            rates.setdefault("baseline", []).append(n_base / _baseline(calls, base_url, spec["auth"], ca_file))
            calls = _rendered_calls(vendor, build_items("firewall", parse_resource(
                "firewall", {"rules": _rules(n_base, f"s{run}-")}), "nf-base"))
            with requests.Session() as session:
                rates.setdefault("session", []).append(
                    n_base / _baseline(calls, base_url, spec["auth"], ca_file, session))

            items = build_items("firewall", parse_resource("firewall", {"rules": _rules(count, f"e{run}-")}),
                                "nf-bench")
            start = time.perf_counter()
            for item in items:
                push(item)
            rates.setdefault("pooled", []).append(count / (time.perf_counter() - start))
            items = build_items("firewall", parse_resource("firewall", {"rules": _rules(count, f"t{run}-")}),
                                "nf-bench")
            start = time.perf_counter()
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(push, items))
            rates.setdefault("threads", []).append(count / (time.perf_counter() - start))
            rates.setdefault("driver", []).append(_driver_push(vendor, port, ca_file, driver_rules, f"nf-d{run}"))
        transport.close()
    finally:
        proc.terminate()
        proc.wait(10)
    best = {name: max(values) for name, values in rates.items()}
    base = best["baseline"]
    calls_note = f", {per_rule:.1f} HTTP calls per rule" if per_rule != 1 else ""
    print(f"rules pushed per second to the {vendor} simulator (another process, HTTPS{calls_note}; "
          f"best of {repeat}):")
    rows = [("baseline: requests.post loop", "baseline", ""),
            ("requests.Session loop", "session", "  (kept-alive requests, for reference)"),
            ("engine, pooled, 1 thread", "pooled", ""),
            (f"engine, pooled, {threads} threads", "threads", ""),
            ("full driver apply, tracked", "driver", f"  [{driver_rules} rules, SQLite rules table]")]
    for label, key, note in rows:
        rate = best[key]
        print(f"  {label:31s} {rate:7.0f} rules/s  {rate * per_rule:7.0f} calls/s  ({rate / base:5.2f}x){note}")
    if vendor == "pfsense":
        readme_base = README_PFSENSE["baseline"]
        for key, label in (("pooled", "engine, pooled, 1 thread"), ("driver", "full driver apply")):
            then = README_PFSENSE[key] / readme_base
            print(f"  {label} against the README: {best[key]:.0f} vs {README_PFSENSE[key]} rules/s "
                  f"({best[key] / README_PFSENSE[key]:.0%}); as multiples of the baseline {best[key] / base:.2f}x "
                  f"vs {then:.2f}x = {best[key] / base / then:.0%} (aim: at least 80%)")


def _driver_push(vendor: str, port: int, ca_file: str, count: int, nf_id: str) -> float:
    state = tempfile.mkdtemp(prefix="nfp-bench-state-")
    conf = NfpConfig(state_dir=state)
    engine = make_engine(conf.database_url)
    all_models().create_all(engine)
    SecretStore(make_sessionmaker(engine), load_key(conf)).put("bench", {"api_key": API_KEY})
    driver = DictionaryConfigDriver(conf, {})
    device = DeviceTarget("bench-dev", "127.0.0.1", vendor, "bench", {"port": port, "ca_file": ca_file})
    data = {"rules": _rules(count, nf_id + "-")}
    start = time.perf_counter()
    result = driver.apply(ConfigRequest("create", "firewall", "firewall", data, device, nf_id=nf_id))
    elapsed = time.perf_counter() - start
    assert result.ok, result.error
    driver.close()
    engine.dispose()
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=2000, help="rules per engine push run")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3, help="push runs; the best of each kind is shown")
    parser.add_argument("--vendors", default="pfsense,fortigate")
    parser.add_argument("--driver-rules", type=int, default=500)
    args = parser.parse_args()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"({os.cpu_count()} CPUs)")
    bench_parse()
    bench_render()
    for vendor in args.vendors.split(","):
        bench_push(vendor.strip(), args.rules, args.threads, args.repeat, args.driver_rules)


if __name__ == "__main__":
    main()
