"""Benchmark: bulk throughput and time to first byte through ``egress tunnel`` + Squid.

Three paths to one loopback TCP server (a sink/source in a child process), in one run:

- direct: the client connects to the server itself;
- socat: ``socat -b 1048576 TCP-LISTEN:... PROXY:127.0.0.1:<name>:<port>,proxyport=<squid>``
  through the same Squid (the baseline: socat with 1 MiB buffers);
- egress: ``egress tunnel --target <name>:<port>`` (a child process) through that Squid, which
  copies with ``recv_into``/``send`` of up to 1 MiB;
- splice: the same with ``EGRESS_TUNNEL_SPLICE=1`` (``os.splice`` through a pipe, the bytes stay
  in the kernel), to measure what splice brings.

Per path and round: ``--size`` bytes up (client to server, the server acknowledges the last
byte), ``--size`` bytes down, and ``--ttfb`` fresh connections timed from ``connect()`` to the
first byte of a one-byte echo (each one a new CONNECT through Squid). Figures are medians over
``--rounds``; paths are run in a new random order each round. The tunnel's own CPU (user +
system, from /proc) over the bulk transfers is printed per GiB carried. Exits 1 if egress is
below 0.95x socat's throughput (either way) or its median time to first byte is worse than
socat's by more than 10 %.

    .venv/bin/python bench/tunnel.py [--size 1GiB] [--rounds 3] [--ttfb 50]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.support import names  # noqa: E402
from tests.support.certs import generate_certs  # noqa: E402
from tests.support.ports import free_port, port_accepts, wait_until  # noqa: E402
from tests.support.squid import SquidProxy  # noqa: E402

CHUNK = 1024 * 1024
HEADER = struct.Struct("!cQ")


def _size(text: str) -> int:
    units = {"KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "": 1}
    upper = text.strip().upper()
    for unit, factor in units.items():
        if unit and upper.endswith(unit):
            return int(float(upper[: -len(unit)]) * factor)
    return int(upper) * units[""]


# -- the server (child process) ----------------------------------------------------------------


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed early")
        data += chunk
    return data


def _handle(conn: socket.socket) -> None:
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            mode, size = HEADER.unpack(_recv_exact(conn, HEADER.size))
            buf = bytearray(CHUNK)
            if mode == b"U":
                left = size
                while left:
                    n = conn.recv_into(buf, min(CHUNK, left))
                    if not n:
                        return
                    left -= n
                conn.sendall(b"K")
            elif mode == b"D":
                view = memoryview(buf)
                left = size
                while left:
                    n = min(CHUNK, left)
                    conn.sendall(view[:n])
                    left -= n
            else:
                conn.sendall(_recv_exact(conn, 1))
        except OSError:
            return


def _serve(port: int) -> None:
    server = socket.create_server(("127.0.0.1", port), backlog=256)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=_handle, args=(conn,), daemon=True).start()


# -- the client --------------------------------------------------------------------------------


def upload(port: int, size: int) -> float:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        view = memoryview(bytearray(CHUNK))
        started = time.perf_counter()
        s.sendall(HEADER.pack(b"U", size))
        left = size
        while left:
            n = min(CHUNK, left)
            s.sendall(view[:n])
            left -= n
        if s.recv(1) != b"K":
            raise RuntimeError("upload not acknowledged")
        return size / (time.perf_counter() - started)


def download(port: int, size: int) -> float:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray(CHUNK)
        started = time.perf_counter()
        s.sendall(HEADER.pack(b"D", size))
        left = size
        while left:
            n = s.recv_into(buf)
            if not n:
                raise RuntimeError(f"download ended {left} bytes short")
            left -= n
        return size / (time.perf_counter() - started)


def first_byte(port: int) -> float:
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(HEADER.pack(b"E", 0) + b"x")
        if s.recv(1) != b"x":
            raise RuntimeError("no echo")
        return time.perf_counter() - started


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=_size, default=1 << 30, help="bytes each way (1GiB)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ttfb", type=int, default=50, help="connections timed per round")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="egress-bench-tunnel-"))
    sink_port = free_port()
    ctx = multiprocessing.get_context("spawn")
    server = ctx.Process(target=_serve, args=(sink_port,), daemon=True)
    server.start()
    wait_until(lambda: port_accepts(sink_port), timeout=10, what="the bench server")
    certs = generate_certs(work / "certs")
    squid = SquidProxy(
        proxy_cert=certs.proxy_cert,
        proxy_key=certs.proxy_key,
        origin_http_port=sink_port,
        origin_https_port=sink_port,
        pg_port=sink_port,
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        squid.start()
        socat_port, egress_port, splice_port = free_port(), free_port(), free_port()
        procs.append(
            subprocess.Popen(
                [
                    "socat",
                    "-b",
                    "1048576",
                    f"TCP-LISTEN:{socat_port},bind=127.0.0.1,reuseaddr,fork",
                    f"PROXY:127.0.0.1:{names.PG_HOST}:{sink_port},proxyport={squid.http_port}",
                ]
            )
        )
        config = work / "egress.yaml"
        config.write_text(f"proxy:\n  url: {squid.http_url}\ntunnel_tcp_warehouses: true\n")

        def egress_tunnel(port: int, splice: str) -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "egress.cli",
                    "tunnel",
                    "--target",
                    f"{names.PG_HOST}:{sink_port}",
                    "--warehouse",
                    "postgres",
                    "--listen",
                    f"127.0.0.1:{port}",
                    "--config",
                    str(config),
                ],
                stdout=subprocess.DEVNULL,
                env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "EGRESS_TUNNEL_SPLICE": splice},
            )

        tunnels = {
            "egress": egress_tunnel(egress_port, "0"),
            "splice": egress_tunnel(splice_port, "1"),
        }
        procs.extend(tunnels.values())
        for port in (socat_port, egress_port, splice_port):
            wait_until(lambda p=port: port_accepts(p), timeout=15, what=f"port {port}")
        paths = {
            "direct": sink_port,
            "socat": socat_port,
            "egress": egress_port,
            "splice": splice_port,
        }
        up: dict[str, list[float]] = {k: [] for k in paths}
        down: dict[str, list[float]] = {k: [] for k in paths}
        ttfb: dict[str, list[float]] = {k: [] for k in paths}
        cpu = dict.fromkeys(tunnels, 0.0)
        for _ in range(args.rounds):
            order = list(paths)
            random.shuffle(order)
            for name in order:
                port = paths[name]
                proc = tunnels.get(name)
                before = cpu_seconds(proc.pid) if proc else 0.0
                up[name].append(upload(port, args.size))
                down[name].append(download(port, args.size))
                if proc:
                    cpu[name] += cpu_seconds(proc.pid) - before
                ttfb[name].extend(first_byte(port) for _ in range(args.ttfb))
        gib = 2 * args.size * args.rounds / (1 << 30)
        print(f"size {args.size / (1 << 20):.0f} MiB each way, {args.rounds} rounds (medians)")
        print(f"{'path':<8} {'up GB/s':>8} {'down GB/s':>10} {'first byte ms':>14}")
        med = {}
        for name in paths:
            med[name] = (
                statistics.median(up[name]) / 1e9,
                statistics.median(down[name]) / 1e9,
                statistics.median(ttfb[name]) * 1e3,
            )
            u, d, t = med[name]
            print(f"{name:<8} {u:>8.2f} {d:>10.2f} {t:>14.2f}")
        ratio_up = med["egress"][0] / med["socat"][0]
        ratio_down = med["egress"][1] / med["socat"][1]
        print(f"egress / socat: up {ratio_up:.3f}x, down {ratio_down:.3f}x (target >= 0.95x)")
        for name in tunnels:
            print(f"{name} tunnel CPU: {cpu[name] / gib:.2f} s per GiB carried")
        ok = min(ratio_up, ratio_down) >= 0.95 and med["egress"][2] <= med["socat"][2] * 1.1
        return 0 if ok else 1
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        squid.close()
        server.kill()
        server.join()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
