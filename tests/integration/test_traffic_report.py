"""Traffic reports end to end: ``TrafficReporter`` against a real console (uvicorn in a thread,
SQLite in tmp_path): batches, bounded memory, back-off while the console is down; the API's
validation; the console's own ``/metrics`` parsed with prometheus_client's parser."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from egress import observe, report
from egress.console.app import create_app
from egress.console.service import ConsoleService
from egress.console.store import Store
from egress.report import TrafficReporter
from egress.settings import Settings

pytestmark = pytest.mark.integration


class Console:
    """A console served by uvicorn on a loopback socket bound before it starts."""

    def __init__(self, tmp: Path, sock: socket.socket) -> None:
        self.store = Store(f"sqlite:///{tmp / 'egress.db'}")
        self.store.migrate()
        self.app = create_app(self.store, env={})
        self.service: ConsoleService = self.app.state.console
        _, self.token = self.service.create_token("component", "read", actor="t", address="")
        self.sock = sock
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, log_level="warning", lifespan="off", access_log=False)
        )
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, daemon=True
        )

    def __enter__(self) -> Console:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.server.started
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()
        self.store.close()


def bound_socket(port: int = 0) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    with Console(tmp_path, bound_socket()) as c:
        yield c


ROUTER = Settings.from_proxy("http://127.0.0.1:3128", no_proxy=".corp").router()


def wait_for(predicate: object, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_reporter_sends_batches_that_the_console_adds_up(console: Console) -> None:
    n = report.BATCH + 20  # more than one batch
    with TrafficReporter(
        console.url, console.token, component="billing", interval=0.2, max_entries=5000
    ) as r:
        for i in range(n):
            observe.decision(ROUTER.decide(f"https://h{i}.example.com/"))
        for _ in range(4):
            observe.decision(ROUTER.decide("https://git.corp/x"))
        d = ROUTER.decide("https://blocked.example.com/")
        observe.decision(d)
        observe.hop_failure("denied", d)
        wait_for(lambda: r.sent >= n + 2)
    rows = {(x.host, x.route): x for x in console.store.traffic("billing", limit=5000)}
    assert len(rows) == n + 2
    assert rows[("git.corp", "direct")].count == 4
    assert rows[("git.corp", "direct")].rule == "excluded:.corp"
    blocked = rows[("blocked.example.com", "proxy")]
    assert (blocked.count, blocked.failures, blocked.last_failure) == (1, 1, "proxy-denied")
    # a second report adds up
    with TrafficReporter(console.url, console.token, component="billing", interval=0.2) as r:
        observe.decision(ROUTER.decide("https://git.corp/y"))
        wait_for(lambda: r.sent >= 1)
    (row,) = console.store.traffic("billing", filter="git.corp")
    assert row.count == 5


def test_memory_is_bounded_past_max_entries() -> None:
    r = TrafficReporter("http://127.0.0.1:9", "egress_x", component="c", max_entries=10)
    for i in range(1000):
        r.on_decision(ROUTER.decide(f"https://h{i}.example.com/"))
    pending = r.pending()
    assert len(pending) == 11  # ten destinations and the (other) bucket
    other = next(e for e in pending if e["host"] == report.OTHER)
    assert other["count"] == 990


def test_back_off_while_the_console_is_down_then_delivery(tmp_path: Path) -> None:
    sock = bound_socket()  # bound, not listening: connections are refused
    port = sock.getsockname()[1]
    store = Store(f"sqlite:///{tmp_path / 'pre.db'}")
    store.migrate()
    token = ConsoleService(store).create_token("c", "read", actor="t", address="")[1]
    store.close()
    r = TrafficReporter(
        f"http://127.0.0.1:{port}", token, component="api", interval=0.1, max_entries=3
    ).start()
    try:
        for i in range(5):
            observe.decision(ROUTER.decide(f"https://h{i}.example.com/"))
        wait_for(lambda: r.failed_attempts >= 3)
        assert len(r.pending()) == 4  # kept, still bounded: three and (other)
        grown = r.delays[-1]
        assert grown > r.interval * 3  # doubling per failure in a row
        sock.close()
        shutil_copy(tmp_path / "pre.db", tmp_path / "egress.db")
        with Console(tmp_path, bound_socket(port)) as console:
            r.failed_attempts = 1  # do not wait out the full back-off in a test
            wait_for(lambda: r.sent >= 4)
            rows = console.store.traffic("api")
            assert sum(x.count for x in rows) == 5 and r.failed_attempts == 0
    finally:
        r.close(flush=False)


def shutil_copy(src: Path, dst: Path) -> None:
    dst.write_bytes(src.read_bytes())


def test_the_api_validates_reports(console: Console) -> None:
    auth = {"Authorization": f"Bearer {console.token}"}
    entry = {"host": "a.example", "port": 443, "route": "proxy", "rule": "default", "count": 1}
    with httpx.Client(base_url=console.url, trust_env=False) as c:
        assert (
            c.post("/api/v1/traffic", json={"component": "x", "entries": [entry]}).status_code
            == 401
        )
        ok = c.post("/api/v1/traffic", json={"component": "x", "entries": [entry]}, headers=auth)
        assert ok.status_code == 200 and ok.json() == {"component": "x", "entries": 1}
        for bad in (
            {**entry, "route": "sideways"},
            {**entry, "host": "a b"},
            {**entry, "port": 70000},
            {**entry, "count": -1},
            {**entry, "last_failure": "made-up"},
            {**entry, "extra": 1},
        ):
            r = c.post("/api/v1/traffic", json={"component": "x", "entries": [bad]}, headers=auth)
            assert r.status_code == 422, bad
        many = {"component": "x", "entries": [entry] * 2001}
        assert c.post("/api/v1/traffic", json=many, headers=auth).status_code == 422
        got = c.get("/api/v1/traffic", params={"component": "x"}, headers=auth).json()
        assert [(g["host"], g["count"], g["allowlist_candidate"]) for g in got] == [
            ("a.example", 1, True)
        ]


def test_console_metrics_parse(console: Console) -> None:
    auth = {"Authorization": f"Bearer {console.token}"}
    with httpx.Client(base_url=console.url, trust_env=False) as c:
        c.post("/api/v1/login", json={"username": "nobody", "password": "wrong-password"})
        c.get("/api/v1/settings", headers=auth)
        c.post(
            "/api/v1/traffic",
            json={"component": "m", "entries": []},
            headers=auth,
        )
        text = c.get("/metrics").text
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert values[("egress_console_logins_total", (("outcome", "refused"),))] == 1
    assert values[("egress_console_traffic_reports_total", ())] == 1
    assert sum(v for (n, _), v in values.items() if n == "egress_console_settings_polls_total") == 1
    assert values[("egress_console_requests_total", (("method", "POST"), ("status", "401")))] >= 1
    assert console.token not in text and "nobody" not in text
