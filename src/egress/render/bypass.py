"""What bypasses the proxy, as a NO_PROXY list: the one speller every artifact shares.

Built from the router's rules and nothing else (README, "For the operator"): each rule whose
hosts the router sends direct contributes its entries, in the router's order, each written in the
spelling most runtimes read the same way (the runtime notes in :class:`Speller`). What a runtime
still reads differently, or what NO_PROXY cannot say at all, comes back as warnings that name
the runtimes and the entries. ``render env`` writes the list as ``NO_PROXY``, ``render helm`` as the
chart's ``excludedDomains`` (which the chart joins into ``NO_PROXY``), ``render squid`` lists it
for the proxy team.

A rule goes into the list when the router sends its hosts direct for every scheme that has a
proxy (NO_PROXY holds hosts, not schemes). When the http:// and https:// destinations of a rule
go different ways, the https:// route decides and a warning says what differs. The routes are
those with the admin-console switch on; with no proxy configured, those an http:// proxy gives.

>>> from egress.settings import Settings
>>> nop = no_proxy_list(Settings.from_proxy("http://proxy:3128", ".corp.example", env={}))
>>> nop.value.split(",")  # doctest: +NORMALIZE_WHITESPACE
['localhost', '.localhost', '127.0.0.1', '127.0.0.0/8', '::1', 'svc', '.svc', 'svc.cluster.local',
 '.svc.cluster.local', 'corp.example', '.corp.example', 'redshift.amazonaws.com',
 '.redshift.amazonaws.com', 'redshift-serverless.amazonaws.com',
 '.redshift-serverless.amazonaws.com', 'cloud.databricks.com', '.cloud.databricks.com',
 'azuredatabricks.net', '.azuredatabricks.net', 'gcp.databricks.com', '.gcp.databricks.com']
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace

from egress.noproxy import Entry
from egress.router import Router, RuleKind
from egress.settings import ProxySettings, ProxyURL, Settings

__all__ = [
    "STAND_IN_PROXY",
    "NoProxyGroup",
    "NoProxyList",
    "Speller",
    "no_proxy_list",
    "routing_router",
]

STAND_IN_PROXY = ProxyURL("http", "proxy.invalid", 3128)
"""The proxy routes are taken for when none is configured (``.invalid`` never resolves)."""

LOOPBACK = ipaddress.ip_address("127.0.0.1")


def routing_router(settings: Settings) -> Router:
    """The router whose routes a deployment artifact describes: the switch on, and with no proxy
    configured an http:// stand-in (an artifact is deployed before the switch is flipped, S6)."""
    proxy = settings.proxy
    if not proxy.configured:
        stand_in = ProxySettings(
            enabled=True, http_proxy=STAND_IN_PROXY, https_proxy=STAND_IN_PROXY
        )
        return replace(settings, proxy=stand_in).router()
    return settings.with_enabled(True).router()


@dataclass(frozen=True)
class NoProxyGroup:
    """The NO_PROXY entries that one router rule contributes (all of ``excluded_domains`` in one
    group), and why."""

    rule: str
    tokens: tuple[str, ...]
    reason: str
    kind: RuleKind = "auto"


@dataclass(frozen=True)
class NoProxyList:
    """A NO_PROXY value in portable spelling, grouped by the rule each entry serves."""

    groups: tuple[NoProxyGroup, ...]
    warnings: tuple[str, ...] = ()
    everything: bool = False
    """A rule holds ``*``: the value is ``*`` alone."""

    @property
    def tokens(self) -> tuple[str, ...]:
        if self.everything:
            return ("*",)
        return tuple(t for g in self.groups for t in g.tokens)

    @property
    def value(self) -> str:
        return ",".join(self.tokens)


