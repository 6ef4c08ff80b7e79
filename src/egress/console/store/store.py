"""The console's store: settings versions, the proxy password, people, tokens, audit, preflight.

One :class:`Store` per process, on SQLite (the default, one file) or PostgreSQL (several console
processes on one database, for a highly available install). Every write is one transaction;
``save`` checks the expected version *inside* it, under a lock (``BEGIN IMMEDIATE`` on SQLite, a
``SELECT ... FOR UPDATE`` of the one ``settings_head`` row on PostgreSQL), so two processes racing
on the same version cannot both win.

What leaves the store are frozen dataclasses, never ORM objects. The proxy password lives in a
table of its own and is read only by :meth:`Store.password`; no :class:`Version` holds it. It is
stored **unencrypted**: the database's access control protects it (a SQLite file is created with
mode 0600, in a directory created if missing; on PostgreSQL, whoever can read the database can read
it). A database URL's password never appears in an error or a repr (:func:`egress.redact.mask_url`).
"""

from __future__ import annotations

import enum
import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Final, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    Executable,
    Result,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

from egress.errors import StoreError
from egress.redact import Secret, mask_url, printable, scrub, shown, split_userinfo

from .models import (
    AuditRow,
    PreflightRow,
    ProxyPasswordRow,
    SessionRow,
    SettingsHeadRow,
    SettingsVersionRow,
    TokenRow,
    UserRow,
)
from .traffic import TrafficMethods

__all__ = [
    "KEEP",
    "AlreadyExists",
    "AuditEntry",
    "Keep",
    "PreflightRecord",
    "Session",
    "StaleVersion",
    "Store",
    "StoreError",
    "Token",
    "User",
    "Version",
    "database_url",
]

SQLITE_BUSY_TIMEOUT_MS: Final = 10_000
"""How long a SQLite connection waits for another's write lock before giving up."""

TOUCH_EVERY: Final = timedelta(seconds=60)
"""``touch_token`` writes a token's ``last_used_at`` at most this often (polls must not write)."""

MIGRATION_LOCK: Final = 0x6567726573735F31
"""The PostgreSQL advisory lock key held while migrating ("egress_1" as a 64-bit integer)."""

_URL_FIX = (
    "give sqlite:///path/to/egress.db, postgresql://user:password@host:5432/dbname "
    "or a plain file path"
)


class Keep(enum.Enum):
    """The type of :data:`KEEP`: "leave the proxy password as it is"."""

    KEEP = "keep"

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Final = Keep.KEEP
"""``save(..., password=KEEP)``: the stored proxy password stays as it is."""


