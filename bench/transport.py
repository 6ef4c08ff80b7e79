"""Benchmark: what ``egress.Client`` costs over a plain httpx client through the same Squid.

DESIGN.md §9: through Squid, ``egress.Client`` adds at most 5% wall time to a plain
``httpx.Client(proxy=...)`` over 2,000 HTTPS requests, and keep-alive holds one CONNECT tunnel
per origin (counted in Squid's access log).

The script starts its own fake origin (``tests/support``; in a child process, as a real origin
would not share the client's interpreter and GIL) and Squid (loopback only). It then sends
``--requests`` HTTPS requests with each of three clients, in blocks of ``--block``, rotating
the order every round (E P C, P C E, C E P, ...) so drift on the machine and the position in a
round hit all of them alike:

- E: ``egress.Client(settings)`` with the proxy in ``settings``;
- P: ``httpx.Client(proxy=..., verify=ctx, trust_env=False)``, the baseline;
- C: a second, identical plain client, the control: P against C shows the noise of the machine
  (an A/A comparison), which the E/P ratio should be read against.

Each client talks to its own fake name (one origin serves them all), so the access log tells
their CONNECT tunnels apart. Prints medians, ratios, client CPU per request, tunnel counts,
versions and the machine; exits 1 if the E/P ratio or a tunnel count misses its target.

The requests ask for ``/bytes/0`` (200, empty body): the fake origin writes a body in a second
``send`` without TCP_NODELAY, and that second small TLS record waits for Squid's delayed ACK
(about 40 ms), which would drown what is measured here. egress never touches the body, so its
size does not change the overhead.

    .venv/bin/python bench/transport.py [--requests 2000] [--block 100]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

import httpcore  # noqa: E402
import httpx  # noqa: E402
from tests.support import names  # noqa: E402
from tests.support.certs import generate_certs  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.squid import SQUID, SquidProxy  # noqa: E402

import egress  # noqa: E402
from egress.settings import load_settings_from_mapping  # noqa: E402

TARGET_RATIO = 1.05


class _OriginProcess:
    """The fake origin served from a child process; stopped by its PID."""

    def __init__(self, cert: Path, key: Path) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._parent, child = ctx.Pipe()
        self._stop = ctx.Event()
        self.process = ctx.Process(
            target=_serve_origin, args=(str(cert), str(key), child, self._stop), daemon=True
        )
        self.process.start()
        if not self._parent.poll(30):
            self.close()
            raise SystemExit("the fake origin did not start within 30 s")
        self.http_port, self.https_port = self._parent.recv()

    def url(self, name: str, path: str) -> str:
        return f"https://{name}:{self.https_port}{path}"

    def close(self) -> None:
        self._stop.set()
        self.process.join(5)
        if self.process.is_alive() and self.process.pid is not None:
            os.kill(self.process.pid, signal.SIGTERM)
            self.process.join(5)


def _serve_origin(cert: str, key: str, conn: Any, stop: Any) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.support.origin import FakeOrigin

    with FakeOrigin(cert, key) as origin:
        conn.send((origin.http_port, origin.https_port))
        stop.wait()


class _Runner:
    """One client, its URL, and its per-request wall and client-thread CPU times."""

    def __init__(self, label: str, host: str, client: httpx.Client, origin: _OriginProcess):
        self.label = label
        self.host = host
        self.client = client
        self.url = origin.url(host, "/bytes/0")
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.block_medians: list[float] = []

    def run_block(self, count: int, *, record: bool = True) -> None:
        block: list[float] = []
        for _ in range(count):
            cpu, start = time.thread_time(), time.perf_counter()
            response = self.client.get(self.url)
            response.read()
            block.append(time.perf_counter() - start)
            if record:
                self.cpu.append(time.thread_time() - cpu)
            if response.status_code != 200:
                raise SystemExit(f"unexpected status {response.status_code} from {self.url}")
        if record:
            self.wall.extend(block)
            self.block_medians.append(statistics.median(block))


def _ratios(a: _Runner, b: _Runner) -> tuple[float, float]:
    """(median of a / median of b, median of the per-round block-median ratios)."""
    overall = statistics.median(a.wall) / statistics.median(b.wall)
    paired = statistics.median(x / y for x, y in zip(a.block_medians, b.block_medians, strict=True))
    return overall, paired


def _squid_version() -> str:
    result = subprocess.run([SQUID, "-v"], capture_output=True, text=True, check=False, timeout=30)
    return (result.stdout.splitlines() or ["?"])[0]


def _count_tunnels(squid: SquidProxy, mark: int, hosts: list[str]) -> dict[str, int]:
    """CONNECT lines per host; Squid writes one when a tunnel closes (clients are closed now)."""

    def seen() -> list[str]:
        return [
            line.url.rsplit(":", 1)[0]
            for line in squid.access_log_lines(since=mark)
            if line.method == "CONNECT"
        ]

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not all(h in seen() for h in hosts):
        time.sleep(0.05)
    time.sleep(0.2)  # let any further line land
    logged = seen()
    return {host: logged.count(host) for host in hosts}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per client")
    parser.add_argument("--block", type=int, default=100, help="requests per block")
    args = parser.parse_args()
    if args.requests < 1 or args.block < 1:
        parser.error("--requests and --block must be positive")

    with tempfile.TemporaryDirectory(prefix="egress-bench-") as tmp:
        certs = generate_certs(Path(tmp) / "certs")
        origin = _OriginProcess(certs.origin_cert, certs.origin_key)
        try:
            squid = SquidProxy(
                proxy_cert=certs.proxy_cert,
                proxy_key=certs.proxy_key,
                origin_http_port=origin.http_port,
                origin_https_port=origin.https_port,
                pg_port=free_port(),
            )
            try:
                squid.start()
                pids = f"origin pid {origin.process.pid}, squid pid {squid.pid}"
                print(f"{pids}, proxy {squid.http_url}", flush=True)
                settings = load_settings_from_mapping(
                    {"proxy": {"enabled": True, "url": squid.http_url}}, env={}
                )
                mark = squid.access_log_mark()
                started = time.perf_counter()
                with (
                    egress.Client(settings, verify=certs.origin_context()) as ours,
                    httpx.Client(
                        proxy=squid.http_url, verify=certs.origin_context(), trust_env=False
                    ) as plain,
                    httpx.Client(
                        proxy=squid.http_url, verify=certs.origin_context(), trust_env=False
                    ) as control,
                ):
                    runners = [
                        _Runner("egress.Client", names.AUTH_SAAS, ours, origin),
                        _Runner("httpx.Client", names.API_SAAS, plain, origin),
                        _Runner("httpx.Client (control)", names.OAUTH2_GOOGLE, control, origin),
                    ]
                    egress_run, plain_run, control_run = runners
                    for runner in runners:  # the first request opens the tunnel; not counted
                        runner.run_block(1, record=False)
                    done = 0
                    while done < args.requests:
                        count = min(args.block, args.requests - done)
                        for runner in runners:
                            runner.run_block(count)
                        runners = runners[1:] + runners[:1]
                        done += count
                elapsed = time.perf_counter() - started
                tunnels = _count_tunnels(
                    squid, mark, [r.host for r in (egress_run, plain_run, control_run)]
                )
            finally:
                squid.close()
        finally:
            origin.close()

    ratio, paired = _ratios(egress_run, plain_run)
    noise, noise_paired = _ratios(control_run, plain_run)
    print()
    print(
        f"{args.requests} HTTPS requests per client through Squid (CONNECT), blocks of "
        f"{args.block}, order rotated each round; {elapsed:.1f} s in all"
    )
    for run in (egress_run, plain_run, control_run):
        print(
            f"  {run.label:24} median {statistics.median(run.wall) * 1e6:7.1f} us/request, "
            f"client CPU {statistics.median(run.cpu) * 1e6:6.1f} us/request, "
            f"CONNECT tunnels to {run.host}: {tunnels[run.host]}"
        )
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    print(f"overhead egress/plain    {ratio:.3f}  (target <= {TARGET_RATIO}: {verdict})")
    print(f"  per-round pairs        {paired:.3f}  (median of adjacent block-median ratios)")
    print(f"noise control/plain      {noise:.3f}  (A/A; per-round pairs {noise_paired:.3f})")
    ok_tunnels = all(count == 1 for count in tunnels.values())
    print(f"keep-alive               {'1 tunnel per client' if ok_tunnels else tunnels} "
          "(target 1 per origin)")  # fmt: skip
    print()
    print(
        f"python {platform.python_version()}, httpx {httpx.__version__}, "
        f"httpcore {httpcore.__version__}, egress {egress.__version__}"
    )
    print(_squid_version())
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"machine: {platform.machine()}, nproc {len(os.sched_getaffinity(0))}, load {load}")
    print(f"         {platform.platform()}")
    return 0 if ratio <= TARGET_RATIO and ok_tunnels else 1


if __name__ == "__main__":
    raise SystemExit(main())
