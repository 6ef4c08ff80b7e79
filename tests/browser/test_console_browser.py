"""The admin console in headless Chromium, as an operator uses it, against real services.

One module-wide set-up: a uvicorn server (in a thread of this process, on a socket bound to a
free loopback port) over a SQLite store in a temp dir, a real Squid and the fake origin (the
integration suite's, built here from ``tests.support``), and one Chromium (Debian's, driven by
Playwright, launched as in ``test_report_browser.py``). The tests run in file order, each
leaving the console as an operator would; each states what it needs (the switch's state, the
current version) from the store, so a failure in one does not hide another's.

Screenshots at 1280 px and at 390 px go to ``tests/browser/artifacts/`` (ignored by git).
"""

from __future__ import annotations

import io
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
import yaml
from playwright.sync_api import Browser, BrowserContext, Page, expect
from tests.support import names
from tests.support.browser import ARTIFACTS
from tests.support.certs import CertBundle, generate_certs
from tests.support.origin import FakeOrigin
from tests.support.squid import SquidProxy

from egress import cli
from egress.console import auth
from egress.console.app import create_app
from egress.console.service import ConsoleService
from egress.console.store import Store

pytestmark = pytest.mark.browser

ADMIN_PASSWORD = "browser-test-admin-password"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@dataclass
class Console:
    """The running console and what it talks to."""

    url: str
    service: ConsoleService
    squid: SquidProxy
    origin: FakeOrigin
    certs: CertBundle
    silent_port: int

    @property
    def store(self) -> Store:
        return self.service.store


def _silent_listener() -> tuple[socket.socket, threading.Event, threading.Thread]:
    """A loopback port that accepts and never answers (a fake: a stalled destination), so a
    preflight has one check that is visibly still running."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                break
        for s in held:
            s.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    return server, stop, thread


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    tmp = tmp_path_factory.mktemp("console")
    certs = generate_certs(tmp / "certs")
    silent, silent_stop, silent_thread = _silent_listener()
    with FakeOrigin(certs.origin_cert, certs.origin_key) as origin:
        squid = SquidProxy(
            proxy_cert=certs.proxy_cert,
            proxy_key=certs.proxy_key,
            origin_http_port=origin.http_port,
            origin_https_port=origin.https_port,
            pg_port=origin.https_port,
        )
        with squid:
            store = Store(f"sqlite:///{tmp / 'egress.db'}")
            store.migrate()
            store.create_user("admin", auth.hash_password(ADMIN_PASSWORD))
            document = {
                "proxy": {"enabled": False, "url": squid.http_url},
                "excluded_domains": [".corp.example"],
                "deployment": {"kind": "kubernetes"},
            }
            ConsoleService(store, env={}).save(
                document, actor="import", address="", expected=0, action="import"
            )
            app = create_app(store, env={}, check_timeout=2.0, check_verify=str(certs.origin_ca))
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            server = uvicorn.Server(
                uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
            )
            thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
            thread.start()
            deadline = time.monotonic() + 15
            while not server.started and time.monotonic() < deadline:
                time.sleep(0.02)
            assert server.started, "uvicorn did not start"
            try:
                yield Console(
                    f"http://127.0.0.1:{port}",
                    app.state.console,
                    squid,
                    origin,
                    certs,
                    silent.getsockname()[1],
                )
            finally:
                server.should_exit = True
                thread.join(10)
                sock.close()
                store.close()
    silent_stop.set()
    silent_thread.join(5)
    silent.close()


def sign_in(page: Page, console: Console, password: str = ADMIN_PASSWORD) -> None:
    page.goto(console.url + "/")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


CONSOLE_ERRORS: list[str] = []
"""What Chromium's console said at error level on the desktop page (CSP violations, script
errors); the last test asserts it is empty."""


@pytest.fixture(scope="module")
def desktop(browser: Browser, console: Console) -> Iterator[Page]:
    """One signed-in page at 1280 px for the module's tests."""
    context = browser.new_context(viewport=DESKTOP, base_url=console.url, accept_downloads=True)
    page = context.new_page()
    page.on("console", lambda m: CONSOLE_ERRORS.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: CONSOLE_ERRORS.append(str(e)))
    sign_in(page, console)
    expect(page.locator("#signed-in-user")).to_have_text("admin")
    try:
        yield page
    finally:
        context.close()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    width = page.viewport_size["width"] if page.viewport_size else 0
    page.screenshot(path=str(ARTIFACTS / f"console-{name}-{width}.png"), full_page=True)


def no_sideways_scroll(page: Page, width: int) -> None:
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= width, f"{page.url} is {scroll_width}px wide at {width}px"


def _ensure_switch(console: Console, enabled: bool) -> None:
    settings = console.service.current().settings
    assert settings is not None
    if settings.proxy.enabled != enabled:
        console.service.set_enabled(enabled, actor="test", address="", expected=None)


# -- the operator's path -------------------------------------------------------------------------


