"""Traffic reports: what this component contacted, sent to the console in batches.

A :class:`TrafficReporter` is an :mod:`egress.observe` sink: once started it sees every decision
and failure of every egress client in the process (``egress.Client``, ``AsyncClient``,
``requests_session``, the tunnel) and aggregates them per destination, ``(host, port, route,
rule)`` -> count, failures, the last failure's kind and time. Memory is bounded: past
``max_entries`` destinations, new ones are counted in one ``(other)`` entry per route. A thread
sends the aggregate every ``interval`` seconds to the console's ``POST /api/v1/traffic`` (a read
token may report), at most :data:`BATCH` entries per request. When the console cannot be reached
the aggregate is kept (still bounded) and sent again later, after a back-off that doubles up to
``max_backoff``. The reporter's own requests go straight to the console, not through egress.

>>> r = TrafficReporter("http://127.0.0.1:9", "egress_x", component="billing", max_entries=1)
>>> from egress.settings import Settings
>>> router = Settings.from_proxy("http://127.0.0.1:3128").router()
>>> for url in ("https://a.example/", "https://a.example/x", "https://b.example/"):
...     r.on_decision(router.decide(url))
>>> sorted((e["host"], e["count"]) for e in r.pending())
[('(other)', 1), ('a.example', 2)]
"""

from __future__ import annotations

import logging
import random
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from egress import observe
from egress.redact import mask_url, printable

if TYPE_CHECKING:
    from egress.router import Decision

__all__ = ["BATCH", "OTHER", "TrafficReporter"]

LOG = logging.getLogger("egress.report")

BATCH: Final = 500
"""Entries per ``POST /api/v1/traffic`` (the console accepts up to 2,000)."""
OTHER: Final = "(other)"
"""The host of the entry that counts destinations past ``max_entries``."""
COMPONENT_LIMIT: Final = 100

_Key = tuple[str, int, str, str]


class _Entry:
    """One destination's counts (mutable, kept under the reporter's lock)."""

    __slots__ = ("count", "failures", "last_failure", "last_failure_at", "last_seen")

    def __init__(self) -> None:
        self.count = 0
        self.failures = 0
        self.last_failure: str | None = None
        self.last_failure_at: float | None = None
        self.last_seen = 0.0

    def merge(self, other: _Entry) -> None:
        self.count += other.count
        self.failures += other.failures
        if other.last_failure_at is not None and (
            self.last_failure_at is None or other.last_failure_at >= self.last_failure_at
        ):
            self.last_failure, self.last_failure_at = other.last_failure, other.last_failure_at
        self.last_seen = max(self.last_seen, other.last_seen)


