"""Preflight runs for the console: ``egress check`` in a background thread, followed live.

:class:`PreflightRuns` starts at most one run at a time (a second start while one runs gets the
running one back), keeps the last few runs in memory (bounded: a run holds at most
:data:`MAX_PROBES` results) and lets any number of asyncio subscribers follow a run's events
from its first one, so a page opened late still shows every result. Events are data
(:class:`Event`); :func:`sse` formats them as server-sent events. When a run ends, the ``save``
callback gets it (the console stores the record), then the last event ("done") is published.

Every value an event carries is already masked: URLs by :func:`egress.redact.mask_url` (done by
the check itself) and any text by :func:`egress.redact.scrub` of the proxy password.

>>> [e.kind for e in Event.replay([Event(0, "start", {}), Event(1, "done", {})], since=0)]
['done']
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from egress.check import DEFAULT_TIMEOUT, CheckResult, Probe, blocks, failed, run_checks
from egress.redact import printable, scrub

if TYPE_CHECKING:
    from egress.console.store import PreflightRecord
    from egress.settings import Settings
    from egress.transport import VerifyTypes

__all__ = [
    "KEEP_RUNS",
    "MAX_PROBES",
    "Event",
    "PreflightRun",
    "PreflightRuns",
    "result_row",
    "sse",
    "verdict_of",
]

MAX_PROBES = 500
"""The most destinations one run checks (a run's memory is bounded by it)."""
KEEP_RUNS = 8
"""Finished runs kept in memory for late pages and the HTML report; older ones are dropped."""
HEARTBEAT = 15.0
"""Seconds between SSE comments while nothing happens (keeps proxies from closing the stream)."""

EventKind = Literal["start", "result", "done"]
Verdict = Literal["ok", "warnings", "failed", "empty", "error"]


@dataclass(frozen=True)
class Event:
    """One step of a run: ``start`` (total), ``result`` (one row), ``done`` (verdict, counts)."""

    seq: int
    kind: EventKind
    data: dict[str, Any]

    @staticmethod
    def replay(events: Sequence[Event], since: int) -> list[Event]:
        """The events after sequence number ``since`` (``-1``: all of them)."""
        return [e for e in events if e.seq > since]


def verdict_of(results: Sequence[CheckResult]) -> Verdict:
    """``failed`` when a required check failed, ``warnings`` when only optional ones did (or a
    destination was reached through an intercepting proxy), ``empty`` when nothing was checked,
    else ``ok`` (the words the API's check uses)."""
    if not results:
        return "empty"
    bad, warn = failed(results)
    if bad:
        return "failed"
    return "warnings" if warn else "ok"


def result_row(r: CheckResult, secret_values: Sequence[str] = ()) -> dict[str, Any]:
    """A result as shown on the page and in an event: the ``check --json`` fields (masked) plus
    ``severity`` (ok / warn / fail) for the badge."""
    row: dict[str, Any] = {}
    for key, value in r.as_dict().items():
        row[key] = printable(scrub(value, secret_values)) if isinstance(value, str) else value
    row["severity"] = "ok" if r.status == "ok" else "fail" if blocks(r) else "warn"
    return row


@dataclass
class PreflightRun:
    """One preflight: its settings and probes, the events so far, and the outcome when done."""

    id: str
    settings: Settings
    probes: tuple[Probe, ...]
    actor: str
    version: int
    address: str = ""
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    results: list[CheckResult] = field(default_factory=list)
    verdict: Verdict | None = None
    error: str = ""
    record: PreflightRecord | None = None
    """The stored record, once the run's ``save`` has stored it."""
    _events: list[Event] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = field(
        default_factory=set, repr=False
    )
    _finished: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def total(self) -> int:
        return len(self.probes)

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    def secret_values(self) -> list[str]:
        password = self.settings.proxy.password
        return [password.reveal()] if password is not None else []

    def rows(self) -> list[dict[str, Any]]:
        """The results so far as masked rows, in the order they arrived."""
        with self._lock:
            results = list(self.results)
        values = self.secret_values()
        return [result_row(r, values) for r in results]

    def events(self, since: int = -1) -> list[Event]:
        """A copy of the events after ``since``."""
        with self._lock:
            return Event.replay(self._events, since)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run has ended (for tests and the API's synchronous check)."""
        return self._finished.wait(timeout)

    # -- publishing (the run's thread) ------------------------------------------------------

    def _publish(self, kind: EventKind, data: dict[str, Any], *, last: bool = False) -> None:
        with self._lock:
            self._events.append(Event(len(self._events), kind, data))
            if last:
                self._finished.set()
            waiters = list(self._waiters)
        for loop, wake in waiters:
            # a subscriber whose loop has closed is gone: nothing to wake
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)

    def _add(self, r: CheckResult) -> None:
        with self._lock:
            self.results.append(r)
            n = len(self.results)
        self._publish(
            "result", {"n": n, "total": self.total, "row": result_row(r, self.secret_values())}
        )

    # -- following (asyncio) ----------------------------------------------------------------

    async def follow(
        self, since: int = -1, heartbeat: float = HEARTBEAT
    ) -> AsyncIterator[Event | None]:
        """Every event after ``since`` (all of them by default, so a late subscriber replays the
        run), then each new one as it happens, until the last; ``None`` is a heartbeat."""
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        waiter = (loop, wake)
        with self._lock:
            self._waiters.add(waiter)
        try:
            while True:
                wake.clear()
                with self._lock:
                    batch = Event.replay(self._events, since)
                    finished = self._finished.is_set()
                for event in batch:
                    yield event
                    since = event.seq
                if finished:
                    return
                try:
                    await asyncio.wait_for(wake.wait(), heartbeat)
                except TimeoutError:
                    yield None
        finally:
            with self._lock:
                self._waiters.discard(waiter)


def sse(event: Event | None) -> str:
    """One event as server-sent-event text (``None``: a heartbeat comment)."""
    if event is None:
        return ": keep-alive\n\n"
    data = json.dumps(event.data, separators=(",", ":"), ensure_ascii=True)
    return f"id: {event.seq}\nevent: {event.kind}\ndata: {data}\n\n"


SaveRecord = Callable[[PreflightRun], None]
"""Called in the run's thread when it ends, before the ``done`` event (stores the record)."""


class PreflightRuns:
    """The console's preflight runs: one at a time, the last :data:`KEEP_RUNS` remembered."""

    def __init__(
        self,
        *,
        save: SaveRecord | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        verify: VerifyTypes = True,
        keep: int = KEEP_RUNS,
    ) -> None:
        self._save = save
        self.timeout = timeout
        self.verify = verify
        self._keep = max(1, keep)
        self._runs: OrderedDict[str, PreflightRun] = OrderedDict()
        self._lock = threading.Lock()

    def start(
        self,
        settings: Settings,
        probes: Sequence[Probe],
        *,
        actor: str,
        version: int,
        address: str = "",
    ) -> tuple[PreflightRun, bool]:
        """Start a run in a thread; ``(run, True)``. While one runs: ``(that run, False)``.

        More than :data:`MAX_PROBES` probes is a ``ValueError`` (nothing starts)."""
        if len(probes) > MAX_PROBES:
            raise ValueError(
                f"{len(probes)} destinations is more than one preflight checks ({MAX_PROBES}): "
                "narrow the scope"
            )
        with self._lock:
            running = self._running()
            if running is not None:
                return running, False
            run = PreflightRun(
                id=secrets.token_urlsafe(9),
                settings=settings,
                probes=tuple(probes),
                actor=actor,
                version=version,
                address=address,
            )
            self._runs[run.id] = run
            while len(self._runs) > self._keep:
                self._runs.popitem(last=False)
            run._publish("start", {"total": run.total, "version": version})
            thread = threading.Thread(
                target=self._work, args=(run,), name=f"egress-preflight-{run.id}", daemon=True
            )
            thread.start()
        return run, True

    def get(self, run_id: str) -> PreflightRun | None:
        with self._lock:
            return self._runs.get(run_id)

    def latest(self) -> PreflightRun | None:
        with self._lock:
            return next(reversed(self._runs.values()), None)

    def running(self) -> PreflightRun | None:
        """The run in progress, if any."""
        with self._lock:
            return self._running()

    def _running(self) -> PreflightRun | None:
        for run in reversed(self._runs.values()):
            if not run.done:
                return run
        return None

    def _work(self, run: PreflightRun) -> None:
        began = time.monotonic()
        try:
            run_checks(
                run.settings,
                run.probes,
                timeout=self.timeout,
                verify=self.verify,
                on_result=run._add,
            )
            run.verdict = verdict_of(run.results)
        except Exception as exc:  # a bug or an unusable setting: the page says so, the run ends
            run.verdict = "error"
            run.error = printable(scrub(f"the preflight stopped: {exc}", run.secret_values()))
        run.finished_at = datetime.now(UTC)
        saved = ""
        if self._save is not None:
            try:
                self._save(run)
            except Exception as exc:
                saved = printable(scrub(f"the result was not stored: {exc}", run.secret_values()))
        bad, warn = failed(run.results)
        run._publish(
            "done",
            {
                "verdict": run.verdict,
                "checked": len(run.results),
                "failed": len(bad),
                "warnings": len(warn),
                "error": run.error,
                "saved": saved,
                "seconds": round(time.monotonic() - began, 2),
            },
            last=True,
        )
