"""The console store's tests (``tests/unit/test_console_store.py``), unchanged, on the real
PostgreSQL the suite starts: each test gets a database of its own, dropped afterwards.

Plus what only a server can show: a URL with a password to a closed port, and to a database
that does not exist, give a :class:`StoreError` without the password.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import psycopg
import pytest
from tests.support.ports import free_port
from tests.support.postgres import PostgresServer
from tests.unit import test_console_store as shared

from egress.console.store import Store, StoreError

pytestmark = pytest.mark.integration

DB_PASSWORD = shared.DB_PASSWORD


def _admin(postgres: PostgresServer) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(postgres.dsn, autocommit=True)


@pytest.fixture
def store_url(postgres: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the session's PostgreSQL (the password is ignored by its
    trust authentication, but it is in the URL, so every message is checked for it)."""
    name = f"egress_store_{secrets.token_hex(6)}"
    with _admin(postgres) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://{postgres.user}:{DB_PASSWORD}@{postgres.host}:{postgres.port}/{name}"
    finally:
        with _admin(postgres) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def unreachable_url() -> str:
    """A PostgreSQL URL with a password, to a loopback port nothing listens on."""
    return f"postgresql://egress:{DB_PASSWORD}@127.0.0.1:{free_port()}/egress"


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A migrated store on ``store_url``, closed afterwards."""
    s = Store(store_url)
    s.migrate()
    try:
        yield s
    finally:
        s.close()


for _name in shared.SHARED_TESTS:
    globals()[_name] = getattr(shared, _name)


def test_missing_database_gives_store_error_without_the_password(
    postgres: PostgresServer,
) -> None:
    url = f"postgresql://{postgres.user}:{DB_PASSWORD}@{postgres.host}:{postgres.port}/nope_db"
    s = Store(url)
    try:
        with pytest.raises(StoreError) as caught:
            s.current_number()
    finally:
        s.close()
    message = str(caught.value)
    assert "nope_db" in message and "********" in message
    assert DB_PASSWORD not in message and DB_PASSWORD not in repr(s)
    assert "PostgreSQL is running" in message


def test_versions_are_never_read_with_the_password(store: Store, store_url: str) -> None:
    """The password is in its own table: the versions table holds no trace of it."""
    from egress.redact import Secret

    store.save(shared.DOC, author="admin", action="save", password=Secret(shared.PROXY_PASSWORD))
    dsn = store_url.replace(f":{DB_PASSWORD}", "")
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT * FROM settings_versions").fetchall()
        secret = conn.execute("SELECT secret FROM proxy_password").fetchall()
    assert rows and shared.PROXY_PASSWORD not in repr(rows)
    assert secret == [(shared.PROXY_PASSWORD,)]


def test_reads_survive_the_server_dropping_connections(
    postgres: PostgresServer, store_url: str, store: Store
) -> None:
    """A restart or failover kills pooled connections: the next read reconnects by itself."""
    store.save(shared.DOC, author="admin", action="save")
    assert store.current_number() == 1  # a pooled connection now exists
    name = store_url.rsplit("/", 1)[1]
    with _admin(postgres) as conn:
        killed = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s",
            (name,),
        ).fetchone()
    assert killed is not None and killed[0] >= 1
    assert store.current_number() == 1
    assert store.current() is not None
    with _admin(postgres) as conn:  # and a write too
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
    assert store.save(shared.DOC, author="admin", action="save").number == 2
