"""Preflight: every destination in scope, probed along the route the router decides.

The scope is the catalog's destinations in scope, the operator's ``endpoints`` and any
``--url``. Each is probed with egress's own code on the route the router decides:
:class:`egress.Client` (a ``HEAD``; any HTTP answer from the origin is reachable) for HTTP(S),
:func:`egress.tunnel.open_upstream` for tunnelled TCP, a socket for direct TCP (``resolve``
honoured; PostgreSQL and Redshift answer the SSLRequest). Every failure becomes one
:data:`Status` with a one-line fix. :func:`run_checks` runs them concurrently, each bounded by
one timeout as a whole.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

from egress.errors import (
    EgressTransportError,
    ProxyAuthRequired,
    ProxyDenied,
    ProxyTLSError,
    ProxyUnreachable,
    TLSIntercepted,
)
from egress.redact import mask_url, printable, shown
from egress.warehouses import WAREHOUSES

if TYPE_CHECKING:
    from egress.router import Decision
    from egress.settings import Settings
    from egress.transport import VerifyTypes

Status = Literal[
    "ok",
    "proxy-unreachable",
    "proxy-auth-required",
    "proxy-denied",
    "proxy-tls-untrusted",
    "tls-intercepted",
    "dns-failed",
    "connect-refused",
    "timeout",
    "origin-error",
]
STATUSES: tuple[Status, ...] = get_args(Status)
"""Every status, in the order the report lists them."""


@dataclass(frozen=True)
class CheckResult:
    """One destination's preflight: where it went, what happened, and the one-line fix.

    ``as_dict`` is the stable ``--json`` form: url, host, port, route, rule, status, detail, fix,
    elapsed_ms, required.
    """

    url: str
    host: str
    port: int
    route: str
    rule: str
    reason: str
    status: Status
    detail: str
    fix: str
    elapsed_ms: float
    required: bool
    purpose: str = ""
    feature: str = ""
    reachable: bool = False
    """Not ok, yet the destination answered (through a TLS-intercepting proxy whose CA is
    trusted): a warning, never a failure of the run."""

    def as_dict(self) -> dict[str, object]:
        out = asdict(self)
        for extra in ("reason", "purpose", "feature", "reachable"):
            out.pop(extra)
        return out


# -- what is checked -----------------------------------------------------------------------------

DEFAULT_TIMEOUT = 5.0
"""Seconds each check has, as a whole (``--timeout``)."""
WORKERS = 32
"""Checks run at once: enough that the slow ones overlap, bounded so a big scope stays polite."""
SSL_REQUEST = struct.pack("!II", 8, 80877103)
"""PostgreSQL's SSLRequest: length 8, code 80877103 (Redshift speaks the same)."""
_SSL_REQUEST_KINDS = frozenset({"postgres", "redshift"})


@dataclass(frozen=True)
class Probe:
    """One destination to check: its URL, whether the platform needs it, and where it came from."""

    url: str
    required: bool = True
    purpose: str = ""
    feature: str = ""
    warehouse: str | None = None


def _kind_of(url: str) -> str | None:
    """The TCP warehouse a URL's scheme names (``postgresql://`` is postgres), else None."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    for name, w in WAREHOUSES.items():
        if scheme in w.schemes:
            return name
    return None


def probes_for(
    settings: Settings, features: tuple[str, ...] | None = None, urls: Sequence[str] = ()
) -> list[Probe]:
    """Everything in scope: the catalog's rows (wildcards have no host to try and are left out),
    the operator's ``endpoints`` and every ``--url``; each URL once, the first source wins."""
    from egress.scope import in_scope

    out: dict[str, Probe] = {}
    for row in in_scope(settings, features):
        if row.sample or "*" in row.host:
            continue
        out.setdefault(
            row.url,
            Probe(row.url, row.required, row.purpose, row.feature, row.warehouse),
        )
    for url in settings.endpoints:
        out.setdefault(url, Probe(url, True, "named in settings.endpoints", "endpoints"))
    for url in urls:
        out.setdefault(url, Probe(url, True, "named with --url", "--url"))
    return list(out.values())


# -- one check -----------------------------------------------------------------------------------


