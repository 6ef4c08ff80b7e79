"""``egress webhook``: the admission webhook over HTTPS (uvicorn), ``POST /mutate`` and
``GET /healthz``.

The decisions are :mod:`egress.webhook.admission`'s; this module reads bodies (at most
:data:`~egress.webhook.admission.MAX_BODY` bytes), keeps the plan in step with the settings file
(its size and mtime are looked at no more than once a second, so a ConfigMap update reaches new
pods without a restart; a file that stops loading keeps the last good plan, logged), and logs
each injection (not dry runs).
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from egress.errors import ConfigError, UsageError
from egress.settings import Settings, load_environment, load_yaml
from egress.webhook.admission import MAX_BODY, BadReview, Plan, answer, plan

log = logging.getLogger("egress.webhook")

DEFAULT_PORT: Final = 8443
CHECK_SECONDS: Final = 1.0
"""How often, at most, the settings file's size and mtime are looked at."""


class PlanSource:
    """The current :class:`Plan`: from ``--config F`` (followed as it changes) or, without a
    file, from this process's proxy variables (fixed)."""

    def __init__(
        self,
        path: str | None,
        *,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._env = env
        self._clock = clock
        self._lock = threading.Lock()
        self._checked = clock()
        if path is None:
            self._stamp: tuple[int, int] | None = None
            self._plan = plan(load_environment(env), "environment")
        else:
            self._stamp = self._stat()
            self._plan = self._load(self._stamp)

    def _stat(self) -> tuple[int, int]:
        assert self.path is not None
        st = os.stat(self.path)
        return (st.st_mtime_ns, st.st_size)

    def _load(self, stamp: tuple[int, int]) -> Plan:
        assert self.path is not None
        settings: Settings = load_yaml(self.path, env=self._env)
        loaded = plan(settings, f"file:{stamp[0]}:{stamp[1]}")
        for note in loaded.notes:
            log.warning("%s", note)
        return loaded

    def current(self) -> Plan:
        """The plan; the file is looked at again when a second has passed since last time."""
        if self.path is None or self._clock() - self._checked < CHECK_SECONDS:
            return self._plan
        with self._lock:
            if self._clock() - self._checked < CHECK_SECONDS:
                return self._plan
            self._checked = self._clock()
            try:
                stamp = self._stat()
                if stamp != self._stamp:
                    self._plan = self._load(stamp)
                    self._stamp = stamp
                    log.info("settings reloaded: %s", self._plan.version)
            except (OSError, ConfigError) as exc:
                log.warning(
                    "%s no longer loads, so pods get the settings of %s: %s",
                    self.path,
                    self._plan.version,
                    exc,
                )
                self._stamp = None  # try again at the next look
        return self._plan


async def _body(request: Request) -> bytes:
    """The request body, or :class:`BadReview` (413) once it passes the limit."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise BadReview(f"the body is {declared} bytes, more than the {MAX_BODY} allowed", 413)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise BadReview(f"the body is more than the {MAX_BODY} bytes allowed", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(source: PlanSource) -> Starlette:
    """The webhook's ASGI app."""

    async def mutate(request: Request) -> Response:
        try:
            raw = await _body(request)
            admission = answer(raw, source.current())
        except BadReview as exc:
            log.warning("refused a request from %s: %s", _client(request), exc)
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        if admission.patch and not admission.dry_run:
            log.info(
                "injected %s (%d changes, settings %s)",
                admission.pod,
                len(admission.patch),
                source.current().version,
            )
        return Response(
            json.dumps(admission.review, separators=(",", ":")),
            media_type="application/json",
        )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "settings": source.current().version})

    return Starlette(
        routes=[
            Route("/mutate", mutate, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


def _client(request: Request) -> str:
    client = request.client
    return f"{client.host}:{client.port}" if client else "?"


@dataclass(frozen=True)
class WebhookOptions:
    tls_cert: str
    tls_key: str
    config: str | None = None
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT


def check_tls(cert: str, key: str) -> None:
    """:class:`UsageError` in one sentence when the certificate and key cannot be served."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        raise UsageError(
            f"cannot read {exc.filename or cert}: no such file",
            "pass --tls-cert and --tls-key as PEM files (the Secret mounted in the pod)",
        ) from None
    except (ssl.SSLError, OSError) as exc:
        raise UsageError(
            f"cannot serve TLS with --tls-cert {cert} and --tls-key {key}: "
            f"{getattr(exc, 'reason', None) or exc.strerror or 'not a PEM certificate and key'}",
            "pass the PEM certificate (chain) and its private key, which must match",
        ) from None


def serve(options: WebhookOptions, *, env: Mapping[str, str], say: Callable[[str], None]) -> int:
    """Run the webhook until stopped (Ctrl-C or SIGTERM); returns the exit code (0)."""
    import uvicorn

    from egress.console.serve import bind

    check_tls(options.tls_cert, options.tls_key)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("egress webhook: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    source = PlanSource(options.config, env=env)
    sock = bind(options.host, options.port)
    try:
        host, port = sock.getsockname()[:2]
        shown_host = f"[{host}]" if ":" in host else host
        say(f"egress webhook: https://{shown_host}:{port}/mutate")
        say(f"  settings: {options.config or 'the proxy variables'} ({source.current().version})")
        say("  stop with Ctrl-C")
        config = uvicorn.Config(
            create_app(source),
            log_level="warning",
            access_log=False,
            lifespan="off",
            ssl_certfile=options.tls_cert,
            ssl_keyfile=options.tls_key,
        )
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
    return 0
