"""The preflight as one self-contained HTML page for the proxy team (``egress check --report``).

:func:`html_report` is pure: settings and :class:`~egress.check.CheckResult` values in, a page
out. The page loads nothing (inline CSS, no script, no link, no image), so it can be mailed or
attached to a ticket. It has four sections: a summary, what to allow on the proxy (from
:func:`egress.scope.in_scope` and the proxied results), what bypasses the proxy and why (the
router's own rules, :meth:`egress.router.Router.rules`, plus the direct results), and one row
per result. Every value goes through :func:`egress.redact.mask_url`,
:func:`~egress.redact.scrub` (the proxy password) and :func:`~egress.redact.printable` before
``html.escape``; the proxy is shown by its masked display.

>>> from egress.settings import Settings
>>> page = html_report(Settings.from_proxy("http://proxy.corp:3128"), [])
>>> page.startswith("<!DOCTYPE html>"), 'id="allow"' in page, "http://proxy.corp:3128" in page
(True, True, True)
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, TypeAlias

from egress.check import STATUSES, CheckResult, blocks
from egress.check import failed as failures
from egress.redact import mask_url, printable, scrub
from egress.scope import in_scope

if TYPE_CHECKING:
    from egress.router import Rule
    from egress.scope import Row
    from egress.settings import Settings

__all__ = ["html_report"]

TEXT_LIMIT = 2000
"""The longest value the page shows (a huge detail cannot bloat the page)."""

_PROXIED = ("proxy", "tunnel")

_CELL_CLASS = {
    "Host": "wide",
    "Destination": "wide",
    "Rule": "rule",
    "Port": "short",
    "Need": "short",
    "Route": "short",
    "Status": "short",
    "Checked": "short",
    "Time": "short num",
}
"""Column label -> cell class: wide columns keep a minimum width on a desktop, short ones sit
side by side on a phone."""

_NONE = '<span class="muted">\u2014</span>'
"""An empty cell (an ``ok`` result has no fix), so a phone's card shows the label with a dash."""

_Show: TypeAlias = Callable[[object], str]
"""The escaping function each section gets: any value -> safe HTML text."""

_CSS = """
:root { --ok: #1b7f3b; --fail: #b3261e; --warn: #8a5a00; --muted: #5f6368; --line: #d7dbe0; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1240px; padding: 16px; color: #1f2328; background: #fff;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
h1 { font-size: 1.5rem; margin: 0 0 4px; }
h2 { font-size: 1.2rem; margin: 28px 0 8px; padding-bottom: 4px;
  border-bottom: 2px solid var(--line); }
p { margin: 6px 0; }
code, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace;
  font-size: 0.9em; }
.muted { color: var(--muted); }
.wrap, td { overflow-wrap: anywhere; word-break: break-word; }
.verdict { padding: 10px 12px; border-radius: 6px; font-weight: 600; margin: 12px 0;
  border-left: 6px solid; }
.verdict.ok { background: #e7f4ec; border-color: var(--ok); }
.verdict.fail { background: #fbe9e7; border-color: var(--fail); }
.verdict.warn { background: #fff4de; border-color: var(--warn); }
.counts { display: flex; flex-wrap: wrap; gap: 6px; padding: 0; margin: 8px 0; list-style: none; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-weight: 600;
  font-size: 0.85rem; white-space: nowrap; border: 1px solid; }
.badge.ok { color: var(--ok); background: #e7f4ec; }
.badge.fail { color: var(--fail); background: #fbe9e7; }
.badge.warn { color: var(--warn); background: #fff4de; }
.badge.req { color: #1f2328; background: #eef1f4; }
.badge.opt { color: var(--muted); background: #fff; }
table { width: 100%; border-collapse: collapse; margin: 8px 0; }
th, td { text-align: left; vertical-align: top; padding: 6px 8px;
  border-bottom: 1px solid var(--line); }
th { background: #f4f6f8; font-size: 0.85rem; }
td.num { text-align: right; white-space: nowrap; }
td.wide { min-width: 13rem; }
td.rule { min-width: 10rem; }
tr.fail td:first-child { box-shadow: inset 4px 0 var(--fail); }
tr.warn td:first-child { box-shadow: inset 4px 0 var(--warn); }
ul.failures { padding-left: 20px; }
@media (max-width: 760px) {
  body { padding: 10px; font-size: 14px; }
  table, thead, tbody, tr, th, td { display: block; }
  thead { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
  tr { border: 1px solid var(--line); border-radius: 6px; margin: 0 0 10px; padding: 4px 0; }
  td { border: 0; padding: 3px 10px; }
  td::before { content: attr(data-label); display: block; font-size: 0.75rem;
    color: var(--muted); font-weight: 600; }
  td.num { text-align: left; }
  td.wide, td.rule { min-width: 0; }
  td.short { display: inline-block; vertical-align: top; }
  td.short::before { display: inline; margin-right: 6px; }
  tr.fail, tr.warn { border-left: 6px solid; }
  tr.fail { border-left-color: var(--fail); }
  tr.warn { border-left-color: var(--warn); }
  tr.fail td:first-child, tr.warn td:first-child { box-shadow: none; }
}
"""