class _Progress:
    """The hop a check has reached, for a timeout's message (written by the check's thread)."""

    def __init__(self) -> None:
        self.hop = "start"

    def trace(self, event: str, info: Mapping[str, Any]) -> None:
        """httpcore's trace hook: remember which step started last."""
        if event.endswith(".started"):
            self.hop = event[: -len(".started")]


def _fail_fix(exc: BaseException, d: Decision, timeout: float) -> tuple[Status, str, str]:
    """Status, detail and fix for the error a check ended with."""
    where = d.target.authority
    detail = printable(str(exc))[:500] or type(exc).__name__
    hint = getattr(exc, "hint", "") or ""
    if isinstance(exc, TLSIntercepted):
        return (
            "tls-intercepted",
            detail,
            hint
            or f"the proxy intercepts TLS to {where}: trust its CA for this destination on "
            "purpose (proxy.ca_file), or ask the proxy team to exempt it from interception",
        )
    if isinstance(exc, ProxyAuthRequired):
        if "Kerberos" in detail and hint:  # Negotiate: the cause (no ticket, SPN, ...) and its fix
            return "proxy-auth-required", detail, hint
        return (
            "proxy-auth-required",
            detail,
            "set proxy.username and proxy.password_file to the proxy's credentials (or check "
            "them: the proxy refused the ones given)",
        )
    if isinstance(exc, ProxyDenied):
        return (
            "proxy-denied",
            detail,
            f"ask the proxy team to allow {where} (CONNECT to port {d.target.port})"
            if d.target.scheme not in ("http", "ws")
            else f"ask the proxy team to allow {where}",
        )
    if isinstance(exc, ProxyTLSError):
        return (
            "proxy-tls-untrusted",
            detail,
            "set proxy.ca_file to the CA that signs the proxy's certificate",
        )
    if isinstance(exc, ProxyUnreachable):
        return (
            "proxy-unreachable",
            detail,
            f"check that the proxy {d.proxy} is up and that this host may reach it "
            "(address, port, firewall)",
        )
    if _find(exc, socket.gaierror) is not None:
        return (
            "dns-failed",
            f"cannot resolve {d.target.host_text}: {detail}",
            f"check the name {d.target.host_text}, or give its address in resolve: "
            f"{{{d.target.host_text}: <IP>}}",
        )
    if d.route == "direct" and _find(exc, ConnectionRefusedError) is not None:
        return (
            "connect-refused",
            f"{where} refused the connection (direct route, {d.rule})",
            "direct egress is blocked or nothing listens: allow it in the NetworkPolicy / "
            f"firewall, check the port, or route {d.target.host_text} through the proxy",
        )
    if _is_timeout(exc):
        hop = "the proxy's CONNECT" if isinstance(exc, EgressTransportError) else where
        return (
            "timeout",
            f"no answer from {hop} within {timeout:g} s ({detail})",
            f"check that {where} answers on this route ({d.route}) and raise --timeout if it is "
            "only slow",
        )
    return (
        "origin-error",
        detail,
        hint or f"{where} was reached but failed: check its address, port and certificate",
    )


