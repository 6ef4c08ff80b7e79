"""The ``egress check --report`` page in headless Chromium (Debian's, driven by Playwright).

The page is written to a file and opened by ``file://``; the browser runs with networking in the
background switched off and no sandbox (root in a container). Screenshots at a desktop and a
phone width go to ``tests/browser/artifacts/`` (ignored by git) for a person to look at.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page
from tests.support.browser import ARTIFACTS
from tests.support.report_sample import PROXY_PASSWORD, sample_results, sample_settings

from egress.check_report import html_report

pytestmark = pytest.mark.browser

SECTIONS = {
    "summary": "Summary",
    "allow": "What to allow on the proxy",
    "bypass": "What bypasses the proxy, and why",
    "results": "Results",
}


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    settings = sample_settings(tmp)
    path = tmp / "report.html"
    path.write_text(html_report(settings, sample_results(settings)), encoding="utf-8")
    return path


def _open(browser: Browser, path: Path, width: int, height: int) -> tuple[Page, list[str]]:
    """The page at this viewport, with every request it made (it must make none but itself)."""
    page = browser.new_page(viewport={"width": width, "height": height})
    requests: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, requests


@pytest.mark.parametrize(("width", "height"), [(1280, 900), (390, 844)], ids=["desktop", "phone"])
def test_report_is_readable(browser: Browser, report_file: Path, width: int, height: int) -> None:
    page, requests = _open(browser, report_file, width, height)
    try:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"report-{width}.png"), full_page=True)

        # the page asks for nothing but itself (no font, stylesheet, image or script)
        assert requests == [report_file.as_uri()]
        for section_id, title in SECTIONS.items():
            heading = page.locator(f"#{section_id} h2")
            assert heading.is_visible(), section_id
            assert heading.inner_text() == title
        verdict = page.locator("#summary .verdict")
        assert verdict.is_visible()
        assert verdict.inner_text().startswith("FAILED: 3 required destinations failed")

        # a status is shown as words, and coloured by its severity
        denied = page.locator("#results tr", has_text="registry-1.docker.io").locator(".badge.fail")
        assert denied.is_visible()
        assert "proxy-denied" in denied.inner_text()
        colour = denied.evaluate("e => getComputedStyle(e).color")
        assert colour == "rgb(179, 38, 30)"  # --fail
        warn = page.locator("#results tr", has_text="api.tomtom.com").locator(".badge.warn")
        assert "timeout" in warn.inner_text()

        # every result has a row; the allow list names a denied host with its port and need
        assert page.locator("#results tbody tr").count() == 6
        allow = page.locator("#allow tr", has_text="registry-1.docker.io")
        assert allow.is_visible()
        assert "required" in allow.inner_text()
        bypass = page.locator("#bypass tr", has_text="excluded:.corp.example").first
        assert bypass.is_visible()
        assert "listed by the operator" in bypass.inner_text()

        text = page.locator("body").inner_text()
        assert PROXY_PASSWORD not in text
        assert "alice:********@proxy.corp.example:3128" in text

        # nothing wider than the viewport: no sideways scrolling at either width
        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        assert scroll_width <= width, f"page is {scroll_width}px wide at a {width}px viewport"
        widest = page.evaluate(
            "Math.max(...Array.from(document.querySelectorAll('body *'),"
            " e => e.getBoundingClientRect().right))"
        )
        assert widest <= width + 0.5, f"an element ends at {widest}px in a {width}px viewport"
    finally:
        page.close()
