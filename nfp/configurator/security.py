"""The configurator's security layers (seed 000's broker): mutual TLS, request
tokens and allowlists. Each fails closed.

- TLS: :func:`server_ssl_context` requires TLS 1.2+, a client certificate that
  chains to nfp's CA, and a CRL check of it; a connection without one, with
  another CA's, an expired or a revoked certificate never completes its handshake.
  :class:`TlsReloader` reloads the server's certificate and the CRL into the live
  context when their files change (``nfp pki rotate`` / ``revoke``, no restart).
- Tokens: :class:`TokenVerifier` (PyJWT, HS256) requires ``exp`` (at most
  ``max_ttl`` after ``iat``), ``aud``, ``iss``, ``sub`` and a ``jti`` seen only once
  (kept in ``configurator_tokens`` until the token expires).
- Allowlists: :class:`Allowlist` of CIDRs; an address that does not parse is outside.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import ssl
import threading
import time
import uuid
from pathlib import Path
from typing import Iterable, Optional

import jwt
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from nfp.configurator.tables import UsedToken
from nfp.db.base import utcnow
from nfp.pki import pki_dir

LOG = logging.getLogger(__name__)
ALGORITHM = "HS256"


class AuthError(Exception):
    """A request is not authenticated (401). The message says why, never the token."""


# -- files -------------------------------------------------------------------------
def tls_paths(conf) -> dict[str, Path]:
    """``cert``, ``key``, ``ca``, ``crl``: configured, else from the PKI directory."""
    tls, base = conf.configurator_service.tls, pki_dir(conf)
    return {"cert": Path(tls.cert_file or base / "issued" / "configurator.crt"),
            "key": Path(tls.key_file or base / "issued" / "configurator.key"),
            "ca": Path(tls.ca_file or base / "ca.crt"),
            "crl": Path(tls.crl_file or base / "crl.pem")}


def jwt_key(conf) -> bytes:
    """The HS256 key (``configurator_service.jwt.key_file``, else ``<pki_dir>/jwt.key``)."""
    path = Path(conf.configurator_service.jwt.key_file or pki_dir(conf) / "jwt.key")
    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        raise AuthKeyError(f"configurator_service.jwt.key_file: cannot read {path} "
                           f"({exc.strerror}); run `nfp pki init`") from None
    if len(key) < 32:
        raise AuthKeyError(f"configurator_service.jwt.key_file: {path} holds fewer than 32 bytes")
    return key


class AuthKeyError(ValueError):
    """The token key is missing or too short; the daemon does not start without it."""


# -- TLS -----------------------------------------------------------------------------
def server_ssl_context(paths: dict[str, Path]) -> ssl.SSLContext:
    """TLS 1.2+, client certificate required and checked against the CA and its CRL."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_cert_chain(str(paths["cert"]), str(paths["key"]))
    ctx.load_verify_locations(cafile=str(paths["ca"]))
    # without a CRL every client fails: a missing CRL is refused, not skipped
    ctx.load_verify_locations(cafile=str(paths["crl"]))
    ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF | ssl.VERIFY_X509_STRICT
    return ctx


def client_ssl_context(ca_file, cert_file=None, key_file=None) -> ssl.SSLContext:
    """A client context for the configurator: TLS 1.2+, the server checked against
    nfp's CA, and this client's certificate when given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cafile=str(ca_file))
    if cert_file:
        ctx.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    return ctx


class TlsReloader:
    """Reloads a certificate and the CRL (for a client: the CA file) into a live
    context when their files change; new handshakes use them. A pair that does not
    load (a rotation half done) keeps the old one."""

    def __init__(self, ctx: ssl.SSLContext, paths: dict[str, Path], interval: float):
        self.ctx, self.paths, self.interval = ctx, paths, interval
        self._seen = self._stamps()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _stamps(self) -> dict[str, float]:
        out = {}
        for name in ("cert", "key", "crl"):
            try:
                out[name] = os.stat(self.paths[name]).st_mtime_ns
            except OSError:
                out[name] = 0
        return out

    def check(self) -> bool:
        """Reload what changed; True if anything was reloaded."""
        now = self._stamps()
        changed = {k for k in now if now[k] != self._seen.get(k)}
        if not changed:
            return False
        try:
            if changed & {"cert", "key"}:
                self.ctx.load_cert_chain(str(self.paths["cert"]), str(self.paths["key"]))
            if "crl" in changed:
                self.ctx.load_verify_locations(cafile=str(self.paths["crl"]))
        except (OSError, ssl.SSLError) as exc:
            LOG.warning("TLS files changed but do not load yet (%s); keeping the current ones and "
                        "retrying in %.0f s", exc.__class__.__name__, self.interval)
            return False
        self._seen = now
        LOG.info("TLS: reloaded %s for new connections", ", ".join(sorted(changed)))
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tls-reload", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)


# -- tokens ----------------------------------------------------------------------------
def mint_token(key: bytes, subject: str, audience: str = "nfp-configurator",
               issuer: str = "nfp-orchestrator", ttl: int = 60, jti: Optional[str] = None,
               now: Optional[dt.datetime] = None) -> str:
    """A signed request token (what the orchestrator's clients send)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    claims = {"sub": subject, "aud": audience, "iss": issuer, "iat": now,
              "exp": now + dt.timedelta(seconds=ttl), "jti": jti or uuid.uuid4().hex}
    return jwt.encode(claims, key, algorithm=ALGORITHM)


