"""Settings loaders: egress.yaml, seed Helm values, the environment; every refusal names a field."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from egress import ConfigError, Settings, load_environment, load_helm_values, load_settings
from egress.settings import load_settings_from_mapping, settings_from_helm_mapping

NO_ENV: dict[str, str] = {}
EXAMPLE = Path(__file__).parents[2] / "examples" / "egress.yaml"


def refused(raw: Any, *, helm: bool = False) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        if helm:
            settings_from_helm_mapping(raw, env=NO_ENV)
        else:
            load_settings_from_mapping(raw, env=NO_ENV)
    return info.value


def fields(exc: ConfigError) -> set[str]:
    return {p.field for p in exc.problems}


def test_example_file_loads() -> None:
    s = load_settings(EXAMPLE, env=NO_ENV)
    assert s.proxy.enabled
    assert str(s.proxy.https_proxy) == "https://proxy.corp.example:3129"
    assert s.deployment.service_ip == "10.96.0.1"
    assert s.deployment.gke_workload_identity
    assert s.excluded_domains == (".corp.example", "10.0.0.0/8")


def test_defaults() -> None:
    s = load_settings_from_mapping({}, env=NO_ENV)
    assert not s.proxy.enabled and not s.proxy.configured
    assert s.deployment.kind == "kubernetes" and s.deployment.cluster_domain == "cluster.local"
    assert s.warehouses == ("bigquery", "snowflake", "postgres", "redshift", "databricks")
    assert s.features == ("core",)


def test_https_url_alone_switches_the_proxy_on() -> None:
    s = load_settings_from_mapping({"proxy": {"https_url": "https://b:3129"}}, env=NO_ENV)
    assert s.proxy.enabled and s.proxy.http_proxy is None


def test_host_port_type_spelling() -> None:
    s = load_settings_from_mapping(
        {"proxy": {"enabled": True, "host": "p.corp", "port": "3129", "type": "HTTPS"}},
        env=NO_ENV,
    )
    assert str(s.proxy.http_proxy) == "https://p.corp:3129"


def test_https_url_overrides_only_https() -> None:
    s = load_settings_from_mapping(
        {"proxy": {"url": "http://a:3128", "https_url": "https://b:3129"}}, env=NO_ENV
    )
    assert str(s.proxy.for_scheme("http")) == "http://a:3128"
    assert str(s.proxy.for_scheme("ws")) == "http://a:3128"
    assert str(s.proxy.for_scheme("https")) == "https://b:3129"


@pytest.mark.parametrize(
    ("raw", "field", "needle"),
    [
        pytest.param(
            {"proxy": {"url": "socks5://p:1080"}}, "proxy.url", "scheme socks5", id="socks5"
        ),
        pytest.param({"proxy": {"url": "ftp://p:21"}}, "proxy.url", "scheme ftp", id="ftp"),
        pytest.param({"proxy": {"url": "p.corp:3128"}}, "proxy.url", "no scheme", id="no-scheme"),
        pytest.param({"proxy": {"url": "none://p:3128"}}, "proxy.url", "scheme none", id="none"),
        pytest.param({"proxy": {"url": "http://:3128"}}, "proxy.url", "no host", id="no-host"),
        pytest.param({"proxy": {"url": "http://p:0"}}, "proxy.url", "port", id="port-0"),
        pytest.param({"proxy": {"url": "http://p:70000"}}, "proxy.url", "port", id="port-big"),
        pytest.param({"proxy": {"url": "http://p:http"}}, "proxy.url", "port", id="port-text"),
        pytest.param({"proxy": {"url": "http://p:3128/x"}}, "proxy.url", "path", id="path"),
        pytest.param(
            {"proxy": {"url": "http://u:pw@p:3128"}}, "proxy.url", "credentials", id="userinfo"
        ),
        pytest.param(
            {"proxy": {"host": "p", "port": 3128, "type": "socks5"}},
            "proxy.type",
            "http or https",
            id="type",
        ),
        pytest.param(
            {"proxy": {"host": "p", "port": 99999}}, "proxy.port", "not a port", id="port"
        ),
        pytest.param(
            {"proxy": {"host": "p", "port": "\u0663\u0661\u0662\u0668"}},
            "proxy.port",
            "not a port",
            id="port-arabic-digits",
        ),
        pytest.param(
            {"proxy": {"host": "p", "port": True}}, "proxy.port", "not a port", id="port-bool"
        ),
        pytest.param({"proxy": {"enabled": "maybe"}}, "proxy.enabled", "true or false", id="bool"),
        pytest.param({"proxy": {"enabled": True}}, "proxy.url", "missing", id="enabled-no-url"),
        pytest.param(
            {"proxy": {"url": "http://p:1", "username": "u"}},
            "proxy.password_file",
            "missing",
            id="user-no-password",
        ),
        pytest.param(
            {"proxy": {"url": "http://p:1", "username": "u", "password_file": "/nonexistent/pw"}},
            "proxy.password_file",
            "cannot be read",
            id="password-file-unreadable",
        ),
        pytest.param(
            {"proxy": {"url": "http://p:1", "ca_file": "/nonexistent/ca.pem"}},
            "proxy.ca_file",
            "cannot be read",
            id="ca-unreadable",
        ),
        pytest.param(
            {"deployment": {"kind": "openshift-ish"}},
            "deployment.kind",
            "not a known deployment kind",
            id="kind",
        ),
        pytest.param(
            {"deployment": {"cluster_domain": "bad_domain!"}},
            "deployment.cluster_domain",
            "not a valid DNS domain",
            id="cluster-domain",
        ),
        pytest.param(
            {"deployment": {"cluster_domain": "-x.local"}},
            "deployment.cluster_domain",
            "not a valid DNS domain",
            id="cluster-domain-hyphen",
        ),
        pytest.param(
            {"deployment": {"service_ip": "kubernetes"}},
            "deployment.service_ip",
            "not an IP",
            id="service-ip",
        ),
        pytest.param(
            {"warehouses": ["bigquery", "oracle"]},
            "warehouses",
            "not a known warehouse",
            id="warehouse",
        ),
        pytest.param(
            {"resolve": {"a.example": "nope"}}, "resolve.a.example", "not an IP", id="resolve"
        ),
        pytest.param({"proxxy": {}}, "proxxy", "not a known setting", id="unknown-top"),
        pytest.param({"proxy": {"urll": "x"}}, "proxy.urll", "not a known setting", id="unknown"),
        pytest.param({"excluded_domains": 5}, "excluded_domains", "not a list", id="excluded-int"),
        pytest.param(["a"], "settings", "not a mapping", id="not-mapping"),
        pytest.param(
            {"features": ["core", "teleport"]},
            "features",
            "not a known feature group",
            id="feature",
        ),
    ],
)
def test_refused(raw: Any, field: str, needle: str) -> None:
    exc = refused(raw)
    assert field in fields(exc), exc.problems
    problem = next(p for p in exc.problems if p.field == field)
    assert needle in problem.message
    assert problem.hint, "every refusal carries a hint"


def test_credentials_in_url_never_echo_the_password() -> None:
    exc = refused({"proxy": {"url": "http://alice:Sup3rSecret@p:3128"}})
    assert "Sup3rSecret" not in str(exc)
    assert "Sup3rSecret" not in repr(exc.problems)
    assert "username" in exc.problems[0].hint and "password_file" in exc.problems[0].hint


def test_every_problem_at_once() -> None:
    exc = refused(
        {
            "proxy": {"url": "socks5://p:1"},
            "deployment": {"kind": "x", "service_ip": "y"},
            "warehouses": ["nope"],
        }
    )
    assert {"proxy.url", "deployment.kind", "deployment.service_ip", "warehouses"} <= fields(exc)
    assert "more problem" in str(exc)


def test_password_from_file_is_never_shown(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("Sup3rSecret\n")
    s = load_settings_from_mapping(
        {"proxy": {"url": "http://p:3128", "username": "alice", "password_file": str(pw)}},
        env=NO_ENV,
    )
    assert s.proxy.password is not None and s.proxy.password.reveal() == "Sup3rSecret"
    for text in (repr(s), str(s), repr(s.proxy), str(s.proxy.password)):
        assert "Sup3rSecret" not in text
    decision = s.router().decide("https://api.example.com/")
    assert decision.proxy == "http://alice:********@p:3128"
    assert "Sup3rSecret" not in repr(decision)


def test_password_never_in_errors_elsewhere(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("Sup3rSecret")
    exc = refused(
        {
            "proxy": {
                "url": "http://p:3128",
                "username": "alice",
                "password_file": str(pw),
                "verify": "perhaps",
            }
        }
    )
    assert "Sup3rSecret" not in str(exc) and "Sup3rSecret" not in repr(exc.problems)


def test_empty_password_file_refused(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("\n")
    exc = refused({"proxy": {"url": "http://p:3128", "username": "a", "password_file": str(pw)}})
    assert "proxy.password_file" in fields(exc)


def test_ca_file_must_be_pem(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate")
    exc = refused({"proxy": {"url": "http://p:3128", "ca_file": str(ca)}})
    assert "proxy.ca_file" in fields(exc)


def warning_fields(s: Settings) -> set[str]:
    return {w.field for w in s.warnings}


def test_warnings() -> None:
    s = load_settings_from_mapping(
        {
            "proxy": {"url": "https://p:3129", "verify": False},
            "excluded_domains": "good.example, *bad.example, http://x.example",
        },
        env=NO_ENV,
    )
    assert warning_fields(s) == {"proxy.verify", "excluded_domains", "deployment.service_ip"}
    ignored = [w for w in s.warnings if w.field == "excluded_domains"]
    assert len(ignored) == 2


def test_settings_make_no_routing_warnings() -> None:
    """What goes direct and why is said from the router's rules, not re-derived by settings."""
    s = load_settings_from_mapping(
        {"proxy": {"url": "https://p:3129"}, "warehouses": ["snowflake"]}, env=NO_ENV
    )
    assert s.router().decide("https://acme.snowflakecomputing.com/").route == "direct"
    assert not any("snowflake" in w.message.lower() for w in s.warnings)
    assert "warehouses" not in warning_fields(s)


