"""Run a real nfp daemon for tests and demos, and talk to it over RPC.

``Harness`` starts ``nfp serve`` (listener + worker processes) as a subprocess
on its own state directory: embedded SQLite and the filesystem bus by default,
or the given database and transport URLs. Nothing is faked: requests go over
the transport, steps run in worker processes, state lands in the database.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Optional

import yaml

from nfp import config as nfp_config
from nfp.flows import NFStatus


class HarnessError(RuntimeError):
    pass


class NfpClient:
    """Thin RPC client for the orchestrator API (oslo wire format)."""

    def __init__(self, conf: nfp_config.NfpConfig):
        from nfp.rpc.client import RpcClient
        self.rpc = RpcClient(conf.transport_url, conf, conf.rpc.topic)

    def call(self, method: str, timeout: float = 30, **kwargs) -> Any:
        return self.rpc.call({}, method, timeout=timeout, **kwargs)

    def cast(self, method: str, **kwargs) -> None:
        self.rpc.cast({}, method, **kwargs)

    def create_network_function(self, network_function: dict) -> dict:
        return self.call("create_network_function", network_function=network_function)

    def get_network_function(self, nf_id: str) -> Optional[dict]:
        return self.call("get_network_function", network_function_id=nf_id)

    def get_network_functions(self, filters: Optional[dict] = None) -> list[dict]:
        return self.call("get_network_functions", filters=filters or {})

    def delete_network_function(self, nf_id: str) -> None:
        self.call("delete_network_function", network_function_id=nf_id, network_function_data={})

    def close(self) -> None:
        self.rpc.close()


class Harness:
    """A daemon plus a client; use as a context manager.

    Parameters:
        tmp_path(Path): state directory (database, bus, logs).
        config(dict): merged into the generated config file.
        database_url / transport_url(str): override the embedded defaults.
        workers(int): worker processes.
        env(dict): environment variables for the daemon, on top of the test's own
            minus its ``NFP_*`` ones (e.g. ``NFP_MACHINE_ID``: another machine).
    """

    def __init__(self, tmp_path, config: Optional[dict] = None, database_url: Optional[str] = None,
                 transport_url: Optional[str] = None, workers: int = 2,
                 topic: Optional[str] = None, env: Optional[dict] = None):
        self.extra_env = dict(env or {})
        self.state_dir = Path(tmp_path)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        data = dict(config or {})
        data["state_dir"] = str(self.state_dir)
        data.setdefault("orchestrator", {}).setdefault("workers", workers)
        data.setdefault("logging", {}).setdefault("level", "INFO")
        if database_url:
            data.setdefault("database", {})["url"] = database_url
        if transport_url:
            data.setdefault("transport", {})["url"] = transport_url
        # a private topic keeps parallel harnesses on one broker apart
        data.setdefault("rpc", {}).setdefault("topic", topic or f"nfp-test-{uuid.uuid4().hex[:8]}")
        self.config_file = self.state_dir / "nfp.yaml"
        self.config_file.write_text(yaml.safe_dump(data))
        self.conf = nfp_config.load(str(self.config_file), environ={})
        self.log_file = self.state_dir / "nfp.log"
        self.proc: Optional[subprocess.Popen] = None
        self.client: Optional[NfpClient] = None

    # -- process --------------------------------------------------------------
    def spawn(self) -> subprocess.Popen:
        """Start ``nfp serve`` without waiting for it to answer."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("NFP_")}
        env.update(self.extra_env)
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "nfp.cli.main", "--config", str(self.config_file), "serve"],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        return self.proc

    def start(self, timeout: float = 60) -> "Harness":
        self.spawn()
        if self.client is None:
            self.client = NfpClient(self.conf)
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise HarnessError(f"nfp serve exited with {self.proc.returncode}:\n{self.logs()[-3000:]}")
            try:
                self.client.call("get_network_functions", timeout=2, filters={})
                return self
            except Exception:
                time.sleep(0.2)
        raise HarnessError(f"nfp serve did not answer within {timeout} s:\n{self.logs()[-3000:]}")

    def stop(self, timeout: float = 30) -> Optional[int]:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(5)

    def kill(self) -> None:
        """SIGKILL the listener only (its workers die with it via PDEATHSIG)."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def worker_pids(self) -> list[int]:
        """Live worker processes of the running listener (from its pid table)."""
        import json
        path = self.state_dir / "workers.json"
        pids = json.loads(path.read_text()).values() if path.exists() else []
        alive = []
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as handle:
                    if handle.read().split(") ")[-1].split()[0] != "Z":
                        alive.append(int(pid))
            except OSError:
                pass
        return alive

    def logs(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def __enter__(self) -> "Harness":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        if self.client is not None:
            self.client.close()

    # -- helpers ---------------------------------------------------------------
    def wait_for_status(self, nf_id: str, status: str = NFStatus.ACTIVE, timeout: float = 60) -> dict:
        """Poll until the NF reaches ``status``; raise on ERROR or timeout."""
        end, last = time.time() + timeout, None
        while time.time() < end:
            last = self.client.get_network_function(nf_id)
            if last and last["status"] == status:
                return last
            if last and last["status"] == NFStatus.ERROR and status != NFStatus.ERROR:
                raise HarnessError(f"NF {nf_id} went to ERROR: {last['status_description']}")
            time.sleep(0.1)
        raise HarnessError(f"NF {nf_id} not {status} after {timeout} s: {last}")

    def wait_gone(self, nf_id: str, timeout: float = 60) -> None:
        end = time.time() + timeout
        while time.time() < end:
            if self.client.get_network_function(nf_id) is None:
                return
            time.sleep(0.1)
        raise HarnessError(f"NF {nf_id} still exists after {timeout} s")
