"""Test topology: provider and consumer hosts as network namespaces, and real packets.

Everything lives on 198.18.0.0/15 inside namespaces this module creates
(``nfp-h-<tag>-<name>``) and bridges named after each network's id, the same
bridges the netns device driver plugs devices into. Nothing else on the
machine is touched, and :meth:`Topology.close` removes it all.

Packets are real: sockets are opened *inside* a host's namespace (a thread
enters it with setns(2) just long enough to create the socket), so HTTP
servers, TCP probes and pings run in this process without helper programs.

    with Topology() as topo:
        provider = topo.network("provider", "198.18.1.0/24", gateway_ip="198.18.1.1")
        web = topo.host("web", provider, "198.18.1.10")
        web.serve_http(80)
        ...  # create an NF whose provider port is provider.port("198.18.1.1", "provider")
        client.http_get("198.18.1.10", 80)
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import http.client
import http.server
import ipaddress
import os
import socket
import struct
import subprocess
import threading
import time
import uuid
from typing import Iterator, Optional

from nfp.drivers.device.netns import iproute, naming, segments

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)

HOST_NETNS_PREFIX = "nfp-h-"
HOST_LINK_PREFIX = "nfph"


def unavailable_reason() -> Optional[str]:
    """None if namespaces can be made here; else why not (not root, a tool missing)."""
    return iproute.have_tools()


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the calling thread inside namespace ``name`` for the duration of the block."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"{iproute.NETNS_DIR}/{name}", os.O_RDONLY)
    try:
        if _libc.setns(target, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
        try:
            yield
        finally:
            if _libc.setns(own, _CLONE_NEWNET) != 0:  # pragma: no cover - cannot recover
                os._exit(70)
    finally:
        os.close(own)
        os.close(target)


def netns_socket(name: str, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM,
                 proto: int = 0) -> socket.socket:
    """A socket that belongs to namespace ``name`` (a socket keeps the namespace it was made in)."""
    with in_netns(name):
        return socket.socket(family, kind, proto)


def _family(address: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


class Network:
    """An L2 segment (one bridge) with an IP subnet."""

    def __init__(self, name: str, network_id: str, cidr: str, gateway_ip: Optional[str]):
        self.name = name
        self.network_id = network_id
        self.cidr = str(ipaddress.ip_network(cidr, strict=False))
        self.gateway_ip = gateway_ip
        self.bridge = naming.segment_bridge(network_id)

    @property
    def prefixlen(self) -> int:
        return ipaddress.ip_network(self.cidr).prefixlen

    def port(self, ip: str, classification: str, port_id: Optional[str] = None) -> dict:
        """An upstream-shaped ``provider``/``consumer`` dict for a create_network_function request."""
        return {"port": {"id": port_id or str(uuid.uuid4()), "fixed_ips": [{"ip_address": ip}],
                         "network_id": self.network_id, "mac_address": None},
                "subnet": {"cidr": self.cidr, "gateway_ip": self.gateway_ip},
                "port_model": "neutron_port", "port_classification": classification}

    def device_port(self, ip: str, classification: str, port_id: Optional[str] = None) -> dict:
        """The lifecycle's ``device_data['ports']`` entry for a device port on this network."""
        return {"id": port_id or str(uuid.uuid4()), "port_classification": classification,
                "port_model": "neutron_port", "ip_address": ip, "mac_address": None,
                "network_id": self.network_id, "cidr": self.cidr, "gateway_ip": self.gateway_ip}


