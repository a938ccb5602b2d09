"""Work units: leased units of work (journey starts, resumptions, waves of members).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "work_units",
        sa.Column("id", sa.String(300), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("touchpoint", sa.String(128), nullable=False),
        sa.Column("journey_id", sa.String(64), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("label", sa.String(300), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("due_at", UTC, nullable=True),
        sa.Column("owner", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", UTC, nullable=True),
        sa.Column("flow_run_id", sa.String(64), nullable=True),
        sa.Column("launched_at", UTC, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_work_units_journey_id", "work_units", ["journey_id"])
    op.create_index("ix_work_units_status", "work_units", ["status", "lease_expires_at"])


def downgrade() -> None:
    op.drop_index("ix_work_units_status", table_name="work_units")
    op.drop_index("ix_work_units_journey_id", table_name="work_units")
    op.drop_table("work_units")
