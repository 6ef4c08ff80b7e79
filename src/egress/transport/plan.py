"""How one request is carried out: the router's decision, then the pool and the address.

Shared by ``egress.Client``, ``egress.AsyncClient`` and ``egress.requests_session``; pure (no
I/O, no HTTP library). The route never depends on a URL's path or query, so the httpx
transports plan once per origin (:meth:`Planner.plan_origin`) and keep the plan.

>>> from egress.settings import load_settings_from_mapping
>>> s = load_settings_from_mapping({"proxy": {"url": "http://proxy:3128"},
...     "excluded_domains": ".corp", "resolve": {"git.corp": "10.0.0.7"}}, env={})
>>> p = Planner(s)
>>> str(p.plan("https://api.example.com/").pool), str(p.plan("https://git.corp/x").pool)
('proxy http://proxy:3128', 'direct (git.corp pinned)')
>>> p.plan("https://git.corp/x").connect_ip, p.plan("https://wiki.corp/").connect_ip
('10.0.0.7', None)
>>> p.plan_origin("https", "git.corp", None).decision.url
'https://git.corp'
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from egress.noproxy import canonical_host
from egress.redact import scrub
from egress.router import Decision
from egress.settings import ProxyURL, Settings
from egress.transport.failures import PLAIN_ERRORS, ErrorClasses, unsupported_route

if TYPE_CHECKING:
    from egress.kerberos import Negotiator

__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "DIRECT",
    "Plan",
    "Planner",
    "PoolKey",
    "basic_token",
    "connect_request",
]

DEFAULT_TIMEOUT_SECONDS = 10.0
"""Connect, read, write and pool timeout of every egress client unless the caller sets one: a
proxy adds a hop and a CONNECT round trip, so a little more than httpx's 5 s. The whole CONNECT
exchange (the proxy's complete answer) must also arrive within the read timeout."""


@dataclass(frozen=True)
class PoolKey:
    """Which connection pool carries a request: one per proxy URL, the direct pool, or the
    direct pool of one ``resolve`` name."""

    proxy: ProxyURL | None = None
    resolved_host: str | None = None

    def __str__(self) -> str:
        if self.proxy is not None:
            return f"proxy {self.proxy}"
        return f"direct ({self.resolved_host} pinned)" if self.resolved_host else "direct"


DIRECT = PoolKey()


@dataclass(frozen=True, slots=True)
class Plan:
    """How one request is carried out: the decision, the pool, and a resolve override."""

    decision: Decision
    pool: PoolKey
    connect_ip: str | None = None
    """Set by ``resolve``: connect to this IP; Host, SNI and the certificate keep the name."""
    absolute_form: bool = False
    """A plain-HTTP request through a proxy: sent to the proxy with the full URL."""

    @property
    def host(self) -> str:
        return self.decision.target.host_text


def basic_token(credentials: tuple[str, str]) -> str:
    """The Basic token of ``(username, password)``, as in ``Proxy-Authorization: Basic <token>``.

    >>> basic_token(("alice", "s3cret"))
    'YWxpY2U6czNjcmV0'
    """
    return base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode("ascii")


def connect_request(
    authority: str, credentials: tuple[str, str] | None, authorization: str | None = None
) -> bytes:
    """The CONNECT request for ``authority`` (``host:port``, IPv6 in brackets), with Basic
    credentials when given, or a ``Proxy-Authorization`` value made for this connection
    (``Negotiate <token>``); the tunnel and the interception probe send it on their own socket.

    >>> connect_request("db.example.com:5432", None)
    b'CONNECT db.example.com:5432 HTTP/1.1\\r\\nHost: db.example.com:5432\\r\\n\\r\\n'
    """
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if credentials is not None:
        lines.append(f"Proxy-Authorization: Basic {basic_token(credentials)}")
    elif authorization is not None:
        lines.append(f"Proxy-Authorization: {authorization}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def _resolve_map(pairs: tuple[tuple[str, str], ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, ip in pairs:
        try:
            host = canonical_host(name)
        except ValueError:
            continue  # settings validation owns the message; an unusable name never matches
        if isinstance(host, str):
            out[host] = ip
    return out


class Planner:
    """Turns a URL into a :class:`Plan`: the router's decision, then the pool that carries it.

    Every URL goes through the router's parser, which refuses hosts with spaces, control
    characters or CR/LF (encoded or not), so none reaches a CONNECT line or a header.
    """

    def __init__(self, settings: Settings, *, errors: ErrorClasses | None = None) -> None:
        self.settings = settings
        self.router = settings.router()
        self.errors: ErrorClasses = PLAIN_ERRORS if errors is None else errors
        self._resolve = _resolve_map(settings.resolve)
        # made once: a pool key per proxy and per resolve name (they are dict keys per request)
        proxies = (settings.proxy.http_proxy, settings.proxy.https_proxy)
        self._proxy_keys = {p: PoolKey(proxy=p) for p in proxies if p is not None}
        self._pinned_keys = {host: PoolKey(resolved_host=host) for host in self._resolve}
        proxy = settings.proxy
        self.credentials: tuple[str, str] | None = (
            (proxy.username, proxy.password.reveal())
            if proxy.username and proxy.password is not None
            else None
        )
        """``(username, password)`` for Basic auth to the proxy, or None."""
        self.secrets: tuple[str, ...] = ()
        """What no message may show: the password and the ``Proxy-Authorization`` token."""
        if self.credentials is not None:
            self.secrets = (self.credentials[1], basic_token(self.credentials))
        self.negotiate = proxy.auth == "negotiate" and proxy.kerberos is not None
        """Kerberos (Negotiate) to the proxy: a fresh token on each new connection."""
        self._negotiators: dict[ProxyURL, Negotiator] = {}
        self._negotiators_lock = threading.Lock()

    def negotiator(self, proxy: ProxyURL | None) -> Negotiator | None:
        """The Negotiate token maker for ``proxy`` (one per proxy: its SPN), or None."""
        if not self.negotiate or proxy is None or self.settings.proxy.kerberos is None:
            return None
        found = self._negotiators.get(proxy)
        if found is None:
            from egress.kerberos import Negotiator

            with self._negotiators_lock:
                found = self._negotiators.get(proxy)
                if found is None:
                    found = Negotiator(self.settings.proxy.kerberos, proxy)
                    self._negotiators[proxy] = found
        return found

    def authorization(self, proxy: ProxyURL | None) -> Callable[[], str] | None:
        """What makes the ``Proxy-Authorization`` value of each new connection to ``proxy``
        (Negotiate), or None when the proxy gets none or a fixed one (Basic)."""
        found = self.negotiator(proxy)
        return None if found is None else found.header

    def spn(self, proxy: ProxyURL | None) -> str | None:
        """The proxy's Kerberos service principal when egress uses Negotiate with it."""
        found = self.negotiator(proxy)
        return None if found is None else found.spn

    def plan(self, url: str) -> Plan:
        """The plan for ``url``; raises ``URLError`` for a URL the router refuses, and
        ``UnsupportedRoute`` for a ``tunnel`` decision."""
        return self._plan(self.router.decide(url))

    def plan_origin(self, scheme: str, host: str, port: int | None) -> Plan:
        """The plan for every URL of one origin (``host`` as on the wire: IDNA, IPv6 bare).

        Its decision's ``url`` is the origin, ``scheme://host[:port]``: the route depends on
        nothing else, and the path or userinfo of whichever request came first is not kept.
        """
        netloc = f"[{host}]" if ":" in host else host
        if port is not None:
            netloc = f"{netloc}:{port}"
        return self._plan(self.router.decide(f"{scheme}://{netloc}"))

    def _plan(self, decision: Decision) -> Plan:
        if decision.route == "proxy" and decision.proxy_url is not None:
            key = self._proxy_keys.get(decision.proxy_url) or PoolKey(proxy=decision.proxy_url)
            return Plan(decision, key, absolute_form=decision.target.scheme in ("http", "ws"))
        if decision.route == "direct":
            host = decision.target.host
            ip = self._resolve.get(host) if isinstance(host, str) else None
            if ip is not None and isinstance(host, str):
                return Plan(decision, self._pinned_keys[host], ip)
            return Plan(decision, DIRECT)
        raise unsupported_route(decision).error(self.errors)

    def scrub(self, text: str) -> str:
        """``text`` with the proxy password and its Basic token masked (library messages)."""
        return scrub(text, self.secrets) if self.secrets else text
