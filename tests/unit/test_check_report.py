"""The proxy team's report (``egress check --report``), built from hand-made results.

The results are data (what the probe would return), routed by the settings' own router; the
page is parsed with the standard library's HTML parser, not matched by eye.
"""

from __future__ import annotations

import dataclasses
import html
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import pytest
from tests.support.report_sample import PROXY_PASSWORD, result, sample_results, sample_settings

from egress.check import STATUSES, CheckResult
from egress.check_report import TEXT_LIMIT, html_report
from egress.settings import Settings

SECTIONS = ("summary", "allow", "bypass", "results")


class _Page(HTMLParser):
    """Every tag and attribute of a page, and its text, as the parser reads them."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str]] = []
        self.text: list[str] = []
        self.style = ""
        self._in_style = False
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += [(k, v or "") for k, v in attrs]
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.style += data
        else:
            self.text.append(data)


def section(page: str, name: str) -> str:
    """The HTML of one section of the page."""
    start = page.index(f'<section id="{name}">')
    return page[start : page.index("</section>", start)]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return sample_settings(tmp_path)


def hostile(settings: Settings) -> list[CheckResult]:
    """Results whose every text field holds markup, quotes, control characters or a password."""
    evil = "<script>alert(1)</script>\" onmouseover='x' \x1b[31m\r\nforged: line"
    base = result(settings, "https://evil.example/", "proxy-denied")
    return [
        dataclasses.replace(
            base,
            url="https://bob:TopSecret99@evil.example/<script>?q=\"'",
            host="evil.example<script>",
            rule=evil,
            reason=evil,
            detail=f"CONNECT to https://bob:TopSecret99@evil.example/ failed {evil}; "
            f"the proxy said {PROXY_PASSWORD} and {quote(PROXY_PASSWORD, safe='')}",
            fix=evil,
            purpose=evil,
            feature=evil,
        ),
        dataclasses.replace(base, route="direct", host="direct<b>bold</b>", reason=evil),
        dataclasses.replace(base, status="ok", detail="x" * (TEXT_LIMIT * 10)),
    ]


def test_every_section_is_present(settings: Settings) -> None:
    page = html_report(settings, sample_results(settings))
    parsed = _Page(page)
    assert page.startswith("<!DOCTYPE html>")
    for name in SECTIONS:
        assert f'<section id="{name}">' in page
    assert parsed.tags.count("h2") == len(SECTIONS)
    assert ("name", "viewport") in parsed.attrs  # readable on a phone


def test_summary_names_the_proxy_masked_counts_statuses_and_lists_required_failures_first(
    settings: Settings,
) -> None:
    results = sample_results(settings)
    summary = section(html_report(settings, results), "summary")
    assert "http://alice:********@proxy.corp.example:3128" in summary
    for status in STATUSES:
        n = sum(r.status == status for r in results)
        assert (f"{status}: {n}<" in summary) == (n > 0), status
    required = [r for r in results if r.required and r.status != "ok"]
    assert f"FAILED: {len(required)} required destinations failed." in summary
    warnings_at = summary.index("<h3>Warnings</h3>")
    for r in required:
        assert 0 < summary.index(f"<code>{r.host}:{r.port}</code>") < warnings_at
    assert summary.index("api.tomtom.com:443") > warnings_at  # optional: a warning


@pytest.mark.parametrize(
    ("statuses", "verdict"),
    [
        (("ok", "ok"), "PASSED: all 2 destinations are reachable."),
        (("ok", "timeout"), "PASSED with 1 warning (see below)."),
        ((), "No destination was checked."),
    ],
    ids=["all-ok", "optional-failure", "nothing-checked"],
)
def test_verdict(settings: Settings, statuses: tuple[str, ...], verdict: str) -> None:
    results = [
        result(
            settings, f"https://h{i}.example/", "ok" if s == "ok" else "timeout", required=s == "ok"
        )
        for i, s in enumerate(statuses)
    ]
    assert verdict in section(html_report(settings, results), "summary")


def test_allow_lists_the_proxied_catalog_rows_and_proxied_results_not_in_the_catalog(
    settings: Settings,
) -> None:
    from egress.scope import in_scope

    allow = section(html_report(settings, sample_results(settings)), "allow")
    rows = in_scope(settings)
    proxied = [r for r in rows if r.route in ("proxy", "tunnel")]
    assert proxied and len(proxied) < len(rows)  # the settings send some catalog rows direct
    for row in rows:
        assert (f"<code>{row.host}</code>" in allow) == (row in proxied), row.destination
    assert "<code>reports.example.net</code>" in allow  # checked, not in the catalog
    assert "checked, not in the catalog" in allow
    assert "db.corp.example" not in allow  # direct: nothing for the proxy team to allow
    # a denied destination says so beside its row
    row = next(line for line in allow.splitlines() if "<code>registry-1.docker.io</code>" in line)
    assert "proxy-denied" in row and "required" in row


def test_bypass_shows_the_routers_direct_rules_and_the_direct_results(settings: Settings) -> None:
    bypass = section(html_report(settings, sample_results(settings)), "bypass")
    rules = settings.router().rules()
    direct = [r for r in rules if "direct" in (r.route, r.plain_route)]
    assert direct and len(direct) < len(rules)
    for rule in rules:
        assert (f"<code>{rule.rule}</code>" in bypass) == (rule in direct), rule.rule
    for rule in direct:
        assert html.escape(rule.sentence) in bypass
    assert "db.corp.example:5432" in bypass and "connect-refused" in bypass
    assert "auth.carto.com" not in bypass  # proxied


def test_bypass_when_the_proxy_is_switched_off(settings: Settings) -> None:
    off = settings.with_enabled(False)
    page = html_report(off, [result(off, "https://auth.carto.com/", "ok")])
    assert "switched off" in section(page, "summary")
    bypass = section(page, "bypass")
    assert "<code>proxy-disabled</code>" in bypass
    assert "auth.carto.com" in bypass  # checked direct, so listed here
    assert "Nothing goes via the proxy." in section(page, "allow")


def test_results_have_one_row_each_with_status_as_text_and_required_failures_first(
    settings: Settings,
) -> None:
    results = sample_results(settings)
    table = section(html_report(settings, results), "results")
    assert table.count("<tr") - 1 == len(results)  # one header row
    hosts = re.findall(r"<code>([^<]+)</code><br>", table)
    assert len(hosts) == len(results)
    order = [next(r for r in results if f"{r.host}:{r.port}" == h) for h in hosts]
    ranks = [0 if r.required and r.status != "ok" else 1 if r.status != "ok" else 2 for r in order]
    assert ranks == sorted(ranks) and ranks[0] == 0
    for r in results:  # status as words, not only a colour
        assert f"{r.status}</span>" in table
        assert html.escape(r.fix) in table
    assert "5,001 ms" in table


def test_hostile_values_are_escaped_and_passwords_masked(settings: Settings) -> None:
    page = html_report(settings, sample_results(settings) + hostile(settings))
    parsed = _Page(page)
    text = "".join(parsed.text)
    # markup in a value stays text: no script element, no injected attribute or element
    assert "script" not in parsed.tags
    assert "b" not in parsed.tags
    assert not [k for k, _ in parsed.attrs if k.startswith("on")]
    assert "<script>alert(1)</script>" in text
    assert "&lt;script&gt;" in page and "<script" not in page
    assert "&quot; onmouseover=&#x27;x&#x27;" in page
    # control characters are shown escaped, never raw (a value cannot forge a line)
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f]", page)
    assert "\\x1b[31m\\r\\nforged" in text
    # passwords: a URL's is masked, the proxy's never appears in any form
    assert "TopSecret99" not in page
    assert "https://bob:********@evil.example/" in text
    for form in (PROXY_PASSWORD, quote(PROXY_PASSWORD, safe=""), "Hunter2"):
        assert form not in page
    # a huge value is cut
    assert "x" * (TEXT_LIMIT + 1) not in page and "x" * (TEXT_LIMIT - 3) + "..." in page


def test_no_external_asset(settings: Settings) -> None:
    page = html_report(settings, sample_results(settings) + hostile(settings))
    parsed = _Page(page)
    assert not set(parsed.tags) & {"script", "link", "img", "iframe", "object", "embed", "base"}
    loading = {"src", "href", "srcset", "action", "poster", "data"}
    assert [(k, v) for k, v in parsed.attrs if k in loading] == []
    assert "@import" not in parsed.style and "url(" not in parsed.style
    assert not re.search(r"(src|href)\s*=", page, re.IGNORECASE)
