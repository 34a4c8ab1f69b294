"""Tables of the vendor-dictionary path: pushed rules, stored dictionaries, secrets.

``rules`` holds every rule nfp pushed to a device, keyed by the owning network
function and the rule's name, with the external id the device returned. Delete
and reconciliation work from these ids, never from the device's own listing
alone. ``dictionaries`` keeps every loaded version of a vendor dictionary.
``secrets`` keeps Fernet ciphertext only (see :mod:`nfp.secrets`).
"""
from __future__ import annotations

import datetime as dt
from typing import Optional

from sqlalchemy import (DateTime, Integer, String, Text, UniqueConstraint)
from sqlalchemy.orm import Mapped, mapped_column

from nfp.db.base import Base, new_id, utcnow


class RuleState:
    """Where a tracked rule stands."""

    #: reserved before the push; the device may or may not have it
    PENDING = "pending"
    #: the device accepted it and returned ``external_id``
    APPLIED = "applied"


class PushedRule(Base):
    """One rule nfp pushed to one device."""

    __tablename__ = "rules"
    __table_args__ = (
        UniqueConstraint("nf_id", "device_id", "service", "name", name="uq_rules_owner_name"),
        UniqueConstraint("device_id", "service", "external_id", name="uq_rules_device_external"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    nf_id: Mapped[str] = mapped_column(String(36), index=True)
    device_id: Mapped[str] = mapped_column(String(64), index=True)
    vendor: Mapped[str] = mapped_column(String(64))
    #: dictionary service: Firewall, PortForwarding, StaticNat, SourceNat, LoadBalancer, StaticRoutes
    service: Mapped[str] = mapped_column(String(32))
    #: nfp resource it came from: firewall, port_forwarding ...
    resource: Mapped[str] = mapped_column(String(32))
    #: the rule's name inside its resource (unique per NF and service)
    name: Mapped[str] = mapped_column(String(255))
    #: the device-side tag nfp derived for it (object names, descriptions)
    rule_tag: Mapped[str] = mapped_column(String(64))
    #: the id the device returned; NULL while pending
    external_id: Mapped[Optional[str]] = mapped_column(String(255))
    #: sha256 of the rule's placeholder values: a changed rule has a new hash
    body_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=RuleState.PENDING)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class StoredDictionary(Base):
    """One loaded version of a vendor dictionary (``nfp dictionary load``)."""

    __tablename__ = "dictionaries"
    __table_args__ = (UniqueConstraint("vendor", "version", name="uq_dictionaries_vendor_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: the service_vendor it serves (``pfsense``)
    vendor: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer)
    product: Mapped[str] = mapped_column(String(255), default="")
    firmware_version: Mapped[str] = mapped_column(String(64), default="")
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(1024), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Secret(Base):
    """An encrypted secret. ``ciphertext`` is a Fernet token; the key never enters the DB."""

    __tablename__ = "secrets"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    ciphertext: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
