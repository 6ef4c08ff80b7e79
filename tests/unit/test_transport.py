"""The transport's socket-free parts: pool choice, resolve rewriting, hop errors, trust, repr.

The same code carries real traffic in tests/integration/test_transport.py (and meets faulty
proxies in tests/integration/test_transport_faults.py); here each decision is checked on its own:
real httpcore driven by its own mock network (``httpcore.MockBackend``, canned proxy answers)
for which hop failed, and library exceptions for the requests adapter.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, NoReturn

import httpcore
import httpx
import pytest
import requests
import trustme
import urllib3

import egress
from egress import (
    ConfigError,
    EgressTransportError,
    ProxyAuthRequired,
    ProxyDenied,
    ProxyError,
    ProxyTLSError,
    ProxyUnreachable,
    Settings,
    UnsupportedRoute,
    URLError,
)
from egress.settings import REDACTED, load_settings_from_mapping
from egress.transport import (
    DECISION_EXTENSION,
    DIRECT,
    AsyncEgressTransport,
    EgressTransport,
    HTTPXProxyAuthRequired,
    HTTPXProxyDenied,
    HTTPXProxyError,
    HTTPXProxyPoolTimeout,
    HTTPXProxyTLSError,
    HTTPXProxyUnreachable,
    HTTPXUnsupportedRoute,
    Planner,
    PoolKey,
    origin_ssl_context,
    proxy_answer_detail,
    proxy_refused,
    proxy_ssl_context,
    refusal_by_proxy,
)
from egress.transport.proxy_hop import AsyncHopBackend, HopBackend, ProxyHop, classify
from egress.transport.requests_adapter import (
    EgressAdapter,
    RequestsProxyDenied,
    RequestsUnsupportedRoute,
    _pinned,
    requests_session,
)

PASSWORD = "s3cret-Pa55"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    ca = trustme.CA(organization_name="egress unit tests")
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, path


@pytest.fixture(scope="module")
def password_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("secret") / "proxy-password"
    path.write_text(PASSWORD + "\n")
    return path


def make(raw: dict[str, Any]) -> Settings:
    return load_settings_from_mapping(raw, env={})


HTTP_PROXY = make(
    {
        "proxy": {"url": "http://proxy.corp:3128"},
        "excluded_domains": [".corp.example", "excluded.example-corp.test"],
        "resolve": {
            "git.corp.example": "10.0.0.7",
            "acme.snowflakecomputing.com": "127.0.0.1",
            "api.example.com": "10.9.9.9",
            "v6.corp.example": "::1",
        },
    }
)
HTTPS_PROXY = make(
    {
        "proxy": {"url": "https://proxy.corp:3129"},
        "resolve": {"acme.snowflakecomputing.com": "127.0.0.1"},
    }
)
SPLIT_PROXIES = make(
    {"proxy": {"url": "http://plain.corp:3128", "https_url": "https://tls.corp:3129"}}
)
SWITCHED_OFF = make({"proxy": {"enabled": False, "url": "http://proxy.corp:3128"}})
TUNNEL = make({"proxy": {"url": "http://proxy.corp:3128"}, "tunnel_tcp_warehouses": True})


# -- pool choice ------------------------------------------------------------------------------

VIA_HTTP = "proxy http://proxy.corp:3128"
VIA_HTTPS = "proxy https://proxy.corp:3129"
SNOWFLAKE = "https://acme.snowflakecomputing.com/"

POOL_CASES = [
    ("https-proxied", HTTP_PROXY, "https://api.example.org/v1", VIA_HTTP),
    ("http-proxied", HTTP_PROXY, "http://api.example.org/v1", VIA_HTTP),
    ("excluded", HTTP_PROXY, "https://wiki.corp.example/", "direct"),
    (
        "excluded-pinned",
        HTTP_PROXY,
        "https://git.corp.example/x",
        "direct (git.corp.example pinned)",
    ),
    ("loopback", HTTP_PROXY, "https://127.0.0.1:8443/", "direct"),
    ("resolve-never-for-proxied", HTTP_PROXY, "https://api.example.com/", VIA_HTTP),
    ("snowflake-http-proxy", HTTP_PROXY, SNOWFLAKE, VIA_HTTP),
    (
        "snowflake-https-proxy",
        HTTPS_PROXY,
        SNOWFLAKE,
        "direct (acme.snowflakecomputing.com pinned)",
    ),
    ("bigquery-https-proxy", HTTPS_PROXY, "https://bigquery.googleapis.com/", VIA_HTTPS),
    ("databricks", HTTP_PROXY, "https://dbc-1.cloud.databricks.com/api", "direct"),
    ("split-http", SPLIT_PROXIES, "http://api.example.org/", "proxy http://plain.corp:3128"),
    ("split-https", SPLIT_PROXIES, "https://api.example.org/", "proxy https://tls.corp:3129"),
    ("switched-off", SWITCHED_OFF, "https://api.example.org/", "direct"),
]


@pytest.mark.parametrize(
    ("settings", "url", "pool"), [c[1:] for c in POOL_CASES], ids=[c[0] for c in POOL_CASES]
)
def test_planner_picks_one_pool_per_proxy_or_direct(
    settings: Settings, url: str, pool: str
) -> None:
    plan = Planner(settings).plan(url)
    assert str(plan.pool) == pool
    assert (plan.pool.proxy is not None) == (plan.decision.route == "proxy")


def test_pool_keys_are_shared_per_proxy_and_equal_by_value() -> None:
    planner = Planner(HTTP_PROXY)
    first = planner.plan("https://a.example.org/").pool
    assert planner.plan("http://b.example.org:8080/x").pool is first
    assert first == PoolKey(proxy=HTTP_PROXY.proxy.http_proxy)
    assert planner.plan("https://wiki.corp.example/").pool is DIRECT


@pytest.mark.parametrize(
    ("url", "ip", "absolute"),
    [
        ("https://git.corp.example/x", "10.0.0.7", False),
        ("https://GIT.corp.example./x", "10.0.0.7", False),
        ("https://v6.corp.example/", "::1", False),
        ("https://wiki.corp.example/", None, False),
        ("https://10.0.0.7/", None, False),
        ("http://api.example.org/", None, True),
        ("https://api.example.com/", None, False),
    ],
)
def test_resolve_applies_to_direct_names_only(url: str, ip: str | None, absolute: bool) -> None:
    plan = Planner(HTTP_PROXY).plan(url)
    assert plan.connect_ip == ip
    assert plan.absolute_form is absolute


@pytest.mark.parametrize(
    "url",
    [
        "http://evil.example%0d%0aX-Injected:%201/",
        "http://a%20b.example/",
        "http://exa mple.com/",
        "http://example.com\r\nHost: other/",
        "https://bad\x00host/",
    ],
    ids=["crlf-encoded", "space-encoded", "space", "crlf", "nul"],
)
def test_hosts_with_control_characters_are_refused(url: str) -> None:
    with pytest.raises(URLError):
        Planner(HTTP_PROXY).plan(url)


def test_tunnel_decision_is_refused_for_http() -> None:
    url = "https://c1.abc.eu-west-1.redshift.amazonaws.com/"
    assert TUNNEL.router().decide(url).route == "tunnel"
    with pytest.raises(UnsupportedRoute, match="egress tunnel") as plain:
        Planner(TUNNEL).plan(url)
    assert plain.value.hop == "route"
    with pytest.raises(HTTPXUnsupportedRoute) as httpx_flavour:
        EgressTransport(TUNNEL).plan(url)
    assert isinstance(httpx_flavour.value, httpx.UnsupportedProtocol)
    with pytest.raises(RequestsUnsupportedRoute):
        Planner(TUNNEL, errors=EgressAdapter(TUNNEL)._planner.errors).plan(url)


# -- what the pool is handed --------------------------------------------------------------------


def test_pinned_request_keeps_name_in_host_header_and_sni() -> None:
    transport = EgressTransport(HTTP_PROXY)
    request = httpx.Request("GET", "https://git.corp.example:8443/repo?x=1")
    plan = transport.plan(request.url)
    outgoing = transport._pinned(request, plan)
    assert str(outgoing.url) == "https://10.0.0.7:8443/repo?x=1"
    assert outgoing.headers["host"] == "git.corp.example:8443"
    assert outgoing.extensions["sni_hostname"] == "git.corp.example"
    assert str(request.url) == "https://git.corp.example:8443/repo?x=1"  # caller's untouched
    assert "sni_hostname" not in request.extensions


def test_pinned_ipv6_is_bracketed() -> None:
    transport = EgressTransport(HTTP_PROXY)
    request = httpx.Request("GET", "http://v6.corp.example/")
    outgoing = transport._pinned(request, transport.plan(request.url))
    assert str(outgoing.url) == "http://[::1]/"
    assert outgoing.headers["host"] == "v6.corp.example"


def _recording_pool(seen: list[httpx.Request]) -> Any:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    return httpx.MockTransport(answer)


def test_plain_direct_request_is_passed_as_is() -> None:
    transport = EgressTransport(HTTP_PROXY)
    seen: list[httpx.Request] = []
    transport._pools[DIRECT] = _recording_pool(seen)
    request = httpx.Request("GET", "https://wiki.corp.example/")
    extensions = request.extensions
    transport.handle_request(request)
    assert seen == [request] and request.extensions is extensions
    assert "trace" not in extensions


def test_proxied_request_keeps_the_callers_extensions() -> None:
    transport = EgressTransport(HTTP_PROXY)
    seen: list[httpx.Request] = []
    plan = transport.plan("https://api.example.org/")
    transport._pools[plan.pool] = _recording_pool(seen)
    with httpx.Client(transport=transport) as client:
        response = client.get("https://api.example.org/x", extensions={"timeout": {"read": 1}})
    assert len(seen) == 1 and seen[0] is response.request
    assert response.request.extensions == {"timeout": {"read": 1}}


def test_proxy_pools_watch_their_connections() -> None:
    # httpx offers no parameter for it; an httpx upgrade that moves the attribute fails here
    transport = EgressTransport(HTTP_PROXY)
    pool = transport.pool(transport.plan("https://api.example.org/").pool)
    assert isinstance(pool._pool._network_backend, HopBackend)
    direct = transport.pool(DIRECT)
    assert not isinstance(direct._pool._network_backend, HopBackend)
    atransport = AsyncEgressTransport(HTTP_PROXY)
    apool = atransport.pool(atransport.plan("https://api.example.org/").pool)
    assert isinstance(apool._pool._network_backend, AsyncHopBackend)


# -- which hop failed: httpcore driven by its own mock network -----------------------------------

URL = "https://api.example.org/v1"
BIGQUERY = "https://bigquery.googleapis.com/"
PLAIN_URL = "http://api.example.org/v1"


def _via_proxy(
    *answer: bytes, url: str = URL, settings: Settings = HTTP_PROXY, backend: Any = None
) -> httpx.Response | BaseException:
    """What ``egress.Client`` gives for ``url`` when the proxy's socket reads ``answer``."""
    transport = EgressTransport(
        settings, network_backend=backend or httpcore.MockBackend(list(answer))
    )
    with httpx.Client(transport=transport) as client:
        try:
            return client.get(url)
        except httpx.TransportError as exc:
            return exc


