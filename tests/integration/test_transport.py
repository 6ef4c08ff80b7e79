"""egress.Client, egress.AsyncClient and egress.requests_session against the real Squid.

Every proxied case is proven by Squid's access log; every direct case by the log *not* having a
line for the host (checked after a sentinel request through Squid has been logged, so nothing
can still be on its way) and by the origin's echo (no ``Via``, the right SNI). Fake names reach
the origin only through Squid's hosts file, or, for direct cases, through ``resolve`` overrides
to 127.0.0.1; the conftest guard refuses every other name lookup.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import requests
import trustme
from tests.support import names
from tests.support.certs import CertBundle
from tests.support.origin import FakeOrigin
from tests.support.postgres import PostgresServer, ssl_request_answer
from tests.support.squid import PROXY_PASSWORD, PROXY_USER, AccessLogLine, SquidProxy

import egress
from egress import (
    EgressTransportError,
    ProxyAuthRequired,
    ProxyDenied,
    ProxyTLSError,
    ProxyUnreachable,
    Settings,
    UnsupportedRoute,
    URLError,
)
from egress.settings import REDACTED, load_settings_from_mapping
from egress.transport.clients import DECISION_EXTENSION

pytestmark = pytest.mark.integration

SENTINEL_HOST = names.GOOGLEAPIS  # used only to mark "everything before this is logged"
WRONG_PASSWORD = "not/alices@Pa55word"  # "/" and "@": masking must not rely on a pattern
DATABRICKS = "dbc-a1b2c3d4-e5f6.cloud.databricks.com"


# -- helpers ------------------------------------------------------------------------------------


def make_settings(
    proxy_url: str,
    *,
    enabled: bool = True,
    excluded: tuple[str, ...] = (),
    resolve: dict[str, str] | None = None,
    username: str | None = None,
    password_file: Path | None = None,
    ca_file: Path | None = None,
    verify: bool = True,
    tunnel: bool = False,
) -> Settings:
    proxy: dict[str, Any] = {"enabled": enabled, "url": proxy_url, "verify": verify}
    if username is not None:
        proxy["username"] = username
    if password_file is not None:
        proxy["password_file"] = str(password_file)
    if ca_file is not None:
        proxy["ca_file"] = str(ca_file)
    raw: dict[str, Any] = {
        "proxy": proxy,
        "excluded_domains": list(excluded),
        "resolve": resolve or {},
        "tunnel_tcp_warehouses": tunnel,
    }
    return load_settings_from_mapping(raw, env={})


def unique(tag: str) -> str:
    return f"/{tag}-{uuid.uuid4().hex[:10]}"


def line_host(line: AccessLogLine) -> str:
    if line.method == "CONNECT":
        return line.url.rsplit(":", 1)[0]
    return urlsplit(line.url).hostname or ""


def lines_for(squid: SquidProxy, mark: int, host: str) -> list[AccessLogLine]:
    return [line for line in squid.access_log_lines(since=mark) if line_host(line) == host]


def settle(squid: SquidProxy, origin: FakeOrigin, mark: int) -> list[AccessLogLine]:
    """Send a sentinel through Squid and wait for its line: every transaction that ended before
    (a closed client's CONNECT tunnels included) is in the log by then. Returns the lines."""
    path = unique("sentinel")
    with httpx.Client(proxy=squid.http_url, trust_env=False, timeout=10) as sentinel:
        assert sentinel.get(origin.url(SENTINEL_HOST, path, tls=False)).status_code == 200
    squid.wait_for_access_log(lambda line: line.url.endswith(path), since=mark)
    return [line for line in squid.access_log_lines(since=mark) if not line.url.endswith(path)]


def fresh_mark(squid: SquidProxy, origin: FakeOrigin) -> int:
    """A log mark taken once earlier tests' transactions are logged.

    Squid logs a CONNECT tunnel when it closes, which can be just after the client that opened
    it was closed, i.e. after the next test took its mark; settling first keeps such a line
    from being counted as this test's traffic.
    """
    settle(squid, origin, squid.access_log_mark())
    return squid.access_log_mark()


def assert_not_proxied(squid: SquidProxy, origin: FakeOrigin, mark: int, *hosts: str) -> None:
    seen = [line for line in settle(squid, origin, mark) if line_host(line) in hosts]
    assert seen == [], f"expected no proxy traffic for {hosts}, got {seen}"


def echo_for(origin: FakeOrigin, path: str) -> dict[str, Any]:
    found = [echo for echo in origin.received() if echo["path"].startswith(path)]
    assert len(found) == 1, f"{len(found)} requests for {path} reached the origin"
    return found[0]


def chain_text(exc: BaseException) -> str:
    """Everything an exception shows: str, repr and the formatted chain with tracebacks."""
    parts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    cause: BaseException | None = exc
    while cause is not None:
        parts += [str(cause), repr(cause)]
        cause = cause.__cause__ or cause.__context__
    return "\n".join(parts)


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "proxy-password"
    path.write_text(PROXY_PASSWORD + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def wrong_password_file(tmp_path: Path) -> Path:
    path = tmp_path / "wrong-password"
    path.write_text(WRONG_PASSWORD + "\n")
    return path


@pytest.fixture(scope="module")
def databricks_origin(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[FakeOrigin, Path]]:
    """A second fake origin whose certificate names a Databricks workspace (own test CA)."""
    directory = tmp_path_factory.mktemp("databricks")
    ca = trustme.CA(organization_name="egress tests", organization_unit_name="databricks CA")
    leaf = ca.issue_cert(DATABRICKS)
    ca_path, cert_path, key_path = (directory / n for n in ("ca.pem", "cert.pem", "key.pem"))
    ca.cert_pem.write_to_path(str(ca_path))
    leaf.private_key_pem.write_to_path(str(key_path))
    cert_path.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    with FakeOrigin(cert_path, key_path) as server:
        yield server, ca_path


# -- S1: an http:// proxy -------------------------------------------------------------------------


def test_s1_plain_http_goes_in_absolute_form_through_the_proxy(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle
) -> None:
    path = unique("s1-plain")
    url = origin.url(names.API_SAAS, path, tls=False)
    mark = fresh_mark(squid, origin)
    with egress.Client(make_settings(squid.http_url), verify=certs.origin_ca) as client:
        response = client.get(url)
    echo = response.json()
    assert response.status_code == 200
    assert echo["via"] is not None and "squid" in echo["via"]
    assert echo["host_header"] == f"{names.API_SAAS}:{origin.http_port}"
    assert response.extensions[DECISION_EXTENSION].route == "proxy"
    line = squid.wait_for_access_log(lambda entry: entry.url == url, since=mark)
    assert (line.method, line.code, line.port) == ("GET", 200, squid.http_port)


def test_s1_https_goes_through_connect_with_the_right_sni(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle
) -> None:
    path = unique("s1-tls")
    mark = fresh_mark(squid, origin)
    with egress.Client(make_settings(squid.http_url), verify=certs.origin_ca) as client:
        echo = client.get(origin.url(names.AUTH_SAAS, path)).json()
    assert (echo["sni"], echo["path"], echo["via"]) == (names.AUTH_SAAS, path, None)
    line = squid.wait_for_access_log(
        lambda e: e.method == "CONNECT" and e.url == f"{names.AUTH_SAAS}:{origin.https_port}",
        since=mark,
    )
    assert (line.status, line.port) == ("TCP_TUNNEL/200", squid.http_port)


# -- S2 / S9: an https:// proxy with its own CA; BigQuery through both --------------------------


@pytest.mark.parametrize("tls_destination", [True, False], ids=["https-dest", "http-dest"])
def test_s2_https_proxy_verified_with_the_proxy_ca(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle, tls_destination: bool
) -> None:
    settings = make_settings(squid.https_url, ca_file=certs.proxy_ca)
    path = unique("s2")
    url = origin.url(names.API_SAAS, path, tls=tls_destination)
    mark = fresh_mark(squid, origin)
    with egress.Client(settings, verify=certs.origin_context()) as client:
        echo = client.get(url).json()
    if tls_destination:
        assert echo["sni"] == names.API_SAAS and echo["via"] is None
        wanted = ("CONNECT", f"{names.API_SAAS}:{origin.https_port}")
    else:
        assert "squid" in (echo["via"] or "")
        wanted = ("GET", url)
    line = squid.wait_for_access_log(lambda e: (e.method, e.url) == wanted, since=mark)
    assert line.port == squid.https_port and line.code == 200


@pytest.mark.parametrize("kind", ["http", "https"])
def test_s9_bigquery_through_both_proxy_kinds(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle, kind: str
) -> None:
    proxy_url, port = {
        "http": (squid.http_url, squid.http_port),
        "https": (squid.https_url, squid.https_port),
    }[kind]
    settings = make_settings(proxy_url, ca_file=certs.proxy_ca)
    path = unique("bigquery")
    mark = fresh_mark(squid, origin)
    with egress.Client(settings, verify=certs.origin_ca) as client:
        response = client.post(origin.url(names.BIGQUERY, path), json={"query": "select 1"})
    assert response.json()["sni"] == names.BIGQUERY
    assert response.json()["body_len"] > 0
    assert response.extensions[DECISION_EXTENSION].rule == "warehouse:bigquery"
    line = squid.wait_for_access_log(
        lambda e: e.method == "CONNECT" and line_host(e) == names.BIGQUERY, since=mark
    )
    assert line.port == port


# -- S10-S12: warehouses that go direct, and Snowflake through the http proxy -------------------


def test_s10_postgres_goes_direct_without_the_proxy(
    squid: SquidProxy, origin: FakeOrigin, postgres: PostgresServer
) -> None:
    settings = make_settings(squid.http_url, resolve={names.PG_HOST: "127.0.0.1"})
    decision = settings.router().decide(f"postgresql://{names.PG_HOST}:{postgres.port}/postgres")
    assert (decision.route, decision.rule) == ("direct", "warehouse:postgres")
    mark = fresh_mark(squid, origin)
    address = settings.resolve_map()[names.PG_HOST]
    assert ssl_request_answer(address, postgres.port) == b"S"
    assert_not_proxied(squid, origin, mark, names.PG_HOST)


def test_s11_databricks_goes_direct_through_resolve(
    squid: SquidProxy, origin: FakeOrigin, databricks_origin: tuple[FakeOrigin, Path]
) -> None:
    server, ca_path = databricks_origin
    settings = make_settings(squid.http_url, resolve={DATABRICKS: "127.0.0.1"})
    path = unique("databricks")
    mark = fresh_mark(squid, origin)
    with egress.Client(settings, verify=ca_path) as client:
        response = client.get(server.url(DATABRICKS, path))
    echo = response.json()
    assert (echo["sni"], echo["via"]) == (DATABRICKS, None)
    assert echo["host_header"] == f"{DATABRICKS}:{server.https_port}"
    assert response.extensions[DECISION_EXTENSION].rule == "warehouse:databricks"
    assert str(response.url) == server.url(DATABRICKS, path)  # the name, not the pinned IP
    assert_not_proxied(squid, origin, mark, DATABRICKS)


def test_s12_snowflake_goes_direct_with_an_https_proxy(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle
) -> None:
    settings = make_settings(
        squid.https_url, ca_file=certs.proxy_ca, resolve={names.SNOWFLAKE: "127.0.0.1"}
    )
    path = unique("snowflake-direct")
    mark = fresh_mark(squid, origin)
    with egress.Client(settings, verify=certs.origin_ca) as client:
        response = client.get(origin.url(names.SNOWFLAKE, path))
    echo = response.json()
    assert (echo["sni"], echo["via"]) == (names.SNOWFLAKE, None)
    decision = response.extensions[DECISION_EXTENSION]
    assert (decision.route, decision.rule) == ("direct", "warehouse:snowflake")
    assert_not_proxied(squid, origin, mark, names.SNOWFLAKE)


def test_snowflake_goes_through_an_http_proxy(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle
) -> None:
    settings = make_settings(squid.http_url, resolve={names.SNOWFLAKE: "127.0.0.1"})
    mark = fresh_mark(squid, origin)
    with egress.Client(settings, verify=certs.origin_ca) as client:
        echo = client.get(origin.url(names.SNOWFLAKE, unique("snowflake-proxied"))).json()
    assert echo["sni"] == names.SNOWFLAKE
    line = squid.wait_for_access_log(
        lambda e: e.method == "CONNECT" and line_host(e) == names.SNOWFLAKE, since=mark
    )
    assert line.status == "TCP_TUNNEL/200"


def test_excluded_domain_goes_direct(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle
) -> None:
    settings = make_settings(
        squid.http_url,
        excluded=(".example-corp.test",),
        resolve={names.EXCLUDED_CORP: "127.0.0.1"},
    )
    tls_path, plain_path = unique("excluded-tls"), unique("excluded-plain")
    mark = fresh_mark(squid, origin)
    with egress.Client(settings, verify=certs.origin_ca) as client:
        tls = client.get(origin.url(names.EXCLUDED_CORP, tls_path))
        plain = client.get(origin.url(names.EXCLUDED_CORP, plain_path, tls=False))
    assert tls.json()["sni"] == names.EXCLUDED_CORP and tls.json()["via"] is None
    assert plain.json()["via"] is None
    assert plain.json()["host_header"] == f"{names.EXCLUDED_CORP}:{origin.http_port}"
    assert tls.extensions[DECISION_EXTENSION].rule == "excluded:.example-corp.test"
    assert_not_proxied(squid, origin, mark, names.EXCLUDED_CORP)


def test_direct_fake_name_without_resolve_fails_loudly(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle
) -> None:
    settings = make_settings(squid.http_url, excluded=(names.EXCLUDED_CORP,))
    mark = fresh_mark(squid, origin)
    with (
        egress.Client(settings, verify=certs.origin_ca) as client,
        pytest.raises(httpx.ConnectError, match="test guard") as excinfo,
    ):
        client.get(origin.url(names.EXCLUDED_CORP, "/no-resolve"))
    assert not isinstance(excinfo.value, EgressTransportError)  # not a proxy hop
    assert_not_proxied(squid, origin, mark, names.EXCLUDED_CORP)


def test_redirect_hops_are_decided_one_by_one(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle
) -> None:
    settings = make_settings(
        squid.http_url,
        excluded=(names.EXCLUDED_CORP,),
        resolve={names.EXCLUDED_CORP: "127.0.0.1"},
    )
    landed = unique("landed")
    start = origin.url(names.AUTH_SAAS, "/redirect?to=" + origin.url(names.EXCLUDED_CORP, landed))
    mark = fresh_mark(squid, origin)
    with egress.Client(settings, verify=certs.origin_ca, follow_redirects=True) as client:
        response = client.get(start)
    assert response.json()["sni"] == names.EXCLUDED_CORP
    assert response.json()["path"] == landed
    assert [r.extensions[DECISION_EXTENSION].route for r in (*response.history, response)] == [
        "proxy",
        "direct",
    ]
    lines = settle(squid, origin, mark)
    assert [line.url for line in lines if line.method == "CONNECT"] == [
        f"{names.AUTH_SAAS}:{origin.https_port}"
    ]
    assert not [line for line in lines if line_host(line) == names.EXCLUDED_CORP]


# -- the proxy says no ---------------------------------------------------------------------------


def test_403_on_connect_is_proxy_denied(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle
) -> None:
    mark = fresh_mark(squid, origin)
    with (
        egress.Client(make_settings(squid.http_url), verify=certs.origin_ca) as client,
        pytest.raises(ProxyDenied) as excinfo,
    ):
        client.get(origin.url(names.BLOCKED, "/denied"))
    error = excinfo.value
    assert str(error) == (
        f"{squid.http_url} refused CONNECT to {names.BLOCKED}:{origin.https_port} "
        f"(403, ERR_ACCESS_DENIED): ask the proxy team to allow {names.BLOCKED}"
    )
    assert isinstance(error, httpx.ProxyError) and isinstance(error.__cause__, httpx.ProxyError)
    assert (error.status, error.hop, error.proxy) == (403, "proxy-connect", squid.http_url)
    line = squid.wait_for_access_log(lambda e: line_host(e) == names.BLOCKED, since=mark)
    assert line.status == "TCP_DENIED/403"


def test_403_on_plain_http_is_proxy_denied(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle
) -> None:
    with (
        egress.Client(make_settings(squid.http_url), verify=certs.origin_ca) as client,
        pytest.raises(ProxyDenied, match=r"refused GET to .*\(403, ERR_ACCESS_DENIED\)") as exc,
    ):
        client.get(origin.url(names.BLOCKED, "/denied", tls=False))
    assert exc.value.hop == "proxy-request"
    # the origin's own 403 stays a response
    settings = make_settings(squid.http_url)
    with egress.Client(settings, verify=certs.origin_ca) as client:
        assert client.get(origin.url(names.API_SAAS, "/status/403", tls=False)).status_code == 403


@pytest.mark.parametrize("tls", [True, False], ids=["connect", "plain"])
def test_407_without_credentials(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle, tls: bool
) -> None:
    mark = fresh_mark(squid, origin)
    with (
        egress.Client(make_settings(squid.http_auth_url), verify=certs.origin_ca) as client,
        pytest.raises(ProxyAuthRequired) as excinfo,
    ):
        client.get(origin.url(names.AUTH_SAAS, "/no-creds", tls=tls))
    assert excinfo.value.status == 407
    assert str(excinfo.value).startswith(f"{squid.http_auth_url} wants credentials for ")
    assert str(excinfo.value).endswith("set proxy.username and proxy.password_file")
    line = squid.wait_for_access_log(lambda e: line_host(e) == names.AUTH_SAAS, since=mark)
    assert (line.status, line.port) == ("TCP_DENIED/407", squid.http_auth_port)


@pytest.mark.parametrize("tls", [True, False], ids=["connect", "plain"])
def test_407_with_a_wrong_password(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle, wrong_password_file: Path, tls: bool
) -> None:
    settings = make_settings(
        squid.http_auth_url, username=PROXY_USER, password_file=wrong_password_file
    )
    mark = fresh_mark(squid, origin)
    with (
        egress.Client(settings, verify=certs.origin_ca) as client,
        pytest.raises(ProxyAuthRequired, match="refused the credentials of user 'alice'") as exc,
    ):
        client.get(origin.url(names.AUTH_SAAS, "/bad-creds", tls=tls))
    assert exc.value.proxy == f"http://alice:{REDACTED}@127.0.0.1:{squid.http_auth_port}"
    assert WRONG_PASSWORD not in chain_text(exc.value)
    line = squid.wait_for_access_log(lambda e: line_host(e) == names.AUTH_SAAS, since=mark)
    assert line.status == "TCP_DENIED/407"


@pytest.mark.parametrize("kind", ["http", "https"])
def test_basic_auth_goes_to_the_proxy_only(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle, password_file: Path, kind: str
) -> None:
    proxy_url, port = {
        "http": (squid.http_auth_url, squid.http_auth_port),
        "https": (squid.https_auth_url, squid.https_auth_port),
    }[kind]
    settings = make_settings(
        proxy_url, username=PROXY_USER, password_file=password_file, ca_file=certs.proxy_ca
    )
    plain_path, tls_path = unique("auth-plain"), unique("auth-tls")
    mark = fresh_mark(squid, origin)
    with egress.Client(settings, verify=certs.origin_ca) as client:
        plain = client.get(origin.url(names.OAUTH2_GOOGLE, plain_path, tls=False)).json()
        tunnelled = client.get(origin.url(names.OAUTH2_GOOGLE, tls_path)).json()
    assert tunnelled["sni"] == names.OAUTH2_GOOGLE
    for echo in (plain, tunnelled):
        assert echo["proxy_authorization_leaked"] is None
        assert "proxy-authorization" not in echo["headers"]
    line = squid.wait_for_access_log(
        lambda e: e.method == "CONNECT" and e.port == port and line_host(e) == names.OAUTH2_GOOGLE,
        since=mark,
    )
    assert (line.status, line.user) == ("TCP_TUNNEL/200", PROXY_USER)
    plain_line = squid.wait_for_access_log(lambda e: e.url.endswith(plain_path), since=mark)
    assert plain_line.user == PROXY_USER


def test_password_never_leaks(
    squid: SquidProxy,
    origin: FakeOrigin,
    certs: CertBundle,
    password_file: Path,
    wrong_password_file: Path,
) -> None:
    token = base64.b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode()).decode()
    wrong_token = base64.b64encode(f"{PROXY_USER}:{WRONG_PASSWORD}".encode()).decode()
    secrets = (PROXY_PASSWORD, token, WRONG_PASSWORD, wrong_token)
    paths = [unique("leak-plain"), unique("leak-tls")]
    good = make_settings(squid.http_auth_url, username=PROXY_USER, password_file=password_file)
    bad = make_settings(
        squid.https_auth_url,
        username=PROXY_USER,
        password_file=wrong_password_file,
        ca_file=certs.proxy_ca,
    )
    errors: list[BaseException] = []
    with egress.Client(good, verify=certs.origin_ca) as client:
        client.get(origin.url(names.API_SAAS, paths[0], tls=False))
        client.get(origin.url(names.API_SAAS, paths[1]))
        shown = [repr(client), repr(client.egress_transport), repr(good), str(good.proxy)]
    with egress.Client(bad, verify=certs.origin_ca) as client:
        for tls in (True, False):
            with pytest.raises(ProxyAuthRequired) as excinfo:
                client.get(origin.url(names.API_SAAS, "/leak-bad", tls=tls))
            errors.append(excinfo.value)
    with requests_session_for(bad, certs) as session:
        with pytest.raises(ProxyAuthRequired) as rexc:
            session.get(origin.url(names.API_SAAS, "/leak-bad-requests"))
        errors.append(rexc.value)
    mark_text = squid.access_log_path.read_text()
    received = [echo for echo in origin.received() if echo["path"] in paths]
    assert len(received) == 2
    for echo in received:
        assert echo["proxy_authorization_leaked"] is None
    texts = [mark_text, *map(str, received), *shown, *map(chain_text, errors)]
    for text in texts:
        for secret in secrets:
            assert secret not in text


def requests_session_for(settings: Settings, certs: CertBundle) -> requests.Session:
    return egress.requests_session(settings, verify=certs.origin_ca)


def test_untrusted_proxy_certificate_is_proxy_tls_error(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle
) -> None:
    settings = make_settings(squid.https_url, ca_file=certs.wrong_ca)
    before = len(origin.received())
    with (
        egress.Client(settings, verify=certs.origin_ca) as client,
        pytest.raises(ProxyTLSError) as excinfo,
    ):
        client.get(origin.url(names.AUTH_SAAS, "/wrong-proxy-ca"))
    assert str(excinfo.value) == (
        f"the certificate of the proxy {squid.https_url} is not trusted (unable to get local "
        "issuer certificate): set proxy.ca_file to the CA that signs the proxy's certificate"
    )
    assert isinstance(excinfo.value, httpx.ConnectError)
    assert len(origin.received()) == before


def test_proxy_verify_off_leaves_origin_verification_on(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle
) -> None:
    settings = make_settings(squid.https_url, verify=False)  # no proxy CA at all
    with egress.Client(settings, verify=certs.origin_ca) as client:
        assert client.get(origin.url(names.AUTH_SAAS, "/proxy-unverified")).status_code == 200
    with egress.Client(settings) as client, pytest.raises(httpx.ConnectError) as excinfo:
        client.get(origin.url(names.AUTH_SAAS, "/origin-untrusted"))
    assert "CERTIFICATE_VERIFY_FAILED" in str(excinfo.value)


def test_origin_tls_failure_in_the_tunnel_stays_an_httpx_error(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle
) -> None:
    mark = fresh_mark(squid, origin)
    with (
        egress.Client(make_settings(squid.http_url), verify=certs.wrong_context()) as client,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED") as excinfo,
    ):
        client.get(origin.url(names.AUTH_SAAS, "/origin-untrusted"))
    assert not isinstance(excinfo.value, EgressTransportError)
    squid.wait_for_access_log(lambda e: e.method == "CONNECT", since=mark)  # tunnel was up


def test_origin_verification_can_be_switched_off_per_client(
    squid: SquidProxy, origin: FakeOrigin
) -> None:
    with egress.Client(make_settings(squid.http_url), verify=False) as client:
        assert client.get(origin.url(names.AUTH_SAAS, "/unverified")).status_code == 200
    assert ssl.create_default_context().verify_mode == ssl.CERT_REQUIRED


def test_proxy_stopped_is_unreachable_then_recovers(
    origin: FakeOrigin, certs: CertBundle, own_squid: SquidProxy
) -> None:
    proxy = own_squid
    url = origin.url(names.AUTH_SAAS, "/restart")
    proxy.start()
    with egress.Client(make_settings(proxy.http_url), verify=certs.origin_ca) as client:
        assert client.get(url).status_code == 200
        proxy.stop()
        with pytest.raises(ProxyUnreachable) as excinfo:
            client.get(url)
        assert str(excinfo.value) == (
            f"cannot connect to the proxy {proxy.http_url} for {names.AUTH_SAAS}:"
            f"{origin.https_port} (Connection refused): check proxy.url and that the proxy "
            "is running and reachable from here"
        )
        assert isinstance(excinfo.value, httpx.ConnectError)
        assert excinfo.value.hop == "proxy-tcp"
        proxy.start()
        mark = proxy.access_log_mark()
        assert client.get(url).json()["sni"] == names.AUTH_SAAS
    proxy.wait_for_access_log(lambda e: e.method == "CONNECT", since=mark)


# -- keep-alive and concurrency -----------------------------------------------------------------


def connect_lines(squid: SquidProxy, origin: FakeOrigin, mark: int, host: str) -> int:
    return len(
        [
            line
            for line in settle(squid, origin, mark)
            if line.method == "CONNECT" and line_host(line) == host
        ]
    )


def test_keep_alive_holds_one_tunnel_per_origin(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle
) -> None:
    mark = fresh_mark(squid, origin)
    with egress.Client(make_settings(squid.http_url), verify=certs.origin_ca) as client:
        echoes = [client.get(origin.url(names.AUTH_SAAS, f"/keep-{i}")).json() for i in range(20)]
    assert [e["requests_on_connection"] for e in echoes] == list(range(1, 21))
    assert connect_lines(squid, origin, mark, names.AUTH_SAAS) == 1


def test_async_client_50_concurrent_requests(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle
) -> None:
    settings = make_settings(squid.https_url, ca_file=certs.proxy_ca)

    async def run() -> list[httpx.Response]:
        async with egress.AsyncClient(settings, verify=certs.origin_ca) as client:
            assert isinstance(client, httpx.AsyncClient)
            return list(
                await asyncio.gather(
                    *(client.get(origin.url(names.API_SAAS, f"/async-{i}")) for i in range(50))
                )
            )

    mark = fresh_mark(squid, origin)
    started = time.monotonic()
    responses = asyncio.run(run())
    elapsed = time.monotonic() - started
    assert [r.status_code for r in responses] == [200] * 50
    assert {r.json()["sni"] for r in responses} == {names.API_SAAS}
    tunnels = connect_lines(squid, origin, mark, names.API_SAAS)
    print(f"\n50 concurrent requests: {tunnels} CONNECT tunnels, {elapsed:.2f} s")
    assert 1 <= tunnels <= 50


def test_async_client_translates_errors(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle
) -> None:
    async def run() -> None:
        async with egress.AsyncClient(make_settings(squid.http_url), verify=certs.origin_ca) as c:
            with pytest.raises(ProxyDenied, match="refused CONNECT"):
                await c.get(origin.url(names.BLOCKED, "/async-denied"))
            with pytest.raises(ProxyDenied, match="refused GET"):
                await c.get(origin.url(names.BLOCKED, "/async-denied", tls=False))
            seen: list[str] = []

            async def trace(name: str, info: dict[str, Any]) -> None:
                seen.append(name)

            response = await c.get(
                origin.url(names.AUTH_SAAS, "/async-trace"), extensions={"trace": trace}
            )
            assert response.status_code == 200
            assert "connection.connect_tcp.started" in seen  # the caller's hook still runs
            assert "http11.response_closed.complete" in seen

    asyncio.run(run())


# -- the switch, refused hosts and routes --------------------------------------------------------


def test_switched_off_everything_goes_direct(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle
) -> None:
    hosts = (names.AUTH_SAAS, names.BIGQUERY, names.API_SAAS)
    settings = make_settings(
        squid.http_url, enabled=False, resolve=dict.fromkeys(hosts, "127.0.0.1")
    )
    mark = fresh_mark(squid, origin)
    with egress.Client(settings, verify=certs.origin_ca) as client:
        responses = [
            client.get(origin.url(names.AUTH_SAAS, unique("off"))),
            client.get(origin.url(names.BIGQUERY, unique("off"))),
            client.get(origin.url(names.API_SAAS, unique("off"), tls=False)),
        ]
    for response, host in zip(responses, hosts, strict=True):
        assert response.json()["via"] is None
        assert response.extensions[DECISION_EXTENSION].rule == "proxy-disabled"
        if response.url.scheme == "https":
            assert response.json()["sni"] == host
    assert_not_proxied(squid, origin, mark, *hosts)


@pytest.mark.parametrize(
    "url",
    ["http://evil%0d%0ahost.example-saas.test/", "https://a b.example-saas.test/"],
    ids=["crlf", "space"],
)
def test_bad_host_names_never_reach_the_proxy(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle, url: str
) -> None:
    mark = fresh_mark(squid, origin)
    settings = make_settings(squid.http_url)
    with egress.Client(settings, verify=certs.origin_ca) as client, pytest.raises(URLError):
        client.get(url)
    with (
        egress.requests_session(settings) as session,
        pytest.raises((URLError, requests.exceptions.InvalidURL)),
    ):
        session.get(url)
    assert settle(squid, origin, mark) == []


def test_tunnel_route_is_refused_for_http(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle
) -> None:
    host = "c1.abc123.eu-west-1.redshift.amazonaws.com"
    settings = make_settings(squid.http_url, tunnel=True)
    mark = fresh_mark(squid, origin)
    with (
        egress.Client(settings, verify=certs.origin_ca) as client,
        pytest.raises(UnsupportedRoute, match="decided 'tunnel'") as excinfo,
    ):
        client.get(f"https://{host}:{origin.https_port}/")
    assert isinstance(excinfo.value, httpx.UnsupportedProtocol)
    assert settle(squid, origin, mark) == []


# -- requests: the same decisions, the same places -----------------------------------------------


def parity_settings(squid: SquidProxy, certs: CertBundle, kind: str) -> Settings:
    return make_settings(
        squid.http_url if kind == "http" else squid.https_url,
        ca_file=certs.proxy_ca,
        excluded=(names.EXCLUDED_CORP,),
        resolve={names.EXCLUDED_CORP: "127.0.0.1", names.SNOWFLAKE: "127.0.0.1"},
    )


# (id, host, tls, route through an http:// proxy, route through an https:// proxy)
PARITY_URLS = [
    ("https-proxied", names.AUTH_SAAS, True, "proxy", "proxy"),
    ("http-proxied", names.API_SAAS, False, "proxy", "proxy"),
    ("bigquery", names.BIGQUERY, True, "proxy", "proxy"),
    ("snowflake", names.SNOWFLAKE, True, "proxy", "direct"),
    ("excluded-https", names.EXCLUDED_CORP, True, "direct", "direct"),
    ("excluded-http", names.EXCLUDED_CORP, False, "direct", "direct"),
    ("loopback", "127.0.0.1", True, "direct", "direct"),
]


@pytest.mark.parametrize("kind", ["http", "https"], ids=["http-proxy", "https-proxy"])
@pytest.mark.parametrize(
    ("host", "tls", "via_http", "via_https"),
    [c[1:] for c in PARITY_URLS],
    ids=[c[0] for c in PARITY_URLS],
)
def test_requests_session_goes_where_the_httpx_client_goes(
    squid: SquidProxy,
    origin: FakeOrigin,
    certs: CertBundle,
    host: str,
    tls: bool,
    via_http: str,
    via_https: str,
    kind: str,
) -> None:
    settings = parity_settings(squid, certs, kind)
    route = via_http if kind == "http" else via_https
    observed: dict[str, tuple[str, Any, Any, str]] = {}
    for client_kind in ("httpx", "requests"):
        path = unique(f"parity-{client_kind}")
        url = origin.url(host, path, tls=tls)
        mark = fresh_mark(squid, origin)
        if client_kind == "httpx":
            with egress.Client(settings, verify=certs.origin_ca) as client:
                response = client.get(url)
                echo, final = response.json(), str(response.url)
        else:
            with egress.requests_session(settings, verify=certs.origin_ca) as session:
                answer = session.get(url)
                echo, final = answer.json(), answer.url
        proxied = [line for line in settle(squid, origin, mark) if line_host(line) == host]
        observed[client_kind] = ("proxy" if proxied else "direct", echo["sni"], echo["via"], final)
        assert final == url
    assert observed["httpx"][:3] == observed["requests"][:3]
    assert observed["httpx"][0] == route == settings.router().decide(url).route


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("denied-connect", ProxyDenied),
        ("denied-plain", ProxyDenied),
        ("auth", ProxyAuthRequired),
        ("tls", ProxyTLSError),
        ("unreachable", ProxyUnreachable),
    ],
)
def test_requests_session_translates_proxy_errors(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle, case: str, expected: type[Exception]
) -> None:
    settings = {
        "denied-connect": make_settings(squid.http_url),
        "denied-plain": make_settings(squid.http_url),
        "auth": make_settings(squid.http_auth_url),
        "tls": make_settings(squid.https_url, ca_file=certs.wrong_ca),
        "unreachable": make_settings("http://127.0.0.1:9"),
    }[case]
    host = names.BLOCKED if case.startswith("denied") else names.AUTH_SAAS
    url = origin.url(host, "/requests-error", tls=case != "denied-plain")
    with (
        egress.requests_session(settings, verify=certs.origin_ca) as session,
        pytest.raises(expected) as excinfo,
    ):
        session.get(url, timeout=10)
    assert isinstance(excinfo.value, requests.exceptions.ProxyError)
    assert excinfo.value.request is not None
    with (
        egress.Client(settings, verify=certs.origin_ca) as client,
        pytest.raises(expected) as httpx_excinfo,
    ):
        client.get(url)
    # same hop, same fix; only the Squid error code can differ (requests hides CONNECT headers)
    assert type(httpx_excinfo.value).__mro__[1] is type(excinfo.value).__mro__[1]
    assert httpx_excinfo.value.hint == excinfo.value.hint  # type: ignore[attr-defined]


def test_requests_session_basic_auth_and_redirects(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle, password_file: Path
) -> None:
    settings = make_settings(
        squid.https_auth_url,
        username=PROXY_USER,
        password_file=password_file,
        ca_file=certs.proxy_ca,
        excluded=(names.EXCLUDED_CORP,),
        resolve={names.EXCLUDED_CORP: "127.0.0.1"},
    )
    landed = unique("requests-landed")
    start = origin.url(names.AUTH_SAAS, "/redirect?to=" + origin.url(names.EXCLUDED_CORP, landed))
    mark = fresh_mark(squid, origin)
    with egress.requests_session(settings, verify=certs.origin_ca) as session:
        response = session.get(start)
    assert response.json()["path"] == landed
    assert response.json()["sni"] == names.EXCLUDED_CORP
    assert response.json()["proxy_authorization_leaked"] is None
    assert response.url == origin.url(names.EXCLUDED_CORP, landed)
    lines = settle(squid, origin, mark)
    connects = [line for line in lines if line.method == "CONNECT"]
    assert [(line_host(c), c.user) for c in connects] == [(names.AUTH_SAAS, PROXY_USER)]
    assert not [line for line in lines if line_host(line) == names.EXCLUDED_CORP]
