"""Live settings: where a running component gets its newest valid settings without a restart.

>>> from egress import Settings
>>> from egress.sources import StaticSource
>>> with StaticSource(Settings.from_proxy("http://proxy:3128")) as source:
...     snapshot = source.current()
>>> snapshot.version, snapshot.settings.proxy.enabled
('static', True)

Three sources share one shape (:class:`SettingsSource`): :meth:`~SettingsSource.current` reads
one attribute (no I/O, no lock: the clients call it once per request), a daemon thread replaces
that attribute with a new frozen :class:`Snapshot` when a *valid* change arrives, and
subscribers are told after each reload.

- :class:`StaticSource`: the settings given, for ever (what ``Client(settings)`` means).
- :class:`FileSource`: a mounted ``egress.yaml``. Kubernetes mounts a ConfigMap as
  ``egress.yaml -> ..data/egress.yaml`` where ``..data -> ..2026_11_30_12_00_00.123`` is swapped
  with one ``rename``; an operator may also edit the file in place. Each poll resolves the whole
  symlink chain, and reloads when the content's hash differs from the last one seen (the
  resolved target's identity, ``mtime_ns`` and size make the version).
- :class:`ConsoleSource`: ``GET /api/v1/settings`` of the admin console with ``If-None-Match``
  (a ``304`` costs the console one indexed read), backing off exponentially (with jitter, to
  30 s) while the console is down or answers 5xx. The console never returns the proxy password:
  a component that needs it mounts it and passes ``password_file=``.

A broken file or an invalid answer keeps the last good settings and logs why, once per distinct
problem, on the ``egress.sources`` logger (never a secret: messages come from the settings
loader, which redacts, and the token is never shown). A source whose first load fails raises
:class:`SettingsSourceError` unless it was given ``initial=`` settings to start with.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol, Self, runtime_checkable

from egress import observe
from egress.errors import ConfigError, EgressError, Problem
from egress.redact import Secret, mask_url, shown
from egress.settings import CONFIG_LIMIT, Settings, load_settings_from_mapping
from egress.settings.fields import Problems
from egress.settings.files import read_regular_file, read_secret_file
from egress.settings.yaml_file import parse_yaml

if TYPE_CHECKING:
    import ssl

__all__ = [
    "DEFAULT_INTERVAL",
    "MAX_BACKOFF",
    "ConsoleSource",
    "FileSource",
    "SettingsSource",
    "SettingsSourceError",
    "Snapshot",
    "StaticSource",
]

log = logging.getLogger("egress.sources")

DEFAULT_INTERVAL: Final = 1.0
"""Seconds between two polls: a change is seen after interval/2 on average."""
MAX_BACKOFF: Final = 30.0
"""The longest wait between two polls of a console that is down or failing."""
SETTINGS_PATH: Final = "/api/v1/settings"
ANSWER_LIMIT: Final = CONFIG_LIMIT
"""The largest settings document read from the console (as for a file)."""


class SettingsSourceError(EgressError):
    """A source could not load its first settings (and was given no ``initial=``)."""


@dataclass(frozen=True)
class Snapshot:
    """One valid state of a source: the settings, their version, and when they were loaded.

    ``version`` is ``file:<mtime_ns>:<size>`` for a file, the console's ETag (``"v3"``), or
    ``static``/``initial``. A request is planned and carried out with one snapshot.
    """

    settings: Settings
    version: str
    loaded_at: float


@runtime_checkable
class SettingsSource(Protocol):
    """What the clients follow: the current snapshot, reload notifications, and ``close``."""

    def current(self) -> Snapshot:
        """The newest valid snapshot; no I/O and no lock (one attribute read)."""
        ...

    def close(self) -> None:
        """Stop following (a polling source stops its thread)."""
        ...

    def subscribe(self, fn: Callable[[Snapshot], None]) -> None:
        """Call ``fn(snapshot)`` after each reload."""
        ...


class _Source:
    """What every source shares: the current snapshot, subscribers, problems logged once."""

    kind: ClassVar[str] = "static"

    def __init__(self) -> None:
        self._subscribers: list[Callable[[Snapshot], None]] = []
        self._problem: str | None = None
        """The problem last logged; the same one is not logged again until it changed."""
        self._snapshot: Snapshot

    def current(self) -> Snapshot:
        return self._snapshot

    def subscribe(self, fn: Callable[[Snapshot], None]) -> None:
        self._subscribers.append(fn)

    def close(self) -> None:
        """Nothing to stop for static settings."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _describe(self) -> str:
        return type(self).__name__

    def _publish(self, settings: Settings, version: str) -> Snapshot:
        snapshot = Snapshot(settings, version, time.time())
        self._snapshot = snapshot  # one attribute store: readers see the old or the new one
        if self._problem is not None:
            log.info("%s: settings are valid again (version %s)", self._describe(), version)
        self._problem = None
        log.info("%s: loaded settings version %s", self._describe(), version)
        observe.settings_loaded(self.kind, version)
        for fn in list(self._subscribers):
            try:
                fn(snapshot)
            except Exception:
                log.exception("%s: a subscriber failed on version %s", self._describe(), version)
        return snapshot

    def _reject(self, reason: str) -> None:
        """Keep the last good settings; log ``reason`` unless it is the problem logged last."""
        if reason == self._problem:
            return
        self._problem = reason
        kept = getattr(self, "_snapshot", None)
        log.warning(
            "%s: kept the last good settings (version %s): %s",
            self._describe(),
            kept.version if kept is not None else "none",
            reason,
        )
        observe.settings_rejected(self.kind, reason)

    def _recovered(self) -> None:
        """The source is readable again with the settings already in use."""
        if self._problem is not None:
            log.info("%s: back to normal (version %s)", self._describe(), self._snapshot.version)
            self._problem = None


