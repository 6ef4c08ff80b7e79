"""The console as an ASGI app: :func:`create_app` wires the store, the API and the pages, and
:func:`bootstrap` prepares a store on the first run.

Around every route: a request body limit (:data:`MAX_BODY`, 413, chunked bodies counted as they
arrive), security headers (CSP ``default-src 'self'``, no framing, no referrer, nosniff), and
error handlers that answer in one sentence without echoing what was sent (a password in a body
never comes back in an error). Both middlewares are plain ASGI, so the poll path stays cheap.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from egress.console.auth import RedirectToLogin, hash_password, new_admin_password
from egress.console.service import ConsoleService, NoSettings
from egress.console.store import KEEP, AlreadyExists, Keep, StaleVersion, Store, StoreError
from egress.errors import ConfigError, Problem, URLError
from egress.redact import Secret, printable

log = logging.getLogger("egress.console")

MAX_BODY: Final = 1024 * 1024
"""The largest request body accepted (1 MiB, the same cap as a settings file)."""
CSP: Final = b"default-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
DOCS_CSP: Final = (
    b"default-src 'self'; frame-ancestors 'none'; base-uri 'self'; "
    b"script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    b"style-src 'self' https://cdn.jsdelivr.net; img-src 'self' data: https://fastapi.tiangolo.com"
)
"""``/docs`` alone: FastAPI's Swagger UI page loads its script and style from jsDelivr and starts
with an inline script; the page shows only the API's own description."""
SECURITY_HEADERS: Final = (
    (b"content-security-policy", CSP),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
)
ADMIN: Final = "admin"


def _too_large_message(limit: int) -> str:
    return f"the request body is larger than {limit // 1024} KiB; send less"


