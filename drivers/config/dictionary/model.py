"""The typed model of a vendor dictionary (seed 000's format plus nfp's extensions).

Keys are camelCase as in the seed (``basePath``, ``responseMapping``). Every
template field is a string with ``${placeholder}`` substitutions (Jinja2 with
``${ }`` delimiters, so ``{% if %}`` and ``{% for %}`` work where a vendor needs
them); the context a template renders into (URL, JSON, XML, CLI, XPath, text)
is fixed by the field it sits in, never by the author.
"""
from __future__ import annotations

import re
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

#: the dictionary services nfp's resources use (see :data:`.items.SERVICE_OF`); a
#: dictionary may define others (any ``^[A-Z][A-Za-z0-9]*$``), which load unused
SERVICE_NAMES = ("Firewall", "PortForwarding", "StaticNat", "SourceNat", "LoadBalancer", "StaticRoutes")
SERVICE_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*$")
#: nfp's error kinds: ``errorCodes`` maps vendor errors onto them; the kind appears in the
#: failure reason, and ``already_exists`` on create / ``not_found`` on delete count as done
ERROR_KINDS = {
    "already_exists": "the object is already on the device",
    "not_found": "the object is not on the device",
    "invalid": "the device refused a value",
    "unauthorized": "the credentials were refused or lack the permission",
    "busy": "the device is busy (locked configuration, commit in progress)",
    "limit": "a device limit was reached (table full, licence)",
    "unsupported": "the device does not support the request",
}
ErrorKind = Literal["already_exists", "not_found", "invalid", "unauthorized", "busy", "limit", "unsupported"]
HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
ParamContext = Literal["text", "xml", "json", "xpath"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True,
                              frozen=True)


def _regex(value: Optional[str]) -> Optional[str]:
    if value is not None:
        try:
            re.compile(value, re.M)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from None
    return value


class Param(_Model):
    """A query or form value with an explicit context (``element`` of PAN-OS is XML)."""

    value: str
    context: ParamContext = "text"


class ResponseMapping(_Model):
    """How to read a vendor answer. Paths are JSONPath (``$.data.id``) for JSON
    answers and XPath (``/response/result/job``) for XML ones."""

    success_code: Union[int, list[int], None] = None
    #: the answer counts as success only if this path yields ``successValue``
    success_path: Optional[str] = None
    success_value: Optional[str] = None
    #: where the vendor puts its error text and its error code
    error_path: Optional[str] = None
    error_code_path: Optional[str] = None
    #: vendor error codes (REST/XML) or output regexes (CLI) that count as success:
    #: "already exists" on create, "not found" on delete keep retries idempotent
    tolerate: list[str] = Field(default_factory=list)
    #: where the new object's id is (create), or where the list is (list)
    id_path: Optional[str] = None
    list_path: Optional[str] = None
    #: per list item: ``idPath`` (required), ``refPath``, ``keyPath`` and any ``<field>Path``
    item: dict[str, str] = Field(default_factory=dict)
    #: CLI: output that means success / failure; list lines with (?P<id>..) groups
    success_pattern: Optional[str] = None
    error_patterns: list[str] = Field(default_factory=list)
    list_patterns: list[str] = Field(default_factory=list)

    @field_validator("success_pattern")
    @classmethod
    def _one_regex(cls, v):
        return _regex(v)

    @field_validator("error_patterns", "list_patterns")
    @classmethod
    def _regexes(cls, v):
        for item in v:
            _regex(item)
        return v

    @field_validator("item")
    @classmethod
    def _item_paths(cls, v):
        if v and "idPath" not in v:
            raise ValueError("item needs idPath")
        for key in v:
            if not key.endswith("Path"):
                raise ValueError(f"item key {key!r} must end with 'Path' (idPath, srcPath ...)")
        return v

    @property
    def success_codes(self) -> tuple[int, ...]:
        if self.success_code is None:
            return ()
        return tuple(self.success_code) if isinstance(self.success_code, list) else (self.success_code,)


class Lookup(_Model):
    """Find an object's current reference before a call (HTTP only): GET ``endpoint``,
    take the element of ``listPath`` whose ``matchPath`` equals ``equals``, and
    expose its ``refPath`` as ``${ref}``. A call whose lookup finds nothing is
    skipped: the object is already gone."""

    endpoint: str
    list_path: str
    match_path: str
    equals: str
    ref_path: str


