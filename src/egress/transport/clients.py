"""``egress.Client`` and ``egress.AsyncClient``: httpx clients that carry out the router's decision.

They are ``httpx.Client`` / ``httpx.AsyncClient`` with ``trust_env=False`` and one transport,
:class:`EgressTransport` / :class:`AsyncEgressTransport`. That transport plans every request it
is given (httpx calls it once per redirect hop, so every hop is decided afresh; the plan is kept
per origin, since the route never depends on the path) and hands it to one of a few httpx pools:

- ``proxy``: one ``httpx.HTTPTransport(proxy=httpx.Proxy(...))`` per proxy URL, made on first use
  and kept, so keep-alive holds one CONNECT tunnel per origin. Through an ``http://`` proxy,
  plain HTTP goes in absolute form and HTTPS through CONNECT; an ``https://`` proxy gets TLS
  first, verified with the *proxy* trust. Basic credentials (``proxy.username`` +
  ``password_file``) belong to the proxy pool, so they go on CONNECT and absolute-form requests
  to the proxy and nowhere else.
- ``direct``: one direct pool; a name in ``settings.resolve`` is connected to at its IP (like
  ``curl --resolve``) while the Host header, TLS SNI and certificate check keep the real name
  (the ``sni_hostname`` request extension). Each such name has its own pool, so a TLS connection
  verified for one name is never reused for another name on the same IP. Proxied requests never
  use ``resolve``: the proxy resolves names.
- ``tunnel`` (a TCP warehouse carried through CONNECT): not an HTTP route. An HTTP request
  decided ``tunnel`` raises :class:`~egress.errors.UnsupportedRoute` instead of guessing.

Which hop failed. The proxy route adds httpcore's ``trace`` request extension (chained with any
the caller set) and a :class:`HopTracker` follows its events; see there for the events Squid 5.7
and httpcore 1.0.9 produce. Failures before the tunnel is up become ``ProxyUnreachable``,
``ProxyTLSError``, ``ProxyDenied`` (403), ``ProxyAuthRequired`` (407) or ``ProxyError`` (no
usable answer: closed, not HTTP, timed out); so do failures of a plain-HTTP request sent to the
proxy in absolute form, and a queued request that found no free connection to the proxy in time.
The origin's own failures stay httpx errors. A plain-HTTP request answered 403/407 *by the proxy
itself* raises too; the proxy's own answer is recognised by Squid's ``X-Squid-Error`` header or
an RFC 9209 ``Proxy-Status`` header with an ``error`` parameter (a 407 also by
``Proxy-Authenticate``). Other answers, the proxy's 5xx about an unreachable origin included, come
back as responses, as they would from any HTTP proxy client.

The whole CONNECT exchange has a deadline, the request's read timeout
(:mod:`egress.transport.deadline`): a proxy that drip-feeds its answer cannot hold a request
longer than that.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import h11
import httpx

from egress.errors import (
    ProxyAuthRequired,
    ProxyDenied,
    ProxyError,
    ProxyTLSError,
    ProxyUnreachable,
    UnsupportedRoute,
)
from egress.settings import ProxyURL, Settings
from egress.transport import deadline
from egress.transport.failures import (
    ErrorClasses,
    HopFailure,
    NoAnswer,
    find_cause,
    pool_exhausted,
    proxy_answer_detail,
    proxy_no_answer,
    proxy_refused,
    proxy_tls_failed,
    proxy_unreachable,
    reason_of,
    refusal_by_proxy,
    scrub_chain,
)
from egress.transport.plan import DEFAULT_TIMEOUT_SECONDS, Plan, Planner, PoolKey
from egress.transport.trust import VerifyTypes, origin_ssl_context, proxy_ssl_context

if TYPE_CHECKING:
    from httpx._client import EventHook
    from httpx._types import AuthTypes, CookieTypes, HeaderTypes, QueryParamTypes, TimeoutTypes

__all__ = [
    "DECISION_EXTENSION",
    "DEFAULT_LIMITS",
    "DEFAULT_TIMEOUT",
    "HTTPX_ERRORS",
    "AsyncClient",
    "AsyncEgressTransport",
    "AsyncHopTracker",
    "Client",
    "EgressTransport",
    "HTTPXProxyAuthRequired",
    "HTTPXProxyDenied",
    "HTTPXProxyError",
    "HTTPXProxyPoolTimeout",
    "HTTPXProxyTLSError",
    "HTTPXProxyUnreachable",
    "HTTPXUnsupportedRoute",
    "HopTracker",
    "SyncHopTracker",
]

DEFAULT_TIMEOUT = httpx.Timeout(DEFAULT_TIMEOUT_SECONDS)
"""See :data:`~egress.transport.plan.DEFAULT_TIMEOUT_SECONDS`."""
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
"""httpx's defaults, applied to each pool (each proxy, the direct pool)."""
DEFAULT_MAX_REDIRECTS = 20
"""httpx's default."""
DECISION_EXTENSION = "egress_decision"
"""``response.extensions[DECISION_EXTENSION]`` is the :class:`~egress.router.Decision` applied
(the decision for the request's origin: its ``url`` is ``scheme://host[:port]``)."""
PLAN_CACHE_SIZE = 1024
"""Origins whose plan a transport keeps; past that the cache starts afresh."""


