"""The *Traffic* page in headless Chromium after three components reported to a real console
(uvicorn in a thread, SQLite): per component, newest first, the filter, and the highlights
(allowlist candidates, proxy-denied destinations)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, expect
from tests.support.browser import ARTIFACTS

from egress import observe
from egress.console import auth
from egress.console.app import create_app
from egress.console.store import Store
from egress.report import TrafficReporter
from egress.settings import Settings

pytestmark = pytest.mark.browser

PASSWORD = "traffic-browser-admin-password"


@pytest.fixture(scope="module")
def console_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("traffic")
    store = Store(f"sqlite:///{tmp / 'egress.db'}")
    store.migrate()
    store.create_user("admin", auth.hash_password(PASSWORD))
    app = create_app(store, env={})
    _, token = app.state.console.create_token("components", "read", actor="t", address="")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    try:
        report_from_three_components(url, token)
        yield url
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        store.close()


def report_from_three_components(url: str, token: str) -> None:
    """Each component's reporter sees its own traffic (one at a time: the sink is per process)."""
    router = Settings.from_proxy("http://127.0.0.1:3128", no_proxy=".corp").router()
    traffic = {
        "billing": ["https://api.tomtom.com/", "https://git.corp/"],
        "ingest": ["https://unknown-saas.example/", "https://api.tomtom.com/"],
        "reports": ["https://blocked.example/"],
    }
    for component, urls in traffic.items():
        reporter = TrafficReporter(url, token, component=component, interval=60)
        reporter.start()
        for u in urls:
            d = router.decide(u)
            observe.decision(d)
            if "blocked" in u:
                observe.hop_failure("denied", d)
        reporter.close()  # flushes
        assert reporter.sent == len(urls)
        time.sleep(0.05)  # distinct last-seen times: "reports" is the newest


def test_traffic_page_shows_components_and_highlights(console_url: str, browser: Browser) -> None:
    """Debian's Chromium from tests/browser/conftest.py."""
    page = browser.new_page(base_url=console_url, viewport={"width": 1280, "height": 900})
    sign_in(page, console_url)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Traffic").click()
    expect(page.locator("h1")).to_have_text("Traffic")
    headings = page.locator("section.component h2").all_inner_texts()
    assert headings == ["reports", "ingest", "billing"]  # newest first
    candidates = page.locator("#candidates")
    expect(candidates).to_contain_text("unknown-saas.example:443")
    expect(candidates).to_contain_text("blocked.example:443")
    expect(candidates).not_to_contain_text("api.tomtom.com")  # in the catalog
    expect(candidates).not_to_contain_text("git.corp")  # direct
    expect(page.locator("#denied")).to_contain_text("blocked.example:443")
    row = page.locator("table[data-component='reports'] tr[data-host='blocked.example']")
    expect(row).to_have_class("fail")
    expect(row).to_contain_text("proxy-denied")
    ingest = page.locator("table[data-component='ingest']")
    expect(ingest.locator("tr[data-host='unknown-saas.example']")).to_contain_text(
        "allowlist candidate"
    )
    expect(ingest.locator("tr[data-host='api.tomtom.com']")).to_contain_text("in catalog")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "console-traffic-1280.png"), full_page=True)
    page.get_by_label("Component", exact=True).select_option("billing")
    page.get_by_label("Host, rule or failure contains").fill("corp")
    page.get_by_role("button", name="Filter").click()
    assert page.locator("section.component h2").all_inner_texts() == ["billing"]
    expect(page.locator("table.traffic tbody tr")).to_have_count(1)
    expect(page.locator("table.traffic")).to_contain_text("git.corp:443")


def sign_in(page: Page, url: str) -> None:
    page.goto(url + "/traffic")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#signed-in-user")).to_have_text("admin")
