"""Encrypted secret store and log redaction.

Secrets (API tokens, API keys, SSH passwords and keys) are stored by name in the
``secrets`` table as Fernet ciphertext. Configuration, dictionaries, device rows
and RPC payloads carry only the *name* (``credentials_ref``, ``tokenRef``); the
value is resolved at call time with :meth:`SecretStore.get`.

The key comes from the environment variable ``conf.secrets.key_env`` (default
``NFP_SECRET_KEY``) or from ``conf.secret_key_file``, which is created with mode
0600 on first use. Several comma-separated keys enable rotation: the first
encrypts, all decrypt (``cryptography``'s MultiFernet).

Every value read or written is registered with the process-wide
:data:`REDACTOR`; :class:`RedactionFilter` masks registered values in log
records (message, arguments and traceback text). Install it on the handlers
with :func:`install_redaction`.
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Optional, Union

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import delete, select

from nfp.exceptions import NfpError, NotFound

LOG = logging.getLogger(__name__)

MASK = "***"
#: shorter values are not redacted: masking every "ab" would shred the logs
MIN_REDACT_LENGTH = 4


class SecretError(NfpError):
    """The secret store cannot serve a request. Never carries a secret value."""


class Redactor:
    """Remembers secret values and masks them in text. Thread-safe."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: Optional[re.Pattern] = None
        self._lock = threading.Lock()

    def register(self, value: Any) -> None:
        """Mask ``value`` (and its JSON- and URL-escaped forms) from now on."""
        if isinstance(value, dict):
            for item in value.values():
                self.register(item)
            return
        if not isinstance(value, str) or len(value) < MIN_REDACT_LENGTH:
            return
        forms = {value, json.dumps(value)[1:-1], urllib.parse.quote(value, safe=""),
                 urllib.parse.quote_plus(value)}
        _bridge(forms)
        with self._lock:
            if forms <= self._values:
                return
            self._values |= forms
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def redact(self, text: str) -> str:
        """``text`` with every registered value replaced by ``***``."""
        pattern = self._pattern
        if pattern is None or not text:
            return text
        return pattern.sub(MASK, text)

    def __contains__(self, value: str) -> bool:
        return value in self._values


def _bridge(forms: set[str]) -> None:
    """Also register with the daemon's log setup (:mod:`nfp.logs`), whose handler
    filter masks the same values in the shared log stream."""
    try:
        from nfp.logs import register_secret
    except ImportError:
        return
    for form in forms:
        register_secret(form)


#: the process-wide registry used by :class:`RedactionFilter`
REDACTOR = Redactor()


def redact(text: str) -> str:
    """Mask registered secrets in ``text`` (for exception messages and events)."""
    return REDACTOR.redact(text)