def html_report(
    settings: Settings,
    results: Sequence[CheckResult],
    *,
    features: tuple[str, ...] | None = None,
) -> str:
    """The whole page for these settings and results (``features``: as ``check --features``)."""
    secrets = [settings.proxy.password.reveal()] if settings.proxy.password else []

    def t(value: object) -> str:
        return _text(value, secrets)

    rows = in_scope(settings, features)
    ordered = sorted(results, key=_severity_order)
    body = [
        _summary(settings, ordered, t),
        _allow(rows, ordered, t),
        _bypass(settings.router().rules(), ordered, t),
        _results(ordered, t),
    ]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<title>egress check: report for the proxy team</title>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n"
        "<header><h1>egress check: report for the proxy team</h1>\n"
        f'<p class="muted">Settings from {t(settings.source)}.</p></header>\n'
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


# -- sections ------------------------------------------------------------------------------------


def _summary(settings: Settings, results: Sequence[CheckResult], t: _Show) -> str:
    proxy = settings.proxy
    shown = [proxy.display(p) for p in (proxy.https_proxy, proxy.http_proxy) if p is not None]
    if not proxy.configured:
        proxy_line = "none configured: every destination goes direct"
    else:
        https_p, http_p = proxy.display(proxy.https_proxy), proxy.display(proxy.http_proxy)
        if https_p == http_p or len(shown) == 1:
            proxy_line = f"<code>{t(shown[0])}</code>"
        else:
            proxy_line = f"https: <code>{t(https_p)}</code>, http: <code>{t(http_p)}</code>"
        if not proxy.enabled:
            proxy_line += " (switched off: every destination goes direct)"
    required_failed, optional_failed = failures(results)  # the same rule as the exit code
    if not results:
        verdict = ("warn", "No destination was checked.")
    elif required_failed:
        n = len(required_failed)
        verdict = ("fail", f"FAILED: {n} required destination{_s(n)} failed.")
    elif optional_failed:
        n = len(optional_failed)
        verdict = ("warn", f"PASSED with {n} warning{_s(n)} (see below).")
    else:
        verdict = ("ok", f"PASSED: all {len(results)} destinations are reachable.")
    counts = Counter(r.status for r in results)
    badges = "".join(
        f'<li><span class="badge {"ok" if s == "ok" else "fail"}">{t(s)}: {counts[s]}</span></li>'
        for s in STATUSES
        if counts[s]
    )
    parts = [
        '<section id="summary"><h2>Summary</h2>',
        f"<p><strong>Proxy:</strong> {proxy_line}</p>",
        f'<p class="verdict {verdict[0]}" role="status">{t(verdict[1])}</p>',
        f"<p>{len(results)} destination{_s(len(results))} checked; by status:</p>",
        f'<ul class="counts">{badges}</ul>' if badges else "",
    ]
    for label, failed in (("Required failures", required_failed), ("Warnings", optional_failed)):
        if failed:
            items = "".join(
                f"<li><code>{t(r.host)}:{r.port}</code> "
                f'<span class="badge {_result_class(r)}">{t(r.status)}</span>'
                f" {t(r.fix)}</li>"
                for r in failed
            )
            parts.append(f'<h3>{label}</h3><ul class="failures">{items}</ul>')
    parts.append("</section>")
    return "\n".join(p for p in parts if p)


