"""``nfp serve --all``: the orchestrator, ``nfp-configurator`` and ``nfp-proxy`` on one
host, for a demo of seed 001's three parts.

It runs the three daemons as child processes through their own entry points
(``nfp serve``, ``nfp-configurator``, ``nfp-proxy --role all``), so each behaves
exactly as it does alone: its own listener, workers, signals and drain. What this
module adds is what a one-host demo needs and a real deployment decides itself:

- a PKI, when the state directory has none (``nfp pki init``), and the three
  certificates the hops use (``configurator`` for the configurator's address,
  ``orchestrator`` and ``proxy``), each issued once, keys 0600, each operation
  audited as ``nfp pki`` audits it;
- one effective configuration file (``<state_dir>/serve-all.yaml``, 0600: it may hold
  database passwords) that all three read: the orchestrator's
  ``configurator.client: proxy``, the proxy's ``configurator_url`` at the
  configurator's address and port, target allowlist ``127.0.0.0/8`` when none is
  set (the demo's appliances are on this host), the memory appliance's files in the
  state directory whichever daemon calls it (the configurator's state directory is
  its own) and, on the embedded default inventory, a management address
  (127.0.0.1) for the memory appliance, without which the configurator cannot
  check its target.

SIGTERM or SIGINT stops all three (the orchestrator first, so it drains while the
proxy and the configurator still answer; each child gets SIGTERM and drains as it
does alone); SIGHUP is passed on to each (each reloads as it does alone). If one
exits on its own, the others are stopped and ``nfp serve --all``
exits non-zero. A child whose parent dies (even by ``kill -9``) gets SIGTERM from
the kernel (``PR_SET_PDEATHSIG``) rather than running on unsupervised.
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import yaml

from nfp import config as nfp_config
from nfp import logs

LOG = logging.getLogger("nfp.serve_all")
EXIT_OK, EXIT_CONFIG, EXIT_CHILD = 0, 2, 1
#: (name, argv after the interpreter); the config file is appended
CHILDREN = (
    ("nfp-configurator", ["-c", "from nfp.cli.configurator import main; main()"]),
    ("nfp-proxy", ["-c", "from nfp.cli.proxy import main; main()", "--role", "all"]),
    ("nfp-orchestrator", ["-m", "nfp.cli.main"]),
)
#: seconds each child may take to drain after SIGTERM before it is killed
STOP_TIMEOUT = 90.0
LOCAL_TARGETS = ["127.0.0.0/8", "::1/128"]


def effective_config(conf: nfp_config.NfpConfig) -> nfp_config.NfpConfig:
    """``conf`` with what the three-daemon demo needs (module docstring)."""
    svc = conf.configurator_service
    if not svc.port:
        raise nfp_config.ConfigError("configurator_service.port: nfp serve --all needs a fixed port "
                                     "(the proxy is told where the configurator listens)")
    host = f"[{svc.address}]" if ":" in svc.address else svc.address
    update: dict = {
        "state_dir": str(conf.state_path),
        "configurator": conf.configurator.model_copy(update={"client": "proxy"}),
        "proxy": conf.proxy.model_copy(update={"configurator_url": f"https://{host}:{svc.port}"}),
    }
    if not svc.allowed_target_cidrs:
        update["configurator_service"] = svc.model_copy(update={"allowed_target_cidrs": LOCAL_TARGETS})
    memory = conf.config_drivers.get("memory", {})
    if "devices_root" not in memory:  # one memory appliance, whichever daemon's driver calls it
        update["config_drivers"] = {**conf.config_drivers,
                                    "memory": {**memory, "devices_root": str(conf.state_path)}}
    if conf.device_drivers == nfp_config.NfpConfig().device_drivers:  # the embedded default
        static = conf.device_drivers["static"]
        update["device_drivers"] = {**conf.device_drivers, "static": {**static, "devices": [
            {"mgmt_ip_address": "127.0.0.1", **device} for device in static["devices"]]}}
    return conf.model_copy(update=update)


def write_config(conf: nfp_config.NfpConfig) -> Path:
    """The effective configuration as the file the children load (0600)."""
    data = conf.model_dump(mode="json", exclude={"source"})
    path = conf.state_path / "serve-all.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("# written by `nfp serve --all` at each start; edit the source config instead\n")
        yaml.safe_dump(data, handle, sort_keys=False)
    os.chmod(path, 0o600)
    nfp_config.load(str(path), environ={})  # what the children will load must load
    return path


def ensure_pki(conf: nfp_config.NfpConfig) -> None:
    """A CA if there is none, and each certificate the hops use that is missing,
    through ``nfp pki``'s own audited operations."""
    from nfp.cli.pki import _run
    from nfp.pki import Pki
    obj = SimpleNamespace(conf=conf)  # what nfp pki's commands are handed
    pki = Pki.from_conf(conf)
    if not pki.initialised:
        _run(obj, "init", pki.init, lambda p: f"CA created in {p.parent} (nfp serve --all)")
        LOG.info("PKI initialised in %s", pki.dir)
    wanted = (("configurator", [conf.configurator_service.address]), (conf.configurator.cert_name, []),
              (conf.proxy.cert_name, []))
    for name, hosts in wanted:
        if not (pki.cert_path(name).exists() and pki.key_path(name).exists()):
            issued = _run(obj, "issue", lambda: pki.issue(name, hosts),
                          lambda i: f"issued {i.name} serial {i.serial:x} until "
                                    f"{i.not_after.isoformat()} (nfp serve --all)")
            LOG.info("certificate %s issued (%s)", name, issued.cert_path)