DENIED = (
    b"HTTP/1.1 403 Forbidden\r\nX-Squid-Error: ERR_ACCESS_DENIED 0\r\nContent-Length: 0\r\n\r\n"
)
ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"
NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"


def test_refused_connect_403_is_proxy_denied_with_squid_code() -> None:
    error = _via_proxy(DENIED)
    assert isinstance(error, HTTPXProxyDenied) and isinstance(error, httpx.ProxyError)
    assert (error.status, error.hop, error.target) == (403, "proxy-connect", "api.example.org:443")
    assert str(error) == (
        "http://proxy.corp:3128 refused CONNECT to api.example.org:443 (403, ERR_ACCESS_DENIED): "
        "ask the proxy team to allow api.example.org"
    )


@pytest.mark.parametrize(
    ("answer", "kind", "words"),
    [
        (b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", HTTPXProxyAuthRequired,
         "wants credentials for CONNECT to api.example.org:443 (407): set proxy.username"),
        (b"HTTP/1.1 503 Service Unavailable\r\n\r\n", HTTPXProxyError,
         "(503 Service Unavailable): the proxy could not reach api.example.org:443"),
        (b"SSH-2.0-OpenSSH_9.2\r\n", HTTPXProxyError,
         "answered CONNECT to api.example.org:443 with something that is not HTTP"),
        (b"", HTTPXProxyError, "closed the connection without answering CONNECT"),
        (b"HTTP/1.1 20", HTTPXProxyError, "closed the connection without answering CONNECT"),
    ],
    ids=["407", "503", "garbage", "closed", "half-a-status-line"],
)  # fmt: skip
def test_every_bad_answer_to_connect_names_the_connect_hop(
    answer: bytes, kind: type[Exception], words: str
) -> None:
    error = _via_proxy(answer)
    assert isinstance(error, kind) and isinstance(error, EgressTransportError)
    assert error.hop == "proxy-connect" and words in str(error)


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (b"SSH-2.0-OpenSSH_9.2\r\n", "answered GET to api.example.org:80 with something"),
        (b"", "closed the connection without answering GET to api.example.org:80"),
        (b"HTTP/1.1 20", "closed the connection without answering GET to api.example.org:80"),
    ],
    ids=["garbage", "closed", "half-a-status-line"],
)  # fmt: skip
def test_plain_http_through_a_failing_proxy_names_the_proxy_hop(answer: bytes, words: str) -> None:
    error = _via_proxy(answer, url=PLAIN_URL)
    assert isinstance(error, HTTPXProxyError) and error.hop == "proxy-request"
    assert words in str(error) and str(error).startswith("the proxy http://proxy.corp:3128 ")


