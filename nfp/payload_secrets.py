"""Secrets inside callers' payloads: taken out when a request is accepted.

A caller may put credentials anywhere in what it sends: an appliance password in
``management``, an admin token in ``service_config``, a hidden Heat parameter's
value in ``config_param_values``. nfp stores those payloads, answers them to
``get_*`` and publishes them in notifications, so each such value is moved into
the encrypted secret store (:mod:`nfp.secrets`) before anything is stored or
logged, and its place holds a reference, ``"secret:<name>"``: the form nfp's
Heat translation already takes for a pre-shared key (``psk: "secret:<name>"``).
A reference is a string where a string was, so every schema still validates;
drivers resolve references only when they call a device (:func:`reveal`).

What is secret (the one rule, :func:`is_secret_key` and :func:`seal`):

- a value under a secret-like key: the key's last word is one of
  :data:`SECRET_WORDS` (``password``, ``admin_password``, ``auth_token``,
  ``api_key``, ``private_key``, ``client_secret``, ``psk``; ``tokenRef`` or
  ``key_name`` are not, their last word is ``ref`` / ``name``);
- the ``default`` and the supplied values of a Heat parameter marked
  ``hidden: true`` (or ``NoEcho``, or named like a secret);
- the fields a mapping declares secret itself: ``"secret_fields": ["community"]``.

Text that holds a document (``service_config``, ``config``, a Heat
``template``, ``config_param_values``) is parsed, sealed and written back as
JSON when it held a secret.
"""
from __future__ import annotations

import functools
import json
import re
import uuid
from typing import Any, Callable, Iterable, Optional

import yaml

from nfp import jsonfast

#: a reference to a stored secret, in place of its value
SECRET_PREFIX = "secret:"
#: last words of secret-like keys
SECRET_WORDS = frozenset({"password", "passwd", "pwd", "pass", "passphrase", "secret", "token",
                          "key", "psk", "credential", "credentials"})
#: a mapping's own list of the fields it holds secret
DECLARED = "secret_fields"
#: keys whose text value is a document (JSON or YAML) that may hold secrets
DOCUMENT_KEYS = frozenset({"service_config", "config", "template", "config_param_values",
                           "chain_parameters"})
#: Heat parameters (HOT ``parameters``, CloudFormation ``Parameters``)
_PARAMS = ("parameters", "Parameters")
_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


def is_secret_key(name: Any) -> bool:
    """True if a value under ``name`` is a secret (the last word of the key decides)."""
    return isinstance(name, str) and _secret_name(name)


@functools.lru_cache(maxsize=4096)
def _secret_name(name: str) -> bool:
    words = _WORD.findall(name)
    return bool(words) and words[-1].lower() in SECRET_WORDS