def test_service_ip_auto_reads_the_pod_environment() -> None:
    s = load_settings_from_mapping(
        {"deployment": {"service_ip": "auto"}}, env={"KUBERNETES_SERVICE_HOST": "10.43.0.1"}
    )
    assert s.deployment.service_ip == "10.43.0.1"
    assert s.deployment.service_ip_source == "KUBERNETES_SERVICE_HOST"
    assert "deployment.service_ip" not in warning_fields(s)


def test_single_vm_has_no_service_ip_warning() -> None:
    s = load_settings_from_mapping({"deployment": {"kind": "single-vm"}}, env=NO_ENV)
    assert "deployment.service_ip" not in warning_fields(s)


def test_yaml_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("proxy: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad)
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings(tmp_path / "missing.yaml")


# -- seed Helm values ---------------------------------------------------------------------------


def test_helm_seed_example(tmp_path: Path) -> None:
    values = tmp_path / "customizations.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "externalProxy": {
                    "enabled": True,
                    "host": "proxy.corp",
                    "port": 3128,
                    "type": "http",
                    "excludedDomains": ["localhost,.svc.cluster.local,.snowflakecomputing.com"],
                    "sslRejectUnauthorized": True,
                },
                "clusterDomain": "cluster.local",
                "appConfigValues": {"other": "ignored"},
            }
        )
    )
    s = load_helm_values(values, env=NO_ENV)
    assert s.proxy.enabled
    assert str(s.proxy.http_proxy) == str(s.proxy.https_proxy) == "http://proxy.corp:3128"
    assert s.excluded_domains == ("localhost", ".svc.cluster.local", ".snowflakecomputing.com")