def test_a_tunnel_that_is_up_leaves_origin_failures_alone() -> None:
    response = _via_proxy(ESTABLISHED, NO_CONTENT)
    assert isinstance(response, httpx.Response) and response.status_code == 204
    assert response.extensions[DECISION_EXTENSION].route == "proxy"
    closed_by_origin = _via_proxy(ESTABLISHED, b"")
    assert isinstance(closed_by_origin, httpx.RemoteProtocolError)
    assert not isinstance(closed_by_origin, EgressTransportError)


class _FailingBackend(httpcore.NetworkBackend):
    """A network where TCP (``at="tcp"``) or TLS to the proxy (``at="tls"``) fails with
    ``httpcore.ConnectError`` caused by ``cause``, as httpcore's own backend raises it."""

    def __init__(self, at: str, cause: OSError) -> None:
        self.at, self.cause = at, cause

    def fail(self) -> NoReturn:
        raise httpcore.ConnectError(self.cause) from self.cause  # as httpcore's backend does

    def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        if self.at == "tcp":
            self.fail()
        backend = self

        class Stream(httpcore.MockStream):
            def start_tls(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
                backend.fail()

        return Stream([])


def test_tcp_failure_is_proxy_unreachable() -> None:
    backend = _FailingBackend("tcp", ConnectionRefusedError(111, "Connection refused"))
    error = _via_proxy(backend=backend)
    assert isinstance(error, HTTPXProxyUnreachable) and isinstance(error, httpx.ConnectError)
    assert error.hop == "proxy-tcp" and "(Connection refused): check proxy.url" in str(error)


def test_untrusted_proxy_certificate_is_proxy_tls_error() -> None:
    cause = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] verify failed")
    cause.verify_message = "unable to get local issuer certificate"
    error = _via_proxy(settings=HTTPS_PROXY, url=BIGQUERY, backend=_FailingBackend("tls", cause))
    assert isinstance(error, HTTPXProxyTLSError) and error.hop == "proxy-tls"
    assert "(unable to get local issuer certificate)" in str(error)
    assert error.hint == "set proxy.ca_file to the CA that signs the proxy's certificate"


