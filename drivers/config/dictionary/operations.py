"""Running dictionary operations against one device: render, send, map the answer.

An :class:`OperationRunner` knows one device (its dictionary, transport and
credentials) and runs ``create``/``update``/``delete``/``list`` of a service and
the dictionary's ``commit``. It raises VendorError or TransportError; it never
touches the database (see :mod:`.sync`).
"""
from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from typing import Any, Optional

from . import mapping, placeholders
from .errors import PlaceholderError, VendorError
from .http import AuthMaterial, HttpTransport
from .loader import LoadedDictionary
from .model import Call, Operation, ResponseMapping
from .render import condition, render, render_cli, render_http
from .ssh import CliSession, SshCredentials, SshTransport

LOG = logging.getLogger(__name__)

#: what delete (and commit) templates may use: the rule's values are gone by then
DELETE_NAMES = frozenset({"externalId", "ref", "ruleId", "name", "nfId", "jobId"})
#: error kinds (the dictionary's ``errorCodes``) that mean an operation's work is already done
DONE_KINDS = {"create": frozenset({"already_exists"}), "delete": frozenset({"not_found"})}
_ALIASES = tuple(placeholders.ALIASES.items())


@functools.lru_cache(maxsize=256)
def _probe(endpoint: str) -> Call:
    """The GET of a lookup, made once per endpoint (so it is rendered from its prepared form)."""
    return Call(method="GET", endpoint=endpoint)


class NotOnDevice(VendorError):
    """The object to resolve is not on the device (already deleted, or drift)."""


@dataclass
class DeviceLink:
    """One device as the operation runner sees it."""

    device_id: str
    dictionary: LoadedDictionary
    vars: dict[str, Any]
    http: Optional[HttpTransport] = None
    auth: Optional[AuthMaterial] = None
    ssh: Optional[SshTransport] = None
    ssh_credentials: Optional[SshCredentials] = None


@dataclass
class OpResult:
    external_id: Optional[str] = None
    #: the device reported "already exists"/"not found" and that counted as success
    tolerated: bool = False


