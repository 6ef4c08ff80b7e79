"""The console's HTTP API under ``/api/v1`` (OpenAPI at ``/docs``).

Machines use tokens (``Authorization: Bearer egress_...``): read tokens for components that poll
the settings, admin tokens for automation. A browser session works too; its changes must carry
the session's ``X-CSRF-Token`` header.

- ``GET /settings``: the current ``egress.yaml`` document as JSON, with ``ETag: "v<n>"``; ``304``
  when ``If-None-Match`` names it (the poll path: one indexed query, nothing else).
- ``PUT /settings``: a whole document, plus optionally ``"password": {"set": "..."}`` or
  ``{"clear": true}``. ``If-Match`` is required (``428``), a stale one gets ``409`` with the
  current ETag, an invalid document ``422`` with ``{"valid", "errors", "warnings"}`` exactly as
  ``egress validate --json`` prints them; nothing is stored then.
- ``POST /settings/switch``, ``GET /explain``, ``POST /check``, ``GET /artifacts/{kind}``,
  ``GET /history[/{n}]``, ``POST /history/{n}/rollback``, ``/tokens``, ``GET /audit``.
- ``POST /login`` (JSON name and password; a session cookie and its CSRF token, rate-limited
  like the login page) and ``POST /logout``, for scripts that start without a token.

A poll is answered by :class:`PollFastPath` before any routing when it can be (``304``).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field, StrictBool
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from egress.console.auth import (
    TOKEN_PREFIX,
    LoginRefused,
    RateLimited,
    address_of,
    digest,
    login,
    logout,
    require_token,
    secure_request,
    set_session_cookie,
    unauthorized,
)
from egress.console.service import KINDS, ConsoleService, PreflightBusy, etag_of
from egress.console.store import KEEP, Keep, Version
from egress.errors import ConfigError, Problem
from egress.redact import Secret, mask_url, shown
from egress.settings import PASSWORD_LIMIT

router = APIRouter(prefix="/api/v1", tags=["api"])

Reader = Annotated[str, Depends(require_token("read"))]
Admin = Annotated[str, Depends(require_token("admin"))]

MEDIA_TYPES: Final = {
    "helm": "application/yaml",
    "env": "text/plain; charset=utf-8",
    "networkpolicy": "application/yaml",
    "squid": "text/plain; charset=utf-8",
    "pac": "application/x-ns-proxy-autoconfig",
}
NO_STORE: Final = {"Cache-Control": "no-store"}


def _service(request: Request) -> ConsoleService:
    service: ConsoleService = request.app.state.console
    return service


# -- models --------------------------------------------------------------------------------------


class LoginIn(BaseModel):
    username: str = Field(max_length=200)
    password: str = Field(max_length=1024)


class LoginOut(BaseModel):
    user: str
    csrf: str = Field(description="Send it as X-CSRF-Token with every change made in this session")


class ProblemOut(BaseModel):
    field: str
    message: str
    hint: str


class SavedOut(BaseModel):
    """A version just stored, and what ``egress validate`` warns about it."""

    version: int
    etag: str
    warnings: list[ProblemOut]


class VersionOut(BaseModel):
    number: int
    etag: str
    author: str
    action: str
    note: str
    created_at: datetime
    password_generation: int = Field(description="Bumps when the proxy password changes")

    @classmethod
    def of(cls, v: Version) -> VersionOut:
        return cls(
            number=v.number,
            etag=etag_of(v.number),
            author=v.author,
            action=v.action,
            note=v.note,
            created_at=v.created_at,
            password_generation=v.password_generation,
        )


class DiffLineOut(BaseModel):
    path: str
    before: str | None
    after: str | None


class VersionDetailOut(VersionOut):
    document: dict[str, Any]
    diff: list[DiffLineOut] = Field(description="Against the version before")


class SwitchIn(BaseModel):
    enabled: StrictBool


class DecisionOut(BaseModel):
    url: str
    route: str
    proxy: str | None
    rule: str
    reason: str
    warehouse: str | None


class CheckIn(BaseModel):
    urls: list[Annotated[str, Field(max_length=2048)]] = Field(default=[], max_length=100)


class CheckOut(BaseModel):
    id: int
    at: datetime
    version: int
    verdict: str = Field(description="ok | warnings | failed | empty")
    results: list[dict[str, Any]] = Field(description="As `egress check --json` prints them")


class TokenIn(BaseModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    role: Literal["read", "admin"]


class TokenOut(BaseModel):
    id: int
    name: str
    role: str
    created_by: str
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool


class NewTokenOut(TokenOut):
    token: str = Field(description="Shown this once; only its SHA-256 is stored")


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    detail: str
    address: str


def _document_schema() -> dict[str, Any]:
    """The JSON Schema of ``egress.yaml``, from the one declaration of the fields."""
    from egress.settings.declaration import json_schema

    schema = dict(json_schema())
    schema.pop("$schema", None)
    return schema


def _settings_schema() -> dict[str, Any]:
    """:func:`_document_schema` plus the optional ``password`` member a PUT takes beside it."""
    schema = _document_schema()
    properties = dict(schema.get("properties", {}))
    properties["password"] = {
        "description": "The proxy password: set or replace it, or clear it. Never returned.",
        "oneOf": [
            {
                "type": "object",
                "properties": {"set": {"type": "string", "minLength": 1}},
                "required": ["set"],
                "additionalProperties": False,
            },
            {
                "type": "object",
                "properties": {"clear": {"const": True}},
                "required": ["clear"],
                "additionalProperties": False,
            },
        ],
    }
    schema["properties"] = properties
    schema.pop("$schema", None)
    return schema


# -- helpers -------------------------------------------------------------------------------------


def _matches(header: str, etag: str) -> bool:
    """Whether an If-None-Match header names ``etag`` (weak comparison, ``*`` matches)."""
    for part in header.split(","):
        tag = part.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


def _expected(if_match: str | None, *, required: bool) -> int | None:
    """The version number an If-Match header names; None for ``*`` (or absent when optional)."""
    if if_match is None:
        if required:
            raise HTTPException(
                428,
                'send If-Match with the ETag of GET /api/v1/settings (e.g. If-Match: "v3"), so '
                "that a change made meanwhile is not overwritten",
            )
        return None
    tag = if_match.strip().removeprefix("W/")
    if tag == "*":
        return None
    if len(tag) < 4 or not (tag.startswith('"v') and tag.endswith('"') and tag[2:-1].isdigit()):
        raise HTTPException(400, 'If-Match must be an ETag of this API, e.g. "v3", or *')
    return int(tag[2:-1])


def _password_change(value: object) -> Secret | Keep | None:
    """``{"set": "..."}`` -> the Secret, ``{"clear": true}`` -> None; anything else is refused
    (without echoing it)."""
    hint = 'send "password": {"set": "<the proxy password>"} or "password": {"clear": true}'
    if isinstance(value, dict) and set(value) == {"clear"} and value["clear"] is True:
        return None
    if isinstance(value, dict) and set(value) == {"set"} and isinstance(value["set"], str):
        text: str = value["set"]
        if not text:
            raise ConfigError([Problem("password", "is empty", hint)])
        if len(text.encode("utf-8", "surrogatepass")) > PASSWORD_LIMIT:
            raise ConfigError(
                [Problem("password", f"is longer than {PASSWORD_LIMIT} bytes", "send the password")]
            )
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
            raise ConfigError(
                [
                    Problem(
                        "password",
                        "contains control characters (a line break?)",
                        "send the password alone",
                    )
                ]
            )
        return Secret(text)
    raise ConfigError([Problem("password", "is not in a form the console takes", hint)])


async def _json_body(request: Request) -> object:
    raw = await request.body()
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        where = ""
        if isinstance(exc, json.JSONDecodeError):
            where = f" (line {exc.lineno}, column {exc.colno})"
        raise ConfigError(
            [
                Problem(
                    "",
                    f"the body is not valid JSON{where}",
                    "send the settings as one JSON object with Content-Type: application/json",
                )
            ]
        ) from None


def _saved(service: ConsoleService, version: Version) -> JSONResponse:
    _, warnings = service.validation()
    out = SavedOut(
        version=version.number,
        etag=etag_of(version.number),
        warnings=[ProblemOut(**w.as_dict()) for w in warnings],
    )
    return JSONResponse(
        out.model_dump(mode="json"), headers={"ETag": etag_of(version.number), **NO_STORE}
    )


# -- the poll path -------------------------------------------------------------------------------

SETTINGS_PATH: Final = "/api/v1/settings"


class PollFastPath:
    """ASGI middleware: a component's poll (``GET /api/v1/settings`` with a Bearer token and an
    ``If-None-Match`` naming the current version) is answered ``304`` before any routing.

    The same answer the route gives, for a fraction of the work: the token from the lookup
    cache, the version number from :meth:`ConsoleService.poll_number` (one query, shared by the
    polls that arrive together, never a remembered number another console may have made stale);
    no settings parsed, no audit or session written. Anything else (no match, a bad token,
    other paths) goes on to the app, which answers it in full.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == SETTINGS_PATH and scope["method"] == "GET":
            authorization = if_none_match = None
            for name, value in scope["headers"]:
                if name == b"authorization":
                    authorization = value
                elif name == b"if-none-match":
                    if_none_match = value
            if authorization is not None and if_none_match is not None:
                etag = await self._unchanged(scope, authorization, if_none_match)
                if etag is not None:
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 304,
                            "headers": [(b"etag", etag), (b"cache-control", b"no-cache")],
                        }
                    )
                    await send({"type": "http.response.body", "body": b""})
                    return
        await self.app(scope, receive, send)

    @staticmethod
    async def _unchanged(scope: Scope, authorization: bytes, if_none_match: bytes) -> bytes | None:
        scheme, _, value = authorization.partition(b" ")
        if scheme.lower() != b"bearer" or not value.startswith(TOKEN_PREFIX.encode()):
            return None
        if len(value) > 200:
            return None
        service: ConsoleService = scope["app"].state.console
        if service.tokens.lookup(service, digest(value.decode("ascii", "replace"))) is None:
            return None
        etag = etag_of(await service.poll_number())
        return etag.encode() if _matches(if_none_match.decode("latin-1"), etag) else None


