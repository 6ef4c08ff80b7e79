"""The test infrastructure itself: Squid, the fake origin, PostgreSQL and the guards.

Plain httpx (``trust_env=False``) against the real services, so a broken environment shows up
here rather than as a puzzling failure in an egress test.
"""

from __future__ import annotations

import base64
import os
import socket
import ssl
import uuid

import httpx
import pytest
from tests.support import names
from tests.support.certs import CertBundle
from tests.support.origin import FakeOrigin
from tests.support.ports import port_accepts, wait_until
from tests.support.postgres import SSL_REQUEST, PostgresServer, ssl_request_answer
from tests.support.processes import pid_alive
from tests.support.squid import PROXY_PASSWORD, PROXY_USER, SquidProxy

pytestmark = pytest.mark.integration

ALICE = (PROXY_USER, PROXY_PASSWORD)


def _unique(prefix: str) -> str:
    return f"/{prefix}-{uuid.uuid4().hex[:12]}"


def _client(proxy: str | httpx.Proxy | None, certs: CertBundle) -> httpx.Client:
    return httpx.Client(proxy=proxy, verify=certs.origin_context(), trust_env=False, timeout=10)


def _connect_tunnel(
    proxy_port: int, target: str, *, auth: tuple[str, str] | None = None
) -> tuple[socket.socket, bytes]:
    """Open a raw CONNECT tunnel through Squid; return the socket and the status line."""
    sock = socket.create_connection(("127.0.0.1", proxy_port), timeout=10)
    request = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request += f"Proxy-Authorization: Basic {token}\r\n"
    sock.sendall((request + "\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return sock, head.split(b"\r\n", 1)[0]


# -- fake origin -----------------------------------------------------------------------------


def test_origin_direct_on_loopback_sees_no_proxy(origin: FakeOrigin, certs: CertBundle) -> None:
    with _client(None, certs) as client:
        echo = client.get(origin.https_url + "/direct?x=1").json()
        plain = client.get(origin.http_url + "/direct").json()
    assert echo["scheme"] == "https"
    assert echo["path"] == "/direct?x=1"
    assert echo["via"] is None
    assert echo["sni"] is None  # no SNI for an IP literal
    assert plain["scheme"] == "http"


def test_origin_keep_alive_redirect_and_page(origin: FakeOrigin, certs: CertBundle) -> None:
    with _client(None, certs) as client:
        first = client.post(origin.https_url + "/echo", content=b"12345").json()
        second = client.get(origin.https_url + "/echo").json()
        moved = client.get(origin.http_url + "/redirect?to=https://127.0.0.1/elsewhere")
        page = client.get(origin.http_url + "/page-1")
    assert first["body_len"] == 5
    assert second["requests_on_connection"] == first["requests_on_connection"] + 1
    assert moved.status_code == 302
    assert moved.headers["location"] == "https://127.0.0.1/elsewhere"
    assert "hello from origin" in page.text
    assert page.headers["content-type"].startswith("text/html")


# -- squid: plain, CONNECT, TLS proxy ---------------------------------------------------------


def test_connect_through_http_port_keeps_sni_and_logs_tunnel(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle
) -> None:
    mark = squid.access_log_mark()
    path = _unique("tunnel")
    with _client(squid.http_url, certs) as client:
        response = client.get(origin.url(names.AUTH_SAAS, path))
    echo = response.json()
    assert response.status_code == 200
    assert echo["sni"] == names.AUTH_SAAS
    assert echo["path"] == path
    assert echo["via"] is None  # end-to-end TLS: Squid cannot touch the request
    line = squid.wait_for_access_log(
        lambda entry: (
            entry.method == "CONNECT" and entry.url == f"{names.AUTH_SAAS}:{origin.https_port}"
        ),
        since=mark,
    )
    assert line.status == "TCP_TUNNEL/200"
    assert line.port == squid.http_port
    assert line.user is None


def test_plain_http_through_proxy_adds_via(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle
) -> None:
    mark = squid.access_log_mark()
    url = origin.url(names.API_SAAS, _unique("plain"), tls=False)
    with _client(squid.http_url, certs) as client:
        echo = client.get(url).json()
    assert echo["scheme"] == "http"
    assert echo["via"] is not None and "squid" in echo["via"]
    assert echo["x_forwarded_for"] == "127.0.0.1"
    assert echo["host_header"] == f"{names.API_SAAS}:{origin.http_port}"
    line = squid.wait_for_access_log(lambda entry: entry.url == url, since=mark)
    assert (line.method, line.code) == ("GET", 200)


def test_https_proxy_port_verified_with_proxy_ca(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle
) -> None:
    proxy = httpx.Proxy(squid.https_url, ssl_context=certs.proxy_context())
    with _client(proxy, certs) as client:
        tunnelled = client.get(origin.url(names.BIGQUERY, "/tls-proxy")).json()
        plain = client.get(origin.url(names.SNOWFLAKE, "/tls-proxy", tls=False)).json()
    assert tunnelled["sni"] == names.BIGQUERY
    assert plain["via"] is not None and "squid" in plain["via"]


@pytest.mark.parametrize("trusted", ["wrong_ca", "origin_ca"])
def test_https_proxy_port_rejected_with_other_ca(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle, trusted: str
) -> None:
    context = ssl.create_default_context(cafile=str(getattr(certs, trusted)))
    proxy = httpx.Proxy(squid.https_url, ssl_context=context)
    before = len(origin.received())
    with _client(proxy, certs) as client, pytest.raises(httpx.ConnectError) as excinfo:
        client.get(origin.url(names.BIGQUERY, "/wrong-proxy-ca"))
    assert "CERTIFICATE_VERIFY_FAILED" in str(excinfo.value)
    assert len(origin.received()) == before


# -- squid: allowlist ------------------------------------------------------------------------


def test_blocked_name_is_denied_and_logged(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle
) -> None:
    mark = squid.access_log_mark()
    with _client(squid.http_url, certs) as client:
        with pytest.raises(httpx.ProxyError, match="403"):
            client.get(origin.url(names.BLOCKED, "/blocked"))
        plain = client.get(origin.url(names.BLOCKED, "/blocked", tls=False))
    assert plain.status_code == 403
    assert plain.headers["x-squid-error"].startswith("ERR_ACCESS_DENIED")
    line = squid.wait_for_access_log(
        lambda entry: entry.method == "CONNECT" and entry.url.startswith(names.BLOCKED + ":"),
        since=mark,
    )
    assert line.status == "TCP_DENIED/403"
    assert not [echo for echo in origin.received() if names.BLOCKED in (echo["host_header"] or "")]


# -- squid: Basic auth -----------------------------------------------------------------------


def test_auth_port_requires_credentials(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle
) -> None:
    mark = squid.access_log_mark()
    with _client(squid.http_auth_url, certs) as client:
        challenged = client.get(origin.url(names.AUTH_SAAS, "/no-creds", tls=False))
        with pytest.raises(httpx.ProxyError, match="407"):
            client.get(origin.url(names.AUTH_SAAS, "/no-creds"))
    assert challenged.status_code == 407
    assert challenged.headers["proxy-authenticate"] == 'Basic realm="test-proxy"'
    with _client(httpx.Proxy(squid.http_auth_url, auth=(PROXY_USER, "wrong")), certs) as client:
        assert client.get(origin.url(names.AUTH_SAAS, "/bad", tls=False)).status_code == 407
    line = squid.wait_for_access_log(lambda entry: entry.code == 407, since=mark)
    assert line.status == "TCP_DENIED/407"


@pytest.mark.parametrize("kind", ["http", "https"])
def test_auth_port_accepts_alice_and_strips_credentials(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle, kind: str
) -> None:
    if kind == "http":
        proxy = httpx.Proxy(squid.http_auth_url, auth=ALICE)
        port = squid.http_auth_port
    else:
        proxy = httpx.Proxy(squid.https_auth_url, auth=ALICE, ssl_context=certs.proxy_context())
        port = squid.https_auth_port
    mark = squid.access_log_mark()
    with _client(proxy, certs) as client:
        plain = client.get(origin.url(names.OAUTH2_GOOGLE, "/alice", tls=False)).json()
        tunnelled = client.get(origin.url(names.OAUTH2_GOOGLE, "/alice"))
    assert tunnelled.status_code == 200
    assert tunnelled.json()["sni"] == names.OAUTH2_GOOGLE
    assert plain["proxy_authorization_leaked"] is None
    assert "proxy-authorization" not in plain["headers"]
    line = squid.wait_for_access_log(
        lambda entry: entry.method == "CONNECT" and entry.port == port, since=mark
    )
    assert (line.status, line.user) == ("TCP_TUNNEL/200", PROXY_USER)


# -- PostgreSQL ------------------------------------------------------------------------------


def test_postgres_answers_ssl_request_directly(postgres: PostgresServer, certs: CertBundle) -> None:
    assert ssl_request_answer(postgres.host, postgres.port) == b"S"
    with socket.create_connection((postgres.host, postgres.port), timeout=5) as raw:
        raw.sendall(SSL_REQUEST)
        assert raw.recv(1) == b"S"
        context = certs.origin_context()
        with context.wrap_socket(raw, server_hostname=names.PG_HOST) as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_postgres_reachable_through_squid_connect(
    squid: SquidProxy, postgres: PostgresServer
) -> None:
    mark = squid.access_log_mark()
    target = f"{names.PG_HOST}:{postgres.port}"
    sock, status = _connect_tunnel(squid.http_auth_port, target, auth=ALICE)
    with sock:
        assert status.split()[1] == b"200", status
        sock.sendall(SSL_REQUEST)
        assert sock.recv(1) == b"S"
    line = squid.wait_for_access_log(lambda entry: entry.url == target, since=mark)
    assert (line.status, line.user) == ("TCP_TUNNEL/200", PROXY_USER)


def test_postgres_port_is_connect_only_and_other_ports_denied(
    squid: SquidProxy, postgres: PostgresServer
) -> None:
    sock, status = _connect_tunnel(squid.http_port, f"{names.PG_HOST}:{postgres.port + 1}")
    sock.close()
    assert status.split()[1] == b"403", status


# -- lifecycle -------------------------------------------------------------------------------


def test_squid_stop_and_start_on_same_ports(
    origin: FakeOrigin, certs: CertBundle, own_squid: SquidProxy
) -> None:
    proxy = own_squid
    url = origin.url(names.AUTH_SAAS, "/restart")
    proxy.start()
    ports, first_pid = proxy.ports, proxy.pid
    with _client(proxy.http_url, certs) as client:
        assert client.get(url).json()["sni"] == names.AUTH_SAAS

    proxy.stop()
    assert proxy.pid is None
    assert first_pid is not None and not pid_alive(first_pid)
    assert not any(port_accepts(port) for port in ports)
    with _client(proxy.http_url, certs) as client, pytest.raises(httpx.ConnectError):
        client.get(url)

    proxy.start()
    assert proxy.ports == ports
    assert proxy.pid not in (None, first_pid)
    with _client(proxy.http_url, certs) as client:
        assert client.get(url).json()["sni"] == names.AUTH_SAAS

    # Squid logs a tunnel when it closes, a moment after the client hangs up.
    def tunnels() -> int:
        return sum(1 for line in proxy.access_log_lines() if line.status == "TCP_TUNNEL/200")

    wait_until(lambda: tunnels() >= 2, timeout=5, what="two tunnels in access.log")
    assert tunnels() == 2  # one per run, same access.log
    proxy.close()
    assert not proxy.workdir.exists()


# -- guards ----------------------------------------------------------------------------------


@pytest.mark.parametrize("host", [names.BIGQUERY, names.AUTH_SAAS, "example.com", "10.0.0.1"])
def test_resolver_guard_refuses_non_loopback(host: str) -> None:
    with pytest.raises(socket.gaierror, match="test guard"):
        socket.getaddrinfo(host, 443)


def test_resolver_guard_allows_loopback() -> None:
    assert socket.getaddrinfo("127.0.0.1", 80)
    assert socket.getaddrinfo("localhost", 80)


def test_proxy_environment_is_cleared() -> None:
    leaked = [name for name in ("HTTP_PROXY", "https_proxy", "SSL_CERT_FILE") if name in os.environ]
    assert leaked == []
