"""render env: variables per format and scenario, NO_PROXY agreement with the router, portable
spellings with their warnings, and the proxy password only ever in the Secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from egress.noproxy import NoProxyMatcher
from egress.render import RenderOptions
from egress.render.env import (
    CA_BUNDLE_PATH,
    CUSTOM_CA_PATH,
    dotenv_value,
    environment,
    no_proxy_list,
    render,
)
from egress.router import parse_target
from egress.settings import Settings, load_settings_from_mapping, settings_from_helm_mapping

NO_ENV: dict[str, str] = {}
PASSWORD = "p@ss:w/rd%#? ü"
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
K8S_VERSIONS = ("1.28", "1.30", kubernetes_validate.latest_version())


def make(raw: dict[str, Any]) -> Settings:
    return load_settings_from_mapping(raw, env=NO_ENV)


def parse_dotenv(text: str) -> dict[str, str]:
    """Read a dotenv the way docker compose v2 and systemd do (bare or single-quoted values)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not KEY=value: {line!r}"
        if value.startswith("'") and value.endswith("'") and len(value) >= 2:
            value = value[1:-1]
        out[key] = value
    return out


def dotenv(settings: Settings) -> dict[str, str]:
    return parse_dotenv(render(settings, RenderOptions()).text)


def kube(settings: Settings, fmt: str, **kw: Any) -> dict[str, Any]:
    doc = yaml.safe_load(render(settings, RenderOptions(format=fmt, **kw)).text)
    assert isinstance(doc, dict)
    return doc


def kube_env(settings: Settings, fmt: str) -> dict[str, str]:
    doc = kube(settings, fmt)
    data = doc["stringData" if fmt == "secret" else "data"]
    assert isinstance(data, dict)
    return {str(k): str(v) for k, v in data.items()}


def env_route(env: dict[str, str], url: str) -> str:
    """A runtime that follows egress's own NO_PROXY semantics and reads only the environment."""
    target = parse_target(url)
    scheme = {"ws": "http", "wss": "https"}.get(target.scheme, target.scheme)
    if not env.get(f"{scheme}_proxy"):
        return "direct"
    matcher = NoProxyMatcher.parse(env.get("no_proxy", ""))
    return "direct" if matcher.match(target.host, target.port) is not None else "proxy"


