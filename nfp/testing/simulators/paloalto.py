"""Palo Alto Networks PAN-OS simulator: the XML API (``/api/``).

Faithful where nfp depends on it: ``type=keygen`` (user/password to API key),
the key in the ``X-PAN-KEY`` header or ``key`` parameter (403 "Invalid
Credential" otherwise), ``type=config`` with ``action`` set/edit/delete/get on
the *candidate* configuration and ``show`` on the *running* one, addressed by
XPath, ``type=commit`` as an asynchronous job polled with
``type=op&cmd=<show><jobs><id>N</id></jobs></show>``, and PAN-OS answer codes
(19/20 success, 6 bad XPath, 7 object not present, 12 invalid object,
17 invalid command). Commit validates references (services, addresses).
"""
from __future__ import annotations

import copy
import ipaddress
import itertools
import re
import urllib.parse
from typing import Any, Optional
from xml.sax.saxutils import escape

from lxml import etree
from starlette.requests import Request
from starlette.responses import Response

from .httpserver import HttpSimulator

VSYS = "/config/devices/entry[@name='localhost.localdomain']/vsys/entry[@name='vsys1']"
VR = "/config/devices/entry[@name='localhost.localdomain']/network/virtual-router/entry[@name='default']"
SKELETON = """<config version="11.0.0"><devices><entry name="localhost.localdomain">
<network><virtual-router><entry name="default"><routing-table><ip><static-route/></ip></routing-table>
</entry></virtual-router></network>
<vsys><entry name="vsys1"><address/><service/><rulebase><security><rules/></security><nat><rules/></nat>
</rulebase></entry></vsys></entry></devices></config>"""
_STEP = re.compile(r"^([A-Za-z0-9_.-]+)(?:\[@name='([^']*)'\])?$")
_PARSER = etree.XMLParser(remove_blank_text=True, resolve_entities=False, no_network=True)


class ApiError(Exception):
    def __init__(self, code: int, message: str, http: int = 200):
        super().__init__(message)
        self.code, self.http = code, http


def _xml(status: str, code: Optional[int], inner: str, http: int = 200) -> Response:
    code_attr = f' code="{code}"' if code is not None else ""
    return Response(f'<response status="{status}"{code_attr}>{inner}</response>',
                    status_code=http, media_type="application/xml")


def _split_xpath(xpath: str) -> list[tuple[str, Optional[str]]]:
    steps = []
    for raw in re.findall(r"[^/\[]+(?:\[[^\]]*\])?", xpath):
        match = _STEP.match(raw)
        if match is None:
            raise ApiError(6, "Bad Xpath")
        steps.append((match.group(1), match.group(2)))
    return steps


def _merge(target: etree._Element, element: etree._Element) -> None:
    """PAN-OS ``set`` semantics: merge children; members accumulate; leaves replace."""
    for child in element:
        if child.tag == "member":
            if child.text not in [m.text for m in target.findall("member")]:
                target.append(copy.deepcopy(child))
            continue
        name = child.get("name")
        existing = (target.find(f"{child.tag}[@name='{name}']") if name is not None else target.find(child.tag))
        if existing is None:
            target.append(copy.deepcopy(child))
        elif len(child) == 0:
            existing.text = child.text
        else:
            _merge(existing, child)


