"""``egress webhook`` as a real process over real TLS (a trustme CA), asked with httpx.

The patch it answers is applied to the pod; each container's environment is then built as
kubelet builds it (the Secret's password pasted in, ``$(EGRESS_PROXY_PASSWORD)`` expanded) and
handed to curl (through the real Squid, which wants that password), to CPython's urllib and
requests, and to Node's proxy-from-env: each routes every destination as ``egress explain``
does. Bad requests get one clear sentence and leave the server serving.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonpatch  # type: ignore[import-untyped]
import pytest
import trustme
import yaml
from tests.support import names
from tests.support.kube_env import container_env
from tests.support.origin import FakeOrigin
from tests.support.runtimes import NodeWorker, python_routes
from tests.support.squid import PROXY_PASSWORD, PROXY_USER, SquidProxy

from egress.settings import load_yaml

pytestmark = pytest.mark.integration

EGRESS = str(Path(sys.executable).with_name("egress"))
URL_LINE = re.compile(r"^egress webhook: (https://127\.0\.0\.1:\d+)/mutate$", re.M)
SECRETS = {"egress-proxy": {"password": PROXY_PASSWORD}}

# destinations where every runtime reads NO_PROXY alike (the differences are
# test_render_env_runtimes.py's, and render env warns about them)
URLS = [
    f"http://{names.AUTH_SAAS}/",
    f"https://{names.API_SAAS}/",
    f"https://{names.BIGQUERY}/",
    "https://notexample-corp.test/",
    f"https://{names.EXCLUDED_CORP}/",
    "https://example-corp.test/",
    "https://api.platform.svc.cluster.local/",
    "https://api.platform.svc/",
    "http://localhost:8080/",
    "http://127.0.0.1:8080/",
    "https://10.96.0.1/",
]


class Webhook:
    """One ``egress webhook`` process on a free loopback port, stopped by PID."""

    def __init__(self, config: Path, cert: Path, key: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [
                EGRESS,
                "webhook",
                "--config",
                str(config),
                "--tls-cert",
                str(cert),
                "--tls-key",
                str(key),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={k: v for k, v in os.environ.items() if "proxy" not in k.lower()},
        )
        assert self.proc.stdout is not None
        printed = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "stop with Ctrl-C" not in printed:
            line = self.proc.stdout.readline()
            if not line:
                break
            printed += line
        found = URL_LINE.search(printed)
        if not found:
            self.stop()
            raise AssertionError(f"the webhook did not start: {printed!r} {self.stderr()!r}")
        self.url = found.group(1)
        self.printed = printed

    def stderr(self) -> str:
        return self.proc.stderr.read() if self.proc.stderr else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA and the webhook Service's certificate (its DNS name, and 127.0.0.1 for the test)."""
    d = tmp_path_factory.mktemp("webhook-tls")
    ca = trustme.CA(organization_name="egress tests", organization_unit_name="webhook CA")
    leaf = ca.issue_cert("egress-webhook.egress.svc", "127.0.0.1")
    paths = {"ca": d / "ca.pem", "cert": d / "cert.pem", "key": d / "key.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    paths["cert"].write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(paths["key"]))
    return paths


@pytest.fixture(scope="module")
def config(squid: SquidProxy, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("webhook-settings")
    (d / "password").write_text(PROXY_PASSWORD + "\n")
    path = d / "egress.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "proxy": {
                    "enabled": True,
                    "url": squid.http_auth_url,
                    "username": PROXY_USER,
                    "password_file": str(d / "password"),
                },
                "excluded_domains": [".example-corp.test", "10.0.0.0/8"],
                "deployment": {"kind": "kubernetes", "service_ip": "10.96.0.1"},
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def webhook(config: Path, tls: dict[str, Path]) -> Iterator[Webhook]:
    hook = Webhook(config, tls["cert"], tls["key"])
    try:
        yield hook
    finally:
        hook.stop()


@pytest.fixture
def client(webhook: Webhook, tls: dict[str, Path]) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=webhook.url, verify=ssl.create_default_context(cafile=str(tls["ca"])), timeout=10.0
    ) as c:
        yield c


