"""The admission webhook's answers, for pod shapes from the Kubernetes documentation.

Each review is an AdmissionReview v1 as the API server sends it; the JSONPatch of the answer is
applied with the ``jsonpatch`` library and the patched pod validated with kubernetes-validate
(three Kubernetes versions); the environment each container then starts with is built as kubelet
builds it (``$(VAR)`` expanded, the Secret's value pasted in) and compared with ``render env``.
"""

from __future__ import annotations

import base64
import copy
import json
import uuid
from pathlib import Path
from typing import Any

import jsonpatch  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import trustme
from tests.support.kube_env import container_env

from egress.render import RenderOptions
from egress.render.env import render
from egress.settings import Settings, load_settings_from_mapping
from egress.webhook.admission import (
    CA_DIR,
    INJECTED_ANNOTATION,
    MAX_BODY,
    PASSWORD_VARIABLE,
    BadReview,
    Plan,
    admit,
    answer,
    json_pointer,
    parse_review,
    plan,
)

K8S_VERSIONS = ("1.28", "1.30", kubernetes_validate.latest_version())
PASSWORD = "Swordfish-42_x.y~z"
SECRETS = {"egress-proxy": {"password": PASSWORD}}


@pytest.fixture(scope="module")
def ca_pem() -> str:
    return trustme.CA().cert_pem.bytes().decode()


@pytest.fixture(scope="module")
def password_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("pw") / "password"
    path.write_text(PASSWORD + "\n")
    return str(path)


def settings_of(**proxy: Any) -> Settings:
    return load_settings_from_mapping(
        {
            "proxy": {"url": "http://proxy.corp.example:3128", **proxy},
            "excluded_domains": [".corp.example", "10.0.0.0/8"],
            "deployment": {"kind": "kubernetes", "service_ip": "10.96.0.1"},
        },
        env={},
    )


@pytest.fixture(scope="module")
def plain() -> Plan:
    return plan(settings_of(), "v7")


@pytest.fixture(scope="module")
def full_settings(ca_pem: str, password_file: str) -> Settings:
    return settings_of(username="svc@corp", password_file=password_file, ca_pem=ca_pem)


@pytest.fixture(scope="module")
def full(full_settings: Settings) -> Plan:
    return plan(full_settings, "v8")


def review(pod: dict[str, Any], **request: Any) -> dict[str, Any]:
    """An AdmissionReview v1 for creating ``pod`` in namespace ``shop``."""
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": pod.get("metadata", {}).get("name", ""),
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "oldObject": None,
            "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
            **request,
        },
    }


def patched(pod: dict[str, Any], the_plan: Plan, **request: Any) -> tuple[dict[str, Any], Any]:
    """(the pod after the answer's patch, the answer's response)."""
    body = review(pod, **request)
    response = admit(body, the_plan).review["response"]
    assert response["uid"] == body["request"]["uid"] and response["allowed"] is True
    if "patch" not in response:
        return copy.deepcopy(pod), response
    assert response["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(response["patch"]))
    return jsonpatch.apply_patch(pod, ops), response


def validate(pod: dict[str, Any]) -> None:
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(pod, version, strict=True)


def pod_of(name: str, spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, **metadata}, "spec": spec}


