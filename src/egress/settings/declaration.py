"""The one declaration of the settings' fields: egress.yaml's keys, the console's form, the schema.

Every field of ``egress.yaml`` is declared once here, as a :class:`Field`. The loader
(:mod:`~egress.settings.egress_yaml`) takes its known keys and each field's reader from
:data:`FIELDS`; the console builds its settings form from them (:func:`form_value`,
:func:`document_from_form`, :func:`field_of_problem`); :func:`json_schema` is what
``egress schema`` prints for editors. Rules that tie fields together stay in
:mod:`~egress.settings.sections`.

>>> field("proxy.url").label, field("deployment.kind").choices
('Proxy URL', ('kubernetes', 'single-vm'))
>>> document_from_form({"proxy.url": "http://proxy:3128", "proxy.enabled": "on",
...                     "excluded_domains": ".corp.example, 10.0.0.0/8"})["excluded_domains"]
['.corp.example', '10.0.0.0/8']
>>> field_of_problem("resolve.db.corp.example"), field_of_problem("proxy.nope")
('resolve', None)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from egress.catalog import known_features
from egress.settings.model import (
    DEFAULT_WAREHOUSES,
    DEPLOYMENT_KINDS,
    PROXY_AUTH_METHODS,
    PROXY_TYPES,
)
from egress.warehouses import WAREHOUSES

KINDS: Final = ("bool", "text", "url", "port", "choice", "list", "map", "secret", "pem")
"""Every kind of field; each has one reader in the loader and one input on the form."""
SECTIONS: Final = ("proxy", "proxy.kerberos", "deployment")
"""The keys of ``egress.yaml`` that are mappings of further fields (dotted when nested)."""

SCHEMA_ID: Final = "https://egress.invalid/schemas/egress.yaml.json"
"""The schema's ``$id``: a name, never fetched (``.invalid`` cannot resolve)."""


@dataclass(frozen=True)
class Field:
    """One setting: where it sits in ``egress.yaml``, what it holds, and how the form shows it."""

    path: str
    """Dotted ``egress.yaml`` path: ``proxy.url``, ``deployment.kind``, ``resolve``."""
    kind: str
    """One of :data:`KINDS`."""
    label: str
    """Short, for a form label."""
    help: str
    """One sentence shown under the input (and the schema's description)."""
    default: object
    """The value when absent (None: nothing, or derived from other fields as ``help`` says)."""
    choices: tuple[str, ...] = ()
    """The closed set of a ``choice`` field, or of a ``list`` field's items."""
    example: str = ""
    """Placeholder text."""
    section: str = ""
    """The form's group: Proxy, Exclusions, Deployment, Warehouses, Checks."""
    yaml: bool = True
    """A key of ``egress.yaml`` (the password is not: the console keeps it apart)."""
    console: bool = True
    """Shown on the console's settings form (file paths on the server are not)."""
    any_case: bool = False
    """The loader reads the choices in any case (``HTTPS``, ``Single-VM``)."""

    @property
    def key(self) -> str:
        """The last part of the path: the key inside its section."""
        return self.path.rpartition(".")[2]

    @property
    def parent(self) -> str:
        """The section the key sits in (``""`` for a top-level key)."""
        return self.path.rpartition(".")[0]


