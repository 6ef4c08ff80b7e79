"""A distinctive password fed through every input is found in no output but the one meant for it.

Inputs: a ``password_file`` (valid settings), a Helm ``connectionString``, ``HTTPS_PROXY`` (raw
and percent-encoded), a proxy URL in ``egress.yaml`` (refused) and a destination URL. Outputs:
every CLI command and format, with and without ``--debug``, every ``repr`` of the public
objects, the exception chain of every proxy failure, and DEBUG-level logging of requests through
a real Squid that asks for the password. The only output allowed to hold it is
``render env --format secret``, and the test checks that it does, so the search can fail.
"""

from __future__ import annotations

import base64
import logging
import traceback
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from tests.support import names
from tests.support.certs import CertBundle
from tests.support.origin import FakeOrigin
from tests.support.postgres import PostgresServer
from tests.support.squid import SquidProxy

import egress
from egress.cli import main
from egress.settings import load_settings_from_mapping

USER = "bob@corp.example"  # a username holding '@', as corporate proxies often have
PASSWORD = "Qz9/pa@ss:W0rd-Xv"  # '/', '@' and ':' in it: what pattern masking gets wrong
WRONG_PASSWORD = "Jk4/wr@ng:Pw-Mm"


def forms(secret: str, user: str = USER) -> set[str]:
    """Every spelling under which ``secret`` could leak: raw, percent-encoded, and the Basic
    ``Proxy-Authorization`` value."""
    basic = base64.b64encode(f"{user}:{secret}".encode()).decode()
    return {secret, quote(secret, safe=""), quote(secret, safe="/"), basic}


def assert_no_secret(text: str, where: str, secrets: Iterable[str] = (PASSWORD,)) -> None:
    for secret in secrets:
        for form in forms(secret):
            assert form not in text, f"{where} shows the password (as {form!r}):\n{text[-2000:]}"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out + err


# -- the commands, for settings that carry the password -------------------------------------------

COMMANDS: list[tuple[str, ...]] = [
    ("validate",),
    ("validate", "--json"),
    ("explain", "https://api.example.com/"),
    ("explain", "https://api.example.com/", "--json"),
    ("explain", "https://api.example.com/", "--all-rules"),
    ("explain", "postgresql://db.example.com/app", "--json"),
    ("render", "helm"),
    ("render", "env"),
    ("render", "env", "--format", "configmap"),
    ("render", "networkpolicy"),
    ("render", "squid"),
    ("render", "pac"),
    ("catalog",),
    ("catalog", "--json"),
]


def _with_source(command: tuple[str, ...], source: tuple[str, ...]) -> list[str]:
    """``source`` (e.g. ``--config F``) goes after the (sub)command, where every parser takes it."""
    if command[0] == "render":
        return [*command[:2], *source, *command[2:]]
    return [command[0], *source, *command[1:]]


@pytest.fixture
def password_config(tmp_path: Path) -> Path:
    """Valid settings whose proxy password comes from a file."""
    secret = tmp_path / "proxy-password"
    secret.write_text(PASSWORD + "\n")
    config = tmp_path / "egress.yaml"
    config.write_text(
        "proxy:\n"
        "  enabled: true\n"
        "  url: http://proxy.corp.example:3128\n"
        f"  username: {USER}\n"
        f"  password_file: {secret}\n"
        "deployment: {kind: kubernetes, service_ip: 10.96.0.1}\n"
    )
    return config


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: "-".join(c).replace("/", "_"))
def test_password_file_reaches_no_command_output(
    capsys: pytest.CaptureFixture[str],
    password_config: Path,
    command: tuple[str, ...],
    debug: bool,
) -> None:
    argv = _with_source(command, ("--config", str(password_config)))
    code, text = run(capsys, *(["--debug"] if debug else []), *argv)
    assert code == 0, text
    assert text.strip(), "the command printed nothing, so the search proves nothing"
    assert_no_secret(text, " ".join(argv))


def test_only_the_secret_format_holds_the_password(
    capsys: pytest.CaptureFixture[str], password_config: Path
) -> None:
    code, text = run(
        capsys, "render", "env", "--config", str(password_config), "--format", "secret"
    )
    assert code == 0, text
    assert quote(PASSWORD, safe="") in text, "the Secret must carry the (encoded) password"


