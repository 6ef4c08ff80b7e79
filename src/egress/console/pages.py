"""The console's HTML pages: server-rendered forms over :class:`ConsoleService`, no build step.

Every page but ``/login`` needs a session (:func:`~egress.console.auth.current_user`); every
form that changes something carries the session's CSRF token
(:func:`~egress.console.auth.require_csrf`), and the login form a token of its own (a cookie
set with the form, compared with the field). Templates are autoescaped; every value they show is
masked first (URLs by :func:`egress.redact.mask_url` where they come from, text by the
service), and the proxy password never reaches a template: its input is never prefilled.

A change answers ``303`` to a page that says what happened (``?done=saved&v=4``: the message is
chosen from :data:`NOTICES`, nothing of the query is echoed). A refused form is shown again with
what was typed, each problem beside its field, and nothing stored.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import jinja2
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData, UploadFile

from egress.check import Probe, probes_for
from egress.check_report import html_report
from egress.console import auth
from egress.console.preflight import PreflightRun, PreflightRuns, sse
from egress.console.service import NoSettings
from egress.console.store import KEEP, Keep, StaleVersion
from egress.errors import ConfigError, Problem, URLError
from egress.redact import Secret, mask_url, printable
from egress.render import KINDS
from egress.scope import in_scope
from egress.settings.declaration import (
    FIELDS,
    Field,
    document_from_form,
    field,
    field_of_problem,
    form_value,
)
from egress.warehouses import WAREHOUSES

if TYPE_CHECKING:
    from egress.console.service import ConsoleService

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
        autoescape=True,  # every value a template shows is escaped, whatever the file name
    )
)

User = Annotated[str, Depends(auth.current_user)]
Csrf = Annotated[None, Depends(auth.require_csrf)]

NAV: Final = (
    ("/", "overview", "Overview"),
    ("/settings", "settings", "Settings"),
    ("/routes", "routes", "Routes"),
    ("/preflight", "preflight", "Preflight"),
    ("/artifacts", "artifacts", "Artifacts"),
    ("/traffic", "traffic", "Traffic"),
    ("/history", "history", "History"),
    ("/audit", "audit", "Audit"),
    ("/tokens", "tokens", "Tokens"),
)
"""(path, key, label) of the main navigation, in order."""

NOTICES: Final = {
    "saved": ("ok", "Saved as version {v}."),
    "switch-on": ("ok", "The proxy switch is on (version {v})."),
    "switch-off": ("ok", "The proxy switch is off (version {v})."),
    "rolled-back": ("ok", "Rolled back: version {v} holds the settings of version {from}."),
    "revoked": ("ok", "The token is revoked."),
    "already": ("info", "A preflight is already running: this is it."),
    "logged-out": ("info", "You are signed out."),
}
"""``?done=`` keys -> (kind, message); ``{v}`` and ``{from}`` are whole numbers from the query."""

LOGIN_COOKIE: Final = "egress_login"
"""The login form's own CSRF token (there is no session yet to hold one)."""
CA_UPLOAD_LIMIT: Final = 1024 * 1024
"""The largest CA file accepted (1 MiB, as the loader's CA_LIMIT)."""
MAX_URLS: Final = 20
"""The most URLs the preflight form takes."""
MAX_URL_LENGTH: Final = 2048
BY_HAND: Final = "named on the preflight page"
"""The purpose of a probe typed on the preflight page."""
HISTORY_PAGE: Final = 20
AUDIT_PAGE: Final = 100
REPORT_CSP: Final = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; form-action 'none'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
"""The HTML report has inline CSS and nothing else: it may load nothing, run nothing."""

