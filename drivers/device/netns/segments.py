"""L2 segments: Linux bridges in the host namespace that veths plug into.

A network (``network_id``) is one bridge; the management network is one more
bridge that also carries nfp's own address, so nfp reaches each device's sshd.
Bridges are shared by every device and topology host on the machine, so they
are created and removed only under :func:`iproute.host_lock`, and removed only
when nothing is attached any more. They are kept out of the host's
``br_netfilter`` hooks so the host firewall cannot change what tests observe.
"""
from __future__ import annotations

import hashlib
import ipaddress
import logging
from typing import Optional

from nfp.drivers.device.netns import iproute

LOG = logging.getLogger(__name__)

_BRIDGE_OPTS = ("type bridge stp_state 0 forward_delay 0 "
                "nf_call_iptables 0 nf_call_ip6tables 0 nf_call_arptables 0")


def ensure_bridge(name: str, address: Optional[str] = None) -> None:
    """Create bridge ``name`` (with ``address``, CIDR form) if missing and set it up.
    Caller holds the host lock."""
    cmds = []
    if not iproute.link_exists(name):
        # a fixed MAC: a bridge left to itself takes its lowest port MAC and changes it as
        # ports come and go, and devices that cached the old one lose the next packets
        cmds.append(f"link add name {name} address {_mac(name)} {_BRIDGE_OPTS}")
    if address:
        cmds.append(f"addr replace {address} dev {name}")
    cmds.append(f"link set {name} up")
    iproute.ip_batch(cmds)


def release_bridge(name: str) -> bool:
    """Delete bridge ``name`` if nothing is attached; True if it is gone. Caller holds the lock."""
    if not iproute.link_exists(name):
        return True
    if iproute.bridge_ports(name):
        return False
    iproute.ip("link", "delete", name, check=False)
    LOG.info("bridge %s had no ports left and was deleted", name)
    return True


def attach_veth(host_link: str, peer: str, netns: str, bridge: str,
                mac: Optional[str] = None) -> None:
    """Create veth ``host_link``/``peer`` with ``peer`` inside ``netns`` and the host end on
    ``bridge``; both come up. The peer is created in place, so a crash cannot strand it
    in the host namespace."""
    address = f" address {mac}" if mac else ""
    iproute.ip_batch([
        f"link add name {host_link} type veth peer name {peer}{address} netns {netns}",
        f"link set {host_link} master {bridge} up",
    ])


def _mac(name: str) -> str:
    """A stable locally administered unicast MAC for bridge ``name``."""
    digest = hashlib.sha1(name.encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def gateway_address(cidr: str) -> str:
    """The host's address on a management network: its first usable address, CIDR form."""
    net = ipaddress.ip_network(cidr, strict=False)
    return f"{next(net.hosts())}/{net.prefixlen}"