# ---------------------------------------------------------------------------------------------
# The error classes: egress's and httpx's at once.


class HTTPXProxyUnreachable(ProxyUnreachable, httpx.ConnectError):
    """:class:`~egress.errors.ProxyUnreachable` from ``egress.Client``; an httpx.ConnectError."""


class HTTPXProxyPoolTimeout(ProxyUnreachable, httpx.PoolTimeout):
    """:class:`~egress.errors.ProxyUnreachable` from ``egress.Client`` for a request that found no
    free connection to the proxy in time; an httpx.PoolTimeout."""


class HTTPXProxyTLSError(ProxyTLSError, httpx.ConnectError):
    """:class:`~egress.errors.ProxyTLSError` from ``egress.Client``; an httpx.ConnectError."""


class HTTPXProxyDenied(ProxyDenied, httpx.ProxyError):
    """:class:`~egress.errors.ProxyDenied` from ``egress.Client``; an httpx.ProxyError."""


class HTTPXProxyAuthRequired(ProxyAuthRequired, httpx.ProxyError):
    """:class:`~egress.errors.ProxyAuthRequired` from ``egress.Client``; an httpx.ProxyError."""


class HTTPXProxyError(ProxyError, httpx.ProxyError):
    """:class:`~egress.errors.ProxyError` from ``egress.Client``; an httpx.ProxyError."""


class HTTPXUnsupportedRoute(UnsupportedRoute, httpx.UnsupportedProtocol):
    """:class:`~egress.errors.UnsupportedRoute` from ``egress.Client``; an UnsupportedProtocol."""


HTTPX_ERRORS: ErrorClasses = {
    "unreachable": HTTPXProxyUnreachable,
    "tls": HTTPXProxyTLSError,
    "denied": HTTPXProxyDenied,
    "auth": HTTPXProxyAuthRequired,
    "proxy": HTTPXProxyError,
    "pool": HTTPXProxyPoolTimeout,
    "route": HTTPXUnsupportedRoute,
}


# ---------------------------------------------------------------------------------------------
# Following httpcore's trace events of one proxied request.

_NO_HEADERS: Mapping[str, str] = {}


