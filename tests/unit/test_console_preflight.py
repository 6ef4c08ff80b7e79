"""Console preflight runs against a real loopback HTTP server: one run at a time, events
replayed to late subscribers, bounded memory, the record saved once, nothing secret shown."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from egress.check import CheckResult, Probe
from egress.console.preflight import (
    MAX_PROBES,
    Event,
    PreflightRun,
    PreflightRuns,
    result_row,
    sse,
    verdict_of,
)
from egress.settings import Settings, load_settings_from_mapping


class _Gate:
    """Holds every request on ``/slow`` until opened (a run that is visibly in progress)."""

    def __init__(self) -> None:
        self.open = threading.Event()


class _Origin(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, gate: _Gate) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.gate = gate


class _Handler(BaseHTTPRequestHandler):
    server: _Origin

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        if self.path.startswith("/slow"):
            self.server.gate.open.wait(10)
        self.send_response(204)
        self.end_headers()


@pytest.fixture
def gate() -> _Gate:
    return _Gate()


@pytest.fixture
def origin(gate: _Gate) -> Iterator[str]:
    """A loopback HTTP server answering HEAD with 204 (``/slow`` waits for the gate)."""
    server = _Origin(gate)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        gate.open.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


def direct() -> Settings:
    return load_settings_from_mapping({}, env={})


def test_run_publishes_start_results_done_and_saves_once(origin: str) -> None:
    saved: list[PreflightRun] = []
    runs = PreflightRuns(save=saved.append, timeout=3)
    probes = [Probe(f"{origin}/a"), Probe(f"{origin}/b"), Probe(f"{origin}/c", required=False)]
    run, started = runs.start(direct(), probes, actor="admin", version=4)
    assert started
    assert run.wait(10)
    kinds = [e.kind for e in run.events()]
    assert kinds == ["start", "result", "result", "result", "done"]
    assert [e.seq for e in run.events()] == [0, 1, 2, 3, 4]
    assert run.events()[0].data == {"total": 3, "version": 4}
    done = run.events()[-1].data
    assert (done["verdict"], done["checked"], done["failed"], done["saved"]) == ("ok", 3, 0, "")
    assert saved == [run] and run.verdict == "ok"
    urls = sorted(e.data["row"]["url"] for e in run.events() if e.kind == "result")
    assert urls == sorted(p.url for p in probes)
    assert {row["status"] for row in run.rows()} == {"ok"}


def test_failed_required_check_fails_the_run_and_optional_only_warns(origin: str) -> None:
    runs = PreflightRuns(timeout=2)
    dead = f"http://127.0.0.1:{closed_port()}/"
    run, _ = runs.start(
        direct(), [Probe(origin), Probe(dead, required=False)], actor="a", version=1
    )
    assert run.wait(10)
    assert run.verdict == "warnings"
    severities = {row["url"]: row["severity"] for row in run.rows()}
    assert severities[dead] == "warn"

    run2, started = runs.start(direct(), [Probe(dead)], actor="a", version=1)
    assert started and run2.wait(10)
    assert run2.verdict == "failed"
    assert run2.rows()[0]["status"] == "connect-refused"
    assert runs.latest() is run2 and runs.get(run.id) is run


def test_second_start_while_running_returns_the_running_run(origin: str, gate: _Gate) -> None:
    runs = PreflightRuns(timeout=5)
    first, started = runs.start(direct(), [Probe(f"{origin}/slow")], actor="a", version=1)
    assert started
    again, started_again = runs.start(direct(), [Probe(origin)], actor="b", version=2)
    assert (again, started_again) == (first, False)
    assert runs.running() is first
    gate.open.set()
    assert first.wait(10)
    assert runs.running() is None
    third, started = runs.start(direct(), [Probe(origin)], actor="b", version=2)
    assert started and third is not first
    assert third.wait(10)


def test_subscribers_follow_live_and_late_ones_replay(origin: str, gate: _Gate) -> None:
    runs = PreflightRuns(timeout=5)
    probes = [Probe(f"{origin}/slow/1"), Probe(f"{origin}/slow/2"), Probe(origin)]
    run, _ = runs.start(direct(), probes, actor="a", version=1)

    async def collect() -> list[str]:
        return [e.kind async for e in run.follow(heartbeat=0.05) if e is not None]

    async def scenario() -> tuple[list[str], list[str], list[str]]:
        early = asyncio.create_task(collect())
        await asyncio.sleep(0.3)  # the fast probe is in; the slow ones wait at the gate
        assert not run.done
        second = asyncio.create_task(collect())
        await asyncio.sleep(0.05)
        gate.open.set()
        return await early, await second, await collect()

    early, second, late = asyncio.run(scenario())
    expected = ["start", "result", "result", "result", "done"]
    assert early == expected and second == expected and late == expected
    assert run._waiters == set()  # every subscriber unregistered itself


def test_follow_resumes_after_a_given_event(origin: str) -> None:
    run, _ = PreflightRuns(timeout=3).start(direct(), [Probe(origin)], actor="a", version=1)
    assert run.wait(10)

    async def after(since: int) -> list[int]:
        return [e.seq async for e in run.follow(since) if e is not None]

    assert asyncio.run(after(1)) == [2]
    assert asyncio.run(after(-1)) == [0, 1, 2]


def test_memory_is_bounded(origin: str) -> None:
    runs = PreflightRuns(timeout=3, keep=2)
    ids = []
    for _ in range(3):
        run, _ = runs.start(direct(), [Probe(origin)], actor="a", version=1)
        assert run.wait(10)
        ids.append(run.id)
    assert runs.get(ids[0]) is None
    assert runs.get(ids[1]) is not None and runs.get(ids[2]) is not None
    too_many = [Probe(f"{origin}/{i}") for i in range(MAX_PROBES + 1)]
    with pytest.raises(ValueError, match="narrow the scope"):
        runs.start(direct(), too_many, actor="a", version=1)
    assert runs.latest() is runs.get(ids[2])


def test_a_failing_save_is_reported_and_the_run_still_ends(origin: str) -> None:
    def save(run: PreflightRun) -> None:
        raise RuntimeError("database is locked")

    run, _ = PreflightRuns(save=save, timeout=3).start(
        direct(), [Probe(origin)], actor="a", version=1
    )
    assert run.wait(10)
    done = run.events()[-1]
    assert done.kind == "done" and "not stored: database is locked" in done.data["saved"]
    assert run.verdict == "ok"


def test_rows_scrub_secrets_and_escape_control_characters() -> None:
    result = CheckResult(
        url="http://alice:********@proxy:3128/",
        host="h",
        port=80,
        route="proxy",
        rule="auto",
        reason="",
        status="proxy-denied",
        detail="rejected hunter2-secret\nforged: line",
        fix="ask",
        elapsed_ms=1.0,
        required=True,
    )
    row = result_row(result, ["hunter2-secret"])
    assert "hunter2-secret" not in json.dumps(row)
    assert "\n" not in row["detail"]
    assert row["severity"] == "fail"
    assert verdict_of([result]) == "failed"
    assert verdict_of([]) == "empty"


def test_sse_text() -> None:
    text = sse(Event(3, "result", {"n": 1, "row": {"url": "</script>"}}))
    assert text.startswith("id: 3\nevent: result\ndata: {")
    assert text.endswith("\n\n") and text.count("\n") == 4
    assert json.loads(text.split("data: ", 1)[1]) == {"n": 1, "row": {"url": "</script>"}}
    assert sse(None) == ": keep-alive\n\n"
