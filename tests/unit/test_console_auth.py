"""Console sign-in: argon2 passwords, login rate limits per account and per address, session
cookies, CSRF on forms, the redirect to /login, and the first run (bootstrap)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Form, Request, Response
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from egress.console import auth
from egress.console.app import bootstrap, create_app
from egress.console.auth import (
    SESSION_COOKIE,
    LoginRefused,
    RateLimited,
    csrf_token,
    current_user,
    hash_password,
    require_csrf,
    verify_password,
)
from egress.console.store import Store
from egress.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "egress.yaml"
ADMIN_PASSWORD = "admin-password-for-tests-1"

# A stand-in for the pages' login form and a page behind it, built on the auth functions.
pages = APIRouter()


@pages.post("/t/login")
def _login(
    request: Request, name: Annotated[str, Form()], password: Annotated[str, Form()]
) -> Response:
    try:
        session = auth.login(request, name, password)
    except RateLimited as exc:
        return JSONResponse(
            {"detail": str(exc)}, 429, headers={"Retry-After": str(exc.retry_after)}
        )
    except LoginRefused as exc:
        return JSONResponse({"detail": str(exc)}, 401)
    response = JSONResponse({"csrf": session.csrf})
    assert isinstance(session, auth.NewSession)
    auth.set_session_cookie(response, session.token, secure=auth.secure_request(request))
    return response


@pages.get("/t/page")
async def _page(request: Request, user: Annotated[str, Depends(current_user)]) -> dict[str, str]:
    return {"user": user, "csrf": csrf_token(request)}


@pages.post("/t/form", dependencies=[Depends(require_csrf)])
async def _form(user: Annotated[str, Depends(current_user)]) -> dict[str, str]:
    return {"done": user}


@pages.post("/t/logout")
def _logout(request: Request) -> Response:
    response = JSONResponse({"bye": True})
    auth.logout(request, response)
    return response


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'egress.db'}")
    bootstrap(s, import_file=str(EXAMPLE), admin_password=ADMIN_PASSWORD)
    yield s
    s.close()


def _app(store: Store, *, secure_cookies: bool = False) -> FastAPI:
    app = create_app(store, env={}, secure_cookies=secure_cookies)
    app.include_router(pages)
    return app


@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    with TestClient(_app(store)) as c:
        yield c


def _login_as(
    client: TestClient, name: str = "admin", password: str = ADMIN_PASSWORD
) -> httpx.Response:
    return client.post("/t/login", data={"name": name, "password": password})


def test_passwords_are_argon2_hashes() -> None:
    hashed = hash_password("s3cret!")
    assert hashed.startswith("$argon2id$")
    assert "s3cret!" not in hashed
    assert verify_password(hashed, "s3cret!")
    assert not verify_password(hashed, "s3cret")
    assert not verify_password("not a hash", "s3cret!")


def test_login_sets_a_strict_httponly_cookie_and_stores_only_its_hash(
    client: TestClient, store: Store
) -> None:
    r = client.post("/t/login", data={"name": "admin", "password": ADMIN_PASSWORD})
    assert r.status_code == 200
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "samesite=strict" in cookie.lower()
    assert "Secure" not in cookie
    token = client.cookies[SESSION_COOKIE]
    assert store.session(token) is None
    session = store.session(auth.digest(token))
    assert session is not None
    assert session.user == "admin"
    assert session.csrf == r.json()["csrf"]
    assert "login" in [e.action for e in store.audit_log()]


def test_a_password_typed_as_the_name_is_not_recorded(client: TestClient, store: Store) -> None:
    assert _login_as(client, name=ADMIN_PASSWORD, password="x").status_code == 401
    assert all(ADMIN_PASSWORD not in f"{e.actor} {e.detail}" for e in store.audit_log())


def test_cookie_is_secure_when_asked(store: Store) -> None:
    with TestClient(_app(store, secure_cookies=True)) as c:
        assert "Secure" in _login_as(c).headers["set-cookie"]
    with TestClient(_app(store), base_url="https://console.test") as c:
        assert "Secure" in _login_as(c).headers["set-cookie"]


def test_a_page_without_a_session_redirects_to_login(client: TestClient) -> None:
    r = client.get("/t/page?x=1", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=/t/page%3Fx%3D1"
    client.cookies.set(SESSION_COOKIE, "forged")
    assert client.get("/t/page", follow_redirects=False).status_code == 303


def test_forms_need_the_sessions_csrf_field(client: TestClient) -> None:
    csrf = _login_as(client).json()["csrf"]
    page = client.get("/t/page").json()
    assert page == {"user": "admin", "csrf": csrf}
    assert client.post("/t/form", data={}).status_code == 403
    assert client.post("/t/form", data={"csrf": "guess"}).status_code == 403
    r = client.post("/t/form", data={"csrf": csrf})
    assert r.status_code == 200
    assert r.json() == {"done": "admin"}


def test_logout_ends_the_session(client: TestClient, store: Store) -> None:
    _login_as(client)
    token = client.cookies[SESSION_COOKIE]
    assert client.post("/t/logout").status_code == 200
    assert store.session(auth.digest(token)) is None
    client.cookies.set(SESSION_COOKIE, token)
    assert client.get("/t/page", follow_redirects=False).status_code == 303
    assert "logout" in [e.action for e in store.audit_log()]


def test_wrong_password_and_unknown_user_read_the_same(client: TestClient, store: Store) -> None:
    a = client.post("/t/login", data={"name": "admin", "password": "wrong"})
    b = client.post("/t/login", data={"name": "nobody", "password": ADMIN_PASSWORD})
    assert a.status_code == b.status_code == 401
    assert a.json() == b.json()
    assert "set-cookie" not in a.headers
    failed = [e for e in store.audit_log() if e.action == "login.failed"]
    assert {e.actor for e in failed} == {"admin", "(unknown user)"}
    assert all(e.address == "testclient" for e in failed)
    assert all(ADMIN_PASSWORD not in e.detail and "wrong" not in e.actor for e in failed)


def test_login_is_rate_limited_per_account(client: TestClient) -> None:
    limit = auth.ACCOUNT_LIMIT[0]
    for _ in range(limit):
        assert _login_as(client, password="wrong").status_code == 401
    r = _login_as(client)  # the right password, but the account waits now
    assert r.status_code == 429
    wait = int(r.headers["retry-after"])
    assert 0 < wait <= auth.ACCOUNT_LIMIT[1]
    assert f"{wait} seconds" in r.json()["detail"]
    # another account from the same address is not locked by this one
    assert _login_as(client, name="someone", password="x").status_code == 401


def test_login_is_rate_limited_per_address(client: TestClient) -> None:
    limit = auth.ADDRESS_LIMIT[0]
    for i in range(limit):
        r = _login_as(client, name=f"user{i}", password="wrong")
        assert r.status_code == 401
    r = _login_as(client)
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) > 0


def test_a_good_login_resets_the_accounts_count(client: TestClient) -> None:
    for _ in range(auth.ACCOUNT_LIMIT[0] - 1):
        _login_as(client, password="wrong")
    assert _login_as(client).status_code == 200
    for _ in range(auth.ACCOUNT_LIMIT[0] - 1):
        _login_as(client, password="wrong")
    assert _login_as(client).status_code == 200


# -- the first run -------------------------------------------------------------------------------


def test_bootstrap_first_run_generates_a_password_and_imports(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'first.db'}")
    try:
        generated = bootstrap(store, import_file=str(EXAMPLE), admin_password=None)
        assert generated is not None and len(generated) >= 16
        user = store.user("admin")
        assert user is not None
        assert verify_password(user.password_hash, generated)
        version = store.current()
        assert version is not None
        assert (version.number, version.action, version.author) == (1, "import", "import")
        assert bootstrap(store, import_file=str(EXAMPLE), admin_password=None) is None
        assert store.current_number() == 1
        assert store.user_count() == 1
        assert all(generated not in f"{e.actor} {e.detail}" for e in store.audit_log())
    finally:
        store.close()


def test_bootstrap_takes_the_given_password_and_the_files_proxy_password(tmp_path: Path) -> None:
    secret = tmp_path / "proxy-password"
    secret.write_text("file-proxy-secret\n")
    config = tmp_path / "egress.yaml"
    config.write_text(
        "proxy:\n  url: http://proxy.corp.example:3128\n  username: svc\n"
        f"  password_file: {secret}\n"
    )
    store = Store(f"sqlite:///{tmp_path / 'given.db'}")
    try:
        assert bootstrap(store, import_file=str(config), admin_password="given-pw") == "given-pw"
        user = store.user("admin")
        assert user is not None and verify_password(user.password_hash, "given-pw")
        version = store.current()
        assert version is not None
        assert "password_file" not in version.document["proxy"]
        password = store.password()
        assert password is not None and password.reveal() == "file-proxy-secret"
    finally:
        store.close()


def test_bootstrap_refuses_a_bad_file_and_stores_nothing(tmp_path: Path) -> None:
    config = tmp_path / "egress.yaml"
    config.write_text("proxy: {url: socks5://p:1080}\n")
    store = Store(f"sqlite:///{tmp_path / 'bad.db'}")
    try:
        with pytest.raises(ConfigError, match="socks5"):
            bootstrap(store, import_file=str(config), admin_password="x")
        assert store.current_number() == 0
    finally:
        store.close()


# -- limits and caches ---------------------------------------------------------------------------


def test_rate_limiter_forgets_old_failures_and_bounds_its_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from egress.console import ratelimit

    now = [0.0]
    limiter = ratelimit.RateLimiter(3, 10.0, clock=lambda: now[0])
    for _ in range(3):
        limiter.failed("a")
    assert limiter.retry_after("a") == 10
    now[0] = 5.5
    assert limiter.retry_after("a") == 5
    now[0] = 10.0
    assert limiter.retry_after("a") == 0
    monkeypatch.setattr(ratelimit, "MAX_KEYS", 100)
    for i in range(1000):
        limiter.failed(f"addr-{i}")
    assert len(limiter._failures) <= 100


def test_a_revoke_by_another_process_is_seen_within_the_cache_time(
    client: TestClient, store: Store
) -> None:
    now = [1000.0]
    service = client.app.state.console  # type: ignore[attr-defined]
    service.tokens = auth.TokenCache(clock=lambda: now[0])
    _, text = service.create_token("component", "read", actor="test", address="")
    headers = {"Authorization": f"Bearer {text}"}
    assert client.get("/api/v1/settings", headers=headers).status_code == 200
    token = store.token_by_hash(auth.digest(text))
    assert token is not None
    store.revoke_token(token.id)  # as another console process would: this cache is not told
    assert client.get("/api/v1/settings", headers=headers).status_code == 200
    now[0] += auth.TOKEN_CACHE_SECONDS + 0.1
    assert client.get("/api/v1/settings", headers=headers).status_code == 401


def test_polls_write_nothing(client: TestClient, store: Store) -> None:
    service = client.app.state.console  # type: ignore[attr-defined]
    _, text = service.create_token("component", "read", actor="test", address="")
    headers = {"Authorization": f"Bearer {text}", "If-None-Match": '"v1"'}
    assert client.get("/api/v1/settings", headers=headers).status_code == 304
    audit_before = len(store.audit_log(1000))
    token = store.token_by_hash(auth.digest(text))
    for _ in range(50):
        assert client.get("/api/v1/settings", headers=headers).status_code == 304
    assert len(store.audit_log(1000)) == audit_before
    assert store.token_by_hash(auth.digest(text)) == token  # last_used_at not rewritten
