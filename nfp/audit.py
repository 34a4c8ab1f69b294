"""The security audit log: who did what, when, from where, and with what result.

Every mutating configurator, orchestrator or proxy request, every authentication
or authorisation failure (a cross-tenant access included), every PKI operation
and every start and stop of a daemon (its audit log's start and stop) is one row
of ``audit_log`` (and, when ``configurator_service.audit_file`` is set, one JSON
line in that file; ``nfp-proxy``, which usually has no database, writes the JSON
lines alone: :class:`Sink`). A row names the caller by its certificate
subject and its token subject, or by the user and tenant of its oslo context,
never by a credential: :func:`record` refuses fields it does not know, and the
free-text ``detail`` passes through :func:`nfp.secrets.redact`.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any, Optional

from sqlalchemy import DateTime, Index, String, select
from sqlalchemy.orm import Mapped, mapped_column

from nfp.db import bulk
from nfp.db.base import Base, utcnow
from nfp.db.models import BigId
from nfp.secrets import redact

LOG = logging.getLogger(__name__)

#: event types
REQUEST = "configurator.request"          # a mutating request, accepted or refused by validation
AUTH_FAILURE = "auth.failure"             # no/expired/wrong token, replay (401)
ACCESS_DENIED = "access.denied"           # source or target outside the allowlists (403)
TLS_FAILURE = "tls.failure"               # a handshake refused (bad, expired, revoked certificate)
PKI = "pki"                               # pki.init, pki.issue, pki.revoke, pki.rotate
ORCHESTRATOR_REQUEST = "orchestrator.request"  # a mutating orchestrator RPC, with its result
PROXY_REQUEST = "proxy.request"           # a request nfp-proxy forwarded, with the configurator's answer
AUDIT_START = "audit.start"               # a daemon began auditing (it started)
AUDIT_STOP = "audit.stop"                 # a daemon stopped auditing (it stopped)


class AuditLog(Base):
    """One audited event. No column ever holds a credential, token or secret value."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    event: Mapped[str] = mapped_column(String(48))
    #: the TLS client certificate's subject (RFC 4514), "" when there was none
    cert_subject: Mapped[str] = mapped_column(String(512), default="")
    #: the token's ``sub`` claim, "" when there was no valid token
    token_subject: Mapped[str] = mapped_column(String(255), default="")
    #: the oslo context's user and project (tenant), "" when it named none
    user_id: Mapped[str] = mapped_column(String(255), default="")
    tenant_id: Mapped[str] = mapped_column(String(255), default="")
    #: the API method or PKI operation (``create_network_function_config``, ``pki.issue``)
    method: Mapped[str] = mapped_column(String(96), default="")
    nf_id: Mapped[str] = mapped_column(String(64), default="")
    device_id: Mapped[str] = mapped_column(String(64), default="")
    #: source address (client IP), or ``cli:<user>`` for local operations
    source: Mapped[str] = mapped_column(String(128), default="")
    #: accepted, duplicate, rejected, unauthorized, forbidden, not_found, ok, error
    result: Mapped[str] = mapped_column(String(32), default="")
    detail: Mapped[str] = mapped_column(String(1024), default="")


FIELDS = ("event", "cert_subject", "token_subject", "user_id", "tenant_id", "method", "nf_id", "device_id", "source",
          "result", "detail")
_file_lock = threading.Lock()


