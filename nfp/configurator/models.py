"""Seed 001's configurator bodies as typed models, and the checks past the schema.

The schema (``ConfigBody``) is what FastAPI validates and publishes in the
OpenAPI document. :func:`check` then applies the rules a schema cannot say: each
element's resource has a module, the target appliance's management address is
known, inline secrets are refused (secrets travel by reference), and the
context's credential-like keys are dropped before anything is stored. Every
failure is a :class:`FieldError` naming the field.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from nfp.configurator.modules import RESOURCE_MODULE

#: keys whose values are credentials; ``*_ref`` and ``*_id`` keys name them instead
SECRET_KEY = re.compile(r"(?i)(password|passwd|secret|token|api_?key|private_?key|credential|psk)")
SAFE_SUFFIX = re.compile(r"(?i)(_?ref|_id|_name)$")
_SAFE = r"^[A-Za-z0-9_.:-]*$"

#: API method -> driver operation
METHODS = {
    "create_network_function_device_config": "create",
    "delete_network_function_device_config": "delete",
    "create_network_function_config": "create",
    "update_network_function_config": "update",
    "delete_network_function_config": "delete",
}
#: methods that configure a network function (they need ``info.context.nf_id``)
NF_METHODS = {"create_network_function_config", "update_network_function_config",
              "delete_network_function_config"}


class FieldError(ValueError):
    """A request is invalid; ``field`` is its dotted path (400)."""

    def __init__(self, field: str, reason: str, status: int = 400):
        super().__init__(f"{field}: {reason}")
        self.field, self.reason, self.status = field, reason, status


class Info(BaseModel):
    """The header common to every element of ``config``."""

    model_config = ConfigDict(extra="ignore")
    service_vendor: str = Field(max_length=64, pattern=_SAFE,
                                description="vendor name: picks the config driver")
    service_type: str = Field(min_length=1, max_length=64, pattern=_SAFE,
                              description="firewall, lb, loadbalancer, vpn, nfp_service, generic")
    context: dict[str, Any] = Field(description="opaque data returned with the notifications; "
                                    "nfp reads nf_id, nfd_id, nfd_ip and tenant_id from it")


class ConfigElement(BaseModel):
    """One element of ``config``: a resource and its attributes."""

    model_config = ConfigDict(extra="ignore")
    resource: Literal[tuple(sorted(RESOURCE_MODULE))] = Field(  # type: ignore[valid-type]
        description="the configurator module is chosen by resource")
    resource_data: dict[str, Any]


class ConfigBody(BaseModel):
    """The body of every POST: ``info`` and the ``config`` list."""

    model_config = ConfigDict(extra="ignore")
    info: Info
    config: list[ConfigElement] = Field(min_length=1, max_length=256)


class Accepted(BaseModel):
    """A POST's answer: the request was stored; its result comes as a notification."""

    request_id: str
    status: Literal["accepted", "duplicate"]


class NotificationData(BaseModel):
    status_code: Literal["success", "failure", "unhandled"]
    error_msg: str = ""


class NotificationElement(BaseModel):
    resource: str
    data: NotificationData


class NotificationInfo(BaseModel):
    service_type: str
    context: dict[str, Any]


class Notification(BaseModel):
    """One request's result, as seed 001's ``get_notifications`` element."""

    request_id: str
    #: acknowledge it with this id (``POST ack_notifications``) after ``?keep=true``
    id: Optional[int] = None
    info: NotificationInfo
    notification: list[NotificationElement]


class AckBody(BaseModel):
    """``POST ack_notifications``: the ids of delivered notifications."""

    model_config = ConfigDict(extra="forbid")
    ids: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] = Field(
        min_length=1, max_length=500, description="ids from get_notifications?keep=true")


class Acknowledged(BaseModel):
    """How many of the ids were still waiting (and are now deleted)."""

    acknowledged: int


class ErrorBody(BaseModel):
    """A refused request: the field at fault and why."""

    error: str
    field: str = ""


@dataclass(frozen=True)
class Checked:
    """A request that passed :func:`check`: what the intake stores."""

    operation: str
    body: dict
    nf_id: str
    device_id: str
    mgmt_ip: str


def check(method: str, body: ConfigBody) -> Checked:
    """The rules past the schema (module docstring); FieldError names the field."""
    operation = METHODS[method]
    for index, element in enumerate(body.config):
        if element.resource not in RESOURCE_MODULE:
            raise FieldError(f"config[{index}].resource",
                             f"{element.resource!r} has no configurator module; expected one of "
                             f"{sorted(RESOURCE_MODULE)}")
        _refuse_inline_secrets(element.resource_data, f"config[{index}].resource_data")
    context = strip_secrets(body.info.context)
    mgmt_ip = _target_address(context, body.config)
    nf_id = _text(context, "nf_id") or _text(context, "service_id")
    if method in NF_METHODS and not nf_id:
        raise FieldError("info.context.nf_id", "required: the network function the config belongs to")
    device_id = _text(context, "nfd_id") or _vmid(body.config) or mgmt_ip
    info = body.info.model_dump()
    info["context"] = context
    stored = {"info": info, "config": [e.model_dump() for e in body.config]}
    return Checked(operation, stored, nf_id[:64], device_id[:64], mgmt_ip)


def strip_secrets(value: Any) -> Any:
    """``value`` without credential-like keys (``auth_token``, ``password``...), recursively:
    an opaque context may carry the caller's token, which nfp must not store or return."""
    if isinstance(value, dict):
        return {k: strip_secrets(v) for k, v in value.items()
                if not (isinstance(k, str) and SECRET_KEY.search(k) and not SAFE_SUFFIX.search(k))}
    if isinstance(value, list):
        return [strip_secrets(v) for v in value]
    return value


def _refuse_inline_secrets(value: Any, path: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and SECRET_KEY.search(key) and not SAFE_SUFFIX.search(key):
                raise FieldError(f"{path}.{key}", "secrets are given by reference (a *_ref naming "
                                 "a secret in nfp's secret store), never inline")
            _refuse_inline_secrets(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_inline_secrets(item, f"{path}.{index}")


def _text(data: dict, key: str) -> str:
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, str) else ""


def _vmid(config: list[ConfigElement]) -> str:
    for element in config:
        if element.resource == "healthmonitor" and isinstance(element.resource_data.get("vmid"), str):
            return element.resource_data["vmid"]
    return ""


def _target_address(context: dict, config: list[ConfigElement]) -> str:
    """The appliance's management IP: ``info.context.nfd_ip`` (or ``mgmt_ip``), else the
    first element's ``resource_data.mgmt_ip``."""
    candidates: list[tuple[str, Any]] = [("info.context.nfd_ip", context.get("nfd_ip")),
                                         ("info.context.mgmt_ip", context.get("mgmt_ip"))]
    candidates += [(f"config[{i}].resource_data.mgmt_ip", e.resource_data.get("mgmt_ip"))
                   for i, e in enumerate(config)]
    for field, value in candidates:
        if value is None or value == "":
            continue
        try:
            return str(ipaddress.ip_address(value if isinstance(value, str) else ""))
        except ValueError:
            raise FieldError(field, f"{value!r} is not an IP address") from None
    raise FieldError("info.context.nfd_ip", "required: the target appliance's management IP "
                     "(or resource_data.mgmt_ip of an element)")


def target_of(stored: dict) -> Optional[str]:
    """The management IP :func:`check` found, from a stored body (for the worker)."""
    try:
        return _target_address(stored["info"]["context"],
                               [ConfigElement.model_validate(e) for e in stored["config"]])
    except FieldError:
        return None
