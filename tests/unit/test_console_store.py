"""The console store on SQLite (a file in tmp_path).

The tests that take ``store_url`` / ``store`` / ``unreachable_url`` run again, unchanged, on the
real PostgreSQL in ``tests/integration/test_console_store_postgres.py`` (``SHARED_TESTS``).
"""

from __future__ import annotations

import json
import pickle
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from egress.console.store import (
    KEEP,
    AlreadyExists,
    Session,
    StaleVersion,
    Store,
    StoreError,
    database_url,
)
from egress.console.store.models import Base
from egress.errors import EgressError
from egress.redact import Secret

PROXY_PASSWORD = "Pr0xy/P@ss:word#1"
DB_PASSWORD = "Db-S3cret/p@ss"
DOC: dict[str, Any] = {"proxy": {"url": "http://proxy.corp.test:3128", "username": "svc"}}


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """A fresh, empty (not migrated) database."""
    return f"sqlite:///{tmp_path / 'var' / 'egress.db'}"


@pytest.fixture
def unreachable_url(tmp_path: Path) -> str:
    """A database that cannot be used: its directory is a regular file. (The PostgreSQL module's
    is a closed port, with ``DB_PASSWORD`` in the URL.)"""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    return f"sqlite:///{blocker / 'egress.db'}"


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A migrated store on ``store_url``, closed afterwards."""
    s = Store(store_url)
    s.migrate()
    try:
        yield s
    finally:
        s.close()


def _race(stores: list[Store], count: int, attempt: Callable[[Store], Any]) -> list[Any]:
    """Run ``attempt`` ``count`` times at once from threads spread over ``stores``; returns each
    result or the exception it raised."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = attempt(stores[i % len(stores)])
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    return results


# -- settings versions ---------------------------------------------------------------------


def test_empty_store(store: Store) -> None:
    assert store.current_number() == 0
    assert store.current() is None
    assert store.version(1) is None
    assert store.versions() == []
    assert store.password() is None
    assert store.last_preflight() is None
    assert store.user_count() == 0
    assert store.tokens() == []
    assert store.audit_log() == []


def test_versions_numbers_and_etags(store: Store) -> None:
    before = datetime.now(UTC)
    v1 = store.save(DOC, author="import", action="import", note="imported x", expected=0)
    v2 = store.save({**DOC, "enabled": False}, author="admin", action="switch-off", expected=1)
    v3 = store.save({**DOC, "enabled": True}, author="token:ci", action="switch-on")
    assert [v1.number, v2.number, v3.number] == [1, 2, 3]
    assert v3.etag == '"v3"'
    assert store.current_number() == 3
    assert store.current() == v3
    assert store.version(2) == v2
    assert store.version(4) is None
    assert [v.number for v in store.versions()] == [3, 2, 1]
    assert [v.number for v in store.versions(limit=1, offset=1)] == [2]
    got = store.version(1)
    assert got is not None
    assert got.document == DOC and got.author == "import" and got.note == "imported x"
    assert got.action == "import"
    for v in store.versions():
        assert v.created_at.tzinfo is not None and v.created_at.utcoffset() == timedelta(0)
        assert before - timedelta(seconds=5) <= v.created_at <= datetime.now(UTC)
    assert v1.created_at <= v2.created_at <= v3.created_at


def test_stale_expected_raises_and_stores_nothing(store: Store) -> None:
    store.save(DOC, author="admin", action="save", expected=0)
    for expected in (0, 5):
        with pytest.raises(StaleVersion) as caught:
            store.save(
                {"x": 1}, author="admin", action="save", expected=expected, password=Secret("new")
            )
        assert caught.value.current == 1
        assert "current version is 1" in str(caught.value)
    assert store.current_number() == 1
    assert [v.document for v in store.versions()] == [DOC]
    assert store.password() is None  # the stale save's password was not stored either
    back = pickle.loads(pickle.dumps(caught.value))
    assert isinstance(back, StaleVersion) and back.current == 1


