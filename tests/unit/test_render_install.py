"""render install: every object valid against three Kubernetes versions, every name and reference
agreeing (volumes, key refs, selectors, ports, the webhook's Service), the security context, the
stores, no secret unless asked, the flags' errors, and the Dockerfile's extras against make's."""

from __future__ import annotations

import base64
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import trustme
import yaml

from egress.cli import main
from egress.render.install import (
    CA_BUNDLE_KEY,
    CA_KEY,
    FAILURE_POLICY_TRADE_OFF,
    InstallOptions,
    render,
)
from egress.settings import Settings, load_settings_from_mapping

ROOT = Path(__file__).parents[2]
NO_ENV: dict[str, str] = {}
K8S_VERSIONS = ("1.30", "1.33", kubernetes_validate.latest_version())
PASSWORD = "pa:ss@w/rd-7Qz"
OPERATOR_MADE = {("Secret", "egress-console-db"), ("Secret", "egress-webhook-tls")}
"""What the install names but the operator creates (each must be documented in a comment)."""

CA = trustme.CA()
CA_PEM = CA.cert_pem.bytes().decode()


def make(raw: dict[str, Any]) -> Settings:
    return load_settings_from_mapping(raw, env=NO_ENV)


@pytest.fixture(scope="module")
def authed(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    pw = tmp_path_factory.mktemp("pw") / "password"
    pw.write_text(PASSWORD + "\n")
    return make(
        {
            "proxy": {
                "url": "https://proxy.corp.example:3129",
                "username": "svc-egress",
                "password_file": str(pw),
                "ca_pem": CA_PEM,
            },
            "excluded_domains": [".corp.example", "10.0.0.0/8"],
            "deployment": {"service_ip": "10.96.0.1", "gke_workload_identity": True},
            "resolve": {"db.corp.example": "10.0.0.5"},
            "endpoints": ["postgresql://db.corp.example:5432"],
        }
    )


PLAIN = make({"proxy": {"url": "http://10.0.5.10:3128"}})


def docs(text: str) -> list[dict[str, Any]]:
    out = list(yaml.safe_load_all(text))
    assert all(isinstance(d, dict) for d in out), "no empty or scalar document"
    return out


def index(objs: list[dict[str, Any]]) -> dict[tuple[str, str | None, str], dict[str, Any]]:
    out: dict[tuple[str, str | None, str], dict[str, Any]] = {}
    for obj in objs:
        key = (obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"])
        assert key not in out, f"{key} rendered twice"
        out[key] = obj
    return out


def pods(objs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for obj in objs:
        if obj["kind"] == "Deployment":
            yield obj, obj["spec"]["template"]


def containers(objs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for _, template in pods(objs):
        for c in template["spec"]["containers"]:
            yield template, c


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


OPTION_SETS = {
    "sqlite": InstallOptions(),
    "postgresql-ha": InstallOptions(
        store="postgresql", replicas=3, db_cidr="10.20.0.5/32", failure_policy="Fail"
    ),
    "inject": InstallOptions(
        namespace="egress-system",
        inject_namespaces=("carto", "team-a"),
        webhook_ca=CA_PEM,
        proxy_cidr="10.0.5.0/24",
    ),
}


def rendered(settings: Settings, options: InstallOptions) -> list[dict[str, Any]]:
    return docs(render(settings, options).text)


# -- schema --------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("case", sorted(OPTION_SETS))
def test_every_object_is_valid(case: str, version: str, authed: Settings) -> None:
    objs = rendered(authed, OPTION_SETS[case])
    kinds = {o["kind"] for o in objs}
    assert {"Deployment", "Service", "MutatingWebhookConfiguration", "NetworkPolicy"} <= kinds
    for obj in objs:
        kubernetes_validate.validate(obj, version, strict=True)


def test_validation_would_catch_a_broken_object(authed: Settings) -> None:
    """The schema check can fail: a misspelt field of the webhook configuration is refused."""
    objs = rendered(authed, InstallOptions())
    mwc = next(o for o in objs if o["kind"] == "MutatingWebhookConfiguration")
    mwc["webhooks"][0]["reinvocation"] = "IfNeeded"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(mwc, K8S_VERSIONS[-1], strict=True)


# -- names and references ------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(OPTION_SETS))
def test_every_reference_names_a_rendered_or_documented_object(case: str, authed: Settings) -> None:
    options = OPTION_SETS[case]
    text = render(authed, options).text
    objs = docs(text)
    found = index(objs)
    comments = "\n".join(line for line in text.splitlines() if line.startswith("#"))

    def exists(kind: str, ns: str, name: str, key: str | None = None) -> None:
        obj = found.get((kind, ns, name))
        if obj is None:
            assert (kind, name) in OPERATOR_MADE, (
                f"{kind} {ns}/{name} is neither rendered nor known"
            )
            assert name in comments, f"{kind} {name} is not documented"
            return
        if key is None:
            return
        held = {**obj.get("data", {}), **obj.get("stringData", {})}
        if kind == "Secret" and not held:  # an operator-set value: its key is documented
            assert f'{key}: ""' in comments and f"create secret generic {name} " in comments
        else:
            assert key in held, f"{kind} {name} has no key {key}"

    for template_owner, template in pods(objs):
        ns = template_owner["metadata"]["namespace"]
        spec = template["spec"]
        exists("ServiceAccount", ns, spec["serviceAccountName"])
        volumes = {v["name"]: v for v in spec["volumes"]}
        for c in spec["containers"]:
            for mount in c["volumeMounts"]:
                assert mount["name"] in volumes, mount
            for env in c.get("env", []):
                ref = env.get("valueFrom", {})
                if "secretKeyRef" in ref:
                    exists("Secret", ns, ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"])
                if "configMapKeyRef" in ref:
                    r = ref["configMapKeyRef"]
                    exists("ConfigMap", ns, r["name"], r["key"])
        for v in spec["volumes"]:
            if "configMap" in v:
                exists("ConfigMap", ns, v["configMap"]["name"])
            if "secret" in v:
                for item in v["secret"].get("items", [{"key": None}]):
                    exists("Secret", ns, v["secret"]["secretName"], item["key"])
            if "persistentVolumeClaim" in v:
                exists("PersistentVolumeClaim", ns, v["persistentVolumeClaim"]["claimName"])
        # labels select the right pods
        assert selects(
            template_owner["spec"]["selector"]["matchLabels"], template["metadata"]["labels"]
        )
    for obj in objs:
        if obj["kind"] == "Service":
            ns = obj["metadata"]["namespace"]
            matched = [
                (d, t)
                for d, t in pods(objs)
                if d["metadata"]["namespace"] == ns
                and selects(obj["spec"]["selector"], t["metadata"]["labels"])
            ]
            assert [d["metadata"]["name"] for d, _ in matched] == [obj["metadata"]["name"]]
            ports = {p["name"] for c in matched[0][1]["spec"]["containers"] for p in c["ports"]}
            assert {p["targetPort"] for p in obj["spec"]["ports"]} <= ports
        if obj["kind"] in ("NetworkPolicy", "PodDisruptionBudget"):
            selector = (
                obj["spec"]["podSelector"]
                if obj["kind"] == "NetworkPolicy"
                else obj["spec"]["selector"]
            )["matchLabels"]
            matched_names = [
                d["metadata"]["name"]
                for d, t in pods(objs)
                if selects(selector, t["metadata"]["labels"])
            ]
            assert matched_names == [obj["metadata"]["name"]]


def test_webhook_service_and_configuration_agree(authed: Settings) -> None:
    objs = rendered(authed, OPTION_SETS["inject"])
    found = index(objs)
    mwc = found[("MutatingWebhookConfiguration", None, "egress-injector")]
    (hook,) = mwc["webhooks"]
    svc_ref = hook["clientConfig"]["service"]
    assert svc_ref["path"] == "/mutate"
    service = found[("Service", svc_ref["namespace"], svc_ref["name"])]
    (port,) = service["spec"]["ports"]
    assert port["port"] == svc_ref["port"] == 443
    deployment = found[("Deployment", "egress-system", "egress-webhook")]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    (cport,) = container["ports"]
    assert cport["name"] == port["targetPort"] and cport["containerPort"] == 8443
    args = container["args"]
    assert args[0] == "webhook" and args[args.index("--port") + 1] == "8443"
    assert args[args.index("--config") + 1] == "/etc/egress/settings/egress.yaml"
    assert base64.b64decode(hook["clientConfig"]["caBundle"]).decode() == CA_PEM
    assert hook["namespaceSelector"]["matchLabels"] == {"egress.io/inject": "enabled"}
    never = hook["namespaceSelector"]["matchExpressions"][0]
    assert never["operator"] == "NotIn" and {"egress-system", "kube-system"} <= set(never["values"])
    assert (hook["reinvocationPolicy"], hook["sideEffects"], hook["timeoutSeconds"]) == (
        "IfNeeded",
        "None",
        5,
    )
    assert hook["failurePolicy"] == "Ignore"
    # the webhook's policy lets everyone reach the port the container listens on, nothing out
    policy = found[("NetworkPolicy", "egress-system", "egress-webhook")]
    assert policy["spec"]["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8443}]}]
    assert policy["spec"]["egress"] == []


def test_without_a_webhook_ca_the_cainjector_is_asked(authed: Settings) -> None:
    art = render(authed, InstallOptions(namespace="ops"))
    mwc = index(docs(art.text))[("MutatingWebhookConfiguration", None, "egress-injector")]
    assert "caBundle" not in mwc["webhooks"][0]["clientConfig"]
    assert mwc["metadata"]["annotations"] == {
        "cert-manager.io/inject-ca-from": "ops/egress-webhook-tls"
    }
    assert any("caBundle" in w for w in art.warnings)


@pytest.mark.parametrize("policy", ["Ignore", "Fail"])
def test_failure_policy_and_its_trade_off(policy: str) -> None:
    text = render(PLAIN, InstallOptions(failure_policy=policy)).text  # type: ignore[arg-type]
    mwc = next(o for o in docs(text) if o["kind"] == "MutatingWebhookConfiguration")
    assert mwc["webhooks"][0]["failurePolicy"] == policy
    flat = " ".join(line.lstrip("# ") for line in text.splitlines() if line.startswith("#"))
    assert f"failurePolicy {policy}." in flat
    assert " ".join(FAILURE_POLICY_TRADE_OFF.split()) in " ".join(flat.split())


# -- pods: security, probes, resources ------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(OPTION_SETS))
def test_pods_run_locked_down(case: str, authed: Settings) -> None:
    objs = rendered(authed, OPTION_SETS[case])
    seen = 0
    for template, c in containers(objs):
        seen += 1
        spec = template["spec"]
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"} and sc["runAsUser"] > 0
        tmp = next(m for m in c["volumeMounts"] if m["mountPath"] == "/tmp")
        assert "emptyDir" in next(v for v in spec["volumes"] if v["name"] == tmp["name"])
        assert set(c["resources"]) == {"requests", "limits"}
        assert {"cpu", "memory"} <= set(c["resources"]["requests"])
        port_names = {p["name"] for p in c["ports"]}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            get = c[probe]["httpGet"]
            assert get["path"] == "/healthz" and get["port"] in port_names
    assert seen == 2
    for obj in objs:
        if obj["kind"] == "ServiceAccount":
            assert obj["automountServiceAccountToken"] is False
    assert not {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"} & {
        o["kind"] for o in objs
    }


def console_of(objs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    dep = next(
        o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "egress-console"
    )
    return dep, dep["spec"]["template"]["spec"]["containers"][0]


def test_sqlite_store_one_replica_on_a_claim(authed: Settings) -> None:
    objs = rendered(authed, InstallOptions())
    dep, c = console_of(objs)
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"] == {"type": "Recreate"}
    args = c["args"]
    assert args[:5] == ["console", "--host", "0.0.0.0", "--port", "8080"]
    db = args[args.index("--db") + 1]
    mount = next(m for m in c["volumeMounts"] if m["name"] == "data")["mountPath"]
    assert db == f"sqlite:///{mount}/egress.db"
    assert any(o["kind"] == "PersistentVolumeClaim" for o in objs)
    assert not any(
        o["kind"] == "PodDisruptionBudget" and "console" in o["metadata"]["name"] for o in objs
    )


def test_postgresql_store_reads_the_url_from_the_operators_secret(authed: Settings) -> None:
    text = render(authed, OPTION_SETS["postgresql-ha"]).text
    objs = docs(text)
    dep, c = console_of(objs)
    assert dep["spec"]["replicas"] == 3 and "strategy" not in dep["spec"]
    env = {e["name"]: e for e in c["env"]}
    assert env["EGRESS_CONSOLE_DB"]["valueFrom"]["secretKeyRef"] == {
        "name": "egress-console-db",
        "key": "url",
    }
    assert "--db" not in c["args"], "the console reads EGRESS_CONSOLE_DB: no password in argv"
    assert not any(o["kind"] == "PersistentVolumeClaim" for o in objs)
    assert ("Secret", "egress-console-db") not in {(o["kind"], o["metadata"]["name"]) for o in objs}
    assert "#   url: " in text  # the placeholder, as a comment
    policy = index(objs)[("NetworkPolicy", "egress", "egress-console")]
    assert {
        "to": [{"ipBlock": {"cidr": "10.20.0.5/32"}}],
        "ports": [{"protocol": "TCP", "port": 5432}],
    } in policy["spec"]["egress"]
    assert (
        index(objs)[("PodDisruptionBudget", "egress", "egress-console")]["spec"]["minAvailable"]
        == 1
    )


def test_console_policy_allows_dns_and_the_proxy_the_router_names() -> None:
    objs = rendered(PLAIN, InstallOptions())
    policy = index(objs)[("NetworkPolicy", "egress", "egress-console")]
    egress = policy["spec"]["egress"]
    assert {
        "to": [{"ipBlock": {"cidr": "10.0.5.10/32"}}],
        "ports": [{"protocol": "TCP", "port": 3128}],
    } in egress
    assert any(p.get("port") == 53 for rule in egress for p in rule.get("ports", []))
    assert len(egress) == 2  # DNS and the proxy, nothing else
    assert policy["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8080}]


def test_a_proxy_named_by_host_needs_proxy_cidr(authed: Settings) -> None:
    art = render(authed, InstallOptions())
    assert any("--proxy-cidr" in w for w in art.warnings)
    art = render(authed, InstallOptions(proxy_cidr="10.0.5.0/24"))
    assert not any("--proxy-cidr" in w for w in art.warnings)
    policy = index(docs(art.text))[("NetworkPolicy", "egress", "egress-console")]
    assert {
        "to": [{"ipBlock": {"cidr": "10.0.5.0/24"}}],
        "ports": [{"protocol": "TCP", "port": 3129}],
    } in policy["spec"]["egress"]


# -- settings, CA, secrets ------------------------------------------------------------------------


def test_settings_configmap_routes_as_the_settings_do(authed: Settings, tmp_path: Path) -> None:
    """egress.yaml in the ConfigMap, read back with the mounts it names, gives the same routes."""
    objs = rendered(authed, InstallOptions())
    found = index(objs)
    document = yaml.safe_load(
        found[("ConfigMap", "egress", "egress-settings")]["data"]["egress.yaml"]
    )
    ca = found[("ConfigMap", "egress", "egress-ca")]["data"]
    assert document["proxy"]["ca_file"] == f"/etc/egress/ca/{CA_KEY}"
    assert document["proxy"]["password_file"] == "/etc/egress/proxy/password"
    (tmp_path / "ca.crt").write_text(ca[CA_KEY])
    (tmp_path / "password").write_text(PASSWORD)
    document["proxy"]["ca_file"] = str(tmp_path / "ca.crt")
    document["proxy"]["password_file"] = str(tmp_path / "password")
    back = load_settings_from_mapping(document, env=NO_ENV)
    assert back.router().rules() == authed.router().rules()
    for url in ("https://auth.carto.com/", "http://db.corp.example/", "https://10.1.2.3/",
                "https://metadata.google.internal/", "https://10.96.0.1/"):  # fmt: skip
        a, b = back.router().decide(url), authed.router().decide(url)
        assert (a.route, a.rule, a.proxy) == (b.route, b.rule, b.proxy), url
    assert back.proxy.password is not None and back.proxy.password.reveal() == PASSWORD


def test_ca_configmap_holds_the_ca_and_a_full_bundle(authed: Settings) -> None:
    ca = index(rendered(authed, InstallOptions()))[("ConfigMap", "egress", "egress-ca")]["data"]
    assert ca[CA_KEY] == CA_PEM
    bundle = ca[CA_BUNDLE_KEY]
    assert bundle.endswith(CA_PEM) and bundle.count("-----BEGIN CERTIFICATE-----") > 50
    assert "#" not in bundle  # certifi's comments dropped
    empty = index(rendered(PLAIN, InstallOptions()))[("ConfigMap", "egress", "egress-ca")]
    assert empty["data"] == {}


def test_no_secret_in_the_output_unless_asked(authed: Settings) -> None:
    art = render(authed, OPTION_SETS["inject"])
    assert PASSWORD not in art.text and "pa:ss" not in art.text
    assert all(PASSWORD not in w for w in art.warnings)
    for obj in docs(art.text):
        if obj["kind"] == "Secret":
            assert "data" not in obj and "stringData" not in obj
    asked = render(authed, InstallOptions(inject_namespaces=("carto",), with_secrets=True))
    secrets = [
        o
        for o in docs(asked.text)
        if o["kind"] == "Secret" and o["metadata"]["name"] == "egress-proxy"
    ]
    assert [s["metadata"]["namespace"] for s in secrets] == ["egress", "carto"]
    assert all(s["stringData"] == {"password": PASSWORD} for s in secrets)


def test_inject_namespace_gets_what_its_pods_mount(authed: Settings) -> None:
    objs = rendered(authed, OPTION_SETS["inject"])
    found = index(objs)
    for ns in ("carto", "team-a"):
        for kind, name in (
            ("ConfigMap", "egress-settings"),
            ("ConfigMap", "egress-ca"),
            ("Secret", "egress-proxy"),
        ):
            assert (kind, ns, name) in found
            own = found[(kind, "egress-system", name)]
            assert found[(kind, ns, name)].get("data") == own.get("data")
    assert {k[1] for k in found if k[1] not in (None, "egress-system")} == {"carto", "team-a"}


def test_hostile_source_path_cannot_add_objects(tmp_path: Path) -> None:
    """A settings path holding a line break and YAML stays inside a comment."""
    cfg = tmp_path / "x\n---\nkind: ClusterRoleBinding\n# .yaml"
    cfg.write_text("proxy: {url: 'http://10.0.5.10:3128'}\nexcluded_domains: ['.corp.example']\n")
    from egress.settings import load_yaml

    art = render(load_yaml(cfg, env=NO_ENV), InstallOptions())
    kinds = [o["kind"] for o in docs(art.text)]
    assert "ClusterRoleBinding" not in kinds
    assert all(
        not line or line.startswith(("#", " ", "-")) or re.match(r"^[a-zA-Z]+:", line)
        for line in art.text.splitlines()
    )


# -- the command line -----------------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def config(tmp_path: Path) -> Path:
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD)
    cfg = tmp_path / "egress.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {"proxy": {"url": "http://10.0.5.10:3128", "username": "u", "password_file": str(pw)}}
        )
    )
    return cfg


def test_cli_renders_and_keeps_the_password_out(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys, "render", "install", "--config", str(config), "--namespace", "ops",
        "--image", "registry.example:5000/egress:0.1.0", "--store", "postgresql",
        "--replicas", "2", "--inject-namespace", "carto", "--inject-namespace", "carto",
    )  # fmt: skip
    assert code == 0, err
    assert PASSWORD not in out and PASSWORD not in err
    objs = docs(out)
    assert [
        o["metadata"]["namespace"] for o in objs if o["metadata"]["name"] == "egress-settings"
    ] == ["ops", "carto"]
    assert {c["image"] for _, c in containers(objs)} == {"registry.example:5000/egress:0.1.0"}
    assert "warning: " in err  # the caBundle, the store's address
    code, out, _ = run(capsys, "render", "install", "--config", str(config), "--with-secrets")
    assert code == 0 and PASSWORD in out


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["--replicas", "2"], id="replicas-on-sqlite"),
        pytest.param(["--replicas", "0"], id="replicas-zero"),
        pytest.param(["--replicas", "two"], id="replicas-word"),
        pytest.param(["--store", "mysql"], id="store"),
        pytest.param(["--failure-policy", "ignore"], id="failure-policy-case"),
        pytest.param(["--namespace", "Egress_NS"], id="namespace"),
        pytest.param(["--inject-namespace", "kube-system"], id="inject-kube-system"),
        pytest.param(["--namespace", "ops", "--inject-namespace", "ops"], id="inject-own"),
        pytest.param(["--image", "egress 0.1"], id="image-space"),
        pytest.param(["--image", "x\ny"], id="image-newline"),
        pytest.param(["--db-cidr", "10.0.0.0/8"], id="db-cidr-on-sqlite"),
        pytest.param(["--proxy-cidr", "proxy.corp"], id="proxy-cidr"),
        pytest.param(["--webhook-ca-file", "/nonexistent/ca.crt"], id="webhook-ca-missing"),
        pytest.param(["--format", "secret"], id="flag-of-another-kind"),
    ],
)
def test_bad_flags_are_one_sentence_exit_2(
    argv: list[str], config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "render", "install", "--config", str(config), *argv)
    assert code == 2 and out == ""
    errors = [line for line in err.splitlines() if line.startswith("egress: error:")]
    assert len(errors) == 1 and "Traceback" not in err


def test_webhook_ca_file_without_pem_is_refused(
    tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "ca.crt"
    bad.write_text("not a certificate\n")
    code, out, err = run(
        capsys, "render", "install", "--config", str(config), "--webhook-ca-file", str(bad)
    )
    assert code == 2 and out == "" and "PEM" in err
    good = tmp_path / "good.crt"
    good.write_text(CA_PEM)
    code, out, _ = run(
        capsys, "render", "install", "--config", str(config), "--webhook-ca-file", str(good)
    )
    assert code == 0 and base64.b64encode(CA_PEM.encode()).decode() in out


def test_invalid_settings_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "egress.yaml"
    cfg.write_text("proxy:\n  url: socks5://p:1080\n")
    code, out, err = run(capsys, "render", "install", "--config", str(cfg))
    assert code == 3 and out == "" and "socks5" in err


def test_settings_egress_yaml_cannot_say_are_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY alone proxies http:// only, which egress.yaml cannot write: exit 3, not a
    ConfigMap that would route otherwise."""
    monkeypatch.setenv("HTTP_PROXY", "http://10.0.5.10:3128")
    code, out, err = run(capsys, "render", "install")
    assert code == 3 and out == "" and "egress.yaml" in err


# -- the image -----------------------------------------------------------------------------------


def test_dockerfile_installs_the_extras_make_installs() -> None:
    """The image's pip install takes make's extras minus test, from the package itself; the
    kerberos extra is make's second install (it builds against libkrb5-dev, after the system
    packages), which the slim image leaves out: it would need gcc and libkrb5-dev."""
    makefile = (ROOT / "Makefile").read_text()
    make_extras, kerberos = re.findall(r"pip install -q -e '\.\[([a-z,]+)\]'", makefile)
    assert kerberos == "kerberos"
    dockerfile = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")  # continued lines
    runs = [
        shlex.split(line, comments=True)
        for line in dockerfile.splitlines()
        if "pip install" in line
    ]
    specs = [w for words in runs for w in words if w.startswith(".[")]
    assert len(specs) == 1, specs
    image_extras = set(specs[0][2:-1].split(","))
    assert image_extras == set(make_extras.split(",")) - {"test"}
    lines = [line.strip() for line in dockerfile.splitlines()]
    assert "FROM python:3.11-slim" in lines[0] or any(
        line.startswith("FROM python:3.11-slim") for line in lines
    )
    (user,) = [line for line in lines if line.startswith("USER ")]
    assert user.split()[1].split(":")[0] == "10001"  # the UID the install runs as
    assert 'ENTRYPOINT ["egress"]' in lines
    assert 'CMD ["console", "--host", "0.0.0.0"]' in lines
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        pytest.param({"deployment": {"kind": "single-vm"}, "proxy": {"url": "http://10.0.5.10:3128"}},
                     "deployment.kind is single-vm", id="single-vm"),
        pytest.param({}, "no proxy is configured", id="no-proxy"),
    ],
)  # fmt: skip
def test_settings_that_do_not_fit_a_cluster_are_a_warning(raw: dict[str, Any], says: str) -> None:
    art = render(make(raw), InstallOptions())
    assert any(says in w for w in art.warnings)
    for obj in docs(art.text):
        kubernetes_validate.validate(obj, K8S_VERSIONS[-1], strict=True)


def test_helm_values_render_an_install(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    values = tmp_path / "customizations.yaml"
    values.write_text(
        "externalProxy:\n  enabled: true\n  host: 10.0.5.10\n  port: 3128\n  type: http\n"
        "  excludedDomains: ['localhost,.svc.cluster.local']\n"
    )
    code, out, err = run(capsys, "render", "install", "--helm-values", str(values))
    assert code == 0, err
    (cm,) = [o for o in docs(out) if o["metadata"]["name"] == "egress-settings"]
    document = yaml.safe_load(cm["data"]["egress.yaml"])
    assert document["proxy"]["url"] == "http://10.0.5.10:3128"
    assert ".svc.cluster.local" in document["excluded_domains"]
