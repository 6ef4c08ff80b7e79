"""How long a saved change takes to reach a component's requests (live settings).

A real ``egress console`` process (SQLite in a temp dir, the admin password from
``EGRESS_ADMIN_PASSWORD``) holds settings whose proxy is a real Squid on loopback. A client,
``egress.Client(source=ConsoleSource(...))`` at the default poll interval, sends a request every
few milliseconds to a loopback origin under a fake name (direct: ``resolve`` to 127.0.0.1;
proxied: Squid's hosts file). 50 times, at a random moment, the switch is flipped through
``POST /api/v1/settings/switch`` with an admin token; the figure is the time from the save's
answer to the start of the first request whose decision (read from the response) is the new
route. Target: p99 under 2 s. The baseline is the poll interval: a change waits for the next
poll, so the mean should be about interval/2 plus one poll's round trip.

Then the second question about live settings, the cost of observability on the data path,
is answered by ``bench/observability.py`` (decision logging and metrics on vs off over 2,000
requests through Squid), run from here with its defaults; run it alone for ``--what``.

Run: ``.venv/bin/python bench/live.py`` (Squid from scripts/install-system-deps.sh).
"""

from __future__ import annotations

import http.server
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

import httpx  # noqa: E402
import yaml  # noqa: E402
from tests.support import names  # noqa: E402
from tests.support.certs import generate_certs  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.processes import stop_process  # noqa: E402
from tests.support.squid import SQUID, SquidProxy  # noqa: E402

import egress  # noqa: E402
from egress.sources import DEFAULT_INTERVAL, ConsoleSource  # noqa: E402

CHANGES = 50
PAUSE = (0.3, 1.3)
"""Seconds between changes, drawn at random so saves fall anywhere in the poll cycle."""
REQUEST_GAP = 0.003
TARGET_P99 = 2.0
PASSWORD = "bench-admin-password-1"
HOST = names.API_SAAS


class _Origin(http.server.BaseHTTPRequestHandler):
    """A keep-alive origin answering "ok" in one TCP segment (no delayed-ACK stalls)."""

    protocol_version = "HTTP/1.1"
    wbufsize = 65536
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


