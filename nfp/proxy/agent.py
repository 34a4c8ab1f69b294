"""The configurator agent: the orchestrator's configurator RPC in, REST over the unix
socket out.

It consumes ``proxy.topic`` (casts of seed 001's methods with ``request_data``, the
REST body, and ``request_id``) and POSTs each one to the proxy end. The AMQP
message is acked only once the configurator has durably accepted the request (or
answered that it already had it), so a crash of the agent, the proxy end or the
configurator leaves it queued and it is sent again with the same request id, which
the configurator applies once. While the configurator cannot be reached the agent
retries the message in hand with backoff (requests to one appliance must stay in
order). A request the configurator refuses (4xx) is not retried: the agent casts
its ``failure`` notification, naming the field, so the orchestrator's parked step
ends at once instead of at its deadline.
"""
from __future__ import annotations

import logging
import threading

from kombu.mixins import ConsumerMixin

from nfp import backoff
from nfp.configurator.api import REQUEST_ID
from nfp.configurator.models import METHODS, strip_secrets
from nfp.proxy.http import ConfiguratorHttp, Refused, Unavailable
from nfp.proxy.notifier import METHOD, SERVICE_CONTEXT
from nfp.rpc import codec, topology
from nfp.rpc.transport import connection_for

LOG = logging.getLogger(__name__)
RETRY_START = 0.2


def failure_notification(body: dict, request_id: str, error: str) -> dict:
    """Seed 001's notification for a request that was never applied: every element a
    ``failure`` with ``error``; the context without credential-like keys."""
    info = body.get("info") if isinstance(body.get("info"), dict) else {}
    elements = body.get("config") if isinstance(body.get("config"), list) else []
    return {"request_id": request_id,
            "info": {"service_type": info.get("service_type", ""),
                     "context": strip_secrets(info.get("context") or {})},
            "notification": [{"resource": (e.get("resource") if isinstance(e, dict) else "") or "",
                              "data": {"status_code": "failure", "error_msg": error}}
                             for e in elements] or [{"resource": "", "data": {
                                 "status_code": "failure", "error_msg": error}}]}


class Agent(ConsumerMixin):
    """Consumes ``conf.proxy.topic`` and forwards to ``target`` (the proxy end).

    Parameters:
        conf: the configuration (transport, topic, retry_max).
        target: the proxy end (:class:`ConfiguratorHttp` over the unix socket); not owned.
        caster: an RpcClient on the orchestrator's notification topic; not owned.
    """

    def __init__(self, conf, target: ConfiguratorHttp, caster):
        self.conf, self.target, self.caster = conf, target, caster
        self.connection = connection_for(conf.transport_url, conf)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.forwarded = 0

    @property
    def should_stop(self) -> bool:  # read by ConsumerMixin's loops
        return self._stop.is_set()

    def get_consumers(self, Consumer, channel) -> list:
        queue = topology.topic_queue(self.conf, self.conf.proxy.topic)
        return [Consumer([queue], on_message=self.on_message, prefetch_count=8, no_ack=False)]

    def on_consume_ready(self, connection, channel, consumers, **kwargs) -> None:
        LOG.info("configurator agent consuming %s on exchange %s", self.conf.proxy.topic,
                 self.conf.transport.control_exchange)

    def on_connection_error(self, exc, interval) -> None:
        LOG.error("configurator agent cannot reach the broker (%s); requests stay queued; "
                  "retrying in %.1f s", exc.__class__.__name__, interval)

    def on_message(self, message) -> None:
        """Forward one request (module docstring); ack it once it is settled."""
        try:
            req = codec.decode_request(message.body, message.headers or {}, self.conf.proxy.topic)
        except codec.CodecError as exc:
            LOG.error("malformed message on %s dropped: %s", self.conf.proxy.topic, exc)
            message.ack()
            return
        body, rid = req.args.get("request_data"), req.args.get("request_id")
        if req.method not in METHODS or not isinstance(body, dict) or not isinstance(rid, str) \
                or not REQUEST_ID.match(rid):
            LOG.error("request %.64r on %s dropped: expected one of %s with request_data (an "
                      "object) and request_id ([A-Za-z0-9_.:-]{1,64})", req.method,
                      self.conf.proxy.topic, ", ".join(sorted(METHODS)))
            message.ack()
            return
        if self._forward(req.method, body, rid):
            message.ack()
        # else stopping: not acked, so the broker delivers it again after the restart

    def _forward(self, method: str, body: dict, rid: str) -> bool:
        attempt = 0
        while not self.should_stop:
            try:
                answer = self.target.post(method, body, rid)
                self.forwarded += 1
                LOG.info("request %s (%s) forwarded: %s", rid, method, answer.get("status"))
                return True
            except Refused as exc:
                LOG.error("request %s (%s) refused by the configurator: %s; casting its failure",
                          rid, method, exc.error)
                self.caster.cast(SERVICE_CONTEXT, METHOD,
                                 notification_data=failure_notification(body, rid, exc.error))
                return True
            except Unavailable as exc:
                attempt += 1
                pause = backoff.delay(attempt, RETRY_START, self.conf.proxy.retry_max)
                LOG.warning("request %s (%s) not forwarded (%s); it stays queued; retrying in %.1f s",
                            rid, method, exc, pause)
                self._stop.wait(pause)
        return False

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="agent", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        failures = 0
        while not self.should_stop:
            try:
                self.run()
            except Exception:  # not a broker error: a bug must not end the agent
                failures += 1
                pause = backoff.delay(failures, RETRY_START, self.conf.proxy.retry_max)
                LOG.exception("configurator agent failed; unacked requests return to the queue; "
                              "consuming again in %.1f s", pause)
                self._stop.wait(pause)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop consuming; the request in hand is left unacked (redelivered later)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.connection.release()