class BodyTooLarge(HTTPException):
    """Raised inside the app when a body grows past the limit while it is read: an HTTP 413, so
    that FastAPI's own body parsing passes it on instead of calling it a parse error (400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _too_large_message(limit), headers={"Connection": "close"})


class LimitBody:
    """ASGI middleware: refuse bodies over ``limit`` bytes with 413, by ``Content-Length`` at once
    and, for chunked bodies, as soon as the bytes read pass the limit."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    too_big = int(value) > self.limit
                except ValueError:
                    too_big = False
                if too_big:
                    await _too_large(send, self.limit)
                    return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _too_large(send, self.limit)


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps({"detail": _too_large_message(limit)}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *SECURITY_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class SecurityHeaders:
    """ASGI middleware: the security headers on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        extra = SECURITY_HEADERS
        if scope["path"] == "/docs":
            extra = ((b"content-security-policy", DOCS_CSP), *SECURITY_HEADERS[1:])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in extra if h[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def problems_body(errors: list[Problem], warnings: list[Problem]) -> dict[str, Any]:
    """The body of a refused document: exactly what ``egress validate --json`` prints."""
    return {
        "valid": not errors,
        "errors": [e.as_dict() for e in errors],
        "warnings": [w.as_dict() for w in warnings],
    }


def _field_of(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return printable(out[:100])


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(RedirectToLogin)
    async def redirect_to_login(request: Request, exc: RedirectToLogin) -> Response:
        return RedirectResponse(exc.location, status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 304:
            return Response(status_code=304, headers=exc.headers)
        detail = exc.detail if isinstance(exc.detail, str | dict | list) else str(exc.detail)
        if _wants_page(request) and isinstance(detail, str):
            return error_page(request, exc.status_code, detail)
        return JSONResponse({"detail": detail}, exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        # pydantic's messages, without the "input" it would echo (it may be a password)
        errors = [
            Problem(_field_of(e.get("loc", ())), str(e.get("msg", "is not valid")), _hint(e))
            for e in exc.errors()[:20]
        ]
        return JSONResponse(problems_body(errors, []), 422)

    @app.exception_handler(ConfigError)
    async def config_error(request: Request, exc: ConfigError) -> Response:
        return JSONResponse(problems_body(list(exc.problems), list(exc.warnings)), 422)

    @app.exception_handler(URLError)
    async def url_error(request: Request, exc: URLError) -> Response:
        return JSONResponse({"detail": str(exc)}, 422)

    @app.exception_handler(NoSettings)
    async def no_settings(request: Request, exc: NoSettings) -> Response:
        body: dict[str, Any] = {"detail": str(exc)}
        if exc.errors:
            body["errors"] = [e.as_dict() for e in exc.errors]
        return JSONResponse(body, 409)

    @app.exception_handler(StaleVersion)
    async def stale(request: Request, exc: StaleVersion) -> Response:
        etag = f'"v{exc.current}"'
        return JSONResponse(
            {
                "detail": f"the settings changed meanwhile (now {etag}); "
                "read them again, reapply your change and send If-Match: " + etag,
                "etag": etag,
            },
            409,
            headers={"ETag": etag},
        )

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError) -> Response:
        log.error("store error: %s", exc)
        return JSONResponse({"detail": str(exc)}, 503)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        # the type only: an exception's text may carry what the request sent
        log.error("unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path)
        message = "internal error; the console's log has the details"
        if _wants_page(request):
            return error_page(request, 500, message)
        return JSONResponse({"detail": message}, 500)


def error_page(request: Request, status: int, message: str) -> Response:
    from egress.console.pages import error_page as page

    return page(request, status, message)


def _wants_page(request: Request) -> bool:
    """A browser asking for a page (not the API, not a script): errors come back as HTML."""
    path = request.url.path
    if path.startswith(("/api/", "/docs", "/openapi", "/healthz", "/metrics", "/static/")):
        return False
    return "text/html" in request.headers.get("accept", "")


def _hint(error: Mapping[str, Any]) -> str:
    kind = str(error.get("type", ""))
    if kind == "json_invalid":
        return "send a valid JSON document with Content-Type: application/json"
    if kind == "missing":
        return "add this field"
    return "see /docs for the expected shape"


def create_app(
    store: Store | str,
    *,
    secure_cookies: bool = False,
    env: Mapping[str, str] | None = None,
    check_timeout: float = 10.0,
    check_verify: Any = True,
) -> FastAPI:
    """The console app over ``store`` (a :class:`Store` or a database URL / path)."""
    from egress.console import api, pages, traffic

    the_store = Store(store) if isinstance(store, str) else store
    app = FastAPI(
        title="egress console",
        summary="The proxy switch, safe edits with history, routes, preflight and artifacts.",
        version="1",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.console = ConsoleService(
        the_store,
        secure_cookies=secure_cookies,
        env=env,
        check_timeout=check_timeout,
        check_verify=check_verify,
    )
    _install_handlers(app)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, object]:
        """Alive and the store answers (for a load balancer or a start-up script)."""
        return {"status": "ok", "version": app.state.console.store.current_number()}

    app.include_router(api.router)
    app.include_router(pages.router)
    static = Path(__file__).with_name("static")
    if static.is_dir():
        from fastapi.staticfiles import StaticFiles

        app.mount("/static", StaticFiles(directory=static), name="static")
    app.add_middleware(api.PollFastPath)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(LimitBody, limit=MAX_BODY)
    traffic.install(app)  # the traffic API and page, /metrics (outermost: counts every answer)
    return app


def bootstrap(
    store: Store | str, *, import_file: str | None, admin_password: str | None
) -> str | None:
    """Prepare ``store``: migrate; on the first run create the user ``admin`` and import
    ``import_file`` as version 1. Returns the admin password on the first run (generated here,
    to be shown once, or the one given), None on later runs. Nothing here logs a secret.

    ConfigError when the file to import is refused (nothing is stored then).
    """
    from egress.settings import load_yaml
    from egress.settings.fields import Problems
    from egress.settings.files import CA_LIMIT, read_regular_file
    from egress.settings.yaml_file import load_yaml_file

    the_store = Store(store) if isinstance(store, str) else store
    the_store.migrate()
    if the_store.current_number() == 0 and import_file is not None:
        settings = load_yaml(import_file)  # every problem at once, before anything is stored
        raw = load_yaml_file(import_file, "config")
        document: dict[str, Any] = dict(raw) if isinstance(raw, dict) else {}
        proxy = document.get("proxy")
        if isinstance(proxy, dict):
            proxy = document["proxy"] = dict(proxy)
            proxy.pop("password_file", None)
            ca_file = proxy.pop("ca_file", None)
            if isinstance(ca_file, str):
                p = Problems()
                data = read_regular_file(
                    ca_file, "proxy.ca_file", CA_LIMIT, p, fix="point ca_file at a PEM file"
                )
                if data is None:
                    raise ConfigError(p.errors)
                proxy["ca_pem"] = data.decode("ascii", "replace")
        password: Secret | Keep = settings.proxy.password or KEEP
        service = ConsoleService(the_store)
        # StaleVersion: another console on this store, started at the same time, imported first
        with contextlib.suppress(StaleVersion):
            service.save(
                document,
                actor="import",
                address="",
                expected=0,
                password=password,
                action="import",
                note=f"imported {printable(Path(import_file).name)}",
            )
    if the_store.user_count() == 0:
        secret = new_admin_password() if admin_password is None else admin_password
        try:
            the_store.create_user(ADMIN, hash_password(secret))
        except AlreadyExists:
            return None  # another console created the admin at the same moment: its one stands
        the_store.audit("bootstrap", "user.create", ADMIN, "")
        return secret
    return None
