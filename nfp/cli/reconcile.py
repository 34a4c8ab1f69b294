"""``nfp reconcile`` and ``nfp audit reconcile``: drift for people.

``nfp reconcile NF_ID`` asks the running orchestrator (RPC
``reconcile_network_function``) for a run, which the engine serialises with the
NF's lifecycle steps, then waits for the run's record in ``reconciliation_log``
and prints it: with ``--json`` the keys ``missing``, ``extra``, ``changed`` and
``actions`` (and the run's facts). ``--dry-run`` changes nothing; ``--all``
runs every ACTIVE NF. ``nfp audit reconcile`` lists recorded runs.
"""
from __future__ import annotations

import json
import time

import click
from rich.console import Console
from rich.table import Table

out = Console()
err = Console(stderr=True)
POLICIES = ["repair", "repair-and-prune", "report", "adopt"]


def _wait_runs(conf, run_ids: list[str], timeout: float) -> dict[str, dict]:
    """Poll the audit table until every run is recorded; ClickException on timeout."""
    from sqlalchemy import select
    from nfp.db.engine import make_engine, make_sessionmaker
    from nfp.db.models import ReconciliationLog
    from nfp.workers.reconcile.schedule import run_dict
    engine = make_engine(conf.database_url)
    found: dict[str, dict] = {}
    try:
        sessionmaker = make_sessionmaker(engine)
        end = time.time() + timeout
        while time.time() < end:
            with sessionmaker() as session:
                for row in session.scalars(select(ReconciliationLog).where(
                        ReconciliationLog.run_id.in_([r for r in run_ids if r not in found]))):
                    found[row.run_id] = run_dict(row)
            if len(found) == len(run_ids):
                return found
            time.sleep(0.2)
    finally:
        engine.dispose()
    raise click.ClickException(f"{len(run_ids) - len(found)} run(s) not recorded after {timeout:.0f} s "
                               "(is the NF busy with an operation, or `nfp serve` not running?)")


def _table(runs: list[dict]) -> None:
    table = Table("NF", "run", "when", "trigger", "policy", "result", "missing", "extra", "changed")
    for r in runs:
        table.add_row(r["network_function_id"], r["run_id"][:8], r["started_at"] or "", r["trigger"],
                      r["policy"] + (" (dry run)" if r["dry_run"] else ""), r["result"],
                      str(r["counts"]["missing"]), str(r["counts"]["extra"]), str(r["counts"]["changed"]))
    out.print(table)


@click.command("reconcile")
@click.argument("nf_id", required=False)
@click.option("--all", "all_nfs", is_flag=True, help="every ACTIVE network function")
@click.option("--dry-run", is_flag=True, help="report the drift, change nothing")
@click.option("--policy", type=click.Choice(POLICIES), help="this run's policy (default: the NF's)")
@click.option("--json", "as_json", is_flag=True, help="print the run(s) as JSON")
@click.option("--timeout", default=300.0, show_default=True, help="seconds to wait for the run(s)")
@click.pass_obj
def reconcile(obj, nf_id, all_nfs, dry_run, policy, as_json, timeout):
    """Compare NF_ID's intent with its device and repair per policy; print the result."""
    from nfp.cli.main import _call
    if bool(nf_id) == bool(all_nfs):
        raise click.UsageError("name one NF_ID, or --all")
    client = obj.client()
    try:
        ids = [nf_id] if nf_id else [n["id"] for n in _call(client, "get_network_functions",
                                                              filters={"status": ["ACTIVE"]})]
        started = [_call(client, "reconcile_network_function", network_function_id=i,
                         dry_run=dry_run, **({"policy": policy} if policy else {})) for i in ids]
    finally:
        client.close()
    run_ids = [s["run_id"] for s in started if s.get("run_id")]
    runs = _wait_runs(obj.conf, run_ids, timeout) if run_ids else {}
    ordered = [runs[r] for r in run_ids]
    if as_json:
        click.echo(json.dumps(ordered[0] if nf_id and ordered else ordered, indent=2))
    else:
        _table(ordered)
        for r in ordered:
            for a in r["actions"]:
                out.print(f"  {r['network_function_id']} {a['resource']} {a['name']}: {a['found']} → "
                          f"{a['action']} ({a['result']})")
    if any(r["result"] in ("failed", "partial") for r in ordered):
        raise SystemExit(1)


@click.group()
def audit():
    """Audit records."""


@audit.command("reconcile")
@click.option("--nf", "nf_id", help="only this network function's runs")
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_obj
def audit_reconcile(obj, nf_id, limit, as_json):
    """Recorded reconcile runs, newest first: when, why, what differed, what was done."""
    from nfp.db.engine import make_engine, make_sessionmaker
    from nfp.workers.reconcile.schedule import run_dict, runs
    engine = make_engine(obj.conf.database_url)
    try:
        with make_sessionmaker(engine)() as session:
            rows = [run_dict(r) for r in runs(session, nf_id, limit)]
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        _table(rows)