def test_other_tls_failure_to_proxy_names_the_handshake() -> None:
    backend = _FailingBackend("tls", ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version"))
    error = _via_proxy(
        settings=HTTPS_PROXY, url="https://bigquery.googleapis.com/", backend=backend
    )
    assert isinstance(error, HTTPXProxyTLSError) and "TLS handshake with the proxy" in str(error)


def test_async_client_names_the_same_hops() -> None:
    async def get(url: str, *answer: bytes) -> httpx.Response | BaseException:
        backend = httpcore.AsyncMockBackend(list(answer))
        transport = AsyncEgressTransport(HTTP_PROXY, network_backend=backend)
        async with httpx.AsyncClient(transport=transport) as client:
            try:
                return await client.get(url)
            except httpx.TransportError as exc:
                return exc

    denied = asyncio.run(get(URL, DENIED))
    assert isinstance(denied, ProxyDenied) and "(403, ERR_ACCESS_DENIED)" in str(denied)
    garbage = asyncio.run(get(PLAIN_URL, b"SSH-2.0-OpenSSH_9.2\r\n"))
    assert isinstance(garbage, ProxyError) and garbage.hop == "proxy-request"
    ok = asyncio.run(get(URL, ESTABLISHED, NO_CONTENT))
    assert isinstance(ok, httpx.Response) and ok.status_code == 204


class _ScriptedBackend(httpcore.NetworkBackend):
    """Each new connection reads the next script of answers."""

    def __init__(self, *scripts: list[bytes]) -> None:
        self.scripts = list(scripts)

    def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        return httpcore.MockStream(self.scripts.pop(0))


def test_an_earlier_requests_proxy_failure_is_not_blamed_for_an_origin_failure() -> None:
    backend = _ScriptedBackend([ESTABLISHED, NO_CONTENT], [DENIED])
    transport = EgressTransport(HTTP_PROXY, network_backend=backend)
    with httpx.Client(transport=transport) as client:
        assert client.get("https://a.example.org/").status_code == 204  # a tunnel, kept alive
        with pytest.raises(ProxyDenied):
            client.get("https://b.example.org/")  # a refused CONNECT, on a new connection
        # the kept-alive tunnel's origin hangs up: the origin's failure, not the proxy's
        with pytest.raises(httpx.RemoteProtocolError) as excinfo:
            client.get("https://a.example.org/again")
    assert not isinstance(excinfo.value, EgressTransportError)


def test_connect_answer_has_a_deadline() -> None:
    hop = ProxyHop()
    hop.wrote(b"CONNECT api.example.org:443 HTTP/1.1\r\n\r\n")
    assert hop.phase == "proxy-connect"
    assert hop.read_timeout(0.05) == 0.05  # the first read starts the clock
    left = hop.read_timeout(10.0)
    assert left is not None and 0 < left <= 0.05  # later reads wait only for what is left
    time.sleep(0.06)
    with pytest.raises(httpcore.ReadTimeout):
        hop.read_timeout(10.0)
    assert hop.expired


def test_a_queued_request_that_finds_no_connection_names_the_proxy() -> None:
    planner = Planner(HTTP_PROXY)
    plan = planner.plan(URL)
    failure = classify(
        httpx.PoolTimeout(""), None, planner, plan, method="GET",
        timeouts={"pool": 3.0}, max_connections=2,
    )  # fmt: skip
    assert failure is not None and failure.kind == "pool" and failure.hop == "proxy-tcp"
    assert failure.message.startswith(
        "no connection to the proxy http://proxy.corp:3128 became free for api.example.org:443 "
        "within 3 s (all 2 connections to it are busy)"
    )
    assert issubclass(HTTPXProxyPoolTimeout, httpx.PoolTimeout)
    assert issubclass(HTTPXProxyPoolTimeout, ProxyUnreachable)


# -- the proxy's own answer to an absolute-form request ----------------------------------------


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({"x-squid-error": "ERR_ACCESS_DENIED 0"}, "ERR_ACCESS_DENIED"),
        ({"x-squid-error": ""}, "X-Squid-Error"),
        ({"proxy-status": "proxy.corp; error=http_request_denied"}, "http_request_denied"),
        ({"proxy-status": 'cdn, proxy.corp; error="connection_refused"'}, "connection_refused"),
        ({"proxy-status": "proxy.corp; received-status=403"}, None),
        ({"server": "nginx"}, None),
    ],
    ids=["squid", "squid-empty", "rfc9209", "rfc9209-second-member", "forwarded", "origin"],
)
def test_proxy_answer_detail(headers: dict[str, str], detail: str | None) -> None:
    assert proxy_answer_detail(headers) == detail


