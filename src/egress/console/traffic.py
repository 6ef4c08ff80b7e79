"""Traffic reports in the console: the API components report to, the *Traffic* page, ``/metrics``.

- ``POST /api/v1/traffic`` (a read or admin token): ``{"component": ..., "entries": [...]}`` as
  :class:`egress.report.TrafficReporter` sends it; validated whole (at most
  :data:`MAX_ENTRIES` entries, :data:`MAX_TRAFFIC_BODY` bytes), added to the store's totals.
- ``GET /api/v1/traffic?component=&filter=&limit=``: the stored rows, newest first.
- ``/traffic``: per component, newest first, with a filter. Highlighted: destinations that are
  proxied but not in the catalog (candidates for the proxy team's allowlist; the catalog says,
  :func:`egress.catalog.lookup`) and destinations whose last failure was ``proxy-denied``.
- ``GET /metrics``: the console's own counters in Prometheus text (requests by method and status,
  settings polls, saves, logins, traffic reports). Labels hold only bounded values: nothing a
  user typed, never a path with an id in it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from egress.catalog import lookup
from egress.console import pages
from egress.console.auth import require_token
from egress.console.store import TooManyComponents, TrafficEntry, TrafficRecord
from egress.observe import FAILURE_NAMES

__all__ = ["MAX_ENTRIES", "MAX_TRAFFIC_BODY", "ConsoleMetrics", "install", "router"]

MAX_ENTRIES: Final = 2000
"""Entries one report may carry (the reporter sends 500 at a time)."""
MAX_TRAFFIC_BODY: Final = 512 * 1024
"""The largest report body accepted."""
PAGE_ROWS: Final = 500

Reader = Annotated[str, Depends(require_token("read"))]
FailureName = Literal[
    "proxy-unreachable",
    "proxy-pool-timeout",
    "proxy-tls-failed",
    "proxy-denied",
    "proxy-auth-required",
    "proxy-error",
    "unsupported-route",
    "tls-intercepted",
    "origin-error",
]
assert set(FailureName.__args__) == set(FAILURE_NAMES.values())  # type: ignore[attr-defined]

_PRINTABLE = r"^[^\x00-\x20\x7f]+$"
"""No spaces, no control characters (a host, a rule id)."""

router = APIRouter()


class TrafficEntryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field(min_length=1, max_length=255, pattern=_PRINTABLE)
    port: int = Field(ge=0, le=65535)
    route: Literal["proxy", "direct", "tunnel"]
    rule: str = Field(min_length=1, max_length=300, pattern=_PRINTABLE)
    count: int = Field(ge=0, le=2**53)
    failures: int = Field(default=0, ge=0, le=2**53)
    last_failure: FailureName | None = None
    last_failure_at: float | None = Field(default=None, ge=0, le=1e11, description="Unix time")
    last_seen: float | None = Field(default=None, ge=0, le=1e11, description="Unix time")


class TrafficIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    component: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")
    entries: list[TrafficEntryIn] = Field(max_length=MAX_ENTRIES)


class TrafficAccepted(BaseModel):
    component: str
    entries: int


class TrafficOut(BaseModel):
    component: str
    host: str
    port: int
    route: str
    rule: str
    count: int
    failures: int
    last_failure: str | None
    last_failure_at: datetime | None
    first_seen: datetime
    last_seen: datetime
    in_catalog: bool
    allowlist_candidate: bool


def _time(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value is not None else None


def _view(r: TrafficRecord) -> dict[str, Any]:
    """A row as the API and the page show it, with the catalog's verdict."""
    known = r.host != "(other)" and lookup(r.host, r.port) is not None
    return {
        **{name: getattr(r, name) for name in r.__dataclass_fields__},
        "in_catalog": known,
        "allowlist_candidate": r.route == "proxy" and not known and r.host != "(other)",
        "denied": r.last_failure == "proxy-denied",
    }


@router.post(
    "/api/v1/traffic",
    tags=["api"],
    summary="Report what a component contacted (egress.report.TrafficReporter)",
    response_model=TrafficAccepted,
    responses={413: {"description": "Too large"}, 429: {"description": "Too many components"}},
)
async def post_traffic(request: Request, body: TrafficIn, actor: Reader) -> TrafficAccepted:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_TRAFFIC_BODY:
        raise HTTPException(413, f"a traffic report is at most {MAX_TRAFFIC_BODY // 1024} KiB")
    entries = [
        TrafficEntry(
            host=e.host.lower(),
            port=e.port,
            route=e.route,
            rule=e.rule,
            count=e.count,
            failures=e.failures,
            last_failure=e.last_failure,
            last_failure_at=_time(e.last_failure_at),
            last_seen=_time(e.last_seen),
        )
        for e in body.entries
    ]
    store = request.app.state.console.store
    try:
        await run_in_threadpool(store.record_traffic, body.component, entries)
    except TooManyComponents:
        raise HTTPException(
            429, "too many components report to this console; remove old ones first"
        ) from None
    metrics = _metrics(request.app)
    if metrics is not None:
        metrics.reports.inc()
        metrics.entries.inc(len(entries))
    return TrafficAccepted(component=body.component, entries=len(entries))