class TokenVerifier:
    """Checks request tokens (see module docstring).

    Parameters:
        key: the HS256 key.
        sessionmaker: where used token ids are kept.
        audience, issuer, max_ttl, leeway: ``configurator_service.jwt``.
    """

    def __init__(self, key: bytes, sessionmaker, audience: str, issuer: str,
                 max_ttl: int = 300, leeway: int = 5):
        self.key, self.sessions = key, sessionmaker
        self.audience, self.issuer, self.max_ttl, self.leeway = audience, issuer, max_ttl, leeway
        self._purged = 0.0

    @classmethod
    def from_conf(cls, conf, sessionmaker) -> "TokenVerifier":
        j = conf.configurator_service.jwt
        return cls(jwt_key(conf), sessionmaker, j.audience, j.issuer, j.max_ttl, j.leeway)

    def verify(self, authorization: Optional[str]) -> dict:
        """The claims of the ``Authorization: Bearer`` token; AuthError says what is wrong."""
        if not authorization:
            raise AuthError("missing Authorization header (Bearer token)")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("Authorization: expected 'Bearer <token>'")
        try:
            claims = jwt.decode(token.strip(), self.key, algorithms=[ALGORITHM], audience=self.audience,
                                issuer=self.issuer, leeway=self.leeway,
                                options={"require": ["exp", "iat", "aud", "iss", "sub", "jti"]})
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidAudienceError:
            raise AuthError("token audience is not this configurator") from None
        except jwt.InvalidIssuerError:
            raise AuthError("token issuer is not trusted") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token ({exc.__class__.__name__})") from None
        if not isinstance(claims["sub"], str) or not isinstance(claims["jti"], str) \
                or not 0 < len(claims["jti"]) <= 128:
            raise AuthError("token sub and jti must be strings (jti at most 128 characters)")
        if claims["exp"] - claims["iat"] > self.max_ttl:
            raise AuthError(f"token lifetime exceeds {self.max_ttl} s")
        self._remember(claims["jti"], claims["exp"])
        return claims

    def _remember(self, jti: str, exp: int) -> None:
        expires = dt.datetime.fromtimestamp(exp + self.leeway, dt.timezone.utc).replace(tzinfo=None)
        try:
            with self.sessions.begin() as session:
                session.add(UsedToken(jti=jti, expires_at=expires))
        except IntegrityError:
            raise AuthError("token replayed (its jti was already used)") from None
        self._purge()

    def _purge(self) -> None:
        if time.monotonic() - self._purged < 60:
            return
        self._purged = time.monotonic()
        with self.sessions.begin() as session:
            session.execute(delete(UsedToken).where(UsedToken.expires_at < utcnow()))


# -- allowlists ----------------------------------------------------------------------------
class Allowlist:
    """CIDRs an address must fall in; empty allows nothing."""

    def __init__(self, cidrs: Iterable[str], key: str):
        self.key = key
        self.networks = []
        for cidr in cidrs:
            try:
                self.networks.append(ipaddress.ip_network(cidr, strict=False))
            except ValueError:
                raise ValueError(f"{key}: {cidr!r} is not a CIDR") from None

    def allows(self, address: Optional[str]) -> bool:
        try:
            ip = ipaddress.ip_address(address or "")
        except ValueError:
            return False
        if ip.version == 6 and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.networks)