def test_refusal_only_for_the_proxys_own_403_and_407() -> None:
    planner = Planner(HTTP_PROXY)
    plain = planner.plan("http://api.example.org/")
    tunnel = planner.plan("https://api.example.org/")
    squid = {"x-squid-error": "ERR_ACCESS_DENIED 0"}
    assert plain.absolute_form and not tunnel.absolute_form  # only absolute form is checked
    decision = plain.decision
    assert refusal_by_proxy(decision, 403, squid, method="GET", username=None) is not None
    assert refusal_by_proxy(decision, 403, {}, method="GET", username=None) is None  # origin's
    assert refusal_by_proxy(decision, 404, squid, method="GET", username=None) is None
    challenge = {"proxy-authenticate": 'Basic realm="corp"'}
    auth = refusal_by_proxy(decision, 407, challenge, method="POST", username="alice")
    assert auth is not None and auth.kind == "auth" and auth.hop == "proxy-request"
    assert "refused the credentials of user 'alice' for POST to api.example.org:80" in auth.message


def test_design_message_for_a_refused_connect() -> None:
    settings = Settings.from_proxy("http://127.0.0.1:3128", env={})
    decision = settings.router().decide("https://api.tomtom.com/")
    assert proxy_refused(decision, 403, method="CONNECT").message == (
        "http://127.0.0.1:3128 refused CONNECT to api.tomtom.com:443 (403): "
        "ask the proxy team to allow api.tomtom.com"
    )


# -- the error classes ---------------------------------------------------------------------------

