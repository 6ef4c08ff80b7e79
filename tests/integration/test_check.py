"""``egress check`` against the real services: one test per status it can produce here.

Squid (plain, TLS, auth listeners; 403 for names.BLOCKED), the fake origin, PostgreSQL; fake
names are resolved only by Squid's hosts_file or egress's ``resolve``; a direct name that
``resolve`` does not know meets the test guard, which refuses it as a failed resolution.
"""

from __future__ import annotations

import io
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support import names
from tests.support.certs import CertBundle
from tests.support.origin import FakeOrigin
from tests.support.postgres import PostgresServer
from tests.support.squid import SquidProxy

from egress import cli
from egress.check import CheckResult, Probe, check_one, exit_code, probes_for, run_checks
from egress.settings import Settings, load_settings_from_mapping


def settings_for(proxy_url: str | None, **extra: Any) -> Settings:
    raw: dict[str, Any] = dict(extra)
    if proxy_url is not None:
        raw["proxy"] = {"url": proxy_url, **raw.pop("proxy", {})}
    return load_settings_from_mapping(raw, env={})


def one(settings: Settings, url: str, certs: CertBundle, timeout: float = 5.0) -> CheckResult:
    (result,) = run_checks(settings, [Probe(url)], timeout=timeout, verify=certs.origin_ca)
    return result


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback socket that accepts and never says a word (a fake: a stalled service)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        for s in held:
            s.close()
        server.close()


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


def test_ok_through_squid_seen_in_its_log(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle
) -> None:
    mark = squid.access_log_mark()
    url = origin.url(names.API_SAAS, "/health")
    result = one(settings_for(squid.http_url), url, certs)
    assert (result.status, result.route, result.fix) == ("ok", "proxy", "")
    assert result.detail.startswith("HTTP ")
    squid.wait_for_access_log(
        lambda line: line.method == "CONNECT" and line.url.startswith(names.API_SAAS),
        since=mark,
    )


def test_proxy_denied_names_the_destination(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle
) -> None:
    result = one(settings_for(squid.http_url), origin.url(names.BLOCKED), certs)
    assert result.status == "proxy-denied"
    assert f"{names.BLOCKED}:{origin.https_port}" in result.fix


def test_proxy_auth_required_without_credentials(
    squid: SquidProxy, origin: FakeOrigin, certs: CertBundle
) -> None:
    result = one(settings_for(squid.http_auth_url), origin.url(names.API_SAAS), certs)
    assert result.status == "proxy-auth-required"
    assert "proxy.username" in result.fix and "password_file" in result.fix


def test_proxy_unreachable(origin: FakeOrigin, certs: CertBundle) -> None:
    proxy = f"http://127.0.0.1:{closed_port()}"
    result = one(settings_for(proxy), origin.url(names.API_SAAS), certs)
    assert result.status == "proxy-unreachable"
    assert proxy in result.fix


def test_proxy_tls_untrusted(squid: SquidProxy, origin: FakeOrigin, certs: CertBundle) -> None:
    settings = settings_for(squid.https_url, proxy={"ca_file": str(certs.wrong_ca)})
    result = one(settings, origin.url(names.API_SAAS), certs)
    assert result.status == "proxy-tls-untrusted"
    assert "proxy.ca_file" in result.fix
    trusted = settings_for(squid.https_url, proxy={"ca_file": str(certs.proxy_ca)})
    assert one(trusted, origin.url(names.API_SAAS), certs).status == "ok"


def test_timeout_on_a_silent_socket_within_about_the_timeout(
    silent_port: int, certs: CertBundle
) -> None:
    result = one(settings_for(None), f"https://127.0.0.1:{silent_port}/", certs, timeout=1.0)
    assert (result.status, result.route) == ("timeout", "direct")
    assert "1 s" in result.detail
    assert 900 <= result.elapsed_ms < 2000


def test_connect_refused_on_a_closed_direct_port(certs: CertBundle) -> None:
    result = one(settings_for(None), f"postgresql://127.0.0.1:{closed_port()}/db", certs)
    assert (result.status, result.route) == ("connect-refused", "direct")
    assert "NetworkPolicy" in result.fix


