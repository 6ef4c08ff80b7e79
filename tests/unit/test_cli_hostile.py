"""The command line against hostile or careless input: one sentence and a hint, never a raw
control character, a forged line, a password or (without ``--debug``) a traceback.

Also: ``render`` kinds as subcommands with their own flags, the error tree (``UsageError``,
pickling), and Linux's size limit for one environment variable, shown by a real ``execve``.
"""

from __future__ import annotations

import itertools
import os
import pickle
import re
import socket
import stat
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterable, Iterator
from io import StringIO
from pathlib import Path

import pytest

import egress
import egress.cli
import egress.errors
from egress.cli import Exit, _Console, main, report
from egress.errors import (
    ConfigError,
    EgressError,
    EgressTransportError,
    Problem,
    ProxyAuthRequired,
    ProxyDenied,
    ProxyError,
    ProxyTLSError,
    ProxyUnreachable,
    UnsupportedRoute,
    URLError,
    UsageError,
)
from egress.render import KINDS, MAX_ARG_STRLEN, check_env_size, env_variables

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "examples" / "egress.yaml"
PASSWORD = "Hunter2-Pw/@xyz"  # a '/' and an '@', which pattern-based masking gets wrong
DEST_PASSWORD = "DestS3cret-xyz"  # in a destination URL (where '/' and '@' must be %-encoded)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def assert_clean(text: str) -> None:
    """No control character (other than the line breaks between lines) and no forged line."""
    for line in text.split("\n"):
        assert line.isprintable(), f"raw control character in {line!r}"
        assert not line.startswith("error: forged"), f"a value forged a line: {line!r}"


# -- render: a subcommand per kind, each with its own flags --------------------------------------

COMMON = {"--help", "--debug", "--config", "--helm-values"}


@pytest.mark.parametrize(
    ("kind", "flags"),
    [
        pytest.param("helm", set(), id="helm"),
        pytest.param("env", {"--format", "--namespace"}, id="env"),
        pytest.param(
            "networkpolicy",
            {
                "--proxy-cidr",
                "--warehouse-cidr",
                "--namespace",
                "--pod-selector",
                "--in-cluster",
                "--no-in-cluster",
            },
            id="networkpolicy",
        ),
        pytest.param("squid", {"--features"}, id="squid"),
        pytest.param("pac", set(), id="pac"),
    ],
)
def test_render_help_lists_only_the_kinds_flags(
    kind: str, flags: set[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "render", kind, "--help")
    assert code == 0
    assert set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", out)) == COMMON | flags


def test_every_render_kind_has_a_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "render", "--help")
    assert code == 0
    for kind in KINDS:
        assert re.search(rf"^\s+{kind}\s+\w", out, re.M), f"{kind} is missing from render --help"


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        pytest.param(["render", "helm", "--format", "x"], "--format x", id="helm-format"),
        pytest.param(["render", "pac", "--namespace", "a"], "--namespace a", id="pac-namespace"),
        pytest.param(["render", "squid", "--proxy-cidr", "10.0.0.1/32"], "--proxy-cidr", id="sq"),
        pytest.param(["render", "env", "--pod-selector", "a=b"], "--pod-selector", id="env-sel"),
        pytest.param(["render", "env", "--features", "core"], "--features core", id="env-feat"),
        pytest.param(["render", "helm", "--features", "core"], "--features core", id="helm-feat"),
    ],
)
def test_a_flag_of_another_kind_is_a_usage_error_of_this_kind(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, *argv, "--config", str(EXAMPLE))
    assert (code, out) == (2, "")
    assert f"unrecognized arguments: {said}" in err
    assert f"hint: run 'egress render {argv[1]} --help'" in err


def test_render_env_namespace_only_with_a_kubernetes_format(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(capsys, "render", "env", "--config", str(EXAMPLE), "--namespace", "carto")
    assert code == 2 and "--namespace applies only to --format configmap" in err
    code, out, _ = run(
        capsys,
        "render",
        "env",
        "--config",
        str(EXAMPLE),
        "--format",
        "configmap",
        "--namespace",
        "carto",
    )
    assert code == 0 and '  namespace: "carto"' in out


def test_debug_is_accepted_after_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "explain", "https:///x", "--proxy", "http://p:1", "--debug")
    assert code == 2 and "Traceback (most recent call last)" in err