def _allow(rows: Sequence[Row], results: Sequence[CheckResult], t: _Show) -> str:
    allowed = [r for r in rows if r.route in _PROXIED]
    extra: dict[tuple[str, int], CheckResult] = {}
    for res in results:
        if res.route in _PROXIED and not any(_covers(row, res) for row in rows):
            extra.setdefault((res.host, res.port), res)
    lines = [
        _tr(
            [
                ("Host", f"<code>{t(r.host)}</code>"),
                ("Port", str(r.port)),
                ("Purpose", t(r.purpose) + (f' <span class="muted">({t(r.feature)})</span>')),
                ("Need", _need(r.required)),
                ("Route", t(r.route)),
                ("Checked", _checked([res for res in results if _covers(r, res)])),
            ]
        )
        for r in allowed
    ]
    lines += [
        _tr(
            [
                ("Host", f"<code>{t(r.host)}</code>"),
                ("Port", str(r.port)),
                ("Purpose", t(r.purpose or "checked, not in the catalog") + _feature(r, t)),
                ("Need", _need(r.required)),
                ("Route", t(r.route)),
                ("Checked", _checked([r])),
            ]
        )
        for r in extra.values()
    ]
    intro = (
        "<p>Allow these destinations on the proxy (CONNECT for port 443 and tunnelled TCP). "
        "A host starting with <code>*.</code> is a wildcard: allow the domain and its "
        "subdomains, or the accounts you use.</p>"
    )
    return (
        '<section id="allow"><h2>What to allow on the proxy</h2>\n'
        + intro
        + _table(
            ("Host", "Port", "Purpose", "Need", "Route", "Checked"),
            lines,
            "Nothing goes via the proxy.",
        )
        + "</section>"
    )


def _bypass(rules: Iterable[Rule], results: Sequence[CheckResult], t: _Show) -> str:
    direct_rules = [r for r in rules if "direct" in (r.route, r.plain_route)]
    rule_lines = []
    for rule in direct_rules:
        covers = ", ".join(rule.entries) or "every destination"
        route = (
            rule.route
            if rule.route == rule.plain_route
            else (f"https: {rule.route}, http: {rule.plain_route}")
        )
        why = t(rule.sentence) + (
            f'<br><span class="muted">{t(rule.note)}</span>' if rule.note else ""
        )
        rule_lines.append(
            _tr(
                [
                    ("Rule", f"<code>{t(rule.rule)}</code>"),
                    ("Covers", f'<span class="mono">{t(covers)}</span>'),
                    ("Route", t(route)),
                    ("Why", why),
                    ("Source", t(rule.source)),
                ]
            )
        )
    direct = [r for r in results if r.route not in _PROXIED]
    result_lines = [
        _tr(
            [
                ("Destination", f"<code>{t(r.host)}:{r.port}</code>"),
                ("Rule", f"<code>{t(r.rule)}</code>"),
                ("Why", t(r.reason)),
                ("Status", _badge(r)),
            ],
            _row_class(r),
        )
        for r in direct
    ]
    return (
        '<section id="bypass"><h2>What bypasses the proxy, and why</h2>\n'
        "<p>The router's rules that send traffic direct (first match wins). This traffic never "
        "reaches the proxy; the network (firewall, NetworkPolicy) must let it out.</p>\n"
        + _table(("Rule", "Covers", "Route", "Why", "Source"), rule_lines, "No rule goes direct.")
        + "<h3>Destinations checked direct</h3>\n"
        + _table(
            ("Destination", "Rule", "Why", "Status"),
            result_lines,
            "No destination was checked on a direct route.",
        )
        + "</section>"
    )


