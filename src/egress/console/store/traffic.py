"""The store's traffic methods: components' reports added up per destination.

A mixin of :class:`~egress.console.store.Store` (kept apart so that the settings store stays
readable). Bounded: at most :data:`MAX_PER_COMPONENT` destinations per component and
:data:`MAX_COMPONENTS` components; past that, new destinations are added to one ``(other)`` row
per route, and reports of new components are refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar

from sqlalchemy import Connection, Executable, Result, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from .models import TrafficRow

__all__ = [
    "MAX_COMPONENTS",
    "MAX_PER_COMPONENT",
    "OTHER",
    "TooManyComponents",
    "TrafficEntry",
    "TrafficMethods",
    "TrafficRecord",
]

MAX_PER_COMPONENT: Final = 5000
MAX_COMPONENTS: Final = 500
OTHER: Final = "(other)"
_T = TypeVar("_T")


@dataclass(frozen=True)
class TrafficEntry:
    """One destination as a component reports it (already validated by the API)."""

    host: str
    port: int
    route: str
    rule: str
    count: int
    failures: int = 0
    last_failure: str | None = None
    last_failure_at: datetime | None = None
    last_seen: datetime | None = None


@dataclass(frozen=True)
class TrafficRecord:
    """One stored row: a component's destination and its totals."""

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


class TooManyComponents(Exception):
    """A report from a new component when :data:`MAX_COMPONENTS` already reported."""


class TrafficMethods:
    """``record_traffic`` and ``traffic``, on the store's connections."""

    if TYPE_CHECKING:
        backend: str

        def _write(self) -> AbstractContextManager[Connection]: ...

        def _fetch(self, statement: Executable, take: Callable[[Result[Any]], _T]) -> _T: ...

    def record_traffic(self, component: str, entries: Sequence[TrafficEntry]) -> int:
        """Add ``entries`` to ``component``'s totals (one transaction); returns rows touched."""
        now = datetime.now(UTC)
        with self._write() as conn:
            known = {
                (r.host, r.port, r.route, r.rule)
                for r in conn.execute(
                    select(
                        TrafficRow.host, TrafficRow.port, TrafficRow.route, TrafficRow.rule
                    ).where(TrafficRow.component == component)
                )
            }
            if not known:
                components = conn.execute(
                    select(func.count(func.distinct(TrafficRow.component)))
                ).scalar_one()
                if components >= MAX_COMPONENTS:
                    raise TooManyComponents(component)
            merged: dict[tuple[str, int, str, str], dict[str, Any]] = {}
            for e in entries:
                key = (e.host, e.port, e.route, e.rule)
                if key not in known and len(known) >= MAX_PER_COMPONENT:
                    key = (OTHER, 0, e.route, OTHER)
                known.add(key)
                seen = min(e.last_seen or now, now)
                failed_at = min(e.last_failure_at, now) if e.last_failure_at else None
                row = merged.get(key)
                if row is None:
                    merged[key] = {
                        "component": component,
                        "host": key[0],
                        "port": key[1],
                        "route": key[2],
                        "rule": key[3],
                        "count": e.count,
                        "failures": e.failures,
                        "last_failure": e.last_failure,
                        "last_failure_at": failed_at,
                        "first_seen": now,
                        "last_seen": seen,
                    }
                else:
                    row["count"] += e.count
                    row["failures"] += e.failures
                    row["last_seen"] = max(row["last_seen"], seen)
                    if failed_at is not None and (
                        row["last_failure_at"] is None or failed_at >= row["last_failure_at"]
                    ):
                        row["last_failure"], row["last_failure_at"] = e.last_failure, failed_at
            if merged:
                dialect = postgresql if self.backend == "postgresql" else sqlite
                stmt = dialect.insert(TrafficRow)
                table = TrafficRow.__table__
                newer = or_(
                    table.c.last_failure_at.is_(None),
                    stmt.excluded.last_failure_at >= table.c.last_failure_at,
                )
                has_failure = stmt.excluded.last_failure_at.is_not(None)
                stmt = stmt.on_conflict_do_update(
                    index_elements=["component", "host", "port", "route", "rule"],
                    set_={
                        "count": table.c.count + stmt.excluded.count,
                        "failures": table.c.failures + stmt.excluded.failures,
                        "last_seen": func.max(table.c.last_seen, stmt.excluded.last_seen)
                        if self.backend != "postgresql"
                        else func.greatest(table.c.last_seen, stmt.excluded.last_seen),
                        "last_failure": _case(
                            has_failure, newer, stmt.excluded.last_failure, table.c.last_failure
                        ),
                        "last_failure_at": _case(
                            has_failure,
                            newer,
                            stmt.excluded.last_failure_at,
                            table.c.last_failure_at,
                        ),
                    },
                )
                conn.execute(stmt, list(merged.values()))
        return len(merged)

    def traffic(
        self, component: str | None = None, filter: str | None = None, limit: int = 500
    ) -> list[TrafficRecord]:
        """Stored rows, newest first; ``filter`` keeps rows whose host, rule or last failure
        contains it (case-insensitive)."""
        query = select(TrafficRow)
        if component:
            query = query.where(TrafficRow.component == component)
        if filter:
            pattern = "%" + filter.lower().replace("\\", "").replace("%", "").replace("_", "") + "%"
            query = query.where(
                or_(
                    func.lower(TrafficRow.host).like(pattern),
                    func.lower(TrafficRow.rule).like(pattern),
                    func.lower(func.coalesce(TrafficRow.last_failure, "")).like(pattern),
                )
            )
        query = query.order_by(TrafficRow.last_seen.desc(), TrafficRow.id.desc()).limit(
            max(0, min(limit, 5000))
        )
        rows = self._fetch(query, Result.all)
        return [_record(row._mapping) for row in rows]

    def traffic_components(self) -> list[str]:
        """Every component that reported, by name."""
        rows = self._fetch(
            select(TrafficRow.component).distinct().order_by(TrafficRow.component), Result.all
        )
        return [str(r[0]) for r in rows]


def _case(has_failure: Any, newer: Any, new: Any, old: Any) -> Any:
    from sqlalchemy import and_, case

    return case((and_(has_failure, newer), new), else_=old)


def _record(row: Any) -> TrafficRecord:
    return TrafficRecord(
        component=row["component"],
        host=row["host"],
        port=int(row["port"]),
        route=row["route"],
        rule=row["rule"],
        count=int(row["count"]),
        failures=int(row["failures"]),
        last_failure=row["last_failure"],
        last_failure_at=row["last_failure_at"],
        first_seen=row["first_seen"],
        last_seen=row["last_seen"],
    )