def test_dns_failed_for_a_direct_name_resolve_does_not_know(certs: CertBundle) -> None:
    settings = settings_for(None, excluded_domains=[".example-db.test"])
    result = one(settings, f"postgresql://{names.PG_HOST}:5432/db", certs)
    assert (result.status, result.route) == ("dns-failed", "direct")
    assert f"resolve: {{{names.PG_HOST}" in result.fix


def test_direct_postgres_answers_the_ssl_request(
    postgres: PostgresServer, certs: CertBundle
) -> None:
    settings = settings_for(None, resolve={names.PG_HOST: "127.0.0.1"})
    result = one(settings, f"postgresql://{names.PG_HOST}:{postgres.port}/db", certs)
    assert (result.status, result.route, result.detail) == ("ok", "direct", "SSLRequest answered S")


def test_tunnelled_postgres_through_squid(
    squid: SquidProxy, postgres: PostgresServer, certs: CertBundle
) -> None:
    mark = squid.access_log_mark()
    settings = settings_for(squid.http_url, tunnel_tcp_warehouses=True)
    result = one(settings, f"postgresql://{names.PG_HOST}:{postgres.port}/db", certs)
    assert (result.status, result.route) == ("ok", "tunnel")
    assert result.detail.endswith("SSLRequest answered S")
    squid.wait_for_access_log(
        lambda line: line.method == "CONNECT" and line.url == f"{names.PG_HOST}:{postgres.port}",
        since=mark,
    )


def test_endpoints_are_in_scope_and_wildcards_are_not(postgres: PostgresServer) -> None:
    url = f"postgresql://127.0.0.1:{postgres.port}/db"
    settings = settings_for(None, endpoints=[url], warehouses=["snowflake"])
    probes = probes_for(settings, ("core",))
    assert url in [p.url for p in probes]
    assert all("*" not in p.url and "snowflakecomputing" not in p.url for p in probes)
    assert check_one(settings_for(None), probes[-1]).status == "ok"


