"""The memory appliance (a test double in nfp.testing) and the queue-durability
warning: a change writes only its own element, read_device still returns the
whole device, the default appliance does not cap a benchmark, and nfp warns
when RabbitMQ queues are not durable."""
from __future__ import annotations

import os

from nfp.config import NfpConfig
from nfp.drivers.config.base import ConfigRequest, ConfigStatus, DeviceTarget
from nfp.rpc.topology import durability_warning
from nfp.testing.memory_config import MemoryConfigDriver, device_dir, read_device

DEVICE = DeviceTarget(id="memory-appliance-1", mgmt_ip_address=None, service_vendor="memory")


def _apply(driver, nf_id, resource, data, operation="create"):
    return driver.apply(ConfigRequest(operation, "firewall", resource, data, DEVICE, nf_id=nf_id))


def test_each_change_writes_only_its_own_small_element(tmp_path):
    driver = MemoryConfigDriver(NfpConfig(state_dir=str(tmp_path)))
    rules = {"rules": [{"name": "web", "action": "allow"}]}
    for i in range(300):
        assert _apply(driver, f"nf-{i}", "firewall", rules).status == ConfigStatus.SUCCESS
    assert _apply(driver, "nf-0", "routes", {"routes": []}).status == ConfigStatus.SUCCESS
    sizes = [entry.stat().st_size for nf in os.scandir(device_dir(tmp_path, DEVICE.id))
             for entry in os.scandir(nf.path)]
    assert len(sizes) == 301 and max(sizes) < 200  # no file grows with the device
    state = read_device(tmp_path, DEVICE.id)
    assert len(state) == 300 and state["nf-0"] == {"firewall": rules, "routes": {"routes": []}}
    _apply(driver, "nf-0", "firewall", {}, operation="delete")
    _apply(driver, "nf-0", "routes", {}, operation="delete")
    assert "nf-0" not in read_device(tmp_path, DEVICE.id) and len(read_device(tmp_path, DEVICE.id)) == 299


def test_ids_cannot_escape_the_device_directory(tmp_path):
    driver = MemoryConfigDriver(NfpConfig(state_dir=str(tmp_path)))
    _apply(driver, "../../etc", "firewall", {"rules": []})
    assert read_device(tmp_path, DEVICE.id) == {"../../etc": {"firewall": {"rules": []}}}
    assert not (tmp_path / "etc").exists()


def test_the_default_appliance_holds_far_more_than_a_benchmark():
    device = NfpConfig().device_drivers["static"]["devices"][0]
    assert device["max_interfaces"] // 2 >= 100_000


def test_non_durable_rabbitmq_queues_are_warned_about():
    amqp = {"url": "amqp://guest:guest@127.0.0.1:5672//"}
    assert "loses every request" in durability_warning(NfpConfig(transport=amqp))
    assert durability_warning(NfpConfig(transport={**amqp, "durable_queues": True})) is None
    assert durability_warning(NfpConfig(transport={**amqp, "quorum_queues": True})) is None
    assert durability_warning(NfpConfig(state_dir="/tmp/x")) is None  # the filesystem bus
