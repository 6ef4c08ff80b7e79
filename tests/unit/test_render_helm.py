"""The seed chart fragment: it loads back into the same settings, and says what it cannot carry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from egress.render import RenderOptions
from egress.render.bypass import no_proxy_list
from egress.render.helm import render
from egress.settings import (
    ProxyURL,
    Settings,
    load_settings_from_mapping,
    settings_from_helm_mapping,
)

PEM = trustme.CA(organization_name="egress tests").cert_pem.bytes().decode()
PEM2 = trustme.CA(organization_name="egress tests 2").cert_pem.bytes().decode()


def make(raw: dict[str, Any]) -> Settings:
    return load_settings_from_mapping(raw, env={})


def helm(raw: dict[str, Any]) -> Settings:
    return settings_from_helm_mapping(raw, env={})


def round_trip(settings: Settings) -> tuple[dict[str, Any], Settings]:
    values = yaml.safe_load(render(settings, RenderOptions()).text)
    return values, settings_from_helm_mapping(values, env={})


URLS = [
    "https://auth.carto.com/",
    "http://auth.carto.com/",
    "https://api.corp.example/",
    "https://corp.example./",
    "https://notcorp.example/",
    "https://API.CORP.EXAMPLE/",
    "http://10.1.2.3/",
    "http://11.1.2.3/",
    "https://[2001:db8::5]/",
    "https://[2001:db9::5]/",
    "https://internal.example:8443/",
    "https://internal.example/",
    "https://localhost/",
    "http://127.0.0.1:8080/",
    "https://[::1]/",
    "https://kubernetes.default.svc/",
    "https://api.ns.svc.cluster.local/",
    "https://api.ns.svc.k8s.internal/",
    "https://10.96.0.1/",
    "https://172.20.0.1/",
    "http://169.254.169.254/computeMetadata/v1/",
    "http://metadata/",
    "http://metadata.google.internal/",
    "https://acme.snowflakecomputing.com/",
    "http://acme.snowflakecomputing.com/",
    "https://dbc-1.cloud.databricks.com/",
    "https://bigquery.googleapis.com/",
    "redshift://acme.abc.us-east-1.redshift.amazonaws.com/",
    "postgresql://db.example.com/app",
    "wss://events.example.com/",
]

EXCLUDED = [".corp.example", "10.0.0.0/8", "2001:db8::/32", "internal.example:8443"]

CASES: dict[str, Settings] = {
    "http": make(
        {"proxy": {"url": "http://proxy.corp:3128"}, "excluded_domains": ["localhost", *EXCLUDED]}
    ),
    "https": make({"proxy": {"url": "https://proxy.corp:3129"}, "excluded_domains": EXCLUDED}),
    "https-no-snowflake": make(
        {"proxy": {"url": "https://proxy.corp:3129"}, "warehouses": ["bigquery"]}
    ),
    "disabled": make({"proxy": {"enabled": False, "url": "http://proxy.corp:3128"}}),
    "nothing-configured": make({"excluded_domains": [".corp.example"]}),
    "verify-off": make({"proxy": {"url": "https://proxy.corp:3129", "verify": False}}),
    "gke": make(
        {
            "proxy": {"url": "http://proxy.corp:3128"},
            "deployment": {"gke_workload_identity": True, "service_ip": "10.96.0.1"},
        }
    ),
    "custom-cluster-domain": make(
        {
            "proxy": {"url": "http://proxy.corp:3128"},
            "deployment": {"cluster_domain": "k8s.internal", "service_ip": "172.20.0.1"},
        }
    ),
    "ipv6-proxy": make({"proxy": {"url": "http://[fd00::5]:3128"}}),
    "implicit-port": make({"proxy": {"url": "https://proxy.corp"}}),
    "helm-ca-inline": helm(
        {
            "externalProxy": {
                "enabled": True,
                "connectionString": "https://proxy.corp:3129",
                "sslCA": PEM2,
            },
            "trustedCACerts": {"value": PEM},
            "clusterDomain": "cluster.example",
        }
    ),
    "helm-ca-configmap": helm(
        {
            "externalProxy": {"enabled": True, "host": "proxy.corp", "port": 3128, "type": "http"},
            "trustedCACerts": {"existingConfigmap": {"name": "corp-ca", "key": "ca_0.crt"}},
        }
    ),
}


def chart_url(url: ProxyURL | None) -> tuple[str, str, int] | None:
    return None if url is None else (url.scheme, url.host, url.port)


def pem_blocks(text: str | None) -> list[str]:
    return [] if not text else [b.strip() for b in text.split("-----END CERTIFICATE-----") if b]


@pytest.mark.parametrize("name", list(CASES))
def test_round_trip_keeps_every_field_the_chart_has(name: str, tmp_path: Path) -> None:
    original = CASES[name]
    _, back = round_trip(original)
    assert back.proxy.enabled == original.proxy.enabled
    assert chart_url(back.proxy.http_proxy) == chart_url(original.proxy.http_proxy)
    assert chart_url(back.proxy.https_proxy) == chart_url(original.proxy.https_proxy)
    assert back.proxy.verify == original.proxy.verify
    assert pem_blocks(back.proxy.ca_pem) == pem_blocks(original.proxy.ca_pem)
    assert back.proxy.ca_configmap == original.proxy.ca_configmap
    assert back.deployment.cluster_domain == original.deployment.cluster_domain


# What the shared NO_PROXY speller leaves out, with a warning naming it: an IPv6 range (httpx
# refuses every request while NO_PROXY holds one).
KNOWN_GAPS = {("http", "https://[2001:db8::5]/"), ("https", "https://[2001:db8::5]/")}


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("name", list(CASES))
def test_round_trip_routes_every_url_the_same_way(name: str, url: str) -> None:
    original = CASES[name]
    _, back = round_trip(original)
    # the effective proxy (scheme, host, port): the fragment always writes the port, because
    # the chart's template renders an empty port as ":0"
    want = original.router().decide(url)
    got = back.router().decide(url)
    if (name, url) in KNOWN_GAPS:
        assert (want.route, got.route) == ("direct", "proxy")
        warnings = render(original, RenderOptions()).warnings
        assert any(f"NO_PROXY leaves out {want.rule.split(':', 1)[1]}" in w for w in warnings)
        return
    assert (got.route, chart_url(got.proxy_url)) == (want.route, chart_url(want.proxy_url)), (
        f"{want.rule} -> {got.rule}"
    )
    # the switched-on settings route the same too (what the admin console turns on)
    want_on = original.with_enabled(True).router().decide(url)
    got_on = back.with_enabled(True).router().decide(url)
    assert (got_on.route, chart_url(got_on.proxy_url)) == (
        want_on.route,
        chart_url(want_on.proxy_url),
    )


def test_ca_file_becomes_trusted_ca_value(tmp_path: Path) -> None:
    ca = tmp_path / "corp-ca.pem"
    ca.write_text(PEM)
    settings = make({"proxy": {"url": "https://proxy.corp:3129", "ca_file": str(ca)}})
    values, back = round_trip(settings)
    assert values["trustedCACerts"]["value"].strip() == PEM.strip()
    assert pem_blocks(back.proxy.ca_pem) == pem_blocks(PEM)


def both(*domains: str) -> list[str]:
    """A domain as the shared speller writes it: bare and with a leading dot."""
    return [form for d in domains for form in (d, "." + d)]


LOOPBACK = ["localhost", ".localhost", "127.0.0.1", "127.0.0.0/8", "::1"]
SVC = both("svc", "svc.cluster.local")
DIRECT_WAREHOUSES = both(
    "redshift.amazonaws.com",
    "redshift-serverless.amazonaws.com",
    "cloud.databricks.com",
    "azuredatabricks.net",
    "gcp.databricks.com",
)
MINE = [*both("corp.example"), "10.0.0.0/8", *both("internal.example:8443")]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param(
            "https",
            [*LOOPBACK, *SVC, *MINE, *both("snowflakecomputing.com"), *DIRECT_WAREHOUSES],
            id="https-adds-snowflake",
        ),
        pytest.param(
            "https-no-snowflake",
            [*LOOPBACK, *SVC, *both("snowflakecomputing.com"), *DIRECT_WAREHOUSES],
            id="snowflake-follows-the-router-not-the-warehouses-list",
        ),
        pytest.param(
            "http", [*LOOPBACK, *SVC, *MINE, *DIRECT_WAREHOUSES], id="http-no-duplicate"
        ),
        pytest.param(
            "gke",
            [*LOOPBACK, *SVC, "10.96.0.1", "169.254.169.254", *both("metadata"),
             *both("metadata.google.internal"), *DIRECT_WAREHOUSES],
            id="gke-and-service-ip",
        ),
        pytest.param(
            "custom-cluster-domain",
            [*LOOPBACK, *both("svc", "svc.k8s.internal"), "172.20.0.1", *DIRECT_WAREHOUSES],
            id="cluster-domain",
        ),
    ],
)  # fmt: skip
def test_excluded_domains_are_the_shared_no_proxy_list(name: str, expected: list[str]) -> None:
    """The old fragment lacked 127.0.0.1 (Node reads no CIDR), the warehouses the router sends
    direct (Databricks, Redshift's domains) and Snowflake when `warehouses` did not list it."""
    values, _ = round_trip(CASES[name])
    assert values["externalProxy"]["excludedDomains"] == expected
    assert expected == list(no_proxy_list(CASES[name]).tokens)


def test_automatic_entries_are_marked_in_comments() -> None:
    text = render(CASES["gke"], RenderOptions()).text
    assert "# automatic (auto:svc-cluster-domain)" in text
    assert "# automatic (auto:gke-metadata)" in text
    assert "# automatic (auto:kubernetes-api)" in text
    https = render(CASES["https"], RenderOptions()).text
    assert "# automatic (warehouse:snowflake)" in https
    assert "# from excluded_domains (yours)" in https
    assert text.startswith("# customizations.yaml fragment")


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        pytest.param(
            "http", {"host": "proxy.corp", "port": 3128, "type": "http"}, id="host-port-type"
        ),
        pytest.param(
            "implicit-port",
            {"host": "proxy.corp", "port": 443, "type": "https"},
            id="port-always-written",
        ),
        pytest.param("ipv6-proxy", {"connectionString": "http://[fd00::5]:3128"}, id="ipv6"),
        pytest.param("nothing-configured", {}, id="no-proxy"),
    ],
)
def test_proxy_shape(name: str, shape: dict[str, Any]) -> None:
    values, _ = round_trip(CASES[name])
    xp = values["externalProxy"]
    keys = ("host", "port", "type", "connectionString")
    assert {k: xp[k] for k in keys if k in xp} == shape


