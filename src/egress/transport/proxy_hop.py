"""Watching the connection to the proxy while it is set up, to tell which hop failed (httpx).

Every pool egress makes for a proxy gets a network backend of its own (:class:`HopBackend`,
:class:`AsyncHopBackend`, wrapping httpcore's) whose streams follow the setup of each
connection in a :class:`ProxyHop`. In a proxy pool every connection goes to the proxy, so
httpcore 1.0.9 does (checked against Squid 5.7, http:// and https:// proxies):

====================================  ==========================================================
``connect_tcp``                       TCP to the proxy                           ``proxy-tcp``
``start_tls`` before any write        TLS to an ``https://`` proxy               ``proxy-tls``
first ``write``: ``CONNECT ...``      the CONNECT; the reads that follow are     ``proxy-connect``
                                      the proxy's answer
first ``write``: anything else        a plain-HTTP request in absolute form:     ``proxy-request``
                                      the proxy is the only peer
``start_tls`` after the CONNECT       TLS to the origin, inside the tunnel       ``origin-tls``
====================================  ==========================================================

The stream of a tunnel hands out the origin's TLS stream itself: once the tunnel is up, egress
is no longer in the way, and a request on a kept-alive connection costs nothing here. A request
learns about the setup it caused through a context variable (:func:`current_hop`): hops are
numbered (:data:`HOPS_STARTED`), and one numbered above the count a request saw when it started
is that request's own; any other is an earlier request's, and the failure happened on a
kept-alive connection.

With Negotiate (``proxy.auth: negotiate``) the stream also puts a fresh
``Proxy-Authorization: Negotiate <token>`` into the first request of each new connection (the
CONNECT, or the first absolute-form request): a Kerberos token is single-use across connections,
and later requests on the same connection need none.

The proxy's answer to CONNECT has a deadline, the CONNECT's read timeout: each read of it waits
only for what is left, so a proxy that drip-feeds its answer cannot hold a request longer.
"""

from __future__ import annotations

import contextvars
import ssl
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal

import anyio
import h11
import httpcore
import httpx

from egress.kerberos import KerberosFailure
from egress.transport.failures import (
    ANSWER_LIMIT,
    HopFailure,
    NoAnswer,
    connect_answer,
    find_cause,
    kerberos_failed,
    pool_exhausted,
    proxy_answer_detail,
    proxy_no_answer,
    proxy_refused,
    proxy_tls_failed,
    proxy_unreachable,
    reason_of,
)
from egress.transport.plan import Plan, Planner

__all__ = [
    "AsyncHopBackend",
    "HopBackend",
    "ProxyHop",
    "classify",
    "connect_answer",
    "current_hop",
]

Phase = Literal["proxy-tcp", "proxy-tls", "proxy-connect", "proxy-request", "origin-tls"]

FIRST_BYTES = 16
"""How much of the first answer on a connection in absolute form is kept: is it HTTP at all?"""

_CURRENT: contextvars.ContextVar[ProxyHop | None] = contextvars.ContextVar(
    "egress_proxy_hop", default=None
)


HOPS_STARTED = [0]
"""How many connections to a proxy were set up so far (one item, read before each request)."""


def current_hop(started: int) -> ProxyHop | None:
    """The setup of the proxy connection the current request caused, if it caused one;
    ``started`` is :data:`HOPS_STARTED` as the request found it."""
    hop = _CURRENT.get()
    return hop if hop is not None and hop.number > started else None


class ProxyHop:
    """The setup of one connection to the proxy, as its stream sees it (see the table above)."""

    __slots__ = ("answer", "deadline", "expired", "kerberos", "limit", "number", "phase")

    def __init__(self) -> None:
        HOPS_STARTED[0] += 1
        self.number = HOPS_STARTED[0]
        self.phase: Phase = "proxy-tcp"
        self.answer = bytearray()
        """The start of the proxy's answer to CONNECT."""
        self.limit: float | None = None
        """The deadline for that answer, in seconds (the CONNECT's read timeout)."""
        self.deadline: float | None = None
        self.expired = False
        """True when the answer did not arrive complete within :attr:`limit`."""
        self.kerberos: KerberosFailure | None = None
        """Why no Negotiate token could be made for this connection (nothing was sent)."""

    def wrote(self, buffer: bytes) -> None:
        if self.phase in ("proxy-tcp", "proxy-tls"):
            self.phase = "proxy-connect" if buffer.startswith(b"CONNECT ") else "proxy-request"

    def read_timeout(self, timeout: float | None) -> float | None:
        """The timeout for the next read of the CONNECT answer: what is left of the deadline."""
        now = time.monotonic()
        if self.deadline is None:
            if timeout is None:
                return None
            self.limit, self.deadline = timeout, now + timeout
            return timeout
        left = self.deadline - now
        if left <= 0:
            self.expired = True
            raise httpcore.ReadTimeout("the proxy's answer to CONNECT did not arrive in time")
        return left if timeout is None else min(timeout, left)

    def read_failed(self) -> None:
        """A read of the CONNECT answer timed out: past the deadline, that is the deadline."""
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.expired = True

    def got(self, data: bytes) -> None:
        room = ANSWER_LIMIT - len(self.answer)
        if room > 0:
            self.answer += data[:room]

    def tunnel_up(self) -> None:
        self.phase = "origin-tls"
        self.answer = bytearray(b"HTTP/")  # done with: nothing more is recorded

    def not_http(self) -> bool:
        """True when what the proxy sent first cannot be the start of an HTTP answer."""
        head = bytes(self.answer[:5])
        return bool(head) and not b"HTTP/".startswith(head)