ARTIFACTS: Final = {
    "helm": ("Helm values", "values for the seed platform's chart (externalProxy.*)",
             "egress-values.yaml", "application/yaml"),
    "env": ("Environment", "HTTP(S)_PROXY and NO_PROXY for other runtimes, as a dotenv file",
            "egress.env", "text/plain"),
    "networkpolicy": ("NetworkPolicy", "Kubernetes egress rules: the proxy and the direct routes",
                      "egress-networkpolicy.yaml", "application/yaml"),
    "squid": ("Squid allowlist", "for the proxy team: what to allow, per port",
              "egress-squid.conf", "text/plain"),
    "pac": ("PAC file", "a proxy auto-config file for browsers and tools that read one",
            "egress.pac", "application/x-ns-proxy-autoconfig"),
}  # fmt: skip
"""kind -> (title, what it is for, download file name, media type)."""


# -- shared --------------------------------------------------------------------------------------


def _service(request: Request) -> ConsoleService:
    service: ConsoleService = request.app.state.console
    return service


def preflight_runs(request: Request) -> PreflightRuns:
    """The console's preflight runs: the service's, shared with the API's ``POST /check``."""
    return _service(request).preflight


def _notice(request: Request) -> dict[str, str] | None:
    """The message a redirect asked for, from :data:`NOTICES` only."""
    done = request.query_params.get("done", "")
    if done not in NOTICES:
        return None
    kind, text = NOTICES[done]
    numbers = {k: _whole(request.query_params.get(k)) for k in ("v", "from")}
    if ("{v}" in text and numbers["v"] is None) or ("{from}" in text and numbers["from"] is None):
        return None
    return {"kind": kind, "text": text.replace("{v}", str(numbers["v"])).replace(
        "{from}", str(numbers["from"]))}  # fmt: skip


def _whole(text: str | None) -> int | None:
    if text is None or not text.isascii() or not text.isdigit() or len(text) > 9:
        return None
    return int(text)


