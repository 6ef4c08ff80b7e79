"""The console's tables (SQLAlchemy 2 typed declarative), the same on SQLite and PostgreSQL.

The migrations in ``migrations/versions`` create exactly these tables; a test compares the two.
These classes never leave the store: :mod:`egress.console.store.store` turns rows into frozen
dataclasses.

The proxy password has a table of its own (:class:`ProxyPasswordRow`, one row) so that no
settings version, history page or diff can ever hold it. It is stored **unencrypted**: it is
protected by the database's access control (a SQLite file is created with mode 0600).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = [
    "AuditRow",
    "Base",
    "PreflightRow",
    "ProxyPasswordRow",
    "SessionRow",
    "SettingsHeadRow",
    "SettingsVersionRow",
    "TokenRow",
    "TrafficRow",
    "UTCDateTime",
    "UserRow",
]


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that goes in and comes out UTC-aware on every backend.

    PostgreSQL keeps ``timestamptz``; SQLite has no time zones, so the value is stored as naive
    UTC text (which sorts and compares correctly) and UTC is attached again when read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("a naive datetime cannot be stored: give it a time zone (UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """The console store's metadata."""


class SettingsHeadRow(Base):
    """One row (id 1): the current version number. Saves lock it; polls read it by key."""

    __tablename__ = "settings_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    number: Mapped[int] = mapped_column(Integer, nullable=False)


class SettingsVersionRow(Base):
    """One saved version of the settings (egress.yaml-shaped, without any secret)."""

    __tablename__ = "settings_versions"

    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    document: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    password_generation: Mapped[int] = mapped_column(Integer, nullable=False)
    author: Mapped[str] = mapped_column(String(200), nullable=False)
    action: Mapped[str] = mapped_column(String(40), nullable=False)
    note: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class ProxyPasswordRow(Base):
    """One row (id 1): the proxy password (unencrypted; ``NULL`` when none) and its generation."""

    __tablename__ = "proxy_password"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    secret: Mapped[str | None] = mapped_column(Text, nullable=True)
    generation: Mapped[int] = mapped_column(Integer, nullable=False)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class UserRow(Base):
    """A person who logs in to the console (only an argon2 hash of the password)."""

    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    password_hash: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class SessionRow(Base):
    """A login session, keyed by the hash of its cookie value."""

    __tablename__ = "sessions"
    __table_args__ = (Index("ix_sessions_expires_at", "expires_at"),)

    id_hash: Mapped[str] = mapped_column(String(200), primary_key=True)
    user: Mapped[str] = mapped_column(String(200), nullable=False)
    csrf: Mapped[str] = mapped_column(String(200), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class TokenRow(Base):
    """A machine token (only its hash); ``role`` is ``read`` or ``admin``."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    role: Mapped[str] = mapped_column(String(20), nullable=False)
    token_hash: Mapped[str] = mapped_column(String(200), nullable=False, unique=True)
    created_by: Mapped[str] = mapped_column(String(200), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked: Mapped[bool] = mapped_column(Boolean, nullable=False)


class AuditRow(Base):
    """One audit entry: who did what, from where."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    actor: Mapped[str] = mapped_column(String(200), nullable=False)
    action: Mapped[str] = mapped_column(String(100), nullable=False)
    detail: Mapped[str] = mapped_column(Text, nullable=False)
    address: Mapped[str] = mapped_column(String(100), nullable=False)


class PreflightRow(Base):
    """One preflight run's verdict and results (as ``egress check --json``)."""

    __tablename__ = "preflight_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    actor: Mapped[str] = mapped_column(String(200), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    verdict: Mapped[str] = mapped_column(String(40), nullable=False)
    results: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False)


class TrafficRow(Base):
    """What one component reported contacting: one row per (component, host, port, route,
    rule), counts added up across reports (migration ``0002``)."""

    __tablename__ = "traffic"
    __table_args__ = (
        UniqueConstraint("component", "host", "port", "route", "rule", name="uq_traffic_key"),
        Index("ix_traffic_last_seen", "last_seen"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    component: Mapped[str] = mapped_column(String(100), nullable=False)
    host: Mapped[str] = mapped_column(String(255), nullable=False)
    port: Mapped[int] = mapped_column(Integer, nullable=False)
    route: Mapped[str] = mapped_column(String(20), nullable=False)
    rule: Mapped[str] = mapped_column(String(300), nullable=False)
    count: Mapped[int] = mapped_column(BigInteger, nullable=False)
    failures: Mapped[int] = mapped_column(BigInteger, nullable=False)
    last_failure: Mapped[str | None] = mapped_column(String(40), nullable=True)
    last_failure_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
