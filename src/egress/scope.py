"""What of the catalog is in scope for given settings, and the route each destination takes.

The catalog (:mod:`egress.catalog`) is data only. Here it meets the settings and the router:
``core`` is always in scope, a warehouse group when its warehouse is in ``settings.warehouses``,
a feature group when its name is in ``settings.features`` (or the ``--features`` override).
:func:`in_scope` lists the destinations in scope, each with the router's decision for a
representative URL: the host itself, or for a wildcard (and for ``*``) the ``sample`` host of the
catalog, which :attr:`Row.sample` flags.

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

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from egress.catalog import Destination, Group, check_features, load_catalog
from egress.errors import ConfigError

if TYPE_CHECKING:
    from egress.router import Decision
    from egress.settings import Settings


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
