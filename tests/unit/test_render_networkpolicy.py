"""render networkpolicy: every object valid against the Kubernetes OpenAPI schema (several
versions), and the content: DNS, proxy, in-cluster, warehouses, annotations, warnings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from egress.render import RenderOptions
from egress.render.networkpolicy import GKE_METADATA_ENDPOINTS, render
from egress.settings import Settings, load_settings_from_mapping

NO_ENV: dict[str, str] = {}
K8S_VERSIONS = ("1.28", "1.30", kubernetes_validate.latest_version())


def make(raw: dict[str, Any]) -> Settings:
    return load_settings_from_mapping(raw, env=NO_ENV)


def docs(text: str) -> list[dict[str, Any]]:
    out = [d for d in yaml.safe_load_all(text) if d is not None]
    assert all(isinstance(d, dict) for d in out)
    return out


def by_rule(text: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["annotations"]["egress.dev/rule"]: d for d in docs(text)}


def peers_and_ports(policy: dict[str, Any]) -> list[tuple[list[str], list[tuple[str, int]]]]:
    """Each egress rule as (ipBlock CIDRs, [(protocol, port)])."""
    out = []
    for rule in policy["spec"]["egress"]:
        cidrs = [p["ipBlock"]["cidr"] for p in rule.get("to", []) if "ipBlock" in p]
        ports = [(p["protocol"], p["port"]) for p in rule.get("ports", [])]
        out.append((cidrs, ports))
    return out


HTTP_IP = make({"proxy": {"url": "http://10.0.5.10:3128"}})
HTTP_NAME = make({"proxy": {"url": "http://proxy.corp.example:3128"}})
HTTPS_IP = make({"proxy": {"url": "https://10.0.5.10:3129"}})
SPLIT = make({"proxy": {"url": "http://10.0.5.10:3128", "https_url": "https://10.0.6.20:3129"}})
SAME_HOST = make({"proxy": {"url": "http://10.0.5.10:3128", "https_url": "https://10.0.5.10:3129"}})
V6 = make({"proxy": {"url": "http://[fd00::10]:3128"}})
TUNNEL = make({"proxy": {"url": "http://10.0.5.10:3128"}, "tunnel_tcp_warehouses": True})
GKE = make(
    {
        "proxy": {"url": "https://10.0.5.10:3129"},
        "deployment": {"gke_workload_identity": True, "service_ip": "10.96.0.1"},
        "excluded_domains": [".corp.example", "10.0.0.0/8"],
    }
)
OFF = make({"proxy": {"enabled": False, "url": "http://10.0.5.10:3128"}})
NONE = make({})
VM = make({"proxy": {"url": "http://10.0.5.10:3128"}, "deployment": {"kind": "single-vm"}})

ALL_CIDRS = (
    ("postgres", "10.20.0.0/16"),
    ("redshift", "10.30.0.0/16"),
    ("databricks", "203.0.113.0/24"),
    ("snowflake", "198.51.100.0/24"),
    ("bigquery", "192.0.2.0/24"),
)


# -- schema --------------------------------------------------------------------------------


SCHEMA_CASES = [
    pytest.param(HTTP_IP, RenderOptions(), id="http-ip"),
    pytest.param(HTTP_NAME, RenderOptions(proxy_cidr="10.0.5.0/24"), id="name-cidr"),
    pytest.param(HTTP_NAME, RenderOptions(), id="name-no-cidr"),
    pytest.param(SPLIT, RenderOptions(warehouse_cidrs=ALL_CIDRS, namespace="carto"), id="split"),
    pytest.param(V6, RenderOptions(warehouse_cidrs=(("postgres", "fd00:20::/48"),)), id="v6"),
    pytest.param(TUNNEL, RenderOptions(warehouse_cidrs=ALL_CIDRS), id="tunnel"),
    pytest.param(GKE, RenderOptions(warehouse_cidrs=ALL_CIDRS, name="carto"), id="gke-https"),
    pytest.param(OFF, RenderOptions(), id="off"),
    pytest.param(NONE, RenderOptions(warehouse_cidrs=ALL_CIDRS), id="none"),
    pytest.param(VM, RenderOptions(), id="single-vm"),
]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(("settings_", "options"), SCHEMA_CASES)
def test_every_object_validates(settings_: Settings, options: RenderOptions, version: str) -> None:
    objects = docs(render(settings_, options).text)
    assert objects
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)


def test_pod_labels_validate_and_select() -> None:
    text = render(HTTP_IP, RenderOptions(), pod_labels={"app.kubernetes.io/part-of": "carto"}).text
    for obj in docs(text):
        kubernetes_validate.validate(obj, K8S_VERSIONS[-1], strict=True)
        assert obj["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/part-of": "carto"}}
    assert "pods selected: app.kubernetes.io/part-of=carto" in text


def test_a_broken_object_fails_validation() -> None:
    """The schema check can fail: a port given as a list is refused."""
    obj = docs(render(HTTP_IP, RenderOptions()).text)[0]
    obj["spec"]["egress"][0]["ports"][0]["port"] = [53]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(obj, K8S_VERSIONS[-1], strict=True)


# -- every object ---------------------------------------------------------------------------


@pytest.mark.parametrize(("settings_", "options"), SCHEMA_CASES)
def test_every_object_is_an_egress_policy_with_its_rule(
    settings_: Settings, options: RenderOptions
) -> None:
    text = render(settings_, options).text
    objects = docs(text)
    for obj in objects:
        assert obj["apiVersion"] == "networking.k8s.io/v1"
        assert obj["kind"] == "NetworkPolicy"
        assert obj["spec"]["policyTypes"] == ["Egress"]
        assert obj["spec"]["podSelector"] == {}
        meta = obj["metadata"]
        rule = meta["annotations"]["egress.dev/rule"]
        assert meta["annotations"]["egress.dev/reason"].endswith(".")
        assert meta["labels"] == {"app.kubernetes.io/managed-by": "egress"}
        assert meta["name"].startswith(options.name + "-")
        assert (meta.get("namespace")) == options.namespace
        assert f"# rule {rule}: " in text  # the YAML comment above the object
        for egress in obj["spec"]["egress"]:
            for peer in egress["to"]:
                assert peer.get("ipBlock", {}).get("cidr") not in ("0.0.0.0/0", "::/0")
    assert "Deny the rest" in text
    names = [o["metadata"]["name"] for o in objects]
    assert len(names) == len(set(names))


def test_comment_precedes_its_object() -> None:
    text = render(GKE, RenderOptions(warehouse_cidrs=ALL_CIDRS)).text
    for chunk in text.split("\n---\n")[1:]:
        first = chunk.splitlines()[0]
        rule = yaml.safe_load(chunk)["metadata"]["annotations"]["egress.dev/rule"]
        assert first.startswith(f"# rule {rule}: ")


# -- DNS and in-cluster ---------------------------------------------------------------------


def test_dns_rule() -> None:
    dns = by_rule(render(HTTP_IP, RenderOptions()).text)["dns"]
    (rule,) = dns["spec"]["egress"]
    assert rule["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ]
    assert rule["ports"] == [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]


def test_in_cluster_is_optional() -> None:
    rules = by_rule(render(HTTP_IP, RenderOptions(namespace="carto")).text)
    assert rules["in-cluster"]["spec"]["egress"] == [{"to": [{"podSelector": {}}]}]
    assert rules["in-cluster"]["metadata"]["namespace"] == "carto"
    assert "in-cluster" not in by_rule(render(HTTP_IP, RenderOptions(), in_cluster=False).text)


# -- the proxy --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings_", "options", "expected"),
    [
        pytest.param(HTTP_IP, RenderOptions(), [(["10.0.5.10/32"], [("TCP", 3128)])], id="ip"),
        pytest.param(HTTPS_IP, RenderOptions(), [(["10.0.5.10/32"], [("TCP", 3129)])], id="https"),
        pytest.param(V6, RenderOptions(), [(["fd00::10/128"], [("TCP", 3128)])], id="ipv6"),
        pytest.param(
            HTTP_NAME,
            RenderOptions(proxy_cidr="10.0.5.0/24"),
            [(["10.0.5.0/24"], [("TCP", 3128)])],
            id="name-with-cidr",
        ),
        pytest.param(
            SPLIT,
            RenderOptions(),
            [(["10.0.5.10/32"], [("TCP", 3128)]), (["10.0.6.20/32"], [("TCP", 3129)])],
            id="two-proxies",
        ),
        pytest.param(
            SAME_HOST,
            RenderOptions(),
            [(["10.0.5.10/32"], [("TCP", 3128), ("TCP", 3129)])],
            id="one-host-two-ports",
        ),
        pytest.param(
            make({"proxy": {"url": "http://10.0.5.10"}}),
            RenderOptions(),
            [(["10.0.5.10/32"], [("TCP", 80)])],
            id="default-port",
        ),
        pytest.param(OFF, RenderOptions(), [(["10.0.5.10/32"], [("TCP", 3128)])], id="off"),
    ],
)
def test_proxy_rule(
    settings_: Settings, options: RenderOptions, expected: list[tuple[list[str], Any]]
) -> None:
    proxy = by_rule(render(settings_, options).text)["proxy"]
    assert peers_and_ports(proxy) == expected


def test_proxy_named_by_host_needs_proxy_cidr() -> None:
    art = render(HTTP_NAME, RenderOptions())
    assert "proxy" not in by_rule(art.text)
    assert any("the proxy rule needs --proxy-cidr" in w for w in art.warnings)
    assert "0.0.0.0" not in art.text


def test_proxy_cidr_that_misses_the_proxy_ip_is_reported() -> None:
    art = render(HTTP_IP, RenderOptions(proxy_cidr="192.168.0.0/16"))
    assert peers_and_ports(by_rule(art.text)["proxy"]) == [(["10.0.5.10/32"], [("TCP", 3128)])]
    assert any("does not contain the proxy's address 10.0.5.10" in w for w in art.warnings)


def test_proxy_password_never_shows(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("hunter2-secret")
    s = make(
        {"proxy": {"url": "http://10.0.5.10:3128", "username": "u", "password_file": str(secret)}}
    )
    art = render(s, RenderOptions())
    assert "hunter2" not in art.text + " ".join(art.warnings)


# -- warehouses ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings_", "expected"),
    [
        pytest.param(
            HTTP_IP,
            {
                "warehouse:postgres": [(["10.20.0.0/16"], [("TCP", 5432)])],
                "warehouse:redshift": [(["10.30.0.0/16"], [("TCP", 5439)])],
                "warehouse:databricks": [(["203.0.113.0/24"], [("TCP", 443)])],
            },
            id="http-proxy",
        ),
        pytest.param(
            HTTPS_IP,
            {
                "warehouse:postgres": [(["10.20.0.0/16"], [("TCP", 5432)])],
                "warehouse:redshift": [(["10.30.0.0/16"], [("TCP", 5439)])],
                "warehouse:databricks": [(["203.0.113.0/24"], [("TCP", 443)])],
                "warehouse:snowflake": [(["198.51.100.0/24"], [("TCP", 443)])],
            },
            id="https-proxy-snowflake-bypasses",
        ),
        pytest.param(
            TUNNEL,
            {"warehouse:databricks": [(["203.0.113.0/24"], [("TCP", 443)])]},
            id="tunnel-tcp-warehouses",
        ),
        pytest.param(
            NONE,
            {
                "warehouse:postgres": [(["10.20.0.0/16"], [("TCP", 5432)])],
                "warehouse:redshift": [(["10.30.0.0/16"], [("TCP", 5439)])],
                "warehouse:databricks": [(["203.0.113.0/24"], [("TCP", 443)])],
                "warehouse:snowflake": [(["198.51.100.0/24"], [("TCP", 443)])],
                "warehouse:bigquery": [(["192.0.2.0/24"], [("TCP", 443)])],
            },
            id="no-proxy-everything-direct",
        ),
    ],
)
def test_warehouse_rules(settings_: Settings, expected: dict[str, Any]) -> None:
    rules = by_rule(render(settings_, RenderOptions(warehouse_cidrs=ALL_CIDRS)).text)
    got = {rule: peers_and_ports(p) for rule, p in rules.items() if rule.startswith("warehouse:")}
    assert got == expected


@pytest.mark.parametrize(
    ("settings_", "cidrs", "warning"),
    [
        pytest.param(
            HTTP_IP,
            (("postgres", "10.20.0.0/16"),),
            "Amazon Redshift goes direct (TCP 5439) but no --warehouse-cidr redshift=CIDR",
            id="direct-without-cidr",
        ),
        pytest.param(
            HTTP_IP,
            (("snowflake", "198.51.100.0/24"),),
            "--warehouse-cidr snowflake=198.51.100.0/24 is ignored: Snowflake goes through",
            id="cidr-for-proxied",
        ),
        pytest.param(
            TUNNEL,
            (("postgres", "10.20.0.0/16"),),
            "PostgreSQL is tunnelled through the proxy",
            id="cidr-for-tunnelled",
        ),
        pytest.param(
            make({"proxy": {"url": "http://10.0.5.10:3128"}, "warehouses": ["bigquery"]}),
            (("postgres", "10.20.0.0/16"),),
            "not in the settings' warehouses",
            id="not-in-settings",
        ),
    ],
)
def test_warehouse_warnings(
    settings_: Settings, cidrs: tuple[tuple[str, str], ...], warning: str
) -> None:
    art = render(settings_, RenderOptions(warehouse_cidrs=cidrs))
    assert any(warning in w for w in art.warnings), art.warnings


def test_warehouse_without_cidr_gets_no_rule_and_never_everything() -> None:
    art = render(HTTP_IP, RenderOptions())
    assert not [r for r in by_rule(art.text) if r.startswith("warehouse:")]
    assert "0.0.0.0/0" not in art.text
    assert sum("--warehouse-cidr" in w for w in art.warnings) == 3  # postgres, redshift, databricks


def test_everything_only_when_the_operator_says_so() -> None:
    art = render(HTTP_IP, RenderOptions(warehouse_cidrs=(("postgres", "0.0.0.0/0"),)))
    assert peers_and_ports(by_rule(art.text)["warehouse:postgres"]) == [
        (["0.0.0.0/0"], [("TCP", 5432)])
    ]


def test_warehouse_annotation_and_reason() -> None:
    policy = by_rule(render(HTTP_IP, RenderOptions(warehouse_cidrs=ALL_CIDRS)).text)[
        "warehouse:postgres"
    ]
    meta = policy["metadata"]
    assert meta["name"] == "egress-warehouse-postgres"
    assert meta["annotations"]["egress.dev/reason"] == (
        "PostgreSQL speaks its own protocol over TCP, which an HTTP proxy does not carry, "
        "so PostgreSQL goes direct, to TCP 5432."
    )


# -- GKE, switches, deployment kinds ---------------------------------------------------------


def test_gke_metadata_only_with_workload_identity() -> None:
    """The rule's own address on every port (the router sends it direct on any), and where GKE
    without Dataplane V2 really serves it."""
    rules = by_rule(render(GKE, RenderOptions()).text)
    assert peers_and_ports(rules["auto:gke-metadata"]) == [
        (["169.254.169.254/32"], []),
        *[([cidr], [("TCP", port)]) for cidr, port in GKE_METADATA_ENDPOINTS[1:]],
    ]
    assert "auto:gke-metadata" not in by_rule(render(HTTP_IP, RenderOptions()).text)


@pytest.mark.parametrize(
    ("settings_", "warning"),
    [
        pytest.param(OFF, "describe the routes with the proxy switched on", id="switched-off"),
        pytest.param(NONE, "no proxy is configured", id="none"),
        pytest.param(VM, "NetworkPolicy applies only to Kubernetes", id="single-vm"),
        pytest.param(
            make({"proxy": {"https_url": "https://10.0.5.10:3129", "enabled": True}}),
            "no proxy is configured for http:// destinations",
            id="no-proxy-for-http",
        ),
        pytest.param(GKE, "excluded_domains (.corp.example) go direct", id="excluded"),
    ],
)
def test_situation_warnings(settings_: Settings, warning: str) -> None:
    art = render(settings_, RenderOptions())
    assert any(warning in w for w in art.warnings), art.warnings


def test_no_proxy_configured_has_no_proxy_rule() -> None:
    assert "proxy" not in by_rule(render(NONE, RenderOptions()).text)


def test_tunnel_is_named_on_the_proxy_rule() -> None:
    text = render(TUNNEL, RenderOptions()).text
    assert "PostgreSQL and Amazon Redshift ride this rule too" in text


@pytest.mark.parametrize(
    ("settings_", "kind", "reason"),
    [
        pytest.param(
            NONE,
            "bigquery",
            "No proxy is configured, so Google BigQuery goes direct, to TCP 443.",
            id="no-proxy",
        ),
        pytest.param(
            make({"proxy": {"url": "http://10.0.5.10:3128"}, "excluded_domains": "*"}),
            "snowflake",
            "Rule excluded:* sends every such connection direct, so Snowflake goes direct, "
            "to TCP 443.",
            id="excluded-everything",
        ),
    ],
)
def test_reason_when_another_rule_sends_a_warehouse_direct(
    settings_: Settings, kind: str, reason: str
) -> None:
    rules = by_rule(render(settings_, RenderOptions(warehouse_cidrs=ALL_CIDRS)).text)
    assert rules[f"warehouse:{kind}"]["metadata"]["annotations"]["egress.dev/reason"] == reason


def test_excluded_addresses_are_allowed_and_names_warned() -> None:
    """Every excluded IP or CIDR the router sends direct gets an ipBlock (on its port when it
    names one); names cannot, so they are warned about, except what an automatic rule covers."""
    s = make(
        {
            "proxy": {"url": "http://10.0.5.10:3128"},
            "excluded_domains": [
                "localhost",
                "127.0.0.1",
                ".svc.cluster.local",
                "[fd00::1]:80",
                "192.168.0.0/16",
                "git.corp.example",
            ],
        }
    )
    art = render(s, RenderOptions())
    assert peers_and_ports(by_rule(art.text)["excluded"]) == [
        (["fd00::1/128"], [("TCP", 80)]),
        (["192.168.0.0/16"], []),
    ]
    (warning,) = [w for w in art.warnings if "excluded_domains" in w]
    assert warning.startswith("excluded_domains (git.corp.example) go direct")
    quiet = make({"proxy": {"url": "http://10.0.5.10:3128"}, "excluded_domains": ["localhost"]})
    assert not [w for w in render(quiet, RenderOptions()).warnings if "excluded_domains" in w]
    assert "excluded" not in by_rule(render(quiet, RenderOptions()).text)


def test_kubernetes_api_service_ip_is_allowed_with_a_note() -> None:
    policy = by_rule(render(GKE, RenderOptions()).text)["auto:kubernetes-api"]
    assert peers_and_ports(policy) == [(["10.96.0.1/32"], [])]
    assert "kubectl get endpoints kubernetes" in render(GKE, RenderOptions()).text
