"""``nfp simulate VENDOR --port N``: run a device simulator in the foreground."""
from __future__ import annotations

import signal
import threading

import click

VENDORS = ("pfsense", "fortigate", "paloalto", "vyos")


@click.command()
@click.argument("vendor", type=click.Choice(VENDORS))
@click.option("--port", type=int, default=0, show_default=True, help="listen port (0: any free port).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--api-key", default=None, help="REST/XML API key the simulator accepts.")
@click.option("--username", default="vyos", show_default=True, help="VyOS login.")
@click.option("--password", default=None, help="VyOS password.")
@click.option("--cert-dir", type=click.Path(file_okay=False), help="where to write the TLS certificate.")
@click.option("--plain-http", is_flag=True, help="HTTP instead of HTTPS (REST simulators).")
def simulate(vendor, port, host, api_key, username, password, cert_dir, plain_http) -> None:
    """Run the VENDOR simulator until interrupted; prints how to reach it."""
    from nfp.testing.simulators import build
    kwargs = {"host": host, "port": port}
    if vendor == "vyos":
        kwargs.update(username=username, password=password or "vyos-password")
    else:
        kwargs.update(cert_dir=cert_dir, tls=not plain_http)
        if api_key:
            kwargs["api_key"] = api_key
    sim = build(vendor, **kwargs).start()
    facts = sim.connection_facts()
    click.echo(f"{vendor} simulator on {host}:{sim.port}")
    for key, value in facts.items():
        click.echo(f"  {key}: {value}")
    if vendor != "vyos" and sim.cert is not None:
        click.echo(f"  tls_fingerprint: {sim.cert.fingerprint}")
        click.echo(f"  admin API: {sim.base_url}/_sim/state (GET), /_sim/faults and /_sim/drift (POST)")
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
