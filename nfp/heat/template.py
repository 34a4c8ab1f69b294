"""A Heat template as data: parsed from HOT (YAML or JSON) or AWS CloudFormation
text, with its intrinsic functions resolved on demand.

Upstream's node drivers send the template text as it was uploaded, sometimes
behind a tag (``heat_config:``); ``config_init:``, ``ansible:`` and
``custom_json:`` bodies are not Heat and are refused by name. Both formats are
read into one shape: resources ``{name: Resource}`` and parameters
``{name: {"type", "default"}}``. Only the properties a translator reads are
resolved, so a parameter nfp has no use for (upstream's ``RouterId``) need not
have a value; one that is read and has neither a value nor a default is an error
naming the parameter and the property that needs it.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Optional

import yaml

from nfp.heat.errors import HeatError

#: upstream's config tags (``parse_template_config_string``); only the first is Heat
TAGS = ("heat_config", "config_init", "ansible", "custom_json")

#: HOT functions nfp cannot evaluate without a running stack or files
_UNSUPPORTED = {"get_attr", "get_file", "repeat", "resource_facade", "digest", "if", "equals",
                "not", "and", "or", "yaql", "map_merge", "map_replace", "str_split",
                "list_concat", "list_concat_unique", "contains", "filter", "make_url",
                "str_replace_strict", "str_replace_vstrict"}
_SUPPORTED = {"get_param", "get_resource", "list_join", "str_replace", "Ref", "Fn::Join"}
_TRUE = {"true", "yes", "on", "1", "t", "y"}
_FALSE = {"false", "no", "off", "0", "f", "n"}


@dataclass(frozen=True)
class Ref:
    """A ``get_resource`` (CloudFormation ``Ref``) to a resource of the same template."""

    name: str


@dataclass(frozen=True)
class Resource:
    """One entry of the template's resources, as written (unresolved)."""

    name: str
    type: str
    properties: dict
    #: the resource-level ``description`` (upstream hides data there)
    description: str = ""


@dataclass(frozen=True)
class Template:
    """The parts of a template translation reads."""

    resources: dict[str, Resource]
    parameters: dict[str, dict]
    #: AWS CloudFormation format (``Ref``) rather than HOT (``get_param``)
    aws: bool = False


def load(source: Any) -> dict:
    """The template document from text (JSON or YAML, optionally tagged) or a dict."""
    if isinstance(source, Mapping):
        return dict(source)
    if not isinstance(source, str):
        raise HeatError(f"template must be text or a mapping, not {type(source).__name__}")
    text = source.strip()
    for tag in TAGS:
        if text.startswith(tag + ":"):
            if tag != "heat_config":
                raise HeatError(f"service_config tagged {tag!r} is not a Heat template and "
                                f"cannot be translated; send a Heat template or nfp's "
                                f'{{"config": [...]}}')
            text = text[len(tag) + 1:].strip()
            break
    try:
        doc = json.loads(text) if text.startswith("{") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        where = getattr(exc, "problem_mark", None) or getattr(exc, "lineno", None)
        raise HeatError(f"template is neither valid JSON nor YAML (near {where})") from None
    except RecursionError:
        raise HeatError("template is nested too deeply") from None
    if not isinstance(doc, dict):
        raise HeatError("template must be a mapping with resources")
    return doc


def parse(source: Any) -> Template:
    """A :class:`Template` from whatever :func:`load` accepts."""
    doc = load(source)
    aws = "AWSTemplateFormatVersion" in doc or "Resources" in doc
    res_key, par_key = ("Resources", "Parameters") if aws else ("resources", "parameters")
    if res_key not in doc and "heat_template_version" not in doc:
        raise HeatError("service_config is neither nfp's {\"config\": [...]} nor a Heat "
                        "template (no heat_template_version, resources or Resources)")
    raw_resources = doc.get(res_key) or {}
    raw_params = doc.get(par_key) or {}
    if not isinstance(raw_resources, dict):
        raise HeatError(f"{res_key}: must be a mapping of resource names to resources")
    if not isinstance(raw_params, dict):
        raise HeatError(f"{par_key}: must be a mapping of parameter names to definitions")
    resources = {}
    for name, body in raw_resources.items():
        name = str(name)
        if not isinstance(body, dict):
            raise HeatError(f"resource {name}: must be a mapping with a type")
        rtype = body.get("Type" if aws else "type")
        props = body.get("Properties" if aws else "properties") or {}
        if not isinstance(rtype, str) or not rtype:
            raise HeatError(f"resource {name}: has no type")
        if not isinstance(props, dict):
            raise HeatError(f"resource {name}: properties must be a mapping")
        desc = body.get("Description" if aws else "description")
        resources[name] = Resource(name, rtype, props, desc if isinstance(desc, str) else "")
    parameters = {}
    for name, body in raw_params.items():
        body = body if isinstance(body, dict) else {}
        parameters[str(name)] = {"type": str(body.get("Type" if aws else "type") or "string"),
                                 "default": body.get("Default" if aws else "default")}
    return Template(resources, parameters, aws)