HTTPX_PAIRS = [
    (HTTPXProxyUnreachable, ProxyUnreachable, httpx.ConnectError),
    (HTTPXProxyTLSError, ProxyTLSError, httpx.ConnectError),
    (HTTPXProxyDenied, ProxyDenied, httpx.ProxyError),
    (HTTPXProxyAuthRequired, ProxyAuthRequired, httpx.ProxyError),
    (HTTPXProxyError, ProxyError, httpx.ProxyError),
    (HTTPXUnsupportedRoute, UnsupportedRoute, httpx.UnsupportedProtocol),
]


@pytest.mark.parametrize(("cls", "ours", "theirs"), HTTPX_PAIRS, ids=lambda c: c.__name__)
def test_httpx_flavoured_errors_are_both(
    cls: type[Any], ours: type[Any], theirs: type[Any]
) -> None:
    error = cls("message", proxy="http://p:1", target="t:443", hop="proxy-tcp", hint="fix it")
    assert isinstance(error, ours) and isinstance(error, EgressTransportError)
    assert isinstance(error, theirs) and isinstance(error, httpx.TransportError)
    assert (str(error), error.proxy, error.target, error.hop, error.hint) == (
        "message", "http://p:1", "t:443", "proxy-tcp", "fix it"
    )  # fmt: skip


def test_requests_flavoured_errors_are_both() -> None:
    error = RequestsProxyDenied("denied", status=403)
    assert isinstance(error, ProxyDenied) and isinstance(error, requests.exceptions.ProxyError)
    assert str(error) == "denied" and error.status == 403 and error.request is None


# -- requests: rewriting and classification -----------------------------------------------------


def test_requests_pinned_copy_keeps_host_header() -> None:
    prepared = requests.Request("GET", "https://user:pw@git.corp.example:8443/r?q=1").prepare()
    pinned = _pinned(prepared, "10.0.0.7")
    assert pinned.url == "https://10.0.0.7:8443/r?q=1"
    assert pinned.headers["Host"] == "git.corp.example:8443"
    assert prepared.url == "https://user:pw@git.corp.example:8443/r?q=1"  # caller's untouched
    assert "Host" not in prepared.headers


def _requests_failure(inner: BaseException, settings: Settings = HTTP_PROXY) -> Any:
    adapter = EgressAdapter(settings)
    plan = adapter._planner.plan("https://api.example.org/")
    wrapped = urllib3.exceptions.ProxyError("Unable to connect to proxy", inner)
    retry = urllib3.exceptions.MaxRetryError(None, "/", wrapped)  # type: ignore[arg-type]
    return adapter._failure(requests.exceptions.ProxyError(retry), plan, "GET", 10.0)


def test_requests_refused_tunnel_is_classified() -> None:
    failure = _requests_failure(OSError("Tunnel connection failed: 403 Forbidden"))
    assert failure.kind == "denied" and failure.status == 403
    assert failure.message.startswith(
        "http://proxy.corp:3128 refused CONNECT to api.example.org:443"
    )


def test_requests_unreachable_and_tls_are_classified() -> None:
    refused = ConnectionRefusedError(111, "Connection refused")
    conn_error = urllib3.exceptions.NewConnectionError(None, "Failed to establish")  # type: ignore[arg-type]
    conn_error.__cause__ = refused
    assert _requests_failure(conn_error).kind == "unreachable"
    verify = ssl.SSLCertVerificationError(1, "certificate verify failed")
    verify.verify_message = "self-signed certificate"
    tls = _requests_failure(urllib3.exceptions.SSLError(verify))
    assert tls.kind == "tls" and "(self-signed certificate)" in tls.message


# -- trust -----------------------------------------------------------------------------------------


def _subjects(ctx: ssl.SSLContext) -> list[str]:
    return [str(c.get("subject")) for c in ctx.get_ca_certs()]


def test_origin_trust_extends_the_defaults(ca: tuple[trustme.CA, Path]) -> None:
    _, path = ca
    base = origin_ssl_context(HTTP_PROXY.proxy)
    extended = origin_ssl_context(HTTP_PROXY.proxy, str(path))
    assert base.verify_mode == ssl.CERT_REQUIRED and base.check_hostname
    assert len(base.get_ca_certs()) > 50  # certifi is in
    assert len(extended.get_ca_certs()) == len(base.get_ca_certs()) + 1
    assert any("egress unit tests" in s for s in _subjects(extended))
    assert origin_ssl_context(HTTP_PROXY.proxy, path).get_ca_certs() == extended.get_ca_certs()


