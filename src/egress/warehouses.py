"""What each data warehouse can do through a proxy: the seed's table, read from ``warehouses.yaml``.

>>> WAREHOUSES["snowflake"].route_via("https")
'direct'
>>> WAREHOUSES["postgres"].protocol, WAREHOUSES["postgres"].default_port
('tcp', 5432)
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Literal

import yaml

if TYPE_CHECKING:
    from egress.settings import Settings
    from egress.tunnel import Tunnel

Route = Literal["proxy", "direct"]


@dataclass(frozen=True)
class Warehouse:
    """One row of the warehouse table."""

    name: str
    title: str
    protocol: Literal["https", "tcp"]
    default_port: int
    schemes: tuple[str, ...]
    domains: tuple[str, ...]
    via_http_proxy: Route
    via_https_proxy: Route
    why_proxy: str
    why_direct: str

    def route_via(self, proxy_scheme: str) -> Route:
        """The route this warehouse takes when the proxy it would use has ``proxy_scheme``."""
        return self.via_https_proxy if proxy_scheme == "https" else self.via_http_proxy

    def why(self, route: str) -> str:
        """The clause that says why this warehouse takes ``route``."""
        return self.why_proxy if route == "proxy" else self.why_direct


def _load() -> dict[str, Warehouse]:
    text = resources.files("egress").joinpath("warehouses.yaml").read_text(encoding="utf-8")
    table: dict[str, Warehouse] = {}
    for name, row in yaml.safe_load(text).items():
        table[name] = Warehouse(
            name=name,
            title=row["title"],
            protocol=row["protocol"],
            default_port=int(row["default_port"]),
            schemes=tuple(row["schemes"]),
            domains=tuple(row["domains"]),
            via_http_proxy=row["via_http_proxy"],
            via_https_proxy=row["via_https_proxy"],
            why_proxy=" ".join(row["why_proxy"].split()),
            why_direct=" ".join(row["why_direct"].split()),
        )
    return table


WAREHOUSES: dict[str, Warehouse] = _load()
"""Every known warehouse by name, in the order of ``warehouses.yaml``."""

WAREHOUSE_BY_SCHEME: dict[str, Warehouse] = {s: w for w in WAREHOUSES.values() for s in w.schemes}


# ---------------------------------------------------------------------------------------------
# What a component hands its driver.

_TUNNELS: dict[tuple[Settings, str, str, int], Tunnel] = {}
"""The tunnels :func:`connect_params` started, by settings and target: one each per process."""
_TUNNELS_LOCK = threading.Lock()


def connect_params(settings: Settings, kind: str, host: str, port: int) -> dict[str, str | int]:
    """The libpq parameters for ``kind`` (``"postgres"`` or ``"redshift"``) at ``host:port``, for
    the route the router decides.

    Direct: ``{"host": host, "port": port}``. Tunnel: ``{"host": host, "hostaddr": "127.0.0.1",
    "port": <tunnel port>}``, the name kept for ``sslmode=verify-full``; one tunnel per target and
    settings per process, started on first use and shared by every thread.

    >>> from egress.settings import Settings
    >>> connect_params(Settings(), "postgres", "db.example.com", 5432)
    {'host': 'db.example.com', 'port': 5432}
    """
    warehouse = WAREHOUSES.get(kind)
    if warehouse is None or warehouse.protocol != "tcp":
        tcp = ", ".join(n for n, w in WAREHOUSES.items() if w.protocol == "tcp")
        raise ValueError(f"connect_params: kind must be one of {tcp}, not {kind!r}")
    # imported here: the tunnel needs the router, which imports this module
    from egress.tunnel import Tunnel, decide_target

    decision = decide_target(settings, f"{host}:{port}", kind)
    if decision.route == "direct":
        return {"host": host, "port": port}
    key = (settings, kind, host, port)
    with _TUNNELS_LOCK:
        tunnel = _TUNNELS.get(key)
        if tunnel is None:
            tunnel = Tunnel(settings, f"{host}:{port}", kind=kind).start()
            _TUNNELS[key] = tunnel
    return {"host": host, "hostaddr": tunnel.host, "port": tunnel.port}