# Pod shapes from kubernetes.io/docs (tasks/inject-data-application, workloads/pods/init-containers,
# tasks/access-application-cluster/communicate-containers-same-pod-shared-volume,
# tasks/configure-pod-container/configure-pod-configmap), lightly trimmed.
SHAPES: dict[str, dict[str, Any]] = {
    "no-env": pod_of("nginx", {"containers": [{"name": "nginx", "image": "nginx:1.14.2"}]}),
    "envars-demo": pod_of(
        "envar-demo",
        {
            "containers": [
                {
                    "name": "envar-demo-container",
                    "image": "gcr.io/google-samples/hello-app:2.0",
                    "env": [
                        {"name": "DEMO_GREETING", "value": "Hello from the environment"},
                        {"name": "DEMO_FAREWELL", "value": "Such a sweet sorrow"},
                    ],
                }
            ]
        },
        labels={"purpose": "demonstrate-envars"},
    ),
    "dependent-envars": pod_of(
        "dependent-envars-demo",
        {
            "containers": [
                {
                    "name": "dependent-envars-demo",
                    "image": "busybox:1.28",
                    "command": ["sh", "-c"],
                    "args": ["printf UNCHANGED_REFERENCE=$UNCHANGED_REFERENCE'\\n'"],
                    "env": [
                        {"name": "SERVICE_PORT", "value": "80"},
                        {"name": "SERVICE_IP", "value": "172.17.0.1"},
                        {"name": "UNCHANGED_REFERENCE", "value": "$(PROTOCOL)://$(SERVICE_IP)"},
                        {"name": "PROTOCOL", "value": "https"},
                    ],
                }
            ]
        },
    ),
    "init-containers": pod_of(
        "myapp-pod",
        {
            "containers": [
                {
                    "name": "myapp-container",
                    "image": "busybox:1.28",
                    "command": ["sh", "-c", "echo The app is running! && sleep 3600"],
                }
            ],
            "initContainers": [
                {
                    "name": "init-myservice",
                    "image": "busybox:1.28",
                    "command": ["sh", "-c", "until nslookup myservice; do sleep 2; done"],
                },
                {
                    "name": "init-mydb",
                    "image": "busybox:1.28",
                    "command": ["sh", "-c", "until nslookup mydb; do sleep 2; done"],
                },
            ],
        },
        labels={"app.kubernetes.io/name": "MyApp"},
    ),
    "shared-volume": pod_of(
        "two-containers",
        {
            "restartPolicy": "Never",
            "volumes": [{"name": "shared-data", "emptyDir": {}}],
            "containers": [
                {
                    "name": "nginx-container",
                    "image": "nginx",
                    "volumeMounts": [{"name": "shared-data", "mountPath": "/usr/share/nginx/html"}],
                },
                {
                    "name": "debian-container",
                    "image": "debian",
                    "volumeMounts": [{"name": "shared-data", "mountPath": "/pod-data"}],
                    "command": ["/bin/sh"],
                    "args": ["-c", "echo Hello from the debian container > /pod-data/index.html"],
                },
            ],
        },
    ),
    "envfrom-configmap": pod_of(
        "dapi-test-pod",
        {
            "containers": [
                {
                    "name": "test-container",
                    "image": "registry.k8s.io/busybox",
                    "command": ["/bin/sh", "-c", "env"],
                    "envFrom": [{"configMapRef": {"name": "special-config"}}],
                    "env": [
                        {
                            "name": "SPECIAL_LEVEL_KEY",
                            "valueFrom": {
                                "configMapKeyRef": {
                                    "name": "special-config",
                                    "key": "SPECIAL_LEVEL",
                                }
                            },
                        }
                    ],
                }
            ],
            "restartPolicy": "Never",
        },
    ),
}
CONFIGMAPS = {"special-config": {"SPECIAL_LEVEL": "very", "SPECIAL_TYPE": "charm"}}


def containers_of(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]


def expected_env(settings: Settings) -> dict[str, str]:
    """What ``egress render env --format secret`` gives a container (credentials included)."""
    doc = __import__("yaml").safe_load(render(settings, RenderOptions(format="secret")).text)
    return {str(k): str(v) for k, v in doc["stringData"].items()}


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("which", ["plain", "full"])
def test_every_container_gets_what_render_env_says(
    shape: str, which: str, request: pytest.FixtureRequest, full_settings: Settings
) -> None:
    the_plan: Plan = request.getfixturevalue(which)
    settings = full_settings if which == "full" else settings_of()
    pod = SHAPES[shape]
    before = copy.deepcopy(pod)
    after, response = patched(pod, the_plan)
    assert pod == before, "the review's pod is not changed in place"
    validate(after)
    assert after["metadata"]["annotations"][INJECTED_ANNOTATION] == the_plan.version
    wanted = expected_env(settings)
    for old, new in zip(containers_of(pod), containers_of(after), strict=True):
        env = container_env(new, secrets=SECRETS, configmaps=CONFIGMAPS)
        for name, value in wanted.items():
            assert env[name] == value, (new["name"], name)
        assert env["EGRESS_SETTINGS_FILE"] == "/etc/egress/settings/egress.yaml"
        # what the container had is still there, in its order, before egress's entries
        assert new.get("env", [])[: len(old.get("env", []))] == old.get("env", [])
        assert new.get("volumeMounts", [])[: len(old.get("volumeMounts", []))] == old.get(
            "volumeMounts", []
        )
        mounts = {m["mountPath"]: m["name"] for m in new["volumeMounts"]}
        assert mounts["/etc/egress/settings"] == "egress-settings"
        if which == "full":
            assert mounts[CA_DIR] == "egress-ca" and mounts["/etc/egress/proxy"] == "egress-proxy"
            assert PASSWORD in env[PASSWORD_VARIABLE]
            names = [e["name"] for e in new["env"]]
            assert names.index(PASSWORD_VARIABLE) < names.index("HTTPS_PROXY")
        else:
            assert CA_DIR not in mounts and PASSWORD_VARIABLE not in env
    # the user's own variables still read as before (dependent ones too)
    if shape == "dependent-envars":
        env = container_env(after["spec"]["containers"][0], secrets=SECRETS)
        assert env["UNCHANGED_REFERENCE"] == "$(PROTOCOL)://172.17.0.1"
    assert "warnings" not in response or shape == "envfrom-configmap"