class StaleVersion(Exception):
    """The version the caller read (its If-Match) is no longer the current one; nothing stored."""

    def __init__(self, current: int, expected: int | None = None) -> None:
        self.current = current
        self.expected = expected
        read = f"version {expected}" if expected is not None else "an older version"
        super().__init__(
            f"the settings changed since {read} was read: the current version is {current}; "
            "reload them and apply your change again"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (StaleVersion, (self.current, self.expected))


@dataclass(frozen=True)
class Version:
    """One saved version of the settings. Its ETag is ``f'"v{number}"'``; never holds a secret."""

    number: int
    document: dict[str, Any]
    password_generation: int
    author: str
    action: str
    note: str
    created_at: datetime

    @property
    def etag(self) -> str:
        """The HTTP ETag of this version."""
        return f'"v{self.number}"'


@dataclass(frozen=True)
class User:
    """A console user; only the argon2 hash of the password is kept."""

    name: str
    password_hash: str
    created_at: datetime

    def __repr__(self) -> str:
        return f"User(name={self.name!r}, created_at={self.created_at!r})"


@dataclass(frozen=True)
class Token:
    """A machine token; only its hash is kept. ``role`` is ``read`` or ``admin``."""

    id: int
    name: str
    role: str
    token_hash: str
    created_by: str
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool


@dataclass(frozen=True)
class AuditEntry:
    """One line of the audit log."""

    id: int
    at: datetime
    actor: str
    action: str
    detail: str
    address: str


@dataclass(frozen=True)
class Session:
    """A login session; ``id_hash`` is the hash of the cookie value, ``csrf`` its form token."""

    id_hash: str
    user: str
    csrf: str
    created_at: datetime
    expires_at: datetime

    def __repr__(self) -> str:
        return (
            f"Session(user={self.user!r}, created_at={self.created_at!r}, "
            f"expires_at={self.expires_at!r})"
        )


@dataclass(frozen=True)
class PreflightRecord:
    """One preflight run: who, against which version, the verdict and every check's result."""

    id: int
    at: datetime
    actor: str
    version: int
    verdict: str
    results: list[dict[str, Any]]


def database_url(text: str) -> str:
    """The SQLAlchemy URL for ``--db``: a SQLite or PostgreSQL URL, or a plain path (SQLite).

    >>> database_url("var/egress.db")
    'sqlite:///var/egress.db'
    >>> database_url("postgres://console:s3cret@db:5432/egress")
    'postgresql+psycopg://console:s3cret@db:5432/egress'
    >>> database_url("postgresql://console:p@ss/w:rd@db/egress")  # as typed: encoded
    'postgresql+psycopg://console:p%40ss%2Fw%3Ard@db/egress'
    >>> database_url("mysql://u:s3cret@db/x")
    Traceback (most recent call last):
    ...
    egress.errors.StoreError: unsupported database URL "mysql://u:********@db/x": the console \
stores its data in SQLite or PostgreSQL; give sqlite:///path/to/egress.db, \
postgresql://user:password@host:5432/dbname or a plain file path
    """
    value = text.strip()
    if not value:
        raise StoreError(f"the database URL is empty; {_URL_FIX}")
    if "://" not in value:
        return f"sqlite:///{value}"
    scheme, rest = value.split("://", 1)
    scheme = scheme.lower()
    if scheme in ("sqlite", "sqlite+pysqlite"):
        url = f"sqlite://{rest}"
    elif scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        _, user, password, host = split_userinfo(value)
        if user is not None:
            # a password as typed ("p@ss/word"): encode what a URL cannot hold raw, so the host
            # is where the operator meant it (an already %-encoded one is left as it is)
            userinfo = _encode_userinfo(user)
            if password is not None:
                userinfo += ":" + _encode_userinfo(password)
            rest = f"{userinfo}@{host}"
        url = f"postgresql+psycopg://{rest}"
    else:
        raise StoreError(
            f"unsupported database URL {shown(mask_url(value))}: the console stores its data "
            f"in SQLite or PostgreSQL; {_URL_FIX}"
        )
    try:
        parsed = make_url(url)
    except (sa_exc.ArgumentError, ValueError):
        raise StoreError(
            f"the database URL {shown(mask_url(value))} cannot be parsed; {_URL_FIX}"
        ) from None
    if parsed.get_backend_name() == "sqlite" and not parsed.database:
        raise StoreError(
            f"the database URL {shown(mask_url(value))} names no file; give sqlite:///path/to/egress.db"
        )
    return url


_T = TypeVar("_T")

_HEAD_NUMBER = select(SettingsHeadRow.number).where(SettingsHeadRow.id == 1)
"""The poll path's one query, built once."""


def _encode_userinfo(text: str) -> str:
    """``text`` with the characters that end a URL's userinfo percent-encoded (``%`` kept)."""
    for char, code in (("@", "%40"), ("/", "%2F"), ("?", "%3F"), ("#", "%23"), (":", "%3A")):
        text = text.replace(char, code)
    return text


class Store(TrafficMethods):
    """The console's data on one database. Thread-safe; one instance per process is enough.

    Creating one checks the URL (and, for SQLite, that the file can be created); nothing connects
    to PostgreSQL until the first call (``migrate`` first), which raises :class:`StoreError` if
    the server cannot be used.
    """

    def __init__(self, url: str) -> None:
        self.url = database_url(url)
        self._shown_url = mask_url(self.url)
        parsed = make_url(self.url)
        self._secrets = [p for p in (parsed.password, split_userinfo(self.url)[2]) if p]
        self.backend = parsed.get_backend_name()
        self._touched: dict[int, datetime] = {}
        self._touched_lock = threading.Lock()
        if self.backend == "sqlite":
            self._engine = self._sqlite_engine(parsed.database or "")
        else:
            try:
                self._engine = create_engine(
                    self.url,
                    hide_parameters=True,
                    pool_size=10,
                    max_overflow=20,
                    connect_args={"connect_timeout": 10},
                )
            except ImportError:
                raise StoreError(
                    f"the console database {shown(self._shown_url)} needs the PostgreSQL driver; "
                    "install it with: pip install 'egress[postgres]'"
                ) from None
        # reads are single statements: on PostgreSQL run them in autocommit (no BEGIN/ROLLBACK
        # round trips on the poll path); SQLite reads skip BEGIN in _on_begin instead
        self._reader = (
            self._engine
            if self.backend == "sqlite"
            else self._engine.execution_options(isolation_level="AUTOCOMMIT")
        )

    def __repr__(self) -> str:
        return f"Store({self._shown_url!r})"

    # -- engine ------------------------------------------------------------------------------

    def _sqlite_engine(self, database: str) -> Engine:
        """A SQLite engine: WAL (readers never wait for the writer), a busy timeout, our own
        ``BEGIN`` (``IMMEDIATE`` for writes). The file is created 0600, its directory if missing."""
        memory = database == ":memory:"
        if not memory:
            path = Path(database)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
                os.close(fd)
            except OSError as exc:
                raise StoreError(
                    f"cannot open the console database {shown(self._shown_url)}: "
                    f"{printable(exc.strerror or str(exc))} ({shown(str(path))}); give --db a "
                    "path in a directory this user can write, or fix its permissions"
                ) from None
        engine = create_engine(
            self.url,
            hide_parameters=True,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            **({"poolclass": StaticPool} if memory else {"pool_size": 10, "max_overflow": 20}),
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
                if not memory:
                    cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = NORMAL")
            finally:
                cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Connection) -> None:
            # writes take the write lock at once, so a save's check-then-insert cannot interleave
            # with another's; a read runs its single SELECT without BEGIN (the poll path)
            if connection.get_execution_options().get("egress_write", False):
                connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Turn a database failure into a :class:`StoreError` naming the masked URL and the fix
        (no SQLAlchemy traceback, no statement parameters, never the URL's password)."""
        try:
            yield
        except sa_exc.IntegrityError:
            raise
        except sa_exc.StatementError as exc:
            if not isinstance(exc, sa_exc.DBAPIError) and isinstance(exc.orig, ValueError):
                raise exc.orig from None  # a value refused before it reached the database
            raise self._error(exc) from None
        except sa_exc.SQLAlchemyError as exc:
            raise self._error(exc) from None

    def _error(self, exc: Exception) -> StoreError:
        orig = getattr(exc, "orig", None) or exc
        lines = str(orig).strip().splitlines() or [type(orig).__name__]
        reason = printable(scrub(lines[0], self._secrets))[:300]
        lower = reason.lower()
        if "no such table" in lower or ("does not exist" in lower and "relation" in lower):
            fix = "create its tables first (egress console migrates on start; or Store.migrate())"
        elif self.backend == "sqlite":
            fix = "check that the file and its directory are writable by this user"
        else:
            fix = (
                "check that PostgreSQL is running and reachable, and the URL's host, port, "
                "database, user and password"
            )
        return StoreError(
            f"cannot use the console database {shown(self._shown_url)}: {reason}; {fix}"
        )

    def _fetch(self, statement: Executable, take: Callable[[Result[Any]], _T]) -> _T:
        """Run one read statement and ``take`` its result (autocommit on PostgreSQL, no BEGIN on
        SQLite). A connection found dead (a database restart, a failover) is retried once on a
        fresh one, so the poll path needs no ping per checkout."""
        with self._guard():
            for attempt in (1, 2):
                try:
                    with self._reader.connect() as conn:
                        return take(conn.execute(statement))
                except sa_exc.DBAPIError as exc:
                    if attempt == 2 or not exc.connection_invalidated:
                        raise
        raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction (``BEGIN IMMEDIATE`` on SQLite), committed on success. On
        PostgreSQL its connection is checked first and replaced once if the server dropped it."""
        with self._guard():
            conn = self._write_connection()
            with conn, conn.begin():
                yield conn

    def _write_connection(self) -> Connection:
        for attempt in (1, 2):
            conn = self._engine.connect()
            conn.execution_options(egress_write=True)
            if self.backend != "postgresql":
                return conn
            try:
                conn.exec_driver_sql("SELECT 1")
                conn.rollback()
                return conn
            except sa_exc.DBAPIError as exc:
                conn.close()
                if attempt == 2 or not exc.connection_invalidated:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def migrate(self) -> None:
        """Bring the tables to the newest revision (Alembic ``upgrade head``).

        Idempotent, and safe when several processes run it at once: it runs in one transaction
        holding a lock (a PostgreSQL advisory lock; SQLite's write lock), so the second waits and
        then finds nothing to do.
        """
        from alembic import command
        from alembic.config import Config

        with self._write() as conn:
            if self.backend == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            config = Config()
            location = resources.files("egress.console.store") / "migrations"
            config.set_main_option("script_location", str(location))
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    # -- settings versions -------------------------------------------------------------------

    def current_number(self) -> int:
        """The current version's number (0 when none): one primary-key read (the poll path)."""
        number = self._fetch(_HEAD_NUMBER, Result.scalar_one_or_none)
        if number is None:
            raise self._error(RuntimeError("relation settings_head does not exist"))
        return int(number)

    def current(self) -> Version | None:
        """The newest version, or None before the first save."""
        row = self._fetch(
            select(SettingsVersionRow).order_by(SettingsVersionRow.number.desc()).limit(1),
            Result.first,
        )
        return _version(row._mapping) if row is not None else None

    def version(self, number: int) -> Version | None:
        """Version ``number``, or None if there is none."""
        row = self._fetch(
            select(SettingsVersionRow).where(SettingsVersionRow.number == number), Result.first
        )
        return _version(row._mapping) if row is not None else None

    def versions(self, limit: int = 50, offset: int = 0) -> list[Version]:
        """Versions, newest first (never reads the proxy password)."""
        rows = self._fetch(
            select(SettingsVersionRow)
            .order_by(SettingsVersionRow.number.desc())
            .limit(max(0, limit))
            .offset(max(0, offset)),
            Result.all,
        )
        return [_version(row._mapping) for row in rows]

    def save(
        self,
        document: Mapping[str, Any],
        *,
        author: str,
        action: str,
        note: str = "",
        expected: int | None = None,
        password: Secret | Keep | None = KEEP,
    ) -> Version:
        """Store ``document`` as the next version, in one transaction.

        ``expected`` (the If-Match version; 0 for "nothing saved yet") must still be current, or
        :class:`StaleVersion` is raised and nothing is stored. ``password``: :data:`KEEP` leaves
        the proxy password, a :class:`Secret` replaces it, ``None`` clears it; either of the last
        two bumps ``password_generation`` (clearing when none is set changes nothing).
        """
        proxy = document.get("proxy")
        if isinstance(proxy, Mapping) and "password" in proxy:
            raise ValueError(
                "a settings document never holds the proxy password: pass it as password=Secret()"
            )
        try:
            doc: dict[str, Any] = json.loads(json.dumps(dict(document)))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"a settings document must be plain JSON data: {exc}") from None
        now = datetime.now(UTC)
        try:
            with self._write() as conn:
                head = conn.execute(
                    select(SettingsHeadRow.number).where(SettingsHeadRow.id == 1).with_for_update()
                ).scalar_one()
                if expected is not None and expected != head:
                    raise StaleVersion(int(head), expected)
                secret_row = conn.execute(
                    select(ProxyPasswordRow.secret, ProxyPasswordRow.generation)
                    .where(ProxyPasswordRow.id == 1)
                    .with_for_update()
                ).one()
                generation = int(secret_row.generation)
                if not isinstance(password, Keep) and (
                    password is not None or secret_row.secret is not None
                ):
                    generation += 1
                    conn.execute(
                        update(ProxyPasswordRow)
                        .where(ProxyPasswordRow.id == 1)
                        .values(
                            secret=password.reveal() if password is not None else None,
                            generation=generation,
                            updated_at=now,
                        )
                    )
                number = int(head) + 1
                values = {
                    "number": number,
                    "document": doc,
                    "password_generation": generation,
                    "author": author,
                    "action": action,
                    "note": note,
                    "created_at": now,
                }
                conn.execute(insert(SettingsVersionRow).values(**values))
                conn.execute(
                    update(SettingsHeadRow).where(SettingsHeadRow.id == 1).values(number=number)
                )
        except sa_exc.IntegrityError:
            # a backstop: the head lock makes this unreachable unless someone bypasses it
            raise StaleVersion(self.current_number(), expected) from None
        return _version(values)

    def password(self) -> Secret | None:
        """The stored proxy password, or None. The one place it is read."""
        secret = self._fetch(
            select(ProxyPasswordRow.secret).where(ProxyPasswordRow.id == 1),
            Result.scalar_one_or_none,
        )
        return Secret(secret) if secret is not None else None

    # -- people ------------------------------------------------------------------------------

    def user(self, name: str) -> User | None:
        """The user ``name``, or None."""
        row = self._fetch(select(UserRow).where(UserRow.name == name), Result.first)
        return User(**row._mapping) if row is not None else None

    def create_user(self, name: str, password_hash: str) -> User:
        """Add a user; :class:`AlreadyExists` if the name is taken (another process won)."""
        user = User(name=name, password_hash=password_hash, created_at=datetime.now(UTC))
        try:
            with self._write() as conn:
                conn.execute(insert(UserRow).values(**_fields(user)))
        except sa_exc.IntegrityError:
            raise AlreadyExists(f"the user {shown(name)} exists already") from None
        return user

    def set_password_hash(self, name: str, password_hash: str) -> None:
        """Replace a user's password hash; KeyError if there is no such user."""
        with self._write() as conn:
            result = conn.execute(
                update(UserRow).where(UserRow.name == name).values(password_hash=password_hash)
            )
            if result.rowcount == 0:
                raise KeyError(name)

    def user_count(self) -> int:
        """How many users exist."""
        return int(self._fetch(select(func.count()).select_from(UserRow), Result.scalar_one))

    def create_session(self, session: Session) -> None:
        """Store a new session."""
        with self._write() as conn:
            conn.execute(insert(SessionRow).values(**_fields(session)))

    def session(self, id_hash: str) -> Session | None:
        """The session ``id_hash`` if it exists and has not expired, else None."""
        row = self._fetch(
            select(SessionRow).where(
                SessionRow.id_hash == id_hash, SessionRow.expires_at > datetime.now(UTC)
            ),
            Result.first,
        )
        return Session(**row._mapping) if row is not None else None

    def delete_session(self, id_hash: str) -> None:
        """End a session (no error if there is none)."""
        with self._write() as conn:
            conn.execute(delete(SessionRow).where(SessionRow.id_hash == id_hash))

    def delete_expired_sessions(self, now: datetime) -> int:
        """Delete sessions expired at ``now``; returns how many."""
        with self._write() as conn:
            result = conn.execute(delete(SessionRow).where(SessionRow.expires_at <= now))
            return int(result.rowcount)

    # -- machine tokens ----------------------------------------------------------------------

    def create_token(self, name: str, role: str, token_hash: str, created_by: str) -> Token:
        """Store a new token (its hash only); ``role`` is ``read`` or ``admin``."""
        if role not in ("read", "admin"):
            raise ValueError(f"token role {shown(role)} is not 'read' or 'admin'")
        values: dict[str, Any] = {
            "name": name,
            "role": role,
            "token_hash": token_hash,
            "created_by": created_by,
            "created_at": datetime.now(UTC),
            "last_used_at": None,
            "revoked": False,
        }
        try:
            with self._write() as conn:
                new_id = conn.execute(
                    insert(TokenRow).values(**values).returning(TokenRow.id)
                ).scalar_one()
        except sa_exc.IntegrityError:
            raise AlreadyExists("a token with this hash exists already") from None
        return Token(id=int(new_id), **values)

    def token_by_hash(self, token_hash: str) -> Token | None:
        """The token with this hash (revoked ones too: check ``revoked``), or None."""
        row = self._fetch(select(TokenRow).where(TokenRow.token_hash == token_hash), Result.first)
        return Token(**row._mapping) if row is not None else None

    def tokens(self) -> list[Token]:
        """Every token, oldest first."""
        rows = self._fetch(select(TokenRow).order_by(TokenRow.id), Result.all)
        return [Token(**row._mapping) for row in rows]

    def revoke_token(self, token_id: int) -> None:
        """Revoke a token for good (no error if there is none)."""
        with self._write() as conn:
            conn.execute(update(TokenRow).where(TokenRow.id == token_id).values(revoked=True))

    def touch_token(self, token_id: int, at: datetime) -> None:
        """Record a token's use, at most once per :data:`TOUCH_EVERY` per process (so that
        polling components do not turn every read into a write)."""
        with self._touched_lock:
            last = self._touched.get(token_id)
            if last is not None and at - last < TOUCH_EVERY:
                return
            self._touched[token_id] = at
        with self._write() as conn:
            conn.execute(update(TokenRow).where(TokenRow.id == token_id).values(last_used_at=at))

    # -- audit and preflight -----------------------------------------------------------------

    def audit(self, actor: str, action: str, detail: str = "", address: str = "") -> AuditEntry:
        """Append an entry to the audit log."""
        values: dict[str, Any] = {
            "at": datetime.now(UTC),
            "actor": actor,
            "action": action,
            "detail": detail,
            "address": address,
        }
        with self._write() as conn:
            new_id = conn.execute(
                insert(AuditRow).values(**values).returning(AuditRow.id)
            ).scalar_one()
        return AuditEntry(id=int(new_id), **values)

    def audit_log(self, limit: int = 200, offset: int = 0) -> list[AuditEntry]:
        """Audit entries, newest first."""
        rows = self._fetch(
            select(AuditRow)
            .order_by(AuditRow.id.desc())
            .limit(max(0, limit))
            .offset(max(0, offset)),
            Result.all,
        )
        return [AuditEntry(**row._mapping) for row in rows]

    def save_preflight(
        self, actor: str, version: int, verdict: str, results: list[dict[str, Any]]
    ) -> PreflightRecord:
        """Record a preflight run."""
        values: dict[str, Any] = {
            "at": datetime.now(UTC),
            "actor": actor,
            "version": version,
            "verdict": verdict,
            "results": [dict(r) for r in results],
        }
        with self._write() as conn:
            new_id = conn.execute(
                insert(PreflightRow).values(**values).returning(PreflightRow.id)
            ).scalar_one()
        return PreflightRecord(id=int(new_id), **values)

    def last_preflight(self) -> PreflightRecord | None:
        """The newest preflight run, or None."""
        row = self._fetch(
            select(PreflightRow).order_by(PreflightRow.id.desc()).limit(1), Result.first
        )
        return PreflightRecord(**row._mapping) if row is not None else None


class AlreadyExists(Exception):
    """A user (or token hash) with this key exists already; nothing was stored."""


def _version(row: Mapping[Any, Any]) -> Version:
    return Version(
        number=int(row["number"]),
        document=dict(row["document"]),
        password_generation=int(row["password_generation"]),
        author=row["author"],
        action=row["action"],
        note=row["note"],
        created_at=row["created_at"],
    )


def _fields(obj: User | Session) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__dataclass_fields__}
