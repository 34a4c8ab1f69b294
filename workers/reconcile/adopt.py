"""Policy ``adopt``: take the device's values into the NF's intent. Pure: no I/O.

Seed 000 and Cisco NSO's out-of-band policy "accept the device's value": what
differs on the device becomes what nfp wants, so the next compare finds no
drift. Per item of a diff:

- *missing* (nfp wants it, the device has none): the item leaves the intent;
- *changed*: the device's body replaces the intent's;
- *extra* (the device has it, nfp does not): the device's body joins the intent.

Items are the entries of an element's item lists (``rules``, ``routes``,
``members``) found by name: a diff names them ``rules/web`` or just ``web``.
An item is adopted only when the device's body is a valid item of nfp's own
format (the resource's schema accepts the element afterwards); a vendor
listing's raw object, or an intent that is a Heat template, cannot be and says
why in the item's result. Only names and reasons leave this module.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Optional

from nfp.resources import ResourceError, dump_service_config, parse_resource, parse_service_config

#: list fields of ``resource_data`` whose entries are named items
ITEM_LISTS = ("rules", "routes", "members")


@dataclass
class Adoption:
    """The intent after adoption (None when nothing was adopted) and each item's result,
    keyed by ``(resource, item name)``; ``gone`` names items that left the intent."""

    service_config: Optional[str] = None
    results: dict[tuple[str, str], str] = field(default_factory=dict)
    gone: list[tuple[str, str]] = field(default_factory=list)


def _locate(data: dict, name: str) -> tuple[Optional[str], str]:
    """``(list field, item name)`` for a diff item name: ``rules/web`` or ``web``."""
    head, _, tail = name.partition("/")
    if tail and head in ITEM_LISTS:
        return head, tail
    for key in ITEM_LISTS:
        if any(isinstance(e, dict) and e.get("name") == name for e in data.get(key) or []):
            return key, name
    return None, name


def _adopt_item(data: dict, found: str, change: dict) -> str:
    """Apply one item to ``data`` (an element's resource_data); return its result."""
    key, name = _locate(data, change["name"])
    if found == "extra" and key is None:
        key = next((k for k in ITEM_LISTS if isinstance(data.get(k), list)), None)
    if key is None:
        return f"not adopted: {change['name']} is no named item of the intent"
    entries = data.setdefault(key, [])
    index = next((i for i, e in enumerate(entries) if isinstance(e, dict) and e.get("name") == name), None)
    if found == "missing":
        if index is not None:
            del entries[index]
        return "adopted: removed from the intent"
    actual = change.get("actual")
    if not isinstance(actual, dict):
        return "not adopted: the device's value is not an item body"
    body = dict(actual, name=name)
    if index is None:
        entries.append(body)
    else:
        entries[index] = body
    return "adopted: the device's value is the intent"


def adopt(service_config, diffs: list[dict]) -> Adoption:
    """The intent ``service_config`` with the drift of ``diffs`` (``Diff.to_dict()``
    per element) taken from the device (see module docstring)."""
    out = Adoption()
    elements = copy.deepcopy(parse_service_config(service_config))
    heat = any(e.get("resource") == "heat" for e in elements)
    by_resource = {e.get("resource"): e for e in elements}
    touched = set()
    for diff in diffs:
        resource = diff["resource"]
        element = by_resource.get(resource)
        for kind, found in (("to_add", "missing"), ("to_change", "changed"), ("to_remove", "extra")):
            for change in diff.get(kind, []):
                item = (resource, change["name"])
                if heat or element is None:
                    out.results[item] = "not adopted: the intent is a Heat template" if heat else \
                        f"not adopted: the intent has no {resource} element"
                    continue
                before = copy.deepcopy(element.get("resource_data") or {})
                data = element.setdefault("resource_data", {})
                result = _adopt_item(data, found, change)
                if result.startswith("adopted"):
                    try:
                        parse_resource(resource, data)
                    except ResourceError as exc:
                        element["resource_data"] = before
                        result = f"not adopted: the device's value is no valid {resource} item ({exc.field})"
                if result.startswith("adopted"):
                    touched.add(resource)
                    if found == "missing":
                        out.gone.append(item)
                out.results[item] = result
    if touched:
        out.service_config = dump_service_config(elements)
    return out