class Call(_Model):
    """One exchange with the device: an HTTP request or a batch of CLI lines."""

    #: run this call only when the Jinja expression is true (``sourcePorts``)
    when: Optional[str] = None
    lookup: Optional[Lookup] = None
    method: Optional[HttpMethod] = None
    endpoint: Optional[str] = None
    query: dict[str, Union[str, Param]] = Field(default_factory=dict)
    form: dict[str, Union[str, Param]] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    body: Optional[str] = None
    #: json, xml or text; default from the Content-Type header, else json
    body_format: Optional[Literal["json", "xml", "text"]] = None
    #: CLI lines (one template; each rendered line is one command)
    commands: Union[str, list[str], None] = None
    #: CLI: wrap the lines in configure ... commit ... exit
    configure: Optional[bool] = None
    response_mapping: ResponseMapping = Field(default_factory=ResponseMapping)
    timeout: Optional[float] = Field(default=None, gt=0, le=600)
    #: the whole answer (HTTP body; CLI: every line's output, commit included) must /
    #: must not match (seed 000: ``successPattern`` next to ``method: SSH``)
    success_pattern: Optional[str] = None
    error_pattern: Optional[str] = None

    @field_validator("success_pattern", "error_pattern")
    @classmethod
    def _whole_answer_regex(cls, v):
        return _regex(v)

    @property
    def is_cli(self) -> bool:
        return self.commands is not None

    @property
    def command_template(self) -> str:
        return "\n".join(self.commands) if isinstance(self.commands, list) else (self.commands or "")

    @model_validator(mode="after")
    def _shape(self):
        if self.commands is not None and (self.method or self.endpoint or self.body):
            raise ValueError("a call has either commands (CLI) or method/endpoint (HTTP), not both")
        if self.commands is None and (self.method is None) != (self.endpoint is None):
            raise ValueError("an HTTP call needs both method and endpoint")
        return self

    def content_format(self) -> str:
        if self.body_format:
            return self.body_format
        ctype = next((v for k, v in self.headers.items() if k.lower() == "content-type"), "")
        return "xml" if "xml" in ctype else "text" if ctype.startswith("text/") else "json"


class Poll(Call):
    """Repeat a call until a path has a value (PAN-OS commit jobs)."""

    until_path: str
    until_value: str
    #: after ``untilValue`` is reached this path must equal ``okValue``
    ok_path: Optional[str] = None
    ok_value: Optional[str] = None
    interval: float = Field(default=0.5, gt=0, le=60)
    max_polls: int = Field(default=120, ge=1, le=10000)


class IdRange(_Model):
    """Ids nfp chooses itself (CLI rule numbers), lowest free first."""

    min: int = Field(ge=0)
    max: int = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self):
        if self.min > self.max:
            raise ValueError("min is above max")
        return self


class Operation(Call):
    """create, delete, update, list or commit: one call, or ``steps`` of calls."""

    steps: list[Call] = Field(default_factory=list)
    #: the id is known before the call (a name nfp chose): a template
    external_id: Optional[str] = None
    #: nfp allocates the id from this range (VyOS rule numbers)
    allocate_id: Optional[IdRange] = None
    #: list first and expose the matching item's ``ref`` (pfSense array indexes shift)
    resolve_ref: bool = False
    #: list: keep only items whose numeric id is in this range
    id_range: Optional[IdRange] = None
    #: repeat a call until done (asynchronous commits)
    poll: Optional[Poll] = None

    @model_validator(mode="after")
    def _steps_or_call(self):
        single = self.method is not None or self.commands is not None
        if self.steps and single:
            raise ValueError("use either steps or a single call, not both")
        if not self.steps and not single:
            raise ValueError("an operation needs method+endpoint, commands, or steps")
        return self

    @property
    def calls(self) -> list[Call]:
        return list(self.steps) if self.steps else [self]


class Service(_Model):
    """A service's operations. The services nfp uses need create and delete (checked
    by the loader, so a service nfp never calls may have only some)."""

    create: Optional[Operation] = None
    delete: Optional[Operation] = None
    update: Optional[Operation] = None
    list: Optional[Operation] = None


class CliSettings(_Model):
    """How to drive an interactive CLI (VyOS, EdgeOS ...)."""

    prompt: str = r"[$#>] ?$"
    configure: str = "configure"
    commit: list[str] = Field(default_factory=lambda: ["commit"])
    exit: str = "exit"
    discard: str = "exit discard"
    #: output matching one of these fails the command (every operation)
    error_patterns: list[str] = Field(default_factory=list)
    #: commands sent once after login (``set terminal length 0``)
    setup: list[str] = Field(default_factory=list)

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v):
        return _regex(v)

    @field_validator("error_patterns")
    @classmethod
    def _patterns(cls, v):
        for item in v:
            _regex(item)
        return v


