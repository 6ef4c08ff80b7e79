"""``egress.requests_session``: a ``requests.Session`` routed like ``egress.Client``.

The session has ``trust_env=False`` and one :class:`EgressAdapter` mounted for ``http://`` and
``https://``. The adapter decides every request it sends (redirect hops included: requests calls
``send`` once per hop) with the shared :class:`~egress.transport.plan.Planner`, so requests' own
``NO_PROXY`` logic and any ``proxies=`` given per call or on the session are not used. Then:

- ``proxy``: a urllib3 ``ProxyManager`` per proxy URL, made on first use (keep-alive: one CONNECT
  tunnel per origin), with Basic credentials as proxy headers (CONNECT and absolute-form requests
  only), or with Negotiate a fresh Kerberos token in each new CONNECT and in each absolute-form
  request, and, for an ``https://`` proxy, the proxy's own trust as ``proxy_ssl_context``;
- ``direct``: the adapter's ``PoolManager``; a ``resolve`` name is connected to at its IP while
  the Host header, SNI and certificate check keep the name (urllib3's ``server_hostname``), in
  pools of its own;
- ``tunnel``: refused with :class:`RequestsUnsupportedRoute`, as in ``egress.Client``.

Defaults as ``egress.Client``: a request without ``timeout=`` gets the adapter's (10 s connect
and read), and the proxy's complete answer to CONNECT must arrive within the read timeout (a
:mod:`~egress.transport.deadline`; http.client bounds each read only). Trust is the adapter's
(``verify=`` as for ``egress.Client``); a session's ``verify``/``cert`` are not used.

Errors are ``egress.Client``'s, as requests exceptions: proxy-hop failures become the egress
errors (urllib3 wraps every error that happens before the proxy accepted the connection in its
``ProxyError`` and reports a refused CONNECT as ``Tunnel connection failed: <status> <reason>``;
the adapter's own connection class marks a CONNECT answer that never came, and a plain-HTTP
request sent to the proxy in absolute form has only the proxy as its peer). The CONNECT answer's
headers are not available here, so the messages carry no ``X-Squid-Error`` code. A certificate
failure of the origin's TLS inside a tunnel becomes ``RequestsTLSIntercepted`` when the proxy
presented a certificate signed by a CA the operator added for it
(:mod:`egress.transport.intercept`). No httpx is
imported.
"""

from __future__ import annotations

import contextvars
import http.client
import re
import ssl
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import requests
import urllib3
from requests.adapters import BaseAdapter, HTTPAdapter
from requests.cookies import RequestsCookieJar, extract_cookies_to_jar
from requests.models import PreparedRequest
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPSConnectionPool

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
from egress.kerberos import KerberosFailure
from egress.settings import ProxyURL, Settings
from egress.transport import deadline
from egress.transport.failures import (
    ErrorClasses,
    HopFailure,
    NoAnswer,
    find_cause,
    kerberos_failed,
    proxy_no_answer,
    proxy_refused,
    proxy_tls_failed,
    proxy_unreachable,
    reason_of,
    refusal_by_proxy,
    scrub_chain,
)
from egress.transport.follow import Following, FollowsSource
from egress.transport.intercept import intercepted
from egress.transport.plan import DEFAULT_TIMEOUT_SECONDS, Plan, Planner, basic_token
from egress.transport.trust import (
    VerifyTypes,
    operator_cas,
    origin_ssl_context,
    proxy_ssl_context,
)

if TYPE_CHECKING:
    from egress.sources import SettingsSource

__all__ = [
    "DEFAULT_TIMEOUT",
    "REQUESTS_ERRORS",
    "EgressAdapter",
    "RequestsProxyAuthRequired",
    "RequestsProxyDenied",
    "RequestsProxyError",
    "RequestsProxyTLSError",
    "RequestsProxyUnreachable",
    "RequestsTLSIntercepted",
    "RequestsUnsupportedRoute",
    "SourceAdapter",
    "requests_session",
]

