"""The transport's socket-free parts: pool choice, resolve rewriting, hop errors, trust, repr.

The same code carries real traffic in tests/integration/test_transport.py; here each decision is
checked on its own, with synthetic httpcore trace events and library exceptions.
"""

from __future__ import annotations

import asyncio
import ssl
import traceback
from pathlib import Path
from typing import Any

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
    HopTracker,
    HTTPXProxyAuthRequired,
    HTTPXProxyDenied,
    HTTPXProxyError,
    HTTPXProxyTLSError,
    HTTPXProxyUnreachable,
    HTTPXUnsupportedRoute,
    Planner,
    PoolKey,
    SyncHopTracker,
    origin_ssl_context,
    proxy_answer_detail,
    proxy_refused,
    proxy_ssl_context,
    refusal_by_proxy,
)
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


def test_proxied_request_gets_a_chained_trace_and_no_sni_override() -> None:
    seen: list[str] = []
    transport = EgressTransport(HTTP_PROXY)

    def user_hook(name: str, info: Any) -> None:
        seen.append(name)

    given = {"trace": user_hook, "sni_hostname": "x", "timeout": {"read": 7.0}}
    request = httpx.Request("GET", "https://api.example.org/", extensions=given)
    caller = request.extensions
    tracker = transport._track(request, transport.plan(request.url))
    outgoing = request.extensions
    assert outgoing is not caller and tracker.extensions is outgoing
    assert "sni_hostname" not in outgoing and tracker.limit == 7.0
    hook = outgoing["trace"]
    hook("connection.connect_tcp.started", {})
    assert tracker.phase == "proxy-tcp" and seen == ["connection.connect_tcp.started"]
    hook("http11.send_request_headers.started", {"request": _Req(b"GET")})
    assert tracker.phase == "origin"
    # past the proxy hop, the caller's own hook is back in place of the chain
    assert outgoing["trace"] is user_hook
    transport._untrack(request, tracker)
    assert request.extensions is caller  # the caller's dict, back and unchanged
    assert caller == given


def test_proxied_request_keeps_the_callers_extensions() -> None:
    transport = EgressTransport(HTTP_PROXY)
    seen: list[httpx.Request] = []
    plan = transport.plan("https://api.example.org/")
    transport._pools[plan.pool] = _recording_pool(seen)
    with httpx.Client(transport=transport) as client:
        response = client.get("https://api.example.org/x", extensions={"timeout": {"read": 1}})
    assert len(seen) == 1 and seen[0] is response.request
    assert response.request.extensions == {"timeout": {"read": 1}}


def test_tracker_leaves_extensions_once_the_request_is_sent() -> None:
    extensions: dict[str, Any] = {}
    tracker = SyncHopTracker(absolute_form=True)
    tracker.extensions = extensions
    extensions["trace"] = tracker
    tracker("http11.send_request_headers.started", {"request": _Req(b"GET")})
    assert tracker.phase == "proxy-request"
    assert "trace" not in extensions


class _Req:
    def __init__(self, method: bytes) -> None:
        self.method = method


# -- hop detection from trace events -----------------------------------------------------------


def _tracker(*events: tuple[str, dict[str, Any]], absolute_form: bool = False) -> HopTracker:
    tracker = SyncHopTracker(absolute_form=absolute_form)
    for name, info in events:
        tracker(name, info)
    return tracker


CONNECT_SENT = ("http11.send_request_headers.started", {"request": _Req(b"CONNECT")})
TCP = ("connection.connect_tcp.started", {})
TLS = ("connection.start_tls.started", {})


def _answer(
    status: int, reason: bytes, *headers: tuple[bytes, bytes]
) -> tuple[str, dict[str, Any]]:
    return (
        "http11.receive_response_headers.complete",
        {"return_value": (b"HTTP/1.1", status, reason, list(headers))},
    )


def _exc(cls: type[httpx.TransportError], message: str, cause: BaseException | None = None) -> Any:
    try:
        try:
            if cause is not None:
                raise cause
            raise RuntimeError("x")
        except BaseException as inner:
            raise cls(message) from (inner if cause is not None else None)
    except httpx.TransportError as exc:
        return exc


def _failure(
    tracker: HopTracker, exc: httpx.TransportError, settings: Settings = HTTP_PROXY
) -> Any:
    planner = Planner(settings)
    return tracker.failure(exc, planner, planner.plan("https://api.example.org/v1"))


def test_refused_connect_403_is_proxy_denied_with_squid_code() -> None:
    tracker = _tracker(
        TCP, CONNECT_SENT, _answer(403, b"Forbidden", (b"X-Squid-Error", b"ERR_ACCESS_DENIED 0"))
    )
    failure = _failure(tracker, _exc(httpx.ProxyError, "403 Forbidden"))
    assert failure.kind == "denied" and failure.status == 403 and failure.hop == "proxy-connect"
    assert failure.message == (
        "http://proxy.corp:3128 refused CONNECT to api.example.org:443 (403, ERR_ACCESS_DENIED): "
        "ask the proxy team to allow api.example.org"
    )


