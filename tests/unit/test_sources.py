"""egress.sources: FileSource on a kubelet-style mount and plain files, ConsoleSource against the
real console app (uvicorn in a thread, SQLite in tmp_path) and a fake console that answers
garbage, and clients following a source (pools retired only once no request uses them).

Every wait has a generous deadline; assertions are on order and content, not on timings.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.console_server import ServedConsole
from tests.support.kubelet import KubeletMount

import egress
from egress.console.app import bootstrap, create_app
from egress.console.store import Store
from egress.sources import (
    ConsoleSource,
    FileSource,
    SettingsSource,
    SettingsSourceError,
    Snapshot,
    StaticSource,
)
from egress.transport.clients import DECISION_EXTENSION, SNAPSHOT_EXTENSION

FAST = 0.05  # poll interval in these tests
DEADLINE = 15.0
ADMIN_PASSWORD = "admin-password-for-tests-1"
PROXY_PASSWORD = "Pr0xy/Pass@word:with#odd?chars"


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def yaml_doc(enabled: bool, url: str = "http://proxy.test:3128", extra: str = "") -> str:
    return (
        f"proxy: {{enabled: {str(enabled).lower()}, url: {url}}}\n"
        "deployment: {kind: single-vm}\n"
        f"{extra}"
    )


def source_records(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "egress.sources" and r.levelno >= level
    ]


# -- a kubelet-style ConfigMap mount ---------------------------------------------------------------


def test_file_source_follows_the_kubelet_data_swap(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="egress.sources")
    mount = KubeletMount(tmp_path / "settings", yaml_doc(False))
    seen: list[Snapshot] = []
    with FileSource(mount.path, interval=FAST, env={}) as source:
        source.subscribe(seen.append)
        first = source.current()
        assert first.settings.proxy.enabled is False
        assert first.version.startswith("file:")
        assert isinstance(source, SettingsSource)
        mount.update(yaml_doc(True))
        wait_for(lambda: source.current().settings.proxy.enabled, "the swapped settings")
        second = source.current()
        assert second.version != first.version
        mount.update(yaml_doc(False, extra="excluded_domains: [.corp.test]\n"))
        wait_for(lambda: not source.current().settings.proxy.enabled, "the second swap")
        third = source.current()
    assert [s.version for s in seen] == [second.version, third.version]
    assert third.settings.excluded_domains == (".corp.test",)
    assert source_records(caplog) == []  # no swap was ever seen half-done


def test_file_source_sees_an_in_place_edit_of_the_same_size_and_mtime(tmp_path: Path) -> None:
    path = tmp_path / "egress.yaml"
    path.write_text(yaml_doc(True, "http://proxy.test:3128"))
    stat = path.stat()
    with FileSource(path, interval=FAST, env={}) as source:
        before = source.current()
        with open(path, "r+") as f:  # an editor writing in place, same length
            f.write(yaml_doc(True, "http://proxy.test:3129"))
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even the mtime is the same
        wait_for(
            lambda: str(source.current().settings.proxy.http_proxy) == "http://proxy.test:3129",
            "the edited port",
        )
        assert source.current().version != before.version


def test_a_broken_file_keeps_the_last_good_settings_and_logs_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="egress.sources")
    mount = KubeletMount(tmp_path / "m", yaml_doc(True))
    with FileSource(mount.path, interval=FAST, env={}) as source:
        good = source.current()
        mount.update("proxy: {enabled: true, url: socks5://proxy.test:1080}\n")
        wait_for(lambda: len(source_records(caplog)) >= 1, "the refusal to be logged")
        time.sleep(20 * FAST)  # many more polls of the same broken file
        assert source.current() is good
        assert len(source_records(caplog)) == 1
        assert "socks5" in source_records(caplog)[0]
        assert good.version in source_records(caplog)[0]
        mount.update("proxy: [not yaml\n")  # another problem: logged once too
        wait_for(lambda: len(source_records(caplog)) >= 2, "the second refusal")
        time.sleep(20 * FAST)
        assert len(source_records(caplog)) == 2
        assert source.current() is good
        mount.update(yaml_doc(False))
        wait_for(lambda: source.current() is not good, "the repaired file")
        assert source.current().settings.proxy.enabled is False


def test_an_in_place_rewrite_caught_empty_keeps_the_last_settings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Truncated, not yet written: an empty file is not "every default" (the proxy off)."""
    caplog.set_level(logging.INFO, logger="egress.sources")
    path = tmp_path / "egress.yaml"
    path.write_text(yaml_doc(True, "http://proxy-a.test:3128"))
    with FileSource(path, interval=FAST, env={}) as source:
        good = source.current()
        path.write_text("")  # the moment between the truncate and the write
        wait_for(lambda: len(source_records(caplog)) >= 1, "the empty file to be refused")
        assert source.current() is good
        assert source.current().settings.proxy.enabled is True
        assert "is empty" in source_records(caplog)[0]
        path.write_text(yaml_doc(True, "http://proxy-b.test:3128"))
        wait_for(lambda: source.current() is not good, "the rewritten file")
        assert source.current().settings.proxy.http_proxy.host == "proxy-b.test"  # type: ignore[union-attr]
    with pytest.raises(SettingsSourceError, match="is empty"):
        path.write_text("# only a comment\n")
        FileSource(path, interval=FAST, env={})