def test_credentials_are_only_a_secret_reference(full: Plan) -> None:
    after, response = patched(SHAPES["init-containers"], full)
    text = json.dumps(after) + json.dumps(response)
    assert PASSWORD not in text
    for c in containers_of(after):
        first = c["env"][0]
        assert first == {
            "name": PASSWORD_VARIABLE,
            "valueFrom": {"secretKeyRef": {"name": "egress-proxy", "key": "password"}},
        }
        https = next(e for e in c["env"] if e["name"] == "HTTPS_PROXY")
        assert (
            https["value"] == "http://svc%40corp:$(EGRESS_PROXY_PASSWORD)@proxy.corp.example:3128"
        )


def test_the_ca_variables_point_into_the_mounted_configmap(full: Plan) -> None:
    after, _ = patched(SHAPES["no-env"], full)
    env = container_env(after["spec"]["containers"][0], secrets=SECRETS)
    assert env["NODE_EXTRA_CA_CERTS"] == "/etc/egress/ca/custom-ca.pem"  # adds to Node's roots
    assert env["SSL_CERT_FILE"] == env["REQUESTS_CA_BUNDLE"] == "/etc/egress/ca/ca-bundle.pem"
    volumes = {v["name"]: v for v in after["spec"]["volumes"]}
    assert volumes["egress-ca"]["configMap"] == {
        "name": "egress-ca",
        "items": [
            {"key": "ca.crt", "path": "custom-ca.pem"},
            {"key": "ca-bundle.crt", "path": "ca-bundle.pem"},
        ],
    }


def test_a_pod_with_no_env_gets_the_array_added_first(plain: Plan) -> None:
    body = review(SHAPES["no-env"])
    ops = admit(body, plain).patch
    env_ops = [op for op in ops if op["path"].startswith("/spec/containers/0/env")]
    assert len(env_ops) == 1
    assert env_ops[0]["op"] == "add" and env_ops[0]["path"] == "/spec/containers/0/env"
    assert isinstance(env_ops[0]["value"], list) and env_ops[0]["value"]
    assert ops[0] == {"op": "add", "path": "/spec/volumes", "value": list(plain.volumes)}


def test_a_pod_with_env_gets_entries_appended(plain: Plan) -> None:
    ops = admit(review(SHAPES["envars-demo"]), plain).patch
    env_ops = [op for op in ops if "/env" in op["path"]]
    assert env_ops and all(op["path"] == "/spec/containers/0/env/-" for op in env_ops)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_a_pod_admitted_twice_gets_no_second_patch(shape: str, full: Plan) -> None:
    once, _ = patched(SHAPES[shape], full)
    body = review(once)
    again = admit(body, full)
    assert again.patch == []
    assert again.review["response"] == {"uid": body["request"]["uid"], "allowed": True}


def test_a_sidecar_added_after_injection_is_injected_on_reinvocation(plain: Plan) -> None:
    once, _ = patched(SHAPES["envars-demo"], plain)
    once["spec"]["containers"].append({"name": "mesh-proxy", "image": "envoy"})
    twice, _ = patched(once, plain)
    validate(twice)
    sidecar = container_env(twice["spec"]["containers"][1])
    assert sidecar["HTTPS_PROXY"] == "http://proxy.corp.example:3128"
    assert twice["spec"]["containers"][0] == once["spec"]["containers"][0]
    assert twice["metadata"]["annotations"] == once["metadata"]["annotations"]