class StaticSource(_Source):
    """The given settings, never changing."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self._snapshot = Snapshot(settings, "static", time.time())

    def __repr__(self) -> str:
        return "<StaticSource>"


class _Polling(_Source):
    """A source with a daemon thread that polls until :meth:`close`."""

    def __init__(self, interval: float, initial: Settings | None) -> None:
        super().__init__()
        if not interval > 0:
            raise ValueError(f"interval: {shown(interval)} is not a positive number of seconds")
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            self._first_load()
        except SettingsSourceError:
            if initial is None:
                raise
            self._snapshot = Snapshot(initial, "initial", time.time())
        self._thread = threading.Thread(
            target=self._run, name=f"egress-{self.kind}-source", daemon=True
        )
        self._thread.start()

    def _first_load(self) -> None:
        raise NotImplementedError

    def _poll(self) -> float:
        """One poll; returns the seconds to wait before the next one."""
        raise NotImplementedError

    def _run(self) -> None:
        delay = self.interval
        while not self._stop.wait(delay):
            try:
                delay = self._poll()
            except Exception:  # a bug must not end the thread: keep the last good settings
                log.exception("%s: poll failed", self._describe())
                delay = self.interval

    def close(self) -> None:
        """Stop the thread (waits for a poll in progress, at most its timeout)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    @property
    def closed(self) -> bool:
        return self._stop.is_set()


# ---------------------------------------------------------------------------------------------
# FileSource


@dataclass(frozen=True)
class _FileState:
    """What one read of the file saw: the resolved target's identity and the content's hash."""

    target: str
    device: int
    inode: int
    mtime_ns: int
    size: int
    digest: str
    data: bytes


