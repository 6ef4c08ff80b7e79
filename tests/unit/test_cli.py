"""The command line contract (README, "Command line"): spellings, JSON fields, exit codes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from egress.cli import main
from egress.settings import load_yaml

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "examples" / "egress.yaml"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_explain_json_has_exactly_the_documented_fields(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "explain", "https://api.example.com/", "--proxy", "http://proxy:3128", "--json"
    )
    assert code == 0
    payload = json.loads(out)
    assert set(payload) == {"url", "route", "proxy", "rule", "reason"}
    assert payload == {
        "url": "https://api.example.com/",
        "route": "proxy",
        "proxy": "http://proxy:3128",
        "rule": "default",
        "reason": payload["reason"],
    }


def test_explain_no_proxy_flag(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "explain",
        "https://a.corp.example/",
        "--proxy",
        "http://p:3128",
        "--no-proxy",
        "localhost,.corp.example",
        "--json",
    )
    assert code == 0
    assert json.loads(out)["rule"] == "excluded:.corp.example"


def test_explain_human_output(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "explain", "postgresql://db.example.com:5432/app", "--config", str(EXAMPLE)
    )
    assert code == 0
    assert "route   direct" in out and "rule    warehouse:postgres" in out
    assert "reason  PostgreSQL" in out


def test_explain_all_rules(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "explain", "https://x.example/", "--config", str(EXAMPLE), "--all-rules"
    )
    assert code == 0
    lines = [
        ln.split()[0]
        for ln in out.split("rules, in the order they are tried:")[1].splitlines()
        if ln.startswith("  ") and ln.split() and ":" in ln.split()[0]
    ]
    assert lines[0] == "auto:loopback"
    assert "auto:gke-metadata" in lines and "excluded:.corp.example" in lines
    assert lines.index("auto:gke-metadata") < lines.index("excluded:.corp.example")


def test_explain_with_warehouse_flag(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "explain",
        "https://x.example/",
        "--proxy",
        "http://p:3128",
        "--warehouse",
        "databricks",
        "--json",
    )
    assert code == 0 and json.loads(out)["route"] == "direct"


def test_explain_helm_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    values = tmp_path / "customizations.yaml"
    values.write_text(
        "externalProxy:\n  enabled: true\n  host: proxy.corp\n  port: 3129\n  type: https\n"
        "  excludedDomains: ['localhost,.svc.cluster.local']\n"
    )
    code, out, _ = run(
        capsys,
        "explain",
        "https://acme.snowflakecomputing.com/",
        "--helm-values",
        str(values),
        "--json",
    )
    assert code == 0
    assert json.loads(out)["route"] == "direct"


def test_explain_from_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://envproxy:3128")
    monkeypatch.setenv("NO_PROXY", ".internal.example")
    code, out, _ = run(capsys, "explain", "https://a.internal.example/", "--json")
    assert code == 0 and json.loads(out)["rule"] == "excluded:.internal.example"
    code, out, _ = run(capsys, "explain", "https://b.example/", "--json")
    assert code == 0 and json.loads(out)["proxy"] == "http://envproxy:3128"


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        pytest.param(["explain"], 2, id="missing-url"),
        pytest.param(["explain", "https:///x", "--proxy", "http://p:1"], 2, id="no-host"),
        pytest.param(["explain", "https://x/", "--proxy", "socks5://p:1"], 3, id="bad-proxy"),
        pytest.param(["explain", "https://x/", "--warehouse", "oracle"], 2, id="bad-warehouse"),
        pytest.param(
            ["explain", "https://x/", "--config", "a", "--helm-values", "b"], 2, id="two-sources"
        ),
        pytest.param(["frobnicate"], 2, id="unknown-command"),
        pytest.param(["validate", "--config", "/nonexistent.yaml"], 3, id="missing-file"),
    ],
)
def test_exit_codes(argv: list[str], code: int, capsys: pytest.CaptureFixture[str]) -> None:
    got, out, err = run(capsys, *argv)
    assert got == code
    assert "Traceback" not in err
    assert "error" in (err if argv[0] != "validate" else out), "an error always says so"


def test_validate_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pw = tmp_path / "pw"
    pw.write_text("Hunter2Secret")
    cfg = tmp_path / "egress.yaml"
    cfg.write_text(
        f"proxy:\n  url: http://p:3128\n  https_url: http://alice:Hunter2Secret@p:3129\n"
        "  username: alice\n"
        f"  password_file: {pw}\n  verify: false\n"
        "deployment:\n  kind: nomad\n"
    )
    code, out, err = run(capsys, "validate", "--config", str(cfg), "--json")
    assert code == 3
    payload = json.loads(out)
    assert payload["valid"] is False
    assert {e["field"] for e in payload["errors"]} == {"proxy.https_url", "deployment.kind"}
    assert all(set(e) == {"field", "message", "hint"} for e in payload["errors"])
    assert "proxy.verify" in {w["field"] for w in payload["warnings"]}
    assert "Hunter2Secret" not in out + err


def test_validate_valid(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "validate", "--config", str(EXAMPLE), "--json")
    assert code == 0
    payload = json.loads(out)
    assert payload["valid"] is True and payload["errors"] == []


@pytest.mark.parametrize(
    ("proxy", "warehouses", "noted"),
    [
        pytest.param("https://p:3129", "[bigquery]", True, id="S12-https-proxy-bigquery-only"),
        pytest.param("https://p:3129", "[snowflake]", True, id="S12-https-proxy-snowflake"),
        pytest.param("http://p:3128", "[snowflake]", False, id="S12-http-proxy"),
    ],
)
def test_validate_notes_what_the_router_sends_direct(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], proxy: str, warehouses: str, noted: bool
) -> None:
    """The S12 note comes from the router's rules: the router sends Snowflake hosts direct behind
    an https:// proxy whatever ``warehouses`` lists, so validate says so then too."""
    cfg = tmp_path / "egress.yaml"
    cfg.write_text(f"proxy: {{url: '{proxy}'}}\nwarehouses: {warehouses}\n")
    code, out, _ = run(capsys, "validate", "--config", str(cfg), "--json")
    assert code == 0
    notes = [w for w in json.loads(out)["warnings"] if "Snowflake" in w["message"]]
    assert bool(notes) is noted, notes
    router = load_yaml(cfg).router()
    assert (router.decide("https://acme.snowflakecomputing.com/").route == "direct") is noted


