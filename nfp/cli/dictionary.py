"""``nfp dictionary``: validate, load (stored and versioned) and show vendor dictionaries."""
from __future__ import annotations

import sys
from typing import Optional

import click

from nfp import config as nfp_config


def _sessions(config_path: Optional[str], database_url: Optional[str]):
    from nfp.db.engine import make_engine, make_sessionmaker
    overrides = {"database": {"url": database_url}} if database_url else None
    conf = nfp_config.load(config_path, overrides)
    return make_sessionmaker(make_engine(conf.database_url))


_db_options = [
    click.option("--config", "config_path", type=click.Path(dir_okay=False), help="nfp YAML config file."),
    click.option("--database-url", help="SQLAlchemy URL (default: from the config)."),
]


def _with_db(func):
    for option in reversed(_db_options):
        func = option(func)
    return func


@click.group()
def dictionary() -> None:
    """Vendor dictionaries (YAML maps of nfp services to device API calls)."""


@dictionary.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--strict", is_flag=True,
              help="treat warnings (unknown keys, which nfp ignores) as errors; for dictionary authors.")
def validate(files, strict) -> None:
    """Check dictionary FILES; print file:line: key: message for each problem.
    Unknown keys are warnings (exit 0) unless --strict."""
    from nfp.drivers.config.dictionary.loader import validate_file
    failed = 0
    for path in files:
        issues, warnings = validate_file(path, strict=strict)
        for warning in warnings:
            click.echo(f"{warning}", err=True)
        if issues:
            failed += 1
            for issue in issues:
                click.echo(str(issue), err=True)
        else:
            click.echo(f"{path}: ok")
    if failed:
        click.echo(f"{failed} of {len(files)} dictionaries are invalid", err=True)
        sys.exit(1)


@dictionary.command()
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.option("--vendor", help="service_vendor it serves (default: its name: key, else the file name).")
@_with_db
def load(file, vendor, config_path, database_url) -> None:
    """Validate FILE and store it as the vendor's next version."""
    from nfp.drivers.config.dictionary import catalog
    from nfp.drivers.config.dictionary.loader import deep_check, load_file
    from nfp.drivers.config.dictionary.errors import DictionaryError
    try:
        loaded = load_file(file)
    except DictionaryError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    for warning in loaded.warnings:
        click.echo(str(warning), err=True)
    issues = deep_check(loaded)
    if issues:
        for issue in issues:
            click.echo(str(issue), err=True)
        sys.exit(1)
    version, created = catalog.store(_sessions(config_path, database_url), loaded, vendor)
    name = vendor or loaded.name
    click.echo(f"{name}: stored as version {version}" if created else f"{name}: unchanged, version {version}")


@dictionary.command()
@click.argument("vendor")
@click.option("--version", "version", type=int, help="a stored version (default: the newest).")
@click.option("--raw", is_flag=True, help="print the YAML itself.")
@_with_db
def show(vendor, version, raw, config_path, database_url) -> None:
    """Show the dictionary nfp uses for VENDOR (stored, else shipped)."""
    from nfp.drivers.config.dictionary.catalog import DictionaryCatalog
    from nfp.drivers.config.dictionary.errors import DictionaryError
    try:
        loaded = DictionaryCatalog(_sessions(config_path, database_url), pinned_version=version).get(vendor)
    except DictionaryError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    if raw:
        click.echo(loaded.text)
        return
    model = loaded.model
    click.echo(f"{loaded.name}: {model.vendor} {model.product} {model.firmware_version}".rstrip())
    click.echo(f"  source:   {loaded.source}")
    click.echo(f"  sha256:   {loaded.sha256}")
    click.echo(f"  access:   {model.access.protocol} port {model.access.default_port}, auth {model.access.auth_type}")
    from nfp.drivers.config.dictionary.items import SERVICE_OF
    used = set(SERVICE_OF.values())
    for name, svc in model.services.items():
        ops = [op for op in ("create", "update", "delete", "list") if getattr(svc, op) is not None]
        written = loaded.renames.original(("services", name))[-1]
        alias = f" (written {written})" if written != name else ""
        unused = "" if name in used else "  [no nfp resource uses it]"
        click.echo(f"  {name:<15} {', '.join(ops)}{alias}{unused}")
    if model.commit is not None:
        click.echo("  commit:   yes" + (" (polled job)" if model.commit.poll else ""))
    for name, spec in model.vars.items():
        click.echo(f"  var {name} ({spec.type}) = {spec.default!r}")
    if model.capabilities:
        click.echo(f"  capabilities: {', '.join(model.capabilities)}")
    for code, kind in model.error_codes.items():
        click.echo(f"  error {code!r} -> {kind}")
    if model.notes:
        click.echo("  notes:\n" + "\n".join("    " + line for line in model.notes.rstrip().splitlines()))