class PaloAltoSimulator(HttpSimulator):
    """A PAN-OS firewall. ``api_key`` is accepted as is; ``keygen`` with
    ``username``/``password`` returns it."""

    vendor = "paloalto"

    def __init__(self, api_key: str = "paloalto-sim-key", username: str = "admin",
                 password: str = "admin-password", **kwargs):
        super().__init__(**kwargs)
        self.api_key, self.username, self.password = api_key, username, password
        self.candidate = etree.fromstring(SKELETON, _PARSER)
        self.running = copy.deepcopy(self.candidate)
        self.jobs: dict[int, dict] = {}
        self._job_ids = itertools.count(1)
        #: the next commits fail validation with this message
        self.commit_failures: list[str] = []

    def auth_failure(self) -> Response:
        return _xml("error", 403, "<result><msg>Invalid Credential</msg></result>", http=403)

    def server_error(self, status: int) -> Response:
        return _xml("error", None, "<msg>Internal error</msg>", http=status)

    async def handle(self, request: Request) -> Response:
        params = dict(request.query_params)
        if request.method == "POST":
            # urlencoded form, as the XML API takes it (stdlib parser: no multipart needed)
            params.update(urllib.parse.parse_qsl((await request.body()).decode("utf-8", "replace"),
                                                 keep_blank_values=True))
        if request.scope["path"].rstrip("/") != "/api":
            return Response("not found", status_code=404)
        kind = params.get("type")
        if kind == "keygen":
            if params.get("user") == self.username and params.get("password") == self.password:
                return _xml("success", None, f"<result><key>{self.api_key}</key></result>")
            return self.auth_failure()
        key = request.headers.get("x-pan-key") or params.get("key")
        if key != self.api_key:
            return self.auth_failure()
        with self.lock:
            try:
                if kind == "config":
                    return self._config(params)
                if kind == "commit":
                    return self._commit(params)
                if kind == "op":
                    return self._op(params)
                raise ApiError(17, f"Invalid type {kind!r}")
            except ApiError as exc:
                return _xml("error", exc.code, f"<msg><line>{escape(str(exc))}</line></msg>", http=exc.http)

    # -- configuration ------------------------------------------------------------------
    def _config(self, params: dict) -> Response:
        action, xpath = params.get("action"), params.get("xpath", "")
        if not xpath.startswith("/config"):
            raise ApiError(6, "Bad Xpath")
        if action in ("get", "show"):
            tree = self.candidate if action == "get" else self.running
            nodes = self._select(tree, xpath)
            inner = "".join(etree.tostring(n, encoding="unicode") for n in nodes)
            return _xml("success", 19, f'<result total-count="{len(nodes)}" count="{len(nodes)}">{inner}</result>')
        if action == "set":
            element = self._element(params.get("element"))
            parent = self._ensure(xpath)
            for child in element:
                self._validate(child)
            _merge(parent, element)
            return _xml("success", 20, "<msg>command succeeded</msg>")
        if action == "edit":
            element = self._element(params.get("element"))
            nodes = self._select(self.candidate, xpath)
            if len(element) != 1:
                raise ApiError(18, "edit needs exactly one element")
            self._validate(element[0])
            if nodes:
                nodes[0].getparent().replace(nodes[0], copy.deepcopy(element[0]))
            else:
                steps = _split_xpath(xpath)
                self._ensure("/".join(f"{t}[@name='{n}']" if n else t for t, n in steps[:-1])).append(
                    copy.deepcopy(element[0]))
            return _xml("success", 20, "<msg>command succeeded</msg>")
        if action == "delete":
            nodes = self._select(self.candidate, xpath)
            if not nodes:
                raise ApiError(7, "Object doesn't exist")
            for node in nodes:
                node.getparent().remove(node)
            return _xml("success", 20, "<msg>command succeeded</msg>")
        raise ApiError(17, f"Invalid action {action!r}")

    def _select(self, tree, xpath: str) -> list:
        try:
            result = tree.getroottree().xpath(xpath)
        except etree.XPathError:
            raise ApiError(6, "Bad Xpath") from None
        return [n for n in result if isinstance(n, etree._Element)] if isinstance(result, list) else []

    def _ensure(self, xpath: str) -> etree._Element:
        steps = _split_xpath(xpath)
        if not steps or steps[0][0] != "config":
            raise ApiError(6, "Bad Xpath")
        node = self.candidate
        for tag, name in steps[1:]:
            found = node.find(f"{tag}[@name='{name}']") if name is not None else node.find(tag)
            if found is None:
                found = etree.SubElement(node, tag, **({"name": name} if name is not None else {}))
            node = found
        return node

    @staticmethod
    def _element(text: Optional[str]) -> etree._Element:
        if not text:
            raise ApiError(18, "Missing element")
        try:
            return etree.fromstring(f"<wrap>{text}</wrap>".encode(), _PARSER)
        except etree.XMLSyntaxError:
            raise ApiError(18, "Malformed element") from None

    @staticmethod
    def _validate(node: etree._Element) -> None:
        """Schema checks PAN-OS does at set time for the values nfp sends."""
        for action in node.iter("action"):
            if len(action) == 0 and action.text not in ("allow", "deny", "drop", "reset-client",
                                                        "reset-server", "reset-both"):
                raise ApiError(12, f"action '{action.text}' is not a valid reference")
        for tag in ("source", "destination"):
            for parent in node.iter(tag):
                for member in parent.findall("member"):
                    _address_ok(member.text)
        for port in node.iter("port", "source-port", "translated-port"):
            for part in (port.text or "").replace(",", "-").split("-"):
                if not part.isdigit() or not 0 < int(part) < 65536:
                    raise ApiError(12, f"'{port.text}' is not a valid port")
        for ip in node.iter("translated-address", "ip-address"):
            if len(ip) == 0:
                _address_ok(ip.text, network=False)

    # -- commit and jobs --------------------------------------------------------------------
    def _commit(self, params: dict) -> Response:
        if "<commit" not in params.get("cmd", ""):
            raise ApiError(17, "Invalid commit command")
        if etree.tostring(self.candidate) == etree.tostring(self.running):
            return _xml("success", 19, "<msg>There are no changes to commit.</msg>")
        job = next(self._job_ids)
        errors = self._commit_errors()
        if self.commit_failures:
            errors.append(self.commit_failures.pop(0))
        self.jobs[job] = {"polls": 0, "errors": errors}
        if not errors:
            self.running = copy.deepcopy(self.candidate)
        return _xml("success", 19, f"<result><msg><line>Commit job enqueued with jobid {job}</line></msg>"
                                   f"<job>{job}</job></result>")

    def _commit_errors(self) -> list[str]:
        errors = []
        vsys = self.candidate.getroottree().xpath(VSYS)[0]
        services = {e.get("name") for e in vsys.findall("service/entry")} | {"any", "application-default",
                                                                              "service-http", "service-https"}
        for rule in vsys.findall("rulebase/security/rules/entry"):
            for required in ("from", "to", "source", "destination", "service", "application", "action"):
                if rule.find(required) is None:
                    errors.append(f"rulebase -> security -> rules -> {rule.get('name')} -> {required} is missing")
            for member in rule.findall("service/member"):
                if member.text not in services:
                    errors.append(f"rule {rule.get('name')}: service '{member.text}' is not a valid reference")
        for rule in vsys.findall("rulebase/nat/rules/entry"):
            for member in rule.findall("service"):
                if member.text not in services:
                    errors.append(f"nat rule {rule.get('name')}: service '{member.text}' is not a valid reference")
        return errors

    def _op(self, params: dict) -> Response:
        try:
            cmd = etree.fromstring(params.get("cmd", "").encode(), _PARSER)
        except etree.XMLSyntaxError:
            raise ApiError(17, "Invalid command") from None
        job_id = cmd.findtext("jobs/id")
        if cmd.tag != "show" or job_id is None or not job_id.isdigit():
            raise ApiError(17, "Invalid command")
        job = self.jobs.get(int(job_id))
        if job is None:
            raise ApiError(7, f"job {job_id} not found")
        job["polls"] += 1
        if job["polls"] < 2:
            return _xml("success", None, f"<result><job><id>{job_id}</id><type>Commit</type><status>ACT</status>"
                                         f"<result>PEND</result><progress>50</progress></job></result>")
        result = "FAIL" if job["errors"] else "OK"
        details = "".join(f"<line>{escape(e)}</line>" for e in job["errors"]) or "<line>Configuration committed successfully</line>"
        return _xml("success", None, f"<result><job><id>{job_id}</id><type>Commit</type><status>FIN</status>"
                                     f"<result>{result}</result><progress>100</progress>"
                                     f"<details>{details}</details></job></result>")

    # -- test helpers ---------------------------------------------------------------------------
    def entries(self, xpath_suffix: str, running: bool = True) -> dict[str, etree._Element]:
        """Entries under ``VSYS + xpath_suffix`` (e.g. ``/rulebase/security/rules``) by name."""
        tree = self.running if running else self.candidate
        with self.lock:
            base = VR if xpath_suffix.startswith("/routing-table") else VSYS
            nodes = tree.getroottree().xpath(base + xpath_suffix + "/entry")
            return {n.get("name"): copy.deepcopy(n) for n in nodes}

    def state(self) -> dict:
        with self.lock:
            return {"running": etree.tostring(self.running, encoding="unicode"),
                    "candidate": etree.tostring(self.candidate, encoding="unicode"),
                    "jobs": {k: dict(v) for k, v in self.jobs.items()}}

    def drift(self, spec: dict) -> Any:
        """``{"op": "add", "xpath": ..., "element": "<entry ...>"}`` or ``{"op": "remove", "xpath": ...}``,
        applied to both candidate and running (as if an admin committed it)."""
        with self.lock:
            if spec["op"] == "add":
                _merge(self._ensure(spec["xpath"]), self._element(spec["element"]))
            elif spec["op"] == "remove":
                for node in self._select(self.candidate, spec["xpath"]):
                    node.getparent().remove(node)
            else:
                raise ValueError(f"unknown drift op {spec.get('op')!r}")
            self.running = copy.deepcopy(self.candidate)
        return True


def _address_ok(text: Optional[str], network: bool = True) -> None:
    if text == "any" or (text and re.match(r"^[A-Za-z][A-Za-z0-9_.-]*$", text)):
        return  # "any" or an address object name
    try:
        ipaddress.ip_network(text, strict=False) if network else ipaddress.ip_address(text)
    except (ValueError, TypeError):
        raise ApiError(12, f"'{text}' is not a valid address") from None
