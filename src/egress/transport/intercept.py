"""Is the proxy intercepting TLS? Asked only after the origin's certificate failed verification
inside the proxy's tunnel.

What counts as interception: the certificate presented inside the tunnel *chains to a CA the
operator added for the proxy* (``proxy.ca_file`` / ``proxy.ca_pem``, Helm ``trustedCACerts``).
A public CA, or a CA nobody configured, is not called interception: an unknown issuer may be the
origin's own private CA, and sending the operator to the proxy team would then be wrong; that
stays a plain certificate error.

How the presented certificate is read. A failed handshake keeps no peer certificate, so on such a
failure (and only then: never on the hot path) one more tunnel is opened through the same proxy
(TCP, TLS to an ``https://`` proxy with the proxy's trust, ``CONNECT`` with the same credentials)
and a second handshake is made with the origin's name as SNI, verified against **only the
operator's CAs**, no host name check. If that handshake verifies, the presented chain was signed
by one of them: the proxy intercepts, and the issuer's name is read from the verified
certificate. This needs no certificate parser, and the match is cryptographic rather than by
name. The whole probe is bounded by one timeout (the request's connect timeout); any failure of
its own (the proxy refused, timed out, the chain does not verify) means "not shown to be
intercepted". No HTTP library is imported here.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable

from egress.kerberos import KerberosFailure
from egress.settings import ProxyURL
from egress.transport.failures import (
    ANSWER_LIMIT,
    HopFailure,
    connect_answer,
    find_cause,
    tls_intercepted,
)
from egress.transport.plan import Plan, Planner, connect_request

__all__ = ["ANSWER_LIMIT", "intercepted", "intercepting_issuer", "issuer_text"]

DEFAULT_PROBE_TIMEOUT = 10.0
"""The probe's bound when the request had no connect timeout."""


def intercepted(
    exc: BaseException,
    planner: Planner,
    plan: Plan,
    *,
    operator_cas: ssl.SSLContext | None,
    proxy_context: ssl.SSLContext | None,
    timeout: float | None,
) -> HopFailure | None:
    """The ``tls-intercepted`` failure behind ``exc``, a failure of the origin's TLS inside the
    proxy's tunnel, or None: only a certificate verification failure is probed, only when the
    operator added CAs for the proxy, and the probe is bounded by ``timeout``."""
    proxy = plan.pool.proxy
    target = plan.decision.target
    if proxy is None or operator_cas is None or target.scheme != "https":
        return None
    verify = find_cause(exc, ssl.SSLCertVerificationError)
    if verify is None:
        return None
    issuer = intercepting_issuer(
        proxy,
        plan.host,
        target.port or 443,
        operator_cas=operator_cas,
        proxy_context=proxy_context,
        credentials=planner.credentials,
        authorization=planner.authorization(proxy),
        timeout=timeout if timeout is not None and timeout > 0 else DEFAULT_PROBE_TIMEOUT,
    )
    if issuer is None:
        return None
    reason = planner.scrub(verify.verify_message or "certificate verify failed")
    return tls_intercepted(plan.decision, issuer, reason)


def intercepting_issuer(
    proxy: ProxyURL,
    host: str,
    port: int,
    *,
    operator_cas: ssl.SSLContext,
    proxy_context: ssl.SSLContext | None,
    credentials: tuple[str, str] | None,
    timeout: float,
    authorization: Callable[[], str] | None = None,
) -> str | None:
    """The issuer of the certificate ``host:port`` presents through ``proxy`` when one of
    ``operator_cas`` signed it (the proxy intercepts), else None. Never raises for network or TLS
    trouble; bounded by ``timeout`` seconds in all. ``authorization`` makes the probe's own
    ``Proxy-Authorization`` (a fresh Negotiate token: the probe is a new connection)."""
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((proxy.host, proxy.port), timeout=timeout)
    except OSError:
        return None
    try:
        stream: socket.socket = sock
        if proxy.scheme == "https":
            if proxy_context is None:
                return None
            _left(sock, deadline)
            stream = proxy_context.wrap_socket(sock, server_hostname=proxy.host)
        value = authorization() if authorization is not None else None
        if not _connect(stream, host, port, credentials, deadline, value):
            return None
        cert = _handshake(stream, operator_cas, host, deadline)
    except (OSError, ssl.SSLError, ValueError, KerberosFailure):
        return None
    finally:
        sock.close()
    return issuer_text(cert) if cert is not None else None


def _left(sock: socket.socket, deadline: float) -> None:
    """Set the socket's timeout to what is left of ``deadline``; TimeoutError when none is."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the interception probe ran out of time")
    sock.settimeout(left)


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _connect(
    stream: socket.socket,
    host: str,
    port: int,
    credentials: tuple[str, str] | None,
    deadline: float,
    authorization: str | None = None,
) -> bool:
    """Send CONNECT and read the answer's head; True for a 2xx."""
    _left(stream, deadline)
    stream.sendall(connect_request(_authority(host, port), credentials, authorization))
    answer = b""
    while b"\r\n\r\n" not in answer:
        if len(answer) > ANSWER_LIMIT:
            return False
        _left(stream, deadline)
        # one byte at a time: nothing past the head may be read, it belongs to the origin's TLS
        data = stream.recv(1)
        if not data:
            return False
        answer += data
    status = connect_answer(answer)[0]
    return status is not None and 200 <= status < 300


def _handshake(
    stream: socket.socket, operator_cas: ssl.SSLContext, host: str, deadline: float
) -> dict[str, object] | None:
    """TLS with the origin over ``stream`` (through memory BIOs, so an https:// proxy's own TLS
    can carry it); the verified peer certificate, or None when the chain does not verify."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = operator_cas.wrap_bio(incoming, outgoing, server_hostname=host)
    while True:
        try:
            tls.do_handshake()
            done = True
        except ssl.SSLWantReadError:
            done = False
        except ssl.SSLCertVerificationError:
            return None
        pending = outgoing.read()
        if pending:
            _left(stream, deadline)
            stream.sendall(pending)
        if done:
            cert = tls.getpeercert()
            return dict(cert) if cert else None
        _left(stream, deadline)
        data = stream.recv(64 * 1024)
        if not data:
            return None
        incoming.write(data)


def issuer_text(cert: dict[str, object]) -> str:
    """The issuer of a decoded certificate (``SSLObject.getpeercert()``) as ``CN=..., OU=...``.

    >>> issuer_text({"issuer": ((("organizationName", "Corp"),), (("commonName", "Corp CA"),))})
    'CN=Corp CA, O=Corp'
    """
    short = {
        "commonName": "CN",
        "organizationalUnitName": "OU",
        "organizationName": "O",
        "countryName": "C",
    }
    parts: list[str] = []
    issuer = cert.get("issuer")
    if isinstance(issuer, tuple):
        for rdn in issuer:
            for attr in rdn:
                if isinstance(attr, tuple) and len(attr) == 2:
                    parts.append(f"{short.get(str(attr[0]), str(attr[0]))}={attr[1]}")
    parts.reverse()  # most specific first, as people read a name
    return ", ".join(parts) or "an unnamed CA"
