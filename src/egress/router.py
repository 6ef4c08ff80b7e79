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

import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Literal, NamedTuple, TypeAlias
from urllib.parse import urlsplit

from egress.errors import Problem, URLError
from egress.noproxy import (
    DOTTED_QUAD_PATTERN,
    PLAIN_NAME_PATTERN,
    Entry,
    Host,
    Ignored,
    IPAddress,
    NoProxyMatcher,
    canonical_host,
)
from egress.redact import mask_url, shown, split_userinfo
from egress.settings import ProxyURL, Settings
from egress.warehouses import WAREHOUSE_BY_SCHEME, WAREHOUSES, Warehouse

RouteKind = Literal["proxy", "direct", "tunnel"]

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
for _w in WAREHOUSES.values():
    for _s in _w.schemes:
        DEFAULT_PORTS.setdefault(_s, _w.default_port)

MEMO_SIZE = 512
"""How many destinations a router remembers: far more than a component calls, and small, because
what the memo holds lives on: with 4096, each new destination cost a sixth more than with none
(the garbage collector's passes, cache misses); with 512, a few percent."""
TEMPLATE_SIZE = 4096
"""How many matched entries a router remembers the rule outcome of, per scheme."""
_UNSAFE = re.compile(r"[\x00-\x20\x7f]")
GKE_METADATA = ("169.254.169.254", "metadata", "metadata.google.internal")

# The fast path of parse_target: a known scheme in lower case, "://", then an authority of
# lower-case ASCII letters, digits, '.', '-', '_' with an optional decimal port, then '/' or the
# end. Anything else (userinfo, brackets, '%', upper case, non-ASCII, '?' or '#' right after the
# host, a bare host) takes the full path. A host of the first group is a plain name, already
# canonical; of the second, a dotted quad, which canonical_host reads as that IPv4 address; the
# third's (an IPv4 address written otherwise, a trailing dot...) goes through canonical_host.
_ORIGIN = re.compile(
    "({})://(?:({})|({})|([a-z0-9_.-]+))(?::([0-9]{{1,5}}))?(?=/|\\Z)".format(
        # the web's schemes first, and each before any scheme that is a prefix of it
        "|".join(
            re.escape(s)
            for s in sorted(
                DEFAULT_PORTS, key=lambda s: (not s.startswith(("http", "ws")), -len(s))
            )
        ),
        PLAIN_NAME_PATTERN,
        DOTTED_QUAD_PATTERN,
    )
)
_MAX_NAME = 253
_TEMPLATE_KINDS = 16
"""How many (scheme, warehouse) pairs a router keeps rule outcomes for: each has one slot per
entry (a list: read by position, cheaper than a dict and one cache miss fewer)."""
_tuple_new = tuple.__new__
_IPv4Address = ipaddress.IPv4Address
_inet_aton = socket.inet_aton


class Target(NamedTuple):
    """A destination as the router sees it: scheme, canonical host, effective port.

    All a route depends on, and nothing more: no path, no query, no userinfo (so never a
    password). A named tuple, not a dataclass: it is built on the hot path of every request
    to a new destination, and a frozen dataclass costs several times more to build.
    """

    scheme: str
    host: Host
    port: int | None

    @property
    def host_text(self) -> str:
        """The host as it goes on the wire (IPv6 without brackets)."""
        return str(self.host)

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if isinstance(self.host, ipaddress.IPv6Address) else str(self.host)
        return f"{host}:{self.port}" if self.port is not None else host


def _address_text(address: IPAddress) -> str:
    """``str(address)``, four times faster for IPv4 (ipaddress formats it in Python)."""
    if type(address) is ipaddress.IPv4Address:
        return socket.inet_ntoa(int(address).to_bytes(4, "big"))
    return str(address)


def _url_error(url: str, problem: str, hint: str) -> URLError:
    """A URLError naming the URL (masked, escaped, bounded), what is wrong and the fix."""
    exc = URLError(f"the destination URL {shown(url)} {problem}; {hint}")
    exc.hint = hint
    return exc


