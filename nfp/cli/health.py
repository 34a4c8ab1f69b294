"""``nfp health list`` and ``nfp health check``: device health for people.

``list`` reads the monitor's verdicts from the database, with the ``degraded``
flag and reason of the device's NFs (seed 004: an UNREACHABLE device's NFs stay
ACTIVE, degraded). ``check DEVICE_OR_NF``
runs the HealthCheck action now, from this process: the liveness probe and the
config driver's deep check of each device, answered in ONAP's shape
``{"identifier", "state": "healthy" | "unhealthy", "time", "info"}``.
"""
from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

out = Console()


def _iso(value):
    return value.isoformat() + "Z" if value else None


def _nfs_by_device(session) -> dict[str, list[tuple[str, bool, str]]]:
    """device id -> ``[(NF id, degraded, degraded reason)]``."""
    from sqlalchemy import select
    from nfp.db.models import NetworkFunction as N, NetworkFunctionInstance as I
    nfs: dict[str, list[tuple[str, bool, str]]] = {}
    for device_id, nf_id, degraded, reason in session.execute(
            select(I.network_function_device_id, N.id, N.degraded, N.degraded_reason)
            .join(N, N.id == I.network_function_id).where(I.network_function_device_id.is_not(None))):
        nfs.setdefault(device_id, []).append((nf_id, bool(degraded), reason or ""))
    return nfs


def _rows(sessionmaker) -> list[dict]:
    from sqlalchemy import select
    from nfp.db.models import NetworkFunctionDevice as D
    with sessionmaker() as session:
        nfs = _nfs_by_device(session)
        rows = []
        for d in session.scalars(select(D).order_by(D.id)):
            mine = nfs.get(d.id, [])
            degraded = [reason for _, flag, reason in mine if flag]
            rows.append({"device_id": d.id, "health": d.health, "reason": d.health_reason or "",
                         "last_contact": _iso(d.last_contact), "last_change": _iso(d.health_changed_at),
                         "mgmt_ip_address": d.mgmt_ip_address, "status": d.status,
                         "network_function_ids": [nf_id for nf_id, _, _ in mine],
                         "degraded": bool(degraded), "degraded_reason": degraded[0] if degraded else ""})
        return rows


def degraded_nfs(session, limit: int = 100) -> list[dict]:
    """NFs flagged degraded (``nfp status``): id, status and reason, at most ``limit``."""
    from sqlalchemy import select
    from nfp.db.models import NetworkFunction as N
    return [{"network_function_id": nf_id, "status": status, "reason": reason or ""}
            for nf_id, status, reason in session.execute(
                select(N.id, N.status, N.degraded_reason).where(N.degraded.is_(True)).order_by(N.id).limit(limit))]


@click.group()
def health():
    """Device health: the monitor's verdicts, and an active HealthCheck."""


@health.command("list")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_obj
def health_list(obj, as_json):
    """Every device with its health, reason, last contact and last change."""
    from nfp.db.engine import make_engine, make_sessionmaker
    engine = make_engine(obj.conf.database_url)
    try:
        rows = _rows(make_sessionmaker(engine))
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table("device", "health", "reason", "last contact", "last change", "NFs", "degraded")
    for row in rows:
        table.add_row(row["device_id"], row["health"], row["reason"], row["last_contact"] or "",
                      row["last_change"] or "", ", ".join(row["network_function_ids"]),
                      row["degraded_reason"] if row["degraded"] else "")
    out.print(table)


@health.command("check")
@click.argument("device_or_nf")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_obj
def health_check(obj, device_or_nf, as_json):
    """HealthCheck (ONAP) of a device, or of every device of an NF, run now."""
    from nfp.api.assurance import devices_of
    from nfp.cli.diff import _secrets
    from nfp.db.engine import make_engine, make_sessionmaker
    from nfp.db.models import NetworkFunction, NetworkFunctionDevice
    from nfp.drivers.component import DriverContext
    from nfp.workers.configurator.client import DirectConfiguratorClient
    from nfp.workers.health.check import check_device
    conf = obj.conf
    engine = make_engine(conf.database_url)
    client = DirectConfiguratorClient(conf)
    try:
        sessionmaker = make_sessionmaker(engine)
        client.setup(DriverContext(conf, sessionmaker, _secrets(conf, sessionmaker)))
        with sessionmaker() as session:
            nfd = session.get(NetworkFunctionDevice, device_or_nf)
            nf = None if nfd else session.get(NetworkFunction, device_or_nf)
            if nfd is None and nf is None:
                raise click.ClickException(f"{device_or_nf} is neither a device nor a network function")
            targets = [nfd] if nfd else devices_of(session, nf.id)
            answers = [check_device(conf, d, (nf.service_vendor if nf else None) or d.service_vendor or "",
                                    client, nf.id if nf else None) for d in targets]
    finally:
        client.stop()
        engine.dispose()
    if as_json:
        click.echo(json.dumps(answers[0] if nfd else answers, indent=2))
    else:
        table = Table("identifier", "state", "time", "liveness", "deep")
        for a in answers:
            table.add_row(a["identifier"], a["state"], a["time"], a["info"]["liveness"].get("reason") or "ok",
                          (a["info"].get("deep") or {}).get("reason") or ("ok" if "deep" in a["info"] else "-"))
        out.print(table)
    if any(a["state"] != "healthy" for a in answers):
        raise SystemExit(1)
