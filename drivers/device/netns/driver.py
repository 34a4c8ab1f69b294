"""NetnsDeviceDriver: real local service devices made of Linux network namespaces.

A device is a namespace ``nfp-d-<hash>`` with a management veth on the host
bridge ``nfpmgmt0`` (198.18.0.0/24 by default; nfp keeps the first address),
its own sshd with a fresh host key and key-only login for nfp, and IP
forwarding on. Data ports are veths whose host end sits on the bridge of the
port's ``network_id``; provider and consumer hosts made by
:mod:`nfp.testing.topology` join the same bridges. Delete removes the processes,
links, namespace, bridges left empty, pinned key and files.
"""
from __future__ import annotations

import ipaddress
import logging
import time
from pathlib import Path
from typing import Any, Optional

from nfp.config import default_state_dir
from nfp.db.base import new_id
from nfp.drivers.device.base import DeviceDict, DeviceDriver
from nfp.drivers.device.netns import iproute, keys, naming, segments, sshd
from nfp.drivers.device.netns.options import parse_options
from nfp.drivers.device.netns.records import DeviceRecord, DeviceStore
from nfp.drivers.device.netns.sweep import Sweeper
from nfp.flows import DeviceStatus

LOG = logging.getLogger(__name__)


class NetnsDeviceDriver(DeviceDriver):
    """Seed-001 device driver for ``device_type=netns``."""

    name = "netns"

    def __init__(self, conf: Any = None, options: Optional[dict] = None):
        super().__init__(conf, options)
        self.opts = parse_options(self.options)
        self.state_path = Path(conf.state_path) if conf is not None else default_state_dir()
        root = Path(self.opts.state_dir) if self.opts.state_dir else self.state_path / "netns"
        self.store = DeviceStore(root)
        self.known_hosts = keys.KnownHosts(keys.ssh_dir(self.state_path) / "known_hosts")

    # -- create / delete -------------------------------------------------
    def create_network_function_device(self, device_data: DeviceDict) -> Optional[DeviceDict]:
        """Create a device; a given ``device_data['id']`` makes a retry find the earlier one."""
        device_id = device_data.get("id") or new_id()
        netns = naming.device_netns(device_id)
        started = time.monotonic()
        try:
            record = self._existing(netns) or self._create(device_id, netns)
        except Exception as exc:  # noqa: BLE001 - the seed's contract is None on failure
            LOG.error("netns device %s could not be created (%s); removing what was made",
                      device_id, exc)
            self.destroy(netns)
            return None
        LOG.info("netns device %s is up in %s at %s (%.0f ms)", device_id, netns,
                 record.mgmt_ip, (time.monotonic() - started) * 1000)
        return self._describe(record, device_data)

    def delete_network_function_device(self, device_data: DeviceDict) -> None:
        """Delete the device and everything it owns; without an id, unplug its ports only."""
        if not device_data.get("id"):
            self.unplug_network_function_device_interface(device_data)
            return
        self.destroy(naming.device_netns(device_data["id"]))

    def destroy(self, netns: str) -> None:
        """Remove namespace ``netns`` with its processes, links, files and pinned key."""
        record = self.store.load(netns)
        workdir = self.store.workdir(netns)
        if iproute.netns_exists(netns):
            iproute.kill_pids(iproute.netns_pids(netns))
            # deleting the device ends of the veths removes both ends at once; the
            # kernel would otherwise free them only when the namespace is torn down
            iproute.ip_batch([f"link delete {name}" for name in iproute.veths_in(netns)], netns=netns)
            iproute.run([iproute.IP, "netns", "delete", netns], check=False)
        iproute.kill_pids(iproute.find_pids(str(workdir) + "/"))
        with iproute.host_lock():
            self._release_bridges()
        if record and record.mgmt_ip:
            self.known_hosts.unpin(record.mgmt_ip, record.ssh_port)
        self.store.remove(netns)
        LOG.info("netns device namespace %s deleted", netns)

    def heal_network_function_device(self, device_data: DeviceDict) -> dict:
        """Auto-heal (``nfp.flows.HEAL``): re-create a dead device under its id and re-plug
        ``device_data['ports']``. A device whose namespace and sshd still run is alive:
        only its management path is at fault, so it is left alone and keeps forwarding.
        Returns ``{"action": "none" | "recreated", "reason", "device"}``."""
        device_id = device_data["id"]
        netns = naming.device_netns(device_id)
        record = self.store.load(netns)
        if (record is not None and record.status == "active" and iproute.netns_exists(netns)
                and record.sshd_pid in iproute.netns_pids(netns)):
            return {"action": "none", "reason": f"namespace {netns} and its sshd are alive: the "
                                                f"management path is at fault; the device is left alone"}
        LOG.warning("netns device %s is dead (namespace %s or its sshd is gone); deleting what is left "
                    "and re-creating it", device_id, netns)
        self.destroy(netns)
        described = self.create_network_function_device({"id": device_id, "name": device_data.get("name")})
        if described is None:
            raise RuntimeError(f"netns device {device_id} could not be re-created")
        if device_data.get("ports") and not self.plug_network_function_device_interface(
                {**device_data, "id": device_id}):
            raise RuntimeError(f"netns device {device_id} was re-created but its ports could not be plugged")
        return {"action": "recreated", "reason": "re-created and re-plugged", "device": described}

    def _create(self, device_id: str, netns: str) -> DeviceRecord:
        if iproute.netns_exists(netns) or self.store.load(netns):
            # half-made by an earlier attempt: start clean
            self.destroy(netns)
        workdir = self.store.workdir(netns, create=True)
        record = DeviceRecord(id=device_id, netns=netns, ssh_port=self.opts.ssh_port,
                              host_key=keys.generate_host_key(workdir / "ssh_host_ed25519_key"))
        self.store.save(record)
        iproute.ip("netns", "add", netns)
        record.mgmt_index = self._plug_management(netns)
        net = self.opts.mgmt_network
        record.mgmt_ip = str(net.network_address + record.mgmt_index)
        record.mgmt_prefix = net.prefixlen
        self.store.save(record)
        iproute.ip_batch(["link set lo up",
                          f"addr replace {record.mgmt_ip}/{net.prefixlen} dev {naming.MGMT_IFNAME}",
                          f"link set {naming.MGMT_IFNAME} up"], netns=netns)
        iproute.netns_exec(netns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1",
                           "net.ipv6.conf.all.forwarding=1")
        sshd.write_files(device_id, workdir, record.mgmt_ip, record.ssh_port,
                         keys.client_public_key(self.state_path))
        record.sshd_pid = sshd.start(netns, workdir)
        sshd.wait_ready(record.mgmt_ip, record.ssh_port, record.sshd_pid, self.opts.start_timeout)
        self.known_hosts.pin(record.mgmt_ip, record.ssh_port, record.host_key)
        record.status = "active"
        self.store.save(record)
        return record

    def _existing(self, netns: str) -> Optional[DeviceRecord]:
        record = self.store.load(netns)
        if record and record.status == "active" and self._healthy(record):
            return record
        return None

    def _plug_management(self, netns: str) -> int:
        """Attach ``netns`` to the management bridge; return its address index.

        The host end of the veth is named after the index (``nfpmv7``), so the
        kernel itself is the address registry: a deleted device frees its index
        with its link, and nothing can hand one index out twice."""
        net = self.opts.mgmt_network
        with iproute.host_lock():
            segments.ensure_bridge(self.opts.mgmt_bridge, segments.gateway_address(str(net)))
            used = {int(name[len(naming.MGMT_LINK_PREFIX):])
                    for name in iproute.list_links(naming.MGMT_LINK_PREFIX)
                    if name[len(naming.MGMT_LINK_PREFIX):].isdigit()}
            for index in range(2, net.num_addresses - 1):
                if index not in used:
                    segments.attach_veth(naming.mgmt_link(index), naming.MGMT_IFNAME, netns,
                                         self.opts.mgmt_bridge)
                    # a deleted device may have held this address a moment ago: drop the
                    # host's cached MAC for it, or the first packets go to a dead veth
                    iproute.ip("neigh", "flush", "to", str(net.network_address + index),
                               "dev", self.opts.mgmt_bridge, check=False)
                    return index
        raise RuntimeError(f"management network {net} has no free address")

    def _release_bridges(self) -> None:
        for bridge in iproute.list_links(naming.BRIDGE_PREFIX):
            segments.release_bridge(bridge)
        segments.release_bridge(self.opts.mgmt_bridge)

    # -- ports -----------------------------------------------------------
    def plug_network_function_device_interface(self, device_data: DeviceDict) -> bool:
        """Plug each port into its network's bridge and give it ``ip_address``/``cidr``."""
        device_id = device_data.get("id")
        netns = naming.device_netns(device_id or "")
        if not device_id or not iproute.netns_exists(netns):
            LOG.error("plug: netns device %s does not exist; ports left unplugged", device_id)
            return False
        try:
            for port in device_data.get("ports") or []:
                self._plug_port(device_id, netns, port)
        except Exception as exc:  # noqa: BLE001 - the seed's contract is a boolean
            LOG.error("plug: netns device %s: %s; the step fails", device_id, exc)
            return False
        return True

    def _plug_port(self, device_id: str, netns: str, port: dict) -> None:
        if not port.get("network_id"):
            raise ValueError(f"port {port.get('id')}: network_id is required")
        host = naming.data_link(device_id, port["id"])
        inner = naming.inner_link(port.get("port_classification") or "data", port["id"])
        if not iproute.link_exists(host):
            with iproute.host_lock():
                bridge = naming.segment_bridge(port["network_id"])
                segments.ensure_bridge(bridge)
                segments.attach_veth(host, inner, netns, bridge, port.get("mac_address"))
        cmds = []
        if port.get("ip_address"):
            cmds.append(f"addr replace {_port_address(port)} dev {inner}")
        cmds.append(f"link set {inner} up")
        iproute.ip_batch(cmds, netns=netns)
        LOG.info("netns device %s: port %s plugged as %s on network %s", device_id,
                 port["id"], inner, port["network_id"])

    def unplug_network_function_device_interface(self, device_data: DeviceDict) -> bool:
        """Remove each port's veth; delete its bridge if nothing else is on it."""
        device_id = device_data.get("id") or ""
        try:
            for port in device_data.get("ports") or []:
                host = naming.data_link(device_id, port["id"])
                bridge = iproute.link_master(host)
                iproute.ip("link", "delete", host, check=False)
                if bridge:
                    with iproute.host_lock():
                        segments.release_bridge(bridge)
        except Exception as exc:  # noqa: BLE001
            LOG.error("unplug: netns device %s: %s", device_id, exc)
            return False
        return True

    # -- queries ---------------------------------------------------------
    def select_network_function_device(self, devices, device_data):
        """Only with ``shared: true``: the first live device with room for the ports."""
        if not self.opts.shared:
            return None
        need = len(device_data.get("ports") or [])
        for device in devices:
            room = (device.get("max_interfaces") or 0) - (device.get("interfaces_in_use") or 0)
            if room >= need and self.get_network_function_device_status(device) == DeviceStatus.ACTIVE:
                return device
        return None

    def get_network_function_device_status(self, device_data: DeviceDict) -> Optional[str]:
        """ACTIVE when the namespace exists and its sshd answers; BUILD while creating."""
        netns = naming.device_netns(device_data.get("id") or "")
        record = self.store.load(netns)
        if record is None or not iproute.netns_exists(netns):
            return DeviceStatus.ERROR
        if record.status != "active":
            return "BUILD"
        return DeviceStatus.ACTIVE if self._healthy(record) else DeviceStatus.ERROR

    def _healthy(self, record: DeviceRecord) -> bool:
        return (iproute.netns_exists(record.netns) and bool(record.mgmt_ip)
                and sshd.probe(record.mgmt_ip, record.ssh_port))

    def get_network_function_device_sharing_info(self, device_data: DeviceDict) -> dict:
        details = device_data.get("service_details") or {}
        filters = {"device_type": "netns"}
        if details.get("service_vendor"):
            filters["service_vendor"] = details["service_vendor"]
        if device_data.get("tenant_id"):
            filters["tenant_id"] = device_data["tenant_id"]
        return {"filters": filters}

    def get_network_function_device_healthcheck_info(self, device_data: DeviceDict) -> dict:
        return {"config": [{"resource": "healthmonitor", "resource_data": {
            "vmid": device_data.get("id"),
            "mgmt_ip": device_data.get("mgmt_ip_address"),
            "periodicity": device_data.get("periodicity") or "initial",
            "type": "ssh",
            "port": self.opts.ssh_port,
        }}]}

    def get_network_function_device_config_info(self, device_data: DeviceDict) -> dict:
        """The seed's ``interfaces`` and ``routes`` resources for ``device_data['ports']``."""
        ports = [p for p in device_data.get("ports") or [] if p.get("id")]
        interfaces = [{
            "name": naming.inner_link(p.get("port_classification") or "data", p["id"]),
            "port_classification": p.get("port_classification") or "provider",
            "ip_address": _port_address(p) if p.get("ip_address") else None,
            "mac_address": p.get("mac_address"),
            "gateway": p.get("gateway_ip"),
        } for p in ports]
        return {"config": [
            {"resource": "interfaces", "resource_data": {"interfaces": interfaces}},
            {"resource": "routes", "resource_data": {"routes": _default_routes(ports)}},
        ]}

    # -- housekeeping ----------------------------------------------------
    def startup_sweep(self, known_ids: Optional[set] = None) -> None:
        """Remove devices of this nfp instance that no database row owns, and leftovers."""
        Sweeper(self, known_ids).run()

    def _describe(self, record: DeviceRecord, device_data: DeviceDict) -> DeviceDict:
        return {
            "id": record.id,
            "name": device_data.get("name") or record.netns,
            "mgmt_ip_address": record.mgmt_ip,
            # the management veth is no port of the port table; nothing to reference
            "mgmt_port_id": None,
            "max_interfaces": self.opts.max_interfaces,
            "interfaces_in_use": 1,
            "description": f"netns device {record.netns}",
            "credentials_ref": None,
            "extra": {
                "netns": record.netns,
                "ssh_port": record.ssh_port,
                "ssh_user": self.opts.ssh_user,
                "host_key": record.host_key,
                "host_key_fingerprint": keys.fingerprint(record.host_key),
                "workdir": str(self.store.workdir(record.netns)),
            },
        }


def _port_address(port: dict) -> str:
    prefix = ipaddress.ip_network(port["cidr"], strict=False).prefixlen if port.get("cidr") else None
    ip = ipaddress.ip_address(port["ip_address"])
    return f"{ip}/{prefix if prefix is not None else ip.max_prefixlen}"


def _default_routes(ports: list[dict]) -> list[dict]:
    """A default route via the consumer side's gateway (else the provider's), when that
    gateway is another box; none when the device is itself the gateway."""
    ordered = sorted(ports, key=lambda p: p.get("port_classification") != "consumer")
    for port in ordered:
        gateway = port.get("gateway_ip")
        if gateway and gateway != port.get("ip_address"):
            default = "::/0" if ipaddress.ip_address(gateway).version == 6 else "0.0.0.0/0"
            return [{"destination": default, "nexthop": gateway, "name": "default"}]
    return []
