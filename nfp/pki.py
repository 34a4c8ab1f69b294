"""nfp's own PKI for the configurator tier (``cryptography``): a CA, the
certificates it issues, their revocation list and the JWT signing key.

Layout of the PKI directory (``configurator_service.pki_dir``, mode 0700)::

    ca.crt  ca.key          the CA (EC P-256), ``ca.key`` 0600
    crl.pem                 the revocation list every TLS hop checks (never empty of
                            meaning: an absent CRL fails every client, by design)
    jwt.key                 the HS256 key that signs request tokens, 0600
    issued/NAME.crt|.key    certificates for servers and clients (both usages)
    index.json              serials, subjects, expiry, revocations, the CRL number

Every write is a temporary file renamed over the old one, so a server reloading
the files sees the old or the new version, never half of one. ``rotate`` renews
certificates that expire within ``renew_before_days``; the old certificate stays
valid until its own expiry, so clients and servers switch without downtime.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class PkiError(ValueError):
    """A PKI operation cannot be done; the message names what and why (never a key)."""


@dataclass(frozen=True)
class Issued:
    """A certificate on disk: its name, paths, serial and expiry."""

    name: str
    cert_path: Path
    key_path: Path
    serial: int
    not_after: dt.datetime


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600 from the first byte, atomically."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class Pki:
    """The CA directory and its operations (see module docstring).

    Parameters:
        directory: the PKI directory.
        cert_days, ca_days: validity of issued certificates and of the CA.
        renew_before_days: ``rotate`` renews certificates expiring within this many days.
    """

    def __init__(self, directory, cert_days: int = 30, ca_days: int = 3650,
                 renew_before_days: int = 7):
        self.dir = Path(directory)
        self.cert_days, self.ca_days, self.renew_before_days = cert_days, ca_days, renew_before_days

    @classmethod
    def from_conf(cls, conf) -> "Pki":
        """The PKI of ``conf.configurator_service`` (``pki_dir``, else ``<state_dir>/pki``)."""
        svc = conf.configurator_service
        return cls(pki_dir(conf), svc.cert_days, svc.ca_days, svc.renew_before_days)

    # -- paths ---------------------------------------------------------------------
    @property
    def ca_cert_path(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key_path(self) -> Path:
        return self.dir / "ca.key"

    @property
    def crl_path(self) -> Path:
        return self.dir / "crl.pem"

    @property
    def jwt_key_path(self) -> Path:
        return self.dir / "jwt.key"

    def cert_path(self, name: str) -> Path:
        return self.dir / "issued" / f"{_check_name(name)}.crt"

    def key_path(self, name: str) -> Path:
        return self.dir / "issued" / f"{_check_name(name)}.key"

    @property
    def initialised(self) -> bool:
        return self.ca_cert_path.exists() and self.ca_key_path.exists()

    # -- index ---------------------------------------------------------------------
    def index(self) -> dict:
        """``{"certs": {name: {...}}, "revoked": [{serial, name, at}], "crl_number": n}``."""
        try:
            return json.loads((self.dir / "index.json").read_text())
        except FileNotFoundError:
            return {"certs": {}, "revoked": [], "crl_number": 0}

    def _save_index(self, index: dict) -> None:
        _write_public(self.dir / "index.json", json.dumps(index, indent=2, sort_keys=True).encode())

    # -- operations ----------------------------------------------------------------
    def init(self, common_name: str = "nfp CA") -> Path:
        """Create the CA, an empty CRL and the JWT key. Refuses to overwrite a CA."""
        if self.initialised:
            raise PkiError(f"pki_dir {self.dir}: a CA already exists; refusing to replace it")
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        (self.dir / "issued").mkdir(mode=0o700, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "nfp"),
                          x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = _now()
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=self.ca_days))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                               critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        write_private(self.ca_key_path, _pem_key(key))
        _write_public(self.ca_cert_path, cert.public_bytes(serialization.Encoding.PEM))
        if not self.jwt_key_path.exists():
            write_private(self.jwt_key_path, secrets.token_urlsafe(48).encode() + b"\n")
        self._save_index({"certs": {}, "revoked": [], "crl_number": 0})
        self.write_crl()
        return self.ca_cert_path

    def issue(self, name: str, hosts: Iterable[str] = (), days: Optional[int] = None,
              not_before: Optional[dt.datetime] = None,
              not_after: Optional[dt.datetime] = None) -> Issued:
        """A new key and certificate for ``name`` (CN), usable as TLS server and client,
        valid for ``localhost``, 127.0.0.1, ``name`` and ``hosts``. Replaces an earlier
        one of the same name (which stays valid until it expires or is revoked)."""
        ca_key, ca_cert = self._ca()
        _check_name(name)
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        start = not_before or now - dt.timedelta(minutes=5)
        end = not_after or now + dt.timedelta(days=days or self.cert_days)
        if end > ca_cert.not_valid_after_utc:
            end = ca_cert.not_valid_after_utc
        serial = x509.random_serial_number()
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "nfp"),
                             x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_cert.subject)
                .public_key(key.public_key()).serial_number(serial)
                .not_valid_before(start).not_valid_after(end)
                .add_extension(x509.SubjectAlternativeName(_sans(name, hosts)), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                               critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        (self.dir / "issued").mkdir(mode=0o700, exist_ok=True)
        # key first: a reader that sees the new certificate finds its key already there
        write_private(self.key_path(name), _pem_key(key))
        _write_public(self.cert_path(name), cert.public_bytes(serialization.Encoding.PEM))
        index = self.index()
        index["certs"][name] = {"serial": str(serial), "not_after": end.isoformat(),
                                "hosts": sorted(set(hosts)), "subject": cert.subject.rfc4514_string()}
        self._save_index(index)
        return Issued(name, self.cert_path(name), self.key_path(name), serial, end)

    def revoke(self, name: str) -> int:
        """Revoke ``name``'s current certificate and publish a new CRL; its serial."""
        index = self.index()
        entry = index["certs"].get(_check_name(name))
        if entry is None:
            raise PkiError(f"name: no certificate issued to {name!r}")
        serial = int(entry["serial"])
        if any(int(r["serial"]) == serial for r in index["revoked"]):
            raise PkiError(f"name: the certificate of {name!r} (serial {serial:x}) is already revoked")
        index["revoked"].append({"serial": str(serial), "name": name, "at": _now().isoformat()})
        self._save_index(index)
        self.write_crl()
        return serial

    def rotate(self, force: bool = False) -> list[Issued]:
        """Renew every unrevoked certificate expiring within ``renew_before_days`` (all of
        them with ``force``), and republish the CRL; the renewed certificates."""
        index = self.index()
        revoked = {int(r["serial"]) for r in index["revoked"]}
        horizon = _now() + dt.timedelta(days=self.renew_before_days)
        renewed = []
        for name, entry in sorted(index["certs"].items()):
            if int(entry["serial"]) in revoked:
                continue
            if force or dt.datetime.fromisoformat(entry["not_after"]) <= horizon:
                renewed.append(self.issue(name, entry.get("hosts", ())))
        self.write_crl()
        return renewed

    def write_crl(self) -> Path:
        """Publish the CRL of every revoked serial, valid for ``cert_days``."""
        ca_key, ca_cert = self._ca()
        index = self.index()
        index["crl_number"] = int(index.get("crl_number", 0)) + 1
        now = _now()
        # a reloaded CRL is added next to the one a live TLS context holds, and OpenSSL
        # uses the most recent by lastUpdate (whole seconds): two CRLs published within
        # one second would tie, and the older one could win. So it strictly increases.
        last = now - dt.timedelta(minutes=1)
        if index.get("crl_last_update"):
            last = max(last, dt.datetime.fromisoformat(index["crl_last_update"]) + dt.timedelta(seconds=1))
        index["crl_last_update"] = last.replace(microsecond=0).isoformat()
        builder = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
                   .last_update(last)
                   .next_update(now + dt.timedelta(days=self.cert_days))
                   .add_extension(x509.CRLNumber(index["crl_number"]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                                  critical=False))
        for item in index["revoked"]:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(int(item["serial"]))
                .revocation_date(dt.datetime.fromisoformat(item["at"])).build())
        crl = builder.sign(ca_key, hashes.SHA256())
        _write_public(self.crl_path, crl.public_bytes(serialization.Encoding.PEM))
        self._save_index(index)
        return self.crl_path

    def _ca(self):
        if not self.initialised:
            raise PkiError(f"pki_dir {self.dir}: no CA here; run `nfp pki init` first")
        key = serialization.load_pem_private_key(self.ca_key_path.read_bytes(), None)
        cert = x509.load_pem_x509_certificate(self.ca_cert_path.read_bytes())
        return key, cert


def pki_dir(conf) -> Path:
    """``configurator_service.pki_dir``, else ``<state_dir>/pki``."""
    svc = conf.configurator_service
    return Path(svc.pki_dir) if svc.pki_dir else conf.state_path / "pki"


def subject_of(cert_path) -> str:
    """The RFC 4514 subject of a PEM certificate file."""
    return x509.load_pem_x509_certificate(Path(cert_path).read_bytes()).subject.rfc4514_string()


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise PkiError(f"name: {name!r} must be 1-64 letters, digits, '.', '_' or '-'")
    return name


def _sans(name: str, hosts: Iterable[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    seen = set()
    for host in ["localhost", "127.0.0.1", name, *hosts]:
        if host in seen:
            continue
        seen.add(host)
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            out.append(x509.DNSName(host))
    return out