class FileSource(_Polling):
    """``egress.yaml`` from a file, a mounted ConfigMap included, followed by a polling thread.

    ``env`` is the environment the settings may read (``service_ip: auto``); default
    ``os.environ``. ``initial`` is used when the first load fails.
    """

    kind = "file"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        interval: float = DEFAULT_INTERVAL,
        env: Mapping[str, str] | None = None,
        initial: Settings | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self._env = env
        self._seen: str | None = None
        """The digest of the content last parsed (good or bad): it is not parsed again."""
        self._good: str | None = None
        """The digest of the content in use."""
        self._last_version: str | None = None
        super().__init__(interval, initial)

    def _describe(self) -> str:
        return f"FileSource {shown(self.path)}"

    def __repr__(self) -> str:
        return f"<FileSource {shown(self.path)} every {self.interval:g}s>"

    def _read(self) -> _FileState:
        """The file's content and identity; ConfigError when it cannot be read whole.

        A kubelet swap removes the old directory right after the rename, so a chain resolved
        just before it can vanish: each failure is retried with the chain resolved afresh.
        """
        error: ConfigError | None = None
        for _ in range(3):
            try:
                state = self._read_once()
            except ConfigError as exc:
                error = exc
                continue
            if state is not None:
                return state
            error = ConfigError(
                [_problem(f"{shown(self.path)} kept changing while it was read", "none needed")]
            )
        assert error is not None
        raise error

    def _read_once(self) -> _FileState | None:
        """One read; None when the file changed while it was read."""
        target = os.path.realpath(self.path)
        try:
            before = os.stat(target)
        except OSError as exc:
            reason = exc.strerror or "cannot be read"
            fix = "mount or write the settings file there"
            raise ConfigError(
                [_problem(f"{shown(self.path)} cannot be read ({reason})", fix)]
            ) from None
        p = Problems()
        data = read_regular_file(
            target, "config", CONFIG_LIMIT, p, fix="point it at the YAML settings file"
        )
        if data is None:
            raise ConfigError(p.errors)
        try:
            after = os.stat(target)
        except OSError:
            return None
        if (before.st_ino, before.st_mtime_ns, before.st_size) != (
            after.st_ino,
            after.st_mtime_ns,
            after.st_size,
        ) or len(data) != after.st_size:
            return None
        return _FileState(
            target,
            after.st_dev,
            after.st_ino,
            after.st_mtime_ns,
            after.st_size,
            hashlib.sha256(data).hexdigest(),
            data,
        )

    def _parse(self, state: _FileState) -> Settings:
        try:
            text = state.data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ConfigError(
                [_problem(f"{shown(self.path)} is not UTF-8 text", "save the file as UTF-8")]
            ) from None
        raw = parse_yaml(text, "config", self.path)
        if raw is None:
            # an empty file is what an in-place rewrite looks like halfway (truncated, not yet
            # written): taking it as "all defaults" would switch the proxy off for a poll
            raise ConfigError(
                [
                    _problem(
                        f"{shown(self.path)} is empty (being rewritten?); the last settings stay",
                        "write the settings into it, or {} to mean every default",
                    )
                ]
            )
        return load_settings_from_mapping(raw, source=self.path, env=self._env)

    def _version(self, state: _FileState) -> str:
        version = f"file:{state.mtime_ns}:{state.size}"
        if version == self._last_version:  # same mtime and size, other content
            version = f"{version}:{state.digest[:12]}"
        return version

    def _first_load(self) -> None:
        try:
            state = self._read()
            settings = self._parse(state)
        except ConfigError as exc:
            self._problem = str(exc)
            raise SettingsSourceError(
                f"settings file {shown(self.path)} could not be loaded: {exc} "
                "(fix the file, or give initial= settings to start with)"
            ) from exc
        self._seen = self._good = state.digest
        self._last_version = self._version(state)
        self._publish(settings, self._last_version)

    def _poll(self) -> float:
        try:
            state = self._read()
        except ConfigError as exc:
            self._seen = None  # whatever comes back is looked at
            self._reject(str(exc))
            return self.interval
        if state.digest == self._seen:
            return self.interval
        self._seen = state.digest
        if state.digest == self._good:
            self._recovered()
            return self.interval
        try:
            settings = self._parse(state)
        except ConfigError as exc:
            self._reject(str(exc))
            return self.interval
        self._good = state.digest
        self._last_version = self._version(state)
        self._publish(settings, self._last_version)
        return self.interval


def _problem(message: str, hint: str) -> Problem:
    return Problem("config", message, hint)


# ---------------------------------------------------------------------------------------------
# ConsoleSource


