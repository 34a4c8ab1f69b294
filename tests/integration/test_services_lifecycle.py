"""Services own the drivers and the database engine of a process, and stop them
on every way a worker ends: SIGHUP (retired after its successor is ready),
SIGTERM (drain) and an in-process owner calling ``stop``."""
from __future__ import annotations

import re
import signal
import time

import pytest

from nfp import config as nfp_config
from nfp.db import migrate
from nfp.testing.harness import Harness
from nfp.workers.lifecycle.services import Services

pytestmark = pytest.mark.integration

FW = {"config": [{"resource": "firewall", "resource_data": {"rules": [
    {"name": "web", "protocol": "tcp", "destination_port": 80}]}}]}
STOPPED = re.compile(r"services stopped in pid (\d+): device drivers ([a-z, ]+) and")


def _body(name):
    return {"name": name, "tenant_id": "t1", "service_config": FW,
            "service_profile": {"service_type": "firewall",
                                "service_flavor": "service_vendor=memory,device_type=static"}}


def _stopped(logs: str) -> dict[int, str]:
    return {int(m.group(1)): m.group(2) for m in STOPPED.finditer(logs)}


def _wait_for(predicate, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_sighup_and_sigterm_stop_each_workers_services(tmp_path):
    h = Harness(tmp_path, config={"orchestrator": {"workers": 2}})
    h.start()
    try:
        for i in range(4):  # every worker uses the static driver at least once
            nf = h.client.create_network_function(_body(f"fw{i}"))
            h.wait_for_status(nf["id"], "ACTIVE", timeout=60)
        before = set(h.worker_pids())
        assert len(before) == 2
        h.proc.send_signal(signal.SIGHUP)
        assert _wait_for(lambda: before <= set(_stopped(h.logs())))
        stopped = _stopped(h.logs())
        assert all("static" in stopped[pid] for pid in before if stopped[pid] != "none")
        assert _wait_for(lambda: len(set(h.worker_pids()) - before) == 2)
        after = set(h.worker_pids()) - before
        assert h.stop(timeout=60) == 0
        assert after <= set(_stopped(h.logs()))
    finally:
        h.stop()
        h.client.close()


def test_services_stop_closes_drivers_and_disposes_its_engine(tmp_path):
    conf = nfp_config.load(None, {"state_dir": str(tmp_path)}, environ={})
    migrate.upgrade(conf.database_url)
    services = Services(conf)
    services.start()
    driver = services.device_driver("static")
    assert driver.context is services.context  # set up with the process's resources
    engine = services._engine
    with services.sessionmaker() as session:
        session.connection()
    assert engine.pool.checkedin() >= 1
    services.stop()
    services.stop()  # idempotent
    assert engine.pool.checkedin() == 0  # disposed: no pooled connection left open
    assert services._drivers == {}