def parse_target(url: str) -> Target:
    """Parse a destination URL. A bare ``host`` or ``host:port`` is taken as ``https://``.

    No error message quotes a password: the URL is shown masked (:func:`egress.redact.shown`).

    >>> parse_target("HTTPS://Bücher.Example./x").authority
    'xn--bcher-kva.example:443'
    >>> parse_target("postgresql://u:pw@[::ffff:10.0.0.1]/db")
    Target(scheme='postgresql', host=IPv4Address('10.0.0.1'), port=5432)
    >>> parse_target("https://.example.com/")
    Traceback (most recent call last):
    ...
    egress.errors.URLError: the destination URL "https://.example.com/" has a host that starts with a dot; remove the dot (a leading dot belongs in a no-proxy entry, not in a URL)
    """  # noqa: E501
    if type(url) is str:
        target = _parse_simple(url)
        if target is not None:
            return target
    return _parse_full(url)


def _parse_simple(url: str) -> Target | None:
    """``parse_target`` for the common ``scheme://host[:port][/...]`` shape, or None.

    Cheap (one regular expression) and exactly as strict as the full path: it answers only where
    the full path gives the same Target, and leaves everything else, errors included, to it. A
    property test compares the two on generated URLs.
    """
    if not url.isprintable() or " " in url:
        return None
    return _parse_origin(url)


def _parse_origin(url: str) -> Target | None:
    """``_parse_simple`` for a URL known to be free of spaces and control characters."""
    match = _ORIGIN.match(url)
    if match is None:
        return None
    scheme, name, quad, other, port_text = match.groups()
    host: Host
    if name is not None and len(name) <= _MAX_NAME:
        host = name
    elif quad is not None:
        host = _IPv4Address(int.from_bytes(_inet_aton(quad), "big"))
    else:
        try:
            host = canonical_host(other or name)
        except ValueError:
            return None
    if port_text is None:
        return _tuple_new(Target, (scheme, host, DEFAULT_PORTS[scheme]))
    port = int(port_text)
    if 0 < port <= 65535:
        return _tuple_new(Target, (scheme, host, port))
    return None


