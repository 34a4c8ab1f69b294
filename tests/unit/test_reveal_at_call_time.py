"""The direct configurator client reveals ``secret:<name>`` references at the driver
call and nowhere else: the memory device gets the value, the caller's elements keep
the reference, ``diff`` compares the value (no endless drift), and a reference that
does not resolve fails the element naming the secret, never pushing the reference
text to the device. A real drift's diff (shown, stored, adopted) holds the
reference where either side held the value."""
from __future__ import annotations

import copy
import json

import pytest

from nfp.config import NfpConfig
from nfp.db import migrate
from nfp.db.engine import make_engine, make_sessionmaker
from nfp.drivers.component import DriverContext
from nfp.drivers.config.base import DeviceTarget
from nfp.secrets import SecretStore, load_key
from nfp.testing.memory_config import read_device, write_element
from nfp.workers.configurator.client import DirectConfiguratorClient

DEVICE = DeviceTarget(id="mem-1", mgmt_ip_address="127.0.0.1", service_vendor="memory")


@pytest.fixture
def direct(tmp_path):
    """A started direct client on a fresh database, and that database's secret store."""
    conf = NfpConfig(state_dir=str(tmp_path))
    migrate.upgrade(conf.database_url)
    engine = make_engine(conf.database_url)
    sessions = make_sessionmaker(engine)
    client = DirectConfiguratorClient(conf)
    client.setup(DriverContext(conf=conf, sessionmaker=sessions))
    client.start()
    try:
        yield client, SecretStore(sessions, load_key(conf))
    finally:
        client.stop()
        engine.dispose()


def _config(description: str) -> list[dict]:
    return [{"resource": "firewall", "resource_data": {"rules": [
        {"name": "web", "protocol": "tcp", "destination_port": 80, "description": description}]}}]


def test_a_reference_is_revealed_for_the_device_only(tmp_path, direct):
    client, store = direct
    store.put("nf/nf-1/abc", "s3cret-value")
    config = _config("secret:nf/nf-1/abc")
    sent = copy.deepcopy(config)
    outcome = client.configure("create", "firewall", config, DEVICE, "nf-1")
    assert outcome.ok, outcome.error
    [rule] = read_device(tmp_path, DEVICE.id)["nf-1"]["firewall"]["rules"]
    assert rule["description"] == "s3cret-value"
    assert config == sent  # the caller's (stored) elements keep the reference
    [diff] = client.diff("firewall", config, DEVICE, "nf-1")
    assert diff.compared and diff.empty, diff


def test_a_reference_that_does_not_resolve_fails_closed(tmp_path, direct):
    client, _ = direct
    outcome = client.configure("create", "firewall", _config("secret:nf/nf-1/missing"), DEVICE, "nf-1")
    assert not outcome.ok
    assert "nf/nf-1/missing" in outcome.error and outcome.error.startswith("firewall:")
    assert read_device(tmp_path, DEVICE.id) == {}  # nothing reached the device


def test_a_drift_diff_shows_the_reference_not_the_value(tmp_path, direct):
    client, store = direct
    store.put("nf/nf-1/abc", "s3cret-value")
    config = _config("secret:nf/nf-1/abc")
    assert client.configure("create", "firewall", config, DEVICE, "nf-1").ok
    held = read_device(tmp_path, DEVICE.id)["nf-1"]["firewall"]
    held["rules"][0]["destination_port"] = "81"  # someone changed the device
    write_element(tmp_path, DEVICE.id, "nf-1", "firewall", held)
    [diff] = client.diff("firewall", config, DEVICE, "nf-1")
    [change] = diff.to_change
    shown = json.dumps(diff.to_dict())
    assert "s3cret-value" not in shown
    assert change.desired["description"] == change.actual["description"] == "secret:nf/nf-1/abc"


def test_the_configurator_tier_fails_a_reference_it_cannot_resolve(tmp_path):
    """nfp-configurator has its own database, so an orchestrator NF's sealed secret is
    not in its store: the element fails with the secret's name, and nothing is pushed."""
    from nfp.testing.configurator import ConfiguratorHarness, firewall_body
    with ConfiguratorHarness(tmp_path) as h:
        body = firewall_body(rules=[{"name": "web", "protocol": "tcp", "destination_port": 80,
                                     "description": "secret:nf/nf-1/abc"}])
        assert h.post("create_network_function_config", body, request_id="r1").status_code == 200
        h.engine.join()
        [note] = h.get_notifications()
    [element] = note["notification"]
    assert element["data"]["status_code"] == "failure"
    assert "nf/nf-1/abc" in element["data"]["error_msg"]