class Access(_Model):
    """How to reach and authenticate to the device. Secrets are named, never given."""

    protocol: Literal["https", "http", "ssh"]
    port: Optional[int] = Field(default=None, ge=1, le=65535)
    base_path: str = ""
    #: seed 000's ``ssh_password`` and ``ssh_key`` are read as ``password`` and ``key``
    auth_type: Literal["none", "token", "apikey", "basic", "password", "key", "certificate"]
    #: names of entries in the device's credentials secret
    token_ref: Optional[str] = None
    token_header: Optional[str] = None
    token_prefix: str = ""
    username_ref: str = "username"
    password_ref: str = "password"
    key_ref: str = "private_key"
    #: ``certificate``: the client certificate (PEM) entry; its key is ``keyRef``
    cert_ref: str = "certificate"
    #: json or xml answers (REST vs XML API)
    response_format: Literal["json", "xml"] = "json"
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(default=10.0, gt=0, le=600)
    retries: int = Field(default=2, ge=0, le=10)
    backoff: float = Field(default=0.2, ge=0, le=30)
    #: requests per second per device; None means unlimited
    rate_limit: Optional[float] = Field(default=None, gt=0)
    cli: Optional[CliSettings] = None

    @model_validator(mode="after")
    def _auth_fields(self):
        if self.auth_type in ("token", "apikey") and not (self.token_ref and self.token_header):
            raise ValueError(f"authType {self.auth_type} needs tokenRef and tokenHeader")
        ssh = self.protocol == "ssh"
        if ssh and self.auth_type not in ("password", "key"):
            raise ValueError("ssh access needs authType password or key")
        if not ssh and self.auth_type in ("password", "key"):
            raise ValueError(f"authType {self.auth_type} is for ssh access")
        if self.auth_type == "certificate" and self.protocol != "https":
            raise ValueError("authType certificate is for https access")
        return self

    @property
    def cli_settings(self) -> CliSettings:
        """The CLI settings (the defaults when the dictionary gives none)."""
        return self.cli or _DEFAULT_CLI

    @property
    def default_port(self) -> int:
        return self.port or {"https": 443, "http": 80, "ssh": 22}[self.protocol]


_DEFAULT_CLI = CliSettings()


class VarSpec(_Model):
    """A dictionary parameter (interface names, vsys, VDOM), set per driver or device."""

    type: str = "name"
    default: Any = None
    description: str = ""


class Dictionary(_Model):
    """One vendor dictionary."""

    version: str
    #: the service_vendor it serves (``pfsense``); defaults to the file name
    name: Optional[str] = None
    vendor: str
    product: str
    firmware_version: str = ""
    description: str = ""
    access: Access
    vars: dict[str, VarSpec] = Field(default_factory=dict)
    #: per placeholder value translations (``action: {allow: pass, deny: block}``)
    value_maps: dict[str, dict[str, Any]] = Field(default_factory=dict)
    services: dict[str, Service]
    #: run once after a batch of changes (PAN-OS commit, pfSense apply); seed 000
    #: writes it as ``services.System.commit``
    commit: Optional[Operation] = None
    #: what the device can do (informational: ``nfp dictionary show`` prints it)
    capabilities: list[str] = Field(default_factory=list)
    notes: str = ""
    #: vendor error -> nfp error kind: an HTTP status, a vendor code (``errorCodePath``)
    #: or, for CLI devices, a regular expression over a command's output
    error_codes: dict[str, ErrorKind] = Field(default_factory=dict)

    @field_validator("services")
    @classmethod
    def _service_names(cls, v):
        for name in v:
            if not SERVICE_NAME.match(name):
                raise ValueError(f"service name {name!r} must match ^[A-Z][A-Za-z0-9]*$ (Firewall, NAT ...)")
        return v

    @field_validator("error_codes", mode="before")
    @classmethod
    def _codes(cls, v):
        return {str(k): val for k, val in v.items()} if isinstance(v, dict) else v

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, v):
        v = str(v) if isinstance(v, (int, float)) else v
        if isinstance(v, str) and not re.match(r"^\d+(\.\d+)*$", v):
            raise ValueError("version must look like 1.0")
        return v
