"""The dictionary driver's compare against its simulator, the direct client's diff
and lifecycle, and ``nfp nf diff``: the device never changes while nfp compares."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from nfp.config import NfpConfig
from nfp.db import all_models
from nfp.db.engine import make_engine, make_sessionmaker
from nfp.db.models import (DeviceStatus, NetworkFunction, NetworkFunctionDevice,
                           NetworkFunctionInstance)
from nfp.drivers.component import DriverContext
from nfp.drivers.config.base import ConfigRequest
from nfp.secrets import SecretStore, load_key
from nfp.testing.simulators.pfsense import PfSenseSimulator
from nfp.testing.simulators.wiring import apply_to, device_target, dictionary_driver
from nfp.workers.configurator.client import DirectConfiguratorClient

pytestmark = pytest.mark.integration

API_KEY = "diff-KEY-5c1e0a9b"
FIREWALL = {"rules": [
    {"name": "web", "protocol": "tcp", "destination_ip_address": "198.18.20.5/32", "destination_port": 80},
    {"name": "dns", "protocol": "udp", "destination_port": 53, "action": "deny"},
]}


@pytest.fixture
def sim():
    with PfSenseSimulator(api_key=API_KEY) as simulator:
        yield simulator


@pytest.fixture
def driver(tmp_path):
    with dictionary_driver(tmp_path, {"api_key": API_KEY}, retries=0, timeout=5) as drv:
        yield drv


def _diff(driver, sim, data=FIREWALL):
    return driver.diff(ConfigRequest("update", "firewall", "firewall", data, device_target(sim), nf_id="nf-1"))


def test_a_rule_removed_behind_nfps_back_shows_as_to_add_and_the_diff_changes_nothing(driver, sim):
    assert apply_to(driver, sim, "create", "firewall", FIREWALL).ok
    assert _diff(driver, sim).empty
    web = next(r for r in sim.table("firewall/rule") if " web: " in r["descr"])
    sim.drift({"op": "remove", "model": "firewall/rule", "id": web["id"]})
    before = sim.state()

    diff = _diff(driver, sim)
    assert [c.name for c in diff.to_add] == ["web"] and not diff.to_change and not diff.to_remove
    assert diff.to_add[0].external_id == str(web["tracker"]) and "missing on device" in diff.to_add[0].reason
    assert sim.state() == before                                   # compare changed nothing

    changed = {"rules": [dict(FIREWALL["rules"][1], action="allow")]}
    diff = _diff(driver, sim, changed)
    assert [c.name for c in diff.to_change] == ["dns"] and [c.name for c in diff.to_remove] == ["web"]
    assert diff.to_remove[0].reason == "recorded only: already gone from device"
    assert sim.state() == before
    assert API_KEY not in json.dumps(diff.to_dict())


def test_a_commit_verifies_by_reading_back(driver, sim):
    seen = sim.requests_seen
    assert apply_to(driver, sim, "create", "firewall", FIREWALL).ok
    # two pushes, one apply (the commit), then one list to read them back
    assert sim.requests_seen - seen == 4


def test_the_direct_client_diffs_each_element_and_owns_its_drivers(tmp_path, sim):
    conf = NfpConfig(state_dir=str(tmp_path), config_drivers={"pfsense": {"retries": 0, "timeout": 5}})
    engine = make_engine(conf.database_url)
    all_models().create_all(engine)
    sessions = make_sessionmaker(engine)
    secrets = SecretStore(sessions, load_key(conf))
    secrets.put("dev-1-credentials", {"api_key": API_KEY})
    client = DirectConfiguratorClient(conf)
    client.setup(DriverContext(conf, sessions, secrets))
    client.start()
    config = [{"resource": "firewall", "resource_data": FIREWALL}, {"resource": "heat", "resource_data": {}}]
    target = device_target(sim)
    assert client.configure("create", "firewall", config[:1], target, "nf-1").ok
    driver = client.driver("firewall", "pfsense")
    assert driver.sessionmaker is sessions and driver._own_engine is None   # the context's engine
    sim.drift({"op": "remove", "model": "firewall/rule", "id": 0})
    diffs = client.diff("firewall", config, target, "nf-1")
    assert [d.to_dict()["resource"] for d in diffs] == ["firewall", "heat"]
    assert [c.name for c in diffs[0].to_add] == ["web"] and diffs[1].compared is False
    assert driver._transports
    client.stop()
    assert not driver._transports and client._drivers == {}
    client.stop()                                                   # idempotent
    engine.dispose()


def test_nf_diff_command_prints_the_structured_diff(tmp_path):
    from nfp.cli.main import cli
    conf = NfpConfig(state_dir=str(tmp_path))
    engine = make_engine(conf.database_url)
    all_models().create_all(engine)
    config = {"config": [{"resource": "firewall", "resource_data": {"rules": [{"name": "ssh", "protocol": "tcp",
                                                                                "destination_port": 22}]}}]}
    with make_sessionmaker(engine).begin() as session:
        session.add(NetworkFunctionDevice(id="dev-m", status=DeviceStatus.ACTIVE, device_type="static",
                                          service_vendor="memory", mgmt_ip_address="198.18.0.9"))
        session.add(NetworkFunction(id="nf-m", tenant_id="t", status="ACTIVE", service_type="firewall",
                                    service_vendor="memory", service_config=json.dumps(config)))
        session.flush()
        session.add(NetworkFunctionInstance(id="nfi-m", network_function_id="nf-m", status="ACTIVE",
                                            network_function_device_id="dev-m"))
    engine.dispose()
    runner = CliRunner()
    result = runner.invoke(cli, ["--state-dir", str(tmp_path), "nf", "diff", "nf-m", "--json"])
    assert result.exit_code == 0, result.output
    (element,) = json.loads(result.output)["elements"]
    assert element["resource"] == "firewall" and [c["name"] for c in element["to_add"]] == ["rules/ssh", "settings"]
    assert not (tmp_path / "memory-devices" / "dev-m.json").exists()      # nothing was written
    table = runner.invoke(cli, ["--state-dir", str(tmp_path), "nf", "diff", "nf-m"])
    assert table.exit_code == 0 and "rules/ssh" in table.output
    missing = runner.invoke(cli, ["--state-dir", str(tmp_path), "nf", "diff", "nf-x"])
    assert missing.exit_code != 0 and "nf-x not found" in missing.output