DEFAULT_TIMEOUT = (DEFAULT_TIMEOUT_SECONDS, DEFAULT_TIMEOUT_SECONDS)
"""(connect, read) for a request sent without ``timeout=``, as ``egress.Client``'s."""


class RequestsProxyUnreachable(ProxyUnreachable, requests.exceptions.ProxyError):
    """:class:`~egress.errors.ProxyUnreachable`; also a ``requests.exceptions.ProxyError``."""


class RequestsProxyTLSError(ProxyTLSError, requests.exceptions.ProxyError):
    """:class:`~egress.errors.ProxyTLSError`; also a ``requests.exceptions.ProxyError``."""


class RequestsProxyDenied(ProxyDenied, requests.exceptions.ProxyError):
    """:class:`~egress.errors.ProxyDenied`; also a ``requests.exceptions.ProxyError``."""


class RequestsProxyAuthRequired(ProxyAuthRequired, requests.exceptions.ProxyError):
    """:class:`~egress.errors.ProxyAuthRequired`; also a ``requests.exceptions.ProxyError``."""


class RequestsProxyError(ProxyError, requests.exceptions.ProxyError):
    """:class:`~egress.errors.ProxyError`; also a ``requests.exceptions.ProxyError``."""


class RequestsTLSIntercepted(TLSIntercepted, requests.exceptions.SSLError):
    """:class:`~egress.errors.TLSIntercepted` from ``requests_session``; a requests SSLError."""


class RequestsUnsupportedRoute(UnsupportedRoute, requests.exceptions.InvalidSchema):
    """:class:`~egress.errors.UnsupportedRoute`; also a ``requests.exceptions.InvalidSchema``."""


REQUESTS_ERRORS: ErrorClasses = {
    "unreachable": RequestsProxyUnreachable,
    "tls": RequestsProxyTLSError,
    "denied": RequestsProxyDenied,
    "auth": RequestsProxyAuthRequired,
    "proxy": RequestsProxyError,
    "pool": RequestsProxyUnreachable,
    "route": RequestsUnsupportedRoute,
    "intercepted": RequestsTLSIntercepted,
}

#: How http.client words a refused CONNECT (urllib3 2.x keeps it).
_TUNNEL_FAILED = re.compile(r"Tunnel connection failed:\s*(\d{3})\s*(.*)")


# ---------------------------------------------------------------------------------------------
# The CONNECT exchange, with its deadline and its own failure marker.

_MINT: contextvars.ContextVar[Callable[[], str] | None] = contextvars.ContextVar(
    "egress_requests_mint", default=None
)
"""Makes the ``Proxy-Authorization`` value of a new CONNECT tunnel (Negotiate), set per send."""

_CONNECT_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "egress_connect_deadline", default=None
)
"""The read timeout of the request being sent, which bounds the whole CONNECT answer."""


class ConnectAnswerMissing(OSError):
    """The proxy gave no usable answer to CONNECT (``why``); raised inside urllib3, read back
    by the adapter. Not a timeout class, so urllib3 does not report it as the origin's read
    timeout."""

    def __init__(self, why: NoAnswer, seconds: float | None) -> None:
        super().__init__(why)
        self.why: NoAnswer = why
        self.seconds = seconds


class _DeadlineHTTPSConnection(HTTPSConnection):
    """urllib3's HTTPS connection whose CONNECT exchange has a deadline and says how it failed."""

    def _tunnel(self) -> None:
        mint = _MINT.get()
        if mint is not None:  # a fresh Negotiate token for each new tunnel, never reused
            headers = dict(getattr(self, "_tunnel_headers", None) or {})
            headers["Proxy-Authorization"] = mint()
            self._tunnel_headers = headers
        limit = _CONNECT_DEADLINE.get()
        guard = deadline.arm(self.sock, limit) if limit is not None and self.sock else None
        try:
            super()._tunnel()
        except OSError as exc:
            if _TUNNEL_FAILED.search(str(exc)) or isinstance(exc, ConnectAnswerMissing):
                raise  # a refusal: the adapter reads the status from the message
            why = _no_answer(exc, guard)
            raise ConnectAnswerMissing(why, limit) from exc
        except http.client.HTTPException as exc:
            raise ConnectAnswerMissing(_no_answer(exc, guard), limit) from exc
        finally:
            if guard is not None:
                guard.cancel()
        if guard is not None and guard.expired:
            # http.client takes an end of file among the headers for their end
            raise ConnectAnswerMissing("deadline", limit)