class HopTracker:
    """Follows the httpcore ``trace`` events of one proxied request to tell which hop failed.

    In a proxy pool every connection goes to the proxy, so httpcore 1.0.9 reports (checked
    against Squid 5.7, http:// and https:// proxies):

    ==========================================  ===============================================
    ``connection.connect_tcp.*``                TCP to the proxy (``complete``: its stream)
    ``connection.start_tls.*``                  TLS to an ``https://`` proxy
    ``http11.send_request_headers.started``     ``info["request"].method == b"CONNECT"``: the
                                                CONNECT; else the request itself (to the proxy
                                                in absolute form, or to the origin in a tunnel)
    ``http11.receive_response_headers.complete`` ``return_value`` = (version, status, reason,
                                                headers): the proxy's answer to CONNECT
    ``proxy.start_tls.*``                       TLS to the origin, inside the tunnel
    ==========================================  ===============================================

    A request that reuses a kept-alive connection sees none of the connect events: its first
    event is the request itself, and the tracker is done. From then on it only passes events
    on to ``then``, the caller's own hook, which it also puts back in the request's extensions
    (httpcore reads the hook there for each event) so later events cost nothing extra.

    When the CONNECT is sent, the tracker arms a :mod:`~egress.transport.deadline` of ``limit``
    seconds (the read timeout) on the proxy's socket; the proxy's answer disarms it.
    """

    __slots__ = (
        "_deadline",
        "_stream",
        "absolute_form",
        "done",
        "extensions",
        "headers",
        "limit",
        "phase",
        "reason_phrase",
        "status",
        "then",
    )

    def __init__(
        self,
        *,
        absolute_form: bool,
        then: Any = None,
        extensions: dict[str, Any] | None = None,
        limit: float | None = None,
    ) -> None:
        self.absolute_form = absolute_form
        self.then = then
        """The caller's own trace hook, called after the tracker for every event."""
        self.extensions = extensions
        """The request's extensions as httpcore sees them (where the hook is looked up)."""
        self.limit = limit
        """The deadline for the proxy's complete answer to CONNECT, in seconds (or None)."""
        self.phase = "pool"
        self.done = False
        self.status: int | None = None
        self.reason_phrase = ""
        self.headers: Mapping[str, str] = _NO_HEADERS
        self._stream: Any = None
        self._deadline: deadline.Deadline | None = None

    def step(self, name: str, info: Mapping[str, Any]) -> None:
        """Take one event into account (the sync and async hooks call this)."""
        if self.done:
            return
        if name == "http11.send_request_headers.started":
            method = getattr(info.get("request"), "method", b"")
            if method == b"CONNECT":
                self.phase = "proxy-connect"
                self._arm()
            else:
                self.phase = "proxy-request" if self.absolute_form else "origin"
                self.done = True
                self._detach()
        elif name == "connection.connect_tcp.started":
            self.phase = "proxy-tcp"
        elif name in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            self._stream = info.get("return_value")
        elif name == "connection.start_tls.started":
            self.phase = "proxy-tls"
        elif name == "http11.receive_response_headers.complete" and self.phase == "proxy-connect":
            self._disarm()
            answer = info.get("return_value")
            if isinstance(answer, tuple) and len(answer) == 4:
                _, status, reason, headers = answer
                self.status = status if isinstance(status, int) else None
                if isinstance(reason, bytes):
                    self.reason_phrase = reason.decode("ascii", "replace")
                self.headers = {
                    k.decode("latin-1").lower(): v.decode("latin-1")
                    for k, v in headers
                    if isinstance(k, bytes) and isinstance(v, bytes)
                }
        elif name == "proxy.start_tls.started":
            self.phase = "origin-tls"

    def _arm(self) -> None:
        if self.limit is None or self._stream is None:
            return
        sock = self._stream.get_extra_info("socket")
        if sock is not None:
            self._deadline = deadline.arm(sock, self.limit)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()

    def _detach(self) -> None:
        extensions = self.extensions
        if extensions is not None:
            if self.then is None:
                extensions.pop("trace", None)
            else:
                extensions["trace"] = self.then

    def close(self) -> None:
        """The request is answered or failed: disarm the deadline, drop the stream."""
        self._disarm()
        self._stream = None

    @property
    def expired(self) -> bool:
        """True when the CONNECT deadline passed (the tracker shut the socket down)."""
        return self._deadline is not None and self._deadline.expired

    def failure(
        self, exc: httpx.TransportError, planner: Planner, plan: Plan, method: str = "GET"
    ) -> HopFailure | None:
        """The proxy-hop failure ``exc`` stands for, or None when it is the origin's own."""
        decision = plan.decision
        if self.expired:
            return proxy_no_answer(decision, "deadline", seconds=self.limit)
        if isinstance(exc, httpx.ProxyError) or self.phase == "proxy-connect":
            status = self.status
            if status is None and isinstance(exc, httpx.ProxyError):
                status = _status_of(str(exc))
                if status is not None:
                    self.reason_phrase = str(exc).strip()[4:]
            if status is not None and not 200 <= status < 300:
                return proxy_refused(
                    decision,
                    status,
                    method="CONNECT",
                    reason_phrase=self.reason_phrase,
                    detail=proxy_answer_detail(self.headers),
                    username=planner.settings.proxy.username,
                )
            return proxy_no_answer(decision, _no_answer(exc), seconds=self.limit)
        if self.phase == "proxy-request":
            return proxy_no_answer(decision, _no_answer(exc), method=method, seconds=self.limit)
        reason = planner.scrub(_reason(exc))
        if self.phase == "proxy-tcp":
            return proxy_unreachable(decision, reason)
        if self.phase == "proxy-tls":
            if isinstance(exc, httpx.TimeoutException):
                return proxy_unreachable(decision, reason, hop="proxy-tls")
            verify = find_cause(exc, ssl.SSLCertVerificationError)
            if verify is not None:
                why = planner.scrub(verify.verify_message or reason)
                return proxy_tls_failed(decision, why, certificate=True)
            return proxy_tls_failed(decision, reason, certificate=False)
        return None