def entry(event: str, **fields: Any) -> dict:
    """An audit row's values: unknown fields are a bug (and could smuggle a secret)."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"audit entry: unknown field(s) {sorted(unknown)}")
    values = {name: _clip(str(fields.get(name) or ""), width) for name, width in _WIDTHS.items()}
    values["detail"] = _clip(redact(values["detail"]), 1024)
    values["event"] = event
    return values


def record(session, event: str, audit_file: str = "", **fields: Any) -> AuditLog:
    """Add one row to ``session`` (committed by the caller) and mirror it to ``audit_file``."""
    row = AuditLog(at=utcnow(), **entry(event, **fields))
    session.add(row)
    if audit_file:
        write_line(audit_file, row)
    return row


def record_many(session, entries: list[dict]) -> None:
    """Insert :func:`entry` values with one statement (a batch of RPC requests)."""
    if entries:
        now = utcnow()
        bulk.insert_rows(session, AuditLog.__table__, [{"at": now, **values} for values in entries])


def record_now(sessionmaker, event: str, audit_file: str = "", **fields: Any) -> None:
    """:func:`record` in a transaction of its own; a failure to write is logged, not raised
    (an audit write must not turn a refusal into a 500)."""
    try:
        with sessionmaker.begin() as session:
            record(session, event, audit_file, **fields)
    except Exception as exc:  # noqa: BLE001 - logged with the event, never the request
        LOG.error("audit: could not record %s (%s); the request's answer is unchanged",
                  event, exc.__class__.__name__)


def record_file(audit_file: str, event: str, **fields: Any) -> None:
    """:func:`record` for a daemon without a database (``nfp-proxy``): the JSON line
    only, checked and redacted as a row is. A failure is logged, not raised."""
    try:
        write_line(audit_file, AuditLog(at=utcnow(), **entry(event, **fields)))
    except OSError as exc:
        LOG.error("audit: could not write %s to %s (%s)", event, audit_file, exc.__class__.__name__)


class Sink:
    """Where one daemon's audit events go: its database's ``audit_log`` (mirrored to
    ``audit_file`` when set) or, for a daemon with no database, ``audit_file`` alone.

    Parameters:
        sessionmaker: the daemon's database, or None.
        audit_file: the JSON-lines file ("" for none; required without a database).
    """

    def __init__(self, sessionmaker=None, audit_file: str = ""):
        if sessionmaker is None and not audit_file:
            raise ValueError("an audit sink needs a database or a file")
        self.sessions, self.audit_file = sessionmaker, audit_file

    def __call__(self, event: str, **fields: Any) -> None:
        if self.sessions is not None:
            record_now(self.sessions, event, self.audit_file, **fields)
        else:
            record_file(self.audit_file, event, **fields)

    def daemon(self, event: str, name: str) -> None:
        """:data:`AUDIT_START` or :data:`AUDIT_STOP` of daemon ``name`` on this host:
        seed 002 asks that starting and stopping the audit log is itself audited (a
        gap between a stop and the next start is time nothing was recorded)."""
        self(event, method=name, source=f"host:{socket.gethostname()}", result="ok",
             detail=f"{name} pid {os.getpid()} {'started' if event == AUDIT_START else 'stopped'}")


def as_dict(row: AuditLog) -> dict:
    """A row as JSON-ready data."""
    out = {name: getattr(row, name) for name in FIELDS}
    out["id"], out["at"] = row.id, row.at.isoformat() if row.at else None
    return out


def write_line(path: str, row: AuditLog) -> None:
    """Append ``row`` as one JSON line (0600 file)."""
    line = json.dumps(as_dict(row), sort_keys=True) + "\n"
    target = Path(path)
    with _file_lock:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as handle:
            handle.write(line)


def rows(session, since: Optional[dt.datetime] = None, event: Optional[str] = None,
         limit: int = 1000) -> list[AuditLog]:
    """Rows, oldest first, optionally from ``since`` and of one event type (prefix)."""
    stmt = select(AuditLog)
    if since is not None:
        stmt = stmt.where(AuditLog.at >= since)
    if event:
        stmt = stmt.where(AuditLog.event.startswith(event))
    return list(session.scalars(stmt.order_by(AuditLog.at, AuditLog.id).limit(limit)))


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


#: each text column's width (every mutating RPC request makes a row: looked up once)
_WIDTHS = {name: int(AuditLog.__table__.c[name].type.length) for name in FIELDS[1:]}