def _parse_full(url: object) -> Target:
    """``parse_target`` for any input: every shape, and every error with its own sentence."""
    if not isinstance(url, str) or not url:
        raise URLError("the destination URL is empty; give a URL such as https://host/")
    if _UNSAFE.search(url):
        raise _url_error(url, "contains spaces or control characters", "remove them")
    text = url if "://" in url else f"https://{url}"
    try:
        parts = urlsplit(text)
    except ValueError:
        # the library's message may quote the userinfo: it is not shown
        raise _url_error(
            url,
            "cannot be read as a URL",
            "put an IPv6 address in brackets, as in https://[2001:db8::1]/, and write the host "
            "in plain characters",
        ) from None
    scheme = parts.scheme.lower()
    if scheme == "file":
        raise _url_error(
            url,
            "is a file:// URL, which names a file on this machine, not a network destination",
            "give the URL of a server, such as https://host/",
        )
    hostport = parts.netloc.rpartition("@")[2]
    if hostport.startswith("["):
        raw_host, _, rest = hostport[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else rest
    else:
        raw_host, _, port_text = hostport.partition(":")
    # A password holding '/', '?' or '#' ends the host part early, so the host and port read
    # here would be pieces of it: then no piece is quoted, only the masked URL.
    password = split_userinfo(url)[2]
    cut_short = password is not None and any(d in password for d in "/?#")
    if not raw_host:
        if cut_short:
            raise _password_delimiter(url)
        raise _url_error(url, "has no host", "give a URL such as https://host/")
    port: int | None = None
    if port_text:
        if not (port_text.isascii() and port_text.isdigit() and len(port_text) <= 5) or not (
            0 < int(port_text) <= 65535
        ):
            if cut_short:
                raise _password_delimiter(url)
            raise _url_error(
                url,
                f"has the port {shown(port_text)}, which is not a number from 1 to 65535",
                "give a port from 1 to 65535, or none for the scheme's default",
            )
        port = int(port_text)
    try:
        host = canonical_host(raw_host)
    except ValueError as exc:
        if cut_short:
            raise _password_delimiter(url) from None
        if raw_host.startswith("."):
            raise _url_error(
                url,
                "has a host that starts with a dot",
                "remove the dot (a leading dot belongs in a no-proxy entry, not in a URL)",
            ) from None
        raise _url_error(url, f"has an invalid host: {exc}", "fix the host name") from None
    return Target(scheme, host, port if port is not None else DEFAULT_PORTS.get(scheme))


def _password_delimiter(url: str) -> URLError:
    return _url_error(
        url,
        "has no valid host after its user name and password (a '/', '?' or '#' in a password "
        "ends the host part of a URL)",
        "percent-encode those characters in the password (/ as %2F, ? as %3F, # as %23)",
    )


class Decision(NamedTuple):
    """Where one connection goes, through which proxy, by which rule, and why (one sentence).

    Immutable; a named tuple for the same reason as :class:`Target`.
    """

    url: str
    """The destination URL of this call, with any password masked."""
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
_Rest: TypeAlias = tuple[RouteKind, str | None, str, str, Target, ProxyURL | None, str | None]
"""A Decision without its first field, the URL: what the memo keeps per destination."""
_Template: TypeAlias = tuple[RouteKind, str | None, str, str, str, ProxyURL | None, str | None]
"""What a rule decides (route, proxy shown, rule, reason before and after the host, proxy,
warehouse): the same for every host the rule's entry matches."""


@dataclass(frozen=True)
class Rule:
    """One compiled rule as data: what it covers, where it sends it under these settings, and why.

    Every consumer (renderers, ``validate``'s notes, ``explain --all-rules``) is built from these
    and from decisions; none keeps its own copy of a rule (README, "For the operator"). The route
    can depend on the destination's scheme (the http:// and https:// proxies may differ, or one may
    be missing), so it is given for both families: ``route`` for ``https://``, ``wss://`` and every
    other scheme, ``plain_route`` for ``http://`` and ``ws://``. The routes are those ``decide``
    gives a host this rule covers when no earlier rule covers it; an earlier ``proxy-disabled`` rule
    covers everything.
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
        # by position in the matcher's entries, which is what it hands back
        self._owners = [owners[id(entry)] for entry in self._matcher.entries]
        self._name_index = self._matcher.name_index
        self._ipv4_index = self._matcher.ipv4_index
        self._http_proxy = proxy.http_proxy
        self._https_proxy = proxy.https_proxy
        # The route depends on the scheme, host, port and warehouse, never on the path or query,
        # so that is what the memo is keyed on: the text "scheme://host:port" for the common
        # shape (found with a string search, before any parsing), the parsed (scheme, host,
        # port) for the rest. It is bounded (MEMO_SIZE) and changes no answer:
        # ``decide_uncached`` gives the same.
        self._memo: dict[object, _Rest] = {}
        # What the rules decide for a matched entry (by position; -1 for none), per scheme (or
        # (scheme, warehouse) when one is named): see _template.
        self._templates: dict[str | tuple[str, str], list[_Template | None]] = {}
        self._template_counts: dict[str | tuple[str, str], int] = {}

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
        """The route for ``url``. ``warehouse`` names the kind when the caller knows it.

        Only the scheme, host and port count, so a known destination with a new path or query
        costs a lookup and one new Decision carrying this call's URL (password masked).
        """
        if type(url) is str and url.isprintable() and " " not in url:
            if warehouse is None:
                # The key: the text before the first '/' from index 8 on, which is the origin
                # "scheme://host[:port]" for the web's schemes. The memo keeps a text key only
                # as u[:m.end()] for a URL u that _ORIGIN matched (m): the origin, which u
                # continues with '/' or ends. The match depends on that text and on what
                # follows being '/' or the end, nothing else. The key looked up here is a
                # prefix of this URL that it continues with '/' or ends, so a URL whose key is
                # held starts the same way and gets the same match: the kept answer is its own.
                end = url.find("/", 8)
                key = url if end < 0 else url[:end]
                memo = self._memo
                rest = memo.get(key)
                if rest is None:
                    # The key holds no '/' past the scheme's "://", so a match of the URL can
                    # only end where the key does: matching the key whole is matching the URL.
                    match = _ORIGIN.fullmatch(key)
                    if match is None:
                        # Not the origin (a scheme of six letters or more, whose "//" lies at
                        # or past index 8; a one-letter host), or not the common shape.
                        match = _ORIGIN.match(url)
                        if match is None:
                            return self._decide_parsed(url, None)
                        key = url[: match.end()]
                        rest = memo.get(key)
                    if rest is None:
                        # A new destination: as _parse_origin reads it, then matched and routed.
                        scheme, name, quad, other, port_text = match.groups()
                        if port_text is None:
                            port = DEFAULT_PORTS[scheme]
                        else:
                            port = int(port_text)
                            if not 0 < port <= 65535:
                                return self._decide_parsed(url, None)
                        host: Host
                        if name is not None and len(name) <= _MAX_NAME:
                            host = shown = name
                            index = self._name_index(name, port)
                        elif quad is not None:
                            number = int.from_bytes(_inet_aton(quad), "big")
                            host = _IPv4Address(number)
                            shown = quad  # no leading zeros: as str(host) writes it
                            index = self._ipv4_index(number, port)
                        else:
                            try:
                                host = canonical_host(other or name)
                            except ValueError:
                                return self._decide_parsed(url, None)
                            shown = host if isinstance(host, str) else _address_text(host)
                            index = self._matcher.index(host, port)
                        by_entry = self._templates.get(scheme)
                        template = None if by_entry is None else by_entry[index]
                        if template is None:
                            template = self._template(index, scheme, None)
                        route, proxy, rule, before, after, via, wh_name = template
                        rest = (
                            route,
                            proxy,
                            rule,
                            f"{before}{shown}{after}",
                            _tuple_new(Target, (scheme, host, port)),
                            via,
                            wh_name,
                        )
                        if len(memo) >= MEMO_SIZE:
                            memo.clear()  # see _remember
                        memo[key] = rest
            else:
                end = url.find("/", url.find("://") + 3)
                named = (url if end < 0 else url[:end], warehouse)
                rest = self._memo.get(named)
                if rest is None:
                    target = _parse_origin(url)
                    if target is None:
                        return self._decide_parsed(url, warehouse)
                    rest = self._remember(named, self._rest(target, warehouse))
            # concatenation: cheaper than (url, *rest), which goes through a list
            return _tuple_new(Decision, (mask_url(url) if "@" in url else url,) + rest)  # noqa: RUF005
        return self._decide_parsed(url, warehouse)

    def _decide_parsed(self, url: str, warehouse: str | None) -> Decision:
        """``decide`` for a URL of any other shape, parsed in full; memo keyed on the Target."""
        target = _parse_full(url)
        key = (target, warehouse)
        rest = self._memo.get(key) or self._remember(key, self._rest(target, warehouse))
        return _tuple_new(Decision, (mask_url(url), *rest))

    def _remember(self, key: object, rest: _Rest) -> _Rest:
        """Keep ``rest`` under ``key``; a full memo starts afresh (the hot keys come back in a
        few calls, and a flood of new destinations costs no bookkeeping)."""
        memo = self._memo
        if len(memo) >= MEMO_SIZE:
            memo.clear()
        memo[key] = rest
        return rest

    def decide_uncached(self, url: str, warehouse: str | None = None) -> Decision:
        """``decide`` without the memo (tests and benchmarks compare the two)."""
        rest = self._rest(parse_target(url), warehouse)
        return _tuple_new(Decision, (mask_url(url), *rest))

    def decide_target(
        self, target: Target, *, warehouse: str | None = None, url: str | None = None
    ) -> Decision:
        """The route for an already parsed destination; ``url`` (masked here) is what the
        Decision shows, by default ``scheme://authority``."""
        shown_url = mask_url(url) if url is not None else f"{target.scheme}://{target.authority}"
        return _tuple_new(Decision, (shown_url, *self._rest(target, warehouse)))

    def _rest(self, target: Target, warehouse: str | None) -> _Rest:
        """Everything of a Decision but its URL: what the memo keeps per destination.

        Past the matcher, the route depends only on the entry that matched, the scheme and the
        warehouse; the host only fills the reason's blank. So that part is worked out once per
        rule and kept, and a new host costs a lookup and a sentence.
        """
        scheme, host, port = target
        index = self._matcher.index(host, port)
        route, proxy, rule, before, after, via, wh_name = self._template(index, scheme, warehouse)
        shown = host if isinstance(host, str) else _address_text(host)
        return (route, proxy, rule, f"{before}{shown}{after}", target, via, wh_name)

    def _template(self, index: int, scheme: str, warehouse: str | None) -> _Template:
        """The outcome of the rules for the entry at ``index`` (-1: none matched), with a blank
        for the host; worked out once per entry, scheme and warehouse, and kept (bounded)."""
        templates = self._templates
        counts = self._template_counts
        kind = scheme if warehouse is None else (scheme, warehouse)
        by_entry = templates.get(kind)
        if by_entry is None or counts[kind] >= TEMPLATE_SIZE:
            if len(templates) >= _TEMPLATE_KINDS:  # any scheme goes: bounded like the memo
                templates.clear()
                counts.clear()
            # one slot per entry, and the last for "none matched" (index -1)
            by_entry = templates[kind] = [None] * (len(self._owners) + 1)
            counts[kind] = 0
        template = by_entry[index]
        if template is None:
            template = by_entry[index] = self._outcome(index, scheme, warehouse)
            counts[kind] += 1
        return template

    def _outcome(self, index: int, scheme: str, warehouse: str | None) -> _Template:
        """``_template`` worked out: route, proxy shown, rule, the reason around the host, proxy,
        warehouse."""
        hit = self._matcher.entries[index] if index >= 0 else None
        owner = self._owners[index] if index >= 0 else None
        if warehouse is None:
            wh = WAREHOUSE_BY_SCHEME.get(scheme) or (owner if type(owner) is Warehouse else None)
        else:
            wh = self._named_warehouse(warehouse)
        route, rule, before, after, via = self._route(scheme, hit, owner, wh)
        shown_proxy = self._shown[via] if via is not None else None
        return (route, shown_proxy, rule, before, after, via, wh.name if wh is not None else None)

    def _route(
        self,
        scheme: str,
        hit: Entry | None,
        owner: _AutoRule | Warehouse | None,
        wh: Warehouse | None,
    ) -> tuple[RouteKind, str, str, str, ProxyURL | None]:
        """Route, rule, the reason around its host, and proxy; first match wins (DESIGN §6)."""
        proxy_scheme = "https" if wh is not None and wh.protocol == "tcp" else scheme
        proxy = self._http_proxy if proxy_scheme in ("http", "ws") else self._https_proxy
        if not self._active:
            if self._settings.proxy.configured:
                why = "the proxy is switched off in the admin console (proxy.enabled: false)"
            else:
                why = "no proxy is configured"
            return "direct", "proxy-disabled", "", f" goes direct because {why}.", None

        if type(owner) is _AutoRule:
            return (
                "direct",
                owner.rule,
                "",
                f" goes direct because {owner.sentence} "
                f"(automatic rule {owner.rule}, {owner.origin}).",
                None,
            )

        if hit is not None and owner is None:
            return (
                "direct",
                f"excluded:{hit.raw}",
                "",
                f" goes direct because it matches {hit.raw!r} in the excluded domains.",
                None,
            )

        if wh is not None:
            rule = f"warehouse:{wh.name}"
            if wh.protocol == "tcp":
                if self._settings.tunnel_tcp_warehouses and proxy is not None:
                    return (
                        "tunnel",
                        rule,
                        f"{wh.title} speaks TCP, not HTTP; egress carries ",
                        " through the proxy's CONNECT because tunnel_tcp_warehouses is on.",
                        proxy,
                    )
                return (
                    "direct",
                    rule,
                    f"{wh.why_direct}, so ",
                    " goes direct without being listed (allow it in the network policy, or set "
                    "tunnel_tcp_warehouses: true to carry it through CONNECT).",
                    None,
                )
            if proxy is None:
                return self._no_proxy_for_scheme(scheme)
            if wh.route_via(proxy.scheme) == "direct":
                return (
                    "direct",
                    rule,
                    f"{wh.why_direct}, so ",
                    " goes direct without being listed.",
                    None,
                )
            return (
                "proxy",
                rule,
                f"{wh.why_proxy}, so ",
                f" goes through the proxy {self._shown[proxy]}.",
                proxy,
            )

        if proxy is None:
            return self._no_proxy_for_scheme(scheme)
        return (
            "proxy",
            "default",
            "",
            f" matches no exclusion, so it goes through the proxy {self._shown[proxy]}.",
            proxy,
        )

    @staticmethod
    def _no_proxy_for_scheme(scheme: str) -> tuple[RouteKind, str, str, str, ProxyURL | None]:
        return (
            "direct",
            "no-proxy-for-scheme",
            "",
            f" goes direct because no proxy is configured for {scheme}:// destinations.",
            None,
        )

    @staticmethod
    def _named_warehouse(named: str) -> Warehouse:
        wh = WAREHOUSES.get(named.lower())
        if wh is None:
            raise URLError(
                f"warehouse {shown(named)} is not known; use one of: {', '.join(WAREHOUSES)}"
            )
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
