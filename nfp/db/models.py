"""Core tables: the seed-001 data model plus the durable event table.

Other areas add their own modules (``nfp.db.rules`` ...) on the same ``Base``;
:func:`nfp.db.all_models` imports them so Alembic and ``create_all`` see every table.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from sqlalchemy import (JSON, BigInteger, Boolean, Column, DateTime, ForeignKey,
                        Index, Integer, String, Table, Text)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from nfp.db.base import Base, new_id, utcnow
# statuses and their transition table are declared with the flows
from nfp.flows import DeviceStatus, InstanceStatus, NFStatus  # noqa: F401

#: integer primary keys that autoincrement on SQLite too
BigId = BigInteger().with_variant(Integer, "sqlite")


class NetworkFunction(Base):
    __tablename__ = "network_functions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255), default="")
    description: Mapped[str] = mapped_column(String(1024), default="")
    tenant_id: Mapped[str] = mapped_column(String(255), index=True)
    service_id: Mapped[Optional[str]] = mapped_column(String(36))
    service_chain_id: Mapped[Optional[str]] = mapped_column(String(36), index=True)
    service_profile_id: Mapped[Optional[str]] = mapped_column(String(36))
    service_config: Mapped[Optional[str]] = mapped_column(Text)
    config_policy_id: Mapped[Optional[str]] = mapped_column(String(36))
    status: Mapped[str] = mapped_column(String(50), index=True)
    status_description: Mapped[str] = mapped_column(String(4096), default="")
    service_type: Mapped[Optional[str]] = mapped_column(String(64))
    service_vendor: Mapped[Optional[str]] = mapped_column(String(64))
    device_type: Mapped[Optional[str]] = mapped_column(String(64))
    #: the validated request: ports, management and chain details (ids, no secrets)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: bumped by every new operation; steps of an older operation are dropped
    generation: Mapped[int] = mapped_column(Integer, default=0)
    #: the operation in progress: create, delete, or ``<op>:<request unique id>``
    #: (``consumer_remove:`` + up to 64 characters; migration 0003 widened it)
    operation: Mapped[Optional[str]] = mapped_column(String(96))
    #: its device's management link is lost (UNREACHABLE): the NF stays ACTIVE, its data
    #: plane untouched, its operations wait; cleared by the reconcile after the link returns
    degraded: Mapped[bool] = mapped_column(Boolean, default=False)
    degraded_reason: Mapped[str] = mapped_column(String(512), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    instances: Mapped[list["NetworkFunctionInstance"]] = relationship(
        back_populates="network_function", passive_deletes=True)


nfi_dataport_associations = Table(
    "nfi_dataport_associations", Base.metadata,
    Column("network_function_instance_id", String(36),
           ForeignKey("network_function_instances.id", ondelete="CASCADE"), primary_key=True),
    Column("data_port_id", String(36),
           ForeignKey("port_infos.id", ondelete="CASCADE"), primary_key=True),
)


class PortInfo(Base):
    __tablename__ = "port_infos"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(255), default="")
    port_model: Mapped[str] = mapped_column(String(32))  # neutron_port | gbp_policy_target
    port_classification: Mapped[str] = mapped_column(String(32))  # provider|consumer|management|monitoring
    port_role: Mapped[Optional[str]] = mapped_column(String(16))  # ACTIVE|STANDBY|MASTER


class NetworkInfo(Base):
    __tablename__ = "network_infos"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(255), default="")
    network_model: Mapped[str] = mapped_column(String(32))  # neutron_network | gbp_group


class NetworkFunctionDevice(Base):
    __tablename__ = "network_function_devices"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255), default="")
    description: Mapped[str] = mapped_column(String(1024), default="")
    tenant_id: Mapped[str] = mapped_column(String(255), default="")
    status: Mapped[str] = mapped_column(String(50))
    status_description: Mapped[str] = mapped_column(String(4096), default="")
    mgmt_ip_address: Mapped[Optional[str]] = mapped_column(String(64))
    mgmt_port_id: Mapped[Optional[str]] = mapped_column(
        String(36), ForeignKey("port_infos.id", ondelete="SET NULL"))
    monitoring_port_id: Mapped[Optional[str]] = mapped_column(
        String(36), ForeignKey("port_infos.id", ondelete="SET NULL"))
    monitoring_port_network: Mapped[Optional[str]] = mapped_column(
        String(36), ForeignKey("network_infos.id", ondelete="SET NULL"))
    service_vendor: Mapped[Optional[str]] = mapped_column(String(64), index=True)
    service_type: Mapped[Optional[str]] = mapped_column(String(64))
    #: the device driver that owns it (``static``, ``netns`` ...)
    device_type: Mapped[str] = mapped_column(String(64), index=True)
    max_interfaces: Mapped[int] = mapped_column(Integer, default=8)
    reference_count: Mapped[int] = mapped_column(Integer, default=0)
    interfaces_in_use: Mapped[int] = mapped_column(Integer, default=0)
    provider_metadata: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    gateway_port: Mapped[Optional[str]] = mapped_column(String(36))
    #: false for devices nfp created for one NF only
    shared: Mapped[bool] = mapped_column(Boolean, default=True)
    #: devices listed in the static inventory are never deleted by nfp
    managed: Mapped[bool] = mapped_column(Boolean, default=False)
    #: name of the secret holding this device's credentials (never the secret)
    credentials_ref: Mapped[Optional[str]] = mapped_column(String(255))
    #: driver facts recorded at creation (ssh port, pinned host key, netns name ...)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: HEALTHY, UNHEALTHY, UNREACHABLE, or Unknown before the monitor's first verdict
    health: Mapped[str] = mapped_column(String(16), default="Unknown")
    last_contact: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    #: when ``health`` last changed, and why (no secrets: probe and driver messages, redacted)
    health_changed_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    health_reason: Mapped[str] = mapped_column(String(512), default="")
    #: auto-heal: heals started since the device was last HEALTHY, and when the last started
    heal_attempts: Mapped[int] = mapped_column(Integer, default=0)
    healed_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    #: what the deep check last read as the device's boot marker; a new one is a restart
    boot_id: Mapped[Optional[str]] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class NetworkFunctionInstance(Base):
    __tablename__ = "network_function_instances"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255), default="")
    description: Mapped[str] = mapped_column(String(1024), default="")
    tenant_id: Mapped[str] = mapped_column(String(255), default="")
    status: Mapped[str] = mapped_column(String(50))
    status_description: Mapped[str] = mapped_column(String(4096), default="")
    ha_state: Mapped[Optional[str]] = mapped_column(String(50))
    network_function_id: Mapped[Optional[str]] = mapped_column(
        String(36), ForeignKey("network_functions.id", ondelete="SET NULL"), index=True)
    network_function_device_id: Mapped[Optional[str]] = mapped_column(
        String(64), ForeignKey("network_function_devices.id", ondelete="SET NULL"), index=True)
    #: interfaces this instance holds on its device (released on delete)
    interfaces_held: Mapped[int] = mapped_column(Integer, default=0)

    network_function: Mapped[Optional[NetworkFunction]] = relationship(back_populates="instances")
    port_info: Mapped[list[PortInfo]] = relationship(secondary=nfi_dataport_associations)


class EventStatus:
    PENDING = "pending"      # ready at due_at
    WAITING = "waiting"      # fan-in parent, or waiting for a configurator notification
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    OPEN = frozenset({PENDING, WAITING})


class Event(Base):
    """A durable step. Handlers re-read state from the tables; payload holds ids only."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_open", "status", "key_hash"),
        Index("ix_events_scope_status", "scope", "status"),
        # a fan-in parent reads its children, and purging a parent makes PostgreSQL
        # find the children its foreign key sets NULL: both scanned the table without it
        Index("ix_events_parent_id", "parent_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    #: steps with the same key run one at a time, in order
    key: Mapped[str] = mapped_column(String(96))
    #: the object the step belongs to (the NF id): sharding and cancellation
    scope: Mapped[str] = mapped_column(String(64))
    #: crc32(scope): the worker shard is key_hash % workers
    key_hash: Mapped[int] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16))
    #: starts of this step so far (a crash mid-step counts)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: completed polls of a poll step
    polls: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    deadline_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    parent_id: Mapped[Optional[int]] = mapped_column(BigId, ForeignKey("events.id", ondelete="SET NULL"))
    #: children a fan-in parent still waits for
    pending_children: Mapped[int] = mapped_column(Integer, default=0)
    #: NF generation the step belongs to; older generations are cancelled
    generation: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    error: Mapped[Optional[str]] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)