def test_deleted_file_keeps_settings_and_restored_file_is_loaded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="egress.sources")
    path = tmp_path / "egress.yaml"
    path.write_text(yaml_doc(True))
    with FileSource(path, interval=FAST, env={}) as source:
        good = source.current()
        path.unlink()
        wait_for(lambda: len(source_records(caplog)) >= 1, "the deletion to be logged")
        time.sleep(20 * FAST)
        assert source.current() is good
        assert len(source_records(caplog)) == 1
        assert "cannot be read" in source_records(caplog)[0]
        path.write_text(yaml_doc(True))  # the same content back: nothing to reload
        wait_for(
            lambda: any("back to normal" in m for m in source_records(caplog, logging.INFO)),
            "the recovery",
        )
        assert source.current() is good
        path.write_text(yaml_doc(False))
        wait_for(lambda: not source.current().settings.proxy.enabled, "the new content")


def test_first_load_failure_raises_unless_initial_settings_are_given(tmp_path: Path) -> None:
    path = tmp_path / "egress.yaml"
    path.write_text("proxy: {url: ftp://proxy.test:21}\n")
    with pytest.raises(SettingsSourceError, match=r"proxy\.url.*initial="):
        FileSource(path, interval=FAST, env={})
    start = egress.Settings.from_proxy("http://proxy.test:3128")
    with FileSource(path, interval=FAST, env={}, initial=start) as source:
        assert source.current().settings is start
        assert source.current().version == "initial"
        path.write_text(yaml_doc(False))
        wait_for(lambda: source.current().version.startswith("file:"), "the fixed file")
    assert source.closed


def test_close_stops_the_thread(tmp_path: Path) -> None:
    path = tmp_path / "egress.yaml"
    path.write_text(yaml_doc(False))
    before = {t.name for t in threading.enumerate()}
    source = FileSource(path, interval=FAST, env={})
    thread = source._thread
    assert thread is not None and thread.daemon and thread.is_alive()
    source.close()
    assert not thread.is_alive()
    assert {t.name for t in threading.enumerate()} <= before


# -- ConsoleSource against the real console --------------------------------------------------------


@pytest.fixture
def console(tmp_path: Path) -> Iterator[ServedConsole]:
    seed = tmp_path / "seed.yaml"
    seed.write_text(yaml_doc(False))
    store = Store(f"sqlite:///{tmp_path / 'egress.db'}")
    bootstrap(store, import_file=str(seed), admin_password=ADMIN_PASSWORD)
    served = ServedConsole(create_app(store, env={}))
    with served:
        yield served
    store.close()


def flip(console: ServedConsole, admin: str, enabled: bool) -> str:
    """The switch flipped through the console's API; returns the new version's ETag."""
    r = httpx.post(
        f"{console.url}/api/v1/settings/switch",
        json={"enabled": enabled},
        headers={"Authorization": f"Bearer {admin}"},
        trust_env=False,
    )
    assert r.status_code == 200, r.text
    return r.headers["etag"]