def own_proxy_pod(**annotations: str) -> dict[str, Any]:
    return pod_of(
        "own",
        {
            "containers": [
                {
                    "name": "app",
                    "image": "app",
                    "env": [
                        {"name": "no_proxy", "value": "internal.example"},
                        {"name": "SSL_CERT_FILE", "value": "/certs/mine.pem"},
                    ],
                },
                {"name": "other", "image": "other"},
            ]
        },
        annotations=annotations,
    )


def test_a_containers_own_value_is_kept_with_a_warning(full: Plan) -> None:
    after, response = patched(own_proxy_pod(), full)
    validate(after)
    app = container_env(after["spec"]["containers"][0], secrets=SECRETS)
    assert app["no_proxy"] == "internal.example" and app["SSL_CERT_FILE"] == "/certs/mine.pem"
    # the proxy variables are a unit: none of egress's are mixed with the container's own
    assert not {"HTTP_PROXY", "https_proxy", "NO_PROXY", PASSWORD_VARIABLE} & set(app)
    assert app["REQUESTS_CA_BUNDLE"] == "/etc/egress/ca/ca-bundle.pem"
    other = container_env(after["spec"]["containers"][1], secrets=SECRETS)
    assert other["NO_PROXY"] == other["no_proxy"] != "internal.example"
    warnings = response["warnings"]
    assert any('"app"' in w and "no_proxy" in w for w in warnings), warnings
    assert any('"app"' in w and "SSL_CERT_FILE" in w for w in warnings), warnings
    assert all(len(w) <= 256 for w in warnings)


def test_override_replaces_the_containers_own_values(full: Plan, full_settings: Settings) -> None:
    after, response = patched(own_proxy_pod(**{"egress.io/override": "true"}), full)
    validate(after)
    app = container_env(after["spec"]["containers"][0], secrets=SECRETS)
    wanted = expected_env(full_settings)
    assert {k: app[k] for k in wanted} == wanted
    names = [e["name"] for e in after["spec"]["containers"][0]["env"]]
    assert len(names) == len(set(names)), "no variable is listed twice"
    assert "warnings" not in response
    again = admit(review(after), full)
    assert again.patch == []


def test_the_opt_out_annotation_is_honoured(full: Plan) -> None:
    pod = pod_of(
        "opted-out",
        {"containers": [{"name": "c", "image": "i"}]},
        annotations={"egress.io/inject": "false"},
    )
    _, response = patched(pod, full)
    assert "patch" not in response and "warnings" not in response


def test_an_odd_inject_annotation_injects_and_says_so(plain: Plan) -> None:
    pod = pod_of(
        "odd", {"containers": [{"name": "c", "image": "i"}]}, annotations={"egress.io/inject": "no"}
    )
    after, response = patched(pod, plain)
    assert "HTTP_PROXY" in container_env(after["spec"]["containers"][0])
    assert any('only "false" opts out' in w for w in response["warnings"])
    assert after["metadata"]["annotations"]["egress.io/inject"] == "no"


def test_annotation_keys_are_escaped_in_the_patch(plain: Plan) -> None:
    pod = pod_of("annotated", {"containers": [{"name": "c", "image": "i"}]}, annotations={"a": "b"})
    ops = admit(review(pod), plain).patch
    assert {"op": "add", "path": "/metadata/annotations/egress.io~1injected", "value": "v7"} in ops
    assert json_pointer("a~b", "c/d") == "/a~0b/c~1d"


def test_a_mount_at_egress_path_is_kept(plain: Plan) -> None:
    pod = pod_of(
        "mine",
        {
            "volumes": [{"name": "mine", "emptyDir": {}}],
            "containers": [
                {
                    "name": "c",
                    "image": "i",
                    "volumeMounts": [{"name": "mine", "mountPath": "/etc/egress/settings"}],
                }
            ],
        },
    )
    after, response = patched(pod, plain)
    validate(after)  # two mounts at one path would be refused by the API server
    c = after["spec"]["containers"][0]
    assert [m["name"] for m in c["volumeMounts"]] == ["mine"]
    assert "EGRESS_SETTINGS_FILE" not in container_env(c)
    assert any("/etc/egress/settings" in w for w in response["warnings"])