class _DeadlineHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


def _no_answer(exc: BaseException, guard: deadline.Deadline | None) -> NoAnswer:
    """Why a proxy's answer never came, from http.client's and urllib3's errors."""
    nothing = find_cause(exc, http.client.RemoteDisconnected) is not None
    if guard is not None and guard.expired:
        return "timeout" if nothing else "deadline"  # nothing came, or only a part
    if find_cause(exc, TimeoutError) or find_cause(exc, urllib3.exceptions.ReadTimeoutError):
        return "timeout"
    if nothing:
        return "closed"
    bad = find_cause(exc, http.client.BadStatusLine)
    if bad is not None:
        line = str(bad.args[0]) if bad.args else ""
        http_like = line.startswith("HTTP/") or "HTTP/".startswith(line)
        # the start of a status line, cut short by the end of the connection, is a close
        return "closed" if http_like and not line.endswith("\n") else "garbage"
    if find_cause(exc, http.client.HTTPException) is not None:
        return "garbage"
    return "closed"


# ---------------------------------------------------------------------------------------------
# The adapter.


class EgressAdapter(HTTPAdapter):
    """A requests transport adapter that sends each request where the router says."""

    def __init__(
        self,
        settings: Settings,
        *,
        verify: VerifyTypes = True,
        timeout: float | tuple[float | None, float | None] | None = DEFAULT_TIMEOUT,
        pool_connections: int = requests.adapters.DEFAULT_POOLSIZE,
        pool_maxsize: int = requests.adapters.DEFAULT_POOLSIZE,
        max_retries: int = 0,
    ) -> None:
        self._planner = Planner(settings, errors=REQUESTS_ERRORS)
        self._origin_context = origin_ssl_context(settings.proxy, verify)
        self.timeout = timeout
        """Used for a request sent without ``timeout=``."""
        proxies = (settings.proxy.http_proxy, settings.proxy.https_proxy)
        self._proxy_urls: dict[str, ProxyURL] = {str(p): p for p in proxies if p is not None}
        self._operator_cas = operator_cas(settings.proxy)
        """Only the operator's CAs for the proxy (is the proxy intercepting?); None if none."""
        self._proxy_context: ssl.SSLContext | None = (
            proxy_ssl_context(settings.proxy)
            if any(p.scheme == "https" for p in self._proxy_urls.values())
            else None
        )
        self._local = threading.local()
        super().__init__(
            pool_connections=pool_connections, pool_maxsize=pool_maxsize, max_retries=max_retries
        )

    @property
    def settings(self) -> Settings:
        return self._planner.settings

    # -- the hooks requests offers to subclasses ----------------------------------------------

    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Decide ``request``, then send it through the proxy's manager or directly.

        ``verify``, ``cert`` and ``proxies`` from the session or the call are ignored: the router
        and the adapter's trust decide. Without ``timeout`` the adapter's applies.
        """
        plan = self._planner.plan(request.url or "")
        observe.decision(plan.decision)
        if timeout is None:
            timeout = self.timeout
        outgoing = request
        route: dict[str, str] = {}
        if plan.pool.proxy is not None:
            route[plan.decision.target.scheme] = str(plan.pool.proxy)
        elif plan.connect_ip is not None:
            outgoing = _pinned(request, plan.connect_ip)
        self._local.sni = plan.host if outgoing is not request else None
        read_timeout = _read_timeout(timeout)
        token = _CONNECT_DEADLINE.set(read_timeout)
        mint = self._planner.authorization(plan.pool.proxy)
        minted = _MINT.set(mint)
        try:
            if mint is not None and plan.absolute_form:
                # urllib3 has no hook per connection to the proxy in absolute form: each
                # request carries a fresh token (never one another connection used)
                outgoing = outgoing.copy()
                outgoing.headers["Proxy-Authorization"] = mint()
            response = super().send(
                outgoing, stream=stream, timeout=timeout, verify=True, cert=None, proxies=route
            )
        except KerberosFailure as exc:
            hop = "proxy-request" if plan.absolute_form else "proxy-connect"
            no_token = kerberos_failed(plan.decision, exc, hop)
            error = no_token.error(REQUESTS_ERRORS, self._planner.secrets)
            observe.hop_failure(no_token.kind, plan.decision, error)
            if isinstance(error, requests.RequestException):
                error.request = request
            raise error from None
        except requests.RequestException as exc:
            if plan.pool.proxy is None:
                observe.hop_failure("origin", plan.decision, exc)
                raise
            scrub_chain(exc, self._planner.secrets)
            failure = self._failure(exc, plan, request.method or "GET", read_timeout)
            if failure is None and isinstance(exc, requests.exceptions.SSLError):
                # not wrapped in urllib3's ProxyError: the tunnel was up, the origin's TLS failed
                failure = intercepted(
                    exc,
                    self._planner,
                    plan,
                    operator_cas=self._operator_cas,
                    proxy_context=self._proxy_context,
                    timeout=_connect_timeout(timeout),
                )
            if failure is not None:
                error = failure.error(REQUESTS_ERRORS, self._planner.secrets)
                observe.hop_failure(failure.kind, plan.decision, error)
                if isinstance(error, requests.RequestException):
                    error.request = request
                raise error from exc
            observe.hop_failure("origin", plan.decision, exc)
            raise
        finally:
            _MINT.reset(minted)
            _CONNECT_DEADLINE.reset(token)
            self._local.sni = None
        if outgoing is not request:
            # the caller, redirects and cookies see the URL asked for, not the pinned IP
            response.url = request.url or ""
            response.request = request
            response.cookies = RequestsCookieJar()
            extract_cookies_to_jar(response.cookies, request, response.raw)  # type: ignore[no-untyped-call]
        refusal = (
            refusal_by_proxy(
                plan.decision,
                response.status_code,
                response.headers,
                method=request.method or "GET",
                username=self.settings.proxy.username,
                spn=self._planner.spn(plan.pool.proxy),
            )
            if plan.absolute_form
            else None
        )
        if refusal is not None:
            response.close()
            error = refusal.error(REQUESTS_ERRORS, self._planner.secrets)
            observe.hop_failure(refusal.kind, plan.decision, error)
            if isinstance(error, requests.RequestException):
                error.request = request
                error.response = response
            raise error
        return response

    def build_connection_pool_key_attributes(
        self, request: PreparedRequest, verify: Any, cert: Any = None
    ) -> tuple[Any, Any]:
        """Every pool uses the adapter's origin trust; a pinned name sets SNI and the check."""
        host_params, _ = super().build_connection_pool_key_attributes(request, verify, cert)
        pool_kwargs: dict[str, Any] = {"ssl_context": self._origin_context}
        sni = getattr(self._local, "sni", None)
        if sni is not None:
            pool_kwargs["server_hostname"] = sni
        return host_params, pool_kwargs

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        """No-op: trust is in the pools' SSL contexts (requests would load certifi per pool)."""

    def proxy_headers(self, proxy: str) -> dict[str, str]:
        """Basic credentials for one of our proxies; they go to the proxy only."""
        creds = self._planner.credentials
        if proxy in self._proxy_urls and creds is not None:
            return {"Proxy-Authorization": f"Basic {basic_token(creds)}"}
        return {}

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        """urllib3's ProxyManager for one of our proxies, with the proxy's own trust, and
        tunnels whose CONNECT exchange has a deadline."""
        url = self._proxy_urls.get(proxy)
        if url is not None and url.scheme == "https":
            proxy_kwargs["proxy_ssl_context"] = self._proxy_context
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if manager.pool_classes_by_scheme.get("https") is not _DeadlineHTTPSConnectionPool:
            manager.pool_classes_by_scheme = {
                **manager.pool_classes_by_scheme,
                "https": _DeadlineHTTPSConnectionPool,
            }
        return manager

    def close(self) -> None:
        """Close every pooled connection now, CONNECT tunnels included.

        urllib3 2 only drops its pools on ``clear()`` and leaves closing the sockets to garbage
        collection, so a tunnel could outlive ``session.close()`` for an unknown time.
        """
        for manager in (self.poolmanager, *self.proxy_manager.values()):
            # urllib3's container refuses iteration; keys() returns a copy under its lock
            for key in manager.pools.keys():  # noqa: SIM118
                try:
                    pool = manager.pools[key]
                except KeyError:
                    continue
                pool.close()
        super().close()

    # -- errors --------------------------------------------------------------------------------

    def _failure(
        self, exc: BaseException, plan: Plan, method: str, read_timeout: float | None
    ) -> HopFailure | None:
        """The proxy-hop failure behind a requests exception, or None for the origin's own."""
        decision = plan.decision
        scrub = self._planner.scrub
        missing = find_cause(exc, ConnectAnswerMissing)
        if missing is not None:
            return proxy_no_answer(decision, missing.why, seconds=missing.seconds)
        wrapped = find_cause(exc, urllib3.exceptions.ProxyError)
        if wrapped is None:
            if not plan.absolute_form or not isinstance(
                exc, requests.ConnectionError | requests.Timeout
            ):
                return None
            # a plain-HTTP request in absolute form: the proxy is the only peer
            if isinstance(exc, requests.exceptions.ConnectTimeout):
                return proxy_unreachable(decision, "timed out")
            why = _no_answer(_innermost(exc), None)
            return proxy_no_answer(decision, why, method=method, seconds=read_timeout)
        inner: BaseException = getattr(wrapped, "original_error", None) or wrapped
        refused = _TUNNEL_FAILED.search(str(inner))
        if refused is not None:
            return proxy_refused(
                decision,
                int(refused.group(1)),
                method="CONNECT",
                reason_phrase=refused.group(2).strip(),
                username=self.settings.proxy.username,
                spn=self._planner.spn(plan.pool.proxy),
            )
        if find_cause(inner, http.client.HTTPException) is not None:
            # connected, but what came back was no answer (urllib3 still says "unable to connect")
            why = _no_answer(inner, None)
            if plan.absolute_form:
                return proxy_no_answer(decision, why, method=method, seconds=read_timeout)
            return proxy_no_answer(decision, why, seconds=read_timeout)
        ssl_error = find_cause(inner, ssl.SSLError) or find_cause(
            inner, urllib3.exceptions.SSLError
        )
        if ssl_error is not None and find_cause(inner, TimeoutError) is None:
            verify = find_cause(ssl_error, ssl.SSLCertVerificationError)
            if verify is not None:
                return proxy_tls_failed(
                    decision, scrub(verify.verify_message or str(verify)), certificate=True
                )
            return proxy_tls_failed(decision, scrub(reason_of(ssl_error)), certificate=False)
        return proxy_unreachable(decision, scrub(reason_of(inner)))


