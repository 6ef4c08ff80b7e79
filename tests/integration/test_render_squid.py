"""The rendered Squid allowlist inside a real squid.conf: Squid accepts it, and a real Squid
with it lets the in-scope destinations through and refuses the rest (403).

The fragment is checked as rendered. Squid resolves every name from its own ``hosts_file``
(all -> 127.0.0.1), with ``dns_nameservers 127.0.0.1`` and ``http_access deny !to_loopback``
before the fragment as a safety belt, so nothing leaves the machine. The fake origin listens on
free ports, not on 443 and 80, so the test config adds those ports to the fragment's own port
ACLs before it (Squid merges ACL lines of one name): port 443 of the catalog stands for the
origin's TLS port, port 80 for its plain-HTTP port.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from tests.support.origin import FakeOrigin
from tests.support.ports import LOOPBACK, free_port
from tests.support.squid_fragment import FragmentSquid

from egress.catalog import known_features
from egress.render import RenderOptions
from egress.render.squid import render
from egress.settings import Settings, load_settings_from_mapping

pytestmark = pytest.mark.integration

ALLOWED = (
    "auth.carto.com",
    "bigquery.googleapis.com",
    "registry.self-hosted.carto.com",
    "acme.snowflakecomputing.com",
    "api.tomtom.com",
)
OFF_LIST = (
    "blocked.example-evil.test",
    "evil.carto.com",
    "notsnowflakecomputing.com",
    "bigquery.googleapis.com.evil.test",
)
OCSP = "o.ss2.us"
NAMES = (*ALLOWED, *OFF_LIST, OCSP)


def make(raw: dict[str, Any]) -> Settings:
    return load_settings_from_mapping(raw, env={})


SETTINGS: dict[str, Settings] = {
    "http": make({"proxy": {"url": "http://proxy.corp:3128"}, "features": ["geocoding-tomtom"]}),
    "https": make({"proxy": {"url": "https://proxy.corp:3129"}}),
    "tunnel": make({"proxy": {"url": "http://proxy.corp:3128"}, "tunnel_tcp_warehouses": True}),
    "every-feature": make(
        {"proxy": {"url": "http://proxy.corp:3128"}, "features": list(known_features())}
    ),
    "excluded-googleapis": make(
        {"proxy": {"url": "http://proxy.corp:3128"}, "excluded_domains": [".googleapis.com"]}
    ),
    "switched-off": make({"proxy": {"enabled": False, "url": "http://proxy.corp:3128"}}),
    "no-proxy": make({}),
    "bigquery-only": make({"proxy": {"url": "http://proxy.corp:3128"}, "warehouses": ["bigquery"]}),
}


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, ssl.SSLContext]:
    """A CA and an origin leaf for the catalog names this test uses."""
    directory = tmp_path_factory.mktemp("render-squid-certs")
    ca = trustme.CA(organization_name="egress tests", organization_unit_name="render squid CA")
    leaf = ca.issue_cert(*NAMES, "127.0.0.1")
    cert, key = directory / "cert.pem", directory / "key.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return cert, key, context


@pytest.fixture(scope="module")
def fake_origin(tls: tuple[Path, Path, ssl.SSLContext]) -> Iterator[FakeOrigin]:
    with FakeOrigin(tls[0], tls[1]) as server:
        yield server


# -- Squid accepts the fragment --------------------------------------------------------------


@pytest.mark.parametrize("name", list(SETTINGS))
def test_squid_parses_the_fragment(name: str, fake_origin: FakeOrigin) -> None:
    fragment = render(SETTINGS[name], RenderOptions()).text
    squid = FragmentSquid(fragment, fake_origin, names=NAMES)
    try:
        parsed = squid.parse()
    finally:
        squid.close()
    output = parsed.stdout + parsed.stderr
    assert parsed.returncode == 0, output[-3000:]
    problems = [
        line
        for line in output.splitlines()
        if ("WARNING" in line or "ERROR" in line or "FATAL" in line) and "egress_" in line
    ]
    assert problems == []


# -- a real Squid with it ----------------------------------------------------------------------


@pytest.fixture(scope="module", params=["http", "https"])
def squid(request: pytest.FixtureRequest, fake_origin: FakeOrigin) -> Iterator[FragmentSquid]:
    fragment = render(SETTINGS[request.param], RenderOptions()).text
    proxy = FragmentSquid(fragment, fake_origin, request.param, names=NAMES).start()
    try:
        yield proxy
    finally:
        proxy.close()


def client(squid: FragmentSquid, context: ssl.SSLContext) -> httpx.Client:
    return httpx.Client(
        proxy=f"http://{LOOPBACK}:{squid.port}", verify=context, trust_env=False, timeout=10
    )


def in_allowlist(settings_name: str, host: str) -> bool:
    """What the router says, with features as the fragment was rendered."""
    decision = SETTINGS[settings_name].router().decide(f"https://{host}/")
    return decision.route == "proxy"


@pytest.mark.parametrize(
    ("host", "allowed_via"),
    [
        pytest.param("auth.carto.com", {"http", "https"}, id="core-exact"),
        pytest.param("bigquery.googleapis.com", {"http", "https"}, id="bigquery"),
        pytest.param("registry.self-hosted.carto.com", {"http", "https"}, id="core-wildcard"),
        pytest.param("api.tomtom.com", {"http"}, id="feature-in-scope-only-for-http"),
        pytest.param("acme.snowflakecomputing.com", {"http"}, id="snowflake-direct-with-https"),
        pytest.param("blocked.example-evil.test", set(), id="off-list"),
        pytest.param("evil.carto.com", set(), id="lookalike-subdomain"),
        pytest.param("notsnowflakecomputing.com", set(), id="lookalike-label"),
        pytest.param("bigquery.googleapis.com.evil.test", set(), id="lookalike-suffix"),
    ],
)
def test_connect_allowed_or_denied(
    squid: FragmentSquid,
    fake_origin: FakeOrigin,
    tls: tuple[Path, Path, ssl.SSLContext],
    host: str,
    allowed_via: set[str],
) -> None:
    name = squid.settings_name
    url = f"https://{host}:{fake_origin.https_port}/hello"
    allowed = name in allowed_via
    with client(squid, tls[2]) as http:
        if allowed:
            assert in_allowlist(name, host)
            response = http.get(url)
            assert response.status_code == 200
            assert response.json()["sni"] == host
        else:
            with pytest.raises(httpx.ProxyError, match="403"):
                http.get(url)
    # Squid logs a CONNECT when the tunnel closes: after the client is closed
    line = squid.wait_for_log(f"{host}:{fake_origin.https_port}")
    expected = "TCP_TUNNEL/200" if allowed else "TCP_DENIED/403"
    assert (line.method, line.status) == ("CONNECT", expected)


def test_connect_to_a_port_off_the_catalog_is_denied(
    squid: FragmentSquid, fake_origin: FakeOrigin, tls: tuple[Path, Path, ssl.SSLContext]
) -> None:
    # auth.carto.com is allowed on 443 (here: the origin's TLS port) only
    other = free_port()
    with client(squid, tls[2]) as http, pytest.raises(httpx.ProxyError, match="403"):
        http.get(f"https://auth.carto.com:{other}/")
    line = squid.wait_for_log(f"auth.carto.com:{other}")
    assert line.status == "TCP_DENIED/403"


def test_each_destination_only_on_its_own_port(
    squid: FragmentSquid, tls: tuple[Path, Path, ssl.SSLContext]
) -> None:
    # the spare port passes the CONNECT port check, but auth.carto.com is listed for 443 only
    with client(squid, tls[2]) as http, pytest.raises(httpx.ProxyError, match="403"):
        http.get(f"https://auth.carto.com:{squid.spare_port}/")
    line = squid.wait_for_log(f"auth.carto.com:{squid.spare_port}")
    assert line.status == "TCP_DENIED/403"


def test_plain_http_destination_on_port_80(
    squid: FragmentSquid, fake_origin: FakeOrigin, tls: tuple[Path, Path, ssl.SSLContext]
) -> None:
    # the Snowflake driver's OCSP host is plain HTTP on port 80 (here: the origin's HTTP port)
    with client(squid, tls[2]) as http:
        response = http.get(f"http://{OCSP}:{fake_origin.http_port}/ocsp")
        assert response.status_code == 200
        assert response.json()["via"]  # it really went through Squid
        denied = http.get(f"http://blocked.example-evil.test:{fake_origin.http_port}/")
        assert denied.status_code == 403
        # and a CONNECT to the plain-HTTP port is refused even for a listed host
        with pytest.raises(httpx.ProxyError, match="403"):
            http.get(f"https://{OCSP}:{fake_origin.http_port}/")


# -- the fragment itself -----------------------------------------------------------------------


def test_bypass_section_lists_direct_routes_and_why() -> None:
    text = render(SETTINGS["https"], RenderOptions()).text
    bypass = text.split("what bypasses the proxy", 1)[1]
    assert "*.snowflakecomputing.com:443  [warehouse:snowflake]" in bypass
    assert "[auto:svc-cluster-domain]" in bypass
    assert "*.cloud.databricks.com:443  [warehouse:databricks]" in bypass
    assert all(line.startswith("#") for line in bypass.splitlines()[1:] if line)


@pytest.mark.parametrize(
    ("name", "needle", "present"),
    [
        pytest.param("http", "dstdomain -n .snowflakecomputing.com", True, id="snowflake-http"),
        pytest.param("https", "dstdomain -n .snowflakecomputing.com", False, id="snowflake-https"),
        pytest.param("tunnel", "dstdomain -n .redshift.amazonaws.com", True, id="redshift-tunnel"),
        pytest.param("tunnel", "acl egress_SSL_ports port 443 5432 5439", True, id="tcp-ports"),
        pytest.param(
            "tunnel",
            "http_access allow egress_clients egress_dst_5432 egress_port_5432",
            True,
            id="any-host-port-ready-for-your-hosts",
        ),
        pytest.param("http", "dstdomain -n .redshift.amazonaws.com", False, id="redshift-direct"),
        pytest.param(
            "excluded-googleapis", "dstdomain -n www.googleapis.com", False, id="excluded-direct"
        ),
        pytest.param("every-feature", "dstdomain -n .amazonaws.com", True, id="aws-s3"),
        pytest.param("bigquery-only", "snowflakecomputing", False, id="warehouse-out-of-scope"),
        pytest.param("switched-off", "dstdomain -n auth.carto.com", True, id="switched-off"),
    ],
)
def test_fragment_follows_the_router(name: str, needle: str, present: bool) -> None:
    text = render(SETTINGS[name], RenderOptions()).text
    rules = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    assert (needle in rules) is present


def test_warnings_say_what_the_fragment_assumes() -> None:
    off = render(SETTINGS["switched-off"], RenderOptions())
    assert any("switched off" in w for w in off.warnings)
    none = render(SETTINGS["no-proxy"], RenderOptions())
    assert any("no proxy is configured" in w for w in none.warnings)
    tunnel = render(SETTINGS["tunnel"], RenderOptions())
    assert any("*:5432" in w for w in tunnel.warnings)


def test_features_override() -> None:
    text = render(SETTINGS["http"], RenderOptions(features=("core", "geocoding-mapbox"))).text
    assert "dstdomain -n api.mapbox.com" in text
    assert "api.tomtom.com" not in text