# -- sessions ------------------------------------------------------------------------------------


@router.post(
    "/login",
    summary="Sign in (a session cookie, for browser JavaScript and scripts without a token)",
    response_model=LoginOut,
    responses={401: {"description": "Wrong name or password"}, 429: {"description": "Wait"}},
)
def api_login(request: Request, body: LoginIn) -> Response:
    """Rate-limited per account and per address like the login page; audited either way."""
    try:
        session = login(request, body.username, body.password)
    except RateLimited as exc:
        return JSONResponse(
            {"detail": str(exc)}, 429, headers={"Retry-After": str(exc.retry_after), **NO_STORE}
        )
    except LoginRefused as exc:
        raise unauthorized(str(exc)) from None
    response = JSONResponse(
        LoginOut(user=session.user, csrf=session.csrf).model_dump(), headers=NO_STORE
    )
    set_session_cookie(response, session.token, secure=secure_request(request))
    return response


@router.post("/logout", summary="End this session", status_code=204)
def api_logout(request: Request) -> Response:
    response = Response(status_code=204)
    logout(request, response)
    return response


# -- settings ------------------------------------------------------------------------------------


@router.get(
    "/settings",
    summary="The current settings (egress.yaml as JSON)",
    responses={
        200: {"content": {"application/json": {"schema": _document_schema()}}},
        304: {"description": "Unchanged since the If-None-Match ETag"},
    },
)
async def get_settings(
    request: Request,
    actor: Reader,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """The current document with its ETag; ``304`` when ``If-None-Match`` names it."""
    service = _service(request)
    store = service.store
    if if_none_match is not None:
        etag = etag_of(await service.poll_number())
        if _matches(if_none_match, etag):
            return Response(status_code=304, headers={"ETag": etag, "Cache-Control": "no-cache"})
    version = await run_in_threadpool(store.current)
    etag = etag_of(version.number if version else 0)
    document = version.document if version else {}
    return JSONResponse(document, headers={"ETag": etag, "Cache-Control": "no-cache"})


@router.put(
    "/settings",
    summary="Replace the settings (validated whole; If-Match required)",
    response_model=SavedOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _settings_schema()}},
        }
    },
    responses={
        409: {"description": "The If-Match ETag is stale; the answer carries the current one"},
        422: {"description": "Refused: every problem, as `egress validate --json`"},
        428: {"description": "If-Match is missing"},
    },
)
async def put_settings(
    request: Request,
    actor: Admin,
    if_match: Annotated[str | None, Header()] = None,
) -> Response:
    expected = _expected(if_match, required=True)
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise ConfigError(
            [Problem("", "the body must be a JSON object", "send the settings as one JSON object")]
        )
    document = dict(body)
    password = _password_change(document.pop("password")) if "password" in document else KEEP
    service = _service(request)
    version = await run_in_threadpool(
        lambda: service.save(
            document,
            actor=actor,
            address=address_of(request),
            expected=expected,
            password=password,
        )
    )
    return _saved(service, version)