# -- inputs that are refused: the error paths ----------------------------------------------------


def _refused_inputs(tmp_path: Path) -> dict[str, tuple[tuple[str, ...], dict[str, str]]]:
    raw_url = f"http://{USER}:{PASSWORD}@proxy.corp.example:3128"
    encoded_url = (
        f"http://{quote(USER, safe='')}:{quote(PASSWORD, safe='')}@proxy.corp.example:3128"
    )
    helm = tmp_path / "customizations.yaml"
    helm.write_text(f'externalProxy:\n  enabled: true\n  connectionString: "{raw_url}"\n')
    helm_encoded = tmp_path / "customizations-encoded.yaml"
    helm_encoded.write_text(
        f'externalProxy:\n  enabled: true\n  connectionString: "{encoded_url}"\n'
    )
    config = tmp_path / "url-with-password.yaml"
    config.write_text(f'proxy:\n  enabled: true\n  url: "{raw_url}"\n')
    return {
        "helm-connectionString": (("--helm-values", str(helm)), {}),
        "helm-connectionString-encoded": (("--helm-values", str(helm_encoded)), {}),
        "yaml-proxy-url": (("--config", str(config)), {}),
        "HTTPS_PROXY": ((), {"HTTPS_PROXY": raw_url}),
        "https_proxy-encoded": ((), {"https_proxy": encoded_url}),
    }


REFUSED_COMMANDS: list[tuple[str, ...]] = [
    ("validate",),
    ("validate", "--json"),
    ("explain", "https://api.example.com/"),
    ("explain", "https://api.example.com/", "--json"),
    ("render", "helm"),
    ("render", "env"),
    ("render", "env", "--format", "secret"),
    ("render", "networkpolicy"),
    ("render", "squid"),
    ("render", "pac"),
    ("catalog", "--json"),
]


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
@pytest.mark.parametrize(
    "source",
    [
        "helm-connectionString",
        "helm-connectionString-encoded",
        "yaml-proxy-url",
        "HTTPS_PROXY",
        "https_proxy-encoded",
    ],
)
def test_a_refused_proxy_url_never_echoes_its_password(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    source: str,
    debug: bool,
) -> None:
    flags, env = _refused_inputs(tmp_path)[source]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for command in REFUSED_COMMANDS:
        argv = _with_source(command, flags)
        code, text = run(capsys, *(["--debug"] if debug else []), *argv)
        assert code == 3, f"{argv}: {text}"
        assert "credentials" in text, f"{argv} does not say why: {text}"
        assert_no_secret(text, f"{source}: {' '.join(argv)}")


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
@pytest.mark.parametrize(
    "url",
    [
        f"https://{quote(USER, safe='')}:{quote(PASSWORD, safe='')}@api.example.com/x",
        f"postgresql://app:{quote(PASSWORD, safe='')}@db.example.com/app",
        f"postgresql://app:{PASSWORD}@db.example.com/app",
        f"https://app:{PASSWORD}@api.example.com:0/x",
        f"https://app:{PASSWORD}@/x",
    ],
    ids=["https-encoded", "postgresql-encoded", "postgresql-raw", "bad-port", "no-host"],
)
@pytest.mark.parametrize("json", [False, True], ids=["text", "json"])
def test_a_destination_password_never_leaves_explain(
    capsys: pytest.CaptureFixture[str], url: str, debug: bool, json: bool
) -> None:
    argv = ["explain", url, "--proxy", "http://proxy.corp.example:3128"]
    code, text = run(capsys, *(["--debug"] if debug else []), *argv, *(["--json"] if json else []))
    assert code in (0, 2), text  # 2: a URL that cannot be routed is a usage error
    assert text.strip()
    assert_no_secret(text, " ".join(argv), secrets=(PASSWORD,))


# -- the Python API: reprs, decisions, exception chains, logs --------------------------------------


def _settings(proxy_url: str, password_file: Path) -> egress.Settings:
    return load_settings_from_mapping(
        {
            "proxy": {
                "enabled": True,
                "url": proxy_url,
                "username": USER,
                "password_file": str(password_file),
            }
        }
    )