def test_origin_trust_includes_the_proxy_ca_for_interception(ca: tuple[trustme.CA, Path]) -> None:
    _, path = ca
    settings = make({"proxy": {"url": "https://proxy.corp:3129", "ca_file": str(path)}})
    assert any("egress unit tests" in s for s in _subjects(origin_ssl_context(settings.proxy)))
    assert any("egress unit tests" in s for s in _subjects(proxy_ssl_context(settings.proxy)))


def test_inline_ca_pem_is_trusted(ca: tuple[trustme.CA, Path]) -> None:
    authority, _ = ca
    values = {"externalProxy": {"enabled": True, "host": "p", "port": 3129, "type": "https"},
              "trustedCACerts": {"value": authority.cert_pem.bytes().decode()}}  # fmt: skip
    from egress.settings import settings_from_helm_mapping

    settings = settings_from_helm_mapping(values, env={})
    assert any("egress unit tests" in s for s in _subjects(proxy_ssl_context(settings.proxy)))


def test_verify_switches_are_separate() -> None:
    off = origin_ssl_context(HTTP_PROXY.proxy, False)
    assert off.verify_mode == ssl.CERT_NONE and not off.check_hostname
    unverified_proxy = make({"proxy": {"url": "https://p:3129", "verify": False}}).proxy
    proxy_ctx = proxy_ssl_context(unverified_proxy)
    assert proxy_ctx.verify_mode == ssl.CERT_NONE and not proxy_ctx.check_hostname
    origin_ctx = origin_ssl_context(unverified_proxy)  # proxy.verify: false leaves origins alone
    assert origin_ctx.verify_mode == ssl.CERT_REQUIRED and origin_ctx.check_hostname
    assert ssl.create_default_context().verify_mode == ssl.CERT_REQUIRED  # nothing process-wide


def test_an_ssl_context_is_used_as_given() -> None:
    ctx = ssl.create_default_context()
    assert origin_ssl_context(HTTP_PROXY.proxy, ctx) is ctx


def test_unreadable_ca_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="verify"):
        origin_ssl_context(HTTP_PROXY.proxy, str(tmp_path / "missing.pem"))
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError):
        origin_ssl_context(HTTP_PROXY.proxy, bad)


# -- the clients and secrets ---------------------------------------------------------------------


def _auth_settings(password_file: Path) -> Settings:
    return make(
        {
            "proxy": {
                "url": "https://proxy.corp:3129",
                "username": "alice",
                "password_file": str(password_file),
            }
        }
    )


def test_clients_are_httpx_clients_without_env() -> None:
    with egress.Client(HTTP_PROXY) as client:
        assert isinstance(client, httpx.Client)
        assert client.trust_env is False
        assert client.settings is HTTP_PROXY
        assert isinstance(client.egress_transport, EgressTransport)
    aclient = egress.AsyncClient(HTTP_PROXY)
    assert isinstance(aclient, httpx.AsyncClient) and aclient.trust_env is False
    assert isinstance(aclient.egress_transport, AsyncEgressTransport)
    asyncio.run(aclient.aclose())
    session = egress.requests_session(HTTP_PROXY)
    assert isinstance(session, requests.Session) and session.trust_env is False
    assert isinstance(session.get_adapter("https://x/"), EgressAdapter)
    assert session.get_adapter("http://x/") is session.get_adapter("https://x/")


def test_pools_are_made_once_per_key() -> None:
    transport = EgressTransport(SPLIT_PROXIES)
    planner = Planner(SPLIT_PROXIES)
    http_key = planner.plan("http://a.example/").pool
    https_key = planner.plan("https://a.example/").pool
    assert transport.pool(http_key) is transport.pool(http_key)
    assert transport.pool(https_key) is not transport.pool(http_key)
    assert transport.pool(DIRECT) is not transport.pool(https_key)
    transport.close()


def test_password_never_shows(password_file: Path) -> None:
    settings = _auth_settings(password_file)
    client = egress.Client(settings)
    transport = client.egress_transport
    pool = transport.pool(Planner(settings).plan("https://api.example.org/").pool)
    session = requests_session(settings)
    adapter = session.get_adapter("https://x/")
    assert isinstance(adapter, EgressAdapter)
    shown = [repr(client), repr(transport), repr(settings), str(settings), repr(settings.proxy),
             repr(pool), repr(adapter.__dict__.get("_planner")), repr(session)]  # fmt: skip
    for text in shown:
        assert PASSWORD not in text
    assert f"alice:{REDACTED}@proxy.corp:3129" in repr(client)
    assert adapter.proxy_headers("https://proxy.corp:3129")["Proxy-Authorization"].startswith(
        "Basic "
    )
    assert adapter.proxy_headers("https://other:1") == {}
    client.close()
    session.close()


