"""The orchestrator's RPC endpoints: validate, persist the intent and its first
step in one transaction, then hand the step to its worker.

Mutations arrive in batches (group commit): one transaction for the whole
batch, acked by the listener only after it commits. Reads are answered straight
from the database (:mod:`nfp.api.reads`).

Every request is answered for its caller (:mod:`nfp.api.tenancy`): a tenant
changes only its own NFs. In the same transaction as its intent, a create or an
operation has its payload's secrets sealed into the secret store
(:mod:`nfp.payload_secrets`; a delete's and a notification's arguments are never
stored), and every mutation gets its ``audit_log`` row (:mod:`nfp.api.guard`).
"""
from __future__ import annotations

import logging
import time
import uuid
from types import SimpleNamespace
from typing import Any, Callable, Optional

from sqlalchemy.exc import SQLAlchemyError

from nfp import audit, flows
from nfp.api import guard, schemas, tenancy, views
from nfp.api.reads import ReadEndpoints
from nfp.api.tenancy import Caller, Forbidden
from nfp.db.base import utcnow
from nfp.db import errors as db_errors
from nfp.db.repositories import network_functions, rpc_requests
from nfp.engine import store
from nfp.exceptions import Conflict, InvalidRequest, NotFound
from nfp.flows import OP_STATUS, NFStatus, set_nf_status
from nfp.resources import ResourceError, dump_service_config, parse_resource, parse_service_config
from nfp.rpc.errors import safe
from nfp.rpc.types import IncomingRequest, Reply

LOG = logging.getLogger(__name__)

OP_METHODS = {
    "update_network_function": ("update", schemas.UpdateArgs),
    "policy_target_added_notification": ("pt_add", schemas.PolicyTargetArgs),
    "policy_target_removed_notification": ("pt_remove", schemas.PolicyTargetArgs),
    "consumer_ptg_added_notification": ("consumer_add", schemas.ConsumerArgs),
    "consumer_ptg_removed_notification": ("consumer_remove", schemas.ConsumerArgs),
    "chain_parameters_updated_notification": ("chain_parameters", schemas.ChainParamsArgs),
}
MUTATIONS = {"create_network_function", "delete_network_function", "network_function_notification",
             *OP_METHODS, "reconcile_network_function"}
READS = {"get_network_function", "get_network_functions", "get_network_function_details",
         "get_plumbing_info", "get_port_info", "get_network_function_context",
         "get_device_health"}
#: after a database error on the held connection, ``get_network_function`` goes
#: to the read threads this long (s) instead of the consumer thread
INLINE_PAUSE = 5.0
#: ``rpc_requests.unique_id`` is String(64); oslo sends 32 hex characters
MAX_UNIQUE_ID = 64
#: ``network_functions.service_vendor`` / ``device_type`` are String(64)
MAX_FLAVOR_VALUE = 64
#: ``status_code`` values (any case) that mean the configurator failed; ``unhandled``
#: is not one of them: it means "not applied here", as upstream's NSO read it
FAILED_CODES = {"failure", "failed", "error"}


def validate_service_config(raw: Any, field: str) -> None:
    """Reject a bad resource before anything is stored or touches a device."""
    for index, element in enumerate(parse_service_config(raw)):
        if element.get("resource") == "heat":
            continue
        try:
            parse_resource(element.get("resource"), element.get("resource_data"),
                           prefix=f"{field}.config[{index}].resource_data")
        except ResourceError as exc:
            name = exc.field if exc.field != "resource" else f"{field}.config[{index}].resource"
            raise InvalidRequest(name, exc.reason) from None