@pytest.fixture
def secret_squid(
    certs: CertBundle, origin: FakeOrigin, postgres: PostgresServer
) -> Iterator[SquidProxy]:
    """A Squid of its own whose only user is ``USER`` with ``PASSWORD``."""
    proxy = SquidProxy(
        proxy_cert=certs.proxy_cert,
        proxy_key=certs.proxy_key,
        origin_http_port=origin.http_port,
        origin_https_port=origin.https_port,
        pg_port=postgres.port,
        users={USER: PASSWORD},
    )
    with proxy as started:
        yield started


def test_reprs_and_decisions_hold_no_password(tmp_path: Path, secret_squid: SquidProxy) -> None:
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD)
    settings = _settings(secret_squid.http_auth_url, secret)
    router = settings.router()
    decision = router.decide(f"https://app:{quote(PASSWORD, safe='')}@api.example.com/")
    shown = [
        repr(settings),
        str(settings),
        repr(settings.proxy),
        repr(router),
        repr(decision),
        str(decision.as_dict()),
        repr(decision.target),
        repr(router.rules()),
    ]
    with egress.Client(settings) as client:
        shown += [repr(client), repr(client._transport), repr(vars(client._transport))]
    session = egress.requests_session(settings)
    shown += [repr(session), repr(session.adapters), repr(session.__dict__)]
    session.close()
    for i, text in enumerate(shown):
        assert_no_secret(text, f"repr #{i}")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        todo += [item.__cause__, item.__context__]


def _whole_story(exc: BaseException) -> str:
    parts = ["".join(traceback.format_exception(exc))]
    for item in _chain(exc):
        parts += [str(item), repr(item), repr(item.args), repr(getattr(item, "__dict__", {}))]
        request = getattr(item, "_request", None)
        if request is not None:
            parts += [repr(request), repr(dict(request.headers))]
    return "\n".join(parts)


@pytest.mark.parametrize("flavour", ["httpx", "requests"])
def test_a_refused_password_is_in_no_exception_chain(
    tmp_path: Path,
    certs: CertBundle,
    secret_squid: SquidProxy,
    origin: FakeOrigin,
    flavour: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The wrong password gets a 407: the error, its whole chain and DEBUG logs never show it."""
    secret = tmp_path / "pw"
    secret.write_text(WRONG_PASSWORD)
    settings = load_settings_from_mapping(
        {
            "proxy": {
                "enabled": True,
                "url": secret_squid.http_auth_url,
                "username": USER,
                "password_file": str(secret),
            },
        }
    )
    url = origin.url(names.AUTH_SAAS, "/no-secret")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(egress.ProxyAuthRequired) as info:
        if flavour == "httpx":
            with egress.Client(settings, verify=certs.origin_ca) as client:
                client.get(url)
        else:
            with egress.requests_session(settings, verify=certs.origin_ca) as session:
                session.get(url, timeout=10)
    story = _whole_story(info.value) + "\n".join(r.getMessage() for r in caplog.records)
    assert "407" in story
    assert_no_secret(story, f"{flavour} 407 chain and logs", secrets=(WRONG_PASSWORD,))


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_debug_logs_of_requests_through_squid_hold_no_password(
    tmp_path: Path,
    certs: CertBundle,
    secret_squid: SquidProxy,
    origin: FakeOrigin,
    caplog: pytest.LogCaptureFixture,
    scheme: str,
) -> None:
    """httpx, httpcore, urllib3 and requests at DEBUG, on requests that pass the proxy's auth."""
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD)
    settings = _settings(secret_squid.http_auth_url, secret)
    url = origin.url(names.AUTH_SAAS, "/logged", tls=scheme == "https")
    caplog.set_level(logging.DEBUG)
    mark = secret_squid.access_log_mark()
    with egress.Client(settings, verify=certs.origin_ca) as client:
        assert client.get(url).status_code == 200
    with egress.requests_session(settings, verify=certs.origin_ca) as session:
        assert session.get(url, timeout=10).status_code == 200
    line = secret_squid.wait_for_access_log(lambda entry: entry.user is not None, since=mark)
    assert line.user == USER, "Squid authenticated the user, so the password was really sent"
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.args!r}" for r in caplog.records)
    assert any(r.name.startswith(("httpcore", "urllib3")) for r in caplog.records), (
        "no library logged at DEBUG, so the search proves nothing"
    )
    assert_no_secret(logged, "DEBUG logs")