FIELDS: Final[tuple[Field, ...]] = (
    Field(
        "proxy.enabled",
        "bool",
        "Use the proxy",
        "The admin-console switch: off sends everything direct; on by default when a proxy "
        "address is set.",
        None,
        section="Proxy",
    ),
    Field(
        "proxy.url",
        "url",
        "Proxy URL",
        "The proxy as http://host:port or https://host:port (TLS to the proxy), without "
        "credentials.",
        None,
        example="http://proxy.corp.example:3128",
        section="Proxy",
    ),
    Field(
        "proxy.https_url",
        "url",
        "Proxy URL for https:// destinations",
        "Another proxy for https:// destinations and CONNECT tunnels; the proxy URL when empty.",
        None,
        example="http://proxy-tls.corp.example:3128",
        section="Proxy",
    ),
    Field(
        "proxy.host",
        "text",
        "Proxy host",
        "The proxy's host name or IP, instead of the proxy URL (with port and type).",
        None,
        example="proxy.corp.example",
        section="Proxy",
    ),
    Field(
        "proxy.port",
        "port",
        "Proxy port",
        "The proxy's port, with the proxy host (80 for http, 443 for https when empty).",
        None,
        example="3128",
        section="Proxy",
    ),
    Field(
        "proxy.type",
        "choice",
        "Proxy type",
        "How egress talks to the proxy given by host: plain http, or https (TLS to the proxy).",
        "http",
        choices=PROXY_TYPES,
        section="Proxy",
        any_case=True,
    ),
    Field(
        "proxy.auth",
        "choice",
        "Proxy authentication",
        "How egress authenticates to the proxy: basic (user name and password; the default when "
        "a user name is set) or negotiate (Kerberos, with this host's own identity).",
        None,
        choices=PROXY_AUTH_METHODS,
        section="Proxy",
        any_case=True,
    ),
    Field(
        "proxy.username",
        "text",
        "Proxy user name",
        "The user name for the proxy's Basic authentication; needs a password.",
        None,
        example="svc-platform",
        section="Proxy",
    ),
    Field(
        "proxy.password",
        "secret",
        "Proxy password",
        "The proxy password; stored apart from the settings and never shown again.",
        None,
        section="Proxy",
        yaml=False,
    ),
    Field(
        "proxy.password_file",
        "text",
        "Proxy password file",
        "A file that holds only the proxy password (one line).",
        None,
        example="/run/secrets/proxy-password",
        section="Proxy",
        console=False,
    ),
    Field(
        "proxy.kerberos.keytab",
        "text",
        "Kerberos client keytab",
        "negotiate only: a client keytab egress gets (and renews) its own tickets from; the "
        "credential cache or KRB5_CLIENT_KTNAME when empty.",
        None,
        example="/etc/egress/client.keytab",
        section="Proxy",
        console=False,
    ),
    Field(
        "proxy.kerberos.principal",
        "text",
        "Kerberos principal",
        "negotiate only: the principal in that keytab that egress authenticates as.",
        None,
        example="svc-platform@CORP.EXAMPLE",
        section="Proxy",
    ),
    Field(
        "proxy.kerberos.spn",
        "text",
        "Proxy service principal",
        "negotiate only: the proxy's Kerberos service principal; HTTP/<proxy host> when empty, "
        "required when the proxy is written as an IP address.",
        None,
        example="HTTP/proxy.corp.example",
        section="Proxy",
    ),
    Field(
        "proxy.ca_file",
        "text",
        "Proxy CA file",
        "A PEM file of the CA that signs the proxy's certificate (or a TLS-intercepting "
        "proxy's CA).",
        None,
        example="/etc/egress/proxy-ca.pem",
        section="Proxy",
        console=False,
    ),
    Field(
        "proxy.ca_pem",
        "pem",
        "Proxy CA certificate",
        "The CA that signs the proxy's certificate (or a TLS-intercepting proxy's CA), as PEM "
        "text.",
        None,
        example="-----BEGIN CERTIFICATE-----",
        section="Proxy",
    ),
    Field(
        "proxy.verify",
        "bool",
        "Verify the proxy's certificate",
        "Check the https proxy's certificate; switching it off lets anyone on the path pose as "
        "the proxy.",
        True,
        section="Proxy",
    ),
    Field(
        "excluded_domains",
        "list",
        "Excluded destinations",
        "Destinations that never use the proxy, as in NO_PROXY: .corp.example, a host, an IP "
        "or a CIDR range.",
        [],
        example=".corp.example, 10.0.0.0/8",
        section="Exclusions",
    ),
    Field(
        "deployment.kind",
        "choice",
        "Deployment",
        "Where the platform runs; decides which cluster-internal destinations go direct.",
        "kubernetes",
        choices=DEPLOYMENT_KINDS,
        section="Deployment",
        any_case=True,
    ),
    Field(
        "deployment.cluster_domain",
        "text",
        "Cluster domain",
        "The cluster's DNS domain, whose names never use the proxy.",
        "cluster.local",
        example="cluster.local",
        section="Deployment",
    ),
    Field(
        "deployment.service_ip",
        "text",
        "Kubernetes Service IP",
        "The ClusterIP of the kubernetes Service (what `egress cluster-ip` prints), or auto.",
        "auto",
        example="10.96.0.1",
        section="Deployment",
    ),
    Field(
        "deployment.gke_workload_identity",
        "bool",
        "GKE Workload Identity",
        "The platform runs on GKE with Workload Identity, so the metadata server goes direct.",
        False,
        section="Deployment",
    ),
    Field(
        "warehouses",
        "list",
        "Warehouses",
        "The data warehouses the platform connects to.",
        list(DEFAULT_WAREHOUSES),
        choices=tuple(WAREHOUSES),
        section="Warehouses",
        any_case=True,
    ),
    Field(
        "tunnel_tcp_warehouses",
        "bool",
        "Tunnel PostgreSQL and Redshift",
        "Carry PostgreSQL and Redshift connections through the proxy's CONNECT instead of direct.",
        False,
        section="Warehouses",
    ),
    Field(
        "features",
        "list",
        "Feature groups",
        "The optional destination groups of the catalog that are in use.",
        ["core"],
        choices=known_features(),
        section="Checks",
    ),
    Field(
        "resolve",
        "map",
        "Host overrides",
        "Host to IP for direct connections, like curl --resolve: one host=IP per line.",
        {},
        example="db.corp.example=10.0.0.5",
        section="Checks",
    ),
    Field(
        "endpoints",
        "list",
        "Own endpoints",
        "The platform's own warehouses and services that `egress check` also probes, as URLs.",
        [],
        example="postgresql://db.corp.example:5432",
        section="Checks",
    ),
)

