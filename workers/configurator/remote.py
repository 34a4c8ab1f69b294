"""The ``rest`` and ``proxy`` ConfiguratorClients: an NF's configuration goes to a remote
``nfp-configurator`` and its result comes back later as a notification.

:func:`configure_step` is what a configuration step calls with any client. With
``direct`` it applies in-process and returns at once. With ``rest`` or ``proxy`` it
sends the request under a request id derived from the step (a re-run of the step
sends the same id, which the configurator applies once) and parks the step
(``wait``) until the ``network_function_notification`` carrying the step's
``event_id`` in its context resumes it, or until ``orchestrator.config_wait_timeout``.

The step is parked *before* the request leaves, and its row is locked again once
the request is out: a notification that arrives while the step is still running
finds it parked and resumes it (it is not lost), and the step then returns its
result at once instead of parking again. A request the configurator refuses (4xx)
fails the step at once; one it cannot take now (no answer, 5xx) is sent again
with backoff (about 20 s), then the step stays parked under the same id and fails
at the deadline if nothing came.

Device-level calls that must answer synchronously (health-check setup when a device
is created, an auto-heal's re-push) keep running in-process: these clients inherit
the direct client for them. They do not compare devices (:meth:`diff`): the
configurator tier owns them.
"""
from __future__ import annotations

import logging
import uuid
from typing import Optional

from sqlalchemy import update

from nfp import backoff
from nfp.db.models import Event, EventStatus
from nfp.drivers.config.core import Diff
from nfp.engine import store
from nfp.engine.events import Outcome, done, fail, wait
from nfp.proxy.http import Refused, Unavailable, configurator_https
from nfp.proxy.notifier import Notifier
from nfp.workers.configurator.client import DirectConfiguratorClient

LOG = logging.getLogger(__name__)
#: driver operation -> seed 001 method
METHOD = {"create": "create_network_function_config", "update": "update_network_function_config",
          "delete": "delete_network_function_config"}
#: extra attempts of a request the configurator (or broker) did not take
SEND_RETRIES = 8


class RemoteConfiguratorClient(DirectConfiguratorClient):
    """Base of the asynchronous clients: :meth:`send` one request; results come back
    as notifications."""

    asynchronous = True

    def diff(self, service_type, config, device, nf_id=None):
        """Not compared here: the devices belong to the configurator tier (seed 001's REST
        API has no compare), so the reconciler reports them uncompared and repairs nothing
        from the orchestrator's side."""
        note = (f"configurator.client is {self.conf.configurator.client}: the configurator "
                "tier compares this device, not the orchestrator")
        return [Diff(e.get("resource", "") if isinstance(e, dict) else "", compared=False, note=note)
                for e in config]

    def send(self, method: str, body: dict, request_id: str) -> None:
        """Hand the request on; Refused if the configurator refused it, Unavailable if
        it could not be handed on now."""
        raise NotImplementedError


class RestConfiguratorClient(RemoteConfiguratorClient):
    """HTTPS straight to ``configurator.url`` (mutual TLS + token), and a notifier thread
    that polls it and casts each result to this orchestrator's notification topic."""

    def __init__(self, conf):
        super().__init__(conf)
        self.http = None
        self.notifier: Optional[Notifier] = None
        self.caster = None

    def start(self) -> None:
        from nfp.rpc.client import RpcClient
        super().start()
        c = self.conf.configurator
        self.http = configurator_https(self.conf, c.url, c.cert_name, c.request_timeout)
        self.caster = RpcClient(self.conf.transport_url, self.conf, topic=self.conf.rpc.notification_topic)
        self.notifier = Notifier(self.http, self.caster, c.poll_interval, name="rest-notifier")
        self.notifier.start()

    def stop(self) -> None:
        if self.notifier is not None:
            self.notifier.stop()
            self.notifier = None
        for owned in (self.caster, self.http):
            if owned is not None:
                owned.close()
        self.caster = self.http = None
        super().stop()

    def send(self, method, body, request_id):
        self.http.post(method, body, request_id)