class ConsoleSource(_Polling):
    """Settings from the admin console's API, polled with ``If-None-Match``.

    ``url`` is the console's base URL (``http://egress-console:8080``); ``token`` an API token
    (a read token is enough). ``verify`` is the trust for the console's TLS (True, a CA file or
    an ``ssl.SSLContext``). The console is always reached directly (no proxy, no environment).
    ``password_file`` holds the proxy password (the console never sends it); it is read again
    when that file changes. ``env`` and ``initial`` as for :class:`FileSource`.
    """

    kind = "console"

    def __init__(
        self,
        url: str,
        token: str | Secret,
        *,
        interval: float = DEFAULT_INTERVAL,
        timeout: float = 5.0,
        verify: bool | str | ssl.SSLContext = True,
        password_file: str | None = None,
        env: Mapping[str, str] | None = None,
        initial: Settings | None = None,
        max_backoff: float = MAX_BACKOFF,
    ) -> None:
        import httpx  # the only HTTP library used here; no console extras

        base = url.rstrip("/")
        self.url = base if base.endswith(SETTINGS_PATH) else base + SETTINGS_PATH
        self._token = token if isinstance(token, Secret) else Secret(token)
        self.password_file = password_file
        self._env = env
        self._max_backoff = max(max_backoff, interval)
        self._failures = 0
        self._etag: str | None = None
        """The ETag of the last document looked at (good or refused: not fetched again)."""
        self._document: dict[str, Any] | None = None
        self._password_state: tuple[Any, ...] | None = None
        self._http = httpx.Client(
            trust_env=False, timeout=timeout, verify=verify, follow_redirects=False
        )
        try:
            super().__init__(interval, initial)
        except BaseException:
            self._http.close()
            raise

    def _describe(self) -> str:
        return f"ConsoleSource {mask_url(self.url)}"

    def __repr__(self) -> str:
        return f"<ConsoleSource {mask_url(self.url)} every {self.interval:g}s>"

    def close(self) -> None:
        super().close()
        self._http.close()

    # -- one poll ------------------------------------------------------------------------------

    def _fetch(self) -> tuple[str, dict[str, Any]] | None:
        """The console's new document and ETag; None when unchanged (304).

        Raises ``_Down`` (back off) or ``_Refused`` (a problem, polled again at the interval).
        """
        import httpx

        headers = {
            "Authorization": f"Bearer {self._token.reveal()}",
            "Accept": "application/json",
        }
        if self._etag is not None:
            headers["If-None-Match"] = self._etag
        try:
            response = self._http.get(self.url, headers=headers)
        except httpx.TimeoutException:
            raise _Down("the console did not answer in time") from None
        except httpx.HTTPError as exc:
            raise _Down(f"the console cannot be reached ({type(exc).__name__})") from None
        status = response.status_code
        if status == 304:
            return None
        if status >= 500:
            raise _Down(f"the console answered {status}")
        if status in (401, 403):
            raise _Refused(
                f"the console refused the token ({status}): give the component a valid API token"
            )
        if status != 200:
            raise _Refused(f"the console answered {status} to GET {SETTINGS_PATH}")
        etag = response.headers.get("etag")
        if not etag:
            raise _Refused("the console's answer has no ETag (is this an egress console?)")
        if len(response.content) > ANSWER_LIMIT:
            raise _Refused(f"the console's answer is larger than {ANSWER_LIMIT} bytes")
        try:
            document = response.json()
        except ValueError:
            raise _Refused("the console's answer is not JSON") from None
        if not isinstance(document, dict):
            raise _Refused("the console's answer is not a JSON object")
        return etag, document

    def _password(self) -> Secret | None:
        if self.password_file is None:
            return None
        p = Problems()
        secret = read_secret_file(self.password_file, "password_file", p)
        if secret is None:
            raise ConfigError(p.errors)
        return secret

    def _password_fingerprint(self) -> tuple[Any, ...] | None:
        if self.password_file is None:
            return None
        target = os.path.realpath(self.password_file)
        try:
            info = os.stat(target)
        except OSError:
            return (target, None)
        return (target, info.st_ino, info.st_mtime_ns, info.st_size)

    def _load(self, etag: str, document: dict[str, Any]) -> None:
        """Validate ``document`` with the password; publish it, or raise ConfigError."""
        fingerprint = self._password_fingerprint()
        try:
            settings = load_settings_from_mapping(
                dict(document),
                source=f"console version {etag}",
                env=self._env,
                password=self._password(),
            )
        except ConfigError as exc:
            if self.password_file is None and any(
                problem.field == "proxy.password_file" for problem in exc.problems
            ):
                raise ConfigError(
                    [
                        Problem(
                            "password_file",
                            "the console's settings name a proxy user, and the console never "
                            "sends the proxy password",
                            "mount the proxy password and pass password_file= to ConsoleSource",
                        )
                    ]
                ) from None
            raise
        self._password_state = fingerprint
        version = etag
        previous = getattr(self, "_snapshot", None)
        if previous is not None and previous.version.split("+")[0] == etag:
            version = f"{etag}+{time.monotonic_ns()}"  # the password file changed alone
        self._publish(settings, version)

    def _first_load(self) -> None:
        try:
            fetched = self._fetch()
            if fetched is None:  # no If-None-Match was sent: cannot happen
                raise _Refused("the console answered 304 to a first request")
            etag, document = fetched
            self._etag, self._document = etag, document
            self._load(etag, document)
        except (_Down, _Refused, ConfigError) as exc:
            self._problem = str(exc)
            raise SettingsSourceError(
                f"no settings from the console at {mask_url(self.url)}: {exc} "
                "(check the URL and the token, or give initial= settings to start with)"
            ) from None

    def _poll(self) -> float:
        try:
            fetched = self._fetch()
        except _Down as exc:
            self._failures += 1
            self._reject(str(exc))
            return self._backoff()
        except _Refused as exc:
            self._failures = 0
            self._reject(str(exc))
            return self.interval
        self._failures = 0
        if fetched is not None and fetched == (self._etag, self._document):
            fetched = None  # a server that ignores If-None-Match: the same version again
        if fetched is None:
            if (
                self._password_state is not None
                and self._document is not None
                and self._password_fingerprint() != self._password_state
            ):
                self._try_load(self._etag or "", self._document)
                return self.interval
            self._recovered()
            return self.interval
        etag, document = fetched
        self._etag, self._document = etag, document
        self._try_load(etag, document)
        return self.interval

    def _try_load(self, etag: str, document: dict[str, Any]) -> None:
        try:
            self._load(etag, document)
        except ConfigError as exc:
            self._password_state = self._password_fingerprint()
            self._reject(f"version {etag} refused: {exc}")

    def _backoff(self) -> float:
        """Exponential from the interval to ``max_backoff``, with jitter (half to full)."""
        ceiling = min(self._max_backoff, self.interval * float(2 ** min(self._failures, 16)))
        return ceiling * random.uniform(0.5, 1.0)  # jitter, not a secret


class _Down(Exception):
    """The console is unreachable or failing (5xx): back off."""


class _Refused(Exception):
    """The console answered, but not with usable settings."""