def element_name(logical: str, taken: set[str]) -> str:
    """A valid nfp name (``RuleName``), unique in ``taken``, from a logical resource name."""
    base = re.sub(r"[^A-Za-z0-9_.-]", "-", logical).lstrip("_.-")[:60] or "rule"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base[:60 - len(str(n))]}-{n}"
    taken.add(name)
    return name


class Resolver:
    """Evaluates intrinsic functions against the caller's parameter values.

    ``params`` are the values supplied for this stack (the chain instance's
    ``config_param_values`` and what the orchestrator derives); a parameter
    without a value takes the template's default.
    """

    #: values visited per template: YAML aliases can make a small text a huge tree
    BUDGET = 100_000

    def __init__(self, template: Template, params: Mapping[str, Any]):
        self.template = template
        self.params = params
        self._left = self.BUDGET

    def resolve(self, node: Any, where: str) -> Any:
        """``node`` with every intrinsic function evaluated; ``where`` names it in errors."""
        self._left -= 1
        if self._left < 0:
            raise HeatError(f"{where}: template too large to translate "
                            f"(more than {self.BUDGET} values)")
        if isinstance(node, list):
            return [self.resolve(item, where) for item in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            if key in _SUPPORTED:
                return self._call(key, arg, where)
            if key in _UNSUPPORTED or key.startswith("Fn::"):
                raise HeatError(f"{where}: function {key} cannot be evaluated by nfp "
                                f"(supported: {', '.join(sorted(_SUPPORTED))})")
        return {k: self.resolve(v, where) for k, v in node.items()}

    def _call(self, fn: str, arg: Any, where: str) -> Any:
        if fn == "get_resource":
            return self._resource(arg, where)
        if fn == "Ref":
            if arg in self.template.resources:
                return self._resource(arg, where)
            return self.param(arg, where)
        if fn == "get_param":
            path = arg if isinstance(arg, list) else [arg]
            value = self.param(path[0], where)
            for step in path[1:]:
                try:
                    value = value[step]
                except (KeyError, IndexError, TypeError):
                    raise HeatError(f"{where}: parameter {path[0]} has no element {step!r}") from None
            return value
        if fn in ("list_join", "Fn::Join"):
            if not isinstance(arg, list) or len(arg) < 2:
                raise HeatError(f"{where}: {fn} takes [delimiter, list]")
            parts = []
            for item in arg[1:]:
                resolved = self.resolve(item, where)
                parts += resolved if isinstance(resolved, list) else [resolved]
            return str(arg[0]).join(str(p) for p in parts)
        # str_replace
        if not isinstance(arg, dict) or "template" not in arg:
            raise HeatError(f"{where}: str_replace takes {{template, params}}")
        text = str(self.resolve(arg["template"], where))
        replacements = self.resolve(arg.get("params") or {}, where)
        if not isinstance(replacements, dict):
            raise HeatError(f"{where}: str_replace params must be a mapping")
        for key, value in replacements.items():
            text = text.replace(str(key), str(value))
        return text

    def _resource(self, name: Any, where: str) -> Ref:
        if not isinstance(name, str) or name not in self.template.resources:
            raise HeatError(f"{where}: no resource named {name!r} in the template")
        return Ref(name)

    def param(self, name: Any, where: str) -> Any:
        """The value of parameter ``name``: supplied, else its default, else an error."""
        if not isinstance(name, str) or name not in self.template.parameters:
            raise HeatError(f"{where}: parameter {name!r} is not declared in the template's "
                            f"parameters")
        decl = self.template.parameters[name]
        value = self.params.get(name)
        if value is None:
            value = decl["default"]
        if value is None:
            raise HeatError(f"{where}: parameter {name} has no value (not in the chain "
                            f"instance's config_param_values) and no default")
        return _coerce(name, decl["type"], value)


def _coerce(name: str, ptype: str, value: Any) -> Any:
    kind = ptype.lower()
    try:
        if kind == "number" and isinstance(value, str):
            number = float(value)
            return int(number) if number.is_integer() else number
        if kind in ("comma_delimited_list", "commadelimitedlist") and isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if kind == "json" and isinstance(value, str):
            return json.loads(value)
        if kind == "boolean" and isinstance(value, str):
            if value.lower() not in _TRUE | _FALSE:
                raise ValueError(value)
            return value.lower() in _TRUE
    except ValueError:
        raise HeatError(f"parameter {name}: value is not a valid {ptype}") from None
    return value


class View:
    """One resource as a translator reads it: resolved properties, typed
    references, and errors that name the resource, its type and the property."""

    def __init__(self, resource: Resource, resolver: Resolver):
        self.resource = resource
        self.resolver = resolver
        self.name = resource.name
        self.type = resource.type

    def error(self, prop: Optional[str], reason: str) -> HeatError:
        """A HeatError naming this resource (and ``prop``)."""
        at = f": property {prop}" if prop else ""
        return HeatError(f"resource {self.name} ({self.type}){at}: {reason}")

    def get(self, prop: str, default: Any = None, required: bool = False) -> Any:
        """The resolved property; ``default`` when absent or null."""
        raw = self.resource.properties.get(prop)
        value = None if raw is None else self.resolver.resolve(
            raw, f"resource {self.name} ({self.type}): property {prop}")
        if value is None:
            if required:
                raise self.error(prop, "is required for nfp to translate this resource")
            return default
        return value

    def flag(self, prop: str, default: bool = True) -> bool:
        """A boolean property; upstream writes ``"true"`` as often as ``true``."""
        value = self.get(prop, default=default)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        if not isinstance(value, bool):
            raise self.error(prop, "must be true or false")
        return value

    def ref(self, prop: str, *types: str, required: bool = True) -> Optional[str]:
        """The name of the template resource ``prop`` points at (``get_resource``)."""
        value = self.get(prop, required=required)
        if value is None:
            return None
        if not isinstance(value, Ref):
            raise self.error(prop, "must be {get_resource: <name>} of this template; nfp "
                                   "cannot look up objects that exist outside it")
        target = self.resolver.template.resources[value.name]
        if types and target.type not in types:
            raise self.error(prop, f"points at {value.name}, a {target.type}; expected "
                                   f"{' or '.join(types)}")
        return value.name

    def check(self, known: Iterable[str]) -> None:
        """Refuse properties nfp would otherwise drop without saying so."""
        known = set(known)
        for prop, value in self.resource.properties.items():
            if prop not in known and value is not None:
                raise self.error(prop, f"cannot be translated (nfp reads {', '.join(sorted(known))})")


class Context:
    """A parsed template with its resolver; records which resources were translated."""

    def __init__(self, template: Template, params: Mapping[str, Any]):
        self.template = template
        self.resolver = Resolver(template, params)
        self.used: set[str] = set()

    def _views(self, types: Iterable[str]) -> list[View]:
        types = set(types)
        return [View(r, self.resolver) for r in self.template.resources.values() if r.type in types]

    def of_type(self, *types: str) -> list[View]:
        """Resources of these types, in template order, marked as translated."""
        views = self._views(types)
        self.used.update(v.name for v in views)
        return views

    def view(self, name: str) -> View:
        """Resource ``name``, marked as translated."""
        self.used.add(name)
        return View(self.template.resources[name], self.resolver)

    def pointing_at(self, types: Iterable[str], prop: str, target: str) -> list[View]:
        """Resources of ``types`` whose ``prop`` references ``target``."""
        found = [v for v in self._views(types) if v.ref(prop, required=False) == target]
        self.used.update(v.name for v in found)
        return found
