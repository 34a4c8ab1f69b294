"""Names of everything the netns driver creates, derived from ids.

Names are pure functions of the device, port and network ids, so a retried step
finds the links it made before, and a sweep after a crash can tell nfp's
objects from everyone else's: every namespace starts with ``nfp-`` and every
host link with ``nfp``. Linux link names are at most 15 characters.
"""
from __future__ import annotations

import hashlib

NETNS_PREFIX = "nfp-"
#: device namespaces; topology hosts use ``nfp-h-``
DEVICE_NETNS_PREFIX = "nfp-d-"
LINK_PREFIX = "nfp"
MGMT_LINK_PREFIX = "nfpmv"
DATA_LINK_PREFIX = "nfpp"
BRIDGE_PREFIX = "nfpbr"
#: name of the management interface inside a device
MGMT_IFNAME = "mgmt0"


def _digest(*parts: str, size: int) -> str:
    return hashlib.sha1("\0".join(parts).encode()).hexdigest()[:size]


def device_netns(device_id: str) -> str:
    """Namespace of device ``device_id``: ``nfp-d-<12 hex>``."""
    return DEVICE_NETNS_PREFIX + _digest(device_id, size=12)


def mgmt_link(index: int) -> str:
    """Host end of the management veth holding management address number ``index``."""
    return f"{MGMT_LINK_PREFIX}{index}"


def data_link(device_id: str, port_id: str) -> str:
    """Host end of the veth for ``port_id`` on ``device_id``."""
    return DATA_LINK_PREFIX + _digest(device_id, port_id, size=10)


def inner_link(port_classification: str, port_id: str) -> str:
    """Device end of a data veth: ``prov3fa2c1``, ``cons19ab02`` ..."""
    return (port_classification or "data")[:4] + _digest(port_id, size=6)


def segment_bridge(network_id: str) -> str:
    """Bridge that is the L2 segment of network ``network_id``."""
    return BRIDGE_PREFIX + _digest(network_id, size=10)