def is_reference(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(SECRET_PREFIX) and len(value) > len(SECRET_PREFIX)


def reference(name: str) -> str:
    return SECRET_PREFIX + name


def referenced_name(value: str) -> str:
    return value[len(SECRET_PREFIX):].strip()


def hidden_parameters(document: Any) -> set[str]:
    """Names of the Heat parameters marked ``hidden: true`` anywhere in ``document``
    (text documents under :data:`DOCUMENT_KEYS` included)."""
    found: set[str] = set()

    def visit(node: Any, key: Any = None) -> None:
        if isinstance(node, str) and key in DOCUMENT_KEYS:
            node = _load(node) if _may_hold_secrets(node) else None
        if isinstance(node, dict):
            for params_key in _PARAMS:
                params = node.get(params_key)
                if isinstance(params, dict):
                    found.update(n for n, spec in params.items()
                                 if isinstance(spec, dict) and _hidden(n, spec))
            for k, v in node.items():
                visit(v, k)
        elif isinstance(node, list):
            for item in node:
                visit(item)

    visit(document)
    return found


class Sealer:
    """Walks a payload, moving secret values out; ``found`` maps each new secret's
    name to its value (the caller stores them, in the request's transaction).

    Parameters:
        prefix(str): names are ``<prefix>/<12 hex>`` (e.g. ``nf/<id>``).
        hidden(set): Heat parameter names whose values are secret.
    """

    def __init__(self, prefix: str, hidden: Iterable[str] = ()):
        self.prefix = prefix
        self.hidden = set(hidden)
        self.found: dict[str, str] = {}
        #: names the payload itself referred to (``"secret:<name>"`` it was sent with)
        self.references: set[str] = set()
        #: hidden parameters met on the way (see :meth:`seal_all`)
        self.discovered: set[str] = set()

    def seal_all(self, payload: Any) -> Any:
        """:meth:`seal`, then once more if the payload declared hidden parameters not
        known before: their values may have come before their declaration. One walk
        for the payloads that declare none (nearly all), and none for a payload whose
        text holds no word a secret could be found by (:func:`may_hold_secrets`)."""
        if not self.hidden and not may_hold_secrets(payload):
            return payload
        sealed = self.seal(payload)
        if self.discovered - self.hidden:
            self.hidden |= self.discovered
            sealed = self.seal(sealed)
        return sealed

    def seal(self, node: Any, key: Any = None) -> Any:
        """``node`` with every secret replaced by a reference. ``node`` is not changed:
        what holds a secret is copied, the rest is shared (intake walks every payload)."""
        if isinstance(node, str):
            if key in DOCUMENT_KEYS:
                return self._seal_text(node)
            if is_reference(node):
                self._referred(node)
            return node
        if isinstance(node, dict):
            return self._seal_params(self._seal_dict(node))
        if isinstance(node, list):
            items = [self.seal(item) for item in node]
            return node if all(a is b for a, b in zip(items, node)) else items
        return node

    def _seal_dict(self, node: dict) -> dict:
        declared = node.get(DECLARED)
        declared = set(declared) if isinstance(declared, list) else ()
        out = None
        for k, v in node.items():
            if (is_secret_key(k) or k in declared or k in self.hidden) and _scalar(v):
                new = self._take(v)
            elif isinstance(v, str):
                if k not in DOCUMENT_KEYS:
                    if is_reference(v):
                        self._referred(v)
                    continue
                new = self._seal_text(v)
            elif isinstance(v, (dict, list)):
                new = self.seal(v, k)
            else:
                continue
            if new is not v:
                out = out if out is not None else dict(node)
                out[k] = new
        return node if out is None else out

    def _seal_params(self, node: dict) -> dict:
        """A Heat parameter marked hidden keeps its default only as a reference."""
        for params_key in _PARAMS:
            params = node.get(params_key)
            if not isinstance(params, dict):
                continue
            for name, spec in params.items():
                if not (isinstance(spec, dict) and _hidden(name, spec)):
                    continue
                self.discovered.add(name)
                for default in ("default", "Default"):
                    if _scalar(spec.get(default)) and not is_reference(spec[default]):
                        spec = {**spec, default: self._take(spec[default])}
                        params = {**params, name: spec}
                        node = {**node, params_key: params}
        return node

    def _referred(self, value: str) -> None:
        name = referenced_name(value)
        if name not in self.found:  # not one this walk made itself
            self.references.add(name)

    def _seal_text(self, text: str) -> str:
        if not _may_hold_secrets(text, self.hidden):
            return text  # most configs: no parse at all
        document = _load(text)
        if not isinstance(document, (dict, list)):
            return text
        before = len(self.found)
        sealed = self.seal(document)
        if len(self.found) == before:
            return text  # nothing secret: the caller's text stays as sent
        return json.dumps(sealed, sort_keys=True, default=str)

    def _take(self, value: Any) -> Any:
        if is_reference(value):
            self._referred(value)
        if value is None or value == "" or is_reference(value):
            return value
        name = f"{self.prefix}/{uuid.uuid4().hex[:12]}"
        self.found[name] = value if isinstance(value, str) else json.dumps(value)
        return reference(name)


def holds_reference(node: Any) -> bool:
    """True if ``node`` holds a ``"secret:<name>"`` anywhere (most config holds none,
    and then nothing needs the secret store)."""
    if isinstance(node, str):
        return is_reference(node)
    if isinstance(node, dict):
        return any(holds_reference(v) for v in node.values())
    if isinstance(node, list):
        return any(holds_reference(item) for item in node)
    return False


def may_hold_secrets(payload: Any) -> bool:
    """False only when the walk of :class:`Sealer` cannot find anything in ``payload``:
    its JSON text holds none of the words a secret comes with (:func:`_may_hold_secrets`),
    no escape (an escape in a document string could spell one) and nothing but
    ASCII (the standard library's text escaped every other character, so such a
    payload was always walked; it still is). Intake calls this for every create;
    the walk costs ten times more."""
    try:
        text = jsonfast.dumps(payload, default=str)
    except (TypeError, ValueError):
        return True
    return "\\" in text or not text.isascii() or _may_hold_secrets(text)


def reveal(node: Any, get: Callable[[str], str]) -> Any:
    """``node`` with every ``"secret:<name>"`` replaced by ``get(name)``: for a driver,
    at the moment it calls a device, never for anything stored or shown."""
    if is_reference(node):
        return get(referenced_name(node))
    if isinstance(node, dict):
        return {k: reveal(v, get) for k, v in node.items()}
    if isinstance(node, list):
        return [reveal(item, get) for item in node]
    return node


def _hidden(name: str, spec: dict) -> bool:
    """A Heat parameter is secret when marked ``hidden`` (HOT) or ``NoEcho`` (AWS),
    or when its name is secret-like (``admin_password``)."""
    return _is_true(spec.get("hidden")) or _is_true(spec.get("NoEcho")) or is_secret_key(name)


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def _is_true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


#: words in a text document that may mark a secret (parsing it costs more than looking)
_MARKS = tuple(SECRET_WORDS | {"hidden", "noecho", DECLARED, SECRET_PREFIX})


def _may_hold_secrets(text: str, names: Iterable[str] = ()) -> bool:
    """False when ``text`` holds none of the words a secret comes with, nor any of ``names``."""
    lowered = text.lower()
    return any(mark in lowered for mark in _MARKS) or any(name in text for name in names)


def _load(text: str) -> Optional[Any]:
    """A document from JSON or YAML text (a ``heat_config:`` tag allowed); None if
    the text is no document."""
    body = text.strip()
    if body.startswith("heat_config:"):
        body = body[len("heat_config:"):].strip()
    if not body or body[0] not in "{[" and ":" not in body:
        return None
    try:
        return json.loads(body) if body[0] in "{[" else yaml.safe_load(body)
    except (ValueError, yaml.YAMLError, RecursionError):
        try:
            return yaml.safe_load(body)
        except (yaml.YAMLError, RecursionError):
            return None