@router.get(
    "/api/v1/traffic",
    tags=["api"],
    summary="What components reported, newest first",
    response_model=list[TrafficOut],
)
def get_traffic(
    request: Request,
    actor: Reader,
    component: str | None = None,
    filter: str | None = None,
    limit: int = 500,
) -> list[dict[str, Any]]:
    store = request.app.state.console.store
    rows = store.traffic(component=component, filter=(filter or "")[:100], limit=limit)
    return [_view(r) for r in rows]


@router.get("/traffic", include_in_schema=False)
def traffic_page(request: Request, user: pages.User) -> Response:
    store = request.app.state.console.store
    component = (request.query_params.get("component") or "")[:100]
    text = (request.query_params.get("filter") or "")[:100]
    rows = [_view(r) for r in store.traffic(component or None, text or None, PAGE_ROWS)]
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:  # newest first; a component's place is that of its newest row
        groups.setdefault(row["component"], []).append(row)
    return pages._render(
        request,
        "traffic.html",
        page="traffic",
        title="Traffic",
        user=user,
        groups=groups,
        components=store.traffic_components(),
        component=component,
        filter=text,
        candidates=[r for r in rows if r["allowlist_candidate"]],
        denied=[r for r in rows if r["denied"]],
    )


# -- the console's own metrics -----------------------------------------------------------------


class _Counters:
    """The console's counters, in a registry of its own (one per app)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "egress_console_requests",
            "HTTP requests, by method and status",
            ("method", "status"),
            registry=r,
        )
        self.polls = Counter(
            "egress_console_settings_polls",
            "GET /api/v1/settings, by outcome (unchanged: 304)",
            ("outcome",),
            registry=r,
        )
        self.saves = Counter("egress_console_saves", "Settings saved (any way)", registry=r)
        self.logins = Counter(
            "egress_console_logins", "Login attempts, by outcome", ("outcome",), registry=r
        )
        self.reports = Counter("egress_console_traffic_reports", "Traffic reports", registry=r)
        self.entries = Counter(
            "egress_console_traffic_entries", "Entries in traffic reports", registry=r
        )


_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
_SAVES: Final = (
    ("PUT", "/api/v1/settings"),
    ("POST", "/api/v1/settings/switch"),
    ("POST", "/settings"),
    ("POST", "/switch"),
)


class ConsoleMetrics:
    """ASGI middleware (the outermost): counts every request after its answer is known."""

    def __init__(self, app: ASGIApp, counters: _Counters) -> None:
        self.app = app
        self.counters = counters

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def watching(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watching)
        finally:
            self._count(scope["method"], scope["path"], status)

    def _count(self, method: str, path: str, status: int) -> None:
        c = self.counters
        c.requests.labels(method if method in _METHODS else "other", str(status)).inc()
        if path == "/api/v1/settings" and method == "GET":
            outcome = {304: "unchanged", 200: "changed"}.get(status, "refused")
            c.polls.labels(outcome).inc()
        elif path in ("/login", "/api/v1/login") and method == "POST":
            ok = status in (200, 303)
            c.logins.labels("ok" if ok else "limited" if status == 429 else "refused").inc()
        elif status in (200, 303) and (
            (method, path) in _SAVES
            or (method == "POST" and path.startswith(("/history/", "/api/v1/history/")))
        ):
            c.saves.inc()


def _metrics(app: Any) -> _Counters | None:
    counters: _Counters | None = getattr(app.state, "console_metrics", None)
    return counters


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """The console's counters (no secret, no value a user typed)."""
    counters = _metrics(request.app)
    if counters is None:
        return Response("prometheus_client is not installed\n", 404, media_type="text/plain")
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(counters.registry), media_type=CONTENT_TYPE_LATEST)


def install(app: FastAPI) -> None:
    """Add the traffic API, the page and ``/metrics`` to ``app`` (its outermost middleware
    counts requests when prometheus_client is installed)."""
    app.include_router(router)
    try:
        counters = _Counters()
    except ImportError:
        app.state.console_metrics = None
        return
    app.state.console_metrics = counters
    app.add_middleware(ConsoleMetrics, counters=counters)
