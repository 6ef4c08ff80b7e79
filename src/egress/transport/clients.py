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

Which hop failed. Each proxy pool watches the setup of its connections to the proxy
(:mod:`egress.transport.proxy_hop`, which holds the table of what httpcore does). Failures before
the tunnel is up become ``ProxyUnreachable``, ``ProxyTLSError``, ``ProxyDenied`` (403),
``ProxyAuthRequired`` (407) or ``ProxyError`` (no usable answer: closed, not HTTP, timed out);
so do failures of a plain-HTTP request sent to the proxy in absolute form, and a queued request
that found no free connection to the proxy in time (``ProxyUnreachable``, also an
``httpx.PoolTimeout``). The origin's own failures stay httpx errors. A plain-HTTP request
answered 403/407 *by the proxy itself* raises too; the proxy's own answer is recognised by
Squid's ``X-Squid-Error`` header or an RFC 9209 ``Proxy-Status`` header with an ``error``
parameter (a 407 also by ``Proxy-Authenticate``). Other answers, the proxy's 5xx about an
unreachable origin included, come back as responses, as they would from any HTTP proxy client.
The proxy's password is masked in the whole chain of every error raised on the proxy route.
A certificate failure of the origin's TLS inside a tunnel is checked once more, off the hot
path, by :mod:`egress.transport.intercept`: when the proxy presented a certificate signed by a
CA the operator added for it, the error is ``TLSIntercepted`` (hop ``origin-tls``).

The whole CONNECT exchange has a deadline, the request's read timeout: a proxy that drip-feeds
its answer cannot hold a request longer than that. A request on a kept-alive connection costs
one lookup of its origin's plan and pool, and nothing else.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio.to_thread
import httpx

from egress import observe
from egress.errors import (
    ProxyAuthRequired,
    ProxyDenied,
    ProxyError,
    ProxyTLSError,
    ProxyUnreachable,
    TLSIntercepted,
    UnsupportedRoute,
)
from egress.settings import ProxyURL, Settings
from egress.transport.failures import ErrorClasses, HopFailure, refusal_by_proxy, scrub_chain
from egress.transport.follow import Following, FollowsSource
from egress.transport.intercept import intercepted
from egress.transport.plan import DEFAULT_TIMEOUT_SECONDS, Plan, Planner, PoolKey
from egress.transport.proxy_hop import (
    HOPS_STARTED,
    AsyncHopBackend,
    HopBackend,
    Minter,
    classify,
    current_hop,
)
from egress.transport.trust import (
    VerifyTypes,
    operator_cas,
    origin_ssl_context,
    proxy_ssl_context,
)

if TYPE_CHECKING:
    from httpx._client import EventHook
    from httpx._types import AuthTypes, CookieTypes, HeaderTypes, QueryParamTypes, TimeoutTypes

    from egress.sources import SettingsSource

__all__ = [
    "DECISION_EXTENSION",
    "DEFAULT_LIMITS",
    "DEFAULT_TIMEOUT",
    "HTTPX_ERRORS",
    "SNAPSHOT_EXTENSION",
    "AsyncClient",
    "AsyncEgressTransport",
    "AsyncSourceTransport",
    "Client",
    "EgressTransport",
    "HTTPXProxyAuthRequired",
    "HTTPXProxyDenied",
    "HTTPXProxyError",
    "HTTPXProxyPoolTimeout",
    "HTTPXProxyTLSError",
    "HTTPXProxyUnreachable",
    "HTTPXTLSIntercepted",
    "HTTPXUnsupportedRoute",
    "SourceTransport",
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
SNAPSHOT_EXTENSION = "egress_snapshot"
"""For a client following a source: ``response.extensions[SNAPSHOT_EXTENSION]`` is the
:class:`~egress.sources.Snapshot` the request was planned and carried out with."""
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


class HTTPXTLSIntercepted(TLSIntercepted, httpx.ConnectError):
    """:class:`~egress.errors.TLSIntercepted` from ``egress.Client``; an httpx.ConnectError."""


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
    "intercepted": HTTPXTLSIntercepted,
}


# ---------------------------------------------------------------------------------------------
# The transports: the shared core, then two thin ones (sync, async).

_Pool = TypeVar("_Pool", httpx.HTTPTransport, httpx.AsyncHTTPTransport)


