"""Golden upstream payloads (tests/fixtures/upstream/*.json) and how to send them.

Each file is a ``create_network_function(network_function=...)`` body written
from the structure of the GBP node driver of one release line (see the README's
interop section). Tests take a fresh copy with new chain-instance and tenant ids,
and point the flavor at a device nfp can run without a cloud (upstream's
``device_type=nova`` needs Nova): ``service_vendor=memory,device_type=static``.
"""
from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "upstream"

#: file → (release line it stands for, how its create is sent)
GOLDEN = {
    "mitaka_4.1.0_firewall_dict.json": ("mitaka 4.1.0", "call"),
    "newton_queens_firewall_list.json": ("newton 5.x", "call"),
    "newton_queens_lbaasv2_list.json": ("ocata-queens", "cast"),
}
RUNNABLE_FLAVOR = "service_vendor=memory,device_type=static"


def load(name: str, flavor: str = RUNNABLE_FLAVOR) -> dict:
    """A fresh copy of a golden payload: new SCI id and tenant, runnable flavor."""
    body = copy.deepcopy(json.loads((FIXTURES / name).read_text())["network_function"])
    tenant = uuid.uuid4().hex
    body["tenant_id"] = tenant
    body["resource_owner_context"]["tenant_id"] = tenant
    body["service_chain_instance"]["id"] = str(uuid.uuid4())
    body["service_profile"]["service_flavor"] = flavor
    return body


def as_list(value):
    """dict or list or None as a list (for building multi-PT variants)."""
    if value is None:
        return []
    return [value] if isinstance(value, dict) else list(value)


def with_second_provider(body: dict) -> dict:
    """The payload with a second provider PT and port (lists kept whole)."""
    out = copy.deepcopy(body)
    provider = out["provider"]
    pts, ports = as_list(provider["pt"]), as_list(provider["port"])
    pt2, port2 = copy.deepcopy(pts[0]), copy.deepcopy(ports[0])
    port2["id"] = pt2["port_id"] = str(uuid.uuid4())
    pt2["id"] = str(uuid.uuid4())
    port2["ip_address"] = port2["fixed_ips"][0]["ip_address"] = "10.0.0.7"
    port2["mac_address"] = "fa:16:3e:28:7d:b9"
    provider["pt"], provider["port"] = pts + [pt2], ports + [port2]
    provider["ptg"] = as_list(provider["ptg"])
    return out
