"""``egress check`` takes about one timeout, not the sum.

60 destinations on loopback, direct: 40 answer HTTP at once (a threaded loopback HTTP server),
20 never answer (a loopback socket that accepts and stays silent). Timeout 2 s. Prints the wall
time of ``run_checks`` beside the sequential sum of the checks' own times; the target is under
2.5 s. Run: ``.venv/bin/python bench/check.py``.
"""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from egress.check import Probe, run_checks
from egress.settings import Settings

TIMEOUT = 2.0
ANSWERING = 40
SILENT = 20
TARGET = 2.5


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default backlog of 5 drops SYNs: a 1 s retransmit, not egress
    daemon_threads = True


class _Quick(BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> int:
    http = _Server(("127.0.0.1", 0), _Quick)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(128)  # the kernel completes the handshakes; nothing ever reads or writes
    http_port = http.server_address[1]
    silent_port = silent.getsockname()[1]
    probes = [Probe(f"http://127.0.0.1:{http_port}/{i}") for i in range(ANSWERING)]
    probes += [Probe(f"https://127.0.0.1:{silent_port}/{i}") for i in range(SILENT)]
    try:
        start = time.perf_counter()
        results = run_checks(Settings(), probes, timeout=TIMEOUT)
        wall = time.perf_counter() - start
    finally:
        http.shutdown()
        http.server_close()
        silent.close()
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    sequential = sum(r.elapsed_ms for r in results) / 1000
    print(f"{len(results)} checks ({ANSWERING} answering, {SILENT} silent), timeout {TIMEOUT:g} s")
    print(f"statuses: {counts}")
    print(f"wall {wall:.2f} s   sequential sum {sequential:.2f} s   target < {TARGET:g} s")
    ok = counts == {"ok": ANSWERING, "timeout": SILENT} and wall < TARGET
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