class OrchestratorEndpoints(ReadEndpoints):
    """Implements :class:`nfp.rpc.types.Dispatcher` for the orchestrator topics.

    Parameters:
        sessionmaker: SQLAlchemy session factory.
        dispatch(callable): ``(refs) -> None`` hands committed steps to workers.
    """

    def __init__(self, conf, sessionmaker, dispatch: Callable[[list], None], read_engine=None):
        self.conf = conf
        self.sessionmaker = sessionmaker
        #: autocommit connections for the hot read (:func:`nfp.db.budget.listener_read_pool`)
        self.read_engine = read_engine if read_engine is not None else sessionmaker.kw["bind"]
        self.dispatch = dispatch
        self._secrets = None
        #: the connection inline reads hold (PostgreSQL; the consumer thread only), opened on first use
        self._held = None
        self._inline_after = 0.0

    def secret_store(self):
        """The encrypted store payload secrets go to; its key is read on first use."""
        if self._secrets is None:
            from nfp.secrets import SecretStore, load_key
            self._secrets = SecretStore(self.sessionmaker, load_key(self.conf),
                                        reload_key=lambda: load_key(self.conf))
        return self._secrets

    # -- Dispatcher protocol ----------------------------------------------
    def has_method(self, topic: str, method: str) -> bool:
        return method in MUTATIONS or method in READS

    def is_read(self, topic: str, method: str) -> bool:
        return method in READS

    def serves_inline(self, topic: str, method: str) -> bool:
        """``get_network_function`` on PostgreSQL: one prepared statement on an
        autocommit connection held by the consumer thread, bounded by the read
        engine's connect and statement timeouts (:func:`nfp.db.engine.make_engine`).
        Answering it where it arrives spares two thread hand-offs (to a read
        thread, back to the consumer), about a tenth of a call's latency. For
        ``INLINE_PAUSE`` s after a database error it goes to the read threads,
        so an unreachable database never stalls the consumer call after call.
        SQLite never: its reads can wait on the write lock."""
        return (method == "get_network_function" and self.read_engine.dialect.name == "postgresql"
                and time.monotonic() >= self._inline_after)

    def handle_inline_read(self, request: IncomingRequest) -> Reply:
        """Answer a read that :meth:`serves_inline` accepted, on the connection
        the consumer thread holds. A held connection found dead (the database
        restarted since the last read) is replaced and the read tried once more:
        it only reads. Any other database error, or a second one, releases the
        connection, pauses inline reads and is raised, as :meth:`handle_read` would."""
        who = tenancy.caller(request.context, self.conf)
        try:
            try:
                return self._read_held(request, who)
            except SQLAlchemyError as exc:
                self._release_held()
                if not getattr(exc, "connection_invalidated", False):
                    raise
                return self._read_held(request, who)  # a stale session: a new one answers at once
        except SQLAlchemyError:
            self._release_held()
            self._inline_after = time.monotonic() + INLINE_PAUSE
            raise

    def _read_held(self, request: IncomingRequest, who: Caller) -> Reply:
        if self._held is None:
            self._held = self.read_engine.connect()
        try:
            return Reply(result=self._get_network_function(self._held, request.args, who))
        except (InvalidRequest, NotFound) as exc:
            return Reply(error=exc)

    def _release_held(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            try:
                held.close()
            except SQLAlchemyError:  # already gone; the pool replaces it
                LOG.debug("closing the inline read connection failed", exc_info=True)

    def close(self) -> None:
        """Give back the connection inline reads hold."""
        self._release_held()

    def handle_mutations(self, requests: list[IncomingRequest]) -> list[Reply]:
        try:
            return self._batch(requests)
        except SQLAlchemyError as exc:
            if len(requests) == 1:
                if not db_errors.is_data_error(exc):
                    raise  # the intake retries what the environment caused
                return [self._refuse(requests[0], exc)]
            LOG.warning("group commit of %d requests failed; retrying them one by one", len(requests))
            out: list[Reply] = []
            for req in requests:
                out += self._batch([req])
            return out

    def handle_read(self, request: IncomingRequest) -> Reply:
        who = tenancy.caller(request.context, self.conf)
        try:
            if request.method == "get_network_function":
                # the hot read: plain Core on a pooled connection, no ORM session,
                # autocommit where the database has it (one round trip)
                with self.read_engine.connect() as conn:
                    return Reply(result=self._get_network_function(conn, request.args, who))
            with self.sessionmaker() as session:
                result = getattr(self, f"_{request.method}")(session, request.args, who)
                session.rollback()  # reads end their transaction at once
                return Reply(result=result)
        except (InvalidRequest, NotFound) as exc:
            return Reply(error=exc)

    def _refuse(self, req: IncomingRequest, exc: BaseException) -> Reply:
        """One refusal for a value the database rejected: retrying cannot help, and
        a retry loop would stall intake. The reason never carries SQL."""
        what = "network function" if req.method == "create_network_function" else \
            f"{req.method.replace('_', ' ')}"
        refused = db_errors.refusal(exc, what)
        LOG.error("%s %s refused: %s", "call" if req.is_call else "cast", req.method, refused)
        with self.sessionmaker.begin() as session:
            if not req.is_call:
                self._fail_cast(session, req, refused)
            audit.record_many(session, [guard.audit_entry(
                req, tenancy.caller(req.context, self.conf), Reply(error=refused), None)])
        return Reply(error=refused)

    # -- batching -----------------------------------------------------------
    def _batch(self, requests: list[IncomingRequest]) -> list[Reply]:
        """One transaction for the batch. Creates are validated in Python and
        inserted together; other mutations run one by one, after the creates
        queued before them, so a batch behaves exactly as its order says."""
        outcomes: list[Optional[Reply]] = [None] * len(requests)
        refs: list = []
        creates: list[tuple[int, IncomingRequest, dict, dict]] = []
        with self.sessionmaker.begin() as session:
            seen = rpc_requests.seen(session, [r.unique_id for r in requests if r.unique_id])
            callers = [tenancy.caller(req.context, self.conf) for req in requests]
            ids: list[Optional[str]] = [None] * len(requests)
            for index, req in enumerate(requests):
                who = callers[index]
                if req.unique_id and len(req.unique_id) > MAX_UNIQUE_ID:
                    outcomes[index] = Reply(error=InvalidRequest(
                        "_unique_id", f"must be at most {MAX_UNIQUE_ID} characters"))
                    continue
                if req.unique_id and req.unique_id in seen:
                    outcomes[index] = self._duplicate(session, seen[req.unique_id], who)
                    continue
                if req.method == "create_network_function":
                    try:
                        row, found = self._build_create(req, who)
                    except (InvalidRequest, Conflict, Forbidden) as exc:
                        LOG.error("%s %s rejected: %s", "call" if req.is_call else "cast",
                                  req.method, exc)
                        outcomes[index] = Reply(error=exc)
                        continue
                    creates.append((index, req, row, found))
                    if req.unique_id:
                        seen[req.unique_id] = row["id"]
                    continue
                refs += self._insert_creates(session, creates, outcomes)
                creates = []
                outcome, new_refs, object_id = self._one(session, req, who)
                outcomes[index], ids[index] = outcome, object_id
                refs += new_refs
                if req.unique_id and outcome.error is None:
                    rpc_requests.add(session, req.unique_id, req.method, object_id)
                    seen[req.unique_id] = object_id
            refs += self._insert_creates(session, creates, outcomes)
            audit.record_many(session, [guard.audit_entry(req, callers[index], outcomes[index], ids[index])
                                        for index, req in enumerate(requests)])
        if refs:
            self.dispatch(refs)
        return outcomes  # type: ignore[return-value]

    def _insert_creates(self, session, creates, outcomes) -> list:
        """Insert validated creates with three statements, whatever their number
        (and the secrets sealed from their payloads)."""
        if not creates:
            return []
        taken = network_functions.existing_ids(session, [c[2]["id"] for c in creates])
        rows, rpc_rows = [], []
        for index, req, row, found in creates:
            if row["id"] in taken:
                outcomes[index] = Reply(error=Conflict(f"network function {row['id']} already exists"))
                continue
            taken.add(row["id"])
            rows.append(row)
            guard.store_secrets(session, self.secret_store, found)
            # a cast's answer is never sent: its view is only built for a call
            outcomes[index] = Reply(result=views.nf_dict(SimpleNamespace(**row)) if req.is_call
                                    else {"id": row["id"]})
            if req.unique_id:
                rpc_rows.append({"unique_id": req.unique_id, "method": req.method,
                                 "object_id": row["id"], "created_at": row["created_at"]})
        if not rows:
            return []
        network_functions.insert_many(session, rows)  # after anything the ORM holds, in order
        rpc_requests.insert_many(session, rpc_rows)
        LOG.info("accepted %d network function(s): %s", len(rows),
                 ", ".join(r["id"] for r in rows[:5]) + (" ..." if len(rows) > 5 else ""))
        return store.add(session, [flows.CREATE.start(row["id"]) for row in rows])

    @staticmethod
    def _duplicate(session, object_id: Optional[str], who: Caller) -> Reply:
        nf = network_functions.get(session, object_id) if object_id else None
        return Reply(result=views.nf_dict(nf) if nf and who.may_see(nf.tenant_id) else None)

    def _one(self, session, req: IncomingRequest, who: Caller):
        try:
            with session.begin_nested():
                if req.method == "delete_network_function":
                    return self._delete(session, req, who)
                if req.method == "network_function_notification":
                    return self._notification(session, req, who)
                if req.method == "reconcile_network_function":
                    return self._reconcile_network_function(session, req, who)
                return self._operation(session, req, who)
        except Forbidden as exc:
            # the NF is left exactly as it was: no ERROR status for a stranger's cast
            LOG.warning("%s %s refused: %s (caller %s)", "call" if req.is_call else "cast",
                        safe(req.method), exc, who.label)
            return Reply(error=exc), [], None
        except (InvalidRequest, NotFound, Conflict) as exc:
            if not req.is_call:
                self._fail_cast(session, req, exc)
            return Reply(error=exc), [], None

    def _fail_cast(self, session, req: IncomingRequest, exc: Exception) -> None:
        nf_id = req.args.get("network_function_id") if isinstance(req.args, dict) else None
        nf = network_functions.get(session, nf_id) if isinstance(nf_id, str) and len(nf_id) <= 36 else None
        if nf is not None and not isinstance(exc, Conflict) and nf.status != NFStatus.PENDING_DELETE:
            set_nf_status(nf, NFStatus.ERROR, f"{req.method}: {exc}")
            LOG.error("NF %s: %s rejected (%s); NF set to ERROR", nf.id, req.method, exc)
        else:
            LOG.error("cast %s rejected: %s", req.method, exc)

    # -- mutations ------------------------------------------------------------
    def _build_create(self, req, who: Caller) -> tuple[dict, dict]:
        """Validate a create completely, without the database; return its row and
        the secrets its payload carried (stored by the caller once it is accepted)."""
        raw = req.args.get("network_function")
        if not isinstance(raw, dict):
            raise InvalidRequest("network_function",
                                 "Field required" if raw is None else "must be an object")
        raw, found = guard.seal_create(raw, who)
        nf_in = schemas.parse(schemas.NetworkFunctionIn, raw, "network_function.")
        if not who.may_see(nf_in.tenant_id):
            raise Forbidden(f"create_network_function: tenant {safe(who.tenant or '(none)')} may not "
                            f"create a network function for another tenant")
        flavor = nf_in.service_profile.flavor()
        if not flavor.get("service_vendor"):
            raise InvalidRequest("network_function.service_profile.service_flavor",
                                 "must name service_vendor (service_vendor=X,device_type=Y)")
        for key in ("service_vendor", "device_type"):
            if len(flavor.get(key) or "") > MAX_FLAVOR_VALUE:
                raise InvalidRequest("network_function.service_profile.service_flavor",
                                     f"{key} must be at most {MAX_FLAVOR_VALUE} characters")
        validate_service_config(nf_in.service_config, "network_function.service_config")
        raw_config = nf_in.service_config
        if raw_config is None and nf_in.service_chain_node:
            raw_config = nf_in.service_chain_node.config
        if raw_config is not None and not isinstance(raw_config, str):
            raw_config = dump_service_config(parse_service_config(raw_config))
        now = utcnow()
        spec = {"ports": nf_in.ports(), "management": nf_in.management or
                ({"id": nf_in.management_ptg_id} if nf_in.management_ptg_id else {}),
                "network_mode": nf_in.network_function_mode, "flavor": flavor,
                "consumers": nf_in.consumers(), "subnet_cidrs": nf_in.subnet_cidrs(),
                "provider": _endpoint_spec(nf_in.provider),
                # for Heat get_param (nfp.desired.heat_params)
                "config_param_values": nf_in.config_param_values()}
        if nf_in.consuming_ptgs_details is not None or nf_in.consuming_eps_details is not None:
            # an upstream caller: the firewall's rules follow the consumers it names,
            # and no consumer means no rule, as upstream's copied rules did
            spec["follow_consumers"] = True
        return {
            "id": nf_in.id or str(uuid.uuid4()), "name": nf_in.nf_name(),
            "description": nf_in.description,
            "tenant_id": nf_in.tenant_id,
            "service_id": nf_in.service_chain_node.id if nf_in.service_chain_node else None,
            "service_chain_id": nf_in.service_chain_instance.id if nf_in.service_chain_instance else None,
            "service_profile_id": nf_in.service_profile.id, "service_config": raw_config,
            "config_policy_id": None, "status": NFStatus.PENDING_CREATE.value, "status_description": "",
            "service_type": nf_in.service_profile.service_type,
            "service_vendor": flavor["service_vendor"], "device_type": flavor.get("device_type", "static"),
            "spec": spec,
            "generation": 0, "operation": "create", "created_at": now, "updated_at": now}, found

    def _delete(self, session, req, who: Caller):
        args = schemas.parse(schemas.DeleteArgs, req.args)
        nf = network_functions.get(session, args.network_function_id, lock=True)
        if nf is None:
            raise NotFound(f"network function {args.network_function_id} not found")
        if not who.may_see(nf.tenant_id):
            raise tenancy.forbidden(req.method, nf.id, who)
        if nf.status == NFStatus.PENDING_DELETE:
            return Reply(result=None), [], nf.id
        cancelled = store.cancel_scope(session, nf.id)
        nf.generation += 1
        nf.operation = "delete"
        set_nf_status(nf, NFStatus.PENDING_DELETE)
        refs = store.add(session, [flows.DELETE.start(nf.id)], nf.generation)
        LOG.info("NF %s: delete accepted; %d open step(s) pre-empted", nf.id, cancelled)
        return Reply(result=None), refs, nf.id

    def _operation(self, session, req, who: Caller):
        op, model = OP_METHODS[req.method]
        args = schemas.parse(model, req.args)
        nf = network_functions.get(session, args.network_function_id, lock=True)
        if nf is None:
            raise NotFound(f"network function {args.network_function_id} not found")
        if not who.may_see(nf.tenant_id):
            raise tenancy.forbidden(req.method, nf.id, who)
        sealed, found = guard.seal_operation(req.method, req.args, nf, who)
        if found:
            args = schemas.parse(model, sealed)
            guard.store_secrets(session, self.secret_store, found)
        if nf.status == NFStatus.PENDING_DELETE:
            raise Conflict(f"network function {nf.id} is being deleted")
        payload_args = args.model_dump(mode="json", exclude={"network_function_id"})
        if op == "update":
            validate_service_config(args.config, "config")
            cfg = args.config
            payload_args["config"] = cfg if isinstance(cfg, str) else \
                dump_service_config(parse_service_config(cfg))
        token = f"{op}:{req.unique_id or uuid.uuid4().hex}"
        # a degraded NF (device unreachable) stays ACTIVE: its operation waits in nf.op_wait
        if nf.operation is None and not nf.degraded:
            nf.operation = token
            set_nf_status(nf, OP_STATUS[op])
        refs = store.add(session, [flows.OPERATION.start(nf.id, {"op": op, "token": token,
                                                                  "args": payload_args})], nf.generation)
        return Reply(result=None), refs, nf.id

    def _notification(self, session, req, who: Caller):
        if not who.is_admin:  # results are the configurator's to report, not a tenant's
            raise Forbidden(f"network_function_notification: tenant {safe(who.tenant or '(none)')} is not "
                            f"admin; only the configurator (an admin context) reports results")
        args = schemas.parse(schemas.NotificationArgs, req.args)
        data = args.notification_data
        context = (data.get("info") or {}).get("context") or {}
        items = data.get("notification") or []
        failed = [n for n in items if isinstance(n, dict)
                  and str((n.get("data") or {}).get("status_code") or "").lower() in FAILED_CODES]
        event_id = context.get("event_id")
        if isinstance(event_id, int):
            ref = store.resume(session, event_id, {"status": "FAILURE" if failed else "SUCCESS",
                                                   "error": [(n.get("data") or {}).get("error_msg")
                                                             for n in failed]})
            return Reply(result=None), [ref] if ref else [], context.get("nf_id")
        nf_id = context.get("nf_id")
        nf = network_functions.get(session, nf_id) if isinstance(nf_id, str) else None
        if nf is not None and failed:
            reason = "; ".join(str((n.get("data") or {}).get("error_msg") or n.get("resource"))
                               for n in failed)
            set_nf_status(nf, NFStatus.ERROR, f"configurator reported failure: {reason}")
        return Reply(result=None), [], nf_id

    # -- assurance (nfp.api.assurance; its read is in nfp.api.reads) -----------------
    def _reconcile_network_function(self, session, req, who: Caller):
        from nfp.api import assurance
        nf_id = req.args.get("network_function_id") if isinstance(req.args, dict) else None
        nf = network_functions.get(session, nf_id) if isinstance(nf_id, str) and len(nf_id) <= 36 else None
        if nf is not None and not who.may_see(nf.tenant_id):
            raise tenancy.forbidden(req.method, nf.id, who)
        answer, refs = assurance.reconcile_network_function(session, req.args)
        return Reply(result=answer), refs, answer["network_function_id"]


def _endpoint_spec(endpoint: Optional[schemas.Endpoint]) -> dict:
    """The provider's ids and subnet, kept for the desired config (firewall
    destinations) and for resolving consumer subnets known only by id."""
    if endpoint is None:
        return {}
    subnet = endpoint.subnet
    return {"pt_ids": [pt.id for pt in endpoint.pt], "ptg_ids": [g.id for g in endpoint.ptg],
            "ptg_name": endpoint.ptg[0].name if endpoint.ptg else None,
            "cidr": subnet.cidr if subnet else None,
            "subnet_id": subnet.id if subnet else None}
