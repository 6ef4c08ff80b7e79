"""Which hop failed, as data: one message catalogue for every HTTP client egress offers.

A :class:`HopFailure` says what failed (its ``kind``), on which hop, for which proxy and target,
in one sentence with the fix. Each client library turns it into its own exception classes
(:data:`PLAIN_ERRORS` here; ``egress.transport.clients.HTTPX_ERRORS`` and
``egress.transport.requests_adapter.REQUESTS_ERRORS``), so ``except httpx.ProxyError`` or
``except requests.RequestException`` keep working for callers. No HTTP library is imported here.

>>> from egress.settings import Settings
>>> d = Settings.from_proxy("http://127.0.0.1:3128").router().decide("https://api.tomtom.com/")
>>> print(proxy_no_answer(d, "deadline", seconds=3).message)
the proxy http://127.0.0.1:3128 gave no complete answer to CONNECT to api.tomtom.com:443 within 3 s: check the proxy's health and logs, or raise the read timeout
"""  # noqa: E501

from __future__ import annotations

import os
import re
import socket
import ssl
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeAlias, TypeVar

from egress.errors import (
    EgressTransportError,
    ProxyAuthRequired,
    ProxyDenied,
    ProxyError,
    ProxyTLSError,
    ProxyUnreachable,
    TLSIntercepted,
    UnsupportedRoute,
)
from egress.redact import printable, scrub
from egress.router import Decision

if TYPE_CHECKING:
    from egress.kerberos import KerberosFailure

__all__ = [
    "ANSWER_LIMIT",
    "PLAIN_ERRORS",
    "ErrorClasses",
    "FailureKind",
    "HopFailure",
    "NoAnswer",
    "connect_answer",
    "find_cause",
    "pool_exhausted",
    "proxy_answer_detail",
    "proxy_no_answer",
    "proxy_refused",
    "proxy_tls_failed",
    "proxy_unreachable",
    "reason_of",
    "refusal_by_proxy",
    "scrub_chain",
    "tls_intercepted",
    "unsupported_route",
]

FailureKind = Literal[
    "unreachable", "tls", "denied", "auth", "proxy", "pool", "route", "intercepted"
]
ErrorClasses: TypeAlias = Mapping[FailureKind, type[EgressTransportError]]

