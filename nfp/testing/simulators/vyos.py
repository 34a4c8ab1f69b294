"""VyOS simulator: an SSH server (paramiko) with VyOS 1.4's interactive CLI.

Operational mode (``vyos@vyos:~$``) and configuration mode (``configure``,
prompt ``vyos@vyos#``) with ``set``/``delete`` on a per-session working copy,
``commit`` (validates, then makes it active), ``save``, ``exit`` (refused with
uncommitted changes), ``exit discard``, ``show configuration commands`` (and
``run show ...`` in configure mode, with ``| match TEXT``). Arguments are
parsed like vbash does (shlex), values are checked against a schema of the
config paths nfp uses, and errors read as VyOS prints them. Faults: refused
logins, delayed answers, sessions cut on the next command.
"""
from __future__ import annotations

import io
import ipaddress
import logging
import re
import shlex
import socket
import threading
import time
from typing import Callable, Optional

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .faults import Faults

LOG = logging.getLogger(__name__)
Path = tuple[str, ...]


def _addr(v: str) -> bool:
    try:
        ipaddress.ip_network(v.lstrip("!"), strict=False)
        return True
    except ValueError:
        return False


def _ip(v: str) -> bool:
    try:
        ipaddress.ip_address(v)
        return True
    except ValueError:
        return False


def _ports(v: str) -> bool:
    for part in v.split(","):
        bounds = part.split("-")
        if len(bounds) > 2 or not all(b.isdigit() and 1 <= int(b) <= 65535 for b in bounds):
            return False
    return True