@pytest.fixture
def secret_file(tmp_path: Path) -> str:
    path = tmp_path / "proxy-password"
    path.write_text(PASSWORD + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture
def ca_file(tmp_path: Path) -> str:
    path = tmp_path / "proxy-ca.pem"
    path.write_text(PEM)
    return str(path)


# -- which variables, per scenario -----------------------------------------------------------

PROXY_VARS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy")
ALL_PROXY_VARS = (*PROXY_VARS, "GRPC_PROXY", "grpc_proxy", "NO_PROXY", "no_proxy")
CA_VARS = ("NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")

HTTP = make(
    {
        "proxy": {"url": "http://proxy.corp.example:3128"},
        "deployment": {"service_ip": "172.20.0.1"},
    }
)
HTTPS = make(
    {
        "proxy": {"url": "https://proxy.corp.example:3129"},
        "deployment": {"service_ip": "172.20.0.1"},
    }
)
SPLIT = make(
    {
        "proxy": {
            "url": "http://proxy.corp.example:3128",
            "https_url": "https://tls-proxy.corp.example:3129",
        },
        "deployment": {"service_ip": "172.20.0.1"},
    }
)
OFF = make({"proxy": {"enabled": False, "url": "http://proxy.corp.example:3128"}})
NONE = make({})
VM = make({"proxy": {"url": "http://10.0.5.10:3128"}, "deployment": {"kind": "single-vm"}})


@pytest.mark.parametrize(
    ("settings_", "expected"),
    [
        pytest.param(
            HTTP,
            {
                "HTTP_PROXY": "http://proxy.corp.example:3128",
                "http_proxy": "http://proxy.corp.example:3128",
                "HTTPS_PROXY": "http://proxy.corp.example:3128",
                "https_proxy": "http://proxy.corp.example:3128",
                "GRPC_PROXY": "http://proxy.corp.example:3128",
                "grpc_proxy": "http://proxy.corp.example:3128",
                "NODE_USE_ENV_PROXY": "1",
            },
            id="http-proxy",
        ),
        pytest.param(
            HTTPS,
            {
                "HTTP_PROXY": "https://proxy.corp.example:3129",
                "https_proxy": "https://proxy.corp.example:3129",
                "GRPC_PROXY": "https://proxy.corp.example:3129",
                "NODE_USE_ENV_PROXY": "1",
            },
            id="https-proxy",
        ),
        pytest.param(
            SPLIT,
            {
                "HTTP_PROXY": "http://proxy.corp.example:3128",
                "http_proxy": "http://proxy.corp.example:3128",
                "HTTPS_PROXY": "https://tls-proxy.corp.example:3129",
                "https_proxy": "https://tls-proxy.corp.example:3129",
                "GRPC_PROXY": "http://proxy.corp.example:3128",
                "grpc_proxy": "http://proxy.corp.example:3128",
            },
            id="split-grpc-takes-the-http-one",
        ),
        pytest.param(VM, {"http_proxy": "http://10.0.5.10:3128"}, id="single-vm"),
    ],
)
def test_proxy_variables(settings_: Settings, expected: dict[str, str]) -> None:
    for env in (dotenv(settings_), kube_env(settings_, "configmap")):
        for name, value in expected.items():
            assert env[name] == value, name
        assert env["NO_PROXY"] == env["no_proxy"]
        assert "NODE_TLS_REJECT_UNAUTHORIZED" not in env


@pytest.mark.parametrize(
    ("settings_", "why"),
    [
        pytest.param(OFF, "switched off", id="switched-off"),
        pytest.param(NONE, "no proxy is configured", id="none-configured"),
    ],
)
@pytest.mark.parametrize("fmt", ["dotenv", "configmap", "secret"])
def test_no_proxy_variables_when_switched_off(settings_: Settings, why: str, fmt: str) -> None:
    art = render(settings_, RenderOptions(format=fmt))
    env = parse_dotenv(art.text) if fmt == "dotenv" else kube_env(settings_, fmt)
    assert not set(env) & {*ALL_PROXY_VARS, "NODE_USE_ENV_PROXY"}
    assert why in art.text  # the comment says why
    assert any(why in w for w in art.warnings)


def test_single_vm_no_proxy_has_no_cluster_rules() -> None:
    tokens = no_proxy_list(VM).tokens
    assert "localhost" in tokens
    assert not {".svc", "svc", ".svc.cluster.local"} & set(tokens)


# -- NO_PROXY agrees with the router -------------------------------------------------------

AGREE = {
    "excluded_domains": [
        ".corp.example",
        "10.0.0.0/8",
        "git.internal:8443",
        "bücher.example",
        "[fd00::1]",
        "192.168.1.5:9000",
        "Build.Example.",
    ],
    "deployment": {
        "service_ip": "172.20.0.1",
        "gke_workload_identity": True,
        "cluster_domain": "k8s.internal",
    },
}
AGREE_HTTP = make({**AGREE, "proxy": {"url": "http://proxy.corp.example:3128"}})
AGREE_HTTPS = make({**AGREE, "proxy": {"url": "https://proxy.corp.example:3129"}})

AGREEMENT_URLS = [
    "https://api.example.com/",
    "http://example.com/",
    "wss://events.example.com/socket",
    "http://localhost:8080/",
    "http://foo.localhost/",
    "http://127.0.0.1:8080/",
    "http://127.8.9.10/",
    "http://[::1]:8080/",
    "https://svc-a.ns.svc/",
    "https://svc-a.ns.svc.k8s.internal/",
    "https://svc-a.ns.svc.cluster.local/",
    "https://172.20.0.1/",
    "https://172.20.0.2/",
    "http://169.254.169.254/computeMetadata/v1/",
    "http://metadata/",
    "http://metadata.google.internal/",
    "https://corp.example/",
    "https://a.b.corp.example/",
    "https://notcorp.example/",
    "https://10.1.2.3/",
    "https://11.1.2.3/",
    "https://git.internal:8443/",
    "https://git.internal/",
    "https://bücher.example/",
    "https://xn--bcher-kva.example/",
    "http://[fd00::1]/",
    "http://[fd00::2]/",
    "http://192.168.1.5:9000/",
    "http://192.168.1.5/",
    "https://build.example/",
    "https://acme.snowflakecomputing.com/",
    "https://snowflakecomputing.com/",
    "https://evilsnowflakecomputing.com/",
    "https://dbc-1.cloud.databricks.com/",
    "https://adb-1.azuredatabricks.net/",
    "https://x.gcp.databricks.com/",
    "https://bigquery.googleapis.com/",
    "https://c.redshift.amazonaws.com/",
]


@pytest.mark.parametrize(
    "settings_", [pytest.param(AGREE_HTTP, id="http"), pytest.param(AGREE_HTTPS, id="https")]
)
@pytest.mark.parametrize("url", AGREEMENT_URLS)
def test_rendered_env_agrees_with_router(settings_: Settings, url: str) -> None:
    env = dotenv(settings_)
    assert env_route(env, url) == settings_.router().decide(url).route


@pytest.mark.parametrize(
    ("settings_", "url", "route"),
    [
        pytest.param(AGREE_HTTP, "https://acme.snowflakecomputing.com/", "proxy", id="sf-http"),
        pytest.param(AGREE_HTTPS, "https://acme.snowflakecomputing.com/", "direct", id="sf-https"),
        pytest.param(AGREE_HTTP, "https://dbc-1.cloud.databricks.com/", "direct", id="databricks"),
        pytest.param(AGREE_HTTP, "https://172.20.0.2/", "proxy", id="next-to-service-ip"),
        pytest.param(AGREE_HTTP, "http://[fd00::2]/", "proxy", id="next-to-v6"),
    ],
)
def test_agreement_table_is_not_vacuous(settings_: Settings, url: str, route: str) -> None:
    assert env_route(dotenv(settings_), url) == route


_LABELS = st.sampled_from(["example", "corp", "a", "svc", "internal", "xn--bcher-kva", "test"])
_NAMES = st.lists(_LABELS, min_size=1, max_size=3).map(".".join)
_ENTRIES = st.one_of(
    _NAMES,
    _NAMES.map(lambda n: "." + n),
    _NAMES.map(lambda n: "*." + n),
    _NAMES.map(lambda n: n + ":8443"),
    st.sampled_from(["10.0.0.0/8", "10.1.2.3", "192.168.0.0/16", "10.1.2.3:8443", "fd00::1"]),
)
_HOSTS = st.one_of(
    _NAMES, st.sampled_from(["10.1.2.3", "10.9.9.9", "192.168.4.4", "[fd00::1]", "[fd00::2]"])
)


@settings(max_examples=150, deadline=None)
@given(entries=st.lists(_ENTRIES, max_size=6), host=_HOSTS, port=st.sampled_from(["", ":8443"]))
def test_agreement_property(entries: list[str], host: str, port: str) -> None:
    s = make({"proxy": {"url": "http://proxy.corp.example:3128"}, "excluded_domains": entries})
    url = f"https://{host}{port}/"
    assert env_route(dotenv(s), url) == s.router().decide(url).route


def test_tcp_warehouse_domains_follow_the_router() -> None:
    """The router sends *.redshift.amazonaws.com direct (tunnelled with tunnel_tcp_warehouses),
    so NO_PROXY lists it exactly when it goes direct; the drivers themselves read no variable."""
    assert ".redshift.amazonaws.com" in no_proxy_list(AGREE_HTTP).tokens
    tunnel = make({**AGREE, "proxy": {"url": "http://p:3128"}, "tunnel_tcp_warehouses": True})
    assert tunnel.router().decide("https://c.redshift.amazonaws.com/").route == "tunnel"
    assert not any("redshift" in t for t in no_proxy_list(tunnel).tokens)
    text = render(AGREE_HTTP, RenderOptions()).text
    assert "read no proxy variable" in text


def test_snowflake_in_no_proxy_only_behind_an_https_proxy() -> None:
    assert ".snowflakecomputing.com" in no_proxy_list(AGREE_HTTPS).tokens
    assert ".snowflakecomputing.com" not in no_proxy_list(AGREE_HTTP).tokens


# -- portable spellings and the warnings that name the runtimes -------------------------------


@pytest.mark.parametrize(
    ("entry", "present", "absent", "warning"),
    [
        pytest.param(
            ".corp.example", ["corp.example", ".corp.example"], [], None, id="domain-both-forms"
        ),
        pytest.param(
            "*.corp.example", ["corp.example", ".corp.example"], ["*.corp.example"], None, id="star"
        ),
        pytest.param(
            "bücher.example",
            ["xn--bcher-kva.example", ".xn--bcher-kva.example"],
            ["bücher.example"],
            "Python urllib and requests",
            id="idn-a-label",
        ),
        pytest.param(
            "10.0.0.0/8", ["10.0.0.0/8"], [], "Python urllib, Node (undici", id="cidr-warned"
        ),
        pytest.param("[fd00::1]", ["fd00::1"], ["[fd00::1]"], "proxy-from-env", id="v6-bare"),
        pytest.param(
            "[fd00::1]:8443",
            [],
            ["[fd00::1]:8443", "fd00::1"],
            "httpx refuses",
            id="v6-port-dropped",
        ),
        pytest.param("fd00::/8", [], ["fd00::/8"], "IPv6 range", id="v6-cidr-dropped"),
        pytest.param(
            "git.internal:8443",
            ["git.internal:8443", ".git.internal:8443"],
            [],
            "curl and wget ignore them",
            id="port",
        ),
        pytest.param("ex*.com", [], ["ex*.com"], "egress itself ignores it", id="partial-wildcard"),
    ],
)
def test_portable_spelling(
    entry: str, present: list[str], absent: list[str], warning: str | None
) -> None:
    s = make({"proxy": {"url": "http://proxy.corp.example:3128"}, "excluded_domains": [entry]})
    nop = no_proxy_list(s)
    for token in present:
        assert token in nop.tokens
    for token in absent:
        assert token not in nop.tokens
    assert not any(t.startswith("[") for t in nop.tokens)  # httpx refuses brackets
    art = render(s, RenderOptions())
    if warning is not None:
        # the warning names the runtimes that still differ, and the entry it is about
        mention = (present or absent)[0]
        assert any(warning in w and mention in w for w in art.warnings), art.warnings


def test_loopback_is_spelled_for_runtimes_without_cidr() -> None:
    nop = no_proxy_list(HTTP)
    group = next(g for g in nop.groups if g.rule == "auto:loopback")
    assert group.tokens == ("localhost", ".localhost", "127.0.0.1", "127.0.0.0/8", "::1")
    warnings = " ".join(nop.warnings)
    assert "127.0.0.1 is also listed on its own" in warnings
    assert "Ruby cannot read IPv6 entries" in warnings


def test_star_is_the_whole_value() -> None:
    s = make({"proxy": {"url": "http://p:3128"}, "excluded_domains": ["localhost", "*"]})
    art = render(s, RenderOptions())
    assert parse_dotenv(art.text)["NO_PROXY"] == "*"
    assert any("Ruby and wget" in w for w in art.warnings)


def test_no_duplicate_tokens() -> None:
    s = make({"proxy": {"url": "http://p:3128"}, "excluded_domains": ["localhost", "127.0.0.1"]})
    tokens = no_proxy_list(s).tokens
    assert len(tokens) == len(set(tokens))


@pytest.mark.parametrize(
    ("settings_", "warning"),
    [
        pytest.param(HTTPS, "wget, Python urllib and Ruby Net::HTTP", id="tls-to-proxy"),
        pytest.param(HTTPS, "support only http:// proxies", id="grpc-https-only"),
        pytest.param(SPLIT, "GRPC_PROXY is the http:// proxy", id="grpc-split"),
        pytest.param(
            make({"proxy": {"url": "http://p:3128"}}), "egress cluster-ip", id="no-svc-ip"
        ),
    ],
)
def test_runtime_warnings(settings_: Settings, warning: str) -> None:
    assert any(warning in w for w in render(settings_, RenderOptions()).warnings)


def test_http_proxy_alone_sets_no_grpc_or_tls_warning() -> None:
    warnings = " ".join(render(HTTP, RenderOptions()).warnings)
    assert "gRPC" not in warnings
    assert "plaintext CONNECT" not in warnings


def test_verify_off_never_disables_node_tls() -> None:
    s = make({"proxy": {"url": "https://p:3129", "verify": False}})
    art = render(s, RenderOptions())
    assert "NODE_TLS_REJECT_UNAUTHORIZED" not in parse_dotenv(art.text)
    assert any("NODE_TLS_REJECT_UNAUTHORIZED=0" in w for w in art.warnings)


# -- trust -----------------------------------------------------------------------------------


def test_ca_variables_replace_versus_extend(ca_file: str) -> None:
    s = make({"proxy": {"url": "https://p:3129", "ca_file": ca_file}})
    art = render(s, RenderOptions())
    env = parse_dotenv(art.text)
    assert env["NODE_EXTRA_CA_CERTS"] == CUSTOM_CA_PATH
    assert env["SSL_CERT_FILE"] == env["REQUESTS_CA_BUNDLE"] == CA_BUNDLE_PATH
    assert f"cat /etc/ssl/certs/ca-certificates.crt {CUSTOM_CA_PATH} > {CA_BUNDLE_PATH}" in art.text
    assert "REPLACE" in art.text and "ADDS" in art.text


def test_ca_from_helm_values_and_kept_when_switched_off() -> None:
    s = settings_from_helm_mapping(
        {"externalProxy": {"enabled": False, "host": "p", "port": 3128, "type": "http"}},
        env=NO_ENV,
    )
    assert not set(dotenv(s)) & set(CA_VARS)
    s = settings_from_helm_mapping(
        {
            "externalProxy": {"enabled": False, "host": "p", "port": 3128, "type": "http"},
            "trustedCACerts": {"value": PEM},
        },
        env=NO_ENV,
    )
    env = dotenv(s)
    assert set(CA_VARS) <= set(env)
    assert not set(env) & set(ALL_PROXY_VARS)


# -- credentials: only ever in the Secret ----------------------------------------------------


@pytest.fixture
def authed(secret_file: str) -> Settings:
    return make(
        {
            "proxy": {
                "url": "http://proxy.corp.example:3128",
                "username": "svc user",
                "password_file": secret_file,
            }
        }
    )


@pytest.mark.parametrize("fmt", ["dotenv", "configmap"])
def test_password_never_in_dotenv_or_configmap(authed: Settings, fmt: str) -> None:
    art = render(authed, RenderOptions(format=fmt))
    for needle in (PASSWORD, "p%40ss", "svc%20user", "@proxy.corp.example"):
        assert needle not in art.text
    env = parse_dotenv(art.text) if fmt == "dotenv" else kube_env(authed, fmt)
    assert env["HTTP_PROXY"] == "http://proxy.corp.example:3128"
    assert "407" in art.text and "--format secret" in art.text
    assert any("render --format secret" in w for w in art.warnings)
    assert PASSWORD not in " ".join(art.warnings)


def test_secret_carries_percent_encoded_credentials(authed: Settings) -> None:
    doc = kube(authed, "secret", namespace="carto")
    assert doc["kind"] == "Secret" and doc["type"] == "Opaque"
    assert doc["metadata"] == {
        "name": "egress-env-credentials",
        "namespace": "carto",
        "labels": {"app.kubernetes.io/managed-by": "egress"},
    }
    data = doc["stringData"]
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "GRPC_PROXY"):
        parts = urlsplit(data[name])
        assert parts.hostname == "proxy.corp.example" and parts.port == 3128
        assert unquote(parts.username or "") == "svc user"
        assert unquote(parts.password or "") == PASSWORD
        assert PASSWORD not in data[name]  # encoded, never raw
    assert "@" not in data["NO_PROXY"]
    assert data["NODE_USE_ENV_PROXY"] == "1"


