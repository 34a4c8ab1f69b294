"""``nfp device``: the static inventory kept in the database (besides the config file)."""
from __future__ import annotations

import json

import click
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

out = Console()


def _session(obj):
    from nfp.db import migrate
    from nfp.db.engine import make_engine, make_sessionmaker
    migrate.upgrade(obj.conf.database_url)
    return make_sessionmaker(make_engine(obj.conf.database_url))


@click.group()
def device():
    """Appliances nfp shares between network functions (static inventory)."""


@device.command("register")
@click.option("--id", "device_id", required=True)
@click.option("--name", default="")
@click.option("--vendor", "service_vendor", required=True, help="service_vendor of the flavor")
@click.option("--mgmt-ip", "mgmt_ip_address")
@click.option("--service-type", "service_types", multiple=True, help="repeat; none = any")
@click.option("--max-interfaces", type=int, default=8, show_default=True)
@click.option("--credentials-ref", help="name of the secret holding its credentials")
@click.option("--probe-port", type=int, help="TCP port whose reachability is its status")
@click.option("--extra", default="{}", help="JSON object of driver facts (port, CA, host key)")
@click.pass_obj
def register(obj, device_id, name, service_vendor, mgmt_ip_address, service_types, max_interfaces,
             credentials_ref, probe_port, extra):
    """Add or update an appliance in the database inventory."""
    from nfp.db.models import DeviceStatus, NetworkFunctionDevice
    from nfp.drivers.device.static import StaticDevice
    try:
        entry = StaticDevice(id=device_id, name=name, service_vendor=service_vendor,
                             mgmt_ip_address=mgmt_ip_address, service_types=list(service_types),
                             max_interfaces=max_interfaces, credentials_ref=credentials_ref,
                             probe_port=probe_port, extra=json.loads(extra))
    except (ValidationError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    sm = _session(obj)
    with sm.begin() as session:
        row = session.get(NetworkFunctionDevice, device_id) or NetworkFunctionDevice(
            id=device_id, status=DeviceStatus.ACTIVE, device_type="static")
        if row.device_type != "static":
            raise click.ClickException(f"{device_id} is a {row.device_type} device, not static")
        row.name, row.service_vendor = entry.name or device_id, entry.service_vendor
        row.mgmt_ip_address, row.max_interfaces = entry.mgmt_ip_address, entry.max_interfaces
        row.credentials_ref, row.managed, row.shared = entry.credentials_ref, True, True
        row.extra = {**entry.extra, "service_types": entry.service_types,
                     "probe_port": entry.probe_port}
        session.add(row)
    out.print(f"registered {device_id}")


@device.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def list_devices(obj, as_json):
    """Every device with its capacity in use."""
    from nfp.db.models import NetworkFunctionDevice
    sm = _session(obj)
    with sm() as session:
        rows = session.scalars(select(NetworkFunctionDevice).order_by(NetworkFunctionDevice.id)).all()
        data = [{"id": d.id, "type": d.device_type, "vendor": d.service_vendor, "status": d.status,
                 "mgmt_ip_address": d.mgmt_ip_address, "interfaces_in_use": d.interfaces_in_use,
                 "max_interfaces": d.max_interfaces, "reference_count": d.reference_count}
                for d in rows]
    if as_json:
        out.print_json(json.dumps(data))
        return
    table = Table("id", "type", "vendor", "status", "mgmt ip", "interfaces", "NFs")
    for d in data:
        table.add_row(d["id"], d["type"], d["vendor"] or "", d["status"], d["mgmt_ip_address"] or "",
                      f"{d['interfaces_in_use']}/{d['max_interfaces']}", str(d["reference_count"]))
    out.print(table)


@device.command("remove")
@click.argument("device_id")
@click.pass_obj
def remove(obj, device_id):
    """Remove an unused static appliance from the database inventory."""
    from nfp.db.models import NetworkFunctionDevice
    sm = _session(obj)
    with sm.begin() as session:
        row = session.get(NetworkFunctionDevice, device_id)
        if row is None or row.device_type != "static":
            raise click.ClickException(f"no static device {device_id}")
        if row.reference_count > 0:
            raise click.ClickException(f"{device_id} still serves {row.reference_count} NF(s)")
        session.delete(row)
    out.print(f"removed {device_id}")