def test_password_keep_replace_clear_and_generations(store: Store) -> None:
    v1 = store.save(DOC, author="admin", action="save")
    assert v1.password_generation == 0 and store.password() is None
    v2 = store.save(DOC, author="admin", action="save", password=Secret(PROXY_PASSWORD))
    assert v2.password_generation == 1 and store.password() == Secret(PROXY_PASSWORD)
    v3 = store.save(DOC, author="admin", action="save", password=KEEP)
    assert v3.password_generation == 1 and store.password() == Secret(PROXY_PASSWORD)
    v4 = store.save(DOC, author="admin", action="save", password=Secret("another"))
    assert v4.password_generation == 2 and store.password() == Secret("another")
    v5 = store.save(DOC, author="admin", action="save", password=None)
    assert v5.password_generation == 3 and store.password() is None
    v6 = store.save(DOC, author="admin", action="save", password=None)  # nothing to clear
    assert v6.password_generation == 3
    assert [v.password_generation for v in store.versions()] == [3, 3, 2, 1, 1, 0]


def test_password_never_in_documents_or_reprs(store: Store) -> None:
    store.save(DOC, author="admin", action="save", password=Secret(PROXY_PASSWORD))
    shown = [repr(store), repr(KEEP), repr(store.password()), str(store.password())]
    for v in store.versions():
        shown += [repr(v), json.dumps(v.document)]
    assert not any(PROXY_PASSWORD in s for s in shown)
    with pytest.raises(ValueError, match="password=Secret"):
        store.save({"proxy": {"password": "x"}}, author="admin", action="save")
    assert store.current_number() == 1


def test_two_stores_race_on_the_same_expected_version(store_url: str, store: Store) -> None:
    store.save(DOC, author="admin", action="save")
    other = Store(store_url)
    try:
        results = _race(
            [store, other],
            20,
            lambda s: s.save({"n": 1}, author="admin", action="save", expected=1),
        )
    finally:
        other.close()
    winners = [r for r in results if not isinstance(r, Exception)]
    losers = [r for r in results if isinstance(r, Exception)]
    assert len(winners) == 1, results
    assert all(isinstance(r, StaleVersion) and r.current == 2 for r in losers), losers
    assert store.current_number() == 2
    assert [v.number for v in store.versions()] == [2, 1]


def test_concurrent_saves_without_expected_get_distinct_increasing_numbers(
    store_url: str, store: Store
) -> None:
    other = Store(store_url)
    try:
        results = _race(
            [store, other], 20, lambda s: s.save({"n": 1}, author="admin", action="save")
        )
    finally:
        other.close()
    assert sorted(r.number for r in results) == list(range(1, 21)), results
    assert store.current_number() == 20


def test_migrate_twice_and_from_two_processes_at_once(store_url: str) -> None:
    code = "import sys; from egress.console.store import Store; Store(sys.argv[1]).migrate()"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, store_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    s = Store(store_url)
    try:
        s.migrate()
        s.migrate()
        assert s.current_number() == 0
        s.save(DOC, author="admin", action="save")
        s.migrate()
        assert s.current_number() == 1
    finally:
        s.close()


def test_migrated_schema_matches_the_models(store_url: str, store: Store) -> None:
    engine = create_engine(database_url(store_url))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"version_table": "egress_console_alembic_version"}
            )
            diffs = compare_metadata(context, Base.metadata)
            version = conn.execute(
                text("SELECT version_num FROM egress_console_alembic_version")
            ).all()
    finally:
        engine.dispose()
    assert diffs == []
    assert [tuple(r) for r in version] == [("0002",)]  # the newest revision (v0002_traffic)


# -- people, tokens, audit, preflight ------------------------------------------------------


def test_users(store: Store) -> None:
    user = store.create_user("admin", "$argon2id$v=19$hash")
    assert store.user("admin") == user and store.user("nobody") is None
    assert store.user_count() == 1
    assert "argon2" not in repr(user)
    with pytest.raises(AlreadyExists):
        store.create_user("admin", "other")
    store.set_password_hash("admin", "$argon2id$v=19$new")
    got = store.user("admin")
    assert got is not None and got.password_hash == "$argon2id$v=19$new"
    with pytest.raises(KeyError):
        store.set_password_hash("nobody", "x")


