"""The ``nfp`` command line. ``nfp-orchestrator`` is ``nfp serve``."""
from __future__ import annotations

import json
import sys
import time
from typing import Optional

import click
import yaml
from rich.console import Console
from rich.table import Table

from nfp import config as nfp_config
from nfp.flows import NFStatus

console = Console(stderr=True)
out = Console()
TERMINAL = {NFStatus.ACTIVE, NFStatus.ERROR}


def _overrides(transport_url, database_url, workers, state_dir) -> dict:
    over: dict = {}
    if transport_url:
        over.setdefault("transport", {})["url"] = transport_url.replace("rabbit://", "amqp://", 1)
    if database_url:
        over.setdefault("database", {})["url"] = database_url
    if workers is not None:
        over.setdefault("orchestrator", {})["workers"] = workers
    if state_dir:
        over["state_dir"] = state_dir
    return over


def common_options(fn):
    fn = click.option("--config", "config_path", envvar="NFP_CONFIG", help="YAML config file")(fn)
    fn = click.option("--transport-url", envvar="NFP_TRANSPORT_URL",
                      help="kombu URL (amqp:// or rabbit://); default: broker-less filesystem bus")(fn)
    fn = click.option("--database-url", envvar="NFP_DATABASE_URL",
                      help="SQLAlchemy URL; default: SQLite in the state dir")(fn)
    fn = click.option("--state-dir", envvar="NFP_STATE_DIR", help="where embedded state lives")(fn)
    return fn


class Ctx:
    def __init__(self, config_path, overrides):
        self.config_path, self.overrides = config_path, overrides

    @property
    def conf(self) -> nfp_config.NfpConfig:
        if not hasattr(self, "_conf"):
            try:
                self._conf = nfp_config.load(self.config_path, self.overrides)
            except nfp_config.ConfigError as exc:
                raise click.ClickException(str(exc)) from None
        return self._conf

    def client(self):
        from nfp.rpc.client import RpcClient
        conf = self.conf
        return RpcClient(conf.transport_url, conf, conf.rpc.topic)


@click.group()
@common_options
@click.pass_context
def cli(ctx, config_path, transport_url, database_url, state_dir):
    """nfp: orchestrate network functions (firewalls, load balancers, VPNs, routers)."""
    ctx.obj = Ctx(config_path, _overrides(transport_url, database_url, None, state_dir))


@cli.command()
@click.option("--workers", type=int, help="worker processes (default: CPU count)")
@click.option("--all", "all_daemons", is_flag=True,
              help="also run nfp-configurator and nfp-proxy on this host (a demo of the proxy "
                   "path: PKI and certificates made when missing, configurator.client: proxy)")
@click.pass_obj
def serve(obj: Ctx, workers, all_daemons):
    """Run the orchestrator (listener + workers) in the foreground."""
    from nfp.service import serve as run
    if workers is not None:
        obj.overrides.setdefault("orchestrator", {})["workers"] = workers
    if all_daemons:
        from nfp.cli.serve_all import serve_all
        sys.exit(serve_all(obj.conf))
    sys.exit(run(obj.conf, obj.config_path, obj.overrides))


# -- db ---------------------------------------------------------------------
@cli.group()
def db():
    """Database schema (Alembic)."""


@db.command("upgrade")
@click.argument("revision", default="head")
@click.pass_obj
def db_upgrade(obj: Ctx, revision):
    """Apply migrations up to REVISION (default head)."""
    from nfp.db import migrate
    migrate.upgrade(obj.conf.database_url, revision)
    console.print(f"database at {migrate.current(obj.conf.database_url)}")


@db.command("downgrade")
@click.argument("revision")
@click.pass_obj
def db_downgrade(obj: Ctx, revision):
    """Revert migrations down to REVISION (``base`` for an empty schema)."""
    from nfp.db import migrate
    migrate.downgrade(obj.conf.database_url, revision)
    console.print(f"database at {migrate.current(obj.conf.database_url)}")


@db.command("current")
@click.pass_obj
def db_current(obj: Ctx):
    from nfp.db import migrate
    out.print(migrate.current(obj.conf.database_url) or "empty")


# -- nf ---------------------------------------------------------------------
@cli.group()
def nf():
    """Network functions: create, list, show, delete."""


def _load_config_arg(value: Optional[str]):
    if not value:
        return None
    if value.startswith("@"):
        with open(value[1:]) as handle:
            value = handle.read()
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise click.BadParameter(f"not JSON or YAML: {exc}") from None


