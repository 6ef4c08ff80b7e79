"""The console's store: settings versions, the proxy password, users, sessions, tokens, audit.

SQLAlchemy 2 and Alembic, on SQLite (default) or PostgreSQL; see :mod:`.store` for the guarantees
(one transaction per save, stale versions refused, the password in a table of its own).
"""

from egress.console.store.store import (
    KEEP,
    AlreadyExists,
    AuditEntry,
    Keep,
    PreflightRecord,
    Session,
    StaleVersion,
    Store,
    StoreError,
    Token,
    User,
    Version,
    database_url,
)
from egress.console.store.traffic import TooManyComponents, TrafficEntry, TrafficRecord

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
    "TooManyComponents",
    "TrafficEntry",
    "TrafficRecord",
    "User",
    "Version",
    "database_url",
]