def test_helm_connection_string_wins() -> None:
    s = settings_from_helm_mapping(
        {
            "externalProxy": {
                "enabled": True,
                "host": "ignored",
                "port": 1,
                "type": "http",
                "connectionString": "https://kots-proxy:3129",
            }
        },
        env=NO_ENV,
    )
    assert str(s.proxy.https_proxy) == "https://kots-proxy:3129"


def test_helm_excluded_domains_as_plain_string() -> None:
    s = settings_from_helm_mapping(
        {
            "externalProxy": {
                "enabled": True,
                "connectionString": "http://p:3128",
                "excludedDomains": "localhost,.corp",
            }
        },
        env=NO_ENV,
    )
    assert s.excluded_domains == ("localhost", ".corp")


def test_helm_disabled_keeps_the_proxy_but_switched_off() -> None:
    s = settings_from_helm_mapping(
        {"externalProxy": {"enabled": False, "host": "p", "port": "3128", "type": "http"}},
        env=NO_ENV,
    )
    assert s.proxy.configured and not s.proxy.enabled


def test_helm_ssl_reject_unauthorized_false_warns() -> None:
    s = settings_from_helm_mapping(
        {
            "externalProxy": {
                "enabled": True,
                "connectionString": "https://p:3129",
                "sslRejectUnauthorized": False,
            }
        },
        env=NO_ENV,
    )
    assert not s.proxy.verify
    assert "proxy.verify" in warning_fields(s)


PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


@pytest.mark.parametrize(
    ("external_proxy", "field"),
    [
        pytest.param(
            {"enabled": True, "host": "p", "port": 1, "type": "socks5"},
            "externalProxy.type",
            id="type",
        ),
        pytest.param(
            {"enabled": True, "host": "p", "port": "x", "type": "http"},
            "externalProxy.port",
            id="port",
        ),
        pytest.param({"enabled": True}, "externalProxy.host", id="missing-host"),
        pytest.param(
            {"enabled": True, "host": "p.corp:3128", "port": 3128, "type": "http"},
            "externalProxy.host",
            id="host-with-port",
        ),
        pytest.param(
            {"enabled": True, "host": "http://p.corp", "port": 3128, "type": "http"},
            "externalProxy.host",
            id="host-with-scheme",
        ),
        pytest.param(
            {"enabled": True, "connectionString": "socks5://p:1"},
            "externalProxy.connectionString",
            id="conn-scheme",
        ),
        pytest.param(
            {"enabled": True, "connectionString": "http://u:p@p:1"},
            "externalProxy.connectionString",
            id="conn-userinfo",
        ),
        pytest.param(
            {
                "enabled": True,
                "connectionString": "http://p:1",
                "sslCA": PEM,
                "sslCAConfigmap": {"name": "ca", "key": "ca.crt"},
            },
            "externalProxy.sslCA",
            id="duplicated-ca",
        ),
        pytest.param(
            {"enabled": True, "connectionString": "http://p:1", "sslCA": "junk"},
            "externalProxy.sslCA",
            id="ca-not-pem",
        ),
    ],
)
def test_helm_refused(external_proxy: dict[str, Any], field: str) -> None:
    exc = refused({"externalProxy": external_proxy}, helm=True)
    assert fields(exc) == {field}, "one mistake, one error (no knock-on errors)"


def test_helm_ipv6_host() -> None:
    s = settings_from_helm_mapping(
        {"externalProxy": {"enabled": True, "host": "fd00::5", "port": 3128, "type": "http"}},
        env=NO_ENV,
    )
    assert str(s.proxy.http_proxy) == "http://[fd00::5]:3128"


def test_helm_ca_sources() -> None:
    s = settings_from_helm_mapping(
        {
            "externalProxy": {"enabled": True, "connectionString": "https://p:3129", "sslCA": PEM},
            "trustedCACerts": {"existingConfigmap": {"name": "corp-ca"}},
        },
        env=NO_ENV,
    )
    assert s.proxy.ca_pem == PEM
    assert s.proxy.ca_configmap == ("corp-ca", "ca.crt")


# -- the environment ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "http", "https"),
    [
        pytest.param(
            {"http_proxy": "http://a:1", "HTTP_PROXY": "http://b:1"},
            "http://a:1",
            None,
            id="lowercase-wins",
        ),
        pytest.param({"HTTPS_PROXY": "http://b:1"}, None, "http://b:1", id="upper-only"),
        pytest.param(
            {"https_proxy": "", "HTTPS_PROXY": "http://b:1"},
            None,
            "http://b:1",
            id="empty-is-unset",
        ),
        pytest.param({"http_proxy": "a:3128"}, "http://a:3128", None, id="scheme-less"),
        pytest.param({"ALL_PROXY": "http://c:1"}, "http://c:1", "http://c:1", id="all-proxy"),
        pytest.param(
            {"all_proxy": "http://c:1", "https_proxy": "http://d:1"},
            "http://c:1",
            "http://d:1",
            id="specific-beats-all",
        ),
        pytest.param({"http_proxy": "http://a:1"}, "http://a:1", None, id="no-https-fallback"),
        pytest.param(
            {"REQUEST_METHOD": "GET", "HTTP_PROXY": "http://evil:1"},
            None,
            None,
            id="cgi-ignores-upper",
        ),
        pytest.param(
            {"REQUEST_METHOD": "GET", "http_proxy": "http://a:1"},
            "http://a:1",
            None,
            id="cgi-keeps-lower",
        ),
    ],
)
def test_environment_precedence(env: dict[str, str], http: str | None, https: str | None) -> None:
    s = load_environment(env)
    assert (str(s.proxy.http_proxy) if s.proxy.http_proxy else None) == http
    assert (str(s.proxy.https_proxy) if s.proxy.https_proxy else None) == https
    assert s.proxy.enabled == bool(http or https)


