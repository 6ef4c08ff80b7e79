"""Benchmark: what Kerberos (Negotiate) to the proxy costs, against Basic, through a real Squid.

The script starts its own MIT KDC, a Squid whose auth port takes Negotiate and Basic
(``tests/support/kerberos.py``) and the fake origin (``tests/support/origin.py``), all on
loopback, and gets alice a ticket from her keytab. Two ``egress.Client`` set-ups are compared:
``proxy.auth: negotiate`` (the credential cache) and Basic (``alice`` and her password file).

1. A new proxied connection: each round makes a new client of each kind (in an alternating
   order) and times its first request, which opens a connection to the proxy; plain HTTP in
   absolute form (one request, so the time is the connection's set-up plus one exchange) and
   HTTPS (the CONNECT and the origin's TLS). The extra time is the median over rounds of
   Negotiate minus Basic; the token's own cost (``Negotiator.token()``, the service ticket
   cached) is timed apart.
2. Keep-alive: one client of each kind sends ``--requests`` requests on its kept-alive
   connection (a tunnel, then plain HTTP), in alternating blocks; the client CPU per request
   (``time.thread_time``) of Negotiate over Basic must be within ``TARGET_RATIO``: a request on a
   connection that is already up carries no token.

    .venv/bin/python bench/negotiate.py [--rounds 60] [--requests 2000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.support import names  # noqa: E402
from tests.support.certs import generate_certs  # noqa: E402
from tests.support.kerberos import KDC, NegotiateSquid  # noqa: E402
from tests.support.origin import FakeOrigin  # noqa: E402
from tests.support.ports import free_port  # noqa: E402

import egress  # noqa: E402
from egress.settings import Settings, load_settings_from_mapping  # noqa: E402
from egress.transport.plan import Planner  # noqa: E402

TARGET_RATIO = 1.10
"""Keep-alive: Negotiate's client CPU per request at most this times Basic's (noise allowed)."""


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--block", type=int, default=50)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="egress-bench-negotiate-"))
    certs = generate_certs(work / "certs")
    password = work / "password"
    password.write_text("alice-secret\n")
    with (
        FakeOrigin(certs.origin_cert, certs.origin_key) as origin,
        KDC() as kdc,
        NegotiateSquid(
            kdc,
            proxy_cert=certs.proxy_cert,
            proxy_key=certs.proxy_key,
            origin_http_port=origin.http_port,
            origin_https_port=origin.https_port,
            pg_port=free_port(),
        ) as squid,
    ):
        os.environ.update(kdc.env)
        os.environ["KRB5CCNAME"] = f"FILE:{work / 'ccache'}"
        kdc.kinit(work / "ccache")
        kinds: dict[str, Settings] = {
            "negotiate": load_settings_from_mapping(
                {"proxy": {"url": squid.negotiate_url, "auth": "negotiate"}}, env={}
            ),
            "basic": load_settings_from_mapping(
                {
                    "proxy": {
                        "url": squid.negotiate_url,
                        "username": "alice",
                        "password_file": str(password),
                    }
                },
                env={},
            ),
        }
        plain = origin.url(names.API_SAAS, "/bytes/0", tls=False)
        tls = origin.url(names.API_SAAS, "/bytes/0")

        settings = kinds["negotiate"]
        negotiator = Planner(settings).negotiator(settings.proxy.http_proxy)
        assert negotiator is not None
        negotiator.token()  # the first one asks the KDC for the service ticket
        mint = []
        for _ in range(200):
            start = time.perf_counter()
            negotiator.token()
            mint.append(time.perf_counter() - start)
        print(f"token: {_ms(statistics.median(mint))} median over 200 (service ticket cached)")

        for label, url in (("plain HTTP", plain), ("HTTPS (CONNECT)", tls)):
            first: dict[str, list[float]] = {k: [] for k in kinds}
            for n in range(args.rounds):
                order = list(kinds) if n % 2 == 0 else list(reversed(kinds))
                for kind in order:
                    with egress.Client(kinds[kind], verify=certs.origin_ca) as client:
                        start = time.perf_counter()
                        client.get(url).raise_for_status()
                        first[kind].append(time.perf_counter() - start)
            neg, basic = (statistics.median(first[k]) for k in ("negotiate", "basic"))
            print(
                f"new connection, {label}: negotiate {_ms(neg)}, basic {_ms(basic)}, "
                f"extra {_ms(neg - basic)} (median of {args.rounds} rounds)"
            )

        ok = True
        for label, url in (("HTTPS (tunnel)", tls), ("plain HTTP", plain)):
            clients = {k: egress.Client(s, verify=certs.origin_ca) for k, s in kinds.items()}
            cpu: dict[str, list[float]] = {k: [] for k in kinds}
            try:
                for client in clients.values():
                    client.get(url).raise_for_status()  # the connection is up before timing
                for n in range(max(1, args.requests // args.block)):
                    order = list(kinds) if n % 2 == 0 else list(reversed(kinds))
                    for kind in order:
                        get = clients[kind].get
                        start = time.thread_time()
                        for _ in range(args.block):
                            get(url)
                        cpu[kind].append((time.thread_time() - start) / args.block)
            finally:
                for client in clients.values():
                    client.close()
            neg, basic = (statistics.median(cpu[k]) for k in ("negotiate", "basic"))
            ratio = neg / basic
            ok = ok and ratio <= TARGET_RATIO
            print(
                f"keep-alive, {label}: client CPU per request negotiate {neg * 1e6:.0f} us, "
                f"basic {basic * 1e6:.0f} us, ratio {ratio:.3f} (target <= {TARGET_RATIO})"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
