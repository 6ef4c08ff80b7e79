"""The PAC file, evaluated by a real JavaScript engine (Node.js), answers as the router decides.

``tests/support/node_worker.js`` defines the PAC runtime functions the way browsers do
(``dnsDomainIs`` as Mozilla's and Chromium's suffix test, ``isInNet`` pure and only for IPv4
literals) and makes every DNS function throw, so a PAC file that would look a name up fails the
test instead.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from tests.support.runtimes import NodeWorker

from egress.render import RenderOptions
from egress.render.pac import render
from egress.router import Decision
from egress.settings import Settings, load_settings_from_mapping


def make(raw: dict[str, Any], env: dict[str, str] | None = None) -> Settings:
    return load_settings_from_mapping(raw, env=env or {})


EXCLUDED = [
    ".corp.example",
    "10.0.0.0/8",
    "192.168.0.0/16",
    "2001:db8::/32",
    "fe80::/10",
    "bücher.example",
    "172.16.5.4",
    "[2001:db9::7]",
    "git.other.example:8443",
    "172.20.30.40:8080",
]

SETTINGS: dict[str, Settings] = {
    "http": make(
        {
            "proxy": {"url": "http://proxy.corp:3128"},
            "excluded_domains": EXCLUDED,
            "deployment": {"service_ip": "10.96.0.1", "gke_workload_identity": True},
        }
    ),
    "https": make(
        {
            "proxy": {"url": "https://proxy.corp:3129"},
            "excluded_domains": EXCLUDED,
            "deployment": {"cluster_domain": "k8s.internal", "service_ip": "fd00:10:96::1"},
        }
    ),
    "split": make(
        {
            "proxy": {"url": "http://p1.corp:3128", "https_url": "https://p2.corp:3129"},
            "excluded_domains": [".corp.example", "10.0.0.0/8"],
        }
    ),
    "tunnel": make(
        {
            "proxy": {"url": "http://proxy.corp:3128"},
            "tunnel_tcp_warehouses": True,
            "deployment": {"kind": "single-vm"},
        }
    ),
    "ipv6-proxy": make({"proxy": {"url": "http://[fd00::5]:3128"}}),
    # only an https proxy, as load_environment builds from HTTPS_PROXY: http:// URLs go direct
    "https-only": make({"proxy": {"enabled": True, "https_url": "https://proxy.corp:3129"}}),
    "off": make({"proxy": {"enabled": False, "url": "http://proxy.corp:3128"}}),
    "all": make({"proxy": {"url": "http://proxy.corp:3128"}, "excluded_domains": ["*"]}),
}

URLS: list[tuple[str, str]] = [
    # names: exact, subdomain, lookalikes, case, trailing dot, schemes
    ("auth", "https://auth.carto.com/"),
    ("auth-plain", "http://auth.carto.com/"),
    ("auth-port", "https://auth.carto.com:8443/x"),
    ("ws", "ws://events.example.com/socket"),
    ("wss", "wss://events.example.com/socket"),
    ("ftp", "ftp://files.example.com/"),
    ("plain-name", "http://intranet/"),
    ("excluded-exact", "https://corp.example/"),
    ("excluded-sub", "https://api.corp.example/"),
    ("excluded-deep", "http://a.b.c.corp.example/"),
    ("lookalike-prefix", "https://notcorp.example/"),
    ("lookalike-suffix", "https://corp.example.evil.com/"),
    ("mixed-case", "https://API.Corp.EXAMPLE/"),
    ("trailing-dot", "https://api.corp.example./"),
    ("mixed-case-dot", "http://Corp.Example./"),
    ("idn-alabel", "https://xn--bcher-kva.example/"),
    ("idn-sub", "https://www.xn--bcher-kva.example/"),
    ("digits-name", "https://1.2.3.4.example.com/"),
    # loopback
    ("localhost", "https://localhost/"),
    ("localhost-upper-dot", "http://LOCALHOST./"),
    ("localhost-sub", "https://app.localhost/"),
    ("localhost-lookalike", "https://localhost.evil.com/"),
    ("v4-loopback", "https://127.0.0.1/"),
    ("v4-loopback-other", "http://127.8.9.10:8080/"),
    ("v6-loopback", "https://[::1]/"),
    ("v6-loopback-long", "https://[0:0:0:0:0:0:0:1]/"),
    ("v6-loopback-port", "http://[::1]:8080/"),
    ("v6-not-loopback", "https://[::2]/"),
    ("mapped-loopback", "https://[::ffff:127.0.0.1]/"),
    # IPv4 in and out of CIDRs and single IPs
    ("v4-in-cidr", "https://10.1.2.3/"),
    ("v4-cidr-low", "https://10.0.0.0/"),
    ("v4-cidr-high", "https://10.255.255.255/"),
    ("v4-below-cidr", "https://9.255.255.255/"),
    ("v4-above-cidr", "https://11.0.0.0/"),
    ("v4-in-16", "http://192.168.1.5/"),
    ("v4-out-16", "http://192.169.0.1/"),
    ("v4-single", "https://172.16.5.4/"),
    ("v4-single-next", "https://172.16.5.5/"),
    ("v4-zero", "https://0.0.0.0/"),
    ("v4-broadcast", "https://255.255.255.255/"),
    ("v4-trailing-dot", "https://10.1.2.3./"),
    ("mapped-in-cidr", "https://[::ffff:10.1.2.3]/"),
    ("mapped-hex", "https://[::ffff:a01:203]/"),
    ("mapped-out", "https://[::ffff:11.1.2.3]/"),
    # IPv6
    ("v6-in-cidr", "https://[2001:db8::1]/"),
    ("v6-in-cidr-upper", "https://[2001:DB8:0:0::ABCD]/"),
    ("v6-cidr-edge", "https://[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]/"),
    ("v6-out-cidr", "https://[2001:db9::1]/"),
    ("v6-single", "https://[2001:db9::7]/"),
    ("v6-link-local", "https://[fe80::1]/"),
    ("v6-link-local-edge", "https://[febf::1]/"),
    ("v6-link-local-out", "https://[fec0::1]/"),
    ("v6-zone", "https://[fe80::1%25eth0]/"),
    ("v6-service-ip", "https://[fd00:10:96::1]/"),
    ("v6-other", "https://[fd00:10:96::2]/"),
    # Kubernetes
    ("svc", "https://kubernetes.default.svc/"),
    ("svc-cluster-local", "http://api.platform.svc.cluster.local:8080/"),
    ("svc-custom-domain", "http://api.platform.svc.k8s.internal/"),
    ("svc-lookalike", "https://svc.cluster.local.evil.com/"),
    ("svc-upper", "https://API.Platform.SVC/"),
    ("service-ip", "https://10.96.0.1/"),
    ("service-ip-next", "https://10.96.0.2/"),
    # GKE metadata
    ("metadata-ip", "http://169.254.169.254/computeMetadata/v1/"),
    ("metadata-name", "http://metadata/computeMetadata/v1/"),
    ("metadata-fqdn", "http://metadata.google.internal/computeMetadata/v1/"),
    ("metadata-lookalike", "http://metadata.google.internal.evil.com/"),
    # warehouses
    ("snowflake", "https://acme.snowflakecomputing.com/"),
    ("snowflake-plain", "http://acme.snowflakecomputing.com/"),
    ("snowflake-apex", "https://snowflakecomputing.com/"),
    ("snowflake-case-dot", "https://ACME.SnowflakeComputing.com./"),
    ("snowflake-lookalike", "https://notsnowflakecomputing.com/"),
    ("databricks-aws", "https://dbc-1234.cloud.databricks.com/"),
    ("databricks-azure", "https://adb-1.azuredatabricks.net/"),
    ("databricks-gcp", "https://x.gcp.databricks.com/"),
    ("bigquery", "https://bigquery.googleapis.com/bigquery/v2/projects"),
    ("bigquery-plain", "http://bigquery.googleapis.com/"),
    ("bigquery-storage", "https://bigquerystorage.googleapis.com/"),
    ("redshift", "https://acme.abc.us-east-1.redshift.amazonaws.com:5439/"),
    ("redshift-serverless", "http://wg.1.us-east-1.redshift-serverless.amazonaws.com/"),
    ("s3", "https://acme-bucket.s3.amazonaws.com/"),
]

#: URLs kept out of the comparison, and why. Each is still checked: the PAC sends it to the
#: proxy while the router sends it direct, exactly the documented gap.
PORT_CASES: list[tuple[str, str, str]] = [
    (
        "port-entry-name",
        "https://git.other.example:8443/",
        "git.other.example:8443 covers port 8443 only, and a PAC rule is chosen by host",
    ),
    (
        "port-entry-ip",
        "http://172.20.30.40:8080/",
        "172.20.30.40:8080 covers port 8080 only, and a PAC rule is chosen by host",
    ),
]


def browser_host(url: str) -> str:
    """The ``host`` a browser passes: no userinfo, no port, no brackets; case kept."""
    netloc = urlsplit(url).netloc.rpartition("@")[2]
    if netloc.startswith("["):
        return netloc[1 : netloc.index("]")]
    return netloc.rsplit(":", 1)[0] if ":" in netloc else netloc


def expected(decision: Decision) -> str:
    if decision.route == "direct" or decision.proxy_url is None:
        return "DIRECT"
    p = decision.proxy_url
    host = f"[{p.host}]" if ":" in p.host else p.host
    return f"{'HTTPS' if p.scheme == 'https' else 'PROXY'} {host}:{p.port}"


@functools.cache
def pac_text(name: str) -> str:
    return render(SETTINGS[name], RenderOptions()).text


@pytest.fixture(scope="module")
def node() -> Iterator[NodeWorker]:
    with NodeWorker() as worker:
        yield worker


@functools.cache
def node_answers(name: str, worker: NodeWorker) -> dict[str, str]:
    urls = [url for _, url in URLS] + [url for _, url, _ in PORT_CASES]
    answers = worker.pac(pac_text(name), [(url, browser_host(url)) for url in urls])
    return dict(zip(urls, answers, strict=True))


@pytest.mark.parametrize("url", [pytest.param(url, id=uid) for uid, url in URLS])
@pytest.mark.parametrize("name", list(SETTINGS))
def test_pac_answers_like_the_router(name: str, url: str, node: NodeWorker) -> None:
    settings = SETTINGS[name]
    decision = settings.router().decide(url)
    got = node_answers(name, node)[url]
    assert got == expected(decision), f"{url}: router {decision.rule}: {decision.reason}"


@pytest.mark.parametrize(
    ("url", "reason"), [pytest.param(url, why, id=uid) for uid, url, why in PORT_CASES]
)
def test_port_entries_are_the_documented_gap(url: str, reason: str, node: NodeWorker) -> None:
    settings = SETTINGS["http"]
    decision = settings.router().decide(url)
    assert decision.route == "direct", reason
    assert node_answers("http", node)[url] == "PROXY proxy.corp:3128", reason


def test_table_covers_every_route_and_rule_kind() -> None:
    rules = {
        settings.router().decide(url).rule.split(":")[0]
        for settings in SETTINGS.values()
        for _, url in URLS
    }
    assert rules >= {"auto", "excluded", "warehouse", "default", "proxy-disabled"}
    assert len(URLS) >= 50
    routes = {SETTINGS["tunnel"].router().decide(url).route for _, url in URLS}
    assert routes == {"proxy", "direct", "tunnel"}


def test_port_entries_are_named_in_a_warning_and_a_comment() -> None:
    art = render(SETTINGS["http"], RenderOptions())
    (warning,) = [w for w in art.warnings if "port" in w]
    assert "git.other.example:8443" in warning and "172.20.30.40:8080" in warning
    assert "// Not expressible here (entries with a port): git.other.example:8443" in art.text
    assert (
        "git.other.example"
        not in art.text.split("function FindProxyForURL")[1]
        .split("// Not expressible")[1]
        .split("\n", 1)[1]
    )


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        pytest.param("off", "switched off", id="switched-off"),
        pytest.param("all", None, id="star"),
    ],
)
def test_everything_direct_is_one_return(name: str, needle: str | None) -> None:
    art = render(SETTINGS[name], RenderOptions())
    body = art.text.split("function FindProxyForURL(url, host) {")[1]
    assert body.strip().startswith('return "DIRECT";')
    if needle:
        assert any(needle in w for w in art.warnings)


def test_names_are_never_resolved() -> None:
    text = pac_text("http")
    for forbidden in ("dnsResolve", "isResolvable", "myIpAddress", "isInNetEx"):
        assert forbidden not in text
    # every isInNet call takes the v4 variable, which only ever holds an IPv4 literal
    calls = [line for line in text.splitlines() if "isInNet(" in line]
    assert calls and all("isInNet(v4, " in line for line in calls)


def test_proxy_with_auth_says_browsers_ask(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    settings = make(
        {
            "proxy": {
                "url": "http://proxy.corp:3128",
                "username": "alice",
                "password_file": str(secret),
            }
        }
    )
    text = render(settings, RenderOptions()).text
    assert "browsers ask for it" in text
    assert "s3cret" not in text and "alice" not in text


def test_example_renders(tmp_path: Path) -> None:
    example = Path(__file__).parents[2] / "examples" / "egress.yaml"
    settings = make(yaml.safe_load(example.read_text()))
    text = render(settings, RenderOptions()).text
    assert "function FindProxyForURL(url, host)" in text
    assert '"HTTPS proxy.corp.example:3129"' in text