def test_verify_maps_to_ssl_reject_unauthorized() -> None:
    values, _ = round_trip(CASES["verify-off"])
    assert values["externalProxy"]["sslRejectUnauthorized"] is False
    art = render(CASES["verify-off"], RenderOptions())
    assert any("NODE_TLS_REJECT_UNAUTHORIZED=0" in w for w in art.warnings)
    values, _ = round_trip(CASES["https"])
    assert values["externalProxy"]["sslRejectUnauthorized"] is True


def test_what_the_chart_cannot_express_is_a_warning(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("hunter2-secret\n")
    settings = make(
        {
            "proxy": {
                "url": "http://proxy.corp:3128",
                "https_url": "https://tls-proxy.corp:3129",
                "username": "alice",
                "password_file": str(secret),
            },
            "tunnel_tcp_warehouses": True,
            "resolve": {"db.corp.example": "10.1.2.3"},
            "deployment": {"kind": "single-vm"},
        }
    )
    art = render(settings, RenderOptions())
    text = "\n".join(art.warnings)
    for needle in (
        "proxy.username",
        "proxy.https_url",
        "tunnel_tcp_warehouses",
        "resolve (db.corp.example)",
        "single-vm",
    ):
        assert needle in text, needle
    assert "hunter2" not in art.text and "hunter2" not in text
    assert "alice" not in art.text
    values = yaml.safe_load(art.text)
    # one proxy for every scheme: the https one
    assert values["externalProxy"]["host"] == "tls-proxy.corp"


def test_configmap_ignored_next_to_inline_value_is_a_warning() -> None:
    settings = helm(
        {
            "externalProxy": {"enabled": True, "connectionString": "http://p:3128"},
            "trustedCACerts": {"value": PEM, "existingConfigmap": {"name": "corp-ca"}},
        }
    )
    art = render(settings, RenderOptions())
    assert any("existingConfigmap (corp-ca) is ignored" in w for w in art.warnings)
    values = yaml.safe_load(art.text)
    assert values["trustedCACerts"]["existingConfigmap"] == {"name": "corp-ca", "key": "ca.crt"}


def test_plain_settings_have_only_the_no_proxy_notes() -> None:
    """The runtimes that read the chart's NO_PROXY hear what env's readers hear, nothing more."""
    settings = make(
        {"proxy": {"url": "http://proxy.corp:3128"}, "deployment": {"service_ip": "10.96.0.1"}}
    )
    assert render(settings, RenderOptions()).warnings == no_proxy_list(settings).warnings
