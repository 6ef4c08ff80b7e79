"""A stdlib fake SaaS origin: HTTPS and plain HTTP on loopback, answering JSON echoes.

Every response tells a test how the request arrived, so it can prove that a request really
went through the proxy (``via``/``x_forwarded_for`` for plain HTTP, ``sni`` for CONNECT tunnels)
and that proxy credentials never leaked to the origin (``proxy_authorization_leaked``).

Routes (any method):

* ``/redirect?to=<url>`` -> 302 with ``Location: <url>`` (body: the JSON echo);
* ``/page...``          -> a small HTML page (``<h1 id='t'>hello from origin</h1>``);
* ``/status/<code>``    -> that status code with the JSON echo;
* ``/bytes/<n>``        -> ``n`` bytes of ``application/octet-stream`` (for benchmarks);
* anything else         -> 200 with the JSON echo.

The JSON echo has: ``scheme``, ``method``, ``path`` (with the query), ``host_header``,
``sni``, ``client`` (peer IP), ``via``, ``x_forwarded_for``, ``proxy_authorization_leaked``,
``headers`` (all received headers, names lower-cased, repeated ones joined with ", "),
``body_len``, ``http_version`` and ``requests_on_connection`` (1 for the first request on a TCP
connection, 2 for the second one on a kept-alive connection, ...).
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.certs import server_context
from tests.support.ports import LOOPBACK

PAGE_HTML = (
    "<!doctype html><html><head><title>fake origin</title></head>"
    "<body><h1 id='t'>hello from origin</h1></body></html>"
)
MAX_BYTES = 256 * 1024 * 1024


class FakeOrigin:
    """The fake origin, served from two background threads of the calling process.

    ``FakeOrigin(cert, key).start()`` binds ``127.0.0.1`` on free ports (or the given ones);
    ``stop()`` closes the listeners and every open connection. Also a context manager.
    """

    def __init__(
        self,
        cert_file: str | Path,
        key_file: str | Path,
        *,
        host: str = LOOPBACK,
        http_port: int = 0,
        https_port: int = 0,
    ) -> None:
        self.host = host
        self._cert_file = Path(cert_file)
        self._key_file = Path(key_file)
        self._want_http_port = http_port
        self._want_https_port = https_port
        self._servers: list[_OriginServer] = []
        self._threads: list[threading.Thread] = []
        self._log: list[dict[str, Any]] = []
        self._log_lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeOrigin:
        """Bind both listeners and serve them from daemon threads; return ``self``."""
        if self._servers:
            raise RuntimeError("FakeOrigin is already running")
        tls = server_context(self._cert_file, self._key_file)
        tls.sni_callback = _remember_sni
        try:
            for port, ctx in ((self._want_http_port, None), (self._want_https_port, tls)):
                server = _OriginServer((self.host, port), ctx, self)
                self._servers.append(server)
        except BaseException:
            for server in self._servers:
                server.server_close()
            self._servers.clear()
            raise
        for server in self._servers:
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"fake-origin-{server.scheme}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop serving, close the listeners and drop every open connection."""
        for server in self._servers:
            server.shutdown()
            server.close_all_connections()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers.clear()
        self._threads.clear()

    def __enter__(self) -> FakeOrigin:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------------

    @property
    def http_port(self) -> int:
        return self._server("http").server_address[1]

    @property
    def https_port(self) -> int:
        return self._server("https").server_address[1]

    @property
    def http_url(self) -> str:
        """``http://127.0.0.1:PORT`` (direct, no name resolution)."""
        return f"http://{self.host}:{self.http_port}"

    @property
    def https_url(self) -> str:
        """``https://127.0.0.1:PORT`` (direct, no name resolution)."""
        return f"https://{self.host}:{self.https_port}"

    def url(self, name: str, path: str = "/", *, tls: bool = True) -> str:
        """URL of this origin under a fake ``name``: ``https://NAME:HTTPS_PORT/path``.

        Only a proxy (Squid's hosts file) can resolve such a URL.
        """
        if not path.startswith("/"):
            path = "/" + path
        if tls:
            return f"https://{name}:{self.https_port}{path}"
        return f"http://{name}:{self.http_port}{path}"

    # -- what the origin saw ---------------------------------------------------------------

    def received(self) -> list[dict[str, Any]]:
        """The JSON echo of every request answered so far, oldest first."""
        with self._log_lock:
            return list(self._log)

    def clear_received(self) -> None:
        with self._log_lock:
            self._log.clear()

    def _record(self, echo: dict[str, Any]) -> None:
        with self._log_lock:
            self._log.append(echo)

    def _server(self, scheme: str) -> _OriginServer:
        for server in self._servers:
            if server.scheme == scheme:
                return server
        raise RuntimeError("FakeOrigin is not running")


