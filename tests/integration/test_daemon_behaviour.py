"""The daemon's process behaviour on embedded defaults (SQLite + filesystem bus):
pre-emption, signals, boot errors and bad input, all through the real RPC path."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import yaml

from nfp.rpc.client import RemoteError
from nfp.testing.harness import Harness
from nfp.testing.memory_config import read_device

pytestmark = pytest.mark.integration

FW = {"config": [{"resource": "firewall", "resource_data": {"rules": [
    {"name": "web", "protocol": "tcp", "destination_port": 80}]}}]}


def nf_body(name="fw", config=FW, vendor="memory"):
    return {"name": name, "tenant_id": "t1", "service_config": config,
            "service_profile": {"service_type": "firewall",
                                "service_flavor": f"service_vendor={vendor},device_type=static"}}


def test_delete_preempts_inflight_create_and_drops_late_results(tmp_path):
    with Harness(tmp_path, config={"config_drivers": {"memory": {"delay": 1.5}}}) as h:
        nf = h.client.create_network_function(nf_body())
        time.sleep(0.4)  # the create is now blocked inside a device call
        h.client.delete_network_function(nf["id"])
        assert h.client.get_network_function(nf["id"])["status"] == "PENDING_DELETE"
        h.wait_gone(nf["id"], timeout=60)
        assert nf["id"] not in read_device(tmp_path, "memory-appliance-1")
        assert "pre-empted" in h.logs()


def test_bad_input_gets_named_errors_and_daemon_keeps_serving(tmp_path):
    with Harness(tmp_path) as h:
        with pytest.raises(RemoteError) as err:
            h.client.call("create_network_function", network_function={"tenant_id": ["not", "a", "str"]})
        assert "network_function.tenant_id" in str(err.value)
        with pytest.raises(RemoteError) as err:
            h.client.call("get_network_function", network_function_id={"x": 1})
        assert "network_function_id" in str(err.value)
        with pytest.raises(RemoteError) as err:
            h.client.call("get_network_functions", filters={"colour": ["red"]})
        assert "filters.colour" in str(err.value)
        with pytest.raises(RemoteError) as err:
            h.client.call("no_such_method")
        assert "NoSuchMethod" in str(err.value.exc_type) or "no_such_method" in str(err.value)
        nf = h.client.create_network_function(nf_body())
        h.wait_for_status(nf["id"], "ACTIVE")
        # a bad cast on an existing NF marks it ERROR with the reason
        h.client.cast("update_network_function", network_function_id=nf["id"],
                      config={"config": [{"resource": "firewall", "resource_data": {
                          "rules": [{"name": "x", "destination_port": 99999}]}}]})
        got = h.wait_for_status(nf["id"], "ERROR")
        assert "destination_port" in got["status_description"]
        # and the daemon still serves
        other = h.client.create_network_function(nf_body("fw2"))
        h.wait_for_status(other["id"], "ACTIVE")


def test_update_applies_new_rules(tmp_path):
    with Harness(tmp_path) as h:
        nf = h.client.create_network_function(nf_body())
        h.wait_for_status(nf["id"], "ACTIVE")
        new = {"config": [{"resource": "firewall", "resource_data": {"rules": [
            {"name": "dns", "protocol": "udp", "destination_port": 53}]}}]}
        h.client.call("update_network_function", network_function_id=nf["id"], config=new)
        h.wait_for_status(nf["id"], "ACTIVE")
        deadline = time.time() + 20
        while time.time() < deadline:
            rules = read_device(tmp_path, "memory-appliance-1")[nf["id"]]["firewall"]["rules"]
            if rules[0]["name"] == "dns":
                break
            time.sleep(0.1)
        assert [r["name"] for r in rules] == ["dns"]


def test_sigterm_drains_and_restart_resumes(tmp_path):
    h = Harness(tmp_path, config={"config_drivers": {"memory": {"delay": 1.0}}})
    h.start()
    try:
        nfs = [h.client.create_network_function(nf_body(f"fw{i}")) for i in range(3)]
        time.sleep(0.3)
        assert h.stop(timeout=60) == 0
        assert "nfp orchestrator stopped" in h.logs()
        h.start()
        for nf in nfs:
            h.wait_for_status(nf["id"], "ACTIVE", timeout=60)
    finally:
        h.stop()
        h.client.close()


def test_sighup_reloads_config(tmp_path):
    with Harness(tmp_path) as h:
        data = yaml.safe_load(h.config_file.read_text())
        data["config_drivers"] = {"memory": {"fail_resources": ["firewall"]}}
        h.config_file.write_text(yaml.safe_dump(data))
        h.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 30
        while "configuration reloaded" not in h.logs() and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # workers respawn with the new config
        nf = h.client.create_network_function(nf_body())
        got = h.wait_for_status(nf["id"], "ERROR", timeout=60)
        assert "device refused firewall" in got["status_description"]


def test_boot_error_halts_instead_of_looping(tmp_path):
    config = tmp_path / "nfp.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(tmp_path),
                                      "device_drivers": {"no-such-driver": {}}}))
    proc = subprocess.run([sys.executable, "-m", "nfp.cli.main", "--config", str(config), "serve"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3
    assert "no device driver 'no-such-driver'" in proc.stderr


def test_invalid_config_file_names_the_key(tmp_path):
    config = tmp_path / "nfp.yaml"
    config.write_text("orchestrator: {workers: lots}\n")
    proc = subprocess.run([sys.executable, "-m", "nfp.cli.main", "--config", str(config), "serve"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "orchestrator.workers" in proc.stderr


def test_cli_create_list_show_delete(tmp_path):
    with Harness(tmp_path) as h:
        base = [sys.executable, "-m", "nfp.cli.main", "--config", str(h.config_file), "nf"]
        created = subprocess.run(base + ["create", "--name", "cli-fw", "--service-config",
                                         json.dumps(FW), "--wait", "--timeout", "60"],
                                 capture_output=True, text=True, timeout=90)
        assert created.returncode == 0, created.stderr
        nf = json.loads(created.stdout)
        assert nf["status"] == "ACTIVE"
        listed = subprocess.run(base + ["list", "--json"], capture_output=True, text=True, timeout=60)
        assert [n["name"] for n in json.loads(listed.stdout)] == ["cli-fw"]
        shown = subprocess.run(base + ["show", nf["id"]], capture_output=True, text=True, timeout=60)
        assert json.loads(shown.stdout)["network_function_device"]["id"] == "memory-appliance-1"
        deleted = subprocess.run(base + ["delete", nf["id"], "--wait"], capture_output=True,
                                 text=True, timeout=90)
        assert deleted.returncode == 0, deleted.stderr
        assert h.client.get_network_function(nf["id"]) is None


def test_prometheus_metrics_endpoint(tmp_path):
    import socket
    import requests
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with Harness(tmp_path, config={"metrics": {"port": port}}) as h:
        nf = h.client.create_network_function(nf_body())
        h.wait_for_status(nf["id"], "ACTIVE")
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert 'nfp_network_functions{status="ACTIVE"} 1.0' in text
        assert "nfp_workers_alive 2.0" in text
        assert "nfp_rpc_received_total" in text


def test_devices_registered_in_the_database_are_shared(tmp_path):
    with Harness(tmp_path, config={"device_drivers": {"static": {"devices": []}}}) as h:
        base = [sys.executable, "-m", "nfp.cli.main", "--config", str(h.config_file), "device"]
        reg = subprocess.run(base + ["register", "--id", "db-appliance", "--vendor", "memory",
                                     "--max-interfaces", "2"], capture_output=True, text=True,
                             timeout=60)
        assert reg.returncode == 0, reg.stderr
        port = {"port": {"id": "p-1", "fixed_ips": [{"ip_address": "198.18.3.5"}]},
                "subnet": {"cidr": "198.18.3.0/24"}}
        body = {**nf_body("a"), "provider": port, "consumer": {**port, "port": {"id": "p-2"}}}
        first = h.client.create_network_function(body)
        h.wait_for_status(first["id"], "ACTIVE")
        second = h.client.create_network_function({**body, "name": "b"})
        got = h.wait_for_status(second["id"], "ERROR")  # both interfaces are taken
        assert "free interface" in got["status_description"]
        listed = subprocess.run(base + ["list", "--json"], capture_output=True, text=True, timeout=60)
        assert json.loads(listed.stdout)[0]["interfaces_in_use"] == 2
        busy = subprocess.run(base + ["remove", "db-appliance"], capture_output=True, text=True,
                              timeout=60)
        assert busy.returncode != 0 and "still serves" in busy.stderr


def test_configurator_failure_notification_sets_error(tmp_path):
    with Harness(tmp_path) as h:
        nf = h.client.create_network_function(nf_body())
        h.wait_for_status(nf["id"], "ACTIVE")
        from nfp.rpc.client import RpcClient
        client = RpcClient(h.conf.transport_url, h.conf, h.conf.rpc.notification_topic)
        try:
            client.cast({}, "network_function_notification", notification_data={
                "info": {"service_type": "firewall", "context": {"nf_id": nf["id"],
                                                                 "operation": "create"}},
                "notification": [{"resource": "firewall", "data": {
                    "status_code": "FAILURE", "error_msg": "rule 3 rejected by device"}}]})
        finally:
            client.close()
        got = h.wait_for_status(nf["id"], "ERROR")
        assert "rule 3 rejected by device" in got["status_description"]