PLAIN_ERRORS: ErrorClasses = {
    "unreachable": ProxyUnreachable,
    "tls": ProxyTLSError,
    "denied": ProxyDenied,
    "auth": ProxyAuthRequired,
    "proxy": ProxyError,
    "pool": ProxyUnreachable,
    "route": UnsupportedRoute,
    "intercepted": TLSIntercepted,
}
"""The library-neutral classes (the ``Planner``'s default)."""


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

    def error(self, classes: ErrorClasses, secrets: Iterable[str] = ()) -> EgressTransportError:
        """The exception to raise, from the caller's classes (httpx- or requests-flavoured).

        ``secrets`` are masked in the message: parts of it (a reason phrase, an error code)
        are the proxy's words, and a misbehaving proxy may echo what it was sent.
        """
        wanted = [s for s in secrets if s]
        return classes[self.kind](
            scrub(self.message, wanted) if wanted else self.message,
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


def pool_exhausted(decision: Decision, seconds: float | None, limit: int | None) -> HopFailure:
    """No connection to the proxy became free for a queued request within the pool timeout.

    Seen when the proxy is down or stalls: every pooled connection is stuck on it.
    """
    within = f" within {seconds:g} s" if seconds is not None else ""
    if limit == 1:
        busy = "its one connection is busy"
    else:
        busy = f"all {limit} connections to it are busy" if limit else "its connections are busy"
    return _failure(
        "pool",
        decision,
        f"no connection to the proxy {_proxy_name(decision)} became free for "
        f"{decision.target.authority}{within} ({busy})",
        "check that the proxy is running and answering; if it is only slow, raise the pool "
        "timeout or the connection limits",
        "proxy-tcp",
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
    spn: str | None = None,
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
    # the proxy's words, bounded; escaping control characters is the job of whoever prints
    detail = detail[:80] if detail else None
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
        if spn:
            return _failure(
                "auth",
                decision,
                f"{proxy} refused the Kerberos (Negotiate) token for {spn} for {what} ({code})",
                "the proxy's cache.log says why: a clock skew over 5 minutes between this host, "
                "the KDC and the proxy, a token replayed, or a proxy keytab without the key of "
                f"{spn} (set proxy.kerberos.spn to the proxy's service principal)",
                hop,
                status,
            )
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
    phrase = f"{status} {reason_phrase[:80]}".strip()
    code = f"{phrase}, {detail}" if detail else phrase
    if status >= 500:
        hint = (
            f"the proxy could not reach {target.authority}; ask the proxy team to check that it "
            "can resolve and connect to it"
        )
    else:
        hint = f"ask the proxy team why it refuses {target.authority}"
    return _failure("proxy", decision, f"{proxy} refused {what} ({code})", hint, hop, status)


NoAnswer = Literal["timeout", "deadline", "closed", "garbage"]
"""Why a proxy's answer never came: a read timed out, the whole answer took longer than its
deadline, the proxy closed the connection, or what it sent is not HTTP."""


def proxy_no_answer(
    decision: Decision,
    why: NoAnswer,
    *,
    method: str = "CONNECT",
    seconds: float | None = None,
) -> HopFailure:
    """The proxy accepted the connection but gave no usable answer to CONNECT (``method``
    ``"CONNECT"``) or to a plain-HTTP request it was sent in absolute form (any other method).

    For a plain-HTTP request the proxy relays the origin's answer, so a timeout there may be
    the origin's slowness; the message says so.
    """
    proxy = _proxy_name(decision)
    what = f"{method} to {decision.target.authority}"
    hop = "proxy-connect" if method == "CONNECT" else "proxy-request"
    within = f" within {seconds:g} s" if seconds is not None else ""
    if why in ("timeout", "deadline"):
        complete = "complete " if why == "deadline" else ""
        sentence = f"the proxy {proxy} gave no {complete}answer to {what}{within}"
        if method != "CONNECT":
            sentence += " (the proxy or the origin behind it is slow)"
        timeout = "read timeout" if why == "deadline" else "timeout"
        hint = f"check the proxy's health and logs, or raise the {timeout}"
    elif why == "closed":
        sentence = f"the proxy {proxy} closed the connection without answering {what}"
        hint = "check that proxy.url names an HTTP proxy, and look at the proxy's logs"
    else:
        sentence = f"the proxy {proxy} answered {what} with something that is not HTTP"
        hint = "check that proxy.url names an HTTP proxy (not another service on that port)"
    return _failure("proxy", decision, sentence, hint, hop)


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


def tls_intercepted(decision: Decision, issuer: str, reason: str) -> HopFailure:
    """Inside the tunnel, the origin's certificate failed verification (``reason``) and was
    signed by ``issuer``, a CA the operator added for the proxy: the proxy intercepts TLS.

    ``issuer`` comes from the certificate, so it is escaped and bounded here.
    """
    target = decision.target
    shown_issuer = printable(issuer)[:200]
    return _failure(
        "intercepted",
        decision,
        f"the certificate {target.authority} presented through the proxy "
        f"{_proxy_name(decision)} was issued by {shown_issuer!r}, a CA configured for the proxy "
        f"(proxy.ca_file), which this client's origin trust rejects ({reason})",
        "the proxy intercepts TLS: trust its CA for this destination on purpose (verify=...), "
        f"or ask the proxy team to exempt {target.host_text} from interception",
        "origin-tls",
    )


ANSWER_LIMIT = 16 * 1024
"""The most of a proxy's answer to CONNECT (status line and headers) that is read or kept."""


def connect_answer(data: bytes | bytearray) -> tuple[int | None, str, dict[str, str]]:
    """Status, reason phrase and headers (names lower-cased) of a proxy's answer to CONNECT;
    a status of None when the answer does not start like HTTP.

    >>> connect_answer(b"HTTP/1.1 403 Forbidden\\r\\nX-Squid-Error: ERR_ACCESS_DENIED 0\\r\\n")
    (403, 'Forbidden', {'x-squid-error': 'ERR_ACCESS_DENIED 0'})
    >>> connect_answer(b"SSH-2.0-OpenSSH_9.2\\r\\n")[0] is None
    True
    """
    head = bytes(data).split(b"\r\n\r\n", 1)[0]
    lines = head.split(b"\r\n")
    first = lines[0].split(None, 2)
    status: int | None = None
    if len(first) >= 2 and first[0].startswith(b"HTTP/") and first[1].isdigit():
        status = int(first[1]) if len(first[1]) == 3 else None
    reason = first[2].decode("latin-1") if status is not None and len(first) == 3 else ""
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if colon:
            headers[name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
    return status, reason, headers


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
    decision: Decision,
    status: int,
    headers: Mapping[str, str],
    *,
    method: str,
    username: str | None,
    spn: str | None = None,
) -> HopFailure | None:
    """A 403/407 answer to an absolute-form request, when the proxy (not the origin) wrote it."""
    if status not in (403, 407):
        return None
    detail = proxy_answer_detail(headers)
    if detail is None and not (status == 407 and headers.get("proxy-authenticate")):
        return None
    return proxy_refused(decision, status, method=method, detail=detail, username=username, spn=spn)


def kerberos_failed(decision: Decision, failure: KerberosFailure, hop: str) -> HopFailure:
    """No Negotiate token could be made for the proxy, so nothing was sent."""
    return _failure(
        "auth",
        decision,
        f"{_proxy_name(decision)} needs Kerberos (Negotiate) for {decision.target.authority}, "
        f"but {failure.message}",
        failure.hint,
        hop,
    )


# ---------------------------------------------------------------------------------------------
# Reading library exceptions.

_E = TypeVar("_E", bound=BaseException)


def find_cause(exc: BaseException, kind: type[_E]) -> _E | None:
    """The nearest exception of ``kind`` behind ``exc`` (``exc`` included): in its causes and
    contexts, and in the exceptions libraries keep in ``args`` (httpcore, urllib3), ``reason``
    or ``original_error`` (urllib3). httpcore's pool re-raises ``from None``, so the chain
    alone can lose the OS's error."""
    for item in _chain(exc):
        if isinstance(item, kind):
            return item
    return None


_OWN_WORDS = (ssl.SSLError, socket.gaierror, socket.herror)
"""OS errors whose number is not an errno: their own words are the reason."""


def reason_of(exc: BaseException) -> str:
    """A short reason for a message: the OS's or OpenSSL's words, else the exception's."""
    verify = find_cause(exc, ssl.SSLCertVerificationError)
    if verify is not None and verify.verify_message:
        return verify.verify_message
    for item in _chain(exc):
        if isinstance(item, OSError) and item.strerror:
            if item.errno and item.errno > 0 and not isinstance(item, _OWN_WORDS):
                return os.strerror(item.errno)  # asyncio words a refusal its own way
            return item.strerror
    if find_cause(exc, TimeoutError) is not None:
        return "timed out"
    text = printable(str(exc).strip())[:200]
    if text.lower().rstrip(".") == "timed out":
        return "timed out"
    return text or type(exc).__name__


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """Every exception reachable from ``exc``, nearest first: causes, contexts, the members of
    an exception group (anyio's failed connection attempts), and exceptions held in args or in
    the attributes libraries keep them in (urllib3's ``reason``, ``original_error``)."""
    todo: deque[object] = deque([exc])
    seen: set[int] = set()
    while todo:
        item = todo.popleft()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        todo.extend(
            (
                item.__cause__,
                item.__context__,
                *item.args,
                *getattr(item, "exceptions", ()),
                getattr(item, "reason", None),
                getattr(item, "original_error", None),
            )
        )


def scrub_chain(exc: BaseException, secrets: Iterable[str]) -> None:
    """Mask ``secrets`` in the text of every exception chained to ``exc``, in place.

    A library's message can quote what the proxy sent back (a misbehaving proxy may echo the
    request, ``Proxy-Authorization`` included); egress's own error keeps the library's
    exception as its ``__cause__`` for diagnosis, so that text is masked where it is held.
    """
    wanted = [s for s in secrets if s]
    if not wanted:
        return
    for item in _chain(exc):
        args = item.args
        masked = tuple(_scrub_arg(a, wanted) for a in args)
        if any(m is not a for m, a in zip(masked, args, strict=True)):
            item.args = masked


def _scrub_arg(arg: object, secrets: list[str]) -> object:
    """``arg`` itself when it shows no secret, else its text with the secrets masked."""
    if isinstance(arg, str):
        text = arg
    elif isinstance(arg, bytes | bytearray):
        text = bytes(arg).decode("latin-1")
    else:
        return arg
    masked = scrub(text, secrets)
    if masked == text:
        return arg
    return masked if isinstance(arg, str) else masked.encode("latin-1", "replace")