class SyncHopTracker(HopTracker):
    """The tracker as a sync trace hook (``egress.Client``)."""

    __slots__ = ()

    def __call__(self, name: str, info: Mapping[str, Any]) -> None:
        self.step(name, info)
        if self.then is not None:
            self.then(name, info)


class AsyncHopTracker(HopTracker):
    """The tracker as an async trace hook (``egress.AsyncClient``)."""

    __slots__ = ()

    async def __call__(self, name: str, info: Mapping[str, Any]) -> None:
        self.step(name, info)
        if self.then is not None:
            await self.then(name, info)


def _status_of(text: str) -> int | None:
    """The status code httpcore puts first in a refused CONNECT's message ("403 Forbidden")."""
    head = text.strip()[:3]
    return int(head) if len(head) == 3 and head.isdigit() else None


def _no_answer(exc: httpx.TransportError) -> NoAnswer:
    """Why the proxy's answer never came, from the httpx error."""
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if find_cause(exc, h11.RemoteProtocolError) is not None:
        return "garbage"  # h11 could not read it as HTTP
    return "closed"


def _reason(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.TimeoutException) and not find_cause(exc, OSError):
        return "timed out"
    return reason_of(exc)


# ---------------------------------------------------------------------------------------------
# The transports: the shared core, then two thin ones (sync, async).

_Pool = TypeVar("_Pool", httpx.HTTPTransport, httpx.AsyncHTTPTransport)
_Tracker = TypeVar("_Tracker", SyncHopTracker, AsyncHopTracker)