class RedactionFilter(logging.Filter):
    """A handler filter that masks registered secret values in every record."""

    def __init__(self, redactor: Redactor = REDACTOR):
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        if self.redactor._pattern is None:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to the formatter
            return True
        record.msg, record.args = self.redactor.redact(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor.redact(record.exc_text)
        return True


def install_redaction(logger: Optional[logging.Logger] = None) -> None:
    """Add a :class:`RedactionFilter` to every handler of ``logger`` (default root).
    Idempotent; call it again after adding handlers."""
    logger = logger or logging.getLogger()
    for handler in logger.handlers:
        if not any(isinstance(f, RedactionFilter) for f in handler.filters):
            handler.addFilter(RedactionFilter())


# -- key handling ---------------------------------------------------------------

def load_key(conf: Any = None, environ: Optional[dict] = None) -> bytes:
    """The Fernet key(s): ``$<conf.secrets.key_env>`` if set, else the key file
    (``conf.secret_key_file``), created 0600 with a fresh key when missing."""
    environ = os.environ if environ is None else environ
    env_name = conf.secrets.key_env if conf is not None else "NFP_SECRET_KEY"
    if environ.get(env_name):
        return environ[env_name].strip().encode()
    if conf is None:
        raise SecretError(f"no secret key: set ${env_name} or pass a configuration")
    return _key_from_file(Path(conf.secret_key_file))


def _key_from_file(path: Path) -> bytes:
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as handle:
        handle.write(key + b"\n")
    LOG.info("created secret key file %s (mode 0600); back it up, secrets are unreadable without it", path)
    return key


def _key_parts(key: Union[bytes, str]) -> list[str]:
    raw = key.decode() if isinstance(key, bytes) else key
    return [p.strip() for p in raw.split(",") if p.strip()]


def _fernet(key: Union[bytes, str]) -> MultiFernet:
    parts = _key_parts(key)
    if not parts:
        raise SecretError("the secret key is empty")
    try:
        return MultiFernet([Fernet(p.encode()) for p in parts])
    except (ValueError, TypeError):
        raise SecretError("the secret key is not a valid Fernet key "
                          "(32 url-safe base64-encoded bytes)") from None


# -- the store ------------------------------------------------------------------

class SecretStore:
    """Encrypted secrets by name.

    Parameters:
        session_factory: a SQLAlchemy ``sessionmaker`` for the nfp database.
        key: the Fernet key (or comma-separated keys, newest first).
        reload_key: reads the key again; called once when a secret does not decrypt,
            so a running daemon follows ``nfp secret rotate-key`` without a restart.
    """

    def __init__(self, session_factory: Callable, key: Union[bytes, str],
                 reload_key: Optional[Callable[[], Union[bytes, str]]] = None):
        self._sessions = session_factory
        self._fernet = _fernet(key)
        self._keys = _key_parts(key)
        self._reload_key = reload_key

    def put(self, name: str, value: Union[str, dict]) -> None:
        """Store ``value`` (a string, or a mapping stored as JSON) under ``name``."""
        with self._sessions() as session, session.begin():
            self.put_in(session, name, value)
        LOG.info("stored secret %s", name)

    def put_in(self, session, name: str, value: Union[str, dict]) -> None:
        """:meth:`put` inside the caller's transaction (``session``), so a secret is
        stored exactly when what refers to it is (nfp.payload_secrets)."""
        from nfp.db.rules import Secret
        if not name or len(name) > 255:
            raise SecretError("secret name must be 1-255 characters")
        REDACTOR.register(value)
        text = json.dumps(value) if isinstance(value, dict) else str(value)
        token = self._fernet.encrypt(text.encode()).decode()
        row = session.get(Secret, name)
        if row is None:
            session.add(Secret(name=name, ciphertext=token))
        else:
            row.ciphertext = token

    def get(self, name: str) -> str:
        """The plaintext of ``name``; raise NotFound if there is no such secret."""
        from nfp.db.rules import Secret
        with self._sessions() as session:
            token = session.scalar(select(Secret.ciphertext).where(Secret.name == name))
        if token is None:
            raise NotFound(f"secret {name!r} does not exist")
        try:
            value = self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            value = self._decrypt_with_reloaded_key(name, token)
        REDACTOR.register(value)
        return value

    def _decrypt_with_reloaded_key(self, name: str, token: str) -> str:
        """The key may have been rotated since this store was made: read it again, once."""
        if self._reload_key is not None:
            try:
                key = self._reload_key()
                fernet = _fernet(key)
                value = fernet.decrypt(token.encode()).decode()
            except (InvalidToken, SecretError, OSError):
                pass
            else:
                self._fernet, self._keys = fernet, _key_parts(key)
                LOG.info("secret key changed on disk (rotated); using the new key from now on")
                return value
        raise SecretError(f"secret {name!r} cannot be decrypted with the configured key")

    def get_mapping(self, name: str) -> dict[str, str]:
        """``name`` as a mapping: a JSON object secret as is, a plain one as ``{'value': ...}``."""
        value = self.get(name)
        if value.startswith("{"):
            try:
                data = json.loads(value)
            except ValueError:
                data = None
            if isinstance(data, dict):
                REDACTOR.register(data)
                return {str(k): str(v) for k, v in data.items()}
        return {"value": value}

    def rotate(self) -> int:
        """Re-encrypt every secret with the first key; return how many were rewritten."""
        from nfp.db.rules import Secret
        count = 0
        with self._sessions() as session, session.begin():
            for row in session.scalars(select(Secret)):
                row.ciphertext = self._fernet.rotate(row.ciphertext.encode()).decode()
                count += 1
        return count

    def rotate_to(self, new_key: Union[bytes, str]) -> int:
        """Re-encrypt every secret with ``new_key`` in one transaction (each one is
        decrypted with this store's keys first); return how many were rewritten.
        From then on this store encrypts with ``new_key``."""
        from nfp.db.rules import Secret
        raw = new_key.decode() if isinstance(new_key, bytes) else new_key
        combined = _fernet(",".join([_key_parts(raw)[0], *self._keys]))
        count = 0
        with self._sessions() as session, session.begin():
            for row in session.scalars(select(Secret)):
                try:
                    row.ciphertext = combined.rotate(row.ciphertext.encode()).decode()
                except InvalidToken:
                    raise SecretError(f"secret {row.name!r} cannot be decrypted with the current key; "
                                      "nothing was re-encrypted") from None
                count += 1
        self._fernet, self._keys = _fernet(raw), _key_parts(raw)
        return count

    def delete(self, name: str) -> None:
        """Remove ``name`` (no error if it is absent)."""
        from nfp.db.rules import Secret
        with self._sessions() as session, session.begin():
            session.execute(delete(Secret).where(Secret.name == name))

    def names(self) -> list[str]:
        """Every stored secret name, sorted."""
        from nfp.db.rules import Secret
        with self._sessions() as session:
            return list(session.scalars(select(Secret.name).order_by(Secret.name)))


def delete_under(session, prefix: str) -> int:
    """Remove every secret whose name starts with ``prefix`` (``nf/<id>/``) inside the
    caller's transaction; how many. No key is needed to forget a secret, so the step
    that removes what referred to them (an NF's delete) removes them in its own commit:
    a crash leaves both or neither."""
    from nfp.db.rules import Secret
    if not prefix:
        raise SecretError("delete_under: an empty prefix would remove every secret")
    return session.execute(delete(Secret).where(Secret.name.startswith(prefix, autoescape=True))).rowcount


def write_key_file(path: Path, key: Union[bytes, str]) -> None:
    """Replace the key file with ``key`` atomically; the file is 0600 from its first byte."""
    text = key.decode() if isinstance(key, bytes) else key
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text.strip() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o600)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def rotate_key(conf: Any, session_factory: Callable, environ: Optional[dict] = None) -> int:
    """Re-encrypt every stored secret with a fresh key and write it to the key file
    (0600); return how many secrets were rewritten.

    Crash-safe: the file first holds the new key *and* the old ones (the first
    encrypts, all decrypt), then the secrets are re-encrypted in one transaction,
    then the file keeps the new key only. Running daemons pick the new key up
    from the file when a secret no longer decrypts with theirs. A key given in
    the environment cannot be rotated here (nfp cannot change the environment)."""
    environ = os.environ if environ is None else environ
    env_name = conf.secrets.key_env
    if environ.get(env_name):
        raise SecretError(f"the secret key comes from ${env_name}; rotate-key writes the key file "
                          f"{conf.secret_key_file}: unset ${env_name} and keep the key in the file")
    path = Path(conf.secret_key_file)
    old = load_key(conf, environ)
    new = Fernet.generate_key().decode()
    store = SecretStore(session_factory, old)
    write_key_file(path, ",".join([new, *_key_parts(old)]))
    count = store.rotate_to(new)
    write_key_file(path, new)
    LOG.info("secret key rotated: %d secret(s) re-encrypted; key file %s rewritten (mode 0600)", count, path)
    return count
