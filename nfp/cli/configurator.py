"""``nfp-configurator``: the configurator daemon (same config flags and variables as nfp)."""
from __future__ import annotations

import json
import sys

import click

from nfp import config as nfp_config
from nfp.cli.main import _overrides, common_options


@click.command()
@common_options
@click.option("--workers", type=int, help="worker processes (configurator_service.workers)")
@click.option("--address", help="listen address (configurator_service.address)")
@click.option("--port", type=int, help="listen port (configurator_service.port)")
@click.option("--print-openapi", is_flag=True,
              help="write the OpenAPI document to stdout and exit (no server, no database)")
def configurator(config_path, transport_url, database_url, state_dir, workers, address, port,
                 print_openapi):
    """nfp-configurator: seed 001's configurator REST API over mutual TLS (listener + workers)."""
    overrides = _overrides(transport_url, database_url, None, state_dir)
    svc = {k: v for k, v in (("workers", workers), ("address", address), ("port", port)) if v is not None}
    if svc:
        overrides["configurator_service"] = svc
    try:
        conf = nfp_config.load(config_path, overrides)
    except nfp_config.ConfigError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(2)
    if print_openapi:
        from nfp.configurator.daemon import openapi
        click.echo(json.dumps(openapi(conf), indent=2, sort_keys=True))
        return
    from nfp.configurator.daemon import serve
    sys.exit(serve(conf))


def main() -> None:
    configurator()