def _wait(client, nf_id: str, timeout: float, gone: bool = False) -> Optional[dict]:
    """Poll get_network_function with a progress display until done."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    end = time.time() + timeout
    last = None
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        task = progress.add_task(f"{nf_id}: waiting", total=None)
        while time.time() < end:
            last = client.call({}, "get_network_function", network_function_id=nf_id, timeout=30)
            if last is None and gone:
                progress.update(task, description=f"{nf_id}: deleted")
                return None
            status = (last or {}).get("status", "?")
            progress.update(task, description=f"{nf_id}: {status}")
            if not gone and status in TERMINAL:
                return last
            time.sleep(0.2)
    raise click.ClickException(f"timed out after {timeout:.0f} s; last status "
                               f"{(last or {}).get('status')}")


@nf.command("create")
@click.option("--name", default="", help="NF name")
@click.option("--tenant", "tenant_id", default="admin", show_default=True)
@click.option("--service-type", default="firewall", show_default=True)
@click.option("--flavor", "service_flavor", default="service_vendor=memory,device_type=static",
              show_default=True, help="service_vendor=X,device_type=Y")
@click.option("--service-config", "service_config", help="JSON/YAML text or @file")
@click.option("--wait/--no-wait", default=False, help="wait for ACTIVE or ERROR")
@click.option("--timeout", default=300.0, show_default=True)
@click.pass_obj
def nf_create(obj: Ctx, name, tenant_id, service_type, service_flavor, service_config, wait, timeout):
    """Create a network function through the RPC API."""
    client = obj.client()
    try:
        body = {"name": name, "tenant_id": tenant_id,
                "service_profile": {"service_type": service_type, "service_flavor": service_flavor},
                "service_config": _load_config_arg(service_config)}
        created = _call(client, "create_network_function", network_function=body)
        console.print(f"created {created['id']} ({created['status']})")
        result = _wait(client, created["id"], timeout) if wait else created
        out.print_json(json.dumps(result))
        if wait and result["status"] == NFStatus.ERROR:
            raise click.ClickException(f"NF {result['id']} is ERROR: {result['status_description']}")
    finally:
        client.close()


@nf.command("list")
@click.option("--tenant", "tenants", multiple=True)
@click.option("--status", "statuses", multiple=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def nf_list(obj: Ctx, tenants, statuses, as_json):
    """List network functions."""
    filters = {}
    if tenants:
        filters["tenant_id"] = list(tenants)
    if statuses:
        filters["status"] = list(statuses)
    client = obj.client()
    try:
        rows = _call(client, "get_network_functions", filters=filters)
    finally:
        client.close()
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table("id", "name", "tenant", "type", "vendor", "status")
    for row in rows:
        table.add_row(row["id"], row["name"], row["tenant_id"], row["service_type"] or "",
                      row["service_vendor"] or "", row["status"])
    out.print(table)


@nf.command("show")
@click.argument("nf_id")
@click.pass_obj
def nf_show(obj: Ctx, nf_id):
    """Show one network function with its instance and device."""
    client = obj.client()
    try:
        out.print_json(json.dumps(_call(client, "get_network_function_details",
                                        network_function_id=nf_id)))
    finally:
        client.close()


@nf.command("delete")
@click.argument("nf_id")
@click.option("--wait/--no-wait", default=False)
@click.option("--timeout", default=300.0, show_default=True)
@click.pass_obj
def nf_delete(obj: Ctx, nf_id, wait, timeout):
    """Delete a network function."""
    client = obj.client()
    try:
        _call(client, "delete_network_function", network_function_id=nf_id, network_function_data={})
        console.print(f"delete of {nf_id} accepted")
        if wait:
            _wait(client, nf_id, timeout, gone=True)
    finally:
        client.close()


def _call(client, method, **kwargs):
    from nfp.rpc.client import MessagingTimeout, RemoteError
    try:
        return client.call({}, method, timeout=30, **kwargs)
    except RemoteError as exc:
        raise click.ClickException(f"{exc.exc_type}: {exc.value}") from None
    except MessagingTimeout:
        raise click.ClickException("no answer from the orchestrator within 30 s: is `nfp serve` "
                                   "running on the same transport?") from None


@cli.command()
@click.pass_obj
def status(obj: Ctx):
    """Counts of network functions and engine steps, the orchestrator hosts with their
    workers' leases and last heartbeat, straight from the database."""
    from sqlalchemy import func, select
    from nfp.db.engine import make_engine, make_sessionmaker
    from nfp.db.models import NetworkFunction
    from nfp.engine import store
    engine = make_engine(obj.conf.database_url)
    with make_sessionmaker(engine)() as session:
        nfs = dict(session.execute(select(NetworkFunction.status, func.count())
                                   .group_by(NetworkFunction.status)).all())
        steps = store.counts(session)
        from nfp.db.models import NetworkFunctionDevice
        health = dict(session.execute(select(NetworkFunctionDevice.health, func.count())
                                      .group_by(NetworkFunctionDevice.health)).all())
        from nfp.cli.health import degraded_nfs
        degraded = degraded_nfs(session)
        from nfp.engine.leases import hosts
        members = hosts(session, obj.conf.orchestrator.lease_ttl)
    out.print_json(json.dumps({"network_functions": nfs, "steps": steps, "device_health": health,
                               "degraded": degraded, "hosts": members}))
    engine.dispose()


# -- subcommands from other areas ---------------------------------------------
def _register_optional() -> None:
    import importlib
    for module, attr in (("nfp.cli.dictionary", "dictionary"), ("nfp.cli.secret", "secret"),
                         ("nfp.cli.simulate", "simulate"),
                         ("nfp.cli.demo", "demo"), ("nfp.cli.device", "device")):
        try:
            cli.add_command(getattr(importlib.import_module(module), attr))
        except ImportError as exc:
            if exc.name != module:
                raise
    from nfp.cli.diff import nf_diff
    nf.add_command(nf_diff)
    from nfp.cli.health import health
    from nfp.cli.reconcile import audit, reconcile
    cli.add_command(health)
    cli.add_command(reconcile)
    cli.add_command(audit)
    from nfp.cli.audit import audit_list
    from nfp.cli.pki import pki
    audit.add_command(audit_list)
    cli.add_command(pki)


_register_optional()


def main() -> None:
    cli()


@click.command()
@common_options
@click.option("--workers", type=int)
def orchestrator(config_path, transport_url, database_url, state_dir, workers):
    """nfp-orchestrator: the orchestrator daemon (same flags and variables as nfp)."""
    from nfp.service import serve as run
    overrides = _overrides(transport_url, database_url, workers, state_dir)
    try:
        conf = nfp_config.load(config_path, overrides)
    except nfp_config.ConfigError as exc:
        console.print(f"configuration error: {exc}")
        sys.exit(2)
    sys.exit(run(conf, config_path, overrides))


def orchestrator_main() -> None:
    orchestrator()


if __name__ == "__main__":
    main()
