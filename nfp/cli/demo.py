"""``nfp demo``: one command that shows nfp configuring a real firewall.

It starts nfp on embedded defaults (SQLite and the filesystem bus in a temporary
directory), builds a provider and a consumer host as network namespaces on
198.18.0.0/15, asks nfp over its RPC API for a firewall network function on a
netns device, proves with real packets that the allowed flow passes and the
denied one is dropped, and tears everything down again. Needs root.
"""
from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from nfp.flows import NFStatus

WEB, CLIENT = "198.18.1.10", "198.18.2.10"
RULES = [{"name": "web", "protocol": "tcp", "source_ip_address": "198.18.2.0/24",
          "destination_ip_address": WEB, "destination_port": 80}]


class _Progress:
    """Numbered steps with timings; records whether every proof held."""

    def __init__(self, console: Console):
        self.console = console
        self.ok = True
        self.rows: list[tuple[str, str, str]] = []

    @contextlib.contextmanager
    def step(self, text: str):
        started = time.monotonic()
        with self.console.status(f"{text} ..."):
            yield
        took = f"{time.monotonic() - started:.2f} s"
        self.console.print(f"[green]✓[/] {text} [dim]({took})[/]")

    def proof(self, text: str, passed: bool, detail: str) -> None:
        self.ok &= passed
        mark = "[green]✓ pass[/]" if passed else "[red]✗ FAIL[/]"
        self.console.print(f"{mark} {text}: {detail}")
        self.rows.append((text, "pass" if passed else "FAIL", detail))


@click.command("demo")
@click.option("--workers", default=2, show_default=True, help="worker processes of the daemon")
@click.option("--keep-state", is_flag=True, help="keep the temporary state directory (logs, database)")
def demo(workers: int, keep_state: bool) -> None:
    """Start nfp, create a firewall NF on a netns device over RPC, prove it with real
    packets, and tear everything down."""
    from nfp.drivers.device.netns import NetnsDeviceDriver
    from nfp.testing.topology import Topology, unavailable_reason

    console = Console()
    reason = unavailable_reason()
    if reason:
        raise click.ClickException(f"nfp demo cannot run here: {reason}")
    state = Path(tempfile.mkdtemp(prefix="nfp-demo-"))
    progress = _Progress(console)
    console.rule("[bold]nfp demo: a firewall network function on a real Linux device")
    harness = None
    try:
        with Topology() as topo:
            with progress.step("provider and consumer hosts created (198.18.1.0/24, 198.18.2.0/24)"):
                provider = topo.network("provider", "198.18.1.0/24", gateway_ip="198.18.1.1")
                consumer = topo.network("consumer", "198.18.2.0/24", gateway_ip="198.18.2.1")
                web = topo.host("web", provider, WEB)
                for port in (80, 8080):
                    web.serve_http(port, body=f"hello from web:{port}")
                client = topo.host("client", consumer, CLIENT)
            harness = _start(progress, state, workers)
            nf_id = _create(progress, harness, provider, consumer)
            _prove(progress, client)
            with progress.step("network function deleted; its device is gone"):
                harness.client.delete_network_function(nf_id)
                harness.wait_gone(nf_id, timeout=60)
    finally:
        if harness is not None:
            harness.stop()
            # devices outlive the daemon by design; the demo leaves none behind
            NetnsDeviceDriver(harness.conf, {}).startup_sweep(known_ids=set())
        if keep_state:
            console.print(f"state and logs kept in {state}")
        else:
            shutil.rmtree(state, ignore_errors=True)
    _summary(console, progress)
    if not progress.ok:
        raise SystemExit(1)


def _start(progress: _Progress, state: Path, workers: int):
    from nfp.testing.harness import Harness

    config = {"orchestrator": {"device_poll_interval": 0.2}, "device_drivers": {"netns": {}}}
    harness = Harness(state / "nfp", config=config, workers=workers)
    with progress.step(f"nfp started: embedded SQLite and filesystem bus, {workers} workers"):
        harness.start()
    return harness


def _create(progress: _Progress, harness, provider, consumer) -> str:
    request = {
        "name": "demo-firewall", "tenant_id": "demo",
        "service_profile": {"id": "demo-profile", "service_type": "firewall",
                            "service_flavor": "service_vendor=linux,device_type=netns"},
        "provider": provider.port("198.18.1.1", "provider"),
        "consumer": consumer.port("198.18.2.1", "consumer"),
        "service_config": {"config": [{"resource": "firewall",
                                       "resource_data": {"rules": RULES, "default_action": "deny"}}]},
    }
    with progress.step("create_network_function over RPC → ACTIVE (netns device, nftables rules)"):
        nf = harness.client.create_network_function(request)
        harness.wait_for_status(nf["id"], NFStatus.ACTIVE, timeout=60)
    return nf["id"]


def _prove(progress: _Progress, client) -> None:
    try:
        status, body = client.http_get(WEB, 80)
        progress.proof("allowed: client → web tcp/80", status == 200, f"HTTP {status} {body!r}")
    except OSError as exc:
        progress.proof("allowed: client → web tcp/80", False, f"{exc}")
    result = client.tcp(WEB, 8080, timeout=1.0)
    progress.proof("denied: client → web tcp/8080", result == "timeout",
                   "dropped by the firewall" if result == "timeout" else f"connection {result}")


def _summary(console: Console, progress: _Progress) -> None:
    table = Table(title="real packets through the firewall NF")
    for column in ("flow", "result", "observed"):
        table.add_column(column)
    for row in progress.rows:
        table.add_row(*row)
    console.print(table)
    console.print("[bold green]demo passed[/]" if progress.ok else "[bold red]demo failed[/]")
