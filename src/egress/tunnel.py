"""``egress tunnel``: a loopback listener that carries TCP (PostgreSQL, Redshift) through CONNECT.

Each accepted connection gets its own CONNECT through the proxy the router names for the target
(``http://`` or ``https://`` proxy, Basic auth, the proxy's own trust), then a bidirectional copy.
The copy reads one chunk per direction and writes it whole before reading again, so a slow peer
slows its sender (backpressure); the end of one side's stream is passed on as a half-close
(``shutdown(SHUT_WR)``) where the hop allows it. A connection that fails is logged in one line and
closed; the listener keeps serving. No HTTP library is involved.

The driver keeps the warehouse's name for its certificate checks (libpq: ``host=<name>
hostaddr=127.0.0.1 port=<tunnel port> sslmode=verify-full``): TLS runs end to end inside the
tunnel, the tunnel only sees ciphertext.

>>> from egress.settings import load_settings_from_mapping
>>> s = load_settings_from_mapping({"proxy": {"url": "http://proxy:3128"},
...     "tunnel_tcp_warehouses": True}, env={})
>>> d = decide_target(s, "db.example.com:5432")
>>> d.route, d.target.authority, d.warehouse
('tunnel', 'db.example.com:5432', 'postgres')
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import logging
import os
import selectors
import socket
import ssl
import threading
import time
from types import TracebackType

from egress import observe
from egress.errors import EgressTransportError, UnsupportedRoute, URLError
from egress.kerberos import KerberosFailure
from egress.redact import printable, shown
from egress.router import Decision
from egress.settings import Settings
from egress.transport.failures import (
    ANSWER_LIMIT,
    PLAIN_ERRORS,
    HopFailure,
    NoAnswer,
    connect_answer,
    kerberos_failed,
    proxy_answer_detail,
    proxy_no_answer,
    proxy_refused,
    proxy_tls_failed,
    proxy_unreachable,
    reason_of,
)
from egress.transport.plan import DEFAULT_TIMEOUT_SECONDS, Planner, connect_request
from egress.transport.trust import proxy_ssl_context
from egress.warehouses import WAREHOUSES

__all__ = ["CHUNK", "Tunnel", "decide_target", "open_upstream"]

LOG = logging.getLogger("egress.tunnel")

CHUNK = 1024 * 1024
"""Bytes read per direction before they are written on: large reads keep the copy's per-call
cost low (measured in ``bench/tunnel.py``)."""
_PORT_KINDS = {w.default_port: name for name, w in WAREHOUSES.items() if w.protocol == "tcp"}


def decide_target(settings: Settings, target: str, kind: str | None = None) -> Decision:
    """The router's decision for ``target``: a URL (``postgresql://db:5432``) or ``HOST:PORT``.

    A bare ``HOST:PORT`` is the warehouse ``kind`` when given, else the TCP warehouse whose default
    port it is (5432 PostgreSQL, 5439 Redshift), else an ordinary TLS destination.
    """
    if kind is not None and kind not in WAREHOUSES:
        raise URLError(
            f"the warehouse kind {shown(kind)} is unknown; use one of {', '.join(WAREHOUSES)}"
        )
    if "://" in target:
        return settings.router().decide(target, warehouse=kind)
    host, sep, port_text = target.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise URLError(
            f"the tunnel target {shown(target)} is not HOST:PORT; write it as db.example.com:5432"
        )
    kind = kind or _PORT_KINDS.get(int(port_text))
    scheme = WAREHOUSES[kind].schemes[0] if kind is not None else "https"
    return settings.router().decide(f"{scheme}://{host}:{port_text}", warehouse=kind)


# ---------------------------------------------------------------------------------------------
# The CONNECT exchange.


def _denied_port(failure: HopFailure, decision: Decision) -> HopFailure:
    """A 403 to CONNECT: usually the port (Squid's default ``SSL_ports`` is 443 only)."""
    target = decision.target
    hint = (
        f"ask the proxy team to allow CONNECT to {target.host_text} on port {target.port} "
        "(Squid allows CONNECT only to SSL_ports, 443 by default), or keep the route direct "
        "(tunnel_tcp_warehouses: false)"
    )
    what = failure.message[: len(failure.message) - len(failure.hint)].rstrip(": ")
    return dataclasses.replace(failure, message=f"{what}: {hint}", hint=hint)


def _fail(failure: HopFailure, planner: Planner, cause: BaseException | None = None) -> None:
    error = failure.error(PLAIN_ERRORS, planner.secrets)
    if cause is not None:
        raise error from cause
    raise error


def open_upstream(
    decision: Decision,
    planner: Planner,
    *,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    context: ssl.SSLContext | None = None,
) -> tuple[socket.socket, bytes]:
    """A socket carried to ``decision``'s target by CONNECT, and any bytes the proxy already sent
    past its answer. The whole exchange (TCP, TLS, answer) has ``timeout`` seconds.

    Raises the transport's hop errors (``ProxyUnreachable``, ``ProxyTLSError``, ``ProxyDenied``,
    ``ProxyAuthRequired``, ``ProxyError``), their messages masked of the proxy's secrets.
    """
    proxy = decision.proxy_url
    if proxy is None:
        raise UnsupportedRoute(
            f"{decision.target.authority} is decided {decision.route!r} ({decision.rule}), not "
            "through a proxy: connect to it directly",
            target=decision.target.authority,
            hop="route",
        )
    deadline = time.monotonic() + timeout
    try:
        raw = socket.create_connection((proxy.host, proxy.port), timeout=timeout)
    except OSError as exc:
        _fail(proxy_unreachable(decision, reason_of(exc)), planner, exc)
        raise  # unreachable: _fail raises
    sock: socket.socket = raw
    try:
        if proxy.scheme == "https":
            ctx = context or proxy_ssl_context(planner.settings.proxy)
            raw.settimeout(max(0.001, deadline - time.monotonic()))
            try:
                sock = ctx.wrap_socket(raw, server_hostname=proxy.host)
            except ssl.SSLCertVerificationError as exc:
                _fail(proxy_tls_failed(decision, reason_of(exc), certificate=True), planner, exc)
            except TimeoutError as exc:
                failure = proxy_unreachable(decision, "TLS handshake timed out", hop="proxy-tls")
                _fail(failure, planner, exc)
            except (ssl.SSLError, OSError) as exc:
                _fail(proxy_tls_failed(decision, reason_of(exc), certificate=False), planner, exc)
        data = bytearray()
        why: NoAnswer | None = None
        mint = planner.authorization(proxy)
        authorization: str | None = None
        try:  # with Negotiate: a fresh Kerberos token for this connection alone
            authorization = mint() if mint is not None else None
        except KerberosFailure as exc:
            _fail(kerberos_failed(decision, exc, "proxy-connect"), planner, exc)
        try:
            sock.sendall(
                connect_request(decision.target.authority, planner.credentials, authorization)
            )
            while b"\r\n\r\n" not in data:
                left = deadline - time.monotonic()
                if left <= 0:
                    why = "deadline"
                    break
                sock.settimeout(left)
                chunk = sock.recv(ANSWER_LIMIT)
                if not chunk:
                    why = "closed"
                    break
                data += chunk
                if len(data) > ANSWER_LIMIT or not b"HTTP/1.".startswith(bytes(data[:7])):
                    why = "garbage"
                    break
        except TimeoutError:
            why = "deadline"
        except OSError as exc:
            _fail(proxy_no_answer(decision, "closed"), planner, exc)
        if why is not None:
            _fail(
                proxy_no_answer(decision, why, seconds=timeout if why == "deadline" else None),
                planner,
            )
        status, phrase, headers = connect_answer(data)
        if status is None:
            _fail(proxy_no_answer(decision, "garbage"), planner)
        elif not 200 <= status < 300:
            detail = proxy_answer_detail(headers)
            username = planner.credentials[0] if planner.credentials else None
            failure = proxy_refused(
                decision,
                status,
                method="CONNECT",
                reason_phrase=printable(phrase),
                detail=detail,
                username=username,
                spn=planner.spn(proxy),
            )
            if status == 403:
                failure = _denied_port(failure, decision)
            _fail(failure, planner)
        sock.settimeout(None)
        return sock, bytes(data.split(b"\r\n\r\n", 1)[1])
    except BaseException:
        sock.close()
        raise


# ---------------------------------------------------------------------------------------------
# The copy.


class _Direction:
    """One direction of the copy: a chunk read from ``src`` is written whole to ``dst``."""

    __slots__ = ("buf", "data", "done", "dst", "eof", "moved", "src", "view")

    def __init__(self, src: socket.socket, dst: socket.socket) -> None:
        self.src, self.dst = src, dst
        self.moved = 0  # bytes written on since the last count (observe.tunnel_bytes)
        self.buf = bytearray(CHUNK)
        self.view = memoryview(self.buf)
        self.data = self.view[:0]
        self.eof = False
        self.done = False  # eof seen and everything written on, half-close passed on

    @property
    def pending(self) -> int:
        """Bytes read and not yet written on."""
        return len(self.data)

    def read(self) -> None:
        try:
            n = self.src.recv_into(self.buf)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            n = 0  # the proxy ended TLS: the stream ended
        if n == 0:
            self.eof = True
        else:
            self.data = self.view[:n]

    def write(self) -> None:
        try:
            n = self.dst.send(self.data)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return
        self.data = self.data[n:]
        self.moved += n

    def finish(self) -> None:
        """The source ended and all is written: pass the end on (TLS hops cannot half-close)."""
        self.done = True
        if not isinstance(self.dst, ssl.SSLSocket):
            with contextlib.suppress(OSError):
                self.dst.shutdown(socket.SHUT_WR)


class _Splice(_Direction):
    """A direction between two plain sockets, through a pipe with ``os.splice``: the bytes stay
    in the kernel (Linux). ``pending`` is what the pipe holds, as a count."""

    __slots__ = ("pipe_r", "pipe_w", "queued")

    def __init__(self, src: socket.socket, dst: socket.socket) -> None:
        self.src, self.dst = src, dst
        self.moved = 0
        self.pipe_r, self.pipe_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        with contextlib.suppress(OSError):
            fcntl.fcntl(self.pipe_w, fcntl.F_SETPIPE_SZ, CHUNK)
        self.queued = 0
        self.eof = False
        self.done = False

    @property
    def pending(self) -> int:
        return self.queued

    def read(self) -> None:
        try:
            n = os.splice(self.src.fileno(), self.pipe_w, CHUNK, flags=_SPLICE_FLAGS)
        except BlockingIOError:
            return
        if n == 0:
            self.eof = True
        self.queued += n

    def write(self) -> None:
        try:
            n = os.splice(self.pipe_r, self.dst.fileno(), self.queued, flags=_SPLICE_FLAGS)
        except BlockingIOError:
            return
        self.queued -= n
        self.moved += n

    def close(self) -> None:
        os.close(self.pipe_r)
        os.close(self.pipe_w)


_SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)
SPLICE = (
    hasattr(os, "splice")
    and hasattr(fcntl, "F_SETPIPE_SZ")
    and os.environ.get("EGRESS_TUNNEL_SPLICE", "0") == "1"
)
"""Whether plain-to-plain copies go through ``os.splice`` (Linux): off unless
``EGRESS_TUNNEL_SPLICE=1``. Measured through Squid (``bench/tunnel.py``), splice saves about a
tenth of the tunnel's CPU but carries less (0.8 GB/s against 1.0 GB/s for 1 MiB ``recv_into``/
``send``): it moves what one socket buffer holds per call, so it takes more calls."""


