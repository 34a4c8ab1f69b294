"""SSH keys: nfp's own client key pair, per-device host keys, and pinning them.

nfp logs in to every netns device with one Ed25519 key pair kept under
``<state_dir>/ssh``. Each device gets its own host key when it is created; its
public half is recorded on the device row (``extra.host_key``) and in nfp's
``known_hosts`` file, and the config driver refuses any other key.
"""
from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import os
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

CLIENT_KEY_NAME = "id_ed25519"


def _write_private(path: Path, comment: str) -> str:
    """Generate an Ed25519 key at ``path`` (mode 0600) and ``path.pub``; return the public line."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    line = f"{public} {comment}"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private)
    path.with_name(path.name + ".pub").write_text(line + "\n")
    os.replace(tmp, path)
    return line


def ssh_dir(state_path: Path) -> Path:
    """``<state_dir>/ssh``, created with mode 0700."""
    path = Path(state_path) / "ssh"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def ensure_client_key(state_path: Path) -> Path:
    """Path of nfp's private key, generated on first use (safe across processes)."""
    directory = ssh_dir(state_path)
    path = directory / CLIENT_KEY_NAME
    if path.exists():
        return path
    with _locked(directory / ".keygen.lock"):
        if not path.exists():
            _write_private(path, "nfp")
    return path


def client_public_key(state_path: Path) -> str:
    """nfp's public key line (``ssh-ed25519 AAAA... nfp``)."""
    path = ensure_client_key(state_path)
    return path.with_name(path.name + ".pub").read_text().strip()


def generate_host_key(path: Path, comment: str = "nfp-netns") -> str:
    """Create a device host key at ``path``; return its public line. Reuses an existing one,
    so a retried create keeps the key it pinned before."""
    pub = path.with_name(path.name + ".pub")
    if path.exists() and pub.exists():
        return pub.read_text().strip()
    return _write_private(path, comment)


def fingerprint(public_line: str) -> str:
    """OpenSSH SHA256 fingerprint of a public key line, as ``ssh-keygen -l`` prints it."""
    blob = base64.b64decode(public_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def host_entry(host: str, port: int) -> str:
    """known_hosts host field: ``ip`` for port 22, ``[ip]:port`` otherwise."""
    return host if port == 22 else f"[{host}]:{port}"


def public_key(public_line: str) -> paramiko.PKey:
    """Parse a public key line into a paramiko key."""
    key_type, data = public_line.split()[:2]
    return paramiko.PKey.from_type_string(key_type, base64.b64decode(data))


class KnownHosts:
    """nfp's ``known_hosts`` file: pinned device host keys, shared by all worker processes."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def pin(self, host: str, port: int, public_line: str) -> None:
        """Record ``public_line`` as the only key of ``host:port``, replacing any older one."""
        key = public_key(public_line)
        with self._edit() as keys:
            entry = host_entry(host, port)
            keys.pop(entry, None)
            keys.add(entry, key.get_name(), key)

    def unpin(self, host: str, port: int) -> None:
        """Forget ``host:port`` (its address may be reused by another device)."""
        with self._edit() as keys:
            keys.pop(host_entry(host, port), None)

    def load(self) -> paramiko.HostKeys:
        """The pinned keys, for a paramiko client."""
        keys = paramiko.HostKeys()
        if self.path.exists():
            keys.load(str(self.path))
        return keys

    @contextlib.contextmanager
    def _edit(self):
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with _locked(self.path.with_name(self.path.name + ".lock")):
            keys = self.load()
            yield keys
            tmp = self.path.with_name(self.path.name + ".tmp")
            keys.save(str(tmp))
            os.replace(tmp, self.path)


@contextlib.contextmanager
def _locked(path: Path):
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