class _Routing(Generic[_Pool, _Tracker]):
    """What the sync and async transports share: the planner, both trusts and the pools."""

    _tracker_class: type[_Tracker]

    def __init__(
        self,
        settings: Settings,
        *,
        verify: VerifyTypes = True,
        limits: httpx.Limits = DEFAULT_LIMITS,
        retries: int = 0,
    ) -> None:
        self._planner = Planner(settings, errors=HTTPX_ERRORS)
        self._origin_context = origin_ssl_context(settings.proxy, verify)
        proxies = (settings.proxy.http_proxy, settings.proxy.https_proxy)
        self._proxy_context = (
            proxy_ssl_context(settings.proxy)
            if any(p is not None and p.scheme == "https" for p in proxies)
            else None
        )
        self._limits = limits
        self._retries = retries
        self._pools: dict[PoolKey, _Pool] = {}
        self._plans: dict[tuple[str, bytes, int | None], Plan] = {}
        self._lock = threading.Lock()

    @property
    def settings(self) -> Settings:
        return self._planner.settings

    def plan(self, url: httpx.URL | str) -> Plan:
        """The plan for one request URL, kept per origin (see :class:`Planner`)."""
        if isinstance(url, str):
            url = httpx.URL(url)
        key = (url.scheme, url.raw_host, url.port)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._planner.plan_origin(url.scheme, url.raw_host.decode("ascii"), url.port)
            if len(self._plans) >= PLAN_CACHE_SIZE:
                self._plans.clear()
            self._plans[key] = plan
        return plan

    def pool(self, key: PoolKey) -> _Pool:
        """The pool for ``key``, made on first use and then reused."""
        pool = self._pools.get(key)
        if pool is None:
            with self._lock:
                pool = self._pools.get(key)
                if pool is None:
                    pool = self._pools[key] = self._new_pool(self._proxy(key.proxy))
        return pool

    def _proxy(self, url: ProxyURL | None) -> httpx.Proxy | None:
        if url is None:
            return None
        return httpx.Proxy(
            str(url),
            auth=self._planner.credentials,
            ssl_context=self._proxy_context if url.scheme == "https" else None,
        )

    def _new_pool(self, proxy: httpx.Proxy | None) -> _Pool:
        raise NotImplementedError

    def _pool_options(self) -> dict[str, Any]:
        return {
            "verify": self._origin_context,
            "limits": self._limits,
            "retries": self._retries,
            "trust_env": False,
        }

    def _outgoing(
        self, request: httpx.Request, plan: Plan
    ) -> tuple[httpx.Request, _Tracker | None]:
        """The request handed to the pool, and its tracker on the proxy route.

        Proxied: a :class:`HopTracker` hooked in as the ``trace`` extension, chained with the
        caller's (and no ``sni_hostname``, which would reach the proxy's TLS). Direct with
        ``resolve``: the URL's host swapped for the IP, the Host header kept, ``sni_hostname``
        set to the name. Otherwise ``request`` itself. The caller's request is never changed:
        httpx builds redirects from it.
        """
        if plan.pool.proxy is None and plan.connect_ip is None:
            return request, None
        extensions = dict(request.extensions)
        tracker: _Tracker | None = None
        url = request.url
        if plan.pool.proxy is not None:
            timeouts = extensions.get("timeout")
            tracker = self._tracker_class(
                absolute_form=plan.absolute_form,
                then=extensions.get("trace"),
                limit=timeouts.get("read") if isinstance(timeouts, dict) else None,
            )
            extensions["trace"] = tracker
            extensions.pop("sni_hostname", None)
        elif plan.connect_ip is not None:
            extensions["sni_hostname"] = plan.host
            url = request.url.copy_with(host=plan.connect_ip)
        outgoing = httpx.Request(
            request.method,
            url,
            headers=request.headers,
            stream=request.stream,
            extensions=extensions,
        )
        if tracker is not None:
            # httpx copied the dict; httpcore reads this very one for each event's hook
            tracker.extensions = outgoing.extensions
        return outgoing, tracker

    def _failed(
        self, exc: httpx.TransportError, request: httpx.Request, plan: Plan, tracker: HopTracker
    ) -> Exception | None:
        """The egress error to raise for ``exc`` on the proxy route, or None to let it be.

        Either way the proxy's password is masked in the whole exception chain.
        """
        planner = self._planner
        scrub_chain(exc, planner.secrets)
        if isinstance(exc, httpx.PoolTimeout) and not tracker.expired:
            timeouts = request.extensions.get("timeout")
            seconds = timeouts.get("pool") if isinstance(timeouts, dict) else None
            failure: HopFailure | None = pool_exhausted(
                plan.decision, seconds, self._limits.max_connections
            )
        else:
            failure = tracker.failure(exc, planner, plan, request.method)
        return None if failure is None else failure.error(HTTPX_ERRORS)

    def _refusal(self, plan: Plan, response: httpx.Response, method: str) -> HopFailure | None:
        return refusal_by_proxy(
            plan.decision,
            response.status_code,
            response.headers,
            method=method,
            username=self._planner.settings.proxy.username,
        )

    def __repr__(self) -> str:
        proxy = self.settings.proxy
        shown = sorted({proxy.display(p) or "" for p in (proxy.http_proxy, proxy.https_proxy) if p})
        state = "on" if proxy.enabled else "off"
        return f"<{type(self).__name__} proxy {state} {shown} pools={len(self._pools)}>"


class EgressTransport(_Routing[httpx.HTTPTransport, SyncHopTracker], httpx.BaseTransport):
    """An httpx transport that routes each request by the router (see the module docstring)."""

    _tracker_class = SyncHopTracker

    def _new_pool(self, proxy: httpx.Proxy | None) -> httpx.HTTPTransport:
        return httpx.HTTPTransport(proxy=proxy, **self._pool_options())

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        plan = self.plan(request.url)
        outgoing, tracker = self._outgoing(request, plan)
        pool = self._pools.get(plan.pool) or self.pool(plan.pool)
        if tracker is None:
            response = pool.handle_request(outgoing)
            response.extensions[DECISION_EXTENSION] = plan.decision
            return response
        try:
            response = pool.handle_request(outgoing)
        except httpx.TransportError as exc:
            error = self._failed(exc, request, plan, tracker)
            if error is not None:
                raise error from exc
            raise
        finally:
            tracker.close()
        if plan.absolute_form:
            refusal = self._refusal(plan, response, request.method)
            if refusal is not None:
                try:
                    response.read()  # so the connection to the proxy goes back to the pool
                finally:
                    response.close()
                raise refusal.error(HTTPX_ERRORS)
        response.extensions[DECISION_EXTENSION] = plan.decision
        return response

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()


