"""The rendered env file, fed to real runtimes the way they read it.

* The dotenv is sourced by bash (``set -a; . file``), as systemd and docker compose read it.
* Python: ``urllib.request.getproxies_environment``/``proxy_bypass_environment`` and
  ``requests.utils.get_environ_proxies`` in a subprocess with that environment. Where they differ
  from egress, the rendered warnings must name them.
* curl against the real Squid: a proxied request shows up in Squid's access log, an excluded
  destination reaches the origin directly and does not.

No real name is ever resolved: direct destinations are 127.0.0.1 literals or fake names pinned to
127.0.0.1 with ``curl --resolve``; proxied fake names are resolved only by Squid's hosts_file.
Every subprocess starts from an environment holding only PATH, HOME, the locale and the rendered
variables, so nothing inherited can bypass the proxy. Node's own ``NODE_USE_ENV_PROXY`` needs
Node 24 (this machine has Node 20); how Node clients such as axios read the variables
(proxy-from-env) is checked, with curl and Python again, over generated settings and
destinations in ``test_artifacts_agree.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support import names
from tests.support.certs import CertBundle
from tests.support.origin import FakeOrigin
from tests.support.squid import PROXY_PASSWORD, PROXY_USER, SquidProxy

from egress.render import RenderOptions
from egress.render.env import render
from egress.settings import Settings, load_settings_from_mapping

pytestmark = pytest.mark.integration

EXCLUDED = [".example-corp.test", "10.0.0.0/8"]
SERVICE_IP = "10.96.0.1"
SPECIAL_USER = "bob"
SPECIAL_PASSWORD = "p@ss:w/rd%#?&="


def settings_for(proxy: Mapping[str, Any]) -> Settings:
    return load_settings_from_mapping(
        {
            "proxy": dict(proxy),
            "excluded_domains": EXCLUDED,
            "deployment": {"kind": "kubernetes", "service_ip": SERVICE_IP},
        },
        env={},
    )


def base_env(home: Path) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LC_ALL": "C.UTF-8"}


def parse_dotenv(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value[1:-1] if value[:1] == "'" and value[-1:] == "'" else value
    return out


class Rendered:
    """A rendered dotenv on disk, and the way each runtime is started with it."""

    def __init__(self, settings: Settings, directory: Path, fmt: str = "dotenv") -> None:
        self.artifact = render(settings, RenderOptions(format=fmt))
        self.directory = directory
        if fmt == "secret":
            doc = yaml.safe_load(self.artifact.text)
            self.variables = {str(k): str(v) for k, v in doc["stringData"].items()}
        else:
            self.variables = parse_dotenv(self.artifact.text)
        self.path = directory / f"egress-{uuid.uuid4().hex[:8]}.env"
        self.path.write_text(self.artifact.text)
        # the safety net: nothing runs unless the rendered env really names the proxy
        assert self.variables.get("http_proxy") and self.variables.get("https_proxy")

    def run(self, argv: Sequence[str], *, source: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` with the rendered variables: sourced by bash from the dotenv, or (for a
        Secret, as Kubernetes injects stringData) given directly."""
        if source:
            command = ["bash", "-c", 'set -a && . "$0" && set +a && exec "$@"', str(self.path)]
            env = base_env(self.directory)
        else:
            command = []
            env = {**base_env(self.directory), **self.variables}
        return subprocess.run(
            [*command, *argv], env=env, capture_output=True, text=True, timeout=60, check=False
        )

    def curl(self, url: str, *extra: str, source: bool = True) -> str:
        """curl's HTTP status for ``url`` (``000`` when it could not connect)."""
        proc = self.run(
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
            source=source,
        )
        return proc.stdout.strip()


def pin(name: str, port: int) -> tuple[str, str]:
    """``--resolve`` so curl never looks ``name`` up, should it go direct."""
    return ("--resolve", f"{name}:{port}:127.0.0.1")


def marker(prefix: str) -> str:
    return f"/{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("env-runtimes")


@pytest.fixture(scope="module")
def http_env(squid: SquidProxy, workdir: Path) -> Rendered:
    return Rendered(settings_for({"url": squid.http_url}), workdir)


@pytest.fixture(scope="module")
def https_env(squid: SquidProxy, workdir: Path) -> Rendered:
    return Rendered(settings_for({"url": squid.https_url}), workdir)


# -- the file reads the same everywhere -------------------------------------------------------


