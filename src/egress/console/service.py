"""The console's operations, shared by the API and the pages: read, validate, save, switch, roll
back, explain, render, check, and manage tokens, each change audited with its actor and address.

Every save validates the whole document first, with the same loader as ``egress validate``
(:func:`egress.settings.load_settings_from_mapping`); a refused document raises
:class:`~egress.errors.ConfigError` with every problem, and nothing is stored. The proxy password
is kept by the store apart from the documents, passed to the loader as a
:class:`~egress.redact.Secret`, and never returned, logged, audited or diffed.
"""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from egress.catalog import Destination, load_catalog
from egress.console.auth import LoginLimits, TokenCache, digest, new_api_token
from egress.console.diff import DiffLine, diff_documents, password_line
from egress.console.poll import FreshNumber
from egress.console.preflight import PreflightRun, PreflightRuns
from egress.console.store import (
    KEEP,
    Keep,
    PreflightRecord,
    StaleVersion,
    Store,
    StoreError,
    Token,
    Version,
)
from egress.errors import ConfigError, Problem
from egress.redact import Secret, printable
from egress.render import KINDS, Artifact, RenderOptions, renderer
from egress.router import Decision, Rule, routing_notes
from egress.settings import Settings, load_settings_from_mapping

__all__ = ["KINDS", "ConsoleService", "Current", "NoSettings", "StaleVersion"]

REFUSED_KEYS: Final = {
    "password_file": (
        "is a file on the console's machine, which the console does not read",
        'set the password itself with "password": {"set": "..."} (it is stored apart, never shown)',
    ),
    "ca_file": (
        "is a file on the console's machine, which the console does not read",
        "paste the PEM into proxy.ca_pem instead",
    ),
    "password": (
        "does not belong in the settings document",
        'send it beside the document as "password": {"set": "..."}',
    ),
}
"""``proxy.*`` keys a stored document may not hold, with the reason and the fix."""


class PreflightBusy(Exception):
    """A preflight is already running (one at a time); ``run_id`` names it."""

    def __init__(self, run_id: str) -> None:
        super().__init__(
            "a preflight is already running; wait for it to end (the Preflight page follows it) "
            "and run again"
        )
        self.run_id = run_id


