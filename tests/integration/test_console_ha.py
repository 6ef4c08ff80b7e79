"""Two ``egress console`` processes on one PostgreSQL database, as two replicas behind a Service.

Both are started at the same moment on a fresh database (both migrate, both find a first run).
Then: a change saved through one is served by the other at once (a full GET, and a poll with
the old ETag gets ``200``, never a stale ``304``); ``If-Match`` holds across them (the same
ETag sent to both at once: one ``200``, one ``409``); the audit log, read through either, has
every change exactly once.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from tests.support.postgres import PostgresServer
from tests.support.processes import stop_process

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "egress.yaml"
EGRESS = str(Path(sys.executable).with_name("egress"))
URL_LINE = re.compile(r"^egress console: (http://127\.0\.0\.1:\d+/)$", re.M)
ADMIN_PASSWORD = "ha-admin-password-correct-horse"


@pytest.fixture
def database(postgres: PostgresServer) -> Iterator[str]:
    """A fresh database on the suite's PostgreSQL, dropped afterwards."""
    name = f"egress_ha_{secrets.token_hex(6)}"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://{postgres.user}@{postgres.host}:{postgres.port}/{name}"
    finally:
        with psycopg.connect(postgres.dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _stop(proc: subprocess.Popen[str]) -> None:
    stop_process(proc)
    if proc.stdout is not None:
        proc.stdout.close()


@contextmanager
def consoles(db: str, count: int, cwd: Path) -> Iterator[list[str]]:
    """``count`` consoles on ``db``, started together; yields their base URLs."""
    env = {**os.environ, "EGRESS_ADMIN_PASSWORD": ADMIN_PASSWORD}
    with ExitStack() as stack:
        procs = []
        for _ in range(count):
            proc = subprocess.Popen(
                [EGRESS, "console", "--db", db, "--port", "0", "--import", str(EXAMPLE)],
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            stack.callback(_stop, proc)
            procs.append(proc)
        urls = []
        for proc in procs:
            assert proc.stdout is not None
            printed = ""
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and "stop with Ctrl-C" not in printed:
                line = proc.stdout.readline()
                if not line:
                    break
                printed += line
            found = URL_LINE.search(printed)
            if not found:
                _stop(proc)
                err = proc.stderr.read() if proc.stderr and not proc.stderr.closed else ""
                pytest.fail(f"a console did not start: {printed!r} {err!r}")
            urls.append(found.group(1))
        yield urls


def admin_token(base: str) -> str:
    with httpx.Client(base_url=base, timeout=30.0) as client:
        login = client.post("/api/v1/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        assert login.status_code == 200, login.text
        made = client.post(
            "/api/v1/tokens",
            json={"name": f"ha-{secrets.token_hex(3)}", "role": "admin"},
            headers={"X-CSRF-Token": login.json()["csrf"]},
        )
        assert made.status_code == 201, made.text
        return str(made.json()["token"])


def changed(document: dict[str, Any], n: int) -> dict[str, Any]:
    out = dict(document)
    out["excluded_domains"] = [".corp.example", "10.0.0.0/8", f".ha-{n}.example"]
    return out


def test_two_consoles_on_one_postgresql_agree(database: str, tmp_path: Path) -> None:
    with consoles(database, 2, tmp_path) as (one, two):
        token = admin_token(one)
        auth = {"Authorization": f"Bearer {token}"}
        a = httpx.Client(base_url=one, headers=auth, timeout=30.0)
        b = httpx.Client(base_url=two, headers=auth, timeout=30.0)
        with a, b:
            first = b.get("/api/v1/settings")  # the token made on one works on two
            assert first.status_code == 200 and first.headers["etag"] == '"v1"'
            document = first.json()
            # a component polling two settles into 304s on v1
            for _ in range(3):
                assert (
                    b.get("/api/v1/settings", headers={"If-None-Match": '"v1"'}).status_code == 304
                )

            saved = 0
            for n in range(2, 12):
                old = f'"v{n - 1}"'
                put = a.put(
                    "/api/v1/settings", json=changed(document, n), headers={"If-Match": old}
                )
                assert put.status_code == 200, put.text
                saved += 1
                poll = b.get("/api/v1/settings", headers={"If-None-Match": old})
                assert poll.status_code == 200, f"console two served a stale 304 after v{n}"
                assert poll.headers["etag"] == f'"v{n}"'
                assert f".ha-{n}.example" in poll.json()["excluded_domains"]
                a, b = b, a  # the next change goes through the other console

            # the same If-Match sent to both at once: exactly one wins
            for round_ in range(5):
                current = a.get("/api/v1/settings").headers["etag"]
                results: list[int] = []
                barrier = threading.Barrier(2)

                def put(
                    client: httpx.Client,
                    n: int,
                    etag: str = current,
                    barrier: threading.Barrier = barrier,
                    results: list[int] = results,
                ) -> None:
                    barrier.wait()
                    answer = client.put(
                        "/api/v1/settings", json=changed(document, n), headers={"If-Match": etag}
                    )
                    results.append(answer.status_code)
                    if answer.status_code == 409:
                        assert answer.headers["etag"] != etag

                threads = [
                    threading.Thread(target=put, args=(a, 100 + round_)),
                    threading.Thread(target=put, args=(b, 200 + round_)),
                ]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(60)
                assert sorted(results) == [200, 409], results
                saved += 1

            final = a.get("/api/v1/settings").headers["etag"]
            assert final == b.get("/api/v1/settings").headers["etag"] == f'"v{1 + saved}"'

            logs = [c.get("/api/v1/audit", params={"limit": 1000}).json() for c in (a, b)]
            assert logs[0] == logs[1], "both consoles read one audit log"
            entries = logs[0]
            saves = [e["detail"] for e in entries if e["action"] == "settings.save"]
            assert sorted(saves) == sorted(f"version {n}" for n in range(2, 2 + saved))
            assert len(saves) == len(set(saves)) == saved
            assert [e["action"] for e in entries].count("settings.import") == 1
            assert [e["action"] for e in entries].count("user.create") == 1
            assert len({e["id"] for e in entries}) == len(entries)
