"""Tenant isolation: who a request comes from and which network functions it may touch.

The oslo context arrives with every RPC (``_context_*`` keys). A context is
admin the way oslo.policy's default ``context_is_admin: role:admin`` and
neutron's ``Context.is_admin`` decide it: ``is_admin`` is true, or one of its
roles is an admin role (``tenancy.admin_roles``). An admin sees every NF. Any
other caller sees only its own tenant's NFs: reading another tenant's NF
answers exactly as for a missing one (so ids cannot be probed), lists are
filtered, and changing one is refused with :class:`Forbidden`.

A context with no identity at all (``{}``, what nfp's own CLI sends) is the
local operator when ``tenancy.anonymous`` is ``admin`` (the default) and a
caller of no tenant when it is ``deny``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from nfp.exceptions import NfpError
from nfp.rpc.errors import safe

#: context keys that identify a caller; a context with none of them is anonymous
IDENTITY_KEYS = ("user", "user_id", "tenant", "tenant_id", "project", "project_id", "is_admin", "roles")
#: where callers say where they are (oslo contexts have no standard key for it)
SOURCE_KEYS = ("remote_address", "host")


class Forbidden(NfpError, PermissionError):
    """A caller tried to change a network function of another tenant. The message
    names the method, the NF and the caller's tenant; nothing else."""


@dataclass(frozen=True)
class Caller:
    """Who sent a request, from its oslo context (never its token)."""

    user: str
    tenant: str
    is_admin: bool
    source: str
    request_id: str

    def may_see(self, tenant_id: Optional[str]) -> bool:
        """True if an NF of ``tenant_id`` is visible to this caller."""
        return self.is_admin or (bool(self.tenant) and tenant_id == self.tenant)

    @property
    def label(self) -> str:
        """For log lines: the tenant and user (escaped), never a credential."""
        return (f"tenant {safe(self.tenant or '-')} user {safe(self.user or '-')}"
                f"{' (admin)' if self.is_admin else ''}")


def _text(value: Any, limit: int = 255) -> str:
    return value[:limit] if isinstance(value, str) else ""


def caller(context: Optional[dict], conf) -> Caller:
    """The :class:`Caller` of a request's context under ``conf.tenancy``."""
    context = context if isinstance(context, dict) else {}
    user = _text(context.get("user_id")) or _text(context.get("user"))
    tenant = (_text(context.get("project_id")) or _text(context.get("tenant_id"))
              or _text(context.get("tenant")) or _text(context.get("project")))
    roles = context.get("roles")
    admin_roles = {r.lower() for r in conf.tenancy.admin_roles}
    has_admin_role = isinstance(roles, list) and any(
        isinstance(r, str) and r.lower() in admin_roles for r in roles)
    is_admin = context.get("is_admin") is True or has_admin_role
    if not any(context.get(key) not in (None, "", []) for key in IDENTITY_KEYS) \
            and "is_admin" not in context:
        is_admin = conf.tenancy.anonymous == "admin"
    source = next((_text(context.get(k), 128) for k in SOURCE_KEYS if _text(context.get(k))), "")
    request_id = _text(context.get("request_id"), 64) or _text(context.get("global_request_id"), 64)
    return Caller(user, tenant, is_admin, source, request_id)


def forbidden(method: str, nf_id: str, who: Caller) -> Forbidden:
    """The refusal of a mutation of another tenant's NF."""
    return Forbidden(f"{safe(method)}: network function {safe(nf_id)} does not belong to tenant "
                     f"{safe(who.tenant or '(none)')}; only its own tenant or an admin may change it")
