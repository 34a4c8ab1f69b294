"""``nfp secret``: store the secrets devices and dictionaries reference, list their
names, rotate the key. A secret value is read from stdin (or a hidden prompt on a
terminal), never from the command line, and never printed."""
from __future__ import annotations

import json
import sys
from typing import Optional

import click

from nfp import config as nfp_config

_ARGUMENT_REFUSED = ("a secret value is never taken as an argument (it would be kept in the shell "
                     "history and shown by ps); pipe it on stdin, e.g. `nfp secret set NAME < file`, "
                     "or run the command on a terminal to be prompted")


def _conf(config_path: Optional[str], database_url: Optional[str]) -> nfp_config.NfpConfig:
    ctx = click.get_current_context()
    parent = ctx.find_root().obj
    if config_path is None and database_url is None and parent is not None and hasattr(parent, "conf"):
        return parent.conf
    overrides = {"database": {"url": database_url}} if database_url else None
    try:
        return nfp_config.load(config_path, overrides)
    except nfp_config.ConfigError as exc:
        raise click.ClickException(str(exc)) from None


class _Store:
    """The secret store on the configured database; disposes of its engine on exit."""

    def __init__(self, conf: nfp_config.NfpConfig):
        from nfp.db.engine import make_engine, make_sessionmaker
        self.conf = conf
        self.engine = make_engine(conf.database_url)
        self.sessionmaker = make_sessionmaker(self.engine)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.engine.dispose()

    def store(self):
        from nfp.secrets import SecretStore, load_key
        return SecretStore(self.sessionmaker, load_key(self.conf))


def _options(func):
    func = click.option("--database-url", help="SQLAlchemy URL (default: from the config).")(func)
    return click.option("--config", "config_path", type=click.Path(dir_okay=False),
                        help="nfp YAML config file.")(func)


@click.group()
def secret() -> None:
    """Encrypted secrets (API tokens, SSH passwords and keys) that devices name."""


@secret.command(name="set", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("refused", nargs=-1, type=click.UNPROCESSED, metavar="")
@_options
def set_(name, refused, config_path, database_url) -> None:
    """Store secret NAME; the value is read from stdin (or a hidden prompt).

    A credentials mapping is a JSON object: {"username": "...", "password": "..."}."""
    from nfp.secrets import SecretError
    if refused:
        raise click.UsageError(_ARGUMENT_REFUSED)
    stdin = click.get_text_stream("stdin")
    if stdin.isatty():
        value = click.prompt(f"value of {name}", hide_input=True, confirmation_prompt=True)
    else:
        value = stdin.read()
        value = value[:-1] if value.endswith("\n") else value
        value = value[:-1] if value.endswith("\r") else value
    if not value:
        raise click.ClickException(f"secret {name}: the value is empty; nothing was stored")
    if value.lstrip().startswith("{"):
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            raise click.ClickException(f"secret {name}: the value starts with '{{' but is not valid JSON "
                                       f"(line {exc.lineno}, column {exc.colno}); nothing was stored") from None
        if not isinstance(parsed, dict):
            raise click.ClickException(f"secret {name}: a JSON value must be an object; nothing was stored")
    try:
        with _Store(_conf(config_path, database_url)) as db:
            db.store().put(name, value)
    except SecretError as exc:
        raise click.ClickException(f"secret {name}: {exc}") from None
    click.echo(f"{name}: stored")


@secret.command(name="list")
@_options
def list_(config_path, database_url) -> None:
    """Print the names of the stored secrets (never their values)."""
    from nfp.secrets import SecretStore
    with _Store(_conf(config_path, database_url)) as db:
        # names need no key: a store with a throwaway key only reads the name column
        from cryptography.fernet import Fernet
        for name in SecretStore(db.sessionmaker, Fernet.generate_key()).names():
            click.echo(name)


@secret.command(name="rotate-key")
@_options
def rotate_key(config_path, database_url) -> None:
    """Re-encrypt every stored secret with a new key and write it to the key file (0600).

    Running daemons switch to the new key when a secret no longer decrypts with theirs."""
    from nfp.secrets import SecretError, rotate_key as rotate
    conf = _conf(config_path, database_url)
    try:
        with _Store(conf) as db:
            count = rotate(conf, db.sessionmaker)
    except SecretError as exc:
        click.echo(f"rotate-key: {exc}", err=True)
        sys.exit(1)
    click.echo(f"{count} secret(s) re-encrypted; new key written to {conf.secret_key_file} (mode 0600)")
