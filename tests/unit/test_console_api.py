"""The console's API over a real SQLite store in tmp_path: every route, its bad inputs, its
credentials, ETags, and that the proxy password never comes back anywhere."""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from egress.cli import main as cli_main
from egress.console.app import CSP, MAX_BODY, bootstrap, create_app
from egress.console.auth import SESSION_COOKIE, digest
from egress.console.service import ConsoleService
from egress.console.store import Session, Store

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "egress.yaml"
ADMIN_PASSWORD = "admin-password-for-tests-1"
PROXY_PASSWORD = "Pr0xy/Pass@word:with#odd?chars"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'egress.db'}"


@pytest.fixture
def store(db: str) -> Iterator[Store]:
    s = Store(db)
    bootstrap(s, import_file=str(EXAMPLE), admin_password=ADMIN_PASSWORD)
    yield s
    s.close()


@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(store, env={}, check_timeout=2.0)) as c:
        yield c


def _service(client: TestClient) -> ConsoleService:
    service: ConsoleService = client.app.state.console  # type: ignore[attr-defined]
    return service


def _token(client: TestClient, role: str, name: str | None = None) -> dict[str, str]:
    _, text = _service(client).create_token(name or f"t-{role}", role, actor="test", address="")
    return {"Authorization": f"Bearer {text}"}


@pytest.fixture
def admin(client: TestClient) -> dict[str, str]:
    return _token(client, "admin", "ci-bot")


@pytest.fixture
def reader(client: TestClient) -> dict[str, str]:
    return _token(client, "read", "component")


def _document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    return loaded


def _put(client: TestClient, headers: dict[str, str], body: object, etag: str = '"v1"') -> Any:
    return client.put("/api/v1/settings", json=body, headers={**headers, "If-Match": etag})


# -- GET /settings -------------------------------------------------------------------------------


def test_get_settings_returns_the_document_with_its_etag(
    client: TestClient, reader: dict[str, str]
) -> None:
    r = client.get("/api/v1/settings", headers=reader)
    assert r.status_code == 200
    assert r.headers["etag"] == '"v1"'
    assert r.json() == _document()


@pytest.mark.parametrize(
    ("if_none_match", "status"),
    [('"v1"', 304), ('W/"v1"', 304), ('"v0", "v1"', 304), ("*", 304), ('"v2"', 200)],
    ids=["same", "weak", "list", "star", "stale"],
)
def test_if_none_match(
    client: TestClient, reader: dict[str, str], if_none_match: str, status: int
) -> None:
    r = client.get("/api/v1/settings", headers={**reader, "If-None-Match": if_none_match})
    assert r.status_code == status
    assert r.headers["etag"] == '"v1"'
    if status == 304:
        assert r.content == b""


@pytest.mark.parametrize(
    "authorization",
    ["Bearer egress_unknown", "Bearer x", "Basic YWRtaW46eA==", ""],
    ids=["unknown", "no-prefix", "basic", "empty"],
)
def test_poll_path_without_a_valid_token_is_401_not_304(
    client: TestClient, authorization: str
) -> None:
    headers = {"Authorization": authorization, "If-None-Match": '"v1"'}
    r = client.get("/api/v1/settings", headers=headers)
    assert r.status_code == 401
    assert "etag" not in r.headers


def test_poll_path_sees_a_new_version(
    client: TestClient, reader: dict[str, str], admin: dict[str, str]
) -> None:
    doc = _document()
    doc["proxy"]["verify"] = False
    assert _put(client, admin, doc).status_code == 200
    r = client.get("/api/v1/settings", headers={**reader, "If-None-Match": '"v1"'})
    assert r.status_code == 200
    assert r.headers["etag"] == '"v2"'
    assert r.json()["proxy"]["verify"] is False