def test_a_volume_named_like_egress_is_not_replaced(plain: Plan) -> None:
    pod = pod_of(
        "clash",
        {
            "volumes": [{"name": "egress-settings", "emptyDir": {}}],
            "containers": [{"name": "c", "image": "i"}],
        },
    )
    after, response = patched(pod, plain)
    validate(after)
    assert after["spec"]["volumes"] == pod["spec"]["volumes"]
    assert any("egress-settings" in w for w in response["warnings"])


def test_dry_run_gets_the_same_patch(plain: Plan) -> None:
    body = review(SHAPES["init-containers"], dryRun=True)
    result = admit(body, plain)
    assert result.dry_run and result.patch == admit(review(SHAPES["init-containers"]), plain).patch


def test_the_password_that_a_url_cannot_hold_is_warned_about(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("p@ss:w/rd\n")
    the_plan = plan(settings_of(username="bob", password_file=str(pw)), "v1")
    _, response = patched(SHAPES["no-env"], the_plan)
    assert any("percent-encoded" in w for w in response["warnings"])
    assert "p@ss" not in json.dumps(response)


def test_a_disabled_proxy_injects_no_proxy_variables() -> None:
    settings = load_settings_from_mapping(
        {"proxy": {"url": "http://proxy:3128", "enabled": False}}, env={}
    )
    after, _ = patched(SHAPES["no-env"], plan(settings, "v1"))
    env = container_env(after["spec"]["containers"][0])
    assert not {"HTTP_PROXY", "NO_PROXY"} & set(env) and "EGRESS_SETTINGS_FILE" in env


# -- what is not a pod creation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "says"),
    [
        pytest.param(
            {"kind": {"group": "apps", "version": "v1", "kind": "Deployment"}},
            "not a Pod",
            id="deployment",
        ),
        pytest.param({"operation": "UPDATE"}, "only CREATE", id="update"),
        pytest.param({"subResource": "ephemeralcontainers"}, "not a Pod", id="ephemeral"),
        pytest.param({"object": "nope"}, "not a Pod object", id="object-string"),
        pytest.param({"object": {"spec": {}}}, "spec.containers", id="no-containers"),
        pytest.param(
            {"object": {"spec": {"containers": [{"name": "c", "env": "x"}]}}},
            "env is not a list",
            id="env-string",
        ),
    ],
)
def test_what_is_not_a_pod_creation_is_allowed_unchanged(
    change: dict[str, Any], says: str, plain: Plan
) -> None:
    body = review(SHAPES["no-env"])
    body["request"].update(change)
    response = admit(body, plain).review["response"]
    assert response["allowed"] is True and "patch" not in response
    assert response["uid"] == body["request"]["uid"]
    assert any(says in w for w in response["warnings"]), response["warnings"]


@pytest.mark.parametrize(
    ("raw", "status", "says"),
    [
        pytest.param(b"{not json", 400, "not JSON", id="not-json"),
        pytest.param(b"[1, 2]", 400, "not a JSON object", id="array"),
        pytest.param(b"[" * 100_000, 400, "not JSON", id="deep"),
        pytest.param(
            json.dumps({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"}),
            400,
            "admissionReviewVersions",
            id="v1beta1",
        ),
        pytest.param(
            json.dumps({"apiVersion": "v1", "kind": "Pod"}),
            400,
            "not admission.k8s.io/v1",
            id="pod",
        ),
        pytest.param(
            json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}),
            400,
            "no request",
            id="no-request",
        ),
        pytest.param(
            json.dumps(
                {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}}
            ),
            400,
            "no uid",
            id="no-uid",
        ),
        pytest.param(b" " * (MAX_BODY + 1), 413, "more than", id="oversized"),
    ],
)
def test_a_body_that_is_no_review_is_refused_in_one_sentence(
    raw: bytes | str, status: int, says: str, plain: Plan
) -> None:
    data = raw.encode() if isinstance(raw, str) else raw
    with pytest.raises(BadReview) as caught:
        answer(data, plain)
    assert caught.value.status == status
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_parse_review_gives_the_uid() -> None:
    body = review(SHAPES["no-env"])
    parsed, uid = parse_review(json.dumps(body).encode())
    assert uid == body["request"]["uid"] and parsed == body


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_patch_text_is_the_json_of_the_ops(shape: str, full: Plan) -> None:
    result = admit(review(SHAPES[shape]), full)
    text = base64.b64decode(result.review["response"]["patch"])
    assert json.loads(text) == result.patch
    assert text == json.dumps(result.patch, separators=(",", ":")).encode()