def wait_ready(url: str, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            httpx.get(url, timeout=1.0, trust_env=False)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {deadline:g} s")


def tokens(base: str) -> tuple[str, str]:
    """Sign in as admin through the API, make an admin token (the operator's automation) and
    a read token (the component's)."""
    made: list[str] = []
    with httpx.Client(base_url=base, timeout=10.0, trust_env=False) as client:
        login = client.post("/api/v1/login", json={"username": "admin", "password": PASSWORD})
        login.raise_for_status()
        csrf = login.json()["csrf"]
        for name, role in (("bench-admin", "admin"), ("bench-component", "read")):
            answer = client.post(
                "/api/v1/tokens", json={"name": name, "role": role}, headers={"X-CSRF-Token": csrf}
            )
            answer.raise_for_status()
            made.append(answer.json()["token"])
    return made[0], made[1]


class Requester(threading.Thread):
    """Requests back to back (a few ms apart); remembers (start time, route) of each."""

    def __init__(self, client: egress.Client, url: str) -> None:
        super().__init__(daemon=True)
        self.client, self.url = client, url
        self.seen: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.errors = 0

    def run(self) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                response = self.client.get(self.url)
                route = response.extensions["egress_decision"].route
            except httpx.HTTPError:
                self.errors += 1
                continue
            with self.lock:
                self.seen.append((started, route))
            time.sleep(REQUEST_GAP)

    def first(self, route: str, after: float, deadline: float) -> float:
        """Start time of the first request on ``route`` that started after ``after``."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            with self.lock:
                found = [s for s, r in self.seen if s > after and r == route]
            if found:
                return found[0]
            time.sleep(0.002)
        raise RuntimeError(f"no request went {route} within {deadline:g} s of the change")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    origin = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Origin)
    origin.daemon_threads = True
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    origin_port = origin.server_port
    egress_cli = str(Path(sys.executable).with_name("egress"))
    with tempfile.TemporaryDirectory(prefix="egress-bench-live-") as tmp:
        certs = generate_certs(Path(tmp) / "certs")
        squid = SquidProxy(
            proxy_cert=certs.proxy_cert,
            proxy_key=certs.proxy_key,
            origin_http_port=origin_port,
            origin_https_port=free_port(),
            pg_port=free_port(),
        )
        squid.start()
        console: subprocess.Popen[bytes] | None = None
        try:
            seed = Path(tmp) / "seed.yaml"
            seed.write_text(
                yaml.safe_dump(
                    {
                        "proxy": {"enabled": False, "url": squid.http_url},
                        "resolve": {HOST: "127.0.0.1"},
                        "deployment": {"kind": "single-vm"},
                    }
                )
            )
            port = free_port()
            console = subprocess.Popen(
                [egress_cli, "console", "--db", f"{tmp}/egress.db", "--port", str(port),
                 "--import", str(seed)],
                env={**os.environ, "EGRESS_ADMIN_PASSWORD": PASSWORD},
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )  # fmt: skip
            base = f"http://127.0.0.1:{port}"
            wait_ready(f"{base}/healthz")
            admin, reader = tokens(base)
            print(f"console pid {console.pid} at {base}; squid pid {squid.pid} at {squid.http_url}")
            delays: list[float] = []
            with (
                ConsoleSource(base, reader, env={}) as source,
                egress.Client(source=source) as client,
                httpx.Client(base_url=base, trust_env=False, timeout=10.0) as operator,
            ):
                requester = Requester(client, f"http://{HOST}:{origin_port}/")
                requester.start()
                enabled = False
                try:
                    for _ in range(CHANGES):
                        time.sleep(random.uniform(*PAUSE))
                        enabled = not enabled
                        answer = operator.post(
                            "/api/v1/settings/switch",
                            json={"enabled": enabled},
                            headers={"Authorization": f"Bearer {admin}"},
                        )
                        saved = time.monotonic()
                        answer.raise_for_status()
                        route = "proxy" if enabled else "direct"
                        delays.append(requester.first(route, saved, deadline=30.0) - saved)
                finally:
                    requester.stopping.set()
                    requester.join(10)
                requests_sent = len(requester.seen)
        finally:
            if console is not None:
                stop_process(console)
            squid.stop_process()
            origin.shutdown()
            origin.server_close()

    p50, p99 = percentile(delays, 0.50), percentile(delays, 0.99)
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.machine(),
    )
    squid_version = subprocess.run(
        [SQUID, "-v"], capture_output=True, text=True, check=False
    ).stdout.splitlines()[0]
    print(f"machine: {os.cpu_count()} cores, {cpu}; Python {platform.python_version()}")
    print(
        "versions: "
        + ", ".join(f"{p} {version(p)}" for p in ("egress", "httpx", "uvicorn", "fastapi"))
        + f"; {squid_version}"
    )
    print(
        f"baseline: ConsoleSource default poll interval {DEFAULT_INTERVAL:g} s "
        f"(expected mean about interval/2 = {DEFAULT_INTERVAL / 2:.2f} s plus one poll)"
    )
    print(
        f"{CHANGES} switch flips, {requests_sent} requests ({requester.errors} failed), "
        "time from the save's answer to the first request on the new route:"
    )
    print(
        f"  p50 {p50:.3f} s   p99 {p99:.3f} s   mean {statistics.mean(delays):.3f} s   "
        f"min {min(delays):.3f} s   max {max(delays):.3f} s"
    )
    print(
        f"  mean / (interval/2) = {statistics.mean(delays) / (DEFAULT_INTERVAL / 2):.2f}; "
        f"target p99 < {TARGET_P99:g} s: {'met' if p99 < TARGET_P99 else 'NOT met'}"
    )
    return 0 if p99 < TARGET_P99 else 1


def observability_cost() -> int:
    """``bench/observability.py`` with its defaults, in this process."""
    import runpy

    print("\n== the cost of observability on the data path (bench/observability.py)")
    argv, sys.argv = sys.argv, [str(Path(__file__).with_name("observability.py"))]
    try:
        module = runpy.run_path(sys.argv[0])
        return int(module["main"]())
    finally:
        sys.argv = argv


if __name__ == "__main__":
    live = main()
    cost = observability_cost()
    sys.exit(live or cost)