def _results(results: Sequence[CheckResult], t: _Show) -> str:
    lines = [
        _tr(
            [
                (
                    "Destination",
                    f'<code>{t(r.host)}:{r.port}</code><br><span class="mono muted">{t(r.url)}'
                    f"</span><br>{_need(r.required)}",
                ),
                ("Route", t(r.route)),
                ("Rule", f"<code>{t(r.rule)}</code>"),
                ("Status", _badge(r)),
                ("Detail", t(r.detail) or _NONE),
                ("Fix", t(r.fix) or _NONE),
                ("Time", f"{r.elapsed_ms:,.0f} ms"),
            ],
            _row_class(r),
        )
        for r in results
    ]
    return (
        '<section id="results"><h2>Results</h2>\n'
        "<p>One row per destination, required failures first.</p>\n"
        + _table(
            ("Destination", "Route", "Rule", "Status", "Detail", "Fix", "Time"),
            lines,
            "No destination was checked.",
        )
        + "</section>"
    )


# -- pieces --------------------------------------------------------------------------------------


def _text(value: object, secrets: Sequence[str]) -> str:
    """``value`` as safe HTML text: URL password masked, proxy password scrubbed, controls
    escaped, length bounded, then HTML-escaped (quotes too)."""
    text = str(value)[: TEXT_LIMIT * 4]
    text = printable(scrub(mask_url(text), secrets))
    if len(text) > TEXT_LIMIT:
        text = text[: TEXT_LIMIT - 3] + "..."
    return html.escape(text, quote=True)


def _covers(row: Row, res: CheckResult) -> bool:
    """True when the catalog row lists the result's host and port (wildcards included)."""
    if row.port != res.port:
        return False
    host = res.host.lower().rstrip(".")
    if row.host == "*":
        return True
    if row.host.startswith("*."):
        return host.endswith(row.host[1:])
    return host == row.host


def _severity_order(r: CheckResult) -> tuple[int, str, int]:
    rank = 0 if blocks(r) else 1 if r.status != "ok" else 2
    return (rank, r.host, r.port)


def _result_class(r: CheckResult) -> str:
    """ok, fail (fails the run, :func:`egress.check.blocks`) or warn."""
    if r.status == "ok":
        return "ok"
    return "fail" if blocks(r) else "warn"


def _row_class(r: CheckResult) -> str:
    return "" if r.status == "ok" else _result_class(r)


def _badge(r: CheckResult) -> str:
    mark = "\u2713" if r.status == "ok" else "\u2717" if blocks(r) else "!"
    return f'<span class="badge {_result_class(r)}">{mark} {_text(r.status, ())}</span>'


def _checked(results: Sequence[CheckResult]) -> str:
    """The statuses of the results for one allow-list row, or that none was checked."""
    if not results:
        return '<span class="muted">not checked</span>'
    return " ".join(_badge(r) for r in results)


def _need(required: bool) -> str:
    if required:
        return '<span class="badge req">required</span>'
    return '<span class="badge opt">optional</span>'


def _feature(r: CheckResult, t: _Show) -> str:
    return f' <span class="muted">({t(r.feature)})</span>' if r.feature else ""


def _tr(cells: Sequence[tuple[str, str]], cls: str = "") -> str:
    """A row; each cell carries its column's label, which the narrow layout shows above it."""
    out = []
    for label, content in cells:
        klass = _CELL_CLASS.get(label, "")
        klass = f' class="{klass}"' if klass else ""
        out.append(f'<td data-label="{html.escape(label)}"{klass}>{content}</td>')
    row_class = f' class="{cls}"' if cls else ""
    return f"<tr{row_class}>" + "".join(out) + "</tr>"


def _table(headers: Sequence[str], lines: Sequence[str], empty: str) -> str:
    if not lines:
        return f'<p class="muted">{html.escape(empty)}</p>\n'
    head = "".join(f'<th scope="col">{html.escape(h)}</th>' for h in headers)
    return (
        f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n"
        + "\n".join(lines)
        + "\n</tbody>\n</table>\n"
    )


def _s(n: int) -> str:
    return "" if n == 1 else "s"
