"""The kernel tools the netns driver drives: iproute2 (``ip``), and a host-wide lock.

Every change to links and namespaces goes through ``ip`` (or ``ip -batch`` to
do several in one process), so what nfp does is what an operator would type.
Reads that sit on the hot path use ``/run/netns`` and ``/sys/class/net``
directly, which costs no process at all.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterator, Optional, Sequence

LOG = logging.getLogger(__name__)

IP = shutil.which("ip") or "/usr/sbin/ip"
NETNS_DIR = Path("/run/netns")
SYS_NET = Path("/sys/class/net")
#: one lock for the whole host: bridges and management addresses are shared by
#: every nfp instance (and every test) on the machine
HOST_LOCK = Path("/run/nfp-netns.lock")


class CommandError(RuntimeError):
    """A tool exited non-zero; ``stderr`` holds its complaint."""

    def __init__(self, args: Sequence[str], returncode: int, stderr: str):
        super().__init__(f"{' '.join(args[:6])} exited {returncode}: {stderr.strip()[:500]}")
        self.args_ = list(args)
        self.returncode = returncode
        self.stderr = stderr


def run(args: Sequence[str], *, input: Optional[str] = None, check: bool = True,
        timeout: float = 30) -> subprocess.CompletedProcess:
    """Run a tool, capturing its output; raise CommandError on failure when ``check``."""
    proc = subprocess.run(list(args), input=input, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise CommandError(args, proc.returncode, proc.stderr)
    return proc


def ip(*args: str, netns: Optional[str] = None, check: bool = True) -> str:
    """Run ``ip [-n NS] ARGS``; return stdout."""
    prefix = [IP, "-n", netns] if netns else [IP]
    return run([*prefix, *args], check=check).stdout


def ip_batch(commands: Sequence[str], *, netns: Optional[str] = None) -> None:
    """Run several ``ip`` commands in one process (``ip -batch -``); stop at the first error."""
    if not commands:
        return
    prefix = [IP, "-n", netns] if netns else [IP]
    run([*prefix, "-batch", "-"], input="\n".join(commands) + "\n")


def netns_exec(netns: str, *cmd: str, check: bool = True, timeout: float = 30) -> str:
    """Run ``cmd`` inside namespace ``netns``; return stdout."""
    return run([IP, "netns", "exec", netns, *cmd], check=check, timeout=timeout).stdout


def list_netns(prefix: str = "") -> list[str]:
    """Names of the named network namespaces starting with ``prefix``."""
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def link_exists(name: str) -> bool:
    """True if a link of this name exists in the host namespace."""
    return (SYS_NET / name).exists()


def list_links(prefix: str) -> list[str]:
    """Host-namespace link names starting with ``prefix``."""
    try:
        return sorted(n for n in os.listdir(SYS_NET) if n.startswith(prefix))
    except FileNotFoundError:
        return []


def link_master(name: str) -> Optional[str]:
    """The bridge a host link is enslaved to, or None."""
    try:
        return os.path.basename(os.readlink(SYS_NET / name / "master"))
    except OSError:
        return None


def bridge_ports(bridge: str) -> list[str]:
    """Links attached to ``bridge`` (empty if the bridge does not exist)."""
    try:
        return sorted(os.listdir(SYS_NET / bridge / "brif"))
    except FileNotFoundError:
        return []


def veths_in(netns: str) -> list[str]:
    """Names of the veth links inside namespace ``netns``."""
    out = ip("-o", "link", "show", "type", "veth", netns=netns, check=False)
    # "12: prov3fa2c1@if13: <...>" -> prov3fa2c1
    return [line.split(":", 2)[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]


def netns_pids(name: str) -> list[int]:
    """Processes whose network namespace is ``name``."""
    out = run([IP, "netns", "pids", name], check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def pid_alive(pid: Optional[int]) -> bool:
    """True if ``pid`` runs (a zombie counts as gone)."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return False


def kill_pids(pids: Sequence[int], grace: float = 2.0) -> None:
    """SIGTERM ``pids``, then SIGKILL whatever still runs after ``grace`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        live = [p for p in pids if pid_alive(p)]
        for pid in live:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while live and time.monotonic() < deadline:
            live = [p for p in live if pid_alive(p)]
            if live:
                time.sleep(0.01)
        if not live:
            return


def find_pids(needle: str) -> list[int]:
    """Processes whose command line contains ``needle`` (for orphan sweeps)."""
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmdline:
            found.append(int(entry))
    return found


@contextlib.contextmanager
def host_lock() -> Iterator[None]:
    """Serialise changes to shared bridges and the management address pool."""
    HOST_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(HOST_LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def have_tools() -> Optional[str]:
    """None if namespaces can be used here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN and CAP_SYS_ADMIN)"
    for tool in ("ip", "nft", "haproxy", "sshd"):
        if not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists()):
            return f"{tool} is not installed (Debian packages iproute2, nftables, haproxy, openssh-server)"
    return None
