"""Hostile and careless input to the settings loaders: a clear answer, in bounded time and memory.

Each hostile-input case of the loaders is here: through the CLI (exit 3, the field and a hint in
``validate --json``) or through the Python loaders (a ConfigError naming the field).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from egress.cli import main
from egress.errors import ConfigError, Problem
from egress.noproxy import NoProxyMatcher, split_no_proxy
from egress.settings import (
    CA_LIMIT,
    CONFIG_LIMIT,
    PASSWORD_LIMIT,
    Settings,
    load_environment,
    load_settings,
    load_settings_from_mapping,
    settings_from_helm_mapping,
)

NO_ENV: dict[str, str] = {}
PASSWORD = "pa/ss@Hunter2"
SECONDS = 10.0
"""Generous bound for one refusal on a shared 2-core machine; each case takes milliseconds."""


def validate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    """``egress validate ARGS --json`` in-process: the exit code and the JSON report."""
    code = main(["validate", *args, "--json"])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, json.loads(out)


def the_error(report: dict[str, Any], field: str) -> dict[str, str]:
    """The one error of ``report`` on ``field`` (which must have a message and a hint)."""
    assert not report["valid"]
    errors = [e for e in report["errors"] if e["field"] == field]
    assert errors, report["errors"]
    assert errors[0]["message"] and errors[0]["hint"], "every refusal carries a hint"
    return errors[0]


def refused(load: Callable[[], object]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load()
    return info.value


def problem(exc: ConfigError, field: str) -> Problem:
    found = [p for p in exc.problems if p.field == field]
    assert found, exc.problems
    assert found[0].hint
    return found[0]


# -- YAML aliases: a "billion laughs" ------------------------------------------------------------

LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{n}: &{n} [{','.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)


def test_billion_laughs_is_a_few_hundred_bytes() -> None:
    assert len(LAUGHS.encode()) < 400
    assert LAUGHS.count("*") == 72  # 9 levels of 9: 9**9 = 387,420,489 "lol" once expanded


@pytest.mark.parametrize(
    ("flag", "text"),
    [
        pytest.param("--config", LAUGHS, id="config-top"),
        pytest.param("--config", LAUGHS + "excluded_domains: *i\n", id="config-excluded"),
        pytest.param("--config", LAUGHS + "features: *i\nwarehouses: *i\n", id="config-lists"),
        pytest.param("--helm-values", LAUGHS + "externalProxy: {excludedDomains: *i}\n", id="helm"),
    ],
)
def test_billion_laughs_refused_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, text: str
) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(text)
    tracemalloc.start()
    started = time.monotonic()
    try:
        code, report = validate(capsys, flag, str(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < SECONDS
    assert peak < 20 * 2**20, f"peak {peak} bytes"
    assert code == 3
    error = the_error(report, flag[2:])
    assert "aliases" in error["message"] and "10,000" in error["message"]


def test_recursive_alias_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "egress.yaml"
    path.write_text("excluded_domains: &x [a.example, *x]\n")
    code, report = validate(capsys, "--config", str(path))
    assert code == 3
    assert "alias inside the node it refers to" in the_error(report, "config")["message"]


def test_ordinary_anchors_still_load(tmp_path: Path) -> None:
    """Anchors that add a handful of values are how some charts share blocks: kept working."""
    path = tmp_path / "customizations.yaml"
    path.write_text(
        "common: &proxy {enabled: true, host: proxy.corp, port: 3128, type: http}\n"
        "externalProxy:\n  <<: *proxy\n  excludedDomains: [localhost]\n"
        "other: [*proxy, *proxy]\n"
    )
    s = load_settings(helm_values=path, env=NO_ENV)
    assert str(s.proxy.http_proxy) == "http://proxy.corp:3128"
    assert s.excluded_domains == ("localhost",)


def test_big_structure_in_a_message_is_described_not_printed() -> None:
    started = time.monotonic()
    exc = refused(lambda: load_settings_from_mapping({"proxy": {"url": ["x"] * 10**6}}, env=NO_ENV))
    assert time.monotonic() - started < SECONDS
    assert problem(exc, "proxy.url").message == "a list of 1000000 items is not a string"


@pytest.mark.parametrize(
    "key", ["url", "https_url", "host", "username", "password_file", "ca_file", "type"]
)
def test_a_megabyte_string_gives_a_short_message(key: str) -> None:
    value = "h" * 2**20
    base = {"host": "p"} if key == "type" else {"url": "http://p:3128"}
    raw = {"proxy": {**base, key: value} if key != "url" else {key: value}}
    exc = refused(lambda: load_settings_from_mapping(raw, env=NO_ENV))
    for found in exc.problems:
        assert len(str(found)) < 400, found.field


@pytest.mark.parametrize(
    "value", ["http://p:3128\r\nX-Forged: 1", "http://p:3128 x", "http://p\x00:3128"]
)
def test_environment_proxy_with_control_characters(value: str) -> None:
    exc = refused(lambda: load_environment({"HTTPS_PROXY": value}))
    assert "spaces or control characters" in problem(exc, "HTTPS_PROXY").message


# -- numbers of thousands of digits ----------------------------------------------------------------


@pytest.mark.parametrize("digits", [4000, 5000])
@pytest.mark.parametrize(
    ("flag", "template", "field"),
    [
        pytest.param("--config", "proxy:\n  url: {n}\n", "proxy.url", id="url"),
        pytest.param("--config", "proxy:\n  host: p\n  port: {n}\n", "proxy.port", id="port"),
        pytest.param(
            "--config",
            "proxy:\n  url: http://p:1\n  username: {n}\n",
            "proxy.username",
            id="username",
        ),
        pytest.param(
            "--helm-values",
            "externalProxy:\n  enabled: true\n  host: {n}\n  port: 3128\n",
            "externalProxy.host",
            id="helm-host",
        ),
        pytest.param(
            "--helm-values",
            "externalProxy:\n  enabled: true\n  host: p\n  port: {n}\n",
            "externalProxy.port",
            id="helm-port",
        ),
    ],
)
def test_huge_number_in_a_file(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flag: str,
    template: str,
    field: str,
    digits: int,
) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(template.format(n="7" * digits))
    code, report = validate(capsys, flag, str(path))
    assert code == 3
    assert f"a number of {digits:,} characters" in the_error(report, field)["message"]


@pytest.mark.parametrize("digits", [4000, 5000])
@pytest.mark.parametrize(
    ("build", "field"),
    [
        pytest.param(lambda n: {"proxy": {"url": n}}, "proxy.url", id="url"),
        pytest.param(lambda n: {"proxy": {"host": "p", "port": n}}, "proxy.port", id="port"),
        pytest.param(
            lambda n: {"proxy": {"url": "http://p:1", "username": n}},
            "proxy.username",
            id="username",
        ),
        pytest.param(
            lambda n: {"resolve": {"db.example": n}}, "resolve.db.example", id="resolve-ip"
        ),
    ],
)
def test_huge_number_in_a_mapping(build: Callable[[int], Any], field: str, digits: int) -> None:
    exc = refused(lambda: load_settings_from_mapping(build(10 ** (digits - 1)), env=NO_ENV))
    assert f"a {digits}-digit number" in problem(exc, field).message


@pytest.mark.parametrize(
    ("external_proxy", "field"),
    [
        pytest.param({"host": 10**4999, "port": 3128}, "externalProxy.host", id="host"),
        pytest.param({"host": "p", "port": 10**4999}, "externalProxy.port", id="port"),
        pytest.param({"connectionString": 10**3999}, "externalProxy.connectionString", id="conn"),
    ],
)
def test_huge_number_in_helm_mapping(external_proxy: dict[str, Any], field: str) -> None:
    raw = {"externalProxy": {"enabled": True, **external_proxy}}
    exc = refused(lambda: settings_from_helm_mapping(raw, env=NO_ENV))
    assert "-digit number" in problem(exc, field).message


# -- files that are not small regular files --------------------------------------------------------


@pytest.fixture
def specials(tmp_path: Path) -> dict[str, Path]:
    """Paths no loader may read: devices, a directory, files over each cap (sparse: no disk)."""
    big = {}
    for name, size in (("config", CONFIG_LIMIT), ("password", PASSWORD_LIMIT), ("ca", CA_LIMIT)):
        path = tmp_path / f"huge-{name}"
        with path.open("wb") as f:
            f.truncate(size + 1)
        big[name] = path
    return {
        "dev-zero": Path("/dev/zero"),
        "dev-urandom": Path("/dev/urandom"),
        "directory": tmp_path,
        **{f"huge-{k}": v for k, v in big.items()},
    }


EXPECTED = {
    "dev-zero": "is a character device, not a regular file",
    "dev-urandom": "is a character device, not a regular file",
    "directory": "is a directory, not a regular file",
    "huge-config": "is larger than 1 MiB",
    "huge-password": "is larger than 4 KiB",
    "huge-ca": "is larger than 1 MiB",
}


@pytest.mark.parametrize("kind", ["dev-zero", "dev-urandom", "directory", "huge-config"])
@pytest.mark.parametrize("flag", ["--config", "--helm-values"])
def test_settings_file_must_be_small_and_regular(
    specials: dict[str, Path], capsys: pytest.CaptureFixture[str], flag: str, kind: str
) -> None:
    started = time.monotonic()
    code, report = validate(capsys, flag, str(specials[kind]))
    assert time.monotonic() - started < SECONDS
    assert code == 3
    error = the_error(report, flag[2:])
    assert EXPECTED[kind] in error["message"]


@pytest.mark.parametrize("kind", ["dev-zero", "dev-urandom", "directory", "huge-password"])
def test_password_file_must_be_small_and_regular(specials: dict[str, Path], kind: str) -> None:
    raw = {"proxy": {"url": "http://p:3128", "username": "u", "password_file": str(specials[kind])}}
    exc = refused(lambda: load_settings_from_mapping(raw, env=NO_ENV))
    found = problem(exc, "proxy.password_file")
    assert EXPECTED[kind] in found.message
    assert "password" in found.hint


@pytest.mark.parametrize("kind", ["dev-zero", "dev-urandom", "directory", "huge-ca"])
def test_ca_file_must_be_small_and_regular(specials: dict[str, Path], kind: str) -> None:
    raw = {"proxy": {"url": "https://p:3129", "ca_file": str(specials[kind])}}
    exc = refused(lambda: load_settings_from_mapping(raw, env=NO_ENV))
    found = problem(exc, "proxy.ca_file")
    assert EXPECTED[kind] in found.message
    assert "PEM" in found.hint


def test_files_at_their_cap_are_read(tmp_path: Path) -> None:
    config = tmp_path / "egress.yaml"
    body = "proxy: {url: http://p:3128}\n"
    config.write_text(body + "#" * (CONFIG_LIMIT - len(body) - 1) + "\n")
    assert config.stat().st_size == CONFIG_LIMIT
    password = tmp_path / "pw"
    password.write_text("x" * PASSWORD_LIMIT)
    s = load_settings(config, env=NO_ENV)
    assert str(s.proxy.http_proxy) == "http://p:3128"
    raw = {"proxy": {"url": "http://p:3128", "username": "u", "password_file": str(password)}}
    s = load_settings_from_mapping(raw, env=NO_ENV)
    assert s.proxy.password is not None and len(s.proxy.password.reveal()) == PASSWORD_LIMIT


def _egress_in_subprocess(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a child process that is killed if it outlives the timeout (a hang fails)."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    return subprocess.run(
        [sys.executable, "-m", "egress.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


@pytest.mark.parametrize("flag", ["--config", "--helm-values"])
def test_fifo_with_no_writer_does_not_hang(tmp_path: Path, flag: str) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    proc = _egress_in_subprocess("validate", flag, str(fifo), "--json")
    assert proc.returncode == 3, proc.stderr
    error = the_error(json.loads(proc.stdout), flag[2:])
    assert "is a FIFO (named pipe), not a regular file" in error["message"]


@pytest.mark.parametrize("field", ["password_file", "ca_file"])
def test_fifo_as_password_or_ca_file_does_not_hang(tmp_path: Path, field: str) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    password = tmp_path / "pw"
    password.write_text("secret\n")
    files = {"password_file": password, "ca_file": None, field: fifo}
    config = tmp_path / "egress.yaml"
    config.write_text(
        "proxy:\n  url: https://p:3129\n  username: u\n"
        + "".join(f"  {key}: {path}\n" for key, path in files.items() if path is not None)
    )
    proc = _egress_in_subprocess("render", "env", "--config", str(config))
    assert proc.returncode == 3, proc.stderr
    assert f"proxy.{field}:" in proc.stderr and "FIFO" in proc.stderr
    assert "hint:" in proc.stderr and "Traceback" not in proc.stderr


# -- a key written twice -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "text", "field", "lines"),
    [
        pytest.param(
            "--config",
            "proxy: {url: http://a:1}\nwarehouses: [bigquery]\nproxy: {url: http://b:1}\n",
            "proxy",
            (1, 3),
            id="top-level",
        ),
        pytest.param(
            "--config",
            "proxy:\n  url: http://a:1\n  verify: true\n  url: http://b:1\n",
            "proxy.url",
            (2, 4),
            id="nested",
        ),
        pytest.param(
            "--config",
            "resolve: {db.example: 10.0.0.1, db.example: 10.0.0.2}\n",
            "resolve.db.example",
            (1, 1),
            id="flow-same-line",
        ),
        pytest.param(
            "--config",
            "excluded_domains:\n- a.example\nfeatures: [core]\nexcluded_domains: b.example\n",
            "excluded_domains",
            (1, 4),
            id="list-key",
        ),
        pytest.param(
            "--helm-values",
            "externalProxy:\n  enabled: true\n  host: a\n  port: 1\n  host: b\n",
            "externalProxy.host",
            (3, 5),
            id="helm",
        ),
        pytest.param(
            "--helm-values",
            "unrelated:\n  - {x: 1, x: 2}\n",
            "unrelated[0].x",
            (2, 2),
            id="in-a-list",
        ),
    ],
)
def test_duplicate_key_refused(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flag: str,
    text: str,
    field: str,
    lines: tuple[int, int],
) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(text)
    code, report = validate(capsys, flag, str(path))
    assert code == 3
    error = the_error(report, field)
    assert f'is written twice in "{path}" (lines {lines[0]} and {lines[1]})' in error["message"]


# -- resolve: no spaces or control characters on either side ----------------------------------


@pytest.mark.parametrize(
    ("host", "ip", "field"),
    [
        pytest.param("db\r\n.example", "10.0.0.1", "resolve.db\\r\\n.example", id="key-crlf"),
        pytest.param("db\n", "10.0.0.1", "resolve.db\\n", id="key-lf"),
        pytest.param("db .example", "10.0.0.1", "resolve.db .example", id="key-space"),
        pytest.param("db\x00.example", "10.0.0.1", "resolve.db\\x00.example", id="key-nul"),
        pytest.param("db\u00a0.example", "10.0.0.1", "resolve.db\\xa0.example", id="key-nbsp"),
        pytest.param("db.example", "10.0.0.1\r\n", "resolve.db.example", id="value-crlf"),
        pytest.param("db.example", " 10.0.0.1", "resolve.db.example", id="value-space"),
        pytest.param("db.example", "10.0.0.1\tx", "resolve.db.example", id="value-tab"),
        pytest.param("db.example", "10.0.0.1\x1b[31m", "resolve.db.example", id="value-escape"),
    ],
)
def test_resolve_refuses_spaces_and_control_characters(host: str, ip: str, field: str) -> None:
    exc = refused(lambda: load_settings_from_mapping({"resolve": {host: ip}}, env=NO_ENV))
    found = problem(exc, field)
    assert "spaces or control characters" in found.message
    assert found.field.isprintable() and found.message.isprintable()


def test_resolve_field_cannot_forge_cli_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "egress.yaml"
    path.write_text('resolve:\n  "db\\r\\nerror: forged": 10.0.0.1\n')
    assert main(["validate", "--config", str(path)]) == 3
    out, err = capsys.readouterr()
    assert "\r" not in out + err
    assert not any(line.startswith("error: forged") for line in (out + err).splitlines())


# -- credentials in a proxy URL, whatever their characters ------------------------------------


CREDENTIAL_CASES = [
    pytest.param(
        lambda: load_settings_from_mapping(
            {"proxy": {"url": f"http://alice:{PASSWORD}@proxy:3128"}}, env=NO_ENV
        ),
        "proxy.url",
        id="url",
    ),
    pytest.param(
        lambda: load_settings_from_mapping(
            {"proxy": {"url": "http://p:1", "https_url": f"https://alice:{PASSWORD}@p:3129"}},
            env=NO_ENV,
        ),
        "proxy.https_url",
        id="https-url",
    ),
    pytest.param(
        lambda: load_settings_from_mapping(
            {"proxy": {"url": f"http://bob@corp.example:{PASSWORD}@proxy:3128"}}, env=NO_ENV
        ),
        "proxy.url",
        id="at-in-username",
    ),
    pytest.param(
        lambda: load_settings_from_mapping(
            {"proxy": {"url": f"alice:{PASSWORD}@proxy:3128"}}, env=NO_ENV
        ),
        "proxy.url",
        id="no-scheme",
    ),
    pytest.param(
        lambda: load_environment({"HTTPS_PROXY": f"http://alice:{PASSWORD}@proxy:3128"}),
        "HTTPS_PROXY",
        id="env",
    ),
    pytest.param(
        lambda: load_environment({"https_proxy": f"alice:{PASSWORD}@proxy:3128"}),
        "https_proxy",
        id="env-no-scheme",
    ),
    pytest.param(
        lambda: settings_from_helm_mapping(
            {
                "externalProxy": {
                    "enabled": True,
                    "connectionString": f"http://alice:{PASSWORD}@proxy:3128",
                }
            },
            env=NO_ENV,
        ),
        "externalProxy.connectionString",
        id="helm-connection-string",
    ),
    pytest.param(
        lambda: settings_from_helm_mapping(
            {"externalProxy": {"enabled": True, "host": f"alice:{PASSWORD}@proxy", "port": 1}},
            env=NO_ENV,
        ),
        "externalProxy.host",
        id="helm-host",
    ),
    pytest.param(
        lambda: Settings.from_proxy("http://p:3128", env=NO_ENV).override(
            proxy_url=f"http://alice:{PASSWORD}@proxy:3128"
        ),
        "--proxy",
        id="override",
    ),
]


@pytest.mark.parametrize(("load", "field"), CREDENTIAL_CASES)
def test_credentials_in_the_url_are_named_and_never_shown(
    load: Callable[[], object], field: str
) -> None:
    exc = refused(load)
    assert [p.field for p in exc.problems] == [field], "one mistake, one error"
    found = exc.problems[0]
    assert "credentials" in found.message
    assert "port" not in found.message
    assert "username" in found.hint and "password_file" in found.hint
    for text in (str(exc), repr(exc.problems), repr(exc.warnings)):
        for part in (PASSWORD, "pa/ss", "Hunter2"):
            assert part not in text


# -- one tokenizer for every no-proxy list -------------------------------------------------------


def test_no_break_space_stays_inside_its_token_everywhere() -> None:
    value = "a.example\u00a0b.example, c.example"
    expected = ("a.example\u00a0b.example", "c.example")
    from_proxy = Settings.from_proxy("http://p:3128", no_proxy=value, env=NO_ENV)
    from_list = load_settings_from_mapping(
        {"proxy": {"url": "http://p:3128"}, "excluded_domains": [value]}, env=NO_ENV
    )
    from_env = load_environment({"https_proxy": "http://p:3128", "NO_PROXY": value})
    overridden = from_proxy.override(no_proxy=value)
    for s in (from_proxy, from_list, from_env, overridden):
        assert s.excluded_domains == expected
        matcher = NoProxyMatcher.parse(s.excluded_domains)
        assert [e.raw for e in matcher.entries] == ["c.example"]
        assert [i.token for i in matcher.ignored] == ["a.example\u00a0b.example"]
        warning = next(w for w in s.warnings if "a.example" in w.message)
        assert "is ignored" in warning.message and "U+00A0" in warning.hint
        assert s.router().decide("https://b.example/").route == "proxy"
        assert s.router().decide("https://c.example/").route == "direct"


ASCII_SEPARATORS = ", \t\n\v\f\r"
no_proxy_text = st.text(
    alphabet=st.sampled_from(list("ab.*:/[]1-") + list(ASCII_SEPARATORS) + ["\u00a0", "\u3000"]),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(no_proxy_text)
def test_settings_and_matcher_split_alike(value: str) -> None:
    """Whatever the separators, settings keep exactly the tokens the matcher reads."""
    tokens = split_no_proxy(value)
    assert all(token and not set(token) & set(ASCII_SEPARATORS) for token in tokens)
    assert "".join(tokens) == "".join(c for c in value if c not in ASCII_SEPARATORS)
    direct = NoProxyMatcher.parse(value)
    for s in (
        Settings.from_proxy("http://p:3128", no_proxy=value, env=NO_ENV),
        load_environment({"http_proxy": "http://p:3128", "no_proxy": value}),
    ):
        assert list(s.excluded_domains) == tokens
        via_settings = NoProxyMatcher.parse(s.excluded_domains)
        assert via_settings.entries == direct.entries
        assert via_settings.ignored == direct.ignored