def _connect_timeout(timeout: Any) -> float | None:
    """The connect part of a requests ``timeout`` (a number or a (connect, read) pair)."""
    if isinstance(timeout, tuple):
        timeout = timeout[0]
    return float(timeout) if isinstance(timeout, int | float) else None


def _read_timeout(timeout: Any) -> float | None:
    """The read timeout of a requests ``timeout=`` (a number, a pair, or a urllib3 Timeout)."""
    if isinstance(timeout, tuple):
        timeout = timeout[1] if len(timeout) == 2 else None
    elif isinstance(timeout, urllib3.Timeout):
        timeout = timeout.read_timeout
    return float(timeout) if isinstance(timeout, int | float) else None


def _innermost(exc: BaseException) -> BaseException:
    """The lowest-level error behind a requests exception (http.client's or the socket's)."""
    low = find_cause(exc, http.client.HTTPException) or find_cause(exc, OSError)
    return low if isinstance(low, BaseException) else exc


def _pinned(request: PreparedRequest, ip: str) -> PreparedRequest:
    """A copy of ``request`` addressed to ``ip`` with the original Host header."""
    parts = urlsplit(request.url or "")
    netloc = parts.netloc.rpartition("@")[2]
    host = f"[{ip}]" if ":" in ip else ip
    port = f":{parts.port}" if parts.port is not None else ""
    pinned = request.copy()
    pinned.url = urlunsplit((parts.scheme, host + port, parts.path, parts.query, parts.fragment))
    if "Host" not in pinned.headers:
        pinned.headers["Host"] = netloc
    return pinned


