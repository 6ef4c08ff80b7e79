"""HTTP clients that carry out the router's decision for every request.

``egress.Client`` and ``egress.AsyncClient`` are ``httpx.Client`` / ``httpx.AsyncClient`` with
``trust_env=False`` and one transport, :class:`EgressTransport` / :class:`AsyncEgressTransport`.
That transport asks the router about every request it is given (httpx calls it once per redirect
hop, so every hop is decided afresh) and hands the request to one of a few httpx pools:

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
  decided ``tunnel`` (a host under a TCP warehouse's domain while ``tunnel_tcp_warehouses`` is
  on) raises :class:`~egress.errors.UnsupportedRoute` instead of guessing.

Trust. The origin is verified against the system roots + certifi + ``proxy.ca_file`` /
``proxy.ca_pem`` (the CA of a TLS-intercepting proxy); ``verify=`` a CA file adds to that,
``verify=`` an ``ssl.SSLContext`` is used as given, ``verify=False`` switches off the origin check
for this client only. The proxy is verified against system roots + certifi + ``proxy.ca_file`` /
``proxy.ca_pem``; ``proxy.verify: false`` switches off only that check. Nothing process-wide is
changed; the only process-wide input is where OpenSSL finds the system roots (its default paths,
which ``SSL_CERT_FILE``/``SSL_CERT_DIR`` can move).

Which hop failed. The proxy route adds httpcore's ``trace`` request extension (chained with any
the caller set) and a :class:`HopTracker` follows its events; see there for the events Squid 5.7
and httpcore 1.0.9 produce. Failures before the tunnel is up become ``ProxyUnreachable``,
``ProxyTLSError``, ``ProxyDenied`` (403), ``ProxyAuthRequired`` (407) or ``ProxyError``; the
origin's own failures stay httpx errors. A plain-HTTP request answered 403/407 *by the proxy
itself* raises too; the proxy's own answer is recognised by Squid's ``X-Squid-Error`` header or
an RFC 9209 ``Proxy-Status`` header with an ``error`` parameter (a 407 also by
``Proxy-Authenticate``). Other answers, the proxy's 5xx about an unreachable origin included, come
back as responses, as they would from any HTTP proxy client.
"""

from __future__ import annotations

import os
import re
import ssl
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeAlias, TypeVar

import certifi
import httpx

from egress.errors import (
    ConfigError,
    EgressTransportError,
    Problem,
    ProxyAuthRequired,
    ProxyDenied,
    ProxyError,
    ProxyTLSError,
    ProxyUnreachable,
    UnsupportedRoute,
)
from egress.noproxy import canonical_host
from egress.redact import REDACTED
from egress.router import Decision
from egress.settings import ProxySettings, ProxyURL, Settings

if TYPE_CHECKING:
    from httpx._client import EventHook
    from httpx._types import AuthTypes, CookieTypes, HeaderTypes, QueryParamTypes, TimeoutTypes

__all__ = [
    "DECISION_EXTENSION",
    "DEFAULT_LIMITS",
    "DEFAULT_TIMEOUT",
    "AsyncClient",
    "AsyncEgressTransport",
    "Client",
    "EgressTransport",
    "HopFailure",
    "HopTracker",
    "Plan",
    "Planner",
    "PoolKey",
    "origin_ssl_context",
    "proxy_answer_detail",
    "proxy_ssl_context",
]

VerifyTypes: TypeAlias = "bool | str | os.PathLike[str] | ssl.SSLContext"

#: A proxy adds a hop and a CONNECT round trip, so a little more than httpx's 5 s.
DEFAULT_TIMEOUT = httpx.Timeout(10.0)
#: httpx's defaults, applied to each pool (each proxy, the direct pool).
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
#: httpx's default.
DEFAULT_MAX_REDIRECTS = 20
#: ``response.extensions[DECISION_EXTENSION]`` is the :class:`~egress.router.Decision` applied.
DECISION_EXTENSION = "egress_decision"


# ---------------------------------------------------------------------------------------------
# Trust: two separate SSL contexts, one per hop, never the process-wide defaults.