def test_environment_no_proxy() -> None:
    s = load_environment(
        {
            "https_proxy": "http://p:1",
            "no_proxy": "a.example,b.example",
            "NO_PROXY": "ignored.example",
        }
    )
    assert s.excluded_domains == ("a.example", "b.example")
    s = load_environment({"https_proxy": "http://p:1", "no_proxy": "", "NO_PROXY": "c.example"})
    assert s.excluded_domains == ("c.example",)


def test_environment_refuses_socks() -> None:
    with pytest.raises(ConfigError) as info:
        load_environment({"https_proxy": "socks5://p:1080"})
    assert "https_proxy" in fields(info.value)


# -- immutability -------------------------------------------------------------------------------


def test_settings_and_router_are_frozen() -> None:
    s = Settings.from_proxy("http://p:3128", no_proxy="a.example", env=NO_ENV)
    router = s.router()
    assert s.router() is router, "compiled once"
    with pytest.raises(AttributeError):
        s.excluded_domains = ("b.example",)  # type: ignore[misc]
    other = Settings.from_proxy("http://p:3128", no_proxy="b.example", env=NO_ENV)
    assert router.decide("https://a.example/").route == "direct"
    assert router.decide("https://b.example/").route == "proxy"
    assert other.router().decide("https://b.example/").route == "direct"


# -- property: the only exception a loader raises is ConfigError -----------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.sampled_from(
        ["http://p:3128", "https://p:1", "socks5://x", "auto", "10.0.0.1", ":", "[::1"]
    ),
)
structures = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=12), st.integers()), children, max_size=4),
    ),
    max_leaves=20,
)
keys = st.sampled_from(
    [
        "proxy",
        "excluded_domains",
        "deployment",
        "warehouses",
        "resolve",
        "features",
        "tunnel_tcp_warehouses",
    ]
)
proxy_keys = st.sampled_from(
    [
        "enabled",
        "url",
        "https_url",
        "host",
        "port",
        "type",
        "username",
        "password_file",
        "ca_file",
        "verify",
    ]
)
egress_shaped = st.dictionaries(
    keys, st.one_of(structures, st.dictionaries(proxy_keys, structures, max_size=6)), max_size=7
)
helm_keys = st.sampled_from(
    [
        "enabled",
        "host",
        "port",
        "type",
        "excludedDomains",
        "sslRejectUnauthorized",
        "sslCA",
        "sslCAConfigmap",
        "connectionString",
    ]
)
helm_shaped = st.fixed_dictionaries(
    {"externalProxy": st.one_of(structures, st.dictionaries(helm_keys, structures, max_size=8))},
    optional={"trustedCACerts": structures, "clusterDomain": structures},
)


def _only_config_error(load: Any, raw: Any) -> None:
    with contextlib.suppress(ConfigError):
        load(raw)


@settings(max_examples=300, deadline=None)
@given(st.one_of(structures, egress_shaped))
def test_yaml_loader_raises_only_config_error(raw: Any) -> None:
    _only_config_error(lambda r: load_settings_from_mapping(r, env=NO_ENV), raw)


@settings(max_examples=300, deadline=None)
@given(st.one_of(structures, helm_shaped))
def test_helm_loader_raises_only_config_error(raw: Any) -> None:
    _only_config_error(lambda r: settings_from_helm_mapping(r, env=NO_ENV), raw)


env_names = st.sampled_from(
    [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
        "REQUEST_METHOD",
        "KUBERNETES_SERVICE_HOST",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(env_names, st.text(max_size=40), max_size=6))
def test_environment_loader_raises_only_config_error(env: dict[str, str]) -> None:
    _only_config_error(load_environment, env)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_yaml_text_raises_only_config_error(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    path = tmp_path_factory.mktemp("y") / "egress.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    for load in (
        lambda: load_settings(path, env=NO_ENV),
        lambda: load_settings(helm_values=path, env=NO_ENV),
    ):
        with contextlib.suppress(ConfigError):
            load()
