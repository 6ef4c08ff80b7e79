"""Login attempts, counted per key (an account, an address) in a sliding window.

Only failures count. Once a key has had ``limit`` failures within ``window`` seconds it is refused
until the oldest of them leaves the window; :meth:`RateLimiter.retry_after` says how long, which
the console sends as ``Retry-After``. The counters live in this process (a second console process
counts its own), bounded in size so that a flood of addresses cannot grow them without end.

>>> clock = [0.0]
>>> rl = RateLimiter(limit=2, window=60, clock=lambda: clock[0])
>>> rl.failed("alice"); rl.failed("alice"); rl.retry_after("alice")
60
>>> clock[0] = 59.5; rl.retry_after("alice"), rl.retry_after("bob")
(1, 0)
>>> clock[0] = 60.0; rl.retry_after("alice")
0
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

MAX_KEYS = 100_000
"""The most keys remembered; past it the least recently failed ones are forgotten."""


class RateLimiter:
    """Failures per key in a sliding window of ``window`` seconds, at most ``limit`` of them."""

    def __init__(
        self, limit: int, window: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, key: str) -> int:
        """Whole seconds until ``key`` may try again; 0 when it may now."""
        with self._lock:
            times = self._recent(key)
            if times is None or len(times) < self.limit:
                return 0
            wait = times[len(times) - self.limit] + self.window - self._clock()
            return max(1, math.ceil(wait))

    def failed(self, key: str) -> None:
        """Count one failure of ``key`` now."""
        with self._lock:
            times = self._recent(key)
            if times is None:
                if len(self._failures) >= MAX_KEYS:
                    self._forget_oldest()
                times = self._failures[key] = deque()
            times.append(self._clock())
            while len(times) > self.limit:
                times.popleft()

    def reset(self, key: str) -> None:
        """Forget ``key``'s failures (a successful login)."""
        with self._lock:
            self._failures.pop(key, None)

    def _recent(self, key: str) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        start = self._clock() - self.window
        while times and times[0] <= start:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def _forget_oldest(self) -> None:
        by_last = sorted(self._failures, key=lambda k: self._failures[k][-1])
        for key in by_last[: max(1, len(by_last) // 10)]:
            del self._failures[key]
