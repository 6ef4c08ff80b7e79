"""Run curl with given environments inside a private network namespace (run as a script).

Started as ``unshare -n python netns_curl.py``: the new namespace has only a loopback interface,
which this script brings up, so a direct connection to any other address fails at once inside
the machine and no name is ever looked up outside it. A recording stand-in proxy on 127.0.0.1
answers every request with ``418``; curl's ``%{http_code}`` (plain HTTP through a proxy) or
``%{http_connect}`` (CONNECT) shows 418 exactly when curl used the proxy.

Protocol: the first stdout line is ``{"proxy": "http://127.0.0.1:PORT"}``; then one JSON job
per stdin line, ``{"env": {...}, "urls": [...], "resolve": [...]}``, answered by one line
``{"routes": ["proxy" | "direct", ...]}``. EOF on stdin ends it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import struct
import subprocess
import sys
import threading

SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
ANSWER = b"HTTP/1.1 418 recorded\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(s, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sh", b"lo", flags | IFF_UP))


def stand_in_proxy() -> int:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(128)

    def serve() -> None:
        while True:
            conn, _ = server.accept()
            with conn:
                try:
                    conn.settimeout(5)
                    conn.recv(65536)
                    conn.sendall(ANSWER)
                except OSError:
                    pass

    threading.Thread(target=serve, daemon=True).start()
    port: int = server.getsockname()[1]
    return port


def run(job: dict[str, object], path: str) -> list[str]:
    urls = [str(u) for u in job["urls"]]  # type: ignore[attr-defined]
    argv = ["curl", "-s", "--connect-timeout", "3", "--max-time", "5"]
    argv += ["-w", "%{urlnum} %{http_code} %{http_connect}\\n"]
    for item in job.get("resolve", []):  # type: ignore[attr-defined]
        argv += ["--resolve", str(item)]
    for url in urls:
        argv += ["-o", "/dev/null", url]
    env = {"PATH": path, "HOME": "/nonexistent", "LC_ALL": "C.UTF-8"}
    env.update({str(k): str(v) for k, v in job["env"].items()})  # type: ignore[attr-defined]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    routes = ["missing"] * len(urls)
    for line in proc.stdout.splitlines():
        index, code, connect = line.split()
        routes[int(index)] = "proxy" if "418" in (code, connect) else "direct"
    return routes


def main() -> None:
    loopback_up()
    port = stand_in_proxy()
    print(json.dumps({"proxy": f"http://127.0.0.1:{port}"}), flush=True)
    path = os.environ.get("PATH", "/usr/bin:/bin")
    for line in sys.stdin:
        print(json.dumps({"routes": run(json.loads(line), path)}), flush=True)


if __name__ == "__main__":
    main()