# -- the error tree ------------------------------------------------------------------------------


def test_usage_error_is_in_the_tree_and_its_drawing() -> None:
    assert issubclass(UsageError, EgressError)
    assert egress.cli.UsageError is UsageError
    assert UsageError.__module__ == "egress.errors"
    tree = egress.errors.__doc__ or ""
    drawn = set(re.findall(r"[├└]── (\w+)", tree))
    defined = {
        name
        for name, obj in vars(egress.errors).items()
        if isinstance(obj, type) and issubclass(obj, EgressError) and obj is not EgressError
    }
    assert drawn == defined


def _all_error_classes() -> list[type[EgressError]]:
    import egress.requests_adapter
    import egress.transport  # noqa: F401

    out: list[type[EgressError]] = []
    todo: list[type[EgressError]] = [EgressError]
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return out


def _sample(cls: type[EgressError]) -> EgressError:
    if issubclass(cls, ConfigError):
        return cls(
            [Problem("proxy.url", "is missing", "set proxy.url"), Problem("features", "x")],
            [Problem("proxy.verify", "is false", "set proxy.ca_file")],
        )
    if issubclass(cls, UsageError):
        return cls("--namespace is wrong", "write e.g. carto")
    if issubclass(cls, EgressTransportError):
        return cls(
            "proxy.corp:3128 refused CONNECT to api.example.com:443 (403)",
            proxy="http://u:********@proxy.corp:3128",
            target="api.example.com:443",
            hop="proxy-connect",
            status=403,
            hint="ask the proxy team to allow api.example.com",
        )
    return cls("the destination URL has no host")


@pytest.mark.parametrize(
    "cls", [pytest.param(c, id=f"{c.__module__}.{c.__name__}") for c in _all_error_classes()]
)
def test_every_error_pickles_whole(cls: type[EgressError]) -> None:
    exc = _sample(cls)
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is cls
    assert str(back) == str(exc) and back.args == exc.args and back.hint == exc.hint
    for name in ("problems", "warnings", "proxy", "target", "hop", "status"):
        assert getattr(back, name, None) == getattr(exc, name, None), name
    if isinstance(exc, ConfigError):
        assert isinstance(back, ConfigError)
        assert back.problems == exc.problems and len(back.problems) == 2
        assert back.warnings == exc.warnings and back.warnings[0].field == "proxy.verify"


def test_the_known_classes_are_all_covered() -> None:
    names = {c.__name__ for c in _all_error_classes()}
    for cls in (
        ConfigError,
        UsageError,
        URLError,
        ProxyUnreachable,
        ProxyTLSError,
        ProxyError,
        ProxyDenied,
        ProxyAuthRequired,
        UnsupportedRoute,
    ):
        assert cls.__name__ in names


# -- a misbehaving proxy: its X-Squid-Error text reaches the message -----------------------------

HOSTILE_ANSWER = (
    # 8-bit C1 controls are legal "obs-text" in a header, so h11 lets them through: CSI (\x9b)
    # moves the cursor and clears the line, which could hide the real message.
    b"HTTP/1.1 403 Forbidden\r\n"
    b"X-Squid-Error: ERR_ACCESS_DENIED\x9b1A\x9b2K\x1e 0\r\n"
    b"Content-Length: 0\r\nConnection: close\r\n\r\n"
)


