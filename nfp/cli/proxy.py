"""``nfp-proxy``: the configurator agent and/or proxy end (same config flags and variables as nfp)."""
from __future__ import annotations

import sys

import click

from nfp import config as nfp_config
from nfp.cli.main import _overrides, common_options
from nfp.proxy.daemon import ROLES


@click.command()
@common_options
@click.option("--role", type=click.Choice(ROLES), default="all", show_default=True,
              help="agent: RPC in, unix socket out (management domain); proxy: unix socket in, "
                   "HTTPS out (the namespace that reaches the configurator); all: both")
@click.option("--socket", "socket_path", help="the unix socket between agent and proxy (proxy.socket)")
@click.option("--configurator-url", help="the configurator as the proxy reaches it (proxy.configurator_url)")
def proxy(config_path, transport_url, database_url, state_dir, role, socket_path, configurator_url):
    """nfp-proxy: forwards the orchestrator's configurator RPC to nfp-configurator and its
    notifications back."""
    overrides = _overrides(transport_url, database_url, None, state_dir)
    px = {k: v for k, v in (("socket", socket_path), ("configurator_url", configurator_url)) if v}
    if px:
        overrides["proxy"] = px
    try:
        conf = nfp_config.load(config_path, overrides)
    except nfp_config.ConfigError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(2)
    from nfp.proxy.daemon import serve
    sys.exit(serve(conf, role))


def main() -> None:
    proxy()
