"""Benchmark: the client CPU ``egress.Client`` spends per request over a plain httpx client.

The target (README, Benchmarks): through Squid, with keep-alive and a different path on every
request, ``egress.Client`` spends at most 1.02x the client CPU per request of a plain
``httpx.Client(proxy=...)`` with the same proxy, and keep-alive holds one CONNECT tunnel per
origin (counted in Squid's access log).

The script starts its own fake origin (``tests/support``; in a child process, as a real origin
does not share the client's interpreter) and Squid (loopback only). Three clients then send
``--requests`` HTTPS requests each, every one to a new path and query (``/bytes/0/<n>?q=<n>``,
so no memo of whole URLs can answer), in short blocks of ``--block``, in a new random order
every round, so drift on the machine, the place in a round and the client run just before hit
all alike:

- E: ``egress.Client(settings)`` with the proxy in ``settings``;
- P and C: two identical ``httpx.Client(proxy=..., verify=ctx, trust_env=False)``, the
  baseline measured twice: C against P is an A/A comparison that shows what the machine alone
  makes of two identical clients, which the E ratio should be read against.

What is measured is the calling thread's CPU time (``time.thread_time``) over each block,
divided by the block's requests: the work the client does, without the time it waits for Squid
and the origin (which share the machine's cores). Each block starts with one untimed request
(the switch from another client's connection). Each client's figure is the median of its
blocks. The ratio is the median over rounds of E's block over the mean of P's and C's blocks in
the same round (short blocks keep a round's blocks close in time, so the load of a shared
machine cancels out); E against P and against C alone are printed too.

Each client talks to its own fake name (one origin serves them all), so the access log tells
their CONNECT tunnels apart. Exits 1 if the ratio or a tunnel count misses its target.

The requests ask for an empty body: the fake origin writes a body in a second ``send`` without
TCP_NODELAY, and that second small TLS record waits for Squid's delayed ACK (about 40 ms), which
would drown the rest; egress never touches the body, so its size does not change the overhead.

    .venv/bin/python bench/transport.py [--requests 3000] [--block 10]
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import platform
import random
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

TARGET_RATIO = 1.02


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
    """One client, its origin name, and the client CPU per request of each of its blocks."""

    def __init__(self, label: str, host: str, client: httpx.Client, port: int) -> None:
        self.label = label
        self.host = host
        self.client = client
        self.base = f"https://{host}:{port}/bytes/0/"
        self.counter = itertools.count()
        self.cpu: list[float] = []
        self.wall: list[float] = []

    def run_block(self, count: int, *, record: bool = True) -> None:
        # the URLs are made before the clock starts: the work measured is the client's
        urls = [f"{self.base}{n}?q={n}" for n in itertools.islice(self.counter, count + 1)]
        get = self.client.get
        get(urls.pop())  # untimed: the switch from another client's connection
        wall, cpu = time.perf_counter(), time.thread_time()
        for url in urls:
            response = get(url)
            if response.status_code != 200:
                raise SystemExit(f"unexpected status {response.status_code} from {url}")
        cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
        if record:
            self.cpu.append(cpu / count)
            self.wall.append(wall / count)


def _paired(a: _Runner, *baseline: _Runner) -> float:
    """The median over rounds of a's block CPU over the mean of the baseline's blocks in the same
    round."""
    rounds = zip(a.cpu, *(b.cpu for b in baseline), strict=True)
    return statistics.median(x / statistics.fmean(ys) for x, *ys in rounds)


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


def _machine() -> str:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"machine: {platform.machine()} {model}, {len(os.sched_getaffinity(0))} cores usable, "
        f"load {load}\n         {platform.platform()}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per client")
    parser.add_argument("--block", type=int, default=10, help="requests per block")
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
                port = origin.https_port
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
                        _Runner("egress.Client", names.AUTH_SAAS, ours, port),
                        _Runner("httpx.Client", names.API_SAAS, plain, port),
                        _Runner("httpx.Client (2nd)", names.OAUTH2_GOOGLE, control, port),
                    ]
                    egress_run, plain_run, control_run = runners
                    for runner in runners:  # a warm-up block (opens the tunnel); not counted
                        runner.run_block(min(args.block, 50), record=False)
                    done = 0
                    shuffle = random.Random(7).shuffle
                    while done < args.requests:
                        count = min(args.block, args.requests - done)
                        shuffle(runners)
                        for runner in runners:
                            runner.run_block(count)
                        done += count
                elapsed = time.perf_counter() - started
                tunnels = _count_tunnels(
                    squid, mark, [r.host for r in (egress_run, plain_run, control_run)]
                )
            finally:
                squid.close()
        finally:
            origin.close()

    ratio = _paired(egress_run, plain_run, control_run)
    noise = _paired(control_run, plain_run)
    rounds = len(plain_run.cpu)
    print()
    print(
        f"{args.requests} HTTPS requests per client through Squid (CONNECT, keep-alive), every "
        f"one a new path; {rounds} rounds of {args.block}, random order; {elapsed:.1f} s in all"
    )
    for run in (egress_run, plain_run, control_run):
        print(
            f"  {run.label:24} client CPU {statistics.median(run.cpu) * 1e6:6.1f} us/request "
            f"(median of blocks), wall {statistics.median(run.wall) * 1e6:7.1f} us/request, "
            f"CONNECT tunnels to {run.host}: {tunnels[run.host]}"
        )
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    print(f"client CPU egress/plain  {ratio:.3f}  (target <= {TARGET_RATIO}: {verdict}; median "
          "over rounds of E / mean of the two plain clients)")  # fmt: skip
    print(
        f"  against each plain     {_paired(egress_run, plain_run):.3f}, "
        f"{_paired(egress_run, control_run):.3f}"
    )
    print(f"A/A plain/plain          {noise:.3f}  (same method: what the machine alone makes)")
    ok_tunnels = all(count == 1 for count in tunnels.values())
    print(f"keep-alive               {'1 tunnel per client' if ok_tunnels else tunnels} "
          "(target 1 per origin)")  # fmt: skip
    print()
    print(
        f"python {platform.python_version()}, httpx {httpx.__version__}, "
        f"httpcore {httpcore.__version__}, egress {egress.__version__}"
    )
    print(_squid_version())
    print(_machine())
    return 0 if ratio <= TARGET_RATIO and ok_tunnels else 1


if __name__ == "__main__":
    raise SystemExit(main())