class _Routing(Generic[_Pool]):
    """What the sync and async transports share: the planner, both trusts and the pools."""

    def __init__(
        self,
        settings: Settings,
        *,
        verify: VerifyTypes = True,
        limits: httpx.Limits = DEFAULT_LIMITS,
        retries: int = 0,
        network_backend: Any = None,
    ) -> None:
        self._planner = Planner(settings, errors=HTTPX_ERRORS)
        self._origin_context = origin_ssl_context(settings.proxy, verify)
        proxies = (settings.proxy.http_proxy, settings.proxy.https_proxy)
        self._proxy_context = (
            proxy_ssl_context(settings.proxy)
            if any(p is not None and p.scheme == "https" for p in proxies)
            else None
        )
        self._operator_cas = operator_cas(settings.proxy)
        """Only the operator's CAs for the proxy: what a certificate failure inside the tunnel
        is checked against (is the proxy intercepting?); None when there are none."""
        self._limits = limits
        self._retries = retries
        self._network_backend = network_backend
        """Under the proxy pools' watch, instead of httpcore's own (tests: its mock backend)."""
        self._pools: dict[PoolKey, _Pool] = {}
        self._routes: dict[tuple[str, bytes, int | None], tuple[Plan, _Pool, bool]] = {}
        """Per origin (scheme, host, port): its plan, its pool, and whether that is a proxy's;
        a request costs one lookup."""
        self._lock = threading.Lock()

    @property
    def settings(self) -> Settings:
        return self._planner.settings

    def plan(self, url: httpx.URL | str) -> Plan:
        """The plan for one request URL (see :class:`Planner`); the same for a whole origin."""
        if isinstance(url, str):
            url = httpx.URL(url)
        route = self._routes.get((url.scheme, url.raw_host, url.port))
        if route is not None:
            return route[0]
        return self._planner.plan_origin(url.scheme, url.raw_host.decode("ascii"), url.port)

    def _route(self, url: httpx.URL) -> tuple[Plan, _Pool, bool]:
        """The plan and pool for ``url``'s origin, planned on first use and then kept."""
        key = (url.scheme, url.raw_host, url.port)
        route = self._routes.get(key)
        if route is None:
            plan = self.plan(url)
            route = (plan, self.pool(plan.pool), plan.pool.proxy is not None)
            if len(self._routes) >= PLAN_CACHE_SIZE:
                self._routes.clear()
            self._routes[key] = route
        return route

    def pool(self, key: PoolKey) -> _Pool:
        """The pool for ``key``, made on first use and then reused."""
        pool = self._pools.get(key)
        if pool is None:
            with self._lock:
                pool = self._pools.get(key)
                if pool is None:
                    mint = self._planner.authorization(key.proxy)
                    pool = self._pools[key] = self._new_pool(self._proxy(key.proxy), mint)
        return pool

    def _proxy(self, url: ProxyURL | None) -> httpx.Proxy | None:
        if url is None:
            return None
        return httpx.Proxy(
            str(url),
            auth=self._planner.credentials,
            ssl_context=self._proxy_context if url.scheme == "https" else None,
        )

    def _new_pool(self, proxy: httpx.Proxy | None, mint: Minter | None = None) -> _Pool:
        raise NotImplementedError

    def _pool_options(self) -> dict[str, Any]:
        return {
            "verify": self._origin_context,
            "limits": self._limits,
            "retries": self._retries,
            "trust_env": False,
        }

    def _pinned(self, request: httpx.Request, plan: Plan) -> httpx.Request:
        """A copy of ``request`` for a ``resolve`` name: the URL's host swapped for the IP, the
        Host header kept, ``sni_hostname`` set to the name (the caller's request is untouched:
        httpx builds redirects from it)."""
        extensions = {**request.extensions, "sni_hostname": plan.host}
        return httpx.Request(
            request.method,
            request.url.copy_with(host=plan.connect_ip),
            headers=request.headers,
            stream=request.stream,
            extensions=extensions,
        )

    def _failed(
        self, exc: httpx.TransportError, request: httpx.Request, plan: Plan, started: int
    ) -> Exception | None:
        """The egress error to raise for ``exc`` on the proxy route, or None to let it be.

        Either way the proxy's password is masked in the whole exception chain.
        """
        planner = self._planner
        scrub_chain(exc, planner.secrets)
        failure = classify(
            exc,
            current_hop(started),
            planner,
            plan,
            method=request.method,
            timeouts=request.extensions.get("timeout"),
            max_connections=self._limits.max_connections,
        )
        return None if failure is None else failure.error(HTTPX_ERRORS, planner.secrets)

    def _probe_interception(
        self, exc: httpx.TransportError, request: httpx.Request, plan: Plan, started: int
    ) -> Callable[[], Exception | None] | None:
        """For a certificate failure of the origin's TLS inside a tunnel this request set up:
        the (blocking) check whether the proxy intercepts, giving the error to raise. None, at
        no cost, for every other failure."""
        if self._operator_cas is None or not isinstance(exc, httpx.ConnectError):
            return None
        hop = current_hop(started)
        if hop is None or hop.phase != "origin-tls":
            return None
        timeouts = request.extensions.get("timeout")
        connect = timeouts.get("connect") if isinstance(timeouts, dict) else None
        planner = self._planner

        def probe() -> Exception | None:
            failure = intercepted(
                exc,
                planner,
                plan,
                operator_cas=self._operator_cas,
                proxy_context=self._proxy_context,
                timeout=connect,
            )
            return None if failure is None else failure.error(HTTPX_ERRORS, planner.secrets)

        return probe

    def _refusal(self, plan: Plan, response: httpx.Response, method: str) -> HopFailure | None:
        return refusal_by_proxy(
            plan.decision,
            response.status_code,
            response.headers,
            method=method,
            username=self._planner.settings.proxy.username,
            spn=self._planner.spn(plan.decision.proxy_url),
        )

    def __repr__(self) -> str:
        proxy = self.settings.proxy
        shown = sorted({proxy.display(p) or "" for p in (proxy.http_proxy, proxy.https_proxy) if p})
        state = "on" if proxy.enabled else "off"
        return f"<{type(self).__name__} proxy {state} {shown} pools={len(self._pools)}>"


