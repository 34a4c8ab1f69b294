"""The orchestrator's read-only RPC methods, each answering for one caller.

Reads go straight to the database (no step, no transaction kept open). A
non-admin caller (:mod:`nfp.api.tenancy`) sees only its own tenant's network
functions: another tenant's NF, port or device is answered exactly as a missing
one would be, and the attempt is logged and audited (:func:`nfp.api.guard.audit_read_denied`).
"""
from __future__ import annotations

from nfp.api import guard, schemas, views
from nfp.api.tenancy import Caller
from nfp.db.repositories import NF_FILTER_COLUMNS, devices, instances, network_functions, ports
from nfp.exceptions import InvalidRequest, NotFound


class ReadEndpoints:
    """The ``get_*`` methods of :class:`nfp.api.endpoints.OrchestratorEndpoints`
    (which provides ``sessionmaker``); ``_<method>(session, args, who)``."""

    def _get_network_function(self, session, args: dict, who: Caller):
        nf_id = args.get("network_function_id") if isinstance(args, dict) else None
        if not isinstance(nf_id, str) or not 0 < len(nf_id) <= 36:
            nf_id = schemas.parse(schemas.NfIdArgs, args).network_function_id
        row = network_functions.row(session, nf_id)
        if row is not None and not who.may_see(row.tenant_id):
            guard.audit_read_denied(self.sessionmaker, "get_network_function", nf_id, who,
                                    f"network function {nf_id}")
            return None
        return views.nf_dict(row) if row else None

    def _get_network_functions(self, session, args: dict, who: Caller):
        filters = schemas.parse(schemas.FiltersArgs, args).filters or {}
        for key in filters:
            if key not in NF_FILTER_COLUMNS:
                raise InvalidRequest(f"filters.{key}", f"unknown filter; use {sorted(NF_FILTER_COLUMNS)}")
        if not who.is_admin:  # a tenant lists its own NFs, whatever else it asks for
            asked = filters.get("tenant_id")
            filters = {**filters, "tenant_id": [t for t in (asked if asked is not None else [who.tenant])
                                                if who.tenant and t == who.tenant]}
        return [views.nf_dict(nf) for nf in network_functions.find(session, filters)]

    def _get_network_function_details(self, session, args: dict, who: Caller, method: str = ""):
        args = schemas.parse(schemas.NfIdArgs, args)
        nf = network_functions.get(session, args.network_function_id)
        if nf is not None and not who.may_see(nf.tenant_id):
            guard.audit_read_denied(self.sessionmaker, method or "get_network_function_details",
                                    nf.id, who, f"network function {nf.id}")
            nf = None
        if nf is None:
            raise NotFound(f"network function {args.network_function_id} not found")
        nfi = instances.of(session, nf.id)
        return views.details(nf, nfi, devices.get(session, nfi.network_function_device_id if nfi else None))

    def _get_plumbing_info(self, session, args: dict, who: Caller):
        """What the plumber must create before a chain with a device is built:
        a gateway (provider and consumer PT) for firewall and VPN, an endpoint
        for a load balancer; ``{}`` in base mode (``device_type=None``), where
        no PT is needed. Upstream's RPC answers ``consumer: [{}]`` for LB too."""
        profile = schemas.parse(schemas.PlumbingArgs, args).request_info.profile
        if (profile.device_type() or "").lower() in ("none", "null"):
            return {}
        # no tenant's data: the answer follows from the profile alone
        kind = "gateway" if profile.service_type in schemas.GATEWAY_SERVICES else "endpoint"
        return {"management": [], "provider": [{}], "consumer": [{}], "plumbing_type": kind}

    def _get_port_info(self, session, args: dict, who: Caller):
        port_id = schemas.parse(schemas.PortIdArgs, args).port_id
        port = ports.get(session, port_id)
        if port is not None and not who.is_admin and who.tenant not in guard.nf_tenants_of_port(session, port_id):
            guard.audit_read_denied(self.sessionmaker, "get_port_info", "", who, f"port {port_id}")
            return None
        return views.port_info(port) if port else None

    def _get_network_function_context(self, session, args: dict, who: Caller):
        """The details, with every data port of the instance and the device's
        management and monitoring ports (upstream NCO's view of an NF)."""
        details = self._get_network_function_details(session, args, who, "get_network_function_context")
        nf_id = details["network_function"]["id"]
        nfi = instances.of(session, nf_id)
        nfd = devices.get(session, nfi.network_function_device_id if nfi else None)
        return {"network_function_details": details,
                "ports_info": [views.port_info(p) for p in (nfi.port_info if nfi else [])],
                "mngmt_port_info": views.port_info(ports.get(session, nfd.mgmt_port_id))
                if nfd and nfd.mgmt_port_id else None,
                "monitor_port_info": views.port_info(ports.get(session, nfd.monitoring_port_id))
                if nfd and nfd.monitoring_port_id else None}

    def _get_device_health(self, session, args, who: Caller):
        from nfp.api import assurance
        if who.is_admin:
            return assurance.get_device_health(session, args)
        parsed = schemas.parse(assurance.HealthArgs, args if isinstance(args, dict) else {})
        if parsed.network_function_id:
            self._get_network_function_details(session, {"network_function_id": parsed.network_function_id},
                                               who, "get_device_health")
        answer = assurance.get_device_health(session, args)
        mine = [h for h in answer if who.tenant in guard.nf_tenants_of_device(session, h["identifier"])]
        if parsed.device_id and not mine:
            guard.audit_read_denied(self.sessionmaker, "get_device_health", "", who,
                                    f"device {parsed.device_id}")
            raise NotFound(f"device {parsed.device_id} not found")
        return mine