# -- the command line: exit codes and --json -------------------------------------------------


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_json_form_and_exit_1_for_a_required_failure(
    tmp_path: Path, postgres: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "egress.yaml"
    config.write_text("features: []\nwarehouses: []\n")
    url = f"postgresql://127.0.0.1:{postgres.port}/db"
    code, out, _ = run_cli(
        ["check", "--config", str(config), "--features", "core", "--json", "--url", url], capsys
    )
    rows = json.loads(out)
    assert [r["url"] for r in rows if r["status"] == "ok"] == [url]
    assert set(rows[0]) == {
        "url", "host", "port", "route", "rule", "status", "detail", "fix", "elapsed_ms", "required"
    }  # fmt: skip
    # the catalog's core hosts are not reachable here (the guard refuses their names)
    assert code == cli.Exit.FAILED
    code, out, _ = run_cli(["check", "--config", str(config), "--features", "core"], capsys)
    assert code == cli.Exit.FAILED and "dns-failed" in out


def test_cli_exit_0_and_1_by_required_url(
    tmp_path: Path, postgres: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "egress.yaml"
    good = f"postgresql://127.0.0.1:{postgres.port}/db"
    config.write_text(f"warehouses: []\nendpoints: ['{good}']\n")
    code, out, _ = run_cli(["check", "--config", str(config), "--timeout", "2"], capsys)
    assert f"ok                   {good}" in out
    # every required check ok is exit 0; here the core catalog (always in scope) cannot be
    # reached, so the rule is shown on the endpoint's real result alone
    ok = run_checks(settings_for(None, endpoints=[good]), [Probe(good)])
    assert exit_code(ok) == cli.Exit.OK
    assert code == cli.Exit.FAILED
    bad = f"postgresql://127.0.0.1:{closed_port()}/db"
    code2, out2, _ = run_cli(["check", "--config", str(config), "--url", bad, "--json"], capsys)
    statuses = {r["url"]: r["status"] for r in json.loads(out2)}
    assert statuses[good] == "ok" and statuses[bad] == "connect-refused"
    assert code2 == cli.Exit.FAILED


def test_cli_exit_3_for_invalid_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "egress.yaml"
    config.write_text("endpoints: ['not a url']\n")
    code, _, err = run_cli(["check", "--config", str(config)], capsys)
    assert code == cli.Exit.INVALID
    assert "endpoints[0]" in err


def test_cli_report_is_written_for_the_proxy_team(
    tmp_path: Path, postgres: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "egress.yaml"
    good = f"postgresql://127.0.0.1:{postgres.port}/db"
    config.write_text(
        "proxy: {url: 'http://127.0.0.1:1'}\nwarehouses: [postgres]\n"
        f"endpoints: ['{good}']\nexcluded_domains: [127.0.0.1]\n"
    )
    report = tmp_path / "report.html"
    code, _, err = run_cli(
        ["check", "--config", str(config), "--timeout", "2", "--report", str(report)], capsys
    )
    assert code == cli.Exit.FAILED  # the catalog's core hosts: the proxy at port 1 is down
    assert f"report written to {report}" in err
    page = report.read_text()
    for heading in ("What to allow", "What bypasses the proxy", "Results"):
        assert heading in page
    assert "proxy-unreachable" in page and "auth.carto.com" in page
    assert f"127.0.0.1:{postgres.port}" in page  # the endpoint, checked directly
    code, _, err = run_cli(
        ["check", "--config", str(config), "--timeout", "2", "--report", str(tmp_path)], capsys
    )
    assert "cannot write" in err


def test_check_table_for_people_is_plain_text_with_coloured_status() -> None:
    """The terminal table: values never read as rich markup, control characters escaped."""
    from rich.console import Console

    from egress.check import CheckResult
    from egress.cli import check_table

    hostile = CheckResult(
        url="https://[red]x[/red].example/\x1b[2J",
        host="x.example",
        port=443,
        route="proxy",
        rule="default",
        reason="",
        status="proxy-denied",
        detail="403",
        fix="ask the proxy team to allow [bold]x[/bold].example:443",
        elapsed_ms=12.0,
        required=True,
    )
    fine = CheckResult("https://ok.example/", "ok.example", 443, "proxy", "default", "", "ok",
                       "HTTP 200", "", 3.0, False)  # fmt: skip
    console = Console(
        file=io.StringIO(), record=True, force_terminal=True, width=200, color_system="standard"
    )
    console.print(check_table([hostile, fine], lambda text: text.replace("\x1b", "\\x1b")))
    plain = console.export_text(clear=False)
    assert "[red]x[/red]" in plain and "[bold]x[/bold]" in plain  # shown, not interpreted
    assert "\x1b" not in plain and "\\x1b[2J" in plain
    assert "proxy-denied" in plain and "required" in plain and "optional" in plain
    styled = console.export_text(styles=True)
    assert "\x1b[31mproxy-denied" in styled and "\x1b[32mok" in styled  # red, green


def test_cli_check_on_a_terminal_shows_progress_and_a_table(tmp_path: Path) -> None:
    """Through a real pseudo-terminal: a progress bar on stderr while checking, then a table."""
    import os
    import pty
    import subprocess
    import sys

    config = tmp_path / "egress.yaml"
    config.write_text("proxy: {url: 'http://127.0.0.1:1'}\nwarehouses: []\n")
    main_fd, child_fd = pty.openpty()
    env = {**os.environ, "COLUMNS": "160", "TERM": "xterm"}
    chunks: list[bytes] = []

    def drain() -> None:
        """Read the terminal while the check runs: a full pty buffer would block its writes
        (the progress bar redraws more often the slower the machine)."""
        while True:
            try:
                data = os.read(main_fd, 65536)
            except OSError:  # EIO: the child side is closed and everything was read
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    proc = subprocess.run(
        [sys.executable, "-m", "egress.cli", "check", "--config", str(config), "--timeout", "2"],
        stdin=child_fd,
        stdout=child_fd,
        stderr=child_fd,
        env=env,
        timeout=120,
        check=False,
    )
    os.close(child_fd)
    reader.join(30)
    os.close(main_fd)
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 1
    assert "egress check" in screen and "proxy-unreachable" in screen  # the table
    assert "checking" in screen  # the progress bar