_BY_PATH: Final = {f.path: f for f in FIELDS}


def field(path: str) -> Field:
    """The field at ``path``; KeyError for a path no field has."""
    return _BY_PATH[path]


def yaml_keys(section: str = "") -> tuple[str, ...]:
    """The keys ``egress.yaml`` accepts in ``section`` (``""``: the top level), in form order.

    >>> yaml_keys("deployment")
    ('kind', 'cluster_domain', 'service_ip', 'gke_workload_identity')
    """
    keys: list[str] = []
    for f in FIELDS:
        if not f.yaml:
            continue
        if f.parent == section:
            keys.append(f.key)
        elif not section:
            keys.append(f.parent.partition(".")[0])
        elif f.parent.startswith(section + "."):
            keys.append(f.parent[len(section) + 1 :].partition(".")[0])
    return tuple(dict.fromkeys(keys))


# -- the JSON Schema -----------------------------------------------------------------------------

_BOOL_WORDS: Final = ("true", "false", "yes", "no", "on", "off", "1", "0")
"""The words the loader reads as a boolean (it also ignores their case and spaces)."""


def _any_case(words: Iterable[str]) -> dict[str, Any]:
    """A string that is one of ``words`` in any case, spaces around allowed (as the loader reads).

    JSON Schema patterns are ECMA-262 without flags, so each letter is spelt ``[xX]``.
    """
    spelt = (
        "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else _literal(c) for c in w)
        for w in words
    )
    return {"type": "string", "pattern": rf"^\s*(?:{'|'.join(spelt)})\s*$"}


def _literal(c: str) -> str:
    """``c`` in a pattern; ``-`` stays bare (``\\-`` is an error in ECMA-262's unicode mode)."""
    return c if c.isalnum() or c in "-_" else re.escape(c)


def _choice(choices: tuple[str, ...], any_case: bool, *extra: object) -> dict[str, Any]:
    """One of ``choices`` (offered to editors as an enum), in any case when ``any_case``."""
    listed = {"enum": [*choices, *extra]}
    return {"anyOf": [listed, _any_case(choices)]} if any_case else listed