def chain_texts(exc: BaseException) -> list[str]:
    """Everything an error carries: str, repr, args, traceback, and the same for every
    exception behind it (causes, contexts, exceptions held in args or urllib3's ``reason``)."""
    texts = ["".join(traceback.format_exception(exc))]
    todo: list[object] = [exc]
    seen: set[int] = set()
    while todo:
        item = todo.pop()
        if id(item) in seen or item is None:
            continue
        seen.add(id(item))
        texts.append(repr(item))
        if isinstance(item, BaseException):
            texts += [str(item), *map(repr, item.args)]
            todo += [item.__cause__, item.__context__, *item.args, getattr(item, "reason", None)]
    return texts


ECHO_PASSWORD = "pa/ss@w0rd-Echo"


@pytest.mark.parametrize(
    ("url", "answer"),
    [
        (URL, b"HTTP/1.1 407 %(password)s\r\nX-Squid-Error: %(token)s 0\r\n\r\n"),
        (URL, b"Proxy-Authorization: Basic %(token)s\r\n(%(password)s)\r\n\r\n"),
        (PLAIN_URL, b"Proxy-Authorization: Basic %(token)s\r\n(%(password)s)\r\n\r\n"),
    ],
    ids=["407-echo", "garbage-echo-connect", "garbage-echo-plain"],
)
def test_password_not_in_the_error_chain_even_when_the_proxy_echoes_it(
    tmp_path: Path, url: str, answer: bytes
) -> None:
    secret = tmp_path / "password"
    secret.write_text(ECHO_PASSWORD)
    settings = make(
        {"proxy": {"url": "http://proxy.corp:3128", "username": "bob@corp.example",
                   "password_file": str(secret)}}
    )  # fmt: skip
    token = base64.b64encode(f"bob@corp.example:{ECHO_PASSWORD}".encode()).decode()
    echo = answer % {b"password": ECHO_PASSWORD.encode(), b"token": token.encode()}
    error = _via_proxy(echo, url=url, settings=settings)
    assert isinstance(error, ProxyError), error
    texts = chain_texts(error)
    assert len(texts) > 4  # the chain is kept for diagnosis, only masked
    for text in texts:
        assert ECHO_PASSWORD not in text and token not in text
        assert "pa%2Fss" not in text


def test_decision_is_attached_to_responses() -> None:
    transport = EgressTransport(HTTP_PROXY)
    transport._pools[DIRECT] = httpx.MockTransport(lambda r: httpx.Response(204))  # type: ignore[assignment]
    with httpx.Client(transport=transport) as client:
        response = client.get("https://wiki.corp.example/")
    decision = response.extensions[DECISION_EXTENSION]
    assert (decision.route, decision.rule) == ("direct", "excluded:.corp.example")


@pytest.mark.parametrize(
    ("code", "absent"),
    [
        ("egress.requests_session(settings).get('https://api.example.org/', timeout=1)", "httpx"),
        ("egress.Client(settings).get('https://api.example.org/', timeout=1)", "requests"),
        ("from egress.transport import Planner, origin_ssl_context, DIRECT", "httpx"),
    ],
    ids=["requests_session", "Client", "the-shared-parts"],
)
def test_each_client_loads_only_its_own_library(code: str, absent: str) -> None:
    script = (
        "import sys, egress\n"
        "settings = egress.Settings.from_proxy('http://127.0.0.1:9', env={})\n"
        f"try:\n    {code}\nexcept egress.EgressError:\n    pass\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] == {absent!r})\n"
        "print(loaded)\n"
        "sys.exit(1 if loaded else 0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_lazy_exports() -> None:
    import egress.requests_adapter  # the module's old place

    assert egress.requests_adapter.RequestsProxyDenied is RequestsProxyDenied
    assert egress.transport.RequestsProxyDenied is RequestsProxyDenied
    assert egress.transport.HTTPXProxyDenied is HTTPXProxyDenied
    assert egress.Client is egress.transport.Client
    assert egress.requests_session is requests_session
    with pytest.raises(AttributeError):
        egress.NoSuchThing  # noqa: B018
