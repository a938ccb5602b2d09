"""Touch point versions, team links, alert throttles; preferred names, holdout cohorts and
encrypted webhook secrets.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "touchpoint_versions",
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("touchpoint", sa.String(128), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("templates", sa.JSON(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("digest"),
    )
    op.create_index("ix_touchpoint_versions_touchpoint", "touchpoint_versions", ["touchpoint"])
    op.create_table(
        "team_links",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("team", sa.String(64), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("expires_at", UTC, nullable=False),
        sa.Column("revoked_at", UTC, nullable=True),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_team_links_team", "team_links", ["team"])
    op.create_table(
        "alerts",
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("last_sent_at", UTC, nullable=True),
        sa.Column("pending", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("preferred_name", sa.String(200), nullable=True))
    with op.batch_alter_table("journeys") as batch:
        batch.add_column(sa.Column("version", sa.String(64), nullable=True))
    with op.batch_alter_table("members") as batch:
        batch.add_column(sa.Column("cohort", sa.String(16), nullable=True))
    with op.batch_alter_table("api_keys") as batch:
        batch.alter_column("hmac_secret", existing_type=sa.String(128), type_=sa.String(512),
                           existing_nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.alter_column("hmac_secret", existing_type=sa.String(512), type_=sa.String(128),
                           existing_nullable=True)
    with op.batch_alter_table("members") as batch:
        batch.drop_column("cohort")
    with op.batch_alter_table("journeys") as batch:
        batch.drop_column("version")
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("preferred_name")
    op.drop_table("alerts")
    op.drop_index("ix_team_links_team", table_name="team_links")
    op.drop_table("team_links")
    op.drop_index("ix_touchpoint_versions_touchpoint", table_name="touchpoint_versions")
    op.drop_table("touchpoint_versions")
