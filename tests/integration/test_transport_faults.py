"""Faulty proxies get a clear answer in bounded time, and no secret leaks on the way.

The misbehaving proxy is a fake (:class:`FakeMisbehavingProxy`), a small loopback server written
here: no real proxy drip-feeds or talks SSH on demand. Everything a real Squid can show (403 and
407 of its own, Basic auth, DEBUG logs of a real exchange) is shown with the real Squid of the
session. Each case runs against ``egress.Client``, ``egress.AsyncClient`` and
``egress.requests_session``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import requests
from tests.support import names
from tests.support.certs import CertBundle
from tests.support.origin import FakeOrigin
from tests.support.ports import free_port
from tests.support.squid import PROXY_PASSWORD, PROXY_USER, SquidProxy

import egress
from egress import (
    EgressTransportError,
    ProxyAuthRequired,
    ProxyDenied,
    ProxyError,
    ProxyTLSError,
    ProxyUnreachable,
    Settings,
    URLError,
)
from egress.settings import load_settings_from_mapping
from egress.transport import DEFAULT_TIMEOUT_SECONDS, HTTPXProxyPoolTimeout

pytestmark = pytest.mark.integration

HTTPS_URL = f"https://{names.API_SAAS}/faulty"
PLAIN_URL = f"http://{names.API_SAAS}/faulty"
CLIENTS = ["Client", "AsyncClient", "requests"]


class FakeMisbehavingProxy:
    """A fake proxy on a free loopback port that misbehaves on purpose once it has read a
    request head (CONNECT or absolute form):

    ``drip``     answers one byte every ``interval`` seconds, for ever (a valid start, then an
                 endless header)
    ``close``    closes the connection without a word
    ``garbage``  sends an SSH banner and waits, as an SSH server on the proxy's port would
    ``half``     sends half a status line, then closes
    ``silent``   keeps the connection open and says nothing
    ``echo``     sends back what it received (``Proxy-Authorization`` included), then closes
    ``plain``    answers whatever comes first with a plain ``400`` and closes, as a plain HTTP
                 port does to a TLS handshake
    ``bytes``    any other value: sends those bytes as its answer, then closes

    ``received`` holds every request head it read; ``close()`` stops it and every connection.
    """

    def __init__(self, behaviour: str | bytes, *, interval: float = 0.5) -> None:
        self.behaviour = behaviour
        self.interval = interval
        self.received: list[bytes] = []
        self.connections = 0
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            self._sockets.append(conn)
            worker = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(worker)
            worker.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.1)
        try:
            if self.behaviour == "plain":
                self.received.append(self._read_some(conn))
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
                return
            head = self._read_head(conn)
            if head is None:
                return
            self.received.append(head)
            behaviour = self.behaviour
            if behaviour == "drip":
                for byte in b"HTTP/1.1 200 OK\r\nX-Drip: " + b"a" * 100_000:
                    conn.sendall(bytes([byte]))
                    if self._stop.wait(self.interval):
                        return
            elif behaviour == "garbage":
                conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
                self._wait_for_close(conn)
            elif behaviour == "half":
                conn.sendall(b"HTTP/1.1 20")
            elif behaviour == "silent":
                self._wait_for_close(conn)
            elif behaviour == "echo":
                conn.sendall(head)
            elif isinstance(behaviour, bytes):
                conn.sendall(behaviour)
            # "close": nothing to say
        except OSError:
            pass  # the client went away
        finally:
            conn.close()

    def _read_head(self, conn: socket.socket) -> bytes | None:
        data = b""
        while b"\r\n\r\n" not in data and not self._stop.is_set():
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                return None
            data += chunk
        return data

    def _read_some(self, conn: socket.socket) -> bytes:
        while not self._stop.is_set():
            try:
                return conn.recv(65536)
            except TimeoutError:
                continue
        return b""

    def _wait_for_close(self, conn: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                if not conn.recv(65536):
                    return
            except TimeoutError:
                continue

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5)


@pytest.fixture
def fake_proxy() -> Iterator[Callable[..., FakeMisbehavingProxy]]:
    """Makes fake misbehaving proxies; each is stopped (and its threads joined) afterwards."""
    made: list[FakeMisbehavingProxy] = []

    def make(behaviour: str | bytes, *, interval: float = 0.5) -> FakeMisbehavingProxy:
        made.append(FakeMisbehavingProxy(behaviour, interval=interval))
        return made[-1]

    yield make
    for proxy in made:
        proxy.close()


def settings_for(proxy_url: str, password_file: Path | None = None) -> Settings:
    proxy: dict[str, Any] = {"enabled": True, "url": proxy_url}
    if password_file is not None:
        proxy["username"] = SECRET_USER
        proxy["password_file"] = str(password_file)
    return load_settings_from_mapping({"proxy": proxy}, env={})


def fetch(
    kind: str, settings: Settings, url: str, timeout: float, **client_options: Any
) -> BaseException | None:
    """GET ``url`` with one of the three clients; the exception it raised (None: it answered)."""
    try:
        if kind == "Client":
            with egress.Client(settings, timeout=timeout, **client_options) as client:
                client.get(url)
        elif kind == "AsyncClient":

            async def run() -> None:
                async with egress.AsyncClient(settings, timeout=timeout, **client_options) as c:
                    await c.get(url)

            asyncio.run(run())
        else:
            with egress.requests_session(settings, **client_options) as session:
                session.get(url, timeout=timeout)
    except Exception as exc:
        return exc
    return None


def timed(call: Callable[[], BaseException | None]) -> tuple[BaseException, float]:
    started = time.monotonic()
    error = call()
    assert error is not None, "the request through a faulty proxy succeeded"
    return error, time.monotonic() - started


def library_error(kind: str) -> type[Exception]:
    return requests.RequestException if kind == "requests" else httpx.TransportError


# -- the CONNECT exchange has a deadline ------------------------------------------------------


@pytest.mark.parametrize("kind", CLIENTS)
def test_a_drip_fed_connect_answer_is_cut_at_the_read_timeout(
    fake_proxy: Callable[..., FakeMisbehavingProxy], kind: str
) -> None:
    # one byte every 0.4 s never trips a 1.5 s read timeout: without a deadline for the whole
    # answer this request would wait for as long as the proxy likes
    proxy = fake_proxy("drip", interval=0.4)
    error, elapsed = timed(lambda: fetch(kind, settings_for(proxy.url), HTTPS_URL, 1.5))
    assert isinstance(error, ProxyError) and isinstance(error, library_error(kind)), error
    assert error.hop == "proxy-connect"
    assert str(error) == (
        f"the proxy {proxy.url} gave no complete answer to CONNECT to {names.API_SAAS}:443 "
        "within 1.5 s: check the proxy's health and logs, or raise the read timeout"
    )
    assert 1.3 < elapsed < 3.5, f"took {elapsed:.1f} s"
    assert proxy.received[0].startswith(b"CONNECT api.example-saas.test:443 ")


# -- bad answers to CONNECT ----------------------------------------------------------------------

BAD_ANSWERS = {
    "close": "closed the connection without answering CONNECT to api.example-saas.test:443",
    "half": "closed the connection without answering CONNECT to api.example-saas.test:443",
    "garbage": "answered CONNECT to api.example-saas.test:443 with something that is not HTTP",
    "silent": "gave no answer to CONNECT to api.example-saas.test:443 within 1 s",
}


@pytest.mark.parametrize("kind", CLIENTS)
@pytest.mark.parametrize("behaviour", list(BAD_ANSWERS))
def test_bad_answers_to_connect_name_the_connect_hop(
    fake_proxy: Callable[..., FakeMisbehavingProxy], behaviour: str, kind: str
) -> None:
    proxy = fake_proxy(behaviour)
    error, elapsed = timed(lambda: fetch(kind, settings_for(proxy.url), HTTPS_URL, 1.0))
    assert isinstance(error, ProxyError) and isinstance(error, library_error(kind)), error
    assert error.hop == "proxy-connect" and error.proxy == proxy.url
    assert str(error).startswith(f"the proxy {proxy.url} {BAD_ANSWERS[behaviour]}: ")
    assert elapsed < 3.0, f"took {elapsed:.1f} s"


# -- plain http:// through a failing proxy ---------------------------------------------------------

PLAIN_FAILURES = {
    "close": "closed the connection without answering GET to api.example-saas.test:80",
    "half": "closed the connection without answering GET to api.example-saas.test:80",
    "garbage": "answered GET to api.example-saas.test:80 with something that is not HTTP",
}


@pytest.mark.parametrize("kind", CLIENTS)
@pytest.mark.parametrize("behaviour", [*PLAIN_FAILURES, "down"])
def test_plain_http_through_a_failing_proxy_names_the_proxy_hop(
    fake_proxy: Callable[..., FakeMisbehavingProxy], behaviour: str, kind: str
) -> None:
    proxy_url = f"http://127.0.0.1:{free_port()}" if behaviour == "down" else ""
    if not proxy_url:
        proxy_url = fake_proxy(behaviour).url
    error, elapsed = timed(lambda: fetch(kind, settings_for(proxy_url), PLAIN_URL, 1.0))
    assert isinstance(error, EgressTransportError) and isinstance(error, library_error(kind))
    assert str(error) and error.proxy == proxy_url, error
    if behaviour == "down":
        assert isinstance(error, ProxyUnreachable) and error.hop == "proxy-tcp"
        assert str(error).startswith(f"cannot connect to the proxy {proxy_url} for ")
        assert "(Connection refused)" in str(error)
    else:
        assert isinstance(error, ProxyError) and error.hop == "proxy-request"
        assert str(error).startswith(f"the proxy {proxy_url} {PLAIN_FAILURES[behaviour]}: ")
    assert elapsed < 3.0, f"took {elapsed:.1f} s"


@pytest.mark.parametrize("kind", CLIENTS)
@pytest.mark.parametrize("status", [403, 407])
def test_plain_http_refused_by_squid_itself_names_the_proxy_hop(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle, status: int, kind: str
) -> None:
    proxy_url = squid.http_url if status == 403 else squid.http_auth_url
    host = names.BLOCKED if status == 403 else names.AUTH_SAAS
    url = origin.url(host, "/refused-by-squid", tls=False)
    error = fetch(kind, settings_for(proxy_url), url, 10.0, verify=certs.origin_ca)
    expected = ProxyDenied if status == 403 else ProxyAuthRequired
    assert isinstance(error, expected) and isinstance(error, library_error(kind)), error
    assert (error.status, error.hop, error.proxy) == (status, "proxy-request", proxy_url)
    assert str(error).startswith(proxy_url) and f"GET to {host}:{origin.http_port}" in str(error)


# -- a dead proxy and a full pool ------------------------------------------------------------------


def test_queued_requests_on_a_dead_proxy_get_egress_errors(
    fake_proxy: Callable[..., FakeMisbehavingProxy],
) -> None:
    proxy = fake_proxy("silent")
    settings = settings_for(proxy.url)
    timeout = httpx.Timeout(2.0, pool=0.5)
    limits = httpx.Limits(max_connections=1)

    def sync_errors() -> list[BaseException | None]:
        with (
            egress.Client(settings, timeout=timeout, limits=limits) as client,
            ThreadPoolExecutor(3) as pool,
        ):
            futures = [pool.submit(client.get, f"{HTTPS_URL}/{i}") for i in range(3)]
            return [f.exception() for f in futures]

    async def async_errors() -> list[BaseException | None]:
        async with egress.AsyncClient(settings, timeout=timeout, limits=limits) as client:
            calls = [client.get(f"{HTTPS_URL}/{i}") for i in range(3)]
            return list(await asyncio.gather(*calls, return_exceptions=True))  # type: ignore[arg-type]

    for errors in (sync_errors(), asyncio.run(async_errors())):
        assert all(isinstance(e, EgressTransportError) and str(e) for e in errors), errors
        queued = [e for e in errors if isinstance(e, HTTPXProxyPoolTimeout)]
        assert len(queued) == 2, errors
        for error in queued:
            assert isinstance(error, ProxyUnreachable) and isinstance(error, httpx.PoolTimeout)
            assert str(error).startswith(
                f"no connection to the proxy {proxy.url} became free for "
                f"{names.API_SAAS}:443 within 0.5 s (its one connection is busy): "
            )


def test_requests_session_has_the_clients_default_timeouts(
    fake_proxy: Callable[..., FakeMisbehavingProxy],
) -> None:
    proxy = fake_proxy("silent")
    settings = settings_for(proxy.url)
    adapter = egress.requests_session(settings).get_adapter(HTTPS_URL)
    assert adapter.timeout == (DEFAULT_TIMEOUT_SECONDS, DEFAULT_TIMEOUT_SECONDS)  # type: ignore[attr-defined]
    # a session's default applies to a request sent without timeout= (requests has none)
    with egress.requests_session(settings, timeout=1.0) as session:
        started = time.monotonic()
        with pytest.raises(ProxyError, match=r"gave no answer to CONNECT .* within 1 s") as exc:
            session.get(HTTPS_URL)
    assert time.monotonic() - started < 3.0
    assert isinstance(exc.value, requests.exceptions.ProxyError)


# -- no secret in any error, whole chain included --------------------------------------------------

SECRET_USER = "bob@corp.example"
SECRET_PASSWORD = "s3cr/et@Pa55-faults"
SECRET_TOKEN = base64.b64encode(f"{SECRET_USER}:{SECRET_PASSWORD}".encode()).decode()
SECRET_FORMS = (SECRET_PASSWORD, SECRET_TOKEN, quote(SECRET_PASSWORD, safe=""))


def chain_texts(exc: BaseException) -> list[str]:
    """Everything an error carries: its traceback, then str, repr and args of it and of every
    exception behind it (causes, contexts, exceptions held in args, urllib3's ``reason``)."""
    texts = ["".join(traceback.format_exception(exc))]
    todo: list[object] = [exc]
    seen: set[int] = set()
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        texts.append(repr(item))
        if isinstance(item, BaseException):
            texts += [str(item), *map(repr, item.args)]
            todo += [item.__cause__, item.__context__, *item.args, getattr(item, "reason", None)]
    return texts


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "proxy-password"
    path.write_text(SECRET_PASSWORD + "\n")
    return path


FAILURES: dict[str, tuple[str | bytes, type[Exception]]] = {
    "down": ("", ProxyUnreachable),
    "tls": ("", ProxyTLSError),
    "denied": (
        b"HTTP/1.1 403 Forbidden\r\nX-Squid-Error: ERR_ACCESS_DENIED 0\r\n\r\n",
        ProxyDenied,
    ),
    "auth": (
        b"HTTP/1.1 407 Proxy Authentication Required\r\n"
        b'Proxy-Authenticate: Basic realm="x"\r\n\r\n',
        ProxyAuthRequired,
    ),
    "close": ("close", ProxyError),
    "garbage": ("garbage", ProxyError),
    "echo": ("echo", ProxyError),
    "drip": ("drip", ProxyError),
    "silent": ("silent", ProxyError),
}


SECRET_CASES = [
    (url, failure)
    for url in (HTTPS_URL, PLAIN_URL)
    for failure in FAILURES
    # a drip-fed answer to a plain request has no deadline but the read timeout: the deadline
    # is the CONNECT exchange's
    if not (url == PLAIN_URL and failure == "drip")
]


@pytest.mark.parametrize("kind", CLIENTS)
@pytest.mark.parametrize(
    ("url", "failure"),
    SECRET_CASES,
    ids=[f"{'connect' if u == HTTPS_URL else 'plain'}-{f}" for u, f in SECRET_CASES],
)
def test_no_proxy_error_carries_the_password(
    fake_proxy: Callable[..., FakeMisbehavingProxy],
    secret_file: Path,
    failure: str,
    kind: str,
    url: str,
) -> None:
    behaviour, expected = FAILURES[failure]
    if failure == "down":
        proxy_url = f"http://127.0.0.1:{free_port()}"
    elif failure == "tls":  # an https:// proxy that speaks plain HTTP: the handshake fails
        proxy_url = fake_proxy("plain").url.replace("http://", "https://")
    else:
        proxy_url = fake_proxy(behaviour, interval=0.2).url
    settings = settings_for(proxy_url, secret_file)
    error = fetch(kind, settings, url, 0.6)
    assert isinstance(error, expected), error
    texts = chain_texts(error)
    assert len(texts) >= 4
    for text in texts:
        for secret in SECRET_FORMS:
            assert secret not in text, f"{secret!r} shown in {text[:300]!r}"


# -- DEBUG logs of a real exchange with Basic auth -------------------------------------------------

LOGGERS = ("httpx", "httpcore", "urllib3", "requests", "egress")


def test_debug_logs_never_show_the_password(
    squid: SquidProxy,
    origin: FakeOrigin,
    certs: CertBundle,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = tmp_path / "good"
    good.write_text(PROXY_PASSWORD)
    wrong = tmp_path / "wrong"
    wrong.write_text(SECRET_PASSWORD)
    secrets = [
        PROXY_PASSWORD,
        base64.b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode()).decode(),
        SECRET_PASSWORD,
        base64.b64encode(f"{PROXY_USER}:{SECRET_PASSWORD}".encode()).decode(),
    ]
    caplog.set_level(logging.DEBUG)
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    for password_file in (good, wrong):
        proxy: dict[str, Any] = {
            "enabled": True,
            "url": squid.http_auth_url,
            "username": PROXY_USER,
            "password_file": str(password_file),
        }
        settings = load_settings_from_mapping({"proxy": proxy}, env={})
        for tls in (True, False):
            url = origin.url(names.API_SAAS, "/debug-log", tls=tls)
            for kind in CLIENTS:
                error = fetch(kind, settings, url, 10.0, verify=certs.origin_ca)
                assert (error is None) == (password_file == good), error
    logged = [record for record in caplog.records if record.name.split(".")[0] in LOGGERS]
    assert any(r.name.startswith("httpcore") for r in logged)  # the loggers did speak
    assert any(r.name.startswith("urllib3") for r in logged)
    texts = [caplog.text, *(r.getMessage() for r in logged), *(repr(r.args) for r in logged)]
    for text in texts:
        for secret in secrets:
            assert secret not in text


# -- host names that must never reach a CONNECT line or a header -----------------------------------

BAD_HOSTS = [
    "http://evil%0d%0aX-Injected:%201.example/",
    "https://evil%0aHost:%20other.example/",
    "https://a%20b.example/",
    "https://a%09b.example/",
    "https://a%00b.example/",
    "https://a%7fb.example/",
    "https://a b.example/",
    "https://evil.example\r\nX-Injected: 1/",
]


@pytest.mark.parametrize("kind", CLIENTS)
@pytest.mark.parametrize("url", BAD_HOSTS)
def test_bad_host_names_never_reach_the_proxy(
    fake_proxy: Callable[..., FakeMisbehavingProxy], kind: str, url: str
) -> None:
    proxy = fake_proxy("echo")
    error = fetch(kind, settings_for(proxy.url), url, 1.0)
    invalid = (URLError, httpx.InvalidURL, requests.exceptions.InvalidURL)
    assert isinstance(error, invalid), error
    time.sleep(0.05)
    assert proxy.connections == 0 and proxy.received == []
