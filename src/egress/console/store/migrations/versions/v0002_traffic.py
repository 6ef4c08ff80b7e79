"""Traffic reports: what each component contacted (``POST /api/v1/traffic``).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from egress.console.store.models import UTCDateTime

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """One row per component and destination (host, port, route, rule)."""
    op.create_table(
        "traffic",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("component", sa.String(100), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("route", sa.String(20), nullable=False),
        sa.Column("rule", sa.String(300), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("failures", sa.BigInteger(), nullable=False),
        sa.Column("last_failure", sa.String(40), nullable=True),
        sa.Column("last_failure_at", UTCDateTime(), nullable=True),
        sa.Column("first_seen", UTCDateTime(), nullable=False),
        sa.Column("last_seen", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("component", "host", "port", "route", "rule", name="uq_traffic_key"),
    )
    op.create_index("ix_traffic_last_seen", "traffic", ["last_seen"])


def downgrade() -> None:
    """Drop the traffic table (the reports go with it)."""
    op.drop_table("traffic")
