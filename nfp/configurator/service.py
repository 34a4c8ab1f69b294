"""The configurator's engine application: the ``configurator.apply`` step and the
services its workers own.

One step per accepted request, keyed by the target device, so requests to one
appliance run one at a time and in order, while different appliances run in
parallel. The step re-reads its request row, applies each element through its
module (:mod:`nfp.configurator.modules`) and, in the same transaction as the
step's completion, writes the notification and marks the request done. A step
that crashes its worker is retried; one that keeps failing, or passes its
deadline, still leaves a ``failure`` notification (its failure handler).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

from nfp.config import ConfigError
from nfp.configurator import modules
from nfp.configurator.models import target_of
from nfp.configurator.tables import ConfiguratorNotification, ConfiguratorRequest, RequestStatus
from nfp.db.base import utcnow
from nfp.db.engine import make_engine, make_sessionmaker
from nfp.drivers.component import DriverContext
from nfp.drivers.config.base import DeviceTarget
from nfp.engine import builtin
from nfp.engine.app import Application
from nfp.engine.events import done
from nfp.engine.registry import HandlerSpec, Registry
from nfp.workers.configurator.client import DirectConfiguratorClient

LOG = logging.getLogger(__name__)
STEP = "configurator.apply"


def daemon_conf(conf):
    """The configuration the configurator's listener and workers run with: its own
    database and state directory (the engine's events and running-step files must
    not be shared with an orchestrator), the same secret key, PKI and SSH key."""
    svc = conf.configurator_service
    state = Path(svc.state_dir) if svc.state_dir else conf.state_path / "configurator"
    url = svc.database_url or f"sqlite:///{state / 'configurator.db'}"
    if url == conf.database_url:
        raise ConfigError("configurator_service.database_url: must differ from database.url "
                          "(the orchestrator's workers would run the configurator's steps)")
    from nfp.pki import pki_dir
    drivers = {k: dict(v) for k, v in conf.config_drivers.items()}
    linux = drivers.setdefault("linux", {})
    linux.setdefault("key_file", str(conf.state_path / "ssh" / "id_ed25519"))
    linux.setdefault("known_hosts", str(conf.state_path / "ssh" / "known_hosts"))
    return conf.model_copy(update={
        "state_dir": str(state),
        "database": conf.database.model_copy(update={"url": url}),
        "orchestrator": conf.orchestrator.model_copy(update={"workers": svc.workers}),
        "secrets": conf.secrets.model_copy(update={"key_file": str(conf.secret_key_file)}),
        "configurator_service": svc.model_copy(update={"pki_dir": str(pki_dir(conf)),
                                                       "database_url": url, "state_dir": str(state)}),
        "config_drivers": drivers,
    })


class ConfiguratorServices:
    """One per worker process: the database engine and the configurator client (which
    owns the config drivers and their pools). ``start``/``stop`` as every Services."""

    def __init__(self, conf: Any, sessionmaker: Optional[Any] = None):
        self.conf = conf
        self._engine = None
        if sessionmaker is None:
            self._engine = make_engine(conf.database_url, pool_size=conf.orchestrator.threads_per_worker)
            sessionmaker = make_sessionmaker(self._engine)
        self.sessionmaker = sessionmaker
        self.client = DirectConfiguratorClient(conf)
        self.client.setup(DriverContext(conf=conf, sessionmaker=sessionmaker, secrets=None))
        self.inventory = {str(d.get("mgmt_ip_address")): d for d in conf.configurator_service.devices}

    def start(self) -> None:
        self.client.start()

    def stop(self) -> None:
        """Close the drivers, then the database engine. Idempotent."""
        self.client.stop()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def target(self, request: ConfiguratorRequest) -> DeviceTarget:
        """The appliance of ``request``: its inventory entry (by management IP) when
        there is one, which supplies the credentials reference and connection facts."""
        mgmt_ip = target_of(request.body) or ""
        entry = self.inventory.get(mgmt_ip, {})
        return DeviceTarget(id=str(entry.get("id") or request.device_id or mgmt_ip),
                            mgmt_ip_address=mgmt_ip, service_vendor=request.service_vendor,
                            credentials_ref=entry.get("credentials_ref"),
                            extra=dict(entry.get("extra") or {}))


def build(conf) -> ConfiguratorServices:
    """The services factory handed to the engine (module level: workers unpickle it)."""
    return ConfiguratorServices(conf)


def apply(step):
    """``configurator.apply``: apply one accepted request and write its notification."""
    request = step.session.get(ConfiguratorRequest, step.payload["request_id"])
    if request is None or request.status == RequestStatus.DONE:
        return done({"skipped": "already applied"})  # a retried step finds its work done
    body = request.body
    info, context = body["info"], body["info"].get("context") or {}
    target = step.services.target(request)
    tenant_id = context.get("tenant_id") if isinstance(context.get("tenant_id"), str) else None
    nf_id = request.nf_id or request.device_id
    step.checkpoint()  # no transaction is held while the drivers talk to the device
    # attempts > 0: the step was running when its worker died (nfp.engine.running)
    results = modules.apply_all(step.services.client, request.operation, info["service_type"],
                                body["config"], target, nf_id, tenant_id,
                                resumed=step.event.attempts > 0)
    _finish(step.session, request.id, results)
    statuses = [r["data"]["status_code"] for r in results]
    LOG.info("configurator request %s (%s, NF %s, device %s): %s", request.id, request.method,
             request.nf_id or "-", target.id, ", ".join(statuses))
    return done({"statuses": statuses})


def apply_failed(step, reason: str):
    """The step failed (deadline, repeated crashes): every element is a failure."""
    request = step.session.get(ConfiguratorRequest, step.payload.get("request_id"))
    if request is None or request.status == RequestStatus.DONE:
        return None
    results = [modules.element_result(e.get("resource", ""), modules.FAILURE, f"not applied: {reason}")
               for e in request.body.get("config", [])]
    _finish(step.session, request.id, results)
    return None


def _finish(session, request_id: str, results: list[dict]) -> None:
    request = session.get(ConfiguratorRequest, request_id)
    info = request.body["info"]
    session.add(ConfiguratorNotification(request_id=request_id, created_at=utcnow(), body={
        "info": {"service_type": info["service_type"], "context": info.get("context") or {}},
        "notification": results}))
    request.status, request.finished_at = RequestStatus.DONE, utcnow()


def registry() -> Registry:
    """The configurator's step types."""
    return Registry([HandlerSpec(STEP, apply, on_failure=apply_failed)]).merge(builtin.registry())


CONFIGURATOR = Application("configurator", registry=registry, services=build)
