"""The fleet circuit breaker on real netns devices: five firewall NFs, each on its own
device; three devices (60 %) are killed at once. The breaker opens instead of healing
them: a stock oslo.messaging listener hears ``nfp.device.heal.breaker_open``, and
while the devices stay DOWN well past ``heal.after`` no heal step is started and no
device is re-created. (One killed device alone is healed and passes packets again:
``test_heal_netns.py``.) Everything is awaited by polling; no duration is asserted."""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time

import pytest
from sqlalchemy import func, select

from nfp.drivers.device.netns import NetnsDeviceDriver, iproute, naming
from nfp.testing.topology import Topology
from test_assurance_netns import notifications  # noqa: F401  (the stock oslo listener fixture)

pytestmark = pytest.mark.integration

FLAVOR = "service_vendor=linux,device_type=netns"
HEAL_AFTER = 2
CONFIG = {"orchestrator": {"device_poll_interval": 0.2}, "device_drivers": {"netns": {}},
          "health": {"liveness_period": 1, "retry_interval": 0.5, "timeout": 1, "failures_down": 3,
                     "refresh_interval": 1, "deep_period": 0, "flush_interval": 0.5,
                     "contact_write_interval": 2},
          "heal": {"after": HEAL_AFTER, "cooldown": 5, "max_backoff": 20, "breaker_share": 0.5,
                   "breaker_min_devices": 3},
          "reconcile": {"interval": 0}}
RULES = [{"name": "web", "protocol": "tcp", "destination_port": 80}]
FLEET, KILLED = 5, 3


@pytest.fixture
def env(tmp_path, netns_required, rabbit_url):
    from nfp.testing.harness import Harness
    with Topology() as topo:
        provider = topo.network("provider", "198.18.1.0/24", gateway_ip="198.18.1.1")
        consumer = topo.network("consumer", "198.18.2.0/24", gateway_ip="198.18.2.1")
        harness = Harness(tmp_path / "nfp", config=CONFIG, workers=2, transport_url=rabbit_url)
        try:
            with harness:
                yield harness, provider, consumer
        finally:
            NetnsDeviceDriver(harness.conf, {}).startup_sweep(known_ids=set())


def _health(harness) -> list[dict]:
    out = subprocess.run([sys.executable, "-m", "nfp.cli.main", "--config", str(harness.config_file),
                          "health", "list", "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _until(what, predicate, timeout=180.0):
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _heals(harness) -> tuple[int, int]:
    """Heal steps ever started, and the sum of the devices' heal attempts."""
    from nfp.db.engine import make_engine
    from nfp.db.models import Event, NetworkFunctionDevice
    engine = make_engine(harness.conf.database_url)
    try:
        with engine.connect() as conn:
            steps = conn.scalar(select(func.count()).select_from(Event).where(
                Event.type.in_(["device.heal", "device.heal_configure"])))
            attempts = conn.scalar(select(func.coalesce(func.sum(NetworkFunctionDevice.heal_attempts), 0)))
    finally:
        engine.dispose()
    return steps, attempts


def _down_long_enough(rows: list[dict], device_ids: set[str]) -> bool:
    """Every device in ``device_ids`` has been DOWN for three times ``heal.after``."""
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    down = [r for r in rows if r["device_id"] in device_ids and r["health"] in ("UNHEALTHY", "UNREACHABLE")]
    return len(down) == len(device_ids) and all(
        now - dt.datetime.fromisoformat(r["last_change"].rstrip("Z")) > dt.timedelta(seconds=3 * HEAL_AFTER)
        for r in down)


def test_sixty_percent_killed_at_once_trips_the_breaker_and_nothing_is_healed(env, notifications):  # noqa: F811
    harness, provider, consumer = env
    nfs = [harness.client.create_network_function({
        "name": f"fw{i}", "tenant_id": f"tenant-{i}",  # one device per tenant: no sharing
        "service_profile": {"id": "p1", "service_type": "firewall", "service_flavor": FLAVOR},
        "provider": provider.port(f"198.18.1.{11 + i}", "provider"),
        "consumer": consumer.port(f"198.18.2.{11 + i}", "consumer"),
        "service_config": {"config": [{"resource": "firewall", "resource_data": {"rules": RULES}}]}})
        for i in range(FLEET)]
    for nf in nfs:
        harness.wait_for_status(nf["id"], "ACTIVE", timeout=240)
    rows = _until("every device HEALTHY", lambda: (lambda r: r if len(r) == FLEET and all(
        d["health"] == "HEALTHY" for d in r) else None)(_health(harness)))
    victims = {r["device_id"] for r in rows[:KILLED]}
    namespaces = [naming.device_netns(d) for d in victims]
    for netns in namespaces:  # all three at once: the management network looks broken
        iproute.kill_pids(iproute.netns_pids(netns))
        subprocess.run(["ip", "netns", "delete", netns], check=True)

    _until("the breaker alarm", lambda: [p for e, p in list(notifications)
                                         if e == "nfp.device.heal.breaker_open"])
    alarm = next(p for e, p in list(notifications) if e == "nfp.device.heal.breaker_open")
    assert alarm["down"] == KILLED and alarm["watched"] == FLEET, alarm
    # past heal.after, three times over, with the breaker open: no heal started, nothing re-created
    _until("the devices DOWN well past heal.after", lambda: _down_long_enough(_health(harness), victims))
    assert _heals(harness) == (0, 0)
    assert not [n for n in namespaces if iproute.netns_exists(n)]
    healthy = [r for r in _health(harness) if r["device_id"] not in victims]
    assert [r["health"] for r in healthy] == ["HEALTHY"] * (FLEET - KILLED)
