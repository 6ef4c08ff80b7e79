"""``egress console`` as ``make run`` starts it: a real process, a real port, a SQLite file.

The first run prints the URL and the generated admin password once and imports the example; a
second run on the same store prints no password and ignores ``--import``; a bad import file or a
port in use stops it with one sentence before anything is stored or printed.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from tests.support.processes import stop_process

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "egress.yaml"
EGRESS = str(Path(sys.executable).with_name("egress"))
URL_LINE = re.compile(r"^egress console: (http://127\.0\.0\.1:\d+/)$", re.M)
PASSWORD_LINE = re.compile(r"this password \(shown once\): (\S+)$", re.M)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "EGRESS_ADMIN_PASSWORD"}
    env.update(extra)
    return env


@contextmanager
def console(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Iterator[tuple[str, str]]:
    """Start ``egress console --port 0``; yield (URL, what it printed before serving)."""
    proc = subprocess.Popen(
        [EGRESS, "console", "--port", "0", *args],
        cwd=cwd,
        env=env or _env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "stop with Ctrl-C" in line:
                break
        printed = "".join(lines)
        found = URL_LINE.search(printed)
        assert found, f"no URL printed: {printed!r} {proc.stderr.read() if proc.poll() else ''}"
        yield found.group(1), printed
    finally:
        stop_process(proc)


@contextmanager
def sign_in(base: str, password: str) -> Iterator[httpx.Client]:
    """Sign in through the login form, as a browser does (CSRF field from the page)."""
    with httpx.Client(base_url=base, timeout=10.0, follow_redirects=True) as client:
        yield _signed_in(client, password)


def _signed_in(client: httpx.Client, password: str) -> httpx.Client:
    page = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf, "the login form carries a CSRF field"
    client.post("/login", data={"username": "admin", "password": password, "csrf": csrf.group(1)})
    return client


def test_first_run_prints_the_password_once_and_imports_the_example(tmp_path: Path) -> None:
    with console("--import", str(EXAMPLE), cwd=tmp_path) as (base, printed):
        assert printed.count("shown once") == 1
        password = PASSWORD_LINE.search(printed)
        assert password, printed
        assert f"imported {EXAMPLE} as version 1" in printed
        db = tmp_path / "var" / "egress.db"
        assert db.is_file(), "the default store is ./var/egress.db"
        assert oct(db.stat().st_mode & 0o777) == "0o600"
        with sign_in(base, password.group(1)) as client:
            overview = client.get("/")
            assert overview.status_code == 200
            assert "proxy.corp.example" in overview.text, "the imported proxy is shown"
            wrong = httpx.post(f"{base}login", data={"username": "admin", "password": "x"})
            assert "proxy.corp.example" not in wrong.text

    with console("--import", str(EXAMPLE), cwd=tmp_path) as (_, again):
        assert "shown once" not in again
        assert "--import ignored" in again


def test_the_password_can_come_from_the_environment(tmp_path: Path) -> None:
    secret = "correct-horse-battery-staple-7"
    env = _env(EGRESS_ADMIN_PASSWORD=secret)
    with console("--db", str(tmp_path / "c.db"), cwd=tmp_path, env=env) as (base, printed):
        assert secret not in printed
        assert "EGRESS_ADMIN_PASSWORD" in printed
        with sign_in(base, secret) as client:
            assert client.get("/").status_code == 200
            assert "/login" not in str(client.get("/").url)


def test_the_store_can_come_from_the_environment(tmp_path: Path) -> None:
    """``EGRESS_CONSOLE_DB`` keeps a database URL (and its password) out of the process list."""
    db = tmp_path / "from-env.db"
    env = _env(EGRESS_CONSOLE_DB=f"sqlite:///{db}")
    with console(cwd=tmp_path, env=env) as (_, printed):
        assert f"store: sqlite:///{db}" in printed
        assert db.is_file()
        assert not (tmp_path / "var").exists()


def test_a_bad_import_file_stops_before_anything_is_stored(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("proxy:\n  url: socks5://p:1080\n")
    done = subprocess.run(
        [EGRESS, "console", "--port", "0", "--import", str(bad)],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3
    assert "proxy.url" in done.stderr and "socks5" in done.stderr
    assert "shown once" not in done.stdout
    assert not (tmp_path / "var").exists()


def test_a_port_in_use_is_one_sentence(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = subprocess.run(
            [EGRESS, "console", "--port", str(port), "--db", str(tmp_path / "c.db")],
            cwd=tmp_path,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode != 0
    assert f"127.0.0.1:{port} is already in use" in done.stderr
    assert "Traceback" not in done.stderr
    assert "shown once" not in done.stdout


@pytest.mark.parametrize("port", ["65536", "-1", "http"])
def test_a_bad_port_is_a_usage_error(port: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [EGRESS, "console", "--port", port], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "--port" in done.stderr
