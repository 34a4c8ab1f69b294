"""Reading dictionaries as seed 000's authors write them into nfp's model.

A pure step between YAML and :class:`~.model.Dictionary`: :func:`normalise`
turns the seed authors' spellings into nfp's and records, for every key it
moved, where the key was in the file (so errors still name the author's line
and key); :func:`validate` builds the model, reporting keys nfp does not know
as warnings rather than errors.

What is translated:

- service names: any ``^[A-Z][A-Za-z0-9]*$`` loads; the well-known ones map onto
  the services nfp's resources use (``NAT`` is ``PortForwarding``, ``SourceNAT``
  is ``SourceNat``, ``Routing`` is ``StaticRoutes`` ... see :data:`SERVICE_ALIASES`);
- ``services.System.commit`` is the dictionary's ``commit``;
- ``method: SSH`` with a (multi-line) ``endpoint`` is a CLI operation: a leading
  ``configure`` and trailing ``commit``/``save``/``exit`` lines become the CLI
  settings nfp wraps every change in (with ``exit discard`` on failure);
- ``authType: ssh_password`` / ``ssh_key`` are ``password`` / ``key``.
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Optional

from pydantic import ValidationError

from .errors import DictionaryError, Issue
from .model import Dictionary

#: seed and vendor names of services -> the service nfp's resources use
SERVICE_ALIASES = {
    "NAT": "PortForwarding", "PortForward": "PortForwarding", "DNAT": "PortForwarding",
    "DestinationNAT": "PortForwarding", "DestinationNat": "PortForwarding", "VirtualIP": "PortForwarding",
    "SourceNAT": "SourceNat", "SNAT": "SourceNat", "Masquerade": "SourceNat",
    "StaticNAT": "StaticNat", "OneToOneNAT": "StaticNat", "OneToOneNat": "StaticNat",
    "Routing": "StaticRoutes", "Routes": "StaticRoutes", "StaticRoute": "StaticRoutes",
    "LoadBalancing": "LoadBalancer", "VirtualServer": "LoadBalancer",
    "SecurityPolicy": "Firewall", "FirewallPolicy": "Firewall",
}
AUTH_ALIASES = {"ssh_password": "password", "ssh_key": "key"}
#: the methods seed 000 uses for CLI operations
CLI_METHODS = {"SSH", "CLI"}
#: top-level keys that make a file a dictionary at all
_REQUIRED = ("version", "vendor", "product", "access", "services")
_OPS = ("create", "delete", "update", "list")
#: the lines a seed CLI operation ends with, besides the dictionary's own commit lines
_TRAILERS = ("commit", "save", "exit")


class Renames(dict):
    """``{nfp key path: the author's key path}`` for every key :func:`normalise` moved."""

    def original(self, path: tuple) -> tuple:
        """Where ``path`` (a path into the normalised data) is in the author's file."""
        for cut in range(len(path), 0, -1):
            head = path[:cut]
            if head in self:
                return self[head] + path[cut:]
        return path


def check_format(data: Any, source: str, lines: Callable[[], dict[tuple, int]]) -> None:
    """One clear error when ``data`` is not a dictionary in the seed's format at all
    (a list, a Heat template, an OpenAPI file) instead of one error per missing key."""
    if not isinstance(data, dict):
        raise DictionaryError.one(source, 1, "", "not a vendor dictionary: the top level must be a "
                                  "mapping with " + ", ".join(_REQUIRED))
    if "services" in data or "access" in data:
        return
    first = min(lines().values(), default=1)
    found = ", ".join(str(k) for k in list(data)[:5]) or "nothing"
    raise DictionaryError.one(source, first, "", "not a vendor dictionary in the seed 000 format: "
                              f"expected top-level keys {', '.join(_REQUIRED)}; found {found} "
                              "(see dictionaries/README.md)")


def normalise(data: dict, source: str, lines: Callable[[], dict[tuple, int]]) -> tuple[dict, Renames]:
    """The dictionary ``data`` in nfp's spelling, and where each moved key came from.
    Raises DictionaryError (file:line: key: reason) when two spellings collide.
    ``data`` (freshly read YAML) is changed in place."""
    renames = Renames()
    access = data.get("access")
    if isinstance(access, dict) and access.get("authType") in AUTH_ALIASES:
        access["authType"] = AUTH_ALIASES[access["authType"]]
    services = data.get("services")
    if not isinstance(services, dict):
        return data, renames
    issues: list[Issue] = []
    renamed: dict[Any, Any] = {}
    for name, service in services.items():
        target = SERVICE_ALIASES.get(name, name) if isinstance(name, str) else name
        if target in renamed:
            other = next(k for k, v in renamed.items() if v == target)
            issues.append(Issue(source, lines().get(("services", name), 1), f"services.{name}",
                                f"is the same service as {other} ({target}); keep one"))
            continue
        renamed[name] = target
    system = services.get("System")
    if isinstance(system, dict) and "commit" in system:
        if "commit" in data:
            issues.append(Issue(source, lines().get(("services", "System", "commit"), 1),
                                "services.System.commit", "the dictionary also has a top-level commit; keep one"))
        else:
            data["commit"] = system.pop("commit")
            renames[("commit",)] = ("services", "System", "commit")
    if issues:
        raise DictionaryError(issues)
    new_services = {}
    for name, service in services.items():
        if name == "System" and isinstance(service, dict) and not service:
            continue
        if name not in renamed:
            continue
        target = renamed[name]
        new_services[target] = service
        if target != name:
            renames[("services", target)] = ("services", name)
    data["services"] = new_services
    cli_found: dict[str, Any] = {}
    for target, service in new_services.items():
        if isinstance(service, dict):
            for opname in _OPS:
                if isinstance(service.get(opname), dict):
                    path = ("services", target, opname)
                    _seed_call(service[opname], renames.original(path), path, access, cli_found, renames)
    if isinstance(data.get("commit"), dict):
        _seed_call(data["commit"], renames.original(("commit",)), ("commit",), access, cli_found, renames)
    if isinstance(access, dict) and access.get("protocol") == "ssh" and "cli" not in access and cli_found:
        access["cli"] = {"configure": cli_found.get("configure", "configure"),
                         "commit": cli_found.get("commit") or ["commit"], "exit": cli_found.get("exit", "exit")}
    return data, renames


def _seed_call(op: dict, original: tuple, path: tuple, access: Any, cli_found: dict, renames: Renames) -> None:
    """``method: SSH`` + ``endpoint`` -> ``commands`` (+ ``configure``), in place; also in steps."""
    for index, step in enumerate(op.get("steps") or []):
        if isinstance(step, dict):
            _seed_call(step, original + ("steps", index), path + ("steps", index), access, cli_found, renames)
    method = op.get("method")
    if not (isinstance(method, str) and method.upper() in CLI_METHODS):
        return
    del op["method"]
    renames[path + ("method",)] = original + ("method",)
    endpoint = op.pop("endpoint", None)
    if endpoint is None:
        return
    renames[path + ("commands",)] = original + ("endpoint",)
    cli = access.get("cli") if isinstance(access, dict) else None
    cli = cli if isinstance(cli, dict) else {}
    lines = [line.strip() for line in str(endpoint).splitlines() if line.strip()]
    configure = cli.get("configure", "configure")
    if lines and lines[0] == configure:
        lines = lines[1:]
        exit_line = cli.get("exit", "exit")
        commit_lines = cli.get("commit") if isinstance(cli.get("commit"), list) else []
        trailers: list[str] = []
        while lines and (lines[-1] in _TRAILERS or lines[-1] == exit_line or lines[-1] in commit_lines):
            trailers.insert(0, lines.pop())
        if trailers and trailers[-1] == exit_line:
            cli_found.setdefault("exit", trailers.pop())
        if trailers:
            cli_found.setdefault("commit", trailers)
        cli_found.setdefault("configure", configure)
        op.setdefault("configure", True)
    else:
        op.setdefault("configure", False)
    op["commands"] = "\n".join(lines)


def validate(data: dict, source: str, lines: Callable[[], dict[tuple, int]], renames: Renames
             ) -> tuple[Dictionary, list[Issue]]:
    """The model and the warnings (unknown keys, ignored). Raises DictionaryError
    with every other problem, each as file:line: key: reason (its ``warnings`` too)."""
    warnings: list[Issue] = []
    try:
        return Dictionary.model_validate(data), warnings
    except ValidationError as exc:
        errors = exc.errors()
    unknown = [e for e in errors if e["type"] == "extra_forbidden"]
    if unknown:
        data = copy.deepcopy(data)
        for err in unknown:
            original = renames.original(_remove(data, err["loc"]))
            warnings.append(Issue(source, _line(lines(), original), ".".join(map(str, original)),
                                  "unknown key, ignored (a warning; nfp dictionary validate --strict "
                                  "rejects it)"))
        try:
            return Dictionary.model_validate(data), warnings
        except ValidationError as exc:
            errors = exc.errors()
    issues = []
    for err in errors:
        path = renames.original(_data_path(data, err["loc"]))
        key = ".".join(str(p) for p in path) if path else ".".join(str(p) for p in err["loc"])
        issues.append(Issue(source, _line(lines(), path), key, err["msg"]))
    raise DictionaryError(_dedupe(issues), warnings)


def _line(lines: dict[tuple, int], path: tuple) -> int:
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return 1


def _data_path(data: Any, loc: tuple) -> tuple:
    """Pydantic's location without union-member tags: the parts that are keys of the data."""
    path: tuple = ()
    current = data
    for part in loc:
        if isinstance(current, dict) and part in current:
            path, current = path + (part,), current[part]
        elif isinstance(current, list) and isinstance(part, int) and part < len(current):
            path, current = path + (part,), current[part]
    return path


def _remove(data: dict, loc: tuple) -> tuple:
    """Delete the key at ``loc`` from ``data``; return its path."""
    path = _data_path(data, loc)
    parent: Any = data
    for part in path[:-1]:
        parent = parent[part]
    if path and isinstance(parent, dict):
        parent.pop(path[-1], None)
    return path


def _dedupe(issues: list[Issue]) -> list[Issue]:
    seen, out = set(), []
    for issue in issues:
        if (issue.line, issue.key) not in seen:
            seen.add((issue.line, issue.key))
            out.append(issue)
    return out


def original_key(renames: Optional[Renames], path: tuple) -> str:
    """The author's dotted key for a path into the normalised data."""
    return ".".join(map(str, renames.original(path) if renames else path))
