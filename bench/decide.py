"""How fast is a routing decision, and does it stay flat as the no-proxy list grows?

Measures ``Router.decide(url)`` (URL parsing included) with 10, 1,000, 10,000 and 100,000
excluded entries (domains, ``*.`` wildcards, leading dots, IPs, CIDRs, host:port), over hosts that
hit and miss, and in the same run the two baselines every Python component would otherwise use on
the same lists: ``urllib.request.proxy_bypass_environment`` and requests'
``should_bypass_proxies``.

Targets (DESIGN.md §9): 100,000 entries cost at most 2x what 10 do; at 10,000 entries egress is
at least 1,000x faster than both baselines.

    .venv/bin/python bench/decide.py            # about a minute
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence

import requests
import requests.utils

from egress import Settings

SIZES = (10, 1_000, 10_000, 100_000)


def entries(n: int) -> list[str]:
    """A mixed no-proxy list of ``n`` entries, deterministic."""
    out: list[str] = []
    for i in range(n):
        kind = i % 6
        if kind == 0:
            out.append(f"svc{i}.corp{i % 97}.example")
        elif kind == 1:
            out.append(f"*.team{i}.example.net")
        elif kind == 2:
            out.append(f".zone{i}.internal")
        elif kind == 3:
            out.append(f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}")
        elif kind == 4:
            out.append(f"172.{16 + (i >> 16) % 16}.{(i >> 8) & 255}.0/24")
        else:
            out.append(f"api{i}.partner.example:8443")
    return out


def urls(n: int) -> list[str]:
    """Hosts that hit (first, middle and last entries) and hosts that miss."""
    last = n - 1
    return [
        "https://svc0.corp0.example/",  # hit, first entry
        f"https://x.team{1 if n > 1 else 0}.example.net/",  # hit, wildcard
        f"https://a.b.zone{2 if n > 2 else 0}.internal/",  # hit, leading dot
        f"https://svc{(last // 6) * 6}.corp{((last // 6) * 6) % 97}.example/",  # hit, late entry
        "https://auth.carto.com/",  # miss
        "https://bigquery.googleapis.com/",  # miss
        "https://notsvc0.corp0.example/",  # miss at a label boundary
        "http://10.200.200.200/",  # miss (IP)
        "https://deep.sub.domain.of.some.example.org/path",  # miss, many labels
        "https://192.168.1.1:8443/",  # miss (IP)
    ]


def per_call(func: Callable[[str], object], inputs: Sequence[str], budget: float) -> float:
    """Median seconds per call over 5 rounds, each round about ``budget`` seconds long."""
    # calibrate: how many calls fit in the budget
    n = 1
    while True:
        start = time.perf_counter()
        for i in range(n):
            func(inputs[i % len(inputs)])
        elapsed = time.perf_counter() - start
        if elapsed >= budget / 4 or n >= 1 << 22:
            break
        n *= 2
    calls = max(1, int(n * budget / max(elapsed, 1e-9)))
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for i in range(calls):
            func(inputs[i % len(inputs)])
        rounds.append((time.perf_counter() - start) / calls)
    return statistics.median(rounds)


def interleaved(
    cases: dict[tuple[str, int], tuple[Callable[[str], object], Sequence[str]]],
    budget: float,
    rounds: int = 9,
) -> dict[tuple[str, int], float]:
    """Median seconds per call of each case, timed in interleaved rounds.

    Every round times every case once, so a slow moment of a shared machine lands on all cases
    alike instead of on whichever size happened to run then.
    """
    first_func, first_inputs = next(iter(cases.values()))
    per = per_call(first_func, first_inputs, budget / 4)
    calls = max(1000, int(budget / max(per, 1e-9)))
    times: dict[tuple[str, int], list[float]] = {key: [] for key in cases}
    for _ in range(rounds):
        for key, (func, inputs) in cases.items():
            size = len(inputs)
            start = time.perf_counter()
            for i in range(calls):
                func(inputs[i % size])
            times[key].append((time.perf_counter() - start) / calls)
    return {key: statistics.median(values) for key, values in times.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=0.2, help="seconds per timing round")
    args = parser.parse_args(argv)

    print(
        f"python {platform.python_version()}, requests {requests.__version__}, "
        f"{platform.machine()}, {os.cpu_count()} cores"
    )
    print(
        f"{'entries':>8}  {'warm decide':>12}  {'cold decide':>12}  {'urllib':>11}  "
        f"{'requests':>11}  {'warm/urllib':>11}  {'warm/requests':>13}  {'cold/urllib':>11}  "
        f"{'cold/requests':>13}"
    )
    routers = {}
    for n in SIZES:
        targets = urls(n)
        router = Settings.from_proxy("http://proxy.corp:3128", no_proxy=entries(n), env={}).router()
        # correctness first: the first four hit, the rest miss, memo or not
        routes = [router.decide(u).route for u in targets]
        expected = ["direct"] * 4 + ["proxy"] * 6 if n >= 6 else routes
        if routes != expected or routes != [router.decide_uncached(u).route for u in targets]:
            print(f"unexpected decisions at {n}: {routes}", file=sys.stderr)
            return 1
        routers[n] = (router, targets)
    cases: dict[tuple[str, int], tuple[Callable[[str], object], Sequence[str]]] = {}
    for n, (router, targets) in routers.items():
        cases[("warm", n)] = (router.decide, targets)
        cases[("cold", n)] = (router.decide_uncached, targets)
    egress_times = interleaved(cases, args.budget)
    warm = {n: egress_times[("warm", n)] for n in SIZES}
    cold = {n: egress_times[("cold", n)] for n in SIZES}

    base: dict[int, tuple[float, float]] = {}
    for n in SIZES:
        joined = ",".join(entries(n))
        targets = routers[n][1]
        hosts = [u.split("://", 1)[1].split("/", 1)[0] for u in targets]
        t_urllib = per_call(
            lambda h, joined=joined: urllib.request.proxy_bypass_environment(h, {"no": joined}),
            hosts,
            args.budget,
        )
        t_requests = per_call(
            lambda u, joined=joined: requests.utils.should_bypass_proxies(u, no_proxy=joined),
            targets,
            args.budget,
        )
        base[n] = (t_urllib, t_requests)
        print(
            f"{n:>8}  {warm[n] * 1e6:>9.2f} µs  {cold[n] * 1e6:>9.2f} µs  "
            f"{t_urllib * 1e6:>8.1f} µs  {t_requests * 1e6:>8.1f} µs  "
            f"{t_urllib / warm[n]:>10,.0f}x  {t_requests / warm[n]:>12,.0f}x  "
            f"{t_urllib / cold[n]:>10,.0f}x  {t_requests / cold[n]:>12,.0f}x"
        )

    flat_cold = cold[100_000] / cold[10]
    flat_warm = warm[100_000] / warm[10]
    u10k, r10k = base[10_000]
    print()
    print(
        f"decisions per second at 100,000 entries: {1 / warm[100_000]:,.0f} warm, "
        f"{1 / cold[100_000]:,.0f} cold"
    )
    print(
        f"flatness: cost(100,000) / cost(10) = {flat_cold:.2f} cold, {flat_warm:.2f} warm  "
        "(target <= 2)"
    )
    print(
        f"speed-up at 10,000 entries, warm: {u10k / warm[10_000]:,.0f}x urllib, "
        f"{r10k / warm[10_000]:,.0f}x requests  (target >= 1,000x both)"
    )
    print(
        f"speed-up at 10,000 entries, cold: {u10k / cold[10_000]:,.0f}x urllib, "
        f"{r10k / cold[10_000]:,.0f}x requests"
    )
    ok = flat_cold <= 2 and min(u10k, r10k) / warm[10_000] >= 1000
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