class NoSettings(Exception):
    """Nothing has been saved yet, or the stored settings no longer load (see ``errors``)."""

    def __init__(self, message: str, errors: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.errors = list(errors)


@dataclass(frozen=True)
class Current:
    """The current version and what it compiles to (``settings`` None when it does not)."""

    version: Version | None
    settings: Settings | None
    errors: list[Problem]
    warnings: list[Problem]
    etag: str


def etag_of(number: int) -> str:
    """The ETag of a version number: ``"v3"``."""
    return f'"v{number}"'


@dataclass
class ConsoleService:
    """One console's operations over one store."""

    store: Store
    secure_cookies: bool = False
    env: Mapping[str, str] | None = None
    check_timeout: float = 10.0
    check_verify: Any = True
    limits: LoginLimits = field(default_factory=LoginLimits)
    tokens: TokenCache = field(default_factory=TokenCache)
    _cached: Current | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _fresh: FreshNumber = field(init=False, repr=False)
    _preflight: PreflightRuns | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._fresh = FreshNumber(self.store.current_number)

    @property
    def preflight(self) -> PreflightRuns:
        """The console's preflight runs (one at a time), for the page and the API alike; each
        finished run is stored as a record and audited."""
        with self._lock:
            if self._preflight is None:
                self._preflight = PreflightRuns(
                    save=self._save_run, timeout=self.check_timeout, verify=self.check_verify
                )
            return self._preflight

    def _save_run(self, run: PreflightRun) -> None:
        verdict = run.verdict or "error"
        run.record = self.store.save_preflight(
            run.actor, run.version, verdict, [r.as_dict() for r in run.results]
        )
        self.store.audit(run.actor, "preflight", f"version {run.version}: {verdict}", run.address)

    # -- reading ---------------------------------------------------------------------------------

    def etag(self) -> str:
        """The current version's ETag, from one indexed query."""
        return etag_of(self.store.current_number())

    async def poll_number(self) -> int:
        """The current version's number for the poll path, from a query that began after this
        call did (another console on the same store may have saved a moment ago; see
        :mod:`egress.console.poll`), shared with the polls that arrive meanwhile."""
        return await self._fresh.get()

    def current(self) -> Current:
        """The current version, compiled once per version (and password generation)."""
        version = self.store.current()
        cached = self._cached
        if (
            cached is not None
            and cached.version is not None
            and version is not None
            and cached.version.number == version.number
            and cached.version.password_generation == version.password_generation
        ):
            return cached
        if version is None:
            return Current(None, None, [], [], etag_of(0))
        settings: Settings | None = None
        errors: list[Problem] = []
        warnings: list[Problem] = []
        try:
            settings = self._load(version.document, self.store.password(), version.number)
            warnings = [*settings.warnings, *routing_notes(settings.router())]
        except ConfigError as exc:
            errors, warnings = list(exc.problems), list(exc.warnings)
        current = Current(version, settings, errors, warnings, etag_of(version.number))
        with self._lock:
            self._cached = current
        return current

    def settings(self) -> Settings:
        """The current settings; :class:`NoSettings` when there are none that load."""
        current = self.current()
        if current.settings is None:
            if current.version is None:
                raise NoSettings("no settings have been saved yet; save them first")
            raise NoSettings(
                f"the stored settings (version {current.version.number}) no longer load; "
                "fix them on the Settings page",
                current.errors,
            )
        return current.settings

    def validation(self) -> tuple[list[Problem], list[Problem]]:
        """The current version's (errors, warnings), as ``egress validate`` lists them."""
        current = self.current()
        return current.errors, current.warnings

    def _load(self, document: Mapping[str, Any], password: Secret | None, number: int) -> Settings:
        try:
            return load_settings_from_mapping(
                dict(document),
                source=f"console version {number}",
                env=os.environ if self.env is None else self.env,
                password=password,
            )
        except ConfigError as exc:
            raise ConfigError([_console_problem(p) for p in exc.problems], exc.warnings) from None

    # -- changing --------------------------------------------------------------------------------

    def check_document(
        self, document: object, password: Secret | Keep | None = KEEP
    ) -> tuple[dict[str, Any], Settings]:
        """``document`` validated as it would be saved; ConfigError with every problem if not."""
        problems: list[Problem] = []
        if not isinstance(document, dict):
            raise ConfigError(
                [Problem("", "the settings must be a JSON object", "send an egress.yaml as JSON")]
            )
        proxy = document.get("proxy")
        if isinstance(proxy, dict):
            for key, (message, hint) in REFUSED_KEYS.items():
                if key in proxy:
                    problems.append(Problem(f"proxy.{key}", message, hint))
        if problems:
            raise ConfigError(problems)
        secret = self.store.password() if isinstance(password, Keep) else password
        settings = self._load(document, secret, 0)
        return copy.deepcopy(document), settings

    def save(
        self,
        document: object,
        *,
        actor: str,
        address: str,
        expected: int | None,
        password: Secret | Keep | None = KEEP,
        action: str = "save",
        note: str = "",
    ) -> Version:
        """Validate ``document`` whole, then store it as a new version (atomically with the
        password change); ConfigError or StaleVersion store nothing. Audited."""
        clean, _ = self.check_document(document, password)
        version = self.store.save(
            clean, author=actor, action=action, note=note, expected=expected, password=password
        )
        detail = f"version {version.number}"
        if note:
            detail += f": {note}"
        if not isinstance(password, Keep):
            detail += "; proxy password " + ("cleared" if password is None else "replaced")
        self.store.audit(actor, f"settings.{action}", detail, address)
        return version

    def set_enabled(
        self, enabled: bool, *, actor: str, address: str, expected: int | None
    ) -> Version:
        """The current document with ``proxy.enabled`` flipped, saved as a new version."""
        current = self.store.current()
        if current is None:
            raise NoSettings("no settings have been saved yet; save them before the switch")
        document = copy.deepcopy(current.document)
        proxy = document.get("proxy")
        if not isinstance(proxy, dict):
            proxy = document["proxy"] = {}
        proxy["enabled"] = enabled
        state = "on" if enabled else "off"
        return self.save(
            document,
            actor=actor,
            address=address,
            expected=current.number if expected is None else expected,
            action=f"switch-{state}",
            note=f"proxy switched {state}",
        )

    def rollback(self, number: int, *, actor: str, address: str, expected: int | None) -> Version:
        """A new version whose document is version ``number``'s (the password stays as it is)."""
        old = self.store.version(number)
        if old is None:
            raise KeyError(number)
        return self.save(
            old.document,
            actor=actor,
            address=address,
            expected=expected,
            action="rollback",
            note=f"rolled back to version {number}",
        )

    # -- history ---------------------------------------------------------------------------------

    def diff(self, number: int) -> list[DiffLine]:
        """What version ``number`` changed against the one before it (KeyError if unknown)."""
        version = self.store.version(number)
        if version is None:
            raise KeyError(number)
        before = self.store.version(number - 1) if number > 1 else None
        lines = diff_documents(before.document if before else {}, version.document)
        line = password_line(
            before.password_generation if before else 0, version.password_generation
        )
        if line is not None:
            lines.append(line)
        return lines

    # -- routes and artifacts --------------------------------------------------------------------

    def explain(self, url: str, warehouse: str | None = None) -> Decision:
        """The router's decision for ``url`` (URLError/ValueError for one it cannot route)."""
        return self.settings().router().decide(url, warehouse=warehouse)

    def rules(self) -> list[Rule]:
        return list(self.settings().router().rules())

    def catalog_routes(self) -> list[tuple[Destination, Decision]]:
        """Every catalog destination with the route its representative URL takes."""
        router = self.settings().router()
        return [
            (d, router.decide(d.url, warehouse=d.warehouse)) for d in load_catalog().destinations
        ]

    def artifact(self, kind: str) -> Artifact:
        """One rendered artifact for the current settings (KeyError for an unknown kind)."""
        if kind not in KINDS:
            raise KeyError(kind)
        return renderer(kind)(self.settings(), RenderOptions())

    # -- preflight -------------------------------------------------------------------------------

    def check(
        self, urls: Sequence[str] = (), *, actor: str, address: str
    ) -> tuple[PreflightRecord, list[dict[str, object]]]:
        """Run ``egress check`` on the current settings (plus ``urls``) and wait for it; the
        record is stored. A run already going (started from the page) is refused, not joined,
        so the answer is always for this caller's URLs."""
        from egress.check import probes_for
        from egress.router import parse_target

        for url in urls:
            parse_target(url)  # URLError before anything runs
        settings = self.settings()
        current = self.current()
        number = current.version.number if current.version is not None else 0
        probes = probes_for(settings, None, list(urls))
        run, started = self.preflight.start(
            settings, probes, actor=actor, version=number, address=address
        )
        if not started:
            raise PreflightBusy(run.id)
        run.wait()
        if run.record is None:
            raise StoreError(run.error or "the preflight's result was not stored")
        return run.record, [r.as_dict() for r in run.results]

    # -- tokens ----------------------------------------------------------------------------------

    def create_token(self, name: str, role: str, *, actor: str, address: str) -> tuple[Token, str]:
        """A new API token: the stored row and the token text (shown once, never stored)."""
        text = new_api_token()
        token = self.store.create_token(printable(name), role, digest(text), actor)
        self.store.audit(actor, "token.create", f"{token.name!r} ({role})", address)
        return token, text

    def revoke_token(self, token_id: int, *, actor: str, address: str) -> Token:
        """Revoke a token (KeyError if unknown); this process forgets its cached lookups."""
        token = next((t for t in self.store.tokens() if t.id == token_id), None)
        if token is None:
            raise KeyError(token_id)
        self.store.revoke_token(token_id)
        self.tokens.clear()
        self.store.audit(actor, "token.revoke", f"{token.name!r} ({token.role})", address)
        return token


def _console_problem(problem: Problem) -> Problem:
    """A loader's problem as the console says it: the console keeps the proxy password itself,
    so "password_file is missing" is about the password the operator has not typed yet."""
    if problem.field == "proxy.password_file" and "missing" in problem.message:
        return Problem(
            "proxy.password",
            "is missing while a proxy user name is set",
            "type the proxy password, or clear the user name",
        )
    if "proxy.password_file" in problem.hint:  # e.g. credentials written into proxy.url
        hint = problem.hint.replace("proxy.password_file", "the proxy password (stored apart)")
        return Problem(problem.field, problem.message, hint)
    return problem