# -- credentials ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer egress_not-a-token", "Bearer ", "Basic YWRtaW46eA==", "egress_x"],
    ids=["missing", "unknown", "empty", "basic", "no-scheme"],
)
def test_missing_or_wrong_token_is_401_with_bearer_challenge(
    client: TestClient, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in [
        ("GET", "/api/v1/settings"),
        ("PUT", "/api/v1/settings"),
        ("GET", "/api/v1/history"),
        ("GET", "/api/v1/tokens"),
        ("GET", "/api/v1/audit"),
        ("GET", "/api/v1/artifacts/env"),
    ]:
        r = client.request(method, path, headers=headers)
        assert r.status_code == 401, (method, path)
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert "Bearer" in r.json()["detail"] or "token" in r.json()["detail"]


def test_read_token_on_admin_routes_is_403(client: TestClient, reader: dict[str, str]) -> None:
    calls = [
        ("PUT", "/api/v1/settings", {"If-Match": '"v1"'}, _document()),
        ("POST", "/api/v1/settings/switch", {}, {"enabled": False}),
        ("POST", "/api/v1/history/1/rollback", {}, None),
        ("GET", "/api/v1/tokens", {}, None),
        ("POST", "/api/v1/tokens", {}, {"name": "x", "role": "admin"}),
        ("DELETE", "/api/v1/tokens/1", {}, None),
        ("GET", "/api/v1/audit", {}, None),
        ("POST", "/api/v1/check", {}, {}),
    ]
    for method, path, extra, body in calls:
        r = client.request(method, path, headers={**reader, **extra}, json=body)
        assert r.status_code == 403, (method, path, r.text)
        assert "read-only" in r.json()["detail"]
    assert _service(client).store.current_number() == 1


def test_revoked_token_is_refused_at_once(client: TestClient, admin: dict[str, str]) -> None:
    r = client.post("/api/v1/tokens", headers=admin, json={"name": "component", "role": "read"})
    assert r.status_code == 201
    created = r.json()
    assert created["token"].startswith("egress_")
    assert r.headers["cache-control"] == "no-store"
    theirs = {"Authorization": f"Bearer {created['token']}"}
    assert client.get("/api/v1/settings", headers=theirs).status_code == 200  # now cached
    listed = client.get("/api/v1/tokens", headers=admin).json()
    assert {t["name"] for t in listed} >= {"ci-bot", "component"}
    assert created["token"] not in json.dumps(listed)
    assert digest(created["token"]) not in json.dumps(listed)
    assert client.delete(f"/api/v1/tokens/{created['id']}", headers=admin).status_code == 204
    assert client.get("/api/v1/settings", headers=theirs).status_code == 401
    polled = client.get("/api/v1/settings", headers={**theirs, "If-None-Match": '"v1"'})
    assert polled.status_code == 401
    assert client.delete("/api/v1/tokens/9999", headers=admin).status_code == 404


@pytest.mark.parametrize(
    "body",
    [{"name": "", "role": "read"}, {"name": "x", "role": "root"}, {"name": "a b", "role": "read"}],
    ids=["empty-name", "bad-role", "space"],
)
def test_token_create_refuses_bad_input(
    client: TestClient, admin: dict[str, str], body: dict[str, str]
) -> None:
    r = client.post("/api/v1/tokens", headers=admin, json=body)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] in ("name", "role")


# -- sessions (browser JavaScript) ---------------------------------------------------------------


def _session(client: TestClient, store: Store) -> str:
    from datetime import UTC, datetime, timedelta

    token = "session-token-for-tests"
    now = datetime.now(UTC)
    store.create_session(Session(digest(token), "admin", "csrf-1", now, now + timedelta(hours=1)))
    client.cookies.set(SESSION_COOKIE, token)
    return "csrf-1"


def test_session_reads_but_changes_only_with_its_csrf_header(
    client: TestClient, store: Store
) -> None:
    csrf = _session(client, store)
    assert client.get("/api/v1/settings").status_code == 200
    doc = _document()
    r = client.put("/api/v1/settings", json=doc, headers={"If-Match": '"v1"'})
    assert r.status_code == 403
    assert "X-CSRF-Token" in r.json()["detail"]
    r = client.put("/api/v1/settings", json=doc, headers={"If-Match": '"v1"', "X-CSRF-Token": "x"})
    assert r.status_code == 403
    r = client.post("/api/v1/settings/switch", json={"enabled": False})
    assert r.status_code == 403
    assert store.current_number() == 1
    r = client.put("/api/v1/settings", json=doc, headers={"If-Match": '"v1"', "X-CSRF-Token": csrf})
    assert r.status_code == 200
    assert store.current().author == "admin"  # type: ignore[union-attr]