@pytest.fixture
def hostile_proxy() -> Iterator[int]:
    """A FAKE proxy on loopback that answers every request with HOSTILE_ANSWER (Squid cannot be
    made to send control characters in its error header)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.1)  # so the loop sees `stop` soon after the test
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            with conn:
                conn.recv(65536)
                conn.sendall(HOSTILE_ANSWER)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    server.close()


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
def test_a_proxys_error_text_is_escaped(hostile_proxy: int, debug: bool) -> None:
    settings = egress.Settings.from_proxy(f"http://127.0.0.1:{hostile_proxy}")
    with pytest.raises(ProxyDenied) as caught, egress.Client(settings) as client:
        client.get("https://api.example.com/")
    assert "\x9b" in str(caught.value), "the proxy's text reaches egress's message"
    out, err = StringIO(), StringIO()
    code = report(caught.value, _Console(out, err), debug=debug)
    assert code == Exit.FAILED and out.getvalue() == ""
    assert_clean(err.getvalue())
    assert "ERR_ACCESS_DENIED\\x9b1A\\x9b2K" in err.getvalue()
    assert ("Traceback" in err.getvalue()) is debug
    back = pickle.loads(pickle.dumps(caught.value))
    assert str(back) == str(caught.value) and back.status == 403 and back.hop == "proxy-connect"


# -- control characters in what the CLI echoes ---------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        pytest.param(
            ["explain", "https://x.example/\nerror: forged", "--proxy", "http://p:1"],
            2,
            id="url-lf",
        ),
        pytest.param(
            ["explain", "https://x.example/\x1b[2K\rerror: forged", "--proxy", "http://p:1"],
            2,
            id="url-esc",
        ),
        pytest.param(
            ["explain", "https://x/", "--proxy", "http://p\x1b[1A\nerror: forged:1"], 3, id="proxy"
        ),
        pytest.param(
            [
                "explain",
                "https://x/",
                "--proxy",
                "http://p:1",
                "--no-proxy",
                "a,\x1b[31m,\nerror: forged",
            ],
            0,
            id="no-proxy",
        ),
        pytest.param(["validate", "--config", "/nonexistent\nerror: forged"], 3, id="config-name"),
        pytest.param(["render", "env", "--config", "/x\rerror: forged"], 3, id="render-config"),
        pytest.param(["explain", "https://x/", "--\x1b[2K\nerror: forged"], 2, id="unknown-flag"),
        pytest.param(["render", "he\nerror: forged"], 2, id="unknown-kind"),
        pytest.param(["catalog", "--features", "core,\x1b]0;owned\x07\nerror: forged"], 3, id="ft"),
    ],
)
def test_control_characters_are_escaped(
    argv: list[str], code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    got, out, err = run(capsys, *argv)
    assert got == code, err
    assert_clean(out)
    assert_clean(err)
    assert "Traceback" not in err


def test_a_file_name_with_a_line_break(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "egress\nerror: forged.yaml"
    cfg.write_text(EXAMPLE.read_text())
    code, out, _ = run(capsys, "validate", "--config", str(cfg))
    assert code == 0
    assert_clean(out)
    assert "egress\\nerror: forged.yaml: valid" in out


def test_values_in_a_config_file_are_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "egress.yaml"
    cfg.write_text(
        'proxy:\n  url: "http://p:3128\\u001b[2K\\nerror: forged"\n'
        'excluded_domains: ["*x\\u0085error: forged", "a.example"]\n'
        'features: ["core\\rerror: forged"]\n'
    )
    for argv in (["validate"], ["render", "helm"], ["explain", "https://x/"], ["catalog"]):
        code, out, err = run(capsys, *argv, "--config", str(cfg))
        assert code == 3, (argv, err)
        assert_clean(out)
        assert_clean(err)


def _fake_kubectl(bin_dir: Path, script: str) -> None:
    """A FAKE kubectl: a shell script in place of a cluster's API server, which cannot run here."""
    kubectl = bin_dir / "kubectl"
    kubectl.write_text("#!/bin/sh\n" + script)
    kubectl.chmod(kubectl.stat().st_mode | stat.S_IEXEC)