class OperationRunner:
    """Runs one device's dictionary operations."""

    def __init__(self, link: DeviceLink):
        self.link = link
        self.dictionary = link.dictionary.model
        self.access = self.dictionary.access
        self._types = link.dictionary.placeholder_types()
        self._value_maps = tuple(self.dictionary.value_maps.items())
        self._codes = self.dictionary.error_codes

    # -- values ---------------------------------------------------------------
    def values(self, values: dict[str, Any]) -> dict[str, Any]:
        """Type-check ``values``, add the device vars, apply the value maps."""
        out = dict(self.link.vars)
        out.update(placeholders.check_all(values, self._types))
        for alias, target in _ALIASES:  # the seed authors' names for the same values
            if target in out and alias not in out:
                out[alias] = out[target]
        for name, table in self._value_maps:
            value = out.get(name)
            if value is not None and not isinstance(value, (list, dict)):
                key = str(value).lower() if isinstance(value, bool) else str(value)
                if key in table:
                    out[name] = table[key]
        return out

    # -- operations -------------------------------------------------------------
    def run(self, service: str, opname: str, values: dict[str, Any]) -> OpResult:
        """Run ``services.<service>.<opname>`` with checked ``values``."""
        op = self._operation(service, opname)
        where = f"services.{service}.{opname}"
        values = dict(values)
        if op.resolve_ref:
            values["ref"] = self._resolve_ref(service, values.get("externalId"))
        done = DONE_KINDS.get(opname, frozenset())
        if self.link.ssh is not None:
            result = self._run_cli(op, values, where, configure_default=opname != "list", done=done)
        else:
            result = self._run_http(op, values, where, done)
        if op.external_id:
            result.external_id = render("text", op.external_id, values, f"{where}.externalId") or None
        return result

    def list(self, service: str) -> list[dict[str, Any]]:
        """The service's objects on the device, each ``{id, ref?, key?, ...}``."""
        op = self._operation(service, "list")
        where = f"services.{service}.list"
        values = dict(self.link.vars)
        if self.link.ssh is not None:
            output = self._cli_lines(op, values, where, configure=bool(op.configure))
            items = mapping.extract_cli_list(op.response_mapping, output)
        else:
            items = []
            for call in op.calls:
                doc, _ = self._http_call(call, values, where)
                if doc is not None and call.response_mapping.list_path:
                    items = mapping.extract_list(call.response_mapping, self.access.response_format, doc)
        if op.id_range is not None:
            items = [i for i in items if str(i["id"]).isdigit()
                     and op.id_range.min <= int(i["id"]) <= op.id_range.max]
        return items

    def has(self, service: str, opname: str) -> bool:
        svc = self.dictionary.services.get(service)
        return svc is not None and getattr(svc, opname) is not None

    def commit(self) -> None:
        """Run the dictionary's commit (PAN-OS commit job, pfSense apply), if it has one."""
        op = self.dictionary.commit
        if op is None:
            return
        values = dict(self.link.vars)
        if self.link.ssh is not None:
            self._cli_lines(op, values, "commit", configure=bool(op.configure))
            return
        job = None
        for call in op.calls:
            doc, _ = self._http_call(call, values, "commit")
            job = mapping.extract_id(call.response_mapping, self.access.response_format, doc) or job
        if op.poll is not None and job is not None:
            self._poll(op, dict(values, jobId=job))

    # -- HTTP -----------------------------------------------------------------------
    def _run_http(self, op: Operation, values: dict, where: str, done: frozenset = frozenset()) -> OpResult:
        result = OpResult()
        for index, call in enumerate(op.calls):
            step = f"{where}.steps.{index}" if op.steps else where
            doc, tolerated = self._http_call(call, values, step, done)
            result.tolerated = result.tolerated or tolerated
            new_id = mapping.extract_id(call.response_mapping, self.access.response_format, doc)
            if new_id is not None and not tolerated:
                result.external_id = new_id
        return result

    def _http_call(self, call: Call, values: dict, where: str,
                   done: frozenset = frozenset()) -> tuple[Any, bool]:
        if call.when and not condition(call.when, values, f"{where}.when"):
            return None, False
        if call.lookup is not None:
            ref = self._lookup(call, values, where)
            if ref is None:
                return None, True
            values = dict(values, ref=ref)
        request = render_http(call, values, self.access.base_path, where)
        if self.access.headers:
            request.headers = {**self.access.headers, **request.headers}
        response = self.link.http.send(request, self.link.auth)
        fmt = self.access.response_format
        doc = mapping.parse_document(fmt, response.content)
        what = f"{self.link.dictionary.name} {where} ({request.method} {request.path})"
        tolerated = mapping.check_http(call.response_mapping, fmt, response.status, doc, response.text, what,
                                       self._codes, done)
        if not tolerated and (call.success_pattern or call.error_pattern):
            mapping.check_output(call.success_pattern, call.error_pattern, what, response.text)
        return doc, tolerated

    def _poll(self, op: Operation, values: dict) -> None:
        poll, fmt = op.poll, self.access.response_format
        for _ in range(poll.max_polls):
            doc, _ = self._http_call(poll, values, "commit.poll")
            if str(mapping.first(fmt, doc, poll.until_path)) == poll.until_value:
                if poll.ok_path and str(mapping.first(fmt, doc, poll.ok_path)) != poll.ok_value:
                    detail = mapping.first(fmt, doc, poll.response_mapping.error_path) or ""
                    raise VendorError(f"{self.link.dictionary.name} commit job {values['jobId']} "
                                      f"failed: {detail}".rstrip(": "))
                return
            time.sleep(poll.interval)
        raise VendorError(f"{self.link.dictionary.name} commit job {values['jobId']} did not finish "
                          f"after {poll.max_polls} polls")

    # -- CLI ------------------------------------------------------------------------
    def _run_cli(self, op: Operation, values: dict, where: str, configure_default: bool,
                 done: frozenset = frozenset()) -> OpResult:
        configure = configure_default if op.configure is None else op.configure
        tolerated = self._cli_lines(op, values, where, configure, want_tolerated=True, done=done)
        return OpResult(tolerated=bool(tolerated))

    def _cli_lines(self, op: Operation, values: dict, where: str, configure: bool,
                   want_tolerated: bool = False, done: frozenset = frozenset()):
        cli, codes = self.access.cli_settings, self._codes
        what = f"{self.link.dictionary.name} {where}"
        lines: list[tuple[str, ResponseMapping]] = []
        for index, call in enumerate(op.calls):
            step = f"{where}.steps.{index}" if op.steps else where
            if call.when and not condition(call.when, values, f"{step}.when"):
                continue
            lines += [(line, call.response_mapping) for line in render_cli(call, values, step)]

        def work(session: CliSession):
            outputs, transcript, tolerated = [], [], False
            if configure:
                session.send(cli.configure)
            try:
                for line, rm in lines:
                    output = session.send(line)
                    done_already = mapping.check_cli(rm, cli.error_patterns, line, output, codes, done)
                    if not done_already and op.error_pattern:
                        mapping.check_output(None, op.error_pattern, f"{what} `{line}`", output)
                    tolerated = tolerated or done_already
                    outputs.append(output)
                transcript += outputs
                if configure:
                    for line in cli.commit:
                        output = session.send(line)
                        mapping.check_cli(op.response_mapping, cli.error_patterns, line, output, codes)
                        mapping.check_output(None, op.error_pattern, f"{what} `{line}`", output)
                        transcript.append(output)
            except VendorError:
                if configure:
                    session.send(cli.discard)
                raise
            if configure:
                session.send(cli.exit)
            # seed 000: the operation's whole output must show its successPattern
            mapping.check_output(op.success_pattern, None, what, "\n".join(transcript))
            return tolerated if want_tolerated else "\n".join(outputs)

        return self.link.ssh.run(work, self.link.ssh_credentials)

    # -- helpers ----------------------------------------------------------------------
    def _operation(self, service: str, opname: str) -> Operation:
        svc = self.dictionary.services.get(service)
        op = getattr(svc, opname, None) if svc is not None else None
        if op is None:
            raise VendorError(f"dictionary {self.link.dictionary.name} has no {service}.{opname} operation")
        return op

    def _lookup(self, call: Call, values: dict, where: str) -> Optional[str]:
        lookup, fmt = call.lookup, self.access.response_format
        probe = _probe(lookup.endpoint)
        doc, _ = self._http_call(probe, values, f"{where}.lookup")
        wanted = render("text", lookup.equals, values, f"{where}.lookup.equals")
        for element in mapping.find(fmt, doc, lookup.list_path):
            if str(mapping.first(fmt, element, lookup.match_path)) == wanted:
                ref = mapping.first(fmt, element, lookup.ref_path)
                return None if ref is None else str(ref)
        return None

    def _resolve_ref(self, service: str, external_id: Optional[str]) -> str:
        for item in self.list(service):
            if item["id"] == external_id:
                ref = item.get("ref")
                if ref is None:
                    raise PlaceholderError("ref", f"list item {external_id} has no refPath value")
                return str(ref)
        raise NotOnDevice(f"{service} {external_id} is not on device {self.link.device_id}")
