"""Who may use the console: people by password and session, machines by API token.

- **Passwords** are stored as argon2id hashes (:func:`hash_password`, :func:`verify_password`).
- **Login** (:func:`login`) is rate-limited per account and per address (failures only); a
  refused attempt raises :class:`LoginRefused` (one sentence that never says which of the name
  or the password was wrong) or :class:`RateLimited` (seconds to wait, sent as ``Retry-After``).
- **Sessions**: the cookie holds a random token; the store keeps only its SHA-256, so a copy of
  the database opens no session. The cookie is HttpOnly, SameSite=Strict, and Secure when the
  console says so or the request came over https.
- **CSRF**: every session has its own random CSRF token; a form sends it as the field ``csrf``
  (:func:`require_csrf`), browser JavaScript as the header ``X-CSRF-Token``.
- **API tokens** (``egress_`` + 43 random characters) are shown once; the store keeps their
  SHA-256. A lookup is cached for :data:`TOKEN_CACHE_SECONDS` so that thousands of polling
  components cost no database work; a revoke clears this process's cache at once.

>>> verify_password(hash_password("correct horse"), "correct horse")
True
>>> new_api_token().startswith("egress_"), len(new_api_token())
(True, 50)
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final
from urllib.parse import quote

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import HTTPException, Request, Response

from egress.console.ratelimit import RateLimiter
from egress.console.store import Session, Token

if TYPE_CHECKING:
    from egress.console.service import ConsoleService

SESSION_COOKIE: Final = "egress_session"
SESSION_LIFETIME: Final = timedelta(hours=12)
CSRF_HEADER: Final = "X-CSRF-Token"
CSRF_FIELD: Final = "csrf"
TOKEN_PREFIX: Final = "egress_"
TOKEN_CACHE_SECONDS: Final = 5.0
"""How long a token lookup is trusted without asking the store again (a revoke made by another
console process takes at most this long to be seen here)."""
TOUCH_EVERY_SECONDS: Final = 60.0
"""A token's ``last_used_at`` is written at most this often (never on every poll)."""
ACCOUNT_LIMIT: Final = (5, 15 * 60.0)
"""Failed logins per account: 5 in 15 minutes, then wait."""
ADDRESS_LIMIT: Final = (20, 15 * 60.0)
"""Failed logins per address: 20 in 15 minutes, then wait."""
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
ROLES: Final = ("read", "admin")

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """A hash to verify against when the user does not exist (the same work either way)."""
    return _hasher.hash(secrets.token_urlsafe(16))


class LoginRefused(Exception):
    """The name or the password is wrong (the message never says which)."""


class RateLimited(Exception):
    """Too many failed logins; ``retry_after`` is the wait in whole seconds."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(
            f"too many failed logins; try again in {retry_after} second"
            f"{'s' if retry_after != 1 else ''}"
        )


class RedirectToLogin(Exception):
    """An HTML page needs a session; the app answers 303 to ``/login?next=<path>``."""

    def __init__(self, next_path: str = "/") -> None:
        self.next_path = next_path
        super().__init__(next_path)

    @property
    def location(self) -> str:
        return "/login?next=" + quote(self.next_path, safe="/")


@dataclass(frozen=True, repr=False)
class NewSession(Session):
    """A session just opened: the store's row plus the cookie's token (never stored)."""

    token: str = field(default="", repr=False)


# -- passwords -----------------------------------------------------------------------------------


def hash_password(pw: str) -> str:
    """An argon2id hash of ``pw`` (salted; parameters in the hash itself)."""
    return _hasher.hash(pw)


def verify_password(hash: str, pw: str) -> bool:
    """Whether ``pw`` matches ``hash``; False for a malformed hash too."""
    try:
        return _hasher.verify(hash, pw)
    except (VerificationError, InvalidHashError):
        return False


def new_admin_password() -> str:
    """A password for the first admin: 20 random URL-safe characters (about 120 bits)."""
    return secrets.token_urlsafe(15)


def digest(token: str) -> str:
    """The SHA-256 (hex) of a session or API token: what the store keeps instead of it."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_api_token() -> str:
    """A fresh API token: ``egress_`` and 256 random bits."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def address_of(request: Request) -> str:
    """The client's address as the connection gives it (what the audit log records)."""
    return request.client.host if request.client else ""