def _with_defaults() -> ssl.SSLContext:
    """The system roots (OpenSSL's default paths) plus certifi's bundle."""
    ctx = ssl.create_default_context()
    ctx.load_verify_locations(cafile=certifi.where())
    return ctx


def _unverified() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _load_cas(ctx: ssl.SSLContext, path: str, field: str) -> None:
    try:
        if os.path.isdir(path):
            ctx.load_verify_locations(capath=path)
        else:
            ctx.load_verify_locations(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
        raise ConfigError(
            [
                Problem(
                    field,
                    f"{path!r} cannot be loaded as CA certificates ({reason})",
                    "point it at a PEM file of CA certificates",
                )
            ]
        ) from exc


def _add_proxy_cas(ctx: ssl.SSLContext, proxy: ProxySettings) -> None:
    if proxy.ca_file:
        _load_cas(ctx, proxy.ca_file, "proxy.ca_file")
    if proxy.ca_pem:
        try:
            ctx.load_verify_locations(cadata=proxy.ca_pem)
        except (ValueError, ssl.SSLError) as exc:
            raise ConfigError(
                [Problem("proxy.ca_pem", "holds no usable PEM certificate", "paste the CA as PEM")]
            ) from exc


def origin_ssl_context(proxy: ProxySettings, verify: VerifyTypes = True) -> ssl.SSLContext:
    """Trust for the origin hop: the defaults extended, never replaced.

    ``True``: system roots + certifi + ``proxy.ca_file``/``ca_pem`` (a TLS-intercepting proxy
    re-signs origins with its CA). A path: the same plus that CA file (or directory). An
    ``SSLContext``: used as given. ``False``: no origin verification, for this client only.
    """
    if isinstance(verify, ssl.SSLContext):
        return verify
    if verify is False:
        return _unverified()
    if not isinstance(verify, bool | str | os.PathLike):
        raise TypeError(
            f"verify must be a bool, a CA file path or an ssl.SSLContext, not {verify!r}"
        )
    ctx = _with_defaults()
    _add_proxy_cas(ctx, proxy)
    if isinstance(verify, str | os.PathLike):
        _load_cas(ctx, os.fspath(verify), "verify")
    return ctx


def proxy_ssl_context(proxy: ProxySettings) -> ssl.SSLContext:
    """Trust for TLS to an ``https://`` proxy: system roots + certifi + ``proxy.ca_file``/
    ``ca_pem``; with ``proxy.verify: false`` the proxy's certificate is not checked (and only it).
    """
    if not proxy.verify:
        return _unverified()
    ctx = _with_defaults()
    _add_proxy_cas(ctx, proxy)
    return ctx


# ---------------------------------------------------------------------------------------------
# The decision, shared by the sync and async transports and the requests adapter.


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

    Pure and shared: no I/O, the same for ``Client``, ``AsyncClient`` and ``requests_session``.
    Every URL goes through :func:`~egress.router.parse_target`, which refuses hosts with spaces,
    control characters or CR/LF, so none reaches a CONNECT line or a header.

    >>> from egress.settings import load_settings_from_mapping
    >>> s = load_settings_from_mapping({"proxy": {"url": "http://proxy:3128"},
    ...     "excluded_domains": ".corp", "resolve": {"git.corp": "10.0.0.7"}}, env={})
    >>> p = Planner(s)
    >>> str(p.plan("https://api.example.com/").pool), str(p.plan("https://git.corp/x").pool)
    ('proxy http://proxy:3128', 'direct (git.corp pinned)')
    >>> p.plan("https://git.corp/x").connect_ip, p.plan("https://wiki.corp/").connect_ip
    ('10.0.0.7', None)
    """

    def __init__(self, settings: Settings, *, errors: ErrorClasses | None = None) -> None:
        self.settings = settings
        self.router = settings.router()
        self.errors: ErrorClasses = _PLAIN_ERRORS if errors is None else errors
        self._resolve = _resolve_map(settings.resolve)
        # made once: a pool key per proxy and per resolve name (they are dict keys per request)
        proxies = (settings.proxy.http_proxy, settings.proxy.https_proxy)
        self._proxy_keys = {p: PoolKey(proxy=p) for p in proxies if p is not None}
        self._pinned_keys = {host: PoolKey(resolved_host=host) for host in self._resolve}

    def plan(self, url: str) -> Plan:
        """The plan for ``url``; raises ``URLError`` for a URL the router refuses, and
        ``UnsupportedRoute`` for a ``tunnel`` decision."""
        decision = self.router.decide(url)
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

    @property
    def credentials(self) -> tuple[str, str] | None:
        """``(username, password)`` for Basic auth to the proxy, or None."""
        proxy = self.settings.proxy
        if proxy.username and proxy.password is not None:
            return proxy.username, proxy.password.reveal()
        return None

    def scrub(self, text: str) -> str:
        """``text`` with the proxy password masked (belt and braces for library messages).

        Passwords shorter than 4 characters are left alone: masking every "e" of a message
        would show the password rather than hide it (and httpx, httpcore and urllib3 never put
        it in their messages anyway).
        """
        creds = self.credentials
        if creds and len(creds[1]) >= 4 and creds[1] in text:
            text = text.replace(creds[1], REDACTED)
        return text


# ---------------------------------------------------------------------------------------------
# Which hop failed, as data; each client library raises its own subclasses of it.

FailureKind = Literal["unreachable", "tls", "denied", "auth", "proxy", "route"]
ErrorClasses: TypeAlias = Mapping[FailureKind, type[EgressTransportError]]

_PLAIN_ERRORS: ErrorClasses = {
    "unreachable": ProxyUnreachable,
    "tls": ProxyTLSError,
    "denied": ProxyDenied,
    "auth": ProxyAuthRequired,
    "proxy": ProxyError,
    "route": UnsupportedRoute,
}


@dataclass(frozen=True)
class HopFailure:
    """A failed hop, described: which kind, the whole sentence (fix included), for whom."""

    kind: FailureKind
    message: str
    hint: str
    hop: str
    proxy: str | None
    target: str
    status: int | None = None

    def error(self, classes: ErrorClasses) -> EgressTransportError:
        """The exception to raise, from the caller's classes (httpx- or requests-flavoured)."""
        return classes[self.kind](
            self.message,
            proxy=self.proxy,
            target=self.target,
            hop=self.hop,
            status=self.status,
            hint=self.hint,
        )


def _failure(
    kind: FailureKind,
    decision: Decision,
    what: str,
    hint: str,
    hop: str,
    status: int | None = None,
) -> HopFailure:
    return HopFailure(
        kind=kind,
        message=f"{what}: {hint}",
        hint=hint,
        hop=hop,
        proxy=decision.proxy,
        target=decision.target.authority,
        status=status,
    )


def _proxy_name(decision: Decision) -> str:
    return decision.proxy or "the proxy"


def proxy_unreachable(decision: Decision, reason: str, *, hop: str = "proxy-tcp") -> HopFailure:
    """TCP (or, timed out, the TLS handshake) to the proxy did not complete."""
    return _failure(
        "unreachable",
        decision,
        f"cannot connect to the proxy {_proxy_name(decision)} for "
        f"{decision.target.authority} ({reason})",
        "check proxy.url and that the proxy is running and reachable from here",
        hop,
    )


def proxy_tls_failed(decision: Decision, reason: str, *, certificate: bool) -> HopFailure:
    """TLS to an https:// proxy failed: its certificate (``certificate``) or the handshake."""
    if certificate:
        what = f"the certificate of the proxy {_proxy_name(decision)} is not trusted ({reason})"
        hint = "set proxy.ca_file to the CA that signs the proxy's certificate"
    else:
        what = f"the TLS handshake with the proxy {_proxy_name(decision)} failed ({reason})"
        hint = "check that the proxy speaks TLS on that port; a plain proxy is written http://"
    return _failure("tls", decision, what, hint, "proxy-tls")


def proxy_refused(
    decision: Decision,
    status: int,
    *,
    method: str,
    reason_phrase: str = "",
    detail: str | None = None,
    username: str | None = None,
) -> HopFailure:
    """The proxy answered a CONNECT (``method="CONNECT"``) or an absolute-form request with a
    non-2xx status of its own.

    >>> from egress.settings import Settings
    >>> d = Settings.from_proxy("http://127.0.0.1:3128").router().decide("https://api.tomtom.com/")
    >>> proxy_refused(d, 403, method="CONNECT").message
    'http://127.0.0.1:3128 refused CONNECT to api.tomtom.com:443 (403): ask the proxy team to allow api.tomtom.com'
    """  # noqa: E501
    target = decision.target
    what = f"{method} to {target.authority}"
    code = f"{status}, {detail}" if detail else str(status)
    hop = "proxy-connect" if method == "CONNECT" else "proxy-request"
    proxy = _proxy_name(decision)
    if status == 403:
        return _failure(
            "denied",
            decision,
            f"{proxy} refused {what} ({code})",
            f"ask the proxy team to allow {target.host_text}",
            hop,
            status,
        )
    if status == 407:
        if username:
            return _failure(
                "auth",
                decision,
                f"{proxy} refused the credentials of user {username!r} for {what} ({code})",
                "check proxy.username and the password in proxy.password_file",
                hop,
                status,
            )
        return _failure(
            "auth",
            decision,
            f"{proxy} wants credentials for {what} ({code})",
            "set proxy.username and proxy.password_file",
            hop,
            status,
        )
    phrase = f"{status} {reason_phrase}".strip()
    code = f"{phrase}, {detail}" if detail else phrase
    if status >= 500:
        hint = (
            f"the proxy could not reach {target.authority}; ask the proxy team to check that it "
            "can resolve and connect to it"
        )
    else:
        hint = f"ask the proxy team why it refuses {target.authority}"
    return _failure("proxy", decision, f"{proxy} refused {what} ({code})", hint, hop, status)


def proxy_no_answer(decision: Decision, reason: str) -> HopFailure:
    """The proxy accepted the connection but gave no usable answer to CONNECT."""
    return _failure(
        "proxy",
        decision,
        f"the proxy {_proxy_name(decision)} gave no answer to CONNECT to "
        f"{decision.target.authority} ({reason})",
        "check the proxy's health and logs, or raise the timeout",
        "proxy-connect",
    )


def unsupported_route(decision: Decision) -> HopFailure:
    """An HTTP request the router sent down a route an HTTP client cannot carry."""
    target = decision.target
    return _failure(
        "route",
        decision,
        f"{target.scheme}://{target.authority} was decided {decision.route!r} "
        f"({decision.rule}): {decision.reason.rstrip('.')}, which an HTTP client does not do",
        "connect with the warehouse's own driver through `egress tunnel`, or give the caller a "
        "URL that is not a TCP warehouse",
        "route",
    )


_PROXY_STATUS_ERROR = re.compile(r"""(?:^|;)\s*error\s*=\s*("[^"]*"|[^;,\s]+)""")


def proxy_answer_detail(headers: Mapping[str, str]) -> str | None:
    """The proxy's own error code when the proxy itself wrote this response, else None.

    Squid marks its own answers with ``X-Squid-Error: ERR_ACCESS_DENIED 0``; RFC 9209 proxies
    put an ``error`` parameter in ``Proxy-Status`` (a ``Proxy-Status`` without one only tells that
    a proxy forwarded the origin's answer).

    >>> proxy_answer_detail({"x-squid-error": "ERR_ACCESS_DENIED 0"})
    'ERR_ACCESS_DENIED'
    >>> proxy_answer_detail({"proxy-status": 'corp-proxy; error=http_request_denied; details="x"'})
    'http_request_denied'
    >>> proxy_answer_detail({"proxy-status": "corp-proxy; received-status=403"}) is None
    True
    """
    squid = headers.get("x-squid-error")
    if squid is not None:
        return squid.split()[0] if squid.split() else "X-Squid-Error"
    status = headers.get("proxy-status")
    if status:
        for member in status.split(","):
            found = _PROXY_STATUS_ERROR.search(member)
            if found:
                return found.group(1).strip('"')
    return None


def refusal_by_proxy(
    plan: Plan, status: int, headers: Mapping[str, str], *, method: str, username: str | None
) -> HopFailure | None:
    """A 403/407 answer to an absolute-form request, when the proxy (not the origin) wrote it."""
    if not plan.absolute_form or status not in (403, 407):
        return None
    detail = proxy_answer_detail(headers)
    if detail is None and not (status == 407 and headers.get("proxy-authenticate")):
        return None
    return proxy_refused(plan.decision, status, method=method, detail=detail, username=username)


# ---------------------------------------------------------------------------------------------
# Following httpcore's trace events of one proxied request.

_NO_HEADERS: Mapping[str, str] = {}

Phase = Literal[
    "pool", "proxy-tcp", "proxy-tls", "proxy-connect", "origin-tls", "origin", "proxy-request"
]


class HopTracker:
    """Follows the httpcore ``trace`` events of one proxied request to tell which hop failed.

    In a proxy pool every connection goes to the proxy, so httpcore 1.0.9 reports (checked
    against Squid 5.7, http:// and https:// proxies):

    ==========================================  ===============================================
    ``connection.connect_tcp.*``                TCP to the proxy
    ``connection.start_tls.*``                  TLS to an ``https://`` proxy
    ``http11.send_request_headers.started``     ``info["request"].method == b"CONNECT"``: the
                                                CONNECT; else the request itself (to the proxy
                                                in absolute form, or to the origin in a tunnel)
    ``http11.receive_response_headers.complete`` ``return_value`` = (version, status, reason,
                                                headers): the proxy's answer to CONNECT
    ``proxy.start_tls.*``                       TLS to the origin, inside the tunnel
    ==========================================  ===============================================

    A request that reuses a kept-alive connection sees none of the connect events: it is on the
    origin hop from the start.

    Once the request itself is on its way (the proxy hop is behind it), nothing more is needed,
    so the tracker takes itself out of :attr:`extensions` (the dict httpcore reads each event's
    hook from) and puts back ``then``, the caller's own hook, if any: the other events of a
    request on a kept-alive connection then cost what they cost without tracing.
    """

    __slots__ = (
        "_then",
        "absolute_form",
        "extensions",
        "headers",
        "phase",
        "reason_phrase",
        "status",
    )

    def __init__(
        self,
        *,
        absolute_form: bool,
        then: Any = None,
    ) -> None:
        self.absolute_form = absolute_form
        self.phase: Phase = "pool"
        self.status: int | None = None
        self.reason_phrase = ""
        self.headers: Mapping[str, str] = _NO_HEADERS
        self.extensions: dict[str, Any] | None = None
        """The request's extensions as httpcore sees them (set by the transport)."""
        self._then = then

    def __call__(self, name: str, info: Mapping[str, Any]) -> None:
        if name == "connection.connect_tcp.started":
            self.phase = "proxy-tcp"
        elif name == "connection.start_tls.started":
            self.phase = "proxy-tls"
        elif name == "http11.send_request_headers.started":
            method = getattr(info.get("request"), "method", b"")
            if method == b"CONNECT":
                self.phase = "proxy-connect"
            else:
                self.phase = "proxy-request" if self.absolute_form else "origin"
                self._detach()
        elif name == "http11.receive_response_headers.complete" and self.phase == "proxy-connect":
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

    def _detach(self) -> None:
        extensions = self.extensions
        if extensions is not None:
            if self._then is None:
                extensions.pop("trace", None)
            else:
                extensions["trace"] = self._then

    def failure(self, exc: httpx.TransportError, planner: Planner, plan: Plan) -> HopFailure | None:
        """The proxy-hop failure ``exc`` stands for, or None when it is the origin's own."""
        decision = plan.decision
        reason = planner.scrub(reason_of(exc))
        if isinstance(exc, httpx.ProxyError) or self.phase == "proxy-connect":
            status = self.status
            if status is None and isinstance(exc, httpx.ProxyError):
                found = re.match(r"\s*(\d{3})\b\s*(.*)", str(exc))
                if found:
                    status, self.reason_phrase = int(found.group(1)), found.group(2)
            if status is not None and not 200 <= status < 300:
                return proxy_refused(
                    decision,
                    status,
                    method="CONNECT",
                    reason_phrase=self.reason_phrase,
                    detail=proxy_answer_detail(self.headers),
                    username=planner.settings.proxy.username,
                )
            return proxy_no_answer(decision, reason)
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


_E = TypeVar("_E", bound=BaseException)


def find_cause(exc: BaseException, kind: type[_E]) -> _E | None:
    """The first exception of ``kind`` in ``exc``'s cause/context chain (``exc`` included)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def reason_of(exc: BaseException) -> str:
    """A short reason for a message: the OS's or OpenSSL's words, else the exception's."""
    verify = find_cause(exc, ssl.SSLCertVerificationError)
    if verify is not None and verify.verify_message:
        return verify.verify_message
    os_error = find_cause(exc, OSError)
    if os_error is not None and os_error.strerror:
        return os_error.strerror
    text = str(exc).strip()
    if isinstance(exc, httpx.TimeoutException) and (not text or text == "timed out"):
        return "timed out"
    return text or type(exc).__name__


# ---------------------------------------------------------------------------------------------
# The transports: the shared core, then two thin ones (sync, async).


class HTTPXProxyUnreachable(ProxyUnreachable, httpx.ConnectError):
    """:class:`~egress.errors.ProxyUnreachable` from ``egress.Client``; an httpx.ConnectError."""


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
    "route": HTTPXUnsupportedRoute,
}

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
        self._lock = threading.Lock()

    @property
    def settings(self) -> Settings:
        return self._planner.settings

    def plan(self, url: httpx.URL | str) -> Plan:
        """The plan for one request URL (see :class:`Planner`)."""
        return self._planner.plan(str(url))

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
        self, request: httpx.Request, plan: Plan, hook: Callable[[HopTracker, Any], Any]
    ) -> tuple[httpx.Request, HopTracker | None]:
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
        tracker: HopTracker | None = None
        url = request.url
        if plan.pool.proxy is not None:
            user = extensions.get("trace")
            tracker = HopTracker(absolute_form=plan.absolute_form, then=user)
            extensions["trace"] = hook(tracker, user)
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

    def _refusal(self, plan: Plan, response: httpx.Response, method: str) -> HopFailure | None:
        return refusal_by_proxy(
            plan,
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


class EgressTransport(_Routing[httpx.HTTPTransport], httpx.BaseTransport):
    """An httpx transport that routes each request by the router (see the module docstring)."""

    def _new_pool(self, proxy: httpx.Proxy | None) -> httpx.HTTPTransport:
        return httpx.HTTPTransport(proxy=proxy, **self._pool_options())

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        plan = self.plan(request.url)
        outgoing, tracker = self._outgoing(request, plan, _sync_hook)
        try:
            response = self.pool(plan.pool).handle_request(outgoing)
        except httpx.TransportError as exc:
            failure = tracker.failure(exc, self._planner, plan) if tracker else None
            if failure is not None:
                raise failure.error(HTTPX_ERRORS) from exc
            raise
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


class AsyncEgressTransport(_Routing[httpx.AsyncHTTPTransport], httpx.AsyncBaseTransport):
    """The async twin of :class:`EgressTransport`; same decisions, same pools per key."""

    def _new_pool(self, proxy: httpx.Proxy | None) -> httpx.AsyncHTTPTransport:
        return httpx.AsyncHTTPTransport(proxy=proxy, **self._pool_options())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        plan = self.plan(request.url)
        outgoing, tracker = self._outgoing(request, plan, _async_hook)
        try:
            response = await self.pool(plan.pool).handle_async_request(outgoing)
        except httpx.TransportError as exc:
            failure = tracker.failure(exc, self._planner, plan) if tracker else None
            if failure is not None:
                raise failure.error(HTTPX_ERRORS) from exc
            raise
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


def _sync_hook(
    tracker: HopTracker, user: Callable[[str, Mapping[str, Any]], Any] | None
) -> Callable[[str, Mapping[str, Any]], None]:
    if user is None:
        return tracker

    def hook(name: str, info: Mapping[str, Any]) -> None:
        tracker(name, info)
        user(name, info)

    return hook


def _async_hook(
    tracker: HopTracker, user: Callable[[str, Mapping[str, Any]], Awaitable[Any]] | None
) -> Callable[[str, Mapping[str, Any]], Awaitable[None]]:
    async def hook(name: str, info: Mapping[str, Any]) -> None:
        tracker(name, info)
        if user is not None:
            await user(name, info)

    return hook


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