@pytest.mark.parametrize("which", ["http_env", "https_env"])
def test_bash_reads_what_the_dotenv_says(which: str, request: pytest.FixtureRequest) -> None:
    rendered: Rendered = request.getfixturevalue(which)
    proc = rendered.run(["env", "-0"])
    assert proc.returncode == 0, proc.stderr
    seen = dict(item.split("=", 1) for item in proc.stdout.split("\0") if item)
    for key, value in rendered.variables.items():
        assert seen[key] == value, key


# -- Python runtimes ---------------------------------------------------------------------------

PY_PROBE = r"""
import json, sys, urllib.parse, urllib.request
import requests.utils
out = {"proxies": urllib.request.getproxies_environment(), "urls": {}}
for url in json.loads(sys.argv[1]):
    host = urllib.request.Request(url).host  # what ProxyHandler asks about
    scheme = urllib.parse.urlsplit(url).scheme
    out["urls"][url] = {
        "urllib": "direct" if urllib.request.proxy_bypass_environment(host) else "proxy",
        "requests": "proxy" if requests.utils.get_environ_proxies(url).get(scheme) else "direct",
    }
print(json.dumps(out))
"""

# url, egress, urllib, requests (observed: CPython 3.11, requests 2.34)
PYTHON_TABLE = [
    ("http://auth.example-saas.test/", "proxy", "proxy", "proxy"),
    ("https://auth.example-saas.test/", "proxy", "proxy", "proxy"),
    ("http://127.0.0.1:8080/", "direct", "direct", "direct"),
    ("http://127.0.0.2/", "direct", "proxy", "direct"),  # CIDR: urllib ignores it
    ("http://localhost:8080/", "direct", "direct", "direct"),
    ("http://[::1]:8080/", "direct", "proxy", "direct"),  # bare ::1: urllib wants [::1]
    ("https://api.platform.svc.cluster.local/", "direct", "direct", "direct"),
    ("https://svc.cluster.local/", "direct", "direct", "direct"),
    ("https://api.platform.svc/", "direct", "direct", "direct"),
    ("https://example-corp.test/", "direct", "direct", "direct"),
    ("https://build.example-corp.test/", "direct", "direct", "direct"),
    ("https://notexample-corp.test/", "proxy", "proxy", "proxy"),
    ("https://10.1.2.3/", "direct", "proxy", "direct"),  # CIDR: urllib ignores it
    (f"https://{SERVICE_IP}/", "direct", "direct", "direct"),
    ("https://acme.cloud.databricks.com/", "direct", "direct", "direct"),
    ("https://acme.snowflakecomputing.com/", "proxy", "proxy", "proxy"),
    ("https://bigquery.googleapis.com/", "proxy", "proxy", "proxy"),
]
RUNTIME_NAMES = {"urllib": "Python urllib", "requests": "requests"}


@pytest.fixture(scope="module")
def python_probe(http_env: Rendered) -> dict[str, Any]:
    urls = [row[0] for row in PYTHON_TABLE]
    proc = http_env.run([sys.executable, "-c", PY_PROBE, json.dumps(urls)])
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_python_reads_the_proxy_variables(python_probe: dict[str, Any], squid: SquidProxy) -> None:
    proxies = python_probe["proxies"]
    assert proxies["http"] == proxies["https"] == squid.http_url
    assert ".example-corp.test" in proxies["no"]


@pytest.mark.parametrize(
    ("url", "egress", "urllib", "requests_"), PYTHON_TABLE, ids=[r[0] for r in PYTHON_TABLE]
)
def test_python_runtimes_route_as_expected(
    python_probe: dict[str, Any],
    http_env: Rendered,
    url: str,
    egress: str,
    urllib: str,
    requests_: str,
) -> None:
    settings = settings_for({"url": "http://127.0.0.1:3128"})
    assert settings.router().decide(url).route == egress
    observed = python_probe["urls"][url]
    assert observed == {"urllib": urllib, "requests": requests_}
    warnings = " ".join(http_env.artifact.warnings)
    for runtime, route in observed.items():
        if route != egress:  # a difference egress knows about and names
            assert RUNTIME_NAMES[runtime] in warnings


def test_python_sees_snowflake_direct_behind_an_https_proxy(https_env: Rendered) -> None:
    url = "https://acme.snowflakecomputing.com/"
    proc = https_env.run([sys.executable, "-c", PY_PROBE, json.dumps([url])])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["urls"][url] == {"urllib": "direct", "requests": "direct"}