def _pump(a: socket.socket, b: socket.socket, first: bytes) -> None:
    """Copy both ways between ``a`` (the client) and ``b`` (the tunnel) until both have ended."""
    if first:
        a.sendall(first)  # what the proxy sent past its answer, before anything else
    a.setblocking(False)
    b.setblocking(False)
    ways: tuple[_Direction, _Direction]
    if SPLICE and not isinstance(b, ssl.SSLSocket):
        ways = (_Splice(a, b), _Splice(b, a))
    else:
        ways = (_Direction(a, b), _Direction(b, a))
    sel = selectors.DefaultSelector()
    try:
        registered: dict[socket.socket, int] = {}
        while True:
            # each direction moves data until the kernel says "would block" (few selects)
            for w in ways:
                while not w.done:
                    if w.pending:
                        w.write()
                        if w.pending:
                            break  # dst is full: wait until it can take more
                    elif w.eof:
                        w.finish()
                    else:
                        w.read()
                        if not w.pending and not w.eof:
                            break  # nothing to read now
            up, down = ways[0].moved, ways[1].moved
            if up or down:
                observe.tunnel_bytes(up, down)
                ways[0].moved = ways[1].moved = 0
            if all(w.done for w in ways):
                return
            keys = {a: 0, b: 0}
            for w in ways:
                if not w.done:
                    if w.pending:
                        keys[w.dst] |= selectors.EVENT_WRITE
                    else:
                        keys[w.src] |= selectors.EVENT_READ
            for s, events in keys.items():
                if registered.get(s, 0) == events:
                    continue
                if not events:
                    sel.unregister(s)
                    del registered[s]
                    continue
                if s in registered:
                    sel.modify(s, events)
                else:
                    sel.register(s, events)
                registered[s] = events
            sel.select()
    finally:
        sel.close()
        for w in ways:
            if isinstance(w, _Splice):
                w.close()


