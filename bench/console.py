"""1,000 components polling the console's settings with ``If-None-Match``.

The console runs as ``egress console`` would (uvicorn, one process, a SQLite store in a temp
dir, the example settings imported); ``wrk`` holds 1,000 keep-alive connections, each a
component polling ``GET /api/v1/settings`` with a read token and the current ETag, so every
answer is the ``304`` a component gets between changes. Two questions, three runs each, medians:

- *Paced* (the target): each component polls every 350-550 ms (a Lua ``delay``), ~2,200 polls/s
  offered in all, as real components do; polls/s served and p50/p99 latency. Target: at least
  2,000 polls/s with p99 under 50 ms.
- *Saturated* (the capacity): the same 1,000 connections sending back to back; polls/s against a
  bare ASGI app on the same uvicorn answering ``304`` with no work (the baseline), so the ratio is
  what the console's own work costs. Latency here is queueing (1,000 in flight / throughput), so
  it is printed but no target applies.

Run: ``.venv/bin/python bench/console.py`` (needs ``wrk``: scripts/install-system-deps.sh).
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support

import httpx
from tests.support.processes import stop_process

ROOT = Path(__file__).resolve().parent.parent
CONNECTIONS = 1000
SECONDS = 10
PACE_MS = (350, 550)
"""Each paced component waits a random 350-550 ms between polls: about 2,200 polls/s offered."""
RUNS = 3
TARGET_RPS = 2000
TARGET_P99_MS = 50.0
PASSWORD = "bench-admin-password-1"

BASELINE_APP = textwrap.dedent(
    """
    import sys, uvicorn
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 304,
                    "headers": [(b"etag", b'"v1"')]})
        await send({"type": "http.response.body", "body": b""})
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                access_log=False)
    """
)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {deadline:g} s")


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(
    url: str, headers: dict[str, str], script: str | None = None
) -> tuple[float, float, float, int]:
    """One wrk run: (requests/s, p50 ms, p99 ms, non-2xx/3xx answers plus socket errors)."""
    args = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--latency", "--timeout", "5s"]
    if script is not None:
        args += ["-s", script]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat: dict[str, float] = {}
    percentile = re.compile(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", re.M)
    for pct, value, unit in percentile.findall(out):
        lat[pct] = _ms(value, unit)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failures = int(bad.group(1)) if bad else 0
    failures += sum(int(n) for n in errors.groups()) if errors else 0
    return rps, lat["50"], lat["99"], failures


def median_runs(
    url: str, headers: dict[str, str], script: str | None = None
) -> tuple[float, float, float, int]:
    runs = [wrk(url, headers, script) for _ in range(RUNS)]
    return (
        statistics.median(r[0] for r in runs),
        statistics.median(r[1] for r in runs),
        statistics.median(r[2] for r in runs),
        sum(r[3] for r in runs),
    )


def read_token(base: str) -> tuple[str, str]:
    """Sign in as admin through the API's session login, make a read token, read the ETag."""
    with httpx.Client(base_url=base, timeout=10.0) as client:
        login = client.post("/api/v1/login", json={"username": "admin", "password": PASSWORD})
        login.raise_for_status()
        csrf = login.json()["csrf"]
        made = client.post(
            "/api/v1/tokens", json={"name": "bench", "role": "read"}, headers={"X-CSRF-Token": csrf}
        )
        made.raise_for_status()
        token = made.json()["token"]
        got = client.get("/api/v1/settings", headers={"Authorization": f"Bearer {token}"})
        got.raise_for_status()
        return token, got.headers["etag"]


def main() -> int:
    if shutil.which("wrk") is None:
        print("wrk is missing: run scripts/install-system-deps.sh", file=sys.stderr)
        return 1
    egress = str(Path(sys.executable).with_name("egress"))
    with tempfile.TemporaryDirectory(prefix="egress-bench-console-") as tmp:
        pace = Path(tmp) / "pace.lua"
        low, high = PACE_MS
        pace.write_text(f"function delay()\n  return math.random({low}, {high})\nend\n")
        port, base_port = free_port(), free_port()
        env = {**os.environ, "EGRESS_ADMIN_PASSWORD": PASSWORD}
        console = subprocess.Popen(
            [egress, "console", "--db", f"{tmp}/egress.db", "--port", str(port), "--import",
             str(ROOT / "examples" / "egress.yaml")],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        baseline = subprocess.Popen(
            [sys.executable, "-c", BASELINE_APP, str(base_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_ready(f"{base}/healthz")
            wait_ready(f"http://127.0.0.1:{base_port}/")
            token, etag = read_token(base)
            headers = {"Authorization": f"Bearer {token}", "If-None-Match": etag}
            check = httpx.get(f"{base}/api/v1/settings", headers=headers)
            assert check.status_code == 304, check.status_code
            url = f"{base}/api/v1/settings"
            p_rps, p_p50, p_p99, p_bad = median_runs(url, headers, str(pace))
            b_rps, b_p50, b_p99, b_bad = median_runs(f"http://127.0.0.1:{base_port}/", {})
            c_rps, c_p50, c_p99, c_bad = median_runs(url, headers)
        finally:
            stop_process(console)
            stop_process(baseline)

    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
         if ln.startswith("model name")),
        platform.machine(),
    )  # fmt: skip
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split()[:2]
    print(f"machine: {os.cpu_count()} cores, {cpu}; Python {platform.python_version()}")
    print(
        "versions: "
        + ", ".join(f"{p} {version(p)}" for p in ("uvicorn", "fastapi", "starlette", "SQLAlchemy"))
        + f", {' '.join(wrk_version)}"
    )
    print(f"{CONNECTIONS} keep-alive pollers, {RUNS} runs of {SECONDS} s each, medians:")
    print(f"{'':40} {'polls/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'failed':>7}")
    row = "{:40} {:9.0f} {:8.2f} {:8.2f} {:7d}"
    print(row.format(f"paced, every {low}-{high} ms (the target)", p_rps, p_p50, p_p99, p_bad))
    print(row.format("saturated: console settings 304", c_rps, c_p50, c_p99, c_bad))
    print(row.format("saturated: bare uvicorn 304 (baseline)", b_rps, b_p50, b_p99, b_bad))
    print(f"saturated throughput, ratio to the bare baseline: {c_rps / b_rps:.2f}x")
    ok = p_rps >= TARGET_RPS and p_p99 < TARGET_P99_MS and p_bad == 0
    verdict = "MET" if ok else "MISSED"
    print(f"target (at least {TARGET_RPS} polls/s served, p99 < {TARGET_P99_MS:g} ms): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
