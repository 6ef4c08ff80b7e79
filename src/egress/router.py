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

from egress.errors import Problem, URLError
from egress.noproxy import Entry, Host, Ignored, NoProxyMatcher, canonical_host
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


RuleKind = Literal["disabled", "auto", "excluded", "warehouse", "default"]
PLAIN_SCHEMES = frozenset({"http", "ws"})
"""URL schemes that use the http:// destinations' proxy (``proxy.url``); every other scheme, and
every TCP warehouse, uses the https one."""


@dataclass(frozen=True)
class Rule:
    """One compiled rule as data: what it covers, where it sends it under these settings, and why.

    Every consumer (renderers, ``validate``'s notes, ``explain --all-rules``) is built from these
    and from decisions; none keeps its own copy of a rule (DESIGN.md §3). The route can depend on
    the destination's scheme (the http:// and https:// proxies may differ, or one may be
    missing), so it is given for both families: ``route`` for ``https://``, ``wss://`` and every
    other scheme, ``plain_route`` for ``http://`` and ``ws://``. The routes are those ``decide``
    gives a host this rule covers when no earlier rule covers it; an earlier ``proxy-disabled``
    rule covers everything.
    """

    rule: str
    """The id, as ``Decision.rule`` names it: ``auto:loopback``, ``excluded:.corp``, ..."""
    kind: RuleKind
    entries: tuple[str, ...]
    """What it covers, as written: the entries' raw text, then ``scheme://`` per URL scheme."""
    parsed: tuple[Entry, ...]
    """The host entries it covers, parsed (empty for ``default`` and ``proxy-disabled``)."""
    schemes: tuple[str, ...]
    """URL schemes that name it whatever the host (``postgresql``, ``redshift``, ...)."""
    route: RouteKind
    plain_route: RouteKind
    via: ProxyURL | None
    """The proxy ``route`` uses (proxy or tunnel), else None."""
    plain_via: ProxyURL | None
    source: str
    """Where it comes from: ``built in``, ``excluded_domains``, ``warehouses.yaml``, ..."""
    sentence: str
    """Why it routes as it does, in a clause."""
    note: str = ""
    """What an operator should be told about it under these settings (``routing_notes``)."""
    hint: str = ""
    title: str = ""
    """What it is about, for people: ``Snowflake``; the id when nothing better says it."""
    port: int | None = None
    """The port its destinations use when the URL names none (warehouses), else None."""

    @property
    def id(self) -> str:
        return self.rule

    @property
    def reason(self) -> str:
        return self.sentence

    def route_for(self, scheme: str) -> RouteKind:
        """The route of a destination with this URL scheme that this rule decides."""
        return self.plain_route if scheme in PLAIN_SCHEMES else self.route

    def via_for(self, scheme: str) -> ProxyURL | None:
        """The proxy that destination goes through (proxy or tunnel), else None."""
        return self.plain_via if scheme in PLAIN_SCHEMES else self.via

    @property
    def covers_everything(self) -> bool:
        """True for the switch, ``default`` and a rule holding ``*``: it covers every host."""
        return self.kind in ("disabled", "default") or any(e.kind == "all" for e in self.parsed)


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

    @property
    def ignored(self) -> tuple[Ignored, ...]:
        """The ``excluded_domains`` tokens that can never match, and why."""
        return self._excluded.ignored

    def rules(self) -> tuple[Rule, ...]:
        """Every compiled rule in the order they are tried (first match wins), as data.

        ``proxy-disabled`` comes first when the switch is off or no proxy is configured; the
        routes of the rules after it are those the switch turned on would give.
        """
        cached: tuple[Rule, ...] | None = getattr(self, "_rules_cache", None)
        if cached is None:
            cached = tuple(self._compile_rules())
            self._rules_cache = cached  # the router is immutable: compiled once, on first use
        return cached

    def _compile_rules(self) -> list[Rule]:
        settings = self._settings
        proxy = settings.proxy
        http_proxy, https_proxy = proxy.http_proxy, proxy.https_proxy
        out: list[Rule] = []

        def direct(
            rule: str, kind: RuleKind, entries: tuple[Entry, ...], source: str, sentence: str
        ) -> Rule:
            raws = tuple(e.raw for e in entries)
            return Rule(
                rule, kind, raws, entries, (), "direct", "direct", None, None, source, sentence
            )

        if not self._active:
            out.append(
                Rule(
                    "proxy-disabled",
                    "disabled",
                    (),
                    (),
                    (),
                    "direct",
                    "direct",
                    None,
                    None,
                    "proxy.enabled" if proxy.configured else "proxy.url",
                    "the proxy is switched off in the admin console (proxy.enabled: false)"
                    if proxy.configured
                    else "no proxy is configured",
                )
            )
        for auto in self._auto:
            out.append(
                direct(
                    auto.rule,
                    "auto",
                    auto.matcher.entries,
                    source=auto.source,
                    sentence=auto.sentence,
                )
            )
        for entry in self._excluded.entries:
            out.append(
                direct(
                    f"excluded:{entry.raw}",
                    "excluded",
                    (entry,),
                    source="excluded_domains",
                    sentence="listed by the operator",
                )
            )
        for wh in WAREHOUSES.values():
            out.append(self._warehouse_rule(wh, http_proxy, https_proxy))
        out.append(
            Rule(
                "default",
                "default",
                ("*",),
                (),
                (),
                "proxy" if https_proxy is not None else "direct",
                "proxy" if http_proxy is not None else "direct",
                https_proxy,
                http_proxy,
                "built in",
                "everything else goes through the proxy for its scheme (direct when that scheme "
                "has no proxy)",
            )
        )
        return out

    def _warehouse_rule(
        self, wh: Warehouse, http_proxy: ProxyURL | None, https_proxy: ProxyURL | None
    ) -> Rule:
        """The warehouse's rule, routed as ``decide_target`` routes it for each scheme family."""
        settings = self._settings
        parsed = NoProxyMatcher.parse(wh.domains).entries
        raws = tuple(e.raw for e in parsed) + tuple(f"{s}://" for s in wh.schemes)
        note = hint = ""

        def family(proxy: ProxyURL | None) -> tuple[RouteKind, ProxyURL | None]:
            if wh.protocol == "tcp":
                # a TCP warehouse always uses the https proxy's CONNECT, whatever the URL scheme
                if settings.tunnel_tcp_warehouses and https_proxy is not None:
                    return "tunnel", https_proxy
                return "direct", None
            if proxy is None:
                return "direct", None
            if wh.route_via(proxy.scheme) == "direct":
                return "direct", None
            return "proxy", proxy

        route, via = family(https_proxy)
        plain_route, plain_via = family(http_proxy)
        if wh.protocol == "tcp":
            sentence = (
                f"{wh.title} speaks TCP, not HTTP; egress carries it through the proxy's CONNECT "
                "because tunnel_tcp_warehouses is on"
                if route == "tunnel"
                else wh.why_direct
            )
        elif route == "direct" and https_proxy is None:
            sentence = "no proxy is configured for https:// destinations"
        else:
            sentence = wh.why(route)
        families = [
            (proxy, family_name, r)
            for proxy, family_name, r in (
                (https_proxy, "https", route),
                (http_proxy, "http", plain_route),
            )
            if proxy is not None
        ]
        by_kind = [(p, name) for p, name, r in families if r == "direct"]
        if wh.protocol == "https" and wh.via_http_proxy != wh.via_https_proxy and by_kind:
            # the route depends on the kind of proxy: say so, it surprises (S12)
            proxy_kind = by_kind[0][0].scheme
            which = (
                ""
                if len(by_kind) == len(families)
                else f" for {by_kind[0][1]}:// destinations (the others go through the proxy)"
            )
            domains = ", ".join(f"*.{e.value}" for e in parsed)
            note = (
                f"{wh.title} cannot connect through an {proxy_kind}:// proxy, so egress routes "
                f"{domains} direct{which} and adds {', '.join(e.raw for e in parsed)} to every "
                "rendered NO_PROXY"
            )
            hint = "allow that traffic in your network policy (egress render networkpolicy)"
        return Rule(
            f"warehouse:{wh.name}",
            "warehouse",
            raws,
            parsed,
            wh.schemes,
            route,
            plain_route,
            via,
            plain_via,
            "warehouses.yaml",
            sentence,
            note,
            hint,
            wh.title,
            wh.default_port,
        )


def routing_notes(router: Router) -> list[Problem]:
    """What ``egress validate`` says about routes: one Problem per note of the router's rules
    (today: a warehouse that goes direct because of the kind of proxy, S12).

    >>> from egress.settings import Settings
    >>> s = Settings.from_proxy("https://proxy:3129", env={})
    >>> [p.field for p in routing_notes(s.router())]
    ['warehouses']
    >>> routing_notes(Settings.from_proxy("http://proxy:3128", env={}).router())
    []
    """
    notes: list[Problem] = []
    for rule in router.rules():
        if rule.kind == "disabled":
            break  # everything goes direct: no other rule is reached
        if rule.note:
            notes.append(Problem("warehouses", rule.note, rule.hint))
    return notes