class ReconciliationLog(Base):
    """One drift reconciliation run of an NF: what differed, what was done, how it went.
    Names, reasons and counts only: never a rule body or a secret."""

    __tablename__ = "reconciliation_log"
    __table_args__ = (Index("ix_reconciliation_log_nf_started", "network_function_id", "started_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    #: the caller's handle (``nfp reconcile`` waits for it)
    run_id: Mapped[str] = mapped_column(String(36), unique=True, default=new_id)
    network_function_id: Mapped[str] = mapped_column(String(36))
    device_id: Mapped[Optional[str]] = mapped_column(String(64), index=True)
    #: schedule, device_up, device_restart, dictionary_update, on_demand
    trigger: Mapped[str] = mapped_column(String(32))
    policy: Mapped[str] = mapped_column(String(32))
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    missing: Mapped[int] = mapped_column(Integer, default=0)
    extra: Mapped[int] = mapped_column(Integer, default=0)
    changed: Mapped[int] = mapped_column(Integer, default=0)
    #: ``{"missing": [...], "extra": [...], "changed": [...], "actions": [...]}`` (names only)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: in_sync, drift, repaired, adopted, partial, failed, skipped
    result: Mapped[str] = mapped_column(String(16))
    error: Mapped[str] = mapped_column(String(2048), default="")


class ReconciledDictionary(Base):
    """The newest dictionary version of a vendor whose NFs have been reconciled
    since it was loaded (the health monitor's dictionary-update trigger)."""

    __tablename__ = "reconciled_dictionaries"

    vendor: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    reconciled_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class RpcRequest(Base):
    """Ids of accepted mutations, so a redelivered message is not applied twice."""

    __tablename__ = "rpc_requests"

    unique_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    method: Mapped[str] = mapped_column(String(64))
    #: the network function the request created or changed
    object_id: Mapped[Optional[str]] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)


class OutboxNotification(Base):
    """An oslo notification committed with the step that caused it and not yet
    confirmed by the broker (:mod:`nfp.outbox`); deleted once published."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_scope", "scope", "id"),)

    #: publication order (per scope, the order the causing steps committed in)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    #: what the notification is about (the NF or device id): order is kept per scope
    scope: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(255))
    priority: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