Minter = Callable[[], str]
"""Makes the ``Proxy-Authorization`` value of one new connection (``Negotiate <token>``)."""


def _with_authorization(buffer: bytes, value: str) -> bytes:
    """``buffer`` (a request head) with ``Proxy-Authorization: value`` after its first line.

    >>> _with_authorization(b"CONNECT a:443 HTTP/1.1\\r\\nHost: a:443\\r\\n\\r\\n", "Negotiate x")
    b'CONNECT a:443 HTTP/1.1\\r\\nProxy-Authorization: Negotiate x\\r\\nHost: a:443\\r\\n\\r\\n'
    """
    line, sep, rest = buffer.partition(b"\r\n")
    if not sep:
        return buffer
    return line + sep + b"Proxy-Authorization: " + value.encode("ascii") + sep + rest


def _failed_mint(hop: ProxyHop, exc: KerberosFailure) -> httpcore.ProxyError:
    hop.kerberos = exc
    return httpcore.ProxyError(f"no Kerberos token for the proxy: {exc.message}")


class HopStream(httpcore.NetworkStream):
    """A stream to the proxy that records its setup in a :class:`ProxyHop`."""

    def __init__(
        self, inner: httpcore.NetworkStream, hop: ProxyHop, mint: Minter | None = None
    ) -> None:
        self._inner = inner
        self._hop = hop
        self._mint = mint

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        hop = self._hop
        if hop.phase != "proxy-connect":
            data = self._inner.read(max_bytes, timeout)
            if not hop.answer:
                hop.got(data[:FIRST_BYTES])
            return data
        try:
            data = self._inner.read(max_bytes, hop.read_timeout(timeout))
        except httpcore.ReadTimeout:
            hop.read_failed()
            raise
        hop.got(data)
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        hop = self._hop
        if self._mint is not None and hop.phase in ("proxy-tcp", "proxy-tls"):
            try:
                buffer = _with_authorization(buffer, self._mint())
            except KerberosFailure as exc:
                raise _failed_mint(hop, exc) from None
        hop.wrote(buffer)
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        hop = self._hop
        if hop.phase == "proxy-connect":
            hop.tunnel_up()  # the origin's TLS, inside the tunnel: egress steps aside
            return self._inner.start_tls(ssl_context, server_hostname, timeout)
        hop.phase = "proxy-tls"
        inner = self._inner.start_tls(ssl_context, server_hostname, timeout)
        return HopStream(inner, hop, self._mint)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class HopBackend(httpcore.NetworkBackend):
    """httpcore's backend for one proxy pool, with every stream watched (see the module)."""

    def __init__(self, inner: httpcore.NetworkBackend, mint: Minter | None = None) -> None:
        self._inner = inner
        self._mint = mint

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        hop = ProxyHop()
        _CURRENT.set(hop)
        stream = self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return HopStream(stream, hop, self._mint)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        return self._inner.connect_unix_socket(path, timeout, socket_options)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class AsyncHopStream(httpcore.AsyncNetworkStream):
    """The async twin of :class:`HopStream`."""

    def __init__(
        self, inner: httpcore.AsyncNetworkStream, hop: ProxyHop, mint: Minter | None = None
    ) -> None:
        self._inner = inner
        self._hop = hop
        self._mint = mint

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        hop = self._hop
        if hop.phase != "proxy-connect":
            data = await self._inner.read(max_bytes, timeout)
            if not hop.answer:
                hop.got(data[:FIRST_BYTES])
            return data
        try:
            data = await self._inner.read(max_bytes, hop.read_timeout(timeout))
        except httpcore.ReadTimeout:
            hop.read_failed()
            raise
        hop.got(data)
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        hop = self._hop
        if self._mint is not None and hop.phase in ("proxy-tcp", "proxy-tls"):
            try:  # in a thread: getting the first ticket asks the KDC
                value = await anyio.to_thread.run_sync(self._mint)
            except KerberosFailure as exc:
                raise _failed_mint(hop, exc) from None
            buffer = _with_authorization(buffer, value)
        hop.wrote(buffer)
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        hop = self._hop
        if hop.phase == "proxy-connect":
            hop.tunnel_up()
            return await self._inner.start_tls(ssl_context, server_hostname, timeout)
        hop.phase = "proxy-tls"
        inner = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        return AsyncHopStream(inner, hop, self._mint)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class AsyncHopBackend(httpcore.AsyncNetworkBackend):
    """The async twin of :class:`HopBackend`."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend, mint: Minter | None = None) -> None:
        self._inner = inner
        self._mint = mint

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        hop = ProxyHop()
        _CURRENT.set(hop)
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return AsyncHopStream(stream, hop, self._mint)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return await self._inner.connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


# ---------------------------------------------------------------------------------------------
# Reading what happened.


def classify(
    exc: httpx.TransportError,
    hop: ProxyHop | None,
    planner: Planner,
    plan: Plan,
    *,
    method: str,
    timeouts: Any,
    max_connections: int | None,
) -> HopFailure | None:
    """The proxy-hop failure ``exc`` stands for, or None when it is the origin's own.

    ``hop`` is the setup this request caused (None: it used a kept-alive connection or found
    none free), ``timeouts`` the request's timeout extension.
    """
    decision = plan.decision
    read = timeouts.get("read") if isinstance(timeouts, dict) else None
    phase = hop.phase if hop is not None else None
    if hop is not None and hop.kerberos is not None:
        where = "proxy-connect" if not plan.absolute_form else "proxy-request"
        return kerberos_failed(decision, hop.kerberos, where)
    if phase == "proxy-tcp":
        return proxy_unreachable(decision, planner.scrub(_reason(exc)))
    if phase == "proxy-tls":
        reason = planner.scrub(_reason(exc))
        if isinstance(exc, httpx.TimeoutException):
            return proxy_unreachable(decision, reason, hop="proxy-tls")
        verify = find_cause(exc, ssl.SSLCertVerificationError)
        if verify is not None:
            why = planner.scrub(verify.verify_message or reason)
            return proxy_tls_failed(decision, why, certificate=True)
        return proxy_tls_failed(decision, reason, certificate=False)
    if phase == "proxy-connect" or isinstance(exc, httpx.ProxyError):
        status, phrase, headers = connect_answer(hop.answer) if hop is not None else (None, "", {})
        if status is None and isinstance(exc, httpx.ProxyError):
            text = str(exc).strip()
            if text[:3].isdigit():  # httpcore words a refusal "403 Forbidden"
                status, phrase = int(text[:3]), text[4:]
        if status is not None and not 200 <= status < 300:
            detail = proxy_answer_detail(headers)
            return proxy_refused(
                decision,
                status,
                method="CONNECT",
                reason_phrase=planner.scrub(phrase),
                detail=planner.scrub(detail) if detail else None,
                username=planner.settings.proxy.username,
                spn=planner.spn(decision.proxy_url),
            )
        why = _no_answer(exc, hop)
        seconds = hop.limit if hop is not None and hop.expired else read
        return proxy_no_answer(decision, why, seconds=seconds)
    if phase is None and isinstance(exc, httpx.PoolTimeout):
        pool = timeouts.get("pool") if isinstance(timeouts, dict) else None
        return pool_exhausted(decision, pool, max_connections)
    if plan.absolute_form and isinstance(
        exc, httpx.NetworkError | httpx.TimeoutException | httpx.RemoteProtocolError
    ):
        # plain HTTP in absolute form: the proxy is the only peer of the request
        return proxy_no_answer(decision, _no_answer(exc, hop), method=method, seconds=read)
    return None


def _no_answer(exc: httpx.TransportError, hop: ProxyHop | None) -> NoAnswer:
    """Why the proxy's answer never came, from the httpx error and what the proxy sent."""
    if hop is not None and hop.not_http():
        return "garbage"  # whatever answers there, it is not an HTTP proxy
    if hop is not None and hop.expired:
        return "deadline" if hop.answer else "timeout"  # a part came, or nothing at all
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if find_cause(exc, h11.RemoteProtocolError) is not None:
        return "garbage"  # h11 could not read it as HTTP
    return "closed"


def _reason(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.TimeoutException) and not find_cause(exc, OSError):
        return "timed out"
    return reason_of(exc)