def test_connect_status_falls_back_to_the_error_text() -> None:
    failure = _failure(_tracker(), _exc(httpx.ProxyError, "407 Proxy Authentication Required"))
    assert failure.kind == "auth" and failure.status == 407
    assert "set proxy.username and proxy.password_file" in failure.message


def test_other_connect_refusal_is_proxy_error() -> None:
    tracker = _tracker(TCP, CONNECT_SENT, _answer(503, b"Service Unavailable"))
    failure = _failure(tracker, _exc(httpx.ProxyError, "503 Service Unavailable"))
    assert failure.kind == "proxy" and failure.status == 503
    assert "(503 Service Unavailable)" in failure.message
    assert "could not reach api.example.org:443" in failure.message


def test_no_answer_to_connect_is_proxy_error() -> None:
    failure = _failure(_tracker(TCP, CONNECT_SENT), _exc(httpx.ReadTimeout, "timed out"))
    assert failure.kind == "proxy" and failure.hop == "proxy-connect"
    assert "gave no answer to CONNECT" in failure.message


def test_tcp_failure_is_proxy_unreachable() -> None:
    exc = _exc(
        httpx.ConnectError,
        "[Errno 111] Connection refused",
        ConnectionRefusedError(111, "Connection refused"),
    )
    failure = _failure(_tracker(TCP), exc)
    assert failure.kind == "unreachable" and failure.hop == "proxy-tcp"
    assert "(Connection refused)" in failure.message


def test_untrusted_proxy_certificate_is_proxy_tls_error() -> None:
    cause = ssl.SSLCertVerificationError(
        1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"
    )
    cause.verify_message = "unable to get local issuer certificate"
    failure = _failure(_tracker(TCP, TLS), _exc(httpx.ConnectError, str(cause), cause))
    assert failure.kind == "tls" and failure.hop == "proxy-tls"
    assert "(unable to get local issuer certificate)" in failure.message
    assert failure.hint == "set proxy.ca_file to the CA that signs the proxy's certificate"


def test_other_tls_failure_to_proxy_names_the_handshake() -> None:
    cause = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    failure = _failure(_tracker(TCP, TLS), _exc(httpx.ConnectError, str(cause), cause))
    assert failure.kind == "tls" and "TLS handshake with the proxy" in failure.message


@pytest.mark.parametrize(
    "events",
    [
        [("http11.send_request_headers.started", {"request": _Req(b"GET")})],  # kept-alive
        [TCP, CONNECT_SENT, _answer(200, b"OK"), ("proxy.start_tls.started", {})],
    ],
    ids=["reused-tunnel", "origin-tls"],
)
def test_origin_failures_are_left_alone(events: list[tuple[str, dict[str, Any]]]) -> None:
    exc = _exc(httpx.ConnectError, "[SSL: CERTIFICATE_VERIFY_FAILED]")
    assert _failure(_tracker(*events), exc) is None


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


def test_password_not_in_error_text_repr_or_traceback(password_file: Path) -> None:
    settings = _auth_settings(password_file)
    planner = Planner(settings)
    plan = planner.plan("https://api.example.org/")
    tracker = _tracker(TCP, TLS, CONNECT_SENT, _answer(407, b"Proxy Authentication Required"))
    leak = _exc(httpx.ProxyError, f"407 body echoing {PASSWORD}")
    failure = tracker.failure(leak, planner, plan)
    assert failure is not None
    try:
        try:
            raise leak
        except httpx.ProxyError as exc:
            raise failure.error(egress.transport.HTTPX_ERRORS) from exc
    except ProxyAuthRequired as error:
        assert isinstance(error, httpx.ProxyError)
        assert "refused the credentials of user 'alice'" in str(error)
        assert f"https://alice:{REDACTED}@proxy.corp:3129" in str(error)
        for text in (str(error), repr(error), str(error.__dict__)):
            assert PASSWORD not in text
    assert planner.scrub(f"x {PASSWORD} y") == f"x {REDACTED} y"
    shown = "".join(traceback.format_exception_only(failure.error(egress.transport.HTTPX_ERRORS)))
    assert "407" in shown and PASSWORD not in shown


def test_decision_is_attached_to_responses() -> None:
    transport = EgressTransport(HTTP_PROXY)
    transport._pools[DIRECT] = httpx.MockTransport(lambda r: httpx.Response(204))  # type: ignore[assignment]
    with httpx.Client(transport=transport) as client:
        response = client.get("https://wiki.corp.example/")
    decision = response.extensions[DECISION_EXTENSION]
    assert (decision.route, decision.rule) == ("direct", "excluded:.corp.example")


def test_lazy_exports() -> None:
    assert egress.Client is egress.transport.Client
    assert egress.requests_session is requests_session
    with pytest.raises(AttributeError):
        egress.NoSuchThing  # noqa: B018