# -- curl against Squid -----------------------------------------------------------------------


def test_curl_plain_http_goes_through_squid(
    http_env: Rendered, squid: SquidProxy, origin: FakeOrigin
) -> None:
    mark = squid.access_log_mark()
    path = marker("env-curl-http")
    url = origin.url(names.AUTH_SAAS, path, tls=False)
    status = http_env.curl(url, *pin(names.AUTH_SAAS, origin.http_port))
    assert status == "200"
    line = squid.wait_for_access_log(lambda entry: entry.url == url, since=mark)
    assert line.method == "GET" and line.port == squid.http_port
    echo = next(e for e in origin.received() if e["path"] == path)
    assert echo["via"] is not None


def test_curl_https_tunnels_through_squid(
    http_env: Rendered, squid: SquidProxy, origin: FakeOrigin, certs: CertBundle
) -> None:
    mark = squid.access_log_mark()
    path = marker("env-curl-https")
    url = origin.url(names.API_SAAS, path)
    status = http_env.curl(
        url, "--cacert", str(certs.origin_ca), *pin(names.API_SAAS, origin.https_port)
    )
    assert status == "200"
    target = f"{names.API_SAAS}:{origin.https_port}"
    line = squid.wait_for_access_log(
        lambda e: e.method == "CONNECT" and e.url == target, since=mark
    )
    assert line.code == 200
    echo = next(e for e in origin.received() if e["path"] == path)
    assert echo["sni"] == names.API_SAAS


def _assert_not_proxied(
    rendered: Rendered, squid: SquidProxy, origin: FakeOrigin, mark: int, needle: str
) -> None:
    """A later proxied request is logged; nothing before it mentions ``needle``."""
    sentinel = origin.url(names.AUTH_SAAS, marker("env-sentinel"), tls=False)
    assert rendered.curl(sentinel, *pin(names.AUTH_SAAS, origin.http_port)) == "200"
    squid.wait_for_access_log(lambda e: e.url == sentinel, since=mark)
    seen = [e.url for e in squid.access_log_lines(since=mark)]
    assert not [u for u in seen if needle in u], seen


@pytest.mark.parametrize(
    ("host", "pinned"),
    [
        pytest.param("127.0.0.1", False, id="loopback-literal"),
        pytest.param(names.EXCLUDED_CORP, True, id="excluded-domain"),
        pytest.param("api.platform.svc.cluster.local", True, id="svc-cluster-local"),
        pytest.param("api.platform.svc", True, id="svc"),
    ],
)
def test_curl_excluded_destinations_go_direct(
    http_env: Rendered, squid: SquidProxy, origin: FakeOrigin, host: str, pinned: bool
) -> None:
    mark = squid.access_log_mark()
    path = marker("env-curl-direct")
    url = f"http://{host}:{origin.http_port}{path}"
    extra = pin(host, origin.http_port) if pinned else ()
    assert http_env.curl(url, *extra) == "200"
    echo = next(e for e in origin.received() if e["path"] == path)
    assert echo["via"] is None and echo["client"] == "127.0.0.1"
    assert echo["host_header"] == f"{host}:{origin.http_port}"
    _assert_not_proxied(http_env, squid, origin, mark, path)


def test_curl_reads_the_loopback_cidr(
    http_env: Rendered, squid: SquidProxy, origin: FakeOrigin
) -> None:
    """127.0.0.2 is covered only by 127.0.0.0/8: curl (>= 7.86) goes direct and finds nothing
    listening there (origin binds 127.0.0.1), instead of asking Squid."""
    mark = squid.access_log_mark()
    assert http_env.curl(f"http://127.0.0.2:{origin.http_port}/env-cidr") == "000"
    _assert_not_proxied(http_env, squid, origin, mark, "127.0.0.2")


