"""The configurator's REST API (seed 001), as a FastAPI application.

Every request passes :class:`Guard` first: its source address must be in
``allowed_management_cidrs`` (403) and it must carry a valid, unused token (401),
before its body is even read. A POST is then validated (400 naming the field),
its target checked against ``allowed_target_cidrs`` (403), and it is stored with
its step (:func:`~nfp.configurator.intake.accept`) before the 200 answer; its
result appears in ``GET /v1/nfp/get_notifications``. Every mutating request and
every refusal is audited. The OpenAPI document is served at ``/openapi.json``.
"""
from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Callable, Optional

from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from nfp import audit
from nfp.configurator import intake
from nfp.configurator.models import (Accepted, AckBody, Acknowledged, ConfigBody, ErrorBody,
                                     FieldError, METHODS, Notification, check)
from nfp.configurator.security import Allowlist, AuthError

LOG = logging.getLogger(__name__)
PREFIX = "/v1/nfp"
REQUEST_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
ERRORS = {400: {"model": ErrorBody, "description": "invalid request; `field` names the field"},
          401: {"model": ErrorBody, "description": "missing, expired, replayed or foreign token"},
          403: {"model": ErrorBody, "description": "source or target outside the allowlists"}}


class Guard:
    """Pure ASGI middleware: source allowlist, body size and token, in that order.

    Parameters:
        app: the wrapped application.
        verifier: a :class:`~nfp.configurator.security.TokenVerifier`.
        sources: the management source :class:`Allowlist`.
        peers: ``(host, port) -> certificate subject`` of live TLS connections.
        require_peer: refuse (401) a request whose TLS client certificate is unknown.
    """

    def __init__(self, app, verifier, sources: Allowlist, sessionmaker, audit_file: str = "",
                 max_body: int = 1 << 20, peers: Optional[dict] = None, require_peer: bool = False):
        self.app, self.verifier, self.sources, self.sessions = app, verifier, sources, sessionmaker
        self.audit_file, self.max_body = audit_file, max_body
        self.peers, self.require_peer = peers if peers is not None else {}, require_peer

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        client = scope.get("client") or ("", 0)
        who = {"source": str(client[0]), "cert_subject": self.peers.get(tuple(client), "")}
        method = scope.get("path", "").rsplit("/", 1)[-1][:96]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if not self.sources.allows(who["source"]):
            self._audit(audit.ACCESS_DENIED, who, method, "forbidden",
                        f"source {who['source']} is outside configurator_service.allowed_management_cidrs")
            return await _send(send, 403, "source: this address is not in "
                               "configurator_service.allowed_management_cidrs", "source")
        if self.require_peer and not who["cert_subject"]:
            self._audit(audit.AUTH_FAILURE, who, method, "unauthorized", "no TLS client certificate")
            return await _send(send, 401, "no TLS client certificate", "certificate")
        try:
            claims = self.verifier.verify(headers.get("authorization"))
        except AuthError as exc:
            self._audit(audit.AUTH_FAILURE, who, method, "unauthorized", str(exc))
            return await _send(send, 401, str(exc), "Authorization", {"www-authenticate": "Bearer"})
        who["token_subject"] = str(claims.get("sub", ""))[:255]
        if scope.get("method") in ("POST", "PUT", "PATCH", "DELETE"):
            reason = _body_size_problem(headers, self.max_body)
            if reason:
                self._audit(audit.REQUEST, who, method, "rejected", reason)
                return await _send(send, 400, reason, "body")
        scope.setdefault("state", {})["who"] = who
        await self.app(scope, receive, send)

    def _audit(self, event, who, method, result, detail) -> None:
        audit.record_now(self.sessions, event, self.audit_file, method=method, result=result,
                         detail=detail, **who)


def _body_size_problem(headers: dict, limit: int) -> Optional[str]:
    length = headers.get("content-length")
    if length is None:
        return "body: Content-Length is required"
    if not length.isdigit():
        return "body: Content-Length is not a number"
    if int(length) > limit:
        return f"body: {length} bytes exceed configurator_service.max_body_bytes ({limit})"
    return None


