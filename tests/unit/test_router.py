"""The router: seed behaviours S3-S7 and S9-S12, rule ids, reasons, URL parsing."""

from __future__ import annotations

from typing import Any

import pytest

from egress import Settings, URLError
from egress.router import parse_target
from egress.settings import load_settings_from_mapping

NO_ENV: dict[str, str] = {}


def make(raw: dict[str, Any], env: dict[str, str] | None = None) -> Settings:
    return load_settings_from_mapping(raw, env=NO_ENV if env is None else env)


HTTP = make(
    {
        "proxy": {"enabled": True, "url": "http://proxy.corp:3128"},
        "excluded_domains": [
            "localhost",
            ".svc.cluster.local",
            "git.corp.example",
            "10.0.0.0/8",
            "internal.example:8443",
        ],
        "deployment": {
            "service_ip": "10.96.0.1",
            "gke_workload_identity": True,
            "cluster_domain": "cluster.local",
        },
    }
)
HTTPS = make(
    {
        "proxy": {"enabled": True, "url": "https://proxy.corp:3129"},
        "deployment": {"cluster_domain": "k8s.internal"},
    },
    env={"KUBERNETES_SERVICE_HOST": "172.20.0.1"},
)
OFF = make({"proxy": {"enabled": False, "url": "http://proxy.corp:3128"}})