def _value_schema(f: Field) -> dict[str, Any]:
    """The schema of one field's value; null is accepted everywhere, as the loader does."""
    if f.kind == "bool":
        return {"anyOf": [{"enum": [True, False, None]}, _any_case(_BOOL_WORDS)]}
    if f.kind == "port":
        return {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": 65535},
                {"type": "string", "pattern": r"^\s*[0-9]{1,5}\s*$"},
                {"type": "null"},
            ]
        }
    if f.kind == "choice":
        return _choice(f.choices, f.any_case, None)
    if f.kind == "list":
        item = _choice(f.choices, f.any_case) if f.choices else {"type": "string"}
        one_string = (
            "one comma-separated string" if not f.choices else "one comma-separated string of them"
        )
        return {
            "anyOf": [
                {"type": "array", "items": item},
                {"type": "string", "description": one_string},
                {"type": "null"},
            ]
        }
    if f.kind == "map":
        return {"type": ["object", "null"], "additionalProperties": {"type": "string"}}
    if f.kind == "url":
        return {"type": ["string", "null"], "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://"}
    return {"type": ["string", "null"]}


def _described(f: Field) -> dict[str, Any]:
    schema = {"title": f.label, "description": f.help, **_value_schema(f)}
    if f.default is not None:
        schema["default"] = f.default
    example = _yaml_example(f)
    if example is not None:
        schema["examples"] = [example]
    return schema


def _yaml_example(f: Field) -> object:
    """The form's placeholder as a value of ``egress.yaml`` (None: no example to give)."""
    if not f.example or f.kind == "pem":
        return None
    if f.kind == "map":
        return dict(_map_lines(f.example))
    if f.kind == "list":
        return _list_items(f.example)
    if f.kind == "port":
        return int(f.example)
    return f.example


_SECTION_HELP: Final = {
    "proxy": "The customer's proxy: where it is, how to trust it and authenticate, and the switch.",
    "proxy.kerberos": "negotiate only: where egress's Kerberos identity comes from, and the "
    "proxy's service principal.",
    "deployment": "Where the platform runs; decides the automatic exclusions.",
}


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``egress.yaml``, made from :data:`FIELDS`.

    Unknown keys are refused, as the loader refuses them.

    >>> s = json_schema()
    >>> s["properties"]["deployment"]["properties"]["kind"]["anyOf"][0]["enum"]
    ['kubernetes', 'single-vm', None]
    >>> "password" in s["properties"]["proxy"]["properties"]
    False
    """
    sections: dict[str, dict[str, Any]] = {
        name: {
            "type": ["object", "null"],
            "description": _SECTION_HELP[name],
            "additionalProperties": False,
            "properties": {},
        }
        for name in SECTIONS
    }
    properties: dict[str, Any] = {}
    for f in FIELDS:
        if not f.yaml:
            continue
        if f.parent:
            sections[f.parent]["properties"][f.key] = _described(f)
        else:
            properties[f.key] = _described(f)
    for name in SECTIONS:  # a nested section sits in its parent's properties
        parent, _, key = name.rpartition(".")
        holder = sections[parent]["properties"] if parent else properties
        holder[key] = sections[name]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "egress.yaml",
        "description": "egress settings: the proxy, what bypasses it, and where the platform "
        "runs. Print this schema with `egress schema`.",
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
    }


# -- the console's form --------------------------------------------------------------------------

_ON: Final = frozenset({"true", "on", "yes", "1"})
_OFF: Final = frozenset({"false", "off", "no", "0", ""})
_LIST_SPLIT: Final = re.compile(r"[,\n\r]+")


def _lookup(document: Mapping[str, Any], path: str) -> object:
    """The value at a dotted path of a document, or None when any part is absent."""
    value: object = document
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _effective_bool(document: Mapping[str, Any], f: Field) -> bool:
    """A bool field's value in ``document`` as the loader reads it (its default when absent)."""
    value = _lookup(document, f.path)
    if isinstance(value, str) and value.strip().lower() in _ON | _OFF:
        value = value.strip().lower() in _ON
    if isinstance(value, bool):
        return value
    if f.default is None:  # proxy.enabled: on when the proxy has an address
        return any(_lookup(document, p) not in (None, "") for p in _ADDRESS)
    return bool(f.default)


_ADDRESS: Final = ("proxy.url", "proxy.https_url", "proxy.host")