@router.post("/settings/switch", summary="Turn the proxy on or off (S6)", response_model=SavedOut)
def switch(
    request: Request,
    body: SwitchIn,
    actor: Admin,
    if_match: Annotated[str | None, Header()] = None,
) -> Response:
    """A new version with ``proxy.enabled`` set; If-Match optional (checked when sent)."""
    service = _service(request)
    version = service.set_enabled(
        body.enabled,
        actor=actor,
        address=address_of(request),
        expected=_expected(if_match, required=False),
    )
    return _saved(service, version)


# -- routes, preflight, artifacts ----------------------------------------------------------------


@router.get("/explain", summary="The route one URL takes, and why", response_model=DecisionOut)
def explain(
    request: Request,
    actor: Reader,
    url: Annotated[str, Query(max_length=4096)],
    warehouse: Annotated[str | None, Query(max_length=64)] = None,
) -> DecisionOut:
    service = _service(request)
    try:
        d = service.explain(url, warehouse)
    except ValueError as exc:  # URLError is a ValueError; so is an unknown warehouse
        raise HTTPException(422, f"cannot explain {shown(url)}: {exc}") from None
    return DecisionOut(
        url=mask_url(d.url),
        route=d.route,
        proxy=d.proxy,
        rule=d.rule,
        reason=d.reason,
        warehouse=d.warehouse,
    )