class EgressTransport(_Routing[httpx.HTTPTransport], httpx.BaseTransport):
    """An httpx transport that routes each request by the router (see the module docstring)."""

    def _new_pool(
        self, proxy: httpx.Proxy | None, mint: Minter | None = None
    ) -> httpx.HTTPTransport:
        pool = httpx.HTTPTransport(proxy=proxy, **self._pool_options())
        if proxy is not None:
            # httpx offers no parameter for it: the backend of its httpcore pool is replaced
            core = pool._pool
            backend = self._network_backend or core._network_backend
            core._network_backend = HopBackend(backend, mint)
        return pool

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        route = self._routes.get((url.scheme, url.raw_host, url.port)) or self._route(url)
        plan, pool, proxied = route
        observe.decision(plan.decision)
        if not proxied:
            if plan.connect_ip is not None:
                request = self._pinned(request, plan)
            try:
                response = pool.handle_request(request)
            except httpx.TransportError as exc:
                observe.hop_failure("origin", plan.decision, exc)
                raise
            response.extensions[DECISION_EXTENSION] = plan.decision
            return response
        started = HOPS_STARTED[0]
        try:
            response = pool.handle_request(request)
        except httpx.TransportError as exc:
            error = self._failed(exc, request, plan, started)
            if error is None:
                probe = self._probe_interception(exc, request, plan, started)
                error = probe() if probe is not None else None
            observe.failed(plan.decision, error or exc, HTTPX_ERRORS)
            if error is not None:
                raise error from exc
            raise
        if plan.absolute_form:
            refusal = self._refusal(plan, response, request.method)
            if refusal is not None:
                try:
                    response.read()  # so the connection to the proxy goes back to the pool
                finally:
                    response.close()
                error = refusal.error(HTTPX_ERRORS, self._planner.secrets)
                observe.hop_failure(refusal.kind, plan.decision, error)
                raise error
        response.extensions[DECISION_EXTENSION] = plan.decision
        return response

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
            self._routes = {}
        for pool in pools:
            pool.close()