class SourceAdapter(FollowsSource[EgressAdapter], BaseAdapter):
    """A requests adapter that follows a :class:`~egress.sources.SettingsSource`.

    Each request takes the source's current snapshot when it starts and is sent by that
    snapshot's :class:`EgressAdapter` (``response.egress_snapshot`` is the snapshot). Snapshots
    with the same proxy settings share pools; when they change, the previous adapter is closed
    as soon as no ``send`` is in progress on it (a streamed body still being read keeps its
    connection: urllib3 closes it when it comes back to the closed pool).
    """

    def __init__(self, source: SettingsSource, **options: Any) -> None:
        super().__init__()
        self._following: Following[EgressAdapter] = Following(
            source, lambda settings: EgressAdapter(settings, **options), _share
        )

    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        following = self._following
        generation, done = following.enter()
        for pools in done:
            pools.owner.close()
        try:
            response = generation.transport.send(
                request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
            )
        finally:
            retired = following.leave(generation.pools)
            if retired is not None:
                retired.owner.close()
        response.egress_snapshot = generation.snapshot  # type: ignore[attr-defined]
        return response

    def close(self) -> None:
        for pools in self._following.close_all():
            pools.owner.close()


def _share(new: EgressAdapter, owner: EgressAdapter) -> None:
    """``new`` uses ``owner``'s pools and trust objects (their proxy settings are equal; the
    SSL context is part of urllib3's pool key, so it must be the same object)."""
    new.poolmanager.clear()
    new.poolmanager = owner.poolmanager
    new.proxy_manager = owner.proxy_manager
    new._origin_context = owner._origin_context
    new._proxy_context = owner._proxy_context