class ProxyConfiguratorClient(RemoteConfiguratorClient):
    """An RPC cast to ``nfp-proxy``'s agent on ``proxy.topic``. The topic's queue is
    declared here too, so a request cast while the agent is down waits in it."""

    def __init__(self, conf):
        super().__init__(conf)
        self.rpc = None

    def start(self) -> None:
        from nfp.rpc import topology
        from nfp.rpc.client import RpcClient
        from nfp.rpc.transport import connection_for
        super().start()
        try:
            with connection_for(self.conf.transport_url, self.conf) as conn:
                topology.topic_queue(self.conf, self.conf.proxy.topic)(conn.default_channel).declare()
        except Exception as exc:  # kombu's errors vary by transport; the agent declares it too
            LOG.warning("proxy.topic %s: queue not declared now (%s); requests cast before the "
                        "agent declares it are lost, so their steps fail at the deadline",
                        self.conf.proxy.topic, exc.__class__.__name__)
        self.rpc = RpcClient(self.conf.transport_url, self.conf, topic=self.conf.proxy.topic)

    def stop(self) -> None:
        if self.rpc is not None:
            self.rpc.close()
            self.rpc = None
        super().stop()

    def send(self, method, body, request_id):
        try:
            self.rpc.cast({"user_id": "nfp-orchestrator"}, method,
                          request_data=body, request_id=request_id)
        except Exception as exc:  # kombu's connection errors vary by transport
            raise Unavailable(f"broker: {exc.__class__.__name__}") from None


CLIENTS = {"direct": DirectConfiguratorClient, "rest": RestConfiguratorClient,
           "proxy": ProxyConfiguratorClient}


def make_client(conf) -> DirectConfiguratorClient:
    """The client ``configurator.client`` names."""
    return CLIENTS[conf.configurator.client](conf)


def request_id(step, nf_id: str) -> str:
    """The same for every run of one step, different for every step (and NF)."""
    return f"{step.id}-{uuid.uuid5(uuid.NAMESPACE_URL, f'nfp:{nf_id}:{step.id}').hex[:16]}"


def configure_step(step, operation: str, service_type: str, elements: list, where, nf_id: str,
                   tenant_id: Optional[str]) -> Outcome:
    """Apply ``elements`` through ``step.services.configurator`` (module docstring)."""
    client = step.services.configurator
    if not getattr(client, "asynchronous", False):
        outcome = client.configure(operation, service_type, elements, where, nf_id, tenant_id)
        if not outcome.ok:
            return fail(f"service configuration failed: {outcome.error}")
        return done({"resources": len(elements)})
    if step.notification is not None:
        return _result(step.notification, len(elements))
    rid = request_id(step, nf_id)
    body = {"info": {"service_vendor": where.service_vendor, "service_type": service_type,
                     "context": {"nf_id": nf_id, "nfd_id": where.id, "nfd_ip": where.mgmt_ip_address,
                                 "tenant_id": tenant_id, "operation": operation,
                                 "event_id": step.id, "request_id": rid}},
            "config": elements}
    timeout = step.services.conf.orchestrator.config_wait_timeout
    store.reschedule(step.session, step.id, timeout, EventStatus.WAITING, count_poll=False)
    step.checkpoint()  # parked before the request leaves: an early notification finds it
    try:
        for attempt in backoff.retrying(SEND_RETRIES, 0.2, 5.0, (Unavailable,)):
            with attempt:
                client.send(METHOD[operation], body, rid)
    except Refused as exc:
        return fail(f"service configuration failed: {exc.error}")
    except Unavailable as exc:
        LOG.warning("NF %s: configuration request %s not handed on now (%s); waiting for its "
                    "notification until the deadline", nf_id, rid, exc)
    else:
        LOG.info("NF %s: configuration request %s sent (%s); waiting for its notification",
                 nf_id, rid, METHOD[operation])
    # lock the row (to our commit) and see whether the notification already came
    row = step.session.execute(update(Event.__table__).where(Event.__table__.c.id == step.id)
                               .values(status=Event.__table__.c.status)
                               .returning(Event.__table__.c.status, Event.__table__.c.result)).first()
    notification = (row.result or {}).get("notification") if row else None
    if row is not None and row.status == EventStatus.PENDING and notification is not None:
        return _result(notification, len(elements))
    return wait(timeout)


def _result(notification: dict, count: int) -> Outcome:
    if str(notification.get("status", "")).upper() == "SUCCESS":
        return done({"resources": count})
    errors = [str(e) for e in notification.get("error") or [] if e]
    return fail("service configuration failed: " + ("; ".join(errors) or "the configurator "
                                                    "reported a failure"))