def _find(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    seen: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and all(link is not s for s in seen):
        if isinstance(link, kind):
            return link
        seen.append(link)
        link = link.__cause__ or link.__context__
    return None


def _is_timeout(exc: BaseException) -> bool:
    import httpx

    if _find(exc, TimeoutError) is not None or _find(exc, httpx.TimeoutException) is not None:
        return True
    return isinstance(exc, EgressTransportError) and " within " in str(exc)


def _ssl_request(sock: socket.socket, first: bytes, deadline: float) -> str:
    """Send PostgreSQL's SSLRequest and read the one-byte answer ('S' TLS, 'N' plain)."""
    sock.settimeout(max(0.001, deadline - time.monotonic()))
    sock.sendall(SSL_REQUEST)
    answer = first[:1] or sock.recv(1)
    if answer in (b"S", b"N"):
        return f"SSLRequest answered {answer.decode()}"
    raise ConnectionError(f"the server did not answer the SSLRequest ({shown(answer)})")


def _direct_tcp(settings: Settings, d: Decision, kind: str | None, deadline: float) -> str:
    host = d.target.host_text
    port = d.target.port or 0
    address = settings.resolve_map().get(host, host)
    left = max(0.001, deadline - time.monotonic())
    with socket.create_connection((address, port), timeout=left) as sock:
        if kind in _SSL_REQUEST_KINDS:
            return _ssl_request(sock, b"", deadline)
    return f"TCP connected to {address}:{port}"


def _tunnelled_tcp(settings: Settings, d: Decision, kind: str | None, deadline: float) -> str:
    from egress.transport import Planner
    from egress.tunnel import open_upstream

    left = max(0.001, deadline - time.monotonic())
    sock, first = open_upstream(d, Planner(settings), timeout=left)
    with sock:
        if kind in _SSL_REQUEST_KINDS:
            return "through CONNECT; " + _ssl_request(sock, first, deadline)
    return "CONNECT established"


def _http(client: Any, url: str, progress: _Progress) -> str:
    response = client.head(url, extensions={"trace": progress.trace})
    return f"HTTP {response.status_code} from the origin"


def check_one(
    settings: Settings,
    probe: Probe,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    client: Any = None,
    progress: _Progress | None = None,
) -> CheckResult:
    """Probe one destination along the route the router decides, with egress's own code."""
    progress = progress or _Progress()
    started = time.monotonic()
    deadline = started + timeout
    kind = probe.warehouse or _kind_of(probe.url)
    d = settings.router().decide(probe.url, warehouse=kind)
    tcp = kind is not None and WAREHOUSES[kind].protocol == "tcp"
    status: Status = "ok"
    fix = ""
    reachable = False
    try:
        if d.route == "tunnel" or (tcp and d.route == "proxy"):
            progress.hop = "proxy CONNECT"
            detail = _tunnelled_tcp(settings, d, kind, deadline)
        elif tcp or d.target.scheme not in _HTTP_SCHEMES:
            progress.hop = "direct TCP"
            detail = _direct_tcp(settings, d, kind, deadline)
        else:
            own = client is None
            if own:
                from egress.transport import Client

                client = Client(settings, timeout=timeout)
            try:
                detail = _http(client, _http_url(probe.url), progress)
            finally:
                if own:
                    client.close()
            issuer = _intercepting_issuer(settings, d, deadline)
            if issuer is not None:
                status, reachable = "tls-intercepted", True
                detail = (
                    f"{detail}, but the proxy intercepts TLS: the certificate presented for "
                    f"{d.target.authority} was issued by {issuer}, a CA from proxy.ca_file, not "
                    "by the origin's own CA"
                )
                fix = (
                    "components that trust only public roots (or pin the origin's CA) fail "
                    "here: trust that CA for this destination on purpose, or ask the proxy team "
                    f"to exempt {d.target.host_text} from interception"
                )
    except Exception as exc:  # every failure becomes a status, never a crash of the run
        status, detail, fix = _fail_fix(exc, d, timeout)
    return _result(probe, d, status, detail, fix, started, reachable=reachable)


def _intercepting_issuer(settings: Settings, d: Decision, deadline: float) -> str | None:
    """After a successful proxied HTTPS check, when the operator added CAs for the proxy: the
    issuer of the origin's certificate if one of those CAs signed it (the request only worked
    because ``proxy.ca_file`` is trusted for origins too), else None. One more tunnel and
    handshake (:mod:`egress.transport.intercept`), bounded by what is left of the check's time."""
    from egress.transport import Planner
    from egress.transport.intercept import intercepting_issuer
    from egress.transport.trust import operator_cas, proxy_ssl_context

    proxy = d.proxy_url
    if d.route != "proxy" or proxy is None or d.target.scheme not in ("https", "wss"):
        return None
    cas = operator_cas(settings.proxy)
    if cas is None:
        return None
    planner = Planner(settings)
    return intercepting_issuer(
        proxy,
        d.target.host_text,
        d.target.port or 443,
        operator_cas=cas,
        proxy_context=proxy_ssl_context(settings.proxy) if proxy.scheme == "https" else None,
        credentials=planner.credentials,
        authorization=planner.authorization(proxy),
        timeout=max(0.05, deadline - time.monotonic()),
    )


_HTTP_SCHEMES = frozenset({"http", "https", "ws", "wss"})


def _http_url(url: str) -> str:
    """A ws(s):// URL is probed as the http(s):// request its handshake starts with."""
    if url.startswith("ws://"):
        return "http://" + url[5:]
    if url.startswith("wss://"):
        return "https://" + url[6:]
    return url


def _result(
    probe: Probe,
    d: Decision,
    status: Status,
    detail: str,
    fix: str,
    started: float,
    *,
    reachable: bool = False,
) -> CheckResult:
    return CheckResult(
        url=mask_url(probe.url),
        host=d.target.host_text,
        port=d.target.port or 0,
        route=d.route,
        rule=d.rule,
        reason=d.reason,
        status=status,
        detail=detail,
        fix=fix,
        elapsed_ms=round((time.monotonic() - started) * 1000, 1),
        required=probe.required,
        purpose=probe.purpose,
        feature=probe.feature,
        reachable=reachable,
    )


# -- many checks at once -------------------------------------------------------------------------


def run_checks(
    settings: Settings,
    probes: Sequence[Probe],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    workers: int = WORKERS,
    verify: VerifyTypes = True,
    on_result: Callable[[CheckResult], None] | None = None,
) -> list[CheckResult]:
    """Every probe, ``workers`` at a time; each has ``timeout`` seconds as a whole, so the run
    takes about one timeout, not the sum. Results come back in the order of ``probes``.

    A check still running at its deadline is reported ``timeout`` (naming the hop it had
    reached) and left to end on its own socket timeouts.
    """
    from egress.transport import Client

    n = len(probes)
    results: list[CheckResult | None] = [None] * n
    progress = [_Progress() for _ in range(n)]
    started: list[float | None] = [None] * n
    limits = httpx_limits(workers)
    client = Client(settings, verify=verify, timeout=timeout, limits=limits)

    def work(i: int) -> CheckResult:
        started[i] = time.monotonic()
        return check_one(settings, probes[i], timeout=timeout, client=client, progress=progress[i])

    pool = ThreadPoolExecutor(
        max_workers=max(1, min(workers, n)), thread_name_prefix="egress-check"
    )
    try:
        futures = {pool.submit(work, i): i for i in range(n)}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.05, return_when=FIRST_COMPLETED)
            for f in done:
                i = futures[f]
                results[i] = f.result()
                if on_result is not None:
                    on_result(results[i])  # type: ignore[arg-type]
            now = time.monotonic()
            for f in list(pending):
                i = futures[f]
                begun = started[i]
                if begun is not None and now >= begun + timeout + GRACE:
                    pending.discard(f)
                    results[i] = _overdue(settings, probes[i], progress[i].hop, timeout, begun)
                    if on_result is not None:
                        on_result(results[i])  # type: ignore[arg-type]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        # closes the idle connections (a proxy logs a CONNECT when it ends); an overdue check
        # still using the client ends with an error nobody waits for
        client.close()
    return [r for r in results if r is not None]