def _die_with_parent() -> None:
    """In the child: SIGTERM (a drain, not a kill) when ``nfp serve --all`` dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class AllInOne:
    """Starts, watches and stops the three children (module docstring)."""

    def __init__(self, config_file: Path):
        self.config_file = config_file
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self._signals: list[int] = []

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        for name, argv in CHILDREN:
            cmd = [sys.executable, *argv[:2], "--config", str(self.config_file), *argv[2:]]
            if name == "nfp-orchestrator":
                cmd.append("serve")
            self.procs.append((name, subprocess.Popen(cmd, env=env, preexec_fn=_die_with_parent)))
            LOG.info("%s started as pid %d", name, self.procs[-1][1].pid)

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda s, f: self._signals.append(s))
        self.start()
        from nfp.service import sd_notify
        sd_notify("READY=1")
        while True:
            while self._signals:
                sig = self._signals.pop(0)
                if sig == signal.SIGHUP:
                    self._forward(signal.SIGHUP)
                    continue
                LOG.info("received %s; stopping the orchestrator, the proxy and the configurator",
                         signal.Signals(sig).name)
                return self.stop()
            for name, proc in self.procs:
                code = proc.poll()
                if code is not None:
                    LOG.critical("%s (pid %d) exited with %s; stopping the others", name, proc.pid,
                                 _describe(code))
                    self.stop()
                    return 128 - code if code < 0 else (code or EXIT_CHILD)
            time.sleep(0.2)

    def _forward(self, sig: int) -> None:
        for _, proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(sig)

    def stop(self) -> int:
        """SIGTERM each child still running, the orchestrator first; 0 if all drained."""
        from nfp.service import sd_notify
        sd_notify("STOPPING=1")
        worst = EXIT_OK
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    LOG.error("%s (pid %d) did not stop within %.0f s; killing it", name, proc.pid,
                              STOP_TIMEOUT)
                    proc.kill()
                    proc.wait(10)
            if proc.returncode not in (0, -signal.SIGTERM):
                worst = EXIT_CHILD
        LOG.info("nfp serve --all stopped")
        return worst


def _describe(code: int) -> str:
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"code {code}"


def serve_all(loaded: nfp_config.NfpConfig) -> int:
    """``nfp serve --all`` with the configuration the CLI loaded (file, environment, flags)."""
    try:
        conf = effective_config(loaded)
    except nfp_config.ConfigError as exc:
        logs.setup(loaded, "serve-all")
        LOG.critical("configuration error: %s", exc)
        return EXIT_CONFIG
    logs.setup(conf, "serve-all")
    ensure_pki(conf)
    path = write_config(conf)
    LOG.info("nfp serve --all: orchestrator (configurator.client: proxy), nfp-configurator at "
             "%s, nfp-proxy (agent and proxy end); configuration %s", conf.proxy.configurator_url, path)
    return AllInOne(path).run()