@dataclass
class Speller:
    """Writes each entry in the spelling most runtimes agree on, and notes what still differs."""

    seen: set[str] = field(default_factory=set)
    cidrs: list[str] = field(default_factory=list)
    ipv6: list[str] = field(default_factory=list)
    ports: list[str] = field(default_factory=list)
    idn: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    mixed: list[str] = field(default_factory=list)
    loopback_literal: bool = False

    def spell(self, entry: Entry) -> list[str]:
        """The tokens for ``entry`` not written yet (none for ``*``: see ``everything``)."""
        out: list[str] = []
        port = f":{entry.port}" if entry.port is not None else ""
        if entry.kind == "domain":
            # Both spellings: curl, Python and undici >= 7.22 read either as "the domain and its
            # subdomains", but Go, wget, Ruby, httpx, proxy-from-env and undici 6 read
            # ".example.com" as subdomains only, and proxy-from-env and undici 6 read
            # "example.com" as that host only (NP002/NP009 in the runtime comparison).
            out = [entry.value + port, "." + entry.value + port]
            if not entry.raw.isascii():
                self.idn.append(f"{entry.raw} -> {entry.value}")
            if port:
                self.ports.append(entry.value + port)
        elif entry.kind == "ip":
            address = ipaddress.ip_address(entry.value)
            if address.version == 6:
                if port:
                    # "[v6]:port" is the only spelling with a port, and httpx refuses to build any
                    # client while NO_PROXY holds a bracket; a bare v6 would widen the entry.
                    self.dropped.append(
                        f"{entry.raw} (httpx refuses every request while NO_PROXY holds a "
                        "bracketed IPv6 address, and no other spelling keeps the port)"
                    )
                    return []
                out = [entry.value]
                self.ipv6.append(entry.value)
            else:
                out = [entry.value + port]
                if port:
                    self.ports.append(entry.value + port)
        elif entry.kind == "cidr":
            network = ipaddress.ip_network(entry.value)
            if network.version == 6:
                self.dropped.append(
                    f"{entry.raw} (httpx refuses every request while NO_PROXY holds an IPv6 "
                    "range, and only Go and curl >= 8.18 read one; list the addresses instead)"
                )
                return []
            if LOOPBACK in network:
                # The one loopback address clients use, for the runtimes that ignore CIDR.
                out = [str(LOOPBACK)]
                self.loopback_literal = True
            out.append(entry.value)
            self.cidrs.append(entry.value)
        fresh = [t for t in out if t not in self.seen]
        self.seen.update(fresh)
        return fresh

    def warnings(self, everything: bool) -> list[str]:
        out: list[str] = []
        if everything:
            out.append(
                "NO_PROXY is '*' because a rule covers every host: every runtime then "
                "bypasses the proxy, except Ruby and wget, which do not read '*' and still "
                "use it"
            )
            return out
        if self.cidrs:
            extra = " (127.0.0.1 is also listed on its own)" if self.loopback_literal else ""
            out.append(
                f"NO_PROXY holds the CIDR range(s) {', '.join(self.cidrs)}: curl >= 7.86, Go, "
                "requests and Ruby read them, but Python urllib, Node (undici, proxy-from-env) "
                "and wget ignore them and httpx matches only the network address itself, so in "
                f"those runtimes the other addresses in the range go to the proxy{extra}"
            )
        if self.ipv6:
            out.append(
                f"NO_PROXY holds the IPv6 address(es) {', '.join(self.ipv6)}, written bare as "
                "curl, Go, requests, httpx, wget and undici >= 8.10 read them; Python urllib, "
                "proxy-from-env and undici < 8.10 match only the bracketed spelling, which "
                "egress does not write because httpx then refuses every request, and Ruby "
                "cannot read IPv6 entries: those runtimes send these addresses to the proxy"
            )
        if self.ports:
            out.append(
                f"NO_PROXY holds entries with a port ({', '.join(self.ports)}): Go, Node "
                "(undici, proxy-from-env) and Ruby honour them; curl and wget ignore them and "
                "send that traffic to the proxy; Python urllib, requests and httpx match them "
                "only when the URL names the port explicitly, and requests never matches an IP "
                "address with a port"
            )
        if self.idn:
            out.append(
                f"NO_PROXY writes internationalised names as A-labels ({', '.join(self.idn)}), "
                "the form curl, wget, Go and Node compare (httpx refuses non-ASCII entries); "
                "Python urllib and requests compare the host as the URL spells it, so a URL "
                "written with the Unicode name still goes to the proxy there"
            )
        for dropped in self.dropped:
            out.append(
                f"NO_PROXY leaves out {dropped}; egress's own components still send it direct, "
                "other runtimes send it to the proxy"
            )
        out.extend(self.mixed)
        return out


def no_proxy_list(settings: Settings) -> NoProxyList:
    """NO_PROXY for ``settings``: every rule the router sends direct, in the router's order
    (automatic, ``excluded_domains``, warehouses), in the most portable spelling."""
    router = routing_router(settings)
    proxy = router.settings.proxy
    families = [f for f, p in (("https", proxy.https_proxy), ("http", proxy.http_proxy)) if p]
    speller = Speller()
    groups: list[NoProxyGroup] = []
    excluded: list[str] = []
    everything = False
    for ignored in router.ignored:
        speller.dropped.append(f"{ignored.token} (egress itself ignores it: {ignored.reason})")
    for rule in router.rules():
        if not rule.parsed:
            continue
        direct = [f for f in families if rule.route_for(f) == "direct"]
        if not direct:
            continue
        listed = ", ".join(rule.entries[: len(rule.parsed)])
        if len(direct) < len(families):
            other = next(f for f in families if f not in direct)
            if direct == ["http"]:
                speller.mixed.append(
                    f"NO_PROXY leaves out {listed} ({rule.rule}), which egress sends direct for "
                    "http:// destinations but through the proxy for https:// ones: other "
                    "runtimes send its http:// destinations to the proxy"
                )
                continue
            speller.mixed.append(
                f"NO_PROXY holds {listed} ({rule.rule}), which egress sends direct for https:// "
                f"destinations but through the proxy for {other}:// ones: other runtimes send "
                f"its {other}:// destinations direct too"
            )
        everything = everything or any(e.kind == "all" for e in rule.parsed)
        tokens = [t for e in rule.parsed for t in speller.spell(e)]
        if rule.kind == "excluded":
            excluded.extend(tokens)
        elif tokens:
            groups.append(NoProxyGroup(rule.rule, tuple(tokens), rule.sentence, rule.kind))
    if excluded:
        at = next((i for i, g in enumerate(groups) if g.kind == "warehouse"), len(groups))
        groups.insert(
            at,
            NoProxyGroup(
                "excluded",
                tuple(excluded),
                "listed by the operator (excluded_domains)",
                "excluded",
            ),
        )
    return NoProxyList(tuple(groups), tuple(speller.warnings(everything)), everything)