GRACE = 0.1
"""Seconds past a check's timeout before the run stops waiting for it (its own socket timeouts
usually end it first, with a more precise message)."""


def httpx_limits(workers: int) -> Any:
    import httpx

    return httpx.Limits(max_connections=workers * 2, max_keepalive_connections=workers)


def _overdue(
    settings: Settings, probe: Probe, hop: str, timeout: float, started: float
) -> CheckResult:
    kind = probe.warehouse or _kind_of(probe.url)
    d = settings.router().decide(probe.url, warehouse=kind)
    where = d.target.authority
    via = f" via the proxy {d.proxy}" if d.proxy else ""
    return _result(
        probe,
        d,
        "timeout",
        f"no result within {timeout:g} s{via}; the check was at {hop.replace('_', ' ')}",
        f"check that {where} answers on this route ({d.route}) and raise --timeout if it is "
        "only slow",
        started,
    )


def blocks(r: CheckResult) -> bool:
    """Whether this result fails the run: required, not ok, and not reached anyway."""
    return r.status != "ok" and r.required and not r.reachable


def failed(results: Iterable[CheckResult]) -> tuple[list[CheckResult], list[CheckResult]]:
    """The required results that failed, and the rest that did not pass cleanly (warnings: an
    optional failure, or a destination reached through a TLS-intercepting proxy)."""
    bad = [r for r in results if r.status != "ok"]
    return [r for r in bad if blocks(r)], [r for r in bad if not blocks(r)]


def exit_code(results: Iterable[CheckResult]) -> int:
    """The command's exit code (README, "Command line"): 0 when every required check is ok, else 1;
    failed optional checks only warn."""
    bad, _ = failed(results)
    return 1 if bad else 0