def test_password_not_in_repr(authed: Settings) -> None:
    env = environment(authed)
    assert env.has_credentials
    assert "p%40ss" not in repr(env) and PASSWORD not in repr(env)


def test_secret_without_credentials_says_a_configmap_is_enough() -> None:
    art = render(HTTP, RenderOptions(format="secret"))
    assert any("a ConfigMap (--format configmap) is enough" in w for w in art.warnings)


# -- formats ----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("fmt", ["configmap", "secret"])
@pytest.mark.parametrize(
    "settings_",
    [
        pytest.param(AGREE_HTTPS, id="https"),
        pytest.param(OFF, id="off"),
        pytest.param(NONE, id="none"),
        pytest.param(VM, id="vm"),
    ],
)
def test_kubernetes_objects_validate(settings_: Settings, fmt: str, version: str) -> None:
    doc = kube(settings_, fmt, namespace="carto")
    kubernetes_validate.validate(doc, version, strict=True)


def test_configmap_shape() -> None:
    doc = kube(HTTP, "configmap")
    assert doc["apiVersion"] == "v1" and doc["kind"] == "ConfigMap"
    assert doc["metadata"]["name"] == "egress-env"
    assert "namespace" not in doc["metadata"]
    assert all(isinstance(v, str) for v in doc["data"].values())
    assert doc["data"]["NODE_USE_ENV_PROXY"] == "1"


def test_dotenv_values_are_bare_and_every_line_is_a_comment_or_assignment() -> None:
    text = render(AGREE_HTTPS, RenderOptions()).text
    for line in text.splitlines():
        assert not line or line.startswith("#") or ("=" in line and "'" not in line), line


@pytest.mark.parametrize(
    ("value", "written"),
    [
        pytest.param("http://p:3128", "http://p:3128", id="url"),
        pytest.param("localhost,.svc,::1,10.0.0.0/8", "localhost,.svc,::1,10.0.0.0/8", id="list"),
        pytest.param("*", "*", id="star"),
        pytest.param("/opt/my certs/ca.pem", "'/opt/my certs/ca.pem'", id="space"),
        pytest.param("a$b", "'a$b'", id="dollar-not-interpolated"),
        pytest.param("", "", id="empty"),
    ],
)
def test_dotenv_value(value: str, written: str) -> None:
    assert dotenv_value(value) == written


@pytest.mark.parametrize("value", ["it's", "two\nlines", "back\\slash"])
def test_dotenv_value_refuses_what_cannot_be_quoted(value: str) -> None:
    with pytest.raises(ValueError):
        dotenv_value(value)


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown env format"):
        render(HTTP, RenderOptions(format="toml"))