def test_console_source_follows_the_switch(
    console: ServedConsole, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    # a proxy in the environment must not be used to reach the console (trust_env=False)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    reader, admin = console.token("read"), console.token("admin", "ci")
    with ConsoleSource(console.url, reader, interval=FAST, env={}) as source:
        first = source.current()
        assert (first.settings.proxy.enabled, first.version) == (False, '"v1"')
        etag = flip(console, admin, True)
        wait_for(lambda: source.current().version == etag, "the switched version")
        assert source.current().settings.proxy.enabled is True
        etag = flip(console, admin, False)
        wait_for(lambda: source.current().version == etag, "the switch back")
        assert source.current().settings.proxy.enabled is False
    text = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    assert reader not in text and admin not in text


def test_console_source_password_comes_from_password_file(
    console: ServedConsole, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    admin = console.token("admin", "ci")
    document = {
        "proxy": {"enabled": True, "url": "http://proxy.test:3128", "username": "alice"},
        "deployment": {"kind": "single-vm"},
        "password": {"set": PROXY_PASSWORD},
    }
    r = httpx.put(
        f"{console.url}/api/v1/settings",
        json=document,
        headers={"Authorization": f"Bearer {admin}", "If-Match": '"v1"'},
        trust_env=False,
    )
    assert r.status_code == 200, r.text
    reader = console.token()
    with pytest.raises(SettingsSourceError, match="password_file=") as info:
        ConsoleSource(console.url, reader, interval=FAST, env={})  # the password is not sent
    assert PROXY_PASSWORD not in str(info.value)
    secret = tmp_path / "password"
    secret.write_text(PROXY_PASSWORD + "\n")
    with ConsoleSource(
        console.url, reader, interval=FAST, env={}, password_file=str(secret)
    ) as source:
        password = source.current().settings.proxy.password
        assert password is not None and password.reveal() == PROXY_PASSWORD
        assert source.current().settings.proxy.username == "alice"
        secret.write_text("rotated-password\n")  # a rotated Secret: read again
        wait_for(
            lambda: (
                (p := source.current().settings.proxy.password) is not None
                and p.reveal() == "rotated-password"
            ),
            "the rotated password",
        )
        secret.write_text("")  # empty: refused, the rotated one stays
        wait_for(lambda: len(source_records(caplog)) >= 1, "the refusal")
        kept = source.current().settings.proxy.password
        assert kept is not None and kept.reveal() == "rotated-password"
    assert PROXY_PASSWORD not in caplog.text and "rotated-password" not in caplog.text
    assert reader not in caplog.text and admin not in caplog.text


def test_console_source_refuses_a_bad_token_clearly(console: ServedConsole) -> None:
    token = "egr_not-a-real-token-0123456789"
    with pytest.raises(SettingsSourceError, match=r"refused the token \(401\)") as info:
        ConsoleSource(console.url, token, interval=FAST, env={})
    assert token not in str(info.value)


def test_console_down_and_back(console: ServedConsole, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="egress.sources")
    admin = console.token("admin", "ci")
    with ConsoleSource(console.url, console.token(), interval=FAST, env={}, max_backoff=0.5) as s:
        good = s.current()
        console.stop()
        wait_for(lambda: len(source_records(caplog)) >= 1, "the outage to be logged")
        assert "cannot be reached" in source_records(caplog)[0]
        time.sleep(1.0)
        assert s.current() is good
        assert len(source_records(caplog)) == 1  # the outage is logged once, not per poll
        service = console.service
        version = service.set_enabled(True, actor="test", address="", expected=None)
        console.start()
        wait_for(
            lambda: s.current().version == f'"v{version.number}"', "the change made while down"
        )
        assert s.current().settings.proxy.enabled is True
        flip(console, admin, False)
        wait_for(lambda: not s.current().settings.proxy.enabled, "polling at the interval again")


# -- a fake console: garbage answers, 5xx, back-off ------------------------------------------------


class FakeConsole:
    """A loopback HTTP server that answers GET /api/v1/settings from a script of answers (the
    last one repeats): for garbage a real console never sends. Counts the requests."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, str], bytes]] = []
        self.requests: list[dict[str, str]] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.requests.append(dict(self.headers))
                status, headers, body = fake.answers[0]
                if len(fake.answers) > 1:
                    fake.answers.pop(0)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def set(self, *answers: tuple[int, dict[str, str], bytes]) -> None:
        self.answers = list(answers)

    def __enter__(self) -> FakeConsole:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def doc(enabled: bool, etag: str) -> tuple[int, dict[str, str], bytes]:
    body = {"proxy": {"enabled": enabled, "url": "http://proxy.test:3128"}}
    return 200, {"ETag": etag, "Content-Type": "application/json"}, json.dumps(body).encode()


def test_garbage_answers_keep_the_last_good_settings_and_log_once_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="egress.sources")
    with FakeConsole() as fake:
        fake.set(doc(True, '"v1"'))
        with ConsoleSource(fake.url, "fake-token", interval=FAST, env={}) as source:
            good = source.current()
            assert fake.requests[0]["Authorization"] == "Bearer fake-token"
            wait_for(lambda: fake.requests[-1].get("If-None-Match") == '"v1"', "a conditional poll")
            garbage = [
                (200, {"ETag": '"v2"'}, b"<html>not json</html>"),
                (200, {"ETag": '"v3"'}, b"[1, 2, 3]"),
                (200, {}, b"{}"),
                (
                    200,
                    {"ETag": '"v4"'},
                    json.dumps({"proxy": {"url": "socks5://proxy.test:1080"}}).encode(),
                ),
            ]
            for i, answer in enumerate(garbage, start=1):
                n = len(fake.requests)
                fake.set(answer)
                wait_for(lambda i=i: len(source_records(caplog)) >= i, f"refusal {i}")
                wait_for(lambda n=n: len(fake.requests) >= n + 10, "ten more polls")
                assert source.current() is good
                assert len(source_records(caplog)) == i  # once per distinct problem
            messages = source_records(caplog)
            assert "not JSON" in messages[0]
            assert "not a JSON object" in messages[1]
            assert "no ETag" in messages[2]
            assert "socks5" in messages[3] and '"v4"' in messages[3]
            # an invalid version is not fetched again: polls name its ETag
            assert fake.requests[-1].get("If-None-Match") == '"v4"'
            fake.set(doc(False, '"v5"'))
            wait_for(lambda: source.current().version == '"v5"', "the next valid version")
            assert source.current().settings.proxy.enabled is False
    assert "fake-token" not in caplog.text


def test_5xx_backs_off_and_recovers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="egress.sources")
    with FakeConsole() as fake:
        fake.set(doc(True, '"v1"'))
        with ConsoleSource(fake.url, "t", interval=FAST, env={}, max_backoff=30.0) as source:
            fake.set((503, {}, b"busy"))
            n = len(fake.requests)
            wait_for(lambda: len(source_records(caplog)) == 1, "the 503 to be logged")
            time.sleep(3.0)
            # at the interval there would be about 60 polls in 3 s; backing off: a handful
            assert len(fake.requests) - n <= 12
            assert "503" in source_records(caplog)[0]
            assert len(source_records(caplog)) == 1
            fake.set(doc(False, '"v2"'))
            wait_for(lambda: source.current().version == '"v2"', "the recovery", timeout=40)


# -- clients following a source --------------------------------------------------------------------


class KeepAliveOrigin:
    """A loopback HTTP/1.1 origin that counts its open client connections; ``/slow`` sends
    half a body and waits for ``release`` before the rest."""

    def __init__(self) -> None:
        self.open = 0
        self.lock = threading.Lock()
        self.release = threading.Event()
        origin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with origin.lock:
                    origin.open += 1

            def finish(self) -> None:
                with origin.lock:
                    origin.open -= 1
                super().finish()

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", "10")
                self.end_headers()
                if self.path == "/slow":
                    self.wfile.write(b"hello")
                    self.wfile.flush()
                    origin.release.wait(30)
                    self.wfile.write(b"world")
                else:
                    self.wfile.write(b"0123456789")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> KeepAliveOrigin:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_client_follows_a_file_and_retires_old_pools_only_when_unused(tmp_path: Path) -> None:
    path = tmp_path / "egress.yaml"
    path.write_text(yaml_doc(False, "http://proxy-a.test:3128"))
    with (
        KeepAliveOrigin() as origin,
        FileSource(path, interval=FAST, env={}) as source,
        egress.Client(source=source) as client,
    ):
        first = client.get(origin.url + "/")
        assert first.extensions[SNAPSHOT_EXTENSION] is source.current()
        assert first.extensions[DECISION_EXTENSION].rule == "proxy-disabled"
        old_version = first.extensions[SNAPSHOT_EXTENSION].version
        with client.stream("GET", origin.url + "/slow") as slow:  # in flight across the change
            wait_for(lambda: origin.open == 1, "one kept-alive connection")
            # another proxy, written whole at once: a truncate-then-write could be read empty
            staged = tmp_path / "egress.yaml.new"
            staged.write_text(yaml_doc(False, "http://proxy-b.test:3128"))
            os.replace(staged, path)
            wait_for(lambda: source.current().version != old_version, "the new settings")
            second = client.get(origin.url + "/")
            assert second.extensions[SNAPSHOT_EXTENSION].version != old_version
            assert origin.open == 2  # the old pool still carries the slow response
            origin.release.set()
            assert slow.read() == b"helloworld"  # not dropped
            assert slow.extensions[SNAPSHOT_EXTENSION].version == old_version
        # the slow response closed: the old proxy's pools are closed, their socket too
        wait_for(lambda: origin.open == 1, "the retired pool's connection to close")
        third = client.get(origin.url + "/")
        assert third.extensions[SNAPSHOT_EXTENSION] is second.extensions[SNAPSHOT_EXTENSION]
        assert origin.open == 1  # kept alive: one connection, reused
    wait_for(lambda: origin.open == 0, "every connection closed with the client")


def test_same_proxy_settings_share_pools(tmp_path: Path) -> None:
    path = tmp_path / "egress.yaml"
    path.write_text(yaml_doc(False))
    with (
        KeepAliveOrigin() as origin,
        FileSource(path, interval=FAST, env={}) as source,
        egress.Client(source=source) as client,
    ):
        client.get(origin.url + "/")
        version = source.current().version
        path.write_text(yaml_doc(False, extra="excluded_domains: [.corp.test]\n"))
        wait_for(lambda: source.current().version != version, "the new settings")
        response = client.get(origin.url + "/")
        assert response.extensions[SNAPSHOT_EXTENSION].version != version
        assert origin.open == 1  # the same kept-alive connection: pools were not retired


def test_async_client_follows_a_source(tmp_path: Path) -> None:
    path = tmp_path / "egress.yaml"
    path.write_text(yaml_doc(False, "http://proxy-a.test:3128"))
    with KeepAliveOrigin() as origin, FileSource(path, interval=FAST, env={}) as source:
        asyncio.run(_async_follow(origin, path, source))
        wait_for(lambda: origin.open == 0, "all closed")


async def _async_follow(origin: KeepAliveOrigin, path: Path, source: FileSource) -> None:
    if True:
        async with egress.AsyncClient(source=source) as client:
            first = await client.get(origin.url + "/")
            path.write_text(yaml_doc(False, "http://proxy-b.test:3128"))
            wait_for(lambda: source.current() is not first.extensions[SNAPSHOT_EXTENSION], "new")
            second = await client.get(origin.url + "/")
            assert second.extensions[SNAPSHOT_EXTENSION] is source.current()
            wait_for(lambda: origin.open == 1, "the old pool closed")


def test_requests_session_follows_a_source(tmp_path: Path) -> None:
    path = tmp_path / "egress.yaml"
    path.write_text(yaml_doc(False, "http://proxy-a.test:3128"))
    with (
        KeepAliveOrigin() as origin,
        FileSource(path, interval=FAST, env={}) as source,
        egress.requests_session(source=source) as session,
    ):
        first = session.get(origin.url + "/")
        assert first.content == b"0123456789"
        path.write_text(yaml_doc(False, "http://proxy-b.test:3128"))
        wait_for(lambda: source.current() is not first.egress_snapshot, "new")  # type: ignore[attr-defined]
        second = session.get(origin.url + "/")
        assert second.egress_snapshot is source.current()  # type: ignore[attr-defined]
        wait_for(lambda: origin.open == 1, "the old adapter's connection closed")
    wait_for(lambda: origin.open == 0, "all closed")


def test_clients_take_settings_or_a_source_not_both() -> None:
    settings = egress.Settings.from_proxy("http://proxy.test:3128")
    source = StaticSource(settings)
    with pytest.raises(TypeError, match="not both"):
        egress.Client(settings, source=source)
    with pytest.raises(TypeError, match="source="):
        egress.AsyncClient()
    with pytest.raises(TypeError, match="not both"):
        egress.requests_session(settings, source=source)
    with egress.Client(source=source) as client:
        assert client.settings is settings and client.source is source
        assert client.egress_transport.settings is settings


def test_static_source_is_a_settings_source() -> None:
    settings = egress.Settings.from_proxy("http://proxy.test:3128")
    with StaticSource(settings) as source:
        assert isinstance(source, SettingsSource)
        assert source.current().settings is settings
        assert source.current() is source.current()