def _remember_sni(sslobj: ssl.SSLSocket | ssl.SSLObject, name: str | None, _: Any) -> None:
    # called during the handshake; the handler reads it back from the socket
    sslobj.egress_sni = name  # type: ignore[union-attr]


class _OriginServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], tls: ssl.SSLContext | None, origin: FakeOrigin
    ) -> None:
        self.tls = tls
        self.scheme = "https" if tls else "http"
        self.origin = origin
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Runs in the per-connection thread, so a slow TLS handshake never blocks accept().
        sock: socket.socket = request
        sock.settimeout(30)
        self._track(sock, add=True)
        try:
            if self.tls is not None:
                try:
                    sock = self.tls.wrap_socket(sock, server_side=True)
                except (ssl.SSLError, OSError):
                    return
                self._track(sock, add=True)
            with contextlib.suppress(OSError):
                _Handler(sock, client_address, self)
        finally:
            self._track(request, add=False)
            self._track(sock, add=False)
            if sock is not request:
                with contextlib.suppress(OSError):
                    sock.close()

    def _track(self, sock: socket.socket, *, add: bool) -> None:
        with self._conns_lock:
            if add:
                self._conns.add(sock)
            else:
                self._conns.discard(sock)

    def close_all_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # no tracebacks on stderr: clients hanging up mid-request are normal here


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes; without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK hold the body back about 40 ms on every response.
    disable_nagle_algorithm = True
    server_version = "fake-origin/1"
    server: _OriginServer
    _requests_on_connection = 0

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._answer()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = do_GET

    def _answer(self) -> None:
        self._requests_on_connection += 1
        body_len = self._read_body()
        echo = self._echo(body_len)
        self.server.origin._record(echo)

        split = urlsplit(self.path)
        status, content_type, payload = 200, "application/json", b""
        extra: list[tuple[str, str]] = []
        if split.path == "/redirect":
            target = parse_qs(split.query).get("to", ["/"])[0]
            status = 302
            extra.append(("Location", target))
        elif split.path.startswith("/page"):
            content_type, payload = "text/html; charset=utf-8", PAGE_HTML.encode()
        elif split.path.startswith("/status/"):
            status = _int_or(split.path.removeprefix("/status/"), 200, 100, 599)
        elif split.path.startswith("/bytes/"):
            size = _int_or(split.path.removeprefix("/bytes/"), 0, 0, MAX_BYTES)
            content_type, payload = "application/octet-stream", b"x" * size
        if not payload and content_type == "application/json":
            payload = json.dumps(echo).encode()

        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD" and status not in (204, 304) and status >= 200:
            self.wfile.write(payload)
        self.wfile.flush()

    def _read_body(self) -> int:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            total = 0
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return total
                total += len(self.rfile.read(size))
                self.rfile.readline(65537)  # CRLF after the chunk
        length = int(self.headers.get("Content-Length") or 0)
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 16))
            if not chunk:
                break
            remaining -= len(chunk)
        return length - remaining

    def _echo(self, body_len: int) -> dict[str, Any]:
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        return {
            "scheme": self.server.scheme,
            "method": self.command,
            "path": self.path,
            "host_header": self.headers.get("Host"),
            "sni": getattr(self.connection, "egress_sni", None),
            "client": self.client_address[0],
            "via": self.headers.get("Via"),
            "x_forwarded_for": self.headers.get("X-Forwarded-For"),
            "proxy_authorization_leaked": self.headers.get("Proxy-Authorization"),
            "headers": headers,
            "body_len": body_len,
            "http_version": self.request_version,
            "requests_on_connection": self._requests_on_connection,
        }


def _int_or(text: str, default: int, low: int, high: int) -> int:
    try:
        value = int(text.split("/", 1)[0])
    except ValueError:
        return default
    return value if low <= value <= high else default