def test_curl_through_the_https_proxy_and_snowflake_around_it(
    https_env: Rendered, squid: SquidProxy, origin: FakeOrigin, certs: CertBundle
) -> None:
    tls = ("--proxy-cacert", str(certs.proxy_ca), "--cacert", str(certs.origin_ca))
    mark = squid.access_log_mark()
    path = marker("env-curl-tls-proxy")
    url = origin.url(names.BIGQUERY, path)
    assert https_env.curl(url, *tls, *pin(names.BIGQUERY, origin.https_port)) == "200"
    target = f"{names.BIGQUERY}:{origin.https_port}"
    line = squid.wait_for_access_log(lambda e: e.url == target, since=mark)
    assert line.port == squid.https_port  # TLS to Squid, CONNECT inside it

    mark = squid.access_log_mark()
    path = marker("env-curl-snowflake")
    url = origin.url(names.SNOWFLAKE, path)
    assert https_env.curl(url, *tls, *pin(names.SNOWFLAKE, origin.https_port)) == "200"
    echo = next(e for e in origin.received() if e["path"] == path)
    assert echo["sni"] == names.SNOWFLAKE and echo["client"] == "127.0.0.1"
    sentinel = origin.url(names.AUTH_SAAS, marker("env-sentinel"), tls=False)
    assert https_env.curl(sentinel, *tls, *pin(names.AUTH_SAAS, origin.http_port)) == "200"
    squid.wait_for_access_log(lambda e: e.url == sentinel, since=mark)
    assert not [e for e in squid.access_log_lines(since=mark) if names.SNOWFLAKE in e.url]


# -- credentials: the dotenv has none (407), the Secret has them (200) ------------------------


def _password_file(directory: Path, password: str) -> str:
    path = directory / f"password-{uuid.uuid4().hex[:8]}"
    path.write_text(password + "\n")
    return str(path)


def test_dotenv_without_credentials_gets_407_and_the_secret_gets_through(
    squid: SquidProxy, origin: FakeOrigin, workdir: Path
) -> None:
    settings = settings_for(
        {
            "url": squid.http_auth_url,
            "username": PROXY_USER,
            "password_file": _password_file(workdir, PROXY_PASSWORD),
        }
    )
    plain = Rendered(settings, workdir)
    assert PROXY_PASSWORD not in plain.artifact.text
    mark = squid.access_log_mark()
    url = origin.url(names.AUTH_SAAS, marker("env-no-creds"), tls=False)
    assert plain.curl(url, *pin(names.AUTH_SAAS, origin.http_port)) == "407"
    squid.wait_for_access_log(lambda e: e.url == url and e.code == 407, since=mark)

    secret = Rendered(settings, workdir, fmt="secret")
    url = origin.url(names.AUTH_SAAS, marker("env-secret"), tls=False)
    assert secret.curl(url, *pin(names.AUTH_SAAS, origin.http_port), source=False) == "200"
    line = squid.wait_for_access_log(lambda e: e.url == url, since=mark)
    assert line.user == PROXY_USER and line.code == 200


@pytest.fixture(scope="module")
def special_squid(certs: CertBundle, origin: FakeOrigin, squid: SquidProxy) -> Iterator[SquidProxy]:
    """A second Squid whose only user has a password full of URL delimiters."""
    proxy = SquidProxy(
        proxy_cert=certs.proxy_cert,
        proxy_key=certs.proxy_key,
        origin_http_port=origin.http_port,
        origin_https_port=origin.https_port,
        pg_port=squid.pg_port,
        users={SPECIAL_USER: SPECIAL_PASSWORD},
    )
    with proxy:
        yield proxy


def test_percent_encoded_credentials_work_in_curl_and_requests(
    special_squid: SquidProxy, origin: FakeOrigin, certs: CertBundle, workdir: Path
) -> None:
    settings = settings_for(
        {
            "url": special_squid.http_auth_url,
            "username": SPECIAL_USER,
            "password_file": _password_file(workdir, SPECIAL_PASSWORD),
        }
    )
    secret = Rendered(settings, workdir, fmt="secret")
    assert SPECIAL_PASSWORD not in secret.variables["HTTP_PROXY"]  # encoded, never raw
    mark = special_squid.access_log_mark()
    url = origin.url(names.API_SAAS, marker("env-special"))
    status = secret.curl(
        url, "--cacert", str(certs.origin_ca), *pin(names.API_SAAS, origin.https_port), source=False
    )
    assert status == "200"
    target = f"{names.API_SAAS}:{origin.https_port}"
    line = special_squid.wait_for_access_log(lambda e: e.url == target, since=mark)
    assert line.user == SPECIAL_USER

    probe = (
        "import json, requests.utils as u\n"
        "p = u.get_environ_proxies('https://api.example-saas.test/')['https']\n"
        "print(json.dumps(u.get_auth_from_url(p)))"
    )
    proc = secret.run([sys.executable, "-c", probe], source=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [SPECIAL_USER, SPECIAL_PASSWORD]
