"""How fast is a routing decision for URLs never seen before, and is it flat in the list size?

Measures ``Router.decide(url)`` (URL parsing included) with 10, 1,000, 10,000 and 100,000
excluded entries (domains, ``*.`` wildcards, leading dots, IPs, CIDRs, host:port), and in the same
run the baseline every Python component would otherwise use on the same list and the same hosts:
``urllib.request.proxy_bypass_environment``.

Every pass sends distinct URLs, so no memo of whole URLs can answer them:

- **new host**: each URL names a host no pass has sent before (hits and misses, names at several
  depths, IPv4 addresses, ``host:port``);
- **known host, new path**: 50 hosts the router has seen, each URL with a path and query no pass
  has sent before (what a component calling a few APIs sends);
- *same URL* (for information only): 10 URLs sent again and again.

urllib is given the hosts of the very same URLs (the first of each pass, as it is thousands of
times slower: every kind of new host in its share, every known host up to 10,000 entries).
Passes of every case are interleaved, so a slow moment of a shared machine lands on all of them
alike; each figure is the median over the rounds.

Goals (README, "Benchmarks"); the verdict uses only these:

- a new host: at least 1,000x faster than urllib at 10,000 entries;
- a known host with a new path or query: at least 3,000x faster than urllib at 10,000 entries and
  at least 2x faster than urllib on a 10-entry list;
- flat: 100,000 entries cost at most 2x what 10 do (new hosts, and known hosts with new paths).

    .venv/bin/python bench/decide.py            # about a minute
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence

from egress import Router, Settings

SIZES = (10, 1_000, 10_000, 100_000)
PASS = 4_000
"""Distinct URLs per pass of an egress case."""
KNOWN_HOSTS = 50
KINDS = 8
"""Kinds of new host; a pass cycles through them."""


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


def _of_kind(n: int, kind: int, q: int) -> int:
    """The index of the ``q``-th chosen entry of ``kind`` (0-5): any run of consecutive ``q``
    spreads evenly over the whole list (a golden-ratio sequence), so a sample is fair too."""
    count = (n - kind + 5) // 6
    return 6 * int((q * 0.6180339887498949) % 1.0 * count) + kind


def new_host_urls(n: int, round_no: int) -> tuple[list[str], list[bool]]:
    """A pass of URLs whose hosts no earlier pass sent, and whether each should go direct."""
    urls: list[str] = []
    direct: list[bool] = []
    tag = f"r{round_no}u"
    for i in range(PASS):
        kind = i % KINDS
        if kind == 0:  # under a domain entry: direct
            j = _of_kind(n, 0, i // KINDS)
            urls.append(f"https://{tag}{i}.svc{j}.corp{j % 97}.example/api/v1/items")
        elif kind == 1:  # under a wildcard entry: direct
            urls.append(f"https://{tag}{i}.team{_of_kind(n, 1, i // KINDS)}.example.net/")
        elif kind == 2:  # under a leading-dot entry: direct
            urls.append(f"https://{tag}{i}.zone{_of_kind(n, 2, i // KINDS)}.internal/health")
        elif kind == 3:  # under a host:port entry, on that port: direct
            urls.append(f"https://{tag}{i}.api{_of_kind(n, 5, i // KINDS)}.partner.example:8443/v2")
        elif kind == 4:  # a new name nobody listed: proxy
            urls.append(f"https://{tag}{i}.example.org/")
        elif kind == 5:  # a deep new name: proxy
            urls.append(f"https://cdn.{tag}{i}.assets.example.com/static/app.js")
        elif kind == 6:  # a new address nobody listed: proxy
            urls.append(f"http://192.{round_no % 256}.{(i >> 8) & 255}.{i & 255}/")
        else:  # a lookalike of a listed name, at a label boundary: proxy
            urls.append(f"https://{tag}{i}svc0.corp0.example/")
        direct.append(kind < 4)
    return urls, direct


def known_hosts(n: int) -> tuple[list[str], list[bool]]:
    """``KNOWN_HOSTS`` origins (scheme://host[:port]) and whether each should go direct."""
    origins: list[str] = []
    direct: list[bool] = []
    for i in range(KNOWN_HOSTS):
        kind = i % 5
        if kind == 0:
            j = _of_kind(n, 0, i // 5)
            origins.append(f"https://svc{j}.corp{j % 97}.example")
        elif kind == 1:
            origins.append(f"https://x.team{_of_kind(n, 1, i // 5)}.example.net")
        elif kind == 2:
            origins.append(f"https://api{i}.saas{i}.example.com")
        elif kind == 3:
            origins.append(f"https://storage{i}.cloud.example:8443")
        else:
            origins.append(f"http://203.0.113.{i}")
        direct.append(kind < 2)
    return origins, direct


def known_host_urls(n: int, round_no: int) -> list[str]:
    """A pass of URLs to known hosts, each with a path and query no earlier pass sent."""
    origins, _ = known_hosts(n)
    return [
        f"{origins[i % KNOWN_HOSTS]}/v1/objects/{round_no}-{i}?page={i}&sort=name"
        for i in range(PASS)
    ]


def same_urls(n: int) -> list[str]:
    """10 URLs sent again and again (the whole-URL case, for information)."""
    origins, _ = known_hosts(n)
    return [f"{origins[i]}/status" for i in range(10)] * (PASS // 10)


def hosts_of(urls: Sequence[str]) -> list[str]:
    """What urllib is given: the ``host[:port]`` of each URL."""
    return [u.split("://", 1)[1].split("/", 1)[0] for u in urls]


def timed(func: Callable[[str], object], inputs: Sequence[str]) -> float:
    """Seconds per call of one pass over ``inputs``."""
    gc.collect()
    start = time.perf_counter()
    for item in inputs:
        func(item)
    return (time.perf_counter() - start) / len(inputs)


def check(router: Router, n: int) -> str | None:
    """Routes are right, with the memo and without it: the figures are of correct answers."""
    urls, direct = new_host_urls(n, 999)
    origins, known_direct = known_hosts(n)
    urls += [f"{o}/check" for o in origins]
    direct += known_direct
    for url, want in zip(urls, direct, strict=True):
        if n < 6 and want:
            continue  # a list shorter than 6 has no entry of some kinds
        got = router.decide(url)
        if (got.route == "direct") != want or got != router.decide_uncached(url):
            return f"{url}: {got.route} by {got.rule} (wanted {'direct' if want else 'proxy'})"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds (median)")
    parser.add_argument(
        "--budget", type=float, default=0.08, help="seconds of urllib per case and round"
    )
    args = parser.parse_args(argv)

    print(
        f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cores; "
        f"{PASS:,} distinct URLs per pass, {args.rounds} interleaved rounds, medians"
    )
    routers: dict[int, Router] = {}
    no_proxy: dict[int, dict[str, str]] = {}
    samples: dict[int, int] = {}
    known_samples: dict[int, int] = {}
    for n in SIZES:
        listed = entries(n)
        router = Settings.from_proxy("http://proxy.corp:3128", no_proxy=listed, env={}).router()
        problem = check(router, n)
        if problem is not None:
            print(f"wrong decision at {n:,} entries: {problem}", file=sys.stderr)
            return 1
        for origin in known_hosts(n)[0]:
            router.decide(origin + "/")  # the known hosts are known
        routers[n] = router
        no_proxy[n] = {"no": ",".join(listed)}
        # How many URLs of a pass urllib can answer in the budget. It gets the first ones, so
        # every kind of host is there in the same share as in the whole pass (the kinds
        # alternate), and for known hosts at least every known host up to 10,000 entries.
        probe = hosts_of(new_host_urls(n, 998)[0][:KINDS])
        per = timed(lambda h, p=no_proxy[n]: urllib.request.proxy_bypass_environment(h, p), probe)
        fits = int(args.budget / per)
        samples[n] = max(KINDS, fits - fits % KINDS)
        known_samples[n] = KNOWN_HOSTS if n <= 10_000 else max(10, fits - fits % 5)

    times: dict[tuple[str, int], list[float]] = {}
    for round_no in range(args.rounds):
        for n in SIZES:
            router = routers[n]
            new = new_host_urls(n, round_no)[0]
            known = known_host_urls(n, round_no)
            proxies = no_proxy[n]

            def bypass(host: str, proxies: dict[str, str] = proxies) -> object:
                return urllib.request.proxy_bypass_environment(host, proxies)

            cases: dict[str, tuple[Callable[[str], object], Sequence[str]]] = {
                "new": (router.decide, new),
                "known": (router.decide, known),
                "same": (router.decide, same_urls(n)),
                "urllib-new": (bypass, hosts_of(new[: samples[n]])),
                "urllib-known": (bypass, hosts_of(known[: known_samples[n]])),
            }
            for name, (func, inputs) in cases.items():
                times.setdefault((name, n), []).append(timed(func, inputs))
    med = {key: statistics.median(values) for key, values in times.items()}

    def us(name: str, n: int) -> str:
        return f"{med[(name, n)] * 1e6:9.2f} µs"

    print(
        f"{'entries':>8}  {'new host':>12}  {'known host':>12}  {'same URL':>12}  "
        f"{'urllib (new)':>14}  {'urllib (known)':>14}  {'new/urllib':>11}  {'known/urllib':>12}"
    )
    for n in SIZES:
        print(
            f"{n:>8,}  {us('new', n):>12}  {us('known', n):>12}  {us('same', n):>12}  "
            f"{us('urllib-new', n):>14}  {us('urllib-known', n):>14}  "
            f"{med[('urllib-new', n)] / med[('new', n)]:>10,.0f}x  "
            f"{med[('urllib-known', n)] / med[('known', n)]:>11,.1f}x"
        )
    print(
        "(urllib timed on the first "
        + ", ".join(f"{samples[n]:,}/{known_samples[n]}" for n in SIZES)
        + " new/known hosts of each pass)"
    )

    big, small = SIZES[-2], SIZES[0]
    new_gain = med[("urllib-new", big)] / med[("new", big)]
    known_gain = med[("urllib-known", big)] / med[("known", big)]
    known_small = med[("urllib-known", small)] / med[("known", small)]
    flat_new = med[("new", SIZES[-1])] / med[("new", small)]
    flat_known = med[("known", SIZES[-1])] / med[("known", small)]
    goals = [
        (
            f"new host at {big:,} entries: {new_gain:,.0f}x urllib",
            "target >= 1,000x",
            new_gain >= 1000,
        ),
        (
            f"known host, new path, at {big:,} entries: {known_gain:,.0f}x urllib",
            "target >= 3,000x",
            known_gain >= 3000,
        ),
        (
            f"known host, new path, at {small} entries: {known_small:.2f}x urllib",
            "target >= 2x",
            known_small >= 2,
        ),
        (
            f"flat: cost({SIZES[-1]:,}) / cost({small}) = {flat_new:.2f} new host, "
            f"{flat_known:.2f} known host",
            "target <= 2",
            flat_new <= 2 and flat_known <= 2,
        ),
    ]
    print()
    for text, target, ok in goals:
        print(f"{'ok  ' if ok else 'MISS'}  {text}  ({target})")
    met = all(ok for _, _, ok in goals)
    print("targets met" if met else "TARGETS MISSED")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
