"""The destination catalog: what the platform reaches outside the network (``catalog.yaml``).

Each destination belongs to one group. ``core`` is always in scope, a warehouse group when its
warehouse is in ``settings.warehouses``, a feature group when its name is in ``settings.features``
(or the ``--features`` override). :func:`in_scope` lists the destinations in scope, each with the
router's decision for a representative URL: the host itself, or for a wildcard (and for ``*``)
the ``sample`` host of the catalog, which :attr:`Row.sample` flags.

>>> from egress.settings import Settings
>>> rows = in_scope(Settings.from_proxy("https://proxy:3129"), ("core", "geocoding-tomtom"))
>>> [(r.destination, r.route, r.rule) for r in rows if r.feature != "core"][:3]
[('bigquerystorage.googleapis.com:443', 'proxy', 'warehouse:bigquery'), \
('bigquerydatatransfer.googleapis.com:443', 'proxy', 'warehouse:bigquery'), \
('oauth2.googleapis.com:443', 'proxy', 'default')]
>>> row = next(r for r in rows if r.feature == "snowflake")
>>> row.host, row.url, row.sample, row.route
('*.snowflakecomputing.com', 'https://acme.snowflakecomputing.com/', True, 'direct')
>>> in_scope(Settings(), ("core", "geocodeing"))  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
egress.errors.ConfigError: --features: "geocodeing" is not a known feature group; known: core, ...
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Literal

import yaml

from egress.errors import ConfigError, Problem
from egress.noproxy import NoProxyMatcher, canonical_host
from egress.warehouses import WAREHOUSE_BY_SCHEME, WAREHOUSES

if TYPE_CHECKING:
    from egress.router import Decision
    from egress.settings import Settings

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
class Row:
    """A destination in scope, with the route the router gives its representative URL."""

    destination: str
    """``host:port`` as the catalog writes it (``*.snowflakecomputing.com:443``)."""
    host: str
    port: int
    url: str
    sample: bool
    """True when ``url`` uses the catalog's sample host in place of a wildcard."""
    feature: str
    required: bool
    purpose: str
    warehouse: str | None
    decision: Decision
    also_in: tuple[str, ...] = ()
    """Other groups in scope that list the same host and port."""

    @property
    def route(self) -> str:
        return self.decision.route

    @property
    def proxy(self) -> str | None:
        return self.decision.proxy

    @property
    def rule(self) -> str:
        return self.decision.rule

    @property
    def reason(self) -> str:
        return self.decision.reason

    def as_dict(self) -> dict[str, object]:
        """The JSON form of ``egress catalog --json``."""
        return {
            "destination": self.destination,
            "host": self.host,
            "port": self.port,
            "url": self.url,
            "sample": self.sample,
            "feature": self.feature,
            "also_in": list(self.also_in),
            "required": self.required,
            "purpose": self.purpose,
            "warehouse": self.warehouse,
            "route": self.route,
            "proxy": self.proxy,
            "rule": self.rule,
            "reason": self.reason,
        }


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


def groups_in_scope(settings: Settings, features: Iterable[str] | None = None) -> list[Group]:
    """The groups in scope, in catalog order; ConfigError for an unknown feature name."""
    names = tuple(settings.features if features is None else features)
    problems = check_features(names, "features" if features is None else "--features")
    if problems:
        raise ConfigError(problems)
    wanted = set(names)
    out: list[Group] = []
    for group in load_catalog().groups.values():
        if (
            group.scope == "always"
            or (group.scope == "warehouse" and group.warehouse in settings.warehouses)
            or (group.scope == "feature" and group.name in wanted)
        ):
            out.append(group)
    return out


def in_scope(settings: Settings, features: tuple[str, ...] | None = None) -> list[Row]:
    """Every destination in scope, once per host and port (the first group listing it wins,
    ``required`` if any group requires it), each with the router's decision for its URL.

    ``features`` replaces ``settings.features`` (``core`` is in scope either way).
    """
    scope = {g.name for g in groups_in_scope(settings, features)}
    router = settings.router()
    merged: dict[tuple[str, int], list[Destination]] = {}
    for dest in load_catalog().destinations:
        if dest.feature in scope:
            merged.setdefault((dest.host, dest.port), []).append(dest)
    rows: list[Row] = []
    for same in merged.values():
        first = same[0]
        warehouse = next((d.warehouse for d in same if d.warehouse), None)
        rows.append(
            Row(
                destination=first.destination,
                host=first.host,
                port=first.port,
                url=first.url,
                sample=first.wildcard,
                feature=first.feature,
                required=any(d.required for d in same),
                purpose=first.purpose,
                warehouse=warehouse,
                decision=router.decide(first.url, warehouse=warehouse),
                also_in=tuple(dict.fromkeys(d.feature for d in same[1:])),
            )
        )
    return rows