# ---------------------------------------------------------------------------------------------
# The listener.


class Tunnel:
    """A loopback listener whose every connection is carried to one target through CONNECT.

    ``with Tunnel(settings, "db.example.com:5432") as t: connect(host=..., hostaddr=t.host,
    port=t.port)``; ``async with`` works the same. The route must be ``tunnel`` or ``proxy``.
    """

    def __init__(
        self,
        settings: Settings,
        target: str,
        *,
        kind: str | None = None,
        listen: tuple[str, int] = ("127.0.0.1", 0),
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self.settings = settings
        self.decision = decide_target(settings, target, kind)
        if self.decision.route == "direct":
            d = self.decision
            raise UnsupportedRoute(
                f"{d.target.authority} is decided direct ({d.rule}): {d.reason} "
                "Connect to it directly; a tunnel carries only a route through the proxy",
                target=d.target.authority,
                hop="route",
            )
        self.planner = Planner(settings)
        self.timeout = timeout
        self._listen = listen
        self._context = (
            proxy_ssl_context(settings.proxy)
            if self.decision.proxy_url is not None and self.decision.proxy_url.scheme == "https"
            else None
        )
        self._server: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._closing = False
        self.failures = 0
        """How many connections failed so far (each logged once)."""
        self.served = 0
        """How many connections were accepted so far."""

    # -- addresses ---------------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError("the tunnel is not started")
        host, port = self._server.getsockname()[:2]
        return str(host), int(port)

    @property
    def host(self) -> str:
        return self.address[0]

    @property
    def port(self) -> int:
        return self.address[1]

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Tunnel:
        """Bind and listen, then accept in a daemon thread."""
        host, port = self._listen
        server = socket.create_server((host, port), backlog=128)
        self._server = server
        self._thread = threading.Thread(
            target=self._accept_loop, name=f"egress-tunnel-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop accepting and end every open connection."""
        self._closing = True
        server, self._server = self._server, None
        if server is not None:
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_RDWR)
            server.close()
        with self._lock:
            open_now = list(self._open)
        for s in open_now:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Tunnel:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Tunnel:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.close)

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._open) // 2

    # -- work --------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        server = self._server
        assert server is not None
        while not self._closing:
            try:
                client, _ = server.accept()
            except OSError:
                if self._closing:
                    return
                time.sleep(0.05)  # e.g. out of file descriptors: keep serving
                continue
            self.served += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        target = self.decision.target.authority
        observe.decision(self.decision)
        try:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            upstream, first = open_upstream(
                self.decision, self.planner, timeout=self.timeout, context=self._context
            )
            observe.tunnel_connection(True)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._closing:
                    return
                self._open.update((client, upstream))
            _pump(client, upstream, first)
        except EgressTransportError as exc:
            self.failures += 1
            LOG.warning("tunnel to %s: %s", target, exc)
            observe.failed(self.decision, exc, PLAIN_ERRORS, log=False)
        except OSError as exc:
            if not self._closing:
                self.failures += 1
                LOG.warning(
                    "tunnel to %s: connection ended (%s)",
                    target,
                    self.planner.scrub(reason_of(exc)),
                )
        finally:
            if upstream is not None:
                observe.tunnel_connection(False)
            with self._lock:
                self._open.discard(client)
                if upstream is not None:
                    self._open.discard(upstream)
            client.close()
            if upstream is not None:
                upstream.close()
