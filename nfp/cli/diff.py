"""``nfp nf diff NF_ID``: the structured diff between an NF's service config and its device.

Reads the network function, its instance and device from the database, and asks
the NF's config driver to compare each config element with what the device has
(the convergence core's compare). Nothing on the device changes. Output is a
table, or with ``--json``
``{"elements": [{"resource", "to_add", "to_change", "to_remove"}]}``.
"""
from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

out = Console()


def _load(sessionmaker, nf_id: str):
    """``(nf, device target)`` of ``nf_id``; ClickException when either is missing."""
    from sqlalchemy import select

    from nfp.db.models import NetworkFunction, NetworkFunctionDevice, NetworkFunctionInstance
    from nfp.drivers.config.base import DeviceTarget
    with sessionmaker() as session:
        nf = session.get(NetworkFunction, nf_id)
        if nf is None:
            raise click.ClickException(f"network function {nf_id} not found")
        nfi = session.scalars(select(NetworkFunctionInstance).where(
            NetworkFunctionInstance.network_function_id == nf_id)).first()
        device_id = nfi.network_function_device_id if nfi is not None else None
        nfd = session.get(NetworkFunctionDevice, device_id) if device_id else None
        if nfd is None:
            raise click.ClickException(f"network function {nf_id} has no device yet; nothing to compare")
        target = DeviceTarget(id=nfd.id, mgmt_ip_address=nfd.mgmt_ip_address,
                              service_vendor=nf.service_vendor or nfd.service_vendor or "",
                              credentials_ref=nfd.credentials_ref, extra=dict(nfd.extra or {}))
        return nf, target


def _secrets(conf, sessionmaker):
    from nfp.secrets import SecretError, SecretStore, load_key
    try:
        return SecretStore(sessionmaker, load_key(conf))
    except SecretError:
        return None  # drivers needing credentials then fail with a clear error


def compute(conf, nf_id: str) -> list[dict]:
    """Each element's diff (``Diff.to_dict()``) for ``nf_id``; the device is not changed."""
    from nfp.db.engine import make_engine, make_sessionmaker
    from nfp.drivers.component import DriverContext
    from nfp.drivers.config.base import ConfigError
    from nfp.desired import desired_config
    from nfp.workers.configurator.client import DirectConfiguratorClient
    engine = make_engine(conf.database_url)
    client = DirectConfiguratorClient(conf)
    try:
        sessionmaker = make_sessionmaker(engine)
        nf, target = _load(sessionmaker, nf_id)
        client.setup(DriverContext(conf, sessionmaker, _secrets(conf, sessionmaker)))
        elements = desired_config(nf.service_config, nf.spec)
        try:
            diffs = client.diff(nf.service_type, elements, target, nf.id)
        except (ConfigError, LookupError) as exc:
            raise click.ClickException(str(exc)) from None
        return [d.to_dict() for d in diffs]
    finally:
        client.stop()
        engine.dispose()


@click.command("diff")
@click.argument("nf_id")
@click.option("--json", "as_json", is_flag=True, help="print the diff as JSON")
@click.pass_obj
def nf_diff(obj, nf_id, as_json):
    """Show what the device lacks, has differently or has extra for NF_ID (changes nothing)."""
    elements = compute(obj.conf, nf_id)
    if as_json:
        click.echo(json.dumps({"elements": elements}, indent=2))
        return
    table = Table("resource", "change", "name", "reason", "external id")
    for element in elements:
        if element.get("compared") is False:
            table.add_row(element["resource"], "-", "-", element.get("note", "not compared"), "")
            continue
        rows = [(kind, c) for kind in ("to_add", "to_change", "to_remove") for c in element[kind]]
        if not rows:
            table.add_row(element["resource"], "in sync", "", "", "")
        for kind, change in rows:
            table.add_row(element["resource"], kind, change["name"], change["reason"],
                          change["external_id"] or "")
    out.print(table)
