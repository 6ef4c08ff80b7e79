"""The console's HTML pages through a TestClient over a real SQLite store in tmp_path: sign-in,
every page, every form's CSRF field, refused input beside its field with nothing stored, the
switch, the password never shown, rollback, tokens, artifacts and a preflight to loopback."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.support.certs import generate_certs

from egress.console import auth
from egress.console.app import create_app
from egress.console.pages import NAV
from egress.console.service import ConsoleService
from egress.console.store import Store
from egress.redact import Secret

ADMIN_PASSWORD = "admin-password-for-page-tests"
PROXY_PASSWORD = "Pr0xy/Pass@word:with#odd?chars"
DOCUMENT: dict[str, Any] = {
    "proxy": {"enabled": False, "url": "http://proxy.corp.example:3128", "username": "alice"},
    "excluded_domains": [".corp.example", "10.0.0.0/8"],
    "deployment": {"kind": "kubernetes"},
}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'egress.db'}")
    s.migrate()
    s.create_user("admin", auth.hash_password(ADMIN_PASSWORD))
    ConsoleService(s, env={}).save(
        DOCUMENT,
        actor="import",
        address="",
        expected=0,
        password=Secret(PROXY_PASSWORD),
        action="import",
    )
    yield s
    s.close()


@pytest.fixture
def anonymous(store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(store, env={}, check_timeout=2.0)) as c:
        yield c


def login(client: TestClient, password: str = ADMIN_PASSWORD) -> Any:
    page = client.get("/login")
    csrf = _csrf(page.text)
    return client.post(
        "/login",
        data={"username": "admin", "password": password, "csrf": csrf, "next": "/"},
        follow_redirects=False,
    )


@pytest.fixture
def client(anonymous: TestClient) -> TestClient:
    assert login(anonymous).status_code == 303
    return anonymous


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def _service(client: TestClient) -> ConsoleService:
    service: ConsoleService = client.app.state.console  # type: ignore[attr-defined]
    return service


class _Forms(HTMLParser):
    """Every form's method and its input names; every element's id and attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, str, list[str]]] = []
        self.ids: dict[str, dict[str, str | None]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids[str(a["id"])] = a
        if tag == "form":
            self.forms.append((str(a.get("method", "get")), str(a.get("action")), []))
        elif tag in ("input", "textarea", "select", "button") and self.forms:
            self.forms[-1][2].append(str(a.get("name")))


def parse(html: str) -> _Forms:
    p = _Forms()
    p.feed(html)
    return p


def _settings_form(client: TestClient, **changes: str) -> dict[str, Any]:
    """The settings form as the browser would send it, unchanged but for ``changes``."""
    html = client.get("/settings").text
    data: dict[str, Any] = {"csrf": _csrf(html)}
    data["expected"] = re.search(r'name="expected" value="(\d+)"', html).group(1)  # type: ignore[union-attr]
    for m in re.finditer(r'<input type="text" id="[^"]+" name="([^"]+)" value="([^"]*)"', html):
        data[m.group(1)] = _unescape(m.group(2))
    for m in re.finditer(r'<textarea id="[^"]+" name="([^"]+)"[^>]*>([^<]*)</textarea>', html):
        data[m.group(1)] = _unescape(m.group(2))
    for m in re.finditer(
        r'<input type="checkbox" name="([^"]+)" value="([^"]+)"[^>]* checked', html
    ):
        data.setdefault(m.group(1), []).append(m.group(2))
    for m in re.finditer(r'<select id="[^"]+" name="([^"]+)"[^>]*>(.*?)</select>', html, re.S):
        sel = re.search(r'<option value="([^"]*)" selected', m.group(2))
        data[m.group(1)] = sel.group(1) if sel else ""
    data.update(changes)
    return data


def _unescape(text: str) -> str:
    import html

    return html.unescape(text)


# -- sign-in -------------------------------------------------------------------------------------


def test_pages_need_a_session(anonymous: TestClient) -> None:
    for href, _, _ in NAV:
        r = anonymous.get(href, follow_redirects=False)
        assert r.status_code == 303, href
        assert r.headers["location"].startswith("/login?next=")


def test_login_wrong_password_then_right(anonymous: TestClient) -> None:
    r = login(anonymous, "wrong")
    assert r.status_code == 401
    assert "The name or the password is wrong." in r.text
    assert 'value="admin"' in r.text  # the name is kept, the password is not
    assert "wrong" not in re.findall(r'name="password"[^>]*', r.text)[0]
    r = login(anonymous)
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert auth.SESSION_COOKIE in r.headers["set-cookie"]
    assert "samesite=strict" in r.headers["set-cookie"].lower()
    page = anonymous.get("/")
    assert page.status_code == 200
    assert 'id="signed-in-user">admin<' in page.text


def test_login_without_its_form_token_is_refused(anonymous: TestClient) -> None:
    r = anonymous.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD})
    assert r.status_code == 403
    assert auth.SESSION_COOKIE not in r.headers.get("set-cookie", "")