def _fake_kubectl(bin_dir: Path, script: str) -> None:
    """A FAKE kubectl: a shell script in place of a cluster's API server, which cannot run here."""
    kubectl = bin_dir / "kubectl"
    kubectl.write_text("#!/bin/sh\n" + script)
    kubectl.chmod(kubectl.stat().st_mode | stat.S_IEXEC)


def test_cluster_ip_from_pod_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    code, out, _ = run(capsys, "cluster-ip")
    assert (code, out.strip()) == (0, "10.96.0.1")


def test_cluster_ip_runs_fake_kubectl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args_file = tmp_path / "args"
    _fake_kubectl(tmp_path, f'echo "$@" > {args_file}\nprintf 10.43.0.1\n')
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    code, out, err = run(capsys, "cluster-ip")
    assert (code, out.strip()) == (0, "10.43.0.1")
    assert args_file.read_text().split() == [
        "get",
        "svc",
        "kubernetes",
        "-n",
        "default",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]
    assert "deployment.service_ip: 10.43.0.1" in err


def test_cluster_ip_fake_kubectl_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _fake_kubectl(tmp_path, 'echo "error: You must be logged in to the server" >&2\nexit 1\n')
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    code, _, err = run(capsys, "cluster-ip")
    assert code == 1 and "You must be logged in" in err


def test_cluster_ip_without_kubectl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    code, _, err = run(capsys, "cluster-ip")
    assert code == 1 and "kubectl is not on PATH" in err


def test_explain_never_runs_kubectl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "ran"
    _fake_kubectl(tmp_path, f"touch {marker}\nprintf 10.43.0.1\n")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    run(capsys, "explain", "https://10.43.0.1/", "--proxy", "http://p:1", "--json")
    run(capsys, "validate", "--config", str(EXAMPLE))
    assert not marker.exists()


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).with_name("egress")
    proc = subprocess.run(
        [str(exe), "explain", "https://x.example/", "--proxy", "http://p:3128", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["route"] == "proxy"


def test_render_networkpolicy_flags(capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    code, out, _ = run(
        capsys,
        "render",
        "networkpolicy",
        "--config",
        str(EXAMPLE),
        "--pod-selector",
        "app=carto",
        "--no-in-cluster",
        "--warehouse-cidr",
        "postgres=10.20.0.0/16",
    )
    assert code == 0
    docs = [d for d in yaml.safe_load_all(out) if d]
    names = {d["metadata"]["name"] for d in docs}
    assert "egress-in-cluster" not in names
    assert all(d["spec"]["podSelector"] == {"matchLabels": {"app": "carto"}} for d in docs)


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(
            ["render", "networkpolicy", "--warehouse-cidr", "oracle=10.0.0.0/8"],
            id="unknown-warehouse",
        ),
        pytest.param(
            ["render", "networkpolicy", "--warehouse-cidr", "postgres=10.0.0.0/33"], id="bad-cidr"
        ),
        pytest.param(["render", "networkpolicy", "--proxy-cidr", "proxy.corp"], id="proxy-cidr"),
        pytest.param(["render", "networkpolicy", "--pod-selector", "app"], id="selector"),
        pytest.param(["render", "helm", "--format", "secret"], id="format-not-env"),
        pytest.param(["render", "yaml"], id="unknown-kind"),
    ],
)
def test_render_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, *argv, "--config", str(EXAMPLE))
    assert code == 2 and out == "" and "error" in err


def test_render_invalid_settings_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "egress.yaml"
    cfg.write_text("proxy:\n  url: socks5://p:1080\n")
    code, out, err = run(capsys, "render", "env", "--config", str(cfg))
    assert code == 3 and out == "" and "socks5" in err


def test_explain_notes_only_what_bears_on_routing(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(
        capsys,
        "explain",
        "https://x.example/",
        "--config",
        str(EXAMPLE),
        "--no-proxy",
        "a.example,*b.example",
    )
    assert code == 0
    assert '"*b.example" is ignored' in err
    assert "Snowflake" not in err, "validate lists that warning; explain says it in the reason"
    code, _, err = run(capsys, "explain", "https://x.example/", "--proxy", "http://p:3128")
    assert "deployment.service_ip" in err, "explain says when the service IP is unknown"