class AsyncEgressTransport(_Routing[httpx.AsyncHTTPTransport], httpx.AsyncBaseTransport):
    """The async twin of :class:`EgressTransport`; same decisions, same pools per key."""

    def _new_pool(
        self, proxy: httpx.Proxy | None, mint: Minter | None = None
    ) -> httpx.AsyncHTTPTransport:
        pool = httpx.AsyncHTTPTransport(proxy=proxy, **self._pool_options())
        if proxy is not None:
            core = pool._pool
            backend = self._network_backend or core._network_backend
            core._network_backend = AsyncHopBackend(backend, mint)
        return pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        route = self._routes.get((url.scheme, url.raw_host, url.port)) or self._route(url)
        plan, pool, proxied = route
        observe.decision(plan.decision)
        if not proxied:
            if plan.connect_ip is not None:
                request = self._pinned(request, plan)
            try:
                response = await pool.handle_async_request(request)
            except httpx.TransportError as exc:
                observe.hop_failure("origin", plan.decision, exc)
                raise
            response.extensions[DECISION_EXTENSION] = plan.decision
            return response
        started = HOPS_STARTED[0]
        try:
            response = await pool.handle_async_request(request)
        except httpx.TransportError as exc:
            error = self._failed(exc, request, plan, started)
            if error is None:
                probe = self._probe_interception(exc, request, plan, started)
                error = await anyio.to_thread.run_sync(probe) if probe is not None else None
            observe.failed(plan.decision, error or exc, HTTPX_ERRORS)
            if error is not None:
                raise error from exc
            raise
        if plan.absolute_form:
            refusal = self._refusal(plan, response, request.method)
            if refusal is not None:
                try:
                    await response.aread()
                finally:
                    await response.aclose()
                error = refusal.error(HTTPX_ERRORS, self._planner.secrets)
                observe.hop_failure(refusal.kind, plan.decision, error)
                raise error
        response.extensions[DECISION_EXTENSION] = plan.decision
        return response

    async def aclose(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
            self._routes = {}
        for pool in pools:
            await pool.aclose()


# ---------------------------------------------------------------------------------------------
# Following a settings source (egress.sources; the bookkeeping is egress.transport.follow).


def _share(new: _Routing[Any], owner: _Routing[Any]) -> None:
    """``new`` uses ``owner``'s pools (their proxy settings are equal)."""
    new._pools = owner._pools
    new._lock = owner._lock


class _ReleasingStream(httpx.SyncByteStream):
    """A response body that tells its source transport when it is closed (the connection is
    back in its pool, or gone): until then, the pools it came from stay open."""

    def __init__(self, stream: httpx.SyncByteStream, release: Callable[[], None]) -> None:
        self._stream = stream
        self._release: Callable[[], None] | None = release

    def __iter__(self) -> Iterator[bytes]:
        yield from self._stream

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()


class _AsyncReleasingStream(httpx.AsyncByteStream):
    """The async twin of :class:`_ReleasingStream`."""

    def __init__(
        self, stream: httpx.AsyncByteStream, release: Callable[[], Awaitable[None]]
    ) -> None:
        self._stream = stream
        self._release: Callable[[], Awaitable[None]] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            release, self._release = self._release, None
            if release is not None:
                await release()


class SourceTransport(FollowsSource[EgressTransport], httpx.BaseTransport):
    """An httpx transport that follows a :class:`~egress.sources.SettingsSource`.

    Each request takes the source's current snapshot when it starts and is planned and carried
    out by that snapshot's :class:`EgressTransport` (``response.extensions`` carries the
    snapshot under :data:`SNAPSHOT_EXTENSION`). Snapshots with the same proxy settings share
    pools; when the proxy settings change, the previous pools are closed as soon as no request
    (no open response) uses them. The source belongs to the caller: closing the transport does
    not close it.
    """

    def __init__(self, source: SettingsSource, **options: Any) -> None:
        self._following: Following[EgressTransport] = Following(
            source, lambda settings: EgressTransport(settings, **options), _share
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        following = self._following
        generation, done = following.enter()
        for pools in done:
            pools.owner.close()
        pools_used = generation.pools

        def release() -> None:
            retired = following.leave(pools_used)
            if retired is not None:
                retired.owner.close()

        try:
            response = generation.transport.handle_request(request)
        except BaseException:
            release()
            raise
        response.extensions[SNAPSHOT_EXTENSION] = generation.snapshot
        stream = response.stream
        if isinstance(stream, httpx.SyncByteStream):
            response.stream = _ReleasingStream(stream, release)
        else:  # pragma: no cover - httpx's pools always answer with a sync stream here
            release()
        return response

    def close(self) -> None:
        for pools in self._following.close_all():
            pools.owner.close()

    def __repr__(self) -> str:
        return f"<SourceTransport {self._following.source!r}>"


class AsyncSourceTransport(FollowsSource[AsyncEgressTransport], httpx.AsyncBaseTransport):
    """The async twin of :class:`SourceTransport`."""

    def __init__(self, source: SettingsSource, **options: Any) -> None:
        self._following: Following[AsyncEgressTransport] = Following(
            source, lambda settings: AsyncEgressTransport(settings, **options), _share
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        following = self._following
        generation, done = following.enter()
        for pools in done:
            await pools.owner.aclose()
        pools_used = generation.pools

        async def release() -> None:
            retired = following.leave(pools_used)
            if retired is not None:
                await retired.owner.aclose()

        try:
            response = await generation.transport.handle_async_request(request)
        except BaseException:
            await release()
            raise
        response.extensions[SNAPSHOT_EXTENSION] = generation.snapshot
        stream = response.stream
        if isinstance(stream, httpx.AsyncByteStream):
            response.stream = _AsyncReleasingStream(stream, release)
        else:  # pragma: no cover
            await release()
        return response

    async def aclose(self) -> None:
        for pools in self._following.close_all():
            await pools.owner.aclose()

    def __repr__(self) -> str:
        return f"<AsyncSourceTransport {self._following.source!r}>"


# ---------------------------------------------------------------------------------------------
# The clients.


def _fixed(what: str, settings: Settings | None, source: SettingsSource | None) -> Settings | None:
    """``settings`` for a client with fixed settings, None for one following ``source``;
    exactly one of the two must be given."""
    if source is not None and settings is not None:
        raise TypeError(f"{what}: give settings or source=, not both")
    if source is None and settings is None:
        raise TypeError(f"{what}: give settings (egress.load_settings(...)) or source=")
    return settings


class Client(httpx.Client):
    """An ``httpx.Client`` that sends every request, redirect hops included, where the router
    says: through the configured proxy or direct (see the module docstring).

    Only the options that make sense here are accepted: no ``proxy``/``mounts``/``transport``
    (the router decides) and ``trust_env`` is always off (settings come from ``settings``).
    ``verify`` is the *origin* trust; the proxy's trust is ``settings.proxy``. ``limits`` and
    ``retries`` (connect retries) apply to each pool.

    ``source=`` (an :mod:`egress.sources` source) instead of ``settings``: every request takes
    the source's newest snapshot when it starts (see :class:`SourceTransport`).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        source: SettingsSource | None = None,
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
        fixed = _fixed("egress.Client", settings, source)
        options: dict[str, Any] = {"verify": verify, "limits": limits, "retries": retries}
        self._egress: EgressTransport | SourceTransport = (
            EgressTransport(fixed, **options)
            if fixed is not None
            else SourceTransport(source, **options)  # type: ignore[arg-type]
        )
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
        """The transport carrying requests now (with a source: its current snapshot's)."""
        egress = self._egress
        return egress.current() if isinstance(egress, SourceTransport) else egress

    @property
    def source(self) -> SettingsSource | None:
        """The source followed, or None for fixed settings."""
        egress = self._egress
        return egress.source if isinstance(egress, SourceTransport) else None

    def __repr__(self) -> str:
        return f"<egress.Client {self._egress!r}>"


class AsyncClient(httpx.AsyncClient):
    """The async twin of :class:`Client`: an ``httpx.AsyncClient`` routed by the router."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        source: SettingsSource | None = None,
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
        fixed = _fixed("egress.AsyncClient", settings, source)
        options: dict[str, Any] = {"verify": verify, "limits": limits, "retries": retries}
        self._egress: AsyncEgressTransport | AsyncSourceTransport = (
            AsyncEgressTransport(fixed, **options)
            if fixed is not None
            else AsyncSourceTransport(source, **options)  # type: ignore[arg-type]
        )
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
        """The transport carrying requests now (with a source: its current snapshot's)."""
        egress = self._egress
        return egress.current() if isinstance(egress, AsyncSourceTransport) else egress

    @property
    def source(self) -> SettingsSource | None:
        """The source followed, or None for fixed settings."""
        egress = self._egress
        return egress.source if isinstance(egress, AsyncSourceTransport) else None

    def __repr__(self) -> str:
        return f"<egress.AsyncClient {self._egress!r}>"