class TrafficReporter:
    """Aggregates this process's traffic and reports it to the console (see the module doc).

    ``with TrafficReporter(url, token, component="billing"):`` starts and stops it; so do
    :meth:`start` and :meth:`close`.
    """

    def __init__(
        self,
        console_url: str,
        token: str,
        *,
        component: str,
        interval: float = 10.0,
        max_entries: int = 2000,
        timeout: float = 5.0,
        verify: Any = True,
        max_backoff: float = 300.0,
    ) -> None:
        if not component or len(component) > COMPONENT_LIMIT or printable(component) != component:
            raise ValueError(
                "component must be 1 to 100 printable characters (the name the console shows)"
            )
        if max_entries < 1 or interval <= 0:
            raise ValueError("max_entries must be at least 1 and interval above 0")
        self.url = console_url.rstrip("/") + "/api/v1/traffic"
        self.component = component
        self.interval = interval
        self.max_entries = max_entries
        self.max_backoff = max(max_backoff, interval)
        self._token = token
        self._timeout = timeout
        self._verify = verify
        self._lock = threading.Lock()
        self._entries: dict[_Key, _Entry] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failed_attempts = 0
        """Failed sends in a row (0 after a success): the back-off grows with it."""
        self.sent = 0
        """Entries the console accepted so far."""
        self.delays: list[float] = []
        """The waits before the last few sends (the back-off, for people and tests)."""

    def __repr__(self) -> str:
        return f"<TrafficReporter {self.component!r} to {mask_url(self.url)}>"

    # -- the sink (called on the data path: a lock and a dict lookup) -------------------------

    def on_decision(self, decision: Decision) -> None:
        self._entry(decision).count += 1

    def on_failure(self, kind: str, decision: Decision) -> None:
        entry = self._entry(decision)
        entry.failures += 1
        entry.last_failure = observe.FAILURE_NAMES.get(kind, "origin-error")
        entry.last_failure_at = time.time()

    def _entry(self, d: Decision) -> _Entry:
        target = d.target
        key = (target.host_text, target.port or 0, d.route, d.rule)
        now = time.time()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                if len(self._entries) >= self.max_entries:
                    key = (OTHER, 0, d.route, OTHER)
                entry = self._entries.get(key)
                if entry is None:
                    entry = self._entries[key] = _Entry()
            entry.last_seen = now
            return entry

    # -- sending --------------------------------------------------------------------------------

    def pending(self) -> list[dict[str, Any]]:
        """The aggregate not yet sent, as the console's API takes it."""
        with self._lock:
            return [_as_dict(k, e) for k, e in self._entries.items()]

    def flush(self) -> bool:
        """Send what is pending now; True when the console took all of it. On failure the
        entries go back into the aggregate (bounded) for the next attempt."""
        with self._lock:
            taken, self._entries = self._entries, {}
        if not taken:
            return True
        items = list(taken.items())
        import httpx

        try:
            with httpx.Client(
                timeout=self._timeout, verify=self._verify, trust_env=False
            ) as client:
                while items:
                    batch, rest = items[:BATCH], items[BATCH:]
                    response = client.post(
                        self.url,
                        json={
                            "component": self.component,
                            "entries": [_as_dict(k, e) for k, e in batch],
                        },
                        headers={"Authorization": f"Bearer {self._token}"},
                    )
                    if response.status_code in (400, 413, 422):
                        # the console will never take this batch: say so once, drop it
                        LOG.warning(
                            "the console refused a traffic report (%s); dropped %d entries",
                            response.status_code,
                            len(batch),
                        )
                    elif response.status_code >= 300:
                        raise _Refused(response.status_code)
                    else:
                        self.sent += len(batch)
                    items = rest
        except (httpx.HTTPError, _Refused) as exc:
            self._put_back(items)
            self.failed_attempts += 1
            if self.failed_attempts == 1:
                LOG.warning("cannot report traffic to %s (%s); will retry", self.url, _why(exc))
            return False
        self.failed_attempts = 0
        return True

    def _put_back(self, items: list[tuple[_Key, _Entry]]) -> None:
        with self._lock:
            for key, old in items:
                entry = self._entries.get(key)
                if entry is None:
                    if len(self._entries) >= self.max_entries:
                        key = (OTHER, 0, key[2], OTHER)
                    entry = self._entries.get(key)
                    if entry is None:
                        entry = self._entries[key] = _Entry()
                entry.merge(old)

    def next_delay(self) -> float:
        """The wait before the next send: the interval, doubled per failure in a row up to
        ``max_backoff``, with a little jitter (many components do not retry in step)."""
        if self.failed_attempts == 0:
            return self.interval
        base = min(self.max_backoff, self.interval * 2.0**self.failed_attempts)
        return float(base * random.uniform(0.8, 1.0))

    def _run(self) -> None:
        while True:
            delay = self.next_delay()
            self.delays = [*self.delays[-19:], delay]
            if self._stop.wait(delay):
                return
            try:
                self.flush()
            except Exception as exc:  # never let the reporter's thread die
                LOG.warning("traffic report failed: %s", type(exc).__name__)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> TrafficReporter:
        """Attach to :mod:`egress.observe` and start the sending thread."""
        if self._thread is None:
            observe.add_sink(self)
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name=f"egress-report-{self.component}", daemon=True
            )
            self._thread.start()
        return self

    def close(self, *, flush: bool = True) -> None:
        """Detach, stop the thread, and send what is pending once more (when ``flush``)."""
        observe.remove_sink(self)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._timeout + 1)
            self._thread = None
        if flush:
            self.flush()

    def __enter__(self) -> TrafficReporter:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Refused(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


def _why(exc: BaseException) -> str:
    return printable(str(exc) or type(exc).__name__)[:200]


def _as_dict(key: _Key, e: _Entry) -> dict[str, Any]:
    host, port, route, rule = key
    return {
        "host": host,
        "port": port,
        "route": route,
        "rule": rule,
        "count": e.count,
        "failures": e.failures,
        "last_failure": e.last_failure,
        "last_failure_at": e.last_failure_at,
        "last_seen": e.last_seen,
    }