VALUES: dict[str, Callable[[str], bool]] = {
    "fwaction": lambda v: v in ("accept", "drop", "reject", "return", "jump", "continue"),
    "proto": lambda v: v in ("tcp", "udp", "icmp", "all", "tcp_udp"),
    "addr": _addr, "ip": _ip, "ports": _ports,
    "port": lambda v: v.isdigit() and 1 <= int(v) <= 65535,
    "natout": lambda v: v == "masquerade" or _ip(v) or _addr(v),
    "ifname": lambda v: bool(re.match(r"^[a-z][a-z0-9.]{1,15}$", v)),
    "text": lambda v: len(v) <= 255,
    "lbmode": lambda v: v in ("http", "tcp"),
    "balance": lambda v: v in ("round-robin", "least-connection", "source-address"),
}
TAGS: dict[str, Callable[[str], bool]] = {
    "name": lambda v: bool(re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", v)),
    "num": lambda v: v.isdigit() and 1 <= int(v) <= 999999,
    "cidr": _addr, "ip": _ip,
}
_FW = "firewall ipv4 name <name> rule <num> "
_DNAT, _SNAT = "nat destination rule <num> ", "nat source rule <num> "
_RP = "load-balancing reverse-proxy "
SCHEMA = [
    "firewall ipv4 name <name> default-action =fwaction", "firewall ipv4 name <name> description =text",
    _FW + "action =fwaction", _FW + "protocol =proto", _FW + "description =text", _FW + "disable",
    _FW + "source address =addr", _FW + "source port =ports",
    _FW + "destination address =addr", _FW + "destination port =ports",
    _DNAT + "description =text", _DNAT + "inbound-interface name =ifname", _DNAT + "protocol =proto",
    _DNAT + "source address =addr", _DNAT + "destination address =addr", _DNAT + "destination port =ports",
    _DNAT + "translation address =ip", _DNAT + "translation port =ports", _DNAT + "disable",
    _SNAT + "description =text", _SNAT + "outbound-interface name =ifname", _SNAT + "protocol =proto",
    _SNAT + "source address =addr", _SNAT + "destination address =addr",
    _SNAT + "translation address =natout", _SNAT + "disable",
    "protocols static route <cidr> next-hop <ip>", "protocols static route <cidr> description =text",
    _RP + "service <name> port =port", _RP + "service <name> mode =lbmode",
    _RP + "service <name> listen-address =ip", _RP + "service <name> backend =text",
    _RP + "service <name> description =text",
    _RP + "backend <name> balance =balance", _RP + "backend <name> mode =lbmode",
    _RP + "backend <name> server <name> address =ip", _RP + "backend <name> server <name> port =port",
    _RP + "backend <name> http-check uri =text", _RP + "backend <name> description =text",
]
_COMPILED = [s.split() for s in SCHEMA]


def match_schema(tokens: list[str]) -> tuple[Optional[Path], Optional[str], str]:
    """``(leaf path, value, error)`` for a ``set`` argument list."""
    best_error = "path"
    for pattern in _COMPILED:
        has_value = pattern[-1].startswith("=")
        nodes = pattern[:-1] if has_value else pattern
        if len(tokens) != len(nodes) + (1 if has_value else 0):
            continue
        ok = True
        for token, node in zip(tokens, nodes):
            if node.startswith("<"):
                ok = TAGS[node[1:-1]](token)
            else:
                ok = token == node
            if not ok:
                break
        if not ok:
            continue
        if has_value:
            if not VALUES[pattern[-1][1:]](tokens[-1]):
                best_error = "value"
                continue
            return tuple(tokens[:-1]), tokens[-1], ""
        return tuple(tokens), None, ""
    return None, None, best_error


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def render_commands(config: dict[Path, Optional[str]]) -> str:
    """``show configuration commands`` output."""
    lines = [f"set {' '.join(p)}" + ("" if v is None else f" {_quote(v)}") for p, v in sorted(config.items())]
    return "\n".join(lines)


def validate(config: dict[Path, Optional[str]]) -> list[str]:
    """Commit-time checks: a firewall rule needs an action, a DNAT rule a translation."""
    errors = []
    rules = {p[:6] for p in config if p[:2] == ("firewall", "ipv4") and len(p) > 6 and p[4] == "rule"}
    for rule in sorted(rules):
        if rule + ("action",) not in config:
            errors.append(f"[ {' '.join(rule)} ]\nRule {rule[5]}: action must be defined")
    dnat = {p[:4] for p in config if p[:2] == ("nat", "destination") and len(p) > 4}
    for rule in sorted(dnat):
        if not any(p[:5] == rule + ("translation",) for p in config):
            errors.append(f"[ {' '.join(rule)} ]\nTranslation requires address and/or port")
    return errors


class VyosSimulator:
    """A VyOS router reachable over SSH. Keeps active and saved configuration."""

    vendor = "vyos"

    def __init__(self, username: str = "vyos", password: Optional[str] = "vyos-password",
                 authorized_key: Optional[str] = None, host: str = "127.0.0.1", port: int = 0):
        self.username, self.password = username, password
        self.authorized_key = authorized_key  # "ssh-ed25519 AAAA..."
        self.host, self._port = host, port
        self.faults = Faults()
        self.lock = threading.RLock()
        self.active: dict[Path, Optional[str]] = {}
        self.saved: dict[Path, Optional[str]] = {}
        self.commits = 0
        self.sessions_opened = 0
        pem = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.OpenSSH,
                                                         serialization.NoEncryption())
        self.host_key = paramiko.Ed25519Key.from_private_key(io.StringIO(pem.decode()))
        self._socket: Optional[socket.socket] = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._transports: list[paramiko.Transport] = []

    @property
    def host_key_line(self) -> str:
        """The pinned-key form nfp wants in ``ssh_host_key``."""
        return f"{self.host_key.get_name()} {self.host_key.get_base64()}"

    @property
    def port(self) -> int:
        return self._socket.getsockname()[1] if self._socket else self._port

    def connection_facts(self) -> dict:
        return {"port": self.port, "ssh_host_key": self.host_key_line}

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> "VyosSimulator":
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((self.host, self._port))
        self._socket.listen(64)
        self._socket.settimeout(0.2)
        thread = threading.Thread(target=self._accept_loop, name="sim-vyos", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for transport in list(self._transports):
            transport.close()
        for thread in self._threads:
            thread.join(timeout=5)
        if self._socket is not None:
            self._socket.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._socket.accept()
            except (socket.timeout, OSError):
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        transport = paramiko.Transport(conn)
        self._transports.append(transport)
        transport.add_server_key(self.host_key)
        server = _Server(self)
        try:
            transport.start_server(server=server)
            channel = transport.accept(10)
            if channel is None or not server.shell.wait(10):
                transport.close()
                return
            with self.lock:
                self.sessions_opened += 1
            _Shell(self, channel).run()
        except (paramiko.SSHException, EOFError, OSError):
            pass
        finally:
            transport.close()
            if transport in self._transports:
                self._transports.remove(transport)

    # -- test helpers ------------------------------------------------------------------------
    def show(self, prefix: str = "") -> list[str]:
        """Active configuration as ``set`` lines, optionally those starting with ``prefix``."""
        with self.lock:
            lines = render_commands(self.active).splitlines()
        return [line for line in lines if line.startswith("set " + prefix)] if prefix else lines

    def state(self) -> dict:
        with self.lock:
            return {"active": render_commands(self.active), "saved": render_commands(self.saved),
                    "commits": self.commits}

    def drift(self, spec: dict) -> None:
        """``{"op": "set"|"delete", "path": "firewall ipv4 name X rule 5 action accept"}``,
        committed and saved as an admin would."""
        tokens = shlex.split(spec["path"])
        with self.lock:
            if spec["op"] == "set":
                path, value, error = match_schema(tokens)
                if path is None:
                    raise ValueError(f"invalid path: {spec['path']}")
                self.active[path] = value
            else:
                for key in [k for k in self.active if k[:len(tokens)] == tuple(tokens)]:
                    del self.active[key]
            self.saved = dict(self.active)


class _Server(paramiko.ServerInterface):
    def __init__(self, sim: VyosSimulator):
        self.sim = sim
        self.shell = threading.Event()

    def check_channel_request(self, kind, chanid):
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def get_allowed_auths(self, username):
        return "password,publickey"

    def check_auth_password(self, username, password):
        if self.sim.faults.reject_auth or self.sim.password is None:
            return paramiko.AUTH_FAILED
        ok = username == self.sim.username and password == self.sim.password
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_auth_publickey(self, username, key):
        if self.sim.faults.reject_auth or not self.sim.authorized_key:
            return paramiko.AUTH_FAILED
        ok = username == self.sim.username and self.sim.authorized_key.split()[1] == key.get_base64()
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_channel_pty_request(self, *args):
        return True

    def check_channel_shell_request(self, channel):
        self.shell.set()
        return True


class _Shell:
    """One interactive session."""

    def __init__(self, sim: VyosSimulator, channel: paramiko.Channel):
        self.sim, self.channel = sim, channel
        self.working: Optional[dict] = None  # set in configure mode

    @property
    def prompt(self) -> str:
        if self.working is None:
            return f"{self.sim.username}@vyos:~$ "
        return f"[edit]\r\n{self.sim.username}@vyos# "

    def run(self) -> None:
        self.channel.sendall(f"Welcome to VyOS\r\n{self.prompt}")
        buffer = b""
        while not self.sim._stop.is_set():
            chunk = self.channel.recv(4096)
            if not chunk:
                return
            buffer += chunk
            while b"\n" in buffer:
                raw, buffer = buffer.split(b"\n", 1)
                line = raw.decode("utf-8", "replace").rstrip("\r")
                self.channel.sendall(line + "\r\n")  # pty echo
                fault = self.sim.faults.take()
                if fault is not None and fault.kind == "drop":
                    self.channel.close()
                    return
                if fault is not None and fault.kind == "delay":
                    time.sleep(fault.seconds)
                output = self.execute(line)
                if output is None:
                    self.channel.close()
                    return
                text = (output.replace("\n", "\r\n") + "\r\n") if output else ""
                self.channel.sendall(text + self.prompt)

    def execute(self, line: str) -> Optional[str]:
        """Run one command line; None closes the session."""
        filt = None
        if " | match " in line:
            line, filt = line.split(" | match ", 1)
            filt = filt.strip().strip("'\"")
        try:
            words = shlex.split(line)
        except ValueError:
            return "  Invalid command: unbalanced quotes"
        if not words:
            return ""
        output = self._dispatch(words)
        if filt is not None and output:
            output = "\n".join(l for l in output.splitlines() if filt in l)
        return output

    def _dispatch(self, words: list[str]) -> Optional[str]:
        verb = words[0]
        sim = self.sim
        if self.working is None:
            if verb == "configure":
                with sim.lock:
                    self.working = dict(sim.active)
                return ""
            if words[:3] == ["show", "configuration", "commands"]:
                with sim.lock:
                    return render_commands(sim.active)
            if verb == "exit":
                return None
            if words[:3] == ["set", "terminal", "length"]:
                return ""
            return f"\n  Invalid command: [{' '.join(words[:2])}]\n"
        if verb == "set":
            path, value, error = match_schema(words[1:])
            if path is None:
                if error == "value":
                    return "\n  Invalid value\n  Value validation failed\n  Set failed\n"
                return f"\n  Configuration path: [{' '.join(words[1:])}] is not valid\n  Set failed\n"
            self.working[path] = value
            return ""
        if verb == "delete":
            prefix = tuple(words[1:])
            doomed = [k for k in self.working if k[:len(prefix)] == prefix or (k + (self.working[k] or "",))[:len(prefix)] == prefix]
            if not doomed:
                return "\n  Nothing to delete (the specified node does not exist)\n  Delete failed\n"
            for key in doomed:
                del self.working[key]
            return ""
        if verb == "commit":
            with sim.lock:
                if self.working == sim.active:
                    return "No configuration changes to commit"
                errors = validate(self.working)
                if errors:
                    return "\n" + "\n\n".join(errors) + "\n\n[[firewall]] failed\nCommit failed"
                sim.active = dict(self.working)
                sim.commits += 1
            return ""
        if verb == "save":
            with sim.lock:
                sim.saved = dict(sim.active)
            return "Saving configuration to '/config/config.boot'...\nDone"
        if verb == "discard":
            with sim.lock:
                self.working = dict(sim.active)
            return "  Changes have been discarded"
        if verb == "exit":
            with sim.lock:
                modified = self.working != sim.active
            if modified and words[1:] != ["discard"]:
                return "Cannot exit: configuration modified.\nUse 'exit discard' to discard the changes and exit."
            self.working = None
            return "exit"
        if verb == "run":
            return self._dispatch_op(words[1:])
        if verb == "show":
            return render_commands(self.working)
        return f"\n  Invalid command: [{verb}]\n"

    def _dispatch_op(self, words: list[str]) -> str:
        if words[:3] == ["show", "configuration", "commands"]:
            with self.sim.lock:
                return render_commands(self.sim.active)
        return f"\n  Invalid command: [{' '.join(words[:2])}]\n"