def _service(request: Request) -> ConsoleService:
    service: ConsoleService = request.app.state.console
    return service


def secure_request(request: Request) -> bool:
    """Whether the session cookie must be Secure: the console says so, or this is https."""
    return bool(_service(request).secure_cookies or request.url.scheme == "https")


# -- login and sessions --------------------------------------------------------------------------


@dataclass
class LoginLimits:
    """The two login rate limiters of one console process."""

    account: RateLimiter = field(default_factory=lambda: RateLimiter(*ACCOUNT_LIMIT))
    address: RateLimiter = field(default_factory=lambda: RateLimiter(*ADDRESS_LIMIT))


def login(request: Request, name: str, password: str) -> NewSession:
    """Check ``name`` / ``password`` and open a session (a :class:`NewSession`, whose ``token``
    goes into the cookie with :func:`set_session_cookie`). Audited either way.

    Raises :class:`RateLimited` while the account or the address has too many recent failures
    (checked before the password, so guessing does not go on), else :class:`LoginRefused`.
    """
    service = _service(request)
    store = service.store
    address = address_of(request)
    account_key = name.casefold()[:200]
    wait = max(
        service.limits.account.retry_after(account_key), service.limits.address.retry_after(address)
    )
    user = store.user(name)
    # a name typed in is recorded only when it is an account (not a password typed too early)
    actor = user.name if user is not None else "(unknown user)"
    if wait:
        store.audit(actor, "login.limited", f"retry after {wait} s", address)
        raise RateLimited(wait)
    ok = verify_password(user.password_hash if user else _dummy_hash(), password)
    if not ok or user is None:
        service.limits.account.failed(account_key)
        service.limits.address.failed(address)
        store.audit(actor, "login.failed", "wrong name or password", address)
        raise LoginRefused("the name or the password is wrong")
    service.limits.account.reset(account_key)
    if _hasher.check_needs_rehash(user.password_hash):  # stronger parameters since it was set
        store.set_password_hash(user.name, hash_password(password))
    token = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    session = NewSession(
        id_hash=digest(token),
        user=user.name,
        csrf=secrets.token_urlsafe(32),
        created_at=now,
        expires_at=now + SESSION_LIFETIME,
        token=token,
    )
    store.create_session(
        Session(session.id_hash, session.user, session.csrf, session.created_at, session.expires_at)
    )
    store.delete_expired_sessions(now)
    store.audit(user.name, "login", "", address)
    return session


def set_session_cookie(response: Response, session_token: str, *, secure: bool) -> None:
    """Put the session token in an HttpOnly, SameSite=Strict cookie (Secure when asked)."""
    response.set_cookie(
        SESSION_COOKIE,
        session_token,
        max_age=int(SESSION_LIFETIME.total_seconds()),
        path="/",
        httponly=True,
        samesite="strict",
        secure=secure,
    )


def logout(request: Request, response: Response) -> None:
    """End the request's session (if any) in the store and in the browser; audited."""
    session = session_of(request)
    if session is not None:
        store = _service(request).store
        store.delete_session(session.id_hash)
        store.audit(session.user, "logout", "", address_of(request))
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=secure_request(request)
    )


def session_of(request: Request) -> Session | None:
    """The request's live session (looked up once per request), or None."""
    if "egress_session" in request.scope.get("state", {}):
        cached: Session | None = request.state.egress_session
        return cached
    found: Session | None = None
    token = request.cookies.get(SESSION_COOKIE)
    if token and len(token) <= 200:
        session = _service(request).store.session(digest(token))
        if session is not None and session.expires_at > datetime.now(UTC):
            found = session
    request.state.egress_session = found
    return found