class AsyncEgressTransport(
    _Routing[httpx.AsyncHTTPTransport, AsyncHopTracker], httpx.AsyncBaseTransport
):
    """The async twin of :class:`EgressTransport`; same decisions, same pools per key."""

    _tracker_class = AsyncHopTracker

    def _new_pool(self, proxy: httpx.Proxy | None) -> httpx.AsyncHTTPTransport:
        return httpx.AsyncHTTPTransport(proxy=proxy, **self._pool_options())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        plan = self.plan(request.url)
        outgoing, tracker = self._outgoing(request, plan)
        pool = self._pools.get(plan.pool) or self.pool(plan.pool)
        if tracker is None:
            response = await pool.handle_async_request(outgoing)
            response.extensions[DECISION_EXTENSION] = plan.decision
            return response
        try:
            response = await pool.handle_async_request(outgoing)
        except httpx.TransportError as exc:
            error = self._failed(exc, request, plan, tracker)
            if error is not None:
                raise error from exc
            raise
        finally:
            tracker.close()
        if plan.absolute_form:
            refusal = self._refusal(plan, response, request.method)
            if refusal is not None:
                try:
                    await response.aread()
                finally:
                    await response.aclose()
                raise refusal.error(HTTPX_ERRORS)
        response.extensions[DECISION_EXTENSION] = plan.decision
        return response

    async def aclose(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()


# ---------------------------------------------------------------------------------------------
# The clients.


class Client(httpx.Client):
    """An ``httpx.Client`` that sends every request, redirect hops included, where the router
    says: through the configured proxy or direct (see the module docstring).

    Only the options that make sense here are accepted: no ``proxy``/``mounts``/``transport``
    (the router decides) and ``trust_env`` is always off (settings come from ``settings``).
    ``verify`` is the *origin* trust; the proxy's trust is ``settings.proxy``. ``limits`` and
    ``retries`` (connect retries) apply to each pool.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        verify: VerifyTypes = True,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT,
        limits: httpx.Limits = DEFAULT_LIMITS,
        retries: int = 0,
        follow_redirects: bool = False,
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        auth: AuthTypes | None = None,
        params: QueryParamTypes | None = None,
        headers: HeaderTypes | None = None,
        cookies: CookieTypes | None = None,
        base_url: httpx.URL | str = "",
        event_hooks: Mapping[str, list[EventHook]] | None = None,
    ) -> None:
        self._egress = EgressTransport(settings, verify=verify, limits=limits, retries=retries)
        super().__init__(
            auth=auth,
            params=params,
            headers=headers,
            cookies=cookies,
            timeout=timeout,
            follow_redirects=follow_redirects,
            max_redirects=max_redirects,
            event_hooks=event_hooks,
            base_url=base_url,
            transport=self._egress,
            trust_env=False,
        )

    @property
    def settings(self) -> Settings:
        return self._egress.settings

    @property
    def egress_transport(self) -> EgressTransport:
        return self._egress

    def __repr__(self) -> str:
        return f"<egress.Client {self._egress!r}>"


class AsyncClient(httpx.AsyncClient):
    """The async twin of :class:`Client`: an ``httpx.AsyncClient`` routed by the router."""

    def __init__(
        self,
        settings: Settings,
        *,
        verify: VerifyTypes = True,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT,
        limits: httpx.Limits = DEFAULT_LIMITS,
        retries: int = 0,
        follow_redirects: bool = False,
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        auth: AuthTypes | None = None,
        params: QueryParamTypes | None = None,
        headers: HeaderTypes | None = None,
        cookies: CookieTypes | None = None,
        base_url: httpx.URL | str = "",
        event_hooks: Mapping[str, list[EventHook]] | None = None,
    ) -> None:
        self._egress = AsyncEgressTransport(settings, verify=verify, limits=limits, retries=retries)
        super().__init__(
            auth=auth,
            params=params,
            headers=headers,
            cookies=cookies,
            timeout=timeout,
            follow_redirects=follow_redirects,
            max_redirects=max_redirects,
            event_hooks=event_hooks,
            base_url=base_url,
            transport=self._egress,
            trust_env=False,
        )

    @property
    def settings(self) -> Settings:
        return self._egress.settings

    @property
    def egress_transport(self) -> AsyncEgressTransport:
        return self._egress

    def __repr__(self) -> str:
        return f"<egress.AsyncClient {self._egress!r}>"
