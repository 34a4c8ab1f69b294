"""LBaaS v2 and v1 resources as nfp's ``loadbalancer``.

One ``loadbalancer`` element per pool: the VIP and frontend port come from the
pool's listener and load balancer (v2) or from the pool's ``vip`` (v1), the
members from the PoolMembers that point at the pool, the health check from the
pool's monitor. LBaaS ``HTTPS`` passes TLS through, which is nfp's ``TCP``;
``TERMINATED_HTTPS`` needs certificates nfp does not manage and is refused.
"""
from __future__ import annotations

from typing import Optional

from nfp.heat.template import Context, Ref, View, element_name

V2_LOADBALANCER = "OS::Neutron::LBaaS::LoadBalancer"
V2_LISTENER = "OS::Neutron::LBaaS::Listener"
V2_POOL = "OS::Neutron::LBaaS::Pool"
V2_MEMBER = "OS::Neutron::LBaaS::PoolMember"
V2_MONITOR = "OS::Neutron::LBaaS::HealthMonitor"
V1_POOL = "OS::Neutron::Pool"
V1_MEMBER = "OS::Neutron::PoolMember"
V1_MONITOR = "OS::Neutron::HealthMonitor"
V1_LOADBALANCER = "OS::Neutron::LoadBalancer"
TYPES = (V2_LOADBALANCER, V2_LISTENER, V2_POOL, V2_MEMBER, V2_MONITOR,
         V1_POOL, V1_MEMBER, V1_MONITOR, V1_LOADBALANCER)

_COMMON = {"name", "description", "admin_state_up", "tenant_id"}
_PROTOCOLS = {"HTTP": "HTTP", "TCP": "TCP", "HTTPS": "TCP"}
_MONITOR = _COMMON | {"type", "delay", "timeout", "max_retries", "url_path", "http_method",
                      "expected_codes"}
_VIP_V1 = {"address", "protocol_port", "subnet", "name", "description", "connection_limit",
           "admin_state_up"}


def translate_v2(ctx: Context) -> list[tuple[View, dict]]:
    """``(pool, loadbalancer element)`` for every LBaaS v2 pool."""
    out = []
    for pool in ctx.of_type(V2_POOL):
        pool.check(_COMMON | {"listener", "loadbalancer", "lb_algorithm", "protocol"})
        listener = ctx.view(pool.ref("listener", V2_LISTENER))
        listener.check(_COMMON | {"loadbalancer", "protocol", "protocol_port", "connection_limit"})
        balancer = ctx.view(listener.ref("loadbalancer", V2_LOADBALANCER))
        balancer.check(_COMMON | {"vip_address", "vip_subnet", "provider"})
        _require_up(pool, listener, balancer)
        _protocol(pool)  # checked only: HAProxy's mode follows the listener
        data = {"name": element_name(pool.name, set()),
                "vip_address": balancer.get("vip_address", required=True),
                "protocol_port": listener.get("protocol_port", required=True),
                "protocol": _protocol(listener),
                "lb_algorithm": pool.get("lb_algorithm", default="ROUND_ROBIN"),
                "members": [_member(m, "pool", None)
                            for m in ctx.pointing_at([V2_MEMBER], "pool", pool.name)
                            if m.flag("admin_state_up")]}
        monitors = ctx.pointing_at([V2_MONITOR], "pool", pool.name)
        _add_monitor(data, pool, monitors)
        out.append((pool, {"resource": "loadbalancer", "resource_data": data}))
    return out


