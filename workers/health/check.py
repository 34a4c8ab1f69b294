"""A one-off active health check of one device (``nfp health check``): the liveness
probe and the deep check, now, answered in ONAP's HealthCheck shape."""
from __future__ import annotations

import datetime as dt
import time
from typing import Optional

from nfp.drivers.config.base import DeviceTarget
from nfp.workers.health.probes import Answer, Prober
from nfp.workers.health.store import probe_target


def probe_once(target, timeout: float) -> Answer:
    """Probe one target and wait for its answer (at most ``timeout`` plus a little)."""
    answers: list[Answer] = []
    prober = Prober(answers.append, timeout)
    try:
        if not prober.send(target):
            return Answer(target, False, False, "probe could not be sent (no buffer or descriptor)")
        end = time.monotonic() + timeout + 1.0
        while not answers and time.monotonic() < end:
            prober.poll(0.1)
        return answers[0] if answers else Answer(target, False, False, "no answer")
    finally:
        prober.close()


def check_device(conf, nfd, vendor: str, configurator, nf_id: Optional[str] = None) -> dict:
    """Liveness then deep check of ``nfd`` (a device row); ``{"identifier", "state", "time", "info"}``."""
    extra = dict(nfd.extra or {})
    info: dict = {"stored_health": nfd.health, "mgmt_ip_address": nfd.mgmt_ip_address}
    healthy = False
    if nfd.mgmt_ip_address:
        target = probe_target(nfd.id, nfd.mgmt_ip_address, extra, conf.health.probe)
        answer = probe_once(target, conf.health.timeout)
        info["liveness"] = {"probe": target.kind if target.port is None else f"tcp/{target.port}",
                            "ok": answer.ok, "reason": answer.reason,
                            "rtt_ms": round(answer.rtt * 1000, 2) if answer.rtt is not None else None}
        healthy = answer.ok
    else:
        info["liveness"] = {"ok": False, "reason": "device has no management address"}
    if healthy and configurator is not None:
        where = DeviceTarget(nfd.id, nfd.mgmt_ip_address, vendor, nfd.credentials_ref, extra)
        element = {"resource": "healthmonitor", "resource_data": {
            "vmid": nfd.id, "mgmt_ip": nfd.mgmt_ip_address, "periodicity": "initial"}}
        outcome = configurator.configure("create", "generic", [element], where, nf_id)
        info["deep"] = {"ok": outcome.ok, "reason": outcome.error or ""}
        healthy = outcome.ok
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    return {"identifier": nfd.id, "state": "healthy" if healthy else "unhealthy",
            "time": now.isoformat() + "Z", "info": info}