async def _send(send, status: int, error: str, field: str, extra: Optional[dict] = None) -> None:
    body = json.dumps({"error": error, "field": field}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def field_of(loc) -> str:
    """A FastAPI error location as nfp names fields: ``config[0].resource``."""
    parts = list(loc)
    if parts and parts[0] == "body":
        parts = parts[1:]
        if not parts or isinstance(parts[0], int) and len(parts) == 1:
            return "body"
    elif parts and parts[0] == "header":
        return "header." + "-".join(p.capitalize() for p in str(parts[-1]).replace("_", "-").split("-"))
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def create_app(conf, sessionmaker, dispatch: Callable[[list], None], verifier,
               peers: Optional[dict] = None, require_peer: bool = False) -> tuple[Guard, FastAPI]:
    """``(guarded ASGI app, the FastAPI app inside it)``. ``dispatch`` hands committed
    step refs to the workers."""
    svc = conf.configurator_service
    targets = Allowlist(svc.allowed_target_cidrs, "configurator_service.allowed_target_cidrs")
    sources = Allowlist(svc.allowed_management_cidrs, "configurator_service.allowed_management_cidrs")
    app = FastAPI(title="nfp configurator", version="1",
                  description="Seed 001's network function configurator REST API.")

    def who(request: Request) -> dict:
        return dict(request.scope.get("state", {}).get("who") or {})

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        err = exc.errors()[0] if exc.errors() else {"loc": ("body",), "msg": "invalid"}
        field = field_of(err.get("loc", ("body",)))
        message = f"{field}: {err.get('msg', 'invalid')}"
        if request.method == "POST":
            audit.record_now(sessionmaker, audit.REQUEST, svc.audit_file, method=_method(request),
                             result="rejected", detail=message, **who(request))
        return JSONResponse({"error": message, "field": field}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        field = "body" if exc.status_code == 400 else ""
        status = 400 if exc.status_code == 422 else exc.status_code
        return JSONResponse({"error": f"{field or request.url.path}: {exc.detail}", "field": field},
                            status_code=status, headers=getattr(exc, "headers", None))

    @app.exception_handler(FieldError)
    async def refused(request: Request, exc: FieldError):
        event = audit.ACCESS_DENIED if exc.status == 403 else audit.REQUEST
        audit.record_now(sessionmaker, event, svc.audit_file, method=_method(request),
                         result="forbidden" if exc.status == 403 else "rejected", detail=str(exc),
                         **who(request))
        return JSONResponse({"error": str(exc), "field": exc.field}, status_code=exc.status)

    @app.exception_handler(OperationalError)
    async def unavailable(request: Request, exc: OperationalError):
        LOG.error("configurator database unavailable (%s); answering 503, nothing was stored",
                  exc.__class__.__name__)
        return JSONResponse({"error": "database unavailable; retry", "field": ""}, status_code=503)

    def submit(method: str, body: ConfigBody, request: Request, request_id: Optional[str]) -> Accepted:
        checked = check(method, body)
        if not targets.allows(checked.mgmt_ip):
            raise FieldError("info.context.nfd_ip", f"{checked.mgmt_ip} is outside "
                             "configurator_service.allowed_target_cidrs", status=403)
        rid = request_id or uuid.uuid4().hex
        status, refs = intake.accept(sessionmaker, rid, method, checked, who(request), svc.audit_file)
        if refs:
            dispatch(refs)
        return Accepted(request_id=rid, status=status)

    def route(method: str):
        async def endpoint(body: ConfigBody, request: Request,
                           x_request_id: Optional[str] = Header(
                               default=None, max_length=64, pattern=REQUEST_ID.pattern,
                               description="idempotency key: a retried POST with the same id "
                                           "is applied once")) -> Accepted:
            return submit(method, body, request, x_request_id)
        endpoint.__name__ = method
        endpoint.__doc__ = (f"Seed 001 `{method}`: validate, store durably, answer; the result "
                            "comes later from get_notifications.")
        app.post(f"{PREFIX}/{method}", response_model=Accepted, responses=ERRORS,
                 operation_id=method)(endpoint)

    for method in METHODS:
        route(method)

    @app.get(f"{PREFIX}/get_notifications", response_model=list[Notification], responses=ERRORS,
             operation_id="get_notifications")
    async def get_notifications(keep: bool = Query(
            default=False, description="keep them until POST ack_notifications names their ids "
                                       "(at least once); default: deleted as returned (seed 001)")
    ) -> list[Notification]:
        """Every waiting notification, oldest first."""
        return [Notification.model_validate(n) for n in intake.drain(sessionmaker, keep=keep)]

    @app.post(f"{PREFIX}/ack_notifications", response_model=Acknowledged, responses=ERRORS,
              operation_id="ack_notifications")
    async def ack_notifications(body: AckBody, request: Request) -> Acknowledged:
        """Delete delivered notifications (after ``get_notifications?keep=true``)."""
        count = intake.acknowledge(sessionmaker, body.ids)
        audit.record_now(sessionmaker, audit.REQUEST, svc.audit_file, method="ack_notifications",
                         result="success", detail=f"{count} of {len(body.ids)} notification(s) "
                                                  "acknowledged", **who(request))
        return Acknowledged(acknowledged=count)

    app.openapi = lambda: openapi_document(app)
    return Guard(app, verifier, sources, sessionmaker, svc.audit_file, svc.max_body_bytes,
                 peers, require_peer), app


def _method(request: Request) -> str:
    return request.url.path.rsplit("/", 1)[-1][:96]


def openapi_document(app: FastAPI) -> dict:
    """FastAPI's document with nfp's error model: 400 instead of 422, a bearer scheme."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi
    doc = get_openapi(title=app.title, version=app.version, description=app.description,
                      routes=app.routes)
    for path in doc.get("paths", {}).values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)
    schemas = doc.get("components", {}).get("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer",
                                                       "bearerFormat": "JWT"}}
    doc["security"] = [{"bearer": []}]
    app.openapi_schema = doc
    return doc