def test_api_login_then_session_with_csrf(client: TestClient, store: Store) -> None:
    r = client.post("/api/v1/login", json={"username": "admin", "password": "wrong"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = client.post("/api/v1/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    assert r.status_code == 200
    assert "HttpOnly" in r.headers["set-cookie"]
    csrf = r.json()["csrf"]
    made = client.post(
        "/api/v1/tokens", json={"name": "bench", "role": "read"}, headers={"X-CSRF-Token": csrf}
    )
    assert made.status_code == 201
    assert made.json()["created_by"] == "admin"
    assert client.post("/api/v1/logout").status_code == 204
    assert client.get("/api/v1/tokens").status_code == 401
    assert client.get("/healthz").json() == {"status": "ok", "version": 1}


# -- PUT /settings -------------------------------------------------------------------------------


def test_put_requires_if_match(client: TestClient, admin: dict[str, str]) -> None:
    r = client.put("/api/v1/settings", json=_document(), headers=admin)
    assert r.status_code == 428
    assert "If-Match" in r.json()["detail"]
    assert _service(client).store.current_number() == 1


@pytest.mark.parametrize("if_match", ["v1", '"x1"', '"v"', "garbage"])
def test_put_refuses_a_malformed_if_match(
    client: TestClient, admin: dict[str, str], if_match: str
) -> None:
    r = _put(client, admin, _document(), if_match)
    assert r.status_code == 400
    assert _service(client).store.current_number() == 1


def test_put_stale_is_409_with_the_current_etag(client: TestClient, admin: dict[str, str]) -> None:
    doc = _document()
    assert _put(client, admin, doc).status_code == 200
    doc["features"] = ["core"]
    r = _put(client, admin, doc, '"v1"')
    assert r.status_code == 409
    assert r.headers["etag"] == '"v2"'
    assert r.json()["etag"] == '"v2"'
    assert _service(client).store.current_number() == 2


def test_put_saves_and_answers_the_new_etag(client: TestClient, admin: dict[str, str]) -> None:
    doc = _document()
    doc["excluded_domains"] = [".corp.example", ".internal.example"]
    r = _put(client, admin, doc)
    assert r.status_code == 200
    assert r.headers["etag"] == '"v2"'
    assert r.json()["version"] == 2
    assert isinstance(r.json()["warnings"], list)
    version = _service(client).store.current()
    assert version is not None
    assert version.document == doc
    assert version.author == "token:ci-bot"


def _validate_json(tmp_path: Path, doc: object) -> dict[str, Any]:
    path = tmp_path / "doc.yaml"
    path.write_text(yaml.safe_dump(doc))
    out = io.StringIO()
    with redirect_stdout(out):
        cli_main(["validate", "--json", "--config", str(path)])
    result: dict[str, Any] = json.loads(out.getvalue())
    return result


@pytest.mark.parametrize(
    "change",
    [
        {"proxy": {"url": "socks5://p:1080"}},
        {"proxy": {"url": "http://p:3128", "enabled": "yes"}, "warehouses": ["oracle"]},
        {"deployment": {"kind": "mainframe"}, "resolve": {"db.corp": "not-an-ip"}},
        {"excluded_domains": 5, "nonsense": True},
    ],
    ids=["scheme", "types", "choices", "unknown-key"],
)
def test_put_invalid_is_422_exactly_as_validate_json(
    client: TestClient, admin: dict[str, str], tmp_path: Path, change: dict[str, Any]
) -> None:
    doc = {**_document(), **change}
    r = _put(client, admin, doc)
    assert r.status_code == 422
    assert r.json() == _validate_json(tmp_path, doc)
    assert r.json()["errors"]
    assert _service(client).store.current_number() == 1


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"proxy": ', ""),
        (b"[1, 2]", ""),
        (b'"text"', ""),
        (b"\xff\xfe", ""),
        (b'{"proxy": {"password_file": "/etc/shadow"}}', "proxy.password_file"),
        (b'{"proxy": {"ca_file": "/etc/ssl/key.pem"}}', "proxy.ca_file"),
        (b'{"proxy": {"password": "x"}}', "proxy.password"),
        (b'{"password": "plain"}', "password"),
        (b'{"password": {"set": 5}}', "password"),
        (b'{"password": {"set": ""}}', "password"),
        (b'{"password": {"set": "a\\nb"}}', "password"),
        (b'{"password": {"clear": false}}', "password"),
    ],
    ids=[
        "truncated",
        "list",
        "string",
        "not-utf8",
        "password-file",
        "ca-file",
        "password-in-doc",
        "password-plain",
        "password-number",
        "password-empty",
        "password-newline",
        "clear-false",
    ],
)
def test_put_refuses_bad_bodies_clearly(
    client: TestClient, admin: dict[str, str], raw: bytes, field: str
) -> None:
    headers = {**admin, "If-Match": '"v1"', "Content-Type": "application/json"}
    r = client.put("/api/v1/settings", content=raw, headers=headers)
    assert r.status_code == 422
    body = r.json()
    assert body["valid"] is False
    assert body["errors"][0]["field"] == field
    assert body["errors"][0]["message"] and body["errors"][0]["hint"]
    assert _service(client).store.current_number() == 1


def test_oversized_body_is_413(client: TestClient, admin: dict[str, str]) -> None:
    big = json.dumps({"excluded_domains": ["x" * 100] * (MAX_BODY // 100)}).encode()
    headers = {**admin, "If-Match": '"v1"', "Content-Type": "application/json"}
    r = client.put("/api/v1/settings", content=big, headers=headers)
    assert r.status_code == 413
    assert "1024 KiB" in r.json()["detail"]
    assert r.headers["x-frame-options"] == "DENY"

    def chunks() -> Iterator[bytes]:  # no Content-Length: Transfer-Encoding: chunked
        for i in range(0, len(big), 65536):
            yield big[i : i + 65536]

    r = client.put("/api/v1/settings", content=chunks(), headers=headers)
    assert r.status_code == 413
    # a body FastAPI parses itself (a model), chunked too
    r = client.post("/api/v1/settings/switch", content=chunks(), headers=headers)
    assert r.status_code == 413
    assert "1024 KiB" in r.json()["detail"]
    assert _service(client).store.current_number() == 1


# -- the proxy password --------------------------------------------------------------------------


def test_password_is_never_returned_logged_audited_or_diffed(
    client: TestClient,
    admin: dict[str, str],
    reader: dict[str, str],
    store: Store,
    caplog: pytest.LogCaptureFixture,
) -> None:
    doc = _document()
    doc["proxy"]["username"] = "svc-egress"
    r = _put(client, admin, {**doc, "password": {"set": PROXY_PASSWORD}})
    assert r.status_code == 200, r.text
    assert store.password() is not None
    assert store.password().reveal() == PROXY_PASSWORD  # type: ignore[union-attr]
    # the running settings use it
    current = _service(client).current()
    assert current.settings is not None
    assert current.settings.proxy.password is not None
    # stale PUT, invalid PUT, pydantic-refused body: none echoes it
    answers = [
        r,
        _put(client, admin, {**doc, "password": {"set": PROXY_PASSWORD}}, '"v1"'),
        _put(client, admin, {**doc, "warehouses": 1, "password": {"set": PROXY_PASSWORD}}, '"v2"'),
        _put(client, admin, {**doc, "password": {"set": PROXY_PASSWORD, "x": 1}}, '"v2"'),
        client.post("/api/v1/tokens", headers=admin, json={"name": PROXY_PASSWORD, "role": "x"}),
        client.post("/api/v1/settings/switch", headers=admin, json={"enabled": PROXY_PASSWORD}),
        client.get("/api/v1/settings", headers=reader),
        client.get("/api/v1/history", headers=reader),
        client.get("/api/v1/history/2", headers=reader),
        client.get("/api/v1/audit", headers=admin),
        *(client.get(f"/api/v1/artifacts/{k}", headers=reader) for k in ("helm", "env", "pac")),
        client.get("/api/v1/explain", params={"url": "https://auth.carto.com/"}, headers=reader),
    ]
    for answer in answers:
        assert PROXY_PASSWORD not in answer.text
        assert PROXY_PASSWORD not in str(answer.headers)
    assert [a.status_code for a in answers[:6]] == [200, 409, 422, 422, 422, 422]
    diff = client.get("/api/v1/history/2", headers=reader).json()["diff"]
    assert {"path": "proxy password", "before": None, "after": "set"} in diff
    for entry in store.audit_log(1000):
        assert PROXY_PASSWORD not in f"{entry.actor} {entry.action} {entry.detail}"
    assert PROXY_PASSWORD not in caplog.text
    # replaced, then cleared: the diff says so without a value
    r = _put(client, admin, {**doc, "password": {"set": "another-one"}}, '"v2"')
    assert r.status_code == 200
    diff = client.get("/api/v1/history/3", headers=reader).json()["diff"]
    assert diff == [{"path": "proxy password", "before": None, "after": "replaced"}]
    del doc["proxy"]["username"]
    r = _put(client, admin, {**doc, "password": {"clear": True}}, '"v3"')
    assert r.status_code == 200, r.text
    assert store.password() is None


# -- switch, explain, artifacts ------------------------------------------------------------------


def test_switch(client: TestClient, admin: dict[str, str]) -> None:
    r = client.post("/api/v1/settings/switch", headers=admin, json={"enabled": False})
    assert r.status_code == 200
    version = _service(client).store.current()
    assert version is not None
    assert version.document["proxy"]["enabled"] is False
    assert version.action == "switch-off"
    r = client.post(
        "/api/v1/settings/switch", headers={**admin, "If-Match": '"v1"'}, json={"enabled": True}
    )
    assert r.status_code == 409
    for bad in [{"enabled": "no"}, {}, {"enabled": 1}]:
        r = client.post("/api/v1/settings/switch", headers=admin, json=bad)
        assert r.status_code == 422
        assert r.json()["errors"][0]["field"] == "enabled"
    assert _service(client).store.current_number() == 2


def test_explain(client: TestClient, reader: dict[str, str]) -> None:
    r = client.get("/api/v1/explain", params={"url": "https://auth.carto.com/"}, headers=reader)
    assert r.status_code == 200
    assert r.json()["route"] == "proxy"
    assert r.json()["proxy"] == "https://proxy.corp.example:3129"
    r = client.get("/api/v1/explain", params={"url": "https://db.corp.example/"}, headers=reader)
    assert r.json()["route"] == "direct"
    assert r.json()["rule"].startswith("excluded")


@pytest.mark.parametrize(
    "params",
    [{"url": "not a url"}, {"url": "https://"}, {"url": "https://a\r\nb/"}, {}],
    ids=["words", "no-host", "crlf", "missing"],
)
def test_explain_refuses_a_bad_url_clearly(
    client: TestClient, reader: dict[str, str], params: dict[str, str]
) -> None:
    r = client.get("/api/v1/explain", params=params, headers=reader)
    assert r.status_code == 422
    assert "\r\n" not in r.text


@pytest.mark.parametrize(
    ("kind", "media_type", "needle"),
    [
        ("helm", "application/yaml", "proxy.corp.example"),
        ("env", "text/plain", "NO_PROXY"),
        ("squid", "text/plain", "auth.carto.com"),
        ("pac", "application/x-ns-proxy-autoconfig", "FindProxyForURL"),
    ],
)
def test_artifacts(
    client: TestClient, reader: dict[str, str], kind: str, media_type: str, needle: str
) -> None:
    r = client.get(f"/api/v1/artifacts/{kind}", headers=reader)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(media_type)
    assert needle in r.text


def test_unknown_artifact_is_404_naming_the_kinds(
    client: TestClient, reader: dict[str, str]
) -> None:
    r = client.get("/api/v1/artifacts/terraform", headers=reader)
    assert r.status_code == 404
    assert "helm, env, networkpolicy, squid, pac" in r.json()["detail"]


# -- history and rollback ------------------------------------------------------------------------


def test_history_diff_and_rollback(
    client: TestClient, admin: dict[str, str], reader: dict[str, str]
) -> None:
    first = _document()
    changed = _document()
    changed["proxy"]["url"] = "http://other-proxy.corp.example:8080"
    changed["tunnel_tcp_warehouses"] = True
    assert _put(client, admin, changed).status_code == 200
    listed = client.get("/api/v1/history", headers=reader).json()
    assert [(v["number"], v["action"]) for v in listed] == [(2, "save"), (1, "import")]
    one = client.get("/api/v1/history/2", headers=reader).json()
    assert one["document"] == changed
    assert {"path": "proxy.url", "before": '"https://proxy.corp.example:3129"',
            "after": '"http://other-proxy.corp.example:8080"'} in one["diff"]  # fmt: skip
    assert {"path": "tunnel_tcp_warehouses", "before": None, "after": "true"} in one["diff"]
    r = client.post("/api/v1/history/1/rollback", headers=admin)
    assert r.status_code == 200
    assert r.json()["version"] == 3
    three = client.get("/api/v1/history/3", headers=reader).json()
    assert three["document"] == first
    assert three["action"] == "rollback"
    assert three["note"] == "rolled back to version 1"
    assert client.get("/api/v1/history/99", headers=reader).status_code == 404
    assert client.post("/api/v1/history/99/rollback", headers=admin).status_code == 404
    r = client.post("/api/v1/history/2/rollback", headers={**admin, "If-Match": '"v2"'})
    assert r.status_code == 409
    assert client.get("/api/v1/history?limit=0", headers=reader).status_code == 422


# -- audit ---------------------------------------------------------------------------------------


def test_every_mutation_is_audited_with_actor_and_address(
    client: TestClient, admin: dict[str, str]
) -> None:
    doc = _document()
    assert _put(client, admin, doc).status_code == 200
    assert client.post("/api/v1/settings/switch", headers=admin, json={"enabled": False}).is_success
    assert client.post("/api/v1/history/1/rollback", headers=admin).is_success
    created = client.post("/api/v1/tokens", headers=admin, json={"name": "c", "role": "read"})
    assert client.delete(f"/api/v1/tokens/{created.json()['id']}", headers=admin).is_success
    entries = client.get("/api/v1/audit", headers=admin).json()
    actions = [e["action"] for e in entries]
    for action in [
        "settings.save",
        "settings.switch-off",
        "settings.rollback",
        "token.create",
        "token.revoke",
    ]:
        assert action in actions
    mine = [e for e in entries if e["address"] == "testclient"]
    assert len(mine) == 5
    assert all(e["actor"] == "token:ci-bot" for e in mine)


# -- preflight -----------------------------------------------------------------------------------


def test_check_runs_the_preflight_and_stores_it(
    client: TestClient, admin: dict[str, str], store: Store
) -> None:
    doc = _document()
    doc["proxy"]["url"] = f"http://127.0.0.1:{_closed_port()}"  # nobody listens: fails fast
    doc["features"] = ["core"]
    assert _put(client, admin, doc).status_code == 200
    r = client.post("/api/v1/check", headers=admin, json={"urls": ["https://extra.example/"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["verdict"] == "failed"
    assert body["version"] == 2
    keys = {"url", "host", "port", "route", "rule", "status", "detail", "fix", "elapsed_ms"}
    assert all(keys | {"required"} == set(row) for row in body["results"])
    assert any(row["url"] == "https://extra.example/" for row in body["results"])
    record = store.last_preflight()
    assert record is not None
    assert record.verdict == "failed"
    assert record.results == body["results"]
    r = client.post("/api/v1/check", headers=admin, json={"urls": ["https://"]})
    assert r.status_code == 422


# -- the app around the routes -------------------------------------------------------------------


def test_security_headers_on_every_answer(client: TestClient, reader: dict[str, str]) -> None:
    for r in [
        client.get("/api/v1/settings", headers=reader),
        client.get("/api/v1/settings"),
        client.get("/nowhere"),
        client.get("/docs"),
        client.get("/healthz"),
    ]:
        assert r.headers["content-security-policy"].startswith("default-src 'self'")
        if r.url.path != "/docs":
            assert r.headers["content-security-policy"] == CSP.decode()
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["x-content-type-options"] == "nosniff"


def test_openapi_takes_the_settings_schema_from_the_declaration(client: TestClient) -> None:
    from egress.settings.declaration import json_schema

    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/api/v1/settings"]["put"]["requestBody"]["content"]["application/json"]
    schema = body["schema"]
    assert set(json_schema()["properties"]) < set(schema["properties"])
    assert "password" in schema["properties"]
    assert "/api/v1/history/{number}/rollback" in spec["paths"]


def test_two_apps_on_one_sqlite_file_see_each_others_saves(db: str, store: Store) -> None:
    other = Store(db)
    try:
        with (
            TestClient(create_app(store, env={})) as one,
            TestClient(create_app(other, env={})) as two,
        ):
            token = _token(one, "admin")
            doc = _document()
            doc["proxy"]["verify"] = False
            assert _put(one, token, doc).status_code == 200
            r = two.get("/api/v1/settings", headers={**token, "If-None-Match": '"v1"'})
            assert r.status_code == 200
            assert r.headers["etag"] == '"v2"'
            assert _put(two, token, doc, '"v1"').status_code == 409
    finally:
        other.close()
