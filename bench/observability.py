"""Benchmark: what decision logging and metrics cost on the data path, in client CPU per request.

The target (README "Observability"): through Squid, with keep-alive, an
``egress.Client`` with observability on (the ``egress.decision`` logger at DEBUG with a handler
writing to a null stream, and Prometheus metrics in a registry) spends at most 1.02x the client
CPU per request of the same client with both off.

Method as ``bench/transport.py`` (whose fake-origin process, block runner and pairing it uses):
the fake origin in a child process, Squid on loopback, three ``egress.Client`` with the same
settings, each to its own fake name (its own CONNECT tunnel), ``--requests`` HTTPS requests each,
every one a new path, in blocks of ``--block``, in a new random order every round:

- O: observability on while its blocks run (switched on before, off after, outside the clock);
- F and G: observability off; G against F is the A/A comparison (what the machine alone makes).

Client CPU is the calling thread's (``time.thread_time``) per request; the ratio is the median
over rounds of O's block over the mean of F's and G's. Exits 1 if the target is missed.

    .venv/bin/python bench/observability.py [--requests 2000] [--block 10] [--what both]
"""

from __future__ import annotations

import argparse
import io
import logging
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import httpcore  # noqa: E402
import httpx  # noqa: E402
from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from tests.support import names  # noqa: E402
from tests.support.certs import generate_certs  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.squid import SquidProxy  # noqa: E402

import egress  # noqa: E402
import transport as base  # noqa: E402  (bench/transport.py)
from egress import observe  # noqa: E402
from egress.settings import load_settings_from_mapping  # noqa: E402

TARGET_RATIO = 1.02


class _NullStream(io.TextIOBase):
    """Where the decision records go: formatted, then dropped."""

    def write(self, text: str) -> int:
        return len(text)


class _Observed(base._Runner):
    """A runner whose blocks run with decision logging and metrics on."""

    registry = CollectorRegistry()
    handler = logging.StreamHandler(_NullStream())
    what = "both"

    def run_block(self, count: int, *, record: bool = True) -> None:
        if self.what in ("both", "logging"):
            observe.LOG.setLevel(logging.DEBUG)
            observe.LOG.addHandler(self.handler)
        if self.what in ("both", "metrics"):
            observe.enable_metrics(self.registry)
        try:
            super().run_block(count, record=record)
        finally:
            observe.disable_metrics()
            observe.LOG.removeHandler(self.handler)
            observe.LOG.setLevel(logging.WARNING)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per client")
    parser.add_argument("--block", type=int, default=10, help="requests per block")
    parser.add_argument(
        "--what",
        choices=("both", "metrics", "logging"),
        default="both",
        help="what is on in the observed client's blocks (default: decision logging and metrics)",
    )
    args = parser.parse_args()
    _Observed.what = args.what
    if args.requests < 1 or args.block < 1:
        parser.error("--requests and --block must be positive")
    observe.disable_metrics()
    observe.LOG.setLevel(logging.WARNING)
    observe.LOG.propagate = False  # the records go to the null handler only

    with tempfile.TemporaryDirectory(prefix="egress-bench-") as tmp:
        certs = generate_certs(Path(tmp) / "certs")
        origin = base._OriginProcess(certs.origin_cert, certs.origin_key)
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
                print(f"origin pid {origin.process.pid}, squid pid {squid.pid}", flush=True)
                settings = load_settings_from_mapping(
                    {"proxy": {"enabled": True, "url": squid.http_url}}, env={}
                )
                port = origin.https_port
                started = time.perf_counter()
                with (
                    egress.Client(settings, verify=certs.origin_context()) as on,
                    egress.Client(settings, verify=certs.origin_context()) as off,
                    egress.Client(settings, verify=certs.origin_context()) as control,
                ):
                    runners = [
                        _Observed("observability on", names.AUTH_SAAS, on, port),
                        base._Runner("observability off", names.API_SAAS, off, port),
                        base._Runner("off (2nd)", names.OAUTH2_GOOGLE, control, port),
                    ]
                    on_run, off_run, control_run = runners
                    for runner in runners:
                        runner.run_block(min(args.block, 50), record=False)
                    done = 0
                    shuffle = random.Random(11).shuffle
                    while done < args.requests:
                        count = min(args.block, args.requests - done)
                        shuffle(runners)
                        for runner in runners:
                            runner.run_block(count)
                        done += count
                elapsed = time.perf_counter() - started
            finally:
                squid.close()
        finally:
            origin.close()

    scraped = generate_latest(_Observed.registry).decode()
    counted = sum(
        s.value
        for f in text_string_to_metric_families(scraped)
        for s in f.samples
        if s.name == "egress_decisions_total"
    )
    ratio = base._paired(on_run, off_run, control_run)
    noise = base._paired(control_run, off_run)
    print()
    print(
        f"{args.requests} HTTPS requests per client through Squid (CONNECT, keep-alive), every "
        f"one a new path; {len(off_run.cpu)} rounds of {args.block}, random order; "
        f"{elapsed:.1f} s in all"
    )
    for run in (on_run, off_run, control_run):
        print(
            f"  {run.label:20} client CPU {statistics.median(run.cpu) * 1e6:6.1f} us/request "
            f"(median of blocks), wall {statistics.median(run.wall) * 1e6:7.1f} us/request"
        )
    print(f"  on: {args.what}; decisions counted by the metrics: {counted:.0f}")
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    print(f"client CPU on/off        {ratio:.3f}  (target <= {TARGET_RATIO}: {verdict}; median "
          "over rounds of on / mean of the two off clients)")  # fmt: skip
    print(f"A/A off/off              {noise:.3f}  (same method: what the machine alone makes)")
    print()
    print(
        f"python {platform.python_version()}, httpx {httpx.__version__}, "
        f"httpcore {httpcore.__version__}, prometheus_client "
        f"{_version('prometheus_client')}, egress {egress.__version__}"
    )
    print(base._squid_version())
    print(base._machine())
    return 0 if ratio <= TARGET_RATIO else 1


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


if __name__ == "__main__":
    raise SystemExit(main())