def test_login_wrong_password_first(browser: Browser, console: Console) -> None:
    context: BrowserContext = browser.new_context(viewport=DESKTOP)
    try:
        page = context.new_page()
        sign_in(page, console, password="not-the-password")
        error = page.locator("#login-error")
        expect(error).to_have_text("The name or the password is wrong.")
        expect(page.get_by_label("Password")).to_have_value("")
        shot(page, "login-refused")
        page.get_by_label("Password").fill(ADMIN_PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(console.url + "/")
        expect(page.locator("#signed-in-user")).to_have_text("admin")
        assert "login.failed" in [e.action for e in console.store.audit_log()]
        page.keyboard.press("Tab")  # the first stop is the skip link, and it shows
        expect(page.locator("a.skip")).to_be_focused()
        assert page.locator("a.skip").bounding_box()["y"] >= 0  # type: ignore[index]
    finally:
        context.close()


def test_flip_the_switch(desktop: Page, console: Console) -> None:
    _ensure_switch(console, False)
    desktop.goto("/")
    expect(desktop.locator("#switch-state")).to_have_text("Proxy switch: off")
    expect(desktop.locator("#switch-effect")).to_contain_text("When the switch is on")
    before = console.store.current_number()
    desktop.get_by_role("button", name="Turn the proxy on").click()
    expect(desktop.locator("#notice")).to_have_text(
        f"The proxy switch is on (version {before + 1})."
    )
    expect(desktop.locator("#switch-state")).to_have_text("Proxy switch: on")
    expect(desktop.get_by_role("button", name="Turn the proxy off")).to_be_visible()
    shot(desktop, "overview")
    desktop.get_by_role("navigation", name="Main").get_by_role("link", name="History").click()
    newest = desktop.locator("#versions > li").first
    expect(newest).to_contain_text(f"Version {before + 1}")
    expect(newest).to_contain_text("switch-on")
    expect(newest).to_contain_text("proxy.enabled")


def test_invalid_value_shows_beside_its_field_and_saves_nothing(
    desktop: Page, console: Console
) -> None:
    before = console.store.current_number()
    desktop.goto("/settings")
    url = desktop.get_by_label("Proxy URL", exact=False).first
    url.fill("socks5://p:1080")
    desktop.get_by_role("button", name="Save as a new version").click()
    error = desktop.locator("#f-proxy-url-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("socks5")
    field = desktop.locator("#f-proxy-url")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_have_value("socks5://p:1080")
    assert "f-proxy-url-error" in (field.get_attribute("aria-describedby") or "").split()
    # the error sits beside its field: inside the same field block, right under the input
    assert desktop.locator("#f-proxy-url-field #f-proxy-url-error").count() == 1
    expect(desktop.locator("#form-errors")).to_contain_text("Nothing was saved")
    shot(desktop, "settings-error")
    assert console.store.current_number() == before


def test_save_a_valid_change(desktop: Page, console: Console) -> None:
    before = console.store.current_number()
    desktop.goto("/settings")
    desktop.get_by_label("Excluded destinations").fill(".corp.example\n.internal.example")
    desktop.get_by_role("button", name="Save as a new version").click()
    expect(desktop.locator("#notice")).to_have_text(f"Saved as version {before + 1}.")
    expect(desktop.get_by_label("Excluded destinations")).to_have_value(
        ".corp.example\n.internal.example"
    )
    current = console.store.current()
    assert current is not None and current.number == before + 1
    assert current.document["excluded_domains"] == [".corp.example", ".internal.example"]
    assert current.document["proxy"]["url"] == console.squid.http_url


def test_explain_a_url(desktop: Page, console: Console) -> None:
    _ensure_switch(console, True)
    desktop.goto("/routes")
    for url, rule in [
        ("https://db.internal.example/x", "excluded:.internal.example"),
        ("https://api.example.com/", None),
    ]:
        desktop.get_by_label("URL", exact=True).fill(url)
        desktop.get_by_role("button", name="Explain").click()
        decision = console.service.explain(url)  # the router's answer, which the page shows
        expect(desktop.locator("#explain-route")).to_have_text(decision.route)
        expect(desktop.locator("#explain-rule")).to_have_text(decision.rule)
        expect(desktop.locator("#explain-reason")).to_have_text(decision.reason)
        if rule is not None:
            assert decision.rule == rule and decision.route == "direct"
        else:
            assert decision.route == "proxy"
            expect(desktop.locator("#explanation")).to_contain_text(console.squid.http_url)
    expect(desktop.locator("#rules")).to_contain_text("excluded:.internal.example")
    shot(desktop, "routes")


def test_preflight_against_squid(desktop: Page, console: Console) -> None:
    _ensure_switch(console, True)
    origin, squid = console.origin, console.squid
    through_squid = origin.url(names.API_SAAS, "/health")
    stalled = f"https://127.0.0.1:{console.silent_port}/"
    mark = squid.access_log_mark()
    desktop.goto("/preflight")
    desktop.get_by_label("Only the URLs below").check()
    desktop.get_by_label("URLs, one a line (optional)").fill(f"{through_squid}\n{stalled}")
    desktop.get_by_role("button", name="Run the preflight").click()
    # live: the first result is in while the stalled check still runs
    expect(desktop.locator("#progress-count")).to_have_text("1", timeout=5000)
    expect(desktop.locator("#progress")).to_be_visible()
    expect(desktop.locator("#results tbody tr")).to_have_count(1)
    shot(desktop, "preflight-running")
    # then the finished table: only the event stream's "done" reloads the page
    verdict = desktop.locator("#verdict")
    expect(verdict).to_be_visible(timeout=10000)
    expect(verdict).to_contain_text("failed")
    rows = desktop.locator("#results tbody tr")
    expect(rows).to_have_count(2)
    ok = rows.filter(has_text=names.API_SAAS)
    expect(ok.locator(".badge")).to_have_text("ok")
    expect(ok).to_contain_text("proxy")
    expect(rows.filter(has_text=str(console.silent_port)).locator(".badge")).to_have_text("timeout")
    squid.wait_for_access_log(
        lambda line: line.method == "CONNECT" and line.url.startswith(names.API_SAAS),
        since=mark,
    )
    shot(desktop, "preflight-done")
    desktop.get_by_role("link", name="Open the HTML report for the proxy team").click()
    expect(desktop.locator("#summary h2")).to_have_text("Summary")
    desktop.go_back()
    record = console.store.last_preflight()
    assert record is not None and record.verdict == "failed" and len(record.results) == 2


def test_download_an_artifact(desktop: Page, console: Console, tmp_path: Path) -> None:
    desktop.goto("/artifacts")
    with desktop.expect_download() as info:
        desktop.get_by_role("link", name="Download egress-squid.conf").click()
    download = info.value
    assert download.suggested_filename == "egress-squid.conf"
    got = Path(download.path()).read_text(encoding="utf-8")
    current = console.store.current()
    assert current is not None
    config = tmp_path / "egress.yaml"
    config.write_text(yaml.safe_dump(current.document), encoding="utf-8")
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli.main(["render", "squid", "--config", str(config)]) == 0
    # the same text but for the line naming where the settings came from
    assert got.replace(f"console version {current.number}", "SOURCE") == out.getvalue().replace(
        str(config), "SOURCE"
    )
    assert ".internal.example" in got  # the saved change reached the artifact


def test_roll_back(desktop: Page, console: Console) -> None:
    first = console.store.version(1)
    assert first is not None
    before = console.store.current_number()
    assert before > 1
    desktop.goto("/history")
    desktop.get_by_role("button", name="Roll back to version 1").click()
    expect(desktop.locator("#notice")).to_have_text(
        f"Rolled back: version {before + 1} holds the settings of version 1."
    )
    newest = desktop.locator("#versions > li").first
    expect(newest).to_contain_text(f"Version {before + 1}")
    expect(newest).to_contain_text("rollback")
    expect(newest).to_contain_text("rolled back to version 1")
    shot(desktop, "history")
    current = console.store.current()
    assert current is not None and current.document == first.document
    desktop.goto("/settings")
    expect(desktop.get_by_label("Excluded destinations")).to_have_value(".corp.example")
    expect(desktop.locator("#switch-state")).to_have_text("Proxy switch: off")


def test_preflight_without_javascript(browser: Browser, console: Console) -> None:
    """The plain form works with scripts off: the page refreshes itself until the run ends."""
    _ensure_switch(console, True)
    context = browser.new_context(viewport=DESKTOP, base_url=console.url, java_script_enabled=False)
    try:
        page = context.new_page()
        sign_in(page, console)
        page.goto("/preflight")
        page.get_by_label("Only the URLs below").check()
        url = console.origin.url(names.AUTH_SAAS, "/x")
        page.get_by_label("URLs, one a line (optional)").fill(url)
        page.get_by_role("button", name="Run the preflight").click()
        expect(page.locator("#verdict")).to_contain_text("passed", timeout=10000)
        row = page.locator("#results tbody tr")
        expect(row).to_have_count(1)
        expect(row.locator(".badge")).to_have_text("ok")
        # the form offers the same check again
        expect(page.get_by_label("URLs, one a line (optional)")).to_have_value(url)
        expect(page.get_by_label("Only the URLs below")).to_be_checked()
    finally:
        context.close()


def test_no_script_errors_or_csp_violations() -> None:
    # a refused form answers 422, which Chromium logs as a failed load: that is the design
    errors = [e for e in CONSOLE_ERRORS if not e.startswith("Failed to load resource")]
    assert errors == []


def test_phone_width(browser: Browser, console: Console) -> None:
    context = browser.new_context(viewport=PHONE, base_url=console.url)
    try:
        page = context.new_page()
        sign_in(page, console)
        expect(page.locator("#signed-in-user")).to_have_text("admin")
        for path, name in [
            ("/", "overview"),
            ("/settings", "settings"),
            ("/preflight", "preflight"),
        ]:
            page.goto(path)
            expect(page.locator("h1")).to_be_visible()
            no_sideways_scroll(page, PHONE["width"])
            shot(page, name)
        # the nav wraps instead of hiding: every entry can be reached and read
        for link in page.locator("nav.main a").all():
            assert link.is_visible()
    finally:
        context.close()