def review(pod: dict[str, Any], kind: str = "Pod") -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": kind},
            "resource": {"group": "", "version": "v1", "resource": kind.lower() + "s"},
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {"username": "admin"},
            "object": pod,
            "dryRun": False,
        },
    }


POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "web", "namespace": "shop"},
    "spec": {
        "initContainers": [{"name": "migrate", "image": "app:1", "command": ["migrate"]}],
        "containers": [
            {"name": "app", "image": "app:1", "env": [{"name": "MODE", "value": "prod"}]},
            {"name": "sidecar", "image": "envoy"},
        ],
    },
}


def injected(client: httpx.Client, pod: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    body = review(pod)
    answer = client.post("/mutate", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    out = answer.json()
    assert out["apiVersion"] == "admission.k8s.io/v1" and out["kind"] == "AdmissionReview"
    response = out["response"]
    assert response["uid"] == body["request"]["uid"] and response["allowed"] is True
    ops = json.loads(base64.b64decode(response["patch"])) if "patch" in response else []
    return jsonpatch.apply_patch(pod, ops), response


def base_env(home: Path) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LC_ALL": "C.UTF-8"}


def test_healthz_answers_over_tls(client: httpx.Client, config: Path) -> None:
    answer = client.get("/healthz")
    assert answer.status_code == 200 and answer.json()["status"] == "ok"
    stat = config.stat()
    assert answer.json()["settings"] == f"file:{stat.st_mtime_ns}:{stat.st_size}"
    assert answer.http_version == "HTTP/1.1"


def test_a_client_without_the_ca_is_refused(webhook: Webhook) -> None:
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{webhook.url}/healthz", timeout=10.0)  # system roots only


def test_the_injected_environment_routes_as_egress_explain_says(
    client: httpx.Client, config: Path
) -> None:
    pod, response = injected(client, POD)
    assert PROXY_PASSWORD not in json.dumps(response)
    router = load_yaml(config).router()
    wanted = [router.decide(url).route for url in URLS]
    assert "proxy" in wanted and "direct" in wanted
    with NodeWorker() as node:
        for container in [*pod["spec"]["initContainers"], *pod["spec"]["containers"]]:
            env = container_env(container, secrets=SECRETS)
            proxy_env = {k: v for k, v in env.items() if k.lower().endswith("_proxy")}
            assert PROXY_PASSWORD in proxy_env["HTTPS_PROXY"]
            routes = python_routes(proxy_env, URLS)
            assert routes["urllib"] == wanted, container["name"]
            assert routes["requests"] == wanted, container["name"]
            assert node.env_routes(proxy_env, URLS) == wanted, container["name"]


def test_curl_with_the_injected_environment_passes_squids_password_check(
    client: httpx.Client, squid: SquidProxy, origin: FakeOrigin, tmp_path: Path
) -> None:
    pod, _ = injected(client, POD)
    env = {**base_env(tmp_path), **container_env(pod["spec"]["containers"][0], secrets=SECRETS)}
    env.pop("SSL_CERT_FILE", None)  # no CA configured here; nothing to mount

    def curl(url: str, *extra: str) -> str:
        done = subprocess.run(
            [
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "10",
                *extra,
                url,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return done.stdout.strip()

    mark = squid.access_log_mark()
    path = f"/webhook-{uuid.uuid4().hex[:12]}"
    url = origin.url(names.AUTH_SAAS, path, tls=False)
    assert curl(url) == "200"
    line = squid.wait_for_access_log(lambda e: e.url == url, since=mark)
    assert line.user == PROXY_USER and line.code == 200

    # an excluded destination goes straight to the origin (pinned, never looked up)
    path = f"/webhook-direct-{uuid.uuid4().hex[:12]}"
    host = names.EXCLUDED_CORP
    direct = f"http://{host}:{origin.http_port}{path}"
    assert curl(direct, "--resolve", f"{host}:{origin.http_port}:127.0.0.1") == "200"
    echo = next(e for e in origin.received() if e["path"] == path)
    assert echo["via"] is None


def test_a_pod_admitted_twice_gets_no_second_patch(client: httpx.Client) -> None:
    once, first = injected(client, POD)
    assert "patch" in first
    twice, second = injected(client, once)
    assert twice == once and "patch" not in second and "warnings" not in second


def test_keep_alive_serves_many_reviews_on_one_connection(client: httpx.Client) -> None:
    for _ in range(20):
        _, response = injected(client, POD)
        assert response["patchType"] == "JSONPatch"


def test_a_deployment_is_allowed_unchanged_with_a_warning(client: httpx.Client) -> None:
    body = review({"apiVersion": "apps/v1", "kind": "Deployment"}, kind="Deployment")
    body["request"]["kind"]["group"] = "apps"
    out = client.post("/mutate", json=body).json()["response"]
    assert out["allowed"] is True and "patch" not in out
    assert any("not a Pod" in w for w in out["warnings"])


@pytest.mark.parametrize(
    ("content", "status", "says"),
    [
        pytest.param(b"{oops", 400, "not JSON", id="malformed"),
        pytest.param(b"", 400, "not JSON", id="empty"),
        pytest.param(json.dumps({"kind": "Pod"}).encode(), 400, "AdmissionReview", id="a-pod"),
        pytest.param(b"x" * (3 * 1024 * 1024 + 1), 413, "more than", id="oversized"),
    ],
)
def test_a_bad_body_gets_one_sentence_and_the_server_keeps_serving(
    client: httpx.Client, content: bytes, status: int, says: str
) -> None:
    answer = client.post("/mutate", content=content)
    assert answer.status_code == status
    assert says in answer.json()["error"]
    assert client.get("/healthz").status_code == 200


def test_wrong_method_and_path(client: httpx.Client) -> None:
    assert client.get("/mutate").status_code == 405
    assert client.post("/nothing", json={}).status_code == 404


def test_a_changed_settings_file_reaches_new_pods(
    squid: SquidProxy, tls: dict[str, Path], tmp_path: Path
) -> None:
    path = tmp_path / "egress.yaml"
    path.write_text(yaml.safe_dump({"proxy": {"url": squid.http_url}}))
    hook = Webhook(path, tls["cert"], tls["key"])
    try:
        with httpx.Client(
            base_url=hook.url,
            verify=ssl.create_default_context(cafile=str(tls["ca"])),
            timeout=10.0,
        ) as c:
            pod, _ = injected(c, POD)
            assert ".late.example" not in container_env(pod["spec"]["containers"][0])["NO_PROXY"]
            path.write_text(
                yaml.safe_dump(
                    {"proxy": {"url": squid.http_url}, "excluded_domains": [".late.example"]}
                )
            )
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                pod, _ = injected(c, POD)
                if ".late.example" in container_env(pod["spec"]["containers"][0])["NO_PROXY"]:
                    break
                time.sleep(0.3)
            else:
                raise AssertionError("the webhook never read the changed file")
            stat = path.stat()
            assert pod["metadata"]["annotations"]["egress.io/injected"] == (
                f"file:{stat.st_mtime_ns}:{stat.st_size}"
            )
    finally:
        hook.stop()


def test_bad_tls_files_and_a_port_in_use_are_one_sentence(
    config: Path, tls: dict[str, Path], tmp_path: Path
) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [EGRESS, "webhook", "--config", str(config), "--host", "127.0.0.1", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    missing = run("--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", str(tls["key"]))
    assert missing.returncode == 2 and "nope.pem" in missing.stderr
    assert "Traceback" not in missing.stderr
    swapped = run("--tls-cert", str(tls["key"]), "--tls-key", str(tls["cert"]))
    assert swapped.returncode == 2 and "cannot serve TLS" in swapped.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        busy = run(
            "--tls-cert", str(tls["cert"]), "--tls-key", str(tls["key"]), "--port", str(port)
        )
    assert busy.returncode == 2
    last = busy.stderr.strip().splitlines()[-2:]  # startup notes on the settings come first
    assert last == [
        f"egress: error: 127.0.0.1:{port} is already in use",
        "  hint: stop what listens there, or pass --port P",
    ], busy.stderr