def test_sessions_and_expiry(store: Store) -> None:
    now = datetime.now(UTC)
    plus2 = timezone(timedelta(hours=2))
    live = Session(
        "live-hash", "admin", "csrf-1", now, (now + timedelta(hours=1)).astimezone(plus2)
    )
    old = Session("old-hash", "admin", "csrf-2", now - timedelta(hours=2), now - timedelta(hours=1))
    store.create_session(live)
    store.create_session(old)
    got = store.session("live-hash")
    assert got is not None
    assert got == live  # equal instants, whatever the zone it was given in
    assert got.expires_at.utcoffset() == timedelta(0)
    assert "csrf-1" not in repr(got) and "live-hash" not in repr(got)
    assert store.session("old-hash") is None  # expired: never handed out
    assert store.session("missing") is None
    assert store.delete_expired_sessions(now) == 1
    assert store.delete_expired_sessions(now) == 0
    assert store.session("live-hash") is not None
    store.delete_session("live-hash")
    assert store.session("live-hash") is None
    with pytest.raises(ValueError, match="naive"):
        store.delete_expired_sessions(datetime.now())


def test_tokens(store: Store) -> None:
    a = store.create_token("ci-bot", "admin", "hash-a", "admin")
    b = store.create_token("grafana", "read", "hash-b", "admin")
    assert a.id != b.id and not a.revoked and a.last_used_at is None
    assert store.token_by_hash("hash-b") == b and store.token_by_hash("nope") is None
    assert store.tokens() == [a, b]
    with pytest.raises(ValueError, match="role"):
        store.create_token("x", "root", "hash-c", "admin")
    with pytest.raises(AlreadyExists):
        store.create_token("dup", "read", "hash-a", "admin")
    used = datetime.now(UTC)
    store.touch_token(b.id, used)
    store.touch_token(b.id, used + timedelta(seconds=1))  # within a minute: not written
    got = store.token_by_hash("hash-b")
    assert got is not None and got.last_used_at == used
    store.touch_token(b.id, used + timedelta(minutes=2))
    got = store.token_by_hash("hash-b")
    assert got is not None and got.last_used_at == used + timedelta(minutes=2)
    store.revoke_token(a.id)
    got = store.token_by_hash("hash-a")
    assert got is not None and got.revoked
    assert [t.revoked for t in store.tokens()] == [True, False]


def test_audit_log_newest_first(store: Store) -> None:
    entries = [store.audit("admin", f"action.{i}", f"detail {i}", "127.0.0.1") for i in range(5)]
    log = store.audit_log()
    assert log == entries[::-1]
    assert [e.action for e in store.audit_log(limit=2, offset=1)] == ["action.3", "action.2"]
    assert all(e.at.utcoffset() == timedelta(0) for e in log)


def test_preflight_records(store: Store) -> None:
    results = [
        {"name": "proxy reachable", "status": "pass", "detail": "", "hint": ""},
        {"name": "api.example.test", "status": "fail", "detail": "403", "hint": "allow it"},
    ]
    first = store.save_preflight("admin", 1, "pass", results[:1])
    second = store.save_preflight("token:ci", 2, "fail", results)
    assert second.id > first.id
    assert store.last_preflight() == second
    got = store.last_preflight()
    assert got is not None and got.results == results and got.version == 2


# -- errors --------------------------------------------------------------------------------


def test_unreachable_database_gives_store_error(unreachable_url: str) -> None:
    with pytest.raises(StoreError) as caught:
        s = Store(unreachable_url)
        try:
            s.migrate()
        finally:
            s.close()
    message = str(caught.value)
    assert isinstance(caught.value, EgressError)
    assert "cannot" in message and DB_PASSWORD not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_not_migrated_gives_store_error_with_the_fix(store_url: str) -> None:
    s = Store(store_url)
    try:
        with pytest.raises(StoreError, match=r"migrate"):
            s.current_number()
    finally:
        s.close()


