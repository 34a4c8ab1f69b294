"""The netns device driver against the real kernel: namespaces, veths, bridges, sshd."""
from __future__ import annotations

import os
import subprocess
import threading

import pytest

from nfp.drivers.config.base import DeviceTarget
from nfp.drivers.device.netns import NetnsDeviceDriver, iproute, keys, naming
from nfp.testing.topology import NetnsLab

pytestmark = pytest.mark.integration


@pytest.fixture
def lab(tmp_path, netns_required):
    with NetnsLab(tmp_path) as lab:
        yield lab


def _sshd_pids(workdir: str) -> list[int]:
    return iproute.find_pids(workdir + "/")


def test_create_makes_a_namespace_with_sshd_and_a_pinned_host_key(lab):
    device, target = lab.device()
    extra = device["extra"]
    assert iproute.netns_exists(extra["netns"])
    assert lab.devices.get_network_function_device_status(device) == "ACTIVE"
    # the fingerprint on the device row is the key sshd really serves
    pub = os.path.join(extra["workdir"], "ssh_host_ed25519_key.pub")
    served = subprocess.run(["ssh-keygen", "-lf", pub], capture_output=True, text=True).stdout
    assert extra["host_key_fingerprint"] in served
    assert keys.fingerprint(extra["host_key"]) == extra["host_key_fingerprint"]
    # key login with the pinned host key works
    assert lab.apply(target, "healthmonitor", {"periodicity": "initial"}).ok
    addrs = lab.config._runner(target)(["ip", "-br", "addr"]).stdout
    assert device["mgmt_ip_address"] in addrs and "198.18.1.1/24" in addrs and "198.18.2.1/24" in addrs


def test_a_different_host_key_is_refused(lab):
    device, target = lab.device()
    other = keys.generate_host_key(lab.conf.state_path / "other_key")
    forged = DeviceTarget(id=target.id, mgmt_ip_address=target.mgmt_ip_address, service_vendor="linux",
                          extra={**target.extra, "host_key": other})
    result = lab.apply(forged, "healthmonitor", {})
    assert not result.ok
    assert "host key" in result.error and "does not match" in result.error


def test_a_device_without_a_pinned_key_is_refused(lab):
    device, target = lab.device()
    lab.config.pool.known_hosts = keys.KnownHosts(lab.conf.state_path / "empty_known_hosts")
    bare = DeviceTarget(id=target.id, mgmt_ip_address=target.mgmt_ip_address, service_vendor="linux",
                        extra={k: v for k, v in target.extra.items() if k != "host_key"})
    result = lab.apply(bare, "healthmonitor", {})
    assert not result.ok and "no pinned host key" in result.error


def test_plug_and_unplug_a_data_port(lab):
    device, target = lab.device()
    third = lab.topo.network("third", "198.18.3.0/24")
    port = third.device_port("198.18.3.1", "consumer")
    assert lab.devices.plug_network_function_device_interface({"id": device["id"], "ports": [port]})
    inner = naming.inner_link("consumer", port["id"])
    assert "198.18.3.1/24" in iproute.ip("-br", "addr", "show", inner, netns=device["extra"]["netns"])
    assert iproute.link_exists(third.bridge)
    # plugging again is a no-op, not an error
    assert lab.devices.plug_network_function_device_interface({"id": device["id"], "ports": [port]})
    assert lab.devices.unplug_network_function_device_interface({"id": device["id"], "ports": [port]})
    assert inner not in iproute.veths_in(device["extra"]["netns"])
    assert not iproute.link_exists(third.bridge)  # nothing else was on it


def test_config_info_is_accepted_by_the_linux_driver(lab):
    device, target = lab.device()
    info = lab.devices.get_network_function_device_config_info({"ports": device["ports"]})
    resources = {c["resource"]: c["resource_data"] for c in info["config"]}
    assert {i["ip_address"] for i in resources["interfaces"]["interfaces"]} == {"198.18.1.1/24",
                                                                                "198.18.2.1/24"}
    for element in info["config"]:
        result = lab.apply(target, element["resource"], element["resource_data"], service_type="generic")
        assert result.ok, result.error
    health = lab.devices.get_network_function_device_healthcheck_info(device)["config"][0]
    assert lab.apply(target, health["resource"], health["resource_data"]).ok


def test_delete_leaves_nothing_behind(lab):
    device, _ = lab.device()
    netns, workdir = device["extra"]["netns"], device["extra"]["workdir"]
    host_links = [naming.data_link(device["id"], p["id"]) for p in device["ports"]]
    assert _sshd_pids(workdir)
    lab.devices.delete_network_function_device({"id": device["id"]})
    assert not iproute.netns_exists(netns)
    assert not any(iproute.link_exists(link) for link in host_links)
    assert not _sshd_pids(workdir)
    assert not os.path.exists(workdir)
    assert lab.devices.get_network_function_device_status(device) == "ERROR"
    # deleting again is fine
    lab.devices.delete_network_function_device({"id": device["id"]})


def test_create_again_with_the_same_id_finds_the_device(lab):
    device, _ = lab.device()
    again = lab.devices.create_network_function_device({"id": device["id"], "name": "fw"})
    assert again["mgmt_ip_address"] == device["mgmt_ip_address"]
    assert again["extra"]["host_key"] == device["extra"]["host_key"]


def test_sweep_after_a_crash_removes_only_unowned_devices(lab):
    kept, _ = lab.device("kept")
    orphan, _ = lab.device("orphan")
    # a new driver instance on the same state stands for the restarted daemon
    restarted = NetnsDeviceDriver(lab.conf, {})
    restarted.startup_sweep(known_ids={kept["id"]})
    assert not iproute.netns_exists(orphan["extra"]["netns"])
    assert not _sshd_pids(orphan["extra"]["workdir"])
    assert not os.path.exists(orphan["extra"]["workdir"])
    assert restarted.get_network_function_device_status(kept) == "ACTIVE"


def test_sweep_kills_a_stray_sshd_whose_namespace_was_lost(lab):
    device, _ = lab.device()
    netns, workdir = device["extra"]["netns"], device["extra"]["workdir"]
    # the crash: the namespace name and files vanish, the daemon keeps running
    iproute.run([iproute.IP, "netns", "delete", netns])
    subprocess.run(["rm", "-rf", workdir], check=True)
    assert _sshd_pids(workdir)
    lab.devices.startup_sweep(known_ids=set())
    assert not _sshd_pids(workdir)
    assert not iproute.link_exists(naming.mgmt_link(int(device["mgmt_ip_address"].split(".")[-1])))


def test_concurrent_creates_get_distinct_management_addresses(lab):
    results: list = []

    def make():
        results.append(lab.devices.create_network_function_device({"name": "c"}))

    threads = [threading.Thread(target=make) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert all(results) and len(results) == 4
        assert len({d["mgmt_ip_address"] for d in results}) == 4
        assert all(lab.devices.get_network_function_device_status(d) == "ACTIVE" for d in results)
    finally:
        for device in results:
            if device:
                lab.devices.delete_network_function_device({"id": device["id"]})