def _render(
    request: Request,
    template: str,
    *,
    page: str,
    title: str,
    user: str | None,
    status: int = 200,
    notice: Mapping[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """A page in the base layout: the switch's state and version in the header, the user."""
    switch: bool | None = None
    version = 0
    if user is not None:
        current = _service(request).current()
        version = current.version.number if current.version is not None else 0
        switch = current.settings.proxy.enabled if current.settings is not None else None
    response = templates.TemplateResponse(
        request,
        template,
        {
            "title": title,
            "page": page,
            "user": user,
            "csrf": auth.csrf_token(request) if user is not None else "",
            "nav": NAV,
            "switch": switch,
            "version": version,
            "notice": notice if notice is not None else _notice(request),
            **context,
        },
        status_code=status,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    """An error a browser gets as a page (a stale form's CSRF token, an unknown path, a bug)
    instead of the API's JSON; ``message`` is the handler's own sentence, never the input."""
    titles = {403: "Not allowed", 404: "Not found", 413: "Too large", 500: "Something went wrong"}
    return _render(
        request,
        "error.html",
        page="",
        title=titles.get(status, "Request refused"),
        user=None,
        status=status,
        message=message,
        link="/",
        link_text="Back to the console",
    )


def _fail(text: str, link: str = "", link_text: str = "") -> dict[str, str]:
    return {"kind": "fail", "text": text, "link": link, "link_text": link_text}


def _problems_text(exc: ConfigError) -> str:
    return "; ".join(str(p) for p in exc.problems[:5]) + (
        f" (and {len(exc.problems) - 5} more)" if len(exc.problems) > 5 else ""
    )


def _stale_notice(exc: StaleVersion, what: str) -> dict[str, str]:
    return _fail(
        f"Someone else saved version {exc.current} first, so {what}.",
        link="",
    )


def _form_text(form: FormData, name: str, limit: int = 100_000) -> str:
    value = form.get(name)
    return value[:limit] if isinstance(value, str) else ""


def _expected(form: FormData) -> int | None:
    return _whole(_form_text(form, "expected", 20).strip())


def _safe_next(path: str) -> str:
    """Where to go after signing in: a path of this console only (never another site)."""
    if not path.startswith("/") or path.startswith("//") or "\\" in path or len(path) > 500:
        return "/"
    return path if path.isprintable() else "/"


# -- login ---------------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> Response:
    if auth.session_of(request) is not None:
        return RedirectResponse(_safe_next(request.query_params.get("next", "/")), 303)
    return _login_form(request, name="", error="", status=200)


def _login_form(request: Request, *, name: str, error: str, status: int) -> Response:
    token = secrets.token_urlsafe(24)
    response = _render(
        request,
        "login.html",
        page="login",
        title="Sign in",
        user=None,
        status=status,
        csrf=token,
        name=printable(name[:100]),
        error=error,
        next=_safe_next(request.query_params.get("next", "/")),
    )
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=3600,
        path="/login",
        httponly=True,
        samesite="strict",
        secure=auth.secure_request(request),
    )
    return response


@router.post("/login", response_class=HTMLResponse)
async def login_submit(request: Request) -> Response:
    form = await request.form()
    name = _form_text(form, "username", 200)
    password = _form_text(form, "password", 1000)
    sent, expected = _form_text(form, "csrf", 200), request.cookies.get(LOGIN_COOKIE, "")
    if not sent or not expected or not hmac.compare_digest(sent, expected):
        return _login_form(
            request, name=name, error="The form was out of date; sign in again.", status=403
        )
    try:
        session = auth.login(request, name, password)
    except auth.RateLimited as exc:
        response = _login_form(request, name=name, error=f"{str(exc).capitalize()}.", status=429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except auth.LoginRefused:
        return _login_form(
            request, name=name, error="The name or the password is wrong.", status=401
        )
    target = _safe_next(_form_text(form, "next", 500))
    response = RedirectResponse(target, 303)
    token = getattr(session, "token", "")
    auth.set_session_cookie(response, token, secure=auth.secure_request(request))
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request, user: User, _: Csrf) -> Response:
    response = RedirectResponse("/login?done=logged-out", 303)
    auth.logout(request, response)
    return response


# -- overview and the switch ---------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, user: User) -> Response:
    return _overview(request, user)


def _overview(
    request: Request, user: str, *, notice: Mapping[str, str] | None = None, status: int = 200
) -> Response:
    service = _service(request)
    current = service.current()
    settings = current.settings
    counts: dict[str, int] | None = None
    proxy_line = ""
    facts: list[tuple[str, str]] = []
    if settings is not None:
        rows = in_scope(settings)  # what this platform uses: core, its warehouses, its features
        switched_on = settings.with_enabled(True).router()
        via = sum(
            1
            for row in rows
            if switched_on.decide(row.url, warehouse=row.warehouse).route in ("proxy", "tunnel")
        )
        counts = {"total": len(rows), "via_proxy_on": via}
        proxy_line = _proxy_line(settings)
        p = settings.proxy
        facts = [
            ("Authentication", f"user {p.username}, password stored" if p.username else "none"),
            ("Proxy CA", "stored" if p.ca_pem else "the system's CAs"),
            ("Proxy certificate check", "on" if p.verify else "OFF"),
            ("Excluded destinations", str(len(settings.excluded_domains))),
            ("Deployment", settings.deployment.kind),
            ("Warehouses", ", ".join(settings.warehouses) or "none"),
        ]
    last = service.store.last_preflight()
    last_failed = sum(1 for r in last.results if r.get("status") != "ok") if last else 0
    return _render(
        request,
        "overview.html",
        page="overview",
        title="Overview",
        user=user,
        status=status,
        notice=notice,
        counts=counts,
        proxy_line=proxy_line,
        facts=facts,
        errors=current.errors,
        warnings=current.warnings,
        last=last,
        last_failed=last_failed,
    )


def _proxy_line(settings: Any) -> str:
    """The proxy in one line, masked: one URL, or one per family when they differ."""
    p = settings.proxy
    http, https = p.display(p.http_proxy), p.display(p.https_proxy)
    if http is None and https is None:
        return ""
    if http == https or http is None or https is None:
        return str(https or http)
    return f"http:// via {http}; https:// and tunnels via {https}"


@router.post("/switch")
async def switch(request: Request, user: User, _: Csrf) -> Response:
    form = await request.form()
    enabled = _form_text(form, "enabled", 10) == "true"
    service = _service(request)
    try:
        version = service.set_enabled(
            enabled, actor=user, address=auth.address_of(request), expected=_expected(form)
        )
    except StaleVersion as exc:
        return _overview(
            request,
            user,
            notice=_stale_notice(exc, "the switch was not changed; this page shows it now"),
            status=409,
        )
    except ConfigError as exc:
        return _overview(
            request, user, notice=_fail(f"Nothing was saved: {_problems_text(exc)}"), status=422
        )
    except NoSettings as exc:
        return _overview(request, user, notice=_fail(str(exc)), status=409)
    state = "on" if enabled else "off"
    return RedirectResponse(f"/?done=switch-{state}&v={version.number}", 303)


# -- settings ------------------------------------------------------------------------------------


@dataclass
class FieldView:
    """One input of the settings form: the declaration plus what it shows now."""

    path: str
    id: str
    kind: str
    label: str
    help: str
    example: str
    choices: tuple[str, ...]
    value: str
    errors: list[Problem]
    default: str = ""
    summary: str = ""

    @property
    def selected(self) -> set[str]:
        return {line.strip() for line in self.value.splitlines() if line.strip()}


def form_fields() -> list[Field]:
    """The fields on the form: those the declaration shows on the console, in its order."""
    return [f for f in FIELDS if f.console]


def _groups(
    texts: Mapping[str, str], errors: Mapping[str, list[Problem]]
) -> list[tuple[str, list[FieldView]]]:
    groups: dict[str, list[FieldView]] = {}
    for f in form_fields():
        value = "" if f.kind == "secret" else texts.get(f.path, "")
        view = FieldView(
            path=f.path,
            id="f-" + f.path.replace(".", "-").replace("_", "-"),
            kind=f.kind,
            label=f.label,
            help=f.help,
            example=f.example,
            choices=tuple(f.choices),
            value=value,
            errors=errors.get(f.path, []),
            default=f.default if isinstance(f.default, str) else "",
            summary=_pem_summary(value) if f.kind == "pem" else "",
        )
        groups.setdefault(f.section or "Other", []).append(view)
    return list(groups.items())


def _pem_summary(text: str) -> str:
    n = text.count("-----BEGIN CERTIFICATE-----")
    return f"{n} certificate{'s' if n != 1 else ''}"


def _settings_page(
    request: Request,
    user: str,
    *,
    texts: Mapping[str, str],
    expected: int,
    problems: Sequence[Problem] = (),
    notice: Mapping[str, str] | None = None,
    status: int = 200,
) -> Response:
    by_field: dict[str, list[Problem]] = {}
    elsewhere: list[Problem] = []
    for p in problems:
        owner = field_of_problem(p.field)
        if owner is not None and any(f.path == owner for f in form_fields()):
            by_field.setdefault(owner, []).append(p)
        else:
            elsewhere.append(p)
    service = _service(request)
    _, warnings = service.validation()
    if notice is None:
        notice = _notice(request)
    if notice is None and not problems and warnings:
        notice = {"kind": "warn", "text": f"The current settings have {len(warnings)} warning"
                  f"{'s' if len(warnings) != 1 else ''}: see the Overview."}  # fmt: skip
    return _render(
        request,
        "settings.html",
        page="settings",
        title="Settings",
        user=user,
        status=status,
        notice=notice,
        # what was typed is kept, but a password written into a URL is never sent back
        groups=_groups(
            {k: v if field(k).kind == "pem" else mask_url(v) for k, v in texts.items()}, by_field
        ),
        expected=expected,
        has_errors=bool(problems),
        error_count=len(problems),
        problems_elsewhere=elsewhere,
        password_set=service.store.password() is not None,
    )


@router.get("/settings", response_class=HTMLResponse)
def settings_page(request: Request, user: User) -> Response:
    version = _service(request).store.current()
    document = version.document if version is not None else {}
    texts = {f.path: form_value(document, f) for f in form_fields()}
    return _settings_page(
        request, user, texts=texts, expected=version.number if version is not None else 0
    )


async def _form_texts(form: FormData) -> tuple[dict[str, str], list[Problem]]:
    """The form as field texts (lists of ticked boxes joined by lines; an uploaded CA read and
    checked), and the problems found on the way (an upload too big, or not PEM)."""
    texts: dict[str, str] = {}
    problems: list[Problem] = []
    for f in form_fields():
        if f.kind == "secret":
            continue
        if f.kind == "list" and f.choices:
            texts[f.path] = "\n".join(v for v in form.getlist(f.path) if isinstance(v, str))
        elif f.kind == "pem":
            text = _form_text(form, f.path, CA_UPLOAD_LIMIT + 1)
            upload = form.get(f.path + ".upload")
            if _form_text(form, f.path + ".remove", 10) == "on":
                text = ""
            if isinstance(upload, UploadFile) and upload.filename:
                pem, problem = await _read_pem(upload, f.path)
                if problem is not None:
                    problems.append(problem)
                else:
                    text = pem
            texts[f.path] = text
        else:
            texts[f.path] = _form_text(form, f.path)
    return texts, problems


async def _read_pem(upload: UploadFile, path: str) -> tuple[str, Problem | None]:
    data = await upload.read(CA_UPLOAD_LIMIT + 1)
    if len(data) > CA_UPLOAD_LIMIT:
        return "", Problem(path, "the uploaded file is larger than 1 MiB", "upload the CA alone")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return "", Problem(
            path, "the uploaded file is not PEM text", "upload the CA as PEM, not DER"
        )
    if "-----BEGIN CERTIFICATE-----" not in text:
        return "", Problem(
            path,
            "the uploaded file holds no PEM certificate",
            "upload a file with -----BEGIN CERTIFICATE----- blocks",
        )
    return text, None


def _password_change(form: FormData, problems: list[Problem]) -> Secret | Keep | None:
    if _form_text(form, "proxy.password.remove", 10) == "on":
        return None
    value = form.get("proxy.password")
    if not isinstance(value, str) or value == "":
        return KEEP
    if len(value) > 4096 or not value.isprintable():
        problems.append(
            Problem(
                "proxy.password",
                "is too long or holds control characters",
                "type the password alone",
            )
        )
        return KEEP
    return Secret(value)


@router.post("/settings", response_class=HTMLResponse)
async def settings_submit(request: Request, user: User, _: Csrf) -> Response:
    form = await request.form()
    texts, problems = await _form_texts(form)
    password = _password_change(form, problems)
    expected = _expected(form)
    if expected is None:
        problems.append(Problem("", "the form lost its version number", "reload the page"))
    if problems:
        return _settings_page(
            request, user, texts=texts, expected=expected or 0, problems=problems, status=422
        )
    service = _service(request)
    try:
        version = service.save(
            document_from_form(texts),
            actor=user,
            address=auth.address_of(request),
            expected=expected,
            password=password,
        )
    except ConfigError as exc:
        return _settings_page(
            request,
            user,
            texts=texts,
            expected=expected or 0,
            problems=list(exc.problems),
            status=422,
        )
    except StaleVersion as exc:
        notice = _fail(
            f"Someone else saved version {exc.current} first, so nothing was saved. Your entries "
            "are still below; reload to see theirs (and type yours again).",
            link="/settings",
            link_text="Reload the settings",
        )
        return _settings_page(
            request, user, texts=texts, expected=expected or 0, notice=notice, status=409
        )
    return RedirectResponse(f"/settings?done=saved&v={version.number}", 303)


# -- routes --------------------------------------------------------------------------------------


@router.get("/routes", response_class=HTMLResponse)
def routes_page(request: Request, user: User) -> Response:
    service = _service(request)
    url = request.query_params.get("url", "")
    warehouse = request.query_params.get("warehouse", "")
    if warehouse not in WAREHOUSES:
        warehouse = ""
    decision = None
    explain_error = ""
    current = service.current()
    settings = current.settings
    if url:
        if len(url) > MAX_URL_LENGTH:
            explain_error = f"The URL is longer than {MAX_URL_LENGTH} characters."
        elif settings is None:
            explain_error = "The stored settings are not valid; fix them first."
        else:
            try:
                decision = service.explain(url, warehouse or None)
            except (URLError, ValueError) as exc:
                explain_error = printable(str(exc))
    rules = None
    catalog: list[Any] = []
    if settings is not None:
        rules = [
            {
                "rule": r.rule,
                "entries": r.entries,
                "route": r.route,
                "plain_route": r.plain_route,
                "via": settings.proxy.display(r.via) if r.via is not None else "",
                "why": r.sentence,
                "note": r.note,
            }
            for r in service.rules()
        ]
        catalog = service.catalog_routes()
    return _render(
        request,
        "routes.html",
        page="routes",
        title="Routes",
        user=user,
        status=422 if explain_error else 200,
        url=printable(url[:MAX_URL_LENGTH]),
        warehouse=warehouse,
        warehouses=tuple(WAREHOUSES),
        decision=decision,
        explain_error=explain_error,
        rules=rules,
        catalog=catalog,
    )


# -- preflight -----------------------------------------------------------------------------------


def _record_rows(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A stored record's results as rows (its ``check --json`` fields carry no 'reachable')."""
    rows = []
    for r in results:
        row = {k: printable(v) if isinstance(v, str) else v for k, v in r.items()}
        status = row.get("status")
        row["severity"] = "ok" if status == "ok" else "fail" if row.get("required") else "warn"
        rows.append(row)
    return rows


def _preflight_page(
    request: Request,
    user: str,
    *,
    run: PreflightRun | None,
    urls: str = "",
    scope: str = "all",
    form_error: str = "",
    notice: Mapping[str, str] | None = None,
    status: int = 200,
) -> Response:
    service = _service(request)
    rows = run.rows() if run is not None else []
    last = service.store.last_preflight() if run is None else None
    return _render(
        request,
        "preflight.html",
        page="preflight",
        title="Preflight",
        user=user,
        status=status,
        notice=notice,
        run=run,
        rows=rows,
        failed_count=sum(1 for r in rows if r["severity"] == "fail"),
        warning_count=sum(1 for r in rows if r["severity"] == "warn"),
        last=last,
        last_rows=_record_rows(last.results) if last is not None else [],
        urls=urls,
        scope=scope,
        form_error=form_error,
        max_urls=MAX_URLS,
    )


@router.get("/preflight", response_class=HTMLResponse)
def preflight_page(request: Request, user: User) -> Response:
    runs = preflight_runs(request)
    run_id = request.query_params.get("run", "")
    run = runs.get(run_id) if run_id else runs.latest()
    if run is not None and run.probes and all(p.purpose == BY_HAND for p in run.probes):
        # the run checked typed URLs only: offer the same again (masked, as everywhere)
        urls = "\n".join(mask_url(p.url) for p in run.probes)
        return _preflight_page(request, user, run=run, urls=urls, scope="urls")
    return _preflight_page(request, user, run=run)


@router.post("/preflight", response_class=HTMLResponse)
async def preflight_start(request: Request, user: User, _: Csrf) -> Response:
    from egress.router import parse_target

    form = await request.form()
    scope = "urls" if _form_text(form, "scope", 10) == "urls" else "all"
    urls_text = _form_text(form, "urls", MAX_URLS * (MAX_URL_LENGTH + 2))
    urls = [line.strip() for line in urls_text.splitlines() if line.strip()]
    runs = preflight_runs(request)

    def refuse(message: str, status: int = 422) -> Response:
        return _preflight_page(
            request,
            user,
            run=runs.latest(),
            urls=printable(urls_text),
            scope=scope,
            form_error=message,
            status=status,
        )

    if len(urls) > MAX_URLS:
        return refuse(f"{len(urls)} URLs is more than {MAX_URLS}; check fewer at once.")
    for url in urls:
        if len(url) > MAX_URL_LENGTH:
            return refuse(f"A URL is longer than {MAX_URL_LENGTH} characters.")
        try:
            parse_target(url)
        except (URLError, ValueError) as exc:
            return refuse(printable(str(exc)))
    if scope == "urls" and not urls:
        return refuse("Type at least one URL, or choose to check everything in scope.")
    service = _service(request)
    current = service.current()
    if current.settings is None or current.version is None:
        return refuse("The stored settings are not valid, so nothing can be checked.", 409)
    settings = current.settings
    probes = (
        [Probe(u, True, BY_HAND, "--url") for u in urls]
        if scope == "urls"
        else probes_for(settings, None, urls)
    )
    try:
        run, started = runs.start(
            settings,
            probes,
            actor=user,
            version=current.version.number,
            address=auth.address_of(request),
        )
    except ValueError as exc:
        return refuse(printable(str(exc)))
    done = "" if started else "&done=already"
    return RedirectResponse(f"/preflight?run={run.id}{done}", 303)


@router.get("/preflight/events/{run_id}")
async def preflight_events(request: Request, run_id: str, user: User) -> Response:
    run = preflight_runs(request).get(run_id)
    if run is None:
        raise HTTPException(404, "no such preflight run; start one on the Preflight page")
    since = _whole(request.headers.get("last-event-id"))

    async def stream() -> AsyncIterator[str]:
        async for event in run.follow(-1 if since is None else since):
            yield sse(event)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/preflight/report/{run_id}", response_class=HTMLResponse)
def preflight_report(request: Request, run_id: str, user: User) -> Response:
    run = preflight_runs(request).get(run_id)
    if run is None or not run.done:
        return _render(
            request,
            "error.html",
            page="preflight",
            title="No report",
            user=user,
            status=404,
            message="That run is not finished or no longer kept; run the preflight again.",
            link="/preflight",
            link_text="Back to the preflight",
        )
    return HTMLResponse(
        html_report(run.settings, run.results),
        headers={"Content-Security-Policy": REPORT_CSP, "Cache-Control": "no-store"},
    )


# -- artifacts -----------------------------------------------------------------------------------


@router.get("/artifacts", response_class=HTMLResponse)
def artifacts_page(request: Request, user: User) -> Response:
    service = _service(request)
    items: list[dict[str, Any]] = []
    if service.current().settings is not None:
        for kind in KINDS:
            title, about, filename, _ = ARTIFACTS.get(kind, (kind, "", kind, "text/plain"))
            item: dict[str, Any] = {
                "kind": kind,
                "title": title,
                "about": about,
                "filename": filename,
                "warnings": [],
                "error": "",
            }
            try:
                item["warnings"] = [printable(w) for w in service.artifact(kind).warnings]
            except ConfigError as exc:
                item["error"] = printable(str(exc))
            items.append(item)
    return _render(
        request, "artifacts.html", page="artifacts", title="Artifacts", user=user, artifacts=items
    )


@router.get("/artifacts/{kind}")
def artifact_download(request: Request, kind: str, user: User) -> Response:
    if kind not in KINDS:
        raise HTTPException(404, f"no artifact of that kind; use one of: {', '.join(KINDS)}")
    service = _service(request)
    if service.current().settings is None:
        raise HTTPException(409, "the stored settings are not valid; fix them first")
    try:
        artifact = service.artifact(kind)
    except ConfigError as exc:
        raise HTTPException(422, printable(str(exc))) from exc
    _, _, filename, media = ARTIFACTS.get(kind, (kind, "", kind, "text/plain"))
    return Response(
        artifact.text,
        media_type=media,
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


# -- history and audit ---------------------------------------------------------------------------


def _history_page(
    request: Request, user: str, *, notice: Mapping[str, str] | None = None, status: int = 200
) -> Response:
    service = _service(request)
    offset = _whole(request.query_params.get("offset")) or 0
    versions = service.store.versions(limit=HISTORY_PAGE + 1, offset=offset)
    more = len(versions) > HISTORY_PAGE
    versions = versions[:HISTORY_PAGE]
    diffs = {v.number: service.diff(v.number) for v in versions}
    return _render(
        request,
        "history.html",
        page="history",
        title="History",
        user=user,
        status=status,
        notice=notice,
        versions=versions,
        diffs=diffs,
        current=service.store.current_number(),
        more=more,
        next_offset=offset + HISTORY_PAGE,
    )


@router.get("/history", response_class=HTMLResponse)
def history_page(request: Request, user: User) -> Response:
    return _history_page(request, user)


@router.post("/history/{number}/rollback", response_class=HTMLResponse)
async def rollback(request: Request, number: int, user: User, _: Csrf) -> Response:
    form = await request.form()
    service = _service(request)
    try:
        version = service.rollback(
            number, actor=user, address=auth.address_of(request), expected=_expected(form)
        )
    except KeyError:
        return _history_page(
            request, user, notice=_fail(f"There is no version {number}."), status=404
        )
    except StaleVersion as exc:
        return _history_page(
            request,
            user,
            notice=_stale_notice(exc, "nothing was rolled back; this page shows it now"),
            status=409,
        )
    except ConfigError as exc:
        return _history_page(
            request,
            user,
            notice=_fail(f"Version {number} is no longer valid: {_problems_text(exc)}"),
            status=422,
        )
    return RedirectResponse(f"/history?done=rolled-back&v={version.number}&from={number}", 303)


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, user: User) -> Response:
    offset = _whole(request.query_params.get("offset")) or 0
    entries = _service(request).store.audit_log(limit=AUDIT_PAGE + 1, offset=offset)
    return _render(
        request,
        "audit.html",
        page="audit",
        title="Audit log",
        user=user,
        entries=entries[:AUDIT_PAGE],
        more=len(entries) > AUDIT_PAGE,
        next_offset=offset + AUDIT_PAGE,
    )


# -- tokens --------------------------------------------------------------------------------------


def _tokens_page(request: Request, user: str, *, status: int = 200, **context: Any) -> Response:
    context.setdefault("name", "")
    context.setdefault("role", "read")
    return _render(
        request,
        "tokens.html",
        page="tokens",
        title="API tokens",
        user=user,
        status=status,
        tokens=_service(request).store.tokens(),
        **context,
    )


@router.get("/tokens", response_class=HTMLResponse)
def tokens_page(request: Request, user: User) -> Response:
    return _tokens_page(request, user)


@router.post("/tokens", response_class=HTMLResponse)
async def token_create(request: Request, user: User, _: Csrf) -> Response:
    form = await request.form()
    name = _form_text(form, "name", 200).strip()
    role = _form_text(form, "role", 10)
    if role not in auth.ROLES:
        role = "read"
    if not name or len(name) > 100 or not name.isprintable():
        return _tokens_page(
            request,
            user,
            status=422,
            name=printable(name[:100]),
            role=role,
            error="Give the token a name of 1 to 100 printable characters.",
        )
    token, text = _service(request).create_token(
        name, role, actor=user, address=auth.address_of(request)
    )
    return _tokens_page(request, user, new_token=text, new_token_name=token.name)


@router.post("/tokens/{token_id}/revoke")
async def token_revoke(request: Request, token_id: int, user: User, _: Csrf) -> Response:
    try:
        _service(request).revoke_token(token_id, actor=user, address=auth.address_of(request))
    except KeyError:
        return _tokens_page(request, user, status=404, error="There is no such token.")
    return RedirectResponse("/tokens?done=revoked", 303)
