"""``nfp pki``: the configurator tier's CA (init, issue, revoke, rotate, list, token).

Every operation is recorded in the audit log (the configurator's database). Keys
are written 0600 and never printed; ``token`` prints a short-lived request token
for manual calls (it is a credential: do not paste it into tickets or logs).
"""
from __future__ import annotations

import getpass
import json

import click


def _pki(obj):
    from nfp.pki import Pki
    return Pki.from_conf(obj.conf)


def _audit(obj, operation: str, result: str, detail: str) -> None:
    """One ``pki`` audit row in the configurator's database (migrated on first use)."""
    from nfp import audit
    from nfp.configurator.service import daemon_conf
    from nfp.db import migrate
    from nfp.db.engine import make_engine, make_sessionmaker
    conf = daemon_conf(obj.conf)
    conf.state_path.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(conf.database_url)
    engine = make_engine(conf.database_url)
    try:
        audit.record_now(make_sessionmaker(engine), audit.PKI, conf.configurator_service.audit_file,
                         method=f"pki.{operation}", source=f"cli:{getpass.getuser()}",
                         result=result, detail=detail)
    finally:
        engine.dispose()


def _run(obj, operation: str, fn, describe):
    from nfp.pki import PkiError
    try:
        value = fn()
    except PkiError as exc:
        _audit(obj, operation, "error", str(exc))
        raise click.ClickException(str(exc)) from None
    _audit(obj, operation, "ok", describe(value))
    return value


@click.group()
def pki():
    """The configurator tier's certificates (CA, issue, revoke, rotate)."""


@pki.command("init")
@click.pass_obj
def pki_init(obj):
    """Create the CA, an empty CRL and the token key in configurator_service.pki_dir."""
    path = _run(obj, "init", lambda: _pki(obj).init(), lambda p: f"CA created in {p.parent}")
    click.echo(f"CA: {path}")


@pki.command("issue")
@click.argument("name")
@click.option("--host", "hosts", multiple=True, help="extra DNS name or IP (repeatable)")
@click.option("--days", type=int, help="validity (default configurator_service.cert_days)")
@click.pass_obj
def pki_issue(obj, name, hosts, days):
    """Issue a certificate and key for NAME (server and client use)."""
    issued = _run(obj, "issue", lambda: _pki(obj).issue(name, hosts, days),
                  lambda i: f"issued {i.name} serial {i.serial:x} until {i.not_after.isoformat()}")
    click.echo(f"{issued.cert_path}\n{issued.key_path}")


@pki.command("revoke")
@click.argument("name")
@click.pass_obj
def pki_revoke(obj, name):
    """Revoke NAME's certificate and publish the CRL (servers reload it)."""
    serial = _run(obj, "revoke", lambda: _pki(obj).revoke(name), lambda s: f"revoked {name} serial {s:x}")
    click.echo(f"revoked {name} (serial {serial:x})")


@pki.command("rotate")
@click.option("--force", is_flag=True, help="renew every certificate, not only those expiring soon")
@click.pass_obj
def pki_rotate(obj, force):
    """Renew certificates expiring within renew_before_days; servers reload them live."""
    renewed = _run(obj, "rotate", lambda: _pki(obj).rotate(force),
                   lambda r: "renewed " + (", ".join(i.name for i in r) or "nothing"))
    click.echo("\n".join(f"renewed {i.name} until {i.not_after.isoformat()}" for i in renewed)
               or "nothing to renew")


@pki.command("list")
@click.pass_obj
def pki_list(obj):
    """Issued certificates, their expiry and revocation (JSON)."""
    index = _pki(obj).index()
    revoked = {r["serial"] for r in index["revoked"]}
    click.echo(json.dumps({name: dict(e, revoked=e["serial"] in revoked)
                           for name, e in sorted(index["certs"].items())}, indent=2))


@pki.command("token")
@click.option("--subject", required=True, help="the token's sub (who calls)")
@click.option("--ttl", default=60, show_default=True, help="seconds, at most jwt.max_ttl")
@click.pass_obj
def pki_token(obj, subject, ttl):
    """Print a request token for one manual call (single use)."""
    from nfp.configurator.security import jwt_key, mint_token
    j = obj.conf.configurator_service.jwt
    if not 0 < ttl <= j.max_ttl:
        raise click.BadParameter(f"must be 1..{j.max_ttl}", param_hint="--ttl")
    click.echo(mint_token(jwt_key(obj.conf), subject, j.audience, j.issuer, ttl))