@pytest.mark.parametrize(
    ("settings", "url", "warehouse", "route", "rule"),
    [
        # S1/S2: everything else goes through the configured proxy
        pytest.param(HTTP, "https://auth.carto.com/", None, "proxy", "default", id="S1-https"),
        pytest.param(HTTP, "http://example.com/", None, "proxy", "default", id="S1-http"),
        pytest.param(HTTPS, "https://auth.carto.com/", None, "proxy", "default", id="S2"),
        pytest.param(HTTP, "wss://events.example.com/", None, "proxy", "default", id="wss"),
        # S3: the operator's no-proxy list
        pytest.param(
            HTTP,
            "https://git.corp.example/x",
            None,
            "direct",
            "excluded:git.corp.example",
            id="S3-domain",
        ),
        pytest.param(
            HTTP,
            "https://a.git.corp.example/x",
            None,
            "direct",
            "excluded:git.corp.example",
            id="S3-subdomain",
        ),
        pytest.param(
            HTTP, "https://notgit.corp.example/", None, "proxy", "default", id="S3-label-boundary"
        ),
        pytest.param(HTTP, "http://10.1.2.3/", None, "direct", "excluded:10.0.0.0/8", id="S3-cidr"),
        pytest.param(
            HTTP,
            "https://internal.example:8443/",
            None,
            "direct",
            "excluded:internal.example:8443",
            id="S3-port",
        ),
        pytest.param(
            HTTP, "https://internal.example/", None, "proxy", "default", id="S3-other-port"
        ),
        # S4: cluster-internal names, with the operator's cluster domain
        pytest.param(
            HTTP,
            "http://api.carto.svc.cluster.local:8080/",
            None,
            "direct",
            "auto:svc-cluster-domain",
            id="S4",
        ),
        pytest.param(
            HTTPS,
            "http://api.carto.svc.k8s.internal/",
            None,
            "direct",
            "auto:svc-cluster-domain",
            id="S4-custom-domain",
        ),
        pytest.param(
            HTTPS,
            "http://api.carto.svc.cluster.local/",
            None,
            "proxy",
            "default",
            id="S4-other-domain-not-excluded",
        ),
        pytest.param(HTTP, "http://api.carto.svc/", None, "direct", "auto:svc", id="S4-svc"),
        pytest.param(
            HTTP, "http://localhost:8080/", None, "direct", "auto:loopback", id="loopback-name"
        ),
        pytest.param(HTTP, "http://127.0.0.5/", None, "direct", "auto:loopback", id="loopback-v4"),
        pytest.param(HTTP, "http://[::1]:8080/", None, "direct", "auto:loopback", id="loopback-v6"),
        # S5: the kubernetes API Service IP
        pytest.param(
            HTTP, "https://10.96.0.1/api", None, "direct", "auto:kubernetes-api", id="S5-settings"
        ),
        pytest.param(
            HTTPS, "https://172.20.0.1:443/api", None, "direct", "auto:kubernetes-api", id="S5-env"
        ),
        # S6: switched off, everything direct
        pytest.param(OFF, "https://auth.carto.com/", None, "direct", "proxy-disabled", id="S6"),
        # S7: GKE metadata server
        pytest.param(
            HTTP,
            "http://169.254.169.254/computeMetadata/v1/",
            None,
            "direct",
            "auto:gke-metadata",
            id="S7-ip",
        ),
        pytest.param(
            HTTP,
            "http://metadata.google.internal/",
            None,
            "direct",
            "auto:gke-metadata",
            id="S7-name",
        ),
        pytest.param(HTTP, "http://metadata/", None, "direct", "auto:gke-metadata", id="S7-short"),
        pytest.param(
            HTTPS,
            "http://metadata.google.internal/",
            None,
            "proxy",
            "default",
            id="S7-off-without-workload-identity",
        ),
        # S9: BigQuery through both kinds of proxy
        pytest.param(
            HTTP,
            "https://bigquery.googleapis.com/",
            None,
            "proxy",
            "warehouse:bigquery",
            id="S9-http",
        ),
        pytest.param(
            HTTPS,
            "https://bigquery.googleapis.com/",
            None,
            "proxy",
            "warehouse:bigquery",
            id="S9-https",
        ),
        # S10: PostgreSQL and Redshift are TCP: direct
        pytest.param(
            HTTP,
            "postgresql://db.example.com/app",
            None,
            "direct",
            "warehouse:postgres",
            id="S10-postgres-scheme",
        ),
        pytest.param(
            HTTP,
            "https://db.example.com:5432/",
            "postgres",
            "direct",
            "warehouse:postgres",
            id="S10-postgres-named",
        ),
        pytest.param(
            HTTPS,
            "redshift://c1.abc.eu-west-1.redshift.amazonaws.com:5439/dev",
            None,
            "direct",
            "warehouse:redshift",
            id="S10-redshift-scheme",
        ),
        pytest.param(
            HTTPS,
            "https://c1.abc.eu-west-1.redshift.amazonaws.com:5439/",
            None,
            "direct",
            "warehouse:redshift",
            id="S10-redshift-domain",
        ),
        # S11: Databricks direct
        pytest.param(
            HTTP,
            "https://dbc-1.cloud.databricks.com/",
            None,
            "direct",
            "warehouse:databricks",
            id="S11-aws",
        ),
        pytest.param(
            HTTPS,
            "https://adb-1.azuredatabricks.net/",
            None,
            "direct",
            "warehouse:databricks",
            id="S11-azure",
        ),
        pytest.param(
            HTTP,
            "https://x.example.com/",
            "databricks",
            "direct",
            "warehouse:databricks",
            id="S11-named",
        ),
        # S12: Snowflake proxied via http://, direct via https://
        pytest.param(
            HTTP,
            "https://acme.snowflakecomputing.com/",
            None,
            "proxy",
            "warehouse:snowflake",
            id="S12-http-proxy",
        ),
        pytest.param(
            HTTPS,
            "https://acme.snowflakecomputing.com/",
            None,
            "direct",
            "warehouse:snowflake",
            id="S12-https-proxy",
        ),
        pytest.param(
            HTTPS,
            "https://acme.eu-west-1.snowflakecomputing.com/",
            None,
            "direct",
            "warehouse:snowflake",
            id="S12-region",
        ),
        pytest.param(
            HTTPS,
            "https://snowflakecomputing.com.evil.example/",
            None,
            "proxy",
            "default",
            id="S12-lookalike",
        ),
    ],
)
def test_decide(settings: Settings, url: str, warehouse: str | None, route: str, rule: str) -> None:
    d = settings.router().decide(url, warehouse=warehouse)
    assert (d.route, d.rule) == (route, rule), d.reason
    assert d.reason.endswith(".") and "\n" not in d.reason
    if route == "proxy":
        assert d.proxy is not None
    else:
        assert d.proxy is None