async def current_user(request: Request) -> str:
    """FastAPI dependency for HTML pages: the signed-in user, else :class:`RedirectToLogin`."""
    session = session_of(request)
    if session is None:
        path = request.url.path
        if request.url.query:
            path += "?" + request.url.query
        raise RedirectToLogin(path)
    return session.user


def csrf_token(request: Request) -> str:
    """The session's CSRF token, for a form's hidden ``csrf`` field ("" without a session)."""
    session = session_of(request)
    return session.csrf if session is not None else ""


async def require_csrf(request: Request) -> None:
    """FastAPI dependency for form posts: the ``csrf`` field must match the session's; 403."""
    session = session_of(request)
    sent = ""
    if request.method not in SAFE_METHODS:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else ""
    if session is None or not sent or not hmac.compare_digest(sent, session.csrf):
        raise HTTPException(
            403, "the form's security token is missing or out of date; reload the page and retry"
        )


# -- API tokens ----------------------------------------------------------------------------------


class TokenCache:
    """Token lookups by hash, trusted for :data:`TOKEN_CACHE_SECONDS` (unknown ones too)."""

    MAX_ENTRIES: Final = 10_000

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, tuple[float, Token | None]] = {}
        self._touched: dict[int, float] = {}
        self._lock = threading.Lock()

    def lookup(self, service: ConsoleService, token_hash: str) -> Token | None:
        """The live (not revoked) token with this hash, from the cache or the store."""
        now = self._clock()
        entry = self._entries.get(token_hash)
        if entry is not None and entry[0] > now:
            return entry[1]
        token = service.store.token_by_hash(token_hash)
        if token is not None and token.revoked:
            token = None
        with self._lock:
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()
            self._entries[token_hash] = (now + TOKEN_CACHE_SECONDS, token)
            touch = (
                token is not None
                and self._touched.get(token.id, -1e18) + TOUCH_EVERY_SECONDS <= now
            )
            if touch and token is not None:
                self._touched[token.id] = now
        if touch and token is not None:
            service.store.touch_token(token.id, datetime.now(UTC))
        return token

    def clear(self) -> None:
        """Forget every lookup (after a revoke)."""
        with self._lock:
            self._entries.clear()


def unauthorized(message: str) -> HTTPException:
    """401 with ``WWW-Authenticate: Bearer``."""
    return HTTPException(401, message, headers={"WWW-Authenticate": 'Bearer realm="egress"'})


def authorize(request: Request, role: str) -> str:
    """The actor allowed to call an API route that needs ``role`` ("read" or "admin").

    A Bearer token first; else a session (a browser's JavaScript), which must send the CSRF
    header on anything but GET/HEAD. 401 without valid credentials, 403 with too few rights.
    """
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value:
            raise unauthorized("send the API token as 'Authorization: Bearer egress_...'")
        service = _service(request)
        token = (
            service.tokens.lookup(service, digest(value))
            if value.startswith(TOKEN_PREFIX) and len(value) <= 200
            else None
        )
        if token is None:
            raise unauthorized("the API token is unknown or revoked; create one on the Tokens page")
        if role == "admin" and token.role != "admin":
            raise HTTPException(
                403, f"this needs an admin token; the token {token.name!r} is read-only"
            )
        return f"token:{token.name}"
    session = session_of(request)
    if session is None:
        raise unauthorized(
            "this needs an API token: send 'Authorization: Bearer egress_...' "
            "(create one on the Tokens page)"
        )
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not sent or not hmac.compare_digest(sent, session.csrf):
            raise HTTPException(
                403, f"a change made with a session needs the {CSRF_HEADER} header of that session"
            )
    return session.user


def require_token(role: str) -> Callable[[Request], Awaitable[str]]:
    """FastAPI dependency for API routes: the actor (a user name or ``token:<name>``)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; use one of: {', '.join(ROLES)}")

    async def dependency(request: Request) -> str:
        return authorize(request, role)

    return dependency