# -- SQLite only ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text_", "expected"),
    [
        ("var/egress.db", "sqlite:///var/egress.db"),
        ("/srv/egress.db", "sqlite:////srv/egress.db"),
        ("sqlite:///var/x.db", "sqlite:///var/x.db"),
        ("postgresql://u:p@db:5432/egress", "postgresql+psycopg://u:p@db:5432/egress"),
        ("postgres://u:p@db/egress", "postgresql+psycopg://u:p@db/egress"),
        ("PostgreSQL+psycopg://db/egress", "postgresql+psycopg://db/egress"),
        ("postgresql://u:a@b/c?d#e:f@db/x", "postgresql+psycopg://u:a%40b%2Fc%3Fd%23e%3Af@db/x"),
        ("postgresql://u:p%40ss@db/x", "postgresql+psycopg://u:p%40ss@db/x"),
        ("postgresql://db/x?host=/run/pg", "postgresql+psycopg://db/x?host=/run/pg"),
    ],
)
def test_database_url_accepts(text_: str, expected: str) -> None:
    assert database_url(text_) == expected


@pytest.mark.parametrize(
    "text_",
    [
        "",
        "   ",
        f"mysql://root:{DB_PASSWORD}@db/egress",
        f"postgresql+asyncpg://root:{DB_PASSWORD}@db/egress",
        f"postgresql://root:{DB_PASSWORD}@db:notaport/egress",
        "sqlite://",
        f"http://root:{DB_PASSWORD}@db/egress",
    ],
)
def test_database_url_refuses_without_showing_the_password(text_: str) -> None:
    with pytest.raises(StoreError) as caught:
        database_url(text_)
    message = str(caught.value)
    assert DB_PASSWORD not in message
    assert "give" in message  # the fix
    assert len(message.splitlines()) == 1
    with pytest.raises(StoreError):
        Store(text_)


def test_sqlite_file_is_private_and_its_directory_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "egress.db"
    s = Store(str(path))
    try:
        s.migrate()
        s.save(DOC, author="admin", action="save", password=Secret(PROXY_PASSWORD))
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        for extra in path.parent.iterdir():
            assert stat.S_IMODE(extra.stat().st_mode) == 0o600, extra
        assert repr(s) == f"Store('sqlite:///{path}')"
    finally:
        s.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        versions = json.dumps(raw.execute("SELECT * FROM settings_versions").fetchall())
        assert PROXY_PASSWORD not in versions
        assert raw.execute("SELECT secret FROM proxy_password").fetchone() == (PROXY_PASSWORD,)


def test_sqlite_readers_are_not_blocked_by_a_writer(store: Store, store_url: str) -> None:
    store.save(DOC, author="admin", action="save")
    path = store_url.removeprefix("sqlite:///")
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE settings_head SET number = 7")
        start = time.monotonic()
        assert store.current_number() == 1  # the committed value, at once
        assert store.current() is not None
        assert time.monotonic() - start < 2.0
        writer.execute("ROLLBACK")
    finally:
        writer.close()


def test_sqlite_current_number_is_one_primary_key_lookup(store: Store, store_url: str) -> None:
    path = store_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as raw:
        plan = raw.execute(
            "EXPLAIN QUERY PLAN SELECT number FROM settings_head WHERE id = 1"
        ).fetchall()
    assert len(plan) == 1 and "INTEGER PRIMARY KEY" in plan[0][-1], plan


def test_sqlite_store_error_names_the_path_and_the_fix(unreachable_url: str) -> None:
    with pytest.raises(StoreError, match=r"not-a-dir.*writ"):
        Store(unreachable_url)


SHARED_TESTS = tuple(
    name
    for name in list(globals())
    if name.startswith("test_") and not name.startswith(("test_sqlite_", "test_database_url_"))
)
"""The tests the PostgreSQL module runs again on the real server."""