def requests_session(
    settings: Settings | None = None,
    *,
    source: SettingsSource | None = None,
    verify: VerifyTypes = True,
    timeout: float | tuple[float | None, float | None] | None = DEFAULT_TIMEOUT,
) -> requests.Session:
    """A ``requests.Session`` (``trust_env=False``) whose requests go where the router says.

    ``verify`` is the origin trust, as for ``egress.Client``: True (system roots + certifi +
    ``proxy.ca_file``), a CA file to add, an ``ssl.SSLContext`` to use as given, or False.
    ``timeout`` applies to requests sent without one (None: wait for ever, as requests does).
    ``source=`` (an :mod:`egress.sources` source) instead of ``settings``: every request takes
    the source's newest snapshot when it starts (:class:`SourceAdapter`).
    """
    if source is not None and settings is not None:
        raise TypeError("egress.requests_session: give settings or source=, not both")
    session = requests.Session()
    session.trust_env = False
    adapter: BaseAdapter
    if source is not None:
        adapter = SourceAdapter(source, verify=verify, timeout=timeout)
    elif settings is not None:
        adapter = EgressAdapter(settings, verify=verify, timeout=timeout)
    else:
        raise TypeError(
            "egress.requests_session: give settings (egress.load_settings(...)) or source="
        )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