def translate_v1(ctx: Context) -> list[tuple[View, dict]]:
    """``(pool, loadbalancer element)`` for every LBaaS v1 pool and its VIP."""
    out = []
    for pool in ctx.of_type(V1_POOL):
        pool.check(_COMMON | {"protocol", "lb_method", "subnet_id", "subnet", "monitors", "vip",
                              "provider"})
        vip = pool.get("vip", required=True)
        if not isinstance(vip, dict):
            raise pool.error("vip", "must be a mapping with address and protocol_port")
        for key in vip:
            if key not in _VIP_V1 and vip[key] is not None:
                raise pool.error(f"vip.{key}", f"cannot be translated (nfp reads "
                                               f"{', '.join(sorted(_VIP_V1))})")
        if vip.get("address") is None:
            raise pool.error("vip.address", "is required for nfp to translate this resource")
        if vip.get("protocol_port") is None:
            raise pool.error("vip.protocol_port", "is required for nfp to translate this resource")
        _require_up(pool)
        if str(vip.get("admin_state_up", True)).lower() in ("false", "0", "no", "off"):
            raise pool.error("vip.admin_state_up", "false cannot be translated: nfp has no "
                                                   "disabled load balancer")
        balancers = ctx.pointing_at([V1_LOADBALANCER], "pool_id", pool.name)
        member_port = vip["protocol_port"]
        for balancer in balancers[:1]:
            balancer.check(_COMMON | {"pool_id", "protocol_port", "members"})
            if balancer.get("members"):
                raise balancer.error("members", "names Nova servers nfp cannot look up; "
                                                "use OS::Neutron::PoolMember with an address")
            member_port = balancer.get("protocol_port", default=member_port)
        if len(balancers) > 1:
            raise balancers[1].error("pool_id", f"a second {V1_LOADBALANCER} for pool {pool.name}")
        data = {"name": element_name(pool.name, set()), "vip_address": vip["address"],
                "protocol_port": vip["protocol_port"], "protocol": _protocol(pool),
                "lb_algorithm": pool.get("lb_method", default="ROUND_ROBIN"),
                "members": [_member(m, "pool_id", member_port)
                            for m in ctx.pointing_at([V1_MEMBER], "pool_id", pool.name)
                            if m.flag("admin_state_up")]}
        refs = pool.get("monitors", default=[])
        if not isinstance(refs, list) or not all(isinstance(r, Ref) for r in refs):
            raise pool.error("monitors", "must be a list of {Ref: <health monitor>}")
        monitors = [ctx.view(r.name) for r in refs]
        for index, monitor in enumerate(monitors):
            if monitor.type != V1_MONITOR:
                raise pool.error(f"monitors[{index}]", f"points at {monitor.name}, a "
                                                       f"{monitor.type}; expected {V1_MONITOR}")
        _add_monitor(data, pool, monitors)
        out.append((pool, {"resource": "loadbalancer", "resource_data": data}))
    return out


def _require_up(*views: View) -> None:
    for view in views:
        if not view.flag("admin_state_up"):
            raise view.error("admin_state_up", "false cannot be translated: nfp has no "
                                               "disabled load balancer")


def _protocol(view: View) -> str:
    protocol = str(view.get("protocol", required=True)).upper()
    if protocol not in _PROTOCOLS:
        raise view.error("protocol", f"{protocol} cannot be translated (nfp balances "
                                     f"{', '.join(sorted(_PROTOCOLS))}; HTTPS is passed through)")
    return _PROTOCOLS[protocol]


def _member(member: View, pool_prop: str, default_port: Optional[int]) -> dict:
    member.check(_COMMON | {pool_prop, "address", "protocol_port", "weight", "subnet"})
    return {"address": member.get("address", required=True),
            "protocol_port": member.get("protocol_port", default=default_port, required=default_port
                                        is None),
            "weight": member.get("weight", default=1)}


def _add_monitor(data: dict, pool: View, monitors: list[View]) -> None:
    if len(monitors) > 1:
        raise pool.error(None, f"has {len(monitors)} health monitors "
                               f"({', '.join(m.name for m in monitors)}); nfp checks with one")
    for monitor in monitors:
        monitor.check(_MONITOR | {"pool"})
        if not monitor.flag("admin_state_up"):
            continue
        method = str(monitor.get("http_method", default="GET")).upper()
        if method != "GET":
            raise monitor.error("http_method", f"{method} cannot be translated (nfp checks with GET)")
        check = {"type": str(monitor.get("type", required=True)).upper()}
        for field in ("delay", "timeout", "max_retries", "url_path"):
            value = monitor.get(field)
            if value is not None:
                check[field] = value
        data["healthmonitor"] = check
