"""The configurator's tables: accepted requests, their notifications, used token ids.

``configurator_requests`` holds each accepted request (its id, the body with the
context's credential-like keys removed, its status) from before the API answers;
``configurator_notifications`` holds results until ``get_notifications`` drains
them; ``configurator_tokens`` remembers every token id (``jti``) until the token
expires, so a replayed token is refused even after a restart.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from sqlalchemy import JSON, DateTime, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from nfp.db.base import Base, utcnow
from nfp.db.models import BigId


class RequestStatus:
    """``configurator_requests.status`` values."""

    ACCEPTED = "accepted"   # written, its apply step queued
    DONE = "done"           # applied; its notification is waiting or was read


class ConfiguratorRequest(Base):
    """One accepted API request. ``id`` is the caller's ``X-Request-Id`` (or a fresh
    UUID), so a retried POST with the same id is answered without a second apply."""

    __tablename__ = "configurator_requests"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    method: Mapped[str] = mapped_column(String(64))
    operation: Mapped[str] = mapped_column(String(16))
    service_type: Mapped[str] = mapped_column(String(64))
    service_vendor: Mapped[str] = mapped_column(String(64))
    nf_id: Mapped[str] = mapped_column(String(64), default="")
    device_id: Mapped[str] = mapped_column(String(64), default="")
    #: ``{"info": {...}, "config": [...]}`` as accepted (secrets are never accepted inline)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=RequestStatus.ACCEPTED)
    #: who sent it: the token subject
    caller: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime, nullable=True)


class ConfiguratorNotification(Base):
    """One request's result, in seed 001's shape, until a ``get_notifications`` reads it."""

    __tablename__ = "configurator_notifications"
    __table_args__ = (Index("ix_configurator_notifications_request_id", "request_id", unique=True),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(64))
    #: ``{"info": {"service_type", "context"}, "notification": [{"resource", "data"}]}``
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class UsedToken(Base):
    """A token id seen once; kept until the token expires (replay protection)."""

    __tablename__ = "configurator_tokens"
    __table_args__ = (Index("ix_configurator_tokens_expires_at", "expires_at"),)

    jti: Mapped[str] = mapped_column(String(128), primary_key=True)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