class HttpServer:
    """A threaded HTTP server inside a host; answers every GET with ``body``, counts hits."""

    def __init__(self, netns: str, address: str, port: int, body: str):
        outer = self
        self.body = body.encode()
        self.hits = 0
        self._lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - stdlib name
                with outer._lock:
                    outer.hits += 1
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            address_family = _family(address)

            def server_bind(self):
                self.socket.close()
                self.socket = netns_socket(netns, self.address_family)
                self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                super().server_bind()

        self.server = Server((address, port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       name=f"http-{netns}-{port}", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _NetnsHTTPConnection(http.client.HTTPConnection):
    def __init__(self, netns: str, host: str, port: int, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._netns = netns

    def connect(self):
        sock = netns_socket(self._netns, _family(self.host))
        sock.settimeout(self.timeout)
        try:
            sock.connect((self.host, self.port))
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class Host:
    """A namespace standing for a provider or consumer machine."""

    def __init__(self, topology: "Topology", name: str, netns: str):
        self.topology = topology
        self.name = name
        self.netns = netns
        self.addresses: list[str] = []

    @property
    def ip(self) -> str:
        return self.addresses[0]

    def run(self, *cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a command inside the host."""
        return iproute.run([iproute.IP, "netns", "exec", self.netns, *cmd], check=check,
                           timeout=timeout)

    def socket(self, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> socket.socket:
        return netns_socket(self.netns, family, kind)

    def serve_http(self, port: int, body: Optional[str] = None, address: str = "0.0.0.0") -> HttpServer:
        """Start an HTTP server on ``port`` answering with ``body`` (default: the host name)."""
        server = HttpServer(self.netns, address, port, body if body is not None else self.name)
        self.topology._servers.append(server)
        return server

    def tcp(self, ip: str, port: int, timeout: float = 1.0) -> str:
        """Open a TCP connection: ``open``, ``refused`` (RST), ``timeout`` (dropped) or
        ``unreachable`` (ICMP unreachable or no route)."""
        sock = self.socket(_family(ip))
        sock.settimeout(timeout)
        try:
            sock.connect((ip, port))
            return "open"
        except ConnectionRefusedError:
            return "refused"
        except socket.timeout:
            return "timeout"
        except OSError as exc:
            if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
                return "unreachable"
            raise
        finally:
            sock.close()

    def http_get(self, ip: str, port: int = 80, path: str = "/", timeout: float = 2.0) -> tuple[int, str]:
        """GET ``http://ip:port/path`` from this host; return (status, body)."""
        conn = _NetnsHTTPConnection(self.netns, ip, port, timeout)
        try:
            conn.request("GET", path, headers={"Connection": "close"})
            response = conn.getresponse()
            return response.status, response.read().decode(errors="replace")
        finally:
            conn.close()

    def ping(self, ip: str, timeout: float = 1.0) -> bool:
        """One ICMP echo to an IPv4 address; True if the reply came back in time."""
        sock = netns_socket(self.netns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        ident = os.getpid() & 0xFFFF
        seq = int(time.monotonic() * 1000) & 0xFFFF
        header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
        payload = b"nfp-topology-ping"
        packet = struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, seq) + payload
        try:
            sock.sendto(packet, (ip, 0))
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                try:
                    data, (src, _) = sock.recvfrom(2048)
                except socket.timeout:
                    return False
                ihl = (data[0] & 0x0F) * 4
                kind, _, _, rid, rseq = struct.unpack("!BBHHH", data[ihl:ihl + 8])
                if kind == 0 and src == ip and rid == ident and rseq == seq:
                    return True
            return False
        finally:
            sock.close()


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


class Topology:
    """Networks and hosts for one test or demo run; a context manager that cleans up."""

    def __init__(self, tag: Optional[str] = None):
        self.tag = tag or uuid.uuid4().hex[:6]
        self.networks: dict[str, Network] = {}
        self.hosts: dict[str, Host] = {}
        self._servers: list[HttpServer] = []

    def __enter__(self) -> "Topology":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def network(self, name: str, cidr: str, gateway_ip: Optional[str] = None) -> Network:
        """Declare a network; its bridge appears when the first host or device joins it."""
        net = Network(name, f"nfp-test-{self.tag}-{name}", cidr, gateway_ip)
        self.networks[name] = net
        return net

    def host(self, name: str, network: Network, ip: str, gateway: Optional[str] = None,
             forwarding: bool = False) -> Host:
        """Create a host with one interface on ``network`` (default route via ``gateway``,
        else via the network's gateway_ip)."""
        netns = f"{HOST_NETNS_PREFIX}{self.tag}-{name}"
        iproute.ip("netns", "add", netns)
        host = Host(self, name, netns)
        self.hosts[name] = host
        iproute.ip_batch(["link set lo up"], netns=netns)
        if forwarding:
            iproute.netns_exec(netns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        self.attach(host, network, ip)
        via = gateway or network.gateway_ip
        if via and via != ip:
            self.route(host, "default", via)
        return host

    def attach(self, host: Host, network: Network, ip: str) -> str:
        """Give ``host`` one more interface, on ``network`` with address ``ip``."""
        inner = f"eth{len(host.addresses)}"
        link = HOST_LINK_PREFIX + hashlib.sha1(f"{host.netns}\0{inner}".encode()).hexdigest()[:10]
        with iproute.host_lock():
            segments.ensure_bridge(network.bridge)
            segments.attach_veth(link, inner, host.netns, network.bridge)
        iproute.ip_batch([f"addr add {ip}/{network.prefixlen} dev {inner}",
                          f"link set {inner} up"], netns=host.netns)
        host.addresses.append(ip)
        return inner

    def route(self, host: Host, destination: str, via: str) -> None:
        iproute.ip("route", "replace", destination, "via", via, netns=host.netns)

    def close(self) -> None:
        """Stop servers, delete hosts and their links, and bridges left empty."""
        for server in self._servers:
            with contextlib.suppress(Exception):
                server.stop()
        self._servers.clear()
        for host in self.hosts.values():
            iproute.kill_pids(iproute.netns_pids(host.netns))
            with contextlib.suppress(iproute.CommandError):
                iproute.ip_batch([f"link delete {n}" for n in iproute.veths_in(host.netns)],
                                 netns=host.netns)
            iproute.run([iproute.IP, "netns", "delete", host.netns], check=False)
        self.hosts.clear()
        with iproute.host_lock():
            for net in self.networks.values():
                segments.release_bridge(net.bridge)


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return bool(value)
        time.sleep(interval)


class NetnsLab:
    """A provider network, a consumer network, netns devices between them and the linux
    config driver, without the orchestrator: for driver tests, benchmarks and demos.

    Provider: 198.18.1.0/24, consumer: 198.18.2.0/24; a device made by
    :meth:`device` takes ``.1`` on both, so it is the hosts' gateway.
    """

    PROVIDER_CIDR, CONSUMER_CIDR = "198.18.1.0/24", "198.18.2.0/24"
    DEVICE_PROVIDER_IP, DEVICE_CONSUMER_IP = "198.18.1.1", "198.18.2.1"

    def __init__(self, state_dir, tag: Optional[str] = None, netns_options: Optional[dict] = None):
        from nfp.config import NfpConfig
        from nfp.drivers.config.linux import LinuxConfigDriver
        from nfp.drivers.device.netns import NetnsDeviceDriver

        from nfp.db import migrate

        self.conf = NfpConfig(state_dir=str(state_dir))
        migrate.upgrade(self.conf.database_url)  # the linux driver records its rules there
        self.devices = NetnsDeviceDriver(self.conf, netns_options or {})
        self.config = LinuxConfigDriver(self.conf, {})
        self.topo = Topology(tag)
        self.provider = self.topo.network("provider", self.PROVIDER_CIDR, self.DEVICE_PROVIDER_IP)
        self.consumer = self.topo.network("consumer", self.CONSUMER_CIDR, self.DEVICE_CONSUMER_IP)
        self._device_ids: list[str] = []

    def __enter__(self) -> "NetnsLab":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def device(self, name: str = "fw"):
        """Create a device plugged into both networks; return ``(device dict, DeviceTarget)``."""
        from nfp.drivers.config.base import DeviceTarget

        device = self.devices.create_network_function_device({"name": name})
        if device is None:
            raise RuntimeError("the netns device could not be created (see the log)")
        self._device_ids.append(device["id"])
        ports = [self.provider.device_port(self.DEVICE_PROVIDER_IP, "provider"),
                 self.consumer.device_port(self.DEVICE_CONSUMER_IP, "consumer")]
        if not self.devices.plug_network_function_device_interface({"id": device["id"], "ports": ports}):
            raise RuntimeError("the netns device ports could not be plugged (see the log)")
        device["ports"] = ports
        target = DeviceTarget(id=device["id"], mgmt_ip_address=device["mgmt_ip_address"],
                              service_vendor="linux", extra=device["extra"])
        return device, target

    def apply(self, target, resource: str, data: dict, operation: str = "create",
              nf_id: str = "nf-lab", service_type: Optional[str] = None):
        """Apply one config element through the linux driver; return the ConfigResult."""
        from nfp.drivers.config.base import ConfigRequest

        return self.config.apply(ConfigRequest(
            operation=operation, service_type=service_type or resource, resource=resource,
            resource_data=data, device=target, nf_id=nf_id, tenant_id="lab"))

    def close(self) -> None:
        self.config.close()
        for device_id in self._device_ids:
            self.devices.delete_network_function_device({"id": device_id})
        self._device_ids.clear()
        self.topo.close()