@pytest.mark.parametrize(
    "script",
    [
        pytest.param(r"printf 'x\033[2K\rerror: forged\n' >&2; exit 1", id="stderr"),
        pytest.param(r"printf '10.0.0.1\033[2K\rerror: forged'", id="stdout"),
        pytest.param(r"printf '\377\376 bad bytes' >&2; exit 1", id="not-utf8"),
    ],
)
def test_kubectl_output_is_escaped(
    script: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _fake_kubectl(tmp_path, script + "\n")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    code, out, err = run(capsys, "cluster-ip")
    assert code == 1 and out == ""
    assert_clean(err)
    assert "Traceback" not in err


def test_kubernetes_service_host_is_escaped(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1\x1b[2K\nerror: forged")
    code, _, err = run(capsys, "cluster-ip")
    assert code == 1
    assert_clean(err)


# -- flag values: Kubernetes names, label selectors, features, timeouts --------------------------


@pytest.mark.parametrize(
    ("flag", "value", "ok"),
    [
        pytest.param("--namespace", "carto", True, id="ns"),
        pytest.param("--namespace", "team-a1", True, id="ns-dash"),
        pytest.param("--namespace", "a" * 63, True, id="ns-63"),
        pytest.param("--namespace", "a" * 64, False, id="ns-64"),
        pytest.param("--namespace", "Carto", False, id="ns-upper"),
        pytest.param("--namespace", "-carto", False, id="ns-dash-first"),
        pytest.param("--namespace", "carto-", False, id="ns-dash-last"),
        pytest.param("--namespace", "car.to", False, id="ns-dot"),
        pytest.param("--namespace", "carto\n", False, id="ns-newline"),
        pytest.param("--namespace", "", False, id="ns-empty"),
        pytest.param("--namespace", 'x"\n  evil: true', False, id="ns-yaml-injection"),
        pytest.param("--pod-selector", "app=carto", True, id="sel"),
        pytest.param("--pod-selector", "app.kubernetes.io/part-of=carto", True, id="sel-prefix"),
        pytest.param("--pod-selector", "tier=", True, id="sel-empty-value"),
        pytest.param("--pod-selector", "My_Key.x=Value-1.2_3", True, id="sel-mixed"),
        pytest.param("--pod-selector", "app", False, id="sel-no-equals"),
        pytest.param("--pod-selector", "=carto", False, id="sel-no-key"),
        pytest.param("--pod-selector", "app=car to", False, id="sel-space"),
        pytest.param("--pod-selector", "app=-carto", False, id="sel-value-dash"),
        pytest.param("--pod-selector", "app=" + "v" * 64, False, id="sel-value-64"),
        pytest.param("--pod-selector", "k" * 64 + "=v", False, id="sel-key-64"),
        pytest.param("--pod-selector", "Bad_Prefix/app=v", False, id="sel-prefix-upper"),
        pytest.param("--pod-selector", "a/b/c=v", False, id="sel-two-slashes"),
        pytest.param("--pod-selector", "/app=v", False, id="sel-empty-prefix"),
        pytest.param("--pod-selector", "app=x\nerror: forged", False, id="sel-newline"),
        pytest.param("--proxy-cidr", "10.0.5.10/32", True, id="cidr"),
        pytest.param("--proxy-cidr", "proxy.corp", False, id="cidr-name"),
        pytest.param("--warehouse-cidr", "postgres=10.20.0.0/16", True, id="wh"),
        pytest.param("--warehouse-cidr", "oracle=10.20.0.0/16", False, id="wh-kind"),
        pytest.param("--warehouse-cidr", "postgres=10.20.0.0/33", False, id="wh-cidr"),
    ],
)
def test_networkpolicy_flag_values(
    flag: str, value: str, ok: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "render", "networkpolicy", "--config", str(EXAMPLE), flag, value)
    if ok:
        assert code == 0, err
        return
    assert (code, out) == (2, "")
    assert f"argument {flag}: " in err, "the flag is named"
    assert "hint: run 'egress render networkpolicy --help'" in err
    assert_clean(err)
    assert "Traceback" not in err


def test_a_label_key_given_twice_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(
        capsys,
        "render",
        "networkpolicy",
        "--config",
        str(EXAMPLE),
        "--pod-selector",
        "app=a",
        "--pod-selector",
        "app=b",
    )
    assert code == 2 and '--pod-selector names "app" more than once' in err


def test_env_namespace_is_validated(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys,
        "render",
        "env",
        "--format",
        "secret",
        "--namespace",
        "Nope!",
        "--config",
        str(EXAMPLE),
    )
    assert (code, out) == (2, "") and "argument --namespace: " in err


def test_unknown_features_are_refused_alike(capsys: pytest.CaptureFixture[str]) -> None:
    said = set()
    for argv in (["catalog"], ["render", "squid"]):
        code, out, err = run(capsys, *argv, "--config", str(EXAMPLE), "--features", "core,nope")
        assert (code, out) == (3, ""), argv
        assert err.startswith('error: --features: "nope" is not a known feature group')
        said.add(err)
    assert len(said) == 1, "the same message from every command that takes --features"
    for kind in ("helm", "env", "networkpolicy", "pac"):
        code, out, err = run(capsys, "render", kind, "--config", str(EXAMPLE), "--features", "x")
        assert (code, out) == (2, ""), f"render {kind} does not take --features"


@pytest.mark.parametrize(
    "value", ["nan", "NaN", "inf", "-inf", "-5", "0", "-0", "abc", "", "1e9", "1e400", "0x10"]
)
def test_cluster_ip_timeout_must_be_positive_and_finite(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "cluster-ip", f"--timeout={value}")
    assert (code, out) == (2, "")
    assert "argument --timeout: " in err and "positive number" in err
    assert "Traceback" not in err


def test_cluster_ip_timeout_accepts_a_fraction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _fake_kubectl(tmp_path, "sleep 5\n")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    code, _, err = run(capsys, "cluster-ip", "--timeout", "0.2")
    assert code == 1 and "kubectl did not answer within 0.2 s" in err


def test_a_directory_as_config_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (["explain", "https://x/"], ["render", "env"], ["catalog"]):
        code, out, err = run(capsys, *argv, "--config", str(tmp_path))
        assert (code, out) == (3, "")
        assert err.startswith("error: config: ") and "Traceback" not in err
        assert len([ln for ln in err.splitlines() if not ln.startswith("  hint:")]) == 1


# -- --debug, and no password either way ---------------------------------------------------------


@pytest.fixture
def config_with_password(tmp_path: Path) -> Path:
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    cfg = tmp_path / "egress.yaml"
    cfg.write_text(
        "proxy:\n  url: http://proxy.corp.example:3128\n  username: alice\n"
        f"  password_file: {pw}\nexcluded_domains: [.corp.example]\n"
    )
    return cfg


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
@pytest.mark.parametrize(
    ("argv", "code"),
    [
        pytest.param(["explain", "https:///nohost"], 2, id="url-no-host"),
        pytest.param(["explain", "https://x/\n"], 2, id="url-control"),
        pytest.param(["explain", f"https://bob:{DEST_PASSWORD}@/x"], 2, id="dest-pw-no-host"),
        pytest.param(["explain", f"postgresql://bob:{DEST_PASSWORD}@db\n/app"], 2, id="dest-pw-lf"),
        pytest.param(["explain", f"https://bob:{DEST_PASSWORD}@h:99999/"], 2, id="dest-pw-port"),
        pytest.param(["render", "squid", "--features", "nope"], 3, id="features"),
        pytest.param(["explain", "https://x/", "--proxy", "socks5://p:1"], 3, id="proxy-scheme"),
        pytest.param(
            ["explain", "https://x/", "--proxy", f"http://bob:{PASSWORD}@p\n:1"], 3, id="proxy-pw"
        ),
    ],
)
def test_errors_with_and_without_debug(
    argv: list[str],
    code: int,
    debug: bool,
    config_with_password: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = [] if "--proxy" in argv else ["--config", str(config_with_password)]
    got, out, err = run(capsys, *(["--debug"] if debug else []), *argv, *source)
    assert got == code, err
    assert ("Traceback (most recent call last)" in err) is debug
    assert "error" in err
    assert_clean(err)
    for text in (out, err):
        assert PASSWORD not in text and DEST_PASSWORD not in text
        assert "Pw/@xyz" not in text and "Hunter2" not in text and "DestS3cret" not in text


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
def test_an_invalid_config_with_a_password(
    debug: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD)
    cfg = tmp_path / "egress.yaml"
    cfg.write_text(
        f"proxy:\n  url: http://alice:{PASSWORD}@proxy:3128\n  username: alice\n"
        f"  password_file: {pw}\ndeployment:\n  kind: nomad\n"
    )
    for argv in (["explain", "https://x/"], ["render", "env"], ["validate"]):
        got, out, err = run(capsys, *(["--debug"] if debug else []), *argv, "--config", str(cfg))
        assert got == 3
        assert ("Traceback" in err) is (debug and argv[0] != "validate")
        assert PASSWORD not in out + err and "Pw/@xyz" not in out + err


def test_the_password_from_the_environment_stays_hidden(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", f"http://alice:{PASSWORD}@proxy.corp.example:3128")
    for argv in (["explain", "https://x/\n"], ["explain", "https://x/", "--json"], ["validate"]):
        for debug in ([], ["--debug"]):
            _, out, err = run(capsys, *debug, *argv)
            assert PASSWORD not in out + err and "Pw/@xyz" not in out + err


def test_a_password_in_a_mistyped_flag_is_not_echoed(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "explain", "https://x/", "--proxyy", f"http://u:{DEST_PASSWORD}@p:1")
    assert code == 2 and "unrecognized arguments: --proxyy http://u:********@p:1" in err
    assert DEST_PASSWORD not in err


def test_a_destination_password_is_masked_in_explain(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"postgresql://u:{DEST_PASSWORD}@db.example.com/app"
    for extra in (
        [],
        ["--json"],
        ["--proxy", "http://p:3128"],
        ["--proxy", "http://p:1", "--json"],
    ):
        code, out, err = run(capsys, "explain", url, *extra)
        assert code == 0
        assert DEST_PASSWORD not in out + err
        assert "postgresql://u:********@db.example.com/app" in out


def test_an_internal_error_is_one_sentence_and_the_traceback_only_with_debug() -> None:
    def broken() -> None:
        try:
            raise OSError(f"cannot reach http://u:{PASSWORD}@h/\x1b[2K")
        except OSError as exc:
            raise RuntimeError("renderer failed\nerror: forged") from exc

    for debug in (False, True):
        out, err = StringIO(), StringIO()
        con = _Console(out, err)
        con.keep_url_secrets([f"http://u:{PASSWORD}@h/"])
        try:
            broken()
        except RuntimeError as exc:
            assert report(exc, con, debug=debug) == Exit.INTERNAL
        text = err.getvalue()
        assert_clean(text)
        assert PASSWORD not in text
        assert (
            "egress: error: internal error: RuntimeError: renderer failed\\nerror: forged" in text
        )
        assert ("Traceback" in text and "cannot reach http://u:********@h/" in text) is debug


def test_debug_through_the_installed_script() -> None:
    exe = Path(sys.executable).with_name("egress")
    for debug, traceback in (([], False), (["--debug"], True)):
        proc = subprocess.run(
            [str(exe), *debug, "explain", "https:///x", "--proxy", "http://p:1"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 2
        assert ("Traceback" in proc.stderr) is traceback
        assert proc.stderr.splitlines()[-1].startswith("egress: error: the destination URL")


# -- Linux's limit on one environment variable ---------------------------------------------------


def _exec_with(env_file: Path) -> subprocess.CompletedProcess[str]:
    """Source the dotenv as a shell does (``set -a; . file``), then start a real program."""
    return subprocess.run(
        [
            "env",
            "-i",
            "/bin/bash",
            "-c",
            'set -a; . "$1"; exec /usr/bin/env true',
            "_",
            str(env_file),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def test_the_limit_is_the_kernels(tmp_path: Path) -> None:
    """check_env_size draws the line exactly where execve does."""
    under = tmp_path / "under.env"
    over = tmp_path / "over.env"
    longest = MAX_ARG_STRLEN - 1 - len("NO_PROXY=")
    under.write_text("NO_PROXY=" + "a" * longest + "\n")
    over.write_text("NO_PROXY=" + "a" * (longest + 1) + "\n")
    assert _exec_with(under).returncode == 0
    failed = _exec_with(over)
    assert failed.returncode != 0 and "Argument list too long" in failed.stderr
    check_env_size("NO_PROXY", "a" * longest)
    with pytest.raises(ConfigError) as caught:
        check_env_size("NO_PROXY", "a" * (longest + 1))
    assert caught.value.problems[0].field == "excluded_domains"
    assert "131,072 bytes" in str(caught.value) and "131,071" in str(caught.value)


def _write_config(path: Path, entries: list[str]) -> None:
    lines = ["proxy:", "  url: http://proxy.corp.example:3128", "excluded_domains:"]
    lines += [f"  - {e}" for e in entries]
    path.write_text("\n".join(lines) + "\n")


def _no_proxy_size(path: Path, capsys: pytest.CaptureFixture[str]) -> int:
    code, out, err = run(capsys, "render", "env", "--config", str(path))
    assert code == 0, err
    values = dict(env_variables(out))
    assert values["NO_PROXY"] == values["no_proxy"]
    return len("NO_PROXY=" + values["NO_PROXY"])


def test_render_env_refuses_a_no_proxy_over_the_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With just enough exclusions egress still renders, and the file starts programs; one byte
    more and egress refuses, where the file would have broken every program."""
    cfg = tmp_path / "egress.yaml"
    target = MAX_ARG_STRLEN - 1  # the longest NAME=value the kernel takes
    domains = [f"host-{i:05d}.corp.example" for i in range(2400)]
    # first domains (each adds about 50 bytes) to come close, then IPv4 addresses (each adds its
    # length and a comma) to land on the target exactly, measuring the rendered file each time
    _write_config(cfg, domains)
    size = _no_proxy_size(cfg, capsys)
    while target - size > 200:
        more = max(1, (target - size - 100) // 60)
        domains += [f"host-{i:05d}.corp.example" for i in range(len(domains), len(domains) + more)]
        _write_config(cfg, domains)
        size = _no_proxy_size(cfg, capsys)
    used: set[str] = set()
    addresses: list[str] = []
    while size < target:
        gap = target - size
        assert gap >= 8, "an address adds at least 8 bytes"
        # the last address is at most 14 characters, so one more character is possible
        length = 15 if gap >= 24 else gap - 9 if gap > 15 else gap - 1
        addresses.append(_address(length, used))
        _write_config(cfg, domains + addresses)
        size = _no_proxy_size(cfg, capsys)
    assert size == target, "landed on the limit exactly"
    assert len(domains) > 2000

    code, out, _ = run(capsys, "render", "env", "--config", str(cfg))
    assert code == 0
    env_file = tmp_path / "egress.env"
    env_file.write_text(out)
    assert _exec_with(env_file).returncode == 0, "a NO_PROXY at the limit starts programs"

    # one byte more: the kernel refuses it (a hand-made copy), and so does egress
    too_long = tmp_path / "too-long.env"
    too_long.write_text(out.replace("\nNO_PROXY=", "\nNO_PROXY=x", 1))
    failed = _exec_with(too_long)
    assert failed.returncode != 0 and "Argument list too long" in failed.stderr
    addresses[-1] = _address(len(addresses[-1]) + 1, used)
    _write_config(cfg, domains + addresses)
    code, out, err = run(capsys, "render", "env", "--config", str(cfg))
    assert (code, out) == (3, "")
    assert err.startswith("error: excluded_domains: NO_PROXY would be 131,072 bytes")
    assert "131,071 bytes" in err and "Argument list too long" in err
    assert "hint: use fewer, broader entries" in err and "wildcard domain" in err
    assert "Traceback" not in err


def _address(length: int, used: set[str]) -> str:
    """An IPv4 address not used yet, written with exactly ``length`` characters (7 to 15)."""
    for a in range(1, 224):
        for b, c, d in itertools.product((1, 10, 100), repeat=3):
            text = f"{a}.{b}.{c}.{d}"
            if a != 127 and len(text) == length and text not in used:
                used.add(text)
                return text
    raise AssertionError(f"no address of {length} characters left")


def test_the_limit_holds_for_the_kubernetes_formats(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "egress.yaml"
    _write_config(cfg, [f"host-{i:05d}.corp.example" for i in range(3000)])
    for fmt in ("dotenv", "configmap", "secret"):
        code, out, err = run(capsys, "render", "env", "--config", str(cfg), "--format", fmt)
        assert (code, out) == (3, ""), fmt
        assert "error: excluded_domains: NO_PROXY would be" in err


# -- dependencies --------------------------------------------------------------------------------


MODULE_OF = {"PyYAML": "yaml", "argon2-cffi": "argon2", "psycopg": "psycopg"}
"""A distribution whose import name is not its own name, lower-cased with ``_`` for ``-``."""
USED_BY_ANOTHER = {
    "python-multipart": "starlette parses the console's forms with it",
    "psycopg": "SQLAlchemy's postgresql+psycopg dialect, for `egress console --db postgresql://`",
}
"""Declared for a library egress uses, which imports it itself."""
CONSOLE_EXTRAS = ("console", "postgres")
"""The extras only ``src/egress/console/`` (and the CLI's ``console`` command) may import."""
OPTIONAL_EXTRAS = ("metrics", "kerberos")
"""The extras the library may import only lazily and optionally: inside a function, guarded by
``except ImportError`` (``egress.observe``: metrics are no-ops without prometheus_client;
``egress.kerberos``: gssapi only when ``proxy.auth`` is negotiate)."""


def _requirements(group: str | None = None) -> list[str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    if group is None:
        return list(meta["project"]["dependencies"])
    return list(meta["project"]["optional-dependencies"][group])


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0]


def _module(requirement: str) -> str:
    name = _name(requirement)
    return MODULE_OF.get(name, name.replace("-", "_").lower())


def _imports(paths: Iterable[Path]) -> set[str]:
    source = "\n".join(p.read_text() for p in paths)
    found = re.findall(r"^\s*(?:import (\w+)|from (\w+)[\w.]* import )", source, re.M)
    return {a or b for a, b in found}


SRC = ROOT / "src" / "egress"
CONSOLE = SRC / "console"


@pytest.mark.parametrize("group", [None, *CONSOLE_EXTRAS, *OPTIONAL_EXTRAS])
def test_every_declared_dependency_is_imported(group: str | None) -> None:
    """A dependency nothing imports is weight for every install (rich was one)."""
    imported = _imports(SRC.rglob("*.py"))
    for requirement in _requirements(group):
        name = _name(requirement)
        if name in USED_BY_ANOTHER:
            continue
        assert _module(requirement) in imported, f"{name} is unused"


def test_every_imported_library_is_declared() -> None:
    """What src/ imports from outside the standard library is a declared dependency, with a
    lower bound: a transitive dependency of httpx or requests can change under us otherwise.
    The library itself needs only the core dependencies; the console's extras stay in
    ``egress/console`` and the webhook's server, which is served the same way (the CLI imports
    both only inside their commands)."""
    core = {_module(r) for r in _requirements()}
    extras = {_module(r) for group in CONSOLE_EXTRAS for r in _requirements(group)}
    optional = {_module(r) for group in OPTIONAL_EXTRAS for r in _requirements(group)}
    groups = (*CONSOLE_EXTRAS, *OPTIONAL_EXTRAS)
    every = _requirements() + [r for g in groups for r in _requirements(g)]
    assert all(">=" in req for req in every)
    known = set(sys.stdlib_module_names) | {"egress", "__future__"}
    servers = [*CONSOLE.rglob("*.py"), SRC / "webhook" / "server.py"]
    outside = [p for p in SRC.rglob("*.py") if p not in servers]
    library = _imports(outside) - known - optional
    assert library <= core, f"the library imports beyond its core: {sorted(library - core)}"
    for path in outside:
        for line in path.read_text().splitlines():
            for module in optional:
                if re.match(rf"\s*(import {module}\b|from {module}[\w.]* import )", line):
                    # only lazily: indented (inside a function), never at the top of a module
                    assert line.startswith(" "), f"{path.name} imports {module} at import time"
    console = _imports(servers) - known
    missing = console - core - extras
    assert not missing, f"imported but not declared: {sorted(missing)}"


def test_the_library_runs_without_the_metrics_extra() -> None:
    """prometheus_client is optional: importing egress and routing requests never imports it
    unless metrics are on, and with it made unimportable, metrics are no-ops and nothing fails."""
    code = (
        "import sys\n"
        "sys.modules['prometheus_client'] = None  # as if not installed\n"
        "import egress, egress.transport.clients, egress.tunnel, egress.requests_adapter\n"
        "from egress import observe\n"
        "d = egress.Settings.from_proxy('http://127.0.0.1:3128').router().decide('https://a.b/')\n"
        "observe.decision(d); observe.hop_failure('denied', d); observe.tunnel_bytes(1, 2)\n"
        "observe.settings_loaded('file', 'v1'); observe.settings_rejected('file', 'bad')\n"
        "assert not observe.metrics_enabled() and not observe.enable_metrics()\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
    lazy = "import sys, egress.transport.clients, egress.observe\n"
    lazy += "print('prometheus_client' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", lazy], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
