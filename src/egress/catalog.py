"""The destination catalog as data: what the platform reaches outside the network.

The destinations and their groups live in ``catalog.yaml``, next to this module. Each
destination belongs to one group: ``core`` (always in scope), a warehouse group (in scope when
its warehouse is in ``settings.warehouses``) or a feature group (when named in
``settings.features``). This module only reads and checks the data; which groups and
destinations are in scope for given settings, and how each is routed, is :mod:`egress.scope`.

>>> catalog = load_catalog()
>>> catalog.groups["core"].scope, known_features()[0]
('always', 'core')
>>> check_features(["core", "geocodeing"])[0].message  # doctest: +ELLIPSIS
'"geocodeing" is not a known feature group; known: core, ...'
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Literal

import yaml

from egress.errors import Problem
from egress.noproxy import NoProxyMatcher, canonical_host
from egress.warehouses import WAREHOUSE_BY_SCHEME, WAREHOUSES

Scope = Literal["always", "warehouse", "feature"]

DEFAULT_SCHEMES = {443: "https", 80: "http"}
SCHEME_PORTS = {"https": 443, "http": 80}


@dataclass(frozen=True)
class Group:
    """One feature group: when it is in scope, and what it is for."""

    name: str
    scope: Scope
    title: str
    warehouse: str | None = None


@dataclass(frozen=True)
class Destination:
    """One row of ``catalog.yaml``."""

    host: str
    """A name, a wildcard ``*.example.com``, or ``*`` (any host)."""
    port: int
    scheme: str
    feature: str
    required: bool
    purpose: str
    source: str
    warehouse: str | None = None
    sample: str | None = None

    @property
    def wildcard(self) -> bool:
        return self.host == "*" or self.host.startswith("*.")

    @property
    def domain(self) -> str | None:
        """The domain a wildcard covers (``example.com`` for ``*.example.com``), else None."""
        return self.host[2:] if self.host.startswith("*.") else None

    @property
    def probe_host(self) -> str:
        """The host egress decides and probes for: the host, or the sample of a wildcard."""
        return self.sample if self.wildcard and self.sample else self.host

    @property
    def url(self) -> str:
        """The representative URL: scheme, probe host, and the port unless it is the default."""
        default = SCHEME_PORTS.get(self.scheme)
        if default is None and self.scheme in WAREHOUSE_BY_SCHEME:
            default = WAREHOUSE_BY_SCHEME[self.scheme].default_port
        port = "" if self.port == default else f":{self.port}"
        return f"{self.scheme}://{self.probe_host}{port}/"

    @property
    def destination(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Catalog:
    """The whole catalog: groups in file order, destinations in file order."""

    groups: dict[str, Group]
    destinations: tuple[Destination, ...]

    def features(self) -> tuple[str, ...]:
        """The names ``features:`` may hold: every group that is not a warehouse group."""
        return tuple(g.name for g in self.groups.values() if g.scope != "warehouse")


class CatalogError(ValueError):
    """``catalog.yaml`` itself is wrong (a packaging bug, never the operator's input)."""


def _parse(raw: object) -> Catalog:
    if not isinstance(raw, dict):
        raise CatalogError("catalog.yaml must be a mapping with groups and destinations")
    groups: dict[str, Group] = {}
    for name, row in raw["groups"].items():
        scope = row["scope"]
        if scope not in ("always", "warehouse", "feature"):
            raise CatalogError(f"group {name}: scope {scope!r} is not always|warehouse|feature")
        warehouse = row.get("warehouse")
        if (scope == "warehouse") != (warehouse is not None) or (
            warehouse is not None and warehouse not in WAREHOUSES
        ):
            raise CatalogError(f"group {name}: a warehouse group names a known warehouse")
        groups[name] = Group(name, scope, row["title"], warehouse)
    destinations: list[Destination] = []
    for row in raw["destinations"]:
        host = str(row["host"]).lower()
        port = int(row["port"])
        scheme = row.get("scheme") or DEFAULT_SCHEMES.get(port, "https")
        feature = row["feature"]
        where = f"destination {host}:{port} ({feature})"
        if feature not in groups:
            raise CatalogError(f"{where}: unknown group")
        warehouse = row.get("warehouse")
        if warehouse is not None and warehouse not in WAREHOUSES:
            raise CatalogError(f"{where}: unknown warehouse {warehouse!r}")
        sample = row.get("sample")
        dest = Destination(
            host=host,
            port=port,
            scheme=scheme,
            feature=feature,
            required=bool(row["required"]),
            purpose=" ".join(str(row["purpose"]).split()),
            source=str(row.get("source", "")),
            warehouse=warehouse,
            sample=sample.lower() if isinstance(sample, str) else None,
        )
        _check_host(dest, where)
        destinations.append(dest)
    return Catalog(groups, tuple(destinations))


def _check_host(dest: Destination, where: str) -> None:
    if dest.wildcard and not dest.sample:
        raise CatalogError(f"{where}: a wildcard needs a sample host")
    names = [dest.probe_host] + ([dest.domain] if dest.domain else [])
    if dest.host != "*" and not dest.wildcard:
        names.append(dest.host)
    for name in names:
        if name is None or canonical_host(name) != name:
            raise CatalogError(f"{where}: {name!r} is not a canonical host name")
    if dest.domain is not None:
        matcher = NoProxyMatcher.parse(dest.domain)
        if matcher.match(canonical_host(dest.probe_host), dest.port) is None:
            raise CatalogError(f"{where}: sample {dest.sample!r} is not under {dest.domain}")


@functools.lru_cache(maxsize=1)
def load_catalog() -> Catalog:
    """The packaged ``catalog.yaml``, parsed once."""
    text = resources.files("egress").joinpath("catalog.yaml").read_text(encoding="utf-8")
    return _parse(yaml.safe_load(text))


def known_features() -> tuple[str, ...]:
    """Every name ``features:`` and ``--features`` accept, in catalog order (``core`` first)."""
    return load_catalog().features()


def check_features(features: Iterable[str], field: str = "features") -> list[Problem]:
    """At most one Problem naming every unknown feature group and listing the known ones.

    >>> check_features(["core", "geocoding-tomtom"])
    []
    >>> print(check_features(["snowflake"])[0].hint)  # doctest: +ELLIPSIS
    warehouses (snowflake) are chosen with the warehouses setting, not features; use names ...
    """
    known = known_features()
    unknown = [name for name in dict.fromkeys(features) if name not in known]
    if not unknown:
        return []
    quoted = ", ".join(f'"{name}"' for name in unknown)
    verb = "is not a known feature group" if len(unknown) == 1 else "are not known feature groups"
    hint = "use names from that list (egress catalog --features NAME shows what each adds)"
    warehouses = [name for name in unknown if name in WAREHOUSES]
    if warehouses:
        hint = (
            f"warehouses ({', '.join(warehouses)}) are chosen with the warehouses setting, "
            "not features; " + hint
        )
    return [Problem(field, f"{quoted} {verb}; known: {', '.join(known)}", hint)]


def lookup(host: str, port: int) -> Destination | None:
    """The catalog's destination covering ``host:port`` (its own row, a ``*.domain`` wildcard
    over it, or ``*`` on that port), or None: a proxied destination the catalog does not list
    is a candidate for the proxy team's allowlist (the console's Traffic page).

    >>> lookup("api.tomtom.com", 443).feature, lookup("acme.snowflakecomputing.com", 443).host
    ('geocoding-tomtom', '*.snowflakecomputing.com')
    >>> lookup("intranet.example", 443) is None
    True
    """
    host = host.lower().rstrip(".")
    for dest in load_catalog().destinations:
        if dest.port != port:
            continue
        if dest.host == host or dest.host == "*":
            return dest
        if dest.domain is not None and host.endswith("." + dest.domain):
            return dest
    return None
