"""The router: for any destination, proxy or direct (or tunnel), and why. Pure: no I/O, no clock.

First match wins:

1. the proxy is switched off or none is configured  -> direct   ``proxy-disabled``
2. automatic exclusions, each a named rule           -> direct   ``auto:loopback``, ``auto:svc``,
   ``auto:svc-cluster-domain``, ``auto:kubernetes-api``, ``auto:gke-metadata``
3. the operator's ``excluded_domains``               -> direct   ``excluded:<entry>``
4. warehouse rules (``warehouses.yaml``)             -> per row  ``warehouse:<name>``
5. everything else                                   -> proxy    ``default``

>>> from egress.settings import Settings
>>> router = Settings.from_proxy("http://proxy:3128", no_proxy=".corp.example").router()
>>> router.decide("https://api.example.com/").route
'proxy'
>>> d = router.decide("https://git.corp.example/")
>>> d.route, d.rule
('direct', 'excluded:.corp.example')
>>> router.decide("postgresql://db.example.com/app").rule
'warehouse:postgres'
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple
from urllib.parse import urlsplit

from egress.errors import URLError
from egress.noproxy import Entry, Host, NoProxyMatcher, canonical_host
from egress.settings import ProxyURL, Settings
from egress.warehouses import WAREHOUSE_BY_SCHEME, WAREHOUSES, Warehouse

RouteKind = Literal["proxy", "direct", "tunnel"]

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
for _w in WAREHOUSES.values():
    for _s in _w.schemes:
        DEFAULT_PORTS.setdefault(_s, _w.default_port)

MEMO_SIZE = 4096
"""How many recent decisions a router remembers."""
_UNSAFE = re.compile(r"[\x00-\x20\x7f]")
GKE_METADATA = ("169.254.169.254", "metadata", "metadata.google.internal")


class Target(NamedTuple):
    """A destination as the router sees it: scheme, canonical host, effective port.

    A named tuple, not a dataclass: one is built per decision, and a frozen dataclass costs
    several times more to build (the decision is the hot path of every request).
    """

    scheme: str
    host: Host
    port: int | None
    url: str

    @property
    def host_text(self) -> str:
        """The host as it goes on the wire (IPv6 without brackets)."""
        return str(self.host)

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if isinstance(self.host, ipaddress.IPv6Address) else str(self.host)
        return f"{host}:{self.port}" if self.port is not None else host


def parse_target(url: str) -> Target:
    """Parse a destination URL. A bare ``host`` or ``host:port`` is taken as ``https://``.

    >>> parse_target("HTTPS://Bücher.Example./x").authority
    'xn--bcher-kva.example:443'
    >>> parse_target("postgresql://u:pw@[::ffff:10.0.0.1]/db").authority
    '10.0.0.1:5432'
    """
    if not isinstance(url, str) or not url:
        raise URLError("the destination URL is empty; give a URL such as https://host/")
    if _UNSAFE.search(url):
        raise URLError(
            f"the destination URL {url.strip()[:80]!r} contains spaces or control characters; "
            "remove them"
        )
    text = url if "://" in url else f"https://{url}"
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise URLError(f"the destination URL {url!r} is not valid ({exc}); fix it") from exc
    scheme = parts.scheme.lower()
    hostport = parts.netloc.rpartition("@")[2]
    if hostport.startswith("["):
        raw_host, _, rest = hostport[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else rest
    else:
        raw_host, _, port_text = hostport.partition(":")
    if not raw_host:
        raise URLError(f"the destination URL {url!r} has no host; give a URL such as https://host/")
    port: int | None = None
    if port_text:
        if not (port_text.isdigit() and port_text.isascii() and int(port_text) <= 65535):
            raise URLError(f"the destination URL {url!r} has an invalid port; use 1-65535")
        port = int(port_text)
    try:
        host = canonical_host(raw_host)
    except ValueError as exc:
        raise URLError(f"the destination URL {url!r} has an invalid host: {exc}") from exc
    return Target(scheme, host, port if port is not None else DEFAULT_PORTS.get(scheme), url)


class Decision(NamedTuple):
    """Where one connection goes, through which proxy, by which rule, and why (one sentence).

    Immutable; a named tuple for the same reason as :class:`Target`.
    """

    url: str
    route: RouteKind
    proxy: str | None
    """The proxy URL with any password masked, or None when the route is direct."""
    rule: str
    reason: str
    target: Target
    proxy_url: ProxyURL | None = None
    warehouse: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        """The stable JSON form: url, route, proxy, rule, reason."""
        return {
            "url": self.url,
            "route": self.route,
            "proxy": self.proxy,
            "rule": self.rule,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Rule:
    """One compiled rule, as ``egress explain --all-rules`` lists it."""

    rule: str
    entries: tuple[str, ...]
    route: str
    source: str
    sentence: str


@dataclass(frozen=True)
class _AutoRule:
    rule: str
    matcher: NoProxyMatcher
    source: str
    sentence: str

    @property
    def origin(self) -> str:
        return "built in" if self.source.startswith("built in") else f"from {self.source}"


class Router:
    """Compiled from :class:`~egress.settings.Settings` once; immutable; ``decide`` is pure."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        proxy = settings.proxy
        self._active = proxy.enabled and proxy.configured
        self._auto = tuple(self._auto_rules(settings))
        self._shown = {
            p: proxy.display(p) for p in (proxy.http_proxy, proxy.https_proxy) if p is not None
        }
        self._excluded = NoProxyMatcher.parse(settings.excluded_domains)
        # One matcher holds every host rule in priority order (automatic, excluded, warehouse
        # domains); it returns the earliest entry that matches, which is first-match-wins, so a
        # decision costs one lookup whatever the number of rules.
        # The matcher drops later duplicates, so the first (highest-priority) owner stays.
        owners: dict[int, _AutoRule | Warehouse | None] = {}
        ordered: list[Entry] = []
        groups: list[tuple[_AutoRule | Warehouse | None, tuple[Entry, ...]]] = [
            (auto, auto.matcher.entries) for auto in self._auto
        ]
        groups.append((None, self._excluded.entries))
        groups += [(wh, NoProxyMatcher.parse(wh.domains).entries) for wh in WAREHOUSES.values()]
        for owner, entries in groups:
            for entry in entries:
                owners.setdefault(id(entry), owner)
                ordered.append(entry)
        self._matcher = NoProxyMatcher.from_entries(ordered)
        # keyed by identity: the matcher hands back these very Entry objects
        self._owner_by_id = {id(entry): owners[id(entry)] for entry in self._matcher.entries}
        self._http_proxy = proxy.http_proxy
        self._https_proxy = proxy.https_proxy
        # Decisions are a pure function of (url, warehouse) for this immutable router, so a
        # bounded memo makes the repeated ones (every request of a component to the same
        # endpoint) cost one lookup. It changes no answer: ``decide_uncached`` gives the same.
        self._memo = functools.lru_cache(maxsize=MEMO_SIZE)(self.decide_uncached)

    @property
    def settings(self) -> Settings:
        return self._settings

    @staticmethod
    def _auto_rules(settings: Settings) -> list[_AutoRule]:
        dep = settings.deployment
        rules = [
            _AutoRule(
                "auto:loopback",
                NoProxyMatcher.parse("localhost 127.0.0.0/8 ::1"),
                "built in",
                "loopback addresses never leave this machine",
            )
        ]
        if dep.kind == "kubernetes":
            rules.append(
                _AutoRule(
                    "auto:svc",
                    NoProxyMatcher.parse(".svc"),
                    "built in (kubernetes)",
                    "Kubernetes Service names (name.namespace.svc) stay inside the cluster",
                )
            )
            rules.append(
                _AutoRule(
                    "auto:svc-cluster-domain",
                    NoProxyMatcher.parse(f".svc.{dep.cluster_domain}"),
                    "deployment.cluster_domain",
                    f"Service names under .svc.{dep.cluster_domain} stay inside the cluster",
                )
            )
            if dep.service_ip:
                rules.append(
                    _AutoRule(
                        "auto:kubernetes-api",
                        NoProxyMatcher.parse(dep.service_ip),
                        dep.service_ip_source,
                        f"{dep.service_ip} is the ClusterIP of the kubernetes API Service "
                        f"(from {dep.service_ip_source}), reached inside the cluster",
                    )
                )
        if dep.gke_workload_identity:
            rules.append(
                _AutoRule(
                    "auto:gke-metadata",
                    NoProxyMatcher.parse(GKE_METADATA),
                    "deployment.gke_workload_identity",
                    "GKE Workload Identity needs the metadata server reached directly",
                )
            )
        return rules

    # -- the decision -------------------------------------------------------------------------

    def decide(self, url: str, *, warehouse: str | None = None) -> Decision:
        """The route for ``url``. ``warehouse`` names the kind when the caller knows it."""
        return self._memo(url, warehouse)

    def decide_uncached(self, url: str, warehouse: str | None = None) -> Decision:
        """``decide`` without the memo (benchmarks use it to measure the rule lookup itself)."""
        return self.decide_target(parse_target(url), warehouse=warehouse)

    def decide_target(self, target: Target, *, warehouse: str | None = None) -> Decision:
        """The route for an already parsed destination (what ``decide`` does after parsing)."""
        settings = self._settings
        hit = self._matcher.match(target.host, target.port)
        owner = self._owner_by_id[id(hit)] if hit is not None else None
        if warehouse is None:
            wh = WAREHOUSE_BY_SCHEME.get(target.scheme) or (
                owner if type(owner) is Warehouse else None
            )
        else:
            wh = self._named_warehouse(warehouse)
        scheme = "https" if wh is not None and wh.protocol == "tcp" else target.scheme
        proxy = self._http_proxy if scheme in ("http", "ws") else self._https_proxy
        shown = self._shown
        wh_name = wh.name if wh is not None else None

        def make(route: RouteKind, rule: str, reason: str, via: ProxyURL | None = None) -> Decision:
            return Decision(
                target.url,
                route,
                shown[via] if via is not None else None,
                rule,
                reason,
                target,
                via,
                wh_name,
            )

        host = target.host if type(target.host) is str else str(target.host)
        if not self._active:
            if settings.proxy.configured:
                why = "the proxy is switched off in the admin console (proxy.enabled: false)"
            else:
                why = "no proxy is configured"
            return make("direct", "proxy-disabled", f"{host} goes direct because {why}.")

        if type(owner) is _AutoRule:
            auto = owner
            return make(
                "direct",
                auto.rule,
                f"{host} goes direct because {auto.sentence} "
                f"(automatic rule {auto.rule}, {auto.origin}).",
            )

        if hit is not None and owner is None:
            return make(
                "direct",
                f"excluded:{hit.raw}",
                f"{host} goes direct because it matches {hit.raw!r} in the excluded domains.",
            )

        if wh is not None:
            rule = f"warehouse:{wh.name}"
            if wh.protocol == "tcp":
                if settings.tunnel_tcp_warehouses and proxy is not None:
                    return make(
                        "tunnel",
                        rule,
                        f"{wh.title} speaks TCP, not HTTP; egress carries it through the proxy's "
                        "CONNECT because tunnel_tcp_warehouses is on.",
                        proxy,
                    )
                return make(
                    "direct",
                    rule,
                    f"{wh.why_direct}, so {host} goes direct without being listed (allow it in the "
                    "network policy, or set tunnel_tcp_warehouses: true to carry it through "
                    "CONNECT).",
                )
            if proxy is None:
                return self._no_proxy_for_scheme(make, target)
            if wh.route_via(proxy.scheme) == "direct":
                return make(
                    "direct", rule, f"{wh.why_direct}, so {host} goes direct without being listed."
                )
            return make(
                "proxy",
                rule,
                f"{wh.why_proxy}, so {host} goes through the proxy {shown.get(proxy)}.",
                proxy,
            )

        if proxy is None:
            return self._no_proxy_for_scheme(make, target)
        return make(
            "proxy",
            "default",
            f"{host} matches no exclusion, so it goes through the proxy {shown.get(proxy)}.",
            proxy,
        )

    @staticmethod
    def _no_proxy_for_scheme(
        make: Callable[[RouteKind, str, str], Decision], target: Target
    ) -> Decision:
        return make(
            "direct",
            "no-proxy-for-scheme",
            f"{target.host_text} goes direct because no proxy is configured for "
            f"{target.scheme}:// destinations.",
        )

    @staticmethod
    def _named_warehouse(named: str) -> Warehouse:
        wh = WAREHOUSES.get(named.lower())
        if wh is None:
            raise URLError(f"warehouse {named!r} is not known; use one of: {', '.join(WAREHOUSES)}")
        return wh

    # -- introspection ---------------------------------------------------------------------------

    def rules(self) -> list[Rule]:
        """Every compiled rule in the order they are tried: automatic first, with their source."""
        out: list[Rule] = []
        if not self._active:
            out.append(
                Rule("proxy-disabled", (), "direct", "proxy.enabled", "the proxy is switched off")
            )
        for auto in self._auto:
            entries = tuple(e.raw for e in auto.matcher.entries)
            out.append(Rule(auto.rule, entries, "direct", auto.source, auto.sentence))
        for entry in self._excluded.entries:
            out.append(
                Rule(
                    f"excluded:{entry.raw}",
                    (entry.raw,),
                    "direct",
                    "excluded_domains",
                    "listed by the operator",
                )
            )
        https_proxy = self._settings.proxy.https_proxy
        for wh in WAREHOUSES.values():
            if wh.protocol == "tcp":
                route = "tunnel" if self._settings.tunnel_tcp_warehouses else "direct"
            else:
                route = wh.route_via(https_proxy.scheme if https_proxy else "http")
            out.append(
                Rule(
                    f"warehouse:{wh.name}",
                    wh.domains or tuple(f"{s}://" for s in wh.schemes),
                    route,
                    "warehouses.yaml",
                    wh.why(route),
                )
            )
        out.append(Rule("default", ("*",), "proxy", "built in", "everything else"))
        return out