def test_next_never_leaves_the_console(anonymous: TestClient) -> None:
    page = anonymous.get("/login?next=//evil.example/x")
    r = anonymous.post(
        "/login",
        data={"username": "admin", "password": ADMIN_PASSWORD, "csrf": _csrf(page.text),
              "next": "//evil.example/x"},
        follow_redirects=False,
    )  # fmt: skip
    assert r.status_code == 303 and r.headers["location"] == "/"


def test_logout_ends_the_session(client: TestClient) -> None:
    csrf = _csrf(client.get("/").text)
    r = client.post("/logout", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert client.get("/", follow_redirects=False).status_code == 303


# -- every page ----------------------------------------------------------------------------------


@pytest.mark.parametrize("href", [n[0] for n in NAV], ids=[n[1] for n in NAV])
def test_every_page_renders_with_nav_csrf_and_no_password(client: TestClient, href: str) -> None:
    r = client.get(href)
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    assert "default-src 'self'" in r.headers["content-security-policy"]
    html = r.text
    assert PROXY_PASSWORD not in html
    assert f'<a href="{href}" aria-current="page">' in html
    assert '<a class="skip" href="#main">' in html and 'id="main"' in html
    assert 'id="switch-state">Proxy switch: off<' in html
    assert "<script>" not in html  # no inline script: the CSP forbids it
    for method, action, names in parse(html).forms:
        if method.lower() == "post":
            assert "csrf" in names, f"{href}: the form to {action} has no CSRF field"


def test_overview_says_what_the_switch_changes(client: TestClient) -> None:
    html = client.get("/").text
    assert "Turn the proxy on" in html
    found = re.search(r"When the switch is on, <strong>(\d+) of (\d+)</strong>", html)
    assert found and 0 < int(found.group(1)) <= int(found.group(2))
    assert "http://alice:********@proxy.corp.example:3128" in html
    assert "No preflight has run yet." in html


# -- the switch ----------------------------------------------------------------------------------


def test_switch_needs_csrf_then_saves_a_version(client: TestClient) -> None:
    r = client.post("/switch", data={"enabled": "true", "expected": "1"}, follow_redirects=False)
    assert r.status_code == 403
    assert _service(client).store.current_number() == 1
    csrf = _csrf(client.get("/").text)
    r = client.post("/switch", data={"enabled": "true", "expected": "1", "csrf": csrf})
    assert r.status_code == 200
    assert "The proxy switch is on (version 2)." in r.text
    assert 'id="switch-state">Proxy switch: on<' in r.text
    v = _service(client).store.current()
    assert v is not None and (v.number, v.action, v.author) == (2, "switch-on", "admin")
    stale = client.post("/switch", data={"enabled": "false", "expected": "1", "csrf": csrf})
    assert stale.status_code == 409
    assert "Someone else saved version 2 first" in stale.text
    assert _service(client).store.current_number() == 2


# -- settings ------------------------------------------------------------------------------------


def test_invalid_value_is_shown_beside_its_field_and_nothing_is_saved(client: TestClient) -> None:
    r = client.post("/settings", data=_settings_form(client, **{"proxy.url": "socks5://p:1080"}))
    assert r.status_code == 422
    page = parse(r.text)
    inp = page.ids["f-proxy-url"]
    assert inp["aria-invalid"] == "true"
    assert "f-proxy-url-error" in str(inp["aria-describedby"]).split()
    assert inp["value"] == "socks5://p:1080"  # what was typed is kept
    error = re.search(r'id="f-proxy-url-error">(.*?)</span>\s*</div>', r.text, re.S)
    assert error and "socks5" in error.group(1)
    assert "Nothing was saved" in r.text
    assert _service(client).store.current_number() == 1
    assert PROXY_PASSWORD not in r.text


def test_markup_in_a_value_is_escaped(client: TestClient) -> None:
    evil = "<script>alert(1)</script>"
    r = client.post("/settings", data=_settings_form(client, **{"proxy.url": evil}))
    assert r.status_code == 422
    assert evil not in r.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text


def test_valid_change_is_saved_and_shown(client: TestClient) -> None:
    form = _settings_form(client, **{"excluded_domains": ".corp.example\n.internal.example"})
    r = client.post("/settings", data=form)
    assert r.status_code == 200 and "Saved as version 2." in r.text
    v = _service(client).store.current()
    assert v is not None and v.document["excluded_domains"] == [
        ".corp.example",
        ".internal.example",
    ]
    assert v.document["proxy"]["url"] == "http://proxy.corp.example:3128"
    assert _service(client).store.password() == Secret(PROXY_PASSWORD)  # kept


def test_password_set_never_shown_and_removed(client: TestClient) -> None:
    new = "n3w-Secret-value"
    r = client.post("/settings", data=_settings_form(client, **{"proxy.password": new}))
    assert r.status_code == 200
    assert new not in r.text and PROXY_PASSWORD not in r.text
    assert _service(client).store.password() == Secret(new)
    pw = parse(r.text).ids["f-proxy-password"]
    assert pw["type"] == "password" and pw["value"] == ""
    history = client.get("/history").text
    assert new not in history and "replaced" in history
    r = client.post("/settings", data=_settings_form(client, **{"proxy.password.remove": "on"}))
    assert r.status_code == 422  # a user name without a password is refused, nothing changes
    assert _service(client).store.password() == Secret(new)
    form = _settings_form(client, **{"proxy.password.remove": "on", "proxy.username": ""})
    assert client.post("/settings", data=form).status_code == 200
    assert _service(client).store.password() is None


def test_stale_form_says_someone_else_saved_first(client: TestClient) -> None:
    form = _settings_form(client, **{"deployment.cluster_domain": "cluster.example"})
    csrf = _csrf(client.get("/").text)
    client.post("/switch", data={"enabled": "true", "expected": "1", "csrf": csrf})
    r = client.post("/settings", data=form)
    assert r.status_code == 409
    assert "Someone else saved version 2 first, so nothing was saved." in r.text
    assert '<a href="/settings">Reload the settings</a>' in r.text
    assert parse(r.text).ids["f-deployment-cluster-domain"]["value"] == "cluster.example"
    assert _service(client).store.current_number() == 2


def test_ca_upload_is_checked(client: TestClient, tmp_path: Path) -> None:
    form = _settings_form(client)
    files = {"proxy.ca_pem.upload": ("ca.der", b"\x30\x82\x01\x0a", "application/octet-stream")}
    r = client.post("/settings", data=form, files=files)
    assert r.status_code == 422
    assert "not PEM text" in r.text
    assert parse(r.text).ids["f-proxy-ca-pem"]["aria-invalid"] == "true"
    big = {"proxy.ca_pem.upload": ("ca.pem", b"a" * (1024 * 1024 + 1), "application/x-pem-file")}
    assert client.post("/settings", data=form, files=big).status_code in (413, 422)
    assert _service(client).store.current_number() == 1

    ca = Path(generate_certs(tmp_path).proxy_ca).read_bytes()
    good = {"proxy.ca_pem.upload": ("ca.pem", ca, "application/x-pem-file")}
    r = client.post("/settings", data=_settings_form(client), files=good)
    assert r.status_code == 200, r.text
    v = _service(client).store.current()
    assert v is not None and v.document["proxy"]["ca_pem"].strip() == ca.decode().strip()
    assert "A CA is stored (1 certificate)" in client.get("/settings").text


# -- routes, artifacts ---------------------------------------------------------------------------


def test_explain_a_url(client: TestClient) -> None:
    r = client.get("/routes", params={"url": "https://db.corp.example/x"})
    assert r.status_code == 200
    ids = parse(r.text).ids
    assert "explanation" in ids
    off = re.search(r'id="explain-route">([^<]+)<', r.text)
    assert off and off.group(1) == "direct"  # the switch is off: everything goes direct
    csrf = _csrf(r.text)
    client.post("/switch", data={"enabled": "true", "expected": "1", "csrf": csrf})
    r = client.get("/routes", params={"url": "https://db.corp.example/x"})
    assert re.search(r'id="explain-rule">excluded:\.corp\.example<', r.text)
    r = client.get("/routes", params={"url": "https://api.example.com/"})
    assert re.search(r'id="explain-route">proxy<', r.text)
    assert "http://alice:********@proxy.corp.example:3128" in r.text
    assert 'id="rules"' in r.text and 'id="catalog"' in r.text
    bad = client.get("/routes", params={"url": "http://[::1"})
    assert bad.status_code == 422 and 'id="explain-error"' in bad.text


def test_artifacts_download_what_the_renderer_renders(client: TestClient) -> None:
    html = client.get("/artifacts").text
    for kind in ("helm", "env", "networkpolicy", "squid", "pac"):
        assert f'href="/artifacts/{kind}"' in html
        r = client.get(f"/artifacts/{kind}")
        assert r.status_code == 200
        assert r.text == _service(client).artifact(kind).text
        assert r.headers["content-disposition"].startswith("attachment; filename=")
        assert PROXY_PASSWORD not in r.text
    assert client.get("/artifacts/nope").status_code == 404


# -- history, audit, tokens ----------------------------------------------------------------------


def test_rollback_makes_a_new_version_with_the_old_settings(client: TestClient) -> None:
    client.post("/settings", data=_settings_form(client, **{"deployment.kind": "single-vm"}))
    html = client.get("/history").text
    assert html.index('id="version-2"') < html.index('id="version-1"')  # newest first
    assert "deployment.kind" in html
    r = client.post("/history/1/rollback", data={"csrf": _csrf(html), "expected": "2"})
    assert r.status_code == 200
    assert "Rolled back: version 3 holds the settings of version 1." in r.text
    service = _service(client)
    v3, v1 = service.store.version(3), service.store.version(1)
    assert v3 is not None and v1 is not None
    assert (v3.action, v3.document) == ("rollback", v1.document)
    audit = client.get("/audit").text
    assert "settings.rollback" in audit and "login" in audit


def test_token_is_shown_once_and_can_be_revoked(client: TestClient) -> None:
    csrf = _csrf(client.get("/tokens").text)
    r = client.post("/tokens", data={"csrf": csrf, "name": "ci-bot", "role": "admin"})
    assert r.status_code == 200
    text = re.search(r'id="token-text">([^<]+)<', r.text)
    assert text and text.group(1).startswith("egress_")
    token = text.group(1)
    listing = client.get("/tokens").text
    assert token not in listing and "ci-bot" in listing
    api = client.get("/api/v1/history", headers={"Authorization": f"Bearer {token}"})
    assert api.status_code == 200
    (row,) = _service(client).store.tokens()
    r = client.post(f"/tokens/{row.id}/revoke", data={"csrf": csrf})
    assert r.status_code == 200 and "The token is revoked." in r.text
    assert _service(client).store.tokens()[0].revoked
    empty = client.post("/tokens", data={"csrf": csrf, "name": " ", "role": "read"})
    assert empty.status_code == 422 and 'id="token-error"' in empty.text


# -- preflight -----------------------------------------------------------------------------------


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self.send_response(204)
        self.end_headers()


@pytest.fixture
def origin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_preflight_runs_streams_and_reports(client: TestClient, origin: str) -> None:
    page = client.get("/preflight").text
    csrf = _csrf(page)
    refused = client.post("/preflight", data={"csrf": csrf, "scope": "urls", "urls": ""})
    assert refused.status_code == 422 and 'id="urls-error"' in refused.text
    r = client.post(
        "/preflight",
        data={"csrf": csrf, "scope": "urls", "urls": f"{origin}/a\n{origin}/b"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    run_id = r.headers["location"].split("run=")[1]
    the_run = client.app.state.console.preflight.get(run_id)  # type: ignore[attr-defined]
    assert the_run.wait(10)
    with client.stream("GET", f"/preflight/events/{run_id}") as events:
        assert events.headers["content-type"].startswith("text/event-stream")
        body = "".join(events.iter_text())
    assert [line for line in body.splitlines() if line.startswith("event:")] == [
        "event: start", "event: result", "event: result", "event: done",
    ]  # fmt: skip
    html = client.get(f"/preflight?run={run_id}").text
    assert 'id="verdict"' in html and "passed" in html
    assert html.count('<span class="badge ok">ok</span>') == 2
    report = client.get(f"/preflight/report/{run_id}")
    assert report.status_code == 200
    assert report.headers["content-security-policy"].startswith("default-src 'none'")
    assert "egress check: report for the proxy team" in report.text
    last = _service(client).store.last_preflight()
    assert last is not None and (last.verdict, len(last.results)) == ("ok", 2)
    assert "passed" in client.get("/").text


# -- errors a browser sees, the preflight shared with the API, the console's own wording ----------


def test_a_stale_form_token_is_a_page_not_json(client: TestClient) -> None:
    sent = client.post(
        "/switch",
        data={"csrf": "stale", "enabled": "true"},
        headers={"Accept": "text/html,application/xhtml+xml"},
    )
    assert sent.status_code == 403
    assert sent.headers["content-type"].startswith("text/html")
    assert "security token is missing or out of date" in sent.text
    assert 'href="/"' in sent.text
    api = client.post("/switch", data={"csrf": "stale", "enabled": "true"})
    assert api.headers["content-type"].startswith("application/json"), "no Accept: JSON stays"


def test_an_unknown_page_is_a_page(client: TestClient) -> None:
    missing = client.get("/no-such-page", headers={"Accept": "text/html"})
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("text/html")
    assert (
        client.get("/api/v1/no-such", headers={"Accept": "text/html"})
        .headers["content-type"]
        .startswith("application/json")
    ), "the API answers JSON whatever the Accept"


def test_the_api_check_and_the_page_share_one_preflight(client: TestClient) -> None:
    service = _service(client)
    gate = threading.Event()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Held)
    server.gate = gate  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/held"
        run, started = service.preflight.start(
            service.settings(), [__import__("egress.check").check.Probe(url)], actor="admin",
            version=1,
        )  # fmt: skip
        assert started
        token = service.create_token("ci", "admin", actor="admin", address="")[1]
        busy = client.post(
            "/api/v1/check", json={"urls": []}, headers={"Authorization": f"Bearer {token}"}
        )
        assert busy.status_code == 409
        assert "already running" in busy.json()["detail"]
    finally:
        gate.set()
        run.wait(10)
        server.shutdown()
        server.server_close()
    assert run.record is not None, "the run's record was stored by the service"
    assert service.store.last_preflight().id == run.record.id  # type: ignore[union-attr]


class _Held(BaseHTTPRequestHandler):
    """A loopback origin that answers once the test lets it (a preflight that is still running)."""

    def do_HEAD(self) -> None:
        self.server.gate.wait(10)  # type: ignore[attr-defined]
        self.send_response(204)
        self.end_headers()

    do_GET = do_HEAD

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_user_name_without_a_password_is_said_beside_the_password(client: TestClient) -> None:
    data = _settings_form(client, **{"proxy.password.remove": "on"})
    sent = client.post("/settings", data=data)
    assert sent.status_code == 422
    password_input = re.search(r'<input type="password"[^>]*>', sent.text)
    assert password_input and 'aria-invalid="true"' in password_input.group(0)
    assert "is missing while a proxy user name is set" in sent.text
    assert "password_file" not in sent.text


def test_the_overview_counts_destinations_in_scope(client: TestClient) -> None:
    from egress.scope import in_scope

    settings = _service(client).settings()
    total = len(in_scope(settings))
    page = client.get("/").text
    found = re.search(r"<strong>(\d+) of (\d+)</strong> destinations in scope", page)
    assert found, "the switch says what it changes"
    assert int(found.group(2)) == total


def test_credentials_in_the_proxy_url_are_refused_with_the_console_s_hint(
    client: TestClient,
) -> None:
    data = _settings_form(client, **{"proxy.url": "http://bob:Sup3rSecret@proxy.corp:3128"})
    sent = client.post("/settings", data=data)
    assert sent.status_code == 422
    assert "Sup3rSecret" not in sent.text
    assert "the proxy password (stored apart)" in sent.text
    assert "password_file" not in sent.text