@router.post("/check", summary="Run the preflight (egress check) now", response_model=CheckOut)
def check(request: Request, actor: Admin, body: CheckIn | None = None) -> CheckOut:
    """Every destination in scope plus ``urls``; the record is stored (the Overview shows it)."""
    service = _service(request)
    try:
        record, rows = service.check(
            body.urls if body else (), actor=actor, address=address_of(request)
        )
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    except PreflightBusy as exc:
        raise HTTPException(409, str(exc)) from None
    return CheckOut(
        id=record.id, at=record.at, version=record.version, verdict=record.verdict, results=rows
    )


@router.get(
    "/artifacts/{kind}",
    summary="One rendered artifact for the current settings",
    responses={200: {"content": {t.split(";")[0]: {} for t in MEDIA_TYPES.values()}}},
)
def artifact(request: Request, kind: str, actor: Reader) -> Response:
    if kind not in KINDS:
        raise HTTPException(
            404, f"there is no artifact {shown(kind)}; the kinds are: {', '.join(KINDS)}"
        )
    art = _service(request).artifact(kind)
    return PlainTextResponse(art.text, media_type=MEDIA_TYPES[kind], headers=NO_STORE)


# -- history -------------------------------------------------------------------------------------


@router.get("/history", summary="Saved versions, newest first", response_model=list[VersionOut])
def history(
    request: Request,
    actor: Reader,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[VersionOut]:
    return [VersionOut.of(v) for v in _service(request).store.versions(limit, offset)]


def _version(service: ConsoleService, number: int) -> Version:
    version = service.store.version(number)
    if version is None:
        raise HTTPException(404, f"there is no version {number}; GET /api/v1/history lists them")
    return version


@router.get(
    "/history/{number}", summary="One version, with its diff", response_model=VersionDetailOut
)
def history_one(request: Request, number: int, actor: Reader) -> VersionDetailOut:
    service = _service(request)
    v = _version(service, number)
    return VersionDetailOut(
        **VersionOut.of(v).model_dump(),
        document=v.document,
        diff=[
            DiffLineOut(path=d.path, before=d.before, after=d.after) for d in service.diff(number)
        ],
    )


@router.post(
    "/history/{number}/rollback",
    summary="Make version n's document current again (as a new version)",
    response_model=SavedOut,
)
def rollback(
    request: Request,
    number: int,
    actor: Admin,
    if_match: Annotated[str | None, Header()] = None,
) -> Response:
    service = _service(request)
    _version(service, number)
    version = service.rollback(
        number,
        actor=actor,
        address=address_of(request),
        expected=_expected(if_match, required=False),
    )
    return _saved(service, version)


# -- tokens and audit ----------------------------------------------------------------------------


def _token_out(t: Any) -> dict[str, Any]:
    return {
        "id": t.id,
        "name": t.name,
        "role": t.role,
        "created_by": t.created_by,
        "created_at": t.created_at,
        "last_used_at": t.last_used_at,
        "revoked": t.revoked,
    }


@router.get("/tokens", summary="API tokens (never their text)", response_model=list[TokenOut])
def tokens(request: Request, actor: Admin) -> list[TokenOut]:
    return [TokenOut(**_token_out(t)) for t in _service(request).store.tokens()]


@router.post(
    "/tokens",
    summary="Create an API token (its text is in this answer only)",
    status_code=201,
    response_model=NewTokenOut,
)
def create_token(request: Request, body: TokenIn, actor: Admin, response: Response) -> NewTokenOut:
    token, text = _service(request).create_token(
        body.name, body.role, actor=actor, address=address_of(request)
    )
    response.headers["Cache-Control"] = "no-store"
    return NewTokenOut(**_token_out(token), token=text)


@router.delete("/tokens/{token_id}", summary="Revoke an API token", status_code=204)
def revoke_token(request: Request, token_id: int, actor: Admin) -> Response:
    try:
        _service(request).revoke_token(token_id, actor=actor, address=address_of(request))
    except KeyError:
        raise HTTPException(
            404, f"there is no token {token_id}; GET /api/v1/tokens lists them"
        ) from None
    return Response(status_code=204)


@router.get("/audit", summary="The audit log, newest first", response_model=list[AuditOut])
def audit(
    request: Request,
    actor: Admin,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[AuditOut]:
    return [
        AuditOut(
            id=e.id, at=e.at, actor=e.actor, action=e.action, detail=e.detail, address=e.address
        )
        for e in _service(request).store.audit_log(limit, offset)
    ]
