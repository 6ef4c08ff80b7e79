"""Free loopback ports and readiness checks."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that is free on ``host`` right now (bind to port 0, read it, close)."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """Return ``count`` distinct free TCP ports on ``host``.

    All sockets are held open until every port is picked, so the ports differ from each other.
    Another process may still take one before the caller binds it; callers that start a server
    must report a bind failure clearly.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.bind((host, 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def port_accepts(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    """True if a TCP connection to ``host:port`` succeeds now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(
    condition: Callable[[], bool],
    *,
    timeout: float,
    interval: float = 0.05,
    what: str = "condition",
    alive: Callable[[], bool] | None = None,
) -> None:
    """Poll ``condition`` until it is true; raise ``TimeoutError`` after ``timeout`` seconds.

    ``alive`` (if given) is checked between polls; when it returns False the wait stops early
    with ``RuntimeError`` (the process being waited for has died).
    """
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if alive is not None and not alive():
            raise RuntimeError(f"gave up waiting for {what}: the process exited")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not reached within {timeout:.1f}s")
        time.sleep(interval)


def wait_for_port(
    port: int,
    host: str = LOOPBACK,
    *,
    timeout: float = 10.0,
    alive: Callable[[], bool] | None = None,
) -> None:
    """Wait until ``host:port`` accepts TCP connections (see :func:`wait_until`)."""
    wait_until(
        lambda: port_accepts(port, host),
        timeout=timeout,
        what=f"{host}:{port} accepting connections",
        alive=alive,
    )
