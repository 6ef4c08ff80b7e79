"""An overall deadline for ``requests``' CONNECT exchange, which no per-read timeout gives.

http.client bounds each *read* of the proxy's answer to CONNECT (with urllib3's connect
timeout), so a proxy that drip-feeds its answer (a byte every 2 s against a 3 s timeout) keeps
a ``requests`` session waiting as long as it likes. :func:`arm` sets a deadline on one socket:
one daemon thread (started on first use, shared by every session) shuts the socket down when the
deadline passes, which ends the blocked read at once; the adapter then sees ``expired`` and
names the CONNECT hop. It costs nothing per request: it is armed only while a tunnel is set up.
(The httpx clients need no thread: their proxy streams give each read only what is left of the
deadline, see :mod:`egress.transport.proxy_hop`.)

>>> import socket
>>> a, b = socket.socketpair()
>>> d = arm(a, 0.05)
>>> a.settimeout(5)
>>> a.recv(1), d.expired
(b'', True)
>>> a.close(); b.close()
"""

from __future__ import annotations

import heapq
import itertools
import os
import socket
import threading
import time
from typing import Any

__all__ = ["Deadline", "arm"]


class Deadline:
    """One armed deadline; :meth:`cancel` it once the guarded exchange is over."""

    __slots__ = ("_sock", "at", "expired")

    def __init__(self, sock: Any, at: float) -> None:
        self._sock: Any = sock
        self.at = at
        self.expired = False
        """True once the deadline passed and the socket was shut down."""

    def cancel(self) -> None:
        """Disarm (idempotent); after it the socket is never touched."""
        with _lock:
            self._sock = None

    def _fire(self) -> None:
        # called with _lock held
        sock, self._sock = self._sock, None
        if sock is None:
            return
        self.expired = True
        _shutdown(sock)


def _shutdown(sock: Any) -> None:
    """Shut ``sock`` down for both directions, whatever wraps it.

    An ``ssl.SSLSocket`` is shut down below its TLS layer (its own ``shutdown`` also drops the
    TLS object, which a read in another thread may still be using); asyncio's transport socket
    only offers ``shutdown``.
    """
    try:
        if isinstance(sock, socket.socket):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        else:
            sock.shutdown(socket.SHUT_RDWR)
    except (OSError, AttributeError, ValueError):
        pass  # already closed: nothing left to stop


_lock = threading.Lock()
_wake = threading.Condition(_lock)
_heap: list[tuple[float, int, Deadline]] = []
_order = itertools.count()
_thread: threading.Thread | None = None


def arm(sock: Any, seconds: float) -> Deadline:
    """Shut ``sock`` down ``seconds`` from now unless the returned deadline is cancelled first."""
    global _thread
    deadline = Deadline(sock, time.monotonic() + seconds)
    with _lock:
        heapq.heappush(_heap, (deadline.at, next(_order), deadline))
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_watch, name="egress-deadlines", daemon=True)
            _thread.start()
        _wake.notify()
    return deadline


def _watch() -> None:
    with _lock:
        while True:
            now = time.monotonic()
            while _heap and _heap[0][0] <= now:
                heapq.heappop(_heap)[2]._fire()
            _wake.wait(timeout=(_heap[0][0] - now) if _heap else None)


def _after_fork() -> None:
    """A forked child has no watcher thread and may inherit a held lock: start afresh."""
    global _lock, _wake, _thread
    _lock = threading.Lock()
    _wake = threading.Condition(_lock)
    _heap.clear()
    _thread = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