def form_value(document: Mapping[str, Any], f: Field) -> str:
    """``document``'s value of ``f`` as the form's text; a secret is never shown.

    A bool is ``"true"`` or ``""`` (a checkbox), as the loader reads it with its default. A list
    is one entry per line. A list whose default is not empty (warehouses, features) shows its
    default when absent, so that its empty input can mean "none". Any other absent value is
    ``""`` (a choice's form offers "" for its default: ``proxy.type`` only counts with a host).

    >>> form_value({"proxy": {"url": "http://p:3128"}}, field("proxy.enabled"))
    'true'
    >>> form_value({"resolve": {"db.corp": "10.0.0.5"}}, field("resolve"))
    'db.corp=10.0.0.5'
    >>> form_value({}, field("features"))
    'core'
    """
    if f.kind == "secret":
        return ""
    if f.kind == "bool":
        return "true" if _effective_bool(document, f) else ""
    value = _lookup(document, f.path)
    if value is None and f.kind == "list" and f.default:
        value = f.default
    if f.kind == "map" and isinstance(value, Mapping):
        return "\n".join(f"{_text(k)}={_text(v)}" for k, v in value.items())
    if f.kind == "list" and isinstance(value, list | tuple):
        return "\n".join(_text(item) for item in value)
    return _text(value)


def _form_entry(f: Field, text: str | None) -> tuple[bool, object]:
    """(present, value) of one field from its form text."""
    if f.kind == "bool":
        word = (text or "").strip().lower()
        if word in _ON | _OFF:
            on = word in _ON
            return (f.default is None or on != f.default), on
        return True, text  # not a boolean: the loader says so
    if text is None:
        return False, None
    if f.kind == "list":
        items = _list_items(text)
        # an empty list is said only where absence means something else (every warehouse)
        return bool(items or f.default), items
    if f.kind == "map":
        entries = dict(_map_lines(text))
        return bool(entries), entries
    if f.kind == "pem":
        pem = text.strip().replace("\r\n", "\n")
        return bool(pem), pem + "\n"
    value = text.strip()
    if f.kind == "port" and value.isascii() and value.isdigit() and len(value) <= 5:
        return True, int(value)
    return bool(value), value


def _list_items(text: str) -> list[str]:
    """A list's entries from text: commas or newlines between them, blanks dropped."""
    return [item.strip() for item in _LIST_SPLIT.split(text) if item.strip()]


def _map_lines(text: str) -> list[tuple[str, str]]:
    """A map's entries from ``key=value`` lines (a line without ``=`` maps to ``""``)."""
    entries: list[tuple[str, str]] = []
    for line in text.splitlines():
        if line.strip():
            key, _, value = line.partition("=")
            entries.append((key.strip(), value.strip()))
    return entries


def document_from_form(form: Mapping[str, str]) -> dict[str, Any]:
    """An ``egress.yaml``-shaped document from the form's texts (keys: field paths).

    Only the console's fields are read (never a file path on the server, never the password).
    Lists take commas or newlines, the map ``host=IP`` lines, a bool ``"true"``/``"on"`` or
    nothing (an unticked checkbox sends nothing); an empty text leaves the key out. Never raises:
    a value the form cannot read is kept as text for the loader to refuse by name.
    """
    document: dict[str, Any] = {}
    for f in console_fields():
        raw = form.get(f.path)
        present, value = _form_entry(f, raw if isinstance(raw, str) else None)
        if not present:
            continue
        target = document
        for part in f.parent.split(".") if f.parent else ():
            target = target.setdefault(part, {})
        target[f.key] = value
    return document


def console_fields() -> Iterable[Field]:
    """The fields of ``egress.yaml`` on the console's settings form, in form order."""
    return (f for f in FIELDS if f.yaml and f.console)


_INDEX: Final = re.compile(r"(\[[0-9]+\])+$")


def field_of_problem(problem_field: str) -> str | None:
    """The path of the field a Problem's field name belongs to, or None when no field owns it.

    >>> field_of_problem("excluded_domains[3]"), field_of_problem("proxy.url")
    ('excluded_domains', 'proxy.url')
    """
    name = _INDEX.sub("", problem_field)
    if name in _BY_PATH:
        return name
    for f in FIELDS:
        if f.kind == "map" and name.startswith(f.path + "."):
            return f.path
    return None
