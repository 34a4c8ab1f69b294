"""``nfp audit list``: the security audit log (configurator and orchestrator requests,
authentication and cross-tenant refusals, PKI operations) from the configurator's
and the orchestrator's databases, merged in time order."""
from __future__ import annotations

import datetime as dt
import json
import re

import click
from rich.console import Console
from rich.table import Table

out = Console()
DURATION = re.compile(r"^(\d+)([smhd])$")


def parse_since(value):
    """``30m``, ``2h``, ``7d`` ago, or an ISO timestamp (UTC); None when absent."""
    if not value:
        return None
    match = DURATION.match(value)
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(**{unit: int(match.group(1))})
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("expected 30m, 2h, 7d or an ISO timestamp", param_hint="--since") from None
    return when.astimezone(dt.timezone.utc).replace(tzinfo=None) if when.tzinfo else when


@click.command("list")
@click.option("--since", help="only events since (30m, 2h, 7d or an ISO timestamp)")
@click.option("--event", help="only this event type (prefix: auth, pki, configurator.request)")
@click.option("--limit", default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_obj
def audit_list(obj, since, event, limit, as_json):
    """Security audit events, oldest first: who, what, when, from where, result."""
    from nfp import audit
    from nfp.configurator.service import daemon_conf
    from nfp.db import migrate
    from nfp.db.engine import make_engine, make_sessionmaker
    rows = []
    for conf in (daemon_conf(obj.conf), obj.conf):  # the configurator's, then the orchestrator's
        conf.state_path.mkdir(parents=True, exist_ok=True)
        migrate.upgrade(conf.database_url)
        engine = make_engine(conf.database_url)
        try:
            with make_sessionmaker(engine)() as session:
                rows += [audit.as_dict(r) for r in audit.rows(session, parse_since(since), event, limit)]
        finally:
            engine.dispose()
    rows = sorted(rows, key=lambda r: r["at"] or "")[:limit]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table("when", "event", "method", "who", "from", "nf", "device", "result", "detail")
    for r in rows:
        who = " / ".join(x for x in (r["cert_subject"], r["token_subject"], r["user_id"],
                                     r["tenant_id"] and f"tenant {r['tenant_id']}") if x)
        table.add_row(r["at"] or "", r["event"], r["method"], who, r["source"], r["nf_id"],
                      r["device_id"], r["result"], r["detail"])
    out.print(table)