def test_excluded_beats_warehouse() -> None:
    s = make({"proxy": {"url": "http://p:3128"}, "excluded_domains": ".snowflakecomputing.com"})
    d = s.router().decide("https://acme.snowflakecomputing.com/")
    assert d.rule == "excluded:.snowflakecomputing.com"


def test_tunnel_tcp_warehouses() -> None:
    s = make({"proxy": {"url": "http://p:3128"}, "tunnel_tcp_warehouses": True})
    d = s.router().decide("postgresql://db.example.com/app")
    assert (d.route, d.proxy) == ("tunnel", "http://p:3128")


def test_proxy_per_scheme() -> None:
    s = make({"proxy": {"url": "http://a:3128", "https_url": "https://b:3129"}})
    r = s.router()
    assert r.decide("http://x.example/").proxy == "http://a:3128"
    assert r.decide("https://x.example/").proxy == "https://b:3129"
    # Snowflake follows the proxy it would use, the https one here
    assert r.decide("https://acme.snowflakecomputing.com/").route == "direct"


def test_no_proxy_for_scheme() -> None:
    from egress import load_environment

    s = load_environment({"https_proxy": "http://p:3128"})
    d = s.router().decide("http://plain.example/")
    assert (d.route, d.rule) == ("direct", "no-proxy-for-scheme")
    assert s.router().decide("https://plain.example/").route == "proxy"


def test_unknown_service_ip_is_said() -> None:
    s = make({"proxy": {"url": "http://p:3128"}})
    assert any(w.field == "deployment.service_ip" for w in s.warnings)
    assert not any(r.rule == "auto:kubernetes-api" for r in s.router().rules())


def test_rules_list_auto_first_with_source() -> None:
    rules = HTTP.router().rules()
    ids = [r.rule for r in rules]
    assert ids[:5] == [
        "auto:loopback",
        "auto:svc",
        "auto:svc-cluster-domain",
        "auto:kubernetes-api",
        "auto:gke-metadata",
    ]
    assert ids[-1] == "default"
    by_id = {r.rule: r for r in rules}
    assert by_id["auto:svc-cluster-domain"].source == "deployment.cluster_domain"
    assert by_id["auto:kubernetes-api"].entries == ("10.96.0.1",)


@pytest.mark.parametrize(
    ("url", "authority"),
    [
        ("https://Example.COM./", "example.com:443"),
        ("http://example.com/", "example.com:80"),
        ("ws://example.com/", "example.com:80"),
        ("wss://example.com:8443/", "example.com:8443"),
        ("postgresql://u:pw@db.example/x", "db.example:5432"),
        ("redshift://c.redshift.amazonaws.com/dev", "c.redshift.amazonaws.com:5439"),
        ("https://[2001:db8::1]:8443/", "[2001:db8::1]:8443"),
        ("https://user:secret@example.com/", "example.com:443"),
        ("example.com", "example.com:443"),
        ("https://bücher.example/", "xn--bcher-kva.example:443"),
    ],
)
def test_parse_target(url: str, authority: str) -> None:
    assert parse_target(url).authority == authority


@pytest.mark.parametrize(
    "url",
    [
        "",
        "https:///path",
        "https://exa mple.com/",
        "https://example.com\r\nX: y/",
        "http://a\tb/",
        "https://example.com:99999/",
        "file:///etc/passwd",
    ],
)
def test_unroutable_urls(url: str) -> None:
    with pytest.raises(URLError):
        HTTP.router().decide(url)


def test_unknown_warehouse_named() -> None:
    with pytest.raises(URLError, match="not known"):
        HTTP.router().decide("https://x.example/", warehouse="oracle")


def test_memo_changes_no_answer() -> None:
    router = HTTP.router()
    urls = [
        "https://git.corp.example/",
        "http://10.1.2.3/",
        "https://auth.carto.com/",
        "postgresql://db.example.com/app",
        "https://acme.snowflakecomputing.com/",
    ]
    for url in urls * 2:
        assert router.decide(url) == router.decide_uncached(url)
    assert router.decide("https://x.example/", warehouse="databricks").route == "direct"
    assert router.decide("https://x.example/").route == "proxy", "warehouse is part of the key"
